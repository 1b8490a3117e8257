//! The fused WGSL denoising update (`shaders/denoise_step.wgsl`) behind
//! `oxgen_models::ops::denoise`.
//!
//! The kernel is a burn backend extension: implemented for `CubeBackend`, with burn generating
//! the lazy `Fusion<CubeBackend>` version, so it runs on burn's default (fused) wgpu device and
//! is ordered with the surrounding fused tensor ops. [`register`] installs it as the fused path
//! of `denoise_step`, which every sampler calls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::ir::{ElemType, UIntKind};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Shape, Tensor};
use oxgen_models::ops::denoise::{DenoiseInput, DenoiseOutput, FusedDenoise, Noise, StepCoeffs};

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/denoise_step.wgsl");
/// Philox4x32-10 and its normals, appended to the kernels that draw noise.
pub const PHILOX: &str = include_str!("../../../shaders/philox.wgsl");
/// Philox's product with a native 64-bit multiply (needs shader-int64).
pub const MULHILO64: &str = include_str!("../../../shaders/mulhilo64.wgsl");

/// Appends [`PHILOX`] to a kernel's template and fills its placeholders.
pub(crate) trait WithPhilox {
    /// With the native 64-bit product when `mul64`.
    fn with_philox(self, mul64: bool) -> Self;
}

impl WithPhilox for SourceTemplate {
    fn with_philox(self, mul64: bool) -> Self {
        self.add_template(PHILOX)
            .register("mulhilo64", if mul64 { MULHILO64 } else { "" })
            .register("mulhilo", if mul64 { "mulhilo64" } else { "mulhilo16" })
    }
}
/// Invocations per workgroup.
pub const WORKGROUP_SIZE: u32 = 256;
/// Blocks of four elements per invocation.
pub const BLOCKS_PER_INVOCATION: u32 = 4;
/// WebGPU's limit on workgroups per grid dimension.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

static NATIVE_U64: AtomicBool = AtomicBool::new(true);
static MUL64_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// Whether [`set_native_u64`] allows the native 64-bit product.
pub(crate) fn native_u64() -> bool {
    NATIVE_U64.load(Ordering::Relaxed)
}

/// Whether Philox may use the adapter's 64-bit multiply where it has shader-int64 (default on).
/// Off forces the 16-bit-halves product everywhere; both give the same bits (for tests and
/// benchmarks).
pub fn set_native_u64(enabled: bool) {
    NATIVE_U64.store(enabled, Ordering::Relaxed);
}

/// Launches that drew their noise with the 64-bit multiply since the process started.
pub fn mul64_launches() -> usize {
    MUL64_LAUNCHES.load(Ordering::Relaxed)
}

/// Which compile-time variant of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Classifier-free guidance combine.
    pub guided: bool,
    /// Clamp x̂₀.
    pub clip: bool,
    /// Add cp · x̂₀_prev (multistep solvers).
    pub prev: bool,
    /// 0: no noise, 1: explicit noise tensor, 2: Philox in registers.
    pub noise: u32,
    /// Write x̂₀ out.
    pub write_x0: bool,
    /// One `vec4` (four consecutive elements) per invocation; needs n % 4 == 0 (and, with
    /// `dynamic`, a sample length that is a multiple of 4).
    pub vec4: bool,
    /// Dynamic thresholding of x̂₀ with per-sample bounds.
    pub dynamic: bool,
    /// Philox's 32×32 → 64-bit products as one u64 multiply (adapters with shader-int64)
    /// rather than four 16-bit ones; only with `noise == 2`.
    pub mul64: bool,
}

