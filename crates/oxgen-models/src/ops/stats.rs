//! Which implementation each fused op ran, counted where it ran.
//!
//! Every op with a fused version records each call here from the code that finally runs it:
//! a kernel that falls back to the reference records the reference, with the reason. Counts
//! are kept per thread (ops decide their path on the calling thread, as [`super::with_path`]
//! does), so a test or a run reads exactly its own calls with [`scope`], while other threads
//! keep theirs apart; [`process`] sums every thread.
//!
//! A run writes the counts as `kernels.json` ([`KernelReport::write`]) and prints
//! [`KernelReport::summary`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The counts of one op.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Calls a fused kernel ran.
    pub fused: u64,
    /// Calls the plain-burn reference ran.
    pub reference: u64,
    /// Fused calls by kernel name.
    pub kernels: BTreeMap<String, u64>,
    /// Reference calls by reason.
    pub reasons: BTreeMap<String, u64>,
}

/// The counts of every op that was called, by op name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelReport {
    /// Op name → counts.
    pub ops: BTreeMap<String, OpCounts>,
}

thread_local! {
    static THREAD: RefCell<KernelReport> = RefCell::new(KernelReport::default());
}
static PROCESS: Mutex<KernelReport> = Mutex::new(KernelReport {
    ops: BTreeMap::new(),
});

fn add(report: &mut KernelReport, op: &str, fused: Option<&str>, reason: Option<&str>) {
    let c = report.ops.entry(op.to_string()).or_default();
    if let Some(kernel) = fused {
        c.fused += 1;
        *c.kernels.entry(kernel.to_string()).or_default() += 1;
    }
    if let Some(reason) = reason {
        c.reference += 1;
        *c.reasons.entry(reason.to_string()).or_default() += 1;
    }
}

thread_local! {
    static LAST: RefCell<BTreeMap<&'static str, &'static str>> = const { RefCell::new(BTreeMap::new()) };
}

/// What the latest call of `op` on this thread ran: a kernel's name or `"reference"`.
pub fn last(op: &str) -> Option<&'static str> {
    LAST.with(|l| l.borrow().get(op).copied())
}

fn record(op: &'static str, fused: Option<&'static str>, reason: Option<&str>) {
    LAST.with(|l| l.borrow_mut().insert(op, fused.unwrap_or("reference")));
    THREAD.with(|t| add(&mut t.borrow_mut(), op, fused, reason));
    add(
        &mut PROCESS.lock().unwrap_or_else(|e| e.into_inner()),
        op,
        fused,
        reason,
    );
}

/// Records that `kernel` ran one call of `op`.
pub fn fused(op: &'static str, kernel: &'static str) {
    record(op, Some(kernel), None);
}

/// Records that the reference ran one call of `op`, and why.
pub fn reference(op: &'static str, reason: &str) {
    record(op, None, Some(reason));
}

/// The counts of this thread since it started.
pub fn thread() -> KernelReport {
    THREAD.with(|t| t.borrow().clone())
}

/// The counts of every thread since the process started.
pub fn process() -> KernelReport {
    PROCESS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `f` and returns what it ran on this thread.
pub fn scope<R>(f: impl FnOnce() -> R) -> (R, KernelReport) {
    let before = thread();
    let r = f();
    (r, thread().since(&before))
}

impl KernelReport {
    /// The calls made after `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &KernelReport) -> KernelReport {
        let mut ops = BTreeMap::new();
        for (op, now) in &self.ops {
            let then = earlier.ops.get(op).cloned().unwrap_or_default();
            let diff = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0)))
                    .filter(|(_, v)| *v > 0)
                    .collect::<BTreeMap<_, _>>()
            };
            let c = OpCounts {
                fused: now.fused - then.fused,
                reference: now.reference - then.reference,
                kernels: diff(&now.kernels, &then.kernels),
                reasons: diff(&now.reasons, &then.reasons),
            };
            if c.fused + c.reference > 0 {
                ops.insert(op.clone(), c);
            }
        }
        KernelReport { ops }
    }

    /// The counts of `op` (zero when it was never called).
    pub fn op(&self, op: &str) -> OpCounts {
        self.ops.get(op).cloned().unwrap_or_default()
    }

    /// Reference calls of `op`.
    pub fn reference_calls(&self, op: &str) -> u64 {
        self.op(op).reference
    }

    /// One line: `kernels: attention 120 fused, group_norm_silu 80 fused / 4 reference (…)`.
    pub fn summary(&self) -> String {
        if self.ops.is_empty() {
            return "kernels: no fused op was called".into();
        }
        let parts: Vec<String> = self
            .ops
            .iter()
            .map(|(op, c)| {
                let why: Vec<&str> = c.reasons.keys().map(String::as_str).collect();
                let reference = format!("{} reference ({})", c.reference, why.join("; "));
                match (c.fused, c.reference) {
                    (f, 0) => format!("{op} {f} fused"),
                    (0, _) => format!("{op} {reference}"),
                    (f, _) => format!("{op} {f} fused / {reference}"),
                }
            })
            .collect();
        format!("kernels: {}", parts.join(", "))
    }

    /// Writes the counts as JSON to `file` (`kernels.json`), atomically: a temporary file in
    /// the same folder, then a rename.
    pub fn write(&self, file: &Path) -> std::io::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scope sees its own thread's calls only, with reasons, and `since` subtracts exactly.
    #[test]
    fn scope_counts_this_threads_calls() {
        let ((), r) = scope(|| {
            fused("op_a", "k1");
            fused("op_a", "k1");
            reference("op_a", "head dim 7");
            std::thread::spawn(|| fused("op_a", "k2")).join().unwrap();
        });
        let a = r.op("op_a");
        assert_eq!((a.fused, a.reference), (2, 1));
        assert_eq!(a.kernels.get("k1"), Some(&2));
        assert_eq!(a.kernels.get("k2"), None);
        assert_eq!(a.reasons.get("head dim 7"), Some(&1));
        assert!(
            r.summary()
                .contains("op_a 2 fused / 1 reference (head dim 7)")
        );
        assert!(
            process()
                .op("op_a")
                .kernels
                .get("k2")
                .is_some_and(|&n| n >= 1)
        );
    }
}
