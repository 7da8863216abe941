//! The hand-off from the encoders to the sender: frames leave in capture
//! order, and only the newest one that can go is sent.
//!
//! Encoders finish out of order (frame 7 may be done before frame 6). The
//! outbox knows which frames are still being encoded, so it holds frame 7
//! until frame 6 is done rather than sending 7 and then dropping 6 as late:
//! parallel encoding costs no frames. When the sender is slower than the
//! encoders (a slow network), a finished frame replaces an older one that
//! is waiting, so the viewer always gets the newest picture and nothing is
//! ever sent after a newer frame. At most one frame waits per encoder, so
//! memory is bounded.
//!
//! While the viewer is away, nothing is kept: frames are dropped (and
//! encoders skip encoding them).

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::frame::{lock, Pool, WAIT_SLICE};
use crate::stats::Stats;
use crate::stop::Stop;

/// One encoded frame, ready to write: header and body in one buffer.
pub struct Encoded {
    pub seq: u64,
    pub captured: Instant,
    /// Size of the BMP before gzip, for the compression ratio.
    pub bmp_len: usize,
    /// `[id][u32 BE len][gzip body]`, written with one write.
    pub wire: Vec<u8>,
}

#[derive(Default)]
struct State {
    connected: bool,
    /// Frames an encoder has taken but not finished.
    in_flight: Vec<u64>,
    /// Finished frames waiting for the sender, sorted by `seq`.
    ready: Vec<Encoded>,
    /// The newest frame handed to the sender; older ones are never sent.
    last_sent: Option<u64>,
    /// The sender is writing a frame. Frames that become sendable meanwhile
    /// compete: only the newest is kept.
    sender_busy: bool,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    changed: Condvar,
}

impl Outbox {
    /// Records that an encoder took frame `seq`.
    pub fn claim(&self, seq: u64) {
        lock(&self.state).in_flight.push(seq);
    }

    /// True while the sender has a connection, i.e. encoding is worth it.
    pub fn is_connected(&self) -> bool {
        lock(&self.state).connected
    }

    /// An encoder is done with frame `seq`: `encoded` is the result, or
    /// None if it was skipped.
    pub fn finish(&self, seq: u64, encoded: Option<Encoded>, pool: &Pool, stats: &Stats) {
        let mut dropped = Vec::new();
        {
            let mut state = lock(&self.state);
            state.in_flight.retain(|&s| s != seq);
            match encoded {
                Some(e) if state.connected && state.last_sent.map_or(true, |last| e.seq > last) => {
                    let at = state.ready.partition_point(|r| r.seq < e.seq);
                    state.ready.insert(at, e);
                }
                Some(e) => dropped.push(e.wire),
                None => {}
            }
            prune(&mut state, &mut dropped);
        }
        self.changed.notify_all();
        stats.dropped(dropped.len() as u64);
        for buf in dropped {
            pool.put(buf);
        }
    }