impl Variant {
    /// Every variant (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for bits in 0..64u32 {
            for (noise, mul64) in [(0, false), (1, false), (2, false), (2, true)] {
                v.push(Variant {
                    guided: bits & 1 != 0,
                    clip: bits & 2 != 0,
                    prev: bits & 4 != 0,
                    noise,
                    write_x0: bits & 8 != 0,
                    vec4: bits & 16 != 0,
                    dynamic: bits & 32 != 0,
                    mul64,
                });
            }
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        SourceTemplate::new(SOURCE)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
            .register("blocks_per_invocation", BLOCKS_PER_INVOCATION.to_string())
            .register("guided", self.guided.to_string())
            .register("clip", self.clip.to_string())
            .register("prev", self.prev.to_string())
            .register("noise", self.noise.to_string())
            .register("write_x0", self.write_x0.to_string())
            .register("vec4", self.vec4.to_string())
            .register("elem", if self.vec4 { "vec4<f32>" } else { "f32" })
            // Each variant type-checks both branches of `main`; the dead one gets a dummy.
            .register("dynamic", self.dynamic.to_string())
            .register("first_elem", if self.vec4 { "4u * i" } else { "i" })
            .register("as_elem", if self.vec4 { "z" } else { "z.x" })
            .register("lane_elem", if self.vec4 { "T(z[k])" } else { "z[k]" })
            .with_philox(self.mul64)
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// The `Params` struct of the shader, word for word (binding 7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Elements.
    pub n: u32,
    /// Philox key.
    pub seed: u64,
    /// Philox stream (counter word 1).
    pub stream: u32,
    /// Elements per sample, for dynamic thresholding (0 without).
    pub row_len: u32,
    /// The update's scalars.
    pub coeffs: StepCoeffs,
}

impl Params {
    /// The 16 words of the storage layout: n, seed_lo, seed_hi, stream, guidance, px, po, clip,
    /// cx, c0, cp, sigma, row_len, then three words of padding.
    pub fn words(&self) -> [u32; 16] {
        let c = &self.coeffs;
        [
            self.n,
            self.seed as u32,
            (self.seed >> 32) as u32,
            self.stream,
            c.guidance.to_bits(),
            c.px.to_bits(),
            c.po.to_bits(),
            c.clip.unwrap_or(f32::INFINITY).to_bits(),
            c.cx.to_bits(),
            c.c0.to_bits(),
            c.cp.to_bits(),
            c.sigma.to_bits(),
            self.row_len,
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
    /// Run-time scalars.
    pub params: Params,
}

/// Output spec of the x̂₀ tensor: the input's shape, or one element when it is not written.
fn x0_spec(
    x: &burn::backend::fusion::custom::TensorSpec,
    launch: &Launch,
) -> burn::backend::fusion::custom::TensorSpec {
    let shape = if launch.variant.write_x0 {
        x.shape.clone()
    } else {
        Shape::new([4])
    };
    burn::backend::fusion::custom::TensorSpec::new(shape, x.dtype)
}

/// The fused update as a burn backend extension.
#[backend_extension(Cube, Fusion)]
pub trait DenoiseOps: Backend {
    /// Runs the kernel: returns (x_{t−1}, x̂₀). Unused inputs may be any tensor (e.g. `x`).
    #[fusion(meta = |x, _o, _u, _p, _z, _s, l| (x.clone(), x0_spec(x, l)))]
    fn fused_denoise(
        x: FloatTensor<Self>,
        out: FloatTensor<Self>,
        uncond: FloatTensor<Self>,
        prev_x0: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        launch: Launch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The grid for `n` elements: 2D when one dimension would pass 65,535 workgroups.
pub fn grid(n: usize) -> (u32, u32) {
    let per_group = (4 * WORKGROUP_SIZE * BLOCKS_PER_INVOCATION) as usize;
    grid_2d(n.div_ceil(per_group))
}

/// `workgroups` laid out as (x, y) with x ≤ 65,535 and x·y ≥ workgroups (at least one).
pub fn grid_2d(workgroups: usize) -> (u32, u32) {
    let count = workgroups.max(1) as u32;
    if count <= MAX_GROUPS_PER_DIM {
        (count, 1)
    } else {
        (MAX_GROUPS_PER_DIM, count.div_ceil(MAX_GROUPS_PER_DIM))
    }
}

impl DenoiseOps for CubeBackend {
    fn fused_denoise(
        x: CubeTensor,
        out: CubeTensor,
        uncond: CubeTensor,
        prev_x0: CubeTensor,
        noise: CubeTensor,
        scale: CubeTensor,
        launch: Launch,
    ) -> (CubeTensor, CubeTensor) {
        let [x, out, uncond, prev_x0, noise, scale] =
            [x, out, uncond, prev_x0, noise, scale].map(into_contiguous);
        let shape = x.meta.shape().clone();
        let n = shape.num_elements();
        let client = x.client.clone();
        let next = client.empty(n * 4);
        let x0_len = if launch.variant.write_x0 { n } else { 4 };
        let x0 = client.empty(x0_len * 4);
        let mut variant = launch.variant;
        variant.mul64 = variant.noise == 2
            && NATIVE_U64.load(Ordering::Relaxed)
            && client
                .properties()
                .supports_type(ElemType::UInt(UIntKind::U64));
        if variant.mul64 {
            MUL64_LAUNCHES.fetch_add(1, Ordering::Relaxed);
        }
        let mut params = launch.params;
        params.n = n as u32;
        let words = params.words();
        let params_handle = client.create_from_slice(&words_to_bytes(&words));
        let (gx, gy) = grid(n);
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(variant),
                CubeDim::new_1d(WORKGROUP_SIZE),
            )),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                x.handle.clone().binding(),
                out.handle.clone().binding(),
                uncond.handle.clone().binding(),
                prev_x0.handle.clone().binding(),
                noise.handle.clone().binding(),
                next.clone().binding(),
                x0.clone().binding(),
                params_handle.binding(),
                scale.handle.clone().binding(),
            ]),
        );
        let x0_shape = if launch.variant.write_x0 {
            shape.clone()
        } else {
            Shape::new([4])
        };
        (
            CubeTensor::new_contiguous(client.clone(), x.device.clone(), shape, next, DType::F32),
            CubeTensor::new_contiguous(client, x.device.clone(), x0_shape, x0, DType::F32),
        )
    }
}

