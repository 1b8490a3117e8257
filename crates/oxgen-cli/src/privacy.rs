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
}

pub(crate) fn run(cmd: PrivacyCommand) -> Result<()> {
    match cmd {
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
