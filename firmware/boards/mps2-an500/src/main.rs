//! picoformer firmware for QEMU's `mps2-an500`: the protocol on UART0, TIMER0 as instruction counter.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use picoformer_fw::rt::{self, Mps2};

/// Bytes of the static buffer for the engine's workspace and output tokens (of 4 MiB RAM; the
/// rest is stack and statics).
const BUFFER_BYTES: usize = 3 * 1024 * 1024;

#[entry]
fn main() -> ! {
    rt::paint_stack();
    let buffer = picoformer_fw::static_buffer!(BUFFER_BYTES);
    let board = Mps2 {
        name: "mps2-an500",
        uart: 0x4000_4000,
        timer: 0x4000_0000,
        timer_irq: 8,
        timer_hz: 25_000_000,
        max_beam: picoformer_fw::picoformer::MAX_BEAM,
    };
    // SAFETY: UART0 and TIMER0 of this board's memory map.
    unsafe { rt::run_mps2(board, buffer) }
}
