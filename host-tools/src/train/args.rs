//! Command-line flags and the optional `--config model.toml`, resolved into one set of settings.
//! Precedence: flag, then config file, then the built-in default.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::tsv::Split;

use super::params::Norm;

/// Arguments of `picoformer train`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(
    after_help = "Examples:\n  picoformer train --data train.tsv --dev dev.tsv --out runs/rev\n  \
picoformer train --resume runs/rev                 # continue a killed run\n  \
picoformer train --resume runs/rev --qat --epochs 3  # int8 quantization-aware fine-tuning\n\n\
The output directory holds config.json, best.safetensors, last.safetensors, optimizer.safetensors,\n\
state.json and log.csv (see docs/architecture.md)."
)]
pub struct TrainArgs {
    /// Training TSV (`input<TAB>output` per line). On --resume defaults to the run's file.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Dev TSV, greedy-decoded for exact match at every evaluation. On --resume defaults to the run's file.
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,
    /// Checkpoint directory to create (or continue with --resume).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// TOML file with any of the model and training settings below (snake_case keys, e.g. `d_model = 96`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Continue the run in DIR (or in --out) from last.safetensors, optimizer.safetensors and state.json.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<PathBuf>,
    /// Start from the best weights (and vocabularies) of another checkpoint directory.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Quantization-aware fine-tuning: weights fake-quantized to int8 in the forward pass (needs
    /// --resume or --init; defaults then become lr 1e-4, 3 epochs, warmup 0).
    #[arg(long)]
    pub qat: bool,
    /// Stop after this many epochs [default: 50].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Stop after this many minutes; the learning-rate schedule is fitted to the budget after the first epoch.
    #[arg(long, value_name = "M")]
    pub max_minutes: Option<f64>,
    /// Print one JSON object with the results as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Seed of every random choice (initialisation, batch order, dropout) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// How inputs are split into symbols [default: chars].
    #[arg(long, value_enum)]
    pub input_tokens: Option<Split>,
    /// How outputs are split into tokens [default: chars].
    #[arg(long, value_enum)]
    pub output_tokens: Option<Split>,
    /// Model width [default: 64].
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Attention heads [default: 4].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Feed-forward hidden width [default: 256].
    #[arg(long)]
    pub d_ff: Option<usize>,
    /// Encoder blocks [default: 2].
    #[arg(long)]
    pub encoder_layers: Option<usize>,
    /// Decoder blocks [default: 2].
    #[arg(long)]
    pub decoder_layers: Option<usize>,
    /// Kernel width of a depthwise convolution sublayer in every encoder block, between
    /// self-attention and the FFN (odd; 0 = none) [default: 0].
    #[arg(long, value_name = "K")]
    pub conv_kernel: Option<usize>,
    /// LayerNorm placement [default: pre].
    #[arg(long, value_enum)]
    pub norm: Option<Norm>,
    /// Share the output projection with the output embedding [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tied_output: Option<bool>,
    /// Peak learning rate [default: 1e-3].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Examples per step [default: 256, smaller for datasets under 5,120 lines].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Linear warm-up steps [default: 1000, at most a tenth of the planned steps].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Label smoothing [default: 0.1].
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Dropout [default: 0.1].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Clip the global gradient norm to this (0 = off) [default: 1.0].
    #[arg(long)]
    pub clip: Option<f32>,
    /// AdamW weight decay [default: 0.01].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Stop after this many evaluations without a better dev exact match [default: 6].
    #[arg(long)]
    pub patience: Option<u64>,
    /// Evaluate (and checkpoint) every N steps instead of every epoch [default: 0 = every epoch].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Score at most N distinct dev inputs per evaluation (0 = all) [default: 0].
    #[arg(long, value_name = "N")]
    pub dev_sample: Option<usize>,
    /// Write a log.csv row every N steps [default: 50].
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,
    /// Keep the weights of the last N evaluations in `snapshots/`, for `picoformer average` [default: 0].
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u64>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop as if killed after this many steps, after writing a checkpoint; the schedule is unchanged.
    /// For testing --resume.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
    /// Write the starting weights to `init.safetensors` in the run directory and one JSON line per
    /// step (epoch, learning rate, loss, the batch's token ids) to FILE, so another implementation
    /// can replay the same run (`scripts/train-parity.sh`).
    #[arg(long, value_name = "FILE", hide = true)]
    pub trace: Option<PathBuf>,
}

