//! Summary statistics of cycle samples.

use std::fmt;

/// Order statistics of a sample set.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes `samples` (empty input gives all zeros).
    #[must_use]
    pub fn of(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let at =
            |q: f64| s.get(((s.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64
        };
        Self { n: s.len(), min: at(0.0), median: at(0.5), p90: at(0.9), p99: at(0.99), mean }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {:>8} min {:>8} p90 {:>8} p99 {:>8} mean {:>10.1} (n={})",
            self.median, self.min, self.p90, self.p99, self.mean, self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_of_known_samples() {
        let samples: Vec<u64> = (1..=100).rev().collect();
        let s = Summary::of(&samples);
        assert_eq!((s.n, s.min, s.median, s.p90, s.p99), (100, 1, 51, 90, 99));
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn empty_input_is_all_zero() {
        let s = Summary::of(&[]);
        assert_eq!((s.n, s.min, s.median, s.p99), (0, 0, 0, 0));
        assert_eq!(s.mean, 0.0);
    }
}
