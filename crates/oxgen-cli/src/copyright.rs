//! Copyright safety on the command line: `oxgen train ar --shards K`, `oxgen sample --naf`,
//! `oxgen logprob --naf` and `oxgen audit extraction`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use oxgen_models::ar::naf::{NafRule, generate_naf, generate_naf_sequence};
use oxgen_train::copyright::canary::{canaries_text, plant, read_canaries};
use oxgen_train::copyright::extraction::{
    ExtractionOptions, Target, extraction_audit, nll_of_text_under,
};
use oxgen_train::copyright::images::{diffusion_image_audit, image_audit};
use oxgen_train::copyright::shard::{DocumentUnit, ShardKey};
use oxgen_train::copyright::sharded::{ShardSpec, is_sharded, load_sharded, parse_key};

use crate::args::{LogprobArgs, SampleArgs, TrainArgs};

/// Sharded training (near access-free models).
#[derive(Args)]
pub(crate) struct ShardArgs {
    /// Train K models on disjoint shards of the data (autoregressive runs on a text file), for
    /// `oxgen sample --naf`. The run folder gets shards.json (which document went where) and
    /// shard-0 … shard-{K−1}.
    #[arg(long, value_name = "K")]
    pub(crate) shards: Option<usize>,
    /// What one item of the text is: `paragraph` (lines up to a blank line) or `line`. Every
    /// copy of an item goes to the same shard.
    #[arg(long, default_value = "paragraph", value_parser = ["line", "paragraph"])]
    pub(crate) shard_by: String,
    /// The sharding hash's key, 32 hex digits (default: one derived from --seed).
    #[arg(long, value_name = "HEX")]
    pub(crate) shard_key: Option<String>,
    /// Plant K duplicated training images (`oxgen train ar --data digits8`), each present
    /// --duplicate-repeats times, for a memorisation experiment.
    #[arg(long, value_name = "K")]
    pub(crate) duplicates: Option<usize>,
    /// With --duplicates: copies of each planted image.
    #[arg(long, default_value_t = 20)]
    pub(crate) duplicate_repeats: usize,
}

impl ShardArgs {
    /// Refuses --shards for a family that cannot be sharded yet.
    pub(crate) fn refuse(&self, family: &str) -> Result<()> {
        if self.shards.is_some() {
            bail!(
                "--shards trains autoregressive text models (`oxgen train ar --data FILE --shards K`); {family} runs cannot be sharded yet"
            );
        }
        Ok(())
    }

    fn spec(&self, shards: usize, seed: u64) -> Result<ShardSpec> {
        let key = match &self.shard_key {
            Some(hex) => parse_key(hex)?,
            None => {
                ShardKey::from_words(seed ^ 0x6f78_6765_6e2d_6e61, !seed ^ 0x6620_7368_6172_6473)
            }
        };
        Ok(ShardSpec {
            shards,
            unit: self
                .shard_by
                .parse::<DocumentUnit>()
                .map_err(anyhow::Error::msg)?,
            key,
        })
    }
}

/// Near access-free sampling and scoring.
#[derive(Args)]
pub(crate) struct NafArgs {
    /// Combine the shard models of a sharded run token by token: `cp-k` (p ∝ minᵢ qᵢ) or
    /// `cp-delta` (p ∝ (Πᵢ qᵢ)^{1/k}, also called sqrt); each sample reports its Δ. Or
    /// `cp-k-seq`: CP-k over whole outputs, by rejection sampling (short outputs only).
    #[arg(long, value_name = "RULE", value_parser = ["cp-k", "cp-delta", "sqrt", "cp-k-seq"])]
    pub(crate) naf: Option<String>,
    /// With --naf cp-k-seq: proposals per output before it is refused.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) max_proposals: usize,
}

/// A token-level rule, or CP-k over whole outputs.
#[derive(Clone, Copy)]
enum Naf {
    Token(NafRule),
    Sequence,
}

