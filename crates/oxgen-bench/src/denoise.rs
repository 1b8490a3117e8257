//! The denoising-update benchmark shared by `oxgen bench denoise` and `benches/denoise.rs`.
//!
//! For each update family and size, in one run on one device:
//! - **fused**: the WGSL kernel, noise drawn in registers;
//! - **reference**: the same update as burn tensor ops on burn's default wgpu device (fusion
//!   on, its best path), with the noise drawn on the device by burn (`Tensor::random`);
//! - **unfused**: the same ops on burn's `CubeBackend` directly, which is what the wgpu backend
//!   runs when it is built without its `fusion` feature: one kernel and one buffer per op;
//! - **copy**: the roofline, the better of a vec4 WGSL copy kernel (`shaders/copy.wgsl`) and
//!   burn's fused `x + 1`.
//!
//! Every output is kept alive: each update's result feeds the next one's input, and the device is
//! synchronised after every update, as a sampler's model forward would force. Without that,
//! burn's fusion merges the whole chain of reference updates into one kernel (and drops work
//! whose result nobody reads), which no real sampler can do.
//!
//! [`sampler`] times whole sampling runs (UNet forward included) on the fused and reference
//! paths.

use std::time::Instant;

use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::backend::{Backend, DispatchDevice};
use burn::tensor::{Device, Distribution, FloatDType, Tensor, TensorData};
use oxgen_models::ops::denoise::{
    self, DenoiseInput, DenoiseOutput, FusedDenoise, Noise, OpPath, StepCoeffs,
    denoise_step_reference,
};
use serde::Serialize;

use oxgen_wgpu::denoise::WgslDenoise;

/// One row of the update table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Update family.
    pub update: String,
    /// Elements per update.
    pub n: usize,
    /// Bytes one update must move (read inputs + write x_{t−1}, and x̂₀ where it is read).
    pub bytes: usize,
    /// Fused kernel, median milliseconds per update.
    pub fused_ms: f64,
    /// Reference on burn's fused default device, median milliseconds per update.
    pub reference_ms: f64,
    /// Reference on burn's unfused `CubeBackend`, median milliseconds per update.
    pub unfused_ms: f64,
    /// Fused effective bandwidth, GB/s.
    pub fused_gbps: f64,
    /// Reference (fusion on) effective bandwidth, GB/s.
    pub reference_gbps: f64,
    /// reference_ms / fused_ms.
    pub speedup: f64,
    /// unfused_ms / fused_ms.
    pub speedup_unfused: f64,
    /// Copy bandwidth (read n + write n floats) measured in the same run, GB/s: the better of
    /// the vec4 copy kernel and burn's fused `x + 1`.
    pub copy_gbps: f64,
    /// The vec4 copy kernel alone, GB/s.
    pub copy_kernel_gbps: f64,
    /// burn's fused `x + 1` alone, GB/s.
    pub burn_copy_gbps: f64,
    /// fused_gbps / copy_gbps.
    pub roofline_fraction: f64,
}

/// One update family: name, scalars, and whether it reads an unconditional output (guidance)
/// and a previous x̂₀ (multistep).
pub struct Family {
    /// Name in the table.
    pub name: &'static str,
    /// The update's scalars.
    pub coeffs: StepCoeffs,
    /// Classifier-free guidance combine.
    pub guided: bool,
    /// Multistep: reads the previous x̂₀ and writes this one.
    pub prev: bool,
}

/// The four update families of issue 3.
pub fn families() -> Vec<Family> {
    let c = StepCoeffs {
        guidance: 1.0,
        px: 1.2,
        po: -0.6,
        clip: None,
        cx: 0.9,
        c0: 0.3,
        cp: 0.0,
        sigma: 0.1,
    };
    let f = |name, coeffs, guided, prev| Family {
        name,
        coeffs,
        guided,
        prev,
    };
    vec![
        f("ddpm", c, false, false),
        f("ddim(eta=0)", StepCoeffs { sigma: 0.0, ..c }, false, false),
        f(
            "euler_ancestral+cfg",
            StepCoeffs { guidance: 3.0, ..c },
            true,
            false,
        ),
        f(
            "dpm++2m",
            StepCoeffs {
                sigma: 0.0,
                cp: -0.2,
                ..c
            },
            false,
            true,
        ),
    ]
}

