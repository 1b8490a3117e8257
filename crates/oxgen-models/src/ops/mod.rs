//! The op API that models call, with plain-burn references. Kernel crates plug fused versions in
//! behind it (see `docs/architecture.md`).

pub mod attention;
pub mod denoise;
