//! What the camera side and the HTTP thread share: one mutex over the
//! cameras' published state and their newest JPEGs, counters, and a socket
//! that wakes the HTTP thread.
//!
//! Three kinds of thread touch it, each briefly and never while doing I/O
//! or encoding:
//! - the poll thread publishes every connection's counts
//!   ([`Hub::publish`], a few times a second), a connection's last counts
//!   when it closes ([`Hub::closed`]), and the viewer's own counters;
//! - a decode worker, after each decoded frame, asks whether anyone watches
//!   that camera ([`Hub::frame`]); only then is a JPEG made (a JPEG body is
//!   passed through as received; a gzip-BMP frame is encoded, once, outside
//!   the lock), stored as the camera's newest, and the HTTP thread woken;
//! - the HTTP thread reads the newest JPEGs and the published state, and
//!   says how many watch each camera ([`Hub::watch`]).
//!
//! Memory: one newest JPEG per camera, shared (`Arc`) by every watcher;
//! a slow watcher holds at most the one it is still writing.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use exposition::text::{Histogram, LATENCY_BOUNDS};
use proto::wire::CameraId;

use crate::stats::Totals;
use crate::ConnId;

/// One camera connection as the poll thread last published it.
#[derive(Debug, Clone)]
pub struct Published {
    pub camera_id: Option<CameraId>,
    pub peer: SocketAddr,
    pub size: Option<(u32, u32)>,
    pub totals: Totals,
}

/// A camera's newest frame as one JPEG.
#[derive(Debug)]
pub struct Jpeg {
    /// Hub-wide, increasing: a watcher sends a frame only if its number is
    /// above the last one it sent.
    pub number: u64,
    pub bytes: Vec<u8>,
}

/// What a decoded frame's body was, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    GzipBmp,
    Jpeg,
}

impl Encoding {
    pub fn of(body: &[u8]) -> Encoding {
        if body.starts_with(&[0xff, 0xd8, 0xff]) {
            Encoding::Jpeg
        } else {
            Encoding::GzipBmp
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::GzipBmp => "gzip-bmp",
            Encoding::Jpeg => "jpeg",
        }
    }
}

#[derive(Debug)]
pub struct Camera {
    pub published: Published,
    pub encoding: Option<Encoding>,
    pub newest: Option<Arc<Jpeg>>,
    /// Streams and waiting snapshots of this camera (set by the HTTP thread).
    pub watchers: usize,
    /// JPEG encodes of gzip-BMP frames, and JPEG bodies passed through.
    pub encoded: u64,
    pub passed_through: u64,
}

/// Counts kept per camera id across its connections, for `/metrics`:
/// a camera that reconnects keeps counting in the same series.
#[derive(Debug, Clone)]
pub struct IdTotals {
    pub received: u64,
    pub received_len: u64,
    pub decoded: u64,
    pub skipped: u64,
    pub encoded: u64,
    pub passed_through: u64,
    pub latency: Histogram,
    /// Decode errors by (body kind, reason); each closed its connection.
    pub decode_errors: BTreeMap<(String, String), u64>,
}

impl Default for IdTotals {
    fn default() -> IdTotals {
        IdTotals {
            received: 0,
            received_len: 0,
            decoded: 0,
            skipped: 0,
            encoded: 0,
            passed_through: 0,
            latency: Histogram::new(LATENCY_BOUNDS),
            decode_errors: BTreeMap::new(),
        }
    }
}

impl IdTotals {
    /// Adds one connection's counts.
    pub fn add(&mut self, t: &Totals, encoded: u64, passed_through: u64) {
        self.received += t.received;
        self.received_len += t.received_len;
        self.decoded += t.decoded;
        self.skipped += t.skipped;
        self.encoded += encoded;
        self.passed_through += passed_through;
        self.latency.merge(&t.latency);
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub cameras: BTreeMap<ConnId, Camera>,
    /// Counts of connections that closed, per camera id (at most 256).
    pub retired: BTreeMap<CameraId, IdTotals>,
    /// The next [`Jpeg::number`].
    next_number: u64,
}

/// Why camera connections were refused, and HTTP clients, counted.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub refused_not_allowed: AtomicU64,
    pub refused_full: AtomicU64,
    pub http_accepted: AtomicU64,
    pub http_refused_not_allowed: AtomicU64,
    pub http_refused_full: AtomicU64,
    pub http_bad_requests: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    pub counters: Counters,
    /// Written (never blocking) when there is news for the HTTP thread.
    wake_tx: UnixStream,
}

