//! Per-connection counters: the periodic stats line and the fps shown in
//! window titles.

use std::time::{Duration, Instant};

/// How often the fps in a window title is recomputed.
const FPS_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Stats {
    /// Counters since the last stats line.
    received: u64,
    received_len: u64,
    decoded: u64,
    skipped: u64,
    since: Instant,
    /// Decoded frames in the current fps window, and the last computed rate.
    fps_frames: u32,
    fps_since: Instant,
    fps: f64,
}

impl Stats {
    pub fn new(now: Instant) -> Stats {
        Stats {
            received: 0,
            received_len: 0,
            decoded: 0,
            skipped: 0,
            since: now,
            fps_frames: 0,
            fps_since: now,
            fps: 0.0,
        }
    }

    /// A complete frame of `body_len` bytes arrived.
    pub fn received(&mut self, body_len: usize) {
        self.received += 1;
        self.received_len += body_len as u64;
    }

    /// A newer frame replaced one still waiting to be decoded.
    pub fn skipped(&mut self) {
        self.skipped += 1;
    }

    /// A frame was decoded. Returns the new fps when the title should change.
    pub fn decoded(&mut self, now: Instant) -> Option<f64> {
        self.decoded += 1;
        self.fps_frames += 1;
        let elapsed = now.saturating_duration_since(self.fps_since);
        if elapsed < FPS_WINDOW {
            return None;
        }
        let fps = f64::from(self.fps_frames) / elapsed.as_secs_f64();
        self.fps_frames = 0;
        self.fps_since = now;
        let changed = format!("{fps:.1}") != format!("{:.1}", self.fps);
        self.fps = fps;
        changed.then_some(fps)
    }

    /// The displayed frame rate, as last computed.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The stats line's text since the last call, and resets the counters.
    pub fn take_line(&mut self, now: Instant) -> String {
        let secs = now
            .saturating_duration_since(self.since)
            .as_secs_f64()
            .max(1e-3);
        let line = format!(
            "{:.1} fps received, {:.1} fps decoded, {} skipped as stale, {:.2} MB/s",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_is_reported_once_per_window() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        for i in 1..30 {
            assert_eq!(stats.decoded(t0 + Duration::from_millis(i * 33)), None);
        }
        let fps = stats.decoded(t0 + Duration::from_secs(1)).unwrap();
        assert!((fps - 30.0).abs() < 1e-9, "{fps}");
        assert_eq!(stats.fps(), fps);
    }

    #[test]
    fn stats_line_counts_and_resets() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        for _ in 0..20 {
            stats.received(500_000);
        }
        stats.skipped();
        let line = stats.take_line(t0 + Duration::from_secs(2));
        assert_eq!(
            line,
            "10.0 fps received, 0.0 fps decoded, 1 skipped as stale, 5.00 MB/s"
        );
        let line = stats.take_line(t0 + Duration::from_secs(3));
        assert!(line.starts_with("0.0 fps received"), "{line}");
    }
}
