//! Bits-back coding with a VAE (BB-ANS; Townsend, Bird & Barber, 2019) on constriction's ANS
//! stack. Per image x, the encoder
//!
//! 1. pops a latent z from the stack under the posterior q(z | x) (getting bits back),
//! 2. pushes x under the decoder's p(x | z), and
//! 3. pushes z under the prior p(z);
//!
//! the decoder runs the same steps backwards, in the reverse order of images, and ends with the
//! stack it started from. The net length is −log p(x | z) − log p(z) + log q(z | x) per image:
//! the negative ELBO, up to the latent discretisation. Latents are discretised per dimension
//! into `2^LATENT_BITS` buckets of equal prior mass (so the prior is uniform over buckets); the
//! decoder reads each bucket's centre (the prior's median within it).
//!
//! The first image's pop needs bits that are not there yet: the stack starts from
//! [`INITIAL_WORDS`] fixed words, an overhead that the later images pay back; the decoder checks
//! that it ends with exactly those words.

use burn::tensor::{Device, Tensor, TensorData};
use constriction::stream::model::DefaultUniformModel;
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};
use indicatif::ProgressBar;
use oxgen_models::vae::Vae;
use probability::distribution::{Gaussian, Inverse};

use super::quantize::{categorical, from_probabilities};

/// Bits per latent dimension.
pub const LATENT_BITS: u32 = 12;
/// Words the stack starts from.
pub const INITIAL_WORDS: usize = 16;

/// The fixed words the stack starts from (a seeded xorshift: they need only look random).
pub fn initial_words() -> Vec<u32> {
    seeded_words(0x9E37_79B9_7F4A_7C15, INITIAL_WORDS)
}

/// `n` words from a xorshift seeded with `seed`, none zero: a stack's fixed starting words.
pub(crate) fn seeded_words(seed: u64, n: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u32 | 1
        })
        .collect()
}

/// Bucket edges Φ⁻¹(i / K), i = 0..=K (±∞ at the ends), and centres Φ⁻¹((i + ½) / K).
fn buckets() -> (Vec<f64>, Vec<f32>) {
    let k = 1usize << LATENT_BITS;
    let n = Gaussian::new(0.0, 1.0);
    let edges = (0..=k)
        .map(|i| match i {
            0 => f64::NEG_INFINITY,
            i if i == k => f64::INFINITY,
            i => n.inverse(i as f64 / k as f64),
        })
        .collect();
    let centres = (0..k)
        .map(|i| n.inverse((i as f64 + 0.5) / k as f64) as f32)
        .collect();
    (edges, centres)
}

/// Φ(x), accurate in both tails.
fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// The posterior's mass on each bucket of one latent dimension.
fn posterior(edges: &[f64], mean: f64, std: f64) -> Vec<f64> {
    let cdf: Vec<f64> = edges.iter().map(|&e| phi((e - mean) / std)).collect();
    cdf.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect()
}

/// The discretized logistic's mass on each of `levels` levels (as
/// `oxgen_models::vae::discretized_logistic`), for one pixel.
fn pixel_probs(mean: f64, log_s: f64, levels: usize) -> Vec<f64> {
    let half = 1.0 / (levels as f64 - 1.0);
    let inv_s = (-log_s.clamp(-7.0, 3.0)).exp();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    (0..levels)
        .map(|k| {
            let v = 2.0 * k as f64 / (levels as f64 - 1.0) - 1.0;
            let hi = if k + 1 == levels {
                1.0
            } else {
                sig((v + half - mean) * inv_s)
            };
            let lo = if k == 0 {
                0.0
            } else {
                sig((v - half - mean) * inv_s)
            };
            (hi - lo).max(0.0)
        })
        .collect()
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

/// q(z | x) of one image: (means, standard deviations).
fn encode_one(vae: &Vae, x: &[f32], device: &Device) -> (Vec<f32>, Vec<f32>) {
    let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, x.len()]), device);
    let (mean, logvar) = vae.encode(t);
    let std = host(logvar.mul_scalar(0.5).exp());
    (host(mean), std)
}

/// The decoder's (mean, log-scale) per pixel for bucket indices `z`.
fn decode_one(vae: &Vae, z: &[usize], centres: &[f32], device: &Device) -> (Vec<f32>, Vec<f32>) {
    let zs: Vec<f32> = z.iter().map(|&i| centres[i]).collect();
    let t = Tensor::<2>::from_data(TensorData::new(zs, [1, z.len()]), device);
    let params = vae.decode(t); // [1, 2, f]
    let [_, _, f] = params.dims();
    let flat = params
        .reshape([2, f])
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32");
    (flat[..f].to_vec(), flat[f..].to_vec())
}

/// What coding gave.
#[derive(Debug)]
pub struct BitsBack {
    /// The stack's words.
    pub words: Vec<u32>,
    /// Bits beyond the initial words: the net length of the images.
    pub net_bits: f64,
}

