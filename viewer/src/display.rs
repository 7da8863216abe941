//! One window per camera, all on a display thread of their own, so that
//! nothing the X server does can hold up the poll thread.
//!
//! ```text
//! display ─┬─ windows   the display thread: every minifb window and Xlib call
//!          ├─ grid      where a new window goes (pure arithmetic)
//!          └─ xlib      Xlib's error handlers; the screen size
//! ```
//!
//! **The hand-over.** The poll thread gives each decoded picture to
//! [`Display::show`], which puts it in its camera's slot under a mutex and
//! returns: one slot per camera, holding the newest picture only. A picture
//! still in its slot when the next one comes was never drawn; it is
//! replaced, its buffer handed back, and the camera's stats count it as
//! skipped as stale (a newer frame replaced it), never queued. The display
//! thread takes every waiting picture in one short critical section and
//! does its X work without the lock. Neither side holds the mutex while it
//! does anything else, so the poll thread waits for it at most the time the
//! display thread takes to move a few buffers, whatever X does. What the
//! display thread has to say (a window closed, failed or drawn, Esc) waits
//! in the same shared state, and the poll thread collects it each time
//! round its loop, at least every [`EVENT_INTERVAL`] while windows are
//! open ([`Display::poll`]): nothing of it needs a wake-up sooner.
//!
//! **A window's failure is its camera's only.** A window that cannot be
//! created, cannot be drawn, gets an X protocol error or loses its X
//! connection (each minifb window is its own X client: `xkill`, or a
//! crashing X server) is reported as a [`ShowError`] for that connection,
//! and the server closes that one connection with a log line. Xlib's default
//! handlers would end the process instead; `xlib` replaces them.
//!
//! **What can block.** Only the display thread calls Xlib, and Xlib calls
//! block: creating a window costs several round trips, each draw and pump at
//! least one (minifb asks for the pointer with `XQueryPointer`), and each
//! flush waits while the X server does not read its socket. With a hung X
//! server (say, stopped with SIGSTOP) the display thread waits inside Xlib
//! for as long as it hangs: Xlib has no timeout, and nothing else can be
//! done with that X connection meanwhile. The poll thread does not wait
//! with it: cameras are still received, decoded, recorded and counted, each
//! camera's slot keeps only its newest picture, closed connections' windows
//! wait in a list, and after [`STALL_REPORT`] the viewer says once that the
//! windows are not updating. When the server answers again the display
//! thread closes what was closed meanwhile, draws the newest pictures and
//! says so. At shutdown it is given [`SHUTDOWN_WAIT`] to close its windows;
//! if the X server still hangs, the process exits without it. The one X
//! call outside the display thread is [`probe`], at startup, before any
//! camera is served: a display that hangs then holds the start.
//!
//! **Windows tile.** A new window goes to the next free cell of a grid that
//! fits the screen (`grid`), sized for `--max-clients` windows, and keeps
//! its frame's aspect ratio. Windows are resizable, and a picture is scaled
//! into its window with its aspect ratio kept (minifb's
//! `AspectRatioStretch`, black bars around it).
//!
//! **A frame size change reuses the window.** minifb cannot resize a window
//! from the program, but it scales every picture into the window it has.
//! So a camera whose size changes keeps its window and its place, and the
//! new picture is shown in proportion in it (letterboxed if the aspect
//! changed). This replaces the rule that refused a second size change
//! within a second: that rule existed because each change opened a new
//! window, a new X connection, which a client alternating sizes turned into
//! one X connection per frame. Reusing the window makes a size change cost
//! nothing in X, so there is nothing left to refuse, and a camera that
//! really changes size is shown, not dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use log::{info, warn};
use minifb::{Window, WindowOptions};
use proto::wire::CameraId;
use raw_window_handle::{HasDisplayHandle, RawDisplayHandle};

use crate::ConnId;

mod grid;
mod windows;
mod xlib;

/// Longest time between two event pumps of a window, and between two
/// collections of the display thread's events by the poll thread.
pub const EVENT_INTERVAL: Duration = Duration::from_millis(20);

/// How long the display thread may sit in one round of X calls before the
/// viewer says the windows are not updating.
pub const STALL_REPORT: Duration = Duration::from_secs(2);

/// How long shutdown waits for the display thread to close its windows.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Most "drawn" latencies waiting for the poll thread; more are not
/// sampled (the poll thread collects every [`EVENT_INTERVAL`]).
const MAX_SHOWN_EVENTS: usize = 4096;

