//! The denoising-update benchmark shared by `oxgen bench denoise` and `benches/denoise.rs`:
//! fused kernel against the plain-burn reference (burn's fused default path) on the same
//! device, in the same run, with the device's copy rate as the roofline.
//!
//! Every output is kept alive: each iteration's result feeds the next one's input, and the device
//! is synchronised after every update, as a sampler's model forward would force. Without that,
//! burn's fusion merges the whole chain of reference updates into one kernel (and drops work
//! whose result nobody reads), which no real sampler can do.

use std::time::Instant;

use burn::tensor::{Device, Tensor};
use oxgen_models::ops::denoise::{
    DenoiseInput, FusedDenoise, Noise, StepCoeffs, denoise_step_reference,
};
use serde::Serialize;

use crate::denoise::WgslDenoise;

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Update family.
    pub update: String,
    /// Elements per update.
    pub n: usize,
    /// Bytes one update must move (read inputs + write x_{t−1}).
    pub bytes: usize,
    /// Fused kernel, median milliseconds per update.
    pub fused_ms: f64,
    /// Reference path, milliseconds per update.
    pub reference_ms: f64,
    /// Fused effective bandwidth, GB/s.
    pub fused_gbps: f64,
    /// Reference effective bandwidth, GB/s.
    pub reference_gbps: f64,
    /// reference_ms / fused_ms.
    pub speedup: f64,
    /// Copy bandwidth (read n + write n floats) measured in the same run, GB/s.
    pub copy_gbps: f64,
    /// fused_gbps / copy_gbps.
    pub roofline_fraction: f64,
}

/// The update families, with what each reads besides x_t and the model output.
pub fn families() -> Vec<(&'static str, StepCoeffs, bool, bool)> {
    let c = StepCoeffs {
        guidance: 1.0,
        px: 1.2,
        po: -0.6,
        clip: None,
        cx: 0.9,
        c0: 0.3,
        cp: 0.0,
        sigma: 0.1,
    };
    vec![
        ("ddpm", c, false, false),
        ("ddim(eta=0)", StepCoeffs { sigma: 0.0, ..c }, false, false),
        (
            "euler_ancestral+cfg",
            StepCoeffs { guidance: 3.0, ..c },
            true,
            false,
        ),
        (
            "dpm++2m",
            StepCoeffs {
                sigma: 0.0,
                cp: -0.2,
                ..c
            },
            false,
            true,
        ),
    ]
}

fn time<F: FnMut(Tensor<1>) -> Tensor<1>>(
    device: &Device,
    x: Tensor<1>,
    iters: usize,
    mut f: F,
) -> f64 {
    let mut cur = f(x.clone()); // warm-up: compiles the kernels
    let _ = cur.clone().slice([0..1]).into_data();
    device.sync().expect("device sync");
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        cur = f(cur);
        device.sync().expect("device sync");
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let _ = cur.slice([0..1]).into_data();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs the benchmark on `device` for element counts `sizes`, `iters` timed updates each.
pub fn run(device: &Device, sizes: &[usize], iters: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in sizes {
        let x = Tensor::<1>::random([n], burn::tensor::Distribution::Normal(0.0, 1.0), device);
        let other = Tensor::<1>::random([n], burn::tensor::Distribution::Normal(0.0, 1.0), device);
        let copy_ms = time(device, x.clone(), iters, |t| t.add_scalar(1.0));
        let copy_gbps = (8 * n) as f64 / copy_ms / 1e6;
        for (name, c, guided, prev) in families() {
            // The multistep solver's x̂₀ is the next update's previous x̂₀, so it is consumed
            // (and cannot be dropped by fusion) on both paths.
            let prev_state = std::cell::RefCell::new(other.clone());
            let input = |t: Tensor<1>| DenoiseInput {
                x: t,
                out: other.clone(),
                uncond: guided.then(|| other.clone()),
                prev_x0: prev.then(|| prev_state.borrow().clone()),
                want_x0: prev,
            };
            let noise = || {
                if c.sigma > 0.0 {
                    Noise::Seeded { seed: 1, stream: 0 }
                } else {
                    Noise::None
                }
            };
            let keep = |r: oxgen_models::ops::denoise::DenoiseOutput| {
                if prev {
                    *prev_state.borrow_mut() = r.x0;
                }
                r.x
            };
            let fused_ms = time(device, x.clone(), iters, |t| {
                keep(WgslDenoise.step(input(t), c, noise()))
            });
            let reference_ms = time(device, x.clone(), iters, |t| {
                keep(denoise_step_reference(input(t), c, noise()))
            });
            // Must move: x, out, optional uncond and prev, x_{t−1}, and x̂₀ for the multistep
            // solver; the noise is generated.
            let bytes = 4 * n * (3 + guided as usize + 2 * prev as usize);
            let fused_gbps = bytes as f64 / fused_ms / 1e6;
            rows.push(Row {
                update: name.into(),
                n,
                bytes,
                fused_ms,
                reference_ms,
                fused_gbps,
                reference_gbps: bytes as f64 / reference_ms / 1e6,
                speedup: reference_ms / fused_ms,
                copy_gbps,
                roofline_fraction: fused_gbps / copy_gbps,
            });
        }
    }
    rows
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| update | n | fused ms | reference ms | speed-up | fused GB/s | reference GB/s | copy GB/s | of copy |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.2}× | {:.1} | {:.1} | {:.1} | {:.0}% |\n",
            r.update,
            r.n,
            r.fused_ms,
            r.reference_ms,
            r.speedup,
            r.fused_gbps,
            r.reference_gbps,
            r.copy_gbps,
            100.0 * r.roofline_fraction
        ));
    }
    s
}
