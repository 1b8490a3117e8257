//! Scaled dot-product attention: the op that attention layers call, with its plain-burn
//! reference. A fused flash-attention kernel plugs in behind it later.

use burn::tensor::{Tensor, activation::softmax};

/// softmax(q·kᵀ/√d)·v.
///
/// # Shapes
/// - `q`, `k`, `v`: `[batch, heads, len, d]`; returns `[batch, heads, len, d]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let d = q.dims()[3];
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (d as f64).sqrt()); // [b, h, l, l]
    softmax(scores, 3).matmul(v)
}
