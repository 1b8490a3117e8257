//! The table lookup E[ids], as the op models call: burn's `Embedding`, tapped for per-sample
//! gradients while a [`super::per_sample::record`] is open.

use burn::nn::Embedding;
use burn::tensor::{Int, Tensor};

/// `table.forward(ids)`.
///
/// # Shapes
/// - `ids`: `[B, T]`; returns `[B, T, D]`.
pub fn embedding(ids: Tensor<2, Int>, table: &Embedding) -> Tensor<3> {
    let y = table.forward(ids.clone());
    super::per_sample::tap_lookup(&ids, y, table)
}