/// Median milliseconds of `iters` calls of `step`, after one warm-up call (which compiles the
/// kernels). `sync` waits for the device.
fn median_ms<S>(iters: usize, mut state: S, mut step: impl FnMut(S) -> S, sync: impl Fn()) -> f64 {
    state = step(state);
    sync();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        state = step(state);
        sync();
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    drop(state);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The reference update written with `CubeBackend`'s own ops: no fusion, one kernel per op.
fn unfused_step(
    x: CubeTensor,
    out: &CubeTensor,
    uncond: Option<&CubeTensor>,
    prev: Option<&CubeTensor>,
    c: StepCoeffs,
    device: &<CubeBackend as burn::backend::BackendTypes>::Device,
) -> (CubeTensor, CubeTensor) {
    type B = CubeBackend;
    let out = match uncond {
        Some(u) => B::float_add(
            u.clone(),
            B::float_mul_scalar(B::float_sub(out.clone(), u.clone()), c.guidance.into()),
        ),
        None => out.clone(),
    };
    let mut x0 = B::float_add(
        B::float_mul_scalar(x.clone(), c.px.into()),
        B::float_mul_scalar(out, c.po.into()),
    );
    if let Some(clip) = c.clip {
        x0 = B::float_clamp(x0, (-clip).into(), clip.into());
    }
    let mut next = B::float_add(
        B::float_mul_scalar(x.clone(), c.cx.into()),
        B::float_mul_scalar(x0.clone(), c.c0.into()),
    );
    if let Some(p) = prev.filter(|_| c.cp != 0.0) {
        next = B::float_add(next, B::float_mul_scalar(p.clone(), c.cp.into()));
    }
    if c.sigma != 0.0 {
        let z = B::float_random(
            x.meta.shape().clone(),
            Distribution::Normal(0.0, 1.0),
            device,
            FloatDType::F32,
        );
        next = B::float_add(next, B::float_mul_scalar(z, c.sigma.into()));
    }
    (next, x0)
}

fn cube_device(device: &Device) -> <CubeBackend as burn::backend::BackendTypes>::Device {
    match device.as_dispatch() {
        DispatchDevice::Cube(d) => d.clone(),
        other => panic!("the denoise benchmark needs a wgpu device, got {other:?}"),
    }
}

/// Runs the update benchmark on `device` for element counts `sizes`, `iters` timed updates each.
pub fn run(device: &Device, sizes: &[usize], iters: usize) -> Vec<Row> {
    let cube = cube_device(device);
    let sync = || device.sync().expect("device sync");
    let sync_cube = || CubeBackend::sync(&cube).expect("device sync");
    let mut rows = Vec::new();
    for &n in sizes {
        let normal = || Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), device);
        let (x, other) = (normal(), normal());
        let burn_copy_ms = median_ms(iters, x.clone(), |t| t.add_scalar(1.0), sync);
        // The copy kernel needs a multiple of 4 elements; copying ≤ 3 fewer changes nothing.
        let n4 = n - n % 4;
        let copy_kernel_gbps = if n4 == 0 {
            0.0
        } else {
            let ms = median_ms(iters, normal().slice([0..n4]), oxgen_wgpu::copy::copy, sync);
            (8 * n4) as f64 / ms / 1e6
        };
        let burn_copy_gbps = (8 * n) as f64 / burn_copy_ms / 1e6;
        let copy_gbps = burn_copy_gbps.max(copy_kernel_gbps);
        let host = |t: &Tensor<1>| t.to_data();
        let to_cube = |d: TensorData| CubeBackend::float_from_data(d, &cube);
        let (x_data, other_data) = (host(&x), host(&other));
        for Family {
            name,
            coeffs: c,
            guided,
            prev,
        } in families()
        {
            // State: (x_t, x̂₀ of the previous update). The multistep solver's x̂₀ is the next
            // update's previous x̂₀, so it is consumed (and cannot be dropped by fusion).
            let input = |(x, p): (Tensor<1>, Tensor<1>)| DenoiseInput {
                x,
                out: other.clone(),
                uncond: guided.then(|| other.clone()),
                prev_x0: prev.then_some(p),
                want_x0: prev,
                threshold: None,
            };
            let keep = |r: DenoiseOutput| (r.x, r.x0);
            let seeded = if c.sigma > 0.0 {
                Noise::Seeded { seed: 1, stream: 0 }
            } else {
                Noise::None
            };
            let start = (x.clone(), other.clone());
            let fused_ms = median_ms(
                iters,
                start.clone(),
                |s| keep(WgslDenoise.step(input(s), c, seeded.clone())),
                sync,
            );
            let reference_ms = median_ms(
                iters,
                start,
                |s| {
                    let z = (c.sigma > 0.0)
                        .then(normal)
                        .map_or(Noise::None, Noise::Explicit);
                    keep(denoise_step_reference(input(s), c, z))
                },
                sync,
            );
            let out_c = to_cube(other_data.clone());
            let unfused_ms = median_ms(
                iters,
                (to_cube(x_data.clone()), to_cube(other_data.clone())),
                |(x, p)| {
                    unfused_step(
                        x,
                        &out_c,
                        guided.then_some(&out_c),
                        prev.then_some(&p),
                        c,
                        &cube,
                    )
                },
                sync_cube,
            );
            // Must move: x, out, optional uncond and prev, x_{t−1}, and x̂₀ for the multistep
            // solver; the noise is generated.
            let bytes = 4 * n * (3 + guided as usize + 2 * prev as usize);
            let fused_gbps = bytes as f64 / fused_ms / 1e6;
            rows.push(Row {
                update: name.into(),
                n,
                bytes,
                fused_ms,
                reference_ms,
                unfused_ms,
                fused_gbps,
                reference_gbps: bytes as f64 / reference_ms / 1e6,
                speedup: reference_ms / fused_ms,
                speedup_unfused: unfused_ms / fused_ms,
                copy_gbps,
                copy_kernel_gbps,
                burn_copy_gbps,
                roofline_fraction: fused_gbps / copy_gbps,
            });
        }
    }
    rows
}

