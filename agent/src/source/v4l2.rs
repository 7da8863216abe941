//! The `v4l2` source: a camera through V4L2 mmap streaming (crate `v4l`).
//!
//! - **Setup.** Open the device, check it can capture and stream, pick the
//!   format ([`modes::choose`]: `--format`, or `auto`'s rule, logged with
//!   its reason), set it at `--size`, ask for `--fps` (VIDIOC_S_PARM), and
//!   log what the driver granted:
//!   `/dev/video0: 640x480 NV12 @ 30 fps, mmap, 4 buffers`. The driver's
//!   `bytesperline` gives every plane's stride ([`proto::format::Layout`]).
//!   A multi-planar-only driver (`V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE`) is
//!   refused with a message saying so.
//! - **Capture.** Wait on the device fd with `poll()` in short slices, so a
//!   stop request is seen at once and a stalled camera gives
//!   `no frame from /dev/video0 for 2 s` instead of a hang. Each frame is
//!   trimmed to `bytesused`, checked against the layout (a raw frame must
//!   be whole; an MJPG frame must not be empty),
//!   copied out of the mmap buffer and the buffer requeued at once. A frame
//!   with a newer one already waiting is skipped: newest frame wins.
//! - **Loss.** ENODEV or EIO (`camera /dev/video0 disconnected`), or no
//!   frame within `--capture-timeout`, is a [`CameraLost`]: the agent exits
//!   with status 3 and `main` prints it, or with `--reopen` it is logged once
//!   and the device retried once a second.
//!
//! # Where we don't use the `v4l` crate
//!
//! `v4l` 0.14 panics on inputs a real camera can produce: non-UTF-8 bytes
//! in the card or format names (`from_utf8().unwrap()`), colorspace or
//! transfer values newer than the crate (`expect("Invalid colorspace")` in
//! `set_format`), and a stepwise frame size with step 0. So QUERYCAP,
//! ENUM_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS (in [`modes`]) and S_FMT
//! are issued here with the crate's own `ioctl` and bindings, reading only
//! the fields we need. S_PARM comes from the crate.
//!
//! The mmap stream is ours too ([`mmap`]): `v4l`'s `MmapStream` panics in
//! Drop when VIDIOC_STREAMOFF fails, and leaking it to dodge the panic kept
//! the fd and the mappings, so every `--reopen` after found the camera busy.
//!
//! **Only a good frame feeds the watchdog** ([`Watchdog`]): a camera that
//! sends nothing but corrupt or short frames (or MJPEG frames that fail
//! `proto::jpeg::inspect`: cut short, no frame header) is lost after
//! `--capture-timeout` like a silent one, so systemd restarts the agent.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use nix::libc;
use proto::format::Layout;
use v4l::v4l_sys;
use v4l::video::capture::Parameters;
use v4l::video::Capture as _;
use v4l::Device;

use super::Capture;
use crate::cli::{FormatChoice, Size};

mod mmap;
pub mod modes;

/// mmap buffers asked of the driver: one we hold while copying, the rest
/// for the driver to fill meanwhile.
const BUFFERS: u32 = 4;

/// Longest single wait on the device fd, so a stop request is seen quickly.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Delay between attempts to reopen a lost camera (`--reopen`).
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// The camera went away (ENODEV, EIO) or stopped delivering frames. Without
/// `--reopen` this ends the agent with [`crate::cli::EXIT_CAMERA_LOST`].
#[derive(Debug)]
pub struct CameraLost {
    pub device: PathBuf,
    pub reason: Loss,
}

/// How a camera was lost while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// An ioctl or poll failed with this errno (ENODEV or EIO): unplugged,
    /// or a broken cable or driver.
    Disconnected { errno: i32 },
    /// The camera delivered no frame for this long (`--capture-timeout`).
    NoFrameFor { timeout: Duration },
}

