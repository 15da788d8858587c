//! Symmetric int8 quantization, shared by the exporter (weights), the trainer (fake quantization)
//! and the engine (activations), so all three round the same way.

/// Largest magnitude of a quantized value (symmetric: -127..=127, -128 unused).
pub const QMAX: f32 = 127.0;

/// Rounds half away from zero to the nearest integer, saturating to i32.
#[inline]
pub fn round_half_away(x: f32) -> i32 {
    libm::roundf(x) as i32
}

/// Quantizes `x` into `out` with one symmetric scale, returned: `x[i] ≈ out[i] * scale`.
///
/// An all-zero (or empty) input gets scale 0 and all-zero output. Pairs beyond the shorter of the
/// two slices are left untouched.
#[inline(never)]
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let inv = QMAX / max;
    for (q, &v) in out.iter_mut().zip(x) {
        *q = round_half_away(v * inv).clamp(-127, 127) as i8;
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