impl NafArgs {
    fn choice(&self) -> Option<Naf> {
        self.naf.as_deref().map(|r| match r {
            "cp-k-seq" => Naf::Sequence,
            r => Naf::Token(r.parse().expect("clap checked it")),
        })
    }

    fn target<'a>(&self, choice: Naf, models: Vec<&'a oxgen_models::ar::Gpt>) -> Target<'a> {
        match choice {
            Naf::Token(rule) => Target::Naf { models, rule },
            Naf::Sequence => Target::NafSequence {
                models,
                max_proposals: self.max_proposals,
            },
        }
    }
}

/// `oxgen train ar --shards K`.
pub(crate) fn train(
    a: &TrainArgs,
    config: &oxgen_train::ar::ArTrainConfig,
    k: usize,
    device: burn::tensor::Device,
) -> Result<()> {
    let spec = a.shards.spec(k, config.seed)?;
    let reports =
        oxgen_train::copyright::sharded::train_ar_sharded(config, &spec, &a.options(device))?;
    for (i, r) in reports.iter().enumerate() {
        let val = r.val.last().map_or(String::new(), |(s, v)| {
            format!("; validation at step {s}: {v:.4} nats/token")
        });
        println!(
            "shard {i}: trained {} steps: loss {:.4} -> {:.4} nats/token{val}",
            r.steps, r.first_loss, r.last_loss
        );
    }
    print_written(&a.out, k, "cp-k");
    Ok(())
}

fn print_written(out: &std::path::Path, k: usize, rule: &str) {
    println!(
        "wrote {}/shards.json and shard-0 … shard-{}; sample with `oxgen sample --ckpt {} --naf {rule}`",
        out.display(),
        k - 1,
        out.display()
    );
}

/// `oxgen train diffusion --shards K`.
pub(crate) fn train_diffusion(
    a: &TrainArgs,
    config: &oxgen_train::TrainConfig,
    k: usize,
    device: burn::tensor::Device,
) -> Result<()> {
    let spec = a.shards.spec(k, config.seed)?;
    let reports = oxgen_train::copyright::sharded_diffusion::train_diffusion_sharded(
        config,
        &spec,
        &a.options(device),
    )?;
    for (i, r) in reports.iter().enumerate() {
        println!(
            "shard {i}: trained {} steps: loss {:.4} -> {:.4}",
            r.steps, r.first_loss, r.last_loss
        );
    }
    print_written(&a.out, k, "cp-delta");
    Ok(())
}

/// A sharded diffusion run's NAF draw: `n` samples from the average of its shard models, with
/// the class labels `oxgen sample` gives a diffusion run (cycling through the classes).
fn diffusion_naf_draw(
    dir: &std::path::Path,
    naf: &NafArgs,
    n: usize,
    seed: Option<u64>,
    device: &burn::tensor::Device,
) -> Result<(
    Vec<f32>,
    Option<Vec<u32>>,
    oxgen_train::TrainConfig,
    oxgen_models::DataShape,
)> {
    if !matches!(naf.choice(), Some(Naf::Token(NafRule::CpDelta))) {
        bail!(
            "a sharded diffusion run samples by averaging the shard models' predictions (the geometric mean of their noised densities): use --naf cp-delta; cp-k needs likelihoods that diffusion models do not give exactly"
        );
    }
    let (config, runs) =
        oxgen_train::copyright::sharded_diffusion::load_sharded_diffusion(dir, device)?;
    let mut s = config.sample.clone();
    if let Some(seed) = seed {
        s.seed = seed;
    }
    let labels: Option<Vec<u32>> = config
        .model
        .num_classes
        .map(|k| (0..n).map(|i| (i % k) as u32).collect());
    let models: Vec<&oxgen_models::Diffusion> = runs.iter().map(|r| &r.ema).collect();
    let x = oxgen_models::diffusion::naf::sample_naf(
        &models,
        &config.model,
        &s,
        n,
        labels.as_deref(),
        device,
    )
    .map_err(anyhow::Error::msg)?;
    let x = oxgen_train::sample::host_samples(x, "NAF samples")?;
    Ok((x, labels, config, runs[0].manifest.shape))
}

