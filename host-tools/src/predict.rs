//! `picoformer predict`: a blob's outputs for inputs on the command line or stdin, and attention maps.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result};
use picoformer::blob::writer::workspace;
use picoformer::{DecodeOptions, ProbeSpec, Runner, Site};

use crate::engine;

/// Arguments of `picoformer predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The blob (.pfb).
    #[arg(long)]
    pub model: PathBuf,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Draw the cross-attention map (output tokens against input symbols) of the first input to this PNG.
    #[arg(long)]
    pub attention: Option<PathBuf>,
    /// Decoder layer whose cross-attention is drawn (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Head drawn (default: the average over all heads).
    #[arg(long)]
    pub head: Option<usize>,
    /// Inputs to decode; without any, each stdin line is one input.
    pub inputs: Vec<String>,
}

/// Runs `picoformer predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    let bytes = engine::load_blob(&args.model)?;
    let model = engine::model(&bytes)?;
    crate::engine::check_beam(args.beam)?;
    let mut ws = workspace(model.workspace_bytes(args.beam));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), args.beam)?;
    let opts = DecodeOptions::beam(args.beam);
    let mut failures = 0usize;
    let mut first: Option<String> = None;
    let mut handle = |input: &str, runner: &mut Runner<'_, '_, '_>| {
        first.get_or_insert_with(|| input.to_string());
        match engine::predict_one(runner, input, &opts) {
            Ok(tokens) => println!("{}", engine::join_output(&model, &tokens)),
            Err(e) => {
                failures += 1;
                eprintln!("error: {input:?}: {e}");
            }
        }
    };
    if args.inputs.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read stdin")?;
            handle(line.trim_end_matches('\r'), &mut runner);
        }
    } else {
        for input in &args.inputs {
            handle(input, &mut runner);
        }
    }
    if let (Some(path), Some(input)) = (&args.attention, &first) {
        draw_attention(&mut runner, input, args.layer, args.head, path)?;
        eprintln!("attention map of {input:?} written to {}", path.display());
    }
    if failures > 0 {
        anyhow::bail!("{failures} input(s) could not be decoded");
    }
    Ok(())
}

/// Runs greedy decoding of `input` with a probe on decoder cross-attention and draws the weights.
fn draw_attention(
    runner: &mut Runner<'_, '_, '_>,
    input: &str,
    layer: Option<usize>,
    head: Option<usize>,
    path: &std::path::Path,
) -> Result<()> {
    let model = runner.model();
    let cfg = *model.config();
    let layer = layer.unwrap_or(cfg.decoder_layers - 1);
    let heads: Vec<usize> = match head {
        Some(h) => vec![h],
        None => (0..cfg.heads).collect(),
    };
    let mut out = vec![0u16; cfg.max_output_len];
    let mut sum: Vec<Vec<f32>> = Vec::new();
    let mut len = 0;
    for &h in &heads {
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let spec = ProbeSpec {
            site: Site::DecoderCross,
            layer,
            head: h,
        };
        let d = runner
            .translate_probed(input, &mut out, spec, &mut |_q: usize, w: &[f32]| rows.push(w.to_vec()))
            .map_err(|e| anyhow::anyhow!("{input:?}: {e}"))?;
        len = d.len;
        if sum.is_empty() {
            sum = rows;
        } else {
            sum.iter_mut()
                .zip(&rows)
                .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(x, y)| *x += y));
        }
    }
    let vocab = model.vocab();
    let mut row_labels: Vec<String> = out[..len]
        .iter()
        .map(|&t| vocab.output_token(t).unwrap_or("?").to_string())
        .collect();
    if sum.len() > len {
        row_labels.push("</s>".to_string());
    }
    let col_labels: Vec<String> = vocab.split_input(input).map(str::to_string).collect();
    let weights: Vec<f32> = sum
        .iter()
        .take(row_labels.len())
        .flatten()
        .map(|w| w / heads.len() as f32)
        .collect();
    let which = match head {
        Some(h) => format!("head {h}"),
        None => "mean of heads".to_string(),
    };
    let title = format!("{input}: cross-attention, decoder layer {layer}, {which}");
    crate::plot::attention_map(path, &row_labels, &col_labels, &weights, &title)
}
