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
//! **Paced by the link.** When the link carries fewer frames than the
//! camera makes, a place alone would let an encoder start the next frame
//! the moment the sender takes one, so every frame would wait a whole
//! transmit time, encoded, for the link. Instead, admission also waits for
//! the frame's turn ([`Pace`]): the sender reports when it took the frame
//! it is writing and how long the link took per frame (from taking a frame
//! to the socket wanting more), the encoders how long an encode takes, and
//! an encoder starts a frame only when it will be done about when the link
//! can take it. Meanwhile the capture side keeps replacing the raw frame in
//! the mailbox (free): frames the link cannot carry are never encoded, and
//! the one that is, is the newest. `--fps` stays the upper bound: pacing
//! only ever delays a start. On a free link (or while the sender waits for
//! a frame) the turn has already come, and admission is places only.
//!
//! With a frame limit (`--frames N`), no frame is started beyond the N the
//! sender still needs, so the last ones are not encoded just to be thrown
//! away at exit.
//!
//! While the viewer is away, nothing is kept: frames are dropped (and
//! encoders skip encoding them).
//!
//! The outbox counts nothing: a frame it refuses is handed back to the
//! encoder that finished it, and [`Outbox::on_disconnect`] says how many
//! waiting frames it dropped, so the callers keep the stats.

use std::time::{Duration, Instant};

use crate::pool::BufferPool;
use crate::sync::{Monitor, Stop, WAIT_SLICE};

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
    /// How long its encode took, wall time, for [`Pace`].
    pub encode_time: Duration,
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
    pace: Pace,
}

impl State {
    /// Frames that will reach the sender unless the connection breaks:
    /// the one being written, those waiting, encoding or about to be taken.
    fn pending(&self) -> usize {
        usize::from(self.sending) + self.ready.len() + self.in_flight.len() + self.reserved
    }
}

/// Weight of a new measurement in the link and encode time averages: the
/// estimate follows a change of link rate within a few frames.
const EWMA_WEIGHT: f64 = 0.25;

/// An encode is started this much (at least [`MIN_MARGIN`]) before its turn
/// by the estimate, for the encode that runs slower than average and for
/// wake-up delays: a late frame idles the link, an early one only waits.
const MARGIN_SHARE: f64 = 0.25;
const MIN_MARGIN: Duration = Duration::from_millis(4);

/// What admission knows of the link and the encoders: when a frame started
/// now would be encoded, and when the link could take it.
#[derive(Default)]
struct Pace {
    /// When the sender took the frame it is writing; None while it waits
    /// for a frame (the link is idle: any frame is welcome at once).
    writing_since: Option<Instant>,
    /// Link time per frame: from the sender taking a frame to the socket
    /// wanting the next one (average).
    link_time: Option<Duration>,
    /// Wall time of one encode (average).
    encode_time: Option<Duration>,
}

impl Pace {
    /// When to start encoding a frame that has `ahead` frames before it
    /// (waiting, encoding or reserved), at `now`: its turn on the link,
    /// minus an encode and a margin. None: at once.
    ///
    /// The link is free for the first frame ahead when the one being written
    /// is through (or now, if the sender waits for a frame: that frame goes
    /// the moment it is encoded); each frame ahead takes one link time.
    fn start_at(&self, ahead: usize, now: Instant) -> Option<Instant> {
        let link = self.link_time?;
        let free = match self.writing_since {
            Some(since) => since.checked_add(link)?,
            None if ahead == 0 => return None,
            None => now,
        };
        let encode = self.encode_time.unwrap_or_default();
        let margin = encode.mul_f64(MARGIN_SHARE).max(MIN_MARGIN);
        let turn = free.checked_add(link.checked_mul(u32::try_from(ahead).ok()?)?)?;
        turn.checked_sub(encode + margin)
    }
}

/// The average of `old` and `new`, `new` weighing [`EWMA_WEIGHT`].
fn average(old: Option<Duration>, new: Duration) -> Duration {
    match old {
        Some(old) => old.mul_f64(1.0 - EWMA_WEIGHT) + new.mul_f64(EWMA_WEIGHT),
        None => new,
    }
}

