//! The checkpoint directory of `docs/architecture.md`: `config.json`, `best.safetensors`,
//! `last.safetensors`, `optimizer.safetensors`, `state.json` and `log.csv`, every file written
//! atomically (`NAME.tmp`, fsync, rename).

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::tsv::Split;

use super::batch::Vocabs;
use super::optim::Moments;
use super::params::{Arch, Layout, ModelSpec};

/// Value of `config.json`'s `format`.
pub const FORMAT: &str = "picoformer-checkpoint";
/// Value of `config.json`'s `version`.
pub const VERSION: u32 = 1;

/// Training hyper-parameters recorded in `config.json` (`train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainHyper {
    /// Peak learning rate.
    pub lr: f32,
    /// Examples per step.
    pub batch_size: usize,
    /// Warm-up steps.
    pub warmup: u64,
    /// Label smoothing.
    pub label_smoothing: f32,
    /// Dropout rate.
    pub dropout: f32,
    /// Global gradient-norm clip (0 = off).
    pub clip: f32,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// AdamW betas.
    pub betas: (f32, f32),
    /// AdamW epsilon.
    pub adam_eps: f32,
    /// Epoch limit.
    pub epochs: u64,
    /// Epochs (evaluations) without improvement before stopping.
    pub patience: u64,
    /// Evaluate every N steps (0 = every epoch).
    pub eval_every: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Weights of the last N evaluations kept in `snapshots/` for `picoformer average` (0 = none).
    #[serde(default)]
    pub keep_last: u64,
    /// Training file.
    pub data: String,
    /// Dev file.
    pub dev: String,
}

/// `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// Model hyper-parameters.
    pub model: ModelSpec,
    /// How inputs are split.
    pub input_tokens: Split,
    /// How outputs are split.
    pub output_tokens: Split,
    /// Input symbols by id (id 0 `<pad>`).
    pub input_vocab: Vec<String>,
    /// Output tokens by id (ids 0..3 `<pad>`, `<s>`, `</s>`).
    pub output_vocab: Vec<String>,
    /// Training hyper-parameters.
    pub train: TrainHyper,
}

impl CheckpointConfig {
    /// The architecture (spec plus vocabulary sizes).
    pub fn arch(&self) -> Arch {
        Arch {
            spec: self.model.clone(),
            input_vocab: self.input_vocab.len(),
            output_vocab: self.output_vocab.len(),
        }
    }

    /// The vocabularies.
    pub fn vocabs(&self) -> Vocabs {
        Vocabs {
            input: self.input_vocab.clone(),
            output: self.output_vocab.clone(),
            input_split: self.input_tokens,
            output_split: self.output_tokens,
        }
    }
}

/// Which weights of a checkpoint directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `best.safetensors`: best dev exact match.
    Best,
    /// `last.safetensors`: the resume point.
    Last,
}

impl Which {
    fn file(self) -> &'static str {
        match self {
            Which::Best => "best.safetensors",
            Which::Last => "last.safetensors",
        }
    }
}

/// Named tensors in the order of `docs/architecture.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Copies the tensors of `params` (laid out by `layout`) in architecture order.
    pub fn from_params(layout: &Layout, params: &[f32]) -> Weights {
        let tensors = layout
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.shape.clone(),
                    params[t.offset..t.offset + t.len].to_vec(),
                )
            })
            .collect();
        Weights { tensors }
    }

    /// `(name, shape, values)` in architecture order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[usize], &[f32])> {
        self.tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|(_, s, v)| (s.as_slice(), v.as_slice()))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The flat parameter buffer for `layout`.
    pub fn to_params(&self, layout: &Layout) -> Vec<f32> {
        let mut p = vec![0.0; layout.total];
        for (t, (_, _, v)) in layout.tensors.iter().zip(&self.tensors) {
            p[t.offset..t.offset + t.len].copy_from_slice(v);
        }
        p
    }
}

/// A checkpoint: its config and one set of weights.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// `config.json`.
    pub config: CheckpointConfig,
    /// Weights in architecture order.
    pub weights: Weights,
}

impl Checkpoint {
    /// Loads `dir/config.json` and `dir/{best,last}.safetensors`; a directory that is not a checkpoint
    /// gets a one-line error naming it.
    pub fn load(dir: &Path, which: Which) -> Result<Self> {
        let config = load_config(dir)?;
        let layout = Layout::new(&config.arch()).with_context(|| format!("{}: bad config.json", dir.display()))?;
        let weights = read_named(&dir.join(which.file()), &layout, "")?;
        Ok(Checkpoint { config, weights })
    }
}

/// Reads and checks `dir/config.json`.
pub fn load_config(dir: &Path) -> Result<CheckpointConfig> {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        anyhow!(
            "{} is not a picoformer checkpoint directory (cannot read config.json: {e})",
            dir.display()
        )
    })?;
    let config: CheckpointConfig = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{} is not a picoformer checkpoint directory (config.json: {e})",
            dir.display()
        )
    })?;
    if config.format != FORMAT {
        bail!(
            "{} is not a picoformer checkpoint directory (format {:?})",
            dir.display(),
            config.format
        );
    }
    if config.version != VERSION {
        bail!(
            "{}: checkpoint version {} is not supported (this build reads {VERSION})",
            dir.display(),
            config.version
        );
    }
    Ok(config)
}

