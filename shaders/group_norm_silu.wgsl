// group_norm_silu.wgsl: GroupNorm followed by SiLU, forward only, in one kernel.
// Reference: oxgen_models::ops::group_norm::group_norm_silu_reference (burn's GroupNorm + silu).
//
//   μ, σ² = mean and biased variance of x over one (sample, group): C/G channels × HW pixels
//   v     = (x − μ) / sqrt(σ² + ε);  AFFINE: v = γ[c]·v + β[c]
//   y     = v · sigmoid(v)
//
// Bindings (group 0). All are declared read_write although 0–2 and 4 are only read: CubeCL
// sub-allocates tensors from shared wgpu buffers, and wgpu forbids a buffer in one dispatch as
// both read-only and read-write storage.
//   0 x       in   [B, C, H, W] contiguous, f32
//   1 gamma   in   [C] (any buffer when !AFFINE)
//   2 beta    in   [C] (any buffer when !AFFINE)
//   3 y       out  [B, C, H, W]
//   4 params  in   `Params` below (layout: crates/oxgen-wgpu/src/group_norm.rs, `Params`)
//
// Template placeholders: {{ workgroup_size }} (a power of two), {{ affine }}.
//
// Layout: one workgroup per (sample, group), whose C/G channels are contiguous in memory. Three
// sweeps over the group (sum; squared deviations; normalise and write), each followed by a tree
// reduction in workgroup memory; the statistics use the two-pass formula, as the reference does.
// The group is read three times and written once; for the UNet's groups (≤ 64 KiB) the re-reads
// hit the cache. The grid is 2D: workgroup = wid.x + wid.y · num_workgroups.x.

struct Params {
    batch: u32,
    channels: u32,
    groups: u32,
    hw: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const AFFINE: bool = {{ affine }};

var<workgroup> partial: array<f32, WG>;
var<workgroup> shared_params: Params;

// Sum of `v` over the workgroup. Every invocation gets the total.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may overwrite `partial` before everyone has read the total.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Storage loads are not uniform to WGSL; broadcast the parameters through workgroup memory so
    // the early return below is, and the barriers after it are legal.
    if (lid == 0u) {
        shared_params = params;
    }
    let p = workgroupUniformLoad(&shared_params);
    let index = wid.x + wid.y * grid.x;
    if (index >= p.batch * p.groups) {
        return;
    }
    let per_group = p.channels / p.groups;
    let len = per_group * p.hw;
    let base = index * len;
    let first_channel = (index % p.groups) * per_group;

    var s = 0.0;
    for (var i = lid; i < len; i = i + WG) {
        s = s + x[base + i];
    }
    let mean = workgroup_sum(lid, s) / f32(len);

    var q = 0.0;
    for (var i = lid; i < len; i = i + WG) {
        let d = x[base + i] - mean;
        q = q + d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(lid, q) / f32(len) + p.eps);

    for (var i = lid; i < len; i = i + WG) {
        var v = (x[base + i] - mean) * rstd;
        if (AFFINE) {
            let c = first_channel + i / p.hw;
            v = gamma[c] * v + beta[c];
        }
        y[base + i] = v / (1.0 + exp(-v));
    }
}
