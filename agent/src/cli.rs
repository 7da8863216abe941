//! The command line: every option, its default and its meaning, in one place.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use proto::format::PixelFormat;
use proto::wire::CameraId;

/// Exit status when the camera was lost (ENODEV, EIO, or no frame within
/// `--capture-timeout`) and `--reopen` is off. Distinct from 1 (any other
/// failure) so a supervisor can tell "unplugged" from "misconfigured".
pub const EXIT_CAMERA_LOST: u8 = 3;

/// Largest frame side we produce: the viewer refuses BMPs larger than this.
const MAX_SIDE: u32 = proto::bmp::MAX_DIMENSION;

/// Most encoder threads the default picks: gzip scales with cores, but a Pi
/// has four and more threads than cores only add latency.
const MAX_DEFAULT_WORKERS: usize = 4;

/// camstream edge agent: captures a camera (or a synthetic source), encodes
/// each frame as a gzip-compressed BMP (or a JPEG, --encoding jpeg) and
/// streams it to a viewer over TCP.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "agent",
    version,
    about,
    after_help = "\
Stats: every --stats-interval seconds one line is logged, e.g.
  camera 3: 29.8 fps captured, 15.8 sent, 140 dropped, 140 before encoding + 0 after, 95.1 Mbit/s gzip-bmp level 9, ratio 1.23, encode p50 18 ms p99 27 ms, latency p50 104 ms p99 137 ms
(frames per second captured and carried by the link; frames dropped in the
interval, before encoding and after; capture to on the wire latency). When the
link carries fewer frames than the camera makes, one line says so, at most
once a minute, and only frames the link can carry are encoded.

Logging goes to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more detail.

Exit status:
  0  stopped by SIGINT/SIGTERM, or --frames frames were sent
  1  any other failure (bad device, permission denied, camera busy, I/O error)
  2  invalid command-line arguments
  3  the camera was lost (unplugged, I/O error, or no frame within --capture-timeout) and --reopen is off"
)]
pub struct Args {
    /// The viewer to send frames to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000", value_parser = parse_server)]
    pub server: String,

    /// Camera id sent in every frame header, 0-255; the viewer opens one window per id.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub id: CameraId,

    /// Where frames come from: `v4l2` (the camera at --device), `pattern`
    /// (moving 75% colour bars, no camera needed) or `file:PATH` (frames of
    /// --format and --size back to back, looped; for MJPG, JPEG files
    /// concatenated).
    #[arg(long, value_name = "v4l2|pattern|file:PATH", default_value = "v4l2", value_parser = parse_source)]
    pub source: Source,

    /// The V4L2 capture device, used by `--source v4l2` and --list-formats.
    #[arg(long, value_name = "PATH", default_value = "/dev/video0")]
    pub device: PathBuf,

    /// Pixel format to capture, a V4L2 fourcc in any case: YUYV, UYVY,
    /// YVYU, NV12, NV21, YU12, YV12, GREY, RGB3, BGR3 or MJPG. `auto` picks,
    /// among what the camera offers at --size, a raw format that reaches
    /// --fps (colour formats first), else MJPG, and logs which and why. For
    /// a file source, `auto` goes by the file's extension (`.nv12`, `.mjpg`,
    /// `.jpg`, ...), else YUYV; the pattern source is always YUYV.
    #[arg(long, value_name = "FOURCC|auto", default_value = "auto", value_parser = parse_format)]
    pub format: FormatChoice,

    /// Print the formats, frame sizes and frame rates the camera at
    /// --device offers, marking the ones the agent cannot take, and exit.
    #[arg(long)]
    pub list_formats: bool,

    /// Frame size in pixels. YUYV, UYVY and YVYU need an even width; NV12,
    /// NV21, YU12 and YV12 an even width and height.
    #[arg(long, value_name = "WxH", default_value = "640x480", value_parser = parse_size)]
    pub size: Size,

    /// Frame rate asked of the camera, or the pace of the pattern and file
    /// sources. 0 means as fast as possible (pattern and file), or the
    /// camera's current rate (v4l2).
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub fps: u32,

    /// gzip level, 0 (store) to 9 (smallest, slowest); for --encoding gzip-bmp.
    #[arg(long, value_name = "0-9", default_value_t = proto::gzip::DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub level: u32,

    /// What each frame's body is: `gzip-bmp` (a 24-bit BMP, gzipped: the
    /// original design's format, the only one its Python server reads) or
    /// `jpeg` (about 1/10 of the bytes at --quality 85; our viewer reads
    /// both). From an MJPEG camera, `jpeg` sends the camera's own JPEG
    /// untouched (passthrough).
    #[arg(long, value_name = "gzip-bmp|jpeg", default_value = "gzip-bmp", value_parser = parse_encoding)]
    pub encoding: Encoding,

    /// JPEG quality, 1 (smallest) to 100 (best); for --encoding jpeg of raw
    /// frames (a passthrough frame keeps the camera's quality).
    #[arg(long, value_name = "1-100", default_value_t = proto::jpeg::DEFAULT_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Encoder threads [default: number of cores, at most 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: Option<u16>,

