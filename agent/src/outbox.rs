//! The hand-off from the encoders to the sender: frames leave in capture
//! order, no encoded frame is thrown away while the viewer is connected, and
//! the queue in front of the sender is at most `workers` frames long.
//!
//! Encoders finish out of order (frame 7 may be done before frame 6). The
//! outbox knows which frames are still being encoded, so it holds frame 7
//! until frame 6 is done rather than sending 7 and then dropping 6 as late:
//! parallel encoding costs no frames.
//!
//! **Admission, not pruning.** An encoder may start a frame only when it
//! gets one of `capacity` (= `--workers`) places: a place is held from the
//! moment the encoder reserves it ([`Outbox::wait_for_room`]), through
//! encoding, until the sender takes the frame. Reserving and taking the
//! frame happen in that order under the outbox and mailbox locks, so the
//! count is exact, not a guess: every encoded frame has a place in the queue
//! and is sent (unless the connection is lost). Encoding a frame only to
//! replace it by a newer one wasted 1–13% of the CPU with `--fps 0` into a
//! fast viewer, whenever two frames happened to become sendable during one
//! write.
//!
//! **Newest frame wins, before encoding.** When the sender is slower than
//! capture, the encoders run out of places and wait; meanwhile the capture
//! side keeps replacing the raw frame in the mailbox (free), so the frame an
//! encoder takes when a place frees up is the newest one. Nothing builds up:
//! the frames in the pipeline are bounded by `capacity`, so memory is at most
//! `capacity` encoded frames plus the one being written.
//!
//! **Latency bound.** A frame claimed from the mailbox has at most
//! `capacity - 1` older frames ahead of it (each encoding or waiting), plus
//! the one the sender is writing. So from capture it reaches the viewer
//! within one capture interval (waiting in the mailbox), plus its own encode
//! time, plus `capacity` frame writes. When the link keeps up, the queue is
//! empty and this is just the encode time plus one write; when it does not,
//! the extra delay is at most `capacity - 1` writes over what sending only
//! the newest frame would give (the price of never discarding finished
//! work).
//!
//! With a frame limit (`--frames N`), no frame is started beyond the N the
//! sender still needs, so the last ones are not encoded just to be thrown
//! away at exit.
//!
//! While the viewer is away, nothing is kept: frames are dropped (and
//! encoders skip encoding them).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::frame::{lock, Pool, WAIT_SLICE};
use crate::stats::Stats;
use crate::stop::Stop;

/// One encoded frame, ready to write: header and body in one buffer.
pub struct Encoded {
    pub seq: u64,
    pub captured: Instant,
    /// Size of the BMP before gzip, for the compression ratio.
    pub bmp_len: usize,
    /// `[id][u32 BE len][gzip body]` in `wire[..wire_len]`, written with
    /// one write. The buffer is kept at its high-water length, so the
    /// compressor does not zero-fill ~0.9 MB per frame; what follows
    /// `wire_len` is left over from earlier frames.
    pub wire: Vec<u8>,
    pub wire_len: usize,
}

impl Encoded {
    /// The bytes to write: header and body.
    pub fn frame_bytes(&self) -> &[u8] {
        self.wire.get(..self.wire_len).unwrap_or(&self.wire)
    }
}

#[derive(Default)]
struct State {
    connected: bool,
    /// Places reserved by encoders that have not taken their frame yet.
    reserved: usize,
    /// Frames an encoder has taken but not finished.
    in_flight: Vec<u64>,
    /// Finished frames waiting for the sender, sorted by `seq`.
    ready: Vec<Encoded>,
    /// The newest frame handed to the sender; older ones are never sent.
    last_sent: Option<u64>,
    /// The sender is writing a frame it took from here.
    sending: bool,
    /// Frames fully written, for the frame limit.
    written: u64,
}

impl State {
    /// Frames that will reach the sender unless the connection breaks:
    /// the one being written, those waiting, encoding or about to be taken.
    fn pending(&self) -> usize {
        usize::from(self.sending) + self.ready.len() + self.in_flight.len() + self.reserved
    }
}

pub struct Outbox {
    state: Mutex<State>,
    changed: Condvar,
    /// Places for frames between the mailbox and the sender.
    capacity: usize,
    /// Frames the sender will write before stopping; 0 means no limit.
    frame_limit: u64,
}

