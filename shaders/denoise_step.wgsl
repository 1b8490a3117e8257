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

const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;

{{ mulhilo64 }}

// 32×32 → 64-bit product as (hi, lo), from 16-bit halves (core WGSL has no 64-bit integers).
fn mulhilo16(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key_in;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(W0, W1);
        }
        let p0 = {{ mulhilo }}(M0, c.x);
        let p1 = {{ mulhilo }}(M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// 32 random bits → uniform in (0, 1], as oxgen_models::rng::unit.
fn unit(bits: u32) -> f32 {
    return (f32(bits >> 8u) + 1.0) * (1.0 / 16777216.0);
}

// (cos 2πt, sin 2πt) for t in [0, 1]: t is reduced to the nearest quarter turn k/4, the rest
// x = 2π(t − k/4) in [−π/4, π/4] goes through Taylor polynomials (x⁹ and x⁸ terms; error below
// 3·10⁻⁷), and the pair is rotated by k quarter turns. One reduction for both, exact in turns,
// and the same on every driver (Vulkan's own sin/cos need only 2⁻¹¹ absolute accuracy); on
// lavapipe it is much cheaper than separate sin and cos.
fn cos_sin_turns(t: f32) -> vec2<f32> {
    let quarter = round(4.0 * t);
    let x = 6.2831855 * (t - 0.25 * quarter);
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-1.6666667e-1 + x2 * (8.3333333e-3
        + x2 * (-1.9841270e-4 + x2 * 2.7557319e-6))));
    let c = 1.0 + x2 * (-0.5 + x2 * (4.1666667e-2 + x2 * (-1.3888889e-3 + x2 * 2.4801587e-5)));
    // cos and sin of x + k·π/2.
    let k = u32(quarter) & 3u;
    let odd = (k & 1u) == 1u;
    let sv = select(s, c, odd);
    let cv = select(c, s, odd);
    return vec2<f32>(
        select(cv, -cv, ((k + 1u) & 2u) != 0u),
        select(sv, -sv, (k & 2u) != 0u),
    );
}

fn normals4(block: u32, p: Params) -> vec4<f32> {
    let r = philox4x32_10(vec4<u32>(block, p.stream, 0u, 0u), vec2<u32>(p.seed_lo, p.seed_hi));
    let r0 = sqrt(-2.0 * log(unit(r.x)));
    let a0 = cos_sin_turns(unit(r.y));
    let r1 = sqrt(-2.0 * log(unit(r.z)));
    let a1 = cos_sin_turns(unit(r.w));
    return vec4<f32>(r0 * a0, r1 * a1);
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
