//! The autoregressive trainer: exact resume (with dropout), a text file, typed errors.

use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_train::ar::{ArTrainConfig, train_ar};

use crate::common::{assert_same_weights, opts};

fn tiny(data: &str, steps: usize) -> ArTrainConfig {
    let model = GptConfig::new(0)
        .with_context(24)
        .with_layers(1)
        .with_heads(2)
        .with_width(32)
        .with_dropout(0.1);
    let mut c = ArTrainConfig::new(model, data);
    c.steps = steps;
    c.batch_size = 8;
    c.grad_accum = 2;
    c.schedule.warmup_steps = 2;
    c.eval_every = 4;
    c.eval_batches = 2;
    c
}

/// N steps straight equal k steps, a checkpoint, a resume and N − k steps, bit for bit, with
/// dropout and gradient accumulation on.
#[test]
fn ar_resume_is_bit_exact() {
    let config = tiny("arithmetic", 10);
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train_ar(&config, &opts(straight_dir.path(), Device::flex())).unwrap();
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = opts(split_dir.path(), Device::flex());
    first.stop_after = Some(6);
    assert_eq!(train_ar(&config, &first).unwrap().steps, 6);
    let mut second = opts(split_dir.path(), Device::flex());
    second.resume = true;
    let resumed = train_ar(&config, &second).unwrap();
    assert_eq!(resumed.steps, 10);
    assert_same_weights(&straight.model, &resumed.model);
    let lines = std::fs::read_to_string(split_dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 10);
    assert!(split_dir.path().join("loss.png").exists());
}

/// A text file: character vocabulary from the file, validation loss falls well below the
/// uniform ln(vocab) on a corpus with obvious structure.
#[test]
fn ar_trains_on_a_text_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abc.txt");
    let text: String = (0..400)
        .map(|i| ["the cat sat. ", "a dog ran. "][i % 2])
        .collect();
    std::fs::write(&file, &text).unwrap();
    let mut config = tiny(file.to_str().unwrap(), 60);
    config.model.dropout = 0.0;
    config.lr = 3e-3;
    config.eval_every = 30;
    let out = dir.path().join("run");
    let report = train_ar(&config, &opts(&out, Device::flex())).unwrap();
    let chars = 13.0f64; // " .acdeghnorst"
    assert_eq!(report.model.context(), 24);
    let (_, last) = *report.val.last().unwrap();
    assert!(
        last < 0.5 * chars.ln(),
        "validation {last} vs uniform {}",
        chars.ln()
    );
    assert!(report.last_loss < report.first_loss / 2.0);
}

#[test]
fn ar_unknown_data_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = train_ar(
        &tiny("no-such-corpus.txt", 3),
        &opts(dir.path(), Device::flex()),
    )
    .unwrap_err();
    assert!(
        matches!(e, oxgen_train::Error::UnknownDataset { .. }),
        "{e}"
    );
}

/// A saved run loads back (weights and codec, no data file needed) and scores text exactly as
/// the trained model does; text past the window is scored in overlapping windows.
#[test]
fn ar_checkpoint_loads_and_scores_text() {
    use burn::tensor::{Int, Tensor, TensorData};
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny("arithmetic", 4);
    config.model.dropout = 0.0;
    let report = train_ar(&config, &opts(dir.path(), Device::flex())).unwrap();
    let run = oxgen_train::ar::load_ar(dir.path(), &Device::flex()).unwrap();
    let line = "\n12+34=640";
    let (nats, tokens, chars) = oxgen_train::ar::nll_of_text(&run, line, &Device::flex()).unwrap();
    assert_eq!((tokens, chars), (9, 9));
    let ids: Vec<i64> = run
        .codec
        .encode(line)
        .unwrap()
        .iter()
        .map(|&t| t as i64)
        .collect();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 10]), &Device::flex());
    let want = -report.model.log_prob(t).into_scalar::<f32>() as f64;
    assert!((nats - want).abs() < 1e-4 * want, "{nats} vs {want}");
    // Two lines (19 tokens) against a window of 10: two windows, every token scored once.
    let (_, tokens, _) =
        oxgen_train::ar::nll_of_text(&run, "\n12+34=640\n99+99=891", &Device::flex()).unwrap();
    assert_eq!(tokens, 19);
    assert_eq!(
        run.codec.prompt("12+34=").unwrap()[0],
        oxgen_models::ar::arithmetic::START
    );
    assert!(run.codec.encode("12*3").is_err());
    // A folder without a checkpoint is not an autoregressive run.
    assert!(!oxgen_train::ar::is_ar_checkpoint(
        &dir.path().join("nowhere")
    ));
}

/// Images as sequences: the 8×8 digits as 64 pixel tokens. Sixty steps take the exact NLL
/// below 0.7 · ln 17 nats per pixel (uniform: ln 17), the run writes a picture, and the
/// checkpoint loads back as an image model.
#[test]
fn ar_models_digits_as_pixel_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = oxgen_train::ar::ArTrainConfig::defaults("digits8");
    config.steps = 60;
    config.batch_size = 16;
    config.eval_every = 60;
    config.eval_batches = 2;
    let mut o = opts(dir.path(), Device::flex());
    o.skip_eval = false;
    let report = train_ar(&config, &o).unwrap();
    let run = oxgen_train::ar::load_ar(dir.path(), &Device::flex()).unwrap();
    assert_eq!(run.codec, oxgen_train::ar::Codec::Pixels);
    let val: Vec<Vec<u32>> = vec![vec![0; 64], vec![16; 64]];
    let uniform = 64.0 * 17f64.ln();
    let nll = oxgen_train::ar::images_nll(&report.model, &val, &Device::flex());
    assert!(nll.is_finite() && nll > 0.0);
    // The same exact NLL through the shared API, from images scaled to [−1, 1].
    use oxgen_models::generative::{Generative, Likelihood};
    let g = oxgen_train::ar::PixelGpt(&report.model);
    assert_eq!(g.capabilities().likelihood, Likelihood::Exact);
    let rows: Vec<f32> = val
        .iter()
        .flatten()
        .map(|&v| v as f32 / 8.0 - 1.0)
        .collect();
    let x = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(rows, [2, 64]),
        &Device::flex(),
    );
    let per: Vec<f32> = g
        .nll(x, 0)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let mean = (per[0] + per[1]) as f64 / 2.0;
    assert!(
        (mean - nll).abs() < 1e-3 * nll,
        "API {mean} vs images_nll {nll}"
    );
    assert_eq!(g.sample(2, None, 1, &Device::flex()).dims(), [2, 64]);
    let (_, v) = *report.val.last().unwrap();
    assert!(
        v * 64.0 < 0.6 * uniform,
        "validation {v} nats/pixel vs uniform ln 17"
    );
    assert!(dir.path().join("samples.png").exists());
}
