//! The sampling benchmark behind `oxgen bench ddim`: the digits UNet (untrained, at the
//! `train diffusion --data digits8` defaults) drawing `batch` samples with DDIM in `steps`
//! steps, classifier-free guidance 2 in one doubled batch, beside the PyTorch twin.

use burn::tensor::Device;
use oxgen_models::DataShape;
use oxgen_train::TrainConfig;
use serde::Serialize;

use crate::peer::{self, PeerRow};
use crate::process;

/// One comparison.
#[derive(Clone, Debug, Serialize)]
pub struct SampleReport {
    /// The device, in words.
    pub device: String,
    /// Samples drawn.
    pub batch: usize,
    /// Sampler steps.
    pub steps: usize,
    /// Wall time of one full draw, ms.
    pub ms: f64,
    /// Samples per second.
    pub samples_per_s: f64,
    /// CPU time ÷ wall time (Linux).
    pub cpu_per_wall: Option<f64>,
    /// The PyTorch twin, if run.
    pub peer: Option<PeerRow>,
    /// Why the twin did not run, if it did not.
    pub peer_error: Option<String>,
    /// ours ÷ twin samples per second.
    pub ratio: Option<f64>,
}

/// Times one draw after a warm-up draw, then the twin (unless `python` is `None`).
pub fn ddim(
    device: &Device,
    description: &str,
    batch: usize,
    steps: usize,
    python: Option<&str>,
) -> SampleReport {
    let shape = DataShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    let mut config = TrainConfig::defaults("digits8", shape, Some(10));
    config.sample.steps = steps;
    device.seed(0);
    let model = config.model.init(shape, device);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let draw = || {
        let x = oxgen_models::diffusion::sample(
            &model,
            &config.model,
            &config.sample,
            batch,
            Some(&labels),
            device,
        );
        x.into_data()
    };
    draw();
    let (_, wall, cpu) = process::timed(draw);
    let (peer, peer_error) = peer::run_if(
        python,
        &[
            "ddim",
            "--batch",
            &batch.to_string(),
            "--steps",
            &steps.to_string(),
            "--iters",
            "1",
        ],
    );
    let samples_per_s = batch as f64 / wall;
    let ratio = peer.as_ref().map(|p| samples_per_s / p.per_second());
    SampleReport {
        device: description.into(),
        batch,
        steps,
        ms: wall * 1e3,
        samples_per_s,
        cpu_per_wall: cpu.map(|c| c / wall),
        peer,
        peer_error,
        ratio,
    }
}

impl SampleReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| who | batch | DDIM steps | ms | samples/s |\n|---|---|---|---|---|\n| oxgen ({}) | {} | {} | {:.1} | {:.1} |\n",
            self.device, self.batch, self.steps, self.ms, self.samples_per_s
        );
        if let Some(p) = &self.peer {
            s.push_str(&format!(
                "| {} ({} threads) | {} | {} | {:.1} | {:.1} |\n",
                p.peer,
                p.threads,
                self.batch,
                self.steps,
                p.ms_per_iter,
                p.per_second()
            ));
        }
        match (self.ratio, &self.peer_error) {
            (Some(r), _) => s.push_str(&format!("\noxgen ÷ PyTorch throughput: {r:.2}×\n")),
            (None, Some(e)) => s.push_str(&format!("\nPyTorch twin not run: {e}\n")),
            _ => {}
        }
        s
    }
}
