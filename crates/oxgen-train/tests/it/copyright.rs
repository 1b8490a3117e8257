//! Copyright safety: sharded training, NAF sampling and scoring over the shards, and the
//! extraction audit.

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_models::ar::naf::{NafRule, generate_naf};
use oxgen_train::Error;
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::copyright::canary::{Canary, plant};
use oxgen_train::copyright::extraction::{
    ExtractionOptions, Target, extraction_audit, nll_of_text_under,
};
use oxgen_train::copyright::shard::{DocumentUnit, ShardKey};
use oxgen_train::copyright::sharded::{
    ShardManifest, ShardSpec, load_sharded, read_manifest, train_ar_sharded,
};

use crate::common::{opts, params};

/// A text of `n` short paragraphs over a small vocabulary, every digit among them.
fn paragraphs(n: usize) -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away",
    ];
    (0..n)
        .map(|i| {
            let w: Vec<&str> = (0..5)
                .map(|j| words[(i * 7 + j * 3 + i / 3) % 10])
                .collect();
            format!(
                "speaker {} of {}:\n{}.\n\n",
                ["ann", "bob", "cy"][i % 3],
                i % 10,
                w.join(" ")
            )
        })
        .collect()
}

fn tiny(data: &str, steps: usize) -> ArTrainConfig {
    let model = GptConfig::new(0)
        .with_context(32)
        .with_layers(2)
        .with_heads(2)
        .with_width(48)
        .with_dropout(0.0);
    let mut c = ArTrainConfig::new(model, data);
    c.steps = steps;
    c.batch_size = 16;
    c.lr = 3e-3;
    c.schedule.warmup_steps = 5;
    c.eval_every = 4;
    c.eval_batches = 2;
    c
}

fn spec(hi: u64) -> ShardSpec {
    ShardSpec {
        shards: 2,
        unit: DocumentUnit::Paragraph,
        key: ShardKey::from_words(hi, 7),
    }
}

/// The run folder records every document's shard; the shards partition the sharded part and
/// every copy of a canary sits in one shard; a sharded run stopped midway and resumed equals
/// one trained straight, shard by shard, bit for bit; resuming with another key, training
/// over a sharded run, and NAF on an unsharded run are refused with typed errors; NAF samples
/// over the shards stay within their bound.
#[test]
fn sharded_runs_record_their_plan_and_resume_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (text, canaries) = plant(&paragraphs(300), 2, 20, 0.8, 3).unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, &text).unwrap();
    let config = tiny(file.to_str().unwrap(), 8);
    let device = Device::flex();

    let straight = dir.path().join("straight");
    let a = train_ar_sharded(&config, &spec(1), &opts(&straight, device.clone())).unwrap();
    assert_eq!(a.len(), 2);
    let split = dir.path().join("split");
    let mut first = opts(&split, device.clone());
    first.stop_after = Some(4);
    let stopped = train_ar_sharded(&config, &spec(1), &first).unwrap();
    assert!(stopped.iter().all(|r| r.steps == 4));
    let mut second = opts(&split, device.clone());
    second.resume = true;
    let b = train_ar_sharded(&config, &spec(1), &second).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y.steps, 8);
        let (p, q) = (params(&x.model), params(&y.model));
        assert!(p.iter().zip(&q).all(|(u, v)| u.to_bits() == v.to_bits()));
    }
    // The plan: documents tile the sharded part, both shards get some, canaries stay whole.
    let m = read_manifest(&split).unwrap();
    assert_eq!(m, read_manifest(&straight).unwrap());
    let mut at = 0;
    for (r, s) in &m.plan.documents {
        assert_eq!(r.start, at);
        assert!(*s < 2);
        at = r.end;
    }
    assert_eq!(at, m.train_bytes);
    assert!(m.counts.iter().all(|&c| c > 50), "{:?}", m.counts);
    for c in &canaries {
        let line = format!("{}{}", c.prefix.trim_start(), c.secret);
        let shards: std::collections::BTreeSet<usize> = m
            .plan
            .documents
            .iter()
            .filter(|(r, _)| text[r.clone()].trim_end() == line)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(shards.len(), 1, "{line}: {shards:?}");
    }
    // Refusals.
    let mut again = opts(&split, device.clone());
    again.resume = true;
    assert!(matches!(
        train_ar_sharded(&config, &spec(2), &again),
        Err(Error::Checkpoint { .. })
    ));
    assert!(matches!(
        train_ar_sharded(&config, &spec(1), &opts(&split, device.clone())),
        Err(Error::Config(_))
    ));
    let single = dir.path().join("single");
    train_ar(&config, &opts(&single, device.clone())).unwrap();
    assert!(matches!(
        load_sharded(&single, &device),
        Err(Error::NotSharded { .. })
    ));
    assert!(
        ShardManifest::shard_dir(&split, 1)
            .join("checkpoints")
            .exists()
    );
    // NAF over the loaded shards: the realised Δ within the bound, the text decodes.
    let run = load_sharded(&split, &device).unwrap();
    let prompt = run.shards[0].codec.encode("speaker").unwrap();
    let (out, ledger) =
        generate_naf(&run.models(), NafRule::CpK, &prompt, 20, 1.0, 0, &device).unwrap();
    assert_eq!(out.len(), 20);
    assert!(ledger.delta() <= ledger.bound + 1e-9, "{ledger:?}");
}

