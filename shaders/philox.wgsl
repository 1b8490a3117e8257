// philox.wgsl: Philox4x32-10 and standard normals from it, the counter-based generator of
// oxgen_models::rng, drawn in registers. Appended by the launcher to the kernels that draw noise
// (denoise_step.wgsl, noising.wgsl), which fill its two placeholders: `mulhilo` names Philox's
// 32×32 → 64-bit product, mulhilo16 below (16-bit halves, core WGSL) or mulhilo64
// (shaders/mulhilo64.wgsl, spliced in at `mulhilo64` where the adapter has shader-int64; empty
// otherwise).

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

// Four standard normals of block `block` of Philox stream (`stream`, key `seed`): Box–Muller on
// one Philox4x32-10 draw, as oxgen_models::rng::normal4.
fn philox_normals4(block: u32, stream: u32, seed: vec2<u32>) -> vec4<f32> {
    let r = philox4x32_10(vec4<u32>(block, stream, 0u, 0u), seed);
    let r0 = sqrt(-2.0 * log(unit(r.x)));
    let a0 = cos_sin_turns(unit(r.y));
    let r1 = sqrt(-2.0 * log(unit(r.z)));
    let a1 = cos_sin_turns(unit(r.w));
    return vec4<f32>(r0 * a0, r1 * a1);
}
