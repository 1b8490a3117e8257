//! `oxgen detect`, and the KGW flags `oxgen sample --watermark kgw` shares with it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use oxgen_models::ar::watermark::{Kgw, Seeding, Tournament};
use oxgen_train::watermark::Scheme;
use oxgen_train::watermark::images;

/// The watermark's key and parameters.
#[derive(Args)]
pub(crate) struct KgwArgs {
    /// A file holding the watermark key: 32 hexadecimal digits.
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// Share of the vocabulary that is green.
    #[arg(long, default_value_t = 0.25)]
    pub(crate) gamma: f64,
    /// Logit bias of the green tokens (sampling only).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) delta: f32,
    /// Green-list seeding: left-hash-4 (the last four tokens, in order), left-hash (the
    /// previous token: weaker, but an edit breaks fewer scores), min-hash (the smallest hash
    /// of the last four) or self-hash (of the last three and the candidate).
    #[arg(long, default_value = "left-hash-4", value_parser = ["left-hash", "left-hash-4", "min-hash", "self-hash"])]
    pub(crate) seeding: String,
    /// The scheme `oxgen detect` and `oxgen watermark-eval` test for: kgw, or tournament
    /// (SynthID-Text's tournament sampling, distortion-free).
    #[arg(long, default_value = "kgw", value_parser = ["kgw", "tournament", "tree-ring"])]
    pub(crate) scheme: String,
    /// Tree-Ring's pattern radius, in frequency steps (diffusion runs).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) radius: f64,
    /// Tree-Ring's inner radius: frequencies below it are left to the model (0: a disc; an
    /// annulus such as 3..6 suits 28×28 images, docs/detection.md).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) inner_radius: f64,
    /// Tournament layers (SynthID uses 30).
    #[arg(long, default_value_t = 30)]
    pub(crate) layers: usize,
    /// Tree-Ring's inversion of a class-conditional run: predicted (condition on the class the
    /// evaluation classifier reads, with the sampler's guidance) or null (unconditional).
    #[arg(long, default_value = "predicted", value_parser = ["predicted", "null"])]
    pub(crate) invert: String,
    /// Tree-Ring: fixed-point refinements of each DDIM inversion step (0: the plain
    /// inversion; each costs one more model evaluation per step).
    #[arg(long, default_value_t = oxgen_train::watermark::images::REFINE)]
    pub(crate) refine: usize,
    /// Tree-Ring: the sampler stops before its last step and returns x at its last timestep,
    /// with a trace of noise (0.042 after 50 DDIM steps), and the inversion starts there. Runs
    /// of saturated images (MNIST) need it: their last step cannot be inverted. Give it to
    /// `sample`, `detect` and `watermark-eval` alike.
    #[arg(long)]
    pub(crate) keep_final_noise: bool,
}

impl KgwArgs {
    pub(crate) fn kgw(&self) -> Result<Kgw> {
        let path = self.key.as_ref().context("--key is required")?;
        let kgw = Kgw {
            key: oxgen_train::watermark::read_key(path)?,
            gamma: self.gamma,
            delta: self.delta,
            seeding: match self.seeding.as_str() {
                "min-hash" => Seeding::MinHash,
                "left-hash" => Seeding::LeftHash,
                "self-hash" => Seeding::SelfHash,
                _ => Seeding::LeftHash4,
            },
        };
        kgw.validate().map_err(anyhow::Error::msg)?;
        Ok(kgw)
    }

    /// The watermark named `name` (kgw or tournament) with these flags.
    pub(crate) fn named(&self, name: &str) -> Result<Scheme> {
        let kgw = self.kgw()?;
        if name != "tournament" {
            return Ok(Scheme::Kgw(kgw));
        }
        let t = Tournament {
            key: kgw.key,
            layers: self.layers,
            seeding: kgw.seeding,
        };
        t.validate().map_err(anyhow::Error::msg)?;
        Ok(Scheme::Tournament(t))
    }

    /// The watermark `--scheme` names.
    pub(crate) fn scheme(&self) -> Result<Scheme> {
        self.named(&self.scheme)
    }