/// Why one connection's window failed; the server closes that connection.
#[derive(Debug)]
pub enum ShowError {
    /// minifb could not create the window (e.g. the X server refuses more
    /// clients).
    Open(minifb::Error),
    /// minifb could not draw a frame.
    Draw(minifb::Error),
    /// The window's X connection was closed (`xkill`, or the X server
    /// went away).
    Lost,
    /// The X server answered one of the window's requests with an error.
    Protocol { error_code: u8, request_code: u8 },
    /// minifb panicked while handling the window.
    Panicked,
}

impl fmt::Display for ShowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShowError::Open(e) => write!(
                f,
                "cannot open its window: {} (the X server may refuse more clients; close other X programs, or start it with a larger -maxclients)",
                minifb_detail(e)
            ),
            ShowError::Draw(e) => write!(f, "cannot draw its window: {}", minifb_detail(e)),
            ShowError::Lost => write!(
                f,
                "its window lost its X connection (killed with xkill, or the X server went away)"
            ),
            ShowError::Protocol {
                error_code,
                request_code,
            } => {
                write!(
                    f,
                    "its window got X error {error_code} ({}) on request {request_code}",
                    xlib::error_name(*error_code)
                )?;
                match xlib::request_name(*request_code) {
                    Some(name) => write!(f, " ({name})"),
                    None => Ok(()),
                }
            }
            ShowError::Panicked => write!(f, "its window failed inside minifb (a panic)"),
        }
    }
}

/// What the display thread reports, collected by [`Display::poll`].
#[derive(Debug, Default)]
pub struct Events {
    /// Connections whose window the user closed.
    pub closed: Vec<ConnId>,
    /// Connections whose window failed.
    pub failed: Vec<(ConnId, ShowError)>,
    /// Esc was pressed in some window.
    pub quit: bool,
    /// Pictures drawn: the time from the frame's receipt until minifb
    /// handed it to the X server.
    pub shown: Vec<(ConnId, Duration)>,
    /// Pixel buffers done with, for the decoders to reuse.
    pub spent: Vec<Vec<u32>>,
}

impl Events {
    /// Moves everything from `other` into `self`.
    fn absorb(&mut self, other: &mut Events) {
        self.closed.append(&mut other.closed);
        self.failed.append(&mut other.failed);
        self.quit |= std::mem::take(&mut other.quit);
        let room = MAX_SHOWN_EVENTS.saturating_sub(self.shown.len());
        let n = other.shown.len().min(room);
        self.shown.extend(other.shown.drain(..n));
        other.shown.clear();
        self.spent.append(&mut other.spent);
    }
}

/// A decoded frame on its way to a window.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// `width * height` 0RGB pixels, top row first.
    pub pixels: Vec<u32>,
    /// When the frame's last byte was read from the socket.
    pub received: Instant,
}

/// One camera's place in the hand-over.
struct Slot {
    /// The newest picture not taken by the display thread yet.
    picture: Option<Picture>,
    /// The title its window should have.
    title: String,
}

/// What the poll thread and the display thread share.
#[derive(Default)]
struct State {
    slots: HashMap<ConnId, Slot>,
    /// Slots holding a picture.
    fresh: usize,
    /// Connections whose windows are to close.
    removed: Vec<ConnId>,
    /// Reported by the display thread, not collected yet.
    events: Events,
    /// Pixel buffers the display thread swapped out.
    spent: Vec<Vec<u32>>,
    /// Since when the display thread has been doing X work (`None` while it
    /// waits for work).
    busy_since: Option<Instant>,
    stop: bool,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the display thread for work, and shutdown for its end.
    work: Condvar,
}

impl Shared {
    /// A panic on the other side must not take this one down with a
    /// poisoned lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The poll thread's side of the windows.
pub struct Display {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Windows open or opening (connections given to [`Display::show`]).
    open: usize,
    /// The display thread's stall has been reported.
    stall_reported: Option<Instant>,
    last_poll: Instant,
}

/// Checks that a display is reachable, so a missing one is reported at
/// startup rather than when the first camera connects, and returns its
/// screen's size; installs Xlib's error handlers (see `xlib`) first.
pub fn probe() -> Result<(u32, u32)> {
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        return Err(anyhow!(
            "no display: DISPLAY is not set (set DISPLAY to an X server, e.g. DISPLAY=:0, or run with --headless)"
        ));
    }
    xlib::install().map_err(|e| {
        anyhow!(
            "cannot open a window: failed to load Xlib: {e} (install the X11 client libraries, e.g. `apt install libx11-6 libxcursor1`, or run with --headless)"
        )
    })?;
    if !xlib::survives_lost_connections() {
        warn!(
            "this libX11 is older than 1.7: a window whose X connection is lost stops every window (cameras are still received and recorded)"
        );
    }
    let options = WindowOptions {
        borderless: true,
        none: true,
        ..WindowOptions::default()
    };
    // Up to 1 s for a server that is resetting (see `new_window`).
    let window = new_window(
        "camstream viewer",
        (1, 1),
        options,
        10,
        Duration::from_millis(100),
    )
    .map_err(|e| no_display(&e))?;
    // Asked on this connection: a second one, opened after this one closed,
    // could meet a bare X server resetting (it does when its last client
    // leaves).
    let screen = xlib::screen_size(x_connection(&window)).map_err(|e| {
        anyhow!(
            "cannot open a window: {e} (set DISPLAY to a running X server, or run with --headless)"
        )
    })?;
    drop(window);
    Ok(screen)
}

