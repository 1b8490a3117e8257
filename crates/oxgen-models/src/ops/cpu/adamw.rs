//! The AdamW update (Loshchilov & Hutter, 2019) of one parameter for burn's Flex (CPU) backend:
//! one pass over the elements, on every core, instead of the fifteen single-threaded tensor ops
//! that burn's `AdamW` runs per parameter. The arithmetic is burn's, in its order (so the
//! results agree to the last bit, see the test): with f₁ = 1 − β₁, f₂ = 1 − β₂,
//!
//! m ← β₁m + f₁g, v ← β₂v + f₂g², p ← p(1 − lr·λ) − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};
use super::simd::vectorized;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// One step's constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// ε.
    pub epsilon: f32,
    /// Decoupled weight decay λ.
    pub weight_decay: f32,
    /// The step count t after this step (1 on the first).
    pub time: i32,
}

/// The update of one slice: `p`, `m`, `v` are overwritten by their new values.
#[inline(always)]
pub fn update(s: &AdamWStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let (c1, c2) = (1f32 - s.beta_1.powi(s.time), 1f32 - s.beta_2.powi(s.time));
    // burn multiplies by these f32 scalars (its `mul_scalar` takes the f64 and the Flex kernel
    // converts to the element type).
    let lr = s.lr as f32;
    let keep = (1.0 - s.lr * s.weight_decay as f64) as f32;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = *m * s.beta_1 + g * f1;
        *v = *v * s.beta_2 + (g * g) * f2;
        let delta = (*m / c1) / ((*v / c2).sqrt() + s.epsilon);
        *p = *p * keep - delta * lr;
    }
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuAdamWOps: Backend {
    /// (p, m, v) after one step from the parameter, its gradient and moments.
    fn cpu_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl CpuAdamWOps for Flex {
    fn cpu_adamw(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = dims(&param);
        let [p, g, m, v] = [param, grad, moment_1, moment_2].map(contiguous);
        let (mut p, g, mut m, mut v) = (
            f32s(&p).to_vec(),
            f32s(&g),
            f32s(&m).to_vec(),
            f32s(&v).to_vec(),
        );
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| vectorized(|| update(&step, p, g, m, v)));
        (
            tensor(p, shape.clone()),
            tensor(m, shape.clone()),
            tensor(v, shape),
        )
    }
}

impl<B: CpuAdamWOps, C: CheckpointStrategy> CpuAdamWOps for Autodiff<B, C> {
    fn cpu_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // An optimizer step is not differentiated: the results are constants.
        let (p, m, v) = B::cpu_adamw(
            param.into_primitive(),
            grad.into_primitive(),
            moment_1.into_primitive(),
            moment_2.into_primitive(),
            step,
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(p), lift(m), lift(v))
    }
}

/// Runs the kernel on Dispatch tensors of one shape: (p, m, v) after the step.
pub fn cpu_adamw<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as CpuAdamWOps>::cpu_adamw(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}
