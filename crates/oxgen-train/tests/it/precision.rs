//! Mixed-precision (f16) training of the GPT on wgpu (lavapipe in CI): the f16 attention kernels
//! run in the training step, the loss scale is part of the checkpoint, and a resumed run is the
//! straight one. The f16-against-f32 quality and memory comparison runs through the binary, one
//! process per run (crates/oxgen-cli/tests/it).

use oxgen_models::Precision;
use oxgen_models::ar::GptConfig;
use oxgen_train::ar::{ArTrainConfig, train_ar};

use crate::common::{assert_same_weights, opts};
use crate::wgpu_parity::wgpu_device;

fn tiny_f16(steps: usize) -> ArTrainConfig {
    let model = GptConfig::new(0)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut c = ArTrainConfig::new(model, "arithmetic");
    (c.steps, c.batch_size, c.grad_accum) = (steps, 16, 2);
    c.schedule.warmup_steps = 2;
    (c.eval_every, c.eval_batches) = (4, 2);
    c.precision = Precision::F16;
    c
}

/// 8 f16 steps straight equal 5 steps, a checkpoint, a resume and 3 more, bit for bit (weights,
/// optimizer, loss scale); the steps ran the f16 attention kernels (counted by the kernels), and
/// every metrics line carries the loss scale.
#[test]
fn f16_training_runs_the_half_kernels_and_resumes_exactly() {
    let device = wgpu_device();
    let config = tiny_f16(8);
    let before = oxgen_wgpu::attention::half_launches();
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train_ar(&config, &opts(straight_dir.path(), device.clone())).unwrap();
    assert!(
        oxgen_wgpu::attention::half_launches() > before,
        "no f16 attention kernel ran"
    );
    assert!(straight.last_loss < straight.first_loss, "{straight:?}");
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = opts(split_dir.path(), device.clone());
    first.stop_after = Some(5);
    assert_eq!(train_ar(&config, &first).unwrap().steps, 5);
    let mut second = opts(split_dir.path(), device);
    second.resume = true;
    let resumed = train_ar(&config, &second).unwrap();
    assert_eq!(resumed.steps, 8);
    assert_eq!(resumed.loss_scale, straight.loss_scale);
    let scale = resumed
        .loss_scale
        .as_ref()
        .expect("an f16 run has a scaler");
    assert_eq!(scale.good_steps + scale.overflows, 8, "{scale:?}");
    assert_same_weights(&straight.model, &resumed.model);
    let lines = std::fs::read_to_string(split_dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 8);
    assert!(
        lines.lines().all(|l| l.contains("\"loss_scale\":")),
        "{lines}"
    );
    // The device reported its allocator's high-water mark.
    assert!(resumed.memory_peak.is_some_and(|b| b > 0));
}

/// f16 with DP-SGD is a typed error before anything is written.
#[test]
fn f16_refuses_what_it_cannot_run() {
    let mut config = tiny_f16(2);
    config.dp = Some(Default::default());
    config.grad_accum = 1;
    let dir = tempfile::tempdir().unwrap();
    let err = train_ar(
        &config,
        &opts(&dir.path().join("run"), burn::tensor::Device::flex()),
    );
    let text = format!("{}", err.unwrap_err());
    assert!(text.contains("DP-SGD runs in f32"), "{text}");
    assert!(!dir.path().join("run").exists());
}
