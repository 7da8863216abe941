//! Xlib's error handlers, replaced so that one window's X fault is that
//! window's only, and the screen size for the grid.
//!
//! Xlib's default handlers end the process: on a protocol error (the
//! server answered a request with an error, e.g. `BadAlloc`) it prints the
//! error and exits, and on a lost connection (the X server closed it, e.g.
//! `xkill`, or died) it calls the display's *exit handler*, which exits.
//! minifb installs no handlers of its own, and each minifb window is its own
//! X connection (its own `Display`), so a single killed window would end
//! the viewer.
//!
//! Here:
//! - [`install`] sets a protocol error handler and an I/O error handler
//!   (process-wide, as Xlib has them) that only *record* the fault against
//!   its `Display`, for the display thread to read with [`take_fault`]
//!   after each window operation and close that camera's window.
//! - [`adopt`] gives each new window's `Display` an exit handler that
//!   returns (`XSetIOErrorExitHandler`, libX11 1.7 and later; Debian 12 has
//!   1.8): Xlib then marks that connection dead and every later call on it
//!   returns at once, so the window can be dropped like any other.
//!
//! What stays: a connection lost *while minifb creates a window*, between
//! its `XOpenDisplay` and [`adopt`], still has Xlib's exiting exit handler
//! (Xlib reads it before it calls ours, and minifb gives no earlier hook).
//! On the display thread the I/O error handler then never returns: it logs
//! why and parks that thread for good. The windows freeze, and the poll
//! thread reports the display thread as stuck, exactly as for a hung X
//! server; cameras are still received, recorded and counted. Without
//! `XSetIOErrorExitHandler` (libX11 before 1.7) every lost connection goes
//! that way.
//!
//! Xlib calls its handlers on the thread that made the failing call, and
//! only the display thread (and the startup probe, before it starts) calls
//! Xlib, so the records are thread-local and need no lock.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use x11_dl::xlib::{self, Xlib};

/// The `Display*` of one X connection, as a number: a key, never
/// dereferenced here.
pub type DisplayPtr = usize;

/// What went wrong on one X connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The server answered a request with an error.
    Protocol { error_code: u8, request_code: u8 },
    /// The connection is gone (killed, or the server died).
    Lost,
}

/// Most faults remembered at once: a display thread checks after every
/// window operation, so a few are all that can wait; more are dropped.
const MAX_FAULTS: usize = 64;

thread_local! {
    /// Faults not taken yet, by connection: the first per connection.
    static FAULTS: RefCell<Vec<(DisplayPtr, Fault)>> = const { RefCell::new(Vec::new()) };
    /// Connections given a returning exit handler by [`adopt`].
    static ADOPTED: RefCell<Vec<DisplayPtr>> = const { RefCell::new(Vec::new()) };
    /// This thread parks for good on a connection lost before [`adopt`]
    /// (the display thread); other threads let Xlib exit.
    static PARK_ON_EARLY_LOSS: Cell<bool> = const { Cell::new(false) };
}

/// `XSetIOErrorExitHandler(Display*, handler, user_data)`, libX11 >= 1.7.
type SetExitHandler = unsafe extern "C" fn(
    *mut xlib::Display,
    Option<unsafe extern "C" fn(*mut xlib::Display, *mut c_void)>,
    *mut c_void,
);

struct Lib {
    xlib: Xlib,
    set_exit_handler: Option<SetExitHandler>,
}

// The function pointers are plain addresses in libX11, callable from any
// thread (Xlib is initialised for threads: minifb calls XInitThreads).
unsafe impl Send for Lib {}
unsafe impl Sync for Lib {}

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

