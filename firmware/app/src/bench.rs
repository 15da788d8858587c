//! On-target kernel benchmark (`!bench`) and self-test (`!selftest`).
//!
//! Both run in the part of the static buffer the model's workspace leaves free, on deterministic
//! pseudo-random data (xorshift32), so every run on one board gives the same numbers.
//!
//! `!bench i8 R C` times, on one `R x C` matrix (C inputs, R outputs), the portable row-major
//! int8 kernel (`kernels::matvec_i8`, the baseline) and the optimized path the engine uses on this
//! core (activation expansion + `kernels::panel::matvec_i8_panels` on a 4-row panel copy of the
//! same matrix), and checks that both give bit-identical outputs. `!bench f32 R C` does the same
//! for `kernels::matvec_f32` and `kernels::matvec_f32_fast`. The cost of reading the timer
//! (measured in the same run) is subtracted.
//!
//! `!selftest N` runs N random shapes and compares the optimized kernels' integer dot products
//! (int8) and output bits (f32) with the portable reference.

use picoformer::kernels::{self, dot_i8, panel};

use crate::InstrCounter;

/// Why a bench or self-test could not run or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchError {
    /// The free part of the buffer is too small for the shape.
    NoRoom {
        /// Bytes the shape needs.
        needed: usize,
        /// Bytes free.
        free: usize,
    },
    /// An optimized kernel disagreed with the portable one.
    Mismatch {
        /// `i8` or `f32`.
        kernel: &'static str,
        /// Shape.
        rows: usize,
        /// Shape.
        cols: usize,
        /// First row that differs.
        row: usize,
    },
}

impl core::fmt::Display for BenchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BenchError::NoRoom { needed, free } => {
                write!(
                    f,
                    "the bench needs {needed} bytes of RAM, {free} are free after the model's workspace"
                )
            }
            BenchError::Mismatch {
                kernel,
                rows,
                cols,
                row,
            } => write!(
                f,
                "{kernel} optimized kernel differs from the portable one at {rows}x{cols}, row {row}"
            ),
        }
    }
}

/// Which matrix-vector product `!bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Int8 weights and activations, i32 accumulation.
    I8,
    /// f32.
    F32,
}

/// Instruction counts of one `!bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchResult {
    /// Instructions of the portable kernel (timer overhead subtracted).
    pub portable: u64,
    /// Instructions of the optimized path (timer overhead subtracted).
    pub optimized: u64,
    /// Instructions of one pair of timer readings (what was subtracted).
    pub overhead: u64,
}

/// xorshift32.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn i8(&mut self) -> i8 {
        (((self.next() >> 8) % 255) as i32 - 127) as i8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 4) as usize % n.max(1)
    }
    fn f32(&mut self) -> f32 {
        ((self.next() >> 8) as f32 / (1u32 << 23) as f32) - 1.0
    }
}

/// Carves typed slices off a byte buffer, each 4-byte aligned.
struct Carver<'a> {
    rest: &'a mut [u8],
    needed: usize,
    free: usize,
}

impl<'a> Carver<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        let free = buf.len();
        Carver {
            rest: buf,
            needed: 0,
            free,
        }
    }

    fn take<T: bytemuck::Pod>(&mut self, n: usize) -> Option<&'a mut [T]> {
        let pad = self.rest.as_ptr().align_offset(4).min(3);
        let bytes = n * core::mem::size_of::<T>();
        self.needed += pad + bytes.div_ceil(4) * 4;
        let buf = core::mem::take(&mut self.rest);
        if buf.len() < pad + bytes.div_ceil(4) * 4 {
            return None;
        }
        let (_, buf) = buf.split_at_mut(pad);
        let (head, tail) = buf.split_at_mut(bytes.div_ceil(4) * 4);
        self.rest = tail;
        bytemuck::try_cast_slice_mut(head.get_mut(..bytes)?).ok()
    }

    fn no_room(&self) -> BenchError {
        BenchError::NoRoom {
            needed: self.needed,
            free: self.free,
        }
    }
}

