//! The fused denoising update against the plain-burn reference on the first wgpu adapter.
//! Same harness as `oxgen bench denoise`; prints a Markdown table and writes
//! `target/bench-denoise.json`.
//!
//! Run: `cargo bench --bench denoise [-- 10000,1000000]` (element counts, comma-separated).

fn main() {
    let selected =
        oxgen::wgpu::select(oxgen::wgpu::DeviceChoice::Wgpu).expect("a wgpu adapter is required");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000, 10_000_000]);
    println!("device: {}", selected.description);
    let rows = oxgen::wgpu::bench::run(&selected.device, &sizes, 30);
    print!("{}", oxgen::wgpu::bench::table(&rows));
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-denoise.json");
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&rows).expect("rows serialize"),
    )
    .expect("write JSON");
    println!("wrote {}", out.display());
}
