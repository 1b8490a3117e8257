//! The decode path of the attention forward: a few query rows against a long key sequence
//! (one new token against a KV cache), split over the keys (`shaders/attention_decode.wgsl`)
//! and merged (`shaders/attention_decode_combine.wgsl`), flash-decoding style.
//!
//! The forward kernel gives each invocation a query row; with one row, all but one invocation
//! of the workgroup idle and one walks the whole cache. Here every invocation takes keys, and
//! splits of the keys run in separate workgroups. It writes the same (out, lse) as the forward,
//! so the backward kernels follow it unchanged. [`crate::attention`] takes this path for at
//! most [`MAX_ROWS`] query rows.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::attention::{FlashLaunch, HEAD_DIMS, PARAMS, grid, lines, note_launch, params, sum};
use crate::kernel::{Template, Wgsl, words_to_bytes};
use burn::backend::wgpu::{CubeTensor, SourceKernel, SourceTemplate};
use burn::cubecl::server::{Handle, KernelArguments};
use burn::cubecl::{CubeCount, CubeDim};

/// Split pass source.
pub const SPLIT: &str = include_str!("../../../shaders/attention_decode.wgsl");
/// Combine pass source.
pub const COMBINE: &str = include_str!("../../../shaders/attention_decode_combine.wgsl");
/// The most query rows that take the decode path: below a workgroup of rows, the forward's
/// invocations mostly idle.
pub const MAX_ROWS: usize = 4;
/// The most splits of one row's keys.
pub const MAX_SPLITS: usize = 64;
/// Workgroups the splits aim at (rows × splits) on a GPU, enough to fill a large one.
pub const GPU_GROUPS: usize = 256;

static TARGET_GROUPS: AtomicUsize = AtomicUsize::new(0);

/// Aim the splits at `groups` workgroups instead of [`target_groups`]'s choice (`None`: back to
/// it). For tests and benchmarks: a GPU's split counts on lavapipe, say.
pub fn set_target_groups(groups: Option<usize>) {
    TARGET_GROUPS.store(groups.unwrap_or(0), Ordering::Relaxed);
}

