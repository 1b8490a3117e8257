//! The fused GroupNorm+SiLU forward (`shaders/group_norm_silu.wgsl`) behind
//! `oxgen_models::ops::group_norm`.
//!
//! Same design as [`crate::denoise`]: a burn backend extension implemented for `CubeBackend`,
//! with burn generating the lazy `Fusion<CubeBackend>` version, so it runs in order with the
//! fused tensor ops around it on burn's default wgpu device.

use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Tensor};
use oxgen_models::ops::group_norm::{FusedGroupNormSilu, GroupNormParams};

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/group_norm_silu.wgsl");

/// Which compile-time variant of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Apply γ and β.
    pub affine: bool,
    /// Invocations per workgroup (a power of two); see [`workgroup_size`].
    pub workgroup_size: u32,
}

impl Variant {
    /// Every variant (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for workgroup_size in [16, 32, 64, 128, 256] {
            for affine in [false, true] {
                v.push(Variant {
                    affine,
                    workgroup_size,
                });
            }
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        SourceTemplate::new(SOURCE)
            .register("workgroup_size", self.workgroup_size.to_string())
            .register("affine", self.affine.to_string())
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// The `Params` struct of the shader, word for word (binding 4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Samples B.
    pub batch: u32,
    /// Channels C.
    pub channels: u32,
    /// Groups G.
    pub groups: u32,
    /// Pixels per channel, H·W.
    pub hw: u32,
    /// ε.
    pub eps: f32,
}

impl Params {
    /// The words of the storage layout: batch, channels, groups, hw, eps, then padding to 32
    /// bytes.
    pub fn words(&self) -> [u32; 8] {
        [
            self.batch,
            self.channels,
            self.groups,
            self.hw,
            self.eps.to_bits(),
            0,
            0,
            0,
        ]
    }
}

/// What the kernel is launched with besides tensors.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Compile-time variant.
    pub variant: Variant,
    /// Groups G.
    pub groups: usize,
    /// ε.
    pub eps: f32,
}

/// The fused forward as a burn backend extension.
#[backend_extension(Cube, Fusion)]
pub trait GroupNormOps: Backend {
    /// `silu(group_norm(x))` for `x` of shape `[b, c, h, w]`. Without affine, γ and β may be any
    /// tensor.
    #[fusion(dtype = x, shape = x)]
    fn fused_group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        launch: Launch,
    ) -> FloatTensor<Self>;
}

/// Workgroup size for a device whose subgroups (warps, SIMD rows) are at most `plane_size`
/// wide: two subgroups, between 16 and 128. The kernel's tree reduction costs one barrier per
/// halving, and on lavapipe (8-wide rows) every barrier is a coroutine switch per row: 16 there
/// was 2.5× faster than 64 and 7× faster than 256 at the UNet's shapes (2026-11-30). GPUs get 64
/// (NVIDIA, 32-wide warps) or 128 (AMD, 64-wide waves).
///
/// Groups longer than 8,192 elements per invocation get a wider workgroup (up to 256), so that
/// each invocation's two sweeps stay far below lavapipe's limit of 65,535 loop iterations per
/// invocation (past it, llvmpipe silently ends the loop).
pub fn workgroup_size(plane_size: u32, group_len: usize) -> u32 {
    let base = (2 * plane_size).next_power_of_two().clamp(16, 128);
    let needed = (group_len.div_ceil(8192) as u32).next_power_of_two();
    base.max(needed).min(256)
}

/// The grid for `count` workgroups: 2D past WebGPU's 65,535 per dimension.
pub fn grid(count: usize) -> (u32, u32) {
    crate::denoise::grid_2d(count)
}

impl GroupNormOps for CubeBackend {
    fn fused_group_norm_silu(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        launch: Launch,
    ) -> CubeTensor {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        let shape = x.meta.shape().clone();
        let dims = shape.as_slice();
        let (b, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let client = x.client.clone();
        let mut variant = launch.variant;
        variant.workgroup_size = workgroup_size(
            client.properties().hardware.plane_size_max,
            c / launch.groups * hw,
        );
        let y = client.empty(shape.num_elements() * 4);
        let params = Params {
            batch: b as u32,
            channels: c as u32,
            groups: launch.groups as u32,
            hw: hw as u32,
            eps: launch.eps,
        };
        let params_handle = client.create_from_slice(&words_to_bytes(&params.words()));
        let (gx, gy) = grid(b * launch.groups);
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(variant),
                CubeDim::new_1d(variant.workgroup_size),
            )),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                x.handle.clone().binding(),
                gamma.handle.clone().binding(),
                beta.handle.clone().binding(),
                y.clone().binding(),
                params_handle.binding(),
            ]),
        );
        CubeTensor::new_contiguous(client, x.device.clone(), shape, y, DType::F32)
    }
}

/// The kernel as the fused path of `oxgen_models::ops::group_norm::group_norm_silu`.
#[derive(Debug, Default)]
pub struct WgslGroupNormSilu;

impl FusedGroupNormSilu for WgslGroupNormSilu {
    fn name(&self) -> &'static str {
        "wgsl-group-norm-silu"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device) && !device.is_autodiff()
    }

    fn forward(&self, x: Tensor<4>, params: &GroupNormParams) -> Tensor<4> {
        let affine = params.gamma.is_some() && params.beta.is_some();
        let or_x = |t: &Option<Tensor<1>>| match t {
            Some(t) if affine => t.clone().into_dispatch(),
            _ => x.clone().into_dispatch(),
        };
        let launch = Launch {
            // The workgroup size is chosen from the device at launch.
            variant: Variant {
                affine,
                workgroup_size: 0,
            },
            groups: params.groups,
            eps: params.epsilon as f32,
        };
        let y = <Dispatch as GroupNormOps>::fused_group_norm_silu(
            x.clone().into_dispatch(),
            or_x(&params.gamma),
            or_x(&params.beta),
            launch,
        );
        Tensor::from_dispatch(y)
    }
}

/// Installs the fused kernel behind `group_norm_silu`. Returns false if one was already
/// installed.
pub fn register() -> bool {
    oxgen_models::ops::group_norm::register_fused(Box::new(WgslGroupNormSilu))
}
