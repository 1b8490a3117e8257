//! The direct 2D convolution (`shaders/conv2d.wgsl`: forward and input gradient;
//! `shaders/conv2d_wgrad.wgsl`: weight gradient) behind `oxgen_models::ops::conv`, so the UNet's
//! convolutions run it in training and sampling.
//!
//! Same design as [`crate::group_norm`]: a burn backend extension implemented for `CubeBackend`,
//! burn generating the lazy `Fusion<CubeBackend>` version, and an `Autodiff` impl that records
//! one backward node (input gradient, weight gradient, and the bias gradient as burn's sum).

use crate::conv_codegen as codegen;
use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{
    AutodiffBackend, Backend, Dispatch, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, FloatDType, Shape, Tensor};
use oxgen_models::ops::conv::{ConvLaunch, FusedConv2d};

/// The forward and input-gradient WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/conv2d.wgsl");
/// The weight gradient's WGSL source.
pub const WGRAD: &str = include_str!("../../../shaders/conv2d_wgrad.wgsl");

/// Invocations per workgroup of both kernels.
pub const WORKGROUP_SIZE: u32 = 64;
/// The largest window (kh·kw) the kernels keep in registers.
pub const MAX_TAPS: usize = 25;
/// The largest stride the kernels are compiled for.
pub const MAX_STRIDE: usize = 4;
/// Output pixels per slice of the weight gradient's sums, about (whole rows).
pub const WGRAD_SLICE: usize = 256;

/// Which compile-time variant of a kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `conv2d.wgsl`: the forward, or with `transposed` the input gradient.
    Conv {
        /// Output channels per invocation ÷ 4.
        vecs: u32,
        /// Output pixels of a row per invocation.
        pixels: u32,
        /// The forward's window (height, width).
        kernel: [u32; 2],
        /// The forward's stride (rows, columns).
        stride: [u32; 2],
        /// The input gradient (no bias).
        transposed: bool,
    },
    /// `conv2d_wgrad.wgsl`: the weight gradient's partial sums.
    Wgrad {
        /// The window (height, width).
        kernel: [u32; 2],
        /// The stride (rows, columns).
        stride: [u32; 2],
    },
}

/// Windows and strides that the validation covers: 1 × 1, 3 × 3 (stride 1 and 2), and a
/// rectangular window with a rectangular stride.
const GEOMETRIES: [([u32; 2], [u32; 2]); 4] = [
    ([1, 1], [1, 1]),
    ([3, 3], [1, 1]),
    ([3, 3], [2, 2]),
    ([5, 3], [2, 1]),
];

