//! `picoformer eval`: accuracy of a blob on a TSV, computed with the no_std engine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use picoformer::DecodeOptions;
use serde_json::json;

use crate::engine;
use crate::metrics::{group_references, score, Scores};

/// Arguments of `picoformer eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The blob (.pfb) to evaluate.
    #[arg(long)]
    pub model: PathBuf,
    /// TSV of `input<TAB>expected output` lines. An input on several lines (e.g. pronunciation
    /// variants) is one example, correct if the prediction matches any of its outputs.
    #[arg(long)]
    pub data: PathBuf,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Write `input<TAB>prediction` lines here (`ERR <message>` for inputs the model cannot take).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Scores of a model on a dataset, with the predictions.
pub struct Evaluation {
    /// Distinct inputs in data order.
    pub inputs: Vec<String>,
    /// Predictions (tokens) or engine errors, one per input.
    pub predictions: Vec<engine::Prediction>,
    /// The scores.
    pub scores: Scores,
    /// Inputs the model could not take (counted as wrong).
    pub errors: usize,
    /// Wall time of the decoding.
    pub seconds: f64,
}

/// Evaluates `bytes` on the pairs of `data` (see [`EvalArgs`]).
pub fn evaluate(
    bytes: &picoformer::blob::writer::AlignedBytes,
    data: &std::path::Path,
    beam: usize,
    threads: usize,
) -> Result<Evaluation> {
    let model = engine::model(bytes)?;
    crate::engine::check_beam(beam)?;
    let pairs = crate::tsv::read_pairs(data)?;
    let split = match model.config().output_split {
        picoformer::Split::Space => crate::tsv::Split::Space,
        picoformer::Split::Chars => crate::tsv::Split::Chars,
    };
    let groups = group_references(pairs.iter().map(|p| {
        let tokens: Vec<String> = split.tokens(&p.output).into_iter().map(str::to_string).collect();
        (p.input.clone(), tokens)
    }));
    let inputs: Vec<String> = groups.iter().map(|(i, _)| i.clone()).collect();
    let start = Instant::now();
    let predictions = engine::predict_all(&model, &inputs, &DecodeOptions::beam(beam), threads)?;
    let seconds = start.elapsed().as_secs_f64();
    let empty = Vec::new();
    let scores = score(
        groups
            .iter()
            .zip(&predictions)
            .map(|((_, refs), p)| (refs.as_slice(), p.as_ref().unwrap_or(&empty).as_slice())),
    );
    let errors = predictions.iter().filter(|p| p.is_err()).count();
    Ok(Evaluation {
        inputs,
        predictions,
        scores,
        errors,
        seconds,
    })
}

/// Runs `picoformer eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let bytes = engine::load_blob(&args.model)?;
    let ev = evaluate(&bytes, &args.data, args.beam, args.threads)?;
    let model = engine::model(&bytes)?;
    if let Some(path) = &args.predictions {
        let mut text = String::new();
        for (input, p) in ev.inputs.iter().zip(&ev.predictions) {
            match p {
                Ok(tokens) => text.push_str(&format!("{input}\t{}\n", engine::join_output(&model, tokens))),
                Err(e) => text.push_str(&format!("{input}\tERR {e}\n")),
            }
        }
        crate::data::write_atomic(path, text.as_bytes())?;
    }
    let per_second = ev.scores.examples as f64 / ev.seconds.max(1e-9);
    let threads = engine::thread_count(args.threads);
    if args.json {
        println!(
            "{}",
            json!({
                "model": args.model.display().to_string(),
                "data": args.data.display().to_string(),
                "examples": ev.scores.examples,
                "exact_match": ev.scores.exact_match,
                "wer": ev.scores.wer,
                "token_error_rate": ev.scores.token_error_rate,
                "examples_per_second": per_second,
                "errors": ev.errors,
                "beam": args.beam,
                "threads": threads,
                "seconds": ev.seconds,
            })
        );
    } else {
        println!("examples           {}", ev.scores.examples);
        println!("exact match        {:.2}%", 100.0 * ev.scores.exact_match);
        println!("WER                {:.2}%", 100.0 * ev.scores.wer);
        println!("token error rate   {:.2}%", 100.0 * ev.scores.token_error_rate);
        println!(
            "examples/s         {per_second:.0} ({threads} threads, beam {})",
            args.beam
        );
        if ev.errors > 0 {
            let first = ev
                .predictions
                .iter()
                .zip(&ev.inputs)
                .find_map(|(p, i)| p.as_ref().err().map(|e| (i, e)));
            if let Some((input, e)) = first {
                println!(
                    "inputs refused     {} (counted as wrong), e.g. {input:?}: {e}",
                    ev.errors
                );
            }
        }
    }
    Ok(())
}
