//! The `oxgen` binary as a user runs it.

use std::process::Command;

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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
