//! `picoformer bench`: host throughput of the no_std engine, or (`--board`) instruction counts of
//! the kernels and of whole inferences on an emulated Cortex-M (QEMU `-icount`, deterministic).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use picoformer::DecodeOptions;
use serde_json::json;

use crate::engine;

/// Arguments of `picoformer bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Blobs to measure (e.g. the f32 and the int8 export of one checkpoint). Required on the
    /// host; with --board, optional (the kernels are then measured at the 128x128 reference
    /// shape only, on a small generated model).
    #[arg(long, num_args = 1.., required_unless_present = "board")]
    pub model: Vec<PathBuf>,
    /// Measure on this emulated board instead of the host: instructions per MAC of the int8 and
    /// f32 matrix-vector products (portable and optimized, same run) at the model's matrix
    /// shapes and 128x128, and instructions per example and per output token.
    #[arg(long, value_enum)]
    pub board: Option<crate::qemu::Board>,
    /// Firmware ELF to run instead of building `firmware/boards/<board>` (with --board).
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Inputs decoded on the board per model (with --board).
    #[arg(long, default_value_t = 64)]
    pub board_inputs: usize,
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
    crate::engine::check_beam(args.beam)?;
    if let Some(board) = args.board {
        return board::run(&args, board);
    }
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

/// `picoformer bench --board`: kernel and whole-model instruction counts under QEMU.
mod board {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use anyhow::{bail, Context, Result};
    use picoformer::blob::writer::write_blob;
    use picoformer::{Config, Model, NormPlacement, Quant, Split, TensorId};
    use serde_json::{json, Value};

    use super::{random_inputs, BenchArgs};
    use crate::qemu::{self, Board, SessionOptions};

    /// The reference shape of issue 7 (inputs x outputs), and smaller ones for boards whose RAM
    /// does not hold it (the first that fits is used).
    const REFERENCE: [(usize, usize); 3] = [(128, 128), (64, 64), (32, 32)];

    /// CMSIS-NN `arm_fully_connected_s8` instructions per MAC on this emulated Cortex-M4, from
    /// issue 7: (inputs, outputs, figure).
    const CMSIS_NN: [(usize, usize, f64); 4] = [(128, 128, 2.27), (64, 64, 2.68), (64, 256, 2.66), (256, 64, 2.08)];

    /// One `!bench` answer.
    #[derive(Debug, Clone, Copy)]
    struct Counts {
        portable: u64,
        optimized: u64,
    }

    fn parse_bench(answer: &str) -> Result<Option<Counts>> {
        if answer.starts_with("ERR the bench needs") {
            return Ok(None);
        }
        let Some(rest) = answer.strip_prefix("BENCH ") else {
            bail!("the firmware answered {answer:?} to !bench");
        };
        let f = qemu::parse_fields(rest);
        let num = |k: &str| -> Result<u64> {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {k} in {answer:?}"))
        };
        if f.get("exact").map(String::as_str) != Some("1") {
            bail!("optimized and portable kernels differ: {answer}");
        }
        Ok(Some(Counts {
            portable: num("portable")?,
            optimized: num("optimized")?,
        }))
    }

