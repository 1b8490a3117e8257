//! `oxgen`: train, sample, evaluate and inspect generative models.

use std::path::PathBuf;

/// Applies the flags every trainer shares (`--steps`, `--seed`, `--batch-size`, `--lr`) to a
/// run config with fields of those names.
macro_rules! apply_train_flags {
    ($config:expr, $a:expr) => {{
        if let Some(v) = $a.steps {
            $config.steps = v;
        }
        if let Some(v) = $a.seed {
            $config.seed = v;
        }
        if let Some(v) = $a.batch_size {
            $config.batch_size = v;
        }
        if let Some(v) = $a.lr {
            $config.lr = v;
        }
    }};
}

mod ar;
mod family;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use oxgen_models::ops::denoise::{self, OpPath};
use oxgen_models::samplers::SamplerKind;
use oxgen_train::TrainConfig;
use oxgen_train::TrainOptions;
use oxgen_train::diffusion::train;
use oxgen_wgpu::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "oxgen",
    version,
    about = "Generation as a machine-learning task, on any GPU through wgpu."
)]
#[command(
    after_help = "Examples:\n  oxgen train diffusion --data digits8 --steps 3000 --out runs/digits\n  oxgen sample --ckpt runs/digits -n 64 --out samples/\n  oxgen eval --ckpt runs/digits\n  oxgen info"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter, as RUST_LOG (e.g. `info`, `oxgen_train=debug`). burn's, CubeCL's and
    /// wgpu's own info lines (autotuning) are hidden by default.
    #[arg(
        long,
        global = true,
        default_value = "info,burn=warn,cubecl=warn,wgpu=warn,naga=warn"
    )]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model family.
    #[command(subcommand)]
    Train(Family),
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
    /// List wgpu adapters, their kernel limits, and the CPU fallback.
    Info,
    /// Benchmark kernels on this machine's GPU.
    #[command(subcommand)]
    Bench(BenchKind),
}

#[derive(Subcommand)]
enum BenchKind {
    /// The fused denoising update against burn's reference path with fusion on and off, with the
    /// copy rate as roofline, and whole-sampler wall times (UNet forward included). Prints
    /// Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench denoise --json denoise.json\n  oxgen bench denoise --sizes 10000,1000000 --no-sampler\n\nSizes past the adapter's storage-binding limit are skipped and listed."
    )]
    Denoise(BenchArgs),
    /// Our flash attention (WGSL, forward and backward) against burn's `attention` and
    /// `attention_fallback`, in ms and TFLOP/s. Prints Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench attention --seq 1024,2048,4096 --json attention.json\n  oxgen bench attention --seq 128,256 --batch 1 --heads 4 --causal\n  oxgen bench attention --seq 16384 --batch 1 --heads 8 --iters 1 --no-peers   (memory grows with L)"
    )]
    Attention(AttentionBenchArgs),
    /// GPT decoding with the KV cache against re-running the window each step: same model
    /// (nanoGPT's shakespeare_char shape by default, random weights), same run, greedy, tokens
    /// checked equal. Prints Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench decode\n  oxgen bench decode --new-tokens 512 --device wgpu --json decode.json"
    )]
    Decode(DecodeBenchArgs),
}

#[derive(Args)]
struct DecodeBenchArgs {
    /// Tokens to generate.
    #[arg(long, default_value_t = 256)]
    new_tokens: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 1)]
    prompt: usize,
    /// Blocks.
    #[arg(long, default_value_t = 6)]
    layers: usize,
    /// Heads.
    #[arg(long, default_value_t = 6)]
    heads: usize,
    /// Width.
    #[arg(long, default_value_t = 384)]
    width: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 65)]
    vocab: usize,
    /// Write the row as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 | cpu.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

#[derive(Args)]
struct AttentionBenchArgs {
    /// Sequence lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024, 2048, 4096])]
    seq: Vec<usize>,
    /// Batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Heads.
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Head dim: 32, 64 or 128.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Causal mask.
    #[arg(long)]
    causal: bool,
    /// f16 storage (f32 arithmetic) for q, k, v and the results, where the adapter has
    /// shader-f16.
    #[arg(long)]
    f16: bool,
    /// Run only ours (for lengths where burn's L×L buffers cannot exist).
    #[arg(long)]
    no_peers: bool,
    /// Timed calls per measurement.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 (a wgpu device is required).
    #[arg(long, default_value = "wgpu")]
    device: DeviceChoice,
}

