//! Where a forward pass spends its instructions: an optional per-phase profile.
//!
//! With the `profile` feature, the runner wraps each kind of work (matrix-vector products,
//! activation quantization, attention, softmax, LayerNorm, cache writes, embedding, output, convolution) in a
//! [`Scope`]. Time is charged to the innermost open scope only, so the phases add up to the time
//! spent inside them and nothing is counted twice; whatever runs outside every scope (residual
//! adds, ReLU, control flow) is the caller's total minus [`Report::sum`].
//!
//! The clock is whatever the caller installs with [`set_clock`] (on the firmware, the timer that
//! counts QEMU's `-icount` instructions). Without a clock, or without the feature, scopes cost
//! nothing measurable: without the feature [`scope`] returns a zero-sized value with no `Drop`.
//! State lives behind a `critical_section::Mutex`, so no `unsafe` and no `static mut` is needed.

/// A kind of work in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Matrix-vector products (every linear layer, dequantization epilogue included).
    Matvec = 0,
    /// Quantizing an activation vector to int8 (and expanding it for the DSP kernel).
    Quantize = 1,
    /// Attention over the caches: query-key dot products and the weighted sum of values.
    Attention = 2,
    /// Softmax of the attention scores (its `exp` calls included).
    Softmax = 3,
    /// LayerNorm.
    LayerNorm = 4,
    /// Writing a key or value row into an attention cache (int8 caches quantize it there).
    CacheWrite = 5,
    /// Token embedding plus positional encoding.
    Embed = 6,
    /// Log-softmax of the logits and the choice of the next token(s).
    Output = 7,
    /// The encoder's depthwise convolution (models with `conv_kernel > 0`).
    Conv = 8,
}

/// Number of [`Phase`]s.
pub const PHASES: usize = 9;

impl Phase {
    /// Every phase, in [`Phase`] order.
    pub const ALL: [Phase; PHASES] = [
        Phase::Matvec,
        Phase::Quantize,
        Phase::Attention,
        Phase::Softmax,
        Phase::LayerNorm,
        Phase::CacheWrite,
        Phase::Embed,
        Phase::Output,
        Phase::Conv,
    ];

    /// Short lowercase name (`matvec`, `quantize`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Matvec => "matvec",
            Phase::Quantize => "quantize",
            Phase::Attention => "attention",
            Phase::Softmax => "softmax",
            Phase::LayerNorm => "layernorm",
            Phase::CacheWrite => "cache",
            Phase::Embed => "embed",
            Phase::Output => "output",
            Phase::Conv => "conv",
        }
    }
}

/// Clock ticks and scope entries per phase since the last [`reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Ticks charged to each phase, indexed by `Phase as usize`.
    pub ticks: [u64; PHASES],
    /// Times each phase was entered.
    pub calls: [u32; PHASES],
}

impl Report {
    /// Ticks of all phases together.
    pub fn sum(&self) -> u64 {
        self.ticks.iter().sum()
    }
}

#[cfg(feature = "profile")]
mod imp {
    use core::cell::RefCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    use critical_section::Mutex;

    use super::{Phase, Report, PHASES};

    /// No open scope.
    const NONE: u8 = u8::MAX;

    /// A clock is installed: checked before anything else, so an idle profile costs a load and a branch.
    static ENABLED: AtomicBool = AtomicBool::new(false);

    struct State {
        clock: Option<fn() -> u32>,
        current: u8,
        last: u32,
        report: Report,
    }

    static STATE: Mutex<RefCell<State>> = Mutex::new(RefCell::new(State {
        clock: None,
        current: NONE,
        last: 0,
        report: Report {
            ticks: [0; PHASES],
            calls: [0; PHASES],
        },
    }));

    impl State {
        /// Charges the ticks since the last switch to the open phase and makes `next` the open one.
        fn switch(&mut self, next: u8) {
            let Some(clock) = self.clock else { return };
            let now = clock();
            if let Some(t) = self.report.ticks.get_mut(usize::from(self.current)) {
                *t += u64::from(now.wrapping_sub(self.last));
            }
            self.last = now;
            self.current = next;
        }
    }

    pub fn set_clock(clock: Option<fn() -> u32>) {
        critical_section::with(|cs| {
            let mut s = STATE.borrow_ref_mut(cs);
            s.clock = clock;
            s.current = NONE;
        });
        ENABLED.store(clock.is_some(), Ordering::Relaxed);
    }

    pub fn reset() {
        critical_section::with(|cs| {
            let mut s = STATE.borrow_ref_mut(cs);
            s.report = Report::default();
            s.current = NONE;
        });
    }

    pub fn report() -> Report {
        critical_section::with(|cs| STATE.borrow_ref(cs).report)
    }

    /// An open phase; closing it (drop) returns the clock to the enclosing phase.
    pub struct Scope {
        outer: u8,
    }

    #[inline]
    pub fn scope(phase: Phase) -> Scope {
        if !ENABLED.load(Ordering::Relaxed) {
            return Scope { outer: NONE };
        }
        critical_section::with(|cs| {
            let mut s = STATE.borrow_ref_mut(cs);
            let outer = s.current;
            if s.clock.is_some() {
                s.switch(phase as u8);
                if let Some(c) = s.report.calls.get_mut(phase as usize) {
                    *c += 1;
                }
            }
            Scope { outer }
        })
    }

    impl Drop for Scope {
        #[inline]
        fn drop(&mut self) {
            if !ENABLED.load(Ordering::Relaxed) {
                return;
            }
            critical_section::with(|cs| STATE.borrow_ref_mut(cs).switch(self.outer));
        }
    }
}

#[cfg(not(feature = "profile"))]
mod imp {
    use super::{Phase, Report};

    pub fn set_clock(_clock: Option<fn() -> u32>) {}

    pub fn reset() {}

    pub fn report() -> Report {
        Report::default()
    }

    /// Without the `profile` feature a scope is nothing.
    pub struct Scope;

    #[inline(always)]
    pub fn scope(_phase: Phase) -> Scope {
        Scope
    }
}

pub use imp::Scope;

/// Installs the clock the profile reads (`None` stops profiling). A no-op without the `profile` feature.
pub fn set_clock(clock: Option<fn() -> u32>) {
    imp::set_clock(clock);
}

/// Clears the report. A no-op without the `profile` feature.
pub fn reset() {
    imp::reset();
}

/// Ticks and entries per phase since the last [`reset`] (all zero without the `profile` feature).
pub fn report() -> Report {
    imp::report()
}

/// Opens `phase` until the returned value is dropped: `let _p = profile::scope(Phase::Matvec);`.
#[inline(always)]
pub fn scope(phase: Phase) -> Scope {
    imp::scope(phase)
}
