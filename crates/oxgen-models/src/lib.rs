//! Backend-agnostic generative models for oxgen, and the op API they call.
//!
//! Nothing here names a GPU API: models are written against `burn::tensor::Tensor` and run on
//! whatever device their tensors live on. Ops with fused kernels ([`ops`]) keep a plain-burn
//! reference here; kernel crates register fused versions at run time.

pub mod ar;
pub mod diffusion;
pub mod flow;
pub mod gan;
pub mod generative;
pub mod ops;
pub mod precision;
pub mod rng;
pub mod samplers;
mod settings;
#[cfg(test)]
mod testing;
pub mod vae;

pub use diffusion::{DataShape, Diffusion, DiffusionConfig, SampleConfig};
pub use precision::Precision;
