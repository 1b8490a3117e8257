//! `oxgen limit`: the adversary–learner game of generation in the limit on a collection file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use oxgen_train::limit::{Collection, GameConfig, Generator, Order};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  oxgen limit --collection examples/limit/bcount.toml --target 1 --adversary adversarial --generator km,identify --steps 100000 --out runs/limit-bcount\n  oxgen limit --collection examples/limit/ab.toml --target 6 --adversary all --generator all --out runs/limit-ab\n\n  oxgen limit --collection examples/limit/bcount.toml --target 5 --write-text 2000 --out runs/l3\n  oxgen train ar --data runs/l3/target.txt --out runs/l3-model\n  oxgen limit --collection examples/limit/bcount.toml --target 5 --generator km,model,model-constrained --model runs/l3-model --steps 2000 --out runs/limit-model\n\nGenerators: km, identify, gold, memorise, breadth:B (B in [0, 1]), model and model-constrained (with --model); all = the first four and breadth with B = 0, 0.25, 0.5, 0.75, 1.\nAdversaries: shortlex, random, adversarial; all = the three."
)]
pub(crate) struct LimitArgs {
    /// The collection of languages (TOML; docs/generation-in-the-limit.md).
    #[arg(long)]
    pub(crate) collection: PathBuf,
    /// The target: a language's index in the collection (0-based, file order, then generated).
    #[arg(long)]
    pub(crate) target: usize,
    /// Adversaries' orders, comma-separated, or all.
    #[arg(long, value_delimiter = ',', default_value = "shortlex")]
    pub(crate) adversary: Vec<String>,
    /// Generators, comma-separated, or all.
    #[arg(long, value_delimiter = ',', default_value = "km")]
    pub(crate) generator: Vec<String>,
    /// Steps of each game.
    #[arg(long, default_value_t = 1000)]
    pub(crate) steps: usize,
    /// Languages the generators consider (at step t, the first min(t + 1, this)).
    #[arg(long, default_value_t = 64)]
    pub(crate) languages: usize,
    /// Longest string read from a language.
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_len: usize,
    /// Seed of the random order and of the generators' draws.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// A trained character run (`oxgen train ar --data FILE`, one string per line) for the
    /// generators model and model-constrained.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// The model generators' nucleus (top-p).
    #[arg(long, default_value_t = 0.95)]
    pub(crate) top_p: f32,
    /// Instead of playing: write N strings of the target, drawn without replacement from its
    /// first 4N (shortlex), one per line, to OUT/target.txt (training data for --model).
    #[arg(long, value_name = "N")]
    pub(crate) write_text: Option<usize>,
    /// Output folder: report.json, report.md, curves-ORDER.png, tradeoff-ORDER.png.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

fn parse_list<T: std::str::FromStr<Err = String>>(v: &[String], all: &[&str]) -> Result<Vec<T>> {
    let names: Vec<&str> = if v.iter().any(|s| s == "all") {
        all.to_vec()
    } else {
        v.iter().map(String::as_str).collect()
    };
    names
        .iter()
        .map(|s| s.parse::<T>().map_err(anyhow::Error::msg))
        .collect()
}

pub(crate) fn run(a: LimitArgs) -> Result<()> {
    let collection = Collection::load(&a.collection)?;
    let orders: Vec<Order> = parse_list(&a.adversary, &["shortlex", "random", "adversarial"])?;
    let generators: Vec<Generator> = parse_list(
        &a.generator,
        &[
            "km",
            "identify",
            "gold",
            "memorise",
            "breadth:0",
            "breadth:0.25",
            "breadth:0.5",
            "breadth:0.75",
            "breadth:1",
        ],
    )?;
    if let Some(n) = a.write_text {
        let path = a.out.join("target.txt");
        let k = oxgen_train::limit::report::write_target_text(
            &collection,
            a.target,
            n,
            a.seed,
            a.languages,
            &path,
        )?;
        println!("wrote {} ({k} strings of the target)", path.display());
        return Ok(());
    }
    let device = burn::tensor::Device::flex();
    let run = match &a.model {
        Some(p) => Some(oxgen_train::ar::load_ar(p, &device)?),
        None => None,
    };
    let mut lines = match &run {
        Some(r) => Some(oxgen_train::limit::model::ModelLines::new(
            r, &device, a.seed, a.top_p, a.max_len,
        )?),
        None => None,
    };
    let base = GameConfig {
        target: a.target,
        steps: a.steps,
        seed: a.seed,
        languages: a.languages,
        max_len: a.max_len,
        ..GameConfig::default()
    };
    let reports = oxgen_train::limit::report::run(
        &collection,
        &base,
        &orders,
        &generators,
        lines.as_mut(),
        &a.out,
        !a.quiet,
    )?;
    print!("{}", oxgen_train::limit::report::table(&reports));
    println!(
        "wrote {}/report.json, report.md and curves-*.png",
        a.out.display()
    );
    Ok(())
}
