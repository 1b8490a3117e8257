//! An outside program embedding oxgen: attention, training on its own in-memory data, and a
//! sampler, with `oxgen` as its only dependency. Each step checks a number and exits non-zero
//! when it is off.

use oxgen::burn::tensor::Distribution;
use oxgen::burn::tensor::activation::softmax;
use oxgen::prelude::*;

fn main() -> Result<(), oxgen::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,burn=warn,cubecl=warn,wgpu=warn",
        ))
        .init();
    let device = Device::flex();

    // 1. Attention against softmax(q·kᵀ/√d)·v written here.
    let r = || Tensor::<4>::random([1, 2, 9, 16], Distribution::Normal(0.0, 1.0), &device);
    let (q, k, v) = (r(), r(), r());
    let ours = attention(q.clone(), k.clone(), v.clone());
    let want = softmax(q.matmul(k.swap_dims(2, 3)).div_scalar(4.0), 3).matmul(v);
    let err = (ours - want).abs().max().into_scalar::<f32>();
    println!("attention: max |Δ| against the formula {err:.1e}");
    assert!(err < 1e-5);

    // 2. Training on the program's own rows, in memory: points on a circle of radius 2.
    let rows = (0..2000).map(|i| {
        let a = i as f32 * 0.618_034 * std::f32::consts::TAU;
        [2.0 * a.cos(), 2.0 * a.sin()]
    });
    let data = Dataset::from_row_iter("circle", DataShape::Vector { dim: 2 }, rows)?;
    let mut config = TrainConfig::defaults("circle", data.shape, None);
    config.steps = 400;
    let opts = TrainOptions {
        device: device.clone(),
        ..Default::default()
    };
    let report = oxgen::train::diffusion::train_on(&config, &data, &opts)?;
    println!(
        "trained {} steps in memory: loss {:.3} -> {:.3}",
        report.steps, report.first_loss, report.last_loss
    );
    assert!(report.last_loss < report.first_loss);

    // 3. A sampler: DPM-Solver++(2M), 20 steps. Samples should lie near the circle.
    let s = SampleConfig {
        sampler: SamplerKind::DpmSolverPP2M,
        steps: 20,
        ..config.sample.clone()
    };
    let x = oxgen::models::diffusion::sample(&report.ema, &config.model, &s, 500, None, &device);
    let radius = x
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .sub_scalar(2.0)
        .abs()
        .mean();
    let radius = radius.into_scalar::<f32>();
    println!("DPM-Solver++(2M) samples: mean | |x| − 2 | = {radius:.3}");
    assert!(radius < 0.3, "samples are not on the circle");
    Ok(())
}
