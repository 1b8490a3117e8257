//! Flash attention from a program that makes its own device: on a wgpu adapter if there is one
//! (oxgen's WGSL kernel takes it, with no setup call), else on the CPU (burn's reference). The
//! result is checked against a naive attention written here, forward and gradients, at odd
//! shapes, with a causal mask, and for one new token against a padded batch of caches (key
//! lengths; on wgpu the decode path).
//!
//! Run: `cargo run --release --example embed_attention`

use oxgen::burn::tensor::activation::softmax;
use oxgen::burn::tensor::{Distribution, Tolerance};
use oxgen::models::ops::attention::{attention_with, fused_calls, last_path};
use oxgen::prelude::*;

/// softmax(q·kᵀ/√d + causal and padding masks)·v, written out.
fn naive(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    lengths: Option<&[usize]>,
) -> Tensor<4> {
    let [b, h, lq, d] = q.dims();
    let lk = k.dims()[2];
    let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
    if causal {
        // Key j is visible to query i when j + lq ≤ i + lk (bottom-right aligned).
        let mask: Vec<f32> = (0..lq * lk)
            .map(|ij| {
                let (i, j) = (ij / lk, ij % lk);
                if j + lq <= i + lk {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [lq, lk]), &scores.device());
        scores = scores + mask.reshape([1, 1, lq, lk]).expand([b, h, lq, lk]);
    }
    if let Some(lengths) = lengths {
        // Keys at or past a sequence's length are padding.
        let mask: Vec<f32> = (0..b * lk)
            .map(|e| {
                if e % lk < lengths[e / lk] {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, lk]), &scores.device());
        scores = scores + mask.reshape([b, 1, 1, lk]).expand([b, h, lq, lk]);
    }
    softmax(scores, 3).matmul(v)
}

/// A device this program makes itself: the first wgpu adapter burn finds, or the CPU.
fn my_device() -> Device {
    #[cfg(feature = "wgpu")]
    if !oxgen::wgpu::adapters().is_empty() {
        return Device::from(oxgen::burn::backend::WgpuDevice::default());
    }
    Device::flex()
}

fn main() {
    let device = my_device();
    println!("device: {device:?}");
    let ad = device.clone().autodiff();
    let padded: &[usize] = &[300, 77];
    for (shape, lq, causal, lengths) in [
        ([2, 3, 37, 64], 37, true, None),
        ([1, 2, 50, 32], 50, false, None),
        // One new token per sequence against a batch of caches padded to 300 keys.
        ([2, 4, 300, 16], 1, false, Some(padded)),
    ] {
        let r = |shape: [usize; 4]| {
            Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &ad).require_grad()
        };
        let [b, h, _, d] = shape;
        let (q, k, v) = (r([b, h, lq, d]), r(shape), r(shape));
        let mut opts = AttentionOptions {
            causal,
            ..Default::default()
        };
        if let Some(lengths) = lengths {
            opts = opts.with_key_lengths(lengths.to_vec());
        }
        let ours = attention_with(q.clone(), k.clone(), v.clone(), None, opts);
        let path = last_path().unwrap_or("none");
        let want = naive(q.clone(), k.clone(), v.clone(), causal, lengths);
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&want.clone().into_data(), Tolerance::absolute(2e-4));
        // Gradients of the same scalar through both.
        let (g1, g2) = (ours.sum().backward(), want.sum().backward());
        for x in [&q, &k, &v] {
            let a = x.grad(&g1).expect("a gradient");
            let b = x.grad(&g2).expect("a gradient");
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(2e-3));
        }
        println!(
            "{shape:?} queries={lq} causal={causal} key lengths={lengths:?}: forward and gradients match the naive attention ({path})"
        );
    }
    println!("fused kernel calls: {}", fused_calls());
    #[cfg(feature = "wgpu")]
    if oxgen::wgpu::is_wgpu(&device) {
        // No select() or registration call above: the kernels found the device themselves.
        assert!(
            fused_calls() >= 3,
            "the WGSL kernel did not take the program's wgpu device"
        );
    }
}
