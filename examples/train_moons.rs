//! Embeds oxgen in a program: trains a diffusion model on the moons distribution on the CPU,
//! samples with two samplers, and prints SWD/MMD against held-out data with their floors.
//!
//! Run: `cargo run --release --example train_moons`

use oxgen::TrainConfig;
use oxgen::models::samplers::SamplerKind;
use oxgen::models::{SampleConfig, diffusion};
use oxgen::train::TrainOptions;
use oxgen::train::data;
use oxgen::train::diffusion::train;
use oxgen::train::metrics::Quality;
use oxgen::train::sample::held_out;

fn main() -> Result<(), oxgen::Error> {
    let data = data::load("moons", 0, &Default::default())?;
    let mut config = TrainConfig::defaults("moons", data.shape, data.num_classes);
    config.steps = 1500;
    let device = burn::tensor::Device::flex();
    let out = std::env::temp_dir().join("oxgen-example-moons");
    let _ = std::fs::remove_dir_all(&out);
    let opts = TrainOptions {
        out: Some(out.clone()),
        resume: false,
        device: device.clone(),
        progress: true,
        skip_eval: true,
        ..TrainOptions::default()
    };
    let report = train(&config, &opts)?;
    println!("loss {:.4} -> {:.4}", report.first_loss, report.last_loss);

    let n = 1000;
    let (a, b, _) = held_out(&config, &data, None, n);
    for (sampler, steps) in [(SamplerKind::Ddim, 50), (SamplerKind::DpmSolverPP2M, 20)] {
        let s = SampleConfig {
            sampler,
            steps,
            ..config.sample.clone()
        };
        let x = diffusion::sample(&report.ema, &config.model, &s, n, None, &device);
        let x: Vec<f32> = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 samples");
        println!(
            "{sampler:?} ({steps} steps): {}",
            Quality::measure(&x, &a, &b, 2, 0)
        );
    }
    println!("run folder: {}", out.display());
    Ok(())
}
