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
//! A 2-D convolution is the affine map of its input patches (im2col: aᵢ is `[L, Cin·kh·kw]` over
//! the L output positions), so the same three lines serve it with T = L; a transposed one
//! pairs each input position with the patch of output gradient it reaches. GroupNorm's per-channel
//! scale and shift have the per-sample gradients Σ_s g ⊙ x̂ and Σ_s g over the positions s; when
//! a SiLU follows (the UNet's fused pair) the probe sits after it and g is the probe's gradient
//! times silu'(z) at the normalised output z.
//!
//! A weight used by two layers (a language-model head tied to its embedding table) has two
//! taps; each sample's gradient is then the sum of their parts, and DP-SGD materialises those
//! parts (`[B, numel]`, [`Tap::per_sample`]) to take the norm of the sum.
//!
//! The loss must be the *sum* of per-sample losses, and row i of every tapped layer's input
//! must belong to sample i (dimension 0 is the sample).

mod capture;
pub mod fused;

pub(crate) use capture::{
    burn_affine, burn_conv, burn_conv_transpose, burn_layer_norm, live, tap_affine, tap_conv,
    tap_custom, tap_group_norm, tap_layer_norm, tap_lookup, tap_tied_head,
};

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::ParamId;
use burn::tensor::module::unfold4d;
use burn::tensor::ops::{PadMode, UnfoldOptions};
use burn::tensor::{Gradients, Int, Tensor};

