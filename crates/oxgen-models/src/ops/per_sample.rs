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
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Gradients, Int, Tensor};

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
    /// An elementwise affine over the last dimension, y = x̂ ⊙ γ + β (LayerNorm's, with x̂ the
    /// normalised input).
    Scale {
        /// γ's id.
        gamma: ParamId,
        /// β's id, if any.
        beta: Option<ParamId>,
        /// x̂, without autodiff, `[B, T, D]`.
        input: Tensor<3>,
        /// The probe, `[B, T, D]`.
        probe: Tensor<3>,
    },
    /// A lookup y = E[ids] (`E`: `[V, D]`).
    Lookup {
        /// E's id.
        table: ParamId,
        /// Rows of the table, `V`.
        vocab: usize,
        /// The ids, `[B, T]`.
        ids: Tensor<2, Int>,
        /// The probe, `[B, T, D]`.
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

fn push(tap: Tap) {
    TAPE.with(|tape| {
        if let Some(v) = tape.borrow_mut().as_mut() {
            v.push(tap);
        }
    });
}

/// Taps the LayerNorm `norm` (built with `epsilon`) that took `x` to `y` (called by
/// [`super::layer_norm::layer_norm`]).
pub(crate) fn tap_layer_norm<const D: usize>(
    x: &Tensor<D>,
    y: Tensor<D>,
    norm: &LayerNorm,
    epsilon: f64,
) -> Tensor<D> {
    if D < 2 || !recording() || !y.is_autodiff() {
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

/// Taps the embedding `table` that took `ids` to `y` (called by [`super::embedding::embedding`]).
pub(crate) fn tap_lookup(ids: &Tensor<2, Int>, y: Tensor<3>, table: &Embedding) -> Tensor<3> {
    if !recording() || !y.is_autodiff() {
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

/// The probe's gradient, `[B, T, N]` (zeros where the output did not reach the loss).
fn probe_grad(probe: &Tensor<3>, grads: &Gradients) -> Tensor<3> {
    probe
        .grad(grads)
        .unwrap_or_else(|| Tensor::zeros(probe.dims(), &probe.device().inner()))
}

/// A lookup's per-sample table gradients, `[B, V, D]` (one-hot ids times output gradients).
fn lookup_grads(ids: &Tensor<2, Int>, vocab: usize, g: Tensor<3>) -> Tensor<3> {
    let onehot = ids.clone().one_hot::<3>(vocab).float();
    onehot.swap_dims(1, 2).matmul(g)
}

/// `layer.forward(x)` exactly as burn computes it (no fused kernel: runs whose fixtures were
/// written with burn's arithmetic keep it), tapped.
pub(crate) fn burn_affine<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    let y = layer.forward(x.clone());
    tap_affine(&x, y, layer)
}

/// A tap's input and output gradient, `[B, T, K]` and `[B, T, N]` (zeros where the output did
/// not reach the loss).
fn affine_parts(input: &Tensor<3>, probe: &Tensor<3>, grads: &Gradients) -> (Tensor<3>, Tensor<3>) {
    (input.clone(), probe_grad(probe, grads))
}

impl Tap {
    /// The parameters this tap covers.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Tap::Affine { weight, bias, .. } => std::iter::once(*weight).chain(*bias).collect(),
            Tap::Scale { gamma, beta, .. } => std::iter::once(*gamma).chain(*beta).collect(),
            Tap::Lookup { table, .. } => vec![*table],
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
            Tap::Scale { .. } | Tap::Lookup { .. } => self
                .per_sample(grads)
                .into_iter()
                .map(|(_, g)| {
                    let b = g.dims()[0];
                    g.square().sum_dim(1).reshape([b])
                })
                .reduce(|a, b| a + b)
                .expect("a tap has a parameter"),
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
            Tap::Scale { .. } => {
                let b = scale.dims()[0];
                self.per_sample(grads)
                    .into_iter()
                    .map(|(id, g)| {
                        let n = g.dims()[1];
                        (
                            id,
                            (g * scale.clone().reshape([b, 1])).sum_dim(0).reshape([n]),
                        )
                    })
                    .collect()
            }
            Tap::Lookup {
                table,
                vocab,
                ids,
                probe,
            } => {
                let g = probe_grad(probe, grads);
                let [b, t, d] = g.dims();
                let gs = (g * scale.clone().reshape([b, 1, 1])).reshape([b * t, d]);
                let rows = ids.clone().reshape([b * t]);
                let acc = Tensor::<2>::zeros([*vocab, d], &gs.device()).select_assign(
                    0,
                    rows,
                    gs,
                    burn::tensor::IndexingUpdateOp::Add,
                );
                vec![(*table, acc.reshape([*vocab * d]))]
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
            Tap::Scale {
                gamma,
                beta,
                input,
                probe,
            } => {
                let g = probe_grad(probe, grads);
                let [b, _, d] = g.dims();
                let mut out = vec![(
                    *gamma,
                    (g.clone() * input.clone()).sum_dim(1).reshape([b, d]),
                )];
                if let Some(beta) = beta {
                    out.push((*beta, g.sum_dim(1).reshape([b, d])));
                }
                out
            }
            Tap::Lookup {
                table,
                vocab,
                ids,
                probe,
            } => {
                let g = probe_grad(probe, grads);
                let [b, _, d] = g.dims();
                vec![(
                    *table,
                    lookup_grads(ids, *vocab, g).reshape([b, *vocab * d]),
                )]
            }
        }
    }
}
