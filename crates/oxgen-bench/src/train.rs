//! The training-step benchmark behind `oxgen bench train`: oxgen's own step (the one the
//! trainers run, optimizer and clipping included) on a named model, beside its PyTorch twin
//! (`benches/peers/twins.py`) in the same invocation.

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_train::TrainConfig;
use oxgen_train::ar::{ArTrainConfig, TextData};
use oxgen_train::trainer::parallel::DataParallel;
use oxgen_train::trainer::{StepContext, TrainStep};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::peer::{self, PeerRow};
use crate::process;

/// A benchmark model. Its twin in `twins.py` has the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// nanoGPT-style char GPT: 4 layers × 4 heads × 128, context 128, batch 32, AdamW
    /// (lr 1e-3, weight decay 0.1), clip 1, vocabulary 65.
    GptSmall,
    /// nanoGPT's shakespeare_char GPT: 6 × 6 × 384, context 256, batch 64.
    GptChar,
    /// The digits UNet at `oxgen train diffusion --data digits8`'s defaults (batch 64, EMA).
    UnetDigits,
    /// The same UNet step under DP-SGD (σ = 1, clip 1, fixed-size batches of the same size);
    /// no twin.
    UnetDigitsDp,
    /// The GPT of `oxgen train ar`'s defaults (2 layers × 4 heads × 64: head dim 16, batch and
    /// optimiser as there), on random tokens of its vocabulary; no twin.
    GptArithmetic,
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gpt-small" => Ok(Self::GptSmall),
            "gpt-char" => Ok(Self::GptChar),
            "unet-digits" => Ok(Self::UnetDigits),
            "unet-digits-dp" => Ok(Self::UnetDigitsDp),
            "gpt-arithmetic" => Ok(Self::GptArithmetic),
            _ => Err(format!(
                "unknown model `{s}`; expected gpt-small, gpt-char, gpt-arithmetic, unet-digits or unet-digits-dp"
            )),
        }
    }
}

impl Model {
    /// The name on the command line and in `twins.py`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GptSmall => "gpt-small",
            Self::GptChar => "gpt-char",
            Self::UnetDigits => "unet-digits",
            Self::UnetDigitsDp => "unet-digits-dp",
            Self::GptArithmetic => "gpt-arithmetic",
        }
    }

    /// The AR config of a GPT model (`None` for the UNet).
    pub fn gpt(self) -> Option<ArTrainConfig> {
        let (layers, heads, width, context, batch) = match self {
            Self::GptSmall => (4, 4, 128, 128, 32),
            Self::GptChar => (6, 6, 384, 256, 64),
            Self::UnetDigits | Self::UnetDigitsDp => return None,
            Self::GptArithmetic => return Some(ArTrainConfig::defaults("arithmetic")),
        };
        let model = GptConfig::new(65)
            .with_layers(layers)
            .with_heads(heads)
            .with_width(width)
            .with_context(context);
        let mut c = ArTrainConfig::new(model, "bench");
        (c.batch_size, c.lr, c.weight_decay, c.grad_clip) = (batch, 1e-3, 0.1, 1.0);
        Some(c)
    }
}

/// One side of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct TrainRow {
    /// The model.
    pub model: Model,
    /// The device, in words.
    pub device: String,
    /// Timed steps.
    pub iters: usize,
    /// Wall time per step, ms.
    pub ms_per_step: f64,
    /// Tokens (GPT) or samples (UNet) per second.
    pub per_second: f64,
    /// `tokens` or `samples`.
    pub unit: &'static str,
    /// CPU time ÷ wall time over the timed steps (Linux).
    pub cpu_per_wall: Option<f64>,
    /// Peak resident memory of this process, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// Loss of the last step (finite: the work was real).
    pub last_loss: f64,
    /// Data-parallel replicas (1: one device).
    pub devices: usize,
    /// With several devices: mean ms per timed step moving weights out and gradients back
    /// and summing them.
    pub allreduce_ms: Option<f64>,
    /// With several devices: bytes of the model's f32 parameters (one gradient all-reduce).
    pub param_bytes: Option<u64>,
}

/// The comparison: ours, the twin's, and ours ÷ theirs in throughput.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// oxgen's step.
    pub ours: TrainRow,
    /// The PyTorch twin's, if run.
    pub peer: Option<PeerRow>,
    /// Why the twin did not run, if it did not.
    pub peer_error: Option<String>,
    /// ours ÷ twin throughput.
    pub ratio: Option<f64>,
    /// The same step with every fused op on its plain-burn reference, timed in the same run
    /// (`--against-reference`).
    pub reference: Option<TrainRow>,
    /// The same step with subgroup operations off (the kernels' reductions through workgroup
    /// memory only), timed in the same run (`--against-no-subgroups`).
    pub no_subgroups: Option<TrainRow>,
    /// The same step split over several devices (`--devices`), timed in the same run.
    pub parallel: Option<TrainRow>,
    /// One device's step time ÷ (devices × their step time), from `ours` and `parallel`.
    pub scaling_efficiency: Option<f64>,
}