/// What one tapped layer kept.
#[derive(Clone, Debug)]
pub enum Tap {
    /// An affine layer x·W + b (W stored `[K, N]`, as burn's `Linear`; or `[N, K]` when
    /// `transposed`, as a language-model head tied to its `[V, D]` embedding table).
    Affine {
        /// The weight's id.
        weight: ParamId,
        /// Whether the weight is stored `[N, K]`.
        transposed: bool,
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
    /// A 2-D convolution (ungrouped, undilated), the affine map of its input patches; the
    /// weight is stored `[N, Cin, kh, kw]`, the transpose of an affine layer's `[K, N]`.
    Conv {
        /// The weight's id.
        weight: ParamId,
        /// The bias's id, if any.
        bias: Option<ParamId>,
        /// The input patches, without autodiff, `[B, L, K]` (K = Cin·kh·kw, channel-major).
        patches: Tensor<3>,
        /// The probe added to the output (autodiff leaf), `[B, N, Ho, Wo]`.
        probe: Tensor<4>,
    },
    /// A transposed 2-D convolution (ungrouped, undilated), weight stored `[Cin, N, kh, kw]`.
    /// Input position l of sample i reaches the output window that the layer's kernel,
    /// stride and padding place there, so ∇W_i = xᵢᵀ Pᵢ with xᵢ `[L, Cin]` and Pᵢ the output
    /// gradient's patches at those windows, `[L, N·kh·kw]`: an affine view with K = Cin. The
    /// bias sums the output gradient over positions (not over the overlapping patches).
    ConvTranspose {
        /// The weight's id.
        weight: ParamId,
        /// The bias's id, if any.
        bias: Option<ParamId>,
        /// The input, without autodiff, `[B, L, Cin]` (L = H·W positions).
        input: Tensor<3>,
        /// The probe added to the output (autodiff leaf), `[B, N, Ho, Wo]`.
        probe: Tensor<4>,
        /// Kernel, stride and padding of the layer.
        window: [[usize; 2]; 3],
    },
    /// GroupNorm's per-channel affine y = x̂ ⊙ γ + β over `[B, C, positions]`, optionally
    /// followed by SiLU.
    Channel {
        /// γ's id.
        gamma: ParamId,
        /// β's id.
        beta: ParamId,
        /// x̂, without autodiff, `[B, C, S]`.
        input: Tensor<3>,
        /// silu'(z) at the affine output z when a SiLU follows, `[B, C, S]`.
        gate: Option<Tensor<3>>,
        /// The probe (after the SiLU, if any), `[B, C, S]`.
        probe: Tensor<3>,
    },
    /// A layer with its own per-sample formula (a flow's ActNorm and LU convolution, whose
    /// log-determinants use their parameters directly).
    Custom(CustomTap),
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

/// The per-sample gradients of a layer tapped by [`capture::tap_custom`]: its parameters, and
/// a function from the backward pass's gradients to each sample's gradient of each, `[B, numel]`.
#[derive(Clone)]
pub struct CustomTap {
    params: Vec<ParamId>,
    #[allow(clippy::type_complexity)]
    grads: Rc<dyn Fn(&Gradients) -> Vec<(ParamId, Tensor<2>)>>,
}

impl std::fmt::Debug for CustomTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomTap")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
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

/// Appends `tap` to the open tape (if any).
fn push(tap: Tap) {
    TAPE.with(|tape| {
        if let Some(v) = tape.borrow_mut().as_mut() {
            v.push(tap);
        }
    });
}

/// The probe's gradient (zeros where the output did not reach the loss).
fn probe_grad<const D: usize>(probe: &Tensor<D>, grads: &Gradients) -> Tensor<D> {
    probe
        .grad(grads)
        .unwrap_or_else(|| Tensor::zeros(probe.dims(), &probe.device().inner()))
}

/// A lookup's per-sample table gradients, `[B, V, D]` (one-hot ids times output gradients).
fn lookup_grads(ids: &Tensor<2, Int>, vocab: usize, g: Tensor<3>) -> Tensor<3> {
    let onehot = ids.clone().one_hot::<3>(vocab).float();
    onehot.swap_dims(1, 2).matmul(g)
}

/// An affine-like tap as inputs and output gradients, `[B, T, K]` and `[B, T, N]`, with its
/// parameter ids and whether the weight is stored `[N, K]`.
struct AffineView {
    a: Tensor<3>,
    g: Tensor<3>,
    weight: ParamId,
    bias: Option<ParamId>,
    transposed: bool,
}

impl AffineView {
    /// Each sample's squared norm of ∇W (and ∇b), `[B]`: ∇W's by [`fused::affine_sq_norms`]
    /// (a kernel, or the Gram matrices or the materialised gradient).
    fn sq_norms(&self) -> Tensor<1> {
        let g = self.g.clone();
        let b = g.dims()[0];
        let w = fused::affine_sq_norms(self.a.clone(), g.clone());
        match self.bias {
            Some(_) => w + g.sum_dim(1).square().sum_dim(2).reshape([b]),
            None => w,
        }
    }

    /// Σᵢ scaleᵢ·∇θᵢ, flattened in the parameters' own layouts.
    fn weighted_sum(&self, scale: &Tensor<1>) -> Vec<(ParamId, Tensor<1>)> {
        let [b, t, k] = self.a.dims();
        let n = self.g.dims()[2];
        let gs = self.g.clone() * scale.clone().reshape([b, 1, 1]);
        let mut gw = self
            .a
            .clone()
            .reshape([b * t, k])
            .swap_dims(0, 1)
            .matmul(gs.clone().reshape([b * t, n]));
        if self.transposed {
            gw = gw.swap_dims(0, 1);
        }
        let mut out = vec![(self.weight, gw.reshape([k * n]))];
        if let Some(bias) = self.bias {
            out.push((bias, gs.sum_dim(1).sum_dim(0).reshape([n])));
        }
        out
    }

    /// Every sample's ∇W (and ∇b), `[B, numel]`.
    fn per_sample(&self) -> Vec<(ParamId, Tensor<2>)> {
        let [b, _, k] = self.a.dims();
        let n = self.g.dims()[2];
        let mut gw = self.a.clone().swap_dims(1, 2).matmul(self.g.clone());
        if self.transposed {
            gw = gw.swap_dims(1, 2);
        }
        let mut out = vec![(self.weight, gw.reshape([b, k * n]))];
        if let Some(bias) = self.bias {
            out.push((bias, self.g.clone().sum_dim(1).reshape([b, n])));
        }
        out
    }
}

impl Tap {
    /// The parameters this tap covers.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Tap::Affine { weight, bias, .. }
            | Tap::Conv { weight, bias, .. }
            | Tap::ConvTranspose { weight, bias, .. } => {
                std::iter::once(*weight).chain(*bias).collect()
            }
            Tap::Scale { gamma, beta, .. } => std::iter::once(*gamma).chain(*beta).collect(),
            Tap::Channel { gamma, beta, .. } => vec![*gamma, *beta],
            Tap::Lookup { table, .. } => vec![*table],
            Tap::Custom(c) => c.params.clone(),
        }
    }

