//! The command line: every subcommand's flags, as clap structs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use oxgen_models::ops::denoise::OpPath;
use oxgen_models::samplers::SamplerKind;
use oxgen_train::TrainOptions;
use oxgen_wgpu::DeviceChoice;

pub(crate) use crate::bench_args::BenchKind;
pub(crate) use crate::tune_args::TuneMethod;

#[derive(Parser)]
#[command(
    name = "oxgen",
    version,
    about = "Generation as a machine-learning task, on any GPU through wgpu."
)]
#[command(
    after_help = "Examples:\n  oxgen train diffusion --data digits8 --steps 3000 --out runs/digits\n  oxgen sample --ckpt runs/digits -n 64 --out samples/\n  oxgen eval --ckpt runs/digits\n  oxgen info"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log filter, as RUST_LOG (e.g. `info`, `oxgen_train=debug`). burn's, CubeCL's and
    /// wgpu's own info lines (autotuning) are hidden by default.
    #[arg(
        long,
        global = true,
        default_value = "info,burn=warn,cubecl=warn,wgpu=warn,naga=warn"
    )]
    pub(crate) log: String,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a model family.
    #[command(subcommand)]
    Train(Family),
    /// Post-train an autoregressive run (or, with diffusion-dpo and best-of, a diffusion run).
    #[command(subcommand)]
    Tune(TuneMethod),
    /// Draw samples from a trained run: images (samples.png, samples.npy) for diffusion; text,
    /// streamed and one sample per line, for an autoregressive run.
    #[command(
        after_help = "Examples:\n  oxgen sample --ckpt runs/digits -n 64 --class 3 --guidance 3 --out samples/\n  oxgen sample --ckpt runs/shakespeare -n 5 --max-tokens 200 --out samples.txt --prompt \"ROMEO:\"\n  oxgen sample --ckpt runs/sums -n 3 --prompt 12+34= --temperature 0"
    )]
    Sample(SampleArgs),
    /// The exact negative log-likelihood of a text under an autoregressive run, in total and in
    /// bits per character.
    #[command(
        after_help = "Examples:\n  oxgen logprob --ckpt runs/shakespeare --text \"To be, or not to be\"\n  oxgen logprob --ckpt runs/shakespeare --file hamlet.txt --json nll.json"
    )]
    Logprob(LogprobArgs),
    /// Compresses a file with a model's predictions (constriction's coders): a text file with a
    /// byte or character run, a .npy of 8×8 digits with the pixel GPT (range coding) or the
    /// digits VAE (bits-back). Prints bits per symbol, the model's NLL (or negative ELBO), and
    /// gzip, bzip2 and xz beside them.
    #[command(
        after_help = "Examples:\n  oxgen compress --ckpt runs/chars held-out.txt held-out.oxgz\n  oxgen decompress --ckpt runs/chars held-out.oxgz held-out.txt"
    )]
    Compress(crate::compress::CompressArgs),
    /// Tests text for a KGW or tournament watermark (z, the normal and the exact p-value, the
    /// tokens scored, per file or per line), or a diffusion run's images for Tree-Ring (--ckpt).
    #[command(
        after_help = "Examples:\n  oxgen sample --ckpt runs/shakespeare -n 4 --watermark kgw --key wm.key --out marked.txt\n  oxgen detect --key wm.key --tokenizer runs/shakespeare --lines marked.txt\n  oxgen detect --scheme tournament --key wm.key --tokenizer runs/shakespeare --lines t.txt\n  oxgen detect --key wm.key --ckpt runs/digits marked/samples.npy\n\nA key file holds 32 hexadecimal digits (128 bits), e.g. from `openssl rand -hex 16`."
    )]
    Detect(crate::detect::DetectArgs),
    /// Measures a text watermark (KGW or tournament) with a text run: the false-positive rate
    /// at z ≥ 4 on windows of a human text and the run's unwatermarked samples (p-value
    /// histograms and Kolmogorov–Smirnov tests, one key and a key per text), the share of
    /// watermarked samples detected by length, attacks, and the quality cost; or Tree-Ring with
    /// a diffusion run (AUC per attack, FD and accuracy).
    #[command(
        name = "watermark-eval",
        after_help = "Examples:\n  oxgen watermark-eval --key wm.key --ckpt runs/shakespeare --text input.txt --tradeoff 300 --out runs/wm-eval\n  oxgen watermark-eval --scheme tree-ring --key wm.key --ckpt runs/digits --images 200 --out runs/tr"
    )]
    WatermarkEval(crate::detect::WatermarkEvalArgs),
    /// Differential privacy accounting: ε of DP-SGD's noise and sampling (RDP, PRV or GDP), or
    /// the noise multiplier that reaches a target ε.
    #[command(subcommand)]
    Privacy(crate::privacy::PrivacyCommand),
    /// Privacy audits: membership inference (loss threshold and LiRA) against a VAE recipe.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Generation in the limit: an adversary enumerates a target language of a collection,
    /// a generator answers each string with a new one (docs/generation-in-the-limit.md).
    Limit(crate::limit::LimitArgs),
    /// Decompresses what `oxgen compress` wrote, with the same run; refuses another run, a
    /// corrupt or truncated file, and checks the original's CRC-32 before writing.
    Decompress(crate::compress::DecompressArgs),
    /// Evaluate a trained run on held-out data: its likelihood, labelled exact, bound or none
    /// (VAE, flow, GAN), and SWD and MMD against held-out data with their floors.
    #[command(after_help = "Example:\n  oxgen eval --ckpt runs/moons -n 2000")]
    Eval(EvalArgs),
    /// Train (or reuse) every family with its default config on the same data and split, and
    /// compare them: likelihood (exact, bound or none), SWD/MMD with floors, precision, recall,
    /// density, coverage, memorization, cost. Writes report.md, report.json, grids and pr.png.
    #[command(
        after_help = "Examples:\n  oxgen compare --data digits8 --out runs/compare-digits\n  oxgen compare --data 8gaussians --out runs/compare-8g --families flow,vae,gan"
    )]
    Compare(CompareArgs),
    /// Write a run's weights to a safetensors file (tensor names as in the model; the run's
    /// manifest in the metadata). Diffusion runs export their EMA weights.
    #[command(
        after_help = "Examples:\n  oxgen export --ckpt runs/digits --out digits.safetensors\n  oxgen export --ckpt runs/sums --out sums.safetensors --list"
    )]
    Export(ExportArgs),
    /// Make a run folder from a file `oxgen export` wrote (to sample and evaluate it).
    #[command(
        after_help = "Example:\n  oxgen import --file digits.safetensors --out runs/digits-copy"
    )]
    Import(ImportArgs),
    /// List wgpu adapters, their kernel limits, and the CPU fallback.
    Info,
    /// A first look in well under a minute: train a diffusion model on two moons, sample,
    /// score and draw it (runs/tour/samples.png).
    #[command(after_help = "Example:\n  oxgen tour\n  oxgen tour --out /tmp/tour --device cpu")]
    Tour(crate::tour::TourArgs),
    /// Benchmark kernels on this machine's GPU.
    #[command(subcommand)]
    Bench(BenchKind),
}

