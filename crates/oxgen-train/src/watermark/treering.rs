//! Tree-Ring watermarks for diffusion (Wen, Kirchenbauer, Geiping & Goldstein, 2023, "Tree-Ring
//! Watermarks: Fingerprints for Diffusion Images that are Invisible and Robust").
//!
//! The key fixes a pattern of concentric rings in the 2-D Fourier transform of the initial
//! noise: every frequency within `radius` of the origin (and at least `inner` from it: an
//! annulus leaves the lowest frequencies, where a small image keeps its shape, to the model) gets
//! the value of its ring (real, drawn from the key), the rest of the noise is untouched. Sampling then runs from that noise. The
//! detector inverts an image back to its noise by deterministic DDIM and compares the noise's
//! Fourier coefficients inside the pattern with the key's:
//!
//! ```text
//! η = Σ_{independent coefficients j in the pattern} ((y_j − k_j) / s_j)²
//! ```
//!
//! For noise the key did not shape, the coefficients are Gaussian around 0 with the variances
//! s_j² (h·w for the real self-conjugate ones, h·w/2 for each part of the others, scaled by the
//! image's own spectrum outside the pattern), so η follows a noncentral χ² with as many degrees
//! of freedom as terms and noncentrality λ = Σ (k_j / s_j)²; the p-value is P(χ²(k, λ) ≤ η):
//! watermarked noise lands near the key, and η is small.

use oxgen_models::ar::watermark::WatermarkKey;
use probability::distribution::{Distribution, Gamma};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution as _, StandardNormal};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::Serialize;

/// A Tree-Ring watermark.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeRing {
    /// The key.
    pub key: WatermarkKey,
    /// The pattern's radius in frequency steps.
    pub radius: f64,
    /// The pattern's inner radius: frequencies nearer the origin are left alone (0: a disc, as
    /// in the paper).
    pub inner: f64,
}

/// One coefficient of the pattern.
#[derive(Clone, Copy, Debug)]
struct Cell {
    /// Row-major index in the h × w spectrum.
    at: usize,
    /// Its conjugate partner's index (itself when self-conjugate).
    partner: usize,
    /// The key's value there.
    value: f64,
}

/// What the detector found in one image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RingScore {
    /// η: the standardised squared distance to the key.
    pub eta: f64,
    /// Its degrees of freedom.
    pub dof: usize,
    /// P(χ²(dof, λ) ≤ η): small for a watermarked image.
    pub p: f64,
}

fn fft2(data: &mut [Complex<f64>], h: usize, w: usize, inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let (row, col) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    for r in data.chunks_exact_mut(w) {
        row.process(r);
    }
    let mut column = vec![Complex::new(0.0, 0.0); h];
    for c in 0..w {
        for r in 0..h {
            column[r] = data[r * w + c];
        }
        col.process(&mut column);
        for r in 0..h {
            data[r * w + c] = column[r];
        }
    }
}

/// The signed frequency of FFT index `u` of `n`.
fn freq(u: usize, n: usize) -> f64 {
    if u <= n / 2 {
        u as f64
    } else {
        u as f64 - n as f64
    }
}

