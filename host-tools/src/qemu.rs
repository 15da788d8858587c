//! `picoformer qemu`: runs a blob on an emulated Cortex-M board under QEMU.
//!
//! The firmware (`firmware/boards/<board>`) is built once per board and serves any blob: QEMU's
//! generic loader places the blob in the board's flash at run time. The host talks to the
//! firmware's line protocol over the emulated UART (QEMU's stdin/stdout); the firmware's defmt
//! logs arrive on QEMU's stderr. `-icount shift=10,align=off,sleep=off` makes instruction counts
//! deterministic.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use picoformer::{DecodeOptions, Model, Split};

use crate::metrics;

/// `-icount shift` used for every run: one instruction is 2^10 ns of virtual time.
pub const ICOUNT_SHIFT: u32 = 10;

/// An emulated board the firmware is built for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Board {
    /// Arm MPS2 AN385: Cortex-M3 (no FPU, no DSP).
    #[value(name = "mps2-an385")]
    Mps2An385,
    /// Arm MPS2 AN386: Cortex-M4F (the default).
    #[value(name = "mps2-an386")]
    Mps2An386,
    /// Arm MPS2 AN500: Cortex-M7.
    #[value(name = "mps2-an500")]
    Mps2An500,
    /// Arm MPS2 AN505: Cortex-M33 (Armv8-M Mainline, TrustZone).
    #[value(name = "mps2-an505")]
    Mps2An505,
    /// BBC micro:bit v1: nRF51822, Cortex-M0, 16 KiB RAM.
    #[value(name = "microbit")]
    Microbit,
}

impl Board {
    /// Every board, in a fixed order.
    pub const ALL: [Board; 5] = [
        Board::Mps2An385,
        Board::Mps2An386,
        Board::Mps2An500,
        Board::Mps2An505,
        Board::Microbit,
    ];

    /// QEMU machine and board crate name.
    pub fn name(self) -> &'static str {
        match self {
            Board::Mps2An385 => "mps2-an385",
            Board::Mps2An386 => "mps2-an386",
            Board::Mps2An500 => "mps2-an500",
            Board::Mps2An505 => "mps2-an505",
            Board::Microbit => "microbit",
        }
    }

    /// QEMU `-cpu`.
    pub fn cpu(self) -> &'static str {
        match self {
            Board::Mps2An385 => "cortex-m3",
            Board::Mps2An386 => "cortex-m4",
            Board::Mps2An500 => "cortex-m7",
            Board::Mps2An505 => "cortex-m33",
            Board::Microbit => "cortex-m0",
        }
    }

    /// Rust target triple of the firmware.
    pub fn target(self) -> &'static str {
        match self {
            Board::Mps2An385 => "thumbv7m-none-eabi",
            Board::Mps2An386 | Board::Mps2An500 => "thumbv7em-none-eabihf",
            Board::Mps2An505 => "thumbv8m.main-none-eabihf",
            Board::Microbit => "thumbv6m-none-eabi",
        }
    }

    /// Address where QEMU's loader puts the blob (mirrors the board's `memory.x`).
    pub fn blob_addr(self) -> u64 {
        match self {
            Board::Microbit => 0x0002_0000,
            _ => 0x0020_0000,
        }
    }

    /// Bytes of the flash region reserved for the blob (mirrors `memory.x`).
    pub fn blob_region_bytes(self) -> usize {
        match self {
            Board::Microbit => 128 * 1024,
            _ => 2 * 1024 * 1024,
        }
    }

    /// Bytes of the firmware's static workspace buffer (mirrors the board's `main.rs`; the
    /// firmware reports its own figure in `READY ... workspace=NEED/BUFFER`, checked by the tests).
    pub fn buffer_bytes(self) -> usize {
        match self {
            Board::Microbit => 10 * 1024,
            _ => 3 * 1024 * 1024,
        }
    }

    /// Widest beam the firmware offers (mirrors the board's `main.rs`).
    pub fn max_beam(self) -> usize {
        match self {
            Board::Microbit => 2,
            _ => picoformer::MAX_BEAM,
        }
    }
}

