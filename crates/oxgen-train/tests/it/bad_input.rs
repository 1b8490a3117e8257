//! Bad input gets a clear, typed error and loses nothing.

use std::fs;

use burn::tensor::Device;
use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::mlp::MlpDenoiserConfig;
use oxgen_train::Error;
use oxgen_train::data::{self, LoadOptions};
use oxgen_train::diffusion::train;
use oxgen_train::sample::load_run;

use crate::common::*;

#[test]
fn unknown_dataset_and_missing_file() {
    let e = data::load("checkerbored", 0, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::UnknownDataset { .. }), "{e}");
    assert!(
        e.to_string().contains("checkerboard"),
        "the error lists the known names: {e}"
    );
    let e = data::load("missing/images-idx3-ubyte", 0, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

#[test]
fn idx_files_wrong_shape_truncated_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good-images-idx3-ubyte");
    fs::write(&good, idx(&[3, 4, 6], 72)).unwrap();
    fs::write(dir.path().join("good-labels-idx1-ubyte"), idx(&[3], 3)).unwrap();
    let d = load(&good).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d.labels.as_deref(), Some(&[7u32, 7, 7][..]));
    assert_eq!(
        d.shape,
        data::DataShape::Image {
            channels: 1,
            height: 4,
            width: 6
        }
    );

    let gz = dir.path().join("z-images-idx3-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &idx(&[2, 2, 2], 8)).unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert_eq!(load(&gz).unwrap().len(), 2);

    let short = dir.path().join("short-images-idx3-ubyte");
    fs::write(&short, idx(&[3, 4, 6], 50)).unwrap();
    let e = load(&short).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("72 bytes"),
        "{e}"
    );

    let flat = dir.path().join("flat-images-idx3-ubyte");
    fs::write(&flat, idx(&[10], 10)).unwrap();
    let e = load(&flat).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("3 dimensions"),
        "{e}"
    );

    let bad_labels = dir.path().join("bad-images-idx3-ubyte");
    fs::write(&bad_labels, idx(&[3, 4, 6], 72)).unwrap();
    fs::write(dir.path().join("bad-labels-idx1-ubyte"), idx(&[2], 2)).unwrap();
    let e = load(&bad_labels).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn csv_ragged_nan_and_png_folder() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.csv");
    fs::write(&ok, "x,y\n1,2\n3,4\n").unwrap();
    assert_eq!(load(&ok).unwrap().len(), 2);
    let ragged = dir.path().join("ragged.csv");
    fs::write(&ragged, "1,2\n3,4,5\n").unwrap();
    let e = load(&ragged).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("line 2"),
        "{e}"
    );
    let nan = dir.path().join("nan.csv");
    fs::write(&nan, "1,2\nNaN,4\n").unwrap();
    let e = load(&nan).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 2, .. }), "{e}");

    let pngs = dir.path().join("pngs");
    for (class, shade) in [("a", 10u8), ("b", 200u8)] {
        fs::create_dir_all(pngs.join(class)).unwrap();
        for i in 0..2 {
            image::GrayImage::from_pixel(6, 4, image::Luma([shade]))
                .save(pngs.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let d = data::load(
        pngs.to_str().unwrap(),
        0,
        &LoadOptions {
            image_size: Some((8, 8)),
            rgb: false,
        },
    )
    .unwrap();
    assert_eq!((d.len(), d.num_classes), (4, Some(2)));
    assert_eq!(
        d.shape,
        data::DataShape::Image {
            channels: 1,
            height: 8,
            width: 8
        }
    );
    assert!(
        (d.x[0] - (10.0 / 127.5 - 1.0)).abs() < 0.02
            && d.labels.as_deref() == Some(&[0, 0, 1, 1][..])
    );
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(load(&empty).unwrap_err(), Error::Shape { .. }));
}

#[test]
fn corrupt_truncated_and_mismatched_checkpoints_are_refused() {
    let config = tiny_2d("8gaussians", 4);
    let dir = tempfile::tempdir().unwrap();
    run(&config, &opts(dir.path(), Device::flex()));
    assert!(load_run(dir.path(), &Device::flex()).is_ok());
    let ck = oxgen_train::checkpoint::resolve(dir.path()).unwrap();
    let original = fs::read(ck.join("ema.bpk")).unwrap();

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    fs::write(ck.join("ema.bpk"), &flipped).unwrap();
    let e = load_run(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(e, Error::Checkpoint { .. }) && e.to_string().contains("corrupt"),
        "{e}"
    );

    fs::write(ck.join("ema.bpk"), &original[..original.len() - 9]).unwrap();
    let e = load_run(dir.path(), &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    fs::write(ck.join("ema.bpk"), &original).unwrap();

    // Resuming with another model config is refused before anything is loaded.
    let mut other = config.clone();
    other.model.denoiser =
        DenoiserConfig::Mlp(MlpDenoiserConfig::new().with_hidden(48).with_blocks(1));
    let mut o = opts(dir.path(), Device::flex());
    o.resume = true;
    let e = train(&other, &o).unwrap_err();
    assert!(
        matches!(e, Error::Checkpoint { .. }) && e.to_string().contains("another model config"),
        "{e}"
    );
    // The good checkpoint is still intact afterwards.
    assert!(load_run(dir.path(), &Device::flex()).is_ok());
}

#[test]
fn weights_of_another_shape_are_refused() {
    // A manifest that claims another data shape: the weights no longer fit the model.
    let config = tiny_2d("moons", 2);
    let dir = tempfile::tempdir().unwrap();
    run(&config, &opts(dir.path(), Device::flex()));
    let ck = oxgen_train::checkpoint::resolve(dir.path()).unwrap();
    let text = fs::read_to_string(ck.join("manifest.json")).unwrap();
    fs::write(
        ck.join("manifest.json"),
        text.replace("\"dim\": 2", "\"dim\": 3"),
    )
    .unwrap();
    let e = load_run(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(e, Error::Checkpoint { .. }) && e.to_string().contains("do not fit"),
        "{e}"
    );
}

/// With deferred reads a step's update is made before its loss is read, so a non-finite loss
/// cannot be skipped: the run stops at the read, typed, with the bad step in the log.
#[test]
fn a_non_finite_loss_stops_a_deferred_run() {
    let mut config = tiny_2d("moons", 60);
    config.lr = 1e30;
    config.schedule.warmup_steps = 0;
    config.grad_clip = 0.0;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), Device::flex());
    o.sync_every = Some(5);
    let e = train(&config, &o).unwrap_err();
    assert!(matches!(e, Error::Diverged { count: 1, .. }), "{e}");
    let metrics = fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"skipped\":true").count(), 1, "{metrics}");
}

