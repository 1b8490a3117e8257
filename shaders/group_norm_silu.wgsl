// group_norm_silu.wgsl: GroupNorm followed by SiLU, forward only, in one kernel.
// Reference: oxgen_models::ops::group_norm::group_norm_silu_reference (burn's GroupNorm + silu).
//
//   μ, σ² = mean and biased variance of x over one (sample, group): C/G channels × HW pixels,
//           from the sums of d = x − K and d² with K = the group's first element (shifted data)
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
// Template placeholders: {{ workgroup_size }} (a power of two), {{ affine }}, and
// `subgroup_builtins` and `subgroup_ids` (the entry point's subgroup builtins, or lid, 0 and WG
// in their place).
//
// Layout: one workgroup per (sample, group), whose C/G channels are contiguous in memory. Two
// sweeps over the group: both moments of the shifted data (one workgroup_sum), then normalise
// and write. The group is read twice and written once; for the UNet's groups (≤ 64 KiB) the
// re-read hits the cache. Barriers are few and the workgroup small (two subgroups), because on
// lavapipe every barrier is a coroutine switch for each SIMD row of the workgroup.
// The grid is 2D: workgroup = wid.x + wid.y · num_workgroups.x.

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

var<workgroup> partial: array<vec2<f32>, WG>;
var<workgroup> shared_params: Params;

// fn workgroup_sum: workgroup_sum.wgsl, or workgroup_sum_subgroup.wgsl where the adapter has
// subgroups, appended.

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    {{ subgroup_builtins }}
) {
    // sg: this invocation's subgroup, lane: its index in it, nsg: subgroups in the workgroup.
    {{ subgroup_ids }}
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

    // One sweep for both moments, of the data shifted by one of its own values: the variance
    // (S2 − S1²/len)/len then loses only about (μ − K)²/σ² ulps, not μ²/σ² as an unshifted one-pass
    // formula would.
    let shift = x[base];
    var sums = vec2<f32>(0.0);
    for (var i = lid; i < len; i = i + WG) {
        let d = x[base + i] - shift;
        sums = sums + vec2<f32>(d, d * d);
    }
    let total = workgroup_sum(lid, sg, lane, nsg, sums);
    let n = f32(len);
    let mean_shifted = total.x / n;
    let mean = shift + mean_shifted;
    let var_ = max(total.y / n - mean_shifted * mean_shifted, 0.0);
    let rstd = inverseSqrt(var_ + p.eps);

    for (var i = lid; i < len; i = i + WG) {
        var v = (x[base + i] - mean) * rstd;
        if (AFFINE) {
            let c = first_channel + i / p.hw;
            v = gamma[c] * v + beta[c];
        }
        y[base + i] = v / (1.0 + exp(-v));
    }
}