impl Variant {
    /// A set of variants covering every template branch (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for (kernel, stride) in GEOMETRIES {
            for vecs in [1, 2] {
                for pixels in [1, 4, 8] {
                    for transposed in [false, true] {
                        v.push(Variant::Conv {
                            vecs,
                            pixels,
                            kernel,
                            stride,
                            transposed,
                        });
                    }
                }
            }
            v.push(Variant::Wgrad { kernel, stride });
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        match *self {
            Variant::Conv {
                vecs,
                pixels,
                kernel,
                stride,
                transposed,
            } => {
                // Source values a run's taps read along one row (the segment's slots), and the
                // slot that pixel px reads for window column kx.
                let [kh, kw] = kernel;
                let strided_t = transposed && stride[1] > 1;
                let row = if strided_t {
                    pixels * kw
                } else if transposed {
                    pixels + kw - 1
                } else {
                    (pixels - 1) * stride[1] + kw
                };
                let slot = |px: u32, kx: u32| {
                    if strided_t {
                        px * kw + kx
                    } else if transposed {
                        px + (kw - 1) - kx
                    } else {
                        px * stride[1] + kx
                    }
                };
                SourceTemplate::new(SOURCE)
                    .register("workgroup_size", WORKGROUP_SIZE.to_string())
                    .register("vecs", vecs.to_string())
                    .register("pixels", pixels.to_string())
                    .register("kernel_h", kh.to_string())
                    .register("kernel_w", kw.to_string())
                    .register("stride_h", stride[0].to_string())
                    .register("stride_w", stride[1].to_string())
                    .register("transposed", transposed.to_string())
                    .register("bias", (!transposed).to_string())
                    .register("declare", codegen::conv_declare(pixels, vecs))
                    .register("columns", codegen::conv_columns(row))
                    .register(
                        "channel",
                        codegen::conv_channel(row, kw, pixels, vecs, slot),
                    )
                    .register("store", codegen::conv_store(pixels, vecs))
            }
            Variant::Wgrad { kernel, stride } => SourceTemplate::new(WGRAD)
                .register("workgroup_size", WORKGROUP_SIZE.to_string())
                .register("kernel_h", kernel[0].to_string())
                .register("kernel_w", kernel[1].to_string())
                .register("stride_h", stride[0].to_string())
                .register("stride_w", stride[1].to_string())
                .register("declare", codegen::wgrad_declare(kernel[0] * kernel[1]))
                .register("rows", codegen::wgrad_rows(kernel[0]))
                .register("pixel", codegen::wgrad_pixel(kernel[0], kernel[1]))
                .register("store", codegen::wgrad_store(kernel[0] * kernel[1])),
        }
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// Output channels ÷ 4 per invocation of `conv2d.wgsl` for `channels` output channels: two
/// vec4s (8 channels), one for 4 or fewer. (On lavapipe, at the UNet's shapes, 2 against 4 was
/// within ±20% either way; 1 was slower.)
pub fn vecs_for(channels: usize) -> u32 {
    if channels <= 4 { 1 } else { 2 }
}

/// Output pixels of a row per invocation of `conv2d.wgsl` for rows of `width` pixels: up to 8
/// (a power of two), and 1 for the input gradient of a column-strided convolution. (On
/// lavapipe, at the digits' 8 × 8, 8 pixels with two vec4s was the fastest of 2, 4 and 8.)
pub fn pixels_for(width: usize, strided_transposed: bool) -> u32 {
    if strided_transposed {
        1
    } else {
        width.clamp(1, 8).next_power_of_two() as u32
    }
}

/// Output rows per slice of the weight gradient's sums for rows of `width` pixels: about 256
/// pixels a slice.
pub fn slice_rows(width: usize) -> usize {
    (WGRAD_SLICE / width.max(1)).max(1)
}

/// The geometry of one convolution, as the kernels read it: `src` and `dst` of `conv2d.wgsl`
/// are the forward's input and output, or the other way round for the input gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Samples B.
    pub batch: usize,
    /// The forward's input channels, height and width.
    pub input: [usize; 3],
    /// The forward's output channels, height and width.
    pub output: [usize; 3],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
}

impl Geometry {
    /// The words of `conv2d.wgsl`'s `Params` (11 words, padded to 12), for the forward or,
    /// `transposed`, the input gradient; `weight_row` is the packed weight's row in vec4s and
    /// `pixels` the pixels per invocation.
    pub fn conv_words(&self, transposed: bool, weight_row: usize, pixels: usize) -> [u32; 12] {
        let (src, dst) = if transposed {
            (self.output, self.input)
        } else {
            (self.input, self.output)
        };
        let w = |v: usize| v as u32;
        [
            w(self.batch),
            w(src[0]),
            w(src[1]),
            w(src[2]),
            w(dst[0]),
            w(dst[1]),
            w(dst[2]),
            w(weight_row),
            w(dst[2].div_ceil(pixels)),
            w(self.pad[0]),
            w(self.pad[1]),
            0,
        ]
    }

    /// The words of `conv2d_wgrad.wgsl`'s `Params` (10 words, padded to 12); `slice` is the
    /// output rows per slice.
    pub fn wgrad_words(&self, slice: usize) -> [u32; 12] {
        let w = |v: usize| v as u32;
        [
            w(self.batch),
            w(self.input[0]),
            w(self.input[1]),
            w(self.input[2]),
            w(self.output[0]),
            w(self.output[1]),
            w(self.output[2]),
            w(slice),
            w(self.pad[0]),
            w(self.pad[1]),
            0,
            0,
        ]
    }
}

