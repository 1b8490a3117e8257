//! GELU for burn's Flex (CPU) backend: one pass forward, one pass backward (burn's backward is
//! fourteen ops), over every core. Φ(x) = (1 + erf(x/√2))/2 and the gradient Φ(x) + x·φ(x),
//! φ(x) = exp(−x²/2)/√(2π), in branch-free f32 arithmetic that the compiler vectorises: erf by
//! Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e−7), which needs exp(−x²/2), the same exponential
//! φ needs; exp by Cody–Waite range reduction and Cephes' `expf` polynomial (≈ 1 ulp).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};

pub use super::simd::exp_neg;
use super::simd::vectorized;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// (Φ(x), exp(−x²/2)): the standard normal CDF and the unnormalised density.
#[inline(always)]
fn phi_and_gauss(x: f32) -> (f32, f32) {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let gauss = exp_neg(-0.5 * x * x);
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let erf = 1.0 - poly * gauss; // erf(|x|/√2)
    (0.5 + 0.5 * erf.copysign(x), gauss)
}

/// Φ(x), the standard normal CDF.
#[inline(always)]
pub fn phi_cdf(x: f32) -> f32 {
    phi_and_gauss(x).0
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let (cdf, gauss) = phi_and_gauss(x);
    cdf + x * INV_SQRT_2PI * gauss
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuGeluOps: Backend {
    /// x · Φ(x).
    fn cpu_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// dy · (Φ(x) + x φ(x)).
    fn cpu_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl CpuGeluOps for Flex {
    fn cpu_gelu(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let shape = dims(&x);
        let xs = f32s(&x);
        let mut y = vec![0.0f32; xs.len()];
        y.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                vectorized(|| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = x * phi_cdf(x);
                    }
                })
            });
        tensor(y, shape)
    }

    fn cpu_gelu_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let (x, dy) = (contiguous(x), contiguous(dy));
        let shape = dims(&x);
        let (xs, gs) = (f32s(&x), f32s(&dy));
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
            .for_each(|(dx, (x, g))| {
                vectorized(|| {
                    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                        *dx = g * gelu_grad(x);
                    }
                })
            });
        tensor(dx, shape)
    }
}

impl<B: CpuGeluOps, C: CheckpointStrategy> CpuGeluOps for Autodiff<B, C> {
    fn cpu_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: CpuGeluOps> Backward<B, 1> for GeluBackward {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
                if let Some(node) = node {
                    grads.register::<B>(node.id, B::cpu_gelu_backward(x, dy));
                }
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let id = prep.checkpoint(&x);
                let y = B::cpu_gelu(x.into_primitive());
                prep.finish(id, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_gelu(x.into_primitive())),
        }
    }

    fn cpu_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::AutodiffBackend;
        // Not itself differentiable: the result is a constant.
        <Autodiff<B, C> as AutodiffBackend>::from_inner(B::cpu_gelu_backward(
            x.into_primitive(),
            dy.into_primitive(),
        ))
    }
}

/// Runs the kernel on a Dispatch tensor.
pub fn cpu_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuGeluOps>::cpu_gelu(x.into_dispatch()))
}
