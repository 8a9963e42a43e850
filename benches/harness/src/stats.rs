//! Order statistics of samples.

use serde_json::json;

/// The `q` quantile (0..=1) of `samples`, nearest rank; `NaN` when empty.
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted
        .get(rank.min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// The median.
pub(crate) fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// Min, median, max, p90, p99 and the count, as JSON.
pub(crate) fn summary(samples: &[f64]) -> serde_json::Value {
    json!({
        "n": samples.len(),
        "min": quantile(samples, 0.0),
        "median": median(samples),
        "p90": quantile(samples, 0.9),
        "p99": quantile(samples, 0.99),
        "max": quantile(samples, 1.0),
    })
}

/// Min, median and max.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(samples: &[f64]) -> Self {
        Self {
            min: quantile(samples, 0.0),
            median: median(samples),
            max: quantile(samples, 1.0),
        }
    }

    /// Formats each value with `f`, as `median [min, max]`.
    pub(crate) fn show(&self, f: impl Fn(f64) -> String) -> String {
        format!("{} [{}, {}]", f(self.median), f(self.min), f(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&samples, 0.0), 1.0);
        assert_eq!(median(&samples), 3.0);
        assert_eq!(quantile(&samples, 1.0), 5.0);
        assert!(median(&[]).is_nan());
        let spread = Spread::of(&[2.0, 1.0, 3.0]);
        assert_eq!(spread.show(|x| format!("{x:.0}")), "2 [1, 3]");
    }
}
