//! Log lines about peers, rate-limited per peer: the first line about a
//! peer is logged, the next ones within [`WINDOW`] are only counted, and the
//! count is summed up in one line when the window ends. An agent refused by
//! `--max-clients` that comes back 67 times in 10 s then costs two lines,
//! not 67, and the README's "state changes are logged once" stays true. The
//! server keeps one table each for refusals (per address), connections and
//! ends (per address and camera id).
//!
//! It decides and counts; the server writes the lines. No clock, no I/O: a
//! test drives it with explicit `Instant`s.
//!
//! Memory is bounded whatever a flood does: at most [`MAX_PEERS`] peers are
//! tracked at once (a peer is forgotten when its window ends). Lines about
//! further peers while the table is full are not logged but counted
//! together, and summed up when that overflow's own window ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long after a peer's logged line its further lines are only counted.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Most peers tracked at once. 256 entries of a few dozen bytes each (plus
/// the caller's detail): a few tens of KiB at most.
pub const MAX_PEERS: usize = 256;

/// What the caller does with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it: the first line about this peer in its window.
    Log,
    /// Do not: it is counted, and will be summed up.
    Counted,
}

/// The lines not logged about one peer (or, with no peer, about the peers
/// that did not fit the table) in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<D> {
    /// Lines not logged.
    pub count: u64,
    /// The window they fell in: from the first line to its end.
    pub window: Duration,
    /// The caller's detail of the last line not logged.
    pub last: D,
}

struct Entry<D> {
    since: Instant,
    count: u64,
    last: Option<D>,
}

/// A rate limiter for log lines keyed by peer `K`, remembering for each
/// peer a detail `D` of its last unlogged line for the summary.
pub struct PeerLog<K, D> {
    peers: HashMap<K, Entry<D>>,
    /// Lines about peers that found the table full.
    overflow: Option<Entry<D>>,
    max_peers: usize,
}

impl<K: Hash + Eq + Clone, D> PeerLog<K, D> {
    pub fn new() -> PeerLog<K, D> {
        PeerLog::with_max_peers(MAX_PEERS)
    }

    fn with_max_peers(max_peers: usize) -> PeerLog<K, D> {
        PeerLog {
            peers: HashMap::new(),
            overflow: None,
            max_peers,
        }
    }

