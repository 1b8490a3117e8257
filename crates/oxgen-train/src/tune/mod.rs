//! Post-training of autoregressive runs: rewards and verifiers ([`reward`]), the objectives
//! ([`objective`]: DPO, IPO, GRPO, the k3 KL), and two trainers on the shared loop: supervised
//! fine-tuning on prompt/completion pairs ([`sft`]) and GRPO with verifiable rewards
//! ([`grpo`]). Tuned runs load as `ar` runs. See `docs/post-training.md`.

pub mod best_of;
pub mod best_of_images;
pub mod diffusion_dpo;
pub mod dpo;
pub mod grpo;
pub mod judge;
pub mod merge;
pub mod objective;
mod pairs;
pub mod reward;
pub mod rm;
mod rows;
pub mod sft;
mod tuning;