impl CameraLost {
    /// What happened, without what the agent does about it:
    /// `camera /dev/video0 disconnected (No such device (os error 19))`.
    fn what(&self) -> impl fmt::Display + '_ {
        struct What<'a>(&'a CameraLost);
        impl fmt::Display for What<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let dev = self.0.device.display();
                match self.0.reason {
                    Loss::Disconnected { errno } => write!(
                        f,
                        "camera {dev} disconnected ({})",
                        io::Error::from_raw_os_error(errno)
                    ),
                    Loss::NoFrameFor { timeout } => write!(
                        f,
                        "no frame from {dev} for {} s",
                        trim_float(timeout.as_secs_f64())
                    ),
                }
            }
        }
        What(self)
    }
}

/// The error the agent exits with (status 3) when it does not `--reopen`.
impl fmt::Display for CameraLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; exiting (use --reopen to keep retrying)",
            self.what()
        )
    }
}

impl std::error::Error for CameraLost {}

/// Why one capture session ended.
enum End {
    /// The camera was lost while streaming; retry with `--reopen`.
    Lost(CameraLost),
    /// Setting the camera up failed. `retry` marks errors that may go away
    /// by themselves (device missing or busy) and are retried with `--reopen`.
    Setup { error: anyhow::Error, retry: bool },
}

pub struct Config<'a> {
    pub device: &'a Path,
    pub format: FormatChoice,
    pub size: Size,
    pub fps: u32,
    pub timeout: Duration,
    pub reopen: bool,
}

/// Captures until a stop is requested, the camera is lost (without
/// `--reopen`) or setup fails.
pub fn run(cfg: &Config, capture: &mut Capture) -> Result<()> {
    let dev = cfg.device.display();
    let mut retrying = false;
    loop {
        let end = match session(cfg, capture) {
            Ok(()) => return Ok(()),
            Err(end) => end,
        };
        match end {
            // Not logged here: `main` prints the error it ends with.
            End::Lost(lost) if !cfg.reopen => return Err(lost.into()),
            End::Lost(lost) => {
                capture.camera_lost();
                log::warn!(
                    "{}; retrying {dev} every {} s (--reopen)",
                    lost.what(),
                    REOPEN_DELAY.as_secs()
                );
                retrying = true;
            }
            End::Setup { error, retry } if retry && cfg.reopen => {
                // Log the first failure; the rest are the same story.
                if retrying {
                    log::debug!("{error:#}");
                } else {
                    log::warn!(
                        "{error:#}; retrying every {} s (--reopen)",
                        REOPEN_DELAY.as_secs()
                    );
                    retrying = true;
                }
            }
            End::Setup { error, .. } => return Err(error),
        }
        if capture.sleep(REOPEN_DELAY) {
            return Ok(());
        }
    }
}

/// `agent --list-formats`: what the camera at `path` offers (each format
/// with its sizes and rates; for a size range, the rates at `size`), as
/// the text to print.
pub fn list_formats(path: &Path, size: Size) -> Result<String> {
    let dev = path.display();
    let fail = |end: End| match end {
        End::Setup { error, .. } => error,
        End::Lost(lost) => lost.into(),
    };
    let device = Device::with_path(path).map_err(|e| fail(open_error(path, e)))?;
    let caps = query_caps(&device).map_err(|e| fail(setup_error(path, "query", e)))?;
    let offers = modes::offers(&device, size)
        .map_err(|e| fail(setup_error(path, "list the formats of", e)))?;
    let mut text = format!("{dev}: {} (driver {})\n", caps.card, caps.driver);
    if caps.flags & v4l_sys::V4L2_CAP_VIDEO_CAPTURE == 0 {
        let what = if caps.flags & v4l_sys::V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            "multi-planar capture only, which the agent does not support"
        } else {
            "not a video capture device"
        };
        text.push_str(&format!("{dev} is {what}\n"));
    }
    text.push_str(&modes::describe(&offers));
    Ok(text)
}