/// Arguments of `picoformer qemu`.
#[derive(clap::Args, Debug)]
pub struct QemuArgs {
    /// Emulated board.
    #[arg(long, value_enum, default_value = "mps2-an386")]
    pub board: Board,
    /// Model blob (.pfb).
    #[arg(long)]
    pub model: PathBuf,
    /// TSV of `input<TAB>output` lines to evaluate on the board; without it, an interactive
    /// session (type a line, the emulated MCU answers; `!quit` or end of input to stop).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Evaluate only the first N distinct inputs of --data.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Firmware ELF to run instead of building `firmware/boards/<board>` with cargo.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Where to write the firmware's defmt log frames (decode with `defmt-print -e ELF < FILE`).
    #[arg(long)]
    pub defmt_log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Inputs for the board to answer (instead of --data or an interactive session): each answer
    /// is printed with the instructions it took and the host engine's verdict.
    #[arg(conflicts_with = "data")]
    pub inputs: Vec<String>,
}

/// Runs `picoformer qemu`.
pub fn run(args: QemuArgs) -> Result<()> {
    let blob = crate::engine::load_blob(&args.model)?;
    let model = crate::engine::model(&blob)?;
    check_fits(args.board, &model)?;
    if args.beam == 0 || args.beam > args.board.max_beam() {
        bail!(
            "--beam {} is outside 1..={} for {}",
            args.beam,
            args.board.max_beam(),
            args.board.name()
        );
    }
    let firmware = match &args.firmware {
        Some(p) => p.clone(),
        None => build_firmware(args.board)?,
    };
    if !args.inputs.is_empty() {
        return answer_inputs(&args, &firmware, &model, blob.as_bytes());
    }
    let Some(data) = &args.data else {
        return interactive(args.board, &firmware, &args.model, args.beam, args.defmt_log.as_deref());
    };
    let pairs = crate::tsv::read_pairs(data)?;
    let mut groups = metrics::group_references(pairs.into_iter().map(|p| (p.input, p.output)));
    if let Some(n) = args.limit {
        groups.truncate(n);
    }
    let inputs: Vec<String> = groups.iter().map(|(i, _)| i.clone()).collect();
    let opts = SessionOptions {
        beam: args.beam,
        icount: true,
        defmt_log: args.defmt_log.clone(),
        ..Default::default()
    };
    let session = run_session_with(args.board, &firmware, &args.model, &inputs, &opts)?;
    let host = host_outputs(blob.as_bytes(), &inputs, args.beam)?;
    let report = Report::new(args.board, &model, &groups, &session, &host);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(())
}

/// Clock the instruction counts are converted at for the latency estimate (one instruction per cycle).
const ESTIMATE_MHZ: f64 = 100.0;

