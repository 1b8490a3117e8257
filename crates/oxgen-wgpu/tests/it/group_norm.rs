//! The fused GroupNorm+SiLU, forward and backward, against the plain-burn reference, on wgpu (lavapipe in CI).

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use oxgen_models::ops::group_norm::{
    self, FusedGroupNormSilu, GroupNormParams, group_norm_silu, group_norm_silu_reference,
};
use oxgen_wgpu::group_norm::{WgslGroupNormSilu, grid};
use oxgen_wgpu::subgroups;

use crate::gpu;

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn on(device: &Device, v: &[f32], shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn params(c: usize, groups: usize, affine: bool, device: &Device) -> GroupNormParams {
    let ramp = |scale: f32, shift: f32| {
        let v: Vec<f32> = (0..c)
            .map(|i| shift + scale * i as f32 / c as f32)
            .collect();
        Tensor::<1>::from_data(TensorData::new(v, [c]), device)
    };
    GroupNormParams {
        gamma: affine.then(|| ramp(1.5, 0.25)),
        beta: affine.then(|| ramp(-1.0, 0.5)),
        groups,
        epsilon: 1e-5,
    }
}

/// Odd shapes, groups longer and shorter than the workgroup, a batch of one, with and without
/// affine, and inputs far from zero mean (mean 3 and std 2; and mean 100, std 1, where a plain
/// one-pass variance would lose most of its digits: the kernel shifts the data by one of its
/// values, the reference is two-pass). Each with the workgroup reduction through subgroups (where
/// the adapter has them: lavapipe has, 8 wide) and through the workgroup-memory tree.
#[test]
fn fused_matches_reference() {
    let gpu = gpu();
    let has_subgroups = oxgen_wgpu::adapters().iter().all(|a| a.subgroups);
    let cpu = Device::flex();
    let cases: [([usize; 4], usize, f32, f32, f32); 8] = [
        ([1, 6, 5, 3], 3, 3.0, 2.0, 2e-5),
        ([2, 32, 8, 8], 8, 3.0, 2.0, 2e-5),
        ([3, 64, 4, 4], 8, 3.0, 2.0, 2e-5),
        ([1, 8, 33, 31], 2, 3.0, 2.0, 2e-5),
        ([5, 4, 1, 1], 4, 3.0, 2.0, 2e-5),
        ([2, 96, 16, 16], 32, 3.0, 2.0, 2e-5),
        // f32 holds 100 + x to 8e-6, so both sides round (x − μ) at that level.
        ([2, 8, 6, 6], 4, 100.0, 1.0, 2e-4),
        // One group of 524,288 elements: past 65,535 loop iterations per invocation at the
        // lavapipe workgroup size of 16, unless the workgroup widens.
        ([1, 2, 512, 512], 1, 3.0, 2.0, 1e-4),
    ];
    for (shape, groups, mean, std, tol) in cases {
        for affine in [false, true] {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = oxgen_models::rng::normals(5, n as u32, n)
                .into_iter()
                .map(|v| mean + std * v)
                .collect();
            let want = host(group_norm_silu_reference(
                on(&cpu, &x, shape),
                &params(shape[1], groups, affine, &cpu),
            ));
            for sg in [false, true] {
                let before = subgroups::launches();
                let got = host(subgroups::with_enabled(Some(sg), || {
                    WgslGroupNormSilu
                        .forward(on(&gpu, &x, shape), &params(shape[1], groups, affine, &gpu))
                }));
                assert!(!sg || !has_subgroups || subgroups::launches() > before);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol * (1.0 + w.abs()),
                        "{shape:?}, {groups} groups, affine {affine}, subgroups {sg}: element {i}: fused {g}, reference {w}"
                    );
                }
            }
        }
    }
}

/// Large values must not overflow: SiLU of very negative inputs is −0, not NaN.
#[test]
fn extreme_inputs_stay_finite() {
    let gpu = gpu();
    let shape = [2, 4, 4, 4];
    let x: Vec<f32> = (0..128)
        .map(|i| if i % 2 == 0 { 1e4 } else { -1e4 })
        .collect();
    let y = host(WgslGroupNormSilu.forward(on(&gpu, &x, shape), &params(4, 2, true, &gpu)));
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
}

/// On wgpu the op takes the kernel, with autodiff (training) too; the CPU takes its own kernel
/// (forward and backward).
#[test]
fn path_selection() {
    let gpu = gpu();
    let x = Tensor::<4>::random([1, 4, 2, 2], Distribution::Default, &*gpu);
    let _ = group_norm_silu(x, &params(4, 2, true, &gpu));
    assert_eq!(group_norm::last_path(), Some("wgsl-group-norm-silu"));
    let ad = gpu.clone().autodiff();
    let x = Tensor::<4>::random([1, 4, 2, 2], Distribution::Default, &ad).require_grad();
    let y = group_norm_silu(x.clone(), &params(4, 2, true, &ad));
    assert_eq!(group_norm::last_path(), Some("wgsl-group-norm-silu"));
    let grads = y.sum().backward();
    assert!(x.grad(&grads).is_some());
    let cpu = Device::flex();
    let x = Tensor::<4>::random([1, 4, 2, 2], Distribution::Default, &cpu);
    let _ = group_norm_silu(x, &params(4, 2, true, &cpu));
    assert_eq!(group_norm::last_path(), Some("cpu-group-norm-silu"));
}

