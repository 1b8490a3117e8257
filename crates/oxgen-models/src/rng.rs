//! Counter-based Gaussian noise: Philox4x32-10 followed by Box–Muller.
//!
//! Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
//! The same generator is written in WGSL (`shaders/philox.wgsl`), so the reference path and a
//! fused kernel draw the same noise for the same `(seed, stream, index)`.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds on the counter `ctr` under the key `key`.
pub fn philox4x32_10(mut ctr: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key[0] = key[0].wrapping_add(W0);
            key[1] = key[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, ctr[0]);
        let (hi1, lo1) = mulhilo(M1, ctr[2]);
        ctr = [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0];
    }
    ctr
}

/// Maps 32 random bits to a uniform in (0, 1], never 0, so `ln` is finite.
fn unit(bits: u32) -> f32 {
    ((bits >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0)
}

/// Four standard normals for block `block` of the stream `(seed, stream)`.
pub fn normal4(seed: u64, stream: u32, block: u32) -> [f32; 4] {
    let r = philox4x32_10([block, stream, 0, 0], [seed as u32, (seed >> 32) as u32]);
    let mut out = [0.0; 4];
    for pair in 0..2 {
        let u1 = unit(r[2 * pair]);
        let u2 = unit(r[2 * pair + 1]);
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f32::consts::TAU * u2;
        out[2 * pair] = radius * angle.cos();
        out[2 * pair + 1] = radius * angle.sin();
    }
    out
}

/// Number of Philox blocks (four elements each, rounded up) for `n` elements.
pub fn blocks(n: usize) -> usize {
    n.div_ceil(4)
}

/// `n` standard normals of the stream `(seed, stream)`.
///
/// Block `b` gives the four consecutive elements `4b .. 4b + 4` (those below `n`), so a kernel
/// invocation per block loads and stores one `vec4`.
pub fn normals(seed: u64, stream: u32, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    for (b, chunk) in out.chunks_mut(4).enumerate() {
        let z = normal4(seed, stream, b as u32);
        chunk.copy_from_slice(&z[..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normals_have_unit_moments() {
        let z = normals(7, 3, 200_000);
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }
}