/// Runs the given inputs on the board and prints each answer with its instruction count, the
/// estimated latency at 100 MHz, and whether it equals the host engine's answer.
fn answer_inputs(args: &QemuArgs, firmware: &Path, model: &Model<'_>, blob: &[u8]) -> Result<()> {
    let opts = SessionOptions {
        beam: args.beam,
        icount: true,
        defmt_log: args.defmt_log.clone(),
        ..Default::default()
    };
    let session = run_session_with(args.board, firmware, &args.model, &args.inputs, &opts)?;
    let host = host_outputs(blob, &args.inputs, args.beam)?;
    let cfg = model.config();
    let quant = match cfg.quant {
        picoformer::Quant::F32 => "f32",
        picoformer::Quant::Int8 => "int8",
    };
    let rows: Vec<serde_json::Value> = args
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let answer = session.answers.get(i).cloned().unwrap_or_default();
            let instructions = session.instructions.get(i).copied().unwrap_or(0);
            serde_json::json!({
                "input": input,
                "answer": answer,
                "instructions": instructions,
                "ms_at_100mhz_estimate": instructions as f64 / (ESTIMATE_MHZ * 1e3),
                "same_as_host": host.get(i) == Some(&answer),
            })
        })
        .collect();
    if args.json {
        let report = serde_json::json!({
            "board": args.board.name(), "cpu": args.board.cpu(), "quant": quant,
            "params": model.param_count(), "flash_bytes": model.blob_bytes(),
            "workspace_bytes": model.workspace_bytes(args.beam), "beam": args.beam,
            "peak_stack_bytes": session.stack_peak, "answers": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} ({}, emulated by QEMU) running {}: {} parameters ({quant}), {} bytes of flash, {} bytes of RAM for the workspace{}",
        args.board.name(),
        args.board.cpu(),
        args.model.display(),
        model.param_count(),
        model.blob_bytes(),
        model.workspace_bytes(args.beam),
        session.stack_peak.map(|s| format!(", peak stack {s} bytes")).unwrap_or_default(),
    );
    let width = args.inputs.iter().map(|i| i.chars().count()).max().unwrap_or(5).max(5);
    let answer_width = rows
        .iter()
        .map(|r| r["answer"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "  {:<width$}  {:<answer_width$}  {:>12}  {:>13}  host",
        "input", "answer", "instructions", "ms @100MHz*"
    );
    for r in &rows {
        println!(
            "  {:<width$}  {:<answer_width$}  {:>12}  {:>13.1}  {}",
            r["input"].as_str().unwrap_or(""),
            r["answer"].as_str().unwrap_or(""),
            r["instructions"],
            r["ms_at_100mhz_estimate"].as_f64().unwrap_or(0.0),
            if r["same_as_host"].as_bool() == Some(true) {
                "same"
            } else {
                "DIFFERENT"
            },
        );
    }
    println!("  * estimate: instructions counted by QEMU (-icount), at one instruction per cycle at 100 MHz");
    if rows.iter().any(|r| r["same_as_host"].as_bool() != Some(true)) {
        bail!("the board's answers differ from the host engine's");
    }
    Ok(())
}

/// Checks, before starting QEMU, that a model fits the board's blob region and static buffer at
/// beam width 1 (the firmware narrows its widest beam to what fits).
pub fn check_fits(board: Board, model: &Model<'_>) -> Result<()> {
    if model.blob_bytes() > board.blob_region_bytes() {
        bail!(
            "the blob is {} bytes; {} reserves {} bytes of flash for it",
            model.blob_bytes(),
            board.name(),
            board.blob_region_bytes()
        );
    }
    let need = needed_bytes(model, 1);
    if need > board.buffer_bytes() {
        bail!(
            "the model does not fit {}: it needs {} bytes of RAM for its workspace at beam 1, the firmware's buffer holds {}",
            board.name(),
            need,
            board.buffer_bytes()
        );
    }
    Ok(())
}

/// Bytes of the firmware's buffer a model needs at `beam`: workspace plus output tokens
/// (the same sum as the firmware's `boot::needed_bytes`).
pub fn needed_bytes(model: &Model<'_>, beam: usize) -> usize {
    let align4 = |n: usize| (n + 3) & !3;
    align4(model.workspace_bytes(beam)) + align4(2 * model.config().max_output_len)
}

/// The `firmware/` directory of this source tree.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("firmware")
}

/// Where `cargo build --release` in `firmware/boards/<board>` puts the ELF.
pub fn firmware_elf(board: Board) -> PathBuf {
    firmware_dir()
        .join("target")
        .join(board.name())
        .join(board.target())
        .join("release")
        .join(format!("pf-{}", board.name()))
}

/// Builds (or brings up to date: cargo rebuilds only what changed) the release firmware of
/// `board` and returns the ELF's path.
pub fn build_firmware(board: Board) -> Result<PathBuf> {
    let dir = firmware_dir().join("boards").join(board.name());
    if !dir.is_dir() {
        bail!(
            "{} not found: pass --firmware ELF when running outside the source tree",
            dir.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"]).current_dir(&dir);
    // The board's .cargo/config.toml chooses target, target dir and CPU: keep the caller's
    // settings (e.g. from an enclosing `cargo test`) from overriding them.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo in {}", dir.display()))?;
    if !status.success() {
        bail!("building the {} firmware failed ({status})", board.name());
    }
    let elf = firmware_elf(board);
    if !elf.is_file() {
        bail!(
            "cargo built the {} firmware but {} is missing",
            board.name(),
            elf.display()
        );
    }
    Ok(elf)
}

/// The QEMU command line for `board` running `firmware` with `blob` in flash.
pub fn qemu_command(board: Board, firmware: &Path, blob: &Path, timeout_secs: u64) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(timeout_secs.to_string())
        .arg("qemu-system-arm")
        .args(["-machine", board.name(), "-cpu", board.cpu()])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-icount", &format!("shift={ICOUNT_SHIFT},align=off,sleep=off")])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={:#010x}",
            blob.display(),
            board.blob_addr()
        ))
        .arg("-kernel")
        .arg(firmware);
    cmd
}

