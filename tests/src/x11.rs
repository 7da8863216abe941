//! Just enough X11 to test windows without a library: the one message a
//! window manager sends when the user closes a window, spoken over the wire
//! protocol (connection setup, InternAtom, SendEvent); the window list that
//! `xwininfo` prints; and the screenshots `xwd` writes.
//!
//! Every request is little-endian ('l' byte order) on a Unix socket, and
//! answered with a 32-byte reply or error: see the X11 protocol spec,
//! "Connection Setup" and "Requests".

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::image::Image;

/// The authorization protocol of the cookie the server was started with.
pub const COOKIE_NAME: &str = "MIT-MAGIC-COOKIE-1";

/// Major opcodes of the requests we send.
const INTERN_ATOM: u8 = 16;
const SEND_EVENT: u8 = 25;
const GET_INPUT_FOCUS: u8 = 43;
/// The ClientMessage event code.
const CLIENT_MESSAGE: u8 = 33;
/// A reply's first byte: 1 is a reply, 0 an error.
const REPLY: u8 = 1;
const ERROR: u8 = 0;

/// Sends the ClientMessage a window manager sends when the user clicks a
/// window's close button: WM_PROTOCOLS with WM_DELETE_WINDOW, to the client
/// that created `window`, on display `:number` authorized by `cookie`.
/// (`xdotool windowclose` would instead destroy the window under the client,
/// which is not what a user does.)
pub fn send_wm_delete(number: u32, cookie: &[u8], window: u32) -> Result<(), String> {
    let mut x = connect(number, cookie)?;
    let wm_protocols = intern_atom(&mut x, b"WM_PROTOCOLS")?;
    let wm_delete = intern_atom(&mut x, b"WM_DELETE_WINDOW")?;
    // SendEvent, no propagation, empty event mask: delivered to the client
    // that created the window, as ICCCM says for WM_PROTOCOLS.
    let mut req = vec![SEND_EVENT, 0];
    req.extend_from_slice(&11u16.to_le_bytes());
    req.extend_from_slice(&window.to_le_bytes());
    req.extend_from_slice(&0u32.to_le_bytes());
    // The 32-byte ClientMessage event, format 32.
    req.extend_from_slice(&[CLIENT_MESSAGE, 32, 0, 0]);
    req.extend_from_slice(&window.to_le_bytes());
    req.extend_from_slice(&wm_protocols.to_le_bytes());
    req.extend_from_slice(&wm_delete.to_le_bytes());
    req.extend_from_slice(&[0u8; 16]); // CurrentTime and unused data
                                       // GetInputFocus as a round trip: its reply (or SendEvent's error before
                                       // it) tells us the server processed the event.
    req.extend_from_slice(&[GET_INPUT_FOCUS, 0, 1, 0]);
    x.write_all(&req).map_err(|e| e.to_string())?;
    let mut reply = [0u8; 32];
    x.read_exact(&mut reply)
        .map_err(|e| format!("SendEvent: {e}"))?;
    match reply[0] {
        REPLY => Ok(()),
        ERROR => Err(format!(
            "X error {} on SendEvent to window {window:#x}",
            reply[1]
        )),
        other => Err(format!("unexpected X reply type {other}")),
    }
}

/// Connects to display `:number` through its Unix socket: connection setup,
/// little-endian, protocol 11.0, with `cookie`.
pub fn connect(number: u32, cookie: &[u8]) -> Result<UnixStream, String> {
    let path = format!("/tmp/.X11-unix/X{number}");
    let mut x = UnixStream::connect(&path).map_err(|e| format!("connect {path}: {e}"))?;
    x.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut setup = vec![b'l', 0, 11, 0, 0, 0];
    setup.extend_from_slice(&(COOKIE_NAME.len() as u16).to_le_bytes());
    setup.extend_from_slice(&(cookie.len() as u16).to_le_bytes());
    setup.extend_from_slice(&[0, 0]);
    setup.extend_from_slice(COOKIE_NAME.as_bytes());
    setup.resize(setup.len().next_multiple_of(4), 0);
    setup.extend_from_slice(cookie);
    x.write_all(&setup).map_err(|e| e.to_string())?;
    let mut head = [0u8; 8];
    x.read_exact(&mut head)
        .map_err(|e| format!("setup reply: {e}"))?;
    let extra_len = usize::from(u16::from_le_bytes([head[6], head[7]])) * 4;
    let mut extra = vec![0u8; extra_len];
    x.read_exact(&mut extra)
        .map_err(|e| format!("setup reply: {e}"))?;
    if head[0] != REPLY {
        return Err(format!(
            "X server refused the connection: {}",
            String::from_utf8_lossy(&extra)
        ));
    }
    Ok(x)
}

