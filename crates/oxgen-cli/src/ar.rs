//! The autoregressive commands: `train ar`, `sample` and `logprob` on an AR run, and
//! `bench decode`.

use anyhow::{Context, Result, bail};

use crate::args::{LogprobArgs, SampleArgs, TrainArgs};
use crate::bench_args::DecodeBenchArgs;
use crate::device;

pub(crate) fn train(a: TrainArgs) -> Result<()> {
    let (device, opts) = a.devices()?;
    let mut config = if a.resume {
        let ck = oxgen_train::checkpoint::load(&a.out).context("cannot resume")?;
        serde_json::from_value::<oxgen_train::ar::ArTrainConfig>(ck.manifest.config)
            .context("config in checkpoint")?
    } else {
        let data = a.data.as_deref().unwrap_or("arithmetic");
        // A software wgpu adapter (lavapipe) is a CPU too.
        let hardware = match oxgen_train::Hardware::of(&device) {
            _ if oxgen_wgpu::device::software_selected() => oxgen_train::Hardware::Cpu,
            h => h,
        };
        let (config, why) = oxgen_train::ar::ArTrainConfig::defaults_on(data, hardware);
        if a.config.is_none() {
            tracing::info!("{why}");
        }
        config
    };
    if let Some(file) = &a.config {
        config = config.merge_file(file)?;
    }
    if let Some(d) = &a.data {
        config.data = d.clone();
    }
    if let Some(t) = &a.tokenizer {
        config.tokenizer = t.clone();
    }
    if let Some(p) = a.precision {
        config.precision = p;
    }
    apply_train_flags!(config, a);
    if let Some(dp) = a.dp.config()? {
        config.dp = Some(dp);
    }
    if let Some(k) = a.shards.duplicates {
        config.duplicates = Some([k, a.shards.duplicate_repeats]);
    }
    if let Some(k) = a.shards.shards {
        a.one_device("--shards")?;
        return crate::copyright::train(&a, &config, k, device);
    }
    let report = oxgen_train::ar::train_ar(&config, &opts)?;
    println!(
        "trained {} steps: loss {:.4} -> {:.4} nats/token",
        report.steps, report.first_loss, report.last_loss
    );
    if let Some(p) = &report.dp {
        crate::family::print_dp(p);
    }
    if let Some((step, v)) = report.val.last() {
        println!(
            "validation at step {step}: {v:.4} nats/token ({:.4} bits/token)",
            v / std::f64::consts::LN_2
        );
    }
    if let Some(acc) = report.exact_match {
        println!("held-out exact match: {:.2}%", 100.0 * acc);
    }
    if let Some(s) = &report.loss_scale {
        println!(
            "f16: final loss scale {}, {} updates skipped for overflow",
            s.scale, s.overflows
        );
    }
    if let Some(p) = &report.parallel {
        println!("{}", p.line());
    }
    if let Some(bytes) = report.memory_peak {
        println!(
            "device memory high-water mark: {:.1} MiB",
            bytes as f64 / (1u64 << 20) as f64
        );
    }
    println!(
        "wrote {}/metrics.jsonl, loss.png, checkpoints/",
        a.out.display()
    );
    Ok(())
}