    /// The labels Tree-Ring's inversion conditions on (`--invert`).
    pub(crate) fn invert(&self) -> oxgen_train::watermark::images::InvertLabels {
        match self.invert.as_str() {
            "null" => oxgen_train::watermark::images::InvertLabels::Null,
            _ => oxgen_train::watermark::images::InvertLabels::Predicted,
        }
    }

    /// `sample` with `--keep-final-noise` applied.
    pub(crate) fn sampling(
        &self,
        sample: oxgen_models::SampleConfig,
    ) -> oxgen_models::SampleConfig {
        oxgen_models::SampleConfig {
            final_denoise: sample.final_denoise && !self.keep_final_noise,
            ..sample
        }
    }

    /// The Tree-Ring watermark of these flags.
    pub(crate) fn tree_ring(&self) -> Result<oxgen_train::watermark::treering::TreeRing> {
        let path = self.key.as_ref().context("--key is required")?;
        let t = oxgen_train::watermark::treering::TreeRing {
            key: oxgen_train::watermark::read_key(path)?,
            radius: self.radius,
            inner: self.inner_radius,
        };
        t.validate().map_err(anyhow::Error::msg)?;
        Ok(t)
    }
}

#[derive(Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    pub(crate) kgw: KgwArgs,
    /// The run whose tokenizer the text is scored in (the one that sampled it).
    #[arg(long, required_unless_present = "ckpt")]
    pub(crate) tokenizer: Option<PathBuf>,
    /// A diffusion run: test `.npy` images for its Tree-Ring watermark (inverting each to its
    /// noise with the run's DDIM sampler).
    #[arg(long, conflicts_with = "tokenizer")]
    pub(crate) ckpt: Option<PathBuf>,
    /// Score each line of each file on its own.
    #[arg(long)]
    pub(crate) lines: bool,
    /// Also find the most watermarked span of at least this many scored tokens (WinMax); its
    /// p-value is not corrected for the spans tried.
    #[arg(long)]
    pub(crate) window: Option<usize>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Text files.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
}