/// A model trained on a text with a planted canary exposes it (rank 1 of 1,001: the largest
/// exposure measurable, log₂ 1001 = 9.97 bits) and extracts it greedily; a secret of digits the
/// canary lacks ranks low; the NAF of two copies of one model is that model (same exposure, same
/// NLL); two models that disagree cost NLL under CP-k, never less than their better one.
#[test]
fn the_extraction_audit_finds_a_memorised_canary() {
    let dir = tempfile::tempdir().unwrap();
    let (text, canaries) = plant(&paragraphs(300), 1, 30, 0.8, 5).unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, &text).unwrap();
    let device = Device::flex();
    let config = tiny(file.to_str().unwrap(), 400);
    let run_dir = dir.path().join("run");
    train_ar(&config, &opts(&run_dir, device.clone())).unwrap();
    let run = oxgen_train::ar::load_ar(&run_dir, &device).unwrap();
    let unseen = Canary {
        prefix: canaries[0].prefix.clone(),
        // Digits the planted secret lacks.
        secret: ('0'..='9')
            .filter(|d| !canaries[0].secret.contains(*d))
            .cycle()
            .take(6)
            .collect(),
    };
    let o = ExtractionOptions {
        candidates: 1000,
        samples: 20,
        seed: 1,
    };
    let one = Target::Model(&run.model);
    let r = extraction_audit(
        &one,
        &run.codec,
        &[canaries[0].clone(), unseen.clone()],
        &o,
        &device,
    )
    .unwrap();
    let (planted, never) = (&r.canaries[0], &r.canaries[1]);
    assert_eq!(planted.rank, 1, "{r:?}");
    assert!((planted.exposure - 1001f64.log2()).abs() < 1e-9);
    assert!(
        planted.greedy_extracted && planted.sampled_extracted >= 3,
        "{r:?}"
    );
    assert!(
        never.exposure < 3.0 && never.rank > 100 && !never.greedy_extracted,
        "{r:?}"
    );
    let same = Target::Naf {
        models: vec![&run.model, &run.model],
        rule: NafRule::CpK,
    };
    let s = extraction_audit(&same, &run.codec, &canaries[..1], &o, &device).unwrap();
    assert_eq!(s.canaries[0].rank, 1);
    assert!(
        (s.canaries[0].nll - planted.nll).abs() < 1e-3,
        "{s:?} vs {r:?}"
    );
    // Sequence-level CP-k over two copies accepts every proposal (min = mixture) and ranks as
    // the model does; it has no greedy continuation and no per-token likelihood.
    let seq = Target::NafSequence {
        models: vec![&run.model, &run.model],
        max_proposals: 1,
    };
    let q = extraction_audit(&seq, &run.codec, &canaries[..1], &o, &device).unwrap();
    assert_eq!(
        (q.canaries[0].rank, q.canaries[0].sampled, q.refused),
        (1, 20, 0)
    );
    assert!(q.greedy_rate.is_none() && q.canaries[0].sampled_extracted >= 3);
    assert!((q.canaries[0].nll - planted.nll).abs() < 1e-3);
    assert!(nll_of_text_under(&seq, &run.codec, "speaker", &device).is_err());
    let held = &text[text.len() - 2000..];
    let (n1, t1) = nll_of_text_under(&one, &run.codec, held, &device).unwrap();
    let (n2, t2) = nll_of_text_under(&same, &run.codec, held, &device).unwrap();
    assert_eq!(t1, t2);
    assert!((n1 - n2).abs() < 1e-3 * n1, "{n1} vs {n2}");
}

