//! `picoformer export`: a checkpoint to a blob, checked against the trainer's own forward pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use picoformer::blob::writer::{write_blob, AlignedBytes};
use picoformer::{DecodeOptions, Model, Quant, Runner};
use serde_json::json;

use crate::train::{Checkpoint, TrainModel, Which};

/// Weight storage of an exported blob.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantArg {
    /// 32-bit float weights.
    F32,
    /// int8 weights with one scale per output row (about 4x smaller).
    Int8,
}

/// Which weights of the checkpoint to export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhichArg {
    /// The weights with the best dev exact match.
    Best,
    /// The weights at the last checkpoint.
    Last,
}

/// Arguments of `picoformer export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint directory written by `picoformer train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Weight storage.
    #[arg(long, value_enum, default_value_t = QuantArg::Int8)]
    pub quant: QuantArg,
    /// Output blob (.pfb), written atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// Which weights to export.
    #[arg(long, value_enum, default_value_t = WhichArg::Best)]
    pub which: WhichArg,
    /// Storage of the attention key/value caches on the device: f32, or int8 with a scale per row
    /// and head (about a quarter of the cache RAM; costs a little accuracy, check with `eval`).
    #[arg(long, value_enum, default_value_t = QuantArg::F32)]
    pub kv_cache: QuantArg,
    /// Longest input the device accepts, in symbols (default: the checkpoint's, i.e. the longest
    /// training input plus headroom). Smaller values shrink the workspace; longer inputs get an error.
    #[arg(long)]
    pub max_input_len: Option<usize>,
    /// Most output tokens the device decodes (default: the checkpoint's).
    #[arg(long)]
    pub max_output_len: Option<usize>,
    /// TSV whose inputs check the blob against the trainer (default: the checkpoint's dev set).
    #[arg(long)]
    pub check_data: Option<PathBuf>,
    /// Inputs used by the check (0 = skip the check).
    #[arg(long, default_value_t = 200)]
    pub check_n: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The result of comparing the engine with the trainer on sample inputs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Check {
    /// Inputs compared.
    pub compared: usize,
    /// Inputs with identical output tokens.
    pub identical: usize,
    /// Inputs skipped (a symbol outside the vocabulary, too long, or an output cut at the length limit).
    pub skipped: usize,
}

/// What the exported model looks like on the device, beyond the checkpoint's weights.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOptions {
    /// Weight storage.
    pub quant: Quant,
    /// Key/value cache storage.
    pub kv_cache: Quant,
    /// Overrides the checkpoint's maximum input length.
    pub max_input_len: Option<usize>,
    /// Overrides the checkpoint's maximum output length.
    pub max_output_len: Option<usize>,
}

/// Builds the blob bytes of a checkpoint.
pub fn blob_of(ck: &Checkpoint, dev: &DeviceOptions) -> Result<Vec<u8>> {
    let mut cfg = ck.config.arch().engine_config();
    cfg.quant = dev.quant;
    cfg.kv_cache = dev.kv_cache;
    if let Some(n) = dev.max_input_len {
        if n == 0 {
            bail!("--max-input-len must be at least 1");
        }
        cfg.max_input_len = n;
    }
    if let Some(n) = dev.max_output_len {
        if n == 0 {
            bail!("--max-output-len must be at least 1");
        }
        cfg.max_output_len = n;
    }
    let split = |s: crate::tsv::Split| match s {
        crate::tsv::Split::Chars => picoformer::Split::Chars,
        crate::tsv::Split::Space => picoformer::Split::Space,
    };
    cfg.input_split = split(ck.config.input_tokens);
    cfg.output_split = split(ck.config.output_tokens);
    let tensors: HashMap<String, Vec<f32>> = ck
        .weights
        .iter()
        .map(|(name, _, values)| (name.to_string(), values.to_vec()))
        .collect();
    let ins: Vec<&str> = ck.config.input_vocab.iter().map(String::as_str).collect();
    let outs: Vec<&str> = ck.config.output_vocab.iter().map(String::as_str).collect();
    write_blob(&cfg, &ins, &outs, &tensors).context("cannot build the blob")
}