/// InternAtom: the atom for `name`, created if needed.
fn intern_atom(x: &mut UnixStream, name: &[u8]) -> Result<u32, String> {
    let padded = name.len().next_multiple_of(4);
    let mut req = vec![INTERN_ATOM, 0];
    req.extend_from_slice(&(((8 + padded) / 4) as u16).to_le_bytes());
    req.extend_from_slice(&(name.len() as u16).to_le_bytes());
    req.extend_from_slice(&[0, 0]);
    req.extend_from_slice(name);
    req.resize(8 + padded, 0);
    x.write_all(&req).map_err(|e| e.to_string())?;
    let mut reply = [0u8; 32];
    x.read_exact(&mut reply)
        .map_err(|e| format!("InternAtom reply: {e}"))?;
    if reply[0] != REPLY {
        return Err(format!("X error {} on InternAtom", reply[1]));
    }
    Ok(u32::from_le_bytes([
        reply[8], reply[9], reply[10], reply[11],
    ]))
}

/// A top-level X window as `xwininfo -root -children` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XWindow {
    pub id: u32,
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Position of the top-left corner on the screen.
    pub x: i32,
    pub y: i32,
}

impl XWindow {
    /// Parses `     0x200001 "name": ()  320x240+0+0  +640+480`; None for a
    /// line that is not a named window.
    pub fn parse_xwininfo_line(line: &str) -> Option<XWindow> {
        let line = line.trim();
        let id =
            u32::from_str_radix(line.split_whitespace().next()?.strip_prefix("0x")?, 16).ok()?;
        let open = line.find('"')?;
        let close = line.rfind("\":")?;
        let name = line.get(open + 1..close)?.to_string();
        let mut rest = line.get(close + 2..)?.split_whitespace().rev();
        let abs = rest.next()?;
        let geometry = rest.next()?;
        let (w, h) = geometry.split('+').next()?.split_once('x')?;
        let (x, y) = parse_offsets(abs)?;
        Some(XWindow {
            id,
            name,
            width: w.parse().ok()?,
            height: h.parse().ok()?,
            x,
            y,
        })
    }
}

/// Parses an X offset pair such as `+640+480` or `-10+20`.
fn parse_offsets(text: &str) -> Option<(i32, i32)> {
    let second = text.get(1..)?.find(['+', '-'])? + 1;
    let x = text[..second].trim_start_matches('+').parse().ok()?;
    let y = text[second..].trim_start_matches('+').parse().ok()?;
    Some((x, y))
}

/// Reads an XWD file (X Window Dump, version 7) of a 24/32-bit TrueColor
/// ZPixmap, which is what `xwd` writes for an Xvfb `x24` screen.
pub fn image_from_xwd(xwd: &[u8]) -> Result<Image, String> {
    let field = |i: usize| -> Result<u32, String> {
        xwd.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "truncated XWD header".to_string())
    };
    let header_len = field(0)? as usize;
    let (version, format) = (field(1)?, field(2)?);
    let (width, height) = (field(4)?, field(5)?);
    let (byte_order, bits_per_pixel, bytes_per_line) = (field(7)?, field(11)?, field(12)?);
    let masks = [field(14)?, field(15)?, field(16)?];
    let ncolors = field(19)? as usize;
    if version != 7 || format != 2 || bits_per_pixel != 32 {
        return Err(format!(
            "unsupported XWD: version {version}, format {format}, {bits_per_pixel} bits per pixel"
        ));
    }
    let start = header_len + ncolors * 12;
    let len = bytes_per_line as usize * height as usize;
    let data = xwd
        .get(start..start + len)
        .ok_or_else(|| format!("XWD has {} bytes, need {}", xwd.len(), start + len))?;
    let mut pixels = Vec::with_capacity(width as usize * height as usize);
    for row in data.chunks_exact(bytes_per_line as usize) {
        for px in row.chunks_exact(4).take(width as usize) {
            let v = if byte_order == 0 {
                u32::from_le_bytes([px[0], px[1], px[2], px[3]])
            } else {
                u32::from_be_bytes([px[0], px[1], px[2], px[3]])
            };
            let channel = |mask: u32| {
                if mask == 0 {
                    0
                } else {
                    ((v & mask) >> mask.trailing_zeros()) & 0xff
                }
            };
            pixels.push(channel(masks[0]) << 16 | channel(masks[1]) << 8 | channel(masks[2]));
        }
    }
    Ok(Image {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xwininfo_line_gives_id_name_size_and_screen_position() {
        let line =
            r#"     0x200001 "camera 1 — 127.0.0.1:5 — 15.0 fps": ("x" "y")  320x240+0+0  -10+20"#;
        assert_eq!(
            XWindow::parse_xwininfo_line(line),
            Some(XWindow {
                id: 0x200001,
                name: "camera 1 — 127.0.0.1:5 — 15.0 fps".into(),
                width: 320,
                height: 240,
                x: -10,
                y: 20,
            })
        );
        assert_eq!(
            XWindow::parse_xwininfo_line("  0x5 (has no name): ()  1x1+0+0  +0+0"),
            None
        );
    }
}
