//! Scalar functions, from `libm` (pure Rust: bit-identical on host and target).
//!
//! With the `fast-math` feature, `exp` (the only transcendental in the hot path: softmax) comes from
//! `micromath` instead. Measured on [-30, 0] (where softmax evaluates it), micromath's `exp` has a
//! relative error of at most 2.4e-3 against 7.2e-8 for libm. Its `sqrt` (6.1e-2 relative error) and
//! `ln` (0.12 absolute error) are too inaccurate for LayerNorm and log-softmax, so those stay on libm
//! in every build. See `docs/numerics.md`.

/// e^x.
#[inline]
pub fn exp(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::exp(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::expf(x)
    }
}

/// Square root.
#[inline]
pub fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// Natural logarithm.
#[inline]
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// Sine and cosine in f32 (Cody-Waite reduction by pi/4, Cephes' minimax polynomials), for the
/// positional encoding. Written here rather than taken from libm because libm's `sincosf` works in
/// f64 internally (soft-float on every Cortex-M) and costs 7 KiB of flash; this costs a few hundred
/// bytes and stays within 1e-7 of the true values (9.3e-8 measured over -100..8092) for |x| <= 8192 (positions times frequencies stay
/// below the longest sequence). Deterministic: the same f32 operations on every target, and the
/// trainer calls it too (through `positional_encoding`), so training and inference agree exactly.
pub fn sin_cos(x: f32) -> (f32, f32) {
    const FOUR_OVER_PI: f32 = 1.273_239_5;
    // pi/4 split into three parts so y * part is exact for the y that occur.
    const DP1: f32 = 0.785_156_25;
    const DP2: f32 = 2.418_756_5e-4;
    const DP3: f32 = 3.774_895e-8;
    let sign_sin = if x < 0.0 { -1.0 } else { 1.0 };
    let ax = x.abs();
    let mut j = (ax * FOUR_OVER_PI) as u32;
    let mut y = j as f32;
    if j & 1 == 1 {
        j += 1;
        y += 1.0;
    }
    let z = ((ax - y * DP1) - y * DP2) - y * DP3;
    let zz = z * z;
    let s = z + z * zz * ((-1.951_529_6e-4 * zz + 8.332_161e-3) * zz - 1.666_665_5e-1);
    let c = 1.0 - 0.5 * zz + zz * zz * ((2.443_315_7e-5 * zz - 1.388_731_6e-3) * zz + 4.166_664_6e-2);
    // Octant j (even) of |x|: 0 -> (s, c), 2 -> (c, -s), 4 -> (-s, -c), 6 -> (-c, s).
    let (sin, cos) = match j & 7 {
        0 => (s, c),
        2 => (c, -s),
        4 => (-s, -c),
        _ => (-c, s),
    };
    (sign_sin * sin, cos)
}