pub struct Outbox {
    state: Monitor<State>,
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
            state: Monitor::new(State::default()),
            capacity: capacity.max(1),
            frame_limit,
        }
    }

    /// Waits until there is a place for one more frame and reserves it, or
    /// returns false once a stop is requested. The caller then takes a frame
    /// and [`claim`](Outbox::claim)s it, or gives the place back with
    /// [`unreserve`](Outbox::unreserve).
    ///
    /// A place is taken only once it is the frame's turn by the link's pace
    /// (see the module doc): the caller then takes the newest raw frame.
    pub fn wait_for_room(&self, stop: &Stop) -> bool {
        let mut state = self.state.lock();
        loop {
            if stop.is_requested() {
                return false;
            }
            let mut wait = WAIT_SLICE;
            if self.has_room(&state) {
                let now = Instant::now();
                match self.start_at(&state, now) {
                    Some(at) if at > now => wait = wait.min(at - now),
                    _ => {
                        state.reserved += 1;
                        return true;
                    }
                }
            }
            state = self.state.wait(state, wait);
        }
    }

    /// When a frame admitted now should start encoding, if not at once:
    /// only while connected, behind the frames already in the pipeline.
    fn start_at(&self, state: &State, now: Instant) -> Option<Instant> {
        if !state.connected {
            return None;
        }
        let ahead = state.ready.len() + state.in_flight.len() + state.reserved;
        state.pace.start_at(ahead, now)
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
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(1);
        drop(state);
        self.state.notify_all();
    }

    /// Records that an encoder took frame `seq`, in the place it reserved.
    pub fn claim(&self, seq: u64) {
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(1);
        state.in_flight.push(seq);
    }

    /// True while the sender has a connection, i.e. encoding is worth it.
    pub fn is_connected(&self) -> bool {
        self.state.lock().connected
    }

    /// Waits until the sender is connected, at most `timeout`; true if it is.
    pub fn wait_connected(&self, stop: &Stop, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        loop {
            let now = Instant::now();
            if state.connected || stop.is_requested() || now >= deadline {
                return state.connected;
            }
            state = self.state.wait(state, (deadline - now).min(WAIT_SLICE));
        }
    }

    /// An encoder finished a frame. Its place stays taken until the sender
    /// takes the frame.
    ///
    /// Returns the frame back if it will not be sent (the viewer is away, or
    /// a newer frame was already sent): the caller recycles its buffer and
    /// counts it dropped.
    #[must_use = "a refused frame is a dropped frame: recycle its buffer and count it"]
    pub fn finish(&self, encoded: Encoded) -> Option<Encoded> {
        {
            let mut state = self.state.lock();
            state.pace.encode_time = Some(average(state.pace.encode_time, encoded.encode_time));
        }
        self.done(encoded.seq, Some(encoded))
    }

    /// An encoder dropped frame `seq` without encoding it: its place is free.
    pub fn skip(&self, seq: u64) {
        // Nothing is handed in, so nothing comes back.
        let _ = self.done(seq, None);
    }

    /// Frame `seq` is no longer being encoded; queues `encoded` if it is
    /// worth sending, else hands it back.
    fn done(&self, seq: u64, encoded: Option<Encoded>) -> Option<Encoded> {
        let mut state = self.state.lock();
        state.in_flight.retain(|&s| s != seq);
        let refused = match encoded {
            Some(e) if state.connected && state.last_sent.is_none_or(|last| e.seq > last) => {
                let at = state.ready.partition_point(|r| r.seq < e.seq);
                state.ready.insert(at, e);
                None
            }
            other => other,
        };
        drop(state);
        self.state.notify_all();
        refused
    }

    /// The sender connected: frames are worth encoding again. A new
    /// connection's link is measured anew.
    pub fn on_connect(&self) {
        let mut state = self.state.lock();
        state.connected = true;
        state.pace.writing_since = None;
        state.pace.link_time = None;
        drop(state);
        self.state.notify_all();
    }

    /// The sender lost its connection. That drops every waiting frame (they
    /// would be stale by the time a new one is up): their buffers go back
    /// to `pool`, and the number dropped is returned for the caller to count.
    pub fn on_disconnect(&self, pool: &BufferPool) -> usize {
        let mut state = self.state.lock();
        state.connected = false;
        // A frame being written when the connection went was not sent.
        state.sending = false;
        let dropped = state.ready.len();
        for e in state.ready.drain(..) {
            pool.put(e.wire);
        }
        drop(state);
        self.state.notify_all();
        dropped
    }

    /// Waits for the next frame to send, or returns None once a stop is
    /// requested. Call [`written`](Outbox::written) once it is sent.
    pub fn next(&self, stop: &Stop) -> Option<Encoded> {
        self.take(stop, None).map(|(e, _)| e)
    }

    /// Like [`next`](Outbox::next), for a link that had to be waited for:
    /// the newest frame that may go (none older is still encoding) is taken,
    /// and the older ready ones, stale now, go back to `pool`; their number
    /// is returned for the caller to count.
    pub fn next_newest(&self, stop: &Stop, pool: &BufferPool) -> Option<(Encoded, usize)> {
        self.take(stop, Some(pool))
    }

    fn take(&self, stop: &Stop, stale_to: Option<&BufferPool>) -> Option<(Encoded, usize)> {
        let mut state = self.state.lock();
        state.sending = false;
        // The link is idle until a frame comes: the next one is due now.
        state.pace.writing_since = None;
        self.state.notify_all();
        loop {
            if stop.is_requested() {
                return None;
            }
            let oldest_in_flight = state.in_flight.iter().min().copied();
            // Frames older than every one still encoding may go, oldest
            // first (or only the newest of them); the rest wait, so none
            // leaves after a newer one.
            let may_go = state
                .ready
                .partition_point(|r| oldest_in_flight.is_none_or(|f| r.seq < f));
            if may_go > 0 {
                let stale = match stale_to {
                    Some(pool) => {
                        for e in state.ready.drain(..may_go - 1) {
                            pool.put(e.wire);
                        }
                        may_go - 1
                    }
                    None => 0,
                };
                let e = state.ready.remove(0);
                state.last_sent = Some(e.seq);
                state.sending = true;
                state.pace.writing_since = Some(Instant::now());
                drop(state);
                // Its place is free: an encoder may start the next frame.
                self.state.notify_all();
                return Some((e, stale));
            }
            state = self.state.wait(state, WAIT_SLICE);
        }
    }

    /// The link took `link_time` for the frame last taken, from
    /// [`next`](Outbox::next) to the socket wanting more: the pace that
    /// admission follows.
    pub fn link_drained(&self, link_time: Duration) {
        let mut state = self.state.lock();
        state.pace.link_time = Some(average(state.pace.link_time, link_time));
        drop(state);
        self.state.notify_all();
    }

    /// The frame last returned by [`next`](Outbox::next) was fully written.
    pub fn written(&self) {
        let mut state = self.state.lock();
        state.sending = false;
        state.written += 1;
    }

    /// Wakes every waiter, so they see a stop request at once.
    pub fn wake_all(&self) {
        self.state.wake_all();
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
            encode_time: Duration::ZERO,
        }
    }

    /// A connected outbox with `capacity` places.
    fn setup(capacity: usize, frame_limit: u64) -> (Outbox, Stop) {
        let outbox = Outbox::new(capacity, frame_limit);
        outbox.on_connect();
        (outbox, Stop::default())
    }

    fn room(outbox: &Outbox) -> bool {
        outbox.has_room(&outbox.state.lock())
    }

    /// What an encoder does: reserve a place, then take frame `seq`.
    fn start(outbox: &Outbox, stop: &Stop, seq: u64) {
        assert!(room(outbox), "no place for frame {seq}");
        assert!(outbox.wait_for_room(stop));
        outbox.claim(seq);
    }

    /// What an encoder does next: hand in frame `seq`, encoded. True if the
    /// outbox queued it for the sender, false if it refused (dropped) it.
    fn finish(outbox: &Outbox, seq: u64) -> bool {
        outbox.finish(encoded(seq)).is_none()
    }

    fn next_seq(outbox: &Outbox, stop: &Stop) -> Option<u64> {
        outbox.next(stop).map(|e| e.seq)
    }

    #[test]
    fn frame_finished_early_waits_for_older_one() {
        let (outbox, stop) = setup(2, 0);
        start(&outbox, &stop, 6);
        start(&outbox, &stop, 7);
        assert!(finish(&outbox, 7));
        assert!(finish(&outbox, 6));
        assert_eq!(next_seq(&outbox, &stop), Some(6));
        assert_eq!(next_seq(&outbox, &stop), Some(7));
    }

    #[test]
    fn busy_sender_wastes_no_encoded_frame() {
        // The old outbox kept only the newest frame that became sendable
        // during a write, throwing away up to 13% of the encodes.
        let (outbox, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        assert!(finish(&outbox, 1));
        assert_eq!(next_seq(&outbox, &stop), Some(1));
        // The sender is writing frame 1 while 2 and 3 finish: both are kept.
        for seq in 2..=3 {
            start(&outbox, &stop, seq);
            assert!(finish(&outbox, seq), "frame {seq} was dropped");
        }
        assert_eq!(next_seq(&outbox, &stop), Some(2));
        assert_eq!(next_seq(&outbox, &stop), Some(3));
    }

    #[test]
    fn slow_sender_stops_encoders_at_capacity() {
        let (outbox, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        assert!(finish(&outbox, 1));
        start(&outbox, &stop, 2);
        // Frame 1 waits for the sender, 2 is encoding: both places taken,
        // so the newest raw frame stays in the mailbox instead.
        assert!(!room(&outbox));
        assert!(finish(&outbox, 2));
        assert!(!room(&outbox), "finished frames keep their place");
        assert_eq!(next_seq(&outbox, &stop), Some(1));
        assert!(room(&outbox), "taking a frame frees its place");
    }

    #[test]
    fn reserved_place_counts_until_given_back() {
        let (outbox, stop) = setup(1, 0);
        assert!(outbox.wait_for_room(&stop));
        assert!(!room(&outbox), "a reservation holds the place");
        outbox.unreserve();
        assert!(room(&outbox));
    }

    #[test]
    fn frames_between_in_flight_ones_all_go_in_order() {
        let (outbox, stop) = setup(4, 0);
        for seq in 1..=4 {
            start(&outbox, &stop, seq);
        }
        // 1 is slow; 2 and 3 finish first and wait for it.
        assert!(finish(&outbox, 2));
        assert!(finish(&outbox, 3));
        assert!(finish(&outbox, 1));
        assert_eq!(next_seq(&outbox, &stop), Some(1));
        assert!(finish(&outbox, 4));
        let rest: Vec<u64> = (0..3).filter_map(|_| next_seq(&outbox, &stop)).collect();
        assert_eq!(rest, [2, 3, 4]);
    }

    #[test]
    fn frame_older_than_one_sent_is_dropped_not_sent_late() {
        let (outbox, stop) = setup(2, 0);
        start(&outbox, &stop, 9);
        assert!(finish(&outbox, 9));
        assert_eq!(next_seq(&outbox, &stop), Some(9));
        // Cannot happen through the mailbox, but the outbox must hold the line.
        start(&outbox, &stop, 8);
        assert!(!finish(&outbox, 8), "frame 8 was queued after 9 was sent");
        stop.request();
        assert_eq!(next_seq(&outbox, &stop), None);
    }

    #[test]
    fn no_frame_is_started_beyond_the_frame_limit() {
        let (outbox, stop) = setup(2, 3);
        start(&outbox, &stop, 1);
        start(&outbox, &stop, 2);
        assert!(finish(&outbox, 1));
        assert_eq!(next_seq(&outbox, &stop), Some(1));
        start(&outbox, &stop, 3);
        assert!(finish(&outbox, 2));
        outbox.written();
        assert_eq!(next_seq(&outbox, &stop), Some(2));
        // 1 written, 2 being written, 3 encoding: the limit is covered.
        assert!(!room(&outbox));
        // The write of 2 fails: it must be replaced.
        assert_eq!(outbox.on_disconnect(&BufferPool::default()), 0);
        outbox.on_connect();
        assert!(room(&outbox));
    }

    #[test]
    fn skipped_frame_frees_its_place() {
        let (outbox, stop) = setup(1, 0);
        start(&outbox, &stop, 1);
        assert!(!room(&outbox));
        outbox.skip(1);
        assert!(room(&outbox));
    }

    #[test]
    fn disconnected_outbox_keeps_nothing() {
        let (outbox, stop) = setup(2, 0);
        let pool = BufferPool::default();
        start(&outbox, &stop, 1);
        assert!(finish(&outbox, 1));
        assert_eq!(
            outbox.on_disconnect(&pool),
            1,
            "the waiting frame is dropped"
        );
        assert_eq!(pool.get_dirty(), [1], "and its buffer recycled");
        start(&outbox, &stop, 2);
        assert!(
            !finish(&outbox, 2),
            "a frame finished while away is dropped"
        );
        assert!(outbox.state.lock().ready.is_empty());
        assert!(room(&outbox), "dropped frames give their places back");
        assert!(!outbox.wait_connected(&stop, Duration::from_millis(1)));
    }

    #[test]
    fn pace_starts_an_encode_so_it_is_done_at_the_links_turn() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let pace = Pace {
            writing_since: Some(t0),
            link_time: Some(ms(100)),
            encode_time: Some(ms(20)),
        };
        // Turn at 100 ms, minus the encode, minus a margin of 5 ms (a quarter).
        assert_eq!(pace.start_at(0, t0), Some(t0 + ms(75)));
        // One frame ahead: the turn after its turn.
        assert_eq!(pace.start_at(1, t0), Some(t0 + ms(175)));
        // A sender waiting for a frame: at once, unless one is on its way
        // (the one an encoder is late with): then one link time after it.
        // Starting at once made that frame wait a whole link time, encoded.
        let idle = Pace {
            writing_since: None,
            ..pace
        };
        assert_eq!(idle.start_at(0, t0), None);
        assert_eq!(idle.start_at(1, t0), Some(t0 + ms(75)));
        // Nothing measured yet: at once.
        let fresh = Pace {
            writing_since: Some(t0),
            link_time: None,
            encode_time: None,
        };
        assert_eq!(fresh.start_at(0, t0), None);
    }

    #[test]
    fn slow_link_holds_the_next_encode_until_its_turn() {
        let (outbox, stop) = setup(2, 0);
        start(&outbox, &stop, 1);
        let mut e = encoded(1);
        e.encode_time = Duration::from_millis(10);
        assert!(outbox.finish(e).is_none());
        outbox.link_drained(Duration::from_millis(150));
        let taken = Instant::now();
        assert_eq!(next_seq(&outbox, &stop), Some(1));
        // Its turn: 150 ms after the sender took frame 1, less 10 ms of
        // encode and a 4 ms margin.
        assert!(outbox.wait_for_room(&stop));
        let waited = taken.elapsed();
        assert!(
            waited >= Duration::from_millis(130),
            "admitted after {waited:?}"
        );
        outbox.unreserve();
        // The sender waiting for a frame admits the next one at once.
        outbox.on_disconnect(&BufferPool::default());
        outbox.on_connect();
        let before = Instant::now();
        assert!(outbox.wait_for_room(&stop));
        assert!(before.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn link_that_was_waited_for_gets_the_newest_sendable_frame() {
        let (outbox, stop) = setup(4, 0);
        let pool = BufferPool::default();
        for seq in 1..=4 {
            start(&outbox, &stop, seq);
        }
        assert!(finish(&outbox, 1));
        assert!(finish(&outbox, 2));
        assert!(finish(&outbox, 4));
        // 3 is still encoding: 2 is the newest that may go; 1 is stale.
        let (e, stale) = outbox.next_newest(&stop, &pool).unwrap();
        assert_eq!((e.seq, stale), (2, 1));
        assert!(finish(&outbox, 3));
        let (e, stale) = outbox.next_newest(&stop, &pool).unwrap();
        assert_eq!((e.seq, stale), (4, 1));
        // The stale frames' buffers were recycled.
        assert!(!pool.get_dirty().is_empty() && !pool.get_dirty().is_empty());
    }
}
