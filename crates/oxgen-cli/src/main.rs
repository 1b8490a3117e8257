//! `oxgen`: train, sample, evaluate and inspect generative models. This file dispatches; the
//! flags are in `args.rs` and each family's commands in its own module.

use std::path::PathBuf;

mod alloc;

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
mod args;
mod audit;
#[cfg(feature = "autotune-cache")]
mod autotune_cache;
mod bench;
mod bench_args;
mod compress;
mod copyright;
mod detect;
mod diffusion;
mod family;
mod limit;
mod privacy;
#[cfg(test)]
mod readme_check;
mod tour;
mod tune;
mod tune_args;
mod vulkan_env;

use anyhow::Result;
use clap::Parser;
use oxgen_models::ops::denoise;

use args::{BenchKind, Cli, Command, DeviceArgs, Family, TuneMethod};

/// `<run>/eval` for a run or checkpoint folder.
fn eval_dir(ckpt: &std::path::Path) -> PathBuf {
    let dir = oxgen_train::checkpoint::resolve(ckpt).unwrap_or_else(|_| ckpt.to_path_buf());
    dir.parent()
        .and_then(|p| p.parent())
        .unwrap_or(&dir)
        .join("eval")
}

/// The device `--device` names, with `--op-path` checked against it.
fn device(args: &DeviceArgs) -> Result<burn::tensor::Device> {
    denoise::set_path(args.op_path);
    let selected = oxgen_wgpu::select(args.device).map_err(anyhow::Error::msg)?;
    oxgen_models::ops::check_path(args.op_path, &selected.device).map_err(anyhow::Error::msg)?;
    tracing::info!("device: {}", selected.description);
    Ok(selected.device)
}

/// Where a train, tune, sample or eval command writes `kernels.json`: in the run folder of
/// `train` and `tune`, the output folder of `sample` and `eval`, or beside the file `sample --out` names
/// (`samples.txt` → `samples.kernels.json`).
fn kernels_file(command: &Command) -> Option<(PathBuf, oxgen_models::ops::OpPath)> {
    let name = "kernels.json";
    match command {
        Command::Train(
            Family::Ar(a)
            | Family::Vae(a)
            | Family::Flow(a)
            | Family::Gan(a)
            | Family::Diffusion(a),
        ) => Some((a.out.join(name), a.device.op_path)),
        Command::Tour(a) => tour::train_args(a)
            .ok()
            .map(|t| (t.out.join(name), t.device.op_path)),
        Command::Sample(a) => {
            let file = match a.out.extension() {
                Some(_) if !a.out.is_dir() => a.out.with_extension(name),
                _ => a.out.join(name),
            };
            Some((file, a.device.op_path))
        }
        Command::Eval(a) => Some((
            a.out
                .clone()
                .unwrap_or_else(|| eval_dir(&a.ckpt))
                .join(name),
            a.device.op_path,
        )),
        Command::Tune(t) => t.run_args().map(|r| (r.out.join(name), r.device.op_path)),
        _ => None,
    }
}

