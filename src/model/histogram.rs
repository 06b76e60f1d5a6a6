//! Histograms the agent exports: failover phases, canary latencies.

/// Upper bounds of the phase histogram buckets, in seconds: from a fast
/// manual failover (tens of ms) to a slow one (minutes).
pub const PHASE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// A Prometheus-style histogram; by default over [`PHASE_BUCKETS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, in seconds.
    pub bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative).
    pub counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(PHASE_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: Vec::new(),
            count: 0,
            sum: 0.0,
        }
    }

    /// Counts one value.
    pub fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; self.bounds.len()];
        }
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }

    /// Cumulative counts per bucket, as the text format wants them.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        (0..self.bounds.len())
            .map(|i| {
                total += self.counts.get(i).copied().unwrap_or(0);
                total
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        for v in [0.01, 0.3, 0.3, 7.0, 1000.0] {
            h.observe(v);
        }
        let c = h.cumulative();
        assert_eq!((c[0], c[3], c[7], *c.last().unwrap()), (1, 3, 4, 4));
        assert_eq!(h.count, 5, "+Inf holds every observation");
    }
}
