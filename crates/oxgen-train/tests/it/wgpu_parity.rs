//! The same training step on the CPU and on wgpu (lavapipe in CI) agrees within a tolerance.
//!
//! This test fails, never skips, when no wgpu adapter is found: CI must run it on lavapipe.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::unet::UNetConfig;
use oxgen_models::diffusion::{BatchEps, DiffusionBatchNoise};
use oxgen_train::TrainConfig;
use oxgen_train::data::digits8;
use oxgen_wgpu::DeviceChoice;

use crate::common::params;

/// The wgpu device (lavapipe in CI). burn's autotune takes its first close candidate here
/// (`oxgen_wgpu::autotune::time_every_kernel`): most of these tests' time on lavapipe is
/// compiling the candidates it would otherwise try.
pub fn wgpu_device() -> Device {
    oxgen_wgpu::autotune::time_every_kernel();
    match oxgen_wgpu::select(DeviceChoice::Wgpu) {
        Ok(d) => d.device,
        Err(e) => panic!(
            "no wgpu adapter: {e}. Install a Vulkan driver (Debian: mesa-vulkan-drivers) to run this test."
        ),
    }
}

#[test]
fn unet_training_step_matches_between_cpu_and_wgpu() {
    let data = digits8();
    let mut config = TrainConfig::defaults("digits8", data.shape, data.num_classes);
    config.model.denoiser = DenoiserConfig::UNet(UNetConfig::new().with_channels(16).with_heads(2));
    let b = 8;
    let features = data.shape.numel();
    let rows: Vec<f32> = data.x[..b * features].to_vec();
    let labels: Vec<u32> = data.labels.as_ref().unwrap()[..b].to_vec();
    let noise = DiffusionBatchNoise {
        t: (0..b).map(|i| 37 + 111 * i).collect(),
        // The fused noising kernel on wgpu, its host reference on the CPU: the same ε.
        eps: BatchEps::Philox { seed: 5, stream: 0 },
        drop: (0..b).map(|i| i % 3 == 0).collect(),
    };
    let schedule = config.model.noise_schedule();

    let cpu = Device::flex().autodiff();
    let gpu = wgpu_device().autodiff();
    let model_cpu =
        oxgen_train::trainer::optim::seeded_init(&cpu, 1, || config.model.init(data.shape, &cpu));
    let bytes = model_cpu
        .clone()
        .into_record()
        .into_bytes()
        .unwrap()
        .to_vec();
    let model_gpu = config
        .model
        .init(data.shape, &gpu)
        .try_load_record(ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).unwrap())
        .unwrap();
    assert_eq!(
        params(&model_cpu),
        params(&model_gpu),
        "the weights must start identical"
    );

    let step = |model: oxgen_models::Diffusion, device: &Device| {
        let x0 = Tensor::<2>::from_data(TensorData::new(rows.clone(), [b, features]), device);
        let loss = model.loss(&config.model, &schedule, x0, Some(&labels), &noise);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut optim = AdamWConfig::new().init();
        (value, params(&optim.step(1e-3, model, grads)))
    };
    let (loss_cpu, after_cpu) = step(model_cpu, &cpu);
    let (loss_gpu, after_gpu) = step(model_gpu, &gpu);
    assert!(
        (loss_cpu - loss_gpu).abs() <= 1e-4 * loss_cpu.abs().max(1.0),
        "loss: cpu {loss_cpu}, wgpu {loss_gpu}"
    );
    let max_diff = after_cpu
        .iter()
        .zip(&after_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // One AdamW step moves each weight by about lr = 1e-3; the two paths agree to well under that.
    assert!(
        max_diff < 1e-4,
        "weights after one step differ by up to {max_diff}"
    );
    assert!(
        after_cpu
            .iter()
            .zip(&after_gpu)
            .all(|(a, b)| a.is_finite() && b.is_finite())
    );
}
