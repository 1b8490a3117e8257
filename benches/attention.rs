//! Flash attention (WGSL) against burn's `attention` and `attention_fallback` on the first wgpu
//! adapter. Same harness as `oxgen bench attention`; prints Markdown and writes
//! `target/bench-attention.json`.
//!
//! Run: `cargo bench --bench attention [-- 256,1024]` (sequence lengths, comma-separated).

fn main() {
    let selected =
        oxgen::wgpu::select(oxgen::wgpu::DeviceChoice::Wgpu).expect("a wgpu adapter is required");
    let lens: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![256, 1024, 2048, 4096]);
    println!("device: {}\n", selected.description);
    let mut rows = Vec::new();
    for causal in [false, true] {
        rows.extend(oxgen_bench::attention::run(
            &selected.device,
            &lens,
            oxgen_bench::attention::AttentionBench {
                batch: 4,
                heads: 8,
                dim: 64,
                causal,
                half: false,
                iters: 10,
                peers: true,
            },
        ));
    }
    print!("{}", oxgen_bench::attention::table(&rows));
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-attention.json");
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&rows).expect("rows serialize"),
    )
    .expect("write JSON");
    println!("wrote {}", out.display());
}
