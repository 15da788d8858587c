//! Numeric kernels: matrix-vector products (f32 and int8), LayerNorm, softmax, ReLU.
//!
//! These portable versions are the reference; any target-specific kernel is tested against them.
//! Summation orders are fixed, so the host and a Cortex-M give identical f32 results.
//!
//! - [`dequant`]: the int8 kernels' dequantization with integer operations, for cores without an
//!   FPU (bit-identical to the float expression).
//! - [`panel`]: the 4-row panel layout of int8 matrices (blob flag `FLAG_I8_PANELS`), its
//!   portable kernel and the dispatcher to the fastest kernel for the target.
//! - `dsp` (Armv7E-M / Armv8-M with the DSP extension): the `SMLAD` int8 kernel.
//! - `m0` (Armv6-M: Cortex-M0/M0+): the scalar `MULS` int8 kernel.
//! - `fpu` (hard-float Cortex-M4/M7/M33): the `VMLA` f32 kernel, bit-identical to [`matvec_f32`].

use crate::math;

pub mod dequant;
#[cfg(picoformer_dsp)]
mod dsp;
#[cfg(picoformer_fpu)]
mod fpu;
#[cfg(picoformer_v6m)]
mod m0;
pub mod panel;

/// Lanes of partial sums in the f32 dot product (fixed, so results do not depend on the target).
const LANES: usize = 8;

/// Dot product of two f32 vectors with eight fixed partial sums (vectorizes on the host).
///
/// The eight sums are separate locals, written out: as an array they stayed in memory on
/// Cortex-M at opt-level "s" (a load, a store and index arithmetic around every multiply-add:
/// 13 instructions per MAC instead of about 3). Same order of operations either way.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, |y: &f32| *y)
}

/// [`dot_f32`] of f32 values `a` with values `b` converted to f32 by `f`: eight lane sums, lane
/// `i` taking elements `8k + i`, combined pairwise, then the tail (`len % 8`) summed in order.
#[inline(always)]
pub fn dot_lanes<T>(a: &[f32], b: &[T], f: impl Fn(&T) -> f32) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let (mut s0, mut s1, mut s2, mut s3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    let (mut s4, mut s5, mut s6, mut s7) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for (ca, cb) in ac.iter().zip(bc) {
        let [x0, x1, x2, x3, x4, x5, x6, x7] = *ca;
        let [y0, y1, y2, y3, y4, y5, y6, y7] = cb;
        s0 += x0 * f(y0);
        s1 += x1 * f(y1);
        s2 += x2 * f(y2);
        s3 += x3 * f(y3);
        s4 += x4 * f(y4);
        s5 += x5 * f(y5);
        s6 += x6 * f(y6);
        s7 += x7 * f(y7);
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * f(y)).sum();
    (((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))) + tail
}

/// `y = W x + bias` for a row-major `W` of `y.len()` rows and `x.len()` columns.
#[inline(never)]
pub fn matvec_f32(w: &[f32], x: &[f32], bias: &[f32], y: &mut [f32]) {
    let cols = x.len().max(1);
    for ((yi, row), b) in y.iter_mut().zip(w.chunks_exact(cols)).zip(bias) {
        *yi = dot_f32(row, x) + b;
    }
}

/// `y = W x + bias` with the fastest kernel for this target: the `VMLA` kernel on hard-float
/// Cortex-M, [`matvec_f32`] elsewhere. Bit-identical to [`matvec_f32`].
#[inline]
pub fn matvec_f32_fast(w: &[f32], x: &[f32], bias: &[f32], y: &mut [f32]) {
    #[cfg(picoformer_fpu)]
    fpu::matvec_f32(w, x, bias, y);
    #[cfg(not(picoformer_fpu))]
    matvec_f32(w, x, bias, y);
}

/// Dot product of two int8 vectors, accumulated exactly in i32.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// `y = dequant(Wq xq) + bias`: int8 weights with one scale per row, an int8 activation vector with
/// one scale, i32 accumulation.
#[inline(never)]
pub fn matvec_i8(w: &[i8], scales: &[f32], xq: &[i8], x_scale: f32, bias: &[f32], y: &mut [f32]) {
    let cols = xq.len().max(1);
    for (((yi, row), s), b) in y.iter_mut().zip(w.chunks_exact(cols)).zip(scales).zip(bias) {
        *yi = dot_i8(row, xq) as f32 * (s * x_scale) + b;
    }
}

/// LayerNorm of `x` into `out`: `(x - mean) / sqrt(var + eps) * gain + shift`, biased variance.
#[inline(never)]
pub fn layer_norm_into(x: &[f32], gain: &[f32], shift: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / math::sqrt(var + eps);
    for (((o, v), g), b) in out.iter_mut().zip(x).zip(gain).zip(shift) {
        *o = (v - mean) * inv * g + b;
    }
}

/// LayerNorm in place.
#[inline(never)]
pub fn layer_norm(x: &mut [f32], gain: &[f32], shift: &[f32], eps: f32) {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / math::sqrt(var + eps);
    for ((v, g), b) in x.iter_mut().zip(gain).zip(shift) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Softmax in place, subtracting the maximum first so `exp` never overflows.
#[inline(never)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = math::exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Log-softmax in place: `x - max - ln(sum(exp(x - max)))`.
#[inline(never)]
pub fn log_softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = x.iter().map(|&v| math::exp(v - max)).sum();
    let shift = max + math::ln(sum);
    x.iter_mut().for_each(|v| *v -= shift);
}

/// ReLU in place.
pub fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// `x += y`, element-wise.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Index of the largest value (the first one on ties); 0 for an empty slice.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// Depthwise convolution over positions at row `r` of `rows` (`n` rows of `out.len()` channels):
/// `out[c] = bias[c] + sum_j weight[c * kernel + j] * rows[r + j - kernel / 2][c]`, with rows outside
/// `0..n` read as zero (the sequence is zero-padded at both ends).
pub fn depthwise_conv_row(
    rows: &[f32],
    n: usize,
    r: usize,
    weight: &[f32],
    bias: &[f32],
    kernel: usize,
    out: &mut [f32],
) {
    let d = out.len();
    out.iter_mut().zip(bias).for_each(|(o, b)| *o = *b);
    let half = kernel / 2;
    for j in 0..kernel {
        let Some(t) = (r + j).checked_sub(half).filter(|&t| t < n) else {
            continue;
        };
        let row = rows.get(t * d..(t + 1) * d).unwrap_or(&[]);
        let taps = weight.iter().skip(j).step_by(kernel.max(1));
        for ((o, x), w) in out.iter_mut().zip(row).zip(taps) {
            *o += w * x;
        }
    }
}
