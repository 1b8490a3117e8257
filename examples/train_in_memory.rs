//! Trains on the program's own data, with no files: a mixture of two Gaussian blobs made here,
//! handed to oxgen as rows, trained in memory (no run folder) with a normalizing flow, and
//! scored by its exact likelihood against the mixture's true density.
//!
//! Run: `cargo run --release --example train_in_memory`

use oxgen::prelude::*;
use rand_like::Lcg;

/// A tiny seeded generator, so the example needs no crate beyond oxgen.
mod rand_like {
    pub struct Lcg(pub u64);
    impl Lcg {
        pub fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        /// Box–Muller.
        pub fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }
}

const CENTRES: [(f64, f64); 2] = [(-1.5, 0.0), (1.5, 0.5)];
const SD: f64 = 0.3;

fn blobs(n: usize, seed: u64) -> Vec<[f32; 2]> {
    let mut r = Lcg(seed);
    (0..n)
        .map(|i| {
            let (cx, cy) = CENTRES[i % 2];
            [(cx + SD * r.normal()) as f32, (cy + SD * r.normal()) as f32]
        })
        .collect()
}

/// −log p(x) of the true mixture.
fn true_nll(p: &[f32; 2]) -> f64 {
    let density: f64 = CENTRES
        .iter()
        .map(|&(cx, cy)| {
            let d2 = (p[0] as f64 - cx).powi(2) + (p[1] as f64 - cy).powi(2);
            0.5 * (-d2 / (2.0 * SD * SD)).exp() / (std::f64::consts::TAU * SD * SD)
        })
        .sum();
    -density.ln()
}

fn main() -> Result<(), oxgen::Error> {
    let device = Device::flex();
    let train = Dataset::from_row_iter("blobs", DataShape::Vector { dim: 2 }, blobs(4000, 1))?;
    let mut config = FamilyConfig::defaults("flow", &train)?;
    config.steps = 600;
    let opts = TrainOptions {
        device: device.clone(),
        ..Default::default()
    };
    let report = oxgen::train::family::train_family_on(&config, &train, &opts)?;
    let held = blobs(2000, 2);
    let x = Dataset::from_row_iter("held-out", DataShape::Vector { dim: 2 }, held.iter())?
        .batch(&(0..held.len()).collect::<Vec<_>>(), &device);
    let model = report.model.generative();
    let nll: f64 = model
        .nll(x, 0)
        .expect("a flow has an exact likelihood")
        .mean()
        .into_scalar::<f32>() as f64;
    let truth = held.iter().map(true_nll).sum::<f64>() / held.len() as f64;
    println!(
        "flow trained in memory for {} steps: held-out NLL {nll:.3} nats ({:?}), the true density gives {truth:.3}",
        report.steps,
        model.capabilities().likelihood
    );
    assert!(
        (nll - truth).abs() < 0.25,
        "NLL {nll} is far from the truth {truth}"
    );
    Ok(())
}
