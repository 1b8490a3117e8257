//! The affine layer y = x·W + b for burn's Flex (CPU) backend: one GEMM each way per operand,
//! on every core, writing its output once.
//!
//! burn's Autodiff takes a `Linear` through its generic matmul and a broadcast add: each matmul
//! output is zero-filled and then copied to realign it (`FlexTensor::empty`), the bias is added
//! in a single-threaded pass, and its gradient is a single-threaded reduction. Here the
//! forward starts from the bias rows and accumulates x·W onto them; backward is
//! dx = dy·Wᵀ, dW = xᵀ·dy (gemm reads the transposes in place) and db = Σ_rows dy, rows split
//! over the cores.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};
use super::gemm::{Mat, product};
use super::simd::vectorized;

/// Rows per parallel chunk of the bias gradient.
const ROWS: usize = 256;

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuLinearOps: Backend {
    /// x·W + b: `x` `[..., k]`, `weight` `[k, n]`, `bias` `[n]`; returns `[..., n]`.
    fn cpu_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// (dx, dW, db) from the layer's input, weight and output gradient.
    fn cpu_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Σ over the rows (width `n`) of `dy`, rows split over the cores.
pub fn column_sums(dy: &[f32], n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    dy.par_chunks(ROWS * n)
        .map(|rows| {
            vectorized(|| {
                let mut s = vec![0.0f32; n];
                for row in rows.chunks_exact(n) {
                    for (s, &g) in s.iter_mut().zip(row) {
                        *s += g;
                    }
                }
                s
            })
        })
        .reduce(
            || vec![0.0f32; n],
            |mut a, b| {
                for (a, b) in a.iter_mut().zip(&b) {
                    *a += b;
                }
                a
            },
        )
}

impl CpuLinearOps for Flex {
    fn cpu_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        let (mut shape, [k, n]) = (dims(&x), <[usize; 2]>::try_from(dims(&weight)).expect("2D"));
        let rows = x.layout().num_elements() / k.max(1);
        let y = product(
            Mat::new(f32s(&x), rows, k),
            Mat::new(f32s(&weight), k, n),
            Some(f32s(&bias)),
        );
        *shape.last_mut().expect("x has a last dimension") = n;
        tensor(y, shape)
    }

    fn cpu_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, weight, dy) = (contiguous(x), contiguous(weight), contiguous(dy));
        let shape = dims(&x);
        let [k, n] = <[usize; 2]>::try_from(dims(&weight)).expect("2D");
        let rows = x.layout().num_elements() / k.max(1);
        let (xs, ws, gs) = (f32s(&x), f32s(&weight), f32s(&dy));
        let dx = product(Mat::new(gs, rows, n), Mat::new(ws, k, n).t(), None);
        let dw = product(Mat::new(xs, rows, k).t(), Mat::new(gs, rows, n), None);
        let db = column_sums(gs, n);
        (tensor(dx, shape), tensor(dw, [k, n]), tensor(db, [n]))
    }
}

impl<B: CpuLinearOps, C: CheckpointStrategy> CpuLinearOps for Autodiff<B, C> {
    fn cpu_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearBackward;

        impl<B: CpuLinearOps> Backward<B, 3> for LinearBackward {
            type State = (NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, w_id) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_id);
                let (dx, dw, db) = B::cpu_linear_backward(x, w, dy);
                for (node, grad) in [(node_x, dx), (node_w, dw), (node_b, db)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let w_id = prep.checkpoint(&weight);
                let y = B::cpu_linear(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                prep.finish((x_id, w_id), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }

    fn cpu_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not itself differentiable: the results are constants.
        let (dx, dw, db) = B::cpu_linear_backward(
            x.into_primitive(),
            weight.into_primitive(),
            dy.into_primitive(),
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(dx), lift(dw), lift(db))
    }
}

/// Runs the kernel on Dispatch tensors.
///
/// # Shapes
/// - `x`: `[..., k]`; `weight`: `[k, n]`; `bias`: `[n]`; returns `[..., n]`.
pub fn cpu_linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuLinearOps>::cpu_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}
