// per_sample_norm.wgsl: each sample's squared Frobenius norm of an affine layer's weight
// gradient, ‖aᵢᵀ gᵢ‖², without writing the per-sample gradients to memory (DP-SGD's clipping
// norms; "ghost clipping").
// Reference: oxgen_models::ops::per_sample::fused::affine_sq_norms_reference.
//
//   out[i] = Σ_{k,n} (Σ_t a[i,t,k] · g[i,t,n])²
//
// Bindings (group 0), all read_write for the reason given in group_norm_silu.wgsl (CubeCL
// sub-allocates tensors from shared buffers):
//   0 a       in   [B, T, K] contiguous, f32 (the layer's inputs, or a convolution's patches)
//   1 g       in   [B, T, N] contiguous, f32 (the gradients of the layer's outputs)
//   2 out     out  [B]
//   3 params  in   `Params` below (layout: crates/oxgen-wgpu/src/per_sample_norm.rs, `Params`)
//
// Template placeholder: {{ workgroup_size }} (a power of two).
//
// Layout: one workgroup per sample. Invocation `lid` takes the (k, n) entries lid, lid + WG, …
// of the K × N gradient, each a dot product over T of a column of a and a column of g (the
// sample's a and g stay in cache across entries), and squares it; one tree reduction sums the
// squares. The work is K·N·T per sample, as the materialised reference's matmul, without its
// B·K·N writes and reads. The grid is 2D: sample = wid.x + wid.y · num_workgroups.x.

struct Params {
    batch: u32,
    t: u32,
    k: u32,
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;

var<workgroup> partial: array<f32, WG>;
var<workgroup> shared_params: Params;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Broadcast the parameters through workgroup memory so that the early return is uniform.
    if (lid == 0u) {
        shared_params = params;
    }
    let p = workgroupUniformLoad(&shared_params);
    let i = wid.x + wid.y * grid.x;
    if (i >= p.batch) {
        return;
    }
    let a_base = i * p.t * p.k;
    let g_base = i * p.t * p.n;
    var acc = 0.0;
    for (var e = lid; e < p.k * p.n; e = e + WG) {
        let col = e / p.n;
        let row = e % p.n;
        var dot = 0.0;
        for (var s = 0u; s < p.t; s = s + 1u) {
            dot = dot + a[a_base + s * p.k + col] * g[g_base + s * p.n + row];
        }
        acc = acc + dot * dot;
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[i] = partial[0];
    }
}
