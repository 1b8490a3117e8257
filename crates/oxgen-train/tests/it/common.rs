//! Helpers shared by the integration tests.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::mlp::MlpDenoiserConfig;
use oxgen_train::TrainConfig;
use oxgen_train::TrainOptions;
use oxgen_train::data;
use oxgen_train::diffusion::{TrainReport, train};

/// Every float parameter of a module, flattened, in visit order.
pub fn params<M: Module>(m: &M) -> Vec<f32> {
    struct V(Vec<f32>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

/// A small, fast 2D config (MLP of width 32) for plumbing tests.
pub fn tiny_2d(data_name: &str, steps: usize) -> TrainConfig {
    let d = data::load(data_name, 0, &Default::default()).unwrap();
    let mut c = TrainConfig::defaults(data_name, d.shape, d.num_classes);
    c.model.denoiser = DenoiserConfig::Mlp(MlpDenoiserConfig::new().with_hidden(32).with_blocks(1));
    c.steps = steps;
    c.batch_size = 32;
    c.schedule.warmup_steps = 3;
    c.checkpoint_every = 0;
    c
}

pub fn opts(out: &Path, device: Device) -> TrainOptions {
    TrainOptions {
        out: Some(out.into()),
        resume: false,
        device,
        progress: false,
        stop_after: None,
        skip_eval: true,
    }
}

pub fn run(config: &TrainConfig, opts: &TrainOptions) -> TrainReport {
    train(config, opts).unwrap_or_else(|e| panic!("training failed: {e}"))
}