/// Whether `oxgen sample` should go here: --naf given, or a sharded run.
pub(crate) fn wants(a: &SampleArgs) -> bool {
    a.naf.naf.is_some() || is_sharded(&a.ckpt)
}

/// `oxgen sample --ckpt SHARDED --naf RULE`.
pub(crate) fn sample(a: SampleArgs) -> Result<()> {
    let Some(choice) = a.naf.choice() else {
        bail!(
            "{} is a sharded run: pass --naf cp-k, cp-delta or cp-k-seq to sample the NAF combination, or sample one shard with --ckpt {}/shard-0",
            a.ckpt.display(),
            a.ckpt.display()
        );
    };
    let t = &a.text;
    if is_sharded(&a.ckpt)
        && oxgen_train::copyright::sharded::read_manifest(&a.ckpt)?.family == "diffusion"
    {
        let device = crate::device(&a.device)?;
        let (x, labels, _, shape) =
            diffusion_naf_draw(&a.ckpt, &a.naf, a.n, a.sampling.seed, &device)?;
        oxgen_train::run::write_samples(&a.out, &x, labels.as_deref(), shape, None)?;
        println!(
            "wrote {}/samples.png and samples.npy ({} samples from the average of the shard models)",
            a.out.display(),
            a.n
        );
        return Ok(());
    }
    if t.watermark.is_some() || t.best_of > 1 || t.top_k > 0 || t.top_p < 1.0 {
        bail!(
            "--naf samples the combination at --temperature; it takes no --watermark, --best-of, --top-k or --top-p"
        );
    }
    let device = crate::device(&a.device)?;
    let run = load_sharded(&a.ckpt, &device)?;
    let codec = &run.shards[0].codec;
    let prompt = match &t.prompt {
        Some(p) => codec.prompt(p)?,
        None => codec.default_prompt(),
    };
    let models = run.models();
    let seed = a.sampling.seed.unwrap_or(0);
    if *codec == oxgen_train::ar::Codec::Pixels {
        let Naf::Token(rule) = choice else {
            bail!(
                "sequence-level CP-k accepts almost no 64-pixel image: use --naf cp-k or cp-delta"
            );
        };
        let mut images = Vec::with_capacity(a.n);
        let mut deltas = Vec::with_capacity(a.n);
        for i in 0..a.n {
            let (img, ledger) = generate_naf(
                &models,
                rule,
                &[oxgen_train::ar::PIXEL_START],
                64,
                1.0,
                seed + i as u64,
                &device,
            )
            .map_err(anyhow::Error::msg)?;
            deltas.push(ledger.delta());
            images.push(img);
        }
        oxgen_train::ar::write_images(&a.out, &images)?;
        let mean = deltas.iter().sum::<f64>() / deltas.len().max(1) as f64;
        println!(
            "wrote {}/samples.png and samples.npy; mean Δ {mean:.3} nats per image",
            a.out.display()
        );
        return Ok(());
    }
    let (mut lines, mut ledgers) = (Vec::new(), Vec::new());
    for i in 0..a.n {
        let rule = match choice {
            Naf::Token(rule) => rule,
            Naf::Sequence => {
                let d = generate_naf_sequence(
                    &models,
                    &prompt,
                    t.max_tokens,
                    seed + i as u64,
                    a.naf.max_proposals,
                    &device,
                )
                .map_err(anyhow::Error::msg)?;
                let text = codec.decode(&[prompt.clone(), d.tokens].concat());
                println!(
                    "{text}\n  [accepted after {} proposals; log qᵢ: {:?}]",
                    d.proposals, d.log_q
                );
                lines.push(text.replace('\\', "\\\\").replace('\n', "\\n"));
                ledgers.push(serde_json::json!({
                    "text": text, "proposals": d.proposals, "log_q": d.log_q, "rule": "cp-k-seq",
                }));
                continue;
            }
        };
        let (out, ledger) = generate_naf(
            &models,
            rule,
            &prompt,
            t.max_tokens,
            t.temperature as f64,
            seed + i as u64,
            &device,
        )
        .map_err(anyhow::Error::msg)?;
        let text = codec.decode(&[prompt.clone(), out].concat());
        println!("{text}");
        println!(
            "  [Δ = {:.3} nats over {} tokens (log-ratio per shard: {}); bound {:.3}]",
            ledger.delta(),
            ledger.tokens,
            ledger
                .log_ratio
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            ledger.bound
        );
        lines.push(text.replace('\\', "\\\\").replace('\n', "\\n"));
        ledgers.push(serde_json::json!({
            "text": text, "delta": ledger.delta(), "log_ratio": ledger.log_ratio,
            "bound": ledger.bound, "tokens": ledger.tokens, "rule": ledger.rule,
        }));
    }
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("samples.txt"), lines.join("\n") + "\n")?;
    let jsonl: String = ledgers.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(a.out.join("samples.jsonl"), jsonl)?;
    eprintln!(
        "wrote {} samples to {}/samples.txt, each with its Δ in samples.jsonl",
        a.n,
        a.out.display()
    );
    Ok(())
}

