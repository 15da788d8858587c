//! Drivers for the nRF51 UART and TIMER (BBC micro:bit, QEMU's `microbit` machine).

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::InstrCounter;

fn rd(addr: usize) -> u32 {
    // SAFETY: only called with register addresses of a device the caller vouched for in `new`.
    unsafe { read_volatile(addr as *const u32) }
}

fn wr(addr: usize, v: u32) {
    // SAFETY: as in `rd`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

mod uart_reg {
    pub const TASKS_STARTRX: usize = 0x000;
    pub const TASKS_STARTTX: usize = 0x008;
    pub const EVENTS_RXDRDY: usize = 0x108;
    pub const EVENTS_TXDRDY: usize = 0x11C;
    pub const ENABLE: usize = 0x500;
    pub const PSELTXD: usize = 0x50C;
    pub const PSELRXD: usize = 0x514;
    pub const RXD: usize = 0x518;
    pub const TXD: usize = 0x51C;
    pub const BAUDRATE: usize = 0x524;
    pub const ENABLE_UART: u32 = 4;
    pub const BAUD_115200: u32 = 0x01D7_E000;
}

/// The nRF51 UART, polled, implementing `embedded_io::{Read, ReadReady, Write}`.
pub struct Nrf51Uart {
    base: usize,
}

impl Nrf51Uart {
    /// A driver for the UART at `base` (0x4000_2000).
    ///
    /// # Safety
    /// `base` must be the address of the nRF51 UART and no other code may access it.
    pub const unsafe fn new(base: usize) -> Self {
        Nrf51Uart { base }
    }

    /// Routes TX/RX to the micro:bit's USB-serial pins (P0.24/P0.25), sets 115200 baud and
    /// starts the transmitter and receiver.
    pub fn enable(&mut self) {
        wr(self.base + uart_reg::PSELTXD, 24);
        wr(self.base + uart_reg::PSELRXD, 25);
        wr(self.base + uart_reg::BAUDRATE, uart_reg::BAUD_115200);
        wr(self.base + uart_reg::ENABLE, uart_reg::ENABLE_UART);
        wr(self.base + uart_reg::TASKS_STARTTX, 1);
        wr(self.base + uart_reg::TASKS_STARTRX, 1);
    }

    fn rx_ready(&self) -> bool {
        rd(self.base + uart_reg::EVENTS_RXDRDY) != 0
    }
}

impl embedded_io::ErrorType for Nrf51Uart {
    type Error = Infallible;
}

impl embedded_io::Read for Nrf51Uart {
    /// Blocks until at least one byte has arrived, then returns what is available.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.rx_ready() {}
        let mut n = 0;
        for slot in buf.iter_mut() {
            if !self.rx_ready() {
                break;
            }
            // Clear the event before reading RXD, as the reference manual asks.
            wr(self.base + uart_reg::EVENTS_RXDRDY, 0);
            *slot = rd(self.base + uart_reg::RXD) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Nrf51Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Write for Nrf51Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            wr(self.base + uart_reg::EVENTS_TXDRDY, 0);
            wr(self.base + uart_reg::TXD, u32::from(b));
            while rd(self.base + uart_reg::EVENTS_TXDRDY) == 0 {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

mod timer_reg {
    pub const TASKS_START: usize = 0x000;
    pub const TASKS_STOP: usize = 0x004;
    pub const TASKS_CLEAR: usize = 0x00C;
    pub const TASKS_CAPTURE0: usize = 0x040;
    pub const MODE: usize = 0x504;
    pub const BITMODE: usize = 0x508;
    pub const PRESCALER: usize = 0x510;
    pub const CC0: usize = 0x540;
    pub const BITMODE_32: u32 = 3;
}

/// Base address of the started TIMER, for [`profile_clock`] (0 until [`Nrf51Timer::start`]).
static STARTED_BASE: AtomicUsize = AtomicUsize::new(0);

/// The started TIMER's 32-bit count (wrapping differences are exact).
fn profile_clock() -> u32 {
    match STARTED_BASE.load(Ordering::Relaxed) {
        0 => 0,
        base => {
            wr(base + timer_reg::TASKS_CAPTURE0, 1);
            rd(base + timer_reg::CC0)
        }
    }
}

/// An nRF51 TIMER at 16 MHz in 32-bit mode, extended to 64 bits in software at each reading.
///
/// The extension sees a wrap only when it is read, so a single measured interval must stay below
/// 2^32 ticks (268 s of virtual time, about 262 M instructions at `-icount shift=10`), far more
/// than any model that fits the micro:bit's 16 KiB of RAM takes per input.
pub struct Nrf51Timer {
    base: usize,
    last: u32,
    high: u32,
}

impl Nrf51Timer {
    /// A driver for the TIMER at `base` (TIMER0 is at 0x4000_8000).
    ///
    /// # Safety
    /// `base` must be the address of an nRF51 TIMER that no other code accesses.
    pub const unsafe fn new(base: usize) -> Self {
        Nrf51Timer { base, last: 0, high: 0 }
    }

    /// Starts counting from zero at 16 MHz.
    pub fn start(&mut self) {
        wr(self.base + timer_reg::TASKS_STOP, 1);
        wr(self.base + timer_reg::MODE, 0);
        wr(self.base + timer_reg::BITMODE, timer_reg::BITMODE_32);
        wr(self.base + timer_reg::PRESCALER, 0);
        wr(self.base + timer_reg::TASKS_CLEAR, 1);
        wr(self.base + timer_reg::TASKS_START, 1);
        STARTED_BASE.store(self.base, Ordering::Relaxed);
    }
}

impl InstrCounter for Nrf51Timer {
    fn now(&mut self) -> u64 {
        wr(self.base + timer_reg::TASKS_CAPTURE0, 1);
        let v = rd(self.base + timer_reg::CC0);
        if v < self.last {
            self.high = self.high.wrapping_add(1);
        }
        self.last = v;
        (u64::from(self.high) << 32) | u64::from(v)
    }

    fn tick_ps(&self) -> u32 {
        62_500
    }

    fn profile_clock(&self) -> Option<fn() -> u32> {
        Some(profile_clock)
    }
}