#[test]
fn non_finite_losses_are_skipped_then_stop_the_run() {
    let mut config = tiny_2d("moons", 60);
    config.lr = 1e30;
    config.schedule.warmup_steps = 0;
    config.grad_clip = 0.0;
    config.max_bad_steps = 4;
    let dir = tempfile::tempdir().unwrap();
    let e = train(&config, &opts(dir.path(), Device::flex())).unwrap_err();
    assert!(matches!(e, Error::Diverged { count: 4, .. }), "{e}");
    let metrics = fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(
        metrics
            .lines()
            .filter(|l| l.contains("\"skipped\":true"))
            .count()
            == 4,
        "{metrics}"
    );
}

#[test]
fn invalid_configs_are_typed_errors() {
    let mut config = tiny_2d("moons", 0);
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        train(&config, &opts(dir.path(), Device::flex())),
        Err(Error::Config(_))
    ));
    config.steps = 5;
    config.model.denoiser = DenoiserConfig::UNet(oxgen_models::diffusion::unet::UNetConfig::new());
    let e = train(&config, &opts(dir.path(), Device::flex())).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("UNet"),
        "{e}"
    );
    let file = dir.path().join("bad.toml");
    fs::write(&file, "stepz = 3\n").unwrap();
    let e = config.clone().merge_file(&file).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("stepz"),
        "{e}"
    );
}
