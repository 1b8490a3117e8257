//! Where DDIM inversion loses the initial noise (the limit of Tree-Ring detection): samples
//! `N` images of a class-conditional diffusion run from known noise by guided DDIM, keeping the
//! trajectory, then inverts
//! - each step alone, from the true x_s (plain, then with `--refine` fixed-point refinements),
//! - the whole chain from the image, and from 1, 2 and 5 steps above it,
//!
//! and prints the relative errors ‖x̂ − x‖/‖x‖ and the recovered noise's cosine with the truth.
//!
//! Run: `cargo run --release --example inversion_loss -- RUN [--guidance G] [--clip C]
//! [--refine K] [--steps S] [-n N] [--end-at-zero]` (`--clip 0`: no clipping of x̂₀;
//! `--end-at-zero`: timesteps from 999 down to 0 instead of the sampler's trailing ones, which
//! end at 1000/S − 1). docs/detection.md reads its output on the MNIST run.

use oxgen::models::ops::denoise::seeded_noise;
use oxgen::models::samplers::trailing_timesteps;
use oxgen::prelude::*;

fn main() -> Result<(), oxgen::Error> {
    let device = Device::flex();
    let mut args = std::env::args().skip(1);
    let run = std::path::PathBuf::from(args.next().expect("usage: inversion_loss RUN [options]"));
    let (mut g, mut clip, mut refine, mut steps, mut n, mut end0) =
        (2f32, 1f32, 2usize, 50, 16, false);
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .expect("a value")
                .parse::<f64>()
                .expect("a number")
        };
        match a.as_str() {
            "--guidance" => g = v() as f32,
            "--clip" => clip = v() as f32,
            "--refine" => refine = v() as usize,
            "--steps" => steps = v() as usize,
            "-n" => n = v() as usize,
            "--end-at-zero" => end0 = true,
            other => panic!("unknown option {other}"),
        }
    }
    let loaded = oxgen::train::sample::load_run(&run, &device)?;
    let cfg = loaded.config.model.clone();
    let model = &loaded.ema;
    let (_, [c, h, w]) = loaded.manifest.shape.layout();
    let f = c * h * w;
    let sched = cfg.noise_schedule();
    let null = model.null_class().expect("a class-conditional run") as i64;
    let mut lv: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    lv.extend(std::iter::repeat_n(null, n));
    let labels = Tensor::<1, Int>::from_data(TensorData::new(lv, [2 * n]), &device);
    let ts: Vec<usize> = if end0 {
        let last = (steps - 1).max(1) as f64;
        (0..steps)
            .map(|i| (999.0 - i as f64 * 999.0 / last).round() as usize)
            .collect()
    } else {
        trailing_timesteps(sched.len(), steps)
    };
    // ε and the clipped x̂₀ the sampler sees at (x, t), guided.
    let eps_at = |x: Tensor<2>, t: usize| {
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; 2 * n], [2 * n]), &device);
        let o = model.forward(
            Tensor::cat(vec![x.clone(), x.clone()], 0),
            tt,
            Some(labels.clone()),
        );
        let (cond, uncond) = (o.clone().slice([0..n]), o.slice([n..2 * n]));
        let out = uncond.clone() + (cond - uncond).mul_scalar(g);
        let ab = sched.alpha_bar(Some(t));
        let (px, po) = cfg.prediction.x0_coeffs(ab);
        let mut x0 = x.clone().mul_scalar(px) + out.mul_scalar(po);
        if clip > 0.0 {
            x0 = x0.clamp(-clip, clip);
        }
        let eps = (x - x0.clone().mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt());
        (eps, x0)
    };
    let ab_after = |i: usize| ts.get(i + 1).map_or(1.0, |&s| sched.alpha_bar(Some(s)));
    let mut x: Tensor<2> = seeded_noise(1, 0, n * f, &device).reshape([n, f]);
    let mut traj = vec![x.clone()];
    for (i, &t) in ts.iter().enumerate() {
        let (eps, x0) = eps_at(x, t);
        let ab_s = ab_after(i);
        x = x0.mul_scalar(ab_s.sqrt()) + eps.mul_scalar((1.0 - ab_s).sqrt());
        traj.push(x.clone());
    }
    let norm = |t: Tensor<2>| -> f32 { t.powf_scalar(2.0).sum().sqrt().into_scalar::<f32>() };
    let rel = |a: &Tensor<2>, b: &Tensor<2>| norm(a.clone() - b.clone()) / norm(b.clone());
    // One inversion step from x_s (after step i) up to x_{t_i}: the plain guess evaluates the
    // model at x_s, then `refine` fixed-point refinements.
    let invert = |x_s: &Tensor<2>, i: usize, k: usize| {
        let (t, ab_s, ab_t) = (ts[i], ab_after(i), sched.alpha_bar(Some(ts[i])));
        let renoise = |eps: Tensor<2>| {
            let x0 =
                (x_s.clone() - eps.clone().mul_scalar((1.0 - ab_s).sqrt())).div_scalar(ab_s.sqrt());
            x0.mul_scalar(ab_t.sqrt()) + eps.mul_scalar((1.0 - ab_t).sqrt())
        };
        let guess = ts.get(i + 1).copied().unwrap_or(t);
        let mut xt = renoise(eps_at(x_s.clone(), guess).0);
        for _ in 0..k {
            xt = renoise(eps_at(xt, t).0);
        }
        xt
    };
    println!("one step from the true x_s (relative error of x_t: plain, refined {refine}×):");
    for i in (0..ts.len()).rev() {
        if i + 3 < ts.len() && i > 2 && i % 10 != 0 {
            continue;
        }
        let (x_t, x_s) = (&traj[i], &traj[i + 1]);
        println!(
            "  t = {:4}: step size {:.4}, plain {:.4}, refined {:.4}",
            ts[i],
            rel(x_s, x_t),
            rel(&invert(x_s, i, 0), x_t),
            rel(&invert(x_s, i, refine), x_t)
        );
    }
    let z = &traj[0];
    for skip in [0usize, 1, 2, 5] {
        let top = ts.len() - skip;
        let mut x = traj[top].clone();
        for i in (0..top).rev() {
            x = invert(&x, i, refine);
        }
        let cos =
            (x.clone() * z.clone()).sum().into_scalar::<f32>() / norm(x.clone()) / norm(z.clone());
        println!(
            "chain from {} (t = {}): noise relative error {:.4}, cosine {:.4}",
            if skip == 0 {
                "the image".to_string()
            } else {
                format!("{skip} step(s) above it")
            },
            ts.get(top).map_or("image".into(), |t| t.to_string()),
            rel(&x, z),
            cos
        );
    }
    Ok(())
}
