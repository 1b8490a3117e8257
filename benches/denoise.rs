//! The fused denoising update against burn's reference path (fusion on and off), plus the
//! whole-sampler wall times, on the first wgpu adapter. Same harness as `oxgen bench denoise`;
//! prints Markdown and writes `target/bench-denoise.json`.
//!
//! Run: `cargo bench --bench denoise [-- 10000,1000000]` (element counts, comma-separated).

fn main() {
    let selected =
        oxgen::wgpu::select(oxgen::wgpu::DeviceChoice::Wgpu).expect("a wgpu adapter is required");
    let mut options = oxgen_bench::denoise::Options::default();
    if let Some(sizes) = std::env::args()
        .skip(1)
        .find(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit()))
    {
        options.sizes = sizes
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
    }
    let report = oxgen_bench::denoise::suite(&selected, &options);
    print!("{}", report.markdown());
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-denoise.json");
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&report).expect("report serializes"),
    )
    .expect("write JSON");
    println!("wrote {}", out.display());
}
