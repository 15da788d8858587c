//! `picoformer inspect`: what a blob holds and what it needs to run.

use std::path::PathBuf;

use anyhow::Result;
use picoformer::{NormPlacement, Quant, Split};
use serde_json::json;

/// Arguments of `picoformer inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The blob (.pfb) to describe.
    pub model: PathBuf,
    /// Beam width to size the workspace for.
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Chars => "chars",
        Split::Space => "space",
    }
}

/// Runs `picoformer inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    let bytes = crate::engine::load_blob(&args.model)?;
    let model = crate::engine::model(&bytes)?;
    let c = model.config();
    crate::engine::check_beam(args.beam)?;
    let ws = model.workspace_layout(args.beam);
    let quant = match c.quant {
        Quant::F32 => "f32",
        Quant::Int8 => "int8",
    };
    let norm = match c.norm {
        NormPlacement::Post => "post",
        NormPlacement::Pre => "pre",
    };
    let input_vocab: Vec<&str> = model.vocab().input_symbols().collect();
    let output_vocab: Vec<&str> = model.vocab().output_tokens().collect();
    let report = json!({
        "file": args.model.display().to_string(),
        "format_version": model.format_version(),
        "quant": quant,
        "kv_cache": if c.kv_cache == Quant::Int8 { "int8" } else { "f32" },
        "params": model.param_count(),
        "flash_bytes": model.blob_bytes(),
        "workspace_bytes": ws.total_bytes(),
        "beam": args.beam,
        "workspace": {
            "cross_attention_kv": ws.cross_kv,
            "shared_encoder_or_self_attention_kv": ws.shared,
            "encoder_activations": ws.encoder_bulk,
            "self_attention_kv": ws.self_kv,
            "scratch": ws.scratch,
            "tokens": ws.tokens,
        },
        "config": {
            "d_model": c.d_model, "heads": c.heads, "d_ff": c.d_ff,
            "encoder_layers": c.encoder_layers, "decoder_layers": c.decoder_layers,
            "input_vocab": c.input_vocab, "output_vocab": c.output_vocab,
            "max_input_len": c.max_input_len, "max_output_len": c.max_output_len,
            "norm": norm, "tied_output": c.tied_output, "layer_norm_eps": c.layer_norm_eps,
            "conv_kernel": c.conv_kernel,
            "input_tokens": split_name(c.input_split), "output_tokens": split_name(c.output_split),
        },
        "input_vocab": input_vocab,
        "output_vocab": output_vocab,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{}: picoformer blob, format version {}",
        args.model.display(),
        model.format_version()
    );
    let conv = if c.conv_kernel > 0 {
        format!(" | encoder conv {}", c.conv_kernel)
    } else {
        String::new()
    };
    println!(
        "model      d_model {} | heads {} | d_ff {} | {} encoder + {} decoder layers | {}-LN{}{conv}",
        c.d_model,
        c.heads,
        c.d_ff,
        c.encoder_layers,
        c.decoder_layers,
        norm,
        if c.tied_output { " | tied output" } else { "" }
    );
    println!(
        "weights    {quant}, {} parameters; attention caches {}",
        model.param_count(),
        if c.kv_cache == Quant::Int8 { "int8" } else { "f32" }
    );
    println!(
        "flash      {} bytes ({:.1} KiB)",
        model.blob_bytes(),
        model.blob_bytes() as f64 / 1024.0
    );
    println!(
        "workspace  {} bytes ({:.1} KiB) for beam {}:",
        ws.total_bytes(),
        ws.total_bytes() as f64 / 1024.0,
        args.beam
    );
    println!("             cross-attention K/V       {:>8}", ws.cross_kv);
    println!(
        "             encoder / self-attn K/V   {:>8}  (max of {} and {})",
        ws.shared, ws.encoder_bulk, ws.self_kv
    );
    println!("             per-vector scratch        {:>8}", ws.scratch);
    println!("             token buffers             {:>8}", ws.tokens);
    println!(
        "lengths    input up to {} {}, output up to {} tokens",
        c.max_input_len,
        if c.input_split == Split::Chars {
            "characters"
        } else {
            "tokens"
        },
        c.max_output_len
    );
    println!(
        "input      {} symbols: {}",
        input_vocab.len() - 1,
        input_vocab[1..].join(" ")
    );
    println!(
        "output     {} tokens: {}",
        output_vocab.len() - 3,
        output_vocab[3..].join(" ")
    );
    Ok(())
}