impl TreeRing {
    /// Refuses a radius that is not positive, and an inner radius outside [0, radius].
    pub fn validate(&self) -> Result<(), String> {
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(format!(
                "the Tree-Ring radius must be positive, got {}",
                self.radius
            ));
        }
        if !(self.inner.is_finite() && self.inner >= 0.0 && self.inner <= self.radius) {
            return Err(format!(
                "the Tree-Ring inner radius must lie in [0, radius = {}], got {}",
                self.radius, self.inner
            ));
        }
        Ok(())
    }

    /// Refuses a pattern with no cell on an h × w spectrum.
    pub fn validate_for(&self, h: usize, w: usize) -> Result<(), String> {
        self.validate()?;
        if self.cells(h, w).is_empty() {
            return Err(format!(
                "the Tree-Ring pattern {} ≤ r ≤ {} holds no frequency of a {h}×{w} image",
                self.inner, self.radius
            ));
        }
        Ok(())
    }

    /// The pattern on an h × w spectrum: every cell within the annulus, with its ring's value
    /// (rings at integer radii, values N(0, h·w) from the key).
    fn cells(&self, h: usize, w: usize) -> Vec<Cell> {
        let rings = self.radius.ceil() as usize + 1;
        let mut rng = StdRng::seed_from_u64(self.key.stream_seed(0x7EE));
        let scale = ((h * w) as f64).sqrt();
        let values: Vec<f64> = (0..rings)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                z * scale
            })
            .collect();
        let mut out = Vec::new();
        for u in 0..h {
            for v in 0..w {
                let r = freq(u, h).hypot(freq(v, w));
                if r <= self.radius && r >= self.inner {
                    let partner = ((h - u) % h) * w + (w - v) % w;
                    out.push(Cell {
                        at: u * w + v,
                        partner,
                        value: values[r.round() as usize],
                    });
                }
            }
        }
        out
    }

    /// Writes the pattern into one image's noise (`h × w`, one channel), in place.
    pub fn mark(&self, noise: &mut [f32], h: usize, w: usize) {
        let mut spec: Vec<Complex<f64>> = noise
            .iter()
            .map(|&x| Complex::new(f64::from(x), 0.0))
            .collect();
        fft2(&mut spec, h, w, false);
        for c in self.cells(h, w) {
            spec[c.at] = Complex::new(c.value, 0.0);
        }
        fft2(&mut spec, h, w, true);
        let n = (h * w) as f64;
        for (x, s) in noise.iter_mut().zip(&spec) {
            *x = (s.re / n) as f32;
        }
    }

    /// Scores one image's inverted noise (`h × w`).
    pub fn score(&self, noise: &[f32], h: usize, w: usize) -> RingScore {
        let mut spec: Vec<Complex<f64>> = noise
            .iter()
            .map(|&x| Complex::new(f64::from(x), 0.0))
            .collect();
        fft2(&mut spec, h, w, false);
        let cells = self.cells(h, w);
        let mut inside = vec![false; h * w];
        for c in &cells {
            inside[c.at] = true;
        }
        // The image's own spectral scale, from outside the pattern (1 for white noise).
        let outside: Vec<f64> = spec
            .iter()
            .zip(&inside)
            .filter(|(_, i)| !**i)
            .map(|(y, _)| y.norm_sqr() / (h * w) as f64)
            .collect();
        let scale = if outside.is_empty() {
            1.0
        } else {
            (outside.iter().sum::<f64>() / outside.len() as f64).max(1e-12)
        };
        let (mut eta, mut lambda, mut dof) = (0.0, 0.0, 0usize);
        for c in cells.iter().filter(|c| c.at <= c.partner) {
            let y = spec[c.at];
            if c.at == c.partner {
                let s2 = scale * (h * w) as f64;
                eta += (y.re - c.value).powi(2) / s2;
                lambda += c.value.powi(2) / s2;
                dof += 1;
            } else {
                let s2 = scale * (h * w) as f64 / 2.0;
                eta += ((y.re - c.value).powi(2) + y.im.powi(2)) / s2;
                lambda += c.value.powi(2) / s2;
                dof += 2;
            }
        }
        RingScore {
            eta,
            dof,
            p: noncentral_chi2_cdf(eta, dof as f64, lambda),
        }
    }
}

/// P(χ²(k, λ) ≤ x): the Poisson(λ/2) mixture of central χ²(k + 2j) distributions.
pub fn noncentral_chi2_cdf(x: f64, k: f64, lambda: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let half = lambda / 2.0;
    let mut total = 0.0;
    let mut weight = (-half).exp();
    let mut j = 0usize;
    loop {
        let cdf = Gamma::new((k + 2.0 * j as f64) / 2.0, 2.0).distribution(x);
        total += weight * cdf;
        j += 1;
        weight *= half / j as f64;
        if (j as f64 > half && weight < 1e-17) || j > 10_000 {
            break;
        }
    }
    total.clamp(0.0, 1.0)
}

