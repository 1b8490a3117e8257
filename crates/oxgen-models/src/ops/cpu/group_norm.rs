//! GroupNorm followed by SiLU for burn's Flex (CPU) backend, forward and backward, one pass each
//! over every (batch, group) block in parallel (burn's Autodiff composes and differentiates
//! about a dozen ops). Same arithmetic as the reference: two-pass mean, biased variance.
//!
//! With x̂ = (x − μ)·r (r = 1/σ of the group), z = x̂·γ + β and y = z·s(z), s the sigmoid:
//! dz = dy·(s + z·s·(1 − s)); g = dz·γ; dx = r·(g − mean(g) − x̂·mean(g·x̂)) over the group;
//! dγ = Σ dz·x̂ and dβ = Σ dz over batch and pixels.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};

use super::simd::{exp_neg, sum_by, vectorized};

/// Run-time options of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormLaunch {
    /// Groups.
    pub groups: usize,
    /// ε added to the variance.
    pub epsilon: f32,
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuGroupNormSiluOps: Backend {
    /// (y `[b, c, h, w]`, stats `[b, groups, 2]`: each group's mean and 1/σ).
    fn cpu_group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        launch: NormLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// (dx, dγ, dβ).
    fn cpu_group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: NormLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The logistic sigmoid through the polynomial exp.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = exp_neg(-z.abs());
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 { s } else { 1.0 - s }
}

/// (channels per group, pixels per channel, elements per group).
fn block(shape: &[usize], groups: usize) -> (usize, usize, usize) {
    let (cg, hw) = (shape[1] / groups, shape[2] * shape[3]);
    (cg, hw, cg * hw)
}

impl CpuGroupNormSiluOps for Flex {
    fn cpu_group_norm_silu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        launch: NormLaunch,
    ) -> (FlexTensor, FlexTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(contiguous);
        let shape = dims(&x);
        let (cg, hw, n) = block(&shape, launch.groups);
        let (xs, gs, bs) = (f32s(&x), f32s(&gamma), f32s(&beta));
        let mut y = vec![0.0f32; xs.len()];
        let mut stats = vec![0.0f32; 2 * xs.len() / n];
        y.par_chunks_mut(n)
            .zip(xs.par_chunks(n))
            .zip(stats.par_chunks_mut(2))
            .enumerate()
            .for_each(|(blk, ((y, x), st))| {
                let c0 = (blk % launch.groups) * cg;
                vectorized(|| {
                    let mean = sum_by(n, |i| x[i]) / n as f32;
                    let var = sum_by(n, |i| (x[i] - mean) * (x[i] - mean)) / n as f32;
                    let r = 1.0 / (var + launch.epsilon).sqrt();
                    for (ch, (yc, xc)) in y.chunks_mut(hw).zip(x.chunks(hw)).enumerate() {
                        let (g, b) = (gs[c0 + ch], bs[c0 + ch]);
                        for (y, &x) in yc.iter_mut().zip(xc) {
                            let z = (x - mean) * r * g + b;
                            *y = z * sigmoid(z);
                        }
                    }
                    st[0] = mean;
                    st[1] = r;
                })
            });
        let groups = shape[0] * launch.groups;
        (tensor(y, shape), tensor(stats, [groups, 2]))
    }

    fn cpu_group_norm_silu_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        dy: FlexTensor,
        launch: NormLaunch,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, beta, stats, dy] = [x, gamma, beta, stats, dy].map(contiguous);
        let shape = dims(&x);
        let (cg, hw, n) = block(&shape, launch.groups);
        let (xs, gs, bs, ss, dys) = (f32s(&x), f32s(&gamma), f32s(&beta), f32s(&stats), f32s(&dy));
        let c = shape[1];
        let mut dx = vec![0.0f32; xs.len()];
        // Per block: its channels' dγ and dβ (cg each), summed over the batch afterwards.
        let mut partial = vec![0.0f32; 2 * cg * xs.len() / n];
        dx.par_chunks_mut(n)
            .zip(xs.par_chunks(n).zip(dys.par_chunks(n)))
            .zip(partial.par_chunks_mut(2 * cg))
            .enumerate()
            .for_each_init(Vec::new, |dz, (blk, ((dx, (x, dy)), part))| {
                let c0 = (blk % launch.groups) * cg;
                let (mean, r) = (ss[2 * blk], ss[2 * blk + 1]);
                dz.resize(n, 0.0);
                vectorized(|| {
                    // dz and, per channel, dγ = Σ dz·x̂, dβ = Σ dz.
                    for ch in 0..cg {
                        let (g, b) = (gs[c0 + ch], bs[c0 + ch]);
                        let span = ch * hw..(ch + 1) * hw;
                        for ((d, &x), &dy) in dz[span.clone()]
                            .iter_mut()
                            .zip(&x[span.clone()])
                            .zip(&dy[span.clone()])
                        {
                            let z = (x - mean) * r * g + b;
                            let s = sigmoid(z);
                            *d = dy * (s + z * s * (1.0 - s));
                        }
                        let (dzc, xc) = (&dz[span.clone()], &x[span]);
                        part[ch] = sum_by(hw, |i| dzc[i] * (xc[i] - mean) * r);
                        part[cg + ch] = sum_by(hw, |i| dzc[i]);
                    }
                    // g = dz·γ; dx = r·(g − mean(g) − x̂·mean(g·x̂)). γ is constant per
                    // channel, so the means come from the channel sums above.
                    let gam = &gs[c0..c0 + cg];
                    let mg = (0..cg).map(|ch| gam[ch] * part[cg + ch]).sum::<f32>() / n as f32;
                    let mgx = (0..cg).map(|ch| gam[ch] * part[ch]).sum::<f32>() / n as f32;
                    for (ch, &g) in gam.iter().enumerate() {
                        let span = ch * hw..(ch + 1) * hw;
                        for ((d, &x), &dz) in dx[span.clone()]
                            .iter_mut()
                            .zip(&x[span.clone()])
                            .zip(&dz[span])
                        {
                            let xhat = (x - mean) * r;
                            *d = r * (dz * g - mg - xhat * mgx);
                        }
                    }
                })
            });
        let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
        for (blk, part) in partial.chunks(2 * cg).enumerate() {
            let c0 = (blk % launch.groups) * cg;
            for ch in 0..cg {
                dgamma[c0 + ch] += part[ch];
                dbeta[c0 + ch] += part[cg + ch];
            }
        }
        (tensor(dx, shape), tensor(dgamma, [c]), tensor(dbeta, [c]))
    }
}

