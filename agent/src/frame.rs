//! Captured frames, the buffer pool they live in, and the single-slot
//! mailbox that hands the newest one to the encoders.
//!
//! Newest frame wins (µStreamer's rule): the capture side never waits for
//! the encoders, and an unclaimed frame is replaced by a newer one, so the
//! encoders never work through a backlog of stale frames.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Stats;
use crate::stop::Stop;

/// How long a blocked wait sleeps before it looks at the stop flag again.
/// Stop requests also notify, so this is only a safety net.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// One raw YUYV frame, copied out of the capture buffer.
pub struct Frame {
    /// Capture order, starting at 0 and increasing by 1 per captured frame.
    pub seq: u64,
    /// When it was captured; the sender measures latency from here.
    pub captured: Instant,
    pub width: u32,
    pub height: u32,
    /// Bytes per row in `data` (V4L2's `bytesperline`), at least `2 * width`.
    pub stride: usize,
    pub data: Vec<u8>,
}

/// Recycled byte buffers, so steady state allocates nothing per frame.
///
/// The number of buffers is bounded by the pipeline (one per stage and
/// worker), not by this pool.
#[derive(Default)]
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    /// An empty buffer, with the capacity of a previously used one if any.
    pub fn get(&self) -> Vec<u8> {
        let mut buf = lock(&self.free).pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// A buffer as an earlier user left it, contents and length included,
    /// for writers that overwrite it and keep their own length: skipping
    /// the clear saves re-initialising it (see `gzip::Compressor::compress_at`).
    pub fn get_dirty(&self) -> Vec<u8> {
        lock(&self.free).pop().unwrap_or_default()
    }

    pub fn put(&self, buf: Vec<u8>) {
        lock(&self.free).push(buf);
    }
}

/// Locks a mutex; a poisoned one is still used, since every critical section
/// here leaves the data consistent (and a panicking thread stops the agent).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A single slot holding the newest captured frame.
pub struct Mailbox {
    slot: Mutex<Option<Frame>>,
    changed: Condvar,
}

impl Mailbox {
    pub fn new() -> Mailbox {
        Mailbox {
            slot: Mutex::new(None),
            changed: Condvar::new(),
        }
    }

    /// Puts the newest frame in the slot. An unclaimed older frame is
    /// dropped: its buffer goes back to `pool`.
    pub fn put(&self, frame: Frame, pool: &Pool, stats: &Stats) {
        let old = lock(&self.slot).replace(frame);
        self.changed.notify_all();
        if let Some(old) = old {
            stats.dropped(1);
            pool.put(old.data);
        }
    }

    /// Waits for a frame and takes it, or returns None once a stop is
    /// requested. `claim` runs with the slot locked, so whatever it records
    /// about the frame happens before any newer frame can be taken.
    pub fn take(&self, stop: &Stop, mut claim: impl FnMut(&Frame)) -> Option<Frame> {
        let mut slot = lock(&self.slot);
        loop {
            if stop.is_requested() {
                return None;
            }
            if let Some(frame) = slot.take() {
                claim(&frame);
                drop(slot);
                // Wake a producer waiting in `wait_empty`.
                self.changed.notify_all();
                return Some(frame);
            }
            slot = self
                .changed
                .wait_timeout(slot, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until the slot is empty (an encoder took the last frame), or a
    /// stop is requested. Sources running "as fast as possible" use it to
    /// produce frames as fast as the encoders take them, instead of
    /// spinning on frames that would only be replaced.
    pub fn wait_empty(&self, stop: &Stop) {
        let mut slot = lock(&self.slot);
        while slot.is_some() && !stop.is_requested() {
            slot = self
                .changed
                .wait_timeout(slot, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes every waiter, so they see a stop request at once.
    pub fn wake_all(&self) {
        let _slot = lock(&self.slot);
        self.changed.notify_all();
    }
}