#[derive(Args)]
struct BenchArgs {
    /// Element counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000, 10_000_000, 100_000_000])]
    sizes: Vec<usize>,
    /// Timed updates per measurement.
    #[arg(long, default_value_t = 30)]
    iters: usize,
    /// Skip the whole-sampler timings (1,000-step DDPM and 50-step DDIM with the UNet).
    #[arg(long)]
    no_sampler: bool,
    /// Images per whole-sampler run.
    #[arg(long, default_value_t = 64)]
    sampler_batch: usize,
    /// Philox's products from 16-bit halves even where the adapter has shader-int64 (to compare
    /// the two; they give the same noise).
    #[arg(long)]
    philox16: bool,
    /// Image shape for the whole-sampler runs, as C,H,W.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8, 8])]
    sampler_shape: Vec<usize>,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 (a wgpu device is required).
    #[arg(long, default_value = "wgpu")]
    device: DeviceChoice,
}

#[derive(Subcommand)]
enum Family {
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
struct DeviceArgs {
    /// auto | wgpu | vulkan | metal | dx12 | cpu. `auto` takes the best hardware GPU, else the CPU.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Which implementation the fused ops (denoising update, GroupNorm+SiLU, attention) run:
    /// auto | reference | fused. `fused` fails when no kernel takes the device; inputs a kernel
    /// has no variant for (attention head dims other than 32, 64, 128) take the reference.
    #[arg(long, default_value = "auto", value_parser = parse_path)]
    op_path: OpPath,
}

fn parse_path(s: &str) -> Result<OpPath, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("expected auto, reference or fused, got `{s}`"))
}

