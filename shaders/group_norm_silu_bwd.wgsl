// group_norm_silu_bwd.wgsl: the backward of group_norm_silu.wgsl, in one kernel.
// Reference: autodiff through oxgen_models::ops::group_norm::group_norm_silu_reference.
//
// With x̂ = (x − μ)·r (r = 1/sqrt(σ² + ε) of the group), z = γ·x̂ + β (AFFINE; else z = x̂),
// y = z·s(z) with s the sigmoid, and dy the gradient of y:
//   dz = dy·(s + z·s·(1 − s))
//   dγ[c] = Σ dz·x̂ and dβ[c] = Σ dz over the batch and the channel's pixels
//   dx = r·(γ·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂)), the means over the group
//
// Bindings (group 0), all declared read_write (see group_norm_silu.wgsl):
//   0 x        in   [B, C, H, W] contiguous, f32
//   1 gamma    in   [C] (any buffer when !AFFINE)
//   2 beta     in   [C] (any buffer when !AFFINE)
//   3 dy       in   [B, C, H, W]
//   4 dx       out  [B, C, H, W]
//   5 dgamma   out  [B, C]: this sample's share of dγ (the launcher sums over B); unused when
//                   !AFFINE
//   6 dbeta    out  [B, C]: likewise for dβ
//   7 params   in   `Params`, as the forward's (crates/oxgen-wgpu/src/group_norm.rs, `Params`)
//
// Template placeholders: {{ workgroup_size }} (a power of two), {{ affine }}, and
// `subgroup_builtins` and `subgroup_ids` (the entry point's subgroup builtins, or lid, 0 and WG
// in their place).
//
// Layout: one workgroup per (sample, group), as the forward. Three sweeps over the group: the
// moments (as the forward, so μ and r are the same numbers), then per channel the two sums
// (one workgroup_sum each), then dx. Nothing is saved from the forward but x itself.

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
@group(0) @binding(3) var<storage, read_write> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const AFFINE: bool = {{ affine }};

var<workgroup> partial: array<vec2<f32>, WG>;
var<workgroup> shared_params: Params;

// fn workgroup_sum: workgroup_sum.wgsl, or workgroup_sum_subgroup.wgsl where the adapter has
// subgroups, appended.

// (dz, x̂) of element i of the group whose channel is c.
fn grad_z(i: u32, c: u32, mean: f32, rstd: f32) -> vec2<f32> {
    let xhat = (x[i] - mean) * rstd;
    var z = xhat;
    if (AFFINE) {
        z = gamma[c] * xhat + beta[c];
    }
    let s = 1.0 / (1.0 + exp(-z));
    return vec2<f32>(dy[i] * (s + z * s * (1.0 - s)), xhat);
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    {{ subgroup_builtins }}
) {
    // sg: this invocation's subgroup, lane: its index in it, nsg: subgroups in the workgroup.
    {{ subgroup_ids }}
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
    let sample = index / p.groups;
    let first_channel = (index % p.groups) * per_group;

    // Moments, exactly as the forward computes them.
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

    // Per channel: Σ dz·x̂ and Σ dz; with γ constant per channel, the group means of γ·dz and
    // γ·dz·x̂ follow from them.
    var mg = 0.0;
    var mgx = 0.0;
    for (var ch = 0u; ch < per_group; ch = ch + 1u) {
        let c = first_channel + ch;
        let start = base + ch * p.hw;
        var s = vec2<f32>(0.0);
        for (var i = lid; i < p.hw; i = i + WG) {
            let g = grad_z(start + i, c, mean, rstd);
            s = s + vec2<f32>(g.x * g.y, g.x);
        }
        let t = workgroup_sum(lid, sg, lane, nsg, s);
        var gam = 1.0;
        if (AFFINE) {
            gam = gamma[c];
            if (lid == 0u) {
                dgamma[sample * p.channels + c] = t.x;
                dbeta[sample * p.channels + c] = t.y;
            }
        }
        mg = mg + gam * t.y;
        mgx = mgx + gam * t.x;
    }
    mg = mg / n;
    mgx = mgx / n;

    for (var i = lid; i < len; i = i + WG) {
        let c = first_channel + i / p.hw;
        let g = grad_z(base + i, c, mean, rstd);
        var gam = 1.0;
        if (AFFINE) {
            gam = gamma[c];
        }
        dx[base + i] = rstd * (gam * g.x - mg - g.y * mgx);
    }
}
