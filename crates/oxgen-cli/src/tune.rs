//! `oxgen tune`: post-training of autoregressive runs.

use anyhow::{Context, Result};
use oxgen_train::TrainOptions;
use std::path::Path;

use oxgen_train::tune::diffusion_dpo::{DiffusionDpoConfig, diffusion_dpo as run_diffusion_dpo};
use oxgen_train::tune::dpo::{DpoConfig, dpo as run_dpo};
use oxgen_train::tune::grpo::{GrpoConfig, grpo as run_grpo};
use oxgen_train::tune::objective::PreferenceLoss;
use oxgen_train::tune::rm::{RmConfig, rm as run_rm};
use oxgen_train::tune::sft::{SftConfig, sft as run_sft};
use serde::de::DeserializeOwned;

use crate::args::select_devices;
use crate::device;
use crate::tune_args::{
    BestOfArgs, DiffusionDpoArgs, DpoArgs, GrpoArgs, MergeArgs, RmArgs, RunArgs, SftArgs,
};

/// A method's config: the checkpoint's (its manifest config's `method` field) when resuming,
/// else the default; then the fields of a config file laid over it.
fn config_of<C: DeserializeOwned + Default>(
    run: &RunArgs,
    method: &str,
    merge: fn(C, &Path) -> oxgen_train::Result<C>,
) -> Result<C> {
    let config = if run.resume {
        let ck = oxgen_train::checkpoint::load(&run.out).context("cannot resume")?;
        serde_json::from_value(ck.manifest.config[method].clone())
            .context("config in checkpoint")?
    } else {
        C::default()
    };
    Ok(match &run.config {
        Some(f) => merge(config, f)?,
        None => config,
    })
}

/// A tuned run in `--out`, with a progress bar unless `--quiet`.
fn options(
    run: &RunArgs,
    device: burn::tensor::Device,
    parallel: oxgen_train::trainer::parallel::DataParallel,
) -> TrainOptions {
    TrainOptions {
        out: Some(run.out.clone()),
        resume: run.resume,
        device,
        progress: !run.quiet,
        parallel,
        ..TrainOptions::default()
    }
}

pub(crate) fn grpo(a: GrpoArgs) -> Result<()> {
    let (device, parallel) = select_devices(a.run.devices.as_deref(), &a.run.device)?;
    let mut config: GrpoConfig = config_of(&a.run, "grpo", GrpoConfig::merge_file)?;
    if let Some(r) = a.reward {
        config.reward = r;
    }
    if a.format.is_some() {
        config.format = a.format;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(format_weight, steps, prompts, group, lr, beta, seed);
    let opts = options(&a.run, device, parallel);
    let report = run_grpo(&a.run.base, &config, &opts)?;
    println!("tuned {} steps with {}", report.steps, config.reward);
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        println!(
            "{}: {:.2}% at step {} -> {:.2}% at step {}",
            report.eval_name,
            100.0 * first.1,
            first.0,
            100.0 * last.1,
            last.0
        );
    }
    println!("curves: {}", a.run.out.join("curves.png").display());
    Ok(())
}

pub(crate) fn sft(a: SftArgs) -> Result<()> {
    let (device, parallel) = select_devices(a.run.devices.as_deref(), &a.run.device)?;
    let mut config: SftConfig = config_of(&a.run, "sft", SftConfig::merge_file)?;
    if let Some(d) = a.data {
        config.data = d;
    }
    config.pack |= a.pack;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(steps, batch_size, lr, seed);
    if let Some(rank) = a.lora_rank {
        let mut lora = config.lora.take().unwrap_or_default().with_rank(rank);
        if let Some(alpha) = a.lora_alpha {
            lora.alpha = alpha;
        }
        if let Some(targets) = a.lora_targets {
            lora.targets = targets;
        }
        config.lora = Some(lora);
    }
    let opts = options(&a.run, device, parallel);
    let report = run_sft(&a.run.base, &config, &opts)?;
    println!("fine-tuned {} steps on {}", report.steps, config.data);
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        println!(
            "{}: {:.4} at step {} -> {:.4} at step {}",
            report.eval_name, first.1, first.0, last.1, last.0
        );
    }
    println!("curves: {}", a.run.out.join("curves.png").display());
    Ok(())
}

pub(crate) fn dpo(a: DpoArgs) -> Result<()> {
    let (device, parallel) = select_devices(a.run.devices.as_deref(), &a.run.device)?;
    let mut config: DpoConfig = config_of(&a.run, "dpo", DpoConfig::merge_file)?;
    if let Some(p) = a.pairs {
        (config.pairs, config.pairs_from_verifier) = (p, 0);
    }
    config.loss = match a.loss.as_deref() {
        None => config.loss,
        Some("sigmoid" | "dpo") => PreferenceLoss::Sigmoid,
        Some("ipo") => PreferenceLoss::Ipo,
        Some(other) => anyhow::bail!("--loss must be sigmoid or ipo, not {other}"),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(
        pairs_from_verifier,
        reward,
        beta,
        nll_weight,
        steps,
        lr,
        seed
    );
    let opts = options(&a.run, device, parallel);
    let report = run_dpo(&a.run.base, &config, &opts)?;
    println!(
        "tuned {} steps on {} pairs ({} held out)",
        report.steps,
        report.pairs.0 + report.pairs.1,
        report.pairs.1
    );
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        println!(
            "held-out preference accuracy {:.2}% -> {:.2}%, margin {:.3} -> {:.3}",
            100.0 * first.1,
            100.0 * last.1,
            first.2,
            last.2
        );
        if let (Some(e0), Some(e1)) = (first.3, last.3) {
            println!(
                "held-out exact match {:.2}% -> {:.2}%",
                100.0 * e0,
                100.0 * e1
            );
        }
    }
    Ok(())
}