/// Instructions between two timer readings, `ticks` converted with the counter's tick length.
fn instructions<C: InstrCounter>(counter: &C, ticks: u64) -> u64 {
    ticks * u64::from(counter.tick_ps()) / (1000u64 << crate::ICOUNT_SHIFT)
}

/// Ticks `f` takes.
#[inline(never)]
fn time<C: InstrCounter>(counter: &mut C, f: impl FnOnce()) -> u64 {
    let t0 = counter.now();
    f();
    let t1 = counter.now();
    t1.wrapping_sub(t0)
}

/// Times the portable and the optimized kernel on one `rows x cols` matrix (see the module doc).
pub fn bench<C: InstrCounter>(
    counter: &mut C,
    scratch: &mut [u8],
    kernel: Kernel,
    rows: usize,
    cols: usize,
) -> Result<BenchResult, BenchError> {
    let mut rng = Rng(0x1234_5678 ^ (rows as u32) << 16 ^ cols as u32);
    let mut c = Carver::new(scratch);
    let empty = time(counter, || {});
    let (portable, optimized, mismatch) = match kernel {
        Kernel::I8 => {
            let (Some(w), Some(wp), Some(xq), Some(xe), Some(scales), Some(bias), Some(y1), Some(y2)) = (
                c.take::<i8>(rows * cols),
                c.take::<i8>(rows * cols),
                c.take::<i8>(cols),
                c.take::<u32>(2 * (cols / 4)),
                c.take::<f32>(rows),
                c.take::<f32>(rows),
                c.take::<f32>(rows),
                c.take::<f32>(rows),
            ) else {
                return Err(c.no_room());
            };
            w.iter_mut().for_each(|v| *v = rng.i8());
            xq.iter_mut().for_each(|v| *v = rng.i8());
            scales.iter_mut().for_each(|v| *v = (rng.f32() + 1.5) * 0.01);
            bias.iter_mut().for_each(|v| *v = rng.f32());
            panel::to_panels(w, cols, wp);
            let x_scale = 0.02;
            let (w, wp, xq, scales, bias) = (&*w, &*wp, &*xq, &*scales, &*bias);
            let p = time(counter, || kernels::matvec_i8(w, scales, xq, x_scale, bias, y1));
            let o = time(counter, || {
                let n = panel::expand_activation(xq, xe);
                let xe = xe.get(..n).unwrap_or(&[]);
                panel::matvec_i8_panels(wp, scales, xq, xe, x_scale, bias, y2);
            });
            (p, o, first_difference(y1, y2))
        }
        Kernel::F32 => {
            let (Some(w), Some(x), Some(bias), Some(y1), Some(y2)) = (
                c.take::<f32>(rows * cols),
                c.take::<f32>(cols),
                c.take::<f32>(rows),
                c.take::<f32>(rows),
                c.take::<f32>(rows),
            ) else {
                return Err(c.no_room());
            };
            w.iter_mut().for_each(|v| *v = rng.f32());
            x.iter_mut().for_each(|v| *v = rng.f32());
            bias.iter_mut().for_each(|v| *v = rng.f32());
            let (w, x, bias) = (&*w, &*x, &*bias);
            let p = time(counter, || kernels::matvec_f32(w, x, bias, y1));
            let o = time(counter, || kernels::matvec_f32_fast(w, x, bias, y2));
            (p, o, first_difference(y1, y2))
        }
    };
    if let Some(row) = mismatch {
        return Err(BenchError::Mismatch {
            kernel: match kernel {
                Kernel::I8 => "i8",
                Kernel::F32 => "f32",
            },
            rows,
            cols,
            row,
        });
    }
    Ok(BenchResult {
        portable: instructions(counter, portable.saturating_sub(empty)),
        optimized: instructions(counter, optimized.saturating_sub(empty)),
        overhead: instructions(counter, empty),
    })
}

