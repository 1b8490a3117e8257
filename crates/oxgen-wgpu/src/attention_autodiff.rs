//! The `Autodiff` impl of [`FlashAttentionOps`]: one backward node per flash-attention call,
//! whose step runs the two backward kernels of the inner backend. Only the attention output is
//! tracked; the saved logsumexp comes back untracked, and the bias is a constant.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::{AutodiffBackend, tensor::FloatTensor};

use crate::attention::{FlashAttentionOps, FlashLaunch};

impl<B: FlashAttentionOps, C: CheckpointStrategy> FlashAttentionOps for Autodiff<B, C> {
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: FlashLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct FlashBackward;

        impl<B: FlashAttentionOps> Backward<B, 3> for FlashBackward {
            type State = (
                NodeId,
                NodeId,
                NodeId,
                FloatTensor<B>,
                FloatTensor<B>,
                FloatTensor<B>,
                FlashLaunch,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_q, node_k, node_v] = ops.parents;
                let d_out = grads.consume::<B>(&ops.node);
                let (q_id, k_id, v_id, bias, out, lse, launch) = ops.state;
                let q: FloatTensor<B> = checkpointer.retrieve_node_output(q_id);
                let k: FloatTensor<B> = checkpointer.retrieve_node_output(k_id);
                let v: FloatTensor<B> = checkpointer.retrieve_node_output(v_id);
                let (dq, dk, dv) =
                    B::flash_attention_backward(q, k, v, bias, out, lse, d_out, launch);
                for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match FlashBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let q_id = prep.checkpoint(&q);
                let k_id = prep.checkpoint(&k);
                let v_id = prep.checkpoint(&v);
                let bias = bias.into_primitive();
                let (out, lse) = B::flash_attention(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    bias.clone(),
                    launch.clone(),
                );
                let state = (q_id, k_id, v_id, bias, out.clone(), lse.clone(), launch);
                let out = prep.finish(state, out);
                (out, <Autodiff<B, C> as AutodiffBackend>::from_inner(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (out, lse) = B::flash_attention(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    bias.into_primitive(),
                    launch,
                );
                (
                    prep.finish(out),
                    <Autodiff<B, C> as AutodiffBackend>::from_inner(lse),
                )
            }
        }
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        launch: FlashLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // The backward is not itself differentiable: its results are constants.
        let (dq, dk, dv) = B::flash_attention_backward(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            bias.into_primitive(),
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