    /// The affine and convolution taps as an [`AffineView`].
    fn affine(&self, grads: &Gradients) -> Option<AffineView> {
        match self {
            Tap::Affine {
                weight,
                transposed,
                bias,
                input,
                probe,
            } => Some(AffineView {
                a: input.clone(),
                g: probe_grad(probe, grads),
                weight: *weight,
                bias: *bias,
                transposed: *transposed,
            }),
            Tap::Conv {
                weight,
                bias,
                patches,
                probe,
            } => {
                let [b, n, ho, wo] = probe.dims();
                let g = probe_grad(probe, grads)
                    .reshape([b, n, ho * wo])
                    .swap_dims(1, 2);
                Some(AffineView {
                    a: patches.clone(),
                    g,
                    weight: *weight,
                    bias: *bias,
                    transposed: true,
                })
            }
            Tap::ConvTranspose {
                weight,
                input,
                probe,
                window: [kernel, stride, padding],
                ..
            } => {
                // Padded first: burn unfolds unpadded input as a view, padded by a convolution
                // with a one-hot kernel (C·kh·kw output channels, far slower).
                let [ph, pw] = *padding;
                let g = probe_grad(probe, grads).pad((pw, pw, ph, ph), PadMode::Constant(0.0));
                let options = UnfoldOptions::new(*stride, [0, 0], [1, 1]);
                let g = unfold4d(g, *kernel, options).swap_dims(1, 2);
                Some(AffineView {
                    a: input.clone(),
                    g,
                    weight: *weight,
                    bias: None,
                    transposed: false,
                })
            }
            _ => None,
        }
    }

    /// A transposed convolution's per-sample bias gradients, `[B, N]` (its affine view
    /// leaves the bias out).
    fn transposed_bias(&self, grads: &Gradients) -> Option<(ParamId, Tensor<2>)> {
        match self {
            Tap::ConvTranspose {
                bias: Some(bias),
                probe,
                ..
            } => {
                let [b, n, h, w] = probe.dims();
                let g = probe_grad(probe, grads).reshape([b, n, h * w]).sum_dim(2);
                Some((*bias, g.reshape([b, n])))
            }
            _ => None,
        }
    }

    /// Each sample's squared gradient norm over this tap's parameters, `[B]`.
    pub fn sq_norms(&self, grads: &Gradients) -> Tensor<1> {
        if let Some(view) = self.affine(grads) {
            let sq = view.sq_norms();
            return match self.transposed_bias(grads) {
                Some((_, g)) => {
                    let b = g.dims()[0];
                    sq + g.square().sum_dim(1).reshape([b])
                }
                None => sq,
            };
        }
        self.per_sample(grads)
            .into_iter()
            .map(|(_, g)| {
                let b = g.dims()[0];
                g.square().sum_dim(1).reshape([b])
            })
            .reduce(|a, b| a + b)
            .expect("a tap has a parameter")
    }

    /// Σᵢ scaleᵢ·∇θᵢ for each parameter θ of this tap (`scale`: `[B]`), as (id, gradient)
    /// with the gradient flattened; reshape to the parameter's shape.
    pub fn weighted_sum(&self, grads: &Gradients, scale: &Tensor<1>) -> Vec<(ParamId, Tensor<1>)> {
        if let Some(view) = self.affine(grads) {
            let mut out = view.weighted_sum(scale);
            if let Some((id, g)) = self.transposed_bias(grads) {
                let [b, n] = g.dims();
                out.push((
                    id,
                    (g * scale.clone().reshape([b, 1])).sum_dim(0).reshape([n]),
                ));
            }
            return out;
        }
        match self {
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
            _ => {
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
        }
    }

    /// Every sample's own gradient for each parameter, `[B, numel]` (for tests and audits;
    /// training needs only [`Tap::sq_norms`] and [`Tap::weighted_sum`]).
    pub fn per_sample(&self, grads: &Gradients) -> Vec<(ParamId, Tensor<2>)> {
        if let Some(view) = self.affine(grads) {
            let mut out = view.per_sample();
            out.extend(self.transposed_bias(grads));
            return out;
        }
        match self {
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
            Tap::Channel {
                gamma,
                beta,
                input,
                gate,
                probe,
            } => {
                let mut g = probe_grad(probe, grads);
                if let Some(gate) = gate {
                    g = g * gate.clone();
                }
                let [b, c, _] = g.dims();
                vec![
                    (
                        *gamma,
                        (g.clone() * input.clone()).sum_dim(2).reshape([b, c]),
                    ),
                    (*beta, g.sum_dim(2).reshape([b, c])),
                ]
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
            Tap::Custom(c) => (c.grads)(grads),
            Tap::Affine { .. } | Tap::Conv { .. } | Tap::ConvTranspose { .. } => {
                unreachable!("handled by the affine view")
            }
        }
    }
}