/// Index of the first pair of floats whose bits differ.
fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}

/// Largest shapes the self-test draws (rows, cols): the first whose buffers fit the free RAM.
const SELFTEST_MAX: [(usize, usize); 3] = [(37, 300), (13, 64), (6, 24)];

/// Bytes [`selftest`] needs for shapes up to `rows x cols` (with alignment padding).
fn selftest_bytes((rows, cols): (usize, usize)) -> usize {
    let r4 = |n: usize| n.div_ceil(4) * 4 + 3;
    2 * r4(rows * cols) + r4(cols) + r4(8 * (cols / 4)) + 5 * r4(4 * rows) + r4(4 * rows * cols) + r4(4 * cols)
}

/// Runs `cases` random shapes through the optimized kernels and compares them with the portable
/// ones: int8 integer dot products (row-major [`dot_i8`] vs the panel kernel, optimized and
/// portable) and f32 output bits. Returns the number of multiply-accumulates checked.
pub fn selftest(scratch: &mut [u8], cases: usize, seed: u32) -> Result<u64, BenchError> {
    let mut rng = Rng(seed | 1);
    let free = scratch.len();
    let (max_r, max_c) = SELFTEST_MAX
        .iter()
        .copied()
        .find(|&s| selftest_bytes(s) <= free)
        .unwrap_or(SELFTEST_MAX[2]);
    let mut c = Carver::new(scratch);
    let (Some(w), Some(wp), Some(xq), Some(xe), Some(d1), Some(d2), Some(wf), Some(xf), Some(bias), Some(y1), Some(y2)) = (
        c.take::<i8>(max_r * max_c),
        c.take::<i8>(max_r * max_c),
        c.take::<i8>(max_c),
        c.take::<u32>(2 * (max_c / 4)),
        c.take::<i32>(max_r),
        c.take::<i32>(max_r),
        c.take::<f32>(max_r * max_c),
        c.take::<f32>(max_c),
        c.take::<f32>(max_r),
        c.take::<f32>(max_r),
        c.take::<f32>(max_r),
    ) else {
        return Err(c.no_room());
    };
    let mut macs = 0u64;
    for case in 0..cases {
        let rows = 1 + rng.below(max_r);
        let cols = 1 + rng.below(max_c);
        // Every fourth case uses only the extremes, to reach the largest sums (-128 in the
        // activation only every eighth: the Cortex-M0 expansion leaves such vectors to the
        // portable kernel).
        let extreme = case % 4 == 3;
        let w = w.get_mut(..rows * cols).unwrap_or(&mut []);
        let wp = wp.get_mut(..rows * cols).unwrap_or(&mut []);
        let xq = xq.get_mut(..cols).unwrap_or(&mut []);
        let extremes: &[i8] = if case % 8 == 7 {
            &[127, -127, -128]
        } else {
            &[127, -127]
        };
        for v in w.iter_mut() {
            *v = if extreme {
                [127, -127, -128].get(rng.below(3)).copied().unwrap_or(0)
            } else {
                rng.i8()
            };
        }
        for v in xq.iter_mut() {
            *v = if extreme {
                extremes.get(rng.below(extremes.len())).copied().unwrap_or(0)
            } else {
                rng.i8()
            };
        }
        panel::to_panels(w, cols, wp);
        let words = panel::expand_activation(xq, xe);
        let mut xe_ref = [0u32; 2 * (SELFTEST_MAX[0].1 / 4)];
        let ref_words = panel::expand_activation_portable(xq, &mut xe_ref);
        if words != ref_words || xe.get(..words) != xe_ref.get(..words) {
            return Err(BenchError::Mismatch {
                kernel: "expand",
                rows,
                cols,
                row: 0,
            });
        }
        let (d1, d2) = (
            d1.get_mut(..rows).unwrap_or(&mut []),
            d2.get_mut(..rows).unwrap_or(&mut []),
        );
        for (d, row) in d1.iter_mut().zip(w.chunks_exact(cols)) {
            *d = dot_i8(row, xq);
        }
        panel::panel_dots(wp, xq, xe.get(..words).unwrap_or(&[]), d2);
        let mismatch = |row| BenchError::Mismatch {
            kernel: "i8",
            rows,
            cols,
            row,
        };
        if let Some(row) = d1.iter().zip(d2.iter()).position(|(a, b)| a != b) {
            return Err(mismatch(row));
        }
        let mut portable_panel_row = None;
        panel::panel_dots_portable(wp, xq, |r, dot| {
            if portable_panel_row.is_none() && d1.get(r) != Some(&dot) {
                portable_panel_row = Some(r);
            }
        });
        if let Some(row) = portable_panel_row {
            return Err(mismatch(row));
        }

        let wf = wf.get_mut(..rows * cols).unwrap_or(&mut []);
        let xf = xf.get_mut(..cols).unwrap_or(&mut []);
        let (bias, y1, y2) = (
            bias.get_mut(..rows).unwrap_or(&mut []),
            y1.get_mut(..rows).unwrap_or(&mut []),
            y2.get_mut(..rows).unwrap_or(&mut []),
        );
        for v in wf.iter_mut().chain(xf.iter_mut()).chain(bias.iter_mut()) {
            // Wide exponents make rounding order visible.
            *v = rng.f32() * [1.0, 1e-3, 1e3, 3.0e7][rng.below(4)];
        }
        kernels::matvec_f32(wf, xf, bias, y1);
        kernels::matvec_f32_fast(wf, xf, bias, y2);
        if let Some(row) = first_difference(y1, y2) {
            return Err(BenchError::Mismatch {
                kernel: "f32",
                rows,
                cols,
                row,
            });
        }
        if let Some(row) = dequant_mismatch(&mut rng) {
            return Err(BenchError::Mismatch {
                kernel: "dequant",
                rows,
                cols,
                row,
            });
        }
        macs += 2 * (rows * cols) as u64;
    }
    Ok(macs)
}

