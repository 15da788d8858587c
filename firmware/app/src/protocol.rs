//! The line protocol, generic over any serial port implementing `embedded_io::{Read, Write}`.
//!
//! Every line the host sends gets exactly one line back:
//!
//! | host sends        | firmware answers                                                        |
//! |-------------------|-------------------------------------------------------------------------|
//! | `text`            | the model's output for `text`, or `ERR <engine error>`                  |
//! | `!!text`          | the output for the input `!text` (escape for inputs starting with `!`)  |
//! | `!info`           | `INFO <key=value ...>` (same fields as the boot line `READY ...`)      |
//! | `!icount`         | `ICOUNT instructions=N ticks=T tick_ps=P shift=S` for the last input    |
//! | `!beam N` / `!beam` | `OK beam=N` / `BEAM beam=N max=M`                                     |
//! | `!stack`          | `STACK peak=N size=M` (bytes, by stack painting)                        |
//! | `!bench K R C`    | `BENCH kernel=K rows=R cols=C macs=.. portable=N optimized=N overhead=N` (K: `i8`, `f32`; see [`crate::bench`]) |
//! | `!profile text`   | `PROFILE instructions=N tokens=T matvec=I/C quantize=I/C attention=I/C softmax=I/C layernorm=I/C cache=I/C embed=I/C output=I/C other=I`: `text` run with the engine's per-phase profile (`picoformer::profile`; I instructions, C calls) |
//! | `!selftest [N]`   | `SELFTEST cases=N macs=M ok`: optimized kernels vs portable on N random shapes (default 200) |
//! | `!quit`           | `BYE`, then the firmware exits with code 0                              |
//!
//! Lines end with `\n` (a trailing `\r` is dropped). `instructions` assumes that QEMU runs with
//! `-icount shift=S,align=off,sleep=off`; with another shift use
//! `ticks * tick_ps / (1000 * 2^shift)`.

use core::fmt::{self, Write as _};

use embedded_io::{Read, Write};
use picoformer::{DecodeOptions, Model, Quant, Runner};

use crate::{InstrCounter, StackUse, ICOUNT_SHIFT};

/// What starts a `!profile` line.
const PROFILE_PREFIX: &str = "!profile ";

/// Longest line (in bytes, without the newline) the firmware accepts.
pub const LINE_BYTES: usize = 256;

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A complete line of this many bytes is in the buffer (newline and `\r` removed).
    Line(usize),
    /// The line was longer than the buffer; it was read to its end and dropped.
    TooLong(usize),
}

/// Reads one `\n`-terminated line into `buf`, blocking until it is complete.
pub fn read_line<R: Read>(serial: &mut R, buf: &mut [u8]) -> Result<LineRead, R::Error> {
    let mut len = 0usize;
    let mut byte = [0u8; 1];
    loop {
        if serial.read(&mut byte)? == 0 {
            continue;
        }
        match byte[0] {
            b'\n' => break,
            b => {
                if let Some(slot) = buf.get_mut(len) {
                    *slot = b;
                }
                len += 1;
            }
        }
    }
    if len > buf.len() {
        return Ok(LineRead::TooLong(len));
    }
    if len > 0 && buf.get(len - 1) == Some(&b'\r') {
        len -= 1;
    }
    Ok(LineRead::Line(len))
}