/// (dx, dγ, dβ) of sum(y ∘ w), y = group_norm_silu(x), on `device`: the kernel (through the op)
/// or the plain-burn reference, through autodiff.
fn gradients(
    device: &Device,
    x: &[f32],
    shape: [usize; 4],
    groups: usize,
    affine: bool,
    fused: bool,
) -> [Vec<f32>; 3] {
    let ad = device.clone().autodiff();
    let n: usize = shape.iter().product();
    let w = on(&ad, &oxgen_models::rng::normals(9, 1, n), shape);
    let xt = on(&ad, x, shape).require_grad();
    let mut p = params(shape[1], groups, affine, &ad);
    p.gamma = p.gamma.map(|t| t.require_grad());
    p.beta = p.beta.map(|t| t.require_grad());
    let y = if fused {
        let y = group_norm_silu(xt.clone(), &p);
        assert_eq!(group_norm::last_path(), Some("wgsl-group-norm-silu"));
        y
    } else {
        group_norm_silu_reference(xt.clone(), &p)
    };
    let grads = (y * w).sum().backward();
    let c = shape[1];
    let grad1 = |t: &Option<Tensor<1>>| {
        t.as_ref()
            .map_or(vec![0.0; c], |t| host(t.grad(&grads).expect("a gradient")))
    };
    [
        host(xt.grad(&grads).expect("a gradient")),
        grad1(&p.gamma),
        grad1(&p.beta),
    ]
}

/// The backward kernel against burn's autodiff through the reference: dx, dγ and dβ, odd
/// shapes, a batch of one and of five, groups of one channel and of many, with and without
/// affine, data far from zero mean, and one group long enough to widen the workgroup; with the
/// reductions through subgroups (where the adapter has them) and through the tree.
#[test]
fn backward_matches_reference() {
    let gpu = gpu();
    let has_subgroups = oxgen_wgpu::adapters().iter().all(|a| a.subgroups);
    let cpu = Device::flex();
    let cases: [([usize; 4], usize, f32, f32, f32); 7] = [
        ([1, 6, 5, 3], 3, 3.0, 2.0, 1e-4),
        ([2, 32, 8, 8], 8, 3.0, 2.0, 1e-4),
        ([3, 64, 4, 4], 8, 0.0, 1.0, 1e-4),
        ([1, 8, 33, 31], 2, 3.0, 2.0, 1e-4),
        ([5, 4, 1, 1], 4, 3.0, 2.0, 1e-4),
        ([2, 8, 6, 6], 4, 100.0, 1.0, 1e-3),
        ([1, 2, 256, 256], 1, 3.0, 2.0, 1e-3),
    ];
    for (shape, groups, mean, std, tol) in cases {
        for affine in [false, true] {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = oxgen_models::rng::normals(7, n as u32, n)
                .into_iter()
                .map(|v| mean + std * v)
                .collect();
            let want = gradients(&cpu, &x, shape, groups, affine, false);
            for sg in [false, true] {
                let before = subgroups::launches();
                let got = subgroups::with_enabled(Some(sg), || {
                    gradients(&gpu, &x, shape, groups, affine, true)
                });
                // The forward and the backward kernel.
                assert!(!sg || !has_subgroups || subgroups::launches() >= before + 2);
                for (k, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
                    // Sums over many elements: relative to the largest magnitude of the result.
                    let scale = want[k].iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                    for (i, (g, w)) in got[k].iter().zip(&want[k]).enumerate() {
                        assert!(
                            g.is_finite() && (g - w).abs() <= tol * (scale + w.abs()),
                            "{shape:?}, {groups} groups, affine {affine}, subgroups {sg}: {name}[{i}]: fused {g}, reference {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn workgroup_size_follows_the_subgroup_width() {
    use oxgen_wgpu::group_norm::workgroup_size;
    assert_eq!(workgroup_size(8, 256), 16); // lavapipe
    assert_eq!(workgroup_size(32, 256), 64); // NVIDIA
    assert_eq!(workgroup_size(64, 256), 128); // AMD
    assert_eq!(workgroup_size(0, 256), 16);
    // Long groups widen the workgroup: at most 8,192 elements per invocation, 256 at most.
    assert_eq!(workgroup_size(8, 32 * 8192), 32);
    assert_eq!(workgroup_size(8, 1 << 30), 256);
}

#[test]
fn grid_is_2d_past_the_dispatch_limit() {
    assert_eq!(grid(1), (1, 1));
    assert_eq!(grid(65_535), (65_535, 1));
    let (x, y) = grid(200_000);
    assert!(x <= 65_535 && (x as u64) * (y as u64) >= 200_000);
}
