//! The layers' side of the tape: each supported op calls its `tap_*` after its forward pass.
//! Off the tape, or off an autodiff device, they return the output untouched; on it they keep
//! what the per-sample math needs and add a zero probe leaf to the output.

use burn::module::ParamId;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{Embedding, GroupNorm, LayerNorm, Linear, PaddingConfig2d};
use burn::tensor::activation::sigmoid;
use burn::tensor::module::unfold4d;
use burn::tensor::ops::PadMode;
use burn::tensor::ops::UnfoldOptions;
use burn::tensor::{Gradients, Int, Tensor};

use super::{CustomTap, Tap, probe_grad, push, recording};

/// Whether `y` should be tapped: a tape is open and `y` tracks gradients.
pub(crate) fn live<const D: usize>(y: &Tensor<D>) -> bool {
    recording() && y.is_autodiff()
}

/// Taps the affine layer `layer` that took `x` to `y` (called by [`crate::ops::linear::linear`]):
/// returns `y` plus a zero probe when a tape is open and `y` is on an autodiff device, else `y`.
pub(crate) fn tap_affine<const D: usize>(x: &Tensor<D>, y: Tensor<D>, layer: &Linear) -> Tensor<D> {
    if D < 2 || !live(&y) {
        return y;
    }
    let (xd, yd) = (x.dims(), y.dims());
    let (b, k, n) = (xd[0], xd[D - 1], yd[D - 1]);
    let t: usize = xd[1..D - 1].iter().product();
    let probe = Tensor::<3>::zeros([b, t, n], &y.device()).require_grad();
    push(Tap::Affine {
        weight: layer.weight.id,
        transposed: false,
        bias: layer.bias.as_ref().map(|p| p.id),
        input: x.clone().inner().reshape([b, t, k]),
        probe: probe.clone(),
    });
    y + probe.reshape(yd)
}

/// `layer.forward(x)` exactly as burn computes it (no fused kernel: runs whose fixtures were
/// written with burn's arithmetic keep it), tapped.
pub(crate) fn burn_affine<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    let y = layer.forward(x.clone());
    tap_affine(&x, y, layer)
}

/// Taps a language-model head tied to the embedding `table` (logits y = x·Eᵀ, E `[V, D]`)
/// that took the features `x` to `y`: an affine tap whose weight is stored transposed.
///
/// # Shapes
/// - `x`: `[B, T, D]`, `y`: `[B, T, V]`.
pub(crate) fn tap_tied_head(x: &Tensor<3>, y: Tensor<3>, table: &Embedding) -> Tensor<3> {
    if !live(&y) {
        return y;
    }
    let probe = Tensor::<3>::zeros(y.dims(), &y.device()).require_grad();
    push(Tap::Affine {
        weight: table.weight.id,
        transposed: true,
        bias: None,
        input: x.clone().inner(),
        probe: probe.clone(),
    });
    y + probe
}

/// Taps the LayerNorm `norm` (built with `epsilon`) that took `x` to `y` (called by
/// [`crate::ops::layer_norm::layer_norm`]).
pub(crate) fn tap_layer_norm<const D: usize>(
    x: &Tensor<D>,
    y: Tensor<D>,
    norm: &LayerNorm,
    epsilon: f64,
) -> Tensor<D> {
    if D < 2 || !live(&y) {
        return y;
    }
    let yd = y.dims();
    let (b, d) = (yd[0], yd[D - 1]);
    let t: usize = yd[1..D - 1].iter().product();
    let x = x.clone().inner().reshape([b, t, d]);
    let mean = x.clone().mean_dim(2);
    let centred = x - mean;
    let var = centred.clone().square().mean_dim(2);
    let input = centred / var.add_scalar(epsilon).sqrt();
    let probe = Tensor::<3>::zeros([b, t, d], &y.device()).require_grad();
    push(Tap::Scale {
        gamma: norm.gamma.id,
        beta: norm.beta.as_ref().map(|p| p.id),
        input,
        probe: probe.clone(),
    });
    y + probe.reshape(yd)
}

/// `norm.forward(x)` exactly as burn computes it, tapped (`epsilon`: the one `norm` was built
/// with).
pub(crate) fn burn_layer_norm<const D: usize>(
    x: Tensor<D>,
    norm: &LayerNorm,
    epsilon: f64,
) -> Tensor<D> {
    let y = norm.forward(x.clone());
    tap_layer_norm(&x, y, norm, epsilon)
}

/// Taps the embedding `table` that took `ids` to `y` (called by
/// [`crate::ops::embedding::embedding`]).
pub(crate) fn tap_lookup(ids: &Tensor<2, Int>, y: Tensor<3>, table: &Embedding) -> Tensor<3> {
    if !live(&y) {
        return y;
    }
    let probe = Tensor::<3>::zeros(y.dims(), &y.device()).require_grad();
    push(Tap::Lookup {
        table: table.weight.id,
        vocab: table.weight.dims()[0],
        ids: ids.clone().inner(),
        probe: probe.clone(),
    });
    y + probe
}

/// Taps the convolution `conv` that took `x` to `y` (called by [`crate::ops::conv::conv2d`]).
/// Grouped or dilated convolutions and `Same` padding are left untapped: DP-SGD then refuses the
/// model, naming the parameters without per-sample support.
///
/// # Shapes
/// - `x`: `[B, Cin, H, W]`, `y`: `[B, N, Ho, Wo]`.
pub(crate) fn tap_conv(x: &Tensor<4>, y: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    if !live(&y) || conv.groups != 1 || conv.dilation != [1, 1] {
        return y;
    }
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return y,
    };
    let mut x = x.clone().inner();
    if top + left + bottom + right > 0 {
        x = x.pad((left, right, top, bottom), PadMode::Constant(0.0));
    }
    let options = UnfoldOptions::new(conv.stride, [0, 0], [1, 1]);
    let patches = unfold4d(x, conv.kernel_size, options).swap_dims(1, 2); // [B, L, K]
    let probe = Tensor::<4>::zeros(y.dims(), &y.device()).require_grad();
    push(Tap::Conv {
        weight: conv.weight.id,
        bias: conv.bias.as_ref().map(|p| p.id),
        patches,
        probe: probe.clone(),
    });
    y + probe
}

