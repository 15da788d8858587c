//! One training run: setup (fresh, `--init`, `--resume`, `--qat`), the step loop over both cores,
//! evaluation, checkpoints, the progress bar and the final report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::metrics;
use crate::tsv;

use super::args::{FileConfig, TrainArgs};
use super::batch::{epoch_order, make_batches, Batch, Example, Vocabs};
use super::checkpoint::{self, CheckpointConfig, State, TrainHyper, Which};
use super::decode;
use super::model::{Dropout, Net, Tape};
use super::optim::{clip_global_norm, learning_rate, AdamW, Moments};
use super::params::{Arch, Layout, ModelSpec};
use super::profile::{self, Phase};
use super::qat::fake_quantize;

/// Headroom added to the longest training input/output for `max_input_len` / `max_output_len`.
const LENGTH_HEADROOM: usize = 8;
/// Largest length the engine's blob header accepts.
const MAX_LEN: usize = 4096;

/// Parameters, gradients and per-thread work buffers of a run.
pub struct Trainer {
    /// Layout of every buffer.
    pub layout: Layout,
    /// Master weights.
    pub params: Vec<f32>,
    /// AdamW moments.
    pub mom: Moments,
    /// One (tape, gradient) pair per shard.
    workers: Vec<(Tape, Vec<f32>)>,
    /// Fake-quantized weights (QAT).
    qparams: Vec<f32>,
    /// Quantization-aware training.
    pub qat: bool,
}

/// What one step reports.
pub struct StepStats {
    /// Mean smoothed cross-entropy per target token.
    pub loss: f64,
    /// Non-PAD target tokens.
    pub tokens: usize,
}

impl Trainer {
    /// A trainer with `shards` workers.
    pub fn new(layout: Layout, params: Vec<f32>, mom: Moments, shards: usize, qat: bool) -> Trainer {
        let workers = (0..shards.max(1))
            .map(|_| (Tape::default(), vec![0.0; layout.total]))
            .collect();
        Trainer {
            layout,
            params,
            mom,
            workers,
            qparams: Vec::new(),
            qat,
        }
    }

    /// The weights the forward pass uses (fake-quantized under QAT).
    pub fn forward_params(&mut self) -> &[f32] {
        if self.qat {
            fake_quantize(&self.layout, &self.params, &mut self.qparams);
            &self.qparams
        } else {
            &self.params
        }
    }

    /// Gradient of the mean loss of `examples` (summed into the first worker's buffer); returns the
    /// loss. Dropout masks come from `(seed, step, example index)`.
    pub fn gradients(
        &mut self,
        examples: &[&Example],
        dropout: f32,
        label_smoothing: f32,
        seed: u64,
        step: u64,
    ) -> StepStats {
        let tokens: usize = examples.iter().map(|e| e.tgt.len() + 1).sum();
        let scale = 1.0 / tokens.max(1) as f32;
        if self.qat {
            fake_quantize(&self.layout, &self.params, &mut self.qparams);
        }
        let p: &[f32] = if self.qat { &self.qparams } else { &self.params };
        let net = Net { l: &self.layout, p };
        let per = examples.len().div_ceil(self.workers.len());
        let fwd_bwd = std::time::Instant::now();
        let loss: f64 = self
            .workers
            .par_iter_mut()
            .zip(examples.par_chunks(per.max(1)))
            .enumerate()
            .map(|(k, ((tape, g), shard))| {
                g.iter_mut().for_each(|v| *v = 0.0);
                let bt = Batch::new(shard);
                let drop = (dropout > 0.0).then_some(Dropout {
                    p: dropout,
                    seed,
                    step,
                    first_example: k * per,
                });
                tape.forward(net, &bt, drop);
                tape.backward(net, &bt, label_smoothing, scale, g)
            })
            .sum();
        profile::add(Phase::ForwardBackward, fwd_bwd);
        let reduce = std::time::Instant::now();
        let used = examples.len().div_ceil(per.max(1));
        let (first, rest) = self.workers.split_at_mut(1);
        let g0 = &mut first[0].1;
        for (_, g) in rest.iter().take(used.saturating_sub(1)) {
            g0.par_chunks_mut(4096).zip(g.par_chunks(4096)).for_each(|(a, b)| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            });
        }
        profile::add(Phase::Reduce, reduce);
        StepStats {
            loss: loss * f64::from(scale),
            tokens,
        }
    }

    /// The summed gradient of the last [`Trainer::gradients`] call.
    #[cfg(test)]
    pub fn grads(&self) -> &[f32] {
        &self.workers[0].1
    }

    /// One optimiser step: gradients, clipping, AdamW.
    #[allow(clippy::too_many_arguments)]
    pub fn step(&mut self, examples: &[&Example], h: &TrainHyper, lr: f32, step: u64) -> StepStats {
        let stats = self.gradients(examples, h.dropout, h.label_smoothing, h.seed, step);
        let opt = AdamW {
            beta1: h.betas.0,
            beta2: h.betas.1,
            eps: h.adam_eps,
            weight_decay: h.weight_decay,
        };
        let g = &mut self.workers[0].1;
        profile::time(Phase::Optimizer, || {
            clip_global_norm(g, h.clip);
            opt.step(&mut self.params, g, &mut self.mom, lr, step);
        });
        stats
    }
}

