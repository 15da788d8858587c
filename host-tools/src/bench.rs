//! `picoformer bench`: host throughput of the no_std engine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use picoformer::DecodeOptions;
use serde_json::json;

use crate::engine;

/// Arguments of `picoformer bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Blobs to measure (e.g. the f32 and the int8 export of one checkpoint).
    #[arg(long, required = true, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// Inputs: the first column of this TSV. Without it, random inputs from the input vocabulary.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Inputs decoded per measurement.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Beam width.
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Print one JSON object per model instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Random inputs from a model's input vocabulary, lengths uniform in 3..=max (deterministic).
fn random_inputs(model: &picoformer::Model<'_>, n: usize) -> Vec<String> {
    let symbols: Vec<&str> = model.vocab().input_symbols().skip(1).collect();
    let sep = if model.config().input_split == picoformer::Split::Space {
        " "
    } else {
        ""
    };
    let max = model.config().max_input_len.clamp(1, 12);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    (0..n)
        .map(|_| {
            let len = 1 + next() % max;
            (0..len)
                .map(|_| symbols[next() % symbols.len()])
                .collect::<Vec<_>>()
                .join(sep)
        })
        .collect()
}

/// Runs `picoformer bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let all_threads = engine::thread_count(0);
    for path in &args.model {
        let bytes = engine::load_blob(path)?;
        let model = engine::model(&bytes)?;
        let inputs: Vec<String> = match &args.data {
            Some(data) => {
                let pairs = crate::tsv::read_pairs(data)?;
                pairs.iter().map(|p| p.input.clone()).cycle().take(args.n).collect()
            }
            None => random_inputs(&model, args.n),
        };
        let opts = DecodeOptions::beam(args.beam);
        let mut results = Vec::new();
        for threads in [1, all_threads] {
            let start = Instant::now();
            let preds = engine::predict_all(&model, &inputs, &opts, threads)?;
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let tokens: usize = preds.iter().map(|p| p.as_ref().map_or(0, |t| t.len() + 1)).sum();
            results.push((threads, inputs.len() as f64 / secs, tokens as f64 / secs));
        }
        let quant = match model.config().quant {
            picoformer::Quant::F32 => "f32",
            picoformer::Quant::Int8 => "int8",
        };
        if args.json {
            println!(
                "{}",
                json!({
                    "model": path.display().to_string(), "quant": quant, "beam": args.beam, "examples": inputs.len(),
                    "examples_per_second_1_thread": results[0].1, "tokens_per_second_1_thread": results[0].2,
                    "threads": all_threads,
                    "examples_per_second": results[1].1, "tokens_per_second": results[1].2,
                })
            );
        } else {
            for (threads, eps, tps) in &results {
                println!(
                    "{} ({quant}, beam {}): {eps:.0} examples/s, {tps:.0} tokens/s on {threads} thread(s)",
                    path.display(),
                    args.beam
                );
            }
        }
    }
    Ok(())
}
