//! On wgpu (lavapipe in CI), with the defaults, the default training and sampling paths run the
//! WGSL kernels and never the references: attention, 2D convolution, GroupNorm+SiLU, the
//! denoising update and the forward noising. The counts are those the code that ran recorded
//! (`oxgen_models::ops::stats`), on this test's thread only.
//!
//! Each run is a few steps of the default config of `oxgen train diffusion --data digits8`,
//! `oxgen train ar` and `oxgen train ar --data digits8`, then a short draw as `oxgen sample`
//! makes.

use oxgen_models::SampleConfig;
use oxgen_models::ar::DecodeOptions;
use oxgen_models::ops::stats::{self, KernelReport};
use oxgen_models::ops::{OpPath, with_path};
use oxgen_train::ar::{ArTrainConfig, load_ar, sample_images, train_ar};
use oxgen_train::data::digits8;
use oxgen_train::eval::sample::{load_run, sample_to};
use oxgen_train::{TrainConfig, TrainOptions};

use crate::wgpu_parity::wgpu_device;

/// The ops that must never take the reference on a default wgpu path.
const OPS: [&str; 5] = [
    "attention",
    "conv2d",
    "group_norm_silu",
    "denoise",
    "noising",
];

fn options(dir: &std::path::Path) -> TrainOptions {
    TrainOptions {
        out: Some(dir.to_path_buf()),
        resume: false,
        device: wgpu_device(),
        progress: false,
        stop_after: None,
        skip_eval: true,
        sync_every: None,
        parallel: Default::default(),
    }
}

/// No reference call for any of [`OPS`], and a fused call for each of `expected`.
fn assert_fused(what: &str, report: &KernelReport, expected: &[&str]) {
    for op in OPS {
        let c = report.op(op);
        assert_eq!(
            c.reference, 0,
            "{what}: {op} ran its reference {} times: {:?}",
            c.reference, c.reasons
        );
    }
    for op in expected {
        assert!(
            report.op(op).fused > 0,
            "{what}: {op} never ran its kernel: {}",
            report.summary()
        );
    }
}

#[test]
fn default_diffusion_paths_run_only_kernels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = digits8();
    let mut config = TrainConfig::defaults("digits8", data.shape, data.num_classes);
    config.steps = 2;
    let (trained, report) = with_path(OpPath::Auto, || {
        stats::scope(|| oxgen_train::diffusion::train(&config, &options(tmp.path())))
    });
    trained.unwrap();
    assert_fused(
        "train diffusion --data digits8",
        &report,
        &["conv2d", "group_norm_silu", "attention", "noising"],
    );
    let device = wgpu_device();
    let run = load_run(tmp.path(), &device).unwrap();
    let sample = SampleConfig {
        steps: 3,
        ..Default::default()
    };
    let out = tmp.path().join("samples");
    let (drawn, report) = stats::scope(|| sample_to(&run, 4, None, &sample, &device, &out));
    drawn.unwrap();
    assert_fused(
        "sample (diffusion)",
        &report,
        &["conv2d", "group_norm_silu", "attention", "denoise"],
    );
}

#[test]
fn default_ar_paths_run_only_kernels() {
    for data in ["arithmetic", "digits8"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = ArTrainConfig::defaults(data);
        config.steps = 2;
        let (trained, report) = with_path(OpPath::Auto, || {
            stats::scope(|| train_ar(&config, &options(tmp.path())))
        });
        trained.unwrap();
        assert_fused(&format!("train ar --data {data}"), &report, &["attention"]);
        let device = wgpu_device();
        let run = load_ar(tmp.path(), &device).unwrap();
        let ((), report) = stats::scope(|| {
            if data == "digits8" {
                let images = sample_images(&run.model, 2, 0, &device);
                assert_eq!(images.len(), 2);
            } else {
                let options = DecodeOptions {
                    max_new_tokens: 6,
                    ..Default::default()
                };
                let prompt = run.codec.default_prompt();
                let new = oxgen_models::ar::generate(
                    &run.model,
                    &prompt,
                    &options,
                    true,
                    &device,
                    |_| {},
                );
                assert!(!new.is_empty());
            }
        });
        assert_fused(&format!("sample (ar {data})"), &report, &["attention"]);
    }
}
