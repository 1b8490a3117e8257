//! The convolution benchmark behind `oxgen bench conv`: the op `oxgen_models::ops::conv::conv2d`
//! on its default path (the WGSL kernels on wgpu) against the same op forced onto its reference
//! (burn's `Conv2d` module, burn's autodiff for the gradients, fusion on), forward and forward +
//! backward, in one run on one device, at the digits UNet's shapes by default.
//!
//! Outputs are kept alive: every call's output (or its input and weight gradients) is held until
//! the timed loop ends, then the device is synchronised once; inputs are made before the clock
//! starts. Two warm-up calls precede each measurement (kernel compilation and burn's autotune).

use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Distribution, Tensor};
use oxgen_models::ops::conv::conv2d;
use oxgen_models::ops::{OpPath, with_path};
use serde::Serialize;

/// One convolution's geometry.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ConvShape {
    /// Input `[b, cin, h, w]`.
    pub input: [usize; 4],
    /// Output channels.
    pub cout: usize,
    /// Square window side.
    pub kernel: usize,
    /// Square stride.
    pub stride: usize,
}

/// The digits UNet's convolutions at batch 64 (`oxgen train diffusion --data digits8`): 3 × 3 at
/// 8 × 8 (32 → 32, and 96 → 32 after the skip concatenation), 3 × 3 at 4 × 4 (64 → 64), the
/// stride-2 down, and a 1 × 1 skip.
pub const UNET_SHAPES: [ConvShape; 5] = [
    ConvShape {
        input: [64, 32, 8, 8],
        cout: 32,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        input: [64, 96, 8, 8],
        cout: 32,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        input: [64, 64, 4, 4],
        cout: 64,
        kernel: 3,
        stride: 1,
    },
    ConvShape {
        input: [64, 32, 8, 8],
        cout: 32,
        kernel: 3,
        stride: 2,
    },
    ConvShape {
        input: [64, 96, 8, 8],
        cout: 32,
        kernel: 1,
        stride: 1,
    },
];

/// One shape's timings, ms per call.
#[derive(Clone, Debug, Serialize)]
pub struct ConvRow {
    /// The geometry.
    pub shape: ConvShape,
    /// Ours (the op's default path), forward.
    pub ours_fwd_ms: f64,
    /// burn's module (the op's reference path), forward.
    pub burn_fwd_ms: f64,
    /// Ours, forward + backward (input and weight gradients).
    pub ours_fwd_bwd_ms: f64,
    /// burn's module through autodiff, forward + backward.
    pub burn_fwd_bwd_ms: f64,
}

fn module(s: &ConvShape, device: &Device) -> Conv2d {
    let p = s.kernel / 2;
    let conv = Conv2dConfig::new([s.input[1], s.cout], [s.kernel, s.kernel])
        .with_stride([s.stride, s.stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device);
    Conv2d {
        weight: Param::from_tensor(conv.weight.val().require_grad()),
        bias: conv
            .bias
            .map(|b| Param::from_tensor(b.val().require_grad())),
        ..conv
    }
}

/// ms per call of `f`, `iters` calls after two warm-up calls; every result is kept until the
/// device has finished.
fn time<T>(device: &Device, iters: usize, mut f: impl FnMut() -> T) -> f64 {
    let warm: Vec<T> = (0..2).map(|_| f()).collect();
    device.sync().expect("device sync");
    drop(warm);
    let start = Instant::now();
    let kept: Vec<T> = (0..iters).map(|_| f()).collect();
    device.sync().expect("device sync");
    let ms = start.elapsed().as_secs_f64() * 1e3 / iters as f64;
    drop(kept);
    ms
}

/// Times one shape on `device` (a wgpu device for the kernels to run).
pub fn measure(device: &Device, s: ConvShape, iters: usize) -> ConvRow {
    let ad = device.clone().autodiff();
    let conv = module(&s, &ad);
    let frozen = conv.clone().valid();
    let x = Tensor::<4>::random(s.input, Distribution::Normal(0.0, 1.0), &ad).require_grad();
    let x_inner = x.clone().inner();
    let forward = |path| {
        with_path(path, || {
            time(device, iters, || conv2d(x_inner.clone(), &frozen))
        })
    };
    let both = |path| {
        with_path(path, || {
            time(device, iters, || {
                let grads = conv2d(x.clone(), &conv).sum().backward();
                (x.grad(&grads), conv.weight.val().grad(&grads))
            })
        })
    };
    ConvRow {
        shape: s,
        ours_fwd_ms: forward(OpPath::Auto),
        burn_fwd_ms: forward(OpPath::Reference),
        ours_fwd_bwd_ms: both(OpPath::Auto),
        burn_fwd_bwd_ms: both(OpPath::Reference),
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[ConvRow]) -> String {
    let mut out = String::from(
        "| input [b, cin, h, w] | cout | window | stride | ours fwd ms | burn fwd ms | fwd: ours ÷ burn throughput | ours fwd+bwd ms | burn fwd+bwd ms | fwd+bwd: ours ÷ burn |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let s = r.shape;
        out.push_str(&format!(
            "| {:?} | {} | {k}×{k} | {} | {:.2} | {:.2} | **{:.2}×** | {:.2} | {:.2} | **{:.2}×** |\n",
            s.input,
            s.cout,
            s.stride,
            r.ours_fwd_ms,
            r.burn_fwd_ms,
            r.burn_fwd_ms / r.ours_fwd_ms,
            r.ours_fwd_bwd_ms,
            r.burn_fwd_bwd_ms,
            r.burn_fwd_bwd_ms / r.ours_fwd_bwd_ms,
            k = s.kernel,
        ));
    }
    out
}
