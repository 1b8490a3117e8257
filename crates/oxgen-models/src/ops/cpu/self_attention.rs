//! Multi-head self-attention straight from the packed qkv projection, for burn's Flex (CPU)
//! backend: the kernel reads each head's q, k and v as strided column blocks of `[b, t, 3w]`
//! and writes its output into its column block of `[b, t, w]`, so the split, the two head
//! transposes and their copies, and (backward) the slice-assigns of the three gradients into
//! the projection's gradient all disappear. Batches run in parallel, heads in turn; the
//! arithmetic per head is [`super::attention_math`]'s.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, f32s, tensor};

use super::attention_math::{Dest, Dims, backward_group, forward_group};
use super::gemm::Mat;

/// Run-time options of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfLaunch {
    /// Heads; the width w of q, k and v is heads · d.
    pub heads: usize,
    /// Causal mask.
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuSelfAttentionOps: Backend {
    /// (y `[b, t, w]`, lse `[b, heads, t]`) from qkv `[b, t, 3w]`.
    fn cpu_self_attention(
        qkv: FloatTensor<Self>,
        launch: SelfLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// dqkv `[b, t, 3w]`.
    fn cpu_self_attention_backward(
        qkv: FloatTensor<Self>,
        y: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: SelfLaunch,
    ) -> FloatTensor<Self>;
}

/// (batch, t, w, head dim, the per-head sizes).
fn sizes(qkv: &FlexTensor, launch: SelfLaunch) -> (usize, usize, usize, Dims) {
    let s = qkv.layout().shape();
    let (b, t, w) = (s[0], s[1], s[2] / 3);
    let d = w / launch.heads;
    let dims = Dims {
        lq: t,
        lk: t,
        d,
        scale: launch.scale,
        causal: launch.causal,
    };
    (b, t, w, dims)
}

impl CpuSelfAttentionOps for Flex {
    fn cpu_self_attention(qkv: FlexTensor, launch: SelfLaunch) -> (FlexTensor, FlexTensor) {
        let qkv = contiguous(qkv);
        let (b, t, w, dims) = sizes(&qkv, launch);
        let (h, d) = (launch.heads, dims.d);
        let xs = f32s(&qkv);
        let mut y = vec![0.0f32; b * t * w];
        let mut lse = vec![0.0f32; b * h * t];
        y.par_chunks_mut(t * w)
            .zip(lse.par_chunks_mut(h * t))
            .zip(xs.par_chunks(t * 3 * w))
            .for_each_init(Vec::new, |scratch, ((yb, lb), xb)| {
                for head in 0..h {
                    let view = |part: usize| Mat::strided(&xb[part * w + head * d..], t, d, 3 * w);
                    forward_group(
                        &dims,
                        view(0),
                        view(1),
                        view(2),
                        &mut yb[head * d..],
                        w,
                        &mut lb[head * t..(head + 1) * t],
                        scratch,
                    );
                }
            });
        (tensor(y, [b, t, w]), tensor(lse, [b, h, t]))
    }

    fn cpu_self_attention_backward(
        qkv: FlexTensor,
        y: FlexTensor,
        lse: FlexTensor,
        dy: FlexTensor,
        launch: SelfLaunch,
    ) -> FlexTensor {
        let [qkv, y, lse, dy] = [qkv, y, lse, dy].map(contiguous);
        let (b, t, w, dims) = sizes(&qkv, launch);
        let (h, d) = (launch.heads, dims.d);
        let (xs, ys, ls, gs) = (f32s(&qkv), f32s(&y), f32s(&lse), f32s(&dy));
        let mut dqkv = vec![0.0f32; b * t * 3 * w];
        dqkv.par_chunks_mut(t * 3 * w)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (bi, db)| {
                let xb = &xs[bi * t * 3 * w..(bi + 1) * t * 3 * w];
                let (yb, gb) = (
                    &ys[bi * t * w..(bi + 1) * t * w],
                    &gs[bi * t * w..(bi + 1) * t * w],
                );
                for head in 0..h {
                    let view = |part: usize| Mat::strided(&xb[part * w + head * d..], t, d, 3 * w);
                    let dest = Dest::Packed {
                        data: &mut *db,
                        ld: 3 * w,
                        offsets: [head * d, w + head * d, 2 * w + head * d],
                    };
                    let row = (bi * h + head) * t;
                    backward_group(
                        &dims,
                        view(0),
                        view(1),
                        view(2),
                        Mat::strided(&yb[head * d..], t, d, w),
                        &ls[row..row + t],
                        Mat::strided(&gb[head * d..], t, d, w),
                        dest,
                        scratch,
                    );
                }
            });
        tensor(dqkv, [b, t, 3 * w])
    }
}

impl<B: CpuSelfAttentionOps, C: CheckpointStrategy> CpuSelfAttentionOps for Autodiff<B, C> {
    fn cpu_self_attention(
        qkv: FloatTensor<Self>,
        launch: SelfLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct SelfAttentionBackward;

        impl<B: CpuSelfAttentionOps> Backward<B, 1> for SelfAttentionBackward {
            type State = (NodeId, FloatTensor<B>, FloatTensor<B>, SelfLaunch);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (qkv_id, y, lse, launch) = ops.state;
                let qkv: FloatTensor<B> = checkpointer.retrieve_node_output(qkv_id);
                if let Some(node) = node {
                    let dqkv = B::cpu_self_attention_backward(qkv, y, lse, dy, launch);
                    grads.register::<B>(node.id, dqkv);
                }
            }
        }

        match SelfAttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let id = prep.checkpoint(&qkv);
                let (y, lse) = B::cpu_self_attention(qkv.into_primitive(), launch);
                let y = prep.finish((id, y.clone(), lse.clone(), launch), y);
                (y, <Autodiff<B, C> as AutodiffBackend>::from_inner(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (y, lse) = B::cpu_self_attention(qkv.into_primitive(), launch);
                (
                    prep.finish(y),
                    <Autodiff<B, C> as AutodiffBackend>::from_inner(lse),
                )
            }
        }
    }

    fn cpu_self_attention_backward(
        qkv: FloatTensor<Self>,
        y: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: SelfLaunch,
    ) -> FloatTensor<Self> {
        // Not itself differentiable: the result is a constant.
        <Autodiff<B, C> as AutodiffBackend>::from_inner(B::cpu_self_attention_backward(
            qkv.into_primitive(),
            y.into_primitive(),
            lse.into_primitive(),
            dy.into_primitive(),
            launch,
        ))
    }
}

/// Runs the kernel on a Dispatch tensor: y `[b, t, w]` from qkv `[b, t, 3w]`.
pub fn cpu_self_attention(qkv: Tensor<3>, launch: SelfLaunch) -> Tensor<3> {
    let (y, _lse) =
        <Dispatch as CpuSelfAttentionOps>::cpu_self_attention(qkv.into_dispatch(), launch);
    Tensor::from_dispatch(y)
}
