// denoise_step.wgsl: one fused denoising update (DDPM ancestral, DDIM(η), Euler ancestral,
// DPM-Solver++(2M)), one pass over memory. Reference: oxgen_models::ops::denoise.
//
//   out   = GUIDED ? u + w·(c − u) : c
//   x̂₀    = px·x + po·out;  CLIP: x̂₀ = clamp(x̂₀, −clip, clip)
//   DYNAMIC: x̂₀ = clamp(x̂₀, −s_r, s_r) / s_r, s_r = scale[element / row_len]
//   x'    = cx·x + c0·x̂₀ + (PREV ? cp·x̂₀_prev : 0) + (NOISE ? σ·z : 0)
//
// Bindings (group 0), all f32 arrays of n elements unless noted. Every binding is declared
// read_write although 0–4 and 7 are only read: CubeCL sub-allocates tensors from shared wgpu
// buffers, and wgpu forbids a buffer in one dispatch as both read-only and read-write storage.
//   0 x         in   x_t
//   1 model     in   model output (conditional when GUIDED)
//   2 uncond    in   unconditional output (any buffer when !GUIDED)
//   3 prev_x0   in   previous x̂₀ (any buffer when !PREV)
//   4 noise     in   explicit z (any buffer unless NOISE == 1)
//   5 x_next    out  x_{t−1}
//   6 x0_out    out  x̂₀ (four elements when !WRITE_X0)
//   7 params    in   `Params` below (layout: crates/oxgen-wgpu/src/denoise.rs, `Params`)
//   8 scale     in   per-sample bound s_r of dynamic thresholding, [n / row_len] (any buffer
//                    when !DYNAMIC)
//
// Template placeholders: {{ workgroup_size }}, {{ blocks_per_invocation }}, {{ guided }}, {{ clip }}, {{ prev }},
// {{ noise }} (0 none, 1 explicit tensor, 2 Philox4x32-10 in registers), {{ write_x0 }},
// {{ dynamic }}, {{ vec4 }} with {{ elem }} (f32 or vec4<f32>), and {{ as_elem }},
// {{ lane_elem }}, {{ first_elem }} (expressions that make both branches of `main` type-check);
// `mulhilo` names Philox's 32×32 → 64-bit product: mulhilo16 (16-bit halves, core WGSL) or
// mulhilo64 (one u64 multiply, shaders/mulhilo64.wgsl, spliced in at `mulhilo64` where the
// adapter has shader-int64; empty otherwise).
//
// Layout: block b is the four consecutive elements 4b..4b+3 and one Philox4x32-10 draw (as
// oxgen_models::rng::normals). With VEC4 an invocation loads and stores a block as one vec4;
// otherwise element by element. Workgroup w owns blocks w·PER·WG .. (w+1)·PER·WG, interleaved
// across its invocations. The grid is 2D so that launches past 65,535 workgroups work:
// w = wid.x + wid.y · num_workgroups.x.

struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    guidance: f32,
    px: f32,
    po: f32,
    clip: f32,
    cx: f32,
    c0: f32,
    cp: f32,
    sigma: f32,
    row_len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

alias T = {{ elem }};

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> model: array<T>;
@group(0) @binding(2) var<storage, read_write> uncond: array<T>;
@group(0) @binding(3) var<storage, read_write> prev_x0: array<T>;
@group(0) @binding(4) var<storage, read_write> noise: array<T>;
@group(0) @binding(5) var<storage, read_write> x_next: array<T>;
@group(0) @binding(6) var<storage, read_write> x0_out: array<T>;
@group(0) @binding(7) var<storage, read_write> params: Params;
@group(0) @binding(8) var<storage, read_write> scale: array<f32>;

const GUIDED: bool = {{ guided }};
const CLIP: bool = {{ clip }};
const PREV: bool = {{ prev }};
const NOISE: u32 = {{ noise }}u;
const WRITE_X0: bool = {{ write_x0 }};
const DYNAMIC: bool = {{ dynamic }};
const VEC4: bool = {{ vec4 }};
const WG: u32 = {{ workgroup_size }}u;
const PER: u32 = {{ blocks_per_invocation }}u;

// Philox4x32-10 and its normals: shaders/philox.wgsl, appended by the launcher.

fn normals4(block: u32, p: Params) -> vec4<f32> {
    return philox_normals4(block, p.stream, vec2<u32>(p.seed_lo, p.seed_hi));
}

// `p` is a copy in registers: every binding is read_write, so reading `params` after a store
// would have to reload it.
fn update(i: u32, z: T, p: Params) {
    var out = model[i];
    if (GUIDED) {
        let u = uncond[i];
        out = u + p.guidance * (out - u);
    }
    let xi = x[i];
    var x0 = p.px * xi + p.po * out;
    if (CLIP) {
        x0 = clamp(x0, T(-p.clip), T(p.clip));
    }
    if (DYNAMIC) {
        // With VEC4 the host guarantees that row_len is a multiple of 4.
        let s = scale[({{ first_elem }}) / p.row_len];
        x0 = clamp(x0, T(-s), T(s)) / s;
    }
    var next = p.cx * xi + p.c0 * x0;
    if (PREV) {
        next = next + p.cp * prev_x0[i];
    }
    if (NOISE == 1u) {
        next = next + p.sigma * noise[i];
    } else if (NOISE == 2u) {
        next = next + p.sigma * z;
    }
    x_next[i] = next;
    if (WRITE_X0) {
        x0_out[i] = x0;
    }
}

// One block: four consecutive elements, one Philox draw.
fn block_update(block: u32, p: Params) {
    var z = vec4<f32>(0.0);
    if (NOISE == 2u) {
        z = normals4(block, p);
    }
    if (VEC4) {
        update(block, {{ as_elem }}, p);
        return;
    }
    let base = 4u * block;
    for (var k = 0u; k < 4u; k++) {
        if (base + k < p.n) {
            update(base + k, {{ lane_elem }}, p);
        }
    }
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = params;
    let blocks = (p.n + 3u) / 4u;
    // The workgroup owns PER · WG consecutive blocks; invocation lid takes every WG-th of them,
    // so each of the PER steps touches WG consecutive blocks (coalesced on a GPU, one SIMD row
    // per load on lavapipe), and the parameters are loaded once per PER blocks.
    let first = (wid.x + wid.y * groups.x) * (PER * WG) + lid;
    for (var k = 0u; k < PER; k++) {
        let block = first + k * WG;
        if (block < blocks) {
            block_update(block, p);
        }
    }
}
