//! The agent's synchronisation helpers, at the bottom of its module tree:
//! a mutex lock that survives poisoning, a [`Monitor`] (a value behind a
//! mutex plus the condvar that announces its changes), and [`Stop`], the
//! shared stop request every thread waits on.
//!
//! Every wait in the agent is bounded: either a [`Monitor::wait`] of at most
//! [`WAIT_SLICE`] followed by a look at the stop flag, or a [`Stop::sleep`].
//! So a stop request (SIGINT/SIGTERM, `--frames` reached, a fatal error)
//! reaches every thread within milliseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a blocked wait sleeps before it looks at the stop flag again.
/// Stop requests also notify, so this is only a safety net.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Locks a mutex; a poisoned one is still used, since every critical section
/// in the agent leaves its data consistent (and a panicking thread stops the
/// agent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value behind a mutex, and a condvar its users notify whenever they
/// change it, so that others can wait for the change.
pub struct Monitor<T> {
    value: Mutex<T>,
    changed: Condvar,
}

impl<T> Monitor<T> {
    pub fn new(value: T) -> Monitor<T> {
        Monitor {
            value: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.value)
    }

    /// Unlocks, sleeps until notified or until `timeout` has passed, and
    /// locks again. Callers loop and recheck: a wake-up says only that
    /// something may have changed.
    pub fn wait<'a>(&self, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
        self.changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Wakes every waiter; call it after changing the value.
    pub fn notify_all(&self) {
        self.changed.notify_all();
    }

    /// Wakes every waiter, taking the lock first so that none is between
    /// its check and its wait: used to make them see a stop request at once.
    pub fn wake_all(&self) {
        let _value = self.lock();
        self.changed.notify_all();
    }
}

/// A stop request shared by every thread, that sleeping threads wake up for.
pub struct Stop {
    requested: AtomicBool,
    wake: Monitor<()>,
}

impl Default for Stop {
    fn default() -> Stop {
        Stop {
            requested: AtomicBool::new(false),
            wake: Monitor::new(()),
        }
    }
}

impl Stop {
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.wake.wake_all();
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until a stop is requested. Returns true if
    /// a stop was requested.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.wake.lock();
        loop {
            if self.is_requested() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self.wake.wait(guard, deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_wakes_a_sleeper_at_once() {
        let stop = Stop::default();
        assert!(!stop.sleep(Duration::from_millis(1)));
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                let started = Instant::now();
                (stop.sleep(Duration::from_secs(30)), started.elapsed())
            });
            std::thread::sleep(Duration::from_millis(20));
            stop.request();
            let (stopped, slept) = sleeper.join().unwrap();
            assert!(stopped);
            assert!(slept < Duration::from_secs(5), "slept {slept:?}");
        });
    }
}
