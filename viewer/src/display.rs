//! One minifb window per connection (X11, loaded with dlopen).
//!
//! minifb windows are not `Send`, so they all live on the poll thread.
//! minifb cannot hand out its X connection's fd, so while windows are open
//! the poll timeout is capped at [`EVENT_INTERVAL`] and every window is
//! pumped at least that often; otherwise a window that gets no new frame
//! would stop answering its close button and Esc.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use minifb::{Key, KeyRepeat, Window, WindowOptions};
use proto::wire::CameraId;

use crate::ConnId;

/// Longest time between two event pumps of a window.
pub const EVENT_INTERVAL: Duration = Duration::from_millis(20);

/// What the user did since the last pump.
#[derive(Debug, Default)]
pub struct Events {
    /// Connections whose window the user closed.
    pub closed: Vec<ConnId>,
    /// Esc was pressed in some window.
    pub quit: bool,
}

struct View {
    /// `None` until the first frame, which sets the size.
    window: Option<Window>,
    width: usize,
    height: usize,
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
    if std::env::var_os("DISPLAY").map_or(true, |d| d.is_empty()) {
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
fn no_display(e: &minifb::Error) -> anyhow::Error {
    let detail = match e {
        minifb::Error::WindowCreate(detail) => format!("Failed to create window: {detail}"),
        other => other.to_string(),
    };
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

impl Display {
    /// Shows a decoded frame; the window is created on the first frame and
    /// recreated when the size changes (minifb cannot resize a window;
    /// its set_position/get_position disagree on X11, so the new one is placed fresh). Returns the
    /// pixel buffer it no longer needs, for reuse.
    pub fn show(
        &mut self,
        conn: ConnId,
        title: String,
        picture: Picture,
        now: Instant,
    ) -> Result<Vec<u32>> {
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
            pixels: Vec::new(),
            fresh: false,
            received: now,
            last_pump: now,
            title: String::new(),
        });
        if view.window.is_none() || (view.width, view.height) != (width, height) {
            // The old window is dropped only after the new one exists: each
            // minifb window is its own X connection, and a bare X server
            // (Xvfb, no window manager) resets when its last client leaves.
            let mut window = Window::new(&title, width, height, WindowOptions::default())
                .map_err(|e| no_display(&e))?;
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
                    Err(e) => log::warn!("cannot draw a frame: {e}"),
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