/// Opens and sets up the camera, then streams until a stop or an error.
fn session(cfg: &Config, capture: &mut Capture) -> Result<(), End> {
    let path = cfg.device;
    let dev = path.display();
    let device = Device::with_path(path).map_err(|e| open_error(path, e))?;

    let caps = query_caps(&device).map_err(|e| setup_error(path, "query", e))?;
    let can_capture = caps.flags & v4l_sys::V4L2_CAP_VIDEO_CAPTURE != 0;
    let can_stream = caps.flags & v4l_sys::V4L2_CAP_STREAMING != 0;
    if !can_capture || !can_stream {
        let what = if caps.flags & v4l_sys::V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            "a multi-planar capture device (V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: SoC \
             camera pipelines and codecs, not USB webcams), which the agent does not support"
        } else if !can_capture {
            "not a video capture device"
        } else {
            "a capture device without streaming I/O"
        };
        return Err(End::Setup {
            error: anyhow!(
                "{dev} ({}, driver {}) is {what}; pick another device (v4l2-ctl --list-devices)",
                caps.card,
                caps.driver
            ),
            retry: false,
        });
    }

    let format = negotiate(&device, path, cfg)?;
    let fps = set_frame_rate(&device, path, cfg.fps);

    let mut stream = mmap::Stream::new(&device, BUFFERS)
        .map_err(|e| setup_error(path, "allocate mmap buffers on", e))?;
    let result = stream_frames(&mut stream, &device, cfg, &format, fps, capture);
    // Releases the buffers, and then `device` closes the fd, whatever failed.
    drop(stream);
    result
}

/// What QUERYCAP says, read without trusting the strings to be UTF-8.
struct Caps {
    driver: String,
    card: String,
    /// The capabilities of this device node (device_caps when the driver
    /// reports them, as all current drivers do).
    flags: u32,
}

fn query_caps(device: &Device) -> io::Result<Caps> {
    // SAFETY: all-zero is a valid v4l2_capability (plain integers and arrays).
    let mut raw: v4l_sys::v4l2_capability = unsafe { std::mem::zeroed() };
    // SAFETY: VIDIOC_QUERYCAP fills exactly one v4l2_capability, which `raw` is.
    unsafe {
        v4l::v4l2::ioctl(
            device.handle().fd(),
            v4l::v4l2::vidioc::VIDIOC_QUERYCAP,
            &mut raw as *mut _ as *mut c_void,
        )?;
    }
    let flags = if raw.capabilities & v4l_sys::V4L2_CAP_DEVICE_CAPS != 0 {
        raw.device_caps
    } else {
        raw.capabilities
    };
    Ok(Caps {
        driver: c_string(&raw.driver),
        card: c_string(&raw.card),
        flags,
    })
}