/// `oxgen logprob --ckpt SHARDED --naf RULE`.
pub(crate) fn logprob(a: &LogprobArgs) -> Result<()> {
    let choice = a.naf.choice().expect("called with --naf");
    let device = crate::device(&a.device)?;
    let run = load_sharded(&a.ckpt, &device)?;
    let text = match (&a.text, &a.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).with_context(|| f.display().to_string())?,
        (None, None) => bail!("give --text or --file"),
    };
    let target = a.naf.target(choice, run.models());
    let (nats, tokens) = nll_of_text_under(&target, &run.shards[0].codec, &text, &device)?;
    println!(
        "nll under {}: {nats:.4} nats (exact) over {tokens} tokens; {:.4} nats/token",
        a.naf.naf.as_deref().unwrap_or_default(),
        nats / tokens as f64
    );
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "nll_nats": nats, "exact": true, "tokens": tokens,
            "nats_per_token": nats / tokens as f64, "naf": a.naf.naf,
        });
        crate::bench::write_json(path, &doc)?;
    }
    Ok(())
}

/// Whether `oxgen logprob` was given --naf.
pub(crate) fn logprob_wants(a: &LogprobArgs) -> bool {
    a.naf.naf.is_some()
}

#[derive(Args)]
pub(crate) struct ExtractionArgs {
    /// The run to audit: an autoregressive run, or a sharded one with --naf.
    #[arg(long, required_unless_present = "plant")]
    pub(crate) ckpt: Option<PathBuf>,
    /// The canaries: one JSON object per line, {"prefix": ..., "secret": ...}.
    #[arg(long, required_unless_present_any = ["plant", "images"])]
    pub(crate) canaries: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) naf: NafArgs,
    /// Random candidates of the secret's format that each canary is ranked among.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) candidates: usize,
    /// Sampled continuations (temperature 1) per canary.
    #[arg(long, default_value_t = 100)]
    pub(crate) samples: usize,
    /// Seed of the candidates and samples; with --plant, of the canaries and their places.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Instead of auditing: plant K canaries in --data, each --repeats times, and write
    /// data.txt, canaries.jsonl and heldout.txt (the validation tail of a run on data.txt) to --out.
    #[arg(long, value_name = "K", requires = "data")]
    pub(crate) plant: Option<usize>,
    /// With --plant: copies of each canary.
    #[arg(long, default_value_t = 20)]
    pub(crate) repeats: usize,
    /// With --plant: the text file to plant in.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Audit images instead of canaries (an autoregressive digits8 run, or a sharded one with
    /// --naf): draw this many samples and measure their near duplicates of training images
    /// (planted ones apart) against held-out images, and their FD.
    #[arg(long, value_name = "N", conflicts_with = "canaries")]
    pub(crate) images: Option<usize>,
    /// Where report.json (or, with --plant, the planted data) goes.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) device: crate::args::DeviceArgs,
}

