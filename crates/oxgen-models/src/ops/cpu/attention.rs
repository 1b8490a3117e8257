//! Fused attention for burn's Flex (CPU) backend, forward and backward, behind
//! [`crate::ops::attention`].
//!
//! burn's Autodiff backend computes attention by composition (`attention_fallback`): scores,
//! scale, mask, max, subtract, exp, sum, divide and a second matmul forward, each a full pass
//! over a `[b, h, lq, lk]` tensor on one core, and as many again backward. This kernel keeps a
//! group's scores in cache (see [`super::attention_math`]), runs the (batch, head) groups on
//! every core with rayon, and records one backward node that recomputes the probabilities from
//! the saved logsumexp, as flash attention does (Dao et al., 2022).
//!
//! A burn backend extension for `Flex` and `Autodiff`: the `Flex` impl runs the kernel, the
//! `Autodiff` impl records the node. Only the output is tracked; the logsumexp comes back
//! untracked. f32 only, without bias; anything else takes the reference.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};

use super::attention_math::{Dest, Dims, backward_group, forward_group};
use super::gemm::Mat;
use crate::ops::attention::{AttentionOptions, FusedAttention};

/// Run-time options of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuLaunch {
    /// Causal mask (bottom-right aligned).
    pub causal: bool,
    /// Score scale (1/√d by default).
    pub scale: f32,
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuAttentionOps: Backend {
    /// (out `[b, h, lq, d]`, lse `[b, h, lq]`).
    fn cpu_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        launch: CpuLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// (dq, dk, dv) from the forward's inputs, output and lse, and the output's gradient.
    #[allow(clippy::too_many_arguments)]
    fn cpu_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        launch: CpuLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A `[b, h, l, d]` tensor as groups: the tensor and where each (batch, head) group's packed
/// `l × d` rows start in its storage. Views whose groups are packed (a KV cache's filled part)
/// are read in place; anything else is copied contiguous first.
fn grouped(t: FlexTensor) -> (FlexTensor, Vec<usize>) {
    let s = dims(&t);
    let st = t.layout().strides().to_vec();
    let packed_rows = st[3] == 1 && st[2] == s[3] as isize && st[0] >= 0 && st[1] >= 0;
    let t = if packed_rows { t } else { t.to_contiguous() };
    let st = t.layout().strides();
    let start = t.layout().start_offset();
    let offsets = (0..s[0] * s[1])
        .map(|g| start + (g / s[1]) * st[0] as usize + (g % s[1]) * st[1] as usize)
        .collect();
    (t, offsets)
}

fn sizes(q: &FlexTensor, k: &FlexTensor, launch: CpuLaunch) -> (usize, Dims) {
    let (qd, kd) = (dims(q), dims(k));
    let dims = Dims {
        lq: qd[2],
        lk: kd[2],
        d: qd[3],
        scale: launch.scale,
        causal: launch.causal,
    };
    (qd[0] * qd[1], dims)
}

impl CpuAttentionOps for Flex {
    fn cpu_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        launch: CpuLaunch,
    ) -> (FlexTensor, FlexTensor) {
        let (q, k, v) = (contiguous(q), grouped(k), grouped(v));
        let ((k, k_at), (v, v_at)) = (k, v);
        let (groups, dm) = sizes(&q, &k, launch);
        let Dims { lq, lk, d, .. } = dm;
        let qs = f32s(&q);
        let (ks, vs) = (k.storage::<f32>(), v.storage::<f32>());
        let mut out = vec![0.0f32; groups * lq * d];
        let mut lse = vec![0.0f32; groups * lq];
        out.par_chunks_mut(lq * d)
            .zip(lse.par_chunks_mut(lq))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (g, (o, l))| {
                forward_group(
                    &dm,
                    Mat::new(&qs[g * lq * d..(g + 1) * lq * d], lq, d),
                    Mat::new(&ks[k_at[g]..k_at[g] + lk * d], lk, d),
                    Mat::new(&vs[v_at[g]..v_at[g] + lk * d], lk, d),
                    o,
                    d,
                    l,
                    scratch,
                );
            });
        let shape = dims(&q);
        let lse_shape = shape[..3].to_vec();
        (tensor(out, shape), tensor(lse, lse_shape))
    }

    fn cpu_attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        d_out: FlexTensor,
        launch: CpuLaunch,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [q, k, v, out, lse, d_out] = [q, k, v, out, lse, d_out].map(contiguous);
        let (groups, dm) = sizes(&q, &k, launch);
        let Dims { lq, lk, d, .. } = dm;
        let (qs, ks, vs, os, ls, gs) = (
            f32s(&q),
            f32s(&k),
            f32s(&v),
            f32s(&out),
            f32s(&lse),
            f32s(&d_out),
        );
        let mut dq = vec![0.0f32; groups * lq * d];
        let mut dk = vec![0.0f32; groups * lk * d];
        let mut dv = vec![0.0f32; groups * lk * d];
        dq.par_chunks_mut(lq * d)
            .zip(dk.par_chunks_mut(lk * d))
            .zip(dv.par_chunks_mut(lk * d))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (g, ((dqg, dkg), dvg))| {
                let rows_q = g * lq * d..(g + 1) * lq * d;
                let rows_k = g * lk * d..(g + 1) * lk * d;
                let dest = Dest::Split {
                    dq: dqg,
                    dk: dkg,
                    dv: dvg,
                };
                backward_group(
                    &dm,
                    Mat::new(&qs[rows_q.clone()], lq, d),
                    Mat::new(&ks[rows_k.clone()], lk, d),
                    Mat::new(&vs[rows_k], lk, d),
                    Mat::new(&os[rows_q.clone()], lq, d),
                    &ls[g * lq..(g + 1) * lq],
                    Mat::new(&gs[rows_q], lq, d),
                    dest,
                    scratch,
                );
            });
        let (qshape, kshape) = (dims(&q), dims(&k));
        (
            tensor(dq, qshape),
            tensor(dk, kshape.clone()),
            tensor(dv, kshape),
        )
    }
}

