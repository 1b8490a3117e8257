//! A vec4 copy kernel (`shaders/copy.wgsl`): the benchmarks' roofline, launched like the other
//! kernels of this crate.

use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Tensor};

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/copy.wgsl");
/// Invocations per workgroup; each copies one vec4.
pub const WORKGROUP_SIZE: u32 = 256;

/// The kernel source.
pub fn source() -> SourceTemplate {
    SourceTemplate::new(SOURCE).register("workgroup_size", WORKGROUP_SIZE.to_string())
}

/// The copy kernel has a single variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CopyVariant;

impl Template for CopyVariant {
    fn template(&self) -> SourceTemplate {
        source()
    }
}

/// The copy as a burn backend extension.
#[backend_extension(Cube, Fusion)]
pub trait CopyOps: Backend {
    /// A fresh copy of `x`, whose element count must be a multiple of 4.
    #[fusion(dtype = x, shape = x)]
    fn vec4_copy(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl CopyOps for CubeBackend {
    fn vec4_copy(x: CubeTensor) -> CubeTensor {
        let x = into_contiguous(x);
        let shape = x.meta.shape().clone();
        let n = shape.num_elements();
        assert!(n % 4 == 0, "vec4_copy: {n} elements is not a multiple of 4");
        let client = x.client.clone();
        let y = client.empty(n * 4);
        let words = [(n / 4) as u32, 0, 0, 0];
        let params = client.create_from_slice(&words_to_bytes(&words));
        let (gx, gy) = crate::denoise::grid_2d((n / 4).div_ceil(WORKGROUP_SIZE as usize));
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(CopyVariant),
                CubeDim::new_1d(WORKGROUP_SIZE),
            )),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                x.handle.clone().binding(),
                y.clone().binding(),
                params.binding(),
            ]),
        );
        CubeTensor::new_contiguous(client, x.device.clone(), shape, y, DType::F32)
    }
}

/// A copy of `x` (on a wgpu device; `n` a multiple of 4) made by the vec4 copy kernel.
pub fn copy(x: Tensor<1>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as CopyOps>::vec4_copy(x.into_dispatch()))
}