fn lib() -> Result<&'static Lib, String> {
    LIB.get_or_init(|| {
        let xlib = Xlib::open().map_err(|e| e.to_string())?;
        // x11-dl does not list XSetIOErrorExitHandler (it is newer than
        // its table): look it up in the same libX11, which dlopen shares.
        let set_exit_handler = unsafe {
            let handle = libc::dlopen(c"libX11.so.6".as_ptr(), libc::RTLD_LAZY);
            if handle.is_null() {
                None
            } else {
                let sym = libc::dlsym(handle, c"XSetIOErrorExitHandler".as_ptr());
                // The handle stays open: libX11 stays loaded for the process.
                (!sym.is_null()).then(|| std::mem::transmute::<*mut c_void, SetExitHandler>(sym))
            }
        };
        unsafe {
            // XInitThreads must come before any other Xlib call; minifb
            // calls it too, before each window, which is then a no-op.
            (xlib.XInitThreads)();
            (xlib.XSetErrorHandler)(Some(on_protocol_error));
            (xlib.XSetIOErrorHandler)(Some(on_io_error));
        }
        Ok(Lib {
            xlib,
            set_exit_handler,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Loads libX11 and installs the handlers, once per process; must run
/// before the first window. `Err` says why libX11 cannot be loaded.
pub fn install() -> Result<(), String> {
    lib().map(|_| ())
}

/// Whether lost connections can be survived ([`adopt`] works): libX11 1.7+.
pub fn survives_lost_connections() -> bool {
    lib().is_ok_and(|l| l.set_exit_handler.is_some())
}

/// Marks this thread as the display thread: a connection lost before
/// [`adopt`] parks it instead of exiting the process.
pub fn on_display_thread() {
    PARK_ON_EARLY_LOSS.with(|p| p.set(true));
}

/// Takes over a new window's connection: a lost connection returns to the
/// caller instead of exiting. Call right after the window is created.
pub fn adopt(display: DisplayPtr) {
    let Ok(lib) = lib() else {
        return;
    };
    if let Some(set) = lib.set_exit_handler {
        unsafe {
            set(
                display as *mut xlib::Display,
                Some(on_io_exit),
                std::ptr::null_mut(),
            )
        };
        ADOPTED.with(|a| a.borrow_mut().push(display));
    }
}

/// Forgets a connection that is being closed: its address may be reused by
/// the next one. Call before dropping its window.
pub fn forget(display: DisplayPtr) {
    ADOPTED.with(|a| a.borrow_mut().retain(|&d| d != display));
    FAULTS.with(|f| f.borrow_mut().retain(|&(d, _)| d != display));
}

/// The first fault on `display` since the last call, if any.
pub fn take_fault(display: DisplayPtr) -> Option<Fault> {
    FAULTS.with(|f| {
        let mut faults = f.borrow_mut();
        let i = faults.iter().position(|&(d, _)| d == display)?;
        Some(faults.swap_remove(i).1)
    })
}

fn record(display: *mut xlib::Display, fault: Fault) {
    let display = display as DisplayPtr;
    FAULTS.with(|f| {
        let mut faults = f.borrow_mut();
        // The first fault says why; a lost connection outranks errors.
        let full = faults.len() >= MAX_FAULTS;
        match faults.iter_mut().find(|(d, _)| *d == display) {
            Some(entry) if fault == Fault::Lost => entry.1 = Fault::Lost,
            Some(_) => {}
            None if !full => faults.push((display, fault)),
            None => {}
        }
    });
}

unsafe extern "C" fn on_protocol_error(
    display: *mut xlib::Display,
    event: *mut xlib::XErrorEvent,
) -> c_int {
    let (error_code, request_code) = match unsafe { event.as_ref() } {
        Some(e) => (e.error_code, e.request_code),
        None => (0, 0),
    };
    record(
        display,
        Fault::Protocol {
            error_code,
            request_code,
        },
    );
    // Xlib ignores the return value.
    0
}

unsafe extern "C" fn on_io_error(display: *mut xlib::Display) -> c_int {
    record(display, Fault::Lost);
    let adopted = ADOPTED.with(|a| a.borrow().contains(&(display as DisplayPtr)));
    if !adopted && PARK_ON_EARLY_LOSS.with(Cell::get) {
        // Returning would run Xlib's own exit handler: exit(1).
        log::error!(
            "lost the X connection of a window being opened; Xlib cannot recover from that \
             (it would end the viewer), so the windows stop here. Cameras are still received, \
             recorded and counted; restart the viewer to see them again"
        );
        loop {
            std::thread::park();
        }
    }
    // Adopted: our exit handler runs next and returns. Otherwise (startup
    // probe, or an old libX11) Xlib's exits, as it always did.
    0
}

unsafe extern "C" fn on_io_exit(_display: *mut xlib::Display, _data: *mut c_void) {}

/// Width and height of the default screen of an open connection, in
/// pixels (from the connection's setup data: no round trip).
pub fn screen_size(display: DisplayPtr) -> Result<(u32, u32), String> {
    let lib = lib()?;
    let x = &lib.xlib;
    if display == 0 {
        return Err("no X connection".to_owned());
    }
    let display = display as *mut xlib::Display;
    // SAFETY: `display` is a live connection (the caller's window holds it).
    let (width, height) = unsafe {
        let screen = (x.XDefaultScreen)(display);
        (
            (x.XDisplayWidth)(display, screen),
            (x.XDisplayHeight)(display, screen),
        )
    };
    Ok((width.max(1) as u32, height.max(1) as u32))
}

/// The X protocol's name of an error code, for a log line.
pub fn error_name(code: u8) -> &'static str {
    // X11 protocol, "Errors" (core codes 1-17).
    const NAMES: [&str; 18] = [
        "",
        "BadRequest",
        "BadValue",
        "BadWindow",
        "BadPixmap",
        "BadAtom",
        "BadCursor",
        "BadFont",
        "BadMatch",
        "BadDrawable",
        "BadAccess",
        "BadAlloc",
        "BadColor",
        "BadGC",
        "BadIDChoice",
        "BadName",
        "BadLength",
        "BadImplementation",
    ];
    NAMES
        .get(usize::from(code))
        .filter(|n| !n.is_empty())
        .copied()
        .unwrap_or("an extension's error")
}

/// The X protocol's name of a core request's major opcode, for the
/// requests a minifb window makes; `None` for the others.
pub fn request_name(code: u8) -> Option<&'static str> {
    // X11 protocol, "Requests" (core major opcodes).
    Some(match code {
        1 => "CreateWindow",
        2 => "ChangeWindowAttributes",
        4 => "DestroyWindow",
        8 => "MapWindow",
        12 => "ConfigureWindow",
        16 => "InternAtom",
        18 => "ChangeProperty",
        38 => "QueryPointer",
        55 => "CreateGC",
        72 => "PutImage",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_outranks_a_protocol_error_and_is_taken_once() {
        let d = 0x1000;
        record(
            d as *mut xlib::Display,
            Fault::Protocol {
                error_code: 11,
                request_code: 72,
            },
        );
        record(d as *mut xlib::Display, Fault::Lost);
        record(
            0x2000 as *mut xlib::Display,
            Fault::Protocol {
                error_code: 3,
                request_code: 2,
            },
        );
        assert_eq!(take_fault(d), Some(Fault::Lost));
        assert_eq!(take_fault(d), None);
        forget(0x2000);
        assert_eq!(take_fault(0x2000), None, "forgotten with its connection");
    }

    #[test]
    fn faults_are_bounded() {
        for d in 1..=10 * MAX_FAULTS {
            record(d as *mut xlib::Display, Fault::Lost);
        }
        FAULTS.with(|f| assert_eq!(f.borrow().len(), MAX_FAULTS));
        FAULTS.with(|f| f.borrow_mut().clear());
    }

    #[test]
    fn error_names_follow_the_protocol() {
        assert_eq!(error_name(11), "BadAlloc");
        assert_eq!(error_name(3), "BadWindow");
        assert_eq!(error_name(0), "an extension's error");
        assert_eq!(error_name(200), "an extension's error");
        assert_eq!(request_name(38), Some("QueryPointer"));
        assert_eq!(request_name(72), Some("PutImage"));
        assert_eq!(request_name(130), None);
    }
}
