//! The viewer's windows under a real X server (Xvfb): what they show, closing
//! one with WM_DELETE_WINDOW as a window manager would, and Esc.

use std::process::Command;
use std::time::Duration;

use camstream_tests::bars::{BARS, LEVEL_75};
use camstream_tests::image::channel_distance;
use camstream_tests::{
    bin_path, pattern, start_pattern_agent, start_viewer_cmd, wait_until, Image, LoggedChild,
    XWindow, Xvfb,
};

/// The harness itself: Xvfb starts, xwininfo finds a window, xwd sees it,
/// and our WM_DELETE_WINDOW message makes an ICCCM client (xlogo) quit. If
/// this fails, the viewer tests below would prove nothing.
#[test]
fn x11_harness_closes_an_icccm_client() {
    let x = Xvfb::start(640, 480);
    let mut cmd = Command::new("xlogo");
    cmd.args(["-geometry", "100x80+30+40", "-bg", "red", "-fg", "blue"]);
    x.env(&mut cmd);
    let mut xlogo = LoggedChild::spawn("xlogo", cmd);
    let win = wait_until(Duration::from_secs(20), || {
        x.windows().into_iter().find(|w| w.name == "xlogo")
    })
    .expect("xlogo's window appears");
    assert_eq!(
        (win.width, win.height, win.x, win.y),
        (100, 80, 30, 40),
        "{win:?}"
    );
    let shot = x.screenshot();
    assert_eq!(shot.size(), (640, 480));
    assert_eq!(
        shot.get(31, 41),
        Some(0xff0000),
        "xlogo's red background at its corner"
    );
    assert_eq!(shot.get(10, 10), Some(0x000000), "the bare root is black");

    x.send_wm_delete(win.id).expect("send WM_DELETE_WINDOW");
    let status = xlogo
        .wait_exit(Duration::from_secs(20))
        .expect("xlogo quits on WM_DELETE_WINDOW");
    assert!(status.success(), "xlogo exit status {status}");
}

/// Per-channel tolerance for a bar's colour after YUYV → BGR → BMP → 0RGB →
/// X server: limited-range YUV rounding moves a channel by a few steps.
const BAR_TOLERANCE: u8 = 6;

/// What `win` shows in `shot`, or None unless all of it is on the screen.
fn window_contents(shot: &Image, win: &XWindow) -> Option<Image> {
    shot.crop(win.x, win.y, win.width, win.height)
}

