//! A real browser: Debian's headless Chromium, driven over the DevTools
//! protocol on a pair of pipes (`--remote-debugging-pipe`: JSON messages
//! ended by a NUL byte, on fds 3 and 4), so no WebSocket client is needed.
//!
//! It runs as root in the test machines, so it needs `--no-sandbox`; the
//! other flags keep it off the network (no component updates, sync, QUIC or
//! background requests) and out of any profile but a fresh temporary one.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, Receiver};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::child::LoggedChild;
use crate::http::ffmpeg_image;
use crate::image::Image;
use crate::wait::PATIENCE;

/// One headless Chromium with one page, attached.
pub struct Chromium {
    _child: LoggedChild,
    _profile: tempfile::TempDir,
    commands: File,
    replies: Receiver<String>,
    next_id: u64,
    session: String,
}

impl Chromium {
    /// Starts Chromium and opens `url` in a `width` x `height` page.
    pub fn open(url: &str, width: u32, height: u32) -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        // Ours: write commands to `cmd_w`, read replies from `reply_r`.
        // Close-on-exec, so no other child inherits them; dup2 clears it
        // on Chromium's fds 3 and 4.
        let (cmd_r, cmd_w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (reply_r, reply_w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        // Chromium's ends above fd 4: one that already were fd 3 or 4 would
        // be closed at exec (dup2 onto itself keeps close-on-exec) or
        // overwritten by the other.
        let (cmd_r, reply_w) = (above_4(cmd_r), above_4(reply_w));
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ]);
        let (fd_in, fd_out) = (cmd_r.as_raw_fd(), reply_w.as_raw_fd());
        // SAFETY: dup2 is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(fd_in, 3), (fd_out, 4)] {
                    if nix::libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = LoggedChild::spawn("chromium", cmd);
        drop((cmd_r, reply_w));
        let replies = reader(reply_r);
        let mut browser = Chromium {
            _child: child,
            _profile: profile,
            commands: File::from(cmd_w),
            replies,
            next_id: 1,
            session: String::new(),
        };
        let created = browser.call(
            "Target.createTarget",
            &format!("{{\"url\":{}}}", json_string(url)),
        );
        let target = string_field(&created, "targetId").expect("a target id");
        let attached = browser.call(
            "Target.attachToTarget",
            &format!("{{\"targetId\":{},\"flatten\":true}}", json_string(&target)),
        );
        browser.session = string_field(&attached, "sessionId").expect("a session id");
        browser
    }

    /// Sends one command (to the page once attached) and returns its reply.
    fn call(&mut self, method: &str, params: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let session = if self.session.is_empty() {
            String::new()
        } else {
            format!(",\"sessionId\":{}", json_string(&self.session))
        };
        let msg = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}{session}}}\0");
        self.commands
            .write_all(msg.as_bytes())
            .expect("write to chromium");
        let prefix = format!("{{\"id\":{id},");
        loop {
            let reply = self
                .replies
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if reply.starts_with(&prefix) {
                assert!(!reply.contains("\"error\":{"), "{method} failed: {reply}");
                return reply;
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; returns its value as
    /// JSON text (e.g. `2`, `true`, `"text"`).
    pub fn eval(&mut self, expression: &str) -> String {
        let reply = self.call(
            "Runtime.evaluate",
            &format!(
                "{{\"expression\":{},\"returnByValue\":true}}",
                json_string(expression)
            ),
        );
        let start = reply
            .find("\"value\":")
            .map(|i| i + "\"value\":".len())
            .unwrap_or_else(|| panic!("no value in {reply}"));
        let rest = &reply[start..];
        if rest.starts_with('"') {
            return format!("\"{}\"", string_at(rest).unwrap_or_default());
        }
        rest[..rest.find([',', '}']).unwrap_or(rest.len())].to_owned()
    }

    /// A screenshot of the page as it is now (PNG, converted by ffmpeg).
    pub fn screenshot(&mut self, dir: &Path) -> Image {
        let reply = self.call("Page.captureScreenshot", "{\"format\":\"png\"}");
        let data = string_field(&reply, "data").expect("screenshot data");
        let png = base64_decode(&data).expect("base64 screenshot");
        let path = dir.join("screenshot.png");
        std::fs::write(&path, png).expect("write screenshot");
        ffmpeg_image(&path)
    }
}

/// A close-on-exec copy of `fd` numbered 10 or above.
fn above_4(fd: OwnedFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that nothing else owns.
    let raw = unsafe { nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_DUPFD_CLOEXEC, 10) };
    assert!(
        raw >= 10,
        "fcntl(F_DUPFD_CLOEXEC): {}",
        std::io::Error::last_os_error()
    );
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A thread that splits Chromium's output into messages.
fn reader(fd: OwnedFd) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut input = BufReader::new(File::from(fd));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match input.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if buf.last() == Some(&0) {
                        buf.pop();
                    }
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of `"name":"..."` in a message.
fn string_field(msg: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    string_at(&msg[msg.find(&key)? + key.len()..])
}

/// The JSON string at the start of `s`, unescaped (the escapes DevTools
/// writes in ids, text and base64).
fn string_at(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let got = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + got]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_what_python_encodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("AAEC/w==").unwrap(), [0, 1, 2, 255]);
    }

    #[test]
    fn strings_unescape() {
        assert_eq!(string_at("\"a\\\"b\\\\c\\u0041\"").unwrap(), "a\"b\\cA");
        assert_eq!(
            string_field("{\"id\":1,\"result\":{\"sessionId\":\"XY\"}}", "sessionId").unwrap(),
            "XY"
        );
    }
}
