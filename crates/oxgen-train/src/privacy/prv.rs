//! The PRV accountant (Gopi, Lee & Wutschitz 2021, "Numerical Composition of Differential
//! Privacy"): the privacy loss random variable of each step, discretised on a grid of width
//! chosen from the error targets, composed by FFT (`rustfft`), and read off as ε, as
//! `prv_accountant` and Opacus's `PRVAccountant` compute it.
//!
//! The PRV Y of one Poisson-subsampled Gaussian step (the paper's propositions B1 and B4), for
//! t > ln(1 − q) with z = ln((eᵗ + q − 1)/q):
//!
//! ```text
//! P(Y ≤ t) = 1 − q/2·erfc((2zσ² − 1)/(2√2σ)) − (1 − q)/2·erfc((2zσ² + 1)/(2√2σ))
//! ```
//!
//! The grid spans ±L (L from the RDP bound at δ_err/4, remark 5.6) with mesh
//! ε_err/√(N·ln(12/δ_err)/2); each cell's mass is the CDF's difference, the grid is shifted so
//! its mean equals the truncated PRV's, N compositions are one FFT power, and
//!
//! ```text
//! δ(ε) = Σ_{t ≥ ε} p(t)·(1 − e^{ε − t}),  ε_upper = ε(δ − δ_err) + ε_err
//! ```

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::special::integrate;
use super::{Phase, rdp};
use crate::{Error, Result};

fn cdf(q: f64, sigma: f64, t: f64) -> f64 {
    if t <= (1.0 - q).ln() {
        return 0.0;
    }
    let z = ((t.exp() + q - 1.0) / q).ln();
    let s = 2.0 * std::f64::consts::SQRT_2 * sigma;
    let s2 = sigma * sigma;
    -q * libm::erfc((2.0 * z * s2 - 1.0) / s) / 2.0
        - (1.0 - q) * libm::erfc((2.0 * z * s2 + 1.0) / s) / 2.0
        + 1.0
}

/// The PRV of one phase truncated to [t_min, t_max].
struct Truncated {
    q: f64,
    sigma: f64,
    t_min: f64,
    t_max: f64,
    lo: f64,
    mass: f64,
}

impl Truncated {
    fn new(p: &Phase, t_min: f64, t_max: f64) -> Self {
        let lo = cdf(p.q, p.sigma, t_min);
        Truncated {
            q: p.q,
            sigma: p.sigma,
            t_min,
            t_max,
            lo,
            mass: cdf(p.q, p.sigma, t_max) - lo,
        }
    }

    fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (cdf(self.q, self.sigma, t) - self.lo) / self.mass
        } else {
            1.0
        }
    }

    /// E[Y] = Σ over pieces [r·F(r) − l·F(l) − ∫ₗʳ F], on Opacus's break points (log-spaced
    /// towards 0 from both sides).
    fn mean(&self) -> f64 {
        let lower = self.t_min.abs().log10() as i32;
        let upper = self.t_max.log10() as i32;
        let logspace = |a: f64, b: f64| -> Vec<f64> {
            (0..10)
                .map(|i| 10f64.powf(a + (b - a) * i as f64 / 9.0))
                .collect()
        };
        let mut points = vec![self.t_min];
        points.extend(logspace(f64::from(lower), -5.0).into_iter().map(|x| -x));
        points.push(0.0);
        points.extend(logspace(-5.0, f64::from(upper)));
        points.push(self.t_max);
        let f = |t: f64| self.cdf(t);
        points
            .windows(2)
            .map(|w| {
                let (l, r) = (w[0], w[1]);
                r * f(r) - l * f(l) - integrate(&f, l, r, 1e-14)
            })
            .sum()
    }
}

/// A discretised PRV: masses on `size` points from `t_min` by `dt`.
struct Discrete {
    pmf: Vec<f64>,
    t_min: f64,
    t_max: f64,
    shift: f64,
}