/// Reads the tensors of `layout` from `path`, each under `prefix + name`, checking shapes.
fn read_named(path: &Path, layout: &Layout, prefix: &str) -> Result<Weights> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let mut tensors = Vec::with_capacity(layout.tensors.len());
    for t in &layout.tensors {
        let name = format!("{prefix}{}", t.name);
        let view = st
            .tensor(&name)
            .map_err(|_| anyhow!("{}: tensor {name} is missing", path.display()))?;
        if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
            bail!(
                "{}: tensor {name} is {:?} {:?}, expected F32 {:?}",
                path.display(),
                view.dtype(),
                view.shape(),
                t.shape
            );
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push((t.name.clone(), t.shape.clone(), values));
    }
    Ok(Weights { tensors })
}

pub use crate::fsutil::write_atomic;

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn safetensors_bytes(items: Vec<(String, Vec<usize>, Vec<u8>)>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView)> = items
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// Writes the parameters as `path` (safetensors with PyTorch-style names).
pub fn save_weights(path: &Path, layout: &Layout, params: &[f32]) -> Result<()> {
    let items = Weights::from_params(layout, params)
        .tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, le_bytes(&v)))
        .collect();
    write_atomic(path, &safetensors_bytes(items)?)
}

/// Directory of the per-evaluation snapshots (`--keep-last`).
pub const SNAPSHOTS: &str = "snapshots";

/// Saves `params` as `dir/snapshots/step-NNNNNNNN.safetensors` and deletes all but the newest `keep`.
pub fn save_snapshot(dir: &Path, layout: &Layout, params: &[f32], step: u64, keep: u64) -> Result<()> {
    let snaps = dir.join(SNAPSHOTS);
    fs::create_dir_all(&snaps).with_context(|| format!("cannot create {}", snaps.display()))?;
    save_weights(&snaps.join(format!("step-{step:08}.safetensors")), layout, params)?;
    let all = list_snapshots(dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep as usize)) {
        fs::remove_file(old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

/// The snapshots of `dir` as `(step, path)`, oldest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(u64, std::path::PathBuf)>> {
    let snaps = dir.join(SNAPSHOTS);
    let Ok(entries) = fs::read_dir(&snaps) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.with_context(|| format!("cannot list {}", snaps.display()))?.path();
        let step = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
            n.strip_prefix("step-")?
                .strip_suffix(".safetensors")?
                .parse::<u64>()
                .ok()
        });
        if let Some(step) = step {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a weights file written by [`save_weights`] into a flat buffer.
pub fn load_params(path: &Path, layout: &Layout) -> Result<Vec<f32>> {
    Ok(read_named(path, layout, "")?.to_params(layout))
}

/// Writes the AdamW moments as `m.<name>` / `v.<name>`.
pub fn save_moments(path: &Path, layout: &Layout, mom: &Moments) -> Result<()> {
    let mut items = Vec::new();
    for (prefix, buf) in [("m.", &mom.m), ("v.", &mom.v)] {
        for t in &layout.tensors {
            items.push((
                format!("{prefix}{}", t.name),
                t.shape.clone(),
                le_bytes(&buf[t.offset..t.offset + t.len]),
            ));
        }
    }
    write_atomic(path, &safetensors_bytes(items)?)
}

/// Reads moments written by [`save_moments`].
pub fn load_moments(path: &Path, layout: &Layout) -> Result<Moments> {
    Ok(Moments {
        m: read_named(path, layout, "m.")?.to_params(layout),
        v: read_named(path, layout, "v.")?.to_params(layout),
    })
}

/// `state.json`: where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Optimiser steps taken.
    pub step: u64,
    /// Current epoch (1-based); `batch_in_epoch` batches of it are done.
    pub epoch: u64,
    /// Batches of `epoch` already trained.
    pub batch_in_epoch: u64,
    /// The random state: the run's seed. Every random draw is derived from (seed, epoch) for the batch
    /// order and (seed, step, example) for dropout, so this and `step`/`epoch` restore it exactly.
    pub seed: u64,
    /// Steps of the learning-rate schedule.
    pub total_steps: u64,
    /// Best dev exact match so far (0..=1).
    pub best_dev_exact_match: f64,
    /// Step of the best checkpoint.
    pub best_step: u64,
    /// Evaluations since the last improvement.
    pub evals_without_improvement: u64,
    /// Training seconds so far (all sessions).
    pub elapsed_seconds: f64,
    /// Quantization-aware fine-tuning.
    pub qat: bool,
    /// Set when the run ended (epochs done, early stop or time budget).
    pub finished: bool,
}

/// Reads `dir/state.json`.
pub fn load_state(dir: &Path) -> Result<State> {
    let path = dir.join("state.json");
    let text =
        fs::read_to_string(&path).map_err(|e| anyhow!("{} cannot be resumed (state.json: {e})", dir.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{} cannot be resumed (state.json: {e})", dir.display()))
}

/// Writes a JSON value atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Header of `log.csv`.
pub const LOG_HEADER: &str = "step,epoch,loss,lr,target_tokens_per_second,dev_exact_match,dev_token_error_rate";

/// Rewrites `dir/log.csv` atomically with `rows` (kept in memory by the trainer).
pub fn save_log(dir: &Path, rows: &[String]) -> Result<()> {
    let mut text = String::from(LOG_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    write_atomic(&dir.join("log.csv"), text.as_bytes())
}

/// Reads the data rows of `dir/log.csv` (empty when absent).
pub fn load_log(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("log.csv"))
        .map(|t| t.lines().skip(1).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}