impl Hub {
    /// A hub and the socket end the HTTP thread polls.
    pub fn new() -> std::io::Result<(Arc<Hub>, UnixStream)> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let hub = Hub {
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            wake_tx,
        };
        Ok((Arc::new(hub), wake_rx))
    }

    /// A thread that panicked while holding the lock left plain data
    /// behind, still good to read.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        // Full means a wake-up is already pending.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// The poll thread's view of every open connection: new ones appear,
    /// missing ones are gone (their watchers are ended).
    pub fn publish(&self, conns: impl Iterator<Item = (ConnId, Published)>) {
        let mut state = self.lock();
        let mut changed = false;
        let mut seen = Vec::new();
        for (id, published) in conns {
            seen.push(id);
            match state.cameras.get_mut(&id) {
                Some(camera) => camera.published = published,
                None => {
                    changed = true;
                    state.cameras.insert(
                        id,
                        Camera {
                            published,
                            encoding: None,
                            newest: None,
                            watchers: 0,
                            encoded: 0,
                            passed_through: 0,
                        },
                    );
                }
            }
        }
        let gone: Vec<ConnId> = state
            .cameras
            .keys()
            .filter(|id| seen.binary_search(id).is_err())
            .copied()
            .collect();
        for id in gone {
            changed = true;
            retire(&mut state, id);
        }
        drop(state);
        if changed {
            self.wake();
        }
    }

    /// Connection `id` closed with these last counts, after a decode error
    /// `(kind, reason)` if that is what closed it. Its counts go to its
    /// camera id's totals, published or not (a connection can close before
    /// the first publish).
    pub fn closed(&self, id: ConnId, last: Published, error: Option<(String, String)>) {
        let mut state = self.lock();
        let camera = state.cameras.remove(&id);
        let (encoded, passed_through) = camera.map_or((0, 0), |c| (c.encoded, c.passed_through));
        if let Some(camera_id) = last.camera_id {
            let totals = state.retired.entry(camera_id).or_default();
            totals.add(&last.totals, encoded, passed_through);
            if let Some(error) = error {
                *totals.decode_errors.entry(error).or_default() += 1;
            }
        }
        drop(state);
        self.wake();
    }

    /// A decode worker decoded a frame of `id` whose body was `body`. If
    /// someone watches the camera, makes its JPEG (`encode` turns the
    /// decoded frame into one; a JPEG body is used as it is) and wakes the
    /// watchers. Returns whether it made one.
    pub fn frame(&self, id: ConnId, body: &[u8], encode: impl FnOnce() -> Option<Vec<u8>>) -> bool {
        let encoding = Encoding::of(body);
        {
            let mut state = self.lock();
            let Some(camera) = state.cameras.get_mut(&id) else {
                return false;
            };
            camera.encoding = Some(encoding);
            if camera.watchers == 0 {
                return false;
            }
        }
        let bytes = match encoding {
            Encoding::Jpeg => body.to_vec(),
            Encoding::GzipBmp => match encode() {
                Some(bytes) => bytes,
                None => return false,
            },
        };
        let mut state = self.lock();
        let number = state.next_number;
        let Some(camera) = state.cameras.get_mut(&id) else {
            return false;
        };
        match encoding {
            Encoding::Jpeg => camera.passed_through += 1,
            Encoding::GzipBmp => camera.encoded += 1,
        }
        camera.newest = Some(Arc::new(Jpeg { number, bytes }));
        state.next_number += 1;
        drop(state);
        self.wake();
        true
    }

    /// Sets how many watch each camera (the HTTP thread, after any change).
    pub fn watch(&self, watchers: &BTreeMap<ConnId, usize>) {
        let mut state = self.lock();
        for (id, camera) in state.cameras.iter_mut() {
            camera.watchers = watchers.get(id).copied().unwrap_or(0);
        }
    }

    /// Counts one accepted or refused camera connection.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Moves a connection's counts into its camera id's retired totals.
fn retire(state: &mut State, id: ConnId) {
    let Some(camera) = state.cameras.remove(&id) else {
        return;
    };
    if let Some(camera_id) = camera.published.camera_id {
        state.retired.entry(camera_id).or_default().add(
            &camera.published.totals,
            camera.encoded,
            camera.passed_through,
        );
    }
}

/// Per camera id: retired counts plus those of its open connections.
pub fn totals_by_id(state: &State) -> BTreeMap<CameraId, IdTotals> {
    let mut all = state.retired.clone();
    for camera in state.cameras.values() {
        if let Some(camera_id) = camera.published.camera_id {
            all.entry(camera_id).or_default().add(
                &camera.published.totals,
                camera.encoded,
                camera.passed_through,
            );
        }
    }
    all
}
