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