    /// Stop and exit 0 after N frames have been sent; 0 means never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub frames: u64,

    /// When the camera is lost, keep retrying the device once a second
    /// instead of exiting with status 3.
    #[arg(long)]
    pub reopen: bool,

    /// Seconds between stats lines; 0 turns them off.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub stats_interval: Seconds,

    /// Serve the node's counters for Prometheus at http://ADDR:PORT/metrics
    /// (frames captured, sent and dropped, encode times, reconnects, camera
    /// losses). Off by default. No authentication: bind it to an address
    /// only your monitoring can reach, e.g. the management interface's.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// A camera that delivers no frame for this long counts as lost.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_positive_seconds)]
    pub capture_timeout: Seconds,

    /// A send blocked this long (the viewer stopped reading), or sent data
    /// unacknowledged this long (the viewer or the network is gone: set as
    /// TCP_USER_TIMEOUT), counts as a broken connection; the agent reconnects.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_positive_seconds)]
    pub send_timeout: Seconds,

    /// Speak TLS 1.3 to the viewer, and accept only a viewer certificate
    /// signed by this CA (PEM). Needs --tls-cert and --tls-key: the viewer
    /// requires a client certificate. Without --tls-* the agent speaks the
    /// original plaintext protocol.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,

    /// This node's certificate (PEM, leaf first), signed by the viewer's
    /// --tls-client-ca. If it names cameras (camstream-camera-N.invalid),
    /// the viewer accepts only those ids.
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,

    /// The name the viewer's certificate must carry [default: --server's
    /// host], for when --server is an address the certificate does not name.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

impl Args {
    /// Checks what clap cannot check option by option: the size must fit
    /// the format (and the pattern source draws only YUYV).
    pub fn check(&self) -> Result<(), String> {
        if self.source == Source::Pattern {
            if let FormatChoice::Fixed(f) = self.format {
                if f != PixelFormat::Yuyv {
                    return Err(format!(
                        "--format {f}: the pattern source draws YUYV only; \
                         use --format auto or YUYV, or a file source for other formats"
                    ));
                }
            }
        }
        let fixed = match (&self.source, self.format) {
            (_, FormatChoice::Fixed(f)) => Some(f),
            (Source::Pattern, FormatChoice::Auto) => Some(PixelFormat::Yuyv),
            (Source::File(path), FormatChoice::Auto) => Some(file_format(path)),
            (Source::V4l2, FormatChoice::Auto) => None,
        };
        if let Some(f) = fixed {
            f.check_size(self.size.width, self.size.height)
                .map_err(|e| format!("--size {}: {e}", self.size))?;
        }
        Ok(())
    }

    /// The number of encoder threads: the flag, or cores capped at 4.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_DEFAULT_WORKERS),
        }
    }
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    V4l2,
    Pattern,
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4l2 => write!(f, "v4l2"),
            Source::Pattern => write!(f, "pattern"),
            Source::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// Which pixel format to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// The best the camera offers at the size and rate (see `--help`).
    Auto,
    /// Exactly this one, or fail naming what the camera offers.
    Fixed(PixelFormat),
}

impl fmt::Display for FormatChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatChoice::Auto => write!(f, "auto"),
            FormatChoice::Fixed(format) => write!(f, "{format}"),
        }
    }
}

/// The format `--format auto` means for a frame file: its extension if
/// that names a format (`.nv12`, `.GREY`; `.jpg`, `.jpeg` and `.mjpeg` are
/// MJPG), else YUYV, the format of `testdata/frames/*.yuyv`.
pub fn file_format(path: &std::path::Path) -> PixelFormat {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" | "mjpeg" => PixelFormat::Mjpg,
        "i420" => PixelFormat::Yu12,
        _ => PixelFormat::parse(&ext).unwrap_or(PixelFormat::Yuyv),
    }
}

/// What a frame's body is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gzip of a 24-bit BMP: the original design's format.
    GzipBmp,
    /// A JPEG file.
    Jpeg,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::GzipBmp => "gzip-bmp",
            Encoding::Jpeg => "jpeg",
        })
    }
}

/// A frame size in pixels, both sides 1..=16384. Whether a side must be
/// even depends on the format ([`Args::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A duration given in (possibly fractional) seconds on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