/// The output shape of a forward call: `[b, cout, out_h, out_w]`.
fn forward_shape(x: &Shape, weight: &Shape, launch: &ConvLaunch) -> Shape {
    Shape::new([x[0], weight[0], launch.out[0], launch.out[1]])
}

/// The input gradient's shape: `[b, cin, h, w]` (the forward input's height and width).
fn input_grad_shape(dy: &Shape, weight: &Shape, input: &[usize; 2]) -> Shape {
    Shape::new([dy[0], weight[1], input[0], input[1]])
}

/// The fused kernels as a burn backend extension: `Cube` launches them, burn generates the lazy
/// `Fusion` version, and the `Autodiff` impl (below) records one backward node.
#[backend_extension(Cube, Autodiff, Fusion)]
pub trait ConvOps: Backend {
    /// The convolution of `x` `[b, cin, h, w]` with `weight` `[cout, cin, kh, kw]` plus `bias`
    /// `[cout]`: `[b, cout, out_h, out_w]`.
    #[fusion(dtype = x, shape = forward_shape(x, weight, launch))]
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> FloatTensor<Self>;

    /// The gradient of the input, `[b, cin, input[0], input[1]]`, from the output's gradient
    /// `dy` `[b, cout, out_h, out_w]`.
    #[fusion(dtype = dy, shape = input_grad_shape(dy, weight, input))]
    fn fused_conv2d_input_grad(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        launch: ConvLaunch,
        input: [usize; 2],
    ) -> FloatTensor<Self>;

    /// The gradient of the weight, `[cout, cin, kh, kw]`, from the forward's input `x` and the
    /// output's gradient `dy`.
    #[fusion(dtype = x, shape = Shape::new([dy[1], x[1], kernel[0], kernel[1]]))]
    fn fused_conv2d_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: ConvLaunch,
        kernel: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// `w`, any 4D tensor (contiguous after this), with its last dim padded with zeros to a multiple
/// of `multiple`; also returns the padded length.
fn packed_weight(w: CubeTensor, multiple: usize) -> (CubeTensor, usize) {
    let w = into_contiguous(w);
    let dims: [usize; 4] = w.meta.shape().as_slice().try_into().expect("4D weight");
    let padded = dims[3].div_ceil(multiple) * multiple;
    if padded == dims[3] {
        return (w, padded);
    }
    let zeros = CubeBackend::float_zeros(
        Shape::new([dims[0], dims[1], dims[2], padded - dims[3]]),
        &w.device,
        FloatDType::F32,
    );
    (
        into_contiguous(CubeBackend::float_cat(vec![w, zeros], 3)),
        padded,
    )
}

/// Launches `conv2d.wgsl` from `src` into a new tensor of `dst_shape`, with `weight` packed as
/// `[src channels, kh, kw, dst channels]`; `kernel` and `stride` are the forward's.
#[allow(clippy::too_many_arguments)]
fn launch_conv(
    src: CubeTensor,
    weight: CubeTensor,
    bias: Option<CubeTensor>,
    geometry: Geometry,
    kernel: [usize; 2],
    stride: [usize; 2],
    transposed: bool,
    dst_shape: Shape,
) -> CubeTensor {
    let dst_channels = dst_shape[1];
    let vecs = vecs_for(dst_channels);
    let pixels = pixels_for(dst_shape[3], transposed && stride[1] > 1);
    let (weight, padded) = packed_weight(weight, 4 * vecs as usize);
    let client = src.client.clone();
    let n = dst_shape.num_elements();
    let dst = client.empty(n.max(1) * 4);
    let params = client.create_from_slice(&words_to_bytes(&geometry.conv_words(
        transposed,
        padded / 4,
        pixels as usize,
    )));
    let runs = dst_shape[0] * dst_shape[2] * dst_shape[3].div_ceil(pixels as usize);
    let (gx, gy) = crate::denoise::grid_2d(runs.div_ceil(WORKGROUP_SIZE as usize));
    let blocks = dst_channels.div_ceil(4 * vecs as usize) as u32;
    // Without a bias the binding takes any buffer: the source.
    let bias = bias.map(into_contiguous).unwrap_or_else(|| src.clone());
    let variant = Variant::Conv {
        vecs,
        pixels,
        kernel: kernel.map(|k| k as u32),
        stride: stride.map(|s| s as u32),
        transposed,
    };
    client.launch(
        Box::new(SourceKernel::new(
            Wgsl(variant),
            CubeDim::new_1d(WORKGROUP_SIZE),
        )),
        CubeCount::Static(gx, gy, blocks),
        KernelArguments::new().with_buffers(vec![
            src.handle.clone().binding(),
            weight.handle.clone().binding(),
            bias.handle.clone().binding(),
            dst.clone().binding(),
            params.binding(),
        ]),
    );
    CubeTensor::new_contiguous(client, src.device.clone(), dst_shape, dst, DType::F32)
}

fn dims4(t: &CubeTensor) -> [usize; 4] {
    t.meta.shape().as_slice().try_into().expect("a 4D tensor")
}

impl ConvOps for CubeBackend {
    fn fused_conv2d(
        x: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        launch: ConvLaunch,
    ) -> CubeTensor {
        let x = into_contiguous(x);
        let [b, cin, h, w] = dims4(&x);
        let [cout, _, kh, kw] = dims4(&weight);
        let geometry = Geometry {
            batch: b,
            input: [cin, h, w],
            output: [cout, launch.out[0], launch.out[1]],
            pad: launch.pad,
        };
        // [cout, cin, kh, kw] → [cin, kh, kw, cout]
        let packed = CubeBackend::float_permute(weight, &[1, 2, 3, 0]);
        let shape = Shape::new([b, cout, launch.out[0], launch.out[1]]);
        let bias = Some(bias);
        launch_conv(
            x,
            packed,
            bias,
            geometry,
            [kh, kw],
            launch.stride,
            false,
            shape,
        )
    }

