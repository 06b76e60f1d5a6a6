//! Summaries of timed runs: median, p99, min and max, as BENCHMARKS.md shows them.

/// Figures of one series of runs (any unit; the caller knows which).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    /// Nearest-rank 99th percentile: with fewer than 100 runs it is the maximum
    /// (or close to it), never an interpolation between runs.
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// `None` for an empty series.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Summary {
        n,
        median,
        p99: nearest_rank(&sorted, 0.99),
        min: sorted[0],
        max: sorted[n - 1],
        mean: sorted.iter().sum::<f64>() / n as f64,
    })
}

/// The smallest value with at least `q` of the series at or below it.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_series() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(&values).unwrap();
        assert_eq!(s.n, 100);
        assert_eq!(s.median, 50.5);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn short_series() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p99, s.min, s.max), (2.0, 3.0, 1.0, 3.0));
        assert_eq!(summarize(&[]), None);
        // 20 runs: p99 is the slowest.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(summarize(&twenty).unwrap().p99, 20.0);
    }
}
