// noising.wgsl: the forward noising of diffusion training, one pass over memory, with the noise
// drawn in registers. Reference: oxgen_models::ops::noising::noising_reference.
//
//   ε_i   = element i of Philox stream (seed, stream), as oxgen_models::rng::normals
//   x_t,i = a[r]·x₀,i + s[r]·ε_i,   r = i / row_len   (a = √ᾱ_t and s = √(1 − ᾱ_t) of row r)
//
// ε is written out too: it is (or makes) the loss's target.
//
// Bindings (group 0), all declared read_write (see denoise_step.wgsl):
//   0 x0      in   [n] f32 (rows of row_len)
//   1 a       in   [n / row_len] f32
//   2 s       in   [n / row_len] f32
//   3 x_t     out  [n]
//   4 eps     out  [n]
//   5 params  in   `Params` below (layout: crates/oxgen-wgpu/src/noising.rs, `Params`)
//
// Template placeholders: {{ workgroup_size }}, {{ blocks_per_invocation }}; shaders/philox.wgsl is
// appended by the launcher (with its own placeholders).
//
// Layout: as denoise_step.wgsl. Block b is elements 4b..4b+3 and one Philox draw; workgroup w
// owns blocks w·PER·WG .. (w+1)·PER·WG, interleaved across its invocations; the grid is 2D:
// w = wid.x + wid.y · num_workgroups.x.

struct Params {
    n: u32,
    row_len: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> x0: array<f32>;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> x_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> eps: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const PER: u32 = {{ blocks_per_invocation }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = params;
    let blocks = (p.n + 3u) / 4u;
    let first = (wid.x + wid.y * groups.x) * (PER * WG) + lid;
    for (var k = 0u; k < PER; k++) {
        let block = first + k * WG;
        if (block < blocks) {
            let z = philox_normals4(block, p.stream, vec2<u32>(p.seed_lo, p.seed_hi));
            for (var j = 0u; j < 4u; j++) {
                let i = 4u * block + j;
                if (i < p.n) {
                    let r = i / p.row_len;
                    x_t[i] = a[r] * x0[i] + s[r] * z[j];
                    eps[i] = z[j];
                }
            }
        }
    }
}