    /// The sender connected or lost its connection. Losing it drops every
    /// waiting frame: they would be stale by the time a new one is up.
    pub fn set_connected(&self, connected: bool, pool: &Pool, stats: &Stats) {
        let dropped: Vec<Encoded> = {
            let mut state = lock(&self.state);
            state.connected = connected;
            state.sender_busy = false;
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

    /// Waits until encoding one more frame is worth it, or returns false
    /// once a stop is requested.
    ///
    /// While the sender is busy writing, only one frame may be on its way
    /// to it (encoding or waiting): when the network is slower than the
    /// encoders, more would be encoded only to be replaced by a newer one,
    /// and on a Pi that CPU is the frame rate. The newest raw frame waits in
    /// the mailbox instead, where replacing it costs nothing. The check is a
    /// heuristic (the state can change before the frame is taken); the
    /// ordering rules above hold regardless.
    pub fn wait_for_room(&self, stop: &Stop) -> bool {
        let mut state = lock(&self.state);
        loop {
            if stop.is_requested() {
                return false;
            }
            let pipeline_empty = state.ready.is_empty() && state.in_flight.is_empty();
            if !state.connected || !state.sender_busy || pipeline_empty {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the next frame to send, or returns None once a stop is
    /// requested.
    pub fn next(&self, stop: &Stop) -> Option<Encoded> {
        let mut state = lock(&self.state);
        if state.sender_busy {
            state.sender_busy = false;
            // Encoders may be waiting in `wait_for_room`.
            self.changed.notify_all();
        }
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
                    state.sender_busy = true;
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

    pub fn wake_all(&self) {
        let _state = lock(&self.state);
        self.changed.notify_all();
    }
}

/// Drops the frames that can never be sent because a newer one will go
/// first:
/// - among frames that wait for an older frame still being encoded, only
///   the newest between two such frames can go once they are done;
/// - among frames ready to go while the sender is busy, only the newest.
///
/// Frames that became sendable together while the sender is idle all stay:
/// they only waited for an older frame, and go out in order right away.
fn prune(state: &mut State, dropped: &mut Vec<Vec<u8>>) {
    let oldest_in_flight = state.in_flight.iter().min().copied();
    let mut i = 0;
    while i + 1 < state.ready.len() {
        let (a, b) = (state.ready[i].seq, state.ready[i + 1].seq);
        let sendable = oldest_in_flight.map_or(true, |f| b < f);
        let blocked_between = state.in_flight.iter().any(|&f| a < f && f < b);
        if blocked_between || (sendable && !state.sender_busy) {
            i += 1;
        } else {
            dropped.push(state.ready.remove(i).wire);
        }
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
        }
    }

    fn setup() -> (Outbox, Pool, Stats, Stop) {
        let outbox = Outbox::default();
        let (pool, stats) = (Pool::default(), Stats::new(0));
        outbox.set_connected(true, &pool, &stats);
        (outbox, pool, stats, Stop::default())
    }

    #[test]
    fn frame_finished_early_waits_for_older_one() {
        let (outbox, pool, stats, stop) = setup();
        outbox.claim(6);
        outbox.claim(7);
        outbox.finish(7, Some(encoded(7)), &pool, &stats);
        outbox.finish(6, Some(encoded(6)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(6));
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(7));
        assert_eq!(stats.totals().dropped, 0);
    }

    #[test]
    fn slow_sender_gets_newest_frame_and_older_waiting_ones_drop() {
        let (outbox, pool, stats, stop) = setup();
        outbox.claim(1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        // The sender is busy writing frame 1 while 2, 3 and 4 finish.
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        for seq in 2..=4 {
            outbox.claim(seq);
            outbox.finish(seq, Some(encoded(seq)), &pool, &stats);
        }
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(4));
        assert_eq!(stats.totals().dropped, 2);
    }

    #[test]
    fn frames_between_in_flight_ones_keep_only_the_newest() {
        let (outbox, pool, stats, stop) = setup();
        for seq in 1..=4 {
            outbox.claim(seq);
        }
        // 1 is slow; 2 and 3 finish, so 2 can never go before 3.
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        outbox.finish(3, Some(encoded(3)), &pool, &stats);
        assert_eq!(stats.totals().dropped, 1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        outbox.finish(4, Some(encoded(4)), &pool, &stats);
        // 3 became sendable while the sender was busy with 1, then 4 did.
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(4));
        assert_eq!(stats.totals().dropped, 2);
    }

    #[test]
    fn frame_older_than_one_sent_is_dropped_not_sent_late() {
        let (outbox, pool, stats, stop) = setup();
        outbox.claim(9);
        outbox.finish(9, Some(encoded(9)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(9));
        // Cannot happen through the mailbox, but the outbox must hold the line.
        outbox.finish(8, Some(encoded(8)), &pool, &stats);
        stop.request();
        assert!(outbox.next(&stop).is_none());
        assert_eq!(stats.totals().dropped, 1);
    }

    #[test]
    fn busy_sender_admits_one_frame_at_a_time() {
        let (outbox, pool, stats, stop) = setup();
        assert!(outbox.wait_for_room(&stop), "idle sender: room");
        outbox.claim(1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        assert_eq!(outbox.next(&stop).map(|e| e.seq), Some(1));
        assert!(
            outbox.wait_for_room(&stop),
            "busy sender, empty pipeline: room"
        );
        outbox.claim(2);
        // Busy sender and frame 2 on its way: no room until a stop...
        stop.request();
        assert!(!outbox.wait_for_room(&stop));
    }

    #[test]
    fn disconnected_outbox_keeps_nothing() {
        let (outbox, pool, stats, _stop) = setup();
        outbox.claim(1);
        outbox.finish(1, Some(encoded(1)), &pool, &stats);
        outbox.set_connected(false, &pool, &stats);
        outbox.claim(2);
        outbox.finish(2, Some(encoded(2)), &pool, &stats);
        assert_eq!(stats.totals().dropped, 2);
        assert!(lock(&outbox.state).ready.is_empty());
    }
}
