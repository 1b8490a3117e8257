//! Prediction is compression: byte-identical round trips through `compress`/`decompress` with
//! a byte model, a character model (escapes for what it never saw) and the pixel GPT; the
//! achieved size within 1% of the model's code length plus the header; and typed errors, with
//! no output left behind, for a corrupt header, a cut or corrupt body, another checkpoint,
//! another CPU class, a missing file and a GAN run.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_train::Error;
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::compress::format::Header;
use oxgen_train::compress::{CompressOptions, Summary, compress, decompress};
use oxgen_train::family::{FamilyConfig, train_family};
use rand::{RngCore, SeedableRng};

use crate::common::opts;

const TEXT: &str = "It is a truth universally acknowledged, that a single man in \
possession of a good fortune, must be in want of a wife. However little known the feelings \
or views of such a man may be on his first entering a neighbourhood, this truth is so well \
fixed in the minds of the surrounding families, that he is considered the rightful property \
of some one or other of their daughters.\n";

/// A one-block model trained 300 steps on `TEXT` repeated, with `tokenizer` (`bytes` or
/// `chars`), context 32.
fn text_run(dir: &Path, tokenizer: &str) -> PathBuf {
    let corpus = dir.join(format!("corpus-{tokenizer}.txt"));
    std::fs::write(&corpus, TEXT.repeat(20)).unwrap();
    let model = GptConfig::new(0)
        .with_context(32)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut c = ArTrainConfig::new(model, corpus.to_str().unwrap());
    c.tokenizer = tokenizer.into();
    (c.steps, c.batch_size, c.eval_every, c.lr) = (300, 16, 300, 5e-3);
    c.schedule.warmup_steps = 5;
    let run = dir.join(format!("run-{tokenizer}"));
    train_ar(&c, &opts(&run, Device::flex())).unwrap();
    run
}

fn quiet() -> CompressOptions {
    CompressOptions {
        progress: false,
        baselines: false,
    }
}

/// Compresses `data` and decompresses it again; returns the summary.
fn round_trip(run: &Path, dir: &Path, name: &str, data: &[u8]) -> Summary {
    let (input, packed, output) = (
        dir.join(name),
        dir.join(format!("{name}.oxgz")),
        dir.join(format!("{name}.out")),
    );
    std::fs::write(&input, data).unwrap();
    let s = compress(run, &input, &packed, &quiet()).unwrap();
    assert_eq!(
        s.output_bytes as u64,
        std::fs::metadata(&packed).unwrap().len()
    );
    decompress(run, &packed, &output, false).unwrap();
    assert_eq!(
        std::fs::read(&output).unwrap(),
        data,
        "{name} did not round-trip"
    );
    s
}

#[test]
fn text_round_trips_near_the_model_nll_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = text_run(d, "bytes");
    let chars = text_run(d, "chars");
    let mut noise = vec![0u8; 3000];
    rand::rngs::StdRng::seed_from_u64(5).fill_bytes(&mut noise);
    let long = TEXT.repeat(4); // 1,500-odd characters: more than 40 contexts of 32
    let unseen = "It is a trüth — ünïversally acknowledged ✓ 猫\n";
    for run in [&bytes, &chars] {
        round_trip(run, d, "empty", b"");
        round_trip(run, d, "one", b"I");
        round_trip(run, d, "noise", &noise);
        round_trip(run, d, "unseen", unseen.as_bytes());
        let s = round_trip(run, d, "long", long.as_bytes());
        // The body is the model's code length to within 1% (plus the coder's final word).
        let body_bits = 8.0 * (s.output_bytes - s.header_bytes) as f64;
        assert!(
            body_bits <= s.model_bits * 1.01 + 64.0,
            "{body_bits} bits against the model's {}",
            s.model_bits
        );
        assert!(body_bits >= s.model_bits * 0.99 - 64.0);
        // And the model has learned the text: well under 8 bits per symbol.
        assert!(
            s.model_bits_per_symbol() < 3.0,
            "{}",
            s.model_bits_per_symbol()
        );
    }

    // Bad files: each a typed error, and no output file.
    let packed = d.join("long.oxgz");
    let good = std::fs::read(&packed).unwrap();
    let out = d.join("bad.out");
    let try_bytes = |name: &str, bytes: &[u8], run: &Path| {
        let f = d.join(name);
        std::fs::write(&f, bytes).unwrap();
        let e = decompress(run, &f, &out, false).unwrap_err();
        assert!(!out.exists(), "{name} left an output file");
        e
    };
    let mut header = good.clone();
    header[20] ^= 1;
    let e = try_bytes("header.oxgz", &header, &chars);
    assert!(
        matches!(e, Error::Compressed { .. }) && e.to_string().contains("header"),
        "{e}"
    );
    let e = try_bytes("cut.oxgz", &good[..good.len() - 7], &chars);
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut body = good.clone();
    let last = body.len() - 20;
    body[last] ^= 0x55;
    let e = try_bytes("body.oxgz", &body, &chars);
    assert!(matches!(e, Error::Compressed { .. }), "{e}");
    let e = try_bytes("other.oxgz", &good, &bytes);
    assert!(e.to_string().contains("another checkpoint"), "{e}");
    let (mut h, words) = Header::read(&good, &packed).unwrap();
    h.class = "cpu-elsewhere-neon".into();
    let e = try_bytes("class.oxgz", &h.write(&words), &chars);
    assert!(e.to_string().contains("cpu-elsewhere-neon"), "{e}");
    let e = try_bytes("magic.oxgz", b"PK\x03\x04 not ours", &chars);
    assert!(e.to_string().contains("magic"), "{e}");
    let e = decompress(&chars, &d.join("missing.oxgz"), &out, false).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");

    // A GAN has no likelihood to code with.
    let moons = oxgen_train::data::load("moons", 0, &Default::default()).unwrap();
    let mut g = FamilyConfig::defaults("gan", &moons).unwrap();
    g.steps = 2;
    train_family(&g, &opts(&d.join("gan"), Device::flex())).unwrap();
    let e = compress(
        &d.join("gan"),
        &d.join("long"),
        &d.join("gan.oxgz"),
        &quiet(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("no likelihood"),
        "{e}"
    );
    assert!(!d.join("gan.oxgz").exists());
}