/// A parsed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Text to run through the model.
    Input(&'a str),
    /// `!info`.
    Info,
    /// `!icount`.
    Icount,
    /// `!beam` (None) or `!beam N`.
    Beam(Option<usize>),
    /// `!beam` with an argument that is not a number.
    BadBeam(&'a str),
    /// `!stack`.
    Stack,
    /// `!quit`.
    Quit,
    /// `!bench KERNEL ROWS COLS`.
    Bench(crate::bench::Kernel, usize, usize),
    /// `!selftest [CASES]`.
    Selftest(usize),
    /// `!profile TEXT`: run TEXT with the per-phase profile.
    Profile(&'a str),
    /// `!bench` or `!selftest` with bad arguments.
    BadBench,
    /// Any other `!` command.
    Unknown(&'a str),
}

/// Parses a line (already known to be UTF-8).
pub fn parse_request(line: &str) -> Request<'_> {
    let Some(rest) = line.strip_prefix('!') else {
        return Request::Input(line);
    };
    if rest.starts_with('!') {
        return Request::Input(rest);
    }
    if let Some(text) = rest.strip_prefix("profile ") {
        return Request::Profile(text);
    }
    let mut words = rest.split_ascii_whitespace();
    if rest.starts_with("bench") || rest.starts_with("selftest") {
        return parse_bench(words);
    }
    match (words.next(), words.next(), words.next()) {
        (Some("info"), None, _) => Request::Info,
        (Some("icount"), None, _) => Request::Icount,
        (Some("stack"), None, _) => Request::Stack,
        (Some("quit"), None, _) => Request::Quit,
        (Some("beam"), None, _) => Request::Beam(None),
        (Some("beam"), Some(n), None) => match n.parse() {
            Ok(n) => Request::Beam(Some(n)),
            Err(_) => Request::BadBeam(n),
        },
        (Some("beam"), Some(_), Some(_)) => Request::BadBeam(rest),
        _ => Request::Unknown(line),
    }
}

/// Parses the words of `!bench K R C` and `!selftest [N]`.
fn parse_bench<'a>(mut words: impl Iterator<Item = &'a str>) -> Request<'a> {
    let num = |w: Option<&str>| w.and_then(|w| w.parse::<usize>().ok());
    let first = words.next();
    let args: [Option<&str>; 4] = [words.next(), words.next(), words.next(), words.next()];
    match (first, args) {
        (Some("selftest"), [None, ..]) => Request::Selftest(200),
        (Some("selftest"), [n @ Some(_), None, ..]) => num(n).map_or(Request::BadBench, Request::Selftest),
        (Some("bench"), [Some(k), r @ Some(_), c @ Some(_), None]) => {
            let kernel = match k {
                "i8" => crate::bench::Kernel::I8,
                "f32" => crate::bench::Kernel::F32,
                _ => return Request::BadBench,
            };
            match (num(r), num(c)) {
                (Some(r), Some(c)) if r > 0 && c > 0 && r <= 4096 && c <= 4096 => Request::Bench(kernel, r, c),
                _ => Request::BadBench,
            }
        }
        _ => Request::BadBench,
    }
}

/// Writes `fmt` text to a serial port; remembers whether the port failed. Newlines and carriage
/// returns inside the text become spaces, so one answer is always one line.
struct LineWriter<'s, S: Write> {
    serial: &'s mut S,
    failed: bool,
}

impl<S: Write> fmt::Write for LineWriter<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.split_inclusive(['\n', '\r']) {
            let (text, brk) = match chunk.strip_suffix(['\n', '\r']) {
                Some(t) => (t, true),
                None => (chunk, false),
            };
            let ok = self.serial.write_all(text.as_bytes()).is_ok() && (!brk || self.serial.write_all(b" ").is_ok());
            if !ok {
                self.failed = true;
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// How [`Server::serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The host sent `!quit`.
    Quit,
    /// The serial port reported an error.
    SerialError,
}

/// Facts about the firmware and its buffers, reported by `READY` and `!info`.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Board name, e.g. `mps2-an386`.
    pub board: &'static str,
    /// Address of the blob in flash.
    pub blob_addr: usize,
    /// Workspace bytes the model needs at `max_beam` (output tokens included).
    pub workspace: usize,
    /// Bytes of the firmware's static buffer.
    pub buffer: usize,
    /// Widest beam this workspace holds.
    pub max_beam: usize,
}

/// Writes the `key=value` fields of `READY` and `INFO`.
pub fn write_info<W: fmt::Write>(w: &mut W, model: &Model<'_>, setup: &Setup) -> fmt::Result {
    let c = model.config();
    let quant = match c.quant {
        Quant::F32 => "f32",
        Quant::Int8 => "int8",
    };
    let norm = match c.norm {
        picoformer::NormPlacement::Post => "post",
        picoformer::NormPlacement::Pre => "pre",
    };
    write!(
        w,
        "board={} format={} params={} quant={} d_model={} heads={} d_ff={} layers={}+{} norm={} vocab={}/{} \
         max_in={} max_out={} blob={}@{:#010x} workspace={}/{} max_beam={}",
        setup.board,
        model.format_version(),
        model.param_count(),
        quant,
        c.d_model,
        c.heads,
        c.d_ff,
        c.encoder_layers,
        c.decoder_layers,
        norm,
        c.input_vocab,
        c.output_vocab,
        c.max_input_len,
        c.max_output_len,
        model.blob_bytes(),
        setup.blob_addr,
        setup.workspace,
        setup.buffer,
        setup.max_beam,
    )
}

