//! The fused forward noising of diffusion training (`shaders/noising.wgsl`) behind
//! `oxgen_models::ops::noising`: x_t and ε in one pass, ε drawn in registers from Philox.
//!
//! Same design as [`crate::denoise`]: a burn backend extension implemented for `CubeBackend`,
//! with burn generating the lazy `Fusion<CubeBackend>` version.

use crate::denoise::{BLOCKS_PER_INVOCATION, WORKGROUP_SIZE, WithPhilox, grid};
use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::ir::{ElemType, UIntKind};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Tensor, TensorData};
use oxgen_models::ops::noising::{FusedNoising, NoisingPlan};

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/noising.wgsl");

/// A compile-time variant: Philox's product with the native 64-bit multiply, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// One u64 multiply (needs shader-int64) instead of 16-bit halves.
    pub mul64: bool,
}

impl Variant {
    /// Every variant (for validation).
    pub fn all() -> Vec<Variant> {
        vec![Variant { mul64: false }, Variant { mul64: true }]
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        SourceTemplate::new(SOURCE)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
            .register("blocks_per_invocation", BLOCKS_PER_INVOCATION.to_string())
            .with_philox(self.mul64)
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// Run-time options of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoisingLaunch {
    /// Philox key.
    pub seed: u64,
    /// Philox stream.
    pub stream: u32,
}

/// The kernel as a burn backend extension.
#[backend_extension(Cube, Fusion)]
pub trait NoisingOps: Backend {
    /// (x_t, ε) for `x0` of shape `[b, n]` and per-row coefficients `a`, `s` of shape `[b]`.
    #[fusion(meta = |x0, _a, _s, _l| (x0.clone(), x0.clone()))]
    fn fused_noising(
        x0: FloatTensor<Self>,
        a: FloatTensor<Self>,
        s: FloatTensor<Self>,
        launch: NoisingLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl NoisingOps for CubeBackend {
    fn fused_noising(
        x0: CubeTensor,
        a: CubeTensor,
        s: CubeTensor,
        launch: NoisingLaunch,
    ) -> (CubeTensor, CubeTensor) {
        let [x0, a, s] = [x0, a, s].map(into_contiguous);
        let shape = x0.meta.shape().clone();
        let n = shape.num_elements();
        let row_len = shape.as_slice()[1].max(1);
        let client = x0.client.clone();
        let (xt, eps) = (client.empty(n.max(1) * 4), client.empty(n.max(1) * 4));
        let variant = Variant {
            mul64: crate::denoise::native_u64()
                && client
                    .properties()
                    .supports_type(ElemType::UInt(UIntKind::U64)),
        };
        let words = [
            n as u32,
            row_len as u32,
            launch.seed as u32,
            (launch.seed >> 32) as u32,
            launch.stream,
            0,
            0,
            0,
        ];
        let params = client.create_from_slice(&words_to_bytes(&words));
        let (gx, gy) = grid(n);
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(variant),
                CubeDim::new_1d(WORKGROUP_SIZE),
            )),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                x0.handle.clone().binding(),
                a.handle.clone().binding(),
                s.handle.clone().binding(),
                xt.clone().binding(),
                eps.clone().binding(),
                params.binding(),
            ]),
        );
        let device = x0.device.clone();
        let wrap = |h| {
            CubeTensor::new_contiguous(client.clone(), device.clone(), shape.clone(), h, DType::F32)
        };
        (wrap(xt), wrap(eps))
    }
}

/// The kernel as the fused path of `oxgen_models::ops::noising::noising`.
#[derive(Debug, Default)]
pub struct WgslNoising;

impl FusedNoising for WgslNoising {
    fn name(&self) -> &'static str {
        "wgsl-noising"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device) && !device.is_autodiff()
    }

    fn noising(&self, x0: Tensor<2>, plan: &NoisingPlan) -> (Tensor<2>, Tensor<2>) {
        let device = x0.device();
        let [b, _] = x0.dims();
        let col = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [b]), &device);
        let x0 = if x0.dtype() == DType::F32 {
            x0
        } else {
            x0.cast(DType::F32)
        };
        let (xt, eps) = <Dispatch as NoisingOps>::fused_noising(
            x0.into_dispatch(),
            col(&plan.signal).into_dispatch(),
            col(&plan.noise).into_dispatch(),
            NoisingLaunch {
                seed: plan.seed,
                stream: plan.stream,
            },
        );
        (Tensor::from_dispatch(xt), Tensor::from_dispatch(eps))
    }
}

/// Installs the kernel behind `noising`. Returns false if one was already installed.
pub fn register() -> bool {
    oxgen_models::ops::noising::register_fused(Box::new(WgslNoising))
}
