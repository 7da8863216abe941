//! Where frames come from: a V4L2 camera, or a synthetic source (moving
//! colour bars, or raw frames from a file) that runs the same pipeline
//! without a camera. Each runs on the capture thread and publishes frames
//! into the mailbox through a [`Capture`], the only part of the pipeline a
//! source sees.

pub mod file;
pub mod pattern;
pub mod v4l2;

use std::time::{Duration, Instant};

use anyhow::Result;
use proto::format::Layout;

use crate::mailbox::{Mailbox, RawFrame};
use crate::outbox::Outbox;
use crate::pool::BufferPool;
use crate::stats::Stats;
use crate::sync::Stop;

/// What the capture thread works with.
pub struct Links<'a> {
    /// Where each new frame goes, replacing an unclaimed older one.
    pub mailbox: &'a Mailbox,
    /// Where frame buffers come from, and a replaced frame's goes back to.
    pub raw_pool: &'a BufferPool,
    /// Only waited on: an "as fast as possible" source idles while no
    /// viewer is connected (see [`Pacer`]).
    pub outbox: &'a Outbox,
    pub stats: &'a Stats,
    pub stop: &'a Stop,
}

/// The capture thread's side of the pipeline: numbers frames and puts each
/// into the mailbox, in a recycled buffer.
pub struct Capture<'a> {
    links: Links<'a>,
    next_seq: u64,
}

impl<'a> Capture<'a> {
    pub fn new(links: Links<'a>) -> Capture<'a> {
        Capture { links, next_seq: 0 }
    }

    /// A buffer to fill with the next frame (recycled, so no allocation in
    /// steady state).
    pub fn buffer(&self) -> Vec<u8> {
        self.links.raw_pool.get()
    }

    /// Publishes a filled buffer as the newest frame.
    pub fn publish(&mut self, data: Vec<u8>, layout: Layout, captured: Instant) {
        let frame = RawFrame {
            seq: self.next_seq,
            captured,
            layout,
            data,
        };
        self.next_seq += 1;
        self.links.stats.captured();
        if let Some(replaced) = self.links.mailbox.put(frame) {
            self.links.stats.skipped_before_encoding(1);
            self.links.raw_pool.put(replaced.data);
        }
    }

    /// A frame was captured but is not worth encoding (short, corrupt, or
    /// already superseded by a newer one).
    pub fn skip(&self) {
        self.links.stats.captured();
        self.links.stats.skipped_before_encoding(1);
    }

    /// The camera was lost; the source will try to open it again.
    pub fn camera_lost(&self) {
        self.links.stats.camera_lost();
    }

    /// True once the agent is stopping: the source should return.
    pub fn stop_requested(&self) -> bool {
        self.links.stop.is_requested()
    }

    /// Sleeps for `duration` or until a stop is requested. Returns true if
    /// a stop was requested.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.links.stop.sleep(duration)
    }
}

/// Runs a synthetic source until a stop is requested or `fill` fails: at
/// each frame time (see [`Pacer`]), `fill` writes the next frame of
/// `layout` into an empty recycled buffer, which is published.
pub fn run_paced(
    layout: Layout,
    fps: u32,
    capture: &mut Capture,
    mut fill: impl FnMut(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut pacer = Pacer::new(fps);
    while pacer.wait(capture) {
        let mut buf = capture.buffer();
        fill(&mut buf)?;
        capture.publish(buf, layout, Instant::now());
    }
    Ok(())
}

/// Frame interval of an "as fast as possible" source while the viewer is away.
const IDLE_INTERVAL: Duration = Duration::from_millis(100);

/// Paces a synthetic source at `fps` frames per second; 0 means as fast as
/// the encoders take frames.
struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(fps: u32) -> Pacer {
        Pacer {
            interval: (fps > 0).then(|| Duration::from_secs(1) / fps),
            next: Instant::now(),
        }
    }

    /// Waits until the next frame is due. Returns false if a stop was
    /// requested meanwhile.
    fn wait(&mut self, capture: &Capture) -> bool {
        let Links {
            mailbox,
            outbox,
            stop,
            ..
        } = capture.links;
        match self.interval {
            None => {
                mailbox.wait_empty(stop);
                // With nobody to send to, frames are dropped unencoded: don't
                // spin making them as fast as memcpy allows, but do go on
                // the moment the sender connects (a fixed sleep cost every
                // run up to 100 ms of a start-up that takes ~1 ms).
                outbox.wait_connected(stop, IDLE_INTERVAL);
            }
            Some(interval) => {
                let now = Instant::now();
                if self.next > now && stop.sleep(self.next - now) {
                    return false;
                }
                // Running late by more than a frame (a busy machine) resets
                // the schedule instead of bursting to catch up.
                let now = Instant::now();
                self.next += interval;
                if self.next + interval < now {
                    self.next = now + interval;
                }
            }
        }
        !stop.is_requested()
    }
}

/// Runs `f` with a capture into a pipeline of its own, for the sources'
/// tests.
#[cfg(test)]
pub fn with_test_capture<R>(f: impl FnOnce(&mut Capture) -> R) -> R {
    let (mailbox, raw_pool) = (Mailbox::new(), BufferPool::default());
    let (outbox, stats, stop) = (Outbox::new(1, 0), Stats::new(0), Stop::default());
    f(&mut Capture::new(Links {
        mailbox: &mailbox,
        raw_pool: &raw_pool,
        outbox: &outbox,
        stats: &stats,
        stop: &stop,
    }))
}