#[derive(Subcommand)]
pub(crate) enum Family {
    /// Denoising diffusion (DDPM/DDIM, ε- or v-prediction, classifier-free guidance).
    #[command(
        after_help = "Examples:\n  oxgen train diffusion --data digits8 --steps 3000 --out runs/digits\n  oxgen train diffusion --data moons --out runs/moons --device cpu\n  oxgen train diffusion --data mnist-images-idx3-ubyte.gz --config unet.toml --out runs/mnist\n  oxgen train diffusion --out runs/digits --resume\n\nBuilt-in data: moons, 8gaussians, checkerboard, swissroll, rings, pinwheel, digits8."
    )]
    Diffusion(TrainArgs),
    /// Autoregressive GPT (next-token prediction, exact likelihood). --data arithmetic (default,
    /// embedded sums such as 37+58, scored by held-out exact match) or a text file (character
    /// tokenizer; configs/shakespeare_char.toml is nanoGPT's setup).
    #[command(
        after_help = "Examples:\n  oxgen train ar --out runs/sums\n  oxgen train ar --data input.txt --config configs/shakespeare_char.toml --out runs/shakespeare\n  oxgen train ar --out runs/sums --resume"
    )]
    Ar(TrainArgs),
    /// Variational autoencoder (Gaussian encoder; Gaussian, discretized-logistic or Bernoulli
    /// decoder; MLP or conv). Reports the ELBO and the IWAE bound: a likelihood bound.
    #[command(
        after_help = "Examples:\n  oxgen train vae --data digits8 --out runs/vae-digits\n  oxgen train vae --data moons --out runs/vae-moons"
    )]
    Vae(TrainArgs),
    /// Normalizing flow (ActNorm, invertible 1×1 conv, affine or spline couplings; multiscale
    /// for images). Exact likelihood (a dequantization bound on discrete pixels).
    #[command(
        after_help = "Examples:\n  oxgen train flow --data 8gaussians --out runs/flow-8g\n  oxgen train flow --data digits8 --out runs/flow-digits"
    )]
    Flow(TrainArgs),
    /// Generative adversarial network (non-saturating or Wasserstein loss, R1 or gradient
    /// penalty, spectral norm; MLP or DCGAN). Samples only: no likelihood.
    #[command(
        after_help = "Examples:\n  oxgen train gan --data 8gaussians --out runs/gan-8g\n  oxgen train gan --data digits8 --out runs/gan-digits"
    )]
    Gan(TrainArgs),
}

