//! Layer normalisation for burn's Flex (CPU) backend: one pass over the rows forward (saving
//! each row's mean and 1/σ), one pass backward, rows in parallel. burn's Autodiff composes it
//! from eight ops and differentiates each.
//!
//! Backward, with x̂ = (x − μ)/σ and g = dy ⊙ γ (rows of width d):
//! dx = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / σ, dγ = Σ_rows dy ⊙ x̂, dβ = Σ_rows dy.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};

use super::simd::{sum_by, vectorized};

/// Rows per parallel chunk.
const ROWS: usize = 64;

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuLayerNormOps: Backend {
    /// (y `[..., d]`, stats `[rows, 2]`: each row's mean and 1/σ).
    fn cpu_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// (dx, dγ, dβ).
    fn cpu_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Forward of rows of width `d`: writes `y` and (mean, 1/σ) per row into `stats`.
#[inline(always)]
pub fn forward_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    stats: &mut [f32],
) {
    let d = gamma.len();
    for ((x, y), s) in x.chunks(d).zip(y.chunks_mut(d)).zip(stats.chunks_mut(2)) {
        let mean = sum_by(d, |i| x[i]) / d as f32;
        let var = sum_by(d, |i| (x[i] - mean) * (x[i] - mean)) / d as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *y = (x - mean) * rstd * g + b;
        }
        s[0] = mean;
        s[1] = rstd;
    }
}

/// Backward of rows of width `d`: writes `dx`, adds the rows' dγ and dβ into `dgamma`, `dbeta`.
#[inline(always)]
pub fn backward_rows(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let d = gamma.len();
    let rows = x.chunks(d).zip(dy.chunks(d)).zip(dx.chunks_mut(d));
    for (((x, dy), dx), s) in rows.zip(stats.chunks(2)) {
        let (mean, rstd) = (s[0], s[1]);
        let mg = sum_by(d, |i| dy[i] * gamma[i]);
        let mgx = sum_by(d, |i| dy[i] * gamma[i] * (x[i] - mean) * rstd);
        let grads = dgamma.iter_mut().zip(dbeta.iter_mut());
        for ((&x, &dy), (dg, db)) in x.iter().zip(dy).zip(grads) {
            *dg += dy * (x - mean) * rstd;
            *db += dy;
        }
        let (mg, mgx) = (mg / d as f32, mgx / d as f32);
        for (((dx, &x), &dy), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
            let xhat = (x - mean) * rstd;
            *dx = (dy * g - mg - xhat * mgx) * rstd;
        }
    }
}

impl CpuLayerNormOps for Flex {
    fn cpu_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(contiguous);
        let shape = dims(&x);
        let (xs, gs, bs) = (f32s(&x), f32s(&gamma), f32s(&beta));
        let d = gs.len();
        let rows = xs.len() / d;
        let mut y = vec![0.0f32; xs.len()];
        let mut stats = vec![0.0f32; 2 * rows];
        y.par_chunks_mut(ROWS * d)
            .zip(stats.par_chunks_mut(ROWS * 2))
            .zip(xs.par_chunks(ROWS * d))
            .for_each(|((y, s), x)| vectorized(|| forward_rows(x, gs, bs, epsilon as f32, y, s)));
        (tensor(y, shape), tensor(stats, vec![rows, 2]))
    }

    fn cpu_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        stats: FlexTensor,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, stats, dy] = [x, gamma, stats, dy].map(contiguous);
        let (shape, gshape) = (dims(&x), dims(&gamma));
        let (xs, gs, ss, dys) = (f32s(&x), f32s(&gamma), f32s(&stats), f32s(&dy));
        let d = gs.len();
        let mut dx = vec![0.0f32; xs.len()];
        // Each chunk of rows adds its dγ and dβ into its own partial; the partials are summed.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(ROWS * d)
            .zip(xs.par_chunks(ROWS * d))
            .zip(dys.par_chunks(ROWS * d))
            .zip(ss.par_chunks(ROWS * 2))
            .map(|(((dx, x), dy), s)| {
                let (mut dg, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
                vectorized(|| backward_rows(x, gs, s, dy, dx, &mut dg, &mut db));
                (dg, db)
            })
            .collect();
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        for (dg, db) in partials {
            dgamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
            dbeta.iter_mut().zip(db).for_each(|(a, b)| *a += b);
        }
        (
            tensor(dx, shape),
            tensor(dgamma, gshape.clone()),
            tensor(dbeta, gshape),
        )
    }
}

impl<B: CpuLayerNormOps, C: CheckpointStrategy> CpuLayerNormOps for Autodiff<B, C> {
    fn cpu_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: CpuLayerNormOps> Backward<B, 3> for LayerNormBackward {
            type State = (NodeId, NodeId, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, gamma_id, stats) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let gamma: FloatTensor<B> = checkpointer.retrieve_node_output(gamma_id);
                let (dx, dgamma, dbeta) = B::cpu_layer_norm_backward(x, gamma, stats, dy);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let gamma_id = prep.checkpoint(&gamma);
                let (y, stats) = B::cpu_layer_norm(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let y = prep.finish((x_id, gamma_id, stats.clone()), y);
                (y, <Autodiff<B, C> as AutodiffBackend>::from_inner(stats))
            }
            OpsKind::UnTracked(prep) => {
                let (y, stats) = B::cpu_layer_norm(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (
                    prep.finish(y),
                    <Autodiff<B, C> as AutodiffBackend>::from_inner(stats),
                )
            }
        }
    }

    fn cpu_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not itself differentiable: the results are constants.
        let (dx, dg, db) = B::cpu_layer_norm_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            stats.into_primitive(),
            dy.into_primitive(),
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(dx), lift(dg), lift(db))
    }
}

/// Runs the kernel on Dispatch tensors.
///
/// # Shapes
/// - `x`: `[..., d]`; `gamma`, `beta`: `[d]`; returns the shape of `x`.
pub fn cpu_layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let (y, _stats) = <Dispatch as CpuLayerNormOps>::cpu_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(y)
}
