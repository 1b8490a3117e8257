//! The `oxgen` binary as a user runs it.

use std::process::{Command, Output};

/// What a run printed: its stdout, then its stderr.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// On a machine without a desktop session (no `XDG_RUNTIME_DIR`: CI, containers, most
/// servers), a successful run prints no line containing "error". Mesa's device-select Vulkan
/// layer used to print `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` from
/// its display probe, once per Vulkan instance (three times for `oxgen info`, which probes
/// every adapter as each run does); issue 23.
#[test]
fn a_headless_run_prints_no_error_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_oxgen"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("run oxgen info");
    let text = printed(&out);
    assert!(out.status.success(), "oxgen info failed:\n{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert!(errors.is_empty(), "lines with `error`: {errors:#?}");
    // It did probe: the CPU fallback line is always there.
    assert!(text.contains("cpu (--device cpu"), "{text}");
}

/// `oxgen tour` trains, samples, scores and draws on the CPU (its wall time, under a minute on a
/// 2-core machine, is in docs/benchmarks.md, not asserted here), and prints no `error` line.
#[test]
fn the_tour_writes_its_picture_and_scores() {
    let out_dir = std::env::temp_dir().join(format!("oxgen-tour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_oxgen"))
        .args(["tour", "--device", "cpu", "--out"])
        .arg(&out_dir)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run oxgen tour");
    let text = printed(&out);
    assert!(out.status.success(), "oxgen tour failed:\n{text}");
    assert!(text.contains("trained 1500 steps"), "{text}");
    assert!(
        text.contains("SWD") && text.contains("tour done in"),
        "{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert!(errors.is_empty(), "lines with `error`: {errors:#?}");
    // The picture: a PNG at the scatter plot's size.
    let png = std::fs::read(out_dir.join("samples.png")).expect("samples.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (640, 640));
    // Sample quality within a few floors of held-out data (moons after 1,500 steps: an SWD
    // ratio of 1.79 on the 2-core VM where this was written).
    let quality = std::fs::read_to_string(out_dir.join("quality.json")).expect("quality.json");
    let field = |name: &str| -> f64 {
        let at = quality.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
        let rest = quality[at..].trim_start();
        let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
        rest[..end].trim().parse().expect(name)
    };
    let ratio = field("swd") / field("swd_floor");
    assert!(ratio < 3.0, "SWD ratio {ratio}: {quality}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// One `oxgen train ar` on `device` (`wgpu`: lavapipe in CI) with `precision`, `steps` and
/// `batch` (sequences per step): its held-out exact match (%) and the device allocator's
/// high-water mark (MiB; wgpu only, else NaN), from its printed lines, and the lines.
fn train_sums(device: &str, precision: &str, steps: usize, batch: usize) -> (f64, f64, String) {
    let dir = std::env::temp_dir().join(format!(
        "oxgen-sums-{device}-{precision}-{steps}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_oxgen"))
        .args([
            "train",
            "ar",
            "--device",
            device,
            "--quiet",
            "--precision",
            precision,
        ])
        .args([
            "--steps",
            &steps.to_string(),
            "--batch-size",
            &batch.to_string(),
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("run oxgen train ar");
    let text = printed(&out);
    assert!(out.status.success(), "oxgen train ar failed:\n{text}");
    let number = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix));
        let rest =
            line.unwrap_or_else(|| panic!("no `{prefix}` line:\n{text}"))[prefix.len()..].trim();
        rest.split([' ', '%'])
            .next()
            .unwrap()
            .parse()
            .expect(prefix)
    };
    let mark = if device == "wgpu" {
        number("device memory high-water mark:")
    } else {
        f64::NAN
    };
    let result = (number("held-out exact match:"), mark, text);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Mixed precision (issue 21): the default arithmetic GPT trained in f16 on lavapipe (f16
/// activations and attention kernels, f32 master weights, dynamic loss scaling) reaches the
/// held-out exact match of the same model, data and seed trained in f32, and with activations
/// that dominate the device memory (512 sequences per step) its high-water mark on lavapipe is
/// lower. One process per run, so each high-water mark is its own.
///
/// The f32 run of the exact-match pair is on the CPU, where 400 steps take 4 s against minutes
/// on lavapipe; f32 on lavapipe reached the same level (100.0% and 99.9% at 400 steps in two
/// runs of the earlier form of this test, which trained both there). The runs are shortened for
/// CI: 400 steps (both reach 100.00% at the default 1,500, see docs/benchmarks.md; f16 reached
/// 99.9% at 400 in two runs and 98.8% at 300). burn's autotune picks its matmul kernels by
/// timing, so two runs of one config can differ by a point or two, hence 3 points of slack. At
/// the default batch of 64 the model's activations are a few MiB and the allocator's pages
/// decide the mark (f32 gave 18.9 and 24.0 MiB in two runs, f16 16.9), so memory is compared at
/// batch 512, over 3 steps (107.5 and 59.6 MiB), both on lavapipe.
#[test]
fn f16_training_matches_f32_with_less_memory() {
    // Side by side: most of a short run on lavapipe is its first step (kernel compiles and
    // burn's autotune, ~90 s), largely single-threaded. The f16 run's 400 steps take longest;
    // the f32 CPU run and the two memory runs share the other core.
    let ((em32, em16, text), (mem32, mem16)) = std::thread::scope(|s| {
        let f16 = s.spawn(|| train_sums("wgpu", "f16", 400, 64));
        let rest = s.spawn(|| {
            let (em32, _, _) = train_sums("cpu", "f32", 400, 64);
            let (_, mem32, _) = train_sums("wgpu", "f32", 3, 512);
            let (_, mem16, _) = train_sums("wgpu", "f16", 3, 512);
            (em32, mem32, mem16)
        });
        let (em16, _, text) = f16.join().unwrap();
        let (em32, mem32, mem16) = rest.join().unwrap();
        ((em32, em16, text), (mem32, mem16))
    });
    eprintln!(
        "exact match f32 (CPU) {em32}%, f16 (lavapipe) {em16}%; high-water at batch 512: f32 {mem32} MiB, f16 {mem16} MiB"
    );
    assert!(text.contains("f16: final loss scale"), "{text}");
    assert!(em32 >= 95.0, "the f32 run reached only {em32}%");
    assert!(
        (em16 - em32).abs() <= 3.0,
        "f16 {em16}% against f32 {em32}%"
    );
    assert!(
        mem16 < 0.8 * mem32,
        "f16 {mem16} MiB against f32 {mem32} MiB"
    );
}

/// `--devices` (issue 22): two CPU replicas train (diffusion and the GAN) and report their
/// all-reduce; a device listed twice, an unknown one and a batch smaller than the devices are
/// each refused with a message, and nothing is written.
#[test]
fn devices_train_on_two_replicas_and_bad_lists_are_refused() {
    let dir = std::env::temp_dir().join(format!("oxgen-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let train = |family: &str, out: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_oxgen"))
            .args([
                "train", family, "--data", "moons", "--steps", "4", "--quiet",
            ])
            .arg("--out")
            .arg(dir.join(out))
            .args(extra)
            .output()
            .expect("run oxgen train");
        (out.status.success(), printed(&out))
    };
    // The GAN splits its discriminator's and generator's updates over the replicas.
    let (ok, text) = train("gan", "gan-two", &["--devices", "cpu:0,cpu:1"]);
    assert!(ok && text.contains("2 devices:"), "{text}");
    let (ok, text) = train("diffusion", "two", &["--devices", "cpu:0,cpu:1"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("2 devices:") && text.contains("all-reduce"),
        "{text}"
    );
    let metrics = std::fs::read_to_string(dir.join("two/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    assert!(
        metrics.lines().all(|l| l.contains("\"allreduce_ms\":")),
        "{metrics}"
    );
    for (family, devices, batch, says) in [
        ("diffusion", "cpu:0,cpu:0", "8", "listed twice"),
        ("diffusion", "tpu:0,cpu:1", "8", "unknown device `tpu:0`"),
        (
            "diffusion",
            "cpu:0,cpu:1",
            "1",
            "cannot be split over 2 devices",
        ),
    ] {
        let out = format!("bad-{family}-{batch}-{}", devices.replace([':', ','], "-"));
        let (ok, text) = train(family, &out, &["--devices", devices, "--batch-size", batch]);
        assert!(!ok && text.contains(says), "{devices}: {text}");
        assert!(
            !dir.join(&out).exists(),
            "{devices}: a refused run wrote its folder"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