/// Writes what the fused ops ran (`kernels.json`) and prints its summary line. A run with
/// `--op-path fused` in which some op still ran its reference fails here, naming the ops.
fn report_kernels(file: &std::path::Path, path: oxgen_models::ops::OpPath) -> Result<()> {
    use oxgen_models::ops::{OpPath, stats};
    let report = stats::thread();
    if report.ops.is_empty() {
        return Ok(());
    }
    report
        .write(file)
        .map_err(|e| anyhow::anyhow!("could not write {}: {e}", file.display()))?;
    eprintln!("{} ({})", report.summary(), file.display());
    let refused: Vec<String> = report
        .ops
        .iter()
        .filter(|(_, c)| c.reference > 0)
        .map(|(op, c)| {
            let why: Vec<&str> = c.reasons.keys().map(String::as_str).collect();
            format!("{op} ({})", why.join("; "))
        })
        .collect();
    if path == OpPath::Fused && !refused.is_empty() {
        anyhow::bail!(
            "--op-path fused: these ops ran their reference: {}",
            refused.join(", ")
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let quiet = vulkan_env::quiet_device_select();
    alloc::keep_freed_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if quiet {
        tracing::debug!(
            "no XDG_RUNTIME_DIR: Mesa's Vulkan device-select layer is off ({}=1), so its display \
             probe prints nothing",
            vulkan_env::NODEVICE_SELECT
        );
    }
    #[cfg(feature = "autotune-cache")]
    if let Some(root) = autotune_cache::configure() {
        tracing::debug!("autotune cache: {} (delete it to clear)", root.display());
    }
    let kernels = kernels_file(&cli.command);
    match cli.command {
        Command::Train(Family::Ar(a)) => ar::train(a)?,
        Command::Train(Family::Vae(a)) => family::train("vae", a)?,
        Command::Train(Family::Flow(a)) => family::train("flow", a)?,
        Command::Train(Family::Gan(a)) => family::train("gan", a)?,
        Command::Train(Family::Diffusion(a)) => diffusion::train(a)?,
        Command::Privacy(c) => privacy::run(c)?,
        Command::Audit(c) => audit::run(c)?,
        Command::Limit(a) => limit::run(a)?,
        Command::Tune(TuneMethod::Grpo(a)) => tune::grpo(a)?,
        Command::Tune(TuneMethod::Sft(a)) => tune::sft(a)?,
        Command::Tune(TuneMethod::Merge(a)) => tune::merge(a)?,
        Command::Tune(TuneMethod::Dpo(a)) => tune::dpo(a)?,
        Command::Tune(TuneMethod::Rm(a)) => tune::rm(a)?,
        Command::Tune(TuneMethod::DiffusionDpo(a)) => tune::diffusion_dpo(a)?,
        Command::Tune(TuneMethod::BestOf(a)) => tune::best_of(a)?,
        Command::Sample(a) if copyright::wants(&a) => copyright::sample(a)?,
        Command::Sample(a) if oxgen_train::ar::is_ar_checkpoint(&a.ckpt) => ar::sample(a)?,
        Command::Sample(a) if oxgen_train::family::is_family_checkpoint(&a.ckpt) => {
            family::sample(a)?
        }
        Command::Sample(a) => diffusion::sample(a)?,
        Command::Eval(a) if oxgen_train::family::is_family_checkpoint(&a.ckpt) => family::eval(a)?,
        Command::Eval(a) => diffusion::eval(a)?,
        Command::Logprob(a) => ar::logprob(a)?,
        Command::Compress(a) => compress::compress(a)?,
        Command::Decompress(a) => compress::decompress(a)?,
        Command::Detect(a) => detect::detect(a)?,
        Command::WatermarkEval(a) => detect::watermark_eval(a)?,
        Command::Compare(a) => family::compare(a)?,
        Command::Export(a) => {
            let e = oxgen_train::interchange::export(&a.ckpt, &a.out)?;
            if a.list {
                for (name, shape) in &e.tensors {
                    println!("{name} {shape:?}");
                }
            }
            println!("wrote {} ({} tensors)", e.path.display(), e.tensors.len());
        }
        Command::Import(a) => {
            let dir = oxgen_train::interchange::import(&a.file, &a.out)?;
            println!("wrote {}", dir.display());
        }
        Command::Info => bench::info(),
        Command::Tour(a) => tour::run(a)?,
        Command::Bench(BenchKind::Decode(a)) => ar::bench_decode(a)?,
        Command::Bench(BenchKind::Attention(a)) => bench::attention(a)?,
        Command::Bench(BenchKind::Conv(a)) => bench::conv(a)?,
        Command::Bench(BenchKind::Denoise(a)) => bench::denoise(a)?,
        Command::Bench(BenchKind::Train(a)) => bench::train(a)?,
        Command::Bench(BenchKind::Ddim(a)) => bench::ddim(a)?,
    }
    if let Some((file, path)) = kernels {
        report_kernels(&file, path)?;
    }
    Ok(())
}