/// `oxgen audit extraction`.
pub(crate) fn extraction(a: ExtractionArgs) -> Result<()> {
    if let Some(k) = a.plant {
        return plant_canaries(&a, k);
    }
    if let Some(n) = a.images {
        return audit_images(&a, n);
    }
    let (ckpt, canaries) = (
        a.ckpt.as_ref().expect("clap"),
        a.canaries.as_ref().expect("clap"),
    );
    let canaries = read_canaries(canaries)?;
    let device = crate::device(&a.device)?;
    let opts = ExtractionOptions {
        candidates: a.candidates,
        samples: a.samples,
        seed: a.seed,
    };
    let (report, what) = match a.naf.choice() {
        Some(choice) => {
            let run = load_sharded(ckpt, &device)?;
            let target = a.naf.target(choice, run.models());
            let r = extraction_audit(&target, &run.shards[0].codec, &canaries, &opts, &device)?;
            (
                r,
                format!(
                    "{} over {} shards",
                    a.naf.naf.as_deref().unwrap_or_default(),
                    run.shards.len()
                ),
            )
        }
        None => {
            if is_sharded(ckpt) {
                bail!(
                    "{} is a sharded run: audit its NAF combination with --naf cp-k, or one shard with --ckpt {}/shard-0",
                    ckpt.display(),
                    ckpt.display()
                );
            }
            let run = oxgen_train::ar::load_ar(ckpt, &device)?;
            let r = extraction_audit(
                &Target::Model(&run.model),
                &run.codec,
                &canaries,
                &opts,
                &device,
            )?;
            (r, "one model".to_string())
        }
    };
    println!("target: {} ({what})", ckpt.display());
    println!(
        "| canary | rank among {} | exposure (bits) | greedy | sampled extractions |\n|---|---|---|---|---|",
        a.candidates + 1
    );
    for c in &report.canaries {
        println!(
            "| {}{} | {} | {:.2} | {}{} | {}/{} |",
            c.prefix.trim_start(),
            c.secret,
            c.rank,
            c.exposure,
            c.greedy
                .as_deref()
                .map_or("(none)".into(), |g| g.escape_debug().to_string()),
            if c.greedy_extracted {
                " (verbatim)"
            } else {
                ""
            },
            c.sampled_extracted,
            c.sampled
        );
    }
    println!(
        "mean exposure {:.2} bits (chance {:.2}, at most {:.2}); greedy extraction {}; sampled extraction {:.2}%{}",
        report.mean_exposure,
        report.chance_exposure,
        report.max_exposure,
        report
            .greedy_rate
            .map_or("n/a".into(), |g| format!("{:.1}%", 100.0 * g)),
        100.0 * report.sampled_rate,
        if report.refused > 0 {
            format!(
                " ({} samples refused: no proposal accepted)",
                report.refused
            )
        } else {
            String::new()
        }
    );
    std::fs::create_dir_all(&a.out)?;
    oxgen_train::privacy::write_json_atomic(&a.out.join("report.json"), &report)?;
    // The exposures from the highest down, against what a model that never saw them gives.
    let mut e: Vec<f64> = report.canaries.iter().map(|c| c.exposure).collect();
    e.sort_by(|x, y| y.total_cmp(x));
    let points: Vec<(f64, f64)> = e
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v))
        .collect();
    oxgen_train::plot::curve_with_reference(
        &a.out.join("exposure.png"),
        &format!(
            "canary exposure, {what} (most exposed first; max {:.2} bits)",
            report.max_exposure
        ),
        ("canary", "exposure (bits)"),
        (&what, &points),
        Some((
            "chance (a model that never saw them)",
            report.chance_exposure,
        )),
    )?;
    println!("wrote {}/report.json and exposure.png", a.out.display());
    Ok(())
}

