//! The direct 2D convolution (`shaders/conv2d.wgsl`: forward and input gradient;
//! `shaders/conv2d_wgrad.wgsl`: weight gradient) behind `oxgen_models::ops::conv`, so the UNet's
//! convolutions run it in training and sampling.
//!
//! Same design as [`crate::group_norm`]: a burn backend extension implemented for `CubeBackend`,
//! burn generating the lazy `Fusion<CubeBackend>` version, and an `Autodiff` impl that records
//! one backward node (input gradient, weight gradient, and the bias gradient as burn's sum).

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
/// The largest window (kh·kw) the weight-gradient kernel keeps in registers.
pub const MAX_TAPS: usize = 25;
/// Output pixels per slice of the weight gradient's sums (one workgroup row each).
pub const WGRAD_SLICE: usize = 256;

/// Which compile-time variant of a kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `conv2d.wgsl`: the forward, or with `transposed` the input gradient.
    Conv {
        /// Output channels per invocation ÷ 4.
        vecs: u32,
        /// The input gradient (no bias).
        transposed: bool,
    },
    /// `conv2d_wgrad.wgsl`: the weight gradient's partial sums.
    Wgrad {
        /// kh·kw.
        taps: u32,
        /// Output channels per invocation.
        outs: u32,
    },
}

impl Variant {
    /// A set of variants covering every template branch (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for vecs in [1, 2, 4] {
            for transposed in [false, true] {
                v.push(Variant::Conv { vecs, transposed });
            }
        }
        for taps in [1, 9, 25] {
            for outs in [4, 8] {
                v.push(Variant::Wgrad { taps, outs });
            }
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        match *self {
            Variant::Conv { vecs, transposed } => SourceTemplate::new(SOURCE)
                .register("workgroup_size", WORKGROUP_SIZE.to_string())
                .register("vecs", vecs.to_string())
                .register("transposed", transposed.to_string())
                .register("bias", (!transposed).to_string()),
            Variant::Wgrad { taps, outs } => SourceTemplate::new(WGRAD)
                .register("workgroup_size", WORKGROUP_SIZE.to_string())
                .register("taps", taps.to_string())
                .register("outs", outs.to_string()),
        }
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// Output channels ÷ 4 per invocation of `conv2d.wgsl` for `channels` output channels: two
/// vec4s (8 channels), one for 4 or fewer.
pub fn vecs_for(channels: usize) -> u32 {
    if channels <= 4 { 1 } else { 2 }
}

/// Output channels per invocation of the weight gradient.
pub fn outs_for(channels: usize) -> u32 {
    if channels <= 4 { 4 } else { 8 }
}

/// The geometry of one convolution, as `conv2d.wgsl` reads it: `src` and `dst` are the forward's
/// input and output, or the other way round for the input gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Samples B.
    pub batch: usize,
    /// The forward's input channels, height and width.
    pub input: [usize; 3],
    /// The forward's output channels, height and width.
    pub output: [usize; 3],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
}

impl Geometry {
    /// The words of `conv2d.wgsl`'s `Params` (14 words, padded to 16), for the forward or,
    /// `transposed`, the input gradient; `weight_row` is the packed weight's row in vec4s.
    pub fn conv_words(&self, transposed: bool, weight_row: usize) -> [u32; 16] {
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
            w(self.kernel[0]),
            w(self.kernel[1]),
            w(self.stride[0]),
            w(self.stride[1]),
            w(self.pad[0]),
            w(self.pad[1]),
            0,
            0,
        ]
    }

    /// The words of `conv2d_wgrad.wgsl`'s `Params` (14 words, padded to 16).
    pub fn wgrad_words(&self, slice: usize) -> [u32; 16] {
        let mut words = self.conv_words(false, 0);
        words[7] = slice as u32;
        words
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

/// `w` `[a, kh, kw, c]` (contiguous after this) with `c` padded with zeros to a multiple of
/// `multiple`.
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
/// `[src channels, kh, kw, dst channels]`.
fn launch_conv(
    src: CubeTensor,
    weight: CubeTensor,
    bias: Option<CubeTensor>,
    geometry: Geometry,
    transposed: bool,
    dst_shape: Shape,
) -> CubeTensor {
    let dst_channels = dst_shape[1];
    let vecs = vecs_for(dst_channels);
    let (weight, padded) = packed_weight(weight, 4 * vecs as usize);
    let client = src.client.clone();
    let n = dst_shape.num_elements();
    let dst = client.empty(n.max(1) * 4);
    let params = client.create_from_slice(&words_to_bytes(
        &geometry.conv_words(transposed, padded / 4),
    ));
    let pixels = dst_shape[0] * dst_shape[2] * dst_shape[3];
    let (gx, gy) = crate::denoise::grid_2d(pixels.div_ceil(WORKGROUP_SIZE as usize));
    let blocks = dst_channels.div_ceil(4 * vecs as usize) as u32;
    // Without a bias the binding takes any buffer: the source.
    let bias = bias.map(into_contiguous).unwrap_or_else(|| src.clone());
    client.launch(
        Box::new(SourceKernel::new(
            Wgsl(Variant::Conv { vecs, transposed }),
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
            kernel: [kh, kw],
            stride: launch.stride,
            pad: launch.pad,
        };
        // [cout, cin, kh, kw] → [cin, kh, kw, cout]
        let packed = CubeBackend::float_permute(weight, &[1, 2, 3, 0]);
        let shape = Shape::new([b, cout, launch.out[0], launch.out[1]]);
        launch_conv(x, packed, Some(bias), geometry, false, shape)
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
            kernel: [kh, kw],
            stride: launch.stride,
            pad: launch.pad,
        };
        // [cout, cin, kh, kw] → [cout, kh, kw, cin]
        let packed = CubeBackend::float_permute(weight, &[0, 2, 3, 1]);
        let shape = Shape::new([b, cin, input[0], input[1]]);
        launch_conv(dy, packed, None, geometry, true, shape)
    }

    fn fused_conv2d_weight_grad(
        x: CubeTensor,
        dy: CubeTensor,
        launch: ConvLaunch,
        kernel: [usize; 2],
    ) -> CubeTensor {
        let [x, dy] = [x, dy].map(into_contiguous);
        let [b, cin, h, w] = dims4(&x);
        let [_, cout, ho, wo] = dims4(&dy);
        let taps = kernel[0] * kernel[1];
        let geometry = Geometry {
            batch: b,
            input: [cin, h, w],
            output: [cout, ho, wo],
            kernel,
            stride: launch.stride,
            pad: launch.pad,
        };
        let slices = (b * ho * wo).div_ceil(WGRAD_SLICE).max(1);
        let outs = outs_for(cout);
        let client = x.client.clone();
        let part = client.empty(slices * cin * taps * cout * 4);
        let params = client.create_from_slice(&words_to_bytes(&geometry.wgrad_words(WGRAD_SLICE)));
        client.launch(
            Box::new(SourceKernel::new(
                Wgsl(Variant::Wgrad {
                    taps: taps as u32,
                    outs,
                }),
                CubeDim::new_1d(WORKGROUP_SIZE),
            )),
            CubeCount::Static(
                cin.div_ceil(WORKGROUP_SIZE as usize) as u32,
                cout.div_ceil(outs as usize) as u32,
                slices as u32,
            ),
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
