//! The single-slot mailbox that hands the newest captured frame to the
//! encoders, and the raw frame it holds.
//!
//! Newest frame wins (µStreamer's rule): the capture side never waits for
//! the encoders, and an unclaimed frame is replaced by a newer one, so the
//! encoders never work through a backlog of stale frames. The mailbox hands
//! a replaced frame back to whoever put the new one in; that caller
//! recycles its buffer and counts the drop.

use std::time::Instant;

use proto::format::Layout;

use crate::sync::{Monitor, Stop, WAIT_SLICE};

/// One frame as the camera delivered it (raw pixels in any capture format,
/// or a JPEG), copied out of the capture buffer.
pub struct RawFrame {
    /// Capture order, starting at 0 and increasing by 1 per captured frame.
    pub seq: u64,
    /// When it was captured; the sender measures latency from here.
    pub captured: Instant,
    /// Its format, size and planes (strides from V4L2's `bytesperline`).
    /// A raw frame's `data` holds at least `layout.frame_len()` bytes.
    pub layout: Layout,
    pub data: Vec<u8>,
}

/// A single slot holding the newest captured frame.
pub struct Mailbox {
    slot: Monitor<Option<RawFrame>>,
}

impl Mailbox {
    pub fn new() -> Mailbox {
        Mailbox {
            slot: Monitor::new(None),
        }
    }

    /// Puts the newest frame in the slot, and returns the older frame it
    /// replaced, if no encoder had taken that one yet.
    #[must_use = "a replaced frame is a dropped frame: recycle its buffer and count it"]
    pub fn put(&self, frame: RawFrame) -> Option<RawFrame> {
        let old = self.slot.lock().replace(frame);
        self.slot.notify_all();
        old
    }

    /// Waits for a frame and takes it, or returns None once a stop is
    /// requested. `claim` runs with the slot locked, so whatever it records
    /// about the frame happens before any newer frame can be taken.
    pub fn take(&self, stop: &Stop, mut claim: impl FnMut(&RawFrame)) -> Option<RawFrame> {
        let mut slot = self.slot.lock();
        loop {
            if stop.is_requested() {
                return None;
            }
            if let Some(frame) = slot.take() {
                claim(&frame);
                drop(slot);
                // Wake a producer waiting in `wait_empty`.
                self.slot.notify_all();
                return Some(frame);
            }
            slot = self.slot.wait(slot, WAIT_SLICE);
        }
    }

    /// Waits until the slot is empty (an encoder took the last frame), or a
    /// stop is requested. Sources running "as fast as possible" use it to
    /// produce frames as fast as the encoders take them, instead of
    /// spinning on frames that would only be replaced.
    pub fn wait_empty(&self, stop: &Stop) {
        let mut slot = self.slot.lock();
        while slot.is_some() && !stop.is_requested() {
            slot = self.slot.wait(slot, WAIT_SLICE);
        }
    }

    /// Wakes every waiter, so they see a stop request at once.
    pub fn wake_all(&self) {
        self.slot.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> RawFrame {
        RawFrame {
            seq,
            captured: Instant::now(),
            layout: Layout::new(proto::format::PixelFormat::Yuyv, 2, 1, 4).unwrap(),
            data: vec![0; 4],
        }
    }

    #[test]
    fn unclaimed_frame_is_handed_back_when_replaced() {
        let (mailbox, stop) = (Mailbox::new(), Stop::default());
        assert!(mailbox.put(frame(1)).is_none());
        assert_eq!(mailbox.put(frame(2)).map(|f| f.seq), Some(1));
        let mut claimed = None;
        let taken = mailbox.take(&stop, |f| claimed = Some(f.seq));
        assert_eq!((taken.map(|f| f.seq), claimed), (Some(2), Some(2)));
        assert!(
            mailbox.put(frame(3)).is_none(),
            "a taken frame is not dropped"
        );
    }
}