pub(crate) fn detect(a: DetectArgs) -> Result<()> {
    if let Some(ckpt) = &a.ckpt {
        return detect_images(&a, ckpt);
    }
    let scheme = a.kgw.scheme()?;
    let tokenizer = a
        .tokenizer
        .as_ref()
        .context("--tokenizer or --ckpt is required")?;
    let run = oxgen_train::ar::load_ar(tokenizer, &burn::tensor::Device::flex())?;
    let oxgen_train::ar::Codec::Text(tok) = &run.codec else {
        anyhow::bail!(
            "{} is not a text run: it has no tokenizer",
            tokenizer.display()
        );
    };
    let mut rows = Vec::new();
    println!(
        "| text | tokens scored | green | z | p (normal) | p (exact, over keys) |\n|---|---|---|---|---|---|"
    );
    for f in &a.files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let parts: Vec<(String, &[u8])> = if a.lines {
            bytes
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(i, l)| (format!("{}:{}", f.display(), i + 1), l))
                .collect()
        } else {
            vec![(f.display().to_string(), &bytes[..])]
        };
        for (name, text) in parts {
            let s = oxgen_train::watermark::detect(&scheme, tok, text, &name)?;
            println!(
                "| {name} | {} | {} | {:.4} | {:.3e} | {:.3e} |",
                s.tokens, s.green, s.z, s.p, s.p_exact
            );
            let mut row = serde_json::json!({"text": name, "tokens": s.tokens, "green": s.green, "z": s.z, "p": s.p, "p_exact": s.p_exact});
            if let (Some(w), Scheme::Kgw(kgw)) = (a.window, &scheme) {
                let tokens = oxgen_train::watermark::tokens_of(tok, text);
                if let Some((best, span)) = kgw.detect_windowed(&tokens, tok.vocab(), w) {
                    println!(
                        "|   best span: tokens {}..{} | {} | {} | {:.4} | {:.3e} (uncorrected) | |",
                        span.start, span.end, best.tokens, best.green, best.z, best.p
                    );
                    row["window"] = serde_json::json!({"start": span.start, "end": span.end, "tokens": best.tokens, "green": best.green, "z": best.z});
                }
            }
            rows.push(row);
        }
    }
    if let Some(j) = a.json {
        std::fs::write(&j, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct WatermarkEvalArgs {
    #[command(flatten)]
    pub(crate) kgw: KgwArgs,
    /// A text run (it samples the watermarked and unwatermarked texts; its tokenizer scores).
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// Human text whose windows are negatives (e.g. the run's own training text); not used
    /// with --scheme tree-ring.
    #[arg(long, required_unless_present = "images")]
    pub(crate) text: Option<PathBuf>,
    /// With --scheme tree-ring on a diffusion run: marked and clean samples to draw.
    #[arg(long)]
    pub(crate) images: Option<usize>,
    /// Where calibration.png, power.png and report.json go.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Windows of the text.
    #[arg(long, default_value_t = 5000)]
    pub(crate) windows: usize,
    /// Unwatermarked samples.
    #[arg(long, default_value_t = 5000)]
    pub(crate) plain: usize,
    /// Watermarked samples.
    #[arg(long, default_value_t = 1000)]
    pub(crate) marked: usize,
    /// Tokens per text.
    #[arg(long, default_value_t = 200)]
    pub(crate) length: usize,
    /// Seed of the windows and samples.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Also sweep KGW's δ and the tournament's depth on this many samples each: power against
    /// quality cost, side by side (tradeoff.png).
    #[arg(long, default_value_t = 0)]
    pub(crate) tradeoff: usize,
}

pub(crate) fn watermark_eval(a: WatermarkEvalArgs) -> Result<()> {
    if a.kgw.scheme == "tree-ring" {
        return tree_ring_eval(&a);
    }
    let scheme = a.kgw.scheme()?;
    let device = burn::tensor::Device::flex();
    let run = oxgen_train::ar::load_ar(&a.ckpt, &device)?;
    let path = a
        .text
        .as_ref()
        .context("--text is required for text watermarks")?;
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let config = oxgen_train::watermark::eval::EvalConfig {
        windows: a.windows,
        plain: a.plain,
        marked: a.marked,
        length: a.length,
        seed: a.seed,
        tradeoff: a.tradeoff,
        ..Default::default()
    };
    let r = oxgen_train::watermark::eval::evaluate(&run, &scheme, &text, &config, &a.out, &device)?;
    println!(
        "negatives: {} ({} windows, {} unwatermarked samples); z ≥ 4 in {} (rate {:.2e}; the normal tail: 3.2e-5); KS D = {:.4}, p = {:.3}",
        r.negatives, a.windows, a.plain, r.false_positives, r.fpr_at_4, r.ks_d, r.ks_p
    );
    println!(
        "  the same texts, a key per text: z ≥ 4 in {}; KS p of normal p-values {:.3}, of randomised exact ones D = {:.4}, p = {:.3} (one key: {:.2e})",
        r.key_per_text.false_positives,
        r.key_per_text.ks_p,
        r.key_per_text.ks_d_exact,
        r.key_per_text.ks_p_exact,
        r.ks_p_exact
    );
    println!(
        "positives: {} watermarked samples of {} tokens ({:.1} scored on average): {:.2}% at z ≥ 4",
        r.positives,
        a.length,
        r.mean_scored,
        100.0 * r.tpr_at_4
    );
    for (l, t) in &r.tpr_by_length {
        println!("  length {l}: {:.2}% at z ≥ 4", 100.0 * t);
    }
    let q = &r.quality;
    println!(
        "quality: NLL under the unwatermarked model, nats per token: unwatermarked samples {:.4}, watermarked {:.4} ({:+.4}), the human text {:.4}",
        q.plain_nll,
        q.marked_nll,
        q.marked_nll - q.plain_nll,
        q.human_nll
    );
    println!("| attack | share attacked | detected at z ≥ 4 | mean z |\n|---|---|---|---|");
    for a in &r.attacks {
        println!(
            "| {} | {:.0}% | {:.1}% | {:.2} |",
            a.attack,
            100.0 * a.rate,
            100.0 * a.tpr_at_4,
            a.mean_z
        );
    }
    if !r.tradeoff.is_empty() {
        println!("| scheme | δ or m | detected at z ≥ 4 | NLL | cost |\n|---|---|---|---|---|");
        for p in &r.tradeoff {
            println!(
                "| {} | {} | {:.1}% | {:.4} | {:+.4} |",
                p.scheme,
                p.param,
                100.0 * p.tpr_at_4,
                p.nll,
                p.nll_cost
            );
        }
    }
    println!(
        "wrote {}/calibration.png, power.png, attacks.png (tradeoff.png) and report.json",
        a.out.display()
    );
    Ok(())
}

fn tree_ring_eval(a: &WatermarkEvalArgs) -> Result<()> {
    let ring = a.kgw.tree_ring()?;
    let device = burn::tensor::Device::flex();
    let run = oxgen_train::sample::load_run(&a.ckpt, &device)?;
    let sample = a.kgw.sampling(oxgen_models::SampleConfig {
        seed: a.seed,
        ..run.config.sample.clone()
    });
    let r = oxgen_train::watermark::images::evaluate_images(
        &run,
        &ring,
        &sample,
        a.images.unwrap_or(200),
        a.kgw.invert(),
        a.kgw.refine,
        &a.out,
        &device,
    )?;
    println!(
        "Tree-Ring, radius {}..{}: {} marked and {} clean samples, DDIM {} steps both ways{}, inverted with {} labels and {} refinements",
        ring.inner,
        ring.radius,
        r.n,
        r.n,
        sample.steps,
        if sample.final_denoise {
            ""
        } else {
            " (the last one kept noisy)"
        },
        a.kgw.invert,
        a.kgw.refine
    );
    println!("| attack | AUC | marked at p < 0.01 | clean at p < 0.01 |\n|---|---|---|---|");
    for row in &r.attacks {
        println!(
            "| {} | {:.4} | {:.1}% | {:.1}% |",
            row.attack,
            row.auc,
            100.0 * row.tpr_at_p01,
            100.0 * row.fpr_at_p01
        );
    }
    if let (Some(c), Some(m)) = (&r.clean, &r.marked) {
        println!(
            "quality: class accuracy {:.2}% clean, {:.2}% marked; FD {:.3} clean, {:.3} marked",
            100.0 * c.accuracy,
            100.0 * m.accuracy,
            c.fd,
            m.fd
        );
    }
    println!("wrote {}/roc.png and report.json", a.out.display());
    Ok(())
}

/// `oxgen detect --ckpt RUN images.npy`: the Tree-Ring test per image.
fn detect_images(a: &DetectArgs, ckpt: &std::path::Path) -> Result<()> {
    let ring = a.kgw.tree_ring()?;
    let device = burn::tensor::Device::flex();
    let run = oxgen_train::sample::load_run(ckpt, &device)?;
    let how = a.kgw.invert();
    // The classifier that reads each image's class is cached beside the run.
    let judge = images::inversion_judge(&run, how, &ckpt.join("judge"), &device)?;
    let mut rows = Vec::new();
    println!("| image | η | degrees of freedom | p |\n|---|---|---|---|");
    for f in &a.files {
        let x = oxgen_train::npy::read_f32(f)?;
        let labels = images::inversion_labels(judge.as_ref(), how, &x, &device);
        let scores = images::detect_images(
            &run,
            &ring,
            &x,
            labels.as_deref(),
            &images::inversion(&a.kgw.sampling(run.config.sample.clone()), a.kgw.refine),
            &device,
        )?;
        for (i, s) in scores.iter().enumerate() {
            println!(
                "| {}[{i}] | {:.3} | {} | {:.3e} |",
                f.display(),
                s.eta,
                s.dof,
                s.p
            );
            rows.push(serde_json::json!({"file": f.display().to_string(), "image": i, "eta": s.eta, "dof": s.dof, "p": s.p}));
        }
    }
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}