pub(crate) fn coder_err(e: impl std::fmt::Debug) -> String {
    format!("the ANS coder failed: {e:?}")
}

/// Codes images of levels (`[n][features]`, values in the scale k / (levels−1) · 2 − 1 as
/// `x`) with `vae`.
pub fn encode(
    vae: &Vae,
    images: &[Vec<u32>],
    x: &[Vec<f32>],
    bar: &ProgressBar,
    device: &Device,
) -> Result<BitsBack, String> {
    let (edges, centres) = buckets();
    let levels = vae.levels();
    let init = initial_words();
    let mut ans = DefaultAnsCoder::from_binary(init.clone()).map_err(coder_err)?;
    let start = ans.num_bits();
    // Reverse order, so that the decoder pops image 0 first.
    for (img, xi) in images.iter().zip(x).rev() {
        let (mean, std) = encode_one(vae, xi, device);
        let mut z = Vec::with_capacity(mean.len());
        for (m, s) in mean.iter().zip(&std) {
            let q = from_probabilities(&posterior(&edges, f64::from(*m), f64::from(*s)));
            z.push(ans.decode_symbol(categorical(&q)).map_err(coder_err)?);
        }
        let (pm, ps) = decode_one(vae, &z, &centres, device);
        for j in (0..img.len()).rev() {
            let p = from_probabilities(&pixel_probs(f64::from(pm[j]), f64::from(ps[j]), levels));
            ans.encode_symbol(img[j] as usize, categorical(&p))
                .map_err(coder_err)?;
        }
        for &zi in z.iter().rev() {
            ans.encode_symbol(zi, DefaultUniformModel::new(1 << LATENT_BITS))
                .map_err(coder_err)?;
        }
        bar.inc(1);
    }
    let net_bits = ans.num_bits() as f64 - start as f64;
    Ok(BitsBack {
        words: ans.into_compressed().map_err(coder_err)?,
        net_bits,
    })
}

/// Decodes `n` images of `features` levels each, as [`encode`] coded them; checks that the
/// stack ends as it began.
pub fn decode(
    vae: &Vae,
    words: Vec<u32>,
    n: usize,
    bar: &ProgressBar,
    device: &Device,
) -> Result<Vec<Vec<u32>>, String> {
    let (edges, centres) = buckets();
    let levels = vae.levels();
    let latent = vae.latent();
    let features = vae.features();
    let mut ans = DefaultAnsCoder::from_compressed(words)
        .map_err(|_| "the body ends in a zero word: corrupt".to_string())?;
    let mut images = Vec::with_capacity(n);
    for _ in 0..n {
        let mut z = Vec::with_capacity(latent);
        for _ in 0..latent {
            z.push(
                ans.decode_symbol(DefaultUniformModel::new(1 << LATENT_BITS))
                    .map_err(coder_err)?,
            );
        }
        let (pm, ps) = decode_one(vae, &z, &centres, device);
        let mut img = Vec::with_capacity(features);
        for j in 0..features {
            let p = from_probabilities(&pixel_probs(f64::from(pm[j]), f64::from(ps[j]), levels));
            img.push(ans.decode_symbol(categorical(&p)).map_err(coder_err)? as u32);
        }
        let xi: Vec<f32> = img
            .iter()
            .map(|&k| 2.0 * k as f32 / (levels as f32 - 1.0) - 1.0)
            .collect();
        let (mean, std) = encode_one(vae, &xi, device);
        for (d, (m, s)) in mean.iter().zip(&std).enumerate().rev() {
            let q = from_probabilities(&posterior(&edges, f64::from(*m), f64::from(*s)));
            ans.encode_symbol(z[d], categorical(&q))
                .map_err(coder_err)?;
        }
        images.push(img);
        bar.inc(1);
    }
    let rest = ans
        .into_binary()
        .map_err(|_| "the stack does not end where it began: corrupt body".to_string())?;
    if rest != initial_words() {
        return Err("the stack does not end where it began: corrupt body".into());
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::quantize::PRECISION;

    #[test]
    fn buckets_have_equal_prior_mass_and_the_posterior_sums_to_one() {
        let (edges, centres) = buckets();
        let k = 1usize << LATENT_BITS;
        assert_eq!((edges.len(), centres.len()), (k + 1, k));
        for i in [1, k / 3, k / 2, k - 1] {
            let mass = phi(edges[i + 1]) - phi(edges[i]);
            assert!((mass - 1.0 / k as f64).abs() < 1e-9, "bucket {i}: {mass}");
        }
        let q = posterior(&edges, 0.3, 0.05);
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let f = from_probabilities(&q);
        assert_eq!(f.iter().map(|&x| u64::from(x)).sum::<u64>(), 1 << PRECISION);
        let p = pixel_probs(0.1, -2.0, 17);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