/// The update rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| update | n | fused ms | fusion-on ms | fusion-off ms | × fusion on | × fusion off | fused GB/s | copy GB/s | of copy |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.2}× | {:.2}× | {:.1} | {:.1} | {:.0}% |\n",
            r.update,
            r.n,
            r.fused_ms,
            r.reference_ms,
            r.unfused_ms,
            r.speedup,
            r.speedup_unfused,
            r.fused_gbps,
            r.copy_gbps,
            100.0 * r.roofline_fraction
        ));
    }
    s
}

/// Element counts from `sizes` whose buffers fit the device's largest storage binding; the rest
/// are returned separately so the caller can say they were skipped.
pub fn fitting(sizes: &[usize], max_binding_bytes: u64) -> (Vec<usize>, Vec<usize>) {
    sizes
        .iter()
        .partition(|&&n| max_binding_bytes == 0 || 4 * n as u64 <= max_binding_bytes)
}

/// One whole-sampler timing.
#[derive(Clone, Debug, Serialize)]
pub struct SamplerRow {
    /// Sampler and steps, e.g. "ddpm×1000".
    pub sampler: String,
    /// Images per run.
    pub batch: usize,
    /// Image shape [c, h, w].
    pub shape: [usize; 3],
    /// Seconds with every op on its fused kernel where one applies (what a user gets).
    pub fused_s: f64,
    /// Seconds with every op on its reference (burn's fused path; host Philox noise).
    pub reference_s: f64,
    /// reference_s / fused_s.
    pub speedup: f64,
}