/// The area under the ROC curve of scores where lower means "watermarked": the probability
/// that a marked image scores below a clean one (ties count half).
pub fn auc(marked: &[f64], clean: &[f64]) -> f64 {
    let mut wins = 0.0;
    for m in marked {
        for c in clean {
            wins += if m < c {
                1.0
            } else if m == c {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (marked.len() * clean.len()).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(radius: f64) -> TreeRing {
        TreeRing {
            key: WatermarkKey::from_words(3, 4),
            radius,
            inner: 0.0,
        }
    }

    /// χ²(2) has CDF 1 − e^(−x/2): at x = 2, 0.6321206. The noncentral χ²(2, λ = 1) at x = 2 is
    /// Σ_j e^(−½) (½)^j / j! · (1 − e^(−1) Σ_{i ≤ j} 1/i!) = 0.4698696 (even degrees of freedom
    /// have that closed form; the sum taken to 60 terms by hand, in Python).
    #[test]
    fn chi_square_tails_by_hand() {
        assert!((noncentral_chi2_cdf(2.0, 2.0, 0.0) - 0.632_120_6).abs() < 1e-6);
        assert!((noncentral_chi2_cdf(2.0, 2.0, 1.0) - 0.469_869_6).abs() < 1e-6);
        assert_eq!(noncentral_chi2_cdf(0.0, 3.0, 2.0), 0.0);
    }

    /// Marking keeps the noise real and puts the key's values in the pattern: the marked noise
    /// scores η near 0 and p tiny; white noise scores p spread over (0, 1) with no mass at 0.
    #[test]
    fn marked_noise_scores_near_the_key_and_white_noise_does_not() {
        let (h, w) = (8, 8);
        let t = ring(2.0);
        let mut rng = StdRng::seed_from_u64(9);
        let mut low = 0;
        for _ in 0..400 {
            let mut noise: Vec<f32> = (0..h * w)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let clean = t.score(&noise, h, w);
            assert!(
                clean.p > 0.0 && clean.p <= 1.0 && clean.dof == 13,
                "{clean:?}"
            );
            low += usize::from(clean.p < 0.01);
            t.mark(&mut noise, h, w);
            let marked = t.score(&noise, h, w);
            assert!(marked.eta < 1e-6 && marked.p < 1e-6, "{marked:?}");
        }
        assert!(low <= 16, "{low} of 400 clean noises below p = 0.01");
        // Another key's pattern is not found in this key's noise.
        let mut noise: Vec<f32> = (0..h * w)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        t.mark(&mut noise, h, w);
        let other = TreeRing {
            key: WatermarkKey::from_words(5, 6),
            radius: 2.0,
            inner: 0.0,
        };
        assert!(other.score(&noise, h, w).p > 1e-3);
        assert!(ring(0.0).validate().is_err());
        assert!(
            TreeRing {
                inner: 3.0,
                ..ring(2.0)
            }
            .validate()
            .is_err()
        );
        assert!(
            TreeRing {
                inner: -1.0,
                ..ring(2.0)
            }
            .validate()
            .is_err()
        );
        assert!((auc(&[0.1, 0.2], &[0.3, 0.4]) - 1.0).abs() < 1e-12);
        assert!((auc(&[0.5], &[0.5]) - 0.5).abs() < 1e-12);
    }

    /// An annulus leaves the low frequencies alone: on 28×28, 3 ≤ r ≤ 6 marks 88 cells
    /// (the lattice points of the disc of radius 6, 113, less those of radius
    /// under 3, 25), white noise's p-values are spread and marked noise scores near the key; the
    /// image's mean (the DC term) does not change. A pattern with no cell on the image is
    /// refused.
    #[test]
    fn an_annulus_marks_only_its_frequencies() {
        let (h, w) = (28, 28);
        let t = TreeRing {
            inner: 3.0,
            ..ring(6.0)
        };
        assert_eq!(t.cells(h, w).len(), 113 - 25);
        let mut rng = StdRng::seed_from_u64(4);
        let mut low = 0;
        for _ in 0..200 {
            let mut noise: Vec<f32> = (0..h * w)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let mean = |x: &[f32]| x.iter().map(|v| f64::from(*v)).sum::<f64>() / x.len() as f64;
            let before = mean(&noise);
            let clean = t.score(&noise, h, w);
            low += usize::from(clean.p < 0.01);
            t.mark(&mut noise, h, w);
            assert!((mean(&noise) - before).abs() < 1e-5);
            let marked = t.score(&noise, h, w);
            assert!(marked.eta < 1e-6 && marked.p < 1e-6, "{marked:?}");
        }
        assert!(low <= 8, "{low} of 200 clean noises below p = 0.01");
        let empty = TreeRing {
            inner: 6.0,
            ..ring(7.0)
        };
        assert!(empty.validate().is_ok() && empty.validate_for(8, 8).is_err());
        assert!(t.validate_for(h, w).is_ok());
    }
}
