//! Host-side use of the no_std engine: loading blobs from files and running many inputs in
//! parallel, each thread with its own workspace. The engine is exactly the code the firmware runs.

use std::path::Path;

use anyhow::{Context, Result};
use picoformer::blob::writer::{workspace, AlignedBytes};
use picoformer::{DecodeOptions, Model, Runner};
use rayon::prelude::*;

/// Checks a `--beam` value against the engine's widest beam.
pub fn check_beam(beam: usize) -> Result<()> {
    if beam == 0 || beam > picoformer::MAX_BEAM {
        anyhow::bail!("--beam {beam} is outside 1..={}", picoformer::MAX_BEAM);
    }
    Ok(())
}

/// Reads a blob file into 16-byte aligned memory and validates it.
pub fn load_blob(path: &Path) -> Result<AlignedBytes> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    let aligned = AlignedBytes::new(&bytes);
    Model::from_blob(aligned.as_bytes()).map_err(|e| anyhow::anyhow!("{}: invalid blob: {e}", path.display()))?;
    Ok(aligned)
}

/// A validated model borrowed from loaded bytes (validation already happened in [`load_blob`]).
pub fn model(bytes: &AlignedBytes) -> Result<Model<'_>> {
    Model::from_blob(bytes.as_bytes()).map_err(|e| anyhow::anyhow!("invalid blob: {e}"))
}

/// One input's outcome: output tokens (as text tokens), or the engine's error message.
pub type Prediction = std::result::Result<Vec<String>, String>;

/// Decodes one input on `runner`, returning output tokens as strings.
pub fn predict_one(runner: &mut Runner<'_, '_, '_>, input: &str, opts: &DecodeOptions) -> Prediction {
    let model = runner.model();
    let mut out = vec![0u16; model.config().max_output_len];
    let d = runner.translate(input, opts, &mut out).map_err(|e| e.to_string())?;
    let vocab = model.vocab();
    Ok(out[..d.len]
        .iter()
        .map(|&t| vocab.output_token(t).unwrap_or("?").to_string())
        .collect())
}

/// Joins output tokens as the model's output split wants (spaces, or nothing).
pub fn join_output(model: &Model<'_>, tokens: &[String]) -> String {
    match model.config().output_split {
        picoformer::Split::Space => tokens.join(" "),
        picoformer::Split::Chars => tokens.concat(),
    }
}

/// Decodes every input, in parallel over `threads` threads (0 = all cores), order preserved.
pub fn predict_all(
    model: &Model<'_>,
    inputs: &[String],
    opts: &DecodeOptions,
    threads: usize,
) -> Result<Vec<Prediction>> {
    let beam = opts.beam_width.max(1);
    let bytes = model.workspace_bytes(beam);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start threads")?;
    let run = || {
        inputs
            .par_iter()
            .map_init(
                || workspace(bytes),
                |ws, input| match Runner::new(model, ws.as_bytes_mut(), beam) {
                    Ok(mut r) => predict_one(&mut r, input, opts),
                    Err(e) => Err(e.to_string()),
                },
            )
            .collect()
    };
    Ok(pool.install(run))
}

/// Number of threads rayon would use for `threads` (0 = all cores).
pub fn thread_count(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        threads
    }
}
