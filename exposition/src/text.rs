//! The Prometheus text exposition format, version 0.0.4: what `/metrics`
//! answers and what `promtool check metrics` reads.
//!
//! ```text
//! # HELP camstream_viewer_frames_received_total Complete frames read from the camera's connection.
//! # TYPE camstream_viewer_frames_received_total counter
//! camstream_viewer_frames_received_total{camera="3",peer="10.0.0.7:40312"} 1234
//! ```
//!
//! A family's HELP and TYPE come once, before its samples ([`Writer::family`]);
//! counter names end in `_total` (promtool's lint asks for it). Label values
//! and help texts are escaped here, so no caller can break a line.

use std::fmt::Write as _;
use std::time::Duration;

/// The metric types we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The content type of the text format, for the `Content-Type` header.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds one exposition in memory (a scrape is a few kilobytes).
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.name()
        );
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// A histogram's `_bucket` (cumulative, ending with `+Inf`), `_sum`
    /// and `_count` lines, after its [`Writer::family`] line.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (i, &n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = match h.bounds.get(i) {
                Some(&b) => format_value(b),
                None => "+Inf".to_owned(),
            };
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, h.sum_micros as f64 / 1e6);
        self.out.push('\n');
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }

    /// The text, ready to send.
    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Durations counted into fixed buckets, in seconds: the shape of a
/// Prometheus histogram. Plain integers: the owner decides how it is shared
/// (the viewer keeps one per connection on its poll thread, the agent one
/// behind a mutex).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending; the last bucket (`+Inf`) is implied.
    bounds: &'static [f64],
    /// Per bucket, not cumulative: `bounds.len() + 1` of them.
    counts: Vec<u64>,
    /// Whole microseconds, so the sum prints as the durations add up
    /// (0.036, not 0.036000000000000004).
    sum_micros: u64,
    count: u64,
}

/// Bucket bounds for camstream's latencies and encode times, in seconds:
/// from the viewer's sub-millisecond share to a second.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum_micros: 0,
            count: 0,
        }
    }

    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < secs);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `other`'s observations; a histogram over other bounds is
    /// counted in `+Inf` only, never dropped.
    pub fn merge(&mut self, other: &Histogram) {
        if self.bounds == other.bounds {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a += b;
            }
        } else if let Some(inf) = self.counts.last_mut() {
            *inf += other.count;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.count += other.count;
    }
}

/// Integers print without a fraction; others in Rust's shortest round-trip
/// form, which Prometheus's parser reads back exactly.
fn push_value(out: &mut String, v: f64) {
    out.push_str(&format_value(v));
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// HELP text: backslash and newline are escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and newline are escaped.
fn escape_label_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_family_with_escaped_labels() {
        let mut w = Writer::new();
        w.family("x_total", Kind::Counter, "Things.\nMore \\ things.");
        w.sample("x_total", &[("a", "q\"u\\o\nte"), ("b", "2")], 3.0);
        w.sample("x_total", &[], 0.25);
        assert_eq!(
            w.finish(),
            "# HELP x_total Things.\\nMore \\\\ things.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\",b=\"2\"} 3\nx_total 0.25\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        static BOUNDS: &[f64] = &[0.001, 0.01];
        let mut h = Histogram::new(BOUNDS);
        for ms in [0, 1, 5, 10, 20] {
            h.observe(Duration::from_millis(ms));
        }
        let mut w = Writer::new();
        w.family("lat_seconds", Kind::Histogram, "Latency.");
        w.histogram("lat_seconds", &[("camera", "1")], &h);
        assert_eq!(
            w.finish(),
            "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{camera=\"1\",le=\"0.001\"} 2\n\
             lat_seconds_bucket{camera=\"1\",le=\"0.01\"} 4\n\
             lat_seconds_bucket{camera=\"1\",le=\"+Inf\"} 5\n\
             lat_seconds_sum{camera=\"1\"} 0.036\n\
             lat_seconds_count{camera=\"1\"} 5\n"
        );
    }

    #[test]
    fn values_print_as_prometheus_reads_them() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(12345678.0), "12345678");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
