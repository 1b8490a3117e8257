//! Flash attention in WGSL, forward (`shaders/attention_fwd.wgsl`) and backward
//! (`shaders/attention_bwd_dq.wgsl`, `shaders/attention_bwd_dkdv.wgsl`), behind
//! `oxgen_models::ops::attention`, with its own autodiff backward.
//!
//! A burn backend extension for `Cube`, `Autodiff` and `Fusion`: the `CubeBackend` impl launches
//! the kernels, burn generates the lazy `Fusion` one, and the `Autodiff` impl
//! (`attention_autodiff.rs`) records one backward node whose step runs the two backward kernels.
//! Only the attention output is tracked; the saved logsumexp comes back untracked. The bias is a
//! constant (no gradient).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::attention_tiling::invocations;
pub use crate::attention_tiling::{software_max_keys, tile_rows};
use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::ir::{ElemType, FloatKind};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, FloatDType, Shape, Tensor};
use oxgen_models::ops::attention::{AttentionOptions, FusedAttention};

/// Forward source, with `{{ … }}` placeholders (see its header).
pub const FWD: &str = include_str!("../../../shaders/attention_fwd.wgsl");
/// Backward source for dQ.
pub const BWD_DQ: &str = include_str!("../../../shaders/attention_bwd_dq.wgsl");
/// Backward source for dK and dV.
pub const BWD_DKDV: &str = include_str!("../../../shaders/attention_bwd_dkdv.wgsl");
/// The parameters every attention kernel reads (`Params`, the key lengths), appended to each.
pub const PARAMS: &str = include_str!("../../../shaders/attention_params.wgsl");
/// The largest head dim with a kernel. Every head dim from 1 to this runs the kernels: the
/// variant is compiled for the head dim rounded up to a multiple of 4, and inputs whose head dim
/// is not one are zero-padded (the scale stays 1/√d of the real head dim).
pub const MAX_HEAD_DIM: usize = 256;
/// Head dims every variant is validated at (naga, in CI): the smallest, the defaults' 16, the
/// usual powers of two and the largest.
pub const HEAD_DIMS: [usize; 7] = [4, 8, 16, 32, 64, 128, 256];
/// Rows per workgroup, query rows (forward, dQ) or key rows (dK/dV), where rows per invocation
/// allow: a workgroup has at least 8 invocations (`Variant::group_rows`).
pub const ROWS: u32 = 64;

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Output and logsumexp.
    Forward,
    /// dQ.
    Dq,
    /// dK and dV.
    DkDv,
}

/// A compile-time variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Which kernel.
    pub pass: Pass,
    /// Head dim.
    pub d: u32,
    /// Rows of the tile staged in workgroup memory (keys for Forward/Dq, queries for DkDv).
    pub tile: u32,
    /// Causal mask.
    pub causal: bool,
    /// Additive bias.
    pub bias: bool,
    /// f16 storage (f32 arithmetic); needs shader-f16.
    pub half: bool,
    /// Query rows (forward, dQ) or key rows (dK/dV) per invocation.
    pub per_invocation: u32,
    /// K and V chunks (forward, dQ) or q and dO chunks, lse and Δ (dK/dV) loaded by the lanes
    /// of the workgroup's one subgroup and shared by `subgroupBroadcast`, with no tiles in
    /// workgroup memory (see `shaders/attention_fwd.wgsl`); for adapters with subgroups at least
    /// as wide as the workgroup.
    pub broadcast: bool,
}

