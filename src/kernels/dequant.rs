//! The int8 kernels' dequantization, `dot as f32 * (scale * x_scale) + bias`, computed with
//! integer operations for cores without an FPU, bit-identical to the float expression.
//!
//! On the Cortex-M0 the conversion and the three float operations are calls into the generic
//! soft-float routines, about 410 instructions per output row: more than the row's dot product
//! at 32 columns. The same three correctly rounded (to nearest, ties to even) IEEE-754 operations
//! can be done on unpacked significands with 32-bit integer instructions only: 24 x 24-bit
//! products from four 12 x 12-bit multiplications, rounding straight from the upper 32 bits of
//! the product with the lower 16 folded into a sticky bit, a shift-and-jam addition, and a
//! binary-search normalization (Armv6-M has no count-leading-zeros).
//!
//! This module is the reference of that algorithm ([`dequant_integer`], tested against the host's
//! FPU in `tests/kernels_panel.rs`), written step for step like the Cortex-M0 assembly that runs
//! it (`kernels::m0`, compared with the float expression by the firmware's `!selftest`). Its fast path covers every operand and intermediate result finite and normal
//! (a zero `bias` included) and `0 < |dot| < 2^24`; anything else (zeros, subnormals, infinities,
//! NaNs, overflow) is handed to the float expression itself, so results are identical for every
//! input.

/// What the fast path needs of `x_scale`, computed once per matrix-vector product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct XScale {
    /// Upper 12 bits of the significand (implicit bit included).
    pub hi: u32,
    /// Lower 12 bits of the significand.
    pub lo: u32,
    /// The significand shifted left by 7 (the product with `scale`'s implicit bit, over 2^16).
    pub sig7: u32,
    /// Biased exponent.
    pub exp: u32,
}

impl XScale {
    /// The constants of `x_scale`, or `None` unless it is positive, finite and normal (activation
    /// scales are; the float expression is used for every row otherwise).
    pub fn new(x_scale: f32) -> Option<Self> {
        let bits = x_scale.to_bits();
        let exp = bits >> 23;
        if exp == 0 || exp >= 0xff {
            return None;
        }
        let sig = (bits & 0x7f_ffff) | 0x80_0000;
        Some(XScale {
            hi: sig >> 12,
            lo: sig & 0xfff,
            sig7: sig << 7,
            exp,
        })
    }
}

/// Left shifts that bring a significand whose top bit is among bits 16..23 to bit 23, by its
/// bits 16..23 (the last steps of the normalization): the leading zeros of the byte.
#[allow(clippy::indexing_slicing)] // `i < 256` indexes a 256-entry table.
pub const NORMALIZE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 1;
    while i < 256 {
        table[i] = (i as u8).leading_zeros() as u8;
        i += 1;
    }
    table
};

/// `dot as f32 * (scale * x_scale) + bias` the fastest way for this target, bit for bit: the
/// Cortex-M0 assembly on Armv6-M, the float expression elsewhere. Used by the on-target self-test.
#[inline]
pub fn dequant(dot: i32, scale: f32, x_scale: f32, bias: f32) -> f32 {
    #[cfg(picoformer_v6m)]
    return super::m0::dequant(dot, scale, x_scale, bias);
    #[cfg(not(picoformer_v6m))]
    {
        dot as f32 * (scale * x_scale) + bias
    }
}

/// `dot as f32 * (scale * x_scale) + bias`, bit for bit, by the integer algorithm of this module
/// (the reference of the Cortex-M0 assembly).
pub fn dequant_integer(dot: i32, scale: f32, x_scale: f32, bias: f32) -> f32 {
    let fast = XScale::new(x_scale).and_then(|k| fast(dot, scale.to_bits(), bias.to_bits(), &k));
    match fast {
        Some(bits) => f32::from_bits(bits),
        None => dot as f32 * (scale * x_scale) + bias,
    }
}

/// Rounds the upper 32 bits `u` of a 24 x 24-bit product (in `[2^30, 2^32)`, lowest bit sticky)
/// to 24 bits, nearest even: a significand in `[2^23, 2^24]` (2^24 when the rounding carries
/// out: still the right value, and a valid multiplicand) and the biased exponent, `e` if the
/// product is below 2^47.
#[inline(always)]
fn round_product(mut u: u32, mut e: i32) -> (u32, i32) {
    if u >> 31 != 0 {
        u = (u >> 1) | (u & 1);
        e += 1;
    }
    ((u + 63 + ((u >> 7) & 1)) >> 7, e)
}