fn parse_server(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` has no port; write HOST:PORT, e.g. 127.0.0.1:5000"))?;
    if host.is_empty() {
        return Err(format!(
            "`{s}` has no host; write HOST:PORT, e.g. 127.0.0.1:5000"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("`{port}` is not a TCP port (1-65535)")),
    }
}

fn parse_source(s: &str) -> Result<Source, String> {
    match s {
        "v4l2" => Ok(Source::V4l2),
        "pattern" => Ok(Source::Pattern),
        _ => match s.strip_prefix("file:") {
            Some("") => Err("`file:` needs a path, e.g. file:frames.yuyv".into()),
            Some(path) => Ok(Source::File(PathBuf::from(path))),
            None => Err(format!(
                "unknown source `{s}`; use v4l2, pattern or file:PATH"
            )),
        },
    }
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    match s.to_ascii_lowercase().as_str() {
        "gzip-bmp" => Ok(Encoding::GzipBmp),
        "jpeg" | "jpg" => Ok(Encoding::Jpeg),
        _ => Err(format!(
            "unknown encoding `{s}`; use gzip-bmp (the original format) or jpeg"
        )),
    }
}

fn parse_size(s: &str) -> Result<Size, String> {
    let bad = || format!("`{s}` is not a size; write WxH, e.g. 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let width: u32 = w.trim().parse().map_err(|_| bad())?;
    let height: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(format!(
            "size {width}x{height} is out of range: each side must be 1-{MAX_SIDE}"
        ));
    }
    Ok(Size { width, height })
}

fn parse_format(s: &str) -> Result<FormatChoice, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(FormatChoice::Auto);
    }
    PixelFormat::parse(s)
        .map(FormatChoice::Fixed)
        .map_err(|e| e.to_string())
}

fn parse_seconds(s: &str) -> Result<Seconds, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map(Seconds)
        .map_err(|_| format!("`{s}` is not a duration in seconds (0 or more)"))
}

fn parse_positive_seconds(s: &str) -> Result<Seconds, String> {
    let secs = parse_seconds(s)?;
    if secs.0.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size("640x480"),
            Ok(Size {
                width: 640,
                height: 480
            })
        );
        for bad in ["0x480", "640x16385", "640", "axb"] {
            assert!(parse_size(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn formats_are_fourccs_in_any_case_or_auto() {
        assert_eq!(parse_format("AUTO"), Ok(FormatChoice::Auto));
        assert_eq!(
            parse_format("nv12"),
            Ok(FormatChoice::Fixed(PixelFormat::Nv12))
        );
        assert_eq!(
            parse_format("Mjpg"),
            Ok(FormatChoice::Fixed(PixelFormat::Mjpg))
        );
        let err = parse_format("H264").unwrap_err();
        assert!(err.contains("YUYV") && err.contains("auto"), "{err}");
    }

    #[test]
    fn sizes_are_checked_against_the_format() {
        let args = |extra: &[&str]| {
            let mut all = vec!["agent"];
            all.extend_from_slice(extra);
            Args::try_parse_from(all).unwrap()
        };
        let odd = args(&["--size", "641x480", "--format", "yuyv"]).check();
        assert!(odd.unwrap_err().contains("even width"));
        assert!(args(&["--size", "640x481", "--format", "NV12"])
            .check()
            .is_err());
        assert!(args(&["--size", "641x481", "--format", "grey"])
            .check()
            .is_ok());
        // auto with a camera: the camera's formats decide.
        assert!(args(&["--size", "641x481"]).check().is_ok());
        assert!(args(&["--size", "641x480", "--source", "pattern"])
            .check()
            .is_err());
        assert!(args(&["--source", "pattern", "--format", "NV12"])
            .check()
            .is_err());
        assert!(args(&["--source", "file:x.grey", "--size", "3x3"])
            .check()
            .is_ok());
        assert!(args(&["--source", "file:x.yuyv", "--size", "3x3"])
            .check()
            .is_err());
    }

    #[test]
    fn file_formats_follow_the_extension() {
        let f = |p: &str| file_format(std::path::Path::new(p));
        assert_eq!(f("a/bars.NV21"), PixelFormat::Nv21);
        assert_eq!(f("frames.jpg"), PixelFormat::Mjpg);
        assert_eq!(f("frames.mjpg"), PixelFormat::Mjpg);
        assert_eq!(f("x.i420"), PixelFormat::Yu12);
        assert_eq!(f("testdata/frames/coffee.yuyv"), PixelFormat::Yuyv);
        assert_eq!(f("frames.raw"), PixelFormat::Yuyv);
        assert_eq!(f("frames"), PixelFormat::Yuyv);
    }

    #[test]
    fn sources() {
        assert_eq!(parse_source("pattern"), Ok(Source::Pattern));
        assert_eq!(
            parse_source("file:a/b.yuyv"),
            Ok(Source::File("a/b.yuyv".into()))
        );
        for bad in ["file:", "camera"] {
            assert!(parse_source(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(parse_encoding("gzip-bmp"), Ok(Encoding::GzipBmp));
        assert_eq!(parse_encoding("JPEG"), Ok(Encoding::Jpeg));
        assert!(parse_encoding("png").is_err());
        let args = Args::try_parse_from(["agent"]).unwrap();
        assert_eq!((args.encoding, args.quality), (Encoding::GzipBmp, 85));
        for bad in ["0", "101"] {
            assert!(Args::try_parse_from(["agent", "--quality", bad]).is_err());
        }
    }

    #[test]
    fn servers() {
        for good in ["127.0.0.1:5000", "[::1]:5000", "viewer.local:5000"] {
            assert_eq!(parse_server(good).as_deref(), Ok(good));
        }
        for bad in ["127.0.0.1", ":5000", "host:0", "host:99999"] {
            assert!(parse_server(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn every_option_is_documented() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        for arg in Args::command().get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }
}