pub(crate) fn rm(a: RmArgs) -> Result<()> {
    let (device, parallel) = select_devices(a.run.devices.as_deref(), &a.run.device)?;
    let mut config: RmConfig = config_of(&a.run, "rm", RmConfig::merge_file)?;
    if let Some(p) = a.pairs {
        (config.pairs, config.pairs_from_verifier) = (p, 0);
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(pairs_from_verifier, reward, steps, lr, seed);
    let opts = options(&a.run, device, parallel);
    let report = run_rm(&a.run.base, &config, &opts)?;
    println!(
        "trained a reward model {} steps on {} pairs ({} held out)",
        report.steps,
        report.pairs.0 + report.pairs.1,
        report.pairs.1
    );
    if let Some(last) = report.evals.last() {
        println!(
            "held-out pairwise accuracy: {:.2}% at step {}",
            100.0 * last.1,
            last.0
        );
    }
    println!("use it as --reward model:{}", a.run.out.display());
    Ok(())
}

pub(crate) fn best_of(a: BestOfArgs) -> Result<()> {
    let device = device(&a.device)?;
    if oxgen_train::checkpoint::load(&a.base)
        .is_ok_and(|ck| oxgen_train::sample::is_diffusion_family(&ck.manifest.family))
    {
        anyhow::ensure!(
            a.reward == "classifier",
            "a diffusion run is ranked by --reward classifier, not {}",
            a.reward
        );
        let tmp = std::env::temp_dir().join(format!("oxgen-best-of-{}", std::process::id()));
        let cache = a.out.clone().unwrap_or_else(|| tmp.clone());
        let rows = oxgen_train::tune::best_of_images::best_of_n_classes(
            &a.base,
            &a.n,
            a.per_class,
            a.guidance,
            a.seed,
            &cache,
            &device,
        );
        let _ = std::fs::remove_dir_all(&tmp);
        println!(
            "| n | class accuracy (evaluation classifier) | class accuracy (check classifier) | confidence | FD |\n|---|---|---|---|---|"
        );
        for (n, s) in rows? {
            println!(
                "| {n} | {:.2}% | {:.2}% | {:.3} | {:.3} |",
                100.0 * s.accuracy,
                100.0 * s.check_accuracy,
                s.confidence,
                s.fd
            );
        }
        return Ok(());
    }
    let rows = oxgen_train::tune::best_of::best_of_n_sums(
        &a.base, &a.reward, &a.n, a.problems, a.seed, &device,
    )?;
    println!(
        "| n | held-out exact match (best of n by {}) |\n|---|---|",
        a.reward
    );
    for (n, acc) in rows {
        println!("| {n} | {:.2}% |", 100.0 * acc);
    }
    Ok(())
}

pub(crate) fn merge(a: MergeArgs) -> Result<()> {
    let device = device(&a.device)?;
    let ck = oxgen_train::tune::merge::merge(&a.run, &a.out, &device)?;
    println!(
        "merged the adapters of {} into {}",
        a.run.display(),
        ck.display()
    );
    Ok(())
}

pub(crate) fn diffusion_dpo(a: DiffusionDpoArgs) -> Result<()> {
    let (device, parallel) = select_devices(a.run.devices.as_deref(), &a.run.device)?;
    let mut config: DiffusionDpoConfig =
        config_of(&a.run, "diffusion_dpo", DiffusionDpoConfig::merge_file)?;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(
        prompts_per_class,
        candidates,
        beta,
        steps,
        lr,
        guidance,
        seed
    );
    let opts = options(&a.run, device, parallel);
    let report = run_diffusion_dpo(&a.run.base, &config, &opts)?;
    println!(
        "tuned {} steps on {} pairs ({} held out)",
        report.steps,
        report.pairs.0 + report.pairs.1,
        report.pairs.1
    );
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        let (a0, a1) = (first.1, last.1);
        println!(
            "class accuracy {:.2}% -> {:.2}% (check classifier {:.2}% -> {:.2}%), FD {:.3} -> {:.3}, \
             held-out preference accuracy {:.2}% -> {:.2}%",
            100.0 * a0.accuracy,
            100.0 * a1.accuracy,
            100.0 * a0.check_accuracy,
            100.0 * a1.check_accuracy,
            a0.fd,
            a1.fd,
            100.0 * first.2,
            100.0 * last.2
        );
    }
    println!("curves: {}", a.run.out.join("curves.png").display());
    Ok(())
}