thread_local! {
    static GROUPS_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with the splits aimed at `groups` workgroups (as [`set_target_groups`]; `None`: the
/// process-wide choice) on this thread only.
pub fn with_target_groups<R>(groups: Option<usize>, f: impl FnOnce() -> R) -> R {
    crate::kernel::with_local(&GROUPS_HERE, groups.unwrap_or(0), f)
}

/// Workgroups the splits aim at on this device: as [`with_target_groups`] or
/// [`set_target_groups`] set, else
/// [`GPU_GROUPS`], or on a software adapter
/// (lavapipe, which runs a workgroup on one CPU thread) one per CPU core. Measured on lavapipe
/// (`oxgen bench attention --decode`, docs/benchmarks.md): 8 rows against 4,096 keys took
/// 5.7 ms in 128 workgroups and 2.8 ms in 8.
pub fn target_groups() -> usize {
    let set = match GROUPS_HERE.with(|g| g.get()) {
        0 => TARGET_GROUPS.load(Ordering::Relaxed),
        here => here,
    };
    if set > 0 {
        set
    } else if crate::device::maybe_software() {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        GPU_GROUPS
    }
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Take the decode path for short queries (the default) or the forward kernel for every shape.
/// For benchmarks, which compare the two in one run.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether a forward with `lq` query rows takes the decode path.
pub fn applies(lq: usize) -> bool {
    lq <= MAX_ROWS && ENABLED.load(Ordering::Relaxed)
}

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Each workgroup: one split of one row's keys.
    Split,
    /// Each workgroup: one row, merging its splits.
    Combine,
}

/// A compile-time variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Which kernel.
    pub pass: Pass,
    /// Head dim (a multiple of 4).
    pub d: u32,
    /// Causal mask (Split).
    pub causal: bool,
    /// Additive bias (Split).
    pub bias: bool,
    /// Whether the split pass leaves partial states for the combine pass (Split).
    pub split: bool,
    /// f16 storage of q, k, v and out (f32 arithmetic).
    pub half: bool,
    /// The merge reduces within subgroups first (`subgroupMax`, `subgroupAdd`; Split), for
    /// adapters with wgpu's `SUBGROUP` feature ([`crate::subgroups`]).
    pub subgroups: bool,
}

/// Invocations per workgroup at head dim `d`: the merge holds one vec4 per invocation and
/// chunk of d in workgroup memory, kept to 16 KiB: 64 up to d = 64, 32 at 128, 16 at 256.
pub fn workgroup(d: u32) -> u32 {
    (1024 / (d / 4).max(1)).clamp(16, 64)
}

/// Splits of `lk` keys for `rows` rows: at least 4·WG keys each, enough splits for about
/// `target_groups` workgroups in all, and at most [`MAX_SPLITS`].
pub fn splits(rows: usize, lk: usize, d: u32, target_groups: usize) -> usize {
    let per = 4 * workgroup(d) as usize;
    lk.div_ceil(per)
        .min(target_groups.div_ceil(rows.max(1)))
        .clamp(1, MAX_SPLITS)
}

impl Variant {
    /// Every variant at the validated head dims (for naga validation).
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for d in HEAD_DIMS {
            for half in [false, true] {
                let base = Variant {
                    pass: Pass::Combine,
                    d: d as u32,
                    causal: false,
                    bias: false,
                    split: true,
                    half,
                    subgroups: false,
                };
                v.push(base);
                for causal in [false, true] {
                    for bias in [false, true] {
                        for split in [false, true] {
                            for subgroups in [false, true] {
                                v.push(Variant {
                                    pass: Pass::Split,
                                    causal,
                                    bias,
                                    split,
                                    subgroups,
                                    ..base
                                });
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
        let wg = workgroup(self.d);
        let (enable, storage) = if self.half {
            ("enable f16;", "vec4<f16>")
        } else {
            ("", "vec4<f32>")
        };
        let sg = crate::subgroups::snippets(self.subgroups, wg);
        let text = match self.pass {
            Pass::Split => format!("{SPLIT}{PARAMS}{}", sg.functions),
            Pass::Combine => COMBINE.to_string(),
        };
        // Every lane reduces each chunk over its subgroup; lane 0 leaves the sums for the merge.
        let merge_acc = format!(
            "{}\n    if (lane == 0u) {{\n{}\n    }}",
            lines(d4, "let r# = sg_add4(acc[#] * scale_t);"),
            lines(d4, "    wacc[sg * D4 + #u] = r#;"),
        );
        SourceTemplate::new(text)
            .register("enable_f16", enable)
            .register("storage", storage)
            .register("d4", d4.to_string())
            .register("wg", wg.to_string())
            .register("wg_d4", (wg * d4).to_string())
            .register("causal", self.causal.to_string())
            .register("bias", self.bias.to_string())
            .register("split", self.split.to_string())
            .register("dot_q_k", sum(d4, "dot(qr[#], vec4<f32>(k[kb + #u]))"))
            .register(
                "acc_add_pv",
                lines(d4, "acc[#] += pj * vec4<f32>(v[vb + #u]);"),
            )
            .register("subgroup_builtins", sg.builtins)
            .register("subgroup_ids", sg.ids)
            .register("merge_acc", merge_acc)
    }
}

impl Template for Variant {
    fn template(&self) -> SourceTemplate {
        self.source()
    }
}

fn launch(
    client_tensor: &CubeTensor,
    variant: Variant,
    groups: (u32, u32, u32),
    buffers: Vec<burn::cubecl::server::BufferBinding>,
) {
    note_launch(variant.half);
    crate::subgroups::note_launch(variant.subgroups);
    client_tensor.client.launch(
        Box::new(SourceKernel::new(
            Wgsl(variant),
            CubeDim::new_1d(workgroup(variant.d)),
        )),
        CubeCount::Static(groups.0, groups.1, groups.2),
        KernelArguments::new().with_buffers(buffers),
    );
}

/// Runs the decode path on contiguous q `[b, h, lq, d]`, k and v `[b, h, lk, d]` (storage
/// `half` or f32) and an f32 bias (any tensor without one): the handles of out (as q) and lse
/// (`[b, h, lq]`, f32).
pub(crate) fn forward(
    q: &CubeTensor,
    k: &CubeTensor,
    v: &CubeTensor,
    bias: &CubeTensor,
    launch_opts: &FlashLaunch,
    half: bool,
) -> (Handle, Handle) {
    let s = q.meta.shape().as_slice();
    let (bh, lq, d) = (s[0] * s[1], s[2], s[3]);
    let lk = k.meta.shape().as_slice()[2];
    let rows = bh * lq;
    let client = q.client.clone();
    let item = if half { 2 } else { 4 };
    let out = client.empty(rows * d * item);
    let lse = client.empty(rows.max(1) * 4);
    let n_splits = splits(rows, lk, d as u32, launch_opts.groups);
    let per_split = lk.div_ceil(n_splits).max(1);
    let params = client.create_from_slice(&params([s[0], s[1], lq, lk], launch_opts, per_split));
    let variant = Variant {
        pass: Pass::Split,
        d: d as u32,
        causal: launch_opts.causal,
        bias: launch_opts.bias,
        split: n_splits > 1,
        half,
        subgroups: launch_opts.subgroups && crate::subgroups::available(q),
    };
    let inputs = || {
        vec![
            q.handle.clone().binding(),
            k.handle.clone().binding(),
            v.handle.clone().binding(),
            bias.handle.clone().binding(),
        ]
    };
    if n_splits == 1 {
        let mut buffers = inputs();
        // No partial states: one vec4 stands in for both unused bindings.
        let unused = client.empty(16);
        buffers.extend([
            out.clone().binding(),
            lse.clone().binding(),
            unused.clone().binding(),
            unused.binding(),
            params.binding(),
        ]);
        launch(q, variant, grid(1, rows), buffers);
        return (out, lse);
    }
    let part = client.empty(rows * n_splits * d * 4);
    let part_ml = client.empty(rows * n_splits * 8);
    let mut buffers = inputs();
    buffers.extend([
        out.clone().binding(),
        lse.clone().binding(),
        part.clone().binding(),
        part_ml.clone().binding(),
        params.binding(),
    ]);
    launch(q, variant, grid(n_splits, rows), buffers);
    let combine = Variant {
        pass: Pass::Combine,
        causal: false,
        bias: false,
        split: true,
        subgroups: false,
        ..variant
    };
    let params = client.create_from_slice(&words_to_bytes(&[rows as u32, n_splits as u32, 0, 0]));
    launch(
        q,
        combine,
        grid(1, rows),
        vec![
            part.binding(),
            part_ml.binding(),
            out.clone().binding(),
            lse.clone().binding(),
            params.binding(),
        ],
    );
    (out, lse)
}
