//! Runtime glue for bare-metal targets: semihosting exit, panic/fault/interrupt handlers, the
//! defmt logger (semihosting transport), stack painting and the linker-script symbols.
//!
//! The defmt logger writes its frames to the semihosting *stderr* (`:tt` opened for append), not
//! to stdout as `defmt-semihosting` does: QEMU 7.2 with `target=native` sends semihosting stdout
//! to its own stdout, which under `-serial stdio` is the UART stream the host parses. With the
//! logs on QEMU's stderr, `qemu ... 2> log.bin` keeps them apart; decode with
//! `defmt-print -e firmware.elf < log.bin`.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicI16, AtomicUsize, Ordering};

use core::cell::UnsafeCell;

use cortex_m_rt::{exception, ExceptionFrame};

use crate::boot::exit_code;
use crate::StackUse;

/// Ends the program; under QEMU with `-semihosting-config enable=on` QEMU exits with `code`.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // A panic inside the logger (or while logging a panic) must still end the program.
    if !PANICKING.load(Ordering::Relaxed) {
        PANICKING.store(true, Ordering::Relaxed);
        defmt::error!("panic: {}", defmt::Display2Format(info));
    }
    exit(exit_code::PANIC)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    if !PANICKING.load(Ordering::Relaxed) {
        PANICKING.store(true, Ordering::Relaxed);
        defmt::error!("HardFault: pc={=u32:#010x} lr={=u32:#010x}", frame.pc(), frame.lr());
    }
    exit(exit_code::HARD_FAULT)
}