/// Picks the format ([`modes::choose`]) and sets it at `--size`; the
/// layout of the frames the driver will deliver. When the device cannot
/// do it, the error names the nearest modes it offers.
fn negotiate(device: &Device, path: &Path, cfg: &Config) -> Result<Layout, End> {
    let dev = path.display();
    let size = cfg.size;
    let refuse = |error| End::Setup {
        error,
        retry: false,
    };
    let offers =
        modes::offers(device, size).map_err(|e| setup_error(path, "list the formats of", e))?;
    let choice = modes::choose(&offers, cfg.format, size, cfg.fps)
        .map_err(|why| refuse(anyhow!("{dev} {why}")))?;
    let format = choice.format;
    if cfg.format == FormatChoice::Auto {
        log::info!("{dev}: --format auto chose {}", choice.why);
    }

    // SAFETY: all-zero is a valid v4l2_format (integers, and a union of
    // plain structs).
    let mut raw: v4l_sys::v4l2_format = unsafe { std::mem::zeroed() };
    raw.type_ = v4l_sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
    // `pix` is the member VIDEO_CAPTURE uses; we write and later read only it.
    raw.fmt.pix.width = size.width;
    raw.fmt.pix.height = size.height;
    raw.fmt.pix.pixelformat = u32::from_le_bytes(format.fourcc());
    raw.fmt.pix.field = v4l_sys::v4l2_field_V4L2_FIELD_ANY;
    // SAFETY: VIDIOC_S_FMT reads and rewrites one v4l2_format, which `raw` is.
    unsafe {
        v4l::v4l2::ioctl(
            device.handle().fd(),
            v4l::v4l2::vidioc::VIDIOC_S_FMT,
            &mut raw as *mut _ as *mut c_void,
        )
    }
    .map_err(|e| setup_error(path, &format!("set {format} {size} on"), e))?;
    // SAFETY: as above, `pix` is the member the driver filled in.
    let pix = unsafe { raw.fmt.pix };

    if pix.pixelformat != u32::from_le_bytes(format.fourcc())
        || (pix.width, pix.height) != (size.width, size.height)
    {
        return Err(refuse(anyhow!(
            "{dev} does not offer {format} at {size} (the driver offered {} at {}x{}); \
             pick a --size it offers; nearest: {}",
            fourcc_name(pix.pixelformat.to_le_bytes()),
            pix.width,
            pix.height,
            modes::nearest(&offers, size, None)
        )));
    }
    let layout = if format.is_compressed() {
        // A driver that leaves sizeimage 0 gets the file source's bound.
        match pix.sizeimage {
            0 => Layout::new(format, pix.width, pix.height, 0),
            max => Ok(Layout::compressed(pix.width, pix.height, max)),
        }
    } else {
        Layout::new(format, pix.width, pix.height, pix.bytesperline)
    };
    layout.map_err(|e| {
        refuse(anyhow!(
            "{dev} reports {format} {size} that cannot be right: {e}; the driver is broken"
        ))
    })
}

/// Asks for `fps` (0: keep the camera's rate) and returns the rate in
/// effect, if the driver says. A camera that cannot set its rate still
/// streams at its own, so that is a warning, not an error.
fn set_frame_rate(device: &Device, path: &Path, fps: u32) -> Option<f64> {
    if fps > 0 {
        if let Err(e) = device.set_params(&Parameters::with_fps(fps)) {
            log::warn!(
                "{}: cannot set {fps} fps ({e}); using the camera's own rate",
                path.display()
            );
        }
    }
    let interval = device.params().ok()?.interval;
    (interval.numerator > 0 && interval.denominator > 0)
        .then(|| f64::from(interval.denominator) / f64::from(interval.numerator))
}

