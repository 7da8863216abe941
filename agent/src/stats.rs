//! Counters and timing samples for the periodic stats line:
//!
//! ```text
//! camera 3: 29.8 fps captured, 15.8 sent, 140 dropped, 140 before encoding + 0 after, 99.6 Mbit/s gzip-bmp level 9, ratio 1.20, encode p50 14 ms p99 17 ms, latency p50 80 ms p99 98 ms
//! ```
//!
//! - `captured`: frames taken from the source per second;
//! - `sent`: frames the link carried (fully written to the viewer) per second;
//! - `dropped`: frames captured in the interval but not sent, split into
//!   `before encoding`: frames that cost no encode
//!   (replaced in the mailbox by a newer one while the encoders waited for
//!   the link or the CPU, short or corrupt, or the viewer was away);
//!   and `after`: frames encoded but not sent (a newer one went first, or
//!   the connection broke): CPU spent for nothing, near 0 in steady state;
//! - `Mbit/s`: bytes written to the socket, headers included, and the
//!   encoding of the bodies (`gzip-bmp level 9`, `jpeg q85`, `jpeg passthrough`);
//! - `ratio`: BMP bytes / body bytes of the frames sent (for JPEG, the BMP
//!   the frame would have been);
//! - `encode p50/p99`: the time to make one frame's body from the camera's
//!   frame (YUYV→BGR→BMP→gzip, YUYV→BGR→JPEG, or a passthrough's check);
//! - `latency p50/p99`: capture to on the wire, per frame: until the
//!   kernel has all of it but at most `send::NOTSENT_LOWAT / 2` bytes out
//!   of the socket (on a free link, simply until it is written).
//!
//! **What p50 and p99 mean.** The durations of an interval go into a
//! [`Reservoir`] of [`SAMPLES`]: all of them while they fit, then a uniform
//! random sample of the whole interval. pN is the nearest-rank percentile of
//! that sample: the smallest sample with at least N% of the samples at or
//! below it, always a measured value, never an interpolation. The viewer's
//! stats line uses the same definition (`proto::stats`), so the two logs
//! can be compared.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use exposition::text::{Histogram, LATENCY_BOUNDS};
use proto::stats::Reservoir;
use proto::wire::CameraId;

use crate::sync::lock;

/// Durations sampled per interval: all of them up to 136 s at 30 fps.
/// Memory is fixed at start whatever the frame rate and interval.
const SAMPLES: usize = 4096;

#[derive(Default)]
struct Counters {
    captured: AtomicU64,
    sent: AtomicU64,
    skipped_before: AtomicU64,
    skipped_after: AtomicU64,
    wire_bytes: AtomicU64,
    bmp_bytes: AtomicU64,
    body_bytes: AtomicU64,
}

pub struct Stats {
    camera_id: CameraId,
    /// What the bodies are, named in the stats line (`jpeg q85`).
    encoding: String,
    /// MJPEG frames passed through (not re-encoded) in the interval: the
    /// line then says `jpeg passthrough`, whatever `--quality` says.
    passed_through: AtomicU64,
    interval: Counters,
    total: Counters,
    /// Behind mutexes: every encoder pushes encode times.
    encode: Mutex<Reservoir>,
    latency: Mutex<Reservoir>,
    /// Since start, for `--metrics`: every encode time, connections made,
    /// cameras lost.
    encode_total: Mutex<Histogram>,
    connections: AtomicU64,
    camera_losses: AtomicU64,
}

/// Totals since start, for the last log line.
pub struct Totals {
    pub captured: u64,
    pub sent: u64,
    /// Frames skipped before encoding.
    pub skipped_before: u64,
    /// Frames encoded but not sent.
    pub skipped_after: u64,
    /// Bytes written to the socket, headers included.
    pub wire_bytes: u64,
    /// Connections to the viewer made (the first, then each reconnect).
    pub connections: u64,
    /// Times the camera was lost (`--reopen` then opens it again).
    pub camera_losses: u64,
}

impl Stats {
    pub fn new(camera_id: CameraId) -> Stats {
        Stats {
            camera_id,
            encoding: "gzip-bmp".into(),
            passed_through: AtomicU64::new(0),
            interval: Counters::default(),
            total: Counters::default(),
            encode: Mutex::new(Reservoir::new(SAMPLES)),
            latency: Mutex::new(Reservoir::new(SAMPLES)),
            encode_total: Mutex::new(Histogram::new(LATENCY_BOUNDS)),
            connections: AtomicU64::new(0),
            camera_losses: AtomicU64::new(0),
        }
    }

    /// Names the encoding in the stats line (default `gzip-bmp`).
    pub fn with_encoding(self, encoding: String) -> Stats {
        Stats { encoding, ..self }
    }

    /// An encoder passed a camera's JPEG through.
    pub fn passed_through(&self) {
        self.passed_through.fetch_add(1, Ordering::Relaxed);
    }

    pub fn captured(&self) {
        add(&self.interval.captured, &self.total.captured, 1);
    }

    /// `n` frames will not be sent and cost no encode.
    pub fn skipped_before_encoding(&self, n: u64) {
        add(&self.interval.skipped_before, &self.total.skipped_before, n);
    }

    /// `n` frames were encoded but will not be sent.
    pub fn skipped_after_encoding(&self, n: u64) {
        add(&self.interval.skipped_after, &self.total.skipped_after, n);
    }

