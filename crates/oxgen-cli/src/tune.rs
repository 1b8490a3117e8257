//! `oxgen tune`: post-training of autoregressive runs.

use anyhow::{Context, Result};
use oxgen_train::TrainOptions;
use oxgen_train::tune::dpo::{DpoConfig, DpoRunConfig, dpo as run_dpo};
use oxgen_train::tune::grpo::{GrpoConfig, TunedConfig, grpo as run_grpo};
use oxgen_train::tune::objective::PreferenceLoss;
use oxgen_train::tune::rm::{RmConfig, RmRunConfig, rm as run_rm};
use oxgen_train::tune::sft::{SftConfig, SftRunConfig, sft as run_sft};

use crate::device;
use crate::tune_args::{BestOfArgs, DpoArgs, GrpoArgs, RmArgs, SftArgs};

pub(crate) fn grpo(a: GrpoArgs) -> Result<()> {
    let device = device(&a.device)?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<TunedConfig>(ck.manifest.config)
            .context("config in checkpoint")?
            .grpo
    } else {
        GrpoConfig::default()
    };
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
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
    let opts = TrainOptions {
        out: Some(a.out.clone()),
        resume: a.resume,
        device,
        progress: !a.quiet,
        ..TrainOptions::default()
    };
    let report = run_grpo(&a.base, &config, &opts)?;
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
    println!("curves: {}", a.out.join("curves.png").display());
    Ok(())
}

pub(crate) fn sft(a: SftArgs) -> Result<()> {
    let device = device(&a.device)?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<SftRunConfig>(ck.manifest.config)
            .context("config in checkpoint")?
            .sft
    } else {
        SftConfig::default()
    };
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
    if let Some(d) = a.data {
        config.data = d;
    }
    config.pack |= a.pack;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(steps, batch_size, lr, seed);
    let opts = TrainOptions {
        out: Some(a.out.clone()),
        resume: a.resume,
        device,
        progress: !a.quiet,
        ..TrainOptions::default()
    };
    let report = run_sft(&a.base, &config, &opts)?;
    println!("fine-tuned {} steps on {}", report.steps, config.data);
    if let (Some(first), Some(last)) = (report.evals.first(), report.evals.last()) {
        println!(
            "{}: {:.4} at step {} -> {:.4} at step {}",
            report.eval_name, first.1, first.0, last.1, last.0
        );
    }
    println!("curves: {}", a.out.join("curves.png").display());
    Ok(())
}

pub(crate) fn dpo(a: DpoArgs) -> Result<()> {
    let device = device(&a.device)?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<DpoRunConfig>(ck.manifest.config)
            .context("config in checkpoint")?
            .dpo
    } else {
        DpoConfig::default()
    };
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
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
    let opts = TrainOptions {
        out: Some(a.out.clone()),
        resume: a.resume,
        device,
        progress: !a.quiet,
        ..TrainOptions::default()
    };
    let report = run_dpo(&a.base, &config, &opts)?;
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
    let device = device(&a.device)?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<RmRunConfig>(ck.manifest.config)
            .context("config in checkpoint")?
            .rm
    } else {
        RmConfig::default()
    };
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
    if let Some(p) = a.pairs {
        (config.pairs, config.pairs_from_verifier) = (p, 0);
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { config.$field = v; } )* };
    }
    set!(pairs_from_verifier, reward, steps, lr, seed);
    let opts = TrainOptions {
        out: Some(a.out.clone()),
        resume: a.resume,
        device,
        progress: !a.quiet,
        ..TrainOptions::default()
    };
    let report = run_rm(&a.base, &config, &opts)?;
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
    println!("use it as --reward model:{}", a.out.display());
    Ok(())
}

pub(crate) fn best_of(a: BestOfArgs) -> Result<()> {
    let device = device(&a.device)?;
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