    fn fused_conv2d_input_grad(
        dy: CubeTensor,
        weight: CubeTensor,
        launch: ConvLaunch,
        input: [usize; 2],
    ) -> CubeTensor {
        let dy = into_contiguous(dy);
        let [b, cout, ho, wo] = dims4(&dy);
        let [_, cin, kh, kw] = dims4(&weight);
        let geometry = Geometry {
            batch: b,
            input: [cin, input[0], input[1]],
            output: [cout, ho, wo],
            pad: launch.pad,
        };
        // [cout, cin, kh, kw] → [cout, kh, kw, cin]
        let packed = CubeBackend::float_permute(weight, &[0, 2, 3, 1]);
        let shape = Shape::new([b, cin, input[0], input[1]]);
        launch_conv(
            dy,
            packed,
            None,
            geometry,
            [kh, kw],
            launch.stride,
            true,
            shape,
        )
    }

    fn fused_conv2d_weight_grad(
        x: CubeTensor,
        dy: CubeTensor,
        launch: ConvLaunch,
        kernel: [usize; 2],
    ) -> CubeTensor {
        let [b, cin, h, w] = dims4(&x);
        let [_, cout, ho, wo] = dims4(&dy);
        // Channels last, padded to a multiple of 4: the kernel loads 4 channels at once.
        let nhwc = |t: CubeTensor| packed_weight(CubeBackend::float_permute(t, &[0, 2, 3, 1]), 4).0;
        let (x, dy) = (nhwc(x), nhwc(dy));
        let taps = kernel[0] * kernel[1];
        let geometry = Geometry {
            batch: b,
            input: [cin, h, w],
            output: [cout, ho, wo],
            pad: launch.pad,
        };
        let rows = slice_rows(wo);
        let slices = (b * ho).div_ceil(rows).max(1);
        let client = x.client.clone();
        let part = client.empty(slices * cin * taps * cout * 4);
        let params = client.create_from_slice(&words_to_bytes(&geometry.wgrad_words(rows)));
        let variant = Variant::Wgrad {
            kernel: kernel.map(|k| k as u32),
            stride: launch.stride.map(|s| s as u32),
        };
        let blocks = cin.div_ceil(4) * cout.div_ceil(4);
        let (gx, gz) = crate::denoise::grid_2d(slices);
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(variant),
                CubeDim::new_1d(WORKGROUP_SIZE),
            )),
            CubeCount::Static(blocks.div_ceil(WORKGROUP_SIZE as usize) as u32, gx, gz),
            KernelArguments::new().with_buffers(vec![
                x.handle.clone().binding(),
                dy.handle.clone().binding(),
                part.clone().binding(),
                params.binding(),
            ]),
        );
        let part = CubeTensor::new_contiguous(
            client,
            x.device.clone(),
            Shape::new([slices, cin * taps * cout]),
            part,
            DType::F32,
        );
        let summed = CubeBackend::float_sum_dim(part, 0);
        let grid =
            CubeBackend::float_reshape(summed, Shape::new([cin, kernel[0], kernel[1], cout]));
        // [cin, kh, kw, cout] → [cout, cin, kh, kw]
        into_contiguous(CubeBackend::float_permute(grid, &[3, 0, 1, 2]))
    }
}

