//! A fixed-size log-linear latency histogram (microseconds), so a worker's
//! memory does not grow with the number of requests it makes.
//!
//! Values below 128 µs are exact; above, each power of two is split into 64
//! buckets, so a reported quantile is within 1/64 (1.6 %) of the true value.

/// Exact buckets below this value.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`] (`2^SUB_BITS`).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two from 2^7 to 2^63.
const BUCKETS: usize = LINEAR as usize + (64 - 7) * SUB;

/// Latency counts by bucket.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = us.ilog2(); // >= 7
    let sub = (us >> (exp - SUB_BITS)) as usize & (SUB - 1);
    LINEAR as usize + (exp as usize - 7) * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let exp = (i - LINEAR as usize) / SUB + 7;
    let sub = ((i - LINEAR as usize) % SUB) as u64;
    let width = 1u64 << (exp as u32 - SUB_BITS);
    // exp <= 63, so the bucket's lower bound fits; the top bucket's upper
    // bound would not, hence the saturation.
    ((1u64 << exp) + sub * width).saturating_add(width - 1)
}

impl Histogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts to this one.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The latency (µs, upper bound of its bucket) below which a fraction
    /// `q` of the recorded values fall; `None` when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_sign_loss,
            reason = "request counts are far below 2^52, and q is in [0, 1]"
        )]
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_and_order() {
        let mut last = 0;
        for v in (0..200_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(i >= last, "{v}");
            assert!(upper(i) >= v, "{v} above its bucket's bound {}", upper(i));
            last = i;
        }
    }

    #[test]
    fn precision_is_within_two_percent() {
        for v in [127u64, 128, 1000, 12_345, 1_000_000, 987_654_321] {
            let u = upper(index(v));
            assert!(u >= v && u - v <= v / 50, "{v} -> {u}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        let mut g = Histogram::default();
        g.record(10_000);
        h.merge(&g);
        assert_eq!(h.quantile(1.0), Some(upper(index(10_000))));
    }
}
