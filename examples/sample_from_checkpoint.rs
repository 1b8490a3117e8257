//! Loads a trained run from its folder and samples from it, whatever its family, through the
//! shared `Generative` API; prints what the model offers and writes `samples.png`.
//!
//! Run: `cargo run --release --example sample_from_checkpoint -- RUN_FOLDER [N]`
//! Without a folder, it first trains a small VAE on the embedded digits into a temporary one.

use oxgen::prelude::*;
use oxgen::train::sample::load_any;

fn main() -> Result<(), oxgen::Error> {
    let device = Device::flex();
    let mut args = std::env::args().skip(1);
    let run = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let dir = std::env::temp_dir().join("oxgen-example-vae");
            let _ = std::fs::remove_dir_all(&dir);
            let data = oxgen::train::data::load("digits8", 0, &Default::default())?;
            let mut config = FamilyConfig::defaults("vae", &data)?;
            config.steps = 200;
            let mut opts = TrainOptions::in_folder(&dir, device.clone());
            opts.skip_eval = true;
            oxgen::train::family::train_family(&config, &opts)?;
            dir
        }
    };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let loaded = load_any(&run, &device)?;
    let model = loaded.generative().ok_or_else(|| {
        oxgen::Error::Config("this run's model has no sampler over data rows (a text GPT)".into())
    })?;
    let caps = model.capabilities();
    println!(
        "{}: a {} model, likelihood {:?}, trained {} steps",
        run.display(),
        caps.family,
        caps.likelihood,
        loaded.manifest().step
    );
    let x = model.sample(n, None, 7, &device);
    let rows: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 samples");
    let out = std::env::temp_dir().join("oxgen-example-samples");
    oxgen::train::run::write_samples(&out, &rows, None, loaded.manifest().shape, None)?;
    println!("wrote {n} samples to {}/samples.png", out.display());
    Ok(())
}
