//! Post-training: GRPO with the arithmetic verifier, SFT on labelled pairs and DPO on verifier
//! pairs raise held-out exact match; each resumes exactly and refuses bad bases, rewards and
//! files with typed errors.

use std::path::Path;

use burn::tensor::Device;
use oxgen_train::Error;
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::tune::dpo::{DpoConfig, dpo};
use oxgen_train::tune::grpo::{GrpoConfig, grpo};
use oxgen_train::tune::reward::{RewardContext, Sample, parse};
use oxgen_train::tune::rm::{RmConfig, rm};
use oxgen_train::tune::sft::{SftConfig, sft};

use crate::common::{opts, params, run, tiny_2d};

/// The default sums model (2 × 4 × 64), trained 260 of its steps: about half the held-out sums
/// right (53.8% when measured).
fn base(dir: &Path) {
    let mut c = ArTrainConfig::defaults("arithmetic");
    c.steps = 260;
    let report = train_ar(&c, &opts(dir, Device::flex())).unwrap();
    assert!(report.steps == 260);
}

fn tuned(steps: usize) -> GrpoConfig {
    GrpoConfig {
        steps,
        eval_every: 50,
        ..GrpoConfig::default()
    }
}

/// RLVR on the CPU: 250 GRPO steps with the arithmetic verifier only (no labelled answers)
/// raise held-out exact match (greedy, 1,000-odd sums never trained on) by at least 10 points
/// (measured: 53.8% → 68–70% at 200–250 steps; 91% at 500, `docs/post-training.md`).
#[test]
fn grpo_with_the_arithmetic_verifier_raises_held_out_exact_match() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let out = dir.path().join("grpo");
    let r = grpo(
        &dir.path().join("base"),
        &tuned(250),
        &opts(&out, Device::flex()),
    )
    .unwrap();
    let (first, last) = (r.evals[0], *r.evals.last().unwrap());
    assert_eq!((first.0, last.0), (0, 250));
    assert!(
        (0.2..0.6).contains(&first.1),
        "the base should be stopped early: {first:?}"
    );
    assert!(last.1 >= first.1 + 0.10, "{first:?} -> {last:?}");
    for f in ["curves.png", "eval.jsonl", "metrics.jsonl"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // The tuned run samples and loads like an `ar` run.
    let run = oxgen_train::ar::load_ar(&out, &Device::flex()).unwrap();
    assert_eq!(run.config.data, "arithmetic");
}

/// 12 steps straight equal 5, a checkpoint, a resume and 7 more, bit for bit.
#[test]
fn grpo_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let mut c = tuned(12);
    (c.prompts, c.group, c.eval_every) = (4, 4, 5);
    let straight = grpo(
        &dir.path().join("base"),
        &c,
        &opts(&dir.path().join("a"), Device::flex()),
    )
    .unwrap();
    let mut first = opts(&dir.path().join("b"), Device::flex());
    first.stop_after = Some(5);
    grpo(&dir.path().join("base"), &c, &first).unwrap();
    let mut second = opts(&dir.path().join("b"), Device::flex());
    second.resume = true;
    let resumed = grpo(&dir.path().join("base"), &c, &second).unwrap();
    assert_eq!(resumed.steps, 12);
    let (a, b) = (params(&straight.model), params(&resumed.model));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

/// A base of another family, an unknown reward, a verifier that does not fit the base, and a
/// group of one are typed errors, before anything is written.
#[test]
fn grpo_refuses_bad_bases_and_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let diffusion = dir.path().join("moons");
    run(&tiny_2d("moons", 2), &opts(&diffusion, Device::flex()));
    let out = |n: &str| opts(&dir.path().join(n), Device::flex());
    let e = grpo(&diffusion, &tuned(3), &out("x")).unwrap_err();
    assert!(
        matches!(e, Error::Checkpoint { .. }) && e.to_string().contains("not ar"),
        "{e}"
    );
    base(&dir.path().join("base"));
    let base = dir.path().join("base");
    let with = |f: fn(&mut GrpoConfig)| {
        let mut c = tuned(3);
        f(&mut c);
        c
    };
    let e = grpo(&base, &with(|c| c.reward = "vibes".into()), &out("y")).unwrap_err();
    assert!(matches!(e, Error::Reward { .. }), "{e}");
    let e = grpo(&base, &with(|c| c.reward = "regex:(".into()), &out("y")).unwrap_err();
    assert!(matches!(e, Error::Reward { .. }), "{e}");
    let e = grpo(&base, &with(|c| c.group = 1), &out("y")).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = grpo(
        &base,
        &with(|c| c.reward = "pairs:/nonexistent.tsv".into()),
        &out("y"),
    );
    assert!(matches!(e, Err(Error::NotFound { .. })), "{e:?}");
    assert!(!dir.path().join("y").exists());
}

