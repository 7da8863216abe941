//! Per-connection counters: the periodic stats line and the fps shown in
//! window titles.
//!
//! ```text
//! 30.0 fps received, 30.0 fps decoded, 0 skipped as stale, 22.41 MB/s, 640x480, latency p50 2.41 ms p99 3.90 ms
//! ```
//!
//! `latency` is the viewer's own share of a frame's delay: from the moment
//! its last byte was read from the socket until it was drawn in its window
//! (headless: until the decoded frame is back on the poll thread, where it
//! would be shown; with `--record`, that is after it was written). Frames
//! skipped as stale are never shown, so they have no latency sample. p50 and
//! p99 are [`proto::stats`]'s nearest-rank percentiles of a reservoir
//! sample, the same definition as in the agent's stats line.
//!
//! [`Stats::totals`] is what `--http` shows: counts since the connection
//! opened, the latency histogram, and the rates and percentiles of the last
//! second or so, read without disturbing the stats line's interval.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use exposition::text::{Histogram, LATENCY_BOUNDS};
use proto::stats::Reservoir;

/// How often the fps in a window title is recomputed.
const FPS_WINDOW: Duration = Duration::from_secs(1);

/// Latency samples kept per connection and stats interval: 34 s of 30 fps
/// at the default 10 s interval fits whole; beyond that the reservoir keeps
/// a uniform sample. 4 KiB per connection, allocated once.
const LATENCY_SAMPLES: usize = 1024;

#[derive(Debug)]
pub struct Stats {
    /// Counters since the last stats line.
    received: u64,
    received_len: u64,
    decoded: u64,
    skipped: u64,
    since: Instant,
    latency: Reservoir,
    /// Decoded frames in the current fps window, and the last computed rate.
    fps_frames: u32,
    fps_since: Instant,
    fps: f64,
    /// Bytes received in the fps window, and the last computed rate.
    rate_len: u64,
    mbit_per_s: f64,
    /// Since the connection opened, for `--http`.
    totals: Totals,
    /// The latest [`RECENT_LATENCIES`] latencies, for `--http`'s p50/p99.
    recent: VecDeque<Duration>,
}

/// Latencies kept for `--http`'s p50 and p99: about 2 s at 30 fps.
const RECENT_LATENCIES: usize = 64;

/// A connection's counts since it opened, and its latest rates: what
/// `--http`'s `/api/cameras` and `/metrics` show.
#[derive(Debug, Clone)]
pub struct Totals {
    pub connected_since: SystemTime,
    pub received: u64,
    pub received_len: u64,
    pub decoded: u64,
    pub skipped: u64,
    pub latency: Histogram,
    /// Decoded frames per second, and Mbit/s received, over the last fps
    /// window.
    pub fps: f64,
    pub mbit_per_s: f64,
    /// Nearest-rank percentiles of the latest latencies.
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
}

impl Stats {
    pub fn new(now: Instant) -> Stats {
        Stats {
            received: 0,
            received_len: 0,
            decoded: 0,
            skipped: 0,
            since: now,
            latency: Reservoir::new(LATENCY_SAMPLES),
            fps_frames: 0,
            fps_since: now,
            fps: 0.0,
            rate_len: 0,
            mbit_per_s: 0.0,
            totals: Totals {
                connected_since: SystemTime::now(),
                received: 0,
                received_len: 0,
                decoded: 0,
                skipped: 0,
                latency: Histogram::new(LATENCY_BOUNDS),
                fps: 0.0,
                mbit_per_s: 0.0,
                latency_p50: None,
                latency_p99: None,
            },
            recent: VecDeque::with_capacity(RECENT_LATENCIES),
        }
    }

    /// Counts since the connection opened, with the latest rates.
    pub fn totals(&self) -> Totals {
        let mut totals = self.totals.clone();
        totals.fps = self.fps;
        totals.mbit_per_s = self.mbit_per_s;
        let mut recent: Vec<Duration> = self.recent.iter().copied().collect();
        recent.sort_unstable();
        let rank = |p: usize| {
            // Nearest rank: the smallest sample with p% at or below it.
            let i = (p * recent.len()).div_ceil(100).max(1) - 1;
            recent.get(i).copied()
        };
        totals.latency_p50 = rank(50);
        totals.latency_p99 = rank(99);
        totals
    }

    /// A complete frame of `body_len` bytes arrived.
    pub fn received(&mut self, body_len: usize) {
        self.received += 1;
        self.received_len += body_len as u64;
        self.rate_len += body_len as u64;
        self.totals.received += 1;
        self.totals.received_len += body_len as u64;
    }

    /// A newer frame replaced one still waiting to be decoded or drawn.
    pub fn skipped(&mut self) {
        self.skipped += 1;
        self.totals.skipped += 1;
    }

