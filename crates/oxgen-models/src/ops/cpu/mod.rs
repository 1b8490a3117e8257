//! Fused kernels for burn's Flex (CPU) backend, built into the op API: a Flex device takes them
//! as a wgpu device takes the WGSL ones (`OpPath::Reference` turns them off too). Each kernel's
//! arithmetic is in a plain-slice module beside it, tested against the plain-burn reference.

pub mod attention;
pub mod attention_math;
pub mod conv;
pub mod gelu;
pub mod gemm;
pub mod group_norm;
pub mod layer_norm;
pub mod self_attention;
pub mod simd;

#[cfg(test)]
mod tests;
