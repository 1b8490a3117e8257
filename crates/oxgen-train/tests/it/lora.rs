//! LoRA fine-tuning: only the adapters train, the run resumes bit for bit and loads with its
//! adapters, and `merge` writes a plain run that computes the same logits (to 1e-5).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::{GptConfig, LoraConfig};
use oxgen_train::Error;
use oxgen_train::ar::{ArTrainConfig, load_ar, train_ar};
use oxgen_train::tune::grpo::{GrpoConfig, grpo};
use oxgen_train::tune::merge::merge;
use oxgen_train::tune::sft::{SftConfig, sft};

use crate::common::{opts, params};

/// A tiny character model (20 steps on two alternating sentences) and a JSONL file of
/// prompt/completion pairs from the same sentences.
fn char_base(dir: &Path) -> (PathBuf, PathBuf) {
    let corpus = dir.join("abc.txt");
    let text: String = (0..400)
        .map(|i| ["the cat sat. ", "a dog ran. "][i % 2])
        .collect();
    std::fs::write(&corpus, &text).unwrap();
    let model = GptConfig::new(0)
        .with_context(24)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut bc = ArTrainConfig::new(model, corpus.to_str().unwrap());
    (bc.steps, bc.batch_size, bc.eval_every) = (20, 8, 20);
    let base = dir.join("base");
    train_ar(&bc, &opts(&base, Device::flex())).unwrap();
    let pairs = dir.join("pairs.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            let (p, c) = [("the cat", " sat."), ("a dog", " ran.")][i % 2];
            format!("{{\"prompt\": \"{p}\", \"completion\": \"{c}\"}}\n")
        })
        .collect();
    std::fs::write(&pairs, lines).unwrap();
    (base, pairs)
}

/// The frozen weights of a model, in visit order: every parameter but the adapters' factors
/// (burn visits a reparameterized weight's base, then its factors inside a `Reparameterization`
/// module).
fn frozen<M: Module>(m: &M) -> Vec<f32> {
    struct Bases(usize, Vec<f32>);
    impl ModuleVisitor for Bases {
        fn enter_module(&mut self, _: &str, container: &str) {
            self.0 += usize::from(container == "Reparameterization");
        }
        fn exit_module(&mut self, _: &str, container: &str) {
            self.0 -= usize::from(container == "Reparameterization");
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.0 == 0 {
                self.1.extend(
                    p.val()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .unwrap(),
                );
            }
        }
    }
    let mut bases = Bases(0, Vec::new());
    m.visit(&mut bases);
    bases.1
}

#[test]
fn lora_sft_trains_adapters_only_resumes_exactly_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (base, pairs) = char_base(dir.path());
    let c = SftConfig {
        data: pairs.to_str().unwrap().into(),
        steps: 12,
        batch_size: 8,
        pack: true,
        eval_every: 6,
        lr: 1e-2,
        lora: Some(LoraConfig::default().with_rank(4)),
        ..SftConfig::default()
    };
    let a = dir.path().join("a");
    let straight = sft(&base, &c, &opts(&a, Device::flex())).unwrap();
    let (first, last) = (straight.evals[0], *straight.evals.last().unwrap());
    assert!(last.1 < first.1, "held-out NLL {first:?} -> {last:?}");
    // qkv, proj, fc and out of the one block.
    assert_eq!(straight.model.adapters(), 4);
    let base_model = load_ar(&base, &Device::flex()).unwrap().model;
    let before = params(&base_model);
    let kept = frozen(&straight.model);
    assert_eq!(kept.len(), before.len());
    let moved = kept.iter().zip(&before).filter(|(x, y)| x != y).count();
    let first = kept.iter().zip(&before).position(|(x, y)| x != y);
    assert_eq!(
        moved, 0,
        "{moved} frozen weights moved, the first at {first:?}"
    );
    let merged_moved = params(&straight.model.clone().merge_lora())
        .iter()
        .zip(&before)
        .filter(|(x, y)| x != y)
        .count();
    assert!(merged_moved > 0, "the adapters changed nothing");

    let mut one = opts(&dir.path().join("b"), Device::flex());
    one.stop_after = Some(6);
    sft(&base, &c, &one).unwrap();
    let mut two = opts(&dir.path().join("b"), Device::flex());
    two.resume = true;
    let resumed = sft(&base, &c, &two).unwrap();
    let (x, y) = (params(&straight.model), params(&resumed.model));
    assert_eq!(x.len(), y.len());
    assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));

    // The run loads with its adapters; merged, it is a plain run with the same logits.
    let device = Device::flex();
    let adapted = load_ar(&a, &device).unwrap().model;
    assert_eq!(adapted.adapters(), 4);
    let m = dir.path().join("merged");
    merge(&a, &m, &device).unwrap();
    let merged = load_ar(&m, &device).unwrap().model;
    assert_eq!(merged.adapters(), 0);
    assert_eq!(merged.num_params(), base_model.num_params());
    let data: Vec<i64> = (0..2 * 20).map(|i| (i * 5 % 9) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(data, [2, 20]), &device);
    let diff = (adapted.forward(tokens.clone()) - merged.forward(tokens))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 1e-5, "merged logits differ by {diff}");

    // Merging twice, tuning from unmerged adapters, and a head target on a tied head are
    // refused before anything is written.
    let e = merge(&m, &dir.path().join("again"), &device).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("no LoRA"),
        "{e}"
    );
    let g = GrpoConfig {
        reward: "regex:.*".into(),
        steps: 2,
        ..GrpoConfig::default()
    };
    let e = grpo(&a, &g, &opts(&dir.path().join("x"), Device::flex())).unwrap_err();
    assert!(e.to_string().contains("tune merge"), "{e}");
    let head = SftConfig {
        lora: Some(LoraConfig::default().with_targets(vec!["head".into()])),
        ..c
    };
    let e = sft(&base, &head, &opts(&dir.path().join("x"), Device::flex())).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("tied"),
        "{e}"
    );
    assert!(!dir.path().join("x").exists() && !dir.path().join("again").exists());
}