/// Times whole sampling runs with the default UNet (random weights: the cost does not depend on
/// them): a 1,000-step DDPM and a 50-step DDIM, on the fused and the reference update path.
pub fn sampler(device: &Device, batch: usize, shape: [usize; 3]) -> Vec<SamplerRow> {
    use oxgen_models::diffusion::unet::UNetConfig;
    use oxgen_models::diffusion::{
        DataShape, DenoiserConfig, DiffusionConfig, SampleConfig, sample,
    };
    use oxgen_models::samplers::SamplerKind;
    let config = DiffusionConfig::new(DenoiserConfig::UNet(UNetConfig::new()));
    let [channels, height, width] = shape;
    let model = config.init(
        DataShape::Image {
            channels,
            height,
            width,
        },
        device,
    );
    let before = denoise::path();
    let mut rows = Vec::new();
    for (kind, steps, label) in [
        (SamplerKind::Ddpm, 1000, "ddpm×1000"),
        (SamplerKind::Ddim, 50, "ddim×50"),
    ] {
        let cfg = SampleConfig {
            sampler: kind,
            steps,
            ..SampleConfig::default()
        };
        let mut secs = [0.0; 2];
        // "Fused" is what a user gets (`Auto`: every op with a kernel for these inputs takes
        // it: the update, the UNet's attention and GroupNorm+SiLU); "reference" forces every
        // op's reference.
        for (i, path) in [OpPath::Auto, OpPath::Reference].into_iter().enumerate() {
            denoise::set_path(path);
            // Warm-up: compiles every kernel of the forward and the update.
            let warm = SampleConfig { steps: 2, ..cfg };
            let _ = sample(&model, &config, &warm, batch, None, device).into_data();
            let start = Instant::now();
            let out = sample(&model, &config, &cfg, batch, None, device);
            let _ = out.into_data();
            secs[i] = start.elapsed().as_secs_f64();
        }
        rows.push(SamplerRow {
            sampler: label.into(),
            batch,
            shape,
            fused_s: secs[0],
            reference_s: secs[1],
            speedup: secs[1] / secs[0],
        });
    }
    denoise::set_path(before);
    rows
}

/// The sampler rows as a Markdown table.
pub fn sampler_table(rows: &[SamplerRow]) -> String {
    let mut s = String::from(
        "| sampler | batch × shape | fused s | reference s | speed-up |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} × {:?} | {:.2} | {:.2} | {:.2}× |\n",
            r.sampler, r.batch, r.shape, r.fused_s, r.reference_s, r.speedup
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_past_the_binding_limit_are_split_off() {
        let (keep, skip) = super::fitting(&[10, 1 << 20, 1 << 26], 128 << 20);
        assert_eq!(keep, vec![10, 1 << 20]);
        assert_eq!(skip, vec![1 << 26]);
    }
}

/// One GroupNorm+SiLU timing.
#[derive(Clone, Debug, Serialize)]
pub struct NormRow {
    /// Input shape [b, c, h, w].
    pub shape: [usize; 4],
    /// Groups.
    pub groups: usize,
    /// Fused kernel, median milliseconds (its sums through subgroups where the adapter has them).
    pub fused_ms: f64,
    /// Fused kernel with subgroup operations off (the tree in workgroup memory), median ms.
    pub no_subgroups_ms: f64,
    /// burn reference (fusion on), median milliseconds.
    pub reference_ms: f64,
    /// reference_ms / fused_ms.
    pub speedup: f64,
    /// Fused effective bandwidth (read x once, write y once), GB/s.
    pub fused_gbps: f64,
}

/// GroupNorm+SiLU, fused kernel against burn's reference, at the default UNet's shapes for a
/// batch of `batch` images of `[c, h, w]` (32 channels at full resolution, 64 at half, 8 groups).
pub fn group_norm(
    device: &Device,
    batch: usize,
    [_, h, w]: [usize; 3],
    iters: usize,
) -> Vec<NormRow> {
    use oxgen_models::ops::group_norm::{
        FusedGroupNormSilu, GroupNormParams, group_norm_silu_reference,
    };
    use oxgen_wgpu::group_norm::WgslGroupNormSilu;
    let sync = || device.sync().expect("device sync");
    let mut rows = Vec::new();
    for shape in [
        [batch, 32, h, w],
        [batch, 64, h / 2, w / 2],
        [batch, 128, h / 2, w / 2],
    ] {
        let c = shape[1];
        let params = GroupNormParams {
            gamma: Some(Tensor::random([c], Distribution::Default, device)),
            beta: Some(Tensor::random([c], Distribution::Default, device)),
            groups: 8,
            epsilon: 1e-5,
        };
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        // Each output feeds the next call, so nothing can be dropped or merged away.
        let fused_ms = median_ms(
            iters,
            x.clone(),
            |t| WgslGroupNormSilu.forward(t, &params),
            sync,
        );
        let no_subgroups_ms = oxgen_wgpu::subgroups::with_enabled(Some(false), || {
            median_ms(
                iters,
                x.clone(),
                |t| WgslGroupNormSilu.forward(t, &params),
                sync,
            )
        });
        let reference_ms = median_ms(iters, x, |t| group_norm_silu_reference(t, &params), sync);
        let bytes = 8 * shape.iter().product::<usize>();
        rows.push(NormRow {
            shape,
            groups: 8,
            fused_ms,
            no_subgroups_ms,
            reference_ms,
            speedup: reference_ms / fused_ms,
            fused_gbps: bytes as f64 / fused_ms / 1e6,
        });
    }
    rows
}

/// The GroupNorm rows as a Markdown table.
pub fn norm_table(rows: &[NormRow]) -> String {
    let mut s = String::from(
        "| GroupNorm+SiLU shape | groups | fused ms | subgroups off ms | on ÷ off | reference ms | speed-up | fused GB/s |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {:?} | {} | {:.4} | {:.4} | {:.2}× | {:.4} | {:.2}× | {:.1} |\n",
            r.shape,
            r.groups,
            r.fused_ms,
            r.no_subgroups_ms,
            r.no_subgroups_ms / r.fused_ms,
            r.reference_ms,
            r.speedup,
            r.fused_gbps
        ));
    }
    s
}

