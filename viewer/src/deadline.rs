//! poll(2)'s timeout for a loop's earliest deadline, shared by the camera
//! loop (`server`) and the HTTP thread (`http::serve`).

use std::time::Instant;

use nix::poll::PollTimeout;

/// How long poll may wait at `now` for the deadline `next`: forever for
/// none, rounded up to whole milliseconds so that a deadline 0.4 ms away
/// does not spin at 0 ms, and capped at what poll takes.
pub fn timeout_until(next: Option<Instant>, now: Instant) -> PollTimeout {
    match next {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.saturating_duration_since(now).as_micros().div_ceil(1000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_deadline_waits_forever() {
        assert_eq!(timeout_until(None, Instant::now()), PollTimeout::NONE);
    }

    #[test]
    fn a_part_of_a_millisecond_rounds_up_not_to_a_spin() {
        let now = Instant::now();
        let next = now + Duration::from_micros(400);
        assert_eq!(timeout_until(Some(next), now), PollTimeout::from(1u8));
        let next = now + Duration::from_micros(2001);
        assert_eq!(timeout_until(Some(next), now), PollTimeout::from(3u8));
    }

    #[test]
    fn a_past_deadline_does_not_wait() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(timeout_until(Some(past), now), PollTimeout::ZERO);
    }

    #[test]
    fn a_far_deadline_is_capped_at_what_poll_takes() {
        let now = Instant::now();
        let next = now + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(timeout_until(Some(next), now), PollTimeout::MAX);
    }
}
