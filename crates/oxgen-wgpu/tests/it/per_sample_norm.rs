//! The per-sample norm kernel against the plain-burn reference, on wgpu (lavapipe in CI), and
//! the op dispatching to it. It is forward-only: its inputs are a tap's kept input and a
//! probe's gradient, never tracked.

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::ops::per_sample::fused::{
    self, FusedSqNorms, affine_sq_norms, affine_sq_norms_reference,
};
use oxgen_wgpu::per_sample_norm::WgslPerSampleNorms;

use crate::gpu;

fn host(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap()
}

/// Deterministic values of mixed sign in about ±2.
fn ramp(len: usize, seed: usize, device: &Device, shape: [usize; 3]) -> Tensor<3> {
    let v: Vec<f32> = (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0) * 0.9)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Flat rows (T = 1), odd shapes, K·N below and far above the workgroup, T longer than K·N
/// (the reference's Gram branch) and shorter (its materialised branch), a batch of one: the
/// kernel equals the reference to 1e-5 relative, and the op takes the kernel on wgpu.
#[test]
fn the_per_sample_norm_kernel_matches_the_reference() {
    let device = gpu();
    let kernel = WgslPerSampleNorms;
    assert!(kernel.accepts(&device));
    for (i, &(b, t, k, n)) in [
        (3, 1, 5, 9),
        (4, 7, 5, 9),
        (2, 33, 3, 4),
        (1, 6, 70, 40),
        (5, 49, 18, 8),
    ]
    .iter()
    .enumerate()
    {
        let a = ramp(b * t * k, i, &device, [b, t, k]);
        let g = ramp(b * t * n, i + 17, &device, [b, t, n]);
        let want = host(affine_sq_norms_reference(a.clone(), g.clone()));
        let got = host(kernel.affine_sq_norms(a.clone(), g.clone()));
        for (x, y) in got.iter().zip(&want) {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1e-6),
                "{b}×{t}×{k}×{n}: kernel {got:?}, reference {want:?}"
            );
        }
        let via_op = host(affine_sq_norms(a, g));
        assert_eq!(fused::last_path(), Some("wgsl-per-sample-norm"));
        assert_eq!(via_op, got);
    }
}
