//! The fused GroupNorm+SiLU, forward (`shaders/group_norm_silu.wgsl`) and backward
//! (`shaders/group_norm_silu_bwd.wgsl`), behind `oxgen_models::ops::group_norm`, so UNet
//! training takes it too.
//!
//! Same design as [`crate::denoise`]: a burn backend extension implemented for `CubeBackend`,
//! with burn generating the lazy `Fusion<CubeBackend>` version, so it runs in order with the
//! fused tensor ops around it on burn's default wgpu device.

use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Shape, Tensor};
use oxgen_models::ops::group_norm::{FusedGroupNormSilu, GroupNormParams};

/// The WGSL source, with `{{ … }}` placeholders (see its header).
pub const SOURCE: &str = include_str!("../../../shaders/group_norm_silu.wgsl");
/// The backward's WGSL source.
pub const BACKWARD: &str = include_str!("../../../shaders/group_norm_silu_bwd.wgsl");
/// The workgroup reduction both append: a tree in workgroup memory.
pub const SUM: &str = include_str!("../../../shaders/workgroup_sum.wgsl");
/// The same with subgroup operations.
pub const SUM_SUBGROUP: &str = include_str!("../../../shaders/workgroup_sum_subgroup.wgsl");

/// Which compile-time variant of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Apply γ and β.
    pub affine: bool,
    /// Invocations per workgroup (a power of two); see [`workgroup_size`].
    pub workgroup_size: u32,
    /// The backward kernel (dx, and the per-sample shares of dγ and dβ).
    pub backward: bool,
    /// Reduce within subgroups first (`subgroupAdd`), for adapters with wgpu's `SUBGROUP`
    /// feature ([`crate::subgroups`]); at the call, whether subgroups are allowed there.
    pub subgroups: bool,
}

impl Variant {
    /// Every variant (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for workgroup_size in [16, 32, 64, 128, 256] {
            for affine in [false, true] {
                for backward in [false, true] {
                    for subgroups in [false, true] {
                        v.push(Variant {
                            affine,
                            workgroup_size,
                            backward,
                            subgroups,
                        });
                    }
                }
            }
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        let kernel = if self.backward { BACKWARD } else { SOURCE };
        let sum = if self.subgroups { SUM_SUBGROUP } else { SUM };
        let sg = crate::subgroups::snippets(self.subgroups, self.workgroup_size);
        SourceTemplate::new(format!("{kernel}{sum}"))
            .register("workgroup_size", self.workgroup_size.to_string())
            .register("affine", self.affine.to_string())
            .register("subgroup_builtins", sg.builtins)
            .register("subgroup_ids", sg.ids)
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

/// The fused kernels as a burn backend extension: `Cube` launches them, burn generates the lazy
/// `Fusion` version, and the `Autodiff` impl (below) records one backward node.
#[backend_extension(Cube, Autodiff, Fusion)]
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

    /// (dx `[b, c, h, w]`, dγ `[c]`, dβ `[c]`) from the forward's inputs and the output's
    /// gradient `dy`. Without affine, dγ and dβ are zeros.
    #[fusion(meta = |x, g, b, _dy, _l| (x.clone(), g.clone(), b.clone()))]
    fn fused_group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: Launch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
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

/// Launches the forward (or, with `backward`, the backward) kernel over `x` `[b, c, h, w]`: the
/// workgroup size from the device, the `Params` binding appended to `buffers`, one workgroup
/// per (sample, group).
fn launch_kernel(
    x: &CubeTensor,
    launch: &Launch,
    backward: bool,
    mut buffers: Vec<burn::cubecl::server::BufferBinding>,
) {
    let dims = x.meta.shape().as_slice();
    let (b, c) = (dims[0], dims[1]);
    let hw: usize = dims[2..].iter().product();
    let client = &x.client;
    let variant = Variant {
        affine: launch.variant.affine,
        workgroup_size: workgroup_size(
            client.properties().hardware.plane_size_max,
            c / launch.groups * hw,
        ),
        backward,
        subgroups: launch.variant.subgroups && crate::subgroups::available(x),
    };
    crate::subgroups::note_launch(variant.subgroups);
    let params = Params {
        batch: b as u32,
        channels: c as u32,
        groups: launch.groups as u32,
        hw: hw as u32,
        eps: launch.eps,
    };
    buffers.push(
        client
            .create_from_slice(&words_to_bytes(&params.words()))
            .binding(),
    );
    let (gx, gy) = grid(b * launch.groups);
    client.launch(
        Box::new(SourceKernel::new(
            Wgsl(variant),
            CubeDim::new_1d(variant.workgroup_size),
        )),
        CubeCount::Static(gx, gy, 1),
        KernelArguments::new().with_buffers(buffers),
    );
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
        let client = x.client.clone();
        let y = client.empty(shape.num_elements() * 4);
        launch_kernel(
            &x,
            &launch,
            false,
            vec![
                x.handle.clone().binding(),
                gamma.handle.clone().binding(),
                beta.handle.clone().binding(),
                y.clone().binding(),
            ],
        );
        CubeTensor::new_contiguous(client, x.device.clone(), shape, y, DType::F32)
    }

