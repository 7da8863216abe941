//! The display thread: it owns every minifb window (they are not `Send`, so
//! they are created here and never leave), and is the only viewer thread
//! that calls Xlib once the viewer runs.
//!
//! Each round it takes, under the shared lock, the windows to close and
//! the newest picture of each camera (swapping its own pixel buffers back
//! for the poll thread to recycle); then, with the lock released, it does
//! the X work: close, open (at its grid place), draw, pump events. After
//! each window's X calls it asks [`xlib`] whether that window's connection
//! saw a protocol error or was lost; either closes that window only and is
//! reported to the poll thread as a [`ShowError`]. A panic inside minifb is
//! caught the same way. Every window is pumped at least every
//! [`EVENT_INTERVAL`], so its close button and Esc answer without frames.
//!
//! While it is inside Xlib, `busy_since` says since when: a hung X server
//! holds this thread there (Xlib has no timeout), and the poll thread, which
//! never waits for it, reports that.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minifb::{Key, KeyRepeat, ScaleMode, Window, WindowOptions};

use super::grid::Grid;
use super::xlib::{self, DisplayPtr, Fault};
use super::{Events, Shared, ShowError, EVENT_INTERVAL, MAX_SHOWN_EVENTS};
use crate::ConnId;

/// Extra attempts at a window whose X connection is refused, and the pause
/// between them: together at most 150 ms of this thread.
const OPEN_RETRIES: u32 = 3;
const OPEN_RETRY_DELAY: Duration = Duration::from_millis(50);

struct View {
    /// `None` until the first picture, and after a failure.
    window: Option<Window>,
    /// The window's own X connection.
    display: DisplayPtr,
    /// Its grid cell, while it has a window.
    cell: Option<usize>,
    /// The newest picture, `width * height` 0RGB pixels.
    pixels: Vec<u32>,
    width: usize,
    height: usize,
    /// `pixels` holds a picture not drawn yet.
    fresh: bool,
    /// When that picture's last byte was read from the socket.
    received: Instant,
    title: String,
    /// The title changed since it was last set.
    retitle: bool,
    last_pump: Instant,
    /// Its window failed or was closed by the user; nothing more is tried
    /// until the poll thread closes the connection.
    failed: bool,
}

impl View {
    fn new(now: Instant) -> View {
        View {
            window: None,
            display: 0,
            cell: None,
            pixels: Vec::new(),
            width: 0,
            height: 0,
            fresh: false,
            received: now,
            title: String::new(),
            retitle: false,
            last_pump: now,
            failed: false,
        }
    }
}

/// The display thread's body; returns when the viewer stops.
pub(super) fn run(shared: Arc<Shared>, screen: (u32, u32), max_windows: usize) {
    xlib::on_display_thread();
    let mut grid = Grid::new(screen, max_windows);
    let (cols, rows) = grid.shape();
    log::debug!(
        "new windows tile a {cols}x{rows} grid on the {}x{} screen",
        screen.0,
        screen.1
    );
    let mut views: HashMap<ConnId, View> = HashMap::new();
    let mut events = Events::default();
    let mut removed: Vec<ConnId> = Vec::new();
    loop {
        // Hand over what happened, then wait for work or the next pump.
        {
            let mut state = shared.lock();
            state.busy_since = None;
            state.events.absorb(&mut events);
            loop {
                if state.stop {
                    drop(state);
                    close_all(&mut views);
                    shared.lock().stopped = true;
                    shared.work.notify_all();
                    return;
                }
                let now = Instant::now();
                let due = next_pump(&views).is_some_and(|t| t <= now);
                if due || !state.removed.is_empty() || state.fresh > 0 {
                    break;
                }
                let wait =
                    next_pump(&views).map_or(EVENT_INTERVAL, |t| t.saturating_duration_since(now));
                state = shared
                    .work
                    .wait_timeout(state, wait)
                    .map_or_else(|e| e.into_inner().0, |(s, _)| s);
            }
            let now = Instant::now();
            std::mem::swap(&mut removed, &mut state.removed);
            if state.fresh > 0 {
                state.fresh = 0;
                let super::State { slots, spent, .. } = &mut *state;
                for (&id, slot) in slots.iter_mut() {
                    let Some(picture) = slot.picture.take() else {
                        continue;
                    };
                    let view = views.entry(id).or_insert_with(|| View::new(now));
                    let old = std::mem::replace(&mut view.pixels, picture.pixels);
                    if old.capacity() > 0 {
                        spent.push(old);
                    }
                    view.width = picture.width as usize;
                    view.height = picture.height as usize;
                    view.received = picture.received;
                    view.fresh = true;
                    if view.title != slot.title {
                        view.title.clone_from(&slot.title);
                        view.retitle = true;
                    }
                }
            }
            state.busy_since = Some(now);
        }

        // The X work, without the lock.
        for id in removed.drain(..) {
            if let Some(mut view) = views.remove(&id) {
                close_window(&mut view, &mut grid);
            }
        }
        let now = Instant::now();
        for (&id, view) in views.iter_mut() {
            if view.failed {
                continue;
            }
            let pump_due = now.saturating_duration_since(view.last_pump) >= EVENT_INTERVAL;
            if !view.fresh && !pump_due {
                continue;
            }
            match serve(id, view, &mut grid, &mut events, now) {
                Ok(()) => {}
                Err(e) => {
                    close_window(view, &mut grid);
                    view.failed = true;
                    events.failed.push((id, e));
                }
            }
        }
    }
}