/// Serves the line protocol for one loaded model.
pub struct Server<'m, 'b, 'w, C> {
    runner: Runner<'m, 'b, 'w>,
    out: &'w mut [u16],
    counter: C,
    stack: fn() -> StackUse,
    setup: Setup,
    beam: usize,
    last_ticks: Option<u64>,
    line: [u8; LINE_BYTES],
    scratch: &'w mut [u8],
}

impl<'m, 'b, 'w, C: InstrCounter> Server<'m, 'b, 'w, C> {
    /// A server over `runner`, decoding into `out` (at least `max_output_len` tokens), timing
    /// inferences with `counter` and measuring the stack with `stack`. Starts greedy.
    pub fn new(
        runner: Runner<'m, 'b, 'w>,
        out: &'w mut [u16],
        counter: C,
        stack: fn() -> StackUse,
        setup: Setup,
    ) -> Self {
        Server {
            runner,
            out,
            counter,
            stack,
            setup,
            beam: 1,
            last_ticks: None,
            line: [0; LINE_BYTES],
            scratch: &mut [],
        }
    }

    /// Gives `!bench` and `!selftest` the part of the static buffer the model does not use.
    pub fn with_scratch(mut self, scratch: &'w mut [u8]) -> Self {
        self.scratch = scratch;
        self
    }

    /// Writes the boot line `READY <info>`.
    pub fn announce<S: Write>(&mut self, serial: &mut S) -> Result<(), Outcome> {
        let model = self.runner.model();
        let setup = self.setup;
        answer(serial, |w| {
            w.write_str("READY ")?;
            write_info(w, model, &setup)
        })
    }

    /// Answers lines until `!quit` or a serial error.
    pub fn serve<S: Read + Write>(&mut self, serial: &mut S) -> Outcome {
        loop {
            let line = match read_line(serial, &mut self.line) {
                Ok(l) => l,
                Err(_) => return Outcome::SerialError,
            };
            let result = match line {
                LineRead::TooLong(n) => answer(serial, |w| {
                    write!(w, "ERR line of {n} bytes is longer than the {LINE_BYTES}-byte limit")
                }),
                LineRead::Line(n) => self.handle(serial, n),
            };
            match result {
                Ok(()) => {}
                Err(Outcome::Quit) => return Outcome::Quit,
                Err(e) => return e,
            }
        }
    }

    /// Handles the line of `n` bytes in `self.line`.
    fn handle<S: Write>(&mut self, serial: &mut S, n: usize) -> Result<(), Outcome> {
        let bytes = self.line.get(..n).unwrap_or(&[]);
        let Ok(text) = core::str::from_utf8(bytes) else {
            return answer(serial, |w| w.write_str("ERR line is not valid UTF-8"));
        };
        // Copy what the answer needs out of `self.line` before borrowing `self` mutably.
        match parse_request(text) {
            Request::Input(_) => {
                let skip = usize::from(text.starts_with("!!"));
                self.infer(serial, skip, n)
            }
            Request::Info => {
                let model = self.runner.model();
                let setup = self.setup;
                answer(serial, |w| {
                    w.write_str("INFO ")?;
                    write_info(w, model, &setup)
                })
            }
            Request::Icount => {
                match self.last_ticks {
                    None => answer(serial, |w| w.write_str("ERR no inference yet")),
                    Some(ticks) => {
                        let tick_ps = u64::from(self.counter.tick_ps());
                        let instructions = ticks * tick_ps / (1000u64 << ICOUNT_SHIFT);
                        answer(serial, |w| {
                            write!(w, "ICOUNT instructions={instructions} ticks={ticks} tick_ps={tick_ps} shift={ICOUNT_SHIFT}")
                        })
                    }
                }
            }
            Request::Beam(None) => {
                let (beam, max) = (self.beam, self.setup.max_beam);
                answer(serial, |w| write!(w, "BEAM beam={beam} max={max}"))
            }
            Request::Beam(Some(b)) if (1..=self.setup.max_beam).contains(&b) => {
                self.beam = b;
                answer(serial, |w| write!(w, "OK beam={b}"))
            }
            Request::Beam(Some(b)) => {
                let max = self.setup.max_beam;
                answer(serial, |w| write!(w, "ERR beam width {b} is outside 1..={max}"))
            }
            Request::BadBeam(_) => answer(serial, |w| w.write_str("ERR usage: !beam N")),
            Request::Stack => {
                let s = (self.stack)();
                answer(serial, |w| write!(w, "STACK peak={} size={}", s.peak, s.size))
            }
            Request::Quit => {
                answer(serial, |w| w.write_str("BYE"))?;
                Err(Outcome::Quit)
            }
            Request::Bench(kernel, rows, cols) => {
                let name = match kernel {
                    crate::bench::Kernel::I8 => "i8",
                    crate::bench::Kernel::F32 => "f32",
                };
                match crate::bench::bench(&mut self.counter, self.scratch, kernel, rows, cols) {
                    Ok(r) => answer(serial, |w| {
                        write!(
                            w,
                            "BENCH kernel={name} rows={rows} cols={cols} macs={} portable={} optimized={} overhead={} exact=1",
                            rows * cols,
                            r.portable,
                            r.optimized,
                            r.overhead
                        )
                    }),
                    Err(e) => answer(serial, |w| write!(w, "ERR {e}")),
                }
            }
            Request::Selftest(cases) => match crate::bench::selftest(self.scratch, cases, 0x5EED_0001) {
                Ok(macs) => answer(serial, |w| write!(w, "SELFTEST cases={cases} macs={macs} ok")),
                Err(e) => answer(serial, |w| write!(w, "ERR selftest failed: {e}")),
            },
            Request::Profile(_) => self.profile(serial, PROFILE_PREFIX.len(), n),
            Request::BadBench => answer(serial, |w| {
                w.write_str("ERR usage: !bench i8|f32 ROWS COLS, !selftest [CASES]")
            }),
            Request::Unknown(_) => answer(serial, |w| {
                w.write_str(
                    "ERR unknown command; commands: !info !icount !beam [N] !stack !bench K R C !selftest [N] !profile TEXT !quit (!!text sends !text)",
                )
            }),
        }
    }