#[derive(Args)]
pub(crate) struct DeviceArgs {
    /// auto | wgpu | vulkan | metal | dx12 | cpu. `auto` takes the best hardware GPU, else the CPU.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceChoice,
    /// Which implementation the fused ops (denoising update, GroupNorm+SiLU, attention) run:
    /// auto | reference | fused. `fused` fails up front when no kernel takes the device, and at
    /// the end when an input had no kernel (attention head dims past 256); kernels.json says
    /// what ran.
    #[arg(long, default_value = "auto", value_parser = parse_path)]
    pub(crate) op_path: OpPath,
}

pub(crate) fn parse_path(s: &str) -> Result<OpPath, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("expected auto, reference or fused, got `{s}`"))
}

/// The device of a train or tune command, and its data-parallel replicas: those `--devices`
/// lists (the first holds the weights), else `--device` alone.
pub(crate) fn select_devices(
    devices: Option<&str>,
    device: &DeviceArgs,
) -> anyhow::Result<(
    burn::tensor::Device,
    oxgen_train::trainer::parallel::DataParallel,
)> {
    let mut parallel = oxgen_train::trainer::parallel::DataParallel::default();
    let Some(spec) = devices else {
        return Ok((crate::device(device)?, parallel));
    };
    oxgen_models::ops::denoise::set_path(device.op_path);
    for (name, selected) in oxgen_wgpu::devices::select_many(spec)? {
        oxgen_models::ops::check_path(device.op_path, &selected.device)
            .map_err(anyhow::Error::msg)?;
        tracing::info!("device {name}: {}", selected.description);
        parallel.devices.push(selected.device);
        parallel.names.push(name);
    }
    Ok((parallel.devices[0].clone(), parallel))
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Dataset: a built-in name or a path (IDX file, PNG folder, CSV file). Default: digits8.
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Run folder (config, metrics, loss curve, samples, checkpoints).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// `oxgen train ar` on a text file: chars (its characters) or bytes (256 byte values).
    #[arg(long)]
    pub(crate) tokenizer: Option<String>,
    /// A TOML or JSON file overriding any config fields.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Seed of every random draw.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Batch size.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Read the loss back every N steps (default: every step on the CPU, where it costs
    /// nothing; every 16 on a GPU, which then need not drain its queue after each step). Past
    /// 1, a non-finite loss stops the run at the next read instead of skipping the step.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) sync_every: Option<u64>,
    /// `f16`: mixed-precision training (f16 activations, f32 master weights, dynamic loss
    /// scaling) on a device with f16 (a wgpu adapter with shader-f16, or the CPU); `f32`
    /// (default). `oxgen train ar` only, for now.
    #[arg(long, value_name = "f32|f16")]
    pub(crate) precision: Option<oxgen_models::Precision>,
    /// Data-parallel training: one replica per device, each on a disjoint shard of every
    /// global batch, gradients summed before each step (wgpu:0,wgpu:1 | cpu:0,cpu:1 | all;
    /// `oxgen info` numbers the wgpu adapters). Every family but the GAN, for now.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub(crate) devices: Option<String>,
    #[command(flatten)]
    pub(crate) dp: DpArgs,
    #[command(flatten)]
    pub(crate) shards: crate::copyright::ShardArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

impl TrainArgs {
    /// How to run: the run folder, resume, the device, and the progress bar (on one device;
    /// [`TrainArgs::devices`] gives the replicas of `--devices`).
    pub(crate) fn options(&self, device: burn::tensor::Device) -> TrainOptions {
        TrainOptions {
            out: Some(self.out.clone()),
            resume: self.resume,
            device,
            progress: !self.quiet,
            stop_after: None,
            skip_eval: false,
            sync_every: self.sync_every.map(|n| n as usize),
            parallel: Default::default(),
        }
    }

    /// The run's device and options: on `--devices` when given (the first holds the weights),
    /// else on `--device`.
    pub(crate) fn devices(&self) -> anyhow::Result<(burn::tensor::Device, TrainOptions)> {
        let (device, parallel) = select_devices(self.devices.as_deref(), &self.device)?;
        let mut opts = self.options(device.clone());
        opts.parallel = parallel;
        Ok((device, opts))
    }

    /// Refuses `--devices` with more than one device for a command that trains on one.
    pub(crate) fn one_device(&self, what: &str) -> anyhow::Result<()> {
        match &self.devices {
            Some(spec) if spec.contains(',') || spec.trim().eq_ignore_ascii_case("all") => {
                anyhow::bail!("--devices: {what} trains on one device for now; use --device")
            }
            _ => Ok(()),
        }
    }
}

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// A run folder or a checkpoint folder.
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// Number of samples.
    #[arg(short, long, default_value_t = 64)]
    pub(crate) n: usize,
    /// Output folder.
    #[arg(long, default_value = "samples")]
    pub(crate) out: PathBuf,
    /// Sample this class only (conditional models).
    #[arg(long)]
    pub(crate) class: Option<u32>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    #[command(flatten)]
    pub(crate) text: TextSamplingArgs,
    #[command(flatten)]
    pub(crate) naf: crate::copyright::NafArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

/// Decoding options of autoregressive runs (`--out` is then a text file, or a folder that gets
/// samples.txt).
#[derive(Args)]
pub(crate) struct TextSamplingArgs {
    /// Text every sample starts from (default: a line start).
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// New tokens per sample.
    #[arg(long, default_value_t = 200)]
    pub(crate) max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub(crate) temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability (1: all).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) top_p: f32,
    /// CTRL repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repetition_penalty: f32,
    /// Stop a sample after this text (repeatable).
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// Draw this many candidates for each sample and keep the one --reward ranks highest.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) best_of: u64,
    /// The ranking for --best-of: model:RUN (a reward model), arithmetic, regex:PATTERN or
    /// pairs:FILE for autoregressive runs; classifier (the evaluation classifier's confidence
    /// in the class, cached in --out) for class-conditional diffusion runs.
    #[arg(long)]
    pub(crate) reward: Option<String>,
    /// Watermark every token, keyed by --key: `kgw` (Kirchenbauer et al., 2023: δ on a green
    /// list) or `tournament` (SynthID-Text's tournament sampling, distortion-free; --layers).
    /// On a diffusion run: `tree-ring` (Wen et al., 2023: rings in the initial noise's
    /// spectrum; --radius).
    #[arg(long, requires = "key", value_parser = ["kgw", "tournament", "tree-ring"])]
    pub(crate) watermark: Option<String>,
    #[command(flatten)]
    pub(crate) kgw: crate::detect::KgwArgs,
    /// Past the context window, condition every token on exactly the last `context` tokens.
    /// Rotary models always do, at no cost; a model with learned positions then re-encodes the
    /// window at every token (slow) instead of half a window each time the text outgrows it.
    #[arg(long)]
    pub(crate) exact_window: bool,
}

