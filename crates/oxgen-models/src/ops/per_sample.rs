//! Per-sample gradients for differentially private training, without a backward pass per
//! sample: while a [`record`] is open, each supported layer taps its forward pass, keeping its
//! input and adding a zero "probe" leaf to its output. One backward pass then gives each
//! probe's gradient, which is ∂L/∂(layer output) for every row; with the inputs that is enough
//! for every row's gradient norm (ghost clipping; Goodfellow 2015, Li et al. 2022) and for the
//! sum of clipped per-sample gradients as one matrix product (book-keeping; Bu et al. 2023).
//!
//! For an affine layer y = x·W + b with per-sample inputs aᵢ `[T, K]` and output gradients gᵢ
//! `[T, N]` (T = 1 for flat rows):
//!
//! ```text
//! ∇W_i = aᵢᵀ gᵢ,  ∇b_i = Σ_t g_{i,t}
//! ‖∇W_i‖² = Σ_{t,s} (aᵢ aᵢᵀ)_{ts} (gᵢ gᵢᵀ)_{ts}      (T² work; or ‖aᵢᵀgᵢ‖² when K·N < T²)
//! Σ_i cᵢ ∇W_i = (c ⊙ a)ᵀ g                          (one [B·T, K]ᵀ × [B·T, N] product)
//! ```
//!
//! The loss must be the *sum* of per-sample losses, and row i of every tapped layer's input
//! must belong to sample i (dimension 0 is the sample).

use std::cell::RefCell;

use burn::module::ParamId;
use burn::nn::Linear;
use burn::tensor::{Gradients, Tensor};

/// What one tapped layer kept.
#[derive(Clone, Debug)]
pub enum Tap {
    /// An affine layer x·W + b (W stored `[K, N]`, as burn's `Linear`).
    Affine {
        /// The weight's id.
        weight: ParamId,
        /// The bias's id, if any.
        bias: Option<ParamId>,
        /// The input, without autodiff, `[B, T, K]`.
        input: Tensor<3>,
        /// The probe added to the output (autodiff leaf), `[B, T, N]`.
        probe: Tensor<3>,
    },
}

thread_local! {
    static TAPE: RefCell<Option<Vec<Tap>>> = const { RefCell::new(None) };
}

/// Closes the tape even if the forward pass panics.
struct Closing;

impl Drop for Closing {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// Runs `forward` with the tape open (on this thread) and returns its result with the taps it
/// recorded, in call order.
pub fn record<R>(forward: impl FnOnce() -> R) -> (R, Vec<Tap>) {
    TAPE.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let guard = Closing;
    let r = forward();
    let taps = TAPE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    drop(guard);
    (r, taps)
}

/// Whether a tape is open on this thread.
pub fn recording() -> bool {
    TAPE.with(|t| t.borrow().is_some())
}

/// Taps the affine layer `layer` that took `x` to `y` (called by [`super::linear::linear`]):
/// returns `y` plus a zero probe when a tape is open and `y` is on an autodiff device, else `y`.
pub(crate) fn tap_affine<const D: usize>(x: &Tensor<D>, y: Tensor<D>, layer: &Linear) -> Tensor<D> {
    if D < 2 || !recording() || !y.is_autodiff() {
        return y;
    }
    let (xd, yd) = (x.dims(), y.dims());
    let (b, k, n) = (xd[0], xd[D - 1], yd[D - 1]);
    let t: usize = xd[1..D - 1].iter().product();
    let probe = Tensor::<3>::zeros([b, t, n], &y.device()).require_grad();
    let tap = Tap::Affine {
        weight: layer.weight.id,
        bias: layer.bias.as_ref().map(|p| p.id),
        input: x.clone().inner().reshape([b, t, k]),
        probe: probe.clone(),
    };
    TAPE.with(|tape| {
        if let Some(v) = tape.borrow_mut().as_mut() {
            v.push(tap);
        }
    });
    y + probe.reshape(yd)
}

/// A tap's input and output gradient, `[B, T, K]` and `[B, T, N]` (zeros where the output did
/// not reach the loss).
fn affine_parts(input: &Tensor<3>, probe: &Tensor<3>, grads: &Gradients) -> (Tensor<3>, Tensor<3>) {
    let g = probe
        .grad(grads)
        .unwrap_or_else(|| Tensor::zeros(probe.dims(), &input.device()));
    (input.clone(), g)
}

impl Tap {
    /// The parameters this tap covers.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Tap::Affine { weight, bias, .. } => std::iter::once(*weight).chain(*bias).collect(),
        }
    }

    /// Each sample's squared gradient norm over this tap's parameters, `[B]`.
    pub fn sq_norms(&self, grads: &Gradients) -> Tensor<1> {
        match self {
            Tap::Affine {
                input, probe, bias, ..
            } => {
                let (a, g) = affine_parts(input, probe, grads);
                let [b, t, k] = a.dims();
                let n = g.dims()[2];
                let w = if t == 1 {
                    a.clone().square().sum_dim(2).reshape([b])
                        * g.clone().square().sum_dim(2).reshape([b])
                } else if t * t <= k * n {
                    let aa = a.clone().matmul(a.clone().swap_dims(1, 2));
                    let gg = g.clone().matmul(g.clone().swap_dims(1, 2));
                    (aa * gg).sum_dim(2).sum_dim(1).reshape([b])
                } else {
                    a.clone()
                        .swap_dims(1, 2)
                        .matmul(g.clone())
                        .square()
                        .sum_dim(2)
                        .sum_dim(1)
                        .reshape([b])
                };
                match bias {
                    Some(_) => w + g.sum_dim(1).square().sum_dim(2).reshape([b]),
                    None => w,
                }
            }
        }
    }

    /// Σᵢ scaleᵢ·∇θᵢ for each parameter θ of this tap (`scale`: `[B]`), as (id, gradient)
    /// with the gradient flattened; reshape to the parameter's shape.
    pub fn weighted_sum(&self, grads: &Gradients, scale: &Tensor<1>) -> Vec<(ParamId, Tensor<1>)> {
        match self {
            Tap::Affine {
                weight,
                bias,
                input,
                probe,
            } => {
                let (a, g) = affine_parts(input, probe, grads);
                let [b, t, k] = a.dims();
                let n = g.dims()[2];
                let gs = g * scale.clone().reshape([b, 1, 1]);
                let gw = a
                    .reshape([b * t, k])
                    .swap_dims(0, 1)
                    .matmul(gs.clone().reshape([b * t, n]));
                let mut out = vec![(*weight, gw.reshape([k * n]))];
                if let Some(bias) = bias {
                    out.push((*bias, gs.sum_dim(1).sum_dim(0).reshape([n])));
                }
                out
            }
        }
    }

    /// Every sample's own gradient for each parameter, `[B, numel]` (for tests and audits;
    /// training needs only [`Tap::sq_norms`] and [`Tap::weighted_sum`]).
    pub fn per_sample(&self, grads: &Gradients) -> Vec<(ParamId, Tensor<2>)> {
        match self {
            Tap::Affine {
                weight,
                bias,
                input,
                probe,
            } => {
                let (a, g) = affine_parts(input, probe, grads);
                let [b, _, k] = a.dims();
                let n = g.dims()[2];
                let gw = a.swap_dims(1, 2).matmul(g.clone()).reshape([b, k * n]);
                let mut out = vec![(*weight, gw)];
                if let Some(bias) = bias {
                    out.push((*bias, g.sum_dim(1).reshape([b, n])));
                }
                out
            }
        }
    }
}
