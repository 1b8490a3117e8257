//! The catalogue of bad inputs in `docs/reliability.md`: each is tried here, must give a typed
//! error (never a panic) whose text names the problem, and must leave existing files intact.
//!
//! `docs/reliability.md` is this catalogue's output:
//! `cargo test --release --workspace --test it -- --ignored reliability_table --nocapture`.

use std::fs;
use std::path::Path;

use burn::tensor::Device;
use oxgen_models::DataShape;
use oxgen_models::ar::GptConfig;
use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::unet::UNetConfig;
use oxgen_models::ops::{OpPath, check_path};
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::data::{self, Dataset};
use oxgen_train::diffusion::train;
use oxgen_train::family::{FamilyConfig, train_family};
use oxgen_train::{Error, TrainConfig, TrainOptions};

use crate::common::*;
use crate::fixtures::copy_dir;

/// One bad input: what it is, how it is tried, the error's variant and a fragment of its text.
struct Case {
    input: &'static str,
    run: Box<dyn Fn(&Path) -> Result<(), String>>,
    variant: &'static str,
    says: &'static str,
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::UnknownDataset { .. } => "UnknownDataset",
        Error::NotFound { .. } => "NotFound",
        Error::Io { .. } => "Io",
        Error::Shape { .. } => "Shape",
        Error::Parse { .. } => "Parse",
        Error::NonFinite { .. } => "NonFinite",
        Error::Checkpoint { .. } => "Checkpoint",
        Error::NewerRun { .. } => "NewerRun",
        Error::Config(_) => "Config",
        Error::Reward { .. } => "Reward",
        Error::Diverged { .. } => "Diverged",
        Error::Device(_) => "Device",
        Error::Compressed { .. } => "Compressed",
        Error::Privacy { .. } => "Privacy",
        Error::NotSharded { .. } => "NotSharded",
        Error::Collection { .. } => "Collection",
        Error::DeviceLost { .. } => "DeviceLost",
    }
}

/// `Err("Variant: text")` for an oxgen error, so the table shows both.
fn typed<T>(r: Result<T, Error>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: {e}", variant(&e))),
    }
}

/// Reads collection TOML `text` and plays a short KM game on language `target`.
fn collection(text: &'static str, target: usize) -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(move |dir| {
        let path = dir.join("languages.toml");
        fs::write(&path, text).unwrap();
        let c = oxgen_train::limit::Collection::load(&path)
            .map_err(|e| format!("{}: {e}", variant(&e)))?;
        let config = oxgen_train::limit::GameConfig {
            target,
            steps: 10,
            ..Default::default()
        };
        typed(oxgen_train::limit::report::run(
            &c,
            &config,
            &[oxgen_train::limit::Order::Shortlex],
            &[oxgen_train::limit::Generator::Km],
            None,
            &dir.join("out"),
            false,
        ))
    })
}

fn diffusion_with(
    f: impl Fn(&mut TrainConfig) + 'static,
) -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(move |dir| {
        let mut c = tiny_2d("moons", 2);
        f(&mut c);
        typed(train(&c, &opts(&dir.join("run"), Device::flex())))
    })
}

fn ar_with(f: impl Fn(&mut ArTrainConfig) + 'static) -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(move |dir| {
        let mut c = ArTrainConfig::defaults("arithmetic");
        c.steps = 2;
        f(&mut c);
        typed(train_ar(&c, &opts(&dir.join("run"), Device::flex())))
    })
}

fn config_file(text: &'static str, ext: &'static str) -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(move |dir| {
        let p = dir.join(format!("c.{ext}"));
        fs::write(&p, text).unwrap();
        typed(tiny_2d("moons", 2).merge_file(&p))
    })
}

/// A copy of the format-1 flow fixture, changed by `edit`, then loaded.
fn fixture_with(edit: impl Fn(&Path) + 'static) -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(move |dir| {
        let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/flow-moons/run");
        copy_dir(&v1, dir);
        edit(&dir.join("checkpoints/step-00000003"));
        typed(oxgen_train::family::load_family(dir, &Device::flex()))
    })
}