    /// One line about `peer` at `now`: log it, or count it (keeping
    /// `detail()` for the summary). Call [`PeerLog::flush`] first, so that
    /// a window that ended starts over.
    pub fn line(&mut self, now: Instant, peer: &K, detail: impl FnOnce() -> D) -> Verdict {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.count += 1;
            entry.last = Some(detail());
            return Verdict::Counted;
        }
        if self.peers.len() < self.max_peers {
            self.peers.insert(
                peer.clone(),
                Entry {
                    since: now,
                    count: 0,
                    last: None,
                },
            );
            return Verdict::Log;
        }
        let overflow = self.overflow.get_or_insert(Entry {
            since: now,
            count: 0,
            last: None,
        });
        overflow.count += 1;
        overflow.last = Some(detail());
        Verdict::Counted
    }

    /// Ends the windows that are over at `now`: hands `summary` each one
    /// with lines not logged (`None` as the peer for the overflow), and
    /// forgets those peers.
    pub fn flush(&mut self, now: Instant, mut summary: impl FnMut(Option<&K>, Summary<D>)) {
        let over = |e: &Entry<D>| now.saturating_duration_since(e.since) >= WINDOW;
        if self.peers.values().any(over) {
            self.peers.retain(|peer, entry| {
                if !over(entry) {
                    return true;
                }
                if let Some(last) = entry.last.take() {
                    summary(
                        Some(peer),
                        Summary {
                            count: entry.count,
                            window: WINDOW,
                            last,
                        },
                    );
                }
                false
            });
        }
        if self.overflow.as_ref().is_some_and(over) {
            if let Some(Entry {
                count,
                last: Some(last),
                ..
            }) = self.overflow.take()
            {
                summary(
                    None,
                    Summary {
                        count,
                        window: WINDOW,
                        last,
                    },
                );
            }
        }
    }

    /// When the next window ends, if any is open: the poll loop wakes then
    /// to write its summary.
    pub fn next_flush(&self) -> Option<Instant> {
        self.peers
            .values()
            .chain(&self.overflow)
            .map(|e| e.since + WINDOW)
            .min()
    }

    /// Peers tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Flushes at `now` and returns what it summed up.
    fn flushed(
        log: &mut PeerLog<u32, &'static str>,
        now: Instant,
    ) -> Vec<(Option<u32>, u64, &'static str)> {
        let mut out = Vec::new();
        log.flush(now, |peer, s| out.push((peer.copied(), s.count, s.last)));
        out.sort();
        out
    }

    #[test]
    fn the_first_line_is_logged_and_the_rest_summed_up_once_at_the_window_end() {
        let t0 = Instant::now();
        let mut log = PeerLog::new();
        assert_eq!(log.line(t0, &5, || "a"), Verdict::Log);
        for i in 1..=41 {
            assert_eq!(log.line(t0 + i * 100 * MS, &5, || "b"), Verdict::Counted);
        }
        assert_eq!(log.next_flush(), Some(t0 + WINDOW));
        assert_eq!(flushed(&mut log, t0 + WINDOW - MS), []);
        assert_eq!(flushed(&mut log, t0 + WINDOW), [(Some(5), 41, "b")]);
        // Summed up once; the peer is forgotten, so its next line is logged.
        assert_eq!(flushed(&mut log, t0 + 2 * WINDOW), []);
        assert_eq!(log.next_flush(), None);
        assert_eq!(log.line(t0 + 2 * WINDOW, &5, || "c"), Verdict::Log);
    }

    #[test]
    fn a_peer_with_one_line_needs_no_summary() {
        let t0 = Instant::now();
        let mut log = PeerLog::new();
        assert_eq!(log.line(t0, &5, || "a"), Verdict::Log);
        assert_eq!(flushed(&mut log, t0 + WINDOW), []);
        assert_eq!(log.tracked(), 0);
    }

    #[test]
    fn each_peer_has_its_own_window() {
        let t0 = Instant::now();
        let mut log = PeerLog::new();
        assert_eq!(log.line(t0, &1, || "a"), Verdict::Log);
        assert_eq!(log.line(t0 + 5 * MS, &2, || "a"), Verdict::Log);
        assert_eq!(log.line(t0 + 6 * MS, &1, || "x"), Verdict::Counted);
        assert_eq!(log.line(t0 + 7 * MS, &2, || "y"), Verdict::Counted);
        assert_eq!(log.line(t0 + 8 * MS, &2, || "z"), Verdict::Counted);
        assert_eq!(flushed(&mut log, t0 + WINDOW), [(Some(1), 1, "x")]);
        assert_eq!(log.next_flush(), Some(t0 + 5 * MS + WINDOW));
        assert_eq!(flushed(&mut log, t0 + 5 * MS + WINDOW), [(Some(2), 2, "z")]);
    }

    #[test]
    fn a_flood_of_peers_is_capped_and_the_overflow_summed_up_together() {
        let t0 = Instant::now();
        let mut log = PeerLog::with_max_peers(4);
        let verdicts: Vec<Verdict> = (0..1000).map(|p| log.line(t0, &p, || "o")).collect();
        assert!(verdicts[..4].iter().all(|v| *v == Verdict::Log));
        assert!(verdicts[4..].iter().all(|v| *v == Verdict::Counted));
        assert_eq!(log.tracked(), 4, "the table does not grow past its cap");
        // A tracked peer still counts as itself.
        assert_eq!(log.line(t0 + MS, &2, || "t"), Verdict::Counted);
        assert_eq!(
            flushed(&mut log, t0 + WINDOW + MS),
            [(None, 996, "o"), (Some(2), 1, "t")]
        );
        // Room again: a new peer's first line is logged.
        assert_eq!(log.line(t0 + WINDOW + MS, &5000, || "n"), Verdict::Log);
    }

    #[test]
    fn the_default_cap_is_max_peers() {
        let t0 = Instant::now();
        let mut log: PeerLog<usize, ()> = PeerLog::new();
        for p in 0..MAX_PEERS * 3 {
            log.line(t0, &p, || ());
        }
        assert_eq!(log.tracked(), MAX_PEERS);
    }
}
