//! Boot: find the blob in flash, validate it, size the workspace, announce, serve.

use embedded_io::{Read, Write};
use picoformer::{Error, Model, Runner};

use crate::protocol::{write_line, Outcome, Server, Setup};
use crate::{InstrCounter, StackUse};

/// Exit codes the firmware reports through semihosting (QEMU's own exit code).
pub mod exit_code {
    /// `!quit`.
    pub const OK: i32 = 0;
    /// The blob is missing, corrupt or unsupported (`ERR` was printed).
    pub const BAD_BLOB: i32 = 2;
    /// The model's workspace does not fit the firmware's static buffer (`ERR` was printed).
    pub const DOES_NOT_FIT: i32 = 3;
    /// The serial port failed.
    pub const SERIAL: i32 = 4;
    /// A panic.
    pub const PANIC: i32 = 101;
    /// A HardFault.
    pub const HARD_FAULT: i32 = 102;
    /// An interrupt without a handler.
    pub const UNEXPECTED_IRQ: i32 = 103;
}

/// Everything board-specific that [`run`] needs.
pub struct Board<S, C> {
    /// Board name reported in `READY`, e.g. `mps2-an386`.
    pub name: &'static str,
    /// The serial port the protocol runs on.
    pub serial: S,
    /// The instruction counter.
    pub counter: C,
    /// The flash region reserved for the blob (the blob starts at its first byte).
    pub blob_region: &'static [u8],
    /// The static buffer for the engine's workspace and output tokens (4-byte aligned).
    pub buffer: &'static mut [u8],
    /// Widest beam the firmware offers if the buffer holds it.
    pub max_beam: usize,
    /// Measures the stack (see `rt::stack_usage`).
    pub stack: fn() -> StackUse,
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Bytes of the static buffer a model needs at beam width `beam`: the runner's workspace plus the
/// output token buffer.
pub fn needed_bytes(model: &Model<'_>, beam: usize) -> usize {
    align4(model.workspace_bytes(beam)) + align4(2 * model.config().max_output_len)
}

/// Validates the blob, prints `READY ...` (or `ERR ...`), serves the protocol and returns the
/// exit code for semihosting (see [`exit_code`]).
pub fn run<S: Read + Write, C: InstrCounter>(board: Board<S, C>) -> i32 {
    let Board {
        name,
        mut serial,
        counter,
        blob_region,
        buffer,
        max_beam,
        stack,
    } = board;
    let addr = blob_region.as_ptr() as usize;
    let region = blob_region.len();
    let len = match picoformer::blob::peek_len(blob_region) {
        Ok(len) => len,
        Err(e) => {
            log_error!("no valid blob header at {=usize:#x}: {}", addr, e);
            let _ = write_line(
                &mut serial,
                format_args!("ERR {} (blob expected at {addr:#010x})", Error::from(e)),
            );
            return exit_code::BAD_BLOB;
        }
    };
    let Some(blob) = blob_region.get(..len) else {
        log_error!("blob of {=usize} bytes exceeds the {=usize}-byte region", len, region);
        let _ = write_line(
            &mut serial,
            format_args!(
                "ERR invalid blob: its header records {len} bytes, more than the {region}-byte blob region at {addr:#010x} on {name}"
            ),
        );
        return exit_code::BAD_BLOB;
    };
    let model = match Model::from_blob(blob) {
        Ok(m) => m,
        Err(e) => {
            log_error!("blob refused: {}", e);
            let _ = write_line(&mut serial, format_args!("ERR {}", Error::from(e)));
            return exit_code::BAD_BLOB;
        }
    };

    let capacity = buffer.len();
    let mut beam = max_beam.clamp(1, picoformer::MAX_BEAM);
    while beam > 1 && needed_bytes(&model, beam) > capacity {
        beam -= 1;
    }
    let needed = needed_bytes(&model, beam);
    if needed > capacity {
        log_error!(
            "workspace of {=usize} bytes does not fit the {=usize}-byte buffer",
            needed,
            capacity
        );
        let _ = write_line(
            &mut serial,
            format_args!(
                "ERR model does not fit: it needs {needed} bytes of RAM for its workspace at beam 1 \
                 ({} engine + {} output tokens), the {name} firmware's buffer holds {capacity}",
                model.workspace_bytes(1),
                needed - align4(model.workspace_bytes(1)),
            ),
        );
        return exit_code::DOES_NOT_FIT;
    }
    let (ws, rest) = buffer.split_at_mut(align4(model.workspace_bytes(beam)));
    let out_tokens = model.config().max_output_len;
    // What the model leaves free serves `!bench` and `!selftest`.
    let (rest, spare) = rest.split_at_mut(align4(2 * out_tokens).min(rest.len()));
    let out: &mut [u16] = match rest.get_mut(..2 * out_tokens) {
        Some(bytes) => match bytemuck::try_cast_slice_mut(bytes) {
            Ok(out) => out,
            Err(_) => return exit_code::DOES_NOT_FIT,
        },
        None => return exit_code::DOES_NOT_FIT,
    };
    let runner = match Runner::new(&model, ws, beam) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_line(&mut serial, format_args!("ERR {e}"));
            return exit_code::DOES_NOT_FIT;
        }
    };
    let setup = Setup {
        board: name,
        blob_addr: addr,
        workspace: needed,
        buffer: capacity,
        max_beam: beam,
    };
    let mut server = Server::new(runner, out, counter, stack, setup).with_scratch(spare);
    if server.announce(&mut serial).is_err() {
        return exit_code::SERIAL;
    }
    log_info!(
        "ready: {=usize} parameters, blob {=usize} bytes, workspace {=usize}/{=usize} bytes, max beam {=usize}",
        model.param_count(),
        len,
        needed,
        capacity,
        beam
    );
    match server.serve(&mut serial) {
        Outcome::Quit => exit_code::OK,
        Outcome::SerialError => exit_code::SERIAL,
    }
}
