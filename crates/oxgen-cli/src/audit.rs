//! `oxgen audit membership`: attacks a VAE, flow, GAN or diffusion recipe (a run's, or the
//! defaults) for membership leakage.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use oxgen_train::family::FamilyConfig;
use oxgen_train::privacy::audit::{AuditOptions, membership_audit};
use oxgen_train::privacy::audit_target::AuditRecipe;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Membership inference against a VAE, flow, GAN or diffusion recipe: a threshold on each
    /// row's score (the log-likelihood; diffusion's denoising loss; a GAN's discriminator logit)
    /// and LiRA, with AUC, TPR at 0.1% and 1%
    /// FPR, and an empirical lower bound on ε. The audit retrains the recipe (the run's config,
    /// DP settings included) on `--members` rows it chooses, so that it knows who is a member
    /// and can plant canaries.
    #[command(
        after_help = "Examples:\n  oxgen audit membership --ckpt runs/vae --members 256 --references 8 --out runs/audit\n  oxgen audit membership --data digits8 --steps 3000 --dp-epsilon 3 --canaries 64 --out runs/audit-dp\n  oxgen audit membership --family gan --data digits8 --steps 2000 --out runs/audit-gan"
    )]
    Membership(MembershipArgs),
    /// Extraction of planted canaries from a text model, or from the NAF combination of a
    /// sharded run (--naf): each canary's exposure (its rank among --candidates random secrets
    /// of its format) and the rate at which greedy and sampled continuations of its prefix give
    /// its secret verbatim. `--plant K --data FILE` writes a text with K canaries planted
    /// --repeats times each, for a controlled experiment.
    #[command(
        after_help = "Examples:\n  oxgen audit extraction --plant 10 --repeats 20 --data ../shared/data/tinyshakespeare.txt --out planted\n  oxgen train ar --data planted/data.txt --out runs/single\n  oxgen train ar --data planted/data.txt --shards 2 --out runs/naf\n  oxgen audit extraction --ckpt runs/single --canaries planted/canaries.jsonl --out runs/ex-single\n  oxgen audit extraction --ckpt runs/naf --naf cp-k --canaries planted/canaries.jsonl --out runs/ex-naf"
    )]
    Extraction(crate::copyright::ExtractionArgs),
}

#[derive(Args)]
pub(crate) struct MembershipArgs {
    /// A VAE, flow, GAN or diffusion run whose recipe to audit (its config, DP settings
    /// included; a diffusion recipe trains unconditionally, as the audit's rows have no labels).
    #[arg(long)]
    pub(crate) ckpt: Option<std::path::PathBuf>,
    /// Without --ckpt: the family of the default recipe.
    #[arg(long, default_value = "vae", value_parser = ["vae", "flow", "gan", "diffusion"])]
    pub(crate) family: String,
    /// Without --ckpt: the dataset of the default recipe.
    #[arg(long, default_value = "digits8")]
    pub(crate) data: String,
    /// Optimizer steps of the target and reference models.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Members: training rows of the target (as many held-out rows are non-members).
    #[arg(long, default_value_t = 256)]
    pub(crate) members: usize,
    /// LiRA reference models (0: the loss attack only).
    #[arg(long, default_value_t = 8)]
    pub(crate) references: usize,
    /// Random ±1 canary images, half planted in the target's training rows.
    #[arg(long, default_value_t = 0)]
    pub(crate) canaries: usize,
    /// Where report.json goes.
    #[arg(long)]
    pub(crate) out: std::path::PathBuf,
    #[command(flatten)]
    pub(crate) dp: crate::args::DpArgs,
    #[command(flatten)]
    pub(crate) device: crate::args::DeviceArgs,
}

pub(crate) fn run(cmd: AuditCommand) -> Result<()> {
    let a = match cmd {
        AuditCommand::Membership(a) => a,
        AuditCommand::Extraction(a) => return crate::copyright::extraction(a),
    };
    let device = crate::device(&a.device)?;
    let dp = a.dp.config()?;
    let recipe = match &a.ckpt {
        Some(run) => {
            let ck = oxgen_train::checkpoint::load(run).context("cannot read the run to audit")?;
            if ck.manifest.family == "diffusion" {
                let c = serde_json::from_value::<oxgen_train::TrainConfig>(ck.manifest.config)
                    .context("the diffusion run's config")?;
                AuditRecipe::Diffusion(c)
            } else {
                let c = serde_json::from_value::<FamilyConfig>(ck.manifest.config)
                    .context("the run to audit is not a VAE, flow, GAN or diffusion run")?;
                AuditRecipe::Family(c)
            }
        }
        None => {
            let data = oxgen_train::data::load(&a.data, 0, &Default::default())?;
            if a.family == "diffusion" {
                let mut c = oxgen_train::TrainConfig::defaults(&a.data, data.shape, None);
                c.data = a.data.clone();
                AuditRecipe::Diffusion(c)
            } else {
                let mut c = FamilyConfig::defaults(&a.family, &data)?;
                c.data = a.data.clone();
                // As `oxgen train gan`: the default R1 penalty reads private rows outside the
                // clipping, so a DP GAN of the default recipe trains without it.
                if dp.is_some() {
                    c.drop_penalty_for_dp();
                }
                AuditRecipe::Family(c)
            }
        }
    };
    let recipe = recipe.with_overrides(a.steps, dp);
    let opts = AuditOptions {
        members: a.members,
        references: a.references,
        canaries: a.canaries,
        ..AuditOptions::default()
    };
    let train = oxgen_train::trainer::TrainOptions {
        device,
        progress: true,
        ..Default::default()
    };
    let r = membership_audit(&recipe, &opts, &train)?;
    std::fs::create_dir_all(&a.out)?;
    oxgen_train::privacy::write_json_atomic(&a.out.join("report.json"), &r)?;
    match r.accountant_epsilon {
        Some(e) => println!(
            "target: {} with DP-SGD, accountant ε = {e:.4} at δ = {:e}",
            r.family, r.delta
        ),
        None => println!(
            "target: {}, non-private (ε lower bounds at δ = {:e})",
            r.family, r.delta
        ),
    }
    println!(
        "| attack | members / non-members | AUC | TPR at 0.1% FPR | TPR at 1% FPR | ε lower bound (95%) |\n|---|---|---|---|---|---|"
    );
    for t in &r.attacks {
        println!(
            "| {} | {} / {} | {:.4} | {:.1}% | {:.1}% | {:.3} |",
            t.name,
            t.n.0,
            t.n.1,
            t.auc,
            100.0 * t.tpr_at_0_1,
            100.0 * t.tpr_at_1,
            t.epsilon_lower
        );
    }
    if let Some(e) = r.accountant_epsilon
        && r.attacks.iter().any(|t| t.epsilon_lower > e)
    {
        anyhow::bail!("an empirical ε lower bound exceeds the accountant's ε = {e}: a privacy bug");
    }
    println!("wrote {}/report.json", a.out.display());
    Ok(())
}