impl Outbox {
    /// An outbox with `capacity` places (one per encoder; at least 1) for a
    /// sender that stops after `frame_limit` frames (0: never).
    pub fn new(capacity: usize, frame_limit: u64) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            frame_limit,
        }
    }

    /// Waits until there is a place for one more frame and reserves it, or
    /// returns false once a stop is requested. The caller then takes a frame
    /// and [`claim`](Outbox::claim)s it, or gives the place back with
    /// [`unreserve`](Outbox::unreserve).
    pub fn wait_for_room(&self, stop: &Stop) -> bool {
        let mut state = lock(&self.state);
        loop {
            if stop.is_requested() {
                return false;
            }
            if self.has_room(&state) {
                state.reserved += 1;
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// True if one more frame fits: a free place, and (with a frame limit)
    /// the frames already written or on their way fall short of it.
    ///
    /// While disconnected, frames are dropped unencoded and need no place;
    /// they take one all the same, which keeps the count simple.
    fn has_room(&self, state: &State) -> bool {
        let in_pipeline = state.ready.len() + state.in_flight.len() + state.reserved;
        let still_needed = self.frame_limit == 0
            || state.written.saturating_add(state.pending() as u64) < self.frame_limit;
        in_pipeline < self.capacity && still_needed
    }

    /// Gives back a place reserved by [`wait_for_room`](Outbox::wait_for_room)
    /// whose encoder took no frame (a stop was requested).
    pub fn unreserve(&self) {
        let mut state = lock(&self.state);
        state.reserved = state.reserved.saturating_sub(1);
        drop(state);
        self.changed.notify_all();
    }

    /// Records that an encoder took frame `seq`, in the place it reserved.
    pub fn claim(&self, seq: u64) {
        let mut state = lock(&self.state);
        state.reserved = state.reserved.saturating_sub(1);
        state.in_flight.push(seq);
    }

    /// True while the sender has a connection, i.e. encoding is worth it.
    pub fn is_connected(&self) -> bool {
        lock(&self.state).connected
    }

    /// Waits until the sender is connected, at most `timeout`; true if it is.
    pub fn wait_connected(&self, stop: &Stop, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            let now = Instant::now();
            if state.connected || stop.is_requested() || now >= deadline {
                return state.connected;
            }
            state = self
                .changed
                .wait_timeout(state, (deadline - now).min(WAIT_SLICE))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// An encoder is done with frame `seq`: `encoded` is the result, or
    /// None if it was skipped. Its place stays taken until the sender takes
    /// the frame (or it is dropped).
    pub fn finish(&self, seq: u64, encoded: Option<Encoded>, pool: &Pool, stats: &Stats) {
        let mut dropped = None;
        {
            let mut state = lock(&self.state);
            state.in_flight.retain(|&s| s != seq);
            match encoded {
                Some(e) if state.connected && state.last_sent.map_or(true, |last| e.seq > last) => {
                    let at = state.ready.partition_point(|r| r.seq < e.seq);
                    state.ready.insert(at, e);
                }
                Some(e) => dropped = Some(e.wire),
                None => {}
            }
        }
        self.changed.notify_all();
        if let Some(buf) = dropped {
            stats.dropped(1);
            pool.put(buf);
        }
    }

    /// The sender connected or lost its connection. Losing it drops every
    /// waiting frame: they would be stale by the time a new one is up.
    pub fn set_connected(&self, connected: bool, pool: &Pool, stats: &Stats) {
        let dropped: Vec<Encoded> = {
            let mut state = lock(&self.state);
            state.connected = connected;
            // A frame being written when the connection went was not sent.
            state.sending = false;
            self.changed.notify_all();
            if connected {
                Vec::new()
            } else {
                std::mem::take(&mut state.ready)
            }
        };
        stats.dropped(dropped.len() as u64);
        for e in dropped {
            pool.put(e.wire);
        }
    }

    /// Waits for the next frame to send, or returns None once a stop is
    /// requested. Call [`written`](Outbox::written) once it is sent.
    pub fn next(&self, stop: &Stop) -> Option<Encoded> {
        let mut state = lock(&self.state);
        state.sending = false;
        loop {
            if stop.is_requested() {
                return None;
            }
            let oldest_in_flight = state.in_flight.iter().min().copied();
            // The oldest ready frame goes first, unless an older one is
            // still being encoded.
            if let Some(first) = state.ready.first() {
                if oldest_in_flight.map_or(true, |f| first.seq < f) {
                    let e = state.ready.remove(0);
                    state.last_sent = Some(e.seq);
                    state.sending = true;
                    drop(state);
                    // Its place is free: an encoder may start the next frame.
                    self.changed.notify_all();
                    return Some(e);
                }
            }
            state = self
                .changed
                .wait_timeout(state, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The frame last returned by [`next`](Outbox::next) was fully written.
    pub fn written(&self) {
        let mut state = lock(&self.state);
        state.sending = false;
        state.written += 1;
    }

    pub fn wake_all(&self) {
        let _state = lock(&self.state);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(seq: u64) -> Encoded {
        Encoded {
            seq,
            captured: Instant::now(),
            bmp_len: 0,
            wire: vec![seq as u8],
            wire_len: 1,
        }
    }

    fn setup(capacity: usize, frame_limit: u64) -> (Outbox, Pool, Stats, Stop) {
        let outbox = Outbox::new(capacity, frame_limit);
        let (pool, stats) = (Pool::default(), Stats::new(0));
        outbox.set_connected(true, &pool, &stats);
        (outbox, pool, stats, Stop::default())
    }

    fn room(outbox: &Outbox) -> bool {
        outbox.has_room(&lock(&outbox.state))
    }

    /// What an encoder does: reserve a place, then take frame `seq`.
    fn start(outbox: &Outbox, stop: &Stop, seq: u64) {
        assert!(room(outbox), "no place for frame {seq}");
        assert!(outbox.wait_for_room(stop));
        outbox.claim(seq);
    }

    #[test]
    fn frame_finished_early_waits_for_older_one() {
        let (outbox, pool, stats, stop) = setup(2, 0);
        start(&outbox, &stop, 6);
        start(&outbox, &stop, 7);
        outbox.finish(7, Some(encoded(7)), &pool, &stats);
        outbox.finish(6, Some(encoded(6)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(6));
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(7));
        assert_eq!(stats.totals().dropped, 0);
    }

    #[test]
    fn busy_sender_wastes_no_encoded_frame() {
        // The old outbox kept only the newest frame that became sendable
        // during a write, throwing away up to 13% of the encodes.
        let (outbox, pool, stats, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        // The sender is writing frame 1 while 2 and 3 finish.
        for seq in 2..=3 {
            start(&outbox, &stop, seq);
            outbox.finish(seq, Some(encoded(seq)), &pool, &stats);
        }
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(2));
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(3));
        assert_eq!(stats.totals().dropped, 0);
    }

    #[test]
    fn slow_sender_stops_encoders_at_capacity() {
        let (outbox, pool, stats, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        start(&outbox, &stop, 2);
        // Frame 1 waits for the sender, 2 is encoding: both places taken,
        // so the newest raw frame stays in the mailbox instead.
        assert!(!room(&outbox));
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        assert!(!room(&outbox), "finished frames keep their place");
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        assert!(room(&outbox), "taking a frame frees its place");
    }

    #[test]
    fn reserved_place_counts_until_given_back() {
        let (outbox, _pool, _stats, stop) = setup(1, 0);
        assert!(outbox.wait_for_room(&stop));
        assert!(!room(&outbox), "a reservation holds the place");
        outbox.unreserve();
        assert!(room(&outbox));
    }

    #[test]
    fn frames_between_in_flight_ones_all_go_in_order() {
        let (outbox, pool, stats, stop) = setup(4, 0);
        for seq in 1..=4 {
            start(&outbox, &stop, seq);
        }
        // 1 is slow; 2 and 3 finish first and wait for it.
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        outbox.finish(3, Some(encoded(3)), &pool, &stats);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        outbox.finish(4, Some(encoded(4)), &pool, &stats);
        let rest: Vec<u64> = (0..3)
            .filter_map(|_| outbox.next(&stop))
            .map(|e| e.seq)
            .collect();
        assert_eq!(rest, [2, 3, 4]);
        assert_eq!(stats.totals().dropped, 0);
    }

    #[test]
    fn frame_older_than_one_sent_is_dropped_not_sent_late() {
        let (outbox, pool, stats, stop) = setup(2, 0);
        start(&outbox, &stop, 9);
        outbox.finish(9, Some(encoded(9)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(9));
        // Cannot happen through the mailbox, but the outbox must hold the line.
        start(&outbox, &stop, 8);
        outbox.finish(8, Some(encoded(8)), &pool, &stats);
        stop.request();
        assert!(outbox.next(&stop).is_none());
        assert_eq!(stats.totals().dropped, 1);
    }

    #[test]
    fn no_frame_is_started_beyond_the_frame_limit() {
        let (outbox, pool, stats, stop) = setup(2, 3);
        start(&outbox, &stop, 1);
        start(&outbox, &stop, 2);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        start(&outbox, &stop, 3);
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        outbox.written();
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(2));
        // 1 written, 2 being written, 3 encoding: the limit is covered.
        assert!(!room(&outbox));
        // The write of 2 fails: it must be replaced.
        outbox.set_connected(false, &pool, &stats);
        outbox.set_connected(true, &pool, &stats);
        assert!(room(&outbox));
    }

    #[test]
    fn skipped_frame_frees_its_place() {
        let (outbox, pool, stats, stop) = setup(1, 0);
        start(&outbox, &stop, 1);
        assert!(!room(&outbox));
        outbox.finish(1, None, &pool, &stats);
        assert!(room(&outbox));
    }

    #[test]
    fn disconnected_outbox_keeps_nothing() {
        let (outbox, pool, stats, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        outbox.set_connected(false, &pool, &stats);
        start(&outbox, &stop, 2);
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        assert_eq!(stats.totals().dropped, 2);
        assert!(lock(&outbox.state).ready.is_empty());
        assert!(room(&outbox), "dropped frames give their places back");
        assert!(!outbox.wait_connected(&stop, Duration::from_millis(1)));
    }
}