#[test]
fn digits_round_trip_through_the_pixel_gpt_near_its_nll() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = ArTrainConfig::defaults("digits8");
    c.steps = 60;
    let run = d.join("pixels");
    train_ar(&c, &opts(&run, Device::flex())).unwrap();
    let digits = oxgen_train::data::digits8();
    let images = &digits.x[..120 * 64];
    let npy = oxgen_train::npy::encode_f32(images, &[120, 64]);
    let s = round_trip(&run, d, "digits.npy", &npy);
    assert_eq!((s.symbols, s.symbol), (120 * 64, "pixel"));
    let body_bits = 8.0 * (s.output_bytes - s.header_bytes) as f64;
    assert!(
        (body_bits - s.model_bits).abs() <= s.model_bits * 0.01 + 64.0,
        "{body_bits} bits against the model's {}",
        s.model_bits
    );
    // Values that are not the 17 levels are refused, as is a text run's text.
    let off = oxgen_train::npy::encode_f32(&[0.3; 64], &[1, 64]);
    std::fs::write(d.join("off.npy"), off).unwrap();
    let e = compress(&run, &d.join("off.npy"), &d.join("off.oxgz"), &quiet()).unwrap_err();
    assert!(
        matches!(e, Error::Parse { .. }) && e.to_string().contains("levels"),
        "{e}"
    );
    assert!(!d.join("off.oxgz").exists());
}

/// Bits-back coding with the digits VAE (300 steps): 120 images round-trip, and the net length
/// (the body less the stack's initial words) is within 2% of the negative ELBO.
#[test]
fn vae_bits_back_round_trips_near_the_negative_elbo() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let digits = oxgen_train::data::digits8();
    let mut c = FamilyConfig::defaults("vae", &digits).unwrap();
    c.steps = 300;
    let run = d.join("vae");
    train_family(&c, &opts(&run, Device::flex())).unwrap();
    let npy = oxgen_train::npy::encode_f32(&digits.x[..120 * 64], &[120, 64]);
    let s = round_trip(&run, d, "digits.npy", &npy);
    let net = 8.0 * (s.output_bytes - s.header_bytes) as f64 - s.initial_bits;
    println!(
        "bits-back: {net:.0} net bits, negative ELBO {:.0} bits ({:+.2}%)",
        s.model_bits,
        100.0 * (net / s.model_bits - 1.0)
    );
    assert!(
        (net - s.model_bits).abs() <= 0.02 * s.model_bits,
        "{net} net bits against a negative ELBO of {}",
        s.model_bits
    );
}

/// Dequantisation and local bits-back coding with the digits flow (300 steps): 120 images
/// round-trip, and the net length is within 2% of the flow's dequantised NLL (Ho, Lohn &
/// Abbeel, 2019: local bits-back coding attains the flow's code length).
#[test]
fn flow_local_bits_back_round_trips_near_the_dequantised_nll() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let digits = oxgen_train::data::digits8();
    let mut c = FamilyConfig::defaults("flow", &digits).unwrap();
    c.steps = 300;
    let run = d.join("flow");
    train_family(&c, &opts(&run, Device::flex())).unwrap();
    let npy = oxgen_train::npy::encode_f32(&digits.x[..120 * 64], &[120, 64]);
    let s = round_trip(&run, d, "digits.npy", &npy);
    assert_eq!(s.bound, "dequantised NLL");
    let net = 8.0 * (s.output_bytes - s.header_bytes) as f64 - s.initial_bits;
    println!(
        "flow bits-back: {net:.0} net bits, dequantised NLL {:.0} bits ({:+.2}%)",
        s.model_bits,
        100.0 * (net / s.model_bits - 1.0)
    );
    assert!(
        (net - s.model_bits).abs() <= 0.02 * s.model_bits,
        "{net} net bits against a dequantised NLL of {}",
        s.model_bits
    );
    // One image, and none, round-trip too.
    round_trip(
        &run,
        d,
        "one.npy",
        &oxgen_train::npy::encode_f32(&digits.x[64..128], &[1, 64]),
    );
    round_trip(
        &run,
        d,
        "none.npy",
        &oxgen_train::npy::encode_f32(&[], &[0, 64]),
    );
}
