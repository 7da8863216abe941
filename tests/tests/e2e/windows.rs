//! The viewer's windows under a real X server (Xvfb): what they show, closing
//! one with WM_DELETE_WINDOW as a window manager would, and Esc.

use std::process::Command;
use std::time::Duration;

use camstream_tests::{LoggedChild, Xvfb};

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
    let win = camstream_tests::wait_until(Duration::from_secs(20), || {
        x.windows().into_iter().find(|w| w.name == "xlogo")
    })
    .expect("xlogo's window appears");
    assert_eq!(
        (win.width, win.height, win.x, win.y),
        (100, 80, 30, 40),
        "{win:?}"
    );
    let shot = x.screenshot();
    assert_eq!((shot.width, shot.height), (640, 480));
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