fn interactive(board: Board, firmware: &Path, blob: &Path, beam: usize, log: Option<&Path>) -> Result<()> {
    eprintln!(
        "{} under QEMU; type an input line, the emulated MCU answers. Commands: !info !icount !beam N !stack !quit",
        board.name()
    );
    let mut cmd = qemu_command(board, firmware, blob, 24 * 3600);
    let log_file = match log {
        Some(p) => Stdio::from(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(log_file)
        .spawn()
        .context("cannot start qemu-system-arm")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    if beam != 1 {
        writeln!(stdin, "!beam {beam}")?;
    }
    let forward = std::thread::spawn(move || {
        let mut line = String::new();
        let input = std::io::stdin();
        loop {
            line.clear();
            match input.lock().read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = stdin.write_all(b"!quit\n");
                    break;
                }
                Ok(_) => {
                    if stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let status = child.wait()?;
    drop(forward);
    match status.code() {
        Some(0) => Ok(()),
        code => bail!("QEMU exited with {code:?} (2: bad blob, 3: model does not fit, 101: panic, 102: HardFault)"),
    }
}

/// Options of [`run_session_with`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Beam width set with `!beam` before the inputs (1: greedy, no command sent).
    pub beam: usize,
    /// Ask `!icount` after every input.
    pub icount: bool,
    /// Ask `!stack` at the end.
    pub stack: bool,
    /// Wall-clock limit for the whole session; by default 30 s plus 0.2 s per input.
    pub timeout: Option<Duration>,
    /// Where to store the firmware's defmt log frames.
    pub defmt_log: Option<PathBuf>,
    /// Send inputs verbatim, so a line starting with `!` is a command (otherwise it is escaped
    /// as `!!` and the firmware reads it as an input); answers are collected as for inputs.
    pub raw: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            beam: 1,
            icount: false,
            stack: true,
            timeout: None,
            defmt_log: None,
            raw: false,
        }
    }
}

/// What one QEMU session produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SessionOutput {
    /// The boot line's `key=value` fields (`READY board=... params=...`).
    pub info: HashMap<String, String>,
    /// One answer per input: the prediction or `ERR ...`.
    pub answers: Vec<String>,
    /// Instructions each input took (with `icount`).
    pub instructions: Vec<u64>,
    /// Peak stack use in bytes (with `stack`).
    pub stack_peak: Option<usize>,
    /// Size of the stack region in bytes.
    pub stack_size: Option<usize>,
    /// QEMU's exit code.
    pub exit_code: Option<i32>,
}

/// Runs `inputs` through the firmware greedily, with `!icount` after each and `!stack` at the end.
pub fn run_session(board: Board, firmware: &Path, blob: &Path, inputs: &[String]) -> Result<SessionOutput> {
    let opts = SessionOptions {
        icount: true,
        ..Default::default()
    };
    run_session_with(board, firmware, blob, inputs, &opts)
}

/// Parses `key=value` fields separated by spaces.
pub fn parse_fields(s: &str) -> HashMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts QEMU, waits for `READY`, sends every input (escaping a leading `!` as `!!`) and the
/// requested commands, collects the answers, sends `!quit` and checks the exit code.
///
/// A boot failure (`ERR ...` instead of `READY`) is an error carrying the firmware's message and
/// QEMU's exit code.
pub fn run_session_with(
    board: Board,
    firmware: &Path,
    blob: &Path,
    inputs: &[String],
    opts: &SessionOptions,
) -> Result<SessionOutput> {
    if let Some(bad) = inputs.iter().find(|i| i.contains(['\n', '\r'])) {
        bail!("input {bad:?} contains a line break");
    }
    let timeout = opts
        .timeout
        .unwrap_or(Duration::from_secs_f64(30.0 + 0.2 * inputs.len() as f64));
    let mut requests = Vec::new();
    if opts.beam != 1 {
        requests.push((format!("!beam {}", opts.beam), Request::Beam));
    }
    for input in inputs {
        let line = if input.starts_with('!') && !opts.raw {
            format!("!{input}")
        } else {
            input.clone()
        };
        requests.push((line, Request::Input));
        if opts.icount {
            requests.push(("!icount".to_string(), Request::Icount));
        }
    }
    if opts.stack {
        requests.push(("!stack".to_string(), Request::Stack));
    }
    requests.push(("!quit".to_string(), Request::Quit));

    let log = match &opts.defmt_log {
        Some(p) => Stdio::from(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Stdio::piped(),
    };
    let mut child = qemu_command(board, firmware, blob, timeout.as_secs().max(1))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start `timeout qemu-system-arm` (install qemu-system-arm)")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_end(&mut e, &mut buf);
        }
        buf
    });
    let text: String = requests.iter().map(|(r, _)| format!("{r}\n")).collect();
    let writer = std::thread::spawn(move || {
        // QEMU reads stdin only as fast as the UART takes bytes; a closed pipe means QEMU ended,
        // which the reader reports.
        let _ = stdin.write_all(text.as_bytes());
        let _ = stdin.flush();
    });

    let mut lines = BufReader::new(stdout).lines();
    let mut next = |what: &str| -> Result<Option<String>> {
        match lines.next() {
            Some(line) => {
                Ok(Some(line.with_context(|| {
                    format!("reading the UART while waiting for {what}")
                })?))
            }
            None => Ok(None),
        }
    };
    let mut out = SessionOutput::default();
    let mut failure: Option<String> = None;
    match next("READY")? {
        Some(l) if l.starts_with("READY ") => out.info = parse_fields(&l["READY ".len()..]),
        Some(l) => failure = Some(format!("the firmware did not start: {l}")),
        None => failure = Some("QEMU ended before the firmware printed READY".to_string()),
    }
    if failure.is_none() {
        failure = converse(&mut next, &requests, &mut out).err().map(|e| format!("{e:#}"));
    }
    // Drain what is left so QEMU never blocks on a full pipe; it ends at `!quit` or the timeout.
    while let Ok(Some(_)) = next("the end of the session") {}
    let status = child.wait().context("waiting for QEMU")?;
    let _ = writer.join();
    let stderr = stderr_reader.join().unwrap_or_default();
    out.exit_code = status.code();
    if let Some(msg) = failure {
        let tail = printable_tail(&stderr);
        bail!(
            "{} session failed: {msg} (QEMU exit code {:?}{}{})",
            board.name(),
            status.code(),
            if status.code() == Some(124) {
                ", killed by the timeout"
            } else {
                ""
            },
            if tail.is_empty() {
                String::new()
            } else {
                format!("; QEMU said: {tail}")
            }
        );
    }
    if status.code() != Some(0) {
        bail!("{}: QEMU exited with {:?} after !quit", board.name(), status.code());
    }
    Ok(out)
}