impl Variant {
    /// Every variant at the tile sizes a 32 KiB adapter gets (for validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for pass in [Pass::Forward, Pass::Dq, Pass::DkDv] {
            for d in HEAD_DIMS {
                for causal in [false, true] {
                    for bias in [false, true] {
                        for half in [false, true] {
                            // The forward at the software and the GPU row counts.
                            let d = d as u32;
                            // Rows per invocation on a software adapter and on a GPU.
                            use crate::attention_tiling::default_rows;
                            let mut rows =
                                vec![default_rows(pass, d, true), default_rows(pass, d, false)];
                            rows.dedup();
                            for per_invocation in rows {
                                let base = Variant {
                                    pass,
                                    d,
                                    tile: tile_rows(d, 32 * 1024),
                                    causal,
                                    bias,
                                    half,
                                    per_invocation,
                                    broadcast: false,
                                };
                                v.push(base);
                                if base.broadcast_fits() {
                                    v.push(Variant {
                                        broadcast: true,
                                        ..base
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        v
    }

    /// The kernel source of this variant.
    pub fn source(&self) -> SourceTemplate {
        let d4 = self.d / 4;
        let (text, br, bc) = match self.pass {
            Pass::Forward => (FWD, self.group_rows(), self.tile),
            Pass::Dq => (BWD_DQ, self.group_rows(), self.tile),
            Pass::DkDv => (BWD_DKDV, self.tile, self.group_rows()),
        };
        let (enable, storage) = if self.half {
            ("enable f16;", "vec4<f16>")
        } else {
            ("", "vec4<f32>")
        };
        let template = SourceTemplate::new(format!("{text}{PARAMS}"));
        let (rows, step) = (self.per_invocation, crate::attention_tiling::PER_STEP);
        // The lanes that load and broadcast, in the broadcast form.
        let lanes = self.broadcast.then(|| self.workgroup());
        let fill = match self.pass {
            Pass::Forward => crate::attention_fwd::fill,
            Pass::Dq => crate::attention_dq::fill,
            Pass::DkDv => crate::attention_dkdv::fill,
        };
        let template = fill(template, d4, rows, step, lanes)
            .register("inv", self.workgroup().to_string())
            // Shared by the three kernels' tiling (keys per step for the forward and dQ, query rows
            // per step for dK/dV).
            .register("rpi", rows.to_string())
            .register("ks", step.to_string())
            .register("qs", step.to_string())
            .register("rpi_d4", (rows * d4).to_string())
            .register("rpi_ks", (rows * step).to_string())
            .register("fwd_rows", crate::attention_tiling::row_slots(rows));
        template
            .register("enable_f16", enable)
            .register("storage", storage)
            .register("d4", d4.to_string())
            .register("br", br.to_string())
            .register("bc", bc.to_string())
            // The broadcast forms stage no tiles.
            .register(
                "bc_d4",
                if self.broadcast { 1 } else { bc * d4 }.to_string(),
            )
            .register("broadcast", self.broadcast.to_string())
            .register(
                "subgroup_builtins",
                if self.broadcast {
                    "@builtin(subgroup_invocation_id) lane: u32,"
                } else {
                    ""
                },
            )
            .register(
                "br_d4",
                if self.broadcast { 1 } else { br * d4 }.to_string(),
            )
            .register("causal", self.causal.to_string())
            .register("bias", self.bias.to_string())
    }

    /// Whether the broadcast form applies: every lane loads as many chunks of a step (and, in
    /// dK/dV, the lanes hold a step's query rows' lse and Δ).
    pub fn broadcast_fits(&self) -> bool {
        crate::attention_tiling::PER_STEP <= self.workgroup()
            && crate::attention_tiling::broadcast_fits(
                self.d / 4,
                crate::attention_tiling::PER_STEP,
                self.workgroup(),
            )
    }

    /// Invocations per workgroup (see [`invocations`]).
    pub fn workgroup(&self) -> u32 {
        invocations(self.per_invocation)
    }

    /// Query rows (forward, dQ) or key rows (dK/dV) per workgroup.
    pub fn group_rows(&self) -> u32 {
        self.workgroup() * self.per_invocation
    }
}

/// `n` copies of `term` (with `#` the chunk index) joined by " + ".
pub(crate) fn sum(n: u32, term: &str) -> String {
    let parts: Vec<String> = (0..n).map(|i| term.replace('#', &i.to_string())).collect();
    format!("({})", parts.join(" + "))
}

/// `n` copies of `statement` (with `#` the chunk index), one per line.
pub(crate) fn lines(n: u32, statement: &str) -> String {
    (0..n)
        .map(|i| statement.replace('#', &i.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

/// Run-time options of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashLaunch {
    /// Causal mask (bottom-right aligned).
    pub causal: bool,
    /// Whether the bias argument is real.
    pub bias: bool,
    /// Score scale (1/√d by default).
    pub scale: f32,
    /// Sliding window in keys; 0 for none.
    pub window: u32,
    /// Keys per batch element that are not padding (`None`: all are).
    pub key_lengths: Option<Arc<[u32]>>,
    /// Rows per invocation set on the calling thread or process-wide when the call was made
    /// (0: the defaults; [`crate::attention_tiling::with_rows_per_invocation`]). Captured at the
    /// call, because burn's fusion runs the launch later, on the device's own thread; the
    /// backward takes the forward's.
    pub rows: u32,
    /// Workgroups the decode path's splits aim at, as chosen at the call
    /// ([`crate::attention_decode::target_groups`]).
    pub groups: usize,
    /// Whether the decode path may use subgroup operations where the device has them, as set
    /// at the call ([`crate::subgroups::allowed`]).
    pub subgroups: bool,
}

fn out_spec(q: &TensorSpec, v: &TensorSpec) -> TensorSpec {
    let mut dims = q.shape.as_slice().to_vec();
    let last = dims.len() - 1;
    dims[last] = v.shape.as_slice()[last];
    TensorSpec::new(Shape::from(dims), q.dtype)
}

fn lse_spec(q: &TensorSpec) -> TensorSpec {
    let d = q.shape.as_slice();
    TensorSpec::new(Shape::new([d[0], d[1], d[2]]), DType::F32)
}

/// Flash attention as a burn backend extension.
#[backend_extension(Cube, Autodiff, Fusion)]
pub trait FlashAttentionOps: Backend {
    /// (out `[b, h, lq, d]`, lse `[b, h, lq]`). Without bias, `bias` may be any tensor.
    #[fusion(meta = |q, _k, v, _b, _l| (out_spec(q, v), lse_spec(q)))]
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: FlashLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// (dq, dk, dv) from the forward's inputs, output and lse, and the output gradient.
    #[fusion(meta = |q, k, v, _b, _o, _lse, _g, _l| (q.clone(), k.clone(), v.clone()))]
    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        d_out: FloatTensor<Self>,
        launch: FlashLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The `Args` words of the shaders (`shaders/attention_params.wgsl`): bh, lq, lk, scale,
/// window, heads, whether key lengths follow, keys per split; then one key length per batch
/// element, or one unused word.
pub(crate) fn params(
    [b, h, lq, lk]: [usize; 4],
    launch: &FlashLaunch,
    keys_per_split: usize,
) -> Vec<u8> {
    let mut words = vec![
        (b * h) as u32,
        lq as u32,
        lk as u32,
        launch.scale.to_bits(),
        launch.window,
        h as u32,
        launch.key_lengths.is_some() as u32,
        keys_per_split as u32,
    ];
    match &launch.key_lengths {
        Some(lengths) => words.extend(lengths.iter()),
        None => words.push(0),
    }
    words_to_bytes(&words)
}

fn dims4(t: &CubeTensor) -> [usize; 4] {
    let s = t.meta.shape().as_slice();
    [s[0], s[1], s[2], s[3]]
}

/// The kernel variant of `pass` for a launch over `rows` rows (see
/// [`crate::attention_tiling::rows_for`]).
/// The variant of `pass` for a launch on `t`'s device over `rows` rows.
fn variant(t: &CubeTensor, pass: Pass, d: usize, rows: usize, launch: &FlashLaunch) -> Variant {
    let client_storage = t.client.properties().hardware.max_shared_memory_size;
    let v = Variant {
        pass,
        d: d as u32,
        tile: tile_rows(d as u32, client_storage),
        causal: launch.causal,
        bias: launch.bias,
        half: t.dtype == DType::F16,
        per_invocation: crate::attention_tiling::rows_for(pass, d as u32, rows, launch.rows),
        broadcast: false,
    };
    // One subgroup per workgroup: the lanes that load are all the lanes that broadcast.
    let broadcast =
        launch.subgroups && v.broadcast_fits() && v.workgroup() <= crate::subgroups::min_size(t);
    Variant { broadcast, ..v }
}

static HALF_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// How many kernels ran in f16 storage since the process started (for tests).
pub fn half_launches() -> usize {
    HALF_LAUNCHES.load(Ordering::Relaxed)
}

/// Counts a launch in f16 storage.
pub(crate) fn note_launch(half: bool) {
    if half {
        HALF_LAUNCHES.fetch_add(1, Ordering::Relaxed);
    }
}

static BROADCAST_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// How many kernels (forward, dQ, dK/dV) ran in the broadcast form since the process started (for
/// tests).
pub fn broadcast_launches() -> usize {
    BROADCAST_LAUNCHES.load(Ordering::Relaxed)
}

/// The grid for `tiles` row tiles of `bh` (batch, head) pairs: (tiles, y, z) with
/// bh = y + z·Y, folded into z past WebGPU's 65,535 workgroups per dimension.
pub fn grid(tiles: usize, bh: usize) -> (u32, u32, u32) {
    let (y, z) = crate::denoise::grid_2d(bh);
    ((tiles as u32).max(1), y, z)
}

fn launch_kernel(
    x: &CubeTensor,
    variant: Variant,
    groups: (u32, u32, u32),
    buffers: Vec<burn::cubecl::server::BufferBinding>,
) {
    note_launch(variant.half);
    crate::subgroups::note_launch(variant.broadcast);
    if variant.broadcast {
        BROADCAST_LAUNCHES.fetch_add(1, Ordering::Relaxed);
    }
    x.client.launch(
        Box::new(SourceKernel::new(
            Wgsl(variant),
            CubeDim::new_1d(variant.workgroup()),
        )),
        CubeCount::Static(groups.0, groups.1, groups.2),
        KernelArguments::new().with_buffers(buffers),
    );
}

/// The storage the kernels run in: f16 when q, k and v all are f16 and the adapter has
/// shader-f16; otherwise f32 (inputs of other dtypes are cast to f32, results cast back).
fn storage(q: &CubeTensor, k: &CubeTensor, v: &CubeTensor) -> DType {
    let half = [q, k, v].iter().all(|t| t.dtype == DType::F16)
        && q.client
            .properties()
            .supports_type(ElemType::Float(FloatKind::F16));
    if half { DType::F16 } else { DType::F32 }
}

fn cast(t: CubeTensor, dtype: DType) -> CubeTensor {
    if t.dtype == dtype {
        t
    } else {
        CubeBackend::float_cast(t, FloatDType::from(dtype))
    }
}

impl FlashAttentionOps for CubeBackend {
    fn flash_attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        bias: CubeTensor,
        launch: FlashLaunch,
    ) -> (CubeTensor, CubeTensor) {
        let dtype = q.dtype;
        let store = storage(&q, &k, &v);
        let [q, k, v] = [q, k, v].map(|t| into_contiguous(cast(t, store)));
        let bias = into_contiguous(if launch.bias {
            cast(bias, DType::F32)
        } else {
            bias
        });
        let [b, h, lq, d] = dims4(&q);
        let lk = k.meta.shape().as_slice()[2];
        let client = q.client.clone();
        let (out, lse) = if crate::attention_decode::applies(lq) {
            let half = store == DType::F16;
            crate::attention_decode::forward(&q, &k, &v, &bias, &launch, half)
        } else {
            let out = client.empty(b * h * lq * d * store.size());
            let lse = client.empty((b * h * lq).max(1) * 4);
            let p = client.create_from_slice(&params([b, h, lq, lk], &launch, 0));
            let variant = variant(&q, Pass::Forward, d, lq, &launch);
            launch_kernel(
                &q,
                variant,
                grid(lq.div_ceil(variant.group_rows() as usize), b * h),
                vec![
                    q.handle.clone().binding(),
                    k.handle.clone().binding(),
                    v.handle.clone().binding(),
                    bias.handle.clone().binding(),
                    out.clone().binding(),
                    lse.clone().binding(),
                    p.binding(),
                ],
            );
            (out, lse)
        };
        let device = q.device.clone();
        let out = CubeTensor::new_contiguous(
            client.clone(),
            device.clone(),
            Shape::new([b, h, lq, d]),
            out,
            store,
        );
        (
            cast(out, dtype),
            CubeTensor::new_contiguous(client, device, Shape::new([b, h, lq]), lse, DType::F32),
        )
    }

    fn flash_attention_backward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        bias: CubeTensor,
        out: CubeTensor,
        lse: CubeTensor,
        d_out: CubeTensor,
        launch: FlashLaunch,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let dtypes = [q.dtype, k.dtype, v.dtype];
        let store = storage(&q, &k, &v);
        let [q, k, v, d_out, out] = [q, k, v, d_out, out].map(|t| into_contiguous(cast(t, store)));
        let bias = if launch.bias {
            cast(bias, DType::F32)
        } else {
            bias
        };
        let [bias, lse] = [bias, cast(lse, DType::F32)].map(into_contiguous);
        let [b, h, lq, d] = dims4(&q);
        let lk = k.meta.shape().as_slice()[2];
        let client = q.client.clone();
        // Δ_i = dO_i · O_i, f32: written by the dQ kernel, read by the dK/dV kernel after it.
        let delta = client.empty((b * h * lq).max(1) * 4);
        let dq = client.empty(b * h * lq * d * store.size());
        let dk = client.empty(b * h * lk * d * store.size());
        let dv = client.empty(b * h * lk * d * store.size());
        let p = client.create_from_slice(&params([b, h, lq, lk], &launch, 0));
        let common = || {
            vec![
                q.handle.clone().binding(),
                k.handle.clone().binding(),
                v.handle.clone().binding(),
                bias.handle.clone().binding(),
                d_out.handle.clone().binding(),
                lse.handle.clone().binding(),
                delta.clone().binding(),
            ]
        };
        let mut dq_buffers = common();
        dq_buffers.extend([
            dq.clone().binding(),
            p.clone().binding(),
            out.handle.clone().binding(),
        ]);
        let dq_variant = variant(&q, Pass::Dq, d, lq, &launch);
        launch_kernel(
            &q,
            dq_variant,
            grid(lq.div_ceil(dq_variant.group_rows() as usize), b * h),
            dq_buffers,
        );
        let mut dkdv_buffers = common();
        dkdv_buffers.extend([dk.clone().binding(), dv.clone().binding(), p.binding()]);
        let dkdv_variant = variant(&q, Pass::DkDv, d, lk, &launch);
        launch_kernel(
            &q,
            dkdv_variant,
            grid(lk.div_ceil(dkdv_variant.group_rows() as usize), b * h),
            dkdv_buffers,
        );
        let device = q.device.clone();
        let wrap = |handle, len, dtype| {
            let t = CubeTensor::new_contiguous(
                client.clone(),
                device.clone(),
                Shape::new([b, h, len, d]),
                handle,
                store,
            );
            cast(t, dtype)
        };
        (
            wrap(dq, lq, dtypes[0]),
            wrap(dk, lk, dtypes[1]),
            wrap(dv, lk, dtypes[2]),
        )
    }
}

/// Runs the kernels on Dispatch tensors: (out, lse).
///
/// # Shapes
/// - `q`: `[b, h, lq, d]`; `k`, `v`: `[b, h, lk, d]`; `bias`: `[b, h, lq, lk]`;
///   out: `[b, h, lq, d]`; lse: `[b, h, lq]`.
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    options: AttentionOptions,
) -> (Tensor<4>, Tensor<3>) {
    let [b, _, _, d] = q.dims();
    let key_lengths = options.key_lengths.as_ref().map(|lengths| {
        assert_eq!(
            lengths.len(),
            b,
            "attention: {} key lengths for a batch of {b}",
            lengths.len()
        );
        lengths
            .iter()
            .map(|&n| u32::try_from(n).unwrap_or(u32::MAX))
            .collect()
    });
    let launch = FlashLaunch {
        causal: options.causal,
        bias: bias.is_some(),
        scale: options.scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32,
        // A window past u32 hides nothing: no window.
        window: options
            .window
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(0),
        key_lengths,
        rows: crate::attention_tiling::rows_override(),
        groups: crate::attention_decode::target_groups(),
        subgroups: crate::subgroups::allowed(),
    };
    let bias = bias.unwrap_or_else(|| q.clone());
    let (out, lse) = <Dispatch as FlashAttentionOps>::flash_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        bias.into_dispatch(),
        launch,
    );
    (Tensor::from_dispatch(out), Tensor::from_dispatch(lse))
}

/// How the stats name a fused call that took the decode path.
pub const DECODE_NAME: &str = "wgsl-flash-decoding";

/// The kernels as the fused path of `oxgen_models::ops::attention::attention`.
#[derive(Debug, Default)]
pub struct WgslAttention;

impl FusedAttention for WgslAttention {
    fn name(&self) -> &'static str {
        "wgsl-flash-attention"
    }

    fn accepts(&self, device: &Device) -> bool {
        crate::device::is_wgpu(device)
    }

    fn supports(&self, head_dim: usize) -> bool {
        (1..=MAX_HEAD_DIM).contains(&head_dim)
    }

    fn forward(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
        options: AttentionOptions,
    ) -> Tensor<4> {
        use oxgen_models::ops::{attention::OP, stats};
        let d = q.dims()[3];
        let lk = k.dims()[2];
        let padded = d.next_multiple_of(4);
        // The decode path loops about lk / 64 times per invocation; its backward does not.
        let decode = crate::attention_decode::applies(q.dims()[2]);
        let limited = !decode || q.is_autodiff();
        // A software adapter (lavapipe) ends an invocation after 65,535 loop iterations.
        if limited && lk > software_max_keys(padded) && crate::device::maybe_software() {
            stats::reference(
                OP,
                &format!("{lk} keys pass a software adapter's loop limit at head dim {d}"),
            );
            return oxgen_models::ops::attention::attention_reference(q, k, v, bias, options);
        }
        stats::fused(OP, if decode { DECODE_NAME } else { self.name() });
        if padded == d {
            return flash_attention(q, k, v, bias, options).0;
        }
        // Zero columns add nothing to q·k and give zero output columns, which are cut off.
        let options = AttentionOptions {
            scale: Some(options.scale.unwrap_or(1.0 / (d as f64).sqrt())),
            ..options
        };
        let pad = |t: Tensor<4>| {
            let [b, h, l, _] = t.dims();
            let zeros = Tensor::<4>::zeros_like(&t.clone().slice([0..b, 0..h, 0..l, 0..1]))
                .repeat_dim(3, padded - d);
            Tensor::cat(vec![t, zeros], 3)
        };
        let [b, h, lq, _] = q.dims();
        flash_attention(pad(q), pad(k), pad(v), bias, options)
            .0
            .slice([0..b, 0..h, 0..lq, 0..d])
    }
}

/// Installs the kernels behind `attention`. Returns false if one was already installed.
pub fn register() -> bool {
    oxgen_models::ops::attention::register_fused(Box::new(WgslAttention))
}