/// Times `iters` steps of oxgen's trainer step after `warmup` untimed ones, on `device` or,
/// when `parallel` lists several devices (the first being `device`), split over them.
pub fn ours(
    model: Model,
    device: &Device,
    description: &str,
    warmup: usize,
    iters: usize,
    parallel: &DataParallel,
) -> TrainRow {
    let ((last_loss, wall, cpu, comm, bytes), units, unit) = match model.gpt() {
        Some(c) => {
            let corpus = random_corpus(c.model.vocab);
            let c = c.fitted(&corpus).expect("the benchmark configs are valid");
            let mut s =
                oxgen_train::ar::stepper(&c, &corpus, device, parallel).expect("valid config");
            let units = c.batch_size * c.model.context;
            (measure(&mut s, None, c.lr, warmup, iters), units, "tokens")
        }
        None => {
            let digits = oxgen_train::data::digits8();
            let mut config = TrainConfig::defaults("digits8", digits.shape, Some(10));
            if model == Model::UnetDigitsDp {
                use oxgen_train::privacy::dpsgd::{DpConfig, Sampling};
                config.dp = Some(DpConfig {
                    sigma: Some(1.0),
                    clip: 1.0,
                    sampling: Sampling::FixedSize,
                    ..DpConfig::default()
                });
                config.steps = config.steps.max(warmup + iters);
            }
            let mut s = oxgen_train::diffusion::stepper(&config, &digits, device, parallel)
                .expect("valid config");
            let ema = Some(config.ema_decay);
            let timing = measure(&mut s, ema, config.lr, warmup, iters);
            (timing, config.batch_size, "samples")
        }
    };
    TrainRow {
        model,
        device: description.into(),
        iters,
        ms_per_step: 1e3 * wall / iters as f64,
        per_second: (units * iters) as f64 / wall,
        unit,
        cpu_per_wall: cpu.map(|c| c / wall),
        peak_rss_mib: process::peak_rss_mib(),
        last_loss,
        devices: parallel.devices.len().max(1),
        allreduce_ms: comm.map(|c| 1e3 * c / iters as f64),
        param_bytes: bytes,
    }
}

/// A million random tokens: the speed of a step does not depend on the text.
fn random_corpus(vocab: usize) -> TextData {
    let mut rng = StdRng::seed_from_u64(0);
    let tokens: Vec<u32> = (0..1_000_000)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let alphabet: String = (0..vocab as u32)
        .map(|i| char::from_u32(0x100 + i).expect("a character"))
        .collect();
    TextData::Corpus {
        tokenizer: oxgen_models::ar::Tokenizer::chars_of(&alphabet),
        train: tokens[..900_000].to_vec(),
        val: tokens[900_000..].to_vec(),
    }
}

/// Seconds of all-reduce so far (a data-parallel step's).
fn comm_seconds(step: &dyn TrainStep) -> Option<f64> {
    step.parallel()
        .map(|p| p.allreduce_ms * p.steps as f64 / 1e3)
}

/// (last loss, wall seconds, CPU seconds, all-reduce seconds, parameter bytes) of `iters`
/// steps after `warmup`.
fn measure(
    step: &mut dyn TrainStep,
    ema: Option<f64>,
    lr: f64,
    warmup: usize,
    iters: usize,
) -> (f64, f64, Option<f64>, Option<f64>, Option<u64>) {
    let one = |step: &mut dyn TrainStep, i: usize| {
        let out = step
            .step(StepContext {
                step: i,
                lr,
                defer: false,
            })
            .expect("a benchmark step");
        if let Some(d) = ema {
            step.update_ema(d);
        }
        out.loss
    };
    for i in 0..warmup {
        one(step, i);
    }
    let before = comm_seconds(step);
    let (loss, wall, cpu) = process::timed(|| {
        (warmup..warmup + iters)
            .map(|i| one(step, i))
            .last()
            .unwrap_or(f64::NAN)
    });
    let comm = comm_seconds(step).zip(before).map(|(a, b)| a - b);
    let bytes = step.parallel().map(|p| p.param_bytes);
    (loss, wall, cpu, comm, bytes)
}