/// Checks [`kernels::dequant::dequant`] (on the Cortex-M0, its integer assembly) against the float
/// expression on 64 random operand sets: significands with few bits (exact ties), exponents from
/// tiny to huge, biases cancelling the product, zeros, subnormals and infinities. Returns the
/// index of the first that differs.
fn dequant_mismatch(rng: &mut Rng) -> Option<usize> {
    let float = |rng: &mut Rng| -> f32 {
        let bits = rng.next();
        let keep = !((1u32 << rng.below(24)) - 1);
        let exp = match rng.below(8) {
            0 => rng.below(256) as u32,
            1 => 1 + rng.below(30) as u32,
            2 => 225 + rng.below(30) as u32,
            _ => 107 + rng.below(40) as u32,
        };
        match rng.below(16) {
            0 => [0.0, -0.0, f32::INFINITY, 1e-40, -3e-39, f32::MIN_POSITIVE]
                .get(rng.below(6))
                .copied()
                .unwrap_or(0.0),
            1..=5 => f32::from_bits((bits & 0x807f_ffff & keep) | exp << 23),
            _ => f32::from_bits((bits & 0x807f_ffff) | exp << 23),
        }
    };
    (0..64).position(|_| {
        let dot = (rng.next() as i32) >> rng.below(32);
        let (s, xs) = (float(rng), float(rng));
        let mut b = float(rng);
        if rng.below(4) == 0 {
            // Cancel the product, to the last bits.
            let q = dot as f32 * (s * xs);
            b = f32::from_bits((-q).to_bits() ^ (rng.next() & 0xff) >> rng.below(9));
        }
        let want = dot as f32 * (s * xs) + b;
        let got = kernels::dequant::dequant(dot, s, xs, b);
        want.to_bits() != got.to_bits() && !(want.is_nan() && got.is_nan())
    })
}
