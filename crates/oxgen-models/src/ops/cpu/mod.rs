//! Fused kernels for burn's Flex (CPU) backend, built into the op API: a Flex device takes them
//! as a wgpu device takes the WGSL ones (`OpPath::Reference` turns them off too). Each kernel's
//! arithmetic is in a plain-slice module beside it, tested against the plain-burn reference.

pub mod adamw;
pub mod attention;
pub mod attention_math;
pub mod conv;
mod flex;
pub mod gelu;
pub mod gemm;
pub mod group_norm;
pub mod layer_norm;
pub mod linear;
pub mod self_attention;
pub mod simd;

#[cfg(test)]
mod tests;

/// Whether `device` is burn's Flex (CPU) device.
pub fn is_flex(device: &burn::tensor::Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// The kernels in one line, with the instruction set their loops run in here (`oxgen info`).
pub fn describe() -> String {
    let simd = match format!("{:?}", pulp::Arch::new()).as_str() {
        s if s.starts_with("V4") => "AVX-512".to_string(),
        s if s.starts_with("V3") => "AVX2 + FMA".to_string(),
        s => s.to_lowercase(),
    };
    format!(
        "oxgen CPU kernels (attention, self-attention, linear, LayerNorm, GELU, conv2d, GroupNorm+SiLU; {simd}, {} threads)",
        rayon::current_num_threads()
    )
}