/// SFT on the base's own sums (labelled answers, the loss on the answer tokens only): 100 steps
/// of 64 take held-out exact match from 53.8% to at least 70% (measured 80.8%).
#[test]
fn sft_on_labelled_sums_raises_held_out_exact_match() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let c = SftConfig {
        steps: 100,
        ..SftConfig::default()
    };
    let r = sft(
        &dir.path().join("base"),
        &c,
        &opts(&dir.path().join("sft"), Device::flex()),
    )
    .unwrap();
    let (first, last) = (r.evals[0], *r.evals.last().unwrap());
    assert!(
        last.1 >= 0.70 && last.1 > first.1 + 0.1,
        "{first:?} -> {last:?}"
    );
}

/// A tiny character model; SFT on JSONL pairs, packed, resumes bit for bit and lowers the
/// held-out completion NLL; bad files are typed errors naming the line.
#[test]
fn sft_on_a_file_packs_resumes_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("abc.txt");
    let text: String = (0..400)
        .map(|i| ["the cat sat. ", "a dog ran. "][i % 2])
        .collect();
    std::fs::write(&corpus, &text).unwrap();
    let model = oxgen_models::ar::GptConfig::new(0)
        .with_context(24)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut bc = ArTrainConfig::new(model, corpus.to_str().unwrap());
    (bc.steps, bc.batch_size, bc.eval_every) = (20, 8, 20);
    let base = dir.path().join("base");
    train_ar(&bc, &opts(&base, Device::flex())).unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            let (p, c) = [("the cat", " sat."), ("a dog", " ran.")][i % 2];
            format!("{{\"prompt\": \"{p}\", \"completion\": \"{c}\"}}\n")
        })
        .collect();
    std::fs::write(&pairs, lines).unwrap();
    let c = SftConfig {
        data: pairs.to_str().unwrap().into(),
        steps: 12,
        batch_size: 8,
        pack: true,
        eval_every: 6,
        lr: 3e-3,
        ..SftConfig::default()
    };
    let straight = sft(&base, &c, &opts(&dir.path().join("a"), Device::flex())).unwrap();
    let (first, last) = (straight.evals[0], *straight.evals.last().unwrap());
    assert!(last.1 < first.1, "held-out NLL {first:?} -> {last:?}");
    let mut one = opts(&dir.path().join("b"), Device::flex());
    one.stop_after = Some(6);
    sft(&base, &c, &one).unwrap();
    let mut two = opts(&dir.path().join("b"), Device::flex());
    two.resume = true;
    let resumed = sft(&base, &c, &two).unwrap();
    let (a, b) = (params(&straight.model), params(&resumed.model));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));

    for (name, text, says) in [
        ("bad.jsonl", "{\"prompt\": \"the\"}\n", "line 1"),
        ("tab.tsv", "the cat sat.\n", "line 1: no tab"),
        ("vocab.tsv", "the\tcat\nZZZ\tcat\n", "line 2"),
        ("few.tsv", "the\tcat\n", "too few"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let bad = SftConfig {
            data: f.to_str().unwrap().into(),
            ..c.clone()
        };
        let e = sft(&base, &bad, &opts(&dir.path().join("x"), Device::flex())).unwrap_err();
        assert!(
            matches!(e, Error::Parse { .. }) && e.to_string().contains(says),
            "{name}: {e}"
        );
    }
    assert!(!dir.path().join("x").exists());
}

/// DPO on pairs the arithmetic verifier made from the base's own samples (8 per prompt), with
/// the chosen completions' NLL added (`nll_weight` 1): 150 steps take held-out exact match from
/// 53.8% to at least 70% (measured 80.5%) and held-out preference accuracy to at least 85%
/// (measured 91.7%); 6 steps straight equal 3, a resume and 3 more, bit for bit.
#[test]
fn dpo_on_verifier_pairs_raises_exact_match_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let c = DpoConfig {
        nll_weight: 1.0,
        steps: 150,
        ..DpoConfig::default()
    };
    let r = dpo(
        &dir.path().join("base"),
        &c,
        &opts(&dir.path().join("d"), Device::flex()),
    )
    .unwrap();
    let (first, last) = (r.evals[0], *r.evals.last().unwrap());
    assert_eq!(
        (first.1, first.2),
        (0.0, 0.0),
        "the policy starts as its reference"
    );
    assert!(last.1 >= 0.85, "preference accuracy {last:?}");
    assert!(last.3.unwrap() >= 0.70, "{first:?} -> {last:?}");

    let c = DpoConfig {
        steps: 6,
        prompts: 200,
        eval_every: 3,
        ..c
    };
    let straight = dpo(
        &dir.path().join("base"),
        &c,
        &opts(&dir.path().join("s"), Device::flex()),
    )
    .unwrap();
    let mut one = opts(&dir.path().join("r"), Device::flex());
    one.stop_after = Some(3);
    dpo(&dir.path().join("base"), &c, &one).unwrap();
    let mut two = opts(&dir.path().join("r"), Device::flex());
    two.resume = true;
    let resumed = dpo(&dir.path().join("base"), &c, &two).unwrap();
    let (a, b) = (params(&straight.model), params(&resumed.model));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

