//! Scalar functions, from `libm` (bit-identical on host and target) or, with the `fast-math`
//! feature, from `micromath` (faster on soft-float cores, less accurate: see `docs/numerics.md`).

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
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::sqrt(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::sqrtf(x)
    }
}

/// Natural logarithm.
#[inline]
pub fn ln(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        micromath::F32Ext::ln(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::logf(x)
    }
}

/// Sine and cosine. Always `libm`: the positional encoding must match the trainer's exactly,
/// and it costs a few hundred calls per input, nothing next to the matrix products.
#[inline]
pub fn sin_cos(x: f32) -> (f32, f32) {
    libm::sincosf(x)
}
