//! `oxgen detect`, and the KGW flags `oxgen sample --watermark kgw` shares with it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use oxgen_models::ar::watermark::{Kgw, Seeding};

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
    /// Green-list seeding: left-hash (the previous token) or min-hash (of the last four).
    #[arg(long, default_value = "left-hash", value_parser = ["left-hash", "min-hash"])]
    pub(crate) seeding: String,
}

impl KgwArgs {
    pub(crate) fn kgw(&self) -> Result<Kgw> {
        let path = self.key.as_ref().context("--key is required")?;
        let kgw = Kgw {
            key: oxgen_train::watermark::read_key(path)?,
            gamma: self.gamma,
            delta: self.delta,
            seeding: if self.seeding == "min-hash" {
                Seeding::MinHash
            } else {
                Seeding::LeftHash
            },
        };
        kgw.validate().map_err(anyhow::Error::msg)?;
        Ok(kgw)
    }
}

#[derive(Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    pub(crate) kgw: KgwArgs,
    /// The run whose tokenizer the text is scored in (the one that sampled it).
    #[arg(long)]
    pub(crate) tokenizer: PathBuf,
    /// Score each line of each file on its own.
    #[arg(long)]
    pub(crate) lines: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Text files.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
}

pub(crate) fn detect(a: DetectArgs) -> Result<()> {
    let kgw = a.kgw.kgw()?;
    let run = oxgen_train::ar::load_ar(&a.tokenizer, &burn::tensor::Device::flex())?;
    let oxgen_train::ar::Codec::Text(tok) = &run.codec else {
        anyhow::bail!(
            "{} is not a text run: it has no tokenizer",
            a.tokenizer.display()
        );
    };
    let mut rows = Vec::new();
    println!("| text | tokens scored | green | z | p |\n|---|---|---|---|---|");
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
            let s = oxgen_train::watermark::detect(&kgw, tok, text, &name)?;
            println!(
                "| {name} | {} | {} | {:.4} | {:.3e} |",
                s.tokens, s.green, s.z, s.p
            );
            rows.push(serde_json::json!({"text": name, "tokens": s.tokens, "green": s.green, "z": s.z, "p": s.p}));
        }
    }
    if let Some(j) = a.json {
        std::fs::write(&j, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}