pub(crate) fn sample(a: SampleArgs) -> Result<()> {
    let device = device(&a.device)?;
    let run = oxgen_train::ar::load_ar(&a.ckpt, &device)?;
    if run.codec == oxgen_train::ar::Codec::Pixels {
        let seed = a.sampling.seed.unwrap_or(0);
        let images = oxgen_train::ar::sample_images(&run.model, a.n, seed, &device);
        oxgen_train::ar::write_images(&a.out, &images)?;
        println!("wrote {}/samples.png and samples.npy", a.out.display());
        return Ok(());
    }
    let t = &a.text;
    let prompt = match &t.prompt {
        Some(p) => run.codec.prompt(p)?,
        None => run.codec.default_prompt(),
    };
    if prompt.is_empty() {
        bail!("--prompt must not be empty");
    }
    let stop = t
        .stop
        .iter()
        .map(|s| run.codec.encode(s))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let path = if a.out.extension().is_some() {
        a.out.clone()
    } else {
        std::fs::create_dir_all(&a.out)?;
        a.out.join("samples.txt")
    };
    let options = oxgen_models::ar::DecodeOptions {
        max_new_tokens: t.max_tokens,
        temperature: t.temperature,
        top_k: t.top_k,
        top_p: t.top_p,
        repetition_penalty: t.repetition_penalty,
        stop,
        seed: a.sampling.seed.unwrap_or(0),
        exact_window: t.exact_window,
        ..Default::default()
    };
    let options = match &t.watermark {
        Some(name) => t.kgw.named(name)?.options(options),
        None => options,
    };
    // One draw streams token by token; several are drawn at once, one batch through the model
    // (draw i has seed + i either way).
    let draws = if t.best_of > 1 {
        let spec = t.reward.as_deref().context(
            "--best-of needs --reward (model:RUN, arithmetic, regex:PATTERN or pairs:FILE)",
        )?;
        let c = &run.config;
        let ctx = oxgen_train::tune::reward::RewardContext {
            arithmetic: (c.data == "arithmetic").then_some(
                oxgen_models::ar::arithmetic::Arithmetic {
                    digits: c.digits,
                    seed: c.seed,
                },
            ),
            device: Some(device.clone()),
        };
        let reward = oxgen_train::tune::reward::parse(spec, &ctx)?;
        let best = oxgen_train::tune::best_of::best_of_n(
            &run.model,
            &run.codec,
            &vec![prompt.clone(); a.n],
            t.best_of as usize,
            reward.as_ref(),
            &options,
            options.seed,
            &device,
        )?;
        for (out, score) in &best {
            println!(
                "{}\t(score {score:.4})",
                run.codec.decode(&[prompt.clone(), out.clone()].concat())
            );
        }
        best.into_iter().map(|(out, _)| out).collect()
    } else if a.n == 1 {
        use std::io::Write;
        let mut stdout = std::io::stdout();
        print!("{}", run.codec.decode(&prompt));
        let out = oxgen_models::ar::generate(&run.model, &prompt, &options, true, &device, |tok| {
            print!("{}", run.codec.decode(&[tok]));
            let _ = stdout.flush();
        });
        println!();
        vec![out]
    } else {
        let draws = oxgen_models::ar::generate_batch(&run.model, &prompt, a.n, &options, &device);
        for out in &draws {
            println!(
                "{}",
                run.codec.decode(&[prompt.clone(), out.clone()].concat())
            );
        }
        draws
    };
    // One sample per line: line breaks inside a sample are written as \n.
    let lines: Vec<String> = draws
        .into_iter()
        .map(|out| {
            let text = run.codec.decode(&[prompt.clone(), out].concat());
            text.replace('\\', "\\\\").replace('\n', "\\n")
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").with_context(|| path.display().to_string())?;
    eprintln!("wrote {} samples to {}", a.n, path.display());
    Ok(())
}

pub(crate) fn logprob(a: LogprobArgs) -> Result<()> {
    if crate::copyright::logprob_wants(&a) {
        return crate::copyright::logprob(&a);
    }
    let device = device(&a.device)?;
    let run = oxgen_train::ar::load_ar(&a.ckpt, &device)?;
    let text = match (&a.text, &a.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give --text or --file"),
    };
    let (nats, tokens, chars) = oxgen_train::ar::nll_of_text(&run, &text, &device)?;
    let bpc = nats / std::f64::consts::LN_2 / chars.max(1) as f64;
    println!(
        "nll: {nats:.4} nats (exact) over {tokens} tokens; {:.4} nats/token; {bpc:.4} bits/char",
        nats / tokens as f64
    );
    if let Some(path) = a.json {
        let doc = serde_json::json!({
            "nll_nats": nats, "exact": true, "tokens": tokens, "chars": chars,
            "nats_per_token": nats / tokens as f64, "bits_per_char": bpc,
        });
        crate::bench::write_json(&path, &doc)?;
    }
    Ok(())
}

pub(crate) fn bench_decode(a: DecodeBenchArgs) -> Result<()> {
    if a.heads == 0 || a.width % a.heads != 0 {
        bail!("--width must be a multiple of --heads");
    }
    if a.prompt == 0 {
        bail!("--prompt must be at least 1");
    }
    let selected = oxgen_wgpu::select(a.device).map_err(anyhow::Error::msg)?;
    if a.context == 0 || a.batch.contains(&0) {
        bail!("--context and every --batch must be at least 1");
    }
    let config = oxgen_models::ar::GptConfig::new(a.vocab)
        .with_context(a.context)
        .with_layers(a.layers)
        .with_heads(a.heads)
        .with_width(a.width);
    // The twin is nanoGPT's shakespeare_char shape ("gpt-char"), prompted with one token.
    let twin_shape =
        (a.layers, a.heads, a.width, a.context, a.vocab, a.prompt) == (6, 6, 384, 256, 65, 1);
    let python = a.peer.python().filter(|_| twin_shape);
    if a.peer.python().is_some() && !twin_shape {
        eprintln!("the PyTorch twin has the default shape only; running oxgen alone");
    }
    eprintln!("benchmarking decoding on {} …", selected.description);
    let rows: Vec<_> = a
        .batch
        .iter()
        .map(|&b| {
            oxgen_bench::decode::run(
                &selected.device,
                &config,
                a.prompt,
                a.new_tokens,
                b,
                a.exact_window,
                python,
            )
        })
        .collect();
    println!("device: {}\n", selected.description);
    print!("{}", oxgen_bench::decode::table(&rows));
    if let Some(path) = a.json {
        let doc = serde_json::json!({ "device": selected.description, "rows": rows });
        crate::bench::write_json(&path, &doc)?;
    }
    Ok(())
}