/// Decodes `inputs` with the engine and with the trainer's forward pass and counts agreements.
pub fn check_against_trainer(ck: &Checkpoint, blob: &AlignedBytes, inputs: &[String]) -> Result<Check> {
    let model = Model::from_blob(blob.as_bytes()).map_err(|e| anyhow::anyhow!("exported blob is invalid: {e}"))?;
    let trainer = TrainModel::from_checkpoint(ck)?;
    let vocabs = ck.config.vocabs();
    let mut ws = picoformer::blob::writer::workspace(model.workspace_bytes(1));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1)?;
    let mut out = vec![0u16; model.config().max_output_len];
    let mut engine_outputs = Vec::new();
    let mut ids = Vec::new();
    let mut skipped = 0;
    for input in inputs {
        match runner.translate(input, &DecodeOptions::greedy(), &mut out) {
            // An output cut at a shorter --max-output-len than the trainer's is not comparable.
            Ok(d) if d.truncated => skipped += 1,
            Ok(d) => {
                engine_outputs.push(out[..d.len].iter().map(|&t| u32::from(t)).collect::<Vec<u32>>());
                ids.push(vocabs.encode_input(input));
            }
            Err(_) => skipped += 1,
        }
    }
    let trainer_outputs = trainer.greedy(&ids);
    let identical = engine_outputs
        .iter()
        .zip(&trainer_outputs)
        .filter(|(a, b)| a == b)
        .count();
    Ok(Check {
        compared: engine_outputs.len(),
        identical,
        skipped,
    })
}

fn sample_inputs(path: &Path, n: usize) -> Result<Vec<String>> {
    let pairs = crate::tsv::read_pairs(path)?;
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<String> = pairs
        .into_iter()
        .map(|p| p.input)
        .filter(|i| seen.insert(i.clone()))
        .collect();
    let step = (distinct.len() / n.max(1)).max(1);
    Ok(distinct.into_iter().step_by(step).take(n).collect())
}

/// Runs `picoformer export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let which = match args.which {
        WhichArg::Best => Which::Best,
        WhichArg::Last => Which::Last,
    };
    let ck = Checkpoint::load(&args.checkpoint, which)?;
    let to_quant = |q: QuantArg| match q {
        QuantArg::F32 => Quant::F32,
        QuantArg::Int8 => Quant::Int8,
    };
    let quant = to_quant(args.quant);
    let device = DeviceOptions {
        quant,
        kv_cache: to_quant(args.kv_cache),
        max_input_len: args.max_input_len,
        max_output_len: args.max_output_len,
    };
    let bytes = blob_of(&ck, &device)?;
    let aligned = AlignedBytes::new(&bytes);
    let model = Model::from_blob(aligned.as_bytes()).map_err(|e| anyhow::anyhow!("exported blob is invalid: {e}"))?;

    let check = if args.check_n == 0 {
        None
    } else {
        let data = args.check_data.clone().unwrap_or_else(|| {
            // Runs recorded before paths were stored absolute: relative to the run's directory.
            let recorded = PathBuf::from(&ck.config.train.dev);
            let beside = args.checkpoint.join("..").join(&recorded);
            if recorded.is_relative() && !recorded.exists() && beside.exists() {
                beside
            } else {
                recorded
            }
        });
        if !data.exists() {
            bail!(
                "no data for the self-check: {} does not exist (give --check-data, or --check-n 0)",
                data.display()
            );
        }
        Some(check_against_trainer(
            &ck,
            &aligned,
            &sample_inputs(&data, args.check_n)?,
        )?)
    };
    if let Some(c) = check {
        if quant == Quant::F32 && device.kv_cache == Quant::F32 && c.identical != c.compared {
            bail!(
                "self-check failed: the engine and the trainer disagree on {} of {} inputs; blob not written",
                c.compared - c.identical,
                c.compared
            );
        }
    }
    crate::data::write_atomic(&args.out, &bytes)?;

    let params = model.param_count();
    let workspace = model.workspace_bytes(1);
    if args.json {
        println!(
            "{}",
            json!({
                "out": args.out.display().to_string(),
                "quant": if quant == Quant::F32 { "f32" } else { "int8" },
                "params": params, "flash_bytes": bytes.len(), "workspace_bytes": workspace,
                "check": check,
            })
        );
    } else {
        println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
        println!(
            "params {params}, flash {:.1} KiB, workspace {:.1} KiB (greedy)",
            bytes.len() as f64 / 1024.0,
            workspace as f64 / 1024.0
        );
        if let Some(c) = check {
            println!(
                "self-check: engine and trainer give identical tokens on {}/{} inputs{}",
                c.identical,
                c.compared,
                if c.skipped > 0 {
                    format!(
                        " ({} skipped: outside the vocabulary, too long, or cut at the length limit)",
                        c.skipped
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
