//! The bodies the HTTP thread serves: the page, `/api/cameras` as JSON and
//! `/metrics` in Prometheus text format. Pure functions of the hub's state.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exposition::{Kind, Writer};

use super::hub::{totals_by_id, Hub, IdTotals, State};

/// The grid page: plain HTML and JS, no build step, no CDN.
pub const PAGE: &str = include_str!("page.html");

/// `/api/cameras`: one object per connection, oldest first.
pub fn cameras_json(state: &State) -> String {
    let mut out = String::from("[");
    for (i, (id, camera)) in state.cameras.iter().enumerate() {
        let p = &camera.published;
        let t = &p.totals;
        if i > 0 {
            out.push(',');
        }
        let (width, height) = match p.size {
            Some((w, h)) => (w.to_string(), h.to_string()),
            None => ("null".into(), "null".into()),
        };
        let camera_id = p.camera_id.map_or("null".into(), |c| c.to_string());
        let encoding = camera
            .encoding
            .map_or("null".into(), |e| format!("\"{}\"", e.name()));
        let _ = write!(
            out,
            "{{\"id\":{camera_id},\"connection\":{},\"peer\":\"{}\",\"width\":{width},\"height\":{height},\
             \"encoding\":{encoding},\"fps\":{},\"mbit_per_s\":{},\"latency_ms_p50\":{},\"latency_ms_p99\":{},\
             \"connected_since\":\"{}\",\"watchers\":{},\
             \"stream\":\"/cameras/{}/stream.mjpg\",\"snapshot\":\"/cameras/{}/snapshot.jpg\"}}",
            id.0,
            p.peer,
            number(t.fps, 1),
            number(t.mbit_per_s, 2),
            ms(t.latency_p50),
            ms(t.latency_p99),
            rfc3339(t.connected_since),
            camera.watchers,
            id.0,
            id.0,
        );
    }
    out.push(']');
    out
}

fn number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "null".into()
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("null".into(), |d| number(d.as_secs_f64() * 1e3, 2))
}

/// `2026-12-02T09:14:03Z` (UTC, whole seconds).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A per-camera counter's value.
type Counter = fn(&IdTotals) -> u64;

/// `/metrics`: per camera id (its connections summed, closed ones
/// included, so a reconnect continues the series), then the viewer's own.
pub fn metrics(hub: &Hub, http_clients: usize, watchers: usize) -> String {
    let state = hub.lock();
    let by_id = totals_by_id(&state);
    let connected = state.cameras.len();
    drop(state);

    let mut w = Writer::new();
    let per_camera: [(&str, &str, Counter); 7] = [
        (
            "camstream_viewer_frames_received_total",
            "Complete frames read from the camera's connections.",
            |t| t.received,
        ),
        (
            "camstream_viewer_frames_decoded_total",
            "Frames that decoded.",
            |t| t.decoded,
        ),
        (
            "camstream_viewer_frames_dropped_total",
            "Frames replaced by a newer one before a decoder got to them.",
            |t| t.skipped,
        ),
        (
            "camstream_viewer_received_bytes_total",
            "Frame body bytes received.",
            |t| t.received_len,
        ),
        (
            "camstream_viewer_jpeg_encodes_total",
            "gzip-BMP frames encoded to JPEG for HTTP watchers: at most one per decoded frame, and only while the camera is watched.",
            |t| t.encoded,
        ),
        (
            "camstream_viewer_jpeg_passthrough_total",
            "JPEG frame bodies handed to HTTP watchers as received.",
            |t| t.passed_through,
        ),
        (
            "camstream_viewer_camera_decode_errors_total",
            "Frames that failed to decode (each closed its connection), all reasons.",
            |t| t.decode_errors.values().sum(),
        ),
    ];
    for (name, help, value) in per_camera {
        w.family(name, Kind::Counter, help);
        for (camera_id, t) in &by_id {
            w.sample(name, &[("camera", &camera_id.to_string())], value(t) as f64);
        }
    }
    let name = "camstream_viewer_decode_errors_total";
    w.family(
        name,
        Kind::Counter,
        "Frames that failed to decode, by body kind and reason; each closed its connection.",
    );
    for (camera_id, t) in &by_id {
        for ((kind, reason), n) in &t.decode_errors {
            let camera = camera_id.to_string();
            w.sample(
                name,
                &[("camera", &camera), ("kind", kind), ("reason", reason)],
                *n as f64,
            );
        }
    }
    let name = "camstream_viewer_latency_seconds";
    w.family(
        name,
        Kind::Histogram,
        "The viewer's share of a frame's delay: from its last byte read to shown (headless: decoded).",
    );
    for (camera_id, t) in &by_id {
        w.histogram(name, &[("camera", &camera_id.to_string())], &t.latency);
    }

    let c = &hub.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let name = "camstream_viewer_connections_accepted_total";
    w.family(name, Kind::Counter, "Camera connections accepted.");
    w.sample(name, &[], load(&c.accepted));
    let name = "camstream_viewer_connections_refused_total";
    w.family(
        name,
        Kind::Counter,
        "Camera connections refused, by reason.",
    );
    w.sample(
        name,
        &[("reason", "not_allowed")],
        load(&c.refused_not_allowed),
    );
    w.sample(name, &[("reason", "max_clients")], load(&c.refused_full));
    let name = "camstream_viewer_connections";
    w.family(name, Kind::Gauge, "Camera connections open now.");
    w.sample(name, &[], connected as f64);
    let name = "camstream_viewer_http_connections_accepted_total";
    w.family(name, Kind::Counter, "HTTP connections accepted.");
    w.sample(name, &[], load(&c.http_accepted));
    let name = "camstream_viewer_http_connections_refused_total";
    w.family(name, Kind::Counter, "HTTP connections refused, by reason.");
    w.sample(
        name,
        &[("reason", "not_allowed")],
        load(&c.http_refused_not_allowed),
    );
    w.sample(
        name,
        &[("reason", "max_clients")],
        load(&c.http_refused_full),
    );
    let name = "camstream_viewer_http_bad_requests_total";
    w.family(
        name,
        Kind::Counter,
        "HTTP requests refused as malformed or oversized.",
    );
    w.sample(name, &[], load(&c.http_bad_requests));
    let name = "camstream_viewer_http_clients";
    w.family(name, Kind::Gauge, "HTTP clients connected now.");
    w.sample(name, &[], http_clients as f64);
    let name = "camstream_viewer_http_watchers";
    w.family(
        name,
        Kind::Gauge,
        "HTTP clients watching a camera now (MJPEG streams and waiting snapshots).",
    );
    w.sample(name, &[], watchers as f64);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
    }
}
