//! `oxgen compare` end to end on a small case: one family on 8 gaussians writes the report,
//! labels the likelihood, shows the entropy floor, and a rerun reuses the finished run.

use burn::tensor::Device;
use oxgen_models::generative::Likelihood;
use oxgen_train::compare::{CompareOptions, compare};

#[test]
fn compare_writes_a_labelled_report_and_reuses_runs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CompareOptions {
        data: "8gaussians".into(),
        out: dir.path().into(),
        families: vec!["flow".into(), "ar".into()],
        device: Device::flex(),
        progress: false,
        seed: 0,
    };
    let r = compare(&opts).unwrap();
    let flow = &r.rows[0];
    let nll = flow.nll.as_ref().unwrap();
    assert_eq!(nll.likelihood, Likelihood::Exact);
    let h = r.entropy.unwrap();
    assert!(
        (nll.nats.unwrap() - h).abs() < 0.1,
        "{} vs entropy {h}",
        nll.nats.unwrap()
    );
    let p = flow.prdc.as_ref().unwrap();
    assert!(p.precision > 0.9 && p.recall > 0.9, "{p:?}");
    assert!(!flow.memorization.as_ref().unwrap().flagged());
    assert!(
        r.rows[1].skipped.is_some(),
        "the AR family does not run on 2D points"
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("(exact;") && md.contains("True entropy") && md.contains("n/a"));
    for f in ["report.json", "pr.png", "flow.png"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // A rerun reuses the finished run: same numbers, and the training log is not rewritten.
    let log = dir.path().join("flow").join("metrics.jsonl");
    let before = std::fs::metadata(&log).unwrap().modified().unwrap();
    let again = compare(&opts).unwrap();
    assert_eq!(again.rows[0].nll, r.rows[0].nll);
    assert_eq!(again.rows[0].train_seconds, r.rows[0].train_seconds);
    assert_eq!(std::fs::metadata(&log).unwrap().modified().unwrap(), before);
}
