//! The timing statistics behind both binaries' stats lines: a fixed-size
//! sample of durations and its nearest-rank percentiles, so that "p50" and
//! "p99" mean the same thing in the agent's log and the viewer's.
//!
//! - [`Reservoir`] keeps a uniform sample of everything pushed since the last
//!   [`Reservoir::take_percentiles`] (Vitter's algorithm R). Memory is fixed
//!   at construction, whatever the frame rate and interval, and pushing never
//!   allocates.
//! - [`nearest_rank`] defines a percentile: the smallest sample with at least
//!   `p`% of the samples at or below it. It is always one of the samples,
//!   never an interpolation.
//! - [`XorShift64`] is the small generator the reservoir picks slots with,
//!   and the agent's reconnect backoff jitters with.
//!
//! This lives in `proto` because `proto` is the one crate both binaries
//! share, and like the rest of it, it does no I/O: it never reads a clock,
//! callers hand it durations.

use std::time::Duration;

/// A fixed-size uniform sample of the durations pushed since the last take.
#[derive(Debug)]
pub struct Reservoir {
    /// Microseconds, saturated at `u32::MAX` (71 minutes).
    samples: Box<[u32]>,
    len: usize,
    /// Durations pushed since the last take.
    seen: u64,
    rng: XorShift64,
}

impl Reservoir {
    /// A reservoir of `capacity` samples (at least 1), allocated now.
    pub fn new(capacity: usize) -> Reservoir {
        Reservoir {
            samples: vec![0; capacity.max(1)].into_boxed_slice(),
            len: 0,
            seen: 0,
            rng: XorShift64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Samples held now: all pushed so far, up to the capacity.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was pushed since the last take.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one duration. Once the reservoir is full, each new one replaces
    /// a random sample with probability `capacity / seen`, which keeps the
    /// sample uniform over the whole interval, not just its start.
    pub fn push(&mut self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.seen += 1;
        if self.len < self.samples.len() {
            self.samples[self.len] = us;
            self.len += 1;
            return;
        }
        let slot = self.rng.next_u64() % self.seen;
        if let Some(s) = usize::try_from(slot)
            .ok()
            .and_then(|i| self.samples.get_mut(i))
        {
            *s = us;
        }
    }

    /// The nearest-rank percentiles `ps` (each 1..=100) of the samples, or
    /// `None` without samples; then empties the reservoir. Sorts in place,
    /// so it allocates nothing.
    pub fn take_percentiles<const N: usize>(&mut self, ps: [u32; N]) -> Option<[Duration; N]> {
        let sorted = &mut self.samples[..self.len];
        sorted.sort_unstable();
        let result = (!sorted.is_empty())
            .then(|| ps.map(|p| Duration::from_micros(u64::from(nearest_rank(sorted, p)))));
        self.len = 0;
        self.seen = 0;
        result
    }
}

/// The smallest sample with at least `p`% of the samples at or below it
/// (the nearest-rank method): rank `ceil(p / 100 * n)`, counted from 1.
/// `p` is clamped to 1..=100. `sorted` must be sorted and non-empty.
pub fn nearest_rank(sorted: &[u32], p: u32) -> u32 {
    let n = sorted.len();
    let rank = (u64::from(p.min(100)) * n as u64).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(n - 1).min(n - 1);
    sorted[index]
}

/// Marsaglia's xorshift64: fast, no dependency, and plenty for picking
/// reservoir slots and jittering delays. Not for anything secret.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator from `seed`; zero (the one seed xorshift cannot leave) is
    /// replaced.
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 50), 50);
        assert_eq!(nearest_rank(&hundred, 99), 99);
        assert_eq!(nearest_rank(&hundred, 100), 100);
        assert_eq!(nearest_rank(&hundred, 1), 1);
        let thousand: Vec<u32> = (1..=1000).collect();
        assert_eq!(nearest_rank(&thousand, 99), 990);
        // Ten samples: p50 is the 5th, not the 6th (the agent's old
        // `n * p / 100` index picked the 6th).
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), 5);
        assert_eq!(nearest_rank(&ten, 99), 10);
        // Few samples: p99 is the largest, p50 rounds up.
        assert_eq!(nearest_rank(&[7, 8, 9], 99), 9);
        assert_eq!(nearest_rank(&[7, 8, 9], 50), 8);
        assert_eq!(nearest_rank(&[7, 8], 50), 7);
        assert_eq!(nearest_rank(&[42], 50), 42);
        assert_eq!(nearest_rank(&[42], 99), 42);
        // Out-of-range p is clamped, never an out-of-bounds index.
        assert_eq!(nearest_rank(&[7, 8, 9], 0), 7);
        assert_eq!(nearest_rank(&[7, 8, 9], 1000), 9);
    }

    #[test]
    fn reservoir_sorts_takes_and_empties() {
        let mut r = Reservoir::new(16);
        assert_eq!(r.take_percentiles([50, 99]), None);
        for us in [9, 3, 7, 1, 5] {
            r.push(Duration::from_micros(us));
        }
        assert_eq!(r.len(), 5);
        let [p50, p99] = r.take_percentiles([50, 99]).unwrap();
        assert_eq!((p50.as_micros(), p99.as_micros()), (5, 9));
        assert!(r.is_empty(), "take empties it");
        assert_eq!(r.take_percentiles([50]), None);
        // Over u32::MAX µs saturates instead of wrapping.
        r.push(Duration::from_secs(10_000));
        let [p50] = r.take_percentiles([50]).unwrap();
        assert_eq!(p50.as_micros(), u128::from(u32::MAX));
    }

    #[test]
    fn reservoir_stays_bounded_and_samples_the_whole_interval() {
        let mut r = Reservoir::new(1024);
        // 100 000 durations rising steadily from 0 to 99.999 ms: a sample
        // that kept only the first (or last) 1024 would be far off.
        for us in 0..100_000u64 {
            r.push(Duration::from_micros(us));
        }
        assert_eq!(r.len(), 1024);
        assert_eq!(r.samples.len(), 1024);
        let [p50, p99] = r.take_percentiles([50, 99]).unwrap();
        let (p50, p99) = (p50.as_micros() as f64, p99.as_micros() as f64);
        // A uniform 1024-sample: the p50 estimate's standard error is about
        // 1.6% of the range, p99's about 0.3%; the bounds are over 5 sigma.
        assert!((p50 - 50_000.0).abs() < 8_000.0, "p50 {p50}");
        assert!((p99 - 99_000.0).abs() < 1_600.0, "p99 {p99}");
    }

    #[test]
    fn xorshift_is_uniform_enough_and_never_stuck_at_zero() {
        let mut rng = XorShift64::new(0);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let u = rng.next_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
            buckets[(u * 10.0) as usize] += 1;
        }
        // 10 000 expected per bucket, standard deviation ~95.
        assert!(
            buckets.iter().all(|&b| (9_500..10_500).contains(&b)),
            "{buckets:?}"
        );
    }
}