    /// A small int8 model to boot the firmware when no model is given.
    fn synthetic_blob() -> Result<PathBuf> {
        let cfg = Config {
            d_model: 16,
            heads: 2,
            d_ff: 32,
            encoder_layers: 1,
            decoder_layers: 1,
            input_vocab: 5,
            output_vocab: 6,
            max_input_len: 8,
            max_output_len: 8,
            norm: NormPlacement::Pre,
            tied_output: false,
            quant: Quant::Int8,
            kv_cache: Quant::F32,
            input_split: Split::Chars,
            output_split: Split::Space,
            layer_norm_eps: 1e-5,
            conv_kernel: 0,
        };
        let mut state = 0x9E37_79B9u32;
        let mut tensors: HashMap<String, Vec<f32>> = HashMap::new();
        for id in TensorId::all(&cfg) {
            let (r, c) = id.shape(&cfg);
            let v = (0..r * c)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            tensors.insert(id.to_string(), v);
        }
        let bytes = write_blob(
            &cfg,
            &["<pad>", "a", "b", "c", "d"],
            &["<pad>", "<s>", "</s>", "A", "B", "C"],
            &tensors,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let path = std::env::temp_dir().join(format!("picoformer-bench-{}.pfb", std::process::id()));
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// The distinct matrix shapes (outputs, inputs) of a model's matrix-vector products, named.
    fn model_shapes(cfg: &Config) -> Vec<(&'static str, usize, usize)> {
        let d = cfg.d_model;
        let mut v = vec![
            ("attention d->d", d, d),
            ("ffn d->d_ff", cfg.d_ff, d),
            ("ffn d_ff->d", d, cfg.d_ff),
        ];
        v.push(("output d->vocab", cfg.output_vocab, d));
        let mut seen = Vec::new();
        v.retain(|s| {
            let fresh = !seen.contains(&(s.1, s.2));
            seen.push((s.1, s.2));
            fresh
        });
        v
    }

    fn per_mac(n: u64, rows: usize, cols: usize) -> f64 {
        n as f64 / (rows * cols) as f64
    }

    /// Measures the kernels at `shapes` in one QEMU session; `None` where the RAM is too small.
    fn bench_shapes(
        board: Board,
        elf: &Path,
        blob: &Path,
        shapes: &[(usize, usize)],
    ) -> Result<Vec<(Option<Counts>, Option<Counts>)>> {
        let mut lines = Vec::new();
        for &(rows, cols) in shapes {
            lines.push(format!("!bench i8 {rows} {cols}"));
            lines.push(format!("!bench f32 {rows} {cols}"));
        }
        let opts = SessionOptions {
            raw: true,
            stack: false,
            timeout: Some(std::time::Duration::from_secs(60 + 2 * shapes.len() as u64)),
            ..Default::default()
        };
        let out = qemu::run_session_with(board, elf, blob, &lines, &opts)?;
        out.answers
            .chunks_exact(2)
            .map(|a| Ok((parse_bench(&a[0])?, parse_bench(&a[1])?)))
            .collect()
    }

    fn shape_json(name: &str, rows: usize, cols: usize, r: &(Option<Counts>, Option<Counts>)) -> Value {
        let f = |c: &Option<Counts>, portable: bool| {
            c.map(|c| per_mac(if portable { c.portable } else { c.optimized }, rows, cols))
        };
        let cmsis = CMSIS_NN
            .iter()
            .find(|&&(i, o, _)| i == cols && o == rows)
            .map(|&(_, _, v)| v);
        json!({
            "shape": name, "inputs": cols, "outputs": rows, "macs": rows * cols,
            "int8_portable_instructions": r.0.map(|c| c.portable),
            "int8_instructions": r.0.map(|c| c.optimized),
            "int8_portable_instr_per_mac": f(&r.0, true),
            "int8_instr_per_mac": f(&r.0, false),
            "int8_speedup": r.0.map(|c| c.portable as f64 / c.optimized.max(1) as f64),
            "f32_portable_instr_per_mac": f(&r.1, true),
            "f32_instr_per_mac": f(&r.1, false),
            "f32_speedup": r.1.map(|c| c.portable as f64 / c.optimized.max(1) as f64),
            "cmsis_nn_s8_instr_per_mac": cmsis,
            "int8_vs_cmsis_nn": cmsis.and_then(|c| f(&r.0, false).map(|v| v / c)),
        })
    }

    /// Instructions per example and per output token (END included) for `inputs` on the board.
    fn whole_model(board: Board, elf: &Path, blob: &Path, model: &Model<'_>, n: usize) -> Result<Value> {
        let inputs = random_inputs(model, n);
        let out = qemu::run_session(board, elf, blob, &inputs)?;
        let host = qemu::host_outputs(model_bytes(blob)?.as_bytes(), &inputs, 1)?;
        let mismatches = out.answers.iter().zip(&host).filter(|(a, b)| a != b).count();
        let tokens: usize = out
            .answers
            .iter()
            .map(|a| {
                if a.starts_with("ERR ") {
                    0
                } else {
                    1 + match model.config().output_split {
                        Split::Space => a.split_whitespace().count(),
                        Split::Chars => a.chars().count(),
                    }
                }
            })
            .sum();
        let total: u64 = out.instructions.iter().sum();
        Ok(json!({
            "examples": inputs.len(),
            "output_tokens": tokens,
            "instr_per_example": total as f64 / inputs.len().max(1) as f64,
            "instr_per_token": total as f64 / tokens.max(1) as f64,
            "mismatches_vs_host": mismatches,
            "stack_peak_bytes": out.stack_peak,
        }))
    }

    /// Where the instructions go: `!profile` on the same inputs as [`whole_model`], summed per
    /// phase of `picoformer::profile` and divided by the output tokens. `plain_total` (the
    /// unprofiled instructions of the same inputs) gives the profiling overhead.
    fn profile_model(
        board: Board,
        elf: &Path,
        blob: &Path,
        model: &Model<'_>,
        n: usize,
        plain: &Value,
    ) -> Result<Value> {
        let inputs: Vec<String> = random_inputs(model, n)
            .iter()
            .map(|i| format!("!profile {i}"))
            .collect();
        let opts = qemu::SessionOptions {
            stack: false,
            raw: true,
            ..Default::default()
        };
        let out = qemu::run_session_with(board, elf, blob, &inputs, &opts)?;
        let mut sums: Vec<(String, u64, u64)> = picoformer::profile::Phase::ALL
            .iter()
            .map(|p| (p.name().to_string(), 0, 0))
            .collect();
        let (mut total, mut tokens, mut other) = (0u64, 0u64, 0u64);
        for answer in &out.answers {
            let Some(rest) = answer.strip_prefix("PROFILE ") else {
                bail!("the firmware answered {answer:?} to !profile");
            };
            let f = qemu::parse_fields(rest);
            // `key=N` or, for a phase, `key=INSTRUCTIONS/ENTRIES`.
            let field = |k: &str| -> Result<(u64, u64)> {
                let v = f.get(k).with_context(|| format!("no {k} in {answer:?}"))?;
                let (i, c) = v.split_once('/').unwrap_or((v, "0"));
                Ok((i.parse()?, c.parse()?))
            };
            total += field("instructions")?.0;
            tokens += field("tokens")?.0;
            other += field("other")?.0;
            for (name, instr, calls) in &mut sums {
                let (i, c) = field(name)?;
                *instr += i;
                *calls += c;
            }
        }
        let per_token = |x: u64| x as f64 / tokens.max(1) as f64;
        let share = |x: u64| x as f64 / total.max(1) as f64;
        let mut phases = serde_json::Map::new();
        for (name, instr, calls) in &sums {
            phases.insert(
                name.clone(),
                json!({"instr_per_token": per_token(*instr), "share": share(*instr), "calls_per_token": per_token(*calls),
                       "instr_per_call": *instr as f64 / (*calls).max(1) as f64}),
            );
        }
        phases.insert(
            "other".into(),
            json!({"instr_per_token": per_token(other), "share": share(other)}),
        );
        let plain_per_token = plain["instr_per_token"].as_f64().unwrap_or(f64::NAN);
        Ok(json!({
            "instr_per_token": per_token(total),
            "profiling_overhead": per_token(total) / plain_per_token - 1.0,
            "phases": phases,
        }))
    }

    fn model_bytes(path: &Path) -> Result<picoformer::blob::writer::AlignedBytes> {
        crate::engine::load_blob(path)
    }

    /// Runs the board benchmark for every model (or a generated one).
    pub fn run(args: &BenchArgs, board: Board) -> Result<()> {
        let elf = match &args.firmware {
            Some(f) => f.clone(),
            None => qemu::build_firmware(board)?,
        };
        let generated = args.model.is_empty();
        let models: Vec<PathBuf> = if generated {
            vec![synthetic_blob()?]
        } else {
            args.model.clone()
        };
        for path in &models {
            let bytes = model_bytes(path)?;
            let model = crate::engine::model(&bytes)?;
            qemu::check_fits(board, &model)?;
            let named = if generated {
                Vec::new()
            } else {
                model_shapes(model.config())
            };
            let mut shapes: Vec<(usize, usize)> = REFERENCE.to_vec();
            shapes.extend(named.iter().map(|&(_, r, c)| (r, c)));
            let results = bench_shapes(board, &elf, path, &shapes)?;
            let reference = REFERENCE
                .iter()
                .zip(&results)
                .find(|(_, r)| r.0.is_some() && r.1.is_some())
                .map(|(&(rows, cols), r)| shape_json(&format!("reference {cols}x{rows}"), rows, cols, r));
            let per_shape: Vec<Value> = named
                .iter()
                .zip(results.iter().skip(REFERENCE.len()))
                .map(|(&(name, rows, cols), r)| shape_json(name, rows, cols, r))
                .collect();
            let whole = whole_model(board, &elf, path, &model, args.board_inputs)?;
            let profile = if generated {
                Value::Null
            } else {
                profile_model(board, &elf, path, &model, args.board_inputs, &whole)?
            };
            let quant = match model.config().quant {
                Quant::F32 => "f32",
                Quant::Int8 => "int8",
            };
            let get = |k: &str| {
                reference
                    .as_ref()
                    .and_then(|r| r.get(k).cloned())
                    .unwrap_or(Value::Null)
            };
            let report = json!({
                "board": board.name(),
                "model": if generated { "generated 16-wide int8 model (kernels only)".to_string() } else { path.display().to_string() },
                "quant": quant,
                "int8_instr_per_mac": get("int8_instr_per_mac"),
                "int8_portable_instr_per_mac": get("int8_portable_instr_per_mac"),
                "f32_instr_per_mac": get("f32_instr_per_mac"),
                "f32_portable_instr_per_mac": get("f32_portable_instr_per_mac"),
                "instr_per_token": whole["instr_per_token"],
                "instr_per_example": whole["instr_per_example"],
                "reference": reference,
                "shapes": per_shape,
                "inference": whole,
                "profile": profile,
            });
            if args.json {
                println!("{report}");
            } else {
                print_report(&report);
            }
        }
        if generated {
            let _ = std::fs::remove_file(&models[0]);
        }
        Ok(())
    }

    fn print_report(r: &Value) {
        let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
        println!(
            "board {}  model {} ({})",
            r["board"].as_str().unwrap_or(""),
            r["model"].as_str().unwrap_or(""),
            r["quant"].as_str().unwrap_or("")
        );
        println!(
            "{:<24} {:>9} {:>9} | {:>11} {:>11} {:>7} | {:>10} {:>10} | {:>9}",
            "shape (in x out)",
            "inputs",
            "outputs",
            "int8 port.",
            "int8 opt.",
            "speedup",
            "f32 port.",
            "f32 opt.",
            "vs CMSIS"
        );
        let rows = r["reference"]
            .as_object()
            .map(|_| &r["reference"])
            .into_iter()
            .chain(r["shapes"].as_array().into_iter().flatten());
        for s in rows {
            println!(
                "{:<24} {:>9} {:>9} | {:>11} {:>11} {:>7} | {:>10} {:>10} | {:>9}",
                s["shape"].as_str().unwrap_or(""),
                s["inputs"],
                s["outputs"],
                num(&s["int8_portable_instr_per_mac"]),
                num(&s["int8_instr_per_mac"]),
                num(&s["int8_speedup"]),
                num(&s["f32_portable_instr_per_mac"]),
                num(&s["f32_instr_per_mac"]),
                num(&s["int8_vs_cmsis_nn"]),
            );
        }
        println!("(instructions per multiply-accumulate, portable and optimized measured in the same run)");
        let w = &r["inference"];
        println!(
            "whole model: {} instructions/example, {} instructions/output token over {} examples ({} mismatches vs host)",
            num(&w["instr_per_example"]),
            num(&w["instr_per_token"]),
            w["examples"],
            w["mismatches_vs_host"]
        );
        if let Some(phases) = r["profile"]["phases"].as_object() {
            println!(
                "where they go (picoformer::profile, same inputs; profiling adds {:.2}%):",
                100.0 * r["profile"]["profiling_overhead"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "  {:<10} {:>12} {:>7} {:>12} {:>14}",
                "phase", "instr/token", "share", "calls/token", "instr/call"
            );
            for (name, p) in phases {
                println!(
                    "  {:<10} {:>12.0} {:>6.1}% {:>12} {:>14}",
                    name,
                    p["instr_per_token"].as_f64().unwrap_or(f64::NAN),
                    100.0 * p["share"].as_f64().unwrap_or(f64::NAN),
                    p["calls_per_token"].as_f64().map_or("-".into(), |x| format!("{x:.1}")),
                    p["instr_per_call"].as_f64().map_or("-".into(), |x| format!("{x:.0}")),
                );
            }
        }
    }
}