impl<B: CpuGroupNormSiluOps, C: CheckpointStrategy> CpuGroupNormSiluOps for Autodiff<B, C> {
    fn cpu_group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        launch: NormLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct NormBackward;

        impl<B: CpuGroupNormSiluOps> Backward<B, 3> for NormBackward {
            type State = (NodeId, NodeId, NodeId, FloatTensor<B>, NormLaunch);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_g, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, g_id, b_id, stats, launch) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let g: FloatTensor<B> = checkpointer.retrieve_node_output(g_id);
                let b: FloatTensor<B> = checkpointer.retrieve_node_output(b_id);
                let (dx, dg, db) = B::cpu_group_norm_silu_backward(x, g, b, stats, dy, launch);
                for (node, grad) in [(node_x, dx), (node_g, dg), (node_b, db)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match NormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let g_id = prep.checkpoint(&gamma);
                let b_id = prep.checkpoint(&beta);
                let (y, stats) = B::cpu_group_norm_silu(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    launch,
                );
                let y = prep.finish((x_id, g_id, b_id, stats.clone(), launch), y);
                (y, <Autodiff<B, C> as AutodiffBackend>::from_inner(stats))
            }
            OpsKind::UnTracked(prep) => {
                let (y, stats) = B::cpu_group_norm_silu(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    launch,
                );
                (
                    prep.finish(y),
                    <Autodiff<B, C> as AutodiffBackend>::from_inner(stats),
                )
            }
        }
    }

    fn cpu_group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: NormLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not itself differentiable: the results are constants.
        let (dx, dg, db) = B::cpu_group_norm_silu_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            stats.into_primitive(),
            dy.into_primitive(),
            launch,
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(dx), lift(dg), lift(db))
    }
}

/// Runs the kernel on Dispatch tensors.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; `gamma`, `beta`: `[c]`; returns `[b, c, h, w]`.
pub fn cpu_group_norm_silu(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    launch: NormLaunch,
) -> Tensor<4> {
    let (y, _stats) = <Dispatch as CpuGroupNormSiluOps>::cpu_group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        launch,
    );
    Tensor::from_dispatch(y)
}
