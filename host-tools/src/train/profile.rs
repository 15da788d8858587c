//! Optional per-phase timers (`PICOFORMER_PROFILE=1`): where a training step's time goes.
//! Inner phases are summed over worker threads (CPU seconds); outer phases are wall-clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A timed phase.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Matrix products (all sgemm calls), CPU time.
    Gemm,
    /// Attention softmax, masking and weighted sums (forward and backward), CPU time.
    Attention,
    /// LayerNorm forward and backward, CPU time.
    LayerNorm,
    /// Smoothed cross-entropy forward and backward, CPU time.
    Loss,
    /// Dropout mask generation, CPU time.
    Dropout,
    /// Forward and backward over all shards, wall time.
    ForwardBackward,
    /// Summing the shards' gradients, wall time.
    Reduce,
    /// Clipping and AdamW, wall time.
    Optimizer,
    /// Dev-set greedy decoding, wall time.
    Eval,
}

const N: usize = 9;
const NAMES: [&str; N] = [
    "gemm (cpu)",
    "attention (cpu)",
    "layernorm (cpu)",
    "loss (cpu)",
    "dropout rng (cpu)",
    "fwd+bwd (wall)",
    "grad reduce (wall)",
    "optimizer (wall)",
    "eval (wall)",
];
static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];

/// Turns the timers on when `PICOFORMER_PROFILE` is set.
pub fn init_from_env() {
    ENABLED.store(std::env::var_os("PICOFORMER_PROFILE").is_some(), Ordering::Relaxed);
}

/// True when timing.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Runs `f`, adding its duration to `phase` when profiling.
#[inline]
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    NANOS[phase as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}

/// Adds the time since `since` to `phase` when profiling.
pub fn add(phase: Phase, since: Instant) {
    if enabled() {
        NANOS[phase as usize].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The accumulated seconds per phase, one line each, and resets them.
pub fn take_report() -> String {
    let mut s = String::new();
    for (name, n) in NAMES.iter().zip(&NANOS) {
        let secs = n.swap(0, Ordering::Relaxed) as f64 * 1e-9;
        s.push_str(&format!("  {name:<20} {secs:8.3} s\n"));
    }
    s
}
