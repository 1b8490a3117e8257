//! The VAE, flow and GAN commands (`train vae|flow|gan`, and `sample` and `eval` on their
//! runs), and `compare`.

use anyhow::{Context, Result};
use oxgen_train::family::{FamilyConfig, evaluate_model, load_family, train_family};

use crate::args::{CompareArgs, EvalArgs, SampleArgs, TrainArgs};
use crate::device;

pub(crate) fn train(family: &str, a: TrainArgs) -> Result<()> {
    anyhow::ensure!(
        a.tokenizer.is_none(),
        "--tokenizer is for `oxgen train ar` on a text file"
    );
    anyhow::ensure!(
        a.precision.is_none_or(|p| p.is_f32()),
        "--precision f16 trains the GPT (`oxgen train ar`) only, for now"
    );
    a.shards.refuse(family)?;
    let (_, opts) = a.devices()?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<FamilyConfig>(ck.manifest.config)
            .context("config in checkpoint")?
    } else {
        let name = a.data.clone().unwrap_or_else(|| "digits8".into());
        let data = oxgen_train::data::load(&name, a.seed.unwrap_or(0), &Default::default())?;
        FamilyConfig::defaults(family, &data)?
    };
    let dp = a.dp.config()?;
    // The default GAN's R1 penalty reads the private rows outside the clipping: a DP GAN
    // trains without it unless a config file asks for one (which DP then refuses by name).
    if dp.is_some() && !a.resume && config.drop_penalty_for_dp() {
        println!(
            "DP GAN: training without the default gradient penalty (it reads private rows outside the clipping)"
        );
    }
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
    apply_train_flags!(config, a);
    if let Some(dp) = dp {
        config.dp = Some(dp);
    }
    let report = train_family(&config, &opts)?;
    println!(
        "trained {} {} steps in {:.1}s: loss {:.4} -> {:.4}{}",
        family,
        report.steps,
        report.train_seconds,
        report.first_loss,
        report.last_loss,
        if report.skipped > 0 {
            format!(" ({} non-finite steps skipped)", report.skipped)
        } else {
            String::new()
        }
    );
    if let Some(p) = &report.dp {
        print_dp(p);
    }
    if let Some(p) = &report.parallel {
        println!("{}", p.line());
    }
    if let Some(q) = &report.quality {
        println!("{q}");
    }
    println!(
        "wrote {}/samples.png, samples.npy, quality.json, loss.png, metrics.jsonl, checkpoints/",
        a.out.display()
    );
    Ok(())
}

/// The DP plan a run trained under, as the line `oxgen train` prints.
pub(crate) fn print_dp(p: &oxgen_train::privacy::dpsgd::DpPlan) {
    println!(
        "DP-SGD: (ε = {:.4}, δ = {:e}) by the {:?} accountant: σ = {:.4}, q = {:.5}, clip {}{}",
        p.planned_epsilon,
        p.config.delta,
        p.config.accountant,
        p.sigma,
        p.q,
        p.config.clip,
        if p.config.sampling == oxgen_train::privacy::dpsgd::Sampling::FixedSize {
            " (fixed-size batches: the accountant assumes Poisson sampling)"
        } else {
            ""
        }
    );
}

pub(crate) fn sample(a: SampleArgs) -> Result<()> {
    let device = device(&a.device)?;
    let (config, model) = load_family(&a.ckpt, &device)?;
    let ck = oxgen_train::checkpoint::load(&a.ckpt)?;
    let g = model.generative();
    let x = g.sample(
        a.n,
        None,
        a.sampling.seed.unwrap_or(config.seed ^ 0x5a11),
        &device,
    );
    let samples: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading samples back: {e:?}"))?;
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        anyhow::bail!("sample value {i} is not finite; the checkpoint may have diverged");
    }
    oxgen_train::run::write_samples(&a.out, &samples, None, ck.manifest.shape, None)?;
    println!(
        "wrote {}/samples.png and samples.npy ({} {} samples)",
        a.out.display(),
        a.n,
        g.capabilities().family
    );
    Ok(())
}

pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    let device = device(&a.device)?;
    let (mut config, model) = load_family(&a.ckpt, &device)?;
    if let Some(d) = &a.data {
        config.data = d.clone();
    }
    if let Some(n) = a.n {
        config.eval_samples = n;
    }
    let data = oxgen_train::data::load(&config.data, config.seed, &Default::default())?;
    let ck = oxgen_train::checkpoint::load(&a.ckpt)?;
    if data.shape != ck.manifest.shape {
        anyhow::bail!(
            "`{}` has rows of shape {:?}, the model was trained on {:?}",
            config.data,
            data.shape,
            ck.manifest.shape
        );
    }
    let (_, val) = match data.toy {
        Some(_) => (data.clone(), None),
        None => {
            let (t, v) = data.split(config.val_fraction, config.seed);
            (t, Some(v))
        }
    };
    let out = a.out.clone().unwrap_or_else(|| crate::eval_dir(&a.ckpt));
    let q = evaluate_model(
        &model,
        &config,
        &data,
        val.as_ref(),
        &device,
        &out,
        0.0,
        &[],
    )?;
    println!("{q}");
    println!("wrote {}/samples.png and quality.json", out.display());
    Ok(())
}

pub(crate) fn compare(a: CompareArgs) -> Result<()> {
    let device = device(&a.device)?;
    let report = oxgen_train::compare::compare(&oxgen_train::compare::CompareOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        families: a.families.clone(),
        device,
        progress: !a.quiet,
        seed: a.seed,
    })?;
    print!(
        "{}",
        std::fs::read_to_string(a.out.join("report.md")).unwrap_or_default()
    );
    println!(
        "wrote {}/report.md, report.json, pr.png and {} sample grids",
        a.out.display(),
        report.rows.iter().filter(|r| r.skipped.is_none()).count()
    );
    Ok(())
}