impl<B: CpuAttentionOps, C: CheckpointStrategy> CpuAttentionOps for Autodiff<B, C> {
    fn cpu_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        launch: CpuLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct CpuAttentionBackward;

        impl<B: CpuAttentionOps> Backward<B, 3> for CpuAttentionBackward {
            type State = (
                NodeId,
                NodeId,
                NodeId,
                FloatTensor<B>,
                FloatTensor<B>,
                CpuLaunch,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_q, node_k, node_v] = ops.parents;
                let d_out = grads.consume::<B>(&ops.node);
                let (q_id, k_id, v_id, out, lse, launch) = ops.state;
                let q: FloatTensor<B> = checkpointer.retrieve_node_output(q_id);
                let k: FloatTensor<B> = checkpointer.retrieve_node_output(k_id);
                let v: FloatTensor<B> = checkpointer.retrieve_node_output(v_id);
                let (dq, dk, dv) = B::cpu_attention_backward(q, k, v, out, lse, d_out, launch);
                for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match CpuAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let q_id = prep.checkpoint(&q);
                let k_id = prep.checkpoint(&k);
                let v_id = prep.checkpoint(&v);
                let (out, lse) = B::cpu_attention(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    launch,
                );
                let state = (q_id, k_id, v_id, out.clone(), lse.clone(), launch);
                let out = prep.finish(state, out);
                (out, <Autodiff<B, C> as AutodiffBackend>::from_inner(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (out, lse) = B::cpu_attention(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    launch,
                );
                (
                    prep.finish(out),
                    <Autodiff<B, C> as AutodiffBackend>::from_inner(lse),
                )
            }
        }
    }

    fn cpu_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        launch: CpuLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // The backward is not itself differentiable: its results are constants.
        let (dq, dk, dv) = B::cpu_attention_backward(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            out.into_primitive(),
            lse.into_primitive(),
            d_out.into_primitive(),
            launch,
        );
        (
            <Autodiff<B, C> as AutodiffBackend>::from_inner(dq),
            <Autodiff<B, C> as AutodiffBackend>::from_inner(dk),
            <Autodiff<B, C> as AutodiffBackend>::from_inner(dv),
        )
    }
}

/// Runs the kernel on Dispatch tensors: (out `[b, h, lq, d]`, lse `[b, h, lq]`).
pub fn cpu_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    options: AttentionOptions,
) -> (Tensor<4>, Tensor<3>) {
    let d = q.dims()[3];
    let launch = CpuLaunch {
        causal: options.causal,
        scale: options.scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32,
    };
    let (out, lse) = <Dispatch as CpuAttentionOps>::cpu_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        launch,
    );
    (Tensor::from_dispatch(out), Tensor::from_dispatch(lse))
}

/// The kernel as a fused path of `attention`.
#[derive(Debug, Default)]
pub struct CpuAttention;

impl FusedAttention for CpuAttention {
    fn name(&self) -> &'static str {
        "cpu-fused-attention"
    }

    fn accepts(&self, device: &Device) -> bool {
        super::is_flex(device)
    }

    fn supports(&self, head_dim: usize) -> bool {
        head_dim > 0
    }

    fn forward(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
        options: AttentionOptions,
    ) -> Tensor<4> {
        let f32_inputs = [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
        use crate::ops::{attention::OP, stats};
        if bias.is_some()
            || !f32_inputs
            || options.window.is_some()
            || options.key_lengths.is_some()
        {
            let why = match () {
                _ if !f32_inputs => "f32 only",
                _ if bias.is_some() => "no bias",
                _ if options.window.is_some() => "no sliding window",
                _ => "no key lengths",
            };
            stats::reference(OP, &format!("the CPU kernel takes {why}"));
            return crate::ops::attention::attention_reference(q, k, v, bias, options);
        }
        stats::fused(OP, self.name());
        cpu_attention(q, k, v, options).0
    }
}