    pub fn encoded(&self, took: Duration) {
        lock(&self.encode).push(took);
        lock(&self.encode_total).observe(took);
    }

    /// A connection to the viewer was made.
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The camera was lost (and will be reopened).
    pub fn camera_lost(&self) {
        self.camera_losses.fetch_add(1, Ordering::Relaxed);
    }

    /// Every encode time since start.
    pub fn encode_times(&self) -> Histogram {
        lock(&self.encode_total).clone()
    }

    pub fn camera_id(&self) -> CameraId {
        self.camera_id
    }

    /// A frame of `wire_len` bytes (header included), whose BMP was
    /// `bmp_len` bytes and gzip body `body_len` bytes, was fully written.
    pub fn sent(&self, wire_len: usize, bmp_len: usize, body_len: usize) {
        add(&self.interval.sent, &self.total.sent, 1);
        add(
            &self.interval.wire_bytes,
            &self.total.wire_bytes,
            wire_len as u64,
        );
        add(
            &self.interval.bmp_bytes,
            &self.total.bmp_bytes,
            bmp_len as u64,
        );
        add(
            &self.interval.body_bytes,
            &self.total.body_bytes,
            body_len as u64,
        );
    }

    /// A frame was on the wire `latency` after its capture.
    pub fn on_wire(&self, latency: Duration) {
        lock(&self.latency).push(latency);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            captured: self.total.captured.load(Ordering::Relaxed),
            sent: self.total.sent.load(Ordering::Relaxed),
            skipped_before: self.total.skipped_before.load(Ordering::Relaxed),
            skipped_after: self.total.skipped_after.load(Ordering::Relaxed),
            wire_bytes: self.total.wire_bytes.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            camera_losses: self.camera_losses.load(Ordering::Relaxed),
        }
    }

    /// The stats line for the `elapsed` time since the last call, and a
    /// reset of the interval counters and samples.
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let captured = take(&self.interval.captured);
        let sent = take(&self.interval.sent);
        let skipped_before = take(&self.interval.skipped_before);
        let skipped_after = take(&self.interval.skipped_after);
        let wire_bytes = take(&self.interval.wire_bytes);
        let bmp_bytes = take(&self.interval.bmp_bytes);
        let body_bytes = take(&self.interval.body_bytes);
        let encoding = if take(&self.passed_through) > 0 {
            "jpeg passthrough"
        } else {
            &self.encoding
        };

        let ratio = if body_bytes > 0 {
            format!("{:.2}", bmp_bytes as f64 / body_bytes as f64)
        } else {
            "-".into()
        };
        let [encode_p50, encode_p99] = ms(lock(&self.encode).take_percentiles([50, 99]));
        let [latency_p50, latency_p99] = ms(lock(&self.latency).take_percentiles([50, 99]));
        format!(
            "camera {}: {:.1} fps captured, {:.1} sent, {} dropped, {} before encoding + {} after, \
             {:.1} Mbit/s {}, ratio {}, encode p50 {} p99 {}, latency p50 {} p99 {}",
            self.camera_id,
            captured as f64 / secs,
            sent as f64 / secs,
            skipped_before + skipped_after,
            skipped_before,
            skipped_after,
            wire_bytes as f64 * 8.0 / secs / 1e6,
            encoding,
            ratio,
            encode_p50,
            encode_p99,
            latency_p50,
            latency_p99,
        )
    }
}

fn add(interval: &AtomicU64, total: &AtomicU64, n: u64) {
    interval.fetch_add(n, Ordering::Relaxed);
    total.fetch_add(n, Ordering::Relaxed);
}

/// Percentiles as "14 ms", or "-" for an interval without samples.
fn ms<const N: usize>(percentiles: Option<[Duration; N]>) -> [String; N] {
    match percentiles {
        Some(ps) => ps.map(|d| format!("{:.0} ms", d.as_micros() as f64 / 1000.0)),
        None => std::array::from_fn(|_| "-".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reports_rates_and_resets() {
        let stats = Stats::new(3).with_encoding("jpeg q85".into());
        for _ in 0..30 {
            stats.captured();
        }
        for i in 0..10u64 {
            stats.encoded(Duration::from_millis(10 + i));
            stats.sent(1005, 2000, 1000);
            stats.on_wire(Duration::from_millis(20));
        }
        stats.skipped_before_encoding(19);
        stats.skipped_after_encoding(1);
        let line = stats.line(Duration::from_secs(1));
        // Nearest-rank: p50 of the ten encode times 10..=19 ms is the 5th, 14 ms.
        assert_eq!(
            line,
            "camera 3: 30.0 fps captured, 10.0 sent, 20 dropped, 19 before encoding + 1 after, \
             0.1 Mbit/s jpeg q85, ratio 2.00, encode p50 14 ms p99 19 ms, latency p50 20 ms p99 20 ms"
        );
        stats.passed_through();
        let line = stats.line(Duration::from_secs(1));
        assert!(line.contains(" Mbit/s jpeg passthrough, "), "{line}");
        let line = stats.line(Duration::from_secs(1));
        assert!(line.contains(" Mbit/s jpeg q85, "), "{line}");
        assert!(
            line.contains("0.0 fps captured, 0.0 sent, 0 dropped, 0 before encoding + 0 after"),
            "{line}"
        );
        assert!(line.contains("ratio -, encode p50 - p99 -"), "{line}");
        assert_eq!(stats.totals().sent, 10);
    }
}
