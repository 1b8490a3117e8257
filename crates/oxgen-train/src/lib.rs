//! Data, trainers, checkpoints and metrics for oxgen.
//!
//! - [`trainer`]: the one training loop, its schedule, step RNG and optimizer helpers;
//! - [`run`]: the run folder, versioned checkpoints and their migrations;
//! - one step module per family: [`diffusion`], [`ar`], [`family`] (VAE, flow, GAN);
//! - [`eval`], apart from training: [`metrics`], [`sample`], [`compare`] (re-exported here);
//! - [`data`]: built-in and file datasets, and the program's own rows;
//! - [`interchange`]: weights as safetensors (export, import, GPT-2 layout).

pub mod ar;
pub mod compress;
pub mod config;
pub mod copyright;
pub mod data;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod family;
pub mod interchange;
pub mod limit;
pub mod npy;
pub mod plot;
pub mod preset;
pub mod privacy;
pub mod run;
pub mod trainer;
pub mod tune;
pub mod watermark;

pub use config::{NoiseSource, TrainConfig};
pub use error::{Error, Result};
pub use eval::{compare, metrics, sample};
pub use preset::Hardware;
pub use run::checkpoint;
pub use trainer::{Schedule, TrainOptions};