/// Streams frames into the mailbox until a stop is requested or an error.
fn stream_frames(
    stream: &mut mmap::Stream,
    device: &Device,
    cfg: &Config,
    layout: &Layout,
    fps: Option<f64>,
    capture: &mut Capture,
) -> Result<(), End> {
    let path = cfg.device;
    let dev = path.display();
    for index in 0..stream.count() {
        stream
            .queue(index)
            .map_err(|e| capture_error(path, "queue buffers on", e))?;
    }
    stream
        .start()
        .map_err(|e| capture_error(path, "start streaming on", e))?;
    let rate = fps.map_or_else(
        || "camera's own rate".to_string(),
        |f| format!("{} fps", trim_float(f)),
    );
    log::info!(
        "{dev}: {}x{} {} @ {rate}, mmap, {} buffers",
        layout.width(),
        layout.height(),
        layout.format(),
        stream.count()
    );

    // A raw frame must be whole; a JPEG is as long as it is (its decoder
    // finds out whether it is whole), but never empty.
    let compressed = layout.format().is_compressed();
    let needed = if compressed { 1 } else { layout.frame_len() };
    let handle = device.handle();
    let slice_ms = POLL_SLICE.as_millis() as i32;
    let mut watchdog = Watchdog::new(Instant::now(), cfg.timeout);
    let mut warned_bad = false;
    loop {
        if capture.stop_requested() {
            return Ok(());
        }
        if watchdog.expired(Instant::now()) {
            return Err(End::Lost(CameraLost {
                device: path.to_path_buf(),
                reason: Loss::NoFrameFor {
                    timeout: cfg.timeout,
                },
            }));
        }
        match handle.poll(libc::POLLIN, slice_ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(capture_error(path, "wait for a frame from", e)),
        }
        let frame = match stream.dequeue() {
            Ok(frame) => frame,
            Err(e) if is_retryable(&e) => continue,
            Err(e) => return Err(capture_error(path, "dequeue a frame from", e)),
        };
        let captured = Instant::now();
        // Copy the frame out (if it is worth it), then hand the buffer back
        // to the driver at once.
        let data = stream.data(&frame);
        let used = data.len();
        // A JPEG must be whole too: SOI, a sane frame header, EOI (a few
        // microseconds, no decoding), or it would feed the watchdog.
        let broken_jpeg = compressed
            .then(|| proto::jpeg::inspect(data).err())
            .flatten();
        let kept = if !frame_is_good(frame.error, used, needed) {
            if !warned_bad {
                log::warn!(
                    "{dev}: dropping a short or corrupt frame ({used} of {needed} bytes); \
                     more are logged at debug level"
                );
                warned_bad = true;
            } else {
                log::debug!("{dev}: dropping a short or corrupt frame ({used} of {needed} bytes)");
            }
            None
        } else if let Some(e) = broken_jpeg {
            if !warned_bad {
                log::warn!(
                    "{dev}: dropping a broken MJPEG frame: {e}; more are logged at debug level"
                );
                warned_bad = true;
            } else {
                log::debug!("{dev}: dropping a broken MJPEG frame: {e}");
            }
            None
        } else {
            watchdog.good_frame(captured);
            // Newest frame wins: if the driver already has a newer frame,
            // this one is stale; skip the copy.
            if matches!(handle.poll(libc::POLLIN, 0), Ok(1)) {
                None
            } else {
                let mut buf = capture.buffer();
                buf.extend_from_slice(if compressed { data } else { &data[..needed] });
                Some(buf)
            }
        };
        stream
            .queue(frame.index)
            .map_err(|e| capture_error(path, "requeue a buffer on", e))?;
        match kept {
            Some(buf) => capture.publish(buf, *layout, captured),
            None => capture.skip(),
        }
    }
}

/// A frame is worth encoding if the driver did not flag it corrupt and it
/// holds a whole frame (`used` bytes of the `needed`).
fn frame_is_good(error: bool, used: usize, needed: usize) -> bool {
    !error && used >= needed
}

/// Decides when a camera counts as lost for silence: `--capture-timeout`
/// after the last *good* frame. Frames we drop do not count, or a camera
/// sending only broken frames would never be given up (and never restarted
/// by systemd).
#[derive(Debug)]
struct Watchdog {
    last_good: Instant,
    timeout: Duration,
}

impl Watchdog {
    /// Starts counting at `start` (streaming began).
    fn new(start: Instant, timeout: Duration) -> Watchdog {
        Watchdog {
            last_good: start,
            timeout,
        }
    }

    fn good_frame(&mut self, at: Instant) {
        self.last_good = at;
    }

    /// True once no good frame came for the timeout.
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_good) >= self.timeout
    }
}

const ENODEV: i32 = libc::ENODEV;
const EIO: i32 = libc::EIO;
const EINVAL: i32 = libc::EINVAL;
const EBUSY: i32 = libc::EBUSY;

/// Errors after which a dequeue may simply be tried again (EAGAIN: poll
/// woke us, but no buffer was ready after all).
fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An error while streaming: ENODEV and EIO mean the camera is gone.
fn capture_error(path: &Path, doing: &str, e: io::Error) -> End {
    match e.raw_os_error() {
        Some(errno @ (ENODEV | EIO)) => End::Lost(CameraLost {
            device: path.to_path_buf(),
            reason: Loss::Disconnected { errno },
        }),
        _ => setup_error(path, doing, e),
    }
}

