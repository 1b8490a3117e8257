//! A sampler of the program's own behind oxgen's `Scheduler` trait: deterministic DDIM written
//! out by hand (Song et al., 2021, eq. 12 with σ = 0), used to sample a diffusion model trained
//! in memory, and checked against oxgen's built-in DDIM(η = 0) from the same noise.
//!
//! Run: `cargo run --release --example custom_sampler`

use oxgen::models::diffusion::sample_with;
use oxgen::models::ops::denoise::Noise;
use oxgen::models::samplers::{Ddim, ModelOutput};
use oxgen::prelude::*;

/// x_prev = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev)·ε̂, with x̂₀ and ε̂ from the model's prediction.
struct MyDdim {
    core: SchedulerCore,
}

impl Scheduler for MyDdim {
    fn step(&mut self, output: ModelOutput, t: usize, x: Tensor<1>, _noise: Noise) -> Tensor<1> {
        let (ab, ab_prev) = self.core.alpha_bars(t);
        // x̂₀ = px·x + po·out for this prediction type (ε, x₀ or v).
        let (px, po) = self.core.prediction.x0_coeffs(ab);
        let out = match output.uncond {
            Some((u, w)) => u.clone() + (output.out - u).mul_scalar(w),
            None => output.out,
        };
        let x0 = x.clone().mul_scalar(px) + out.mul_scalar(po);
        let eps = (x - x0.clone().mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt());
        x0.mul_scalar(ab_prev.sqrt()) + eps.mul_scalar((1.0 - ab_prev).sqrt())
    }

    fn is_stochastic(&self) -> bool {
        false
    }

    fn core(&self) -> &SchedulerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SchedulerCore {
        &mut self.core
    }
}

fn main() -> Result<(), oxgen::Error> {
    let device = Device::flex();
    let data = oxgen::train::data::load("moons", 0, &Default::default())?;
    let mut config = TrainConfig::defaults("moons", data.shape, data.num_classes);
    config.steps = 300;
    let opts = TrainOptions {
        device: device.clone(),
        skip_eval: true,
        ..Default::default()
    };
    let report = oxgen::train::diffusion::train_on(&config, &data, &opts)?;
    let sample = SampleConfig {
        steps: 25,
        seed: 3,
        ..config.sample.clone()
    };
    let core = || SchedulerCore::new(config.model.noise_schedule(), config.model.prediction, None);
    let mut mine = MyDdim { core: core() };
    mine.set_timesteps(sample.steps);
    let mut builtin = Ddim::new(core(), 0.0);
    builtin.set_timesteps(sample.steps);
    let n = 500;
    let a = sample_with(&report.ema, &mut mine, &sample, n, None, &device);
    let b = sample_with(&report.ema, &mut builtin, &sample, n, None, &device);
    let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
    println!("my DDIM vs oxgen's DDIM(η=0), {n} samples of 25 steps: max |Δ| = {diff:.2e}");
    let a: Vec<f32> = a
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 samples");
    let (held, _, _) = oxgen::train::sample::held_out(&config, &data, None, n);
    let quality = oxgen::train::metrics::Quality::measure(&a, &held, &held, 2, 0);
    println!(
        "my DDIM's samples: SWD {:.4} against held-out moons",
        quality.swd
    );
    assert!(diff < 1e-4, "the two DDIMs disagree by {diff}");
    Ok(())
}
