//! Vectorisation help for the CPU kernels. The crate builds for baseline x86-64 (SSE2), so a
//! plain loop is vectorised four lanes wide at most; [`vectorized`] runs a closure in a copy
//! compiled for the best instruction set the CPU has (AVX2 + FMA or AVX-512, detected at run
//! time by `pulp`, the SIMD layer of the `gemm` crate). Functions called inside must inline and
//! avoid libm calls: [`exp_neg`] is `exp` in plain arithmetic.

/// Runs `f` compiled for the CPU's best instruction set.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// e^x for x ≤ 0 (the only arguments here), flushing to 0 below −87.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 · 2²³ trick (no `floor`: baseline x86-64 has no instruction
    // for it, so it would be a libm call in the loop).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // Cody–Waite: ln 2 split in two so that n · ln2_hi is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// Lanes of the reductions below: wide enough for AVX-512.
const LANES: usize = 16;

/// Σ f(i) for i in 0..n, in `LANES` independent partial sums (a plain `+=` loop is a chain the
/// compiler must not reorder, so it never vectorises).
#[inline(always)]
pub fn sum_by(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let full = n / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for i in full..n {
        total += f(i);
    }
    total
}

/// max of `xs` (−∞ when empty), in `LANES` partial maxima.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    rest.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}