    fn fused_group_norm_silu_backward(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        dy: CubeTensor,
        launch: Launch,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, gamma, beta, dy] = [x, gamma, beta, dy].map(into_contiguous);
        let shape = x.meta.shape().clone();
        let dims = shape.as_slice();
        let (b, c) = (dims[0], dims[1]);
        let client = x.client.clone();
        let dx = client.empty(shape.num_elements() * 4);
        // The per-sample shares of dγ and dβ; zeroed, so that without affine they sum to 0.
        let zeros = || client.create_from_slice(&vec![0u8; b * c * 4]);
        let (dgamma, dbeta) = (zeros(), zeros());
        launch_kernel(
            &x,
            &launch,
            true,
            vec![
                x.handle.clone().binding(),
                gamma.handle.clone().binding(),
                beta.handle.clone().binding(),
                dy.handle.clone().binding(),
                dx.clone().binding(),
                dgamma.clone().binding(),
                dbeta.clone().binding(),
            ],
        );
        let device = x.device.clone();
        let wrap = |handle, shape: Shape| {
            CubeTensor::new_contiguous(client.clone(), device.clone(), shape, handle, DType::F32)
        };
        let per_channel = |handle| {
            let summed = CubeBackend::float_sum_dim(wrap(handle, Shape::new([b, c])), 0);
            CubeBackend::float_reshape(summed, Shape::new([c]))
        };
        (wrap(dx, shape), per_channel(dgamma), per_channel(dbeta))
    }
}

impl<B: GroupNormOps, C: CheckpointStrategy> GroupNormOps for Autodiff<B, C> {
    fn fused_group_norm_silu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        launch: Launch,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct NormBackward;

        impl<B: GroupNormOps> Backward<B, 3> for NormBackward {
            type State = (NodeId, NodeId, NodeId, Launch);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_g, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, g_id, b_id, launch) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let g: FloatTensor<B> = checkpointer.retrieve_node_output(g_id);
                let b: FloatTensor<B> = checkpointer.retrieve_node_output(b_id);
                let affine = launch.variant.affine;
                let (dx, dg, db) = B::fused_group_norm_silu_backward(x, g, b, dy, launch);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, dx);
                }
                // Without affine, γ and β are stand-ins (x itself): they get no gradient.
                if affine {
                    for (node, grad) in [(node_g, dg), (node_b, db)] {
                        if let Some(node) = node {
                            grads.register::<B>(node.id, grad);
                        }
                    }
                }
            }
        }

        match NormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let g_id = prep.checkpoint(&gamma);
                let b_id = prep.checkpoint(&beta);
                let launch_state = launch.clone();
                let y = B::fused_group_norm_silu(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    launch,
                );
                prep.finish((x_id, g_id, b_id, launch_state), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_group_norm_silu(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                launch,
            )),
        }
    }

    fn fused_group_norm_silu_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: Launch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not itself differentiable: the results are constants.
        let (dx, dg, db) = B::fused_group_norm_silu_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            dy.into_primitive(),
            launch,
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(dx), lift(dg), lift(db))
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
        crate::device::is_wgpu(device)
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
                backward: false,
                subgroups: crate::subgroups::allowed(),
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