/// A failed ioctl during setup, with what to do about it.
fn setup_error(path: &Path, doing: &str, e: io::Error) -> End {
    let dev = path.display();
    match e.raw_os_error() {
        Some(EBUSY) => End::Setup {
            error: anyhow!(
                "{dev} is busy: another program is using the camera \
                 (find it with `fuser -v {dev}`, stop it, and try again)"
            ),
            retry: true,
        },
        Some(ENODEV) | Some(EIO) => End::Setup {
            error: anyhow!("cannot {doing} {dev}: {e} — was the camera unplugged?"),
            retry: true,
        },
        Some(libc::ENOTTY) => End::Setup {
            error: anyhow!("{dev} is not a V4L2 device (it does not answer V4L2 ioctls); pick another with v4l2-ctl --list-devices"),
            retry: false,
        },
        _ => End::Setup {
            error: anyhow::Error::new(e).context(format!("cannot {doing} {dev}")),
            retry: false,
        },
    }
}

/// Opening the device failed: say what it means for a camera.
fn open_error(path: &Path, e: io::Error) -> End {
    let dev = path.display();
    // Rust files EPERM under PermissionDenied too, but it is not a file
    // permission: it is a device policy (systemd's DevicePolicy=/DeviceAllow=,
    // a container's device cgroup) refusing the device outright, so the
    // `video` group advice would send the user the wrong way.
    if e.raw_os_error() == Some(libc::EPERM) {
        let error = anyhow!(
            "cannot open {dev}: operation not permitted — a device policy refuses it \
             (under systemd the unit needs DeviceAllow=char-video4linux rw; in a container, \
             pass the device through)"
        );
        return End::Setup {
            error,
            retry: false,
        };
    }
    let (error, retry) = match e.kind() {
        io::ErrorKind::NotFound => (
            anyhow!("cannot open {dev}: no such file — is the camera plugged in? (v4l2-ctl --list-devices)"),
            true,
        ),
        io::ErrorKind::PermissionDenied => (
            anyhow!(
                "cannot open {dev}: permission denied — add this user to the `video` group \
                 (sudo usermod -aG video $USER, then log in again), or run with \
                 SupplementaryGroups=video under systemd"
            ),
            false,
        ),
        _ => match e.raw_os_error() {
            Some(libc::ENXIO) | Some(ENODEV) => (
                anyhow!("cannot open {dev}: no such device — is the camera plugged in? (v4l2-ctl --list-devices)"),
                true,
            ),
            Some(EBUSY) => (
                anyhow!("cannot open {dev}: busy — another program is using the camera (fuser -v {dev})"),
                true,
            ),
            _ => (
                anyhow::Error::new(e).context(format!("cannot open {dev}")),
                false,
            ),
        },
    };
    End::Setup { error, retry }
}

/// A fixed-size, NUL-padded C string from the kernel, decoded leniently.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

