//! # oxgen
//!
//! Generation as a machine-learning task: generative model families behind one API, trained
//! and sampled on any GPU through wgpu (Vulkan, Metal, DX12) or on the CPU.
//!
//! This crate re-exports the public API for programs that embed oxgen:
//!
//! - [`models`]: backend-agnostic models, samplers, and the op API with its references;
//! - [`train`]: data, the trainers, checkpoints and metrics;
//! - [`wgpu`]: device selection and the WGSL kernels.
//!
//! ```no_run
//! use oxgen::train::{TrainConfig, data, diffusion::{TrainOptions, train}};
//! let data = data::load("moons", 0, &Default::default()).unwrap();
//! let config = TrainConfig::defaults("moons", data.shape, data.num_classes);
//! let device = oxgen::wgpu::select(oxgen::wgpu::DeviceChoice::Auto).unwrap().device;
//! let opts = TrainOptions { out: "runs/moons".into(), resume: false, device, progress: true, stop_after: None, skip_eval: false };
//! let report = train(&config, &opts).unwrap();
//! println!("{}", report.quality.unwrap());
//! ```

pub use oxgen_models as models;
pub use oxgen_train as train;
pub use oxgen_wgpu as wgpu;

pub use oxgen_models::{DataShape, Diffusion, DiffusionConfig, SampleConfig};
pub use oxgen_train::{Error, TrainConfig};
