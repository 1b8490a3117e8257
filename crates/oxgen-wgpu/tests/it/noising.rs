//! The fused forward noising of diffusion training against its plain-burn reference, on wgpu
//! (lavapipe in CI): x_t and ε, the Philox stream drawn in registers against the host's.

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::ops::noising::{self, NoisingPlan, noising_reference};
use oxgen_models::ops::stats;

use crate::{U64_LOCK, gpu};

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Odd row lengths (blocks of four straddle rows), one row, one element, a batch past one
/// workgroup's blocks, on the plain and the autodiff device, both Philox products.
#[test]
fn fused_matches_reference() {
    let _u64 = U64_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = gpu();
    let cpu = Device::flex();
    for native in [true, false] {
        oxgen_wgpu::denoise::set_native_u64(native);
        for (i, (b, n)) in [(3, 37), (1, 1), (1, 64), (5, 4099)]
            .into_iter()
            .enumerate()
        {
            let x0: Vec<f32> = oxgen_models::rng::normals(3, i as u32, b * n);
            let plan = NoisingPlan {
                signal: (0..b).map(|r| 0.9 - 0.15 * r as f32).collect(),
                noise: (0..b).map(|r| 0.1 + 0.15 * r as f32).collect(),
                seed: 0xfeed_beef_0000_0001 + i as u64,
                stream: 7 + i as u32,
            };
            let on = |d: &Device| Tensor::<2>::from_data(TensorData::new(x0.clone(), [b, n]), d);
            let (want_xt, want_eps) = noising_reference(on(&cpu), &plan);
            let (want_xt, want_eps) = (host(want_xt), host(want_eps));
            for device in [(*gpu).clone(), gpu.clone().autodiff()] {
                let ((xt, eps), counts) = stats::scope(|| noising::noising(on(&device), &plan));
                assert_eq!(noising::last_path(), Some("wgsl-noising"));
                assert_eq!(counts.op(noising::OP).fused, 1);
                assert_eq!(xt.is_autodiff(), device.is_autodiff());
                let what = format!("[{b}, {n}], native u64 {native}, {device:?}");
                // The kernel's cos/sin polynomials agree with the host's libm to about 3e-7.
                for (name, got, want) in
                    [("x_t", host(xt), &want_xt), ("eps", host(eps), &want_eps)]
                {
                    for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                        assert!(
                            (g - w).abs() <= 2e-5 * (1.0 + w.abs()),
                            "{what}: {name}[{k}]: fused {g}, reference {w}"
                        );
                    }
                }
            }
        }
    }
    oxgen_wgpu::denoise::set_native_u64(true);
}