/// What [`suite`] runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Element counts for the update table (sizes past the device's binding limit are skipped).
    pub sizes: Vec<usize>,
    /// Timed updates per measurement.
    pub iters: usize,
    /// Whole-sampler runs: batch and image shape `[c, h, w]`; `None` skips them.
    pub sampler: Option<(usize, [usize; 3])>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sizes: vec![10_000, 100_000, 1_000_000, 10_000_000, 100_000_000],
            iters: 30,
            sampler: Some((64, [1, 8, 8])),
        }
    }
}

/// Everything one benchmark run measured, as both front ends print and save it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The device, in words.
    pub device: String,
    /// The update table.
    pub rows: Vec<Row>,
    /// Sizes not run because one buffer would pass the adapter's storage-binding limit.
    pub skipped_sizes: Vec<usize>,
    /// GroupNorm+SiLU timings at the UNet's shapes (same batch and image as the samplers).
    pub group_norm: Vec<NormRow>,
    /// Whole-sampler timings.
    pub sampler: Vec<SamplerRow>,
}

/// Runs the update table and, if asked, the whole-sampler timings on `selected`.
pub fn suite(selected: &oxgen_wgpu::SelectedDevice, options: &Options) -> Report {
    let (sizes, skipped_sizes) = fitting(&options.sizes, selected.max_storage_binding);
    let rows = run(&selected.device, &sizes, options.iters);
    let (batch, shape) = options.sampler.unwrap_or((64, [1, 8, 8]));
    let group_norm = group_norm(&selected.device, batch, shape, options.iters);
    let sampler = options
        .sampler
        .map(|(batch, shape)| sampler(&selected.device, batch, shape))
        .unwrap_or_default();
    Report {
        device: selected.description.clone(),
        rows,
        skipped_sizes,
        group_norm,
        sampler,
    }
}

impl Report {
    /// The report as Markdown: device, update table, skipped sizes, sampler table.
    pub fn markdown(&self) -> String {
        let mut s = format!("device: {}\n\n{}", self.device, table(&self.rows));
        if !self.skipped_sizes.is_empty() {
            s.push_str(&format!(
                "\nskipped (one buffer would pass the adapter's storage-binding limit): {:?}\n",
                self.skipped_sizes
            ));
        }
        s.push('\n');
        s.push_str(&norm_table(&self.group_norm));
        if !self.sampler.is_empty() {
            s.push('\n');
            s.push_str(&sampler_table(&self.sampler));
        }
        s
    }
}
