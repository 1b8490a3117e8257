//! Post-training. Of autoregressive runs: rewards and verifiers ([`reward`]), the objectives
//! ([`objective`]: DPO, IPO, GRPO, the k3 KL), and trainers on the shared loop — supervised
//! fine-tuning, full or with LoRA adapters ([`sft`], merged back by [`merge`]), a reward model
//! ([`rm`]), DPO/IPO ([`dpo`]) and GRPO with verifiable rewards ([`grpo`]) — and best-of-n
//! ([`best_of`]). Tuned runs load as `ar` runs. Of class-conditional diffusion runs: the
//! evaluation classifier as a reward ([`judge`]), best-of-n ([`best_of_images`]) and
//! Diffusion-DPO ([`diffusion_dpo`]). See `docs/post-training.md`.

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