/// The same step timed again in the same run, with something switched off.
#[derive(Clone, Copy, Debug, Default)]
pub struct Against {
    /// Every fused op on its plain-burn reference.
    pub reference: bool,
    /// Subgroup operations off (`oxgen_wgpu::subgroups::set_enabled(Some(false))`).
    pub no_subgroups: bool,
}

/// Ours, then the twin (unless `python` is `None`), one after the other in this process.
pub fn compare(
    model: Model,
    device: &Device,
    description: &str,
    warmup: usize,
    iters: usize,
    python: Option<&str>,
    against: Against,
    parallel: &DataParallel,
) -> TrainReport {
    let one = DataParallel::default();
    let fused = ours(model, device, description, warmup, iters, &one);
    let reference = against.reference.then(|| {
        use oxgen_models::ops::{OpPath, with_path};
        with_path(OpPath::Reference, || {
            ours(model, device, description, warmup, iters, &one)
        })
    });
    // Process-wide: the trainer's kernels may launch on burn's device thread.
    let no_subgroups = against.no_subgroups.then(|| {
        oxgen_wgpu::subgroups::set_enabled(Some(false));
        let row = ours(model, device, description, warmup, iters, &one);
        oxgen_wgpu::subgroups::set_enabled(None);
        row
    });
    let parallel = parallel.is_parallel().then(|| {
        let names = parallel.names.join(",");
        ours(model, device, &names, warmup, iters, parallel)
    });
    let scaling_efficiency = parallel
        .as_ref()
        .map(|p| fused.ms_per_step / (p.devices as f64 * p.ms_per_step));
    let ours = fused;
    let (peer, peer_error) = peer::run_if(
        python,
        &[
            "train",
            "--model",
            model.name(),
            "--iters",
            &iters.to_string(),
            "--warmup",
            &warmup.to_string(),
        ],
    );
    let ratio = peer.as_ref().map(|p| ours.per_second / p.per_second());
    TrainReport {
        ours,
        peer,
        peer_error,
        ratio,
        reference,
        no_subgroups,
        parallel,
        scaling_efficiency,
    }
}

impl TrainReport {
    /// The report as a Markdown table: every row (ours, the twin, the reference ops, several
    /// devices), then the ratios.
    pub fn markdown(&self) -> String {
        let o = &self.ours;
        let opt = |v: Option<f64>, p: usize| v.map_or("–".into(), |v| format!("{v:.p$}"));
        let row = |who: String, r: &TrainRow| {
            format!(
                "| {who} | {} | {:.1} | {:.0} | {} | {} |\n",
                r.model.name(),
                r.ms_per_step,
                r.per_second,
                opt(r.cpu_per_wall, 2),
                opt(r.peak_rss_mib, 0),
            )
        };
        let mut s = format!(
            "| who | model | ms/step | {}/s | CPU ÷ wall | peak RSS MiB |\n|---|---|---|---|---|---|\n",
            o.unit
        );
        s.push_str(&row(format!("oxgen ({})", o.device), o));
        if let Some(p) = &self.peer {
            s.push_str(&format!(
                "| {} ({} threads) | {} | {:.1} | {:.0} | {:.2} | {:.0} |\n",
                p.peer,
                p.threads,
                o.model.name(),
                p.ms_per_iter,
                p.per_second(),
                p.cpu_per_wall,
                p.peak_rss_mib
            ));
        }
        if let Some(r) = &self.reference {
            s.push_str(&row("oxgen, reference ops".into(), r));
        }
        if let Some(r) = &self.no_subgroups {
            s.push_str(&row("oxgen, subgroups off".into(), r));
        }
        if let Some(p) = &self.parallel {
            s.push_str(&row(
                format!("oxgen, {} devices ({})", p.devices, p.device),
                p,
            ));
        }
        if let Some(r) = &self.reference {
            s.push_str(&format!(
                "\nfused ÷ reference ops throughput (one run): {:.2}×\n",
                o.per_second / r.per_second
            ));
        }
        if let Some(r) = &self.no_subgroups {
            s.push_str(&format!(
                "\nsubgroups on ÷ off throughput (one run): {:.2}×\n",
                o.per_second / r.per_second
            ));
        }
        if let (Some(p), Some(e)) = (&self.parallel, self.scaling_efficiency) {
            s.push_str(&format!(
                "\n{} devices: all-reduce of {} MiB in {} ms/step; scaling efficiency (one device's step time ÷ ({} × theirs), one run): {:.0}%\n",
                p.devices,
                opt(p.param_bytes.map(|b| b as f64 / (1u64 << 20) as f64), 3),
                opt(p.allreduce_ms, 2),
                p.devices,
                100.0 * e
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
