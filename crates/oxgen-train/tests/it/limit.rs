//! A trained character model as a generator in the limit game: trained on strings of the
//! target (the strings over {a, b} with at most 3 b's, from `examples/limit/bcount.toml`),
//! then played unconstrained and constrained to KM's hypothesis.

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_train::ar::{ArTrainConfig, load_ar, train_ar};
use oxgen_train::limit::model::ModelLines;
use oxgen_train::limit::{Collection, GameConfig, Generator, Order, play};

use crate::common::opts;

/// Constrained to KM's hypothesis (inside the target once KM's hypothesis settles, by step 10
/// here), a line is a member of the target, so the constrained game's validity over its last
/// tenth is at least the unconstrained one's (measured 1.0 against 0.5: the small model writes
/// strings with a fourth b, or repeats); both games play every step, and lines drawn under a
/// hypothesis are all inside it.
#[test]
fn a_trained_model_generates_and_its_constraint_holds() {
    let dir = tempfile::tempdir().unwrap();
    let collection = Collection::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/limit/bcount.toml"
        )
        .as_ref(),
    )
    .unwrap();
    let text = dir.path().join("target.txt");
    oxgen_train::limit::report::write_target_text(&collection, 5, 1500, 0, 64, &text).unwrap();
    let model = GptConfig::new(0)
        .with_context(32)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut c = ArTrainConfig::new(model, text.to_str().unwrap());
    (c.steps, c.batch_size, c.eval_every, c.lr) = (200, 16, 200, 5e-3);
    let run_dir = dir.path().join("run");
    train_ar(&c, &opts(&run_dir, Device::flex())).unwrap();
    let run = load_ar(&run_dir, &Device::flex()).unwrap();
    let langs = collection.take(64).unwrap();
    let game = |constrained| {
        let mut lines = ModelLines::new(&run, &Device::flex(), 3, 0.95, 24).unwrap();
        let config = GameConfig {
            target: 5,
            order: Order::Random,
            generator: Generator::Model { constrained },
            steps: 60,
            points: 6,
            ..GameConfig::default()
        };
        play(
            &langs,
            &config,
            Some(&mut lines),
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap()
    };
    let (free, masked) = (game(false), game(true));
    println!("model: {free:?}\nconstrained: {masked:?}");
    assert_eq!((free.played, masked.played), (60, 60));
    assert!(masked.validity_last_tenth >= free.validity_last_tenth - 1e-9);
    // Lines drawn under KM's final hypothesis are all inside it.
    let h = langs
        .iter()
        .find(|l| Some(&l.name) == masked.hypothesis.as_ref())
        .unwrap();
    let mut lines = ModelLines::new(&run, &Device::flex(), 9, 0.95, 24).unwrap();
    for _ in 0..20 {
        if let Some(s) = lines.line(Some(h)) {
            assert!(h.contains(&s), "{s:?} is outside {}", h.name);
        }
    }
}