impl Discrete {
    fn ts(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.pmf.len();
        let dt = (self.t_max - self.t_min) / (n - 1) as f64;
        (0..n).map(move |i| {
            if i + 1 == n {
                self.t_max
            } else {
                self.t_min + i as f64 * dt
            }
        })
    }
}

/// The grid: aligned to multiples of `dt`, with an even number of points.
fn grid(t_min: f64, t_max: f64, dt: f64) -> (f64, f64, usize) {
    let lo = (t_min / dt).floor() * dt;
    let mut hi = (t_max / dt).ceil() * dt;
    let mut size = ((hi - lo) / dt).round() as usize + 1;
    if size % 2 == 1 {
        size += 1;
        hi += dt;
    }
    (lo, hi, size)
}

fn discretise(p: &Phase, lo: f64, hi: f64, size: usize) -> Result<Discrete> {
    let tr = Truncated::new(p, lo, hi);
    let dt = (hi - lo) / (size - 1) as f64;
    let mut d = Discrete {
        pmf: vec![0.0; size],
        t_min: lo,
        t_max: hi,
        shift: 0.0,
    };
    let ts: Vec<f64> = d.ts().collect();
    d.pmf = ts
        .iter()
        .map(|&t| tr.cdf(t + dt / 2.0) - tr.cdf(t - dt / 2.0))
        .collect();
    let mean_d: f64 = ts.iter().zip(&d.pmf).map(|(t, p)| t * p).sum();
    let shift = tr.mean() - mean_d;
    if shift.abs() >= dt / 2.0 {
        return Err(Error::Privacy {
            parameter: "eps_error",
            reason: format!(
                "the PRV grid's mean is {shift:e} off the continuous mean (over half a cell of {dt:e}); use a smaller eps_error"
            ),
        });
    }
    d.t_min += shift;
    d.t_max += shift;
    d.shift = shift;
    Ok(d)
}

fn fft(x: &mut [Complex<f64>], inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let plan = if inverse {
        planner.plan_fft_inverse(x.len())
    } else {
        planner.plan_fft_forward(x.len())
    };
    plan.process(x);
}

/// `n` self-compositions by one FFT power, rolled back to the centre.
fn compose_self(d: &Discrete, n: u64) -> Discrete {
    let size = d.pmf.len();
    let mut x: Vec<Complex<f64>> = d.pmf.iter().map(|&p| Complex::new(p, 0.0)).collect();
    fft(&mut x, false);
    for c in &mut x {
        let (r, th) = c.to_polar();
        *c = Complex::from_polar(r.powf(n as f64), th * n as f64);
    }
    fft(&mut x, true);
    let mut m = (n - 1) as usize;
    if n % 2 == 0 {
        m += size / 2;
    }
    let mut pmf = vec![0.0; size];
    for (i, c) in x.iter().enumerate() {
        pmf[(i + m) % size] = c.re / size as f64;
    }
    let extra = d.shift * (n - 1) as f64;
    Discrete {
        pmf,
        t_min: d.t_min + extra,
        t_max: d.t_max + extra,
        shift: d.shift + extra,
    }
}

/// Two discretised PRVs composed by linear convolution, keeping the centred `size` points.
fn compose_two(a: &Discrete, b: &Discrete) -> Discrete {
    let size = a.pmf.len();
    let full = 2 * size - 1;
    let len = full.next_power_of_two();
    let pad = |p: &[f64]| {
        let mut v: Vec<Complex<f64>> = p.iter().map(|&x| Complex::new(x, 0.0)).collect();
        v.resize(len, Complex::new(0.0, 0.0));
        fft(&mut v, false);
        v
    };
    let (fa, fb) = (pad(&a.pmf), pad(&b.pmf));
    let mut c: Vec<Complex<f64>> = fa.iter().zip(&fb).map(|(x, y)| x * y).collect();
    fft(&mut c, true);
    let start = (full - size) / 2;
    let pmf = (0..size).map(|i| c[start + i].re / len as f64).collect();
    Discrete {
        pmf,
        t_min: a.t_min + b.shift,
        t_max: a.t_max + b.shift,
        shift: a.shift + b.shift,
    }
}