/// Checks every pixel of the bar area the pattern source draws (bar k in
/// columns k/8 .. (k+1)/8 of the width, leaving 2 px at each bar's edges for
/// chroma subsampling, and a row at the top and bottom) inside `win`.
fn check_bars(shot: &Image, win: &XWindow) -> Result<(), String> {
    let frame = window_contents(shot, win)
        .ok_or_else(|| format!("{:?} is not wholly on the screen: {win:?}", win.name))?;
    let (w, h) = frame.size();
    for (k, bar) in BARS.iter().enumerate() {
        let colour = bar.pixel(LEVEL_75);
        let k = k as u32;
        let (x0, x1) = (k * w / 8 + 2, (k + 1) * w / 8 - 2);
        for y in 1..pattern::bars_height(h) - 1 {
            for x in x0..x1 {
                let got = frame.get(x, y);
                if !got.is_some_and(|p| channel_distance(p, colour) <= BAR_TOLERANCE) {
                    return Err(format!(
                        "{:?}: pixel ({x}, {y}) is {got:06x?}, bar {k} should be {colour:06x}",
                        win.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The frame counter the pattern source draws, as `win` shows it in `shot`.
fn read_counter(shot: &Image, win: &XWindow) -> Option<u32> {
    pattern::counter(&window_contents(shot, win)?)
}

/// The window whose title starts with `camera N ` (the viewer's title is
/// `camera N — PEER — FPS fps`).
fn camera_window(x: &Xvfb, id: u8) -> Option<XWindow> {
    let prefix = format!("camera {id} ");
    x.windows()
        .into_iter()
        .find(|w| w.name.starts_with(&prefix))
}

/// The `127.0.0.1:PORT` part of a window title (`camera 1 — 127.0.0.1:PORT — 15.0 fps`).
fn peer_in_title(title: &str) -> Option<&str> {
    let start = title.find("127.0.0.1:")?;
    let rest = &title[start..];
    let end = rest[10..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| 10 + i);
    Some(&rest[..end])
}

/// Moves a window with XMoveWindow (no window manager: applied as asked) and
/// waits until the server reports it there.
fn move_window(x: &Xvfb, id: u8, to: (i32, i32)) -> XWindow {
    let win = camera_window(x, id).expect("window to move");
    x.run(
        "xdotool",
        &[
            "windowmove",
            &win.id.to_string(),
            &to.0.to_string(),
            &to.1.to_string(),
        ],
    );
    wait_until(Duration::from_secs(10), || {
        camera_window(x, id).filter(|w| (w.x, w.y) == to)
    })
    .unwrap_or_else(|| panic!("camera {id}'s window did not move to {to:?}"))
}

/// Waits until `win` shows its bars in a screenshot; returns the screenshot.
fn wait_for_bars(x: &Xvfb, win: &XWindow) -> Image {
    let mut last = String::new();
    // Generous: on a loaded machine a debug viewer may take a while to draw.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let shot = x.screenshot();
        match check_bars(&shot, win) {
            Ok(()) => return shot,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the window never showed its bars within 60 s: {last}");
}

/// Two pattern cameras of different sizes, each in its own window under a
/// real X server. Without a window manager minifb centres new windows, so
/// they overlap: we move them apart (side by side, nothing covering either)
/// and check every bar pixel of both. Then a WM_DELETE_WINDOW on camera 1's
/// window drops camera 1 only; camera 2's window keeps updating (its frame
/// counter advances on screen); agent 1 reconnects and its window returns.
/// Finally Esc in a window quits the viewer with status 0.
#[test]
fn windows_show_bars_close_reopen_and_esc_quits() {
    let x = Xvfb::start(1280, 1024);
    let mut cmd = Command::new(bin_path("viewer"));
    cmd.args(["--listen", "127.0.0.1:0", "--stats-interval", "1"]);
    x.env(&mut cmd);
    let (mut viewer, addr) = start_viewer_cmd(cmd);

    let sizes = [(1u8, (320u32, 240u32)), (2u8, (640, 480))];
    let _agents: Vec<LoggedChild> = sizes
        .iter()
        .map(|&(id, (w, h))| {
            start_pattern_agent(addr, id, &format!("{w}x{h}"), 15, &["--workers", "1"])
        })
        .collect();

    for &(id, (w, h)) in &sizes {
        let win = wait_until(Duration::from_secs(60), || camera_window(&x, id))
            .unwrap_or_else(|| panic!("no window for camera {id}:\n{}", viewer.tail(20)));
        assert_eq!(
            (win.width, win.height),
            (w, h),
            "camera {id}'s window is its frame size"
        );
    }
    let win1 = move_window(&x, 1, (0, 0));
    let win2 = move_window(&x, 2, (400, 0));
    wait_for_bars(&x, &win1);
    let shot = wait_for_bars(&x, &win2);
    let counter_before = read_counter(&shot, &win2).expect("counter inside the screen");
    println!("both windows show their bars; camera 2 shows frame {counter_before}");

    // Close camera 1's window as a window manager would.
    let mark = viewer.line_count();
    x.send_wm_delete(win1.id).expect("send WM_DELETE_WINDOW");
    let dropped = viewer
        .wait_for_line_after(mark, "its window was closed", Duration::from_secs(30))
        .expect("viewer drops the camera whose window was closed");
    assert!(
        dropped.contains("camera 1 "),
        "the closed window was camera 1's: {dropped}"
    );

    // Camera 1 comes back in a new window (the agent reconnects by itself).
    viewer
        .wait_for_line_after(mark, "connection from", Duration::from_secs(30))
        .expect("agent 1 reconnects");
    // The new window is told apart by the new connection's peer port in its
    // title, not by its X id: each minifb window is its own X client, and the
    // server hands a new client the slot (so the same window id) that the
    // closed window's client just freed.
    let old_peer = peer_in_title(&win1.name);
    assert!(
        old_peer.is_some(),
        "peer address in the title: {}",
        win1.name
    );
    let new1 = wait_until(Duration::from_secs(30), || {
        camera_window(&x, 1).filter(|w| peer_in_title(&w.name) != old_peer)
    })
    .expect("camera 1's window comes back");
    // The newest window is on top, so all of it is visible wherever minifb put it.
    wait_for_bars(&x, &new1);

    // Camera 2 was never interrupted: same window, and it kept drawing frames.
    let still2 = camera_window(&x, 2).expect("camera 2's window is still there");
    assert_eq!(still2.id, win2.id, "camera 2 kept its window");
    let lines = viewer.lines();
    let camera2_dropped = lines[mark..]
        .iter()
        .find(|l| l.contains("camera 2 ") && (l.contains("dropped") || l.contains("disconnected")));
    assert!(
        camera2_dropped.is_none(),
        "camera 2 was dropped: {camera2_dropped:?}"
    );
    // Move the new window away from camera 2's before reading its counter.
    move_window(&x, 1, (0, 600));
    let counter_after = wait_until(Duration::from_secs(60), || {
        let shot = x.screenshot();
        check_bars(&shot, &still2).ok()?;
        read_counter(&shot, &still2).filter(|&n| n > counter_before)
    })
    .expect("camera 2's window keeps showing new frames");
    println!(
        "camera 1 closed and back; camera 2 went on from frame {counter_before} to {counter_after}"
    );

    // Esc quits: a key press sent to camera 2's window (xdotool uses
    // XSendEvent; minifb reads it like a real key press).
    let target = still2.id.to_string();
    x.run("xdotool", &["keydown", "--window", &target, "Escape"]);
    // The viewer may quit on the press alone; then the window is gone and
    // the release has nowhere to go, so its result does not matter.
    std::thread::sleep(Duration::from_millis(300));
    let mut keyup = Command::new("xdotool");
    keyup.args(["keyup", "--window", &target, "Escape"]);
    let _ = x
        .env(&mut keyup)
        .stderr(std::process::Stdio::null())
        .status();
    let status = viewer
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("Esc did not stop the viewer:\n{}", viewer.tail(20)));
    assert!(status.success(), "viewer exit status after Esc: {status}");
    assert!(viewer
        .wait_for_line("Esc pressed", Duration::ZERO)
        .is_some());
}
