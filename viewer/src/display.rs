//! One minifb window per connection (X11, loaded with dlopen).
//!
//! minifb windows are not `Send`, so they all live on the poll thread.
//! minifb cannot hand out its X connection's fd, so while windows are open
//! the poll timeout is capped at [`EVENT_INTERVAL`] and every window is
//! pumped at least that often; otherwise a window that gets no new frame
//! would stop answering its close button and Esc.
//!
//! **A window's failure is its camera's only.** [`Display::show`] and
//! [`Display::pump`] report a window that cannot be created or drawn as a
//! [`ShowError`] for that connection, and the server closes that one
//! connection; the other windows and the viewer go on.
//!
//! **A size change recreates the window, at most once a second.** minifb
//! cannot resize a window, and each minifb window is its own X connection,
//! so a new size means a new X client. A camera changes size rarely (an
//! agent's `--size` is fixed for its run), so the window keeps the frame's
//! exact size, pixel for pixel, as before. A client that changes size again
//! within [`SIZE_CHANGE_INTERVAL`] of its last change is refused
//! ([`ShowError::SizeChurn`]): alternating sizes would otherwise make this
//! thread open and close an X connection per frame. Reusing the window and
//! scaling frames into it was the alternative; it was not taken because it
//! would show a camera that really changed size distorted for as long as it
//! runs, to tolerate a client no camera behaves like. Headless, sizes may
//! change freely: there is no window to churn.
//!
//! **What can block.** Every minifb call here is synchronous Xlib on the
//! poll thread: creating a window makes several round trips (the connection
//! setup, atoms, the window itself), and every draw or event pump makes at
//! least one (minifb asks the pointer position with `XQueryPointer`) and
//! flushes its requests (`XFlush`, which blocks while the X server is not
//! reading its socket). So each call waits for the X server's answer:
//! microseconds on a local server, but unbounded if the server hangs (e.g.
//! stopped with SIGSTOP). And Xlib's default handlers end the process on a
//! protocol error or a lost X connection; minifb installs no others.
//! Bounding every X call needs the windows on a thread of their own, fed
//! the newest picture per camera; that is not built yet.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use minifb::{Key, KeyRepeat, Window, WindowOptions};
use proto::wire::CameraId;

use crate::ConnId;

/// Longest time between two event pumps of a window.
pub const EVENT_INTERVAL: Duration = Duration::from_millis(20);

/// Shortest time between two changes of one window's size; a faster change
/// closes the connection (see the module doc).
pub const SIZE_CHANGE_INTERVAL: Duration = Duration::from_secs(1);

/// Why one connection's window failed; the server closes that connection.
#[derive(Debug)]
pub enum ShowError {
    /// minifb could not create the window (e.g. the X server refuses more
    /// clients).
    Open(minifb::Error),
    /// minifb could not draw a frame.
    Draw(minifb::Error),
    /// The frame size changed again within [`SIZE_CHANGE_INTERVAL`] of its
    /// last change; sizes are `(width, height)` in pixels.
    SizeChurn {
        from: (usize, usize),
        to: (usize, usize),
    },
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
            ShowError::SizeChurn { from, to } => write!(
                f,
                "frame size changed from {}x{} to {}x{} within {} s of the last change (each change opens a new window; at most one a second)",
                from.0,
                from.1,
                to.0,
                to.1,
                SIZE_CHANGE_INTERVAL.as_secs()
            ),
        }
    }
}

/// What the user did since the last pump, and what failed.
#[derive(Debug, Default)]
pub struct Events {
    /// Connections whose window the user closed.
    pub closed: Vec<ConnId>,
    /// Connections whose window could not be drawn.
    pub failed: Vec<(ConnId, ShowError)>,
    /// Esc was pressed in some window.
    pub quit: bool,
}

struct View {
    /// `None` until the first frame, which sets the size.
    window: Option<Window>,
    width: usize,
    height: usize,
    /// When the size last changed (not the first size).
    resized_at: Option<Instant>,
    pixels: Vec<u32>,
    /// `pixels` holds a frame not shown yet.
    fresh: bool,
    /// When that frame's last byte was read from the socket.
    received: Instant,
    last_pump: Instant,
    title: String,
}

#[derive(Default)]
pub struct Display {
    views: HashMap<ConnId, View>,
}

/// Checks that a display is reachable, so a missing one is reported at
/// startup rather than when the first camera connects.
pub fn probe() -> Result<()> {
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        return Err(anyhow!(
            "no display: DISPLAY is not set (set DISPLAY to an X server, e.g. DISPLAY=:0, or run with --headless)"
        ));
    }
    let options = WindowOptions {
        borderless: true,
        none: true,
        ..WindowOptions::default()
    };
    let window = Window::new("camstream viewer", 1, 1, options).map_err(|e| no_display(&e))?;
    drop(window);
    Ok(())
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

/// A decoded frame on its way to a window.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// `width * height` 0RGB pixels, top row first.
    pub pixels: Vec<u32>,
    /// When the frame's last byte was read from the socket.
    pub received: Instant,
}

/// A window of size `from` gets a frame of size `to` at `now`, its size
/// having last changed at `last_change`: when the change is allowed, the
/// new time of the last change.
fn size_change(
    from: (usize, usize),
    to: (usize, usize),
    last_change: Option<Instant>,
    now: Instant,
) -> Result<Instant, ShowError> {
    match last_change {
        Some(t) if now.saturating_duration_since(t) < SIZE_CHANGE_INTERVAL => {
            Err(ShowError::SizeChurn { from, to })
        }
        _ => Ok(now),
    }
}

