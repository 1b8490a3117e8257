//! Data, trainers, checkpoints and metrics for oxgen.
//!
//! The trainer is one flat loop ([`diffusion::train`]); runs write their config, metrics, loss
//! curve, samples and checkpoints into one folder ([`run`]).

pub mod ar;
pub mod bench_decode;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod error;
pub mod family;
pub mod metrics;
pub mod npy;
pub mod optim;
pub mod plot;
pub mod run;
pub mod sample;

pub use config::TrainConfig;
pub use error::{Error, Result};