/// Settings a `--config` TOML file may hold.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    d_model: Option<usize>,
    heads: Option<usize>,
    d_ff: Option<usize>,
    encoder_layers: Option<usize>,
    decoder_layers: Option<usize>,
    norm: Option<Norm>,
    tied_output: Option<bool>,
    conv_kernel: Option<usize>,
    layer_norm_eps: Option<f32>,
    input_tokens: Option<Split>,
    output_tokens: Option<Split>,
    lr: Option<f32>,
    batch_size: Option<usize>,
    warmup: Option<u64>,
    label_smoothing: Option<f32>,
    dropout: Option<f32>,
    clip: Option<f32>,
    weight_decay: Option<f32>,
    epochs: Option<u64>,
    patience: Option<u64>,
    eval_every: Option<u64>,
    keep_last: Option<u64>,
    seed: Option<u64>,
}

impl FileConfig {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))
    }
}

/// Model settings before the vocabularies and lengths are known.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    /// Width.
    pub d_model: usize,
    /// Heads.
    pub heads: usize,
    /// FFN width.
    pub d_ff: usize,
    /// Encoder blocks.
    pub encoder_layers: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
    /// Norm placement.
    pub norm: Norm,
    /// Tied output projection.
    pub tied_output: bool,
    /// Encoder convolution kernel (0 = none).
    pub conv_kernel: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Input split.
    pub input_tokens: Split,
    /// Output split.
    pub output_tokens: Split,
}

/// Training settings with defaults applied (`batch_size`/`warmup` `None` = derive from the data).
#[derive(Clone, Debug)]
pub struct TrainChoice {
    /// Peak learning rate.
    pub lr: f32,
    /// Examples per step.
    pub batch_size: Option<usize>,
    /// Warm-up steps.
    pub warmup: Option<u64>,
    /// Label smoothing.
    pub label_smoothing: f32,
    /// Dropout.
    pub dropout: f32,
    /// Gradient clip.
    pub clip: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Epoch limit.
    pub epochs: u64,
    /// Patience in evaluations.
    pub patience: u64,
    /// Evaluation interval in steps (0 = per epoch).
    pub eval_every: u64,
    /// Snapshots kept.
    pub keep_last: u64,
    /// Seed.
    pub seed: u64,
}

impl TrainArgs {
    /// Resolves the model settings.
    pub fn model(&self, file: &FileConfig) -> ModelChoice {
        ModelChoice {
            d_model: self.d_model.or(file.d_model).unwrap_or(64),
            heads: self.heads.or(file.heads).unwrap_or(4),
            d_ff: self.d_ff.or(file.d_ff).unwrap_or(256),
            encoder_layers: self.encoder_layers.or(file.encoder_layers).unwrap_or(2),
            decoder_layers: self.decoder_layers.or(file.decoder_layers).unwrap_or(2),
            norm: self.norm.or(file.norm).unwrap_or(Norm::Pre),
            tied_output: self.tied_output.or(file.tied_output).unwrap_or(false),
            conv_kernel: self.conv_kernel.or(file.conv_kernel).unwrap_or(0),
            layer_norm_eps: file.layer_norm_eps.unwrap_or(1e-5),
            input_tokens: self.input_tokens.or(file.input_tokens).unwrap_or(Split::Chars),
            output_tokens: self.output_tokens.or(file.output_tokens).unwrap_or(Split::Chars),
        }
    }

    /// Resolves the training settings (`qat` changes the defaults of lr, epochs and warm-up).
    pub fn train(&self, file: &FileConfig, qat: bool) -> Result<TrainChoice> {
        let t = TrainChoice {
            lr: self.lr.or(file.lr).unwrap_or(if qat { 1e-4 } else { 1e-3 }),
            batch_size: self.batch_size.or(file.batch_size),
            warmup: self.warmup.or(file.warmup).or(qat.then_some(0)),
            label_smoothing: self.label_smoothing.or(file.label_smoothing).unwrap_or(0.1),
            dropout: self.dropout.or(file.dropout).unwrap_or(0.1),
            clip: self.clip.or(file.clip).unwrap_or(1.0),
            weight_decay: self.weight_decay.or(file.weight_decay).unwrap_or(0.01),
            epochs: self.epochs.or(file.epochs).unwrap_or(if qat { 3 } else { 50 }),
            patience: self.patience.or(file.patience).unwrap_or(6),
            eval_every: self.eval_every.or(file.eval_every).unwrap_or(0),
            keep_last: self.keep_last.or(file.keep_last).unwrap_or(0),
            seed: self.seed.or(file.seed).unwrap_or(0),
        };
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("--lr must be positive, got {}", t.lr);
        }
        if !(0.0..1.0).contains(&t.dropout) {
            bail!("--dropout must be in [0, 1), got {}", t.dropout);
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!("--label-smoothing must be in [0, 1), got {}", t.label_smoothing);
        }
        if t.batch_size == Some(0) {
            bail!("--batch-size must be at least 1");
        }
        if t.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        Ok(t)
    }
}
