//! Counter-based random numbers.
//!
//! Every stream is derived from `(seed, purpose, index)`: the shuffle of epoch `e` from `(seed, SHUFFLE, e)`,
//! the dropout masks of example `i` at step `s` from `(seed, DROPOUT, s, i)`. A resumed run therefore
//! recreates exactly the randomness an uninterrupted run would have used, with no generator state to save.

/// Stream tag for weight initialisation.
pub const INIT: u64 = 1;
/// Stream tag for the per-epoch batch order.
pub const SHUFFLE: u64 = 2;
/// Stream tag for dropout masks.
pub const DROPOUT: u64 = 3;
/// Stream tag for the tie-breaks of the length sort that forms batches.
pub const BATCHING: u64 = 4;

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small fast generator (wyrand) seeded from a tuple of counters.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The stream for `(seed, purpose, a, b)`.
    pub fn new(seed: u64, purpose: u64, a: u64, b: u64) -> Self {
        let s = mix(seed ^ mix(purpose.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix(a ^ mix(b.wrapping_add(1)))));
        Rng { state: s }
    }

    /// 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `[0, 1)` with 24 bits of resolution.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// Fills `mask` with inverted-dropout multipliers: 0 with probability `p`, else `1 / (1 - p)`.
    /// Uses 16 bits per element (p is resolved to 1/65536).
    pub fn dropout_mask(&mut self, mask: &mut [f32], p: f32) {
        let threshold = (p * 65536.0).round() as u32;
        let keep = 1.0 / (1.0 - p);
        for chunk in mask.chunks_mut(4) {
            let bits = self.next_u64();
            for (k, m) in chunk.iter_mut().enumerate() {
                let r = ((bits >> (16 * k)) & 0xffff) as u32;
                *m = if r < threshold { 0.0 } else { keep };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7, DROPOUT, 3, 9);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7, DROPOUT, 3, 9);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(7, DROPOUT, 3, 10).next_u64(), a[0]);
        let mut m = vec![0.0; 100_000];
        Rng::new(1, DROPOUT, 0, 0).dropout_mask(&mut m, 0.1);
        let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64;
        assert!((dropped - 0.1).abs() < 0.005, "{dropped}");
        let mut r = Rng::new(2, INIT, 0, 0);
        let xs: Vec<f32> = (0..50_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{mean} {var}");
    }
}