/// The replay record of `--trace`: starting weights plus every step's batch and loss.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
}

impl Trace {
    /// Writes `init.safetensors` into `dir` (from a fresh run only) and opens `path`.
    fn start(path: &Path, dir: &Path, trainer: &mut Trainer, step: u64) -> Result<Trace> {
        if step != 0 {
            bail!("--trace records a run from its first step; it cannot be combined with --resume");
        }
        let params = trainer.forward_params().to_vec();
        checkpoint::save_weights(&dir.join("init.safetensors"), &trainer.layout, &params)?;
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Trace {
            out: std::io::BufWriter::new(file),
        })
    }

    /// Appends one step: its epoch, learning rate, mean loss and the token ids of its examples.
    fn record(&mut self, step: u64, epoch: u64, lr: f32, loss: f64, exs: &[&Example]) -> Result<()> {
        use std::io::Write;
        let line = serde_json::json!({
            "step": step,
            "epoch": epoch,
            "lr": lr,
            "loss": loss,
            "src": exs.iter().map(|e| &e.src).collect::<Vec<_>>(),
            "tgt": exs.iter().map(|e| &e.tgt).collect::<Vec<_>>(),
        });
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Everything `run` set up.
struct Setup {
    dir: PathBuf,
    config: CheckpointConfig,
    layout: Layout,
    train: Vec<Example>,
    dev: Vec<(String, Vec<Vec<String>>)>,
    dev_inputs: Vec<Vec<u32>>,
    params: Vec<f32>,
    mom: Moments,
    state: State,
    log: Vec<String>,
}

fn examples(pairs: &[tsv::Pair], v: &Vocabs) -> Vec<Example> {
    pairs
        .iter()
        .map(|p| Example {
            src: v.encode_input(&p.input),
            tgt: v.encode_output(&p.output),
        })
        .collect()
}

/// Distinct dev inputs with their references, and the inputs' ids.
type DevSet = (Vec<(String, Vec<Vec<String>>)>, Vec<Vec<u32>>);

/// Distinct dev inputs (at most `sample`, chosen by a seeded draw of whole inputs) with all their references.
fn dev_set(pairs: &[tsv::Pair], v: &Vocabs, sample: usize, seed: u64) -> DevSet {
    let mut groups = metrics::group_references(pairs.iter().map(|p| {
        (
            p.input.clone(),
            v.output_split
                .tokens(&p.output)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }));
    if sample > 0 && groups.len() > sample {
        let mut r = super::rng::Rng::new(seed, 99, 0, 0);
        r.shuffle(&mut groups);
        groups.truncate(sample);
    }
    let inputs = groups.iter().map(|(i, _)| v.encode_input(i)).collect();
    (groups, inputs)
}

fn has_checkpoint(dir: &Path) -> bool {
    dir.join("config.json").exists() || dir.join("state.json").exists()
}

fn setup(args: &TrainArgs) -> Result<Setup> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let resume_dir = args.resume.as_ref().map(|r| {
        if r.as_os_str().is_empty() {
            args.out.clone()
        } else {
            Some(r.clone())
        }
    });
    if let Some(dir) = resume_dir {
        let Some(dir) = dir else {
            bail!("--resume needs a directory (--resume DIR, or --out DIR --resume)")
        };
        return setup_resume(args, &file, dir);
    }
    if args.qat && args.init.is_none() {
        bail!("--qat fine-tunes a trained model: give --resume DIR or --init DIR");
    }
    let Some(dir) = args.out.clone() else {
        bail!("--out DIR is required")
    };
    if has_checkpoint(&dir) {
        bail!(
            "{} already holds a checkpoint: use --resume to continue it, or choose another --out",
            dir.display()
        );
    }
    let (Some(data), Some(dev)) = (&args.data, &args.dev) else {
        bail!("--data FILE and --dev FILE are required")
    };
    let train_pairs = tsv::read_pairs(data)?;
    let dev_pairs = tsv::read_pairs(dev)?;
    let t = args.train(&file, args.qat)?;

    let (arch, vocabs, params) = if let Some(init) = &args.init {
        let ck = super::Checkpoint::load(init, Which::Best)?;
        let arch = ck.config.arch();
        let layout = Layout::new(&arch)?;
        (arch, ck.config.vocabs(), ck.weights.to_params(&layout))
    } else {
        let m = args.model(&file);
        let vocabs = Vocabs::build(&train_pairs, m.input_tokens, m.output_tokens);
        let longest_in = train_pairs
            .iter()
            .map(|p| m.input_tokens.tokens(&p.input).len())
            .max()
            .unwrap_or(1);
        let longest_out = train_pairs
            .iter()
            .map(|p| m.output_tokens.tokens(&p.output).len())
            .max()
            .unwrap_or(1);
        if longest_in > MAX_LEN || longest_out + 1 > MAX_LEN {
            bail!(
                "{}: sequences longer than {MAX_LEN} tokens are not supported",
                data.display()
            );
        }
        let spec = ModelSpec {
            d_model: m.d_model,
            heads: m.heads,
            d_ff: m.d_ff,
            encoder_layers: m.encoder_layers,
            decoder_layers: m.decoder_layers,
            norm: m.norm,
            tied_output: m.tied_output,
            max_input_len: (longest_in + LENGTH_HEADROOM).min(MAX_LEN),
            max_output_len: (longest_out + LENGTH_HEADROOM).min(MAX_LEN - 1),
            layer_norm_eps: m.layer_norm_eps,
            conv_kernel: m.conv_kernel,
        };
        let arch = Arch {
            spec,
            input_vocab: vocabs.input.len(),
            output_vocab: vocabs.output.len(),
        };
        if arch.input_vocab > usize::from(u16::MAX) || arch.output_vocab > usize::from(u16::MAX) {
            bail!(
                "{}: vocabulary too large for the engine (more than 65535 symbols)",
                data.display()
            );
        }
        let layout = Layout::new(&arch)?;
        let params = layout.init(t.seed);
        (arch, vocabs, params)
    };
    let layout = Layout::new(&arch)?;
    let train = examples(&train_pairs, &vocabs);
    let batch_size = t.batch_size.unwrap_or_else(|| {
        if train.len() >= 5120 {
            256
        } else {
            (train.len() / 20).clamp(16, 256)
        }
    });
    let steps_per_epoch = train.len().div_ceil(batch_size) as u64;
    let total_steps = t.epochs * steps_per_epoch;
    let hyper = TrainHyper {
        lr: t.lr,
        batch_size,
        warmup: t.warmup.unwrap_or((total_steps / 10).min(1000)),
        label_smoothing: t.label_smoothing,
        dropout: t.dropout,
        clip: t.clip,
        weight_decay: t.weight_decay,
        betas: (0.9, 0.98),
        adam_eps: 1e-8,
        epochs: t.epochs,
        patience: t.patience,
        eval_every: t.eval_every,
        keep_last: t.keep_last,
        seed: t.seed,
        // Absolute, so `export` finds the dev set for its self-check from any directory.
        data: std::fs::canonicalize(data)
            .unwrap_or_else(|_| data.to_path_buf())
            .display()
            .to_string(),
        dev: std::fs::canonicalize(dev)
            .unwrap_or_else(|_| dev.to_path_buf())
            .display()
            .to_string(),
    };
    let config = CheckpointConfig {
        format: checkpoint::FORMAT.into(),
        version: checkpoint::VERSION,
        model: arch.spec.clone(),
        input_tokens: vocabs.input_split,
        output_tokens: vocabs.output_split,
        input_vocab: vocabs.input.clone(),
        output_vocab: vocabs.output.clone(),
        train: hyper,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    checkpoint::save_json(&dir.join("config.json"), &config)?;
    let (dev, dev_inputs) = dev_set(&dev_pairs, &vocabs, args.dev_sample.unwrap_or(0), t.seed);
    let state = State {
        step: 0,
        epoch: 1,
        batch_in_epoch: 0,
        seed: t.seed,
        total_steps,
        best_dev_exact_match: -1.0,
        best_step: 0,
        evals_without_improvement: 0,
        elapsed_seconds: 0.0,
        qat: args.qat,
        finished: false,
    };
    let mom = Moments::zeros(layout.total);
    Ok(Setup {
        dir,
        config,
        layout,
        train,
        dev,
        dev_inputs,
        params,
        mom,
        state,
        log: Vec::new(),
    })
}

fn setup_resume(args: &TrainArgs, file: &FileConfig, dir: PathBuf) -> Result<Setup> {
    if !dir.is_dir() {
        bail!(
            "{} is not a picoformer checkpoint directory (no such directory)",
            dir.display()
        );
    }
    let mut config = checkpoint::load_config(&dir)?;
    let mut state = checkpoint::load_state(&dir)?;
    let layout = Layout::new(&config.arch()).with_context(|| format!("{}: bad config.json", dir.display()))?;
    let vocabs = config.vocabs();
    let data = args.data.clone().unwrap_or_else(|| PathBuf::from(&config.train.data));
    let dev = args.dev.clone().unwrap_or_else(|| PathBuf::from(&config.train.dev));
    let train_pairs = tsv::read_pairs(&data)?;
    let dev_pairs = tsv::read_pairs(&dev)?;
    let train = examples(&train_pairs, &vocabs);
    let log = checkpoint::load_log(&dir);
    let (params, mom) = if args.qat && !state.qat {
        // Start quantization-aware fine-tuning from the best float weights, keeping a copy of them.
        let best = dir.join("best.safetensors");
        std::fs::copy(&best, dir.join("float-best.safetensors"))
            .with_context(|| format!("cannot copy {}", best.display()))?;
        let params = checkpoint::load_params(&best, &layout)?;
        let t = args.train(file, true)?;
        let h = &mut config.train;
        h.lr = t.lr;
        h.warmup = t.warmup.unwrap_or(0);
        h.epochs = t.epochs;
        h.patience = t.patience;
        h.dropout = t.dropout;
        h.keep_last = t.keep_last;
        let spe = train.len().div_ceil(h.batch_size) as u64;
        state = State {
            step: 0,
            epoch: 1,
            batch_in_epoch: 0,
            seed: state.seed,
            total_steps: h.epochs * spe,
            best_dev_exact_match: -1.0,
            best_step: 0,
            evals_without_improvement: 0,
            elapsed_seconds: state.elapsed_seconds,
            qat: true,
            finished: false,
        };
        (params, Moments::zeros(layout.total))
    } else {
        let params = checkpoint::load_params(&dir.join("last.safetensors"), &layout)?;
        let mom = checkpoint::load_moments(&dir.join("optimizer.safetensors"), &layout)?;
        (params, mom)
    };
    if let Some(e) = args.epochs {
        if e != config.train.epochs {
            config.train.epochs = e;
            state.total_steps = e * train.len().div_ceil(config.train.batch_size) as u64;
            state.finished = false;
        }
    }
    if let Some(p) = args.patience {
        config.train.patience = p;
    }
    if let Some(k) = args.keep_last {
        config.train.keep_last = k;
    }
    if state.finished {
        bail!(
            "{}: this run has finished (epoch {}, step {}); pass a different --epochs to train further",
            dir.display(),
            state.epoch,
            state.step
        );
    }
    checkpoint::save_json(&dir.join("config.json"), &config)?;
    let (dev, dev_inputs) = dev_set(&dev_pairs, &vocabs, args.dev_sample.unwrap_or(0), state.seed);
    Ok(Setup {
        dir,
        config,
        layout,
        train,
        dev,
        dev_inputs,
        params,
        mom,
        state,
        log,
    })
}

/// Final figures of a run.
#[derive(serde::Serialize)]
struct Report {
    target_tokens_per_second: f64,
    wall_target_tokens_per_second: f64,
    steps: u64,
    epochs: u64,
    best_dev_exact_match: f64,
    best_step: u64,
    final_loss: f64,
    peak_rss_bytes: u64,
    params: usize,
    threads: usize,
    train_seconds: f64,
    eval_seconds: f64,
    stopped: String,
    checkpoint: String,
}

/// Peak resident set size (VmHWM) of this process, in bytes.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Evaluates greedy exact match on the dev set.
fn evaluate(
    layout: &Layout,
    params: &[f32],
    vocabs: &Vocabs,
    dev: &[(String, Vec<Vec<String>>)],
    inputs: &[Vec<u32>],
) -> metrics::Scores {
    let preds = profile::time(Phase::Eval, || decode::greedy(Net { l: layout, p: params }, inputs));
    let preds: Vec<Vec<String>> = preds.iter().map(|p| vocabs.output_strings(p)).collect();
    metrics::score(
        dev.iter()
            .zip(&preds)
            .map(|((_, refs), p)| (refs.as_slice(), p.as_slice())),
    )
}

fn save_checkpoint(
    dir: &Path,
    t: &Trainer,
    state: &State,
    log: &[String],
    improved: bool,
    keep_last: u64,
) -> Result<()> {
    if keep_last > 0 {
        checkpoint::save_snapshot(dir, &t.layout, &t.params, state.step, keep_last)?;
    }
    checkpoint::save_weights(&dir.join("last.safetensors"), &t.layout, &t.params)?;
    if improved || !dir.join("best.safetensors").exists() {
        checkpoint::save_weights(&dir.join("best.safetensors"), &t.layout, &t.params)?;
    }
    checkpoint::save_moments(&dir.join("optimizer.safetensors"), &t.layout, &t.mom)?;
    checkpoint::save_log(dir, log)?;
    checkpoint::save_json(&dir.join("state.json"), state)
}

/// Runs `picoformer train`.
pub fn run(args: TrainArgs) -> Result<()> {
    profile::init_from_env();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| train(args, threads))
}

fn train(args: TrainArgs, threads: usize) -> Result<()> {
    let Setup {
        dir,
        config,
        layout,
        train,
        dev,
        dev_inputs,
        params,
        mom,
        mut state,
        mut log,
    } = setup(&args)?;
    let h = config.train.clone();
    let vocabs = config.vocabs();
    let batches = make_batches(&train, h.batch_size, h.seed);
    let spe = batches.len() as u64;
    let mut trainer = Trainer::new(layout, params, mom, threads, state.qat);
    let n_params = trainer.layout.total;
    let mut trace = match &args.trace {
        Some(path) => Some(Trace::start(path, &dir, &mut trainer, state.step)?),
        None => None,
    };

    let bar = if std::io::stderr().is_terminal() && !args.json {
        let b = ProgressBar::new(state.total_steps);
        b.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} epoch {prefix} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_position(state.step);
        b
    } else {
        ProgressBar::hidden()
    };
    let say = |s: String| {
        if bar.is_hidden() {
            eprintln!("{s}");
        } else {
            bar.println(s);
        }
    };
    say(format!(
        "training {} parameters on {} examples ({} batches of {}), {} threads, dev {} inputs{}",
        n_params,
        train.len(),
        spe,
        h.batch_size,
        threads,
        dev.len(),
        if state.qat { ", int8 QAT" } else { "" }
    ));

    let session_start = Instant::now();
    let budget = args.max_minutes.map(|m| m * 60.0);
    let log_every = args.log_every.unwrap_or(50).max(1);
    let (mut train_secs, mut eval_secs) = (0.0f64, 0.0f64);
    // (epoch, seconds of steps, target tokens) per epoch of this session, for steady-state throughput.
    let mut epoch_stats: Vec<(u64, f64, usize)> = Vec::new();
    let (mut log_loss, mut log_tokens, mut log_n, mut log_secs) = (0.0f64, 0usize, 0u64, 0.0f64);
    let mut last_loss = f64::NAN;
    let mut stopped = String::from("epochs");
    let mut first_epoch_of_session = true;

    'epochs: while state.epoch <= h.epochs {
        let order = epoch_order(batches.len(), h.seed, state.epoch);
        bar.set_prefix(state.epoch.to_string());
        let (mut ep_secs, mut ep_tokens) = (0.0f64, 0usize);
        while (state.batch_in_epoch as usize) < order.len() {
            let b = &batches[order[state.batch_in_epoch as usize]];
            let exs: Vec<&Example> = b.iter().map(|&i| &train[i]).collect();
            state.step += 1;
            let lr = learning_rate(h.lr, state.step, h.warmup, state.total_steps);
            let t0 = Instant::now();
            let s = trainer.step(&exs, &h, lr, state.step);
            let secs = t0.elapsed().as_secs_f64();
            if let Some(t) = trace.as_mut() {
                t.record(state.step, state.epoch, lr, s.loss, &exs)?;
            }
            state.batch_in_epoch += 1;
            ep_secs += secs;
            ep_tokens += s.tokens;
            train_secs += secs;
            state.elapsed_seconds += secs;
            last_loss = s.loss;
            log_loss += s.loss;
            log_n += 1;
            log_tokens += s.tokens;
            log_secs += secs;
            bar.set_position(state.step);
            bar.set_message(format!(
                "loss {:.4} {:.0} tok/s",
                s.loss,
                ep_tokens as f64 / ep_secs.max(1e-9)
            ));
            if state.step % log_every == 0 {
                log.push(format!(
                    "{},{},{:.6},{:.6e},{:.1},,",
                    state.step,
                    state.epoch,
                    log_loss / log_n as f64,
                    lr,
                    log_tokens as f64 / log_secs.max(1e-9)
                ));
                (log_loss, log_tokens, log_n, log_secs) = (0.0, 0, 0, 0.0);
            }
            let out_of_time = budget.is_some_and(|b| session_start.elapsed().as_secs_f64() >= b);
            let stop_now = args.stop_after_steps.is_some_and(|n| state.step >= n);
            let eval_now = h.eval_every > 0 && state.step % h.eval_every == 0;
            if eval_now || out_of_time || stop_now {
                if (state.batch_in_epoch as usize) == order.len() {
                    state.epoch += 1;
                    state.batch_in_epoch = 0;
                }
                let te = Instant::now();
                let early = eval_and_save(
                    &dir,
                    &mut trainer,
                    &mut state,
                    &mut log,
                    &vocabs,
                    &dev,
                    &dev_inputs,
                    &h,
                    lr,
                    &say,
                )?;
                eval_secs += te.elapsed().as_secs_f64();
                if stop_now {
                    stopped = "stop-after-steps".into();
                    bar.finish_and_clear();
                    return report(
                        &args,
                        &dir,
                        &state,
                        &epoch_stats,
                        (ep_secs, ep_tokens),
                        train_secs,
                        eval_secs,
                        session_start,
                        last_loss,
                        n_params,
                        threads,
                        &stopped,
                    );
                }
                if early || out_of_time {
                    stopped = if early { "early-stop".into() } else { "time".into() };
                    epoch_stats.push((state.epoch, ep_secs, ep_tokens));
                    break 'epochs;
                }
                if state.batch_in_epoch == 0 {
                    break; // epoch completed at an evaluation point
                }
            }
        }
        epoch_stats.push((state.epoch, ep_secs, ep_tokens));
        if profile::enabled() {
            say(format!(
                "epoch {} profile: {:.3} s of steps, {} tokens\n{}",
                state.epoch,
                ep_secs,
                ep_tokens,
                profile::take_report().trim_end()
            ));
        }
        if h.eval_every == 0 {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            let lr = learning_rate(h.lr, state.step, h.warmup, state.total_steps);
            let te = Instant::now();
            let early = eval_and_save(
                &dir,
                &mut trainer,
                &mut state,
                &mut log,
                &vocabs,
                &dev,
                &dev_inputs,
                &h,
                lr,
                &say,
            )?;
            eval_secs += te.elapsed().as_secs_f64();
            if early {
                stopped = "early-stop".into();
                break;
            }
        } else if state.batch_in_epoch as usize >= order.len() {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
        if first_epoch_of_session {
            first_epoch_of_session = false;
            if let Some(b) = budget {
                // Fit the cosine schedule to the time budget, now that the step time is known.
                let per_step = ep_secs / spe.max(1) as f64;
                let per_step_with_eval = (session_start.elapsed().as_secs_f64() / spe.max(1) as f64).max(per_step);
                let fit =
                    state.step + ((b - session_start.elapsed().as_secs_f64()).max(0.0) / per_step_with_eval) as u64;
                state.total_steps = state.total_steps.min(fit.max(state.step + 1));
                bar.set_length(state.total_steps);
            }
        }
    }
    state.finished = true;
    checkpoint::save_json(&dir.join("state.json"), &state)?;
    bar.finish_and_clear();
    report(
        &args,
        &dir,
        &state,
        &epoch_stats,
        (0.0, 0),
        train_secs,
        eval_secs,
        session_start,
        last_loss,
        n_params,
        threads,
        &stopped,
    )
}