/// Bad pairs files are typed errors naming the line; too few pairs and one sample per prompt
/// are refused before anything is written.
#[test]
fn dpo_refuses_bad_pairs() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ok = "{\"prompt\": \"12+34=\", \"chosen\": \"640\", \"rejected\": \"641\"}\n";
    for (name, text, says) in [
        ("json.jsonl", "{\"prompt\": \"12+34=\"}\n", "line 1"),
        (
            "same.jsonl",
            "{\"prompt\": \"1\", \"chosen\": \"2\", \"rejected\": \"2\"}\n",
            "the same",
        ),
        (
            "vocab.jsonl",
            &format!("{ok}{{\"prompt\": \"x\", \"chosen\": \"1\", \"rejected\": \"2\"}}\n"),
            "line 2",
        ),
    ] {
        let c = DpoConfig {
            pairs: file(name, text),
            pairs_from_verifier: 0,
            ..DpoConfig::default()
        };
        let e = dpo(
            &dir.path().join("base"),
            &c,
            &opts(&dir.path().join("x"), Device::flex()),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Parse { .. }) && e.to_string().contains(says),
            "{name}: {e}"
        );
    }
    let few = DpoConfig {
        pairs: file("few.jsonl", ok),
        pairs_from_verifier: 0,
        ..DpoConfig::default()
    };
    let e = dpo(
        &dir.path().join("base"),
        &few,
        &opts(&dir.path().join("x"), Device::flex()),
    );
    assert!(matches!(e, Err(Error::Config(_))), "{e:?}");
    let one = DpoConfig {
        pairs_from_verifier: 1,
        ..DpoConfig::default()
    };
    let e = dpo(
        &dir.path().join("base"),
        &one,
        &opts(&dir.path().join("x"), Device::flex()),
    );
    assert!(matches!(e, Err(Error::Config(_))), "{e:?}");
    assert!(!dir.path().join("x").exists());
}

/// A reward model on verifier pairs: the Bradley–Terry loss falls and held-out pairwise accuracy
/// rises from chance, training resumes bit for bit, and the run serves as `model:RUN` (a run of
/// another kind does not). (The full default run reaches 92.96%: docs/post-training.md.)
#[test]
fn reward_model_learns_resumes_and_serves_as_a_reward() {
    let dir = tempfile::tempdir().unwrap();
    base(&dir.path().join("base"));
    let c = RmConfig {
        prompts: 1000,
        steps: 8,
        eval_every: 4,
        ..RmConfig::default()
    };
    let rm_dir = dir.path().join("rm");
    let straight = rm(&dir.path().join("base"), &c, &opts(&rm_dir, Device::flex())).unwrap();
    let mut one = opts(&dir.path().join("r"), Device::flex());
    one.stop_after = Some(4);
    rm(&dir.path().join("base"), &c, &one).unwrap();
    let mut two = opts(&dir.path().join("r"), Device::flex());
    two.resume = true;
    let resumed = rm(&dir.path().join("base"), &c, &two).unwrap();
    let (a, b) = (params(&straight.model), params(&resumed.model));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));

    let longer = RmConfig {
        steps: 150,
        eval_every: 150,
        ..c
    };
    let r = rm(
        &dir.path().join("base"),
        &longer,
        &opts(&dir.path().join("l"), Device::flex()),
    )
    .unwrap();
    let last = r.evals.last().unwrap().1;
    assert!(last >= 0.6, "held-out pairwise accuracy {last}");

    let ctx = RewardContext::default();
    let reward = parse(&format!("model:{}", rm_dir.display()), &ctx).unwrap();
    let lang = oxgen_models::ar::arithmetic::Arithmetic::default();
    let (p, good, bad) = (lang.prompt(12, 34), lang.answer(12, 34), vec![9, 9, 9]);
    let score = |c: &[u32]| {
        reward.score(&Sample {
            prompt: &p,
            completion: c,
            prompt_text: "",
            completion_text: "",
        })
    };
    assert!(score(&good).is_finite() && score(&bad).is_finite());
    let e = parse(
        &format!("model:{}", dir.path().join("base").display()),
        &ctx,
    );
    assert!(
        matches!(e, Err(Error::Reward { .. })),
        "an ar run is not a reward model"
    );
}