#[derive(Args)]
struct TrainArgs {
    /// Dataset: a built-in name or a path (IDX file, PNG folder, CSV file). Default: digits8.
    #[arg(long)]
    data: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Run folder (config, metrics, loss curve, samples, checkpoints).
    #[arg(long)]
    out: PathBuf,
    /// A TOML or JSON file overriding any config fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of every random draw.
    #[arg(long)]
    seed: Option<u64>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl TrainArgs {
    /// How to run: the run folder, resume, the device, and the progress bar.
    fn options(&self, device: burn::tensor::Device) -> TrainOptions {
        TrainOptions {
            out: Some(self.out.clone()),
            resume: self.resume,
            device,
            progress: !self.quiet,
            stop_after: None,
            skip_eval: false,
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    /// A run folder or a checkpoint folder.
    #[arg(long)]
    ckpt: PathBuf,
    /// Number of samples.
    #[arg(short, long, default_value_t = 64)]
    n: usize,
    /// Output folder.
    #[arg(long, default_value = "samples")]
    out: PathBuf,
    /// Sample this class only (conditional models).
    #[arg(long)]
    class: Option<u32>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    text: TextSamplingArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Decoding options of autoregressive runs (`--out` is then a text file, or a folder that gets
/// samples.txt).
#[derive(Args)]
struct TextSamplingArgs {
    /// Text every sample starts from (default: a line start).
    #[arg(long)]
    prompt: Option<String>,
    /// New tokens per sample.
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability (1: all).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// CTRL repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Stop a sample after this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

#[derive(Args)]
struct LogprobArgs {
    /// An autoregressive run or checkpoint folder.
    #[arg(long)]
    ckpt: PathBuf,
    /// The text to score.
    #[arg(long, conflicts_with = "file")]
    text: Option<String>,
    /// A file whose text to score.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Also write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Overrides of the run's sampling config.
#[derive(Args)]
struct SamplingArgs {
    /// Guidance scale (conditional models); 1 = none.
    #[arg(long)]
    guidance: Option<f32>,
    /// ddpm | ddim | euler_ancestral | dpm_solver_pp2m.
    #[arg(long)]
    sampler: Option<SamplerKind>,
    /// Inference steps.
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM η.
    #[arg(long)]
    eta: Option<f64>,
    /// Dynamic thresholding of x̂₀ at this percentile of |x̂₀| per sample (Imagen: 0.995).
    #[arg(long, value_name = "P")]
    dynamic_threshold: Option<f32>,
    /// Noise seed.
    #[arg(long)]
    seed: Option<u64>,
}

impl SamplingArgs {
    fn apply(
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
struct CompareArgs {
    /// Dataset: a built-in name or a path.
    #[arg(long, default_value = "digits8")]
    data: String,
    /// Output folder (one run folder per family inside; finished runs are reused).
    #[arg(long)]
    out: PathBuf,
    /// Families to run, comma-separated (default: diffusion,ar,flow,vae,gan).
    #[arg(long, value_delimiter = ',')]
    families: Vec<String>,
    /// Seed of the split, the runs and the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// A run folder or a checkpoint folder.
    #[arg(long)]
    ckpt: PathBuf,
    /// Samples to compare (cut to the held-out size for image data).
    #[arg(short, long)]
    n: Option<usize>,
    /// Where samples.png and quality.json go (default: the checkpoint's run folder/eval).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Evaluate on this dataset instead of the run's own (rows of the same shape).
    #[arg(long)]
    data: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `<run>/eval` for a run or checkpoint folder.
fn eval_dir(ckpt: &std::path::Path) -> PathBuf {
    let dir = oxgen_train::checkpoint::resolve(ckpt).unwrap_or_else(|_| ckpt.to_path_buf());
    dir.parent()
        .and_then(|p| p.parent())
        .unwrap_or(&dir)
        .join("eval")
}

fn device(args: &DeviceArgs) -> Result<burn::tensor::Device> {
    denoise::set_path(args.op_path);
    let selected = oxgen_wgpu::select(args.device).map_err(anyhow::Error::msg)?;
    oxgen_models::ops::check_path(args.op_path, &selected.device).map_err(anyhow::Error::msg)?;
    tracing::info!("device: {}", selected.description);
    Ok(selected.device)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match cli.command {
        Command::Train(Family::Ar(a)) => {
            ar::train(a)?;
        }
        Command::Train(Family::Vae(a)) => family::train("vae", a)?,
        Command::Train(Family::Flow(a)) => family::train("flow", a)?,
        Command::Train(Family::Gan(a)) => family::train("gan", a)?,
        Command::Train(Family::Diffusion(a)) => {
            let device = device(&a.device)?;
            let mut config = if a.resume {
                let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
                serde_json::from_value::<TrainConfig>(ck.manifest.config)
                    .context("config in checkpoint")?
            } else {
                let name = a.data.clone().unwrap_or_else(|| "digits8".into());
                let mut probe =
                    TrainConfig::defaults(&name, oxgen_models::DataShape::Vector { dim: 2 }, None);
                probe.seed = a.seed.unwrap_or(0);
                let data = probe.load_data()?;
                TrainConfig::defaults(&name, data.shape, data.num_classes)
            };
            if let Some(file) = &a.config {
                config = config.merge_file(file)?;
            }
            apply_train_flags!(config, a);
            let opts = a.options(device);
            let report = train(&config, &opts)?;
            println!(
                "trained {} steps: loss {:.4} -> {:.4}{}",
                report.steps,
                report.first_loss,
                report.last_loss,
                if report.skipped > 0 {
                    format!(" ({} non-finite steps skipped)", report.skipped)
                } else {
                    String::new()
                }
            );
            if let Some(q) = report.quality {
                println!("{q}");
            }
            println!(
                "wrote {}/samples.png, samples.npy, loss.png, metrics.jsonl, checkpoints/",
                a.out.display()
            );
        }
        Command::Sample(a) if oxgen_train::ar::is_ar_checkpoint(&a.ckpt) => {
            ar::sample(a)?;
        }
        Command::Sample(a) if oxgen_train::family::is_family_checkpoint(&a.ckpt) => {
            family::sample(a)?;
        }
        Command::Eval(a) if oxgen_train::family::is_family_checkpoint(&a.ckpt) => {
            family::eval(a)?;
        }
        Command::Logprob(a) => {
            ar::logprob(a)?;
        }
        Command::Sample(a) => {
            let device = device(&a.device)?;
            let run = oxgen_train::sample::load_run(&a.ckpt, &device)?;
            let s = a
                .sampling
                .apply(run.config.sample.clone(), run.config.model.timesteps)?;
            oxgen_train::sample::sample_to(&run, a.n, a.class, &s, &device, &a.out)?;
            println!(
                "wrote {}/samples.png and samples.npy ({} samples, {:?}, {} steps)",
                a.out.display(),
                a.n,
                s.sampler,
                s.steps
            );
        }
        Command::Eval(a) => {
            let device = device(&a.device)?;
            let mut run = oxgen_train::sample::load_run(&a.ckpt, &device)?;
            if let Some(d) = &a.data {
                run.config.data = d.clone();
            }
            run.config.sample = a
                .sampling
                .apply(run.config.sample.clone(), run.config.model.timesteps)?;
            let out = a.out.unwrap_or_else(|| eval_dir(&a.ckpt));
            let (q, nll) = oxgen_train::sample::evaluate(&run, a.n, &device, &out)?;
            println!("{nll}");
            println!("{q}");
            println!(
                "wrote {}/samples.png, quality.json and nll.json",
                out.display()
            );
        }
        Command::Compare(a) => family::compare(a)?,
        Command::Info => info(),
        Command::Bench(BenchKind::Decode(a)) => {
            ar::bench_decode(a)?;
        }
        Command::Bench(BenchKind::Attention(a)) => {
            let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
            if !selected.is_wgpu {
                bail!("the attention benchmark needs a wgpu device; found only the CPU");
            }
            if !oxgen_wgpu::attention::HEAD_DIMS.contains(&a.dim) {
                bail!(
                    "--dim must be one of {:?}",
                    oxgen_wgpu::attention::HEAD_DIMS
                );
            }
            if a.iters == 0 {
                bail!("--iters must be at least 1");
            }
            eprintln!("benchmarking attention on {} …", selected.description);
            if a.f16 && !selected.device.supports_dtype(burn::tensor::DType::F16) {
                bail!("--f16: this adapter has no shader-f16");
            }
            let rows = oxgen_bench::attention::run(
                &selected.device,
                &a.seq,
                oxgen_bench::attention::AttentionBench {
                    batch: a.batch,
                    heads: a.heads,
                    dim: a.dim,
                    causal: a.causal,
                    half: a.f16,
                    iters: a.iters,
                    peers: !a.no_peers,
                },
            );
            println!("device: {}\n", selected.description);
            print!("{}", oxgen_bench::attention::table(&rows));
            if let Some(path) = a.json {
                let doc = serde_json::json!({ "device": selected.description, "rows": rows });
                std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
                    .with_context(|| path.display().to_string())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Bench(BenchKind::Denoise(a)) => {
            let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
            if !selected.is_wgpu {
                bail!("the denoise benchmark needs a wgpu device; found only the CPU");
            }
            let shape: [usize; 3] = a.sampler_shape.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "--sampler-shape takes three numbers C,H,W, got {:?}",
                    a.sampler_shape
                )
            })?;
            if a.iters == 0 {
                bail!("--iters must be at least 1");
            }
            eprintln!("benchmarking on {} …", selected.description);
            oxgen_wgpu::denoise::set_native_u64(!a.philox16);
            let options = oxgen_bench::denoise::Options {
                sizes: a.sizes,
                iters: a.iters,
                sampler: (!a.no_sampler).then_some((a.sampler_batch, shape)),
            };
            let report = oxgen_bench::denoise::suite(&selected, &options);
            print!("{}", report.markdown());
            if let Some(path) = a.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| path.display().to_string())?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn info() {
    let list = oxgen_wgpu::adapters();
    if list.is_empty() {
        println!(
            "wgpu adapters: none found (install a Vulkan, Metal or DX12 driver; on Debian, mesa-vulkan-drivers)"
        );
    }
    for (i, a) in list.iter().enumerate() {
        println!("[{i}] {} — {} ({})", a.name, a.backend, a.device_type);
        println!(
            "    driver: {}",
            if a.driver.is_empty() {
                "unknown"
            } else {
                &a.driver
            }
        );
        println!(
            "    workgroup storage {} KiB, {} invocations/workgroup, subgroups {}..{}, shader-f16 {}, shader-int64 {}, max storage binding {} MiB",
            a.workgroup_storage / 1024,
            a.max_invocations,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1,
            if a.shader_f16 { "yes" } else { "no" },
            if a.shader_int64 { "yes" } else { "no" },
            a.max_storage_binding >> 20
        );
    }
    println!(
        "cpu fallback: burn Flex backend, {} threads available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    match oxgen_wgpu::select(DeviceChoice::Auto) {
        Ok(s) => println!("--device auto selects: {}", s.description),
        Err(e) => println!("--device auto: {e}"),
    }
}
