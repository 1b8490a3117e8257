//! The arguments of `oxgen tune` (post-training of autoregressive runs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::args::DeviceArgs;

#[derive(Subcommand)]
pub(crate) enum TuneMethod {
    /// GRPO with a verifiable reward: groups of sampled completions per prompt, scored,
    /// normalised within the group, a clipped policy-gradient step with a KL penalty to the
    /// base. Writes metrics.jsonl, eval.jsonl (held-out accuracy) and curves.png.
    #[command(
        after_help = "Examples:\n  oxgen tune grpo --base runs/sums --reward arithmetic --out runs/sums-grpo\n  oxgen tune grpo --base runs/lines --reward 'regex:[a-z ]+ is [a-z]+' --out runs/lines-grpo\n  oxgen tune grpo --base runs/qa --reward pairs:answers.tsv --out runs/qa-grpo\n\nRewards: arithmetic (exact answers of the embedded sums), regex:PATTERN (the whole completion\nmatches), pairs:FILE (TSV of prompt and answer)."
    )]
    Grpo(GrpoArgs),
    /// Supervised fine-tuning on prompt/completion pairs, the loss on the completion tokens
    /// only, optionally packed several to a context window. Writes metrics.jsonl, eval.jsonl
    /// (held-out exact match for sums, else held-out completion NLL) and curves.png.
    #[command(
        after_help = "Examples:\n  oxgen tune sft --base runs/sums-260 --data arithmetic --out runs/sums-sft\n  oxgen tune sft --base runs/chars --data pairs.jsonl --pack --out runs/chars-sft\n  oxgen tune sft --base runs/sums-260 --lora-rank 8 --lora-targets qkv,fc --out runs/sums-lora\n\nData: arithmetic (the base's own sums with their answers), a JSONL file of\n{\"prompt\": ..., \"completion\": ...} lines, or a TSV file of prompt<TAB>completion lines."
    )]
    Sft(SftArgs),
    /// Folds a LoRA run's adapters into its weights (W + α/r · A·B): a plain run that samples,
    /// exports and serves as a base like any autoregressive run.
    #[command(
        after_help = "Example:\n  oxgen tune sft --base runs/sums-260 --lora-rank 8 --out runs/sums-lora\n  oxgen tune merge --run runs/sums-lora --out runs/sums-lora-merged"
    )]
    Merge(MergeArgs),
    /// DPO (or IPO) against the frozen base on preference pairs: a JSONL file of
    /// {"prompt", "chosen", "rejected"} lines, or pairs made by sampling the base N times per
    /// prompt and ranking with a verifier. Reports held-out preference accuracy and margins.
    #[command(
        after_help = "Examples:\n  oxgen tune dpo --base runs/sums-260 --pairs-from-verifier 8 --reward arithmetic --out runs/sums-dpo\n  oxgen tune dpo --base runs/chars --pairs prefs.jsonl --loss ipo --out runs/chars-dpo"
    )]
    Dpo(DpoArgs),
    /// A reward model: the base GPT with a scalar head, trained with the Bradley–Terry loss on
    /// preference pairs (a JSONL file, or pairs a verifier ranks from the base's samples).
    /// Reports held-out pairwise accuracy; the run serves as --reward model:RUN.
    #[command(
        after_help = "Examples:\n  oxgen tune rm --base runs/sums-260 --pairs-from-verifier 8 --reward arithmetic --out runs/sums-rm\n  oxgen tune rm --base runs/chars --pairs prefs.jsonl --out runs/chars-rm"
    )]
    Rm(RmArgs),
    /// Diffusion-DPO (Wallace et al., 2023) on a class-conditional diffusion run: pairs of the
    /// base's samples of one class ranked by the evaluation classifier's confidence, the DPO
    /// loss on denoising errors against the frozen base. Reports class accuracy (the reward's
    /// classifier and a check classifier), FD and held-out preference accuracy.
    #[command(
        name = "diffusion-dpo",
        after_help = "Example:\n  oxgen train --data digits8 --out runs/digits\n  oxgen tune diffusion-dpo --base runs/digits --out runs/digits-dpo"
    )]
    DiffusionDpo(DiffusionDpoArgs),
    /// Best-of-n, measured: on held-out sums, n answers per problem and the one --reward ranks
    /// highest (exact match); on a class-conditional diffusion run, n samples per row and the
    /// one the evaluation classifier is most confident in (class accuracy by it and by a check
    /// classifier, FD).
    #[command(
        after_help = "Examples:\n  oxgen tune best-of --base runs/sums-260 --reward model:runs/sums-rm --n 1,4,16\n  oxgen tune best-of --base runs/digits --reward classifier --n 1,4,16 --guidance 1"
    )]
    BestOf(BestOfArgs),
}

impl TuneMethod {
    /// The run flags of a method that trains (all but `merge` and `best-of`).
    pub(crate) fn run_args(&self) -> Option<&RunArgs> {
        match self {
            Self::Grpo(a) => Some(&a.run),
            Self::Sft(a) => Some(&a.run),
            Self::Dpo(a) => Some(&a.run),
            Self::Rm(a) => Some(&a.run),
            Self::DiffusionDpo(a) => Some(&a.run),
            Self::Merge(_) | Self::BestOf(_) => None,
        }
    }
}

