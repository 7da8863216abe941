//! Recycled byte buffers, so steady state allocates nothing per frame.
//!
//! The pipeline keeps two pools: raw frames (capture → mailbox → encoder)
//! and wire buffers (encoder → outbox → sender). Whoever is done with a
//! buffer puts it back. How many buffers exist is bounded by the pipeline
//! (one per stage and worker, all allocated before the first frame; see
//! `pipeline`), not by the pool.

use std::sync::Mutex;

use crate::sync::lock;

#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
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
