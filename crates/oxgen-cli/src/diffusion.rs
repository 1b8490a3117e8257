//! `oxgen train diffusion`, and `oxgen sample` and `oxgen eval` on diffusion runs.

use anyhow::{Context, Result};
use oxgen_train::TrainConfig;
use oxgen_train::diffusion::train as train_diffusion;

use crate::args::{EvalArgs, SampleArgs, TrainArgs};
use crate::{device, eval_dir};

pub(crate) fn train(a: TrainArgs) -> Result<()> {
    anyhow::ensure!(
        a.tokenizer.is_none(),
        "--tokenizer is for `oxgen train ar` on a text file"
    );
    anyhow::ensure!(
        a.precision.is_none_or(|p| p.is_f32()),
        "--precision f16 trains the GPT (`oxgen train ar`) only, for now"
    );
    let (device, opts) = a.devices()?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<TrainConfig>(ck.manifest.config).context("config in checkpoint")?
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
    if let Some(dp) = a.dp.config()? {
        config.dp = Some(dp);
    }
    if let Some(k) = a.shards.duplicates {
        config.duplicates = Some([k, a.shards.duplicate_repeats]);
    }
    if let Some(k) = a.shards.shards {
        a.one_device("--shards")?;
        return crate::copyright::train_diffusion(&a, &config, k, device);
    }
    let report = train_diffusion(&config, &opts)?;
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
    if let Some(p) = &report.dp {
        crate::family::print_dp(p);
    }
    if let Some(p) = &report.parallel {
        println!("{}", p.line());
    }
    if let Some(q) = report.quality {
        println!("{q}");
    }
    println!(
        "wrote {}/samples.png, samples.npy, loss.png, metrics.jsonl, checkpoints/",
        a.out.display()
    );
    Ok(())
}

pub(crate) fn sample(a: SampleArgs) -> Result<()> {
    let device = device(&a.device)?;
    let run = oxgen_train::sample::load_run(&a.ckpt, &device)?;
    let s = a.text.kgw.sampling(
        a.sampling
            .apply(run.config.sample.clone(), run.config.model.timesteps)?,
    );
    if a.text.best_of > 1 {
        anyhow::ensure!(
            a.text.reward.as_deref() == Some("classifier"),
            "--best-of on a diffusion run needs --reward classifier"
        );
        let classes = run.config.model.num_classes.context(
            "--best-of ranks by the class a sample was asked for; this run is unconditional",
        )?;
        let labels: Vec<u32> = match a.class {
            Some(c) if (c as usize) < classes => vec![c; a.n],
            Some(c) => anyhow::bail!("class {c} is out of range: the model has {classes} classes"),
            None => (0..a.n).map(|i| (i % classes) as u32).collect(),
        };
        let judge = oxgen_train::tune::judge::Judge::new(&run.config, &a.out, &device)?;
        let (x, conf) = oxgen_train::tune::best_of_images::best_of_n_images(
            &run.ema,
            &run.config,
            &s,
            &labels,
            a.text.best_of as usize,
            &judge,
            &device,
        )?;
        oxgen_train::run::write_samples(&a.out, &x, Some(&labels), run.manifest.shape, None)?;
        println!(
            "wrote {}/samples.png and samples.npy ({} samples, each the best of {} by the classifier; mean confidence {:.3})",
            a.out.display(),
            a.n,
            a.text.best_of,
            conf.iter().sum::<f64>() / conf.len().max(1) as f64
        );
        return Ok(());
    }
    if let Some(w) = &a.text.watermark {
        anyhow::ensure!(
            w == "tree-ring",
            "a diffusion run takes --watermark tree-ring; {w} marks text"
        );
        let ring = a.text.kgw.tree_ring()?;
        let labels: Option<Vec<u32>> = run.config.model.num_classes.map(|k| match a.class {
            Some(c) => vec![c.min(k as u32 - 1); a.n],
            None => (0..a.n).map(|i| (i % k) as u32).collect(),
        });
        let x = oxgen_train::watermark::images::draw_marked(
            &run,
            &ring,
            &s,
            a.n,
            labels.as_deref(),
            &device,
        )?;
        oxgen_train::run::write_samples(&a.out, &x, labels.as_deref(), run.manifest.shape, None)?;
        println!(
            "wrote {}/samples.png and samples.npy ({} samples with a Tree-Ring watermark, {} ≤ r ≤ {})",
            a.out.display(),
            a.n,
            ring.inner,
            ring.radius
        );
        return Ok(());
    }
    oxgen_train::sample::sample_to(&run, a.n, a.class, &s, &device, &a.out)?;
    println!(
        "wrote {}/samples.png and samples.npy ({} samples, {:?}, {} steps)",
        a.out.display(),
        a.n,
        s.sampler,
        s.steps
    );
    Ok(())
}

pub(crate) fn eval(a: EvalArgs) -> Result<()> {
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
    Ok(())
}