#[derive(Args)]
pub(crate) struct LogprobArgs {
    /// An autoregressive run or checkpoint folder.
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// The text to score.
    #[arg(long, conflicts_with = "file")]
    pub(crate) text: Option<String>,
    /// A file whose text to score.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) naf: crate::copyright::NafArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

/// Overrides of the run's sampling config.
#[derive(Args)]
pub(crate) struct SamplingArgs {
    /// Guidance scale (conditional models); 1 = none.
    #[arg(long)]
    pub(crate) guidance: Option<f32>,
    /// ddpm | ddim | euler_ancestral | dpm_solver_pp2m.
    #[arg(long)]
    pub(crate) sampler: Option<SamplerKind>,
    /// Inference steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// DDIM η.
    #[arg(long)]
    pub(crate) eta: Option<f64>,
    /// Dynamic thresholding of x̂₀ at this percentile of |x̂₀| per sample (Imagen: 0.995).
    #[arg(long, value_name = "P")]
    pub(crate) dynamic_threshold: Option<f32>,
    /// Noise seed.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

impl SamplingArgs {
    pub(crate) fn apply(
        &self,
        mut s: oxgen_models::SampleConfig,
        timesteps: usize,
    ) -> Result<oxgen_models::SampleConfig> {
        if let Some(v) = self.guidance {
            s.guidance = v;
        }
        if let Some(v) = self.sampler {
            s.sampler = v;
        }
        if let Some(v) = self.steps {
            s.steps = v;
        }
        if let Some(v) = self.eta {
            s.eta = v;
        }
        if let Some(p) = self.dynamic_threshold {
            if !(0.0..=1.0).contains(&p) {
                bail!("--dynamic-threshold takes a percentile in [0, 1], got {p}");
            }
            s.dynamic_threshold = Some(p);
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if s.steps == 0 || s.steps > timesteps {
            bail!("--steps must be in 1..={timesteps}");
        }
        Ok(s)
    }
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// Dataset: a built-in name or a path.
    #[arg(long, default_value = "digits8")]
    pub(crate) data: String,
    /// Output folder (one run folder per family inside; finished runs are reused).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Families to run, comma-separated (default: diffusion,ar,flow,vae,gan).
    #[arg(long, value_delimiter = ',')]
    pub(crate) families: Vec<String>,
    /// Seed of the split, the runs and the samples.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Hide the progress bars.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// A run folder or a checkpoint folder.
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// Samples to compare (cut to the held-out size for image data).
    #[arg(short, long)]
    pub(crate) n: Option<usize>,
    /// Where samples.png and quality.json go (default: the checkpoint's run folder/eval).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Evaluate on this dataset instead of the run's own (rows of the same shape).
    #[arg(long)]
    pub(crate) data: Option<String>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// A run folder or a checkpoint folder.
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Print every tensor's name and shape.
    #[arg(long)]
    pub(crate) list: bool,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// A safetensors file written by `oxgen export`.
    #[arg(long)]
    pub(crate) file: PathBuf,
    /// The run folder to make (it must not hold a run).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Differentially private training (DP-SGD; `oxgen train vae`, `flow`, `gan`, `diffusion` and `ar`).
#[derive(Args, Clone, Debug)]
pub(crate) struct DpArgs {
    /// Train with DP-SGD to this ε (the noise multiplier σ is found for the run's steps, as
    /// Opacus's make_private_with_epsilon); with --dp-sigma, a budget the run refuses to exceed.
    #[arg(long, help_heading = "Differential privacy")]
    pub(crate) dp_epsilon: Option<f64>,
    /// δ of the guarantee; must be below 1/N.
    #[arg(long, default_value_t = 1e-5, help_heading = "Differential privacy")]
    pub(crate) dp_delta: f64,
    /// Per-sample gradient clipping norm C.
    #[arg(long, default_value_t = 1.0, help_heading = "Differential privacy")]
    pub(crate) dp_clip: f64,
    /// Train with DP-SGD at this noise multiplier σ instead of a target ε.
    #[arg(long, help_heading = "Differential privacy")]
    pub(crate) dp_sigma: Option<f64>,
    /// The accountant: rdp, prv or gdp.
    #[arg(long, default_value = "rdp", value_parser = ["rdp", "prv", "gdp"], help_heading = "Differential privacy")]
    pub(crate) dp_accountant: String,
    /// Fixed-size shuffled batches instead of Poisson sampling (the accountants assume Poisson
    /// sampling; the report labels the run).
    #[arg(long, help_heading = "Differential privacy")]
    pub(crate) dp_fixed_size: bool,
}

impl DpArgs {
    /// The DP config these flags ask for: none unless --dp-epsilon or --dp-sigma is given.
    pub(crate) fn config(&self) -> anyhow::Result<Option<oxgen_train::privacy::dpsgd::DpConfig>> {
        use oxgen_train::privacy::dpsgd::{DpConfig, Sampling};
        if self.dp_epsilon.is_none() && self.dp_sigma.is_none() {
            return Ok(None);
        }
        Ok(Some(DpConfig {
            epsilon: self.dp_epsilon,
            delta: self.dp_delta,
            clip: self.dp_clip,
            sigma: self.dp_sigma,
            accountant: self.dp_accountant.parse()?,
            sampling: if self.dp_fixed_size {
                Sampling::FixedSize
            } else {
                Sampling::Poisson
            },
        }))
    }
}