/// The error targets of the PRV accountant (Opacus's defaults: ε_err 0.01, δ_err δ/1000).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrvOptions {
    /// Acceptable error in ε (added to the estimate for the upper bound).
    pub eps_error: f64,
    /// Acceptable error in δ, as a share of δ.
    pub delta_error_share: f64,
}

impl Default for PrvOptions {
    fn default() -> Self {
        PrvOptions {
            eps_error: 0.01,
            delta_error_share: 1e-3,
        }
    }
}

/// The bounds and estimate the PRV accountant gives: (lower, estimate, upper).
pub fn epsilon_bounds(history: &[Phase], delta: f64, opts: &PrvOptions) -> Result<(f64, f64, f64)> {
    let (eps_error, delta_error) = (opts.eps_error, delta * opts.delta_error_share);
    let total: u64 = history.iter().map(|p| p.steps).sum();
    if history.is_empty() || total == 0 {
        return Ok((0.0, 0.0, 0.0));
    }
    // The domain (remark 5.6): the RDP bound at δ_err/4 for the whole run, and at
    // δ_err/(8·N) for one step of each phase.
    let orders = rdp::default_orders();
    let mut l = rdp::epsilon(history, delta_error / 4.0, &orders).0;
    for p in history {
        let one = Phase { steps: 1, ..*p };
        l = l.max(rdp::epsilon(&[one], delta_error / (8.0 * total as f64), &orders).0);
    }
    let l = l.max(eps_error) + 3.0;
    let mesh = eps_error / (total as f64 * (12.0 / delta_error).ln() / 2.0).sqrt();
    let (lo, hi, size) = grid(-l, l, mesh);
    if size > 1 << 28 {
        return Err(Error::Privacy {
            parameter: "steps",
            reason: format!("the PRV grid would need {size} points; use the RDP accountant"),
        });
    }
    let mut parts = Vec::with_capacity(history.len());
    for p in history.iter().filter(|p| p.steps > 0) {
        parts.push(compose_self(&discretise(p, lo, hi, size)?, p.steps));
    }
    while parts.len() > 1 {
        let mut next = Vec::new();
        if parts.len() % 2 == 1 {
            next.push(parts.pop().expect("non-empty"));
        }
        for pair in parts.chunks(2) {
            next.push(compose_two(&pair[0], &pair[1]));
        }
        parts = next;
    }
    let d = &parts[0];
    if 1.08e-19 * size as f64 > delta - delta_error {
        return Err(Error::Privacy {
            parameter: "delta",
            reason: format!("δ = {delta:e} is too small for the PRV grid's rounding"),
        });
    }
    let ts: Vec<f64> = d.ts().collect();
    let n = ts.len();
    let (mut d1, mut d2) = (vec![0.0; n], vec![0.0; n]);
    let (mut s1, mut s2) = (0.0, 0.0);
    for i in (0..n).rev() {
        s1 += d.pmf[i];
        s2 += d.pmf[i] * (-ts[i]).exp();
        d1[i] = s1;
        d2[i] = s2;
    }
    let ndelta: Vec<f64> = (0..n).map(|i| ts[i].exp() * d2[i] - d1[i]).collect();
    let find = |target: f64| -> Result<f64> {
        // The first index whose −δ(t) reaches −target (the array rises).
        let i = ndelta.partition_point(|&v| v < -target);
        if i == 0 || i >= n {
            return Err(Error::Privacy {
                parameter: "delta",
                reason: format!("ε at δ = {target:e} lies outside the PRV grid"),
            });
        }
        Ok(((d1[i] - target) / d2[i]).ln())
    };
    Ok((
        find(delta + delta_error)? - eps_error,
        find(delta)?,
        find(delta - delta_error)? + eps_error,
    ))
}

/// ε at `delta`: the PRV accountant's upper bound, as Opacus reports it.
pub fn epsilon(history: &[Phase], delta: f64, opts: &PrvOptions) -> Result<f64> {
    epsilon_bounds(history, delta, opts).map(|(_, _, upper)| upper)
}
