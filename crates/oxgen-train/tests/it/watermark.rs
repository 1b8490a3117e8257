//! The KGW measurement end to end on a small character model: calibration (no false positive
//! at z ≥ 4, exact p-values flat over keys), power of the watermark, every attack at every
//! strength, the quality cost, and the three PNG curves.

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_models::ar::watermark::{Kgw, Seeding, Tournament, WatermarkKey};
use oxgen_train::ar::{ArTrainConfig, load_ar, train_ar};
use oxgen_train::watermark::Scheme;
use oxgen_train::watermark::eval::{EvalConfig, evaluate};

use crate::common::opts;

const TEXT: &str = "Shall I compare thee to a summer's day? Thou art more lovely and more \
temperate: rough winds do shake the darling buds of May, and summer's lease hath all too short \
a date; sometime too hot the eye of heaven shines, and often is his gold complexion dimm'd.\n";

#[test]
fn watermark_eval_is_calibrated_powerful_and_plots_its_attacks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = d.join("sonnet.txt");
    std::fs::write(&corpus, TEXT.repeat(30)).unwrap();
    let model = GptConfig::new(0)
        .with_context(32)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut c = ArTrainConfig::new(model, corpus.to_str().unwrap());
    (c.steps, c.batch_size, c.eval_every, c.lr) = (150, 16, 150, 5e-3);
    let run = d.join("run");
    train_ar(&c, &opts(&run, Device::flex())).unwrap();
    let run = load_ar(&run, &Device::flex()).unwrap();
    let kgw = Scheme::Kgw(Kgw {
        key: WatermarkKey::from_words(11, 12),
        gamma: 0.25,
        delta: 4.0,
        seeding: Seeding::LeftHash4,
    });
    let tournament = Scheme::Tournament(Tournament {
        key: WatermarkKey::from_words(13, 14),
        layers: 30,
        seeding: Seeding::LeftHash4,
    });
    let config = EvalConfig {
        windows: 300,
        plain: 300,
        marked: 60,
        length: 100,
        max_length: 100,
        attacked: 40,
        tradeoff: 20,
        ..Default::default()
    };
    let text = TEXT.repeat(30);
    for (name, scheme) in [("kgw", &kgw), ("tournament", &tournament)] {
        let out = d.join(name);
        let r = evaluate(
            &run,
            scheme,
            text.as_bytes(),
            &config,
            &out,
            &Device::flex(),
        )
        .unwrap();
        assert_eq!(r.negatives, 600);
        assert!(r.false_positives <= 1, "{r:?}");
        assert!(r.key_per_text.ks_p_exact > 1e-3, "{:?}", r.key_per_text);
        assert!(r.tpr_at_4 > 0.5, "power {}", r.tpr_at_4);
        assert_eq!(r.attacks.len(), 12);
        let at = |a: &str, rate: f64| {
            r.attacks
                .iter()
                .find(|x| x.attack == a && (x.rate - rate).abs() < 1e-9)
                .unwrap()
                .mean_z
        };
        // Heavier attacks leave less of the watermark.
        assert!(at("substitution", 0.3) < at("substitution", 0.0));
        assert!(at("deletion", 0.3) < at("deletion", 0.0));
        assert!(at("paraphrase", 0.3) < at("paraphrase", 0.0));
        // KGW's bias costs likelihood under the unwatermarked model; the tournament's does not
        // have to.
        let q = &r.quality;
        assert!(q.plain_nll.is_finite() && q.marked_nll.is_finite(), "{q:?}");
        if name == "kgw" {
            assert!(q.marked_nll > q.plain_nll, "{q:?}");
            // The sweep: four biases and three depths; a larger δ costs more.
            assert_eq!(r.tradeoff.len(), 7);
            let cost = |d: f64| r.tradeoff.iter().find(|p| p.param == d).unwrap().nll_cost;
            assert!(cost(4.0) > cost(0.5), "{:?}", r.tradeoff);
            assert!(out.join("tradeoff.png").exists());
        } else {
            assert!(r.tradeoff.is_empty());
        }
        println!("{name}: power {}, {q:?}", r.tpr_at_4);
        for png in ["calibration.png", "power.png", "attacks.png"] {
            assert!(out.join(png).exists(), "{png}");
        }
    }
}