    /// Runs the model on `self.line[start..end]` with the engine's per-phase profile and answers
    /// `PROFILE ...` (instructions and entries per phase) or `ERR`.
    fn profile<S: Write>(&mut self, serial: &mut S, start: usize, end: usize) -> Result<(), Outcome> {
        let Some(clock) = self.counter.profile_clock() else {
            return answer(serial, |w| w.write_str("ERR this board's timer driver cannot profile"));
        };
        let (input, opts) = request(&self.line, start, end, self.beam);
        picoformer::profile::set_clock(Some(clock));
        picoformer::profile::reset();
        let t0 = self.counter.now();
        let result = self.runner.translate(input, &opts, self.out);
        let t1 = self.counter.now();
        picoformer::profile::set_clock(None);
        let report = picoformer::profile::report();
        let tick_ps = u64::from(self.counter.tick_ps());
        let instr = |ticks: u64| ticks * tick_ps / (1000u64 << ICOUNT_SHIFT);
        let total = t1.wrapping_sub(t0);
        match result {
            Ok(d) => answer(serial, |w| {
                write!(w, "PROFILE instructions={} tokens={}", instr(total), d.len + 1)?;
                for ((phase, ticks), calls) in picoformer::profile::Phase::ALL
                    .iter()
                    .zip(report.ticks)
                    .zip(report.calls)
                {
                    write!(w, " {}={}/{}", phase.name(), instr(ticks), calls)?;
                }
                write!(w, " other={}", instr(total.saturating_sub(report.sum())))
            }),
            Err(e) => answer(serial, |w| write!(w, "ERR {e}")),
        }
    }

    /// Runs the model on `self.line[start..end]` and answers with its output or `ERR`.
    fn infer<S: Write>(&mut self, serial: &mut S, start: usize, end: usize) -> Result<(), Outcome> {
        let (input, opts) = request(&self.line, start, end, self.beam);
        let t0 = self.counter.now();
        let result = self.runner.translate(input, &opts, self.out);
        let t1 = self.counter.now();
        self.last_ticks = Some(t1.wrapping_sub(t0));
        let vocab = *self.runner.model().vocab();
        match result {
            Ok(d) => {
                log_debug!("decoded {} tokens in {} ticks", d.len, t1.wrapping_sub(t0));
                let tokens = self.out.get(..d.len).unwrap_or(&[]);
                answer(serial, |w| vocab.write_output(tokens, w))
            }
            Err(e) => {
                log_debug!("input refused: {}", e);
                answer(serial, |w| write!(w, "ERR {e}"))
            }
        }
    }
}

/// The input text `line[start..end]` and the decoding options for beam width `beam`.
fn request(line: &[u8], start: usize, end: usize, beam: usize) -> (&str, DecodeOptions) {
    let input = line
        .get(start..end)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("");
    let opts = if beam == 1 {
        DecodeOptions::greedy()
    } else {
        DecodeOptions::beam(beam)
    };
    (input, opts)
}