fn plant_canaries(a: &ExtractionArgs, k: usize) -> Result<()> {
    let data = a.data.as_ref().expect("clap");
    let text =
        std::fs::read_to_string(data).with_context(|| format!("reading {}", data.display()))?;
    // Only the first 80%: a run validates on the last 10% of its text.
    let (planted, canaries) = plant(&text, k, a.repeats, 0.8, a.seed)?;
    std::fs::create_dir_all(&a.out)?;
    let chars = planted.chars().count();
    let cut = planted
        .char_indices()
        .nth(chars * 9 / 10)
        .map_or(planted.len(), |(b, _)| b);
    std::fs::write(a.out.join("data.txt"), &planted)?;
    std::fs::write(a.out.join("canaries.jsonl"), canaries_text(&canaries))?;
    std::fs::write(a.out.join("heldout.txt"), &planted[cut..])?;
    println!(
        "planted {k} canaries × {} in {}: wrote {}/data.txt, canaries.jsonl and heldout.txt (the validation tail of a character-level run on data.txt)",
        a.repeats,
        data.display(),
        a.out.display()
    );
    Ok(())
}

fn audit_images(a: &ExtractionArgs, n: usize) -> Result<()> {
    let ckpt = a.ckpt.as_ref().expect("clap");
    let device = crate::device(&a.device)?;
    std::fs::create_dir_all(&a.out)?;
    let diffusion_sharded = is_sharded(ckpt)
        && oxgen_train::copyright::sharded::read_manifest(ckpt)?.family == "diffusion";
    let report = if diffusion_sharded {
        let (x, _, config, _) = diffusion_naf_draw(ckpt, &a.naf, n, Some(a.seed), &device)?;
        diffusion_image_audit(&x, &config, &a.out, &device)?
    } else if let (None, Ok(run)) = (a.naf.choice(), oxgen_train::sample::load_run(ckpt, &device)) {
        let mut s = run.config.sample.clone();
        s.seed = a.seed;
        let labels: Option<Vec<u32>> = run
            .config
            .model
            .num_classes
            .map(|k| (0..n).map(|i| (i % k) as u32).collect());
        let x = oxgen_train::sample::draw(
            &run.ema,
            &run.config.model,
            &s,
            n,
            labels.as_deref(),
            &device,
        )?;
        // One shard of a sharded run: its rows are the shard's; the split to audit against is
        // the run's, kept in shards.json.
        let run_config = match ckpt.parent().filter(|p| is_sharded(p)) {
            Some(p) => oxgen_train::copyright::sharded::read_manifest(p)?
                .config
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_else(|| run.config.clone()),
            None => run.config.clone(),
        };
        diffusion_image_audit(&x, &run_config, &a.out, &device)?
    } else {
        match a.naf.choice() {
            Some(choice) => {
                let run = load_sharded(ckpt, &device)?;
                let target = a.naf.target(choice, run.models());
                image_audit(&target, &run.shards[0].config, n, a.seed, &a.out, &device)?
            }
            None => {
                let run = oxgen_train::ar::load_ar(ckpt, &device)?;
                image_audit(
                    &Target::Model(&run.model),
                    &run.config,
                    n,
                    a.seed,
                    &a.out,
                    &device,
                )?
            }
        }
    };
    let m = &report.memorization;
    println!(
        "{n} samples of {}{}: near duplicates {:.1}% (held-out images: {:.1}%), exact {:.1}%; of a planted image ({} × {}) {:.1}%; median distance ratio {:.3} (held-out {:.3}); FD {:.2}",
        ckpt.display(),
        a.naf
            .naf
            .as_deref()
            .map_or(String::new(), |r| format!(" ({r})")),
        100.0 * m.near,
        100.0 * m.near_baseline,
        100.0 * m.exact,
        report.planted[0],
        report.planted[1],
        100.0 * report.planted_near,
        m.median_ratio,
        m.median_ratio_baseline,
        report.fd
    );
    oxgen_train::privacy::write_json_atomic(&a.out.join("report.json"), &report)?;
    println!("wrote {}/report.json", a.out.display());
    Ok(())
}
