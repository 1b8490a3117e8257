//! `oxgen tour`: the shortest end-to-end path, for a first look after the build: a diffusion
//! model on the two-moons set is trained, sampled, scored (SWD and MMD against held-out points,
//! each beside its floor) and drawn, in well under a minute on a 2-core CPU. The README offers it
//! before the longer main job, which does the same on 8×8 digit images.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Parser};

use crate::args::TrainArgs;

/// Training steps of the tour: the moons are recognisable (SWD within a few floors) and the run
/// stays short.
pub(crate) const STEPS: usize = 1500;

#[derive(Args)]
pub(crate) struct TourArgs {
    /// Run folder.
    #[arg(long, default_value = "runs/tour")]
    pub(crate) out: PathBuf,
    /// Device: auto, cpu, wgpu, … (as `oxgen train`).
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
}

/// `oxgen train diffusion`'s arguments, built the way a user would type them.
#[derive(Parser)]
struct Train {
    #[command(flatten)]
    args: TrainArgs,
}

/// The training arguments of the tour.
pub(crate) fn train_args(a: &TourArgs) -> Result<TrainArgs> {
    let out = a.out.to_string_lossy().into_owned();
    let steps = STEPS.to_string();
    let argv = [
        "tour", "--data", "moons", "--steps", &steps, "--out", &out, "--device", &a.device,
    ];
    Ok(Train::try_parse_from(argv)?.args)
}

pub(crate) fn run(a: TourArgs) -> Result<()> {
    let start = Instant::now();
    println!(
        "oxgen tour: a diffusion model on the two-moons set, {STEPS} steps: train, sample, \
         score, draw"
    );
    crate::diffusion::train(train_args(&a)?)?;
    let out = a.out.display();
    println!(
        "tour done in {:.0} s. Look at {out}/samples.png (samples in blue over the data in \
         grey) and {out}/loss.png. Next, the main job (images): oxgen train diffusion --data \
         digits8 --out runs/digits",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
