//! Writes the 8×8 digits the pixel GPT never trains on (its default held-out split: a tenth,
//! seed 0) as a `.npy` file, the input of `docs/compression.md`'s image row.
//!
//! Run: `cargo run --release --example heldout_digits -- OUT.npy`

fn main() -> Result<(), oxgen::Error> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "heldout-digits.npy".into());
    let config = oxgen::train::ar::ArTrainConfig::defaults("digits8");
    let digits = oxgen::train::data::digits8();
    let (_, val) = digits.split(config.val_fraction, config.seed);
    oxgen::train::npy::write_f32(std::path::Path::new(&out), &val.x, &[val.len(), 64])?;
    println!("wrote {out}: {} held-out digits", val.len());
    Ok(())
}