/// Opens, draws or pumps one window, then checks its X connection.
fn serve(
    id: ConnId,
    view: &mut View,
    grid: &mut Grid,
    events: &mut Events,
    now: Instant,
) -> Result<(), ShowError> {
    if view.window.is_none() {
        if !view.fresh {
            return Ok(());
        }
        open_window(view, grid)?;
    }
    let display = view.display;
    let drew = view.fresh;
    let result = panic::catch_unwind(AssertUnwindSafe(|| -> Result<Status, ShowError> {
        let Some(window) = view.window.as_mut() else {
            return Ok(Status::default());
        };
        view.last_pump = now;
        if view.retitle {
            view.retitle = false;
            window.set_title(&view.title);
        }
        if view.fresh {
            view.fresh = false;
            window
                .update_with_buffer(&view.pixels, view.width, view.height)
                .map_err(ShowError::Draw)?;
        } else {
            window.update();
        }
        Ok(Status {
            closed: !window.is_open(),
            esc: window.is_key_pressed(Key::Escape, KeyRepeat::No)
                || window.is_key_down(Key::Escape),
        })
    }));
    let status = result.map_err(|_| ShowError::Panicked)??;
    check(display)?;
    if drew && events.shown.len() < MAX_SHOWN_EVENTS {
        events
            .shown
            .push((id, Instant::now().saturating_duration_since(view.received)));
    }
    if status.closed {
        events.closed.push(id);
        // Reported once; the poll thread closes the connection next.
        view.failed = true;
    }
    events.quit |= status.esc;
    Ok(())
}

#[derive(Default)]
struct Status {
    closed: bool,
    esc: bool,
}

/// Creates a view's window at its grid place, resizable, its picture kept
/// in proportion whatever the window's size.
fn open_window(view: &mut View, grid: &mut Grid) -> Result<(), ShowError> {
    let frame = (
        u32::try_from(view.width).unwrap_or(u32::MAX),
        u32::try_from(view.height).unwrap_or(u32::MAX),
    );
    let place = grid.place(frame);
    let options = WindowOptions {
        resize: true,
        scale_mode: ScaleMode::AspectRatioStretch,
        ..WindowOptions::default()
    };
    let title = view.title.clone();
    // A few short retries for an X server that is resetting (its last
    // window just closed); a server that refuses for longer (e.g. out of
    // client slots) costs this camera its window.
    let created = panic::catch_unwind(AssertUnwindSafe(|| {
        super::new_window(
            &title,
            (place.width as usize, place.height as usize),
            options,
            OPEN_RETRIES,
            OPEN_RETRY_DELAY,
        )
    }));
    let mut window = match created {
        Ok(Ok(window)) => window,
        Ok(Err(e)) => {
            grid.release(place.cell);
            return Err(ShowError::Open(e));
        }
        Err(_) => {
            grid.release(place.cell);
            return Err(ShowError::Panicked);
        }
    };
    let display = super::x_connection(&window);
    xlib::adopt(display);
    view.display = display;
    view.cell = Some(place.cell);
    view.retitle = false;
    // minifb sleeps up to 4 ms per update by default; with many windows
    // those sleeps add up.
    window.set_target_fps(0);
    // minifb maps the window centred; without a window manager this is
    // where it stays, so move it to its cell.
    window.set_position(place.x as isize, place.y as isize);
    view.window = Some(window);
    check(display)
}

/// The fault its X connection saw since the last check, as an error.
fn check(display: DisplayPtr) -> Result<(), ShowError> {
    match xlib::take_fault(display) {
        None => Ok(()),
        Some(Fault::Lost) => Err(ShowError::Lost),
        Some(Fault::Protocol {
            error_code,
            request_code,
        }) => Err(ShowError::Protocol {
            error_code,
            request_code,
        }),
    }
}

/// Destroys a view's window (its X connection closes with it) and frees
/// its cell.
fn close_window(view: &mut View, grid: &mut Grid) {
    if let Some(cell) = view.cell.take() {
        grid.release(cell);
    }
    if let Some(window) = view.window.take() {
        // A window whose connection is lost returns at once from these
        // calls (Xlib marked it dead); a panic leaves it to leak.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(window)));
        // Only now: closing can raise errors of its own (destroying a window
        // that is already gone), recorded against this connection, whose
        // address the next connection may reuse.
        xlib::forget(view.display);
    }
}

fn close_all(views: &mut HashMap<ConnId, View>) {
    // The grid does not matter any more.
    let mut grid = Grid::new((1, 1), 1);
    for (_, mut view) in views.drain() {
        close_window(&mut view, &mut grid);
    }
}

/// When the next window is due for a pump, if any window is open.
fn next_pump(views: &HashMap<ConnId, View>) -> Option<Instant> {
    views
        .values()
        .filter(|v| v.window.is_some() && !v.failed)
        .map(|v| v.last_pump + EVENT_INTERVAL)
        .min()
}