impl Display {
    /// Shows a decoded frame; the window is created on the first frame and
    /// recreated when the size changes, at most once per
    /// [`SIZE_CHANGE_INTERVAL`] (minifb cannot resize a window; its
    /// set_position/get_position disagree on X11, so the new one is placed
    /// fresh). Returns the pixel buffer it no longer needs, for reuse.
    /// An error concerns this connection only: close it.
    pub fn show(
        &mut self,
        conn: ConnId,
        title: String,
        picture: Picture,
        now: Instant,
    ) -> Result<Vec<u32>, ShowError> {
        let Picture {
            width,
            height,
            pixels,
            received,
        } = picture;
        let (width, height) = (width as usize, height as usize);
        let view = self.views.entry(conn).or_insert_with(|| View {
            window: None,
            width: 0,
            height: 0,
            resized_at: None,
            pixels: Vec::new(),
            fresh: false,
            received: now,
            last_pump: now,
            title: String::new(),
        });
        if view.window.is_none() || (view.width, view.height) != (width, height) {
            if view.window.is_some() {
                view.resized_at = Some(size_change(
                    (view.width, view.height),
                    (width, height),
                    view.resized_at,
                    now,
                )?);
            }
            // The old window is dropped only after the new one exists: each
            // minifb window is its own X connection, and a bare X server
            // (Xvfb, no window manager) resets when its last client leaves.
            let mut window = Window::new(&title, width, height, WindowOptions::default())
                .map_err(ShowError::Open)?;
            // minifb sleeps up to 4 ms per update by default; with many
            // windows those sleeps add up and stall poll(2).
            window.set_target_fps(0);
            view.window = Some(window);
            view.width = width;
            view.height = height;
            view.title = title;
        } else if view.title != title {
            if let Some(window) = &mut view.window {
                window.set_title(&title);
            }
            view.title = title;
        }
        view.fresh = true;
        view.received = received;
        Ok(std::mem::replace(&mut view.pixels, pixels))
    }

    /// Closes a connection's window.
    pub fn remove(&mut self, conn: ConnId) -> Option<Vec<u32>> {
        self.views.remove(&conn).map(|v| v.pixels)
    }

    /// Draws new frames and processes window events; a window with nothing
    /// new is still pumped every [`EVENT_INTERVAL`]. `shown(conn, latency)`
    /// is called for every frame drawn, with the time from its receipt until
    /// minifb handed it to the X server.
    pub fn pump(&mut self, now: Instant, mut shown: impl FnMut(ConnId, Duration)) -> Events {
        let mut events = Events::default();
        for (&conn, view) in &mut self.views {
            let Some(window) = &mut view.window else {
                continue;
            };
            if view.fresh {
                view.fresh = false;
                view.last_pump = now;
                match window.update_with_buffer(&view.pixels, view.width, view.height) {
                    Ok(()) => shown(
                        conn,
                        Instant::now().saturating_duration_since(view.received),
                    ),
                    Err(e) => {
                        events.failed.push((conn, ShowError::Draw(e)));
                        continue;
                    }
                }
            } else if now.saturating_duration_since(view.last_pump) >= EVENT_INTERVAL {
                view.last_pump = now;
                window.update();
            }
            if !window.is_open() {
                events.closed.push(conn);
            }
            if window.is_key_pressed(Key::Escape, KeyRepeat::No) || window.is_key_down(Key::Escape)
            {
                events.quit = true;
            }
        }
        events
    }

    /// When the next pump is due, if any window is open.
    pub fn next_pump(&self) -> Option<Instant> {
        self.views
            .values()
            .filter(|v| v.window.is_some())
            .map(|v| {
                if v.fresh {
                    v.last_pump
                } else {
                    v.last_pump + EVENT_INTERVAL
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGA: (usize, usize) = (640, 480);
    const QVGA: (usize, usize) = (320, 240);

    /// Issue 16: a client alternating two sizes made the poll thread open a
    /// new window, and a new X connection, for every frame.
    #[test]
    fn a_second_size_change_within_a_second_is_refused() {
        let t0 = Instant::now();
        // The first change is allowed whenever it comes.
        let changed = size_change(VGA, QVGA, None, t0).unwrap();
        assert_eq!(changed, t0);
        let just_before = t0 + SIZE_CHANGE_INTERVAL - Duration::from_millis(1);
        let e = size_change(QVGA, VGA, Some(changed), just_before).unwrap_err();
        assert!(
            matches!(
                e,
                ShowError::SizeChurn {
                    from: QVGA,
                    to: VGA
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "frame size changed from 320x240 to 640x480 within 1 s of the last change \
             (each change opens a new window; at most one a second)"
        );
        // A second later it is allowed again, and counts from then.
        let later = t0 + SIZE_CHANGE_INTERVAL;
        assert_eq!(size_change(QVGA, VGA, Some(changed), later).unwrap(), later);
    }

    #[test]
    fn window_errors_keep_minifbs_detail() {
        let e = ShowError::Open(minifb::Error::WindowCreate("XOpenDisplay failed".into()));
        assert!(
            e.to_string().starts_with(
                "cannot open its window: Failed to create window: XOpenDisplay failed"
            ),
            "{e}"
        );
    }
}
