//! Post-training of autoregressive runs: rewards and verifiers ([`reward`]) and the objectives
//! ([`objective`]: DPO, IPO, GRPO, the k3 KL), and the GRPO trainer on the shared loop
//! ([`grpo`]).

pub mod grpo;
pub mod objective;
pub mod reward;
