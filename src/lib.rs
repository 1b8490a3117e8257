//! # oxgen
//!
//! Generation as a machine-learning task: generative model families behind one API, trained
//! and sampled on any GPU through wgpu (Vulkan, Metal, DX12) or on the CPU.
//!
//! This crate is all a program lists in its `[dependencies]`: it re-exports oxgen's crates and
//! the burn types their signatures use.
//!
//! - [`models`]: backend-agnostic models, samplers, and the op API with its references;
//! - [`train`]: data, the one training loop, the families' steps, checkpoints and metrics;
//! - [`wgpu`] (feature `wgpu`, on by default): device selection and the WGSL kernels;
//! - [`burn`]: the burn it is built on (devices, tensors, modules).
//!
//! The WGSL kernels take effect on every wgpu device, including one the program creates itself:
//! no call is needed. `default-features = false` gives a CPU-only library with no wgpu in its
//! dependency tree.
//!
//! ```no_run
//! use oxgen::prelude::*;
//!
//! let data = oxgen::train::data::load("moons", 0, &Default::default()).unwrap();
//! let config = TrainConfig::defaults("moons", data.shape, data.num_classes);
//! let opts = TrainOptions { device: Device::flex(), ..Default::default() }; // in memory
//! let report = oxgen::train::diffusion::train_on(&config, &data, &opts).unwrap();
//! println!("loss {:.3} -> {:.3}", report.first_loss, report.last_loss);
//! ```

pub use burn;
pub use oxgen_models as models;
pub use oxgen_train as train;
#[cfg(feature = "wgpu")]
pub use oxgen_wgpu as wgpu;

pub use oxgen_models::{DataShape, Diffusion, DiffusionConfig, SampleConfig};
pub use oxgen_train::{Error, Result, Schedule, TrainConfig, TrainOptions};

/// What most programs use, in one import: `use oxgen::prelude::*;`.
pub mod prelude {
    pub use burn::module::Module;
    pub use burn::tensor::{Device, Int, Tensor, TensorData};

    pub use oxgen_models::ar::{DecodeOptions, Gpt, GptConfig, Tokenizer};
    pub use oxgen_models::diffusion::DenoiserConfig;
    pub use oxgen_models::generative::{
        BoundedDensity, Capabilities, ExactDensity, Generative, Likelihood, Nll,
    };
    pub use oxgen_models::ops::attention::{AttentionOptions, attention};
    pub use oxgen_models::samplers::{SamplerKind, Scheduler, SchedulerCore};
    pub use oxgen_models::{DataShape, Diffusion, DiffusionConfig, SampleConfig};
    pub use oxgen_train::ar::{ArTrainConfig, TextData};
    pub use oxgen_train::data::Dataset;
    pub use oxgen_train::family::{FamilyConfig, FamilyModel, Trained};
    pub use oxgen_train::trainer::parallel::DataParallel;
    pub use oxgen_train::{Error, Schedule, TrainConfig, TrainOptions};

    #[cfg(feature = "wgpu")]
    pub use oxgen_wgpu::{DeviceChoice, select};
}