/// Evaluates, logs and checkpoints; returns true when patience ran out.
#[allow(clippy::too_many_arguments)]
fn eval_and_save(
    dir: &Path,
    trainer: &mut Trainer,
    state: &mut State,
    log: &mut Vec<String>,
    vocabs: &Vocabs,
    dev: &[(String, Vec<Vec<String>>)],
    dev_inputs: &[Vec<u32>],
    h: &TrainHyper,
    lr: f32,
    say: &dyn Fn(String),
) -> Result<bool> {
    let params = trainer.forward_params().to_vec();
    let scores = evaluate(&trainer.layout, &params, vocabs, dev, dev_inputs);
    let improved = scores.exact_match > state.best_dev_exact_match;
    if improved {
        state.best_dev_exact_match = scores.exact_match;
        state.best_step = state.step;
        state.evals_without_improvement = 0;
    } else {
        state.evals_without_improvement += 1;
    }
    log.push(format!(
        "{},{},,{:.6e},,{:.6},{:.6}",
        state.step,
        state.epoch.saturating_sub(u64::from(state.batch_in_epoch == 0)).max(1),
        lr,
        scores.exact_match,
        scores.token_error_rate
    ));
    say(format!(
        "step {} dev exact match {:.2}% token error {:.2}%{}",
        state.step,
        100.0 * scores.exact_match,
        100.0 * scores.token_error_rate,
        if improved { " (best)" } else { "" }
    ));
    save_checkpoint(dir, trainer, state, log, improved, h.keep_last)?;
    Ok(state.evals_without_improvement >= h.patience.max(1))
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &TrainArgs,
    dir: &Path,
    state: &State,
    epoch_stats: &[(u64, f64, usize)],
    partial: (f64, usize),
    train_secs: f64,
    eval_secs: f64,
    start: Instant,
    last_loss: f64,
    params: usize,
    threads: usize,
    stopped: &str,
) -> Result<()> {
    let mut stats: Vec<(f64, usize)> = epoch_stats.iter().map(|&(_, s, t)| (s, t)).collect();
    if partial.1 > 0 {
        stats.push(partial);
    }
    let steady = if stats.len() > 1 { &stats[1..] } else { &stats[..] };
    let (secs, toks) = steady.iter().fold((0.0, 0usize), |a, s| (a.0 + s.0, a.1 + s.1));
    let all_toks: usize = stats.iter().map(|s| s.1).sum();
    let r = Report {
        target_tokens_per_second: if secs > 0.0 { toks as f64 / secs } else { 0.0 },
        wall_target_tokens_per_second: all_toks as f64 / start.elapsed().as_secs_f64().max(1e-9),
        steps: state.step,
        epochs: state.epoch.saturating_sub(u64::from(state.batch_in_epoch == 0)),
        best_dev_exact_match: state.best_dev_exact_match.max(0.0),
        best_step: state.best_step,
        final_loss: last_loss,
        peak_rss_bytes: peak_rss_bytes(),
        params,
        threads,
        train_seconds: train_secs,
        eval_seconds: eval_secs,
        stopped: stopped.into(),
        checkpoint: dir.display().to_string(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} steps, {} epochs, best dev exact match {:.2}% (step {}), {:.0} target tokens/s, peak RSS {:.1} MiB, stopped by {}",
            r.checkpoint,
            r.steps,
            r.epochs,
            100.0 * r.best_dev_exact_match,
            r.best_step,
            r.target_tokens_per_second,
            r.peak_rss_bytes as f64 / (1 << 20) as f64,
            r.stopped
        );
    }
    Ok(())
}
