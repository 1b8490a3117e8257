//! `oxgen privacy epsilon|sigma`: the accountants from the command line.

use anyhow::Result;
use clap::{Args, Subcommand};
use oxgen_train::privacy::{self, AccountantKind, Phase};

/// The mechanism both subcommands describe.
#[derive(Args, Clone, Debug)]
pub(crate) struct MechanismArgs {
    /// Sampling rate q: each example's chance of being in a batch (batch size / N under
    /// Poisson sampling).
    #[arg(long)]
    pub(crate) q: f64,
    /// Steps of DP-SGD.
    #[arg(long)]
    pub(crate) steps: u64,
    /// Target δ.
    #[arg(long)]
    pub(crate) delta: f64,
    /// The accountant: rdp (Rényi DP, Opacus's orders), prv (Gopi et al. 2021, tighter) or gdp
    /// (Gaussian DP; an approximation).
    #[arg(long, default_value = "rdp", value_parser = ["rdp", "prv", "gdp"])]
    pub(crate) accountant: String,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub(crate) json: bool,
}

impl MechanismArgs {
    fn kind(&self) -> Result<AccountantKind> {
        Ok(self.accountant.parse()?)
    }
}

#[derive(Subcommand)]
pub(crate) enum PrivacyCommand {
    /// ε spent by `--steps` steps of the subsampled Gaussian mechanism with noise multiplier
    /// `--sigma` and sampling rate `--q`, at `--delta`.
    #[command(
        after_help = "Examples:\n  oxgen privacy epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5\n  oxgen privacy epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5 --accountant prv"
    )]
    Epsilon {
        /// Noise multiplier σ (noise standard deviation over the clipping norm).
        #[arg(long)]
        sigma: f64,
        #[command(flatten)]
        mech: MechanismArgs,
    },
    /// The noise multiplier σ that spends at most `--epsilon` (Opacus's search: doubling, then
    /// bisection to `--tolerance` in ε).
    #[command(
        after_help = "Example:\n  oxgen privacy sigma --epsilon 8 --q 0.04 --steps 2000 --delta 1e-5 --accountant prv"
    )]
    Sigma {
        /// Target ε.
        #[arg(long)]
        epsilon: f64,
        /// Tolerance of the search in ε.
        #[arg(long, default_value_t = 0.01)]
        tolerance: f64,
        #[command(flatten)]
        mech: MechanismArgs,
    },
    /// Utility against privacy: trains the VAE without privacy and with DP-SGD at each
    /// `--epsilons`, and writes utility.json and utility.png (held-out NLL bound against ε).
    #[command(
        after_help = "Example:\n  oxgen privacy utility --data digits8 --epsilons 1,3,8 --dp-clip 0.1 --out runs/dp-utility"
    )]
    Utility(UtilityArgs),
}

#[derive(Args)]
pub(crate) struct UtilityArgs {
    /// Dataset.
    #[arg(long, default_value = "digits8")]
    pub(crate) data: String,
    /// Target ε of the DP runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 3.0, 8.0])]
    pub(crate) epsilons: Vec<f64>,
    /// A TOML or JSON file overriding the VAE's config fields.
    #[arg(long)]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Optimizer steps of every run.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Batch size of every run.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Where the runs, utility.json and utility.png go.
    #[arg(long)]
    pub(crate) out: std::path::PathBuf,
    /// δ of the DP runs.
    #[arg(long, default_value_t = 1e-5)]
    pub(crate) dp_delta: f64,
    /// Per-sample clipping norm C.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) dp_clip: f64,
    /// The accountant.
    #[arg(long, default_value = "rdp", value_parser = ["rdp", "prv", "gdp"])]
    pub(crate) dp_accountant: String,
    #[command(flatten)]
    pub(crate) device: crate::args::DeviceArgs,
}

fn utility(a: UtilityArgs) -> Result<()> {
    use oxgen_train::family::FamilyConfig;
    use oxgen_train::privacy::dpsgd::DpConfig;
    let device = crate::device(&a.device)?;
    let data = oxgen_train::data::load(&a.data, 0, &Default::default())?;
    let mut config = FamilyConfig::defaults("vae", &data)?;
    config.data = a.data.clone();
    if let Some(f) = &a.config {
        config = config.merge_file(f)?;
    }
    if let Some(s) = a.steps {
        config.steps = s;
    }
    if let Some(b) = a.batch_size {
        config.batch_size = b;
    }
    let dp = DpConfig {
        delta: a.dp_delta,
        clip: a.dp_clip,
        accountant: a.dp_accountant.parse()?,
        ..DpConfig::default()
    };
    let opts = oxgen_train::trainer::TrainOptions {
        device,
        progress: true,
        ..Default::default()
    };
    let rows =
        oxgen_train::privacy::utility::utility_sweep(&config, &dp, &a.epsilons, &a.out, &opts)?;
    println!(
        "| run | ε | σ | held-out NLL (IWAE), bits/dim | ELBO bound | SWD / floor | MMD / floor | train s |\n|---|---|---|---|---|---|---|---|"
    );
    let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.4}"));
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} |",
            r.target_epsilon
                .map_or("non-private".into(), |e| format!("DP, target ε = {e}")),
            f(r.epsilon),
            f(r.sigma),
            f(r.iwae_bits),
            f(r.elbo_bits),
            r.swd_ratio,
            r.mmd_ratio,
            r.train_seconds
        );
    }
    println!(
        "wrote {}/utility.json, utility.png and a run folder per row",
        a.out.display()
    );
    Ok(())
}

pub(crate) fn run(cmd: PrivacyCommand) -> Result<()> {
    match cmd {
        PrivacyCommand::Utility(a) => utility(a)?,
        PrivacyCommand::Epsilon { sigma, mech } => {
            let kind = mech.kind()?;
            let h = [Phase {
                sigma,
                q: mech.q,
                steps: mech.steps,
            }];
            let eps = privacy::epsilon(kind, &h, mech.delta)?;
            if mech.json {
                println!(
                    "{}",
                    serde_json::json!({"accountant": mech.accountant, "epsilon": eps, "sigma": sigma, "q": mech.q, "steps": mech.steps, "delta": mech.delta})
                );
            } else {
                println!(
                    "ε = {eps:.6} at δ = {:e} ({} accountant; σ = {sigma}, q = {}, {} steps)",
                    mech.delta, mech.accountant, mech.q, mech.steps
                );
            }
        }
        PrivacyCommand::Sigma {
            epsilon,
            tolerance,
            mech,
        } => {
            let kind = mech.kind()?;
            let sigma = privacy::sigma::sigma_for_epsilon(
                kind, epsilon, mech.delta, mech.q, mech.steps, tolerance,
            )?;
            let spent = privacy::epsilon(
                kind,
                &[Phase {
                    sigma,
                    q: mech.q,
                    steps: mech.steps,
                }],
                mech.delta,
            )?;
            if mech.json {
                println!(
                    "{}",
                    serde_json::json!({"accountant": mech.accountant, "sigma": sigma, "epsilon": spent, "target_epsilon": epsilon, "q": mech.q, "steps": mech.steps, "delta": mech.delta})
                );
            } else {
                println!(
                    "σ = {sigma:.6} spends ε = {spent:.6} ≤ {epsilon} at δ = {:e} ({} accountant; q = {}, {} steps)",
                    mech.delta, mech.accountant, mech.q, mech.steps
                );
            }
        }
    }
    Ok(())
}
