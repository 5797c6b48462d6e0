//! A small seeded random number generator (SplitMix64) whose output is fixed by this file alone,
//! so a seed gives the same run on every platform and with every dependency version.

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, passes BigCrush, trivially splittable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent generator for `stream`, derived from this one's seed without advancing it.
    pub fn fork(&self, stream: u64) -> Self {
        let mut r = Self(self.0 ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2⁻³²
    /// for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform float in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponential variate with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// A Weibull variate with the given median and shape (`shape < 1` is heavy-tailed), by
    /// inversion: `scale · (−ln(1 − u))^(1/shape)` with `scale = median / ln(2)^(1/shape)`.
    pub fn weibull_median(&mut self, median: f64, shape: f64) -> f64 {
        let scale = median / std::f64::consts::LN_2.powf(1.0 / shape);
        scale * (-(1.0 - self.unit()).ln()).powf(1.0 / shape)
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_reproducible_and_spread() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        // SplitMix64's published first output for seed 1 is 0x910a2dec89025cc1.
        assert_eq!(xs[0], 0x910a_2dec_8902_5cc1);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[a.below(10)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        assert_ne!(a.fork(1).next_u64(), a.fork(2).next_u64());
    }

    #[test]
    fn weibull_and_exponential_have_the_asked_median_and_mean() {
        let mut r = Rng::new(7);
        let mut xs: Vec<f64> = (0..20_001).map(|_| r.weibull_median(3.0, 0.5)).collect();
        xs.sort_by(f64::total_cmp);
        assert!((xs[10_000] - 3.0).abs() < 0.2, "median {}", xs[10_000]);
        // Heavy tail: the mean of Weibull(shape 0.5) is 2·scale ≈ 4.2 × the median.
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean > 3.0 * 3.0, "mean {mean}");
        let m = (0..20_000).map(|_| r.exponential(2.0)).sum::<f64>() / 20_000.0;
        assert!((m - 2.0).abs() < 0.1, "{m}");
    }
}
