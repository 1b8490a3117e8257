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

/// Asserts that two modules' weights ([`params`]) are equal bit for bit, after a resume.
pub fn assert_same_weights<M: Module>(straight: &M, resumed: &M) {
    let (a, b) = (params(straight), params(resumed));
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(diff, 0, "{diff} of {} weights differ after resume", a.len());
}

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
        sync_every: None,
        parallel: Default::default(),
    }
}

pub fn run(config: &TrainConfig, opts: &TrainOptions) -> TrainReport {
    train(config, opts).unwrap_or_else(|e| panic!("training failed: {e}"))
}

/// Loads the dataset at path `p` with default options.
pub fn load(p: &Path) -> Result<oxgen_train::data::Dataset, oxgen_train::Error> {
    data::load(p.to_str().unwrap(), 0, &Default::default())
}

/// An IDX file of unsigned bytes: the header for `dims`, then `payload` bytes of 7.
pub fn idx(dims: &[u32], payload: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend(std::iter::repeat_n(7u8, payload));
    v
}

/// The field `key` of every line of a run folder's metrics.jsonl.
pub fn logged(dir: &std::path::Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[key]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Every step's loss from a run folder's metrics.jsonl.
pub fn losses(dir: &std::path::Path) -> Vec<f64> {
    logged(dir, "loss")
}

/// Weights `wa` within `tol` of `wb`: the largest difference against the largest magnitude.
pub fn assert_weights_close(what: &str, wa: &[f32], wb: &[f32], tol: f64) {
    assert_eq!(wa.len(), wb.len());
    let scale = wb.iter().fold(0f32, |m, w| m.max(w.abs())) as f64;
    let worst = wa
        .iter()
        .zip(wb)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    assert!(
        worst <= tol * scale,
        "{what}: weights differ by {worst:e} (largest weight {scale})"
    );
}