/// The X connection (`Display*`) of a minifb window; 0 if minifb says none.
fn x_connection(window: &Window) -> xlib::DisplayPtr {
    match window.display_handle().map(|h| h.as_raw()) {
        Ok(RawDisplayHandle::Xlib(h)) => h.display.map_or(0, |p| p.as_ptr() as xlib::DisplayPtr),
        _ => 0,
    }
}

/// Creates a minifb window, trying again `retries` times, `delay` apart,
/// while the X server refuses the connection: a bare X server (no window
/// manager, no other client) resets each time its last client leaves, and a
/// connection that comes in meanwhile fails. Other errors are returned at
/// once.
fn new_window(
    title: &str,
    (width, height): (usize, usize),
    options: WindowOptions,
    retries: u32,
    delay: Duration,
) -> Result<Window, minifb::Error> {
    let mut left = retries;
    loop {
        match Window::new(title, width, height, options) {
            Err(minifb::Error::WindowCreate(detail))
                if detail == "XOpenDisplay failed" && left > 0 =>
            {
                left -= 1;
                thread::sleep(delay);
            }
            other => return other,
        }
    }
}

/// minifb's Display hides the detail ("Failed to create window"); keep it.
fn minifb_detail(e: &minifb::Error) -> String {
    match e {
        minifb::Error::WindowCreate(detail) => format!("Failed to create window: {detail}"),
        other => other.to_string(),
    }
}

fn no_display(e: &minifb::Error) -> anyhow::Error {
    let detail = minifb_detail(e);
    if detail.contains("failed to load") {
        // minifb loads libX11 and libXcursor at run time.
        return anyhow!(
            "cannot open a window: {detail} (install the X11 client libraries, e.g. `apt install libx11-6 libxcursor1`, or run with --headless)"
        );
    }
    anyhow!(
        "cannot open a window: {detail} (set DISPLAY to a running X server, e.g. DISPLAY=:0, or run with --headless)"
    )
}

/// `camera <id> — <peer address> — <fps> fps`
pub fn title(camera_id: CameraId, peer: SocketAddr, fps: f64) -> String {
    format!("camera {camera_id} — {peer} — {fps:.1} fps")
}

impl Display {
    /// Starts the display thread, with a window grid for `max_windows`
    /// windows on a `screen` of that size ([`probe`]'s).
    pub fn start(screen: (u32, u32), max_windows: usize) -> Result<Display> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("display".to_owned())
                .spawn(move || windows::run(shared, screen, max_windows))
                .context("cannot start the display thread")?
        };
        Ok(Display {
            shared,
            thread: Some(thread),
            open: 0,
            stall_reported: None,
            last_poll: Instant::now(),
        })
    }

    /// Hands a camera's newest picture to its window (opened on the first
    /// one). Never waits for X. Returns the pixels of the picture it
    /// replaced, if the display thread had not taken that one yet: a frame
    /// never drawn, for the caller to count and recycle.
    pub fn show(&mut self, conn: ConnId, title: String, picture: Picture) -> Option<Vec<u32>> {
        let mut state = self.shared.lock();
        let state = &mut *state;
        let slot = state.slots.entry(conn).or_insert_with(|| {
            self.open += 1;
            Slot {
                picture: None,
                title: String::new(),
            }
        });
        if slot.title != title {
            slot.title = title;
        }
        let replaced = slot.picture.replace(picture).map(|p| p.pixels);
        if replaced.is_none() {
            state.fresh += 1;
            self.shared.work.notify_one();
        }
        replaced
    }

    /// Closes a connection's window; returns the pixels of a picture it
    /// never drew.
    pub fn remove(&mut self, conn: ConnId) -> Option<Vec<u32>> {
        let mut state = self.shared.lock();
        let slot = state.slots.remove(&conn)?;
        self.open = self.open.saturating_sub(1);
        state.removed.push(conn);
        let pixels = slot.picture.map(|p| p.pixels);
        if pixels.is_some() {
            state.fresh = state.fresh.saturating_sub(1);
        }
        drop(state);
        self.shared.work.notify_one();
        pixels
    }

    /// Collects what the display thread reported into `out` (emptied
    /// first), and says once when the windows stall on the X server and
    /// when they move again.
    pub fn poll(&mut self, now: Instant, out: &mut Events) {
        out.closed.clear();
        out.failed.clear();
        out.quit = false;
        out.shown.clear();
        out.spent.clear();
        self.last_poll = now;
        let busy_since = {
            let mut state = self.shared.lock();
            std::mem::swap(out, &mut state.events);
            out.spent.append(&mut state.spent);
            state.busy_since
        };
        let stalled = busy_since.filter(|t| now.saturating_duration_since(*t) >= STALL_REPORT);
        match (stalled, self.stall_reported) {
            (Some(since), None) => {
                warn!(
                    "windows are not updating: the X server has not answered for {} s (is it stopped or hung?); cameras are still received, recorded and counted, and the windows catch up when it answers",
                    now.saturating_duration_since(since).as_secs()
                );
                self.stall_reported = Some(since);
            }
            (None, Some(since)) if busy_since != Some(since) => {
                info!(
                    "the X server answers again after {:.1} s; windows update again",
                    now.saturating_duration_since(since).as_secs_f64()
                );
                self.stall_reported = None;
            }
            _ => {}
        }
    }

    /// When [`Display::poll`] is next due, if any window is open.
    pub fn next_poll(&self) -> Option<Instant> {
        (self.open > 0 || self.stall_reported.is_some()).then(|| self.last_poll + EVENT_INTERVAL)
    }
}

