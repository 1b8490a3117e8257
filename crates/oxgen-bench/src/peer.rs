//! The PyTorch twins (`benches/peers/twins.py`, embedded here), run as a child process.

use serde::{Deserialize, Serialize};

/// The twins' script, as committed.
pub const TWINS: &str = include_str!("../../../benches/peers/twins.py");

/// What a twin printed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerRow {
    /// `pytorch <version>`.
    pub peer: String,
    /// Threads PyTorch ran with.
    pub threads: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Wall time per iteration, ms.
    pub ms_per_iter: f64,
    /// CPU time ÷ wall time over the timed iterations.
    pub cpu_per_wall: f64,
    /// Peak resident memory of the twin's process, MiB.
    pub peak_rss_mib: f64,
    /// Tokens or samples per second, by the unit's name.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Runs the twin with `python` and `args` (after the script). The script is written to a
/// temporary file, so this works from any folder.
pub fn run(python: &str, args: &[String]) -> Result<PeerRow, String> {
    let dir = std::env::temp_dir().join(format!("oxgen-twins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("twins.py");
    std::fs::write(&script, TWINS).map_err(|e| format!("{}: {e}", script.display()))?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("could not run `{python}`: {e} (is Python with torch installed?)"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "the PyTorch twin failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("the PyTorch twin printed no result: {stdout}"))?;
    serde_json::from_str(line).map_err(|e| format!("the PyTorch twin's result: {e}: {line}"))
}

/// [`run`] when `python` is given: (the row, or why there is none).
pub fn run_if(python: Option<&str>, args: &[&str]) -> (Option<PeerRow>, Option<String>) {
    let Some(py) = python else {
        return (None, None);
    };
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match run(py, &args) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e)),
    }
}

impl PeerRow {
    /// The twin's throughput (tokens or samples per second).
    pub fn per_second(&self) -> f64 {
        self.rest
            .iter()
            .find(|(k, _)| k.ends_with("_per_s"))
            .and_then(|(_, v)| v.as_f64())
            .unwrap_or(f64::NAN)
    }
}
