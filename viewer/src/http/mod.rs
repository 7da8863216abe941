//! `--http ADDR:PORT`: the browser view, the MJPEG streams, the snapshots,
//! `/api/cameras` and `/metrics`, served from one thread of its own.
//!
//! ```text
//! http ─┬─ hub     shared state: published counts, newest JPEGs, watchers
//!       ├─ serve   the HTTP thread's poll(2) loop and its clients
//!       └─ render  the page, the JSON and the metrics text
//! ```
//!
//! Why a thread and not the camera loop: HTTP clients need write readiness,
//! per-client deadlines and output queues that the camera loop has no use
//! for, and the camera loop's bounds (a read budget per camera per wake-up)
//! stay exactly as they were. The thread is no less bounded: its clients,
//! their buffers and their deadlines are capped (`serve`), and it meets the
//! camera side only in the hub's mutex, held to copy counts or swap an
//! `Arc`, never across I/O or an encode. An HTTP flood can cost CPU time,
//! not a wait on the camera loop.
//!
//! JPEGs are made on the decode workers, after a frame decodes, and only
//! for cameras someone watches: once per frame however many watch
//! ([`Hub::frame`]).

pub mod hub;
mod render;
pub mod serve;

pub use hub::{Hub, Published};
pub use serve::{Config, HttpServer};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::conn::Conn;
use crate::ConnId;

/// How often the camera loop publishes its connections' counts: the page,
/// `/api/cameras` and `/metrics` are at most this old (a closed
/// connection's last counts are published at once).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// What the camera loop holds of `--http`: the hub, the running HTTP thread,
/// and when to publish next. Every hook is one call from `server`.
pub struct Link {
    pub hub: Arc<Hub>,
    server: Option<HttpServer>,
    next_publish: Instant,
}

impl Link {
    /// Binds and starts the HTTP thread.
    pub fn start(config: Config) -> Result<Link> {
        let (hub, wake_rx) = Hub::new().context("cannot create the HTTP wake-up socket")?;
        let server = serve::start(config, Arc::clone(&hub), wake_rx)?;
        Ok(Link {
            hub,
            server: Some(server),
            next_publish: Instant::now(),
        })
    }

    /// A camera connection was accepted (`refused`: `Some(true)` for
    /// `--allow`, `Some(false)` for `--max-clients`).
    pub fn counted(&self, refused: Option<bool>) {
        let c = &self.hub.counters;
        Hub::count(match refused {
            None => &c.accepted,
            Some(true) => &c.refused_not_allowed,
            Some(false) => &c.refused_full,
        });
    }

    /// When the next publish is due.
    pub fn next_publish(&self) -> Instant {
        self.next_publish
    }

    /// Publishes every connection's counts, if due.
    pub fn publish<'a>(
        &mut self,
        now: Instant,
        conns: impl Iterator<Item = (&'a ConnId, &'a Conn)>,
    ) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + PUBLISH_INTERVAL;
        self.hub
            .publish(conns.map(|(&id, conn)| (id, published(conn))));
    }

    /// Connection `id` closed; `decode_error` is the Debug text of the
    /// decode error that closed it, if one did.
    pub fn closed(&self, id: ConnId, conn: &Conn, decode_error: Option<String>) {
        self.hub.closed(
            id,
            published(conn),
            decode_error.as_deref().map(error_labels),
        );
    }

    /// Ends the HTTP thread.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

fn published(conn: &Conn) -> Published {
    let (totals, size) = conn.totals();
    Published {
        camera_id: conn.camera_id(),
        peer: conn.peer(),
        size,
        totals,
    }
}

/// `Gzip(NotGzip)` → (`gzip`, `NotGzip`); `Bmp(TooManyPixels { .. })` →
/// (`bmp`, `TooManyPixels`): a decode error's kind and reason as metric
/// labels, from its Debug form, so a new error variant is labelled without
/// a change here.
fn error_labels(debug: &str) -> (String, String) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let kind = ident(debug).to_ascii_lowercase();
    let reason = debug
        .split_once('(')
        .map(|(_, rest)| ident(rest.trim_start()))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "other".to_owned());
    (kind, reason)
}

/// The JPEG of a decoded frame (0RGB pixels, top row first) for watchers;
/// `bgr` is the worker's reusable buffer. None if the encoder refuses it
/// (it would be a bug: the frame decoded within the limits).
pub fn encode_jpeg(pixels: &[u32], width: u32, height: u32, bgr: &mut Vec<u8>) -> Option<Vec<u8>> {
    bgr.clear();
    bgr.reserve(pixels.len() * 3);
    for &p in pixels {
        let [b, g, r, _] = p.to_le_bytes();
        bgr.extend_from_slice(&[b, g, r]);
    }
    let encoder = proto::jpeg::Encoder::new(proto::jpeg::DEFAULT_QUALITY).ok()?;
    let mut out = Vec::new();
    match encoder.encode_bgr(bgr, width, height, &mut out) {
        Ok(()) => Some(out),
        Err(e) => {
            log::warn!("http: cannot encode a {width}x{height} frame as JPEG: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_become_labels() {
        assert_eq!(
            error_labels("Gzip(NotGzip)"),
            ("gzip".into(), "NotGzip".into())
        );
        assert_eq!(
            error_labels("Bmp(TooManyPixels { pixels: 5, max: 4 })"),
            ("bmp".into(), "TooManyPixels".into())
        );
        assert_eq!(error_labels("Odd"), ("odd".into(), "other".into()));
    }
}