fn fourcc_name(fourcc: [u8; 4]) -> String {
    fourcc
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// "30" for 30.0, "29.97" for 29.97.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs capture on `device` at 640x480 and returns the error it ends with.
    fn capture_error(device: &Path) -> String {
        let cfg = Config {
            device,
            format: FormatChoice::Auto,
            size: Size {
                width: 640,
                height: 480,
            },
            fps: 30,
            timeout: Duration::from_secs(2),
            reopen: false,
        };
        let error = crate::source::with_test_capture(|capture| run(&cfg, capture).unwrap_err());
        format!("{error:#}")
    }

    #[test]
    fn missing_device_says_what_to_do() {
        let text = capture_error(&std::env::temp_dir().join("camstream-no-such-video-device"));
        assert!(
            text.contains("no such file — is the camera plugged in? (v4l2-ctl --list-devices)"),
            "{text}"
        );
    }

    #[test]
    fn open_errors_say_what_to_do() {
        let path = Path::new("/dev/video0");
        let text = |errno: i32| match open_error(path, io::Error::from_raw_os_error(errno)) {
            End::Setup { error, .. } => format!("{error:#}"),
            _ => panic!("open errors end the setup"),
        };
        assert!(text(libc::EACCES).contains("`video` group"));
        // EPERM is a device policy, not file permissions: no group advice.
        let eperm = text(libc::EPERM);
        assert!(eperm.contains("DeviceAllow=char-video4linux"), "{eperm}");
        assert!(!eperm.contains("`video` group"), "{eperm}");
        assert!(text(libc::EBUSY).contains("another program is using the camera"));
        assert!(text(libc::ENXIO).contains("no such device"));
    }

    #[test]
    fn not_a_v4l2_device_is_refused_clearly() {
        let text = capture_error(Path::new("/dev/null"));
        assert!(text.contains("not a V4L2 device"), "{text}");
    }

    #[test]
    fn lost_camera_says_what_happened_and_what_the_agent_does() {
        let lost = |reason| CameraLost {
            device: "/dev/video0".into(),
            reason,
        };
        let unplugged = lost(Loss::Disconnected { errno: ENODEV });
        assert_eq!(
            unplugged.to_string(),
            format!(
                "camera /dev/video0 disconnected ({}); exiting (use --reopen to keep retrying)",
                io::Error::from_raw_os_error(ENODEV)
            )
        );
        let stalled = lost(Loss::NoFrameFor {
            timeout: Duration::from_millis(2500),
        });
        assert_eq!(
            stalled.to_string(),
            "no frame from /dev/video0 for 2.5 s; exiting (use --reopen to keep retrying)"
        );
        assert_eq!(
            stalled.what().to_string(),
            "no frame from /dev/video0 for 2.5 s"
        );
    }

    /// A camera that sent only broken frames reset the capture timeout with
    /// each one, so the agent never exited with status 3.
    #[test]
    fn only_bad_frames_trip_the_capture_timeout() {
        let timeout = Duration::from_secs(2);
        let start = Instant::now();
        let watchdog = Watchdog::new(start, timeout);
        // Corrupt and short frames at 30 fps: each is dropped, none feeds it.
        let mut at = start;
        for i in 0..60 {
            let (error, used) = if i % 2 == 0 {
                (true, 614_400)
            } else {
                (false, 1000)
            };
            assert!(!frame_is_good(error, used, 614_400));
            assert_eq!(watchdog.expired(at), at - start >= timeout);
            at += Duration::from_millis(33);
        }
        assert!(watchdog.expired(start + timeout));
    }

    #[test]
    fn a_good_frame_resets_the_capture_timeout() {
        let timeout = Duration::from_secs(2);
        let start = Instant::now();
        let mut watchdog = Watchdog::new(start, timeout);
        assert!(frame_is_good(false, 614_400, 614_400));
        assert!(frame_is_good(false, 614_401, 614_400));
        let good = start + Duration::from_millis(1900);
        watchdog.good_frame(good);
        assert!(!watchdog.expired(start + timeout));
        assert!(!watchdog.expired(good + timeout - Duration::from_millis(1)));
        assert!(watchdog.expired(good + timeout));
        // A clock that looks backwards (an Instant from before) is not lost.
        assert!(!watchdog.expired(start));
    }

    #[test]
    fn names_and_numbers_print_cleanly() {
        assert_eq!(
            c_string(b"Integrated \xff Camera\0\0junk"),
            "Integrated \u{fffd} Camera"
        );
        assert_eq!(fourcc_name(*b"YUYV"), "YUYV");
        assert_eq!(fourcc_name([b'G', b'R', b'E', 0]), "GRE?");
        assert_eq!(trim_float(30.0), "30");
        assert_eq!(trim_float(29.97), "29.97");
        assert_eq!(trim_float(7.5), "7.5");
    }
}