fn cases() -> Vec<Case> {
    let case = |input, run, variant, says| Case {
        input,
        run,
        variant,
        says,
    };
    vec![
        // Data.
        case(
            "dataset name that is not built in (`mnistt`)",
            Box::new(|_| typed(data::load("mnistt", 0, &Default::default()))),
            "UnknownDataset",
            "built in",
        ),
        case(
            "dataset path that does not exist",
            Box::new(|_| typed(data::load("/no/such/file.csv", 0, &Default::default()))),
            "NotFound",
            "not found",
        ),
        case(
            "file of an unknown type (`notes.txt`)",
            Box::new(|d| {
                let p = d.join("notes.txt");
                fs::write(&p, "hi").unwrap();
                typed(load(&p))
            }),
            "Parse",
            "unknown file type",
        ),
        case(
            "IDX file with a bad magic number",
            Box::new(|d| {
                let p = d.join("x-idx3-ubyte");
                fs::write(&p, [1, 2, 3, 4, 5]).unwrap();
                typed(load(&p))
            }),
            "Parse",
            "magic number",
        ),
        case(
            "IDX images with 2 dimensions",
            Box::new(|d| {
                let p = d.join("x-idx3-ubyte");
                fs::write(&p, idx(&[2, 4], 8)).unwrap();
                typed(load(&p))
            }),
            "Shape",
            "3 dimensions",
        ),
        case(
            "IDX payload shorter than its header says",
            Box::new(|d| {
                let p = d.join("x-idx3-ubyte");
                fs::write(&p, idx(&[2, 6, 6], 50)).unwrap();
                typed(load(&p))
            }),
            "Shape",
            "72 bytes",
        ),
        case(
            "IDX header whose dimensions overflow",
            Box::new(|d| {
                let p = d.join("x-idx3-ubyte");
                fs::write(&p, idx(&[u32::MAX; 3], 8)).unwrap();
                typed(load(&p))
            }),
            "Parse",
            "overflow",
        ),
        case(
            "IDX header with a zero dimension",
            Box::new(|d| {
                let p = d.join("x-idx3-ubyte");
                fs::write(&p, idx(&[3, 0, 4], 0)).unwrap();
                typed(load(&p))
            }),
            "Parse",
            "zero",
        ),
        case(
            "CSV with a ragged row",
            Box::new(|d| {
                let p = d.join("x.csv");
                fs::write(&p, "1,2\n3\n").unwrap();
                typed(load(&p))
            }),
            "Shape",
            "line 2",
        ),
        case(
            "CSV with a NaN",
            Box::new(|d| {
                let p = d.join("x.csv");
                fs::write(&p, "1,2\nNaN,4\n").unwrap();
                typed(load(&p))
            }),
            "NonFinite",
            "NaN",
        ),
        case(
            "empty PNG folder",
            Box::new(|d| {
                let p = d.join("pngs");
                fs::create_dir(&p).unwrap();
                typed(load(&p))
            }),
            "Shape",
            ".png",
        ),
        case(
            "program rows that are not a whole number of rows",
            Box::new(|_| {
                typed(Dataset::from_rows(
                    "mine",
                    DataShape::Vector { dim: 3 },
                    vec![0.0; 7],
                    None,
                ))
            }),
            "Shape",
            "multiple of 3",
        ),
        case(
            "program labels of another count than the rows",
            Box::new(|_| {
                typed(Dataset::from_rows(
                    "mine",
                    DataShape::Vector { dim: 2 },
                    vec![0.0; 8],
                    Some(vec![0, 1]),
                ))
            }),
            "Shape",
            "4 labels",
        ),
        case(
            "file dataset without a validation split (val_fraction 0)",
            Box::new(|d| {
                let p = d.join("x.csv");
                fs::write(&p, "1,2\n3,4\n5,6\n7,8\n").unwrap();
                let mut c = tiny_2d("moons", 2);
                c.data = p.display().to_string();
                c.val_fraction = 0.0;
                let mut o = opts(&d.join("run"), Device::flex());
                o.skip_eval = false;
                typed(train(&c, &o))
            }),
            "Config",
            "validation split",
        ),
        // Devices.
        case(
            "a global batch of 2 over 3 devices",
            Box::new(|d| {
                let mut c = tiny_2d("moons", 2);
                c.batch_size = 2;
                let mut o = opts(&d.join("run"), Device::flex());
                o.parallel =
                    oxgen_train::trainer::parallel::DataParallel::on(vec![Device::flex(); 3]);
                typed(train(&c, &o))
            }),
            "Config",
            "cannot be split over 3 devices",
        ),
        // Configs.
        case(
            "zero steps",
            diffusion_with(|c| c.steps = 0),
            "Config",
            "steps must be at least 1",
        ),
        case(
            "zero batch size",
            diffusion_with(|c| c.batch_size = 0),
            "Config",
            "batch_size",
        ),
        case(
            "negative learning rate",
            diffusion_with(|c| c.lr = -1e-3),
            "Config",
            "lr must be a positive number",
        ),
        case(
            "NaN learning rate",
            diffusion_with(|c| c.lr = f64::NAN),
            "Config",
            "lr must be a positive number",
        ),
        case(
            "EMA decay of 1.5",
            diffusion_with(|c| c.ema_decay = 1.5),
            "Config",
            "ema_decay",
        ),
        case(
            "validation share of 1",
            diffusion_with(|c| c.val_fraction = 1.0),
            "Config",
            "val_fraction",
        ),
        case(
            "more sampling steps than training timesteps",
            diffusion_with(|c| c.sample.steps = 5000),
            "Config",
            "sample.steps",
        ),
        case(
            "learning-rate floor above the peak (min_lr_ratio 2)",
            diffusion_with(|c| c.schedule.min_lr_ratio = 2.0),
            "Config",
            "min_lr_ratio",
        ),
        case(
            "negative gradient clip",
            diffusion_with(|c| c.grad_clip = -1.0),
            "Config",
            "grad_clip",
        ),
        case(
            "UNet denoiser on 2D points",
            diffusion_with(|c| c.model.denoiser = DenoiserConfig::UNet(UNetConfig::new())),
            "Config",
            "UNet",
        ),
        case(
            "class-conditional model on unlabelled data",
            diffusion_with(|c| c.model.num_classes = Some(3)),
            "Config",
            "no labels",
        ),
        case(
            "GPT width not divisible by its heads (100 / 3)",
            ar_with(|c| c.model = GptConfig::new(1).with_width(100).with_heads(3)),
            "Config",
            "not a multiple of heads",
        ),
        case(
            "GPT with rotary positions and an odd head dim (6 / 2 = 3)",
            ar_with(|c| {
                c.model = GptConfig::new(1)
                    .with_width(6)
                    .with_heads(2)
                    .with_rotary(true)
            }),
            "Config",
            "even head dim",
        ),
        case(
            "GPT dropout of 1.5",
            ar_with(|c| c.model.dropout = 1.5),
            "Config",
            "dropout",
        ),
        case(
            "GPT with zero gradient-accumulation steps",
            ar_with(|c| c.grad_accum = 0),
            "Config",
            "grad_accum",
        ),
        case(
            "GPT on digits without a validation split",
            ar_with(|c| {
                c.data = "digits8".into();
                c.val_fraction = 0.0
            }),
            "Config",
            "validation split",
        ),
        case(
            "VAE batch of 1",
            Box::new(|d| {
                let ds = data::load("moons", 0, &Default::default()).unwrap();
                let mut c = FamilyConfig::defaults("vae", &ds).unwrap();
                c.batch_size = 1;
                typed(train_family(&c, &opts(&d.join("run"), Device::flex())))
            }),
            "Config",
            "batch_size",
        ),
        case(
            "unknown field in a config file (`stepz`)",
            config_file("stepz = 3\n", "toml"),
            "Config",
            "stepz",
        ),
        case(
            "config file that is not TOML",
            config_file("steps = = 3\n", "toml"),
            "Parse",
            "c.toml",
        ),
        case(
            "config file that is not JSON",
            config_file("{\"steps\": }", "json"),
            "Parse",
            "c.json",
        ),
        case(
            "config value of the wrong type (`steps = \"many\"`)",
            config_file("steps = \"many\"\n", "toml"),
            "Config",
            "invalid type",
        ),
        case(
            "config file that does not exist",
            Box::new(|d| typed(tiny_2d("moons", 2).merge_file(&d.join("none.toml")))),
            "NotFound",
            "config file",
        ),
        // Runs and checkpoints.
        case(
            "fresh run into a folder that holds a run",
            Box::new(|d| {
                let c = tiny_2d("moons", 2);
                run(&c, &opts(d, Device::flex()));
                typed(train(&c, &opts(d, Device::flex())))
            }),
            "Config",
            "--resume",
        ),
        case(
            "resume in a folder without a checkpoint",
            Box::new(|d| {
                let mut o = opts(d, Device::flex());
                o.resume = true;
                typed(train(&tiny_2d("moons", 2), &o))
            }),
            "Checkpoint",
            "no checkpoint",
        ),
        case(
            "resume without a run folder (in memory)",
            Box::new(|_| {
                let o = TrainOptions {
                    resume: true,
                    skip_eval: true,
                    ..Default::default()
                };
                typed(train(&tiny_2d("moons", 2), &o))
            }),
            "Config",
            "run folder",
        ),
        case(
            "resume with another model config",
            Box::new(|d| {
                let c = tiny_2d("moons", 2);
                run(&c, &opts(d, Device::flex()));
                let mut o2 = opts(d, Device::flex());
                o2.resume = true;
                let mut other = c.clone();
                other.model.timesteps = 500;
                typed(train(&other, &o2))
            }),
            "Checkpoint",
            "another model config",
        ),
        case(
            "resume a flow run as a GAN",
            fixture_with_resume_as_gan(),
            "Checkpoint",
            "a flow run, not gan",
        ),
        case(
            "checkpoint weights with a flipped byte",
            fixture_with(|ck| {
                let p = ck.join("model.bpk");
                let mut b = fs::read(&p).unwrap();
                b[100] ^= 1;
                fs::write(&p, b).unwrap()
            }),
            "Checkpoint",
            "corrupt",
        ),
        case(
            "checkpoint weights cut short",
            fixture_with(|ck| {
                let p = ck.join("model.bpk");
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..b.len() - 5]).unwrap()
            }),
            "Checkpoint",
            "truncated",
        ),
        case(
            "checkpoint file missing",
            fixture_with(|ck| fs::remove_file(ck.join("optim.bpk")).unwrap()),
            "Checkpoint",
            "optim.bpk",
        ),
        case(
            "manifest that is not JSON",
            fixture_with(|ck| fs::write(ck.join("manifest.json"), "{ not json").unwrap()),
            "Checkpoint",
            "manifest.json is corrupt",
        ),
        case(
            "manifest without a format version",
            fixture_with(|ck| {
                let p = ck.join("manifest.json");
                let t = fs::read_to_string(&p).unwrap();
                fs::write(&p, t.replace("\"format\"", "\"formats\"")).unwrap()
            }),
            "Checkpoint",
            "no format version",
        ),
        case(
            "run written by a newer oxgen (format 99)",
            fixture_with(|ck| {
                let p = ck.join("manifest.json");
                let t = fs::read_to_string(&p).unwrap();
                fs::write(&p, t.replace("\"format\": 1", "\"format\": 99")).unwrap()
            }),
            "NewerRun",
            "run format 99",
        ),
        case(
            "manifest claiming another data shape",
            fixture_with(|ck| {
                let p = ck.join("manifest.json");
                let t = fs::read_to_string(&p).unwrap();
                fs::write(&p, t.replace("\"dim\": 2", "\"dim\": 5")).unwrap()
            }),
            "Checkpoint",
            "do not fit",
        ),
        case(
            "checkpoint path that does not exist",
            Box::new(|_| typed(oxgen_train::checkpoint::load(Path::new("/no/such/run")))),
            "NotFound",
            "not found",
        ),
        case(
            "folder that is not a run",
            Box::new(|d| typed(oxgen_train::checkpoint::load(d))),
            "Checkpoint",
            "run folder",
        ),
        // Copyright.
        case(
            "NAF sampling asked of a folder that is not a sharded run",
            Box::new(|d| {
                typed(oxgen_train::copyright::sharded::load_sharded(
                    d,
                    &Device::flex(),
                ))
            }),
            "NotSharded",
            "not a sharded run",
        ),
        case(
            "canaries file with a line that is not a canary",
            Box::new(|d| {
                let p = d.join("canaries.jsonl");
                fs::write(&p, "the pin is\t123456\n").unwrap();
                typed(oxgen_train::copyright::canary::read_canaries(&p))
            }),
            "Parse",
            "expected",
        ),
        // Collections of languages (`oxgen limit`).
        case(
            "collection file that is not TOML (line 3)",
            collection("alphabet = \"ab\"\n[[language]]\nregex = a*\n", 0),
            "Collection",
            "line 3",
        ),
        case(
            "collection with an invalid regular expression (line 4)",
            collection(
                "alphabet = \"ab\"\n[[language]]\nregex = \"a*\"\n[[language]]\nregex = \"(a|b\"\n",
                0,
            ),
            "Collection",
            "line 4: invalid regular expression",
        ),
        case(
            "collection with an empty language (line 5)",
            collection(
                "alphabet = \"ab\"\n\n[[language]]\nregex = \"a*\"\n[[language]]\nregex = \"c+\"\n",
                0,
            ),
            "Collection",
            "line 5: language `L1` is empty",
        ),
        case(
            "game target out of range (3 of 2 languages)",
            collection(
                "[[language]]\nfamily = \"anbn\"\n[[language]]\nfamily = \"progression\"\n",
                3,
            ),
            "Collection",
            "target 3 is out of range",
        ),
        // Devices.
        case(
            "`--op-path fused` where no kernel accepts the device (the CPU)",
            Box::new(|_| {
                check_path(OpPath::Fused, &Device::flex()).map_err(|e| format!("Device: {e}"))
            }),
            "Device",
            "no kernel accepts",
        ),
    ]
}