/// The interrupt routed to [`set_irq_handler`]'s handler (-1: none).
static IRQ_NUMBER: AtomicI16 = AtomicI16::new(-1);
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Routes device interrupt `irq` to `handler` (one interrupt; the firmware needs only its
/// timer's). Every other interrupt or exception without a handler ends the program with
/// [`exit_code::UNEXPECTED_IRQ`].
pub fn set_irq_handler(irq: u16, handler: fn()) {
    IRQ_HANDLER.store(handler as usize, Ordering::Relaxed);
    IRQ_NUMBER.store(irq as i16, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: `Irq` holds a device interrupt number the board vouches for.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Enables device interrupt `irq` in the NVIC.
pub fn enable_irq(irq: u16) {
    // SAFETY: the firmware uses no interrupt-based critical sections that unmasking could break.
    unsafe { cortex_m::peripheral::NVIC::unmask(Irq(irq)) }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn >= 0 && irqn == IRQ_NUMBER.load(Ordering::Relaxed) {
        let f = IRQ_HANDLER.load(Ordering::Relaxed);
        if f != 0 {
            // SAFETY: only `set_irq_handler` stores here, always a `fn()`.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
            f();
            return;
        }
    }
    defmt::error!("unexpected exception or interrupt {=i16}", irqn);
    exit(exit_code::UNEXPECTED_IRQ)
}

extern "C" {
    /// Start of the free RAM after `.bss`/`.uninit` (cortex-m-rt), the bottom of the stack.
    static mut __sheap: u32;
    /// Initial stack pointer, the top of RAM (cortex-m-rt).
    static _stack_start: u32;
    /// First byte of the `BLOB` memory region (memory.x).
    static __blob_start: u8;
    /// One past the last byte of the `BLOB` memory region (memory.x).
    static __blob_end: u8;
}

const PAINT: u32 = 0x5AC3_A53C;

fn stack_bounds() -> (usize, usize) {
    (addr_of_mut!(__sheap) as usize, addr_of!(_stack_start) as usize)
}

/// Paints the unused stack (from the end of `.bss` to just below the caller's frame) with a
/// pattern, so [`stack_usage`] can find the deepest point the stack ever reached. Call it first
/// thing in `main`.
#[inline(never)]
pub fn paint_stack() {
    let (bottom, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp.saturating_sub(256) & !3;
    let mut p = bottom;
    while p < top {
        // SAFETY: [bottom, sp - 256) is free stack RAM that nothing uses yet.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Peak stack use since [`paint_stack`] (bytes from the top of RAM to the deepest overwritten
/// word) and the size of the stack region.
pub fn stack_usage() -> StackUse {
    let (bottom, top) = stack_bounds();
    let mut p = bottom;
    // SAFETY: reads RAM between the end of .bss and the top of the stack.
    while p < top && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    StackUse {
        peak: top - p,
        size: top - bottom,
    }
}

/// The flash region reserved for the model blob by the board's `memory.x` (`BLOB`).
pub fn blob_region() -> &'static [u8] {
    // SAFETY: the linker script reserves [__blob_start, __blob_end) as readable memory that no
    // Rust object occupies; the blob is placed there by QEMU's loader or a flasher.
    unsafe {
        let start = addr_of!(__blob_start);
        let len = addr_of!(__blob_end) as usize - start as usize;
        core::slice::from_raw_parts(start, len)
    }
}

/// A 16-byte aligned static buffer of `$n` bytes, zeroed at boot; evaluate it once (in `main`).
#[macro_export]
macro_rules! static_buffer {
    ($n:expr) => {{
        #[repr(C, align(16))]
        struct Aligned([u8; $n]);
        static mut BUFFER: Aligned = Aligned([0; $n]);
        // SAFETY: this expression runs once, in `main`, so the reference is unique.
        let buffer: &'static mut [u8; $n] = unsafe { &mut (*::core::ptr::addr_of_mut!(BUFFER)).0 };
        &mut buffer[..]
    }};
}

/// What an MPS2 board (CMSDK UART and timer) needs to run the firmware.
pub struct Mps2 {
    /// Board name, e.g. `mps2-an386`.
    pub name: &'static str,
    /// UART0 base address.
    pub uart: usize,
    /// TIMER0 base address.
    pub timer: usize,
    /// TIMER0's interrupt number.
    pub timer_irq: u16,
    /// TIMER0's clock (the board's system clock) in Hz.
    pub timer_hz: u32,
    /// Widest beam to offer.
    pub max_beam: usize,
}

static MPS2_TIMER: AtomicUsize = AtomicUsize::new(0);

fn mps2_timer_irq() {
    crate::cmsdk::CmsdkTimer::on_interrupt(MPS2_TIMER.load(Ordering::Relaxed));
}

/// Runs the firmware on an MPS2 board: UART0 for the protocol, TIMER0 as instruction counter.
/// Call it from `main` right after [`paint_stack`].
///
/// # Safety
/// The addresses in `board` must be those of the board's CMSDK UART and timer.
pub unsafe fn run_mps2(board: Mps2, buffer: &'static mut [u8]) -> ! {
    use crate::cmsdk::{CmsdkTimer, CmsdkUart};
    // SAFETY: the caller vouches for the addresses; nothing else touches these devices.
    let (mut serial, mut timer) = unsafe { (CmsdkUart::new(board.uart), CmsdkTimer::new(board.timer, board.timer_hz)) };
    serial.enable();
    MPS2_TIMER.store(board.timer, Ordering::Relaxed);
    set_irq_handler(board.timer_irq, mps2_timer_irq);
    timer.start();
    enable_irq(board.timer_irq);
    let code = crate::boot::run(crate::boot::Board {
        name: board.name,
        serial,
        counter: timer,
        blob_region: blob_region(),
        buffer,
        max_beam: board.max_beam,
        stack: stack_usage,
    });
    exit(code)
}

/// defmt global logger: frames go to semihosting stderr.
#[defmt::global_logger]
struct Logger;

struct LoggerState {
    taken: AtomicBool,
    restore: UnsafeCell<critical_section::RestoreState>,
    encoder: UnsafeCell<defmt::Encoder>,
    stderr: UnsafeCell<Option<semihosting::io::Stderr>>,
}

// SAFETY: the cells are only touched between `acquire` and `release`, inside a critical section.
unsafe impl Sync for LoggerState {}

static LOGGER: LoggerState = LoggerState {
    taken: AtomicBool::new(false),
    restore: UnsafeCell::new(critical_section::RestoreState::invalid()),
    encoder: UnsafeCell::new(defmt::Encoder::new()),
    stderr: UnsafeCell::new(None),
};

fn emit(stderr: &mut Option<semihosting::io::Stderr>, bytes: &[u8]) {
    use semihosting::io::Write as _;
    if let Some(h) = stderr {
        let _ = h.write_all(bytes);
    }
}

// SAFETY: acquire/release pair a critical section; reentrant use is refused.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        // SAFETY: released in `release`.
        let restore = unsafe { critical_section::acquire() };
        if LOGGER.taken.load(Ordering::Relaxed) {
            // Logging from a fault inside the logger: nothing sensible is left to do.
            exit(exit_code::PANIC)
        }
        LOGGER.taken.store(true, Ordering::Relaxed);
        // SAFETY: inside the critical section, with `taken` set by us.
        unsafe {
            LOGGER.restore.get().write(restore);
            let stderr = &mut *LOGGER.stderr.get();
            if stderr.is_none() {
                *stderr = semihosting::io::stderr().ok();
            }
            (*LOGGER.encoder.get()).start_frame(|b| emit(stderr, b));
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called by defmt after a successful `acquire`.
        unsafe {
            let stderr = &mut *LOGGER.stderr.get();
            (*LOGGER.encoder.get()).end_frame(|b| emit(stderr, b));
            let restore = LOGGER.restore.get().read();
            LOGGER.taken.store(false, Ordering::Relaxed);
            critical_section::release(restore);
        }
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called by defmt between `acquire` and `release`.
        unsafe {
            let stderr = &mut *LOGGER.stderr.get();
            (*LOGGER.encoder.get()).write(bytes, |b| emit(stderr, b));
        }
    }
}
