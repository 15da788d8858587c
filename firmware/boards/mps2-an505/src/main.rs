//! picoformer firmware for QEMU's `mps2-an505` (Secure state): the protocol on UART0, TIMER0 as
//! instruction counter (Secure aliases 0x5020_0000 and 0x5000_0000).
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
        name: "mps2-an505",
        uart: 0x5020_0000,
        timer: 0x5000_0000,
        timer_irq: 3,
        // QEMU clocks the AN505 (its timers included) at 20 MHz, the other MPS2 images at 25 MHz.
        timer_hz: 20_000_000,
        max_beam: picoformer_fw::picoformer::MAX_BEAM,
    };
    // SAFETY: UART0 and TIMER0 of this board's memory map.
    unsafe { rt::run_mps2(board, buffer) }
}