impl Drop for Display {
    /// Stops the display thread, which closes its windows; gives up after
    /// [`SHUTDOWN_WAIT`] if the X server does not answer.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stop = true;
        self.shared.work.notify_all();
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    "the X server did not answer within {} s: leaving its windows to the process exit",
                    SHUTDOWN_WAIT.as_secs()
                );
                return;
            }
            state = self
                .shared
                .work
                .wait_timeout(state, left)
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_errors_keep_minifbs_detail() {
        let e = ShowError::Open(minifb::Error::WindowCreate("XOpenDisplay failed".into()));
        assert!(
            e.to_string().starts_with(
                "cannot open its window: Failed to create window: XOpenDisplay failed"
            ),
            "{e}"
        );
        let e = ShowError::Protocol {
            error_code: 11,
            request_code: 72,
        };
        assert_eq!(
            e.to_string(),
            "its window got X error 11 (BadAlloc) on request 72 (PutImage)"
        );
    }

    /// A display whose thread never runs: the hand-over alone.
    fn idle_display() -> Display {
        Display {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
            }),
            thread: None,
            open: 0,
            stall_reported: None,
            last_poll: Instant::now(),
        }
    }

    fn picture(pixel: u32) -> Picture {
        Picture {
            width: 1,
            height: 1,
            pixels: vec![pixel],
            received: Instant::now(),
        }
    }

    /// Issue 16: the poll thread must never wait for the windows. A camera's
    /// pictures that the display thread has not taken replace each other:
    /// the slot holds the newest, and each one replaced comes back to be
    /// counted, so nothing queues however long X takes.
    #[test]
    fn a_picture_not_taken_yet_is_replaced_not_queued() {
        let mut display = idle_display();
        let a = ConnId(1);
        assert!(display.show(a, "t".into(), picture(1)).is_none());
        for n in 2..100 {
            let replaced = display.show(a, "t".into(), picture(n));
            assert_eq!(replaced, Some(vec![n - 1]), "picture {n}");
        }
        {
            let state = display.shared.lock();
            assert_eq!(state.fresh, 1);
            assert_eq!(state.slots.len(), 1);
        }
        // Closing gives the last one back and queues the window's close.
        assert_eq!(display.remove(a), Some(vec![99]));
        let state = display.shared.lock();
        assert_eq!((state.fresh, state.slots.len()), (0, 0));
        assert_eq!(state.removed, [a]);
    }

    /// The poll thread says once that the display thread is stuck in X, and
    /// once that it moves again.
    #[test]
    fn a_stalled_display_thread_is_reported_once_and_its_return_too() {
        let mut display = idle_display();
        let t0 = Instant::now();
        display.shared.lock().busy_since = Some(t0);
        let mut events = Events::default();
        display.poll(t0 + STALL_REPORT / 2, &mut events);
        assert_eq!(display.stall_reported, None);
        display.poll(t0 + STALL_REPORT, &mut events);
        assert_eq!(display.stall_reported, Some(t0));
        assert!(
            display.next_poll().is_some(),
            "keeps watching while stalled"
        );
        display.poll(t0 + 3 * STALL_REPORT, &mut events);
        assert_eq!(display.stall_reported, Some(t0));
        display.shared.lock().busy_since = None;
        display.poll(t0 + 4 * STALL_REPORT, &mut events);
        assert_eq!(display.stall_reported, None);
    }
}
