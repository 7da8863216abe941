//! `--metrics ADDR:PORT`: the node's counters in Prometheus text format, at
//! `/metrics`, served by `exposition::serve` (one thread, one request at a
//! time, every read timed out; the capture, encode and send threads only
//! ever bump the counters in `stats`).
//!
//! Every series carries `camera="<--id>"`, so one Prometheus job can scrape
//! a whole fleet and tell the nodes' cameras apart.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result};
use exposition::{Kind, Writer};

use crate::stats::Stats;

/// Binds `addr` and serves `render()` there from a thread of its own.
pub fn serve(addr: SocketAddr, render: impl Fn() -> String + Send + 'static) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for --metrics (is the port in use? choose another)")
    })?;
    let local = listener.local_addr().context("--metrics listener")?;
    exposition::serve::serve(listener, render).context("cannot start the metrics thread")?;
    log::info!("metrics on http://{local}/metrics");
    Ok(())
}

/// The exposition of `stats` since the agent started.
pub fn render(stats: &Stats) -> String {
    let totals = stats.totals();
    let camera = stats.camera_id().to_string();
    let labels = [("camera", camera.as_str())];
    let mut w = Writer::new();
    let counters: [(&str, &str, u64); 7] = [
        (
            "camstream_agent_frames_captured_total",
            "Frames taken from the camera or synthetic source.",
            totals.captured,
        ),
        (
            "camstream_agent_frames_sent_total",
            "Frames fully written to the viewer's connection.",
            totals.sent,
        ),
        (
            "camstream_agent_frames_dropped_before_encoding_total",
            "Frames captured but never encoded: replaced by a newer one, short or corrupt, or no viewer connected.",
            totals.skipped_before,
        ),
        (
            "camstream_agent_frames_dropped_after_encoding_total",
            "Frames encoded but not sent: a newer one went first, or the connection broke.",
            totals.skipped_after,
        ),
        (
            "camstream_agent_sent_bytes_total",
            "Bytes written to the viewer's connection, frame headers included.",
            totals.wire_bytes,
        ),
        (
            "camstream_agent_connections_total",
            "Connections made to the viewer: the first, then one per reconnect.",
            totals.connections,
        ),
        (
            "camstream_agent_camera_losses_total",
            "Times the camera was lost (unplugged, I/O error or silent) and reopened with --reopen.",
            totals.camera_losses,
        ),
    ];
    for (name, help, value) in counters {
        w.family(name, Kind::Counter, help);
        w.sample(name, &labels, value as f64);
    }
    let name = "camstream_agent_encode_seconds";
    w.family(
        name,
        Kind::Histogram,
        "Time to encode one frame (YUYV to BGR to BMP to gzip).",
    );
    w.histogram(name, &labels, &stats.encode_times());
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn render_reports_the_totals() {
        let stats = Stats::new(7);
        for _ in 0..5 {
            stats.captured();
        }
        stats.encoded(Duration::from_millis(3));
        stats.sent(1005, 2000, 1000);
        stats.skipped_before_encoding(4);
        stats.connected();
        stats.camera_lost();
        let text = render(&stats);
        for line in [
            "camstream_agent_frames_captured_total{camera=\"7\"} 5\n",
            "camstream_agent_frames_sent_total{camera=\"7\"} 1\n",
            "camstream_agent_frames_dropped_before_encoding_total{camera=\"7\"} 4\n",
            "camstream_agent_sent_bytes_total{camera=\"7\"} 1005\n",
            "camstream_agent_connections_total{camera=\"7\"} 1\n",
            "camstream_agent_camera_losses_total{camera=\"7\"} 1\n",
            "camstream_agent_encode_seconds_bucket{camera=\"7\",le=\"0.005\"} 1\n",
            "camstream_agent_encode_seconds_count{camera=\"7\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
