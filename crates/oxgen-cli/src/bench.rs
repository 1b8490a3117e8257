//! `oxgen bench attention|denoise|train` (the harnesses live in oxgen-bench) and `oxgen info`.

use anyhow::{Context, Result, bail};
use oxgen_wgpu::DeviceChoice;

use crate::bench_args::{
    AttentionBenchArgs, BenchArgs, ConvBenchArgs, DdimBenchArgs, TrainBenchArgs,
};

pub(crate) fn attention(a: AttentionBenchArgs) -> Result<()> {
    let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
    if !selected.is_wgpu {
        bail!("the attention benchmark needs a wgpu device; found only the CPU");
    }
    if !oxgen_wgpu::attention::HEAD_DIMS.contains(&a.dim) {
        bail!(
            "--dim must be one of {:?}",
            oxgen_wgpu::attention::HEAD_DIMS
        );
    }
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    eprintln!("benchmarking attention on {} …", selected.description);
    if a.f16 && !selected.device.supports_dtype(burn::tensor::DType::F16) {
        bail!("--f16: this adapter has no shader-f16");
    }
    let cfg = oxgen_bench::attention::AttentionBench {
        batch: a.batch,
        heads: a.heads,
        dim: a.dim,
        causal: a.causal,
        half: a.f16,
        iters: a.iters,
        peers: !a.no_peers,
    };
    println!("device: {}\n", selected.description);
    let rows = if a.decode {
        let rows = oxgen_bench::attention_decode::run(&selected.device, &a.seq, cfg);
        print!("{}", oxgen_bench::attention_decode::table(&rows));
        serde_json::to_value(rows)?
    } else {
        let rows = oxgen_bench::attention::run(&selected.device, &a.seq, cfg);
        print!("{}", oxgen_bench::attention::table(&rows));
        serde_json::to_value(rows)?
    };
    if let Some(path) = a.json {
        let doc = serde_json::json!({ "device": selected.description, "rows": rows });
        crate::bench::write_json(&path, &doc)?;
    }
    Ok(())
}

pub(crate) fn denoise(a: BenchArgs) -> Result<()> {
    let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
    if !selected.is_wgpu {
        bail!("the denoise benchmark needs a wgpu device; found only the CPU");
    }
    let shape: [usize; 3] = a.sampler_shape.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "--sampler-shape takes three numbers C,H,W, got {:?}",
            a.sampler_shape
        )
    })?;
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    eprintln!("benchmarking on {} …", selected.description);
    oxgen_wgpu::denoise::set_native_u64(!a.philox16);
    let options = oxgen_bench::denoise::Options {
        sizes: a.sizes,
        iters: a.iters,
        sampler: (!a.no_sampler).then_some((a.sampler_batch, shape)),
    };
    let report = oxgen_bench::denoise::suite(&selected, &options);
    print!("{}", report.markdown());
    if let Some(path) = a.json {
        crate::bench::write_json(&path, &report)?;
    }
    Ok(())
}

pub(crate) fn train(a: TrainBenchArgs) -> Result<()> {
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let mut parallel = oxgen_train::trainer::parallel::DataParallel::default();
    let selected = match &a.devices {
        Some(spec) => {
            let list = oxgen_wgpu::devices::select_many(spec)?;
            let first = list[0].1.clone();
            for (name, d) in list {
                parallel.devices.push(d.device);
                parallel.names.push(name);
            }
            first
        }
        None => oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?,
    };
    oxgen_models::ops::check_path(a.op_path, &selected.device).map_err(anyhow::Error::msg)?;
    oxgen_models::ops::set_path(a.op_path);
    eprintln!(
        "benchmarking {} training steps on {} (op path {:?}) …",
        a.model.name(),
        selected.description,
        a.op_path
    );
    let report = oxgen_bench::train::compare(
        a.model,
        &selected.device,
        &selected.description,
        a.warmup,
        a.iters,
        a.peer.python(),
        oxgen_bench::train::Against {
            reference: a.against_reference,
            no_subgroups: a.against_no_subgroups,
        },
        &parallel,
    );
    print!("{}", report.markdown());
    if let Some(path) = a.json {
        crate::bench::write_json(&path, &report)?;
    }
    Ok(())
}

pub(crate) fn conv(a: ConvBenchArgs) -> Result<()> {
    let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
    if !selected.is_wgpu {
        bail!("the convolution benchmark needs a wgpu device; found only the CPU");
    }
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    eprintln!("benchmarking conv2d on {} …", selected.description);
    println!("device: {}\n", selected.description);
    let rows: Vec<_> = oxgen_bench::conv::UNET_SHAPES
        .iter()
        .map(|&s| oxgen_bench::conv::measure(&selected.device, s, a.iters))
        .collect();
    print!("{}", oxgen_bench::conv::table(&rows));
    if let Some(path) = a.json {
        let doc = serde_json::json!({ "device": selected.description, "rows": rows });
        crate::bench::write_json(&path, &doc)?;
    }
    Ok(())
}

pub(crate) fn ddim(a: DdimBenchArgs) -> Result<()> {
    if a.batch == 0 || a.steps == 0 || a.steps > 1000 {
        bail!("--batch must be at least 1 and --steps in 1..=1000");
    }
    let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
    eprintln!("benchmarking DDIM sampling on {} …", selected.description);
    let report = oxgen_bench::sample::ddim(
        &selected.device,
        &selected.description,
        a.batch,
        a.steps,
        a.peer.python(),
    );
    print!("{}", report.markdown());
    Ok(())
}

/// Writes `value` as pretty JSON to `path` and says so.
pub(crate) fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| path.display().to_string())?;
    println!("wrote {}", path.display());
    Ok(())
}

pub(crate) fn info() {
    let list = oxgen_wgpu::adapters();
    if list.is_empty() {
        println!(
            "wgpu adapters: none found (install a Vulkan, Metal or DX12 driver; on Debian, mesa-vulkan-drivers)"
        );
    }
    for (i, a) in list.iter().enumerate() {
        println!("[{i}] {} — {} ({})", a.name, a.backend, a.device_type);
        println!(
            "    driver: {}",
            if a.driver.is_empty() {
                "unknown"
            } else {
                &a.driver
            }
        );
        println!(
            "    workgroup storage {} KiB, {} invocations/workgroup, subgroups {}..{} (operations {}), shader-f16 {}, shader-int64 {}, max storage binding {} MiB",
            a.workgroup_storage / 1024,
            a.max_invocations,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1,
            if a.subgroups { "yes" } else { "no" },
            if a.shader_f16 { "yes" } else { "no" },
            if a.shader_int64 { "yes" } else { "no" },
            a.max_storage_binding >> 20
        );
    }
    println!(
        "cpu (--device cpu, and auto without a hardware GPU): burn Flex backend (rayon, SIMD GEMM) with {}",
        oxgen_models::ops::cpu::describe()
    );
    println!("    why this backend: docs/benchmarks.md, \"Which CPU path\"");
    match oxgen_wgpu::select(DeviceChoice::Auto) {
        Ok(s) => println!("--device auto selects: {}", s.description),
        Err(e) => println!("--device auto: {e}"),
    }
    #[cfg(feature = "autotune-cache")]
    {
        let root = burn::cubecl::config::cache::CacheConfig::Global.root();
        println!(
            "autotune cache: {} (delete it to clear; CUBECL_AUTOTUNE_CACHE=0 skips it)",
            root.display()
        );
    }
    #[cfg(not(feature = "autotune-cache"))]
    println!(
        "autotune cache: off (each process autotunes anew; build with --features oxgen-cli/autotune-cache to keep the results)"
    );
}