impl<B: ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvBackward;

        impl<B: ConvOps> Backward<B, 3> for ConvBackward {
            type State = (NodeId, NodeId, ConvLaunch, [usize; 2], [usize; 2]);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, w_id, launch, input, kernel) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_id);
                if let Some(node) = node_b {
                    let cout = dy.shape()[1];
                    let db = B::float_sum_dims(dy.clone(), &[0, 2, 3]);
                    grads.register::<B>(node.id, B::float_reshape(db, Shape::new([cout])));
                }
                if let Some(node) = node_w {
                    let dw = B::fused_conv2d_weight_grad(x, dy.clone(), launch, kernel);
                    grads.register::<B>(node.id, dw);
                }
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::fused_conv2d_input_grad(dy, w, launch, input));
                }
            }
        }

        let x_shape = x.shape();
        let w_shape = weight.shape();
        let input = [x_shape[2], x_shape[3]];
        let kernel = [w_shape[2], w_shape[3]];
        match ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let w_id = prep.checkpoint(&weight);
                let y = B::fused_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    launch,
                );
                prep.finish((x_id, w_id, launch, input, kernel), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                launch,
            )),
        }
    }

    fn fused_conv2d_input_grad(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        launch: ConvLaunch,
        input: [usize; 2],
    ) -> FloatTensor<Self> {
        // Not itself differentiable: the result is a constant.
        let dx =
            B::fused_conv2d_input_grad(dy.into_primitive(), weight.into_primitive(), launch, input);
        <Autodiff<B, C> as AutodiffBackend>::from_inner(dx)
    }

    fn fused_conv2d_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: ConvLaunch,
        kernel: [usize; 2],
    ) -> FloatTensor<Self> {
        let dw =
            B::fused_conv2d_weight_grad(x.into_primitive(), dy.into_primitive(), launch, kernel);
        <Autodiff<B, C> as AutodiffBackend>::from_inner(dw)
    }
}

/// The kernels as the fused path of `oxgen_models::ops::conv::conv2d`.
#[derive(Debug, Default)]
pub struct WgslConv2d;

impl FusedConv2d for WgslConv2d {
    fn name(&self) -> &'static str {
        "wgsl-conv2d"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device)
    }

    fn takes_kernel(&self, kh: usize, kw: usize) -> bool {
        kh * kw <= MAX_TAPS
    }

    fn takes_stride(&self, stride: [usize; 2]) -> bool {
        stride.iter().all(|&s| (1..=MAX_STRIDE).contains(&s))
    }

    fn forward(
        &self,
        x: Tensor<4>,
        weight: Tensor<4>,
        bias: Tensor<1>,
        launch: ConvLaunch,
    ) -> Tensor<4> {
        let y = <Dispatch as ConvOps>::fused_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            launch,
        );
        Tensor::from_dispatch(y)
    }
}

/// Installs the fused kernel behind `conv2d`. Returns false if one was already installed.
pub fn register() -> bool {
    oxgen_models::ops::conv::register_fused(Box::new(WgslConv2d))
}