/// What a line sent to the firmware is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Input,
    Icount,
    Stack,
    Beam,
    Quit,
}

/// Reads the answers to `requests` (after READY) into `out`.
fn converse(
    next: &mut impl FnMut(&str) -> Result<Option<String>>,
    requests: &[(String, Request)],
    out: &mut SessionOutput,
) -> Result<()> {
    for (req, kind) in requests {
        let Some(answer) = next(req)? else {
            bail!("QEMU ended while waiting for the answer to {req:?}");
        };
        match kind {
            Request::Input => out.answers.push(answer),
            Request::Icount => {
                let Some(rest) = answer.strip_prefix("ICOUNT ") else {
                    bail!("expected ICOUNT, got {answer:?}");
                };
                let f = parse_fields(rest);
                let num = |k: &str| -> Result<u64> {
                    f.get(k)
                        .and_then(|v| v.parse().ok())
                        .with_context(|| format!("no {k} in {answer:?}"))
                };
                out.instructions
                    .push(num("ticks")? * num("tick_ps")? / (1000u64 << ICOUNT_SHIFT));
            }
            Request::Stack => {
                let f = parse_fields(
                    answer
                        .strip_prefix("STACK ")
                        .with_context(|| format!("expected STACK, got {answer:?}"))?,
                );
                out.stack_peak = f.get("peak").and_then(|v| v.parse().ok());
                out.stack_size = f.get("size").and_then(|v| v.parse().ok());
            }
            Request::Beam if !answer.starts_with("OK ") => bail!("{req}: {answer}"),
            Request::Beam => {}
            Request::Quit if answer != "BYE" => bail!("expected BYE, got {answer:?}"),
            Request::Quit => {}
        }
    }
    Ok(())
}

