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

/// Sine and cosine, for the positional encoding (which must match the trainer's exactly).
#[inline]
pub fn sin_cos(x: f32) -> (f32, f32) {
    libm::sincosf(x)
}
