//! Symmetric int8 quantization, shared by the exporter (weights), the trainer (fake quantization)
//! and the engine (activations), so all three round the same way.

/// Largest magnitude of a quantized value (symmetric: -127..=127, -128 unused).
pub const QMAX: f32 = 127.0;

/// The largest f32 below 0.5 (`0.5 - 2^-25`).
const JUST_BELOW_HALF: f32 = 0.499_999_97;

/// Rounds half away from zero to the nearest integer, saturating to i32 (NaN gives 0): the same
/// result as `libm::roundf(x) as i32` for every f32, in a few instructions instead of a call.
///
/// Why it is exact: adding `0.5 - 2^-25` with the sign of `x` moves `x` past the next integer
/// exactly when its fraction is at least one half. A fraction of exactly one half lands on the
/// midpoint between the integer and its predecessor float and rounds (to even) onto the
/// integer; a fraction just below one half stays below it. At `|x| >= 2^23`, `x` is an integer
/// and the addition is less than half its spacing, so it is unchanged. `as i32` truncates.
/// Tested against `libm::roundf` over every float in `[-2^24, 2^24]` near each half-integer
/// and a stride of all 2^32 bit patterns (`tests/kernels_quant.rs`).
#[inline]
pub fn round_half_away(x: f32) -> i32 {
    (x + JUST_BELOW_HALF.copysign(x)) as i32
}

/// Quantizes `x` into `out` with one symmetric scale, returned: `x[i] ≈ out[i] * scale`.
///
/// An all-zero (or empty) input gets scale 0 and all-zero output. Pairs beyond the shorter of the
/// two slices are left untouched.
///
/// A NaN or infinite value anywhere in `x` gives an all-zero row and scale 0.
///
/// Written for the instruction count on Cortex-M, where the engine quantizes every activation
/// vector (it was 13% of a G2P model's instructions with `f32::max`, a `fmaxf` call per value on
/// Armv7E-M). The maximum compares magnitudes as integers (for non-negative floats the order of
/// the bit patterns is the order of the values, and NaN sorts above infinity), four at a time.
/// No clamp is needed when `inv = 127 / max` is finite: with `|v| <= max`,
/// `|v * inv| <= 127 (1 + 2^-24)^2 < 127.00002`, which rounds to at most 127. When `max` is below
/// `127 / f32::MAX` (about 3.7e-37) `inv` overflows to infinity and the clamped loop runs instead.
#[inline(never)]
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    const MAGNITUDE: u32 = 0x7FFF_FFFF;
    let (groups, tail) = x.as_chunks::<4>();
    let (mut m0, mut m1, mut m2, mut m3) = (0u32, 0u32, 0u32, 0u32);
    for [a, b, c, d] in groups {
        m0 = m0.max(a.to_bits() & MAGNITUDE);
        m1 = m1.max(b.to_bits() & MAGNITUDE);
        m2 = m2.max(c.to_bits() & MAGNITUDE);
        m3 = m3.max(d.to_bits() & MAGNITUDE);
    }
    for v in tail {
        m0 = m0.max(v.to_bits() & MAGNITUDE);
    }
    let max = f32::from_bits(m0.max(m1).max(m2.max(m3)));
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let inv = QMAX / max;
    if !inv.is_finite() {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = round_half_away(v * inv).clamp(-127, 127) as i8;
        }
        return max / QMAX;
    }
    let q = |v: f32| round_half_away(v * inv) as i8;
    let (out_groups, _) = out.as_chunks_mut::<4>();
    for (o, [a, b, c, d]) in out_groups.iter_mut().zip(groups) {
        *o = [q(*a), q(*b), q(*c), q(*d)];
    }
    let done = 4 * out_groups.len().min(groups.len());
    for (o, &v) in out.iter_mut().zip(x).skip(done) {
        *o = q(v);
    }
    max / QMAX
}

/// The value the engine will see for `x` after int8 weight quantization of its row: `q * scale`.
/// Used by quantization-aware training and by export checks.
pub fn fake_quantize_row(row: &mut [f32]) {
    let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        return;
    }
    let inv = QMAX / max;
    let scale = max / QMAX;
    for v in row.iter_mut() {
        *v = round_half_away(*v * inv).clamp(-127, 127) as f32 * scale;
    }
}
