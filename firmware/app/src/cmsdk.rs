//! Drivers for the Arm CMSDK APB UART and timer of the MPS2 boards (AN385, AN386, AN500, AN505).

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

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
    pub const DATA: usize = 0x00;
    pub const STATE: usize = 0x04;
    pub const CTRL: usize = 0x08;
    pub const BAUDDIV: usize = 0x10;
    pub const STATE_TX_FULL: u32 = 1 << 0;
    pub const STATE_RX_FULL: u32 = 1 << 1;
    pub const CTRL_TX_EN: u32 = 1 << 0;
    pub const CTRL_RX_EN: u32 = 1 << 1;
}

/// A CMSDK APB UART, polled, implementing `embedded_io::{Read, ReadReady, Write, WriteReady}`.
pub struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    /// A driver for the UART at `base` (UART0 is at 0x4000_4000 on AN385/AN386/AN500 and at
    /// 0x5020_0000, secure alias, on AN505).
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB UART that no other code accesses.
    pub const unsafe fn new(base: usize) -> Self {
        CmsdkUart { base }
    }

    /// Sets the baud divider (25 MHz / 16) and enables the transmitter and receiver.
    pub fn enable(&mut self) {
        wr(self.base + uart_reg::BAUDDIV, 16);
        wr(self.base + uart_reg::CTRL, uart_reg::CTRL_TX_EN | uart_reg::CTRL_RX_EN);
    }

    fn state(&self) -> u32 {
        rd(self.base + uart_reg::STATE)
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl embedded_io::Read for CmsdkUart {
    /// Blocks until at least one byte has arrived, then returns what is available.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.state() & uart_reg::STATE_RX_FULL == 0 {}
        let mut n = 0;
        for slot in buf.iter_mut() {
            if self.state() & uart_reg::STATE_RX_FULL == 0 {
                break;
            }
            *slot = rd(self.base + uart_reg::DATA) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for CmsdkUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.state() & uart_reg::STATE_RX_FULL != 0)
    }
}

impl embedded_io::Write for CmsdkUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while self.state() & uart_reg::STATE_TX_FULL != 0 {}
            wr(self.base + uart_reg::DATA, u32::from(b));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        while self.state() & uart_reg::STATE_TX_FULL != 0 {}
        Ok(())
    }
}

impl embedded_io::WriteReady for CmsdkUart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.state() & uart_reg::STATE_TX_FULL == 0)
    }
}

mod timer_reg {
    pub const CTRL: usize = 0x00;
    pub const VALUE: usize = 0x04;
    pub const RELOAD: usize = 0x08;
    pub const INTSTATUS_INTCLEAR: usize = 0x0C;
    pub const CTRL_EN: u32 = 1 << 0;
    pub const CTRL_IRQ_EN: u32 = 1 << 3;
}

/// Wraps of the 32-bit timer counted by [`CmsdkTimer::on_interrupt`] (its only writer).
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Base address of the started timer, for [`profile_clock`] (0 until [`CmsdkTimer::start`]).
static STARTED_BASE: AtomicUsize = AtomicUsize::new(0);

/// The started timer's 32-bit count, counting up (wrapping differences are exact).
fn profile_clock() -> u32 {
    match STARTED_BASE.load(Ordering::Relaxed) {
        0 => 0,
        base => u32::MAX - rd(base + timer_reg::VALUE),
    }
}

/// A CMSDK APB timer used as a 64-bit instruction counter: it counts down from 0xFFFF_FFFF and its
/// wrap interrupt extends it to 64 bits. It ticks at the board's system clock: 25 MHz on QEMU's
/// AN385/AN386/AN500, 20 MHz on the AN505.
pub struct CmsdkTimer {
    base: usize,
    tick_ps: u32,
}

impl CmsdkTimer {
    /// A driver for the timer at `base` (TIMER0: 0x4000_0000 on AN385/AN386/AN500, IRQ 8;
    /// 0x5000_0000, secure alias, on AN505, IRQ 3) clocked at `clock_hz`.
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB timer that no other code accesses.
    pub const unsafe fn new(base: usize, clock_hz: u32) -> Self {
        CmsdkTimer {
            base,
            tick_ps: (1_000_000_000_000u64 / clock_hz as u64) as u32,
        }
    }

    /// Starts the timer free-running from 0xFFFF_FFFF with its wrap interrupt enabled (enable the
    /// interrupt in the NVIC and call [`CmsdkTimer::on_interrupt`] from its handler).
    pub fn start(&mut self) {
        wr(self.base + timer_reg::CTRL, 0);
        wr(self.base + timer_reg::RELOAD, u32::MAX);
        wr(self.base + timer_reg::VALUE, u32::MAX);
        wr(self.base + timer_reg::INTSTATUS_INTCLEAR, 1);
        wr(self.base + timer_reg::CTRL, timer_reg::CTRL_EN | timer_reg::CTRL_IRQ_EN);
        STARTED_BASE.store(self.base, Ordering::Relaxed);
    }

    /// Acknowledges a wrap interrupt of the timer at `base` and counts it.
    pub fn on_interrupt(base: usize) {
        wr(base + timer_reg::INTSTATUS_INTCLEAR, 1);
        WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    fn read(&self) -> u64 {
        let wraps = WRAPS.load(Ordering::Relaxed);
        let value = rd(self.base + timer_reg::VALUE);
        let pending = rd(self.base + timer_reg::INTSTATUS_INTCLEAR) & 1 != 0;
        // A wrap whose interrupt has not run yet: the counter was just reloaded.
        let wraps = if pending && value > u32::MAX / 2 {
            wraps.wrapping_add(1)
        } else {
            wraps
        };
        (u64::from(wraps) << 32) | u64::from(u32::MAX - value)
    }
}

impl InstrCounter for CmsdkTimer {
    fn now(&mut self) -> u64 {
        #[cfg(target_os = "none")]
        return cortex_m::interrupt::free(|_| self.read());
        #[cfg(not(target_os = "none"))]
        return self.read();
    }

    fn tick_ps(&self) -> u32 {
        self.tick_ps
    }

    fn profile_clock(&self) -> Option<fn() -> u32> {
        Some(profile_clock)
    }
}