/// Writes one answer line (the text from `f`, then `\n`) and flushes.
fn answer<S: Write>(serial: &mut S, f: impl FnOnce(&mut LineWriter<'_, S>) -> fmt::Result) -> Result<(), Outcome> {
    let mut w = LineWriter { serial, failed: false };
    let formatted = f(&mut w);
    if w.failed {
        return Err(Outcome::SerialError);
    }
    if formatted.is_err() {
        // Formatting failed without a serial error (cannot happen with the engine's writers):
        // still end the line so the host stays in step.
        let _ = w.serial.write_all(b" ERR formatting failed");
    }
    if w.serial.write_all(b"\n").is_err() || w.serial.flush().is_err() {
        return Err(Outcome::SerialError);
    }
    Ok(())
}

/// Writes one line `text` (plus `\n`) to `serial`: used for boot errors before a server exists.
pub fn write_line<S: Write>(serial: &mut S, args: fmt::Arguments<'_>) -> Result<(), Outcome> {
    answer(serial, |w| w.write_fmt(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A serial port over fixed input bytes that records output.
    struct Mock {
        input: Vec<u8>,
        pos: usize,
        output: Vec<u8>,
    }

    impl embedded_io::ErrorType for Mock {
        type Error = core::convert::Infallible;
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.input.len() - self.pos).min(1);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn mock(input: &[u8]) -> Mock {
        Mock {
            input: input.to_vec(),
            pos: 0,
            output: Vec::new(),
        }
    }

    #[test]
    fn reads_lines_and_strips_cr() {
        let mut m = mock(b"abc\r\nde\n\n");
        let mut buf = [0u8; 8];
        assert_eq!(read_line(&mut m, &mut buf).unwrap(), LineRead::Line(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(read_line(&mut m, &mut buf).unwrap(), LineRead::Line(2));
        assert_eq!(&buf[..2], b"de");
        assert_eq!(read_line(&mut m, &mut buf).unwrap(), LineRead::Line(0));
    }

    #[test]
    fn long_lines_are_dropped_whole_and_the_next_line_is_read() {
        let mut m = mock(b"0123456789\nok\n");
        let mut buf = [0u8; 4];
        assert_eq!(read_line(&mut m, &mut buf).unwrap(), LineRead::TooLong(10));
        assert_eq!(read_line(&mut m, &mut buf).unwrap(), LineRead::Line(2));
        assert_eq!(&buf[..2], b"ok");
    }

    #[test]
    fn parses_commands_and_escapes() {
        assert_eq!(parse_request("hello"), Request::Input("hello"));
        assert_eq!(parse_request(""), Request::Input(""));
        assert_eq!(parse_request("!!bang"), Request::Input("!bang"));
        assert_eq!(parse_request("!info"), Request::Info);
        assert_eq!(parse_request("!icount"), Request::Icount);
        assert_eq!(parse_request("!stack"), Request::Stack);
        assert_eq!(parse_request("!quit"), Request::Quit);
        assert_eq!(parse_request("!beam"), Request::Beam(None));
        assert_eq!(parse_request("!beam 3"), Request::Beam(Some(3)));
        assert_eq!(parse_request("!beam x"), Request::BadBeam("x"));
        assert_eq!(parse_request("!beam 1 2"), Request::BadBeam("beam 1 2"));
        assert_eq!(parse_request("!info extra"), Request::Unknown("!info extra"));
        assert_eq!(parse_request("!"), Request::Unknown("!"));
        assert_eq!(
            parse_request("!bench i8 128 96"),
            Request::Bench(crate::bench::Kernel::I8, 128, 96)
        );
        assert_eq!(
            parse_request("!bench f32 2 3"),
            Request::Bench(crate::bench::Kernel::F32, 2, 3)
        );
        assert_eq!(parse_request("!bench i4 2 3"), Request::BadBench);
        assert_eq!(parse_request("!bench i8 0 3"), Request::BadBench);
        assert_eq!(parse_request("!bench i8 2"), Request::BadBench);
        assert_eq!(parse_request("!bench i8 2 3 4"), Request::BadBench);
        assert_eq!(parse_request("!selftest"), Request::Selftest(200));
        assert_eq!(parse_request("!selftest 7"), Request::Selftest(7));
        assert_eq!(parse_request("!selftest x"), Request::BadBench);
    }

    #[test]
    fn answers_are_single_lines() {
        let mut m = mock(b"");
        write_line(&mut m, format_args!("a\nb\rc")).unwrap();
        assert_eq!(m.output, b"a b c\n");
    }
}
