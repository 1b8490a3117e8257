// copy.wgsl: y = x, one vec4 per invocation. The benchmarks' roofline: the best rate at which this
// device reads and writes memory with a plain compute kernel.
//
// Bindings (group 0), all declared read_write (CubeCL sub-allocates shared wgpu buffers):
//   0 x       in   array<vec4<f32>> of n/4 elements (the host pads n to a multiple of 4)
//   1 y       out  array<vec4<f32>>
//   2 params  in   `Params` below (layout: crates/oxgen-wgpu/src/copy.rs, `params`)
//
// Template placeholders: {{ workgroup_size }}.
//
// Layout: 2D grid, as denoise_step.wgsl: i = gid.x + gid.y · (num_workgroups.x · workgroup_size).

struct Params {
    vec4s: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i < params.vec4s) {
        y[i] = x[i];
    }
}
