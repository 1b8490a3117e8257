//! Per-sample gradient norms for DP-SGD (`shaders/per_sample_norm.wgsl`) behind
//! `oxgen_models::ops::per_sample::fused`: ‖aᵢᵀ gᵢ‖² for each sample, without the `[B, K, N]`
//! per-sample gradients the reference writes.
//!
//! Same design as [`crate::group_norm`]: a burn backend extension implemented for
//! `CubeBackend`, with burn generating the lazy `Fusion<CubeBackend>` version. It runs on the
//! inner (non-autodiff) device: its inputs are a tap's kept input and a probe's gradient.

use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Shape, Tensor};
use oxgen_models::ops::per_sample::fused::FusedSqNorms;

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/per_sample_norm.wgsl");

/// Which compile-time variant of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Invocations per workgroup (a power of two); see [`workgroup_size`].
    pub workgroup_size: u32,
}

impl Variant {
    /// Every variant (for validation).
    pub fn all() -> Vec<Variant> {
        [16, 32, 64, 128, 256]
            .into_iter()
            .map(|workgroup_size| Variant { workgroup_size })
            .collect()
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        SourceTemplate::new(SOURCE).register("workgroup_size", self.workgroup_size.to_string())
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// The `Params` struct of the shader, word for word (binding 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Samples B.
    pub batch: u32,
    /// Rows per sample T (sequence positions, or a convolution's output positions).
    pub t: u32,
    /// Input features K.
    pub k: u32,
    /// Output features N.
    pub n: u32,
}

impl Params {
    /// The words of the storage layout.
    pub fn words(&self) -> [u32; 4] {
        [self.batch, self.t, self.k, self.n]
    }
}

/// Workgroup size: two subgroups (as [`crate::group_norm::workgroup_size`]), and no more
/// invocations than the K·N entries need.
pub fn workgroup_size(plane_size: u32, entries: usize) -> u32 {
    let base = (2 * plane_size).next_power_of_two().clamp(16, 128);
    base.min((entries as u32).next_power_of_two().max(16))
}

fn norms_spec(a: &TensorSpec) -> TensorSpec {
    TensorSpec::new(Shape::new([a.shape.as_slice()[0]]), DType::F32)
}

/// The per-sample norms as a burn backend extension.
#[backend_extension(Cube, Fusion)]
pub trait PerSampleNormOps: Backend {
    /// ‖aᵢᵀ gᵢ‖² for `a` `[b, t, k]` and `g` `[b, t, n]`; returns `[b]`.
    #[fusion(meta = |a, _g| norms_spec(a))]
    fn per_sample_sq_norms(a: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl PerSampleNormOps for CubeBackend {
    fn per_sample_sq_norms(a: CubeTensor, g: CubeTensor) -> CubeTensor {
        let [a, g] = [a, g].map(into_contiguous);
        let (ad, gd) = (a.meta.shape().clone(), g.meta.shape().clone());
        let (b, t, k, n) = (ad[0], ad[1], ad[2], gd[2]);
        let client = a.client.clone();
        let variant = Variant {
            workgroup_size: workgroup_size(client.properties().hardware.plane_size_max, k * n),
        };
        let out = client.empty(b * 4);
        let params = Params {
            batch: b as u32,
            t: t as u32,
            k: k as u32,
            n: n as u32,
        };
        let params_handle = client.create_from_slice(&words_to_bytes(&params.words()));
        let (gx, gy) = crate::denoise::grid_2d(b);
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(variant),
                CubeDim::new_1d(variant.workgroup_size),
            )),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                a.handle.clone().binding(),
                g.handle.clone().binding(),
                out.clone().binding(),
                params_handle.binding(),
            ]),
        );
        CubeTensor::new_contiguous(client, a.device.clone(), Shape::new([b]), out, DType::F32)
    }
}

/// The kernel as the fused path of `oxgen_models::ops::per_sample::fused::affine_sq_norms`.
#[derive(Debug, Default)]
pub struct WgslPerSampleNorms;

impl FusedSqNorms for WgslPerSampleNorms {
    fn name(&self) -> &'static str {
        "wgsl-per-sample-norm"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device) && !device.is_autodiff()
    }

    fn affine_sq_norms(&self, a: Tensor<3>, g: Tensor<3>) -> Tensor<1> {
        let y = <Dispatch as PerSampleNormOps>::per_sample_sq_norms(
            a.into_dispatch(),
            g.into_dispatch(),
        );
        Tensor::from_dispatch(y)
    }
}

/// Installs the kernel behind the per-sample norms. Returns false if one was already installed.
pub fn register() -> bool {
    oxgen_models::ops::per_sample::fused::register_fused(Box::new(WgslPerSampleNorms))
}