fn fixture_with_resume_as_gan() -> Box<dyn Fn(&Path) -> Result<(), String>> {
    Box::new(|dir| {
        let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/flow-moons/run");
        copy_dir(&v1, dir);
        let ds = data::load("moons", 0, &Default::default()).unwrap();
        let c = FamilyConfig::defaults("gan", &ds).unwrap();
        let mut o = opts(dir, Device::flex());
        o.resume = true;
        typed(train_family(&c, &o))
    })
}

/// Runs every case; returns (input, error text) rows.
pub(crate) fn run_all() -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (c.run)(dir.path())));
        let text = match r {
            Err(_) => panic!("{}: panicked instead of a typed error", c.input),
            Ok(Ok(())) => panic!("{}: was accepted", c.input),
            Ok(Err(t)) => t,
        };
        assert!(
            text.starts_with(&format!("{}: ", c.variant)),
            "{}: expected {}, got {text}",
            c.input,
            c.variant
        );
        assert!(
            text.contains(c.says),
            "{}: `{}` not in {text}",
            c.input,
            c.says
        );
        rows.push((c.input, text));
    }
    rows
}

#[test]
fn every_catalogued_bad_input_is_a_typed_error() {
    let rows = run_all();
    assert!(rows.len() >= 25, "the catalogue has {} cases", rows.len());
}