/// `conv.forward(x)` exactly as burn computes it (no fused kernel: runs whose fixtures were
/// written with burn's arithmetic keep it), tapped.
pub(crate) fn burn_conv(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    let y = conv.forward(x.clone());
    tap_conv(&x, y, conv)
}

/// Taps the transposed convolution `conv` that took `x` to `y`. Grouped or dilated ones, and
/// output padding that leaves the input positions without a whole output window, are left
/// untapped: DP-SGD then refuses the model.
///
/// # Shapes
/// - `x`: `[B, Cin, H, W]`, `y`: `[B, N, Ho, Wo]`.
pub(crate) fn tap_conv_transpose(x: &Tensor<4>, y: Tensor<4>, conv: &ConvTranspose2d) -> Tensor<4> {
    if !live(&y) || conv.groups != 1 || conv.dilation != [1, 1] {
        return y;
    }
    let [b, cin, h, w] = x.dims();
    let [_, _, ho, wo] = y.dims();
    let ([kh, kw], [sh, sw], [ph, pw]) = (conv.kernel_size, conv.stride, conv.padding);
    // The unfold of the output gradient must give one window per input position.
    let windows =
        |o: usize, p: usize, k: usize, s: usize| (o + 2 * p).checked_sub(k).map(|r| r / s + 1);
    if windows(ho, ph, kh, sh) != Some(h) || windows(wo, pw, kw, sw) != Some(w) {
        return y;
    }
    let input = x.clone().inner().reshape([b, cin, h * w]).swap_dims(1, 2);
    let probe = Tensor::<4>::zeros(y.dims(), &y.device()).require_grad();
    push(Tap::ConvTranspose {
        weight: conv.weight.id,
        bias: conv.bias.as_ref().map(|p| p.id),
        input,
        probe: probe.clone(),
        window: [conv.kernel_size, conv.stride, conv.padding],
    });
    y + probe
}

/// `conv.forward(x)` exactly as burn computes it, tapped.
pub(crate) fn burn_conv_transpose(x: Tensor<4>, conv: &ConvTranspose2d) -> Tensor<4> {
    let y = conv.forward(x.clone());
    tap_conv_transpose(&x, y, conv)
}

/// Taps a layer with its own per-sample formula: adds zero probes to its output `y` and to its
/// per-row log-determinant `ld`, and records `per_sample(gy, gld)`, which maps the probes'
/// gradients (∂L/∂y `[B, C, H, W]` and ∂L/∂ld `[B]`, without autodiff) to each sample's gradient
/// of each of `params`, `[B, numel]`.
pub(crate) fn tap_custom(
    y: Tensor<4>,
    ld: Tensor<1>,
    params: Vec<ParamId>,
    per_sample: impl Fn(Tensor<4>, Tensor<1>) -> Vec<(ParamId, Tensor<2>)> + 'static,
) -> (Tensor<4>, Tensor<1>) {
    if !live(&y) {
        return (y, ld);
    }
    let py = Tensor::<4>::zeros(y.dims(), &y.device()).require_grad();
    let pl = Tensor::<1>::zeros(ld.dims(), &ld.device()).require_grad();
    let (qy, ql) = (py.clone(), pl.clone());
    push(Tap::Custom(CustomTap {
        params,
        grads: std::rc::Rc::new(move |grads: &Gradients| {
            per_sample(probe_grad(&qy, grads), probe_grad(&ql, grads))
        }),
    }));
    (y + py, ld + pl)
}

/// Taps the GroupNorm `norm` that took `x` to `y`, with `silu` when a SiLU follows it inside
/// `y` (called by [`crate::ops::group_norm::group_norm_silu_of`] and
/// [`crate::ops::group_norm::group_norm`]). A GroupNorm without affine parameters has nothing
/// to tap.
///
/// # Shapes
/// - `x`, `y`: `[B, C, H, W]`.
pub(crate) fn tap_group_norm(
    x: &Tensor<4>,
    y: Tensor<4>,
    norm: &GroupNorm,
    silu: bool,
) -> Tensor<4> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return y;
    };
    if !live(&y) {
        return y;
    }
    let [b, c, h, w] = x.dims();
    let g = norm.num_groups;
    let grouped = x.clone().inner().reshape([b, g, (c / g) * h * w]);
    let centred = grouped.clone() - grouped.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    let input = (centred / var.add_scalar(norm.epsilon).sqrt()).reshape([b, c, h * w]);
    let gate = silu.then(|| {
        let z = input.clone() * gamma.val().inner().reshape([1, c, 1])
            + beta.val().inner().reshape([1, c, 1]);
        let s = sigmoid(z.clone());
        // silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
        s.clone() * (z * (s.neg().add_scalar(1.0))).add_scalar(1.0)
    });
    let probe = Tensor::<3>::zeros([b, c, h * w], &y.device()).require_grad();
    push(Tap::Channel {
        gamma: gamma.id,
        beta: beta.id,
        input,
        gate,
        probe: probe.clone(),
    });
    y + probe.reshape([b, c, h, w])
}