    /// A frame was decoded; the fps is recomputed once per [`FPS_WINDOW`].
    pub fn decoded(&mut self, now: Instant) {
        self.decoded += 1;
        self.totals.decoded += 1;
        self.fps_frames += 1;
        let elapsed = now.saturating_duration_since(self.fps_since);
        if elapsed < FPS_WINDOW {
            return;
        }
        self.fps = f64::from(self.fps_frames) / elapsed.as_secs_f64();
        self.mbit_per_s = self.rate_len as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
        self.rate_len = 0;
        self.fps_frames = 0;
        self.fps_since = now;
    }

    /// A frame was shown (or would have been, headless) `latency` after its
    /// last byte was received.
    pub fn shown(&mut self, latency: Duration) {
        self.latency.push(latency);
        self.totals.latency.observe(latency);
        if self.recent.len() == RECENT_LATENCIES {
            self.recent.pop_front();
        }
        self.recent.push_back(latency);
    }

    /// The displayed frame rate, as last computed.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The stats line's text since the last call (`size` is the latest
    /// decoded frame's), and resets the counters.
    pub fn take_line(&mut self, now: Instant, size: Option<(u32, u32)>) -> String {
        let secs = now
            .saturating_duration_since(self.since)
            .as_secs_f64()
            .max(1e-3);
        let size = match size {
            Some((w, h)) => format!("{w}x{h}"),
            None => "no frame yet".to_owned(),
        };
        let latency = match self.latency.take_percentiles([50, 99]) {
            Some([p50, p99]) => format!("p50 {} p99 {}", ms(p50), ms(p99)),
            None => "p50 - p99 -".to_owned(),
        };
        let line = format!(
            "{:.1} fps received, {:.1} fps decoded, {} skipped as stale, {:.2} MB/s, {size}, latency {latency}",
            self.received as f64 / secs,
            self.decoded as f64 / secs,
            self.skipped,
            self.received_len as f64 / secs / 1e6,
        );
        self.received = 0;
        self.received_len = 0;
        self.decoded = 0;
        self.skipped = 0;
        self.since = now;
        line
    }
}

/// `2.41 ms`: the viewer's share is a few ms, so whole ms would hide it.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_outlive_the_stats_line() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        for i in 1..=30u64 {
            stats.received(125_000);
            stats.decoded(t0 + Duration::from_millis(i * 1000 / 30));
            stats.shown(Duration::from_millis(i));
        }
        stats.skipped();
        stats.take_line(t0 + Duration::from_secs(1), None);
        let totals = stats.totals();
        assert_eq!(
            (totals.received, totals.decoded, totals.skipped),
            (30, 30, 1)
        );
        assert_eq!(totals.received_len, 30 * 125_000);
        assert_eq!(totals.latency.count(), 30);
        assert!((totals.fps - 30.0).abs() < 1e-9, "{}", totals.fps);
        assert!(
            (totals.mbit_per_s - 30.0).abs() < 1e-9,
            "{}",
            totals.mbit_per_s
        );
        assert_eq!(totals.latency_p50, Some(Duration::from_millis(15)));
        assert_eq!(totals.latency_p99, Some(Duration::from_millis(30)));
    }

    #[test]
    fn fps_is_recomputed_once_per_window() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        for i in 1..30 {
            stats.decoded(t0 + Duration::from_millis(i * 33));
            assert_eq!(stats.fps(), 0.0, "frame {i}: before the first window ends");
        }
        stats.decoded(t0 + Duration::from_secs(1));
        assert!((stats.fps() - 30.0).abs() < 1e-9, "{}", stats.fps());
        // The next window starts from zero: 15 frames in it are 15 fps.
        for i in 1..=15 {
            stats.decoded(t0 + Duration::from_secs(1) + Duration::from_millis(i * 66));
        }
        assert!(
            (stats.fps() - 30.0).abs() < 1e-9,
            "held until the window ends"
        );
        stats.decoded(t0 + Duration::from_secs(2));
        assert!((stats.fps() - 16.0).abs() < 1e-9, "{}", stats.fps());
    }

    #[test]
    fn stats_line_counts_and_resets() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        for _ in 0..20 {
            stats.received(500_000);
        }
        stats.skipped();
        // 1.25 ms .. 10.25 ms: p50 is the 5th, p99 the 10th.
        for i in (1..=10).rev() {
            stats.shown(Duration::from_micros(i * 1000 + 250));
        }
        let line = stats.take_line(t0 + Duration::from_secs(2), Some((640, 480)));
        assert_eq!(
            line,
            "10.0 fps received, 0.0 fps decoded, 1 skipped as stale, 5.00 MB/s, 640x480, \
             latency p50 5.25 ms p99 10.25 ms"
        );
        let line = stats.take_line(t0 + Duration::from_secs(3), None);
        assert_eq!(
            line,
            "0.0 fps received, 0.0 fps decoded, 0 skipped as stale, 0.00 MB/s, no frame yet, \
             latency p50 - p99 -"
        );
    }
}