/// digits8 with planted duplicates: every copy of an image lands in the shard of its pixels,
/// the shards partition the training images, and the image audit of the shards' NAF samples
/// reports over its samples (sequence-level CP-k is refused for 64-pixel images).
#[test]
fn sharded_digits_keep_duplicates_together_and_the_image_audit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let mut config = ArTrainConfig::defaults("digits8");
    config.model = config.model.with_layers(1).with_width(24).with_heads(2);
    (config.steps, config.batch_size, config.eval_every) = (3, 8, 3);
    config.duplicates = Some([3, 10]);
    let out = dir.path().join("naf");
    train_ar_sharded(&config, &spec(9), &opts(&out, device.clone())).unwrap();
    let m = read_manifest(&out).unwrap();
    let oxgen_train::ar::TextData::Pixels { train, .. } =
        oxgen_train::ar::load_text(&config).unwrap()
    else {
        panic!("digits8 loads as pixels")
    };
    assert_eq!(m.plan.documents.len(), train.len());
    assert_eq!(m.counts.iter().sum::<usize>(), train.len());
    let mut shard_of = std::collections::HashMap::new();
    for (r, s) in &m.plan.documents {
        assert_eq!(*shard_of.entry(&train[r.start]).or_insert(*s), *s);
    }
    let copies = train
        .iter()
        .filter(|r| train.iter().filter(|q| q == r).count() >= 10);
    assert_eq!(copies.count(), 30);
    let run = load_sharded(&out, &device).unwrap();
    let naf = Target::Naf {
        models: run.models(),
        rule: NafRule::CpK,
    };
    let cache = dir.path().join("eval");
    std::fs::create_dir_all(&cache).unwrap();
    let a =
        oxgen_train::copyright::images::image_audit(&naf, &config, 20, 0, &cache, &device).unwrap();
    assert_eq!((a.memorization.samples, a.planted), (20, [3, 10]));
    assert!(a.fd.is_finite() && a.fd > 0.0 && (0.0..=1.0).contains(&a.planted_near));
    let seq = Target::NafSequence {
        models: run.models(),
        max_proposals: 10,
    };
    assert!(
        oxgen_train::copyright::images::image_audit(&seq, &config, 2, 0, &cache, &device).is_err()
    );
}

/// Sharded diffusion on digits8 with planted duplicates: every copy of an image in one shard;
/// stopped and resumed equals straight, shard by shard (EMA weights); the NAF draw of two
/// loaded shards averages them and the image audit measures it against the run's own split.
#[test]
fn sharded_diffusion_resumes_every_shard_and_samples_their_average() {
    use oxgen_models::diffusion::DenoiserConfig;
    use oxgen_models::diffusion::unet::UNetConfig;
    use oxgen_train::copyright::sharded_diffusion::{
        load_sharded_diffusion, split_rows, train_diffusion_sharded,
    };
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let data = oxgen_train::data::digits8();
    let mut c = oxgen_train::TrainConfig::defaults("digits8", data.shape, data.num_classes);
    c.model.denoiser = DenoiserConfig::UNet(
        UNetConfig::new()
            .with_channels(8)
            .with_groups(2)
            .with_heads(2),
    );
    (c.steps, c.batch_size, c.checkpoint_every) = (4, 8, 2);
    c.schedule.warmup_steps = 1;
    c.duplicates = Some([2, 10]);
    let straight = dir.path().join("straight");
    let a = train_diffusion_sharded(&c, &spec(4), &opts(&straight, device.clone())).unwrap();
    let split = dir.path().join("split");
    let mut first = opts(&split, device.clone());
    first.stop_after = Some(2);
    train_diffusion_sharded(&c, &spec(4), &first).unwrap();
    let mut second = opts(&split, device.clone());
    second.resume = true;
    let b = train_diffusion_sharded(&c, &spec(4), &second).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y.steps, 4);
        assert_eq!(params(&x.ema), params(&y.ema));
    }
    let m = read_manifest(&split).unwrap();
    let (train, _) = split_rows(&c).unwrap();
    assert_eq!(m.counts.iter().sum::<usize>(), train.len());
    let mut shard_of = std::collections::HashMap::new();
    for (r, s) in &m.plan.documents {
        let key: Vec<u32> = train.row(r.start).iter().map(|v| v.to_bits()).collect();
        assert_eq!(*shard_of.entry(key).or_insert(*s), *s);
    }
    let (config, runs) = load_sharded_diffusion(&split, &device).unwrap();
    assert_eq!(
        (config.val_fraction, config.duplicates),
        (c.val_fraction, c.duplicates)
    );
    let models: Vec<_> = runs.iter().map(|r| &r.ema).collect();
    let mut s = config.sample.clone();
    s.steps = 3;
    let labels: Vec<u32> = (0..8).map(|i| i % 10).collect();
    let x = oxgen_models::diffusion::naf::sample_naf(
        &models,
        &config.model,
        &s,
        8,
        Some(&labels),
        &device,
    )
    .unwrap();
    let x = oxgen_train::sample::host_samples(x, "NAF").unwrap();
    assert_eq!(x.len(), 8 * 64);
    let cache = dir.path().join("eval");
    std::fs::create_dir_all(&cache).unwrap();
    let audit = oxgen_train::copyright::images::diffusion_image_audit(&x, &config, &cache, &device)
        .unwrap();
    assert_eq!((audit.memorization.samples, audit.planted), (8, [2, 10]));
    assert!(audit.fd.is_finite());
    assert!(matches!(
        load_sharded(&split, &device),
        Err(Error::Checkpoint { .. })
    ));
}
