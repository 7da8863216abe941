//! Talking to the viewer's `--http` side as plain clients do: one request
//! per connection ([`get`]), the `/api/cameras` list, `/metrics` values, and
//! the real tools that read MJPEG (ffmpeg, ffprobe).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child::{run_ok, LoggedChild};
use crate::image::Image;

/// A whole response: status code, head (status line and headers) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over a new connection, read to EOF (the viewer closes after
/// every response but a stream).
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: e2e\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    parse_response(&raw).unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {raw:?}"))
}

/// Splits a raw response into status, head and body.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

/// The `http on http://ADDR/` address a viewer started with `--http` logged.
pub fn http_addr(viewer: &LoggedChild) -> SocketAddr {
    let line = viewer
        .wait_for_line("http on http://", Duration::from_secs(30))
        .expect("the viewer logs its --http address");
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
}

/// One camera of `/api/cameras`, the fields the tests use.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCamera {
    pub id: Option<u8>,
    pub connection: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub encoding: Option<String>,
    pub stream: String,
    pub snapshot: String,
    /// The object's text, for other fields and messages.
    pub raw: String,
}

/// `/api/cameras`, parsed just enough (flat objects of numbers, strings and
/// nulls: the viewer writes nothing else there).
pub fn cameras(addr: SocketAddr) -> Vec<ApiCamera> {
    let r = get(addr, "/api/cameras");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.head.contains("Content-Type: application/json"),
        "{}",
        r.head
    );
    let text = r.text();
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a JSON list: {text}"));
    inner
        .split("},{")
        .filter(|o| !o.trim().is_empty())
        .map(|o| {
            let o = o.trim_start_matches('{').trim_end_matches('}').to_owned();
            ApiCamera {
                id: field(&o, "id").and_then(|v| v.parse().ok()),
                connection: field(&o, "connection")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no connection in {o}")),
                width: field(&o, "width").and_then(|v| v.parse().ok()),
                height: field(&o, "height").and_then(|v| v.parse().ok()),
                encoding: field(&o, "encoding").filter(|v| v != "null"),
                stream: field(&o, "stream").unwrap_or_default(),
                snapshot: field(&o, "snapshot").unwrap_or_default(),
                raw: o,
            }
        })
        .collect()
}

/// A field's value in a flat JSON object's text: numbers as written,
/// strings without their quotes.
pub fn field(object: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    let rest = &object[object.find(&key)? + key.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        return Some(s[..s.find('"')?].to_owned());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The value of the sample `name{labels}` in a Prometheus text exposition
/// (`labels` exactly as written, e.g. `camera="1"`; empty for none).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `promtool check metrics` (Prometheus's own parser and linter) on
/// `text`; returns its complaints if it refuses it.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

/// `ffprobe`'s width and height of the first video stream of `input` (a
/// file or a URL).
pub fn ffprobe_size(input: &str) -> (u32, u32) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "20000000",
            "-select_streams",
            "v:0",
        ])
        .args([
            "-show_entries",
            "stream=width,height,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .expect("run ffprobe (Debian package ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.trim().split(',');
    let (codec, w, h) = (fields.next(), fields.next(), fields.next());
    assert_eq!(
        codec,
        Some("mjpeg"),
        "ffprobe {input}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        w.and_then(|v| v.parse().ok()).expect("width"),
        h.and_then(|v| v.parse().ok()).expect("height"),
    )
}

/// Decodes the first `frames` frames of `input` with ffmpeg into BMP files
/// in `dir`, and reads them back.
pub fn ffmpeg_frames(input: &str, frames: u32, dir: &Path) -> Vec<Image> {
    let pattern = dir.join("frame-%03d.bmp");
    run_ok(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-rw_timeout", "20000000"])
            .args(["-i", input])
            .args(["-frames:v", &frames.to_string(), "-pix_fmt", "bgr24", "-y"])
            .arg(&pattern),
        &format!("ffmpeg decoding {frames} frames of {input}"),
    );
    (1..=frames)
        .map(|i| dir.join(format!("frame-{i:03}.bmp")))
        .filter(|p| p.exists())
        .map(|p| Image::read_bmp(&p))
        .collect()
}

/// Converts any image file ffmpeg reads (PNG from a browser's screenshot)
/// to an [`Image`].
pub fn ffmpeg_image(path: &Path) -> Image {
    let bmp = path.with_extension("bmp");
    run_ok(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(path)
            .args(["-pix_fmt", "bgr24", "-y"])
            .arg(&bmp),
        &format!("ffmpeg converting {} to BMP", path.display()),
    );
    Image::read_bmp(&bmp)
}
