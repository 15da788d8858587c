//! `picoformer average`: the element-wise mean of a run's last snapshots (checkpoint averaging).
//!
//! A run trained with `--keep-last N` keeps the weights of its last N evaluations in `snapshots/`.
//! Their mean usually generalizes better than any one of them (the late-training weights wander
//! around a minimum; the mean sits nearer its centre). The result is written as a checkpoint
//! directory (`config.json` and `best.safetensors`) that `export`, `predict` and `train --init` read
//! like any other.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::checkpoint::{self, list_snapshots};
use super::params::Layout;

/// Arguments of `picoformer average`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example:\n  picoformer train ... --out ck --keep-last 20\n  \
picoformer average ck --last 10 --out ck-avg10\n  \
picoformer export --checkpoint ck-avg10 --quant int8 --out model.pfb")]
pub struct AverageArgs {
    /// Training run directory with `snapshots/` (see `train --keep-last`).
    pub dir: PathBuf,
    /// Average the newest N snapshots.
    #[arg(long, value_name = "N")]
    pub last: usize,
    /// Checkpoint directory to write (config.json, best.safetensors, average.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// What was averaged, written to `OUT/average.json`.
#[derive(serde::Serialize)]
struct Record {
    source: String,
    steps: Vec<u64>,
}

/// Runs `picoformer average`.
pub fn run(args: AverageArgs) -> Result<()> {
    if args.last == 0 {
        bail!("--last must be at least 1");
    }
    let config = checkpoint::load_config(&args.dir)?;
    let layout = Layout::new(&config.arch()).with_context(|| format!("{}: bad config.json", args.dir.display()))?;
    let snaps = list_snapshots(&args.dir)?;
    if snaps.len() < args.last {
        bail!(
            "{} holds {} snapshot(s), fewer than --last {} (train with --keep-last N to keep them)",
            args.dir.display(),
            snaps.len(),
            args.last
        );
    }
    let chosen = &snaps[snaps.len() - args.last..];
    let mut sum = vec![0.0f64; layout.total];
    for (_, path) in chosen {
        let p = checkpoint::load_params(path, &layout)?;
        for (s, v) in sum.iter_mut().zip(&p) {
            *s += f64::from(*v);
        }
    }
    let n = chosen.len() as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    if args.out.join("config.json").exists() && args.out.canonicalize().ok() == args.dir.canonicalize().ok() {
        bail!("--out must differ from the run directory");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    checkpoint::save_json(&args.out.join("config.json"), &config)?;
    checkpoint::save_weights(&args.out.join("best.safetensors"), &layout, &mean)?;
    let steps: Vec<u64> = chosen.iter().map(|(s, _)| *s).collect();
    checkpoint::save_json(
        &args.out.join("average.json"),
        &Record {
            source: args.dir.display().to_string(),
            steps: steps.clone(),
        },
    )?;
    eprintln!(
        "averaged {} snapshots (steps {}..={}) into {}",
        steps.len(),
        steps.first().copied().unwrap_or(0),
        steps.last().copied().unwrap_or(0),
        args.out.display()
    );
    Ok(())
}
