//! picoformer firmware for QEMU's `microbit` (nRF51822, Cortex-M0, 16 KiB RAM): the protocol on
//! the UART, TIMER0 as instruction counter. Only tiny models fit; others are refused at boot.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use picoformer_fw::nrf51::{Nrf51Timer, Nrf51Uart};
use picoformer_fw::{boot, rt};

/// Bytes of the static buffer for the engine's workspace and output tokens (of 16 KiB RAM).
const BUFFER_BYTES: usize = 10 * 1024;
/// Widest beam offered (if the model's workspace holds it).
const MAX_BEAM: usize = 2;

#[entry]
fn main() -> ! {
    rt::paint_stack();
    let buffer = picoformer_fw::static_buffer!(BUFFER_BYTES);
    // SAFETY: the nRF51's UART and TIMER0 addresses; nothing else uses them.
    let (mut serial, mut timer) = unsafe { (Nrf51Uart::new(0x4000_2000), Nrf51Timer::new(0x4000_8000)) };
    serial.enable();
    timer.start();
    let code = boot::run(boot::Board {
        name: "microbit",
        serial,
        counter: timer,
        blob_region: rt::blob_region(),
        buffer,
        max_beam: MAX_BEAM,
        stack: rt::stack_usage,
    });
    rt::exit(code)
}