fn printable_tail(bytes: &[u8]) -> String {
    // QEMU's own messages are text; the firmware's defmt frames are binary and filtered out.
    let text: String = String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.starts_with("qemu") || l.contains("error") || l.contains("Error"))
        .collect::<Vec<_>>()
        .join(" | ");
    text.chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// What the host engine answers for each input, in the firmware's format (`ERR <error>` for
/// refused inputs).
pub fn host_outputs(blob: &[u8], inputs: &[String], beam: usize) -> Result<Vec<String>> {
    let model = Model::from_blob(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
    let predictions = crate::engine::predict_all(&model, inputs, &DecodeOptions::beam(beam), 0)?;
    Ok(predictions
        .into_iter()
        .map(|p| match p {
            Ok(tokens) => crate::engine::join_output(&model, &tokens),
            Err(e) => format!("ERR {e}"),
        })
        .collect())
}

/// The report of `picoformer qemu --data`.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Board name.
    pub board: &'static str,
    /// Distinct inputs evaluated.
    pub examples: usize,
    /// Share of inputs whose prediction equals one of their references.
    pub exact_match: f64,
    /// 1 - exact_match.
    pub wer: f64,
    /// Edit distance over reference length, in tokens.
    pub token_error_rate: f64,
    /// Mean instructions per input (`-icount`, deterministic).
    pub instructions_per_example: f64,
    /// Inputs whose firmware output differs from the host engine's.
    pub mismatches_vs_host: usize,
    /// Peak stack use of the firmware in bytes.
    pub stack_peak_bytes: Option<usize>,
    /// Blob bytes (flash).
    pub blob_bytes: usize,
    /// Bytes of the firmware's buffer the model uses, and the buffer's size (RAM).
    pub workspace_bytes: String,
    /// Model parameters.
    pub params: usize,
}

impl Report {
    fn new(
        board: Board,
        model: &Model<'_>,
        groups: &[(String, Vec<String>)],
        s: &SessionOutput,
        host: &[String],
    ) -> Report {
        let split = model.config().output_split;
        let tok = |t: &str| -> Vec<String> {
            match split {
                Split::Chars => t.chars().map(String::from).collect(),
                Split::Space => t.split_whitespace().map(String::from).collect(),
            }
        };
        let refs: Vec<Vec<Vec<String>>> = groups.iter().map(|(_, r)| r.iter().map(|x| tok(x)).collect()).collect();
        let preds: Vec<Vec<String>> = s
            .answers
            .iter()
            .map(|a| if a.starts_with("ERR ") { Vec::new() } else { tok(a) })
            .collect();
        let scores = metrics::score(refs.iter().zip(&preds).map(|(r, p)| (r.as_slice(), p.as_slice())));
        let n = s.instructions.len().max(1) as f64;
        Report {
            board: board.name(),
            examples: scores.examples,
            exact_match: scores.exact_match,
            wer: scores.wer,
            token_error_rate: scores.token_error_rate,
            instructions_per_example: s.instructions.iter().sum::<u64>() as f64 / n,
            mismatches_vs_host: s.answers.iter().zip(host).filter(|(a, b)| a != b).count(),
            stack_peak_bytes: s.stack_peak,
            blob_bytes: model.blob_bytes(),
            workspace_bytes: s.info.get("workspace").cloned().unwrap_or_default(),
            params: model.param_count(),
        }
    }

    fn print(&self) {
        println!("board                     {}", self.board);
        println!("examples                  {}", self.examples);
        println!("exact match               {:.2}%", 100.0 * self.exact_match);
        println!("WER                       {:.2}%", 100.0 * self.wer);
        println!("token error rate          {:.2}%", 100.0 * self.token_error_rate);
        println!("instructions per example  {:.0}", self.instructions_per_example);
        println!("mismatches vs host        {}", self.mismatches_vs_host);
        println!("parameters                {}", self.params);
        println!("flash (blob)              {} bytes", self.blob_bytes);
        println!("RAM (workspace/buffer)    {} bytes", self.workspace_bytes);
        if let Some(p) = self.stack_peak_bytes {
            println!("peak stack                {p} bytes");
        }
    }
}