/// What every tuning command takes: the base, the run folder, a config file, resume, quiet,
/// the device.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The autoregressive run (or checkpoint) to start from (the frozen reference of DPO and
    /// GRPO, the backbone of a reward model).
    #[arg(long)]
    pub(crate) base: PathBuf,
    /// The tuned run's folder.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// A TOML or JSON file overriding any of the method's config fields.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Data-parallel tuning: one replica per device, each on a disjoint shard of every batch
    /// (wgpu:0,wgpu:1 | cpu:0,cpu:1 | all; as `oxgen train --devices`).
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub(crate) devices: Option<String>,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Args)]
pub(crate) struct BestOfArgs {
    /// An autoregressive run on the arithmetic language, or a class-conditional diffusion run.
    #[arg(long)]
    pub(crate) base: PathBuf,
    /// The ranking: model:RUN, arithmetic, regex:PATTERN or pairs:FILE for sums; classifier
    /// (the evaluation classifier's confidence in the class) for diffusion.
    #[arg(long)]
    pub(crate) reward: String,
    /// The n to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 16])]
    pub(crate) n: Vec<usize>,
    /// Held-out problems to use (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) problems: usize,
    /// Diffusion: samples per class.
    #[arg(long, default_value_t = 50)]
    pub(crate) per_class: usize,
    /// Diffusion: guidance scale (default: the run's).
    #[arg(long)]
    pub(crate) guidance: Option<f32>,
    /// Diffusion: where the classifiers are cached (default: a temporary folder).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Args)]
pub(crate) struct RmArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// A JSONL file of {"prompt", "chosen", "rejected"} lines.
    #[arg(long, conflicts_with = "pairs_from_verifier")]
    pub(crate) pairs: Option<String>,
    /// Make pairs by sampling the base N times per prompt, ranked by --reward.
    #[arg(long)]
    pub(crate) pairs_from_verifier: Option<usize>,
    /// The verifier for --pairs-from-verifier: arithmetic, regex:PATTERN or pairs:FILE.
    #[arg(long)]
    pub(crate) reward: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Seed of the pairs, the split, the head and the batches.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Args)]
pub(crate) struct DpoArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// A JSONL file of {"prompt", "chosen", "rejected"} lines.
    #[arg(long, conflicts_with = "pairs_from_verifier")]
    pub(crate) pairs: Option<String>,
    /// Make pairs by sampling the base N times per prompt, ranked by --reward.
    #[arg(long)]
    pub(crate) pairs_from_verifier: Option<usize>,
    /// The verifier for --pairs-from-verifier: arithmetic, regex:PATTERN or pairs:FILE.
    #[arg(long)]
    pub(crate) reward: Option<String>,
    /// sigmoid (DPO) or ipo.
    #[arg(long)]
    pub(crate) loss: Option<String>,
    /// β.
    #[arg(long)]
    pub(crate) beta: Option<f64>,
    /// Add this weight times the chosen completions' NLL per token (Pang et al., 2024).
    #[arg(long)]
    pub(crate) nll_weight: Option<f64>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Seed of the pairs, the split and the batches.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Args)]
pub(crate) struct SftArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// arithmetic, or a JSONL or TSV file of prompt/completion pairs.
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Examples per step.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Pack examples several to a context window.
    #[arg(long)]
    pub(crate) pack: bool,
    /// Seed of the batches, the split and the adapters.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Train LoRA adapters of this rank on a frozen base instead of every weight.
    #[arg(long)]
    pub(crate) lora_rank: Option<usize>,
    /// LoRA's α (the update is scaled by α / rank; default 16).
    #[arg(long, requires = "lora_rank")]
    pub(crate) lora_alpha: Option<f64>,
    /// LoRA's target layers, comma-separated, from qkv, proj, fc, out and head (default: the
    /// first four).
    #[arg(long, value_delimiter = ',', requires = "lora_rank")]
    pub(crate) lora_targets: Option<Vec<String>>,
}

#[derive(Args)]
pub(crate) struct MergeArgs {
    /// A run tuned with LoRA adapters (`oxgen tune sft --lora-rank R`).
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// The folder of the merged, plain run.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

#[derive(Args)]
pub(crate) struct GrpoArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// The reward: arithmetic, regex:PATTERN, pairs:FILE or model:RUN.
    #[arg(long)]
    pub(crate) reward: Option<String>,
    /// Add --format-weight to the reward when the whole completion matches this pattern.
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// See --format.
    #[arg(long)]
    pub(crate) format_weight: Option<f64>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Prompts per step.
    #[arg(long)]
    pub(crate) prompts: Option<usize>,
    /// Completions per prompt.
    #[arg(long)]
    pub(crate) group: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Weight of the KL penalty to the base.
    #[arg(long)]
    pub(crate) beta: Option<f64>,
    /// Seed of the prompts and samples.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Args)]
pub(crate) struct DiffusionDpoArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Prompts (pairs) per class.
    #[arg(long)]
    pub(crate) prompts_per_class: Option<usize>,
    /// Samples per prompt, ranked by the classifier.
    #[arg(long)]
    pub(crate) candidates: Option<usize>,
    /// β.
    #[arg(long)]
    pub(crate) beta: Option<f64>,
    /// Optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Guidance scale of the pairs' and the evaluations' samples (1: none).
    #[arg(long)]
    pub(crate) guidance: Option<f32>,
    /// Seed of the pairs, the split, the batches and the noise.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}