/// Whether a biased exponent is that of a normal float, with room for a rounding carry
/// (254 is left to the float expression).
#[inline(always)]
fn normal(e: i32) -> bool {
    (e - 1) as u32 <= 252
}

/// The fast path of [`dequant`] on the operands' bits; `None` outside its domain.
pub fn fast(dot: i32, scale: u32, bias: u32, k: &XScale) -> Option<u32> {
    // p = scale * x_scale: (2^23 + fh 2^12 + fl) (hi 2^12 + lo), over 2^16.
    let es = ((scale << 1) >> 24) as i32;
    if !normal(es) {
        return None;
    }
    let (fh, fl) = ((scale << 9) >> 21, (scale << 20) >> 20);
    let mid = fh * k.lo + fl * k.hi;
    let low = fl * k.lo + ((mid << 28) >> 16);
    let u = ((fh * k.hi) << 8) + (mid >> 4) + (low >> 16) + k.sig7;
    let (mp, ep) = round_product(u | u32::from(low << 16 != 0), es + k.exp as i32 - 127);
    if !normal(ep) {
        return None;
    }
    // q = dot * p, dot exact in f32 and normalized to [2^23, 2^24) by a binary search.
    let mut x = dot.unsigned_abs();
    if x == 0 || x >> 24 != 0 {
        return None;
    }
    let mut e = ep + 23;
    for (below, shift) in [(8, 16), (16, 8)] {
        if x >> below == 0 {
            x <<= shift;
            e -= shift;
        }
    }
    let shift = NORMALIZE.get((x >> 16) as usize).copied().unwrap_or(0);
    x <<= shift;
    e -= i32::from(shift);
    // (mp may be 2^24: its 13-bit upper part keeps the product below 2^48.)
    let (dh, dl, ph, pl) = (x >> 12, x & 0xfff, mp >> 12, mp & 0xfff);
    let mid = dh * pl + ph * dl;
    let low = dl * pl + ((mid << 28) >> 16);
    let u = ((dh * ph) << 8) + (mid >> 4) + (low >> 16);
    let (mut mq, mut eq) = round_product(u | u32::from(low << 16 != 0), e);
    if mq >> 24 != 0 {
        mq >>= 1;
        eq += 1;
    }
    if !normal(eq) {
        return None;
    }
    let sq = ((dot as u32) ^ scale) & 0x8000_0000;
    // y = q + bias.
    let eb = ((bias << 1) >> 24) as i32;
    if eb == 0 {
        // A zero bias leaves q; a subnormal one goes to the float expression.
        return if bias << 9 == 0 {
            Some(sq | ((((eq - 1) as u32) << 23) + mq))
        } else {
            None
        };
    }
    if eb == 0xff {
        return None;
    }
    let mb = ((bias << 9) >> 3) | 1 << 29;
    let sb = bias & 0x8000_0000;
    // a = the operand of larger magnitude, both significands scaled to [2^29, 2^30).
    let (mut e, a, c, sa, d) = if eq > eb || (eq == eb && mq << 6 >= mb) {
        (eq, mq << 6, mb, sq, eq - eb)
    } else {
        (eb, mb, mq << 6, sb, eb - eq)
    };
    let c = if d <= 6 {
        // Only the 6 zero guard bits are shifted out.
        c >> d
    } else if d >= 31 {
        1
    } else {
        // Shift right by d, jamming the bits shifted out into the lowest.
        (c >> d) | u32::from(c << (32 - d) != 0)
    };
    let mut s = if sq == sb {
        let s = a + c;
        if s >> 30 != 0 {
            e += 1;
            (s >> 1) | (s & 1)
        } else {
            s
        }
    } else {
        let mut s = a - c;
        if s == 0 {
            return Some(0);
        }
        while s >> 29 == 0 {
            s <<= 1;
            e -= 1;
        }
        s
    };
    if !normal(e) {
        return None;
    }
    // A carry out of the rounding (s = 2^24) lands in the exponent field: the right result.
    s = (s + 31 + ((s >> 6) & 1)) >> 6;
    Some(sa | ((((e - 1) as u32) << 23) + s))
}