/// The kernel as the fused path of `oxgen_models::ops::denoise::denoise_step`.
#[derive(Debug, Default)]
pub struct WgslDenoise;

impl FusedDenoise for WgslDenoise {
    fn name(&self) -> &'static str {
        "wgsl-denoise"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device) && !device.is_autodiff()
    }

    fn step(&self, input: DenoiseInput, coeffs: StepCoeffs, noise: Noise) -> DenoiseOutput {
        let DenoiseInput {
            x,
            out,
            uncond,
            prev_x0,
            want_x0,
            threshold,
        } = input;
        let (noise_mode, seed, stream, z) = match noise {
            Noise::None => (0, 0, 0, None),
            Noise::Explicit(z) => (1, 0, 0, Some(z)),
            Noise::Seeded { seed, stream } => (2, seed, stream, None),
        };
        let n = x.dims()[0];
        let row_len = threshold.as_ref().map_or(0, |s| n / s.dims()[0]);
        let variant = Variant {
            guided: uncond.is_some(),
            clip: coeffs.clip.is_some(),
            prev: prev_x0.is_some() && coeffs.cp != 0.0,
            noise: if coeffs.sigma == 0.0 { 0 } else { noise_mode },
            write_x0: want_x0,
            vec4: n % 4 == 0 && row_len % 4 == 0,
            dynamic: threshold.is_some(),
            // Decided where the adapter is known (`CubeBackend::fused_denoise`).
            mul64: false,
        };
        let launch = Launch {
            variant,
            params: Params {
                n: n as u32,
                seed,
                stream,
                row_len: row_len as u32,
                coeffs,
            },
        };
        let or_x = |t: Option<Tensor<1>>| t.unwrap_or_else(|| x.clone()).into_dispatch();
        let (next, x0) = <Dispatch as DenoiseOps>::fused_denoise(
            x.clone().into_dispatch(),
            out.into_dispatch(),
            or_x(uncond),
            or_x(prev_x0),
            or_x(z),
            or_x(threshold),
            launch,
        );
        DenoiseOutput {
            x: Tensor::from_dispatch(next),
            x0: Tensor::from_dispatch(x0),
        }
    }
}

/// Installs the fused kernel behind `denoise_step`. Returns false if one was already installed.
pub fn register() -> bool {
    oxgen_models::ops::denoise::register_fused(Box::new(WgslDenoise))
}
