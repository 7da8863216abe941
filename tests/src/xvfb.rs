//! A real X server for the window tests: [`Xvfb`] on a free display with a
//! private cookie, and what a test does with it: list the windows
//! (`xwininfo`), take a screenshot (`xwd`), run `xdotool`, close a window
//! as a window manager would ([`x11::send_wm_delete`]), kill a window's
//! client (`xkill`), and stop and continue the server itself (SIGSTOP).

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child::{run_ok, LoggedChild};
use crate::image::Image;
use crate::wait::wait_until;
use crate::x11::{self, XWindow};

/// A running Xvfb on a free display, reachable only through its Unix socket
/// and a fresh MIT-MAGIC-COOKIE-1. Dropping it stops the server.
pub struct Xvfb {
    /// The display, e.g. `:117`.
    display: String,
    number: u32,
    cookie: [u8; 16],
    authority: PathBuf,
    server: LoggedChild,
    _dir: tempfile::TempDir,
}

impl Xvfb {
    /// Starts Xvfb with one `width`x`height` 24-bit screen on the first free
    /// display from 100 up, and waits until it accepts clients (`-displayfd`).
    pub fn start(width: u32, height: u32) -> Xvfb {
        Xvfb::start_with(width, height, &[])
    }

    /// Like [`Xvfb::start`], with more Xvfb arguments (e.g. `-maxclients 64`).
    pub fn start_with(width: u32, height: u32, extra: &[&str]) -> Xvfb {
        Xvfb::launch(width, height, &["-noreset"], extra)
    }

    /// Like [`Xvfb::start`], but the server resets whenever its last client
    /// leaves, as a bare X server does by default (the others run with
    /// `-noreset`).
    pub fn start_resetting(width: u32, height: u32) -> Xvfb {
        Xvfb::launch(width, height, &[], &[])
    }

    fn launch(width: u32, height: u32, reset: &[&str], extra: &[&str]) -> Xvfb {
        let dir = tempfile::tempdir().expect("temp dir for the X authority");
        let authority = dir.path().join("Xauthority");
        std::fs::File::create(&authority).expect("create the X authority file");
        let cookie = random_cookie();
        let hex: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
        // Spread parallel test binaries over displays; retry on a clash.
        let first = 100 + std::process::id() % 400;
        for number in (first..first + 50).map(|n| 100 + (n - 100) % 400) {
            if Path::new(&format!("/tmp/.X{number}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
            {
                continue;
            }
            let display = format!(":{number}");
            let status = Command::new("xauth")
                .arg("-q")
                .arg("-f")
                .arg(&authority)
                .args(["add", &display, x11::COOKIE_NAME, &hex])
                .status()
                .expect("run xauth (apt-get install xauth)");
            assert!(status.success(), "xauth add failed");
            let mut cmd = Command::new("Xvfb");
            cmd.arg(&display)
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .arg("-auth")
                .arg(&authority)
                .args(["-nolisten", "tcp", "-displayfd", "1"])
                .args(reset)
                .args(extra);
            let mut server = LoggedChild::spawn("Xvfb", cmd);
            // -displayfd 1 prints the display number once clients can connect.
            let ready = wait_until(Duration::from_secs(20), || {
                if server
                    .lines()
                    .iter()
                    .any(|l| l.trim() == number.to_string())
                {
                    return Some(true);
                }
                server.try_status().map(|_| false)
            });
            match ready {
                Some(true) => {
                    return Xvfb {
                        display,
                        number,
                        cookie,
                        authority,
                        server,
                        _dir: dir,
                    }
                }
                Some(false) => continue, // display taken meanwhile: next one
                None => panic!(
                    "Xvfb {display} did not start within 20 s:\n{}",
                    server.tail(20)
                ),
            }
        }
        panic!("no free X display among 50 tried (is Xvfb installed? apt-get install xvfb)");
    }

    /// Sets `DISPLAY` and `XAUTHORITY` on a command so it talks to this server.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DISPLAY", &self.display)
            .env("XAUTHORITY", &self.authority)
    }

    /// Runs an X client tool (`xwininfo`, `xdotool`, `xwd`) to completion and
    /// returns its stdout; panics with its stderr if it fails.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        run_ok(self.env(&mut cmd), "an X client").stdout
    }

    /// The top-level windows (children of the root) that have a name, with
    /// their position on the screen, from `xwininfo -root -children`.
    pub fn windows(&self) -> Vec<XWindow> {
        let out = self.run("xwininfo", &["-root", "-children"]);
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(XWindow::parse_xwininfo_line)
            .collect()
    }

    /// A screenshot of the whole root window, taken with `xwd`.
    pub fn screenshot(&self) -> Image {
        let xwd = self.run("xwd", &["-root", "-silent"]);
        x11::image_from_xwd(&xwd).unwrap_or_else(|e| panic!("cannot read xwd output: {e}"))
    }

    /// Opens one more X client connection (setup done, nothing else) and
    /// keeps it open for as long as the stream lives; `Err` when the server
    /// refuses it, e.g. past `-maxclients`.
    pub fn hold_client(&self) -> Result<std::os::unix::net::UnixStream, String> {
        x11::connect(self.number, &self.cookie)
    }

    /// Sends a signal to the X server (`STOP` hangs it for every client,
    /// `CONT` lets it go on), as `kill -s SIG` does.
    pub fn signal(&self, sig: &str) {
        self.server.signal(sig);
    }

    /// Kills the X client that created `window` (`xkill -id`): the server
    /// closes that client's connection, and with it all its windows.
    pub fn kill_client(&self, window: u32) {
        self.run("xkill", &["-id", &window.to_string()]);
    }

    /// Closes `window` as a window manager would: see [`x11::send_wm_delete`].
    pub fn send_wm_delete(&self, window: u32) -> Result<(), String> {
        x11::send_wm_delete(self.number, &self.cookie, window)
    }
}

/// 16 random bytes from std's randomly seeded hasher (no `rand` dependency).
fn random_cookie() -> [u8; 16] {
    let mut cookie = [0u8; 16];
    for half in cookie.chunks_mut(8) {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        half.copy_from_slice(&random.to_le_bytes());
    }
    cookie
}
