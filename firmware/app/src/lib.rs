//! Board-independent core of the picoformer firmware.
//!
//! - [`protocol`]: the line protocol served over any serial port that implements the
//!   [`embedded_io`] `Read` + `Write` traits (one output line per input line, `!` commands).
//! - [`boot`]: finds and validates the model blob in flash, sizes the workspace, prints `READY`
//!   and serves the protocol; a board's `main` only builds its drivers and calls [`boot::run`].
//! - [`cmsdk`] and [`nrf51`]: drivers for the serial ports and timers of QEMU's MPS2 boards
//!   (Arm CMSDK APB UART and timer) and of the BBC micro:bit (nRF51 UART and TIMER).
//! - `rt` (bare-metal targets only): semihosting exit, panic and fault handlers that exit QEMU
//!   with a non-zero code, defmt over semihosting, stack painting.
//!
//! A real board plugs in by implementing `embedded_io::{Read, Write}` for its UART (most HALs
//! already do) and [`InstrCounter`] for one of its timers.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

/// Logs through defmt on the target; compiles to nothing in host unit tests.
macro_rules! log_debug {
    ($($t:tt)*) => {
        #[cfg(target_os = "none")]
        defmt::debug!($($t)*);
    };
}

/// Logs through defmt on the target; compiles to nothing in host unit tests.
macro_rules! log_info {
    ($($t:tt)*) => {
        #[cfg(target_os = "none")]
        defmt::info!($($t)*);
    };
}

/// Logs through defmt on the target; compiles to nothing in host unit tests.
macro_rules! log_error {
    ($($t:tt)*) => {
        #[cfg(target_os = "none")]
        defmt::error!($($t)*);
    };
}

/// The engine, re-exported so board crates need no dependency of their own.
pub use picoformer;

pub mod bench;
pub mod boot;
pub mod cmsdk;
pub mod nrf51;
pub mod protocol;
#[cfg(target_os = "none")]
pub mod rt;

/// `-icount shift=N` that the QEMU runner uses and that [`protocol`] assumes when it converts
/// timer ticks to instructions (one instruction takes 2^N ns of virtual time).
pub const ICOUNT_SHIFT: u32 = 10;

/// A free-running time base used to count instructions under QEMU's `-icount`.
///
/// Under `-icount shift=N,align=off,sleep=off` every instruction advances virtual time by 2^N ns,
/// so a timer clocked from virtual time measures instructions deterministically:
/// `instructions = ticks * tick_ps / (1000 * 2^N)`.
pub trait InstrCounter {
    /// Ticks since an arbitrary origin (monotonic; wraps are accounted for by the driver or
    /// documented by it).
    fn now(&mut self) -> u64;
    /// Length of one tick in picoseconds (40,000 for a 25 MHz timer).
    fn tick_ps(&self) -> u32;
    /// A free function reading the raw 32-bit count (counting up, same tick), for the engine's
    /// per-phase profile (`picoformer::profile`); `None` if the driver has none.
    fn profile_clock(&self) -> Option<fn() -> u32> {
        None
    }
}

/// Stack use measured by painting the stack at boot and scanning for the high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackUse {
    /// Deepest stack use seen so far, in bytes.
    pub peak: usize,
    /// Size of the stack region, in bytes.
    pub size: usize,
}
