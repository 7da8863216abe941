//! One client connection: a non-blocking socket, a bounded input buffer and a
//! proto frame reader. It knows nothing about poll, decoding or windows: the
//! server calls [`Conn::read_some`] when the socket is readable and gets back
//! complete frames, or the reason the connection is over.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proto::wire::{CameraId, Frame, FrameReader, WireError};

use crate::decode::DecodeError;
use crate::stats::Stats;

/// Bytes read from the socket per `read` call. Each connection owns one
/// buffer of this size; it holds input the frame reader has not consumed yet.
pub const INPUT_BUF_LEN: usize = 128 << 10;

/// Most bytes read from one connection per wake-up of the loop, so one fast
/// camera cannot starve the others (poll is level-triggered: the rest is read
/// on the next turn).
pub const READ_BUDGET: usize = 1 << 20;

/// The server's handle for a connection.
pub type ConnId = u64;

/// A complete frame, as [`Conn::read_some`] hands it over.
#[derive(Debug)]
pub struct Received {
    /// This connection's frame count before it: 0, 1, 2, ...
    pub seq: u64,
    pub frame: Frame,
    /// When the `read` that returned the frame's last byte came back: the
    /// start of the viewer's share of the latency.
    pub at: Instant,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Close {
    /// The peer closed the stream between frames.
    Eof,
    /// The peer reset the stream between frames (no frame was cut short).
    Reset,
    /// Anything else: this connection sent or did something wrong.
    Error(CloseError),
}

/// The reason a connection is dropped; its Display is what the log says.
#[derive(Debug)]
pub enum CloseError {
    /// A hostile or broken frame header (zero or over-limit length).
    Wire(WireError),
    /// The stream ended inside a frame.
    EofMidFrame { received_len: usize },
    /// A socket error, e.g. ECONNRESET inside a frame.
    Io {
        error: io::Error,
        received_len: Option<usize>,
    },
    /// Part of a frame, then silence for the idle timeout.
    Idle {
        received_len: usize,
        timeout: Duration,
    },
    /// The frame failed to gunzip or decode.
    Decode(DecodeError),
    /// The user closed this camera's window.
    WindowClosed,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::Wire(e) => write!(f, "{e}"),
            CloseError::EofMidFrame { received_len } => write!(
                f,
                "connection closed in the middle of a frame ({received_len} bytes of it received)"
            ),
            CloseError::Io {
                error,
                received_len: Some(n),
            } => write!(
                f,
                "{error} in the middle of a frame ({n} bytes of it received)"
            ),
            CloseError::Io {
                error,
                received_len: None,
            } => write!(f, "{error}"),
            CloseError::Idle {
                received_len,
                timeout,
            } => write!(
                f,
                "sent {received_len} bytes of a frame, then nothing for {:.1} s (--idle-timeout)",
                timeout.as_secs_f64()
            ),
            CloseError::Decode(e) => write!(f, "{e}"),
            CloseError::WindowClosed => write!(f, "its window was closed"),
        }
    }
}

/// Result of one [`Conn::read_some`] call that did not end the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing more to read now, or the budget is spent.
    Open,
    /// The peer closed cleanly between frames.
    Eof,
}

pub struct Conn {
    stream: TcpStream,
    pub peer: SocketAddr,
    reader: FrameReader,
    input: Box<[u8]>,
    /// `input[start..end]` is read but not yet fed to `reader`.
    start: usize,
    end: usize,
    /// The camera id of the latest header seen, for log lines.
    pub camera_id: Option<CameraId>,
    /// Complete frames received; also the next frame's sequence number.
    pub frames: u64,
    /// When a byte last arrived (or reading last resumed after a pause).
    pub last_rx: Instant,
    /// When the `read` that filled `input[..end]` returned.
    read_at: Instant,
    /// True while the server does not read this connection (recording backlog).
    pub paused: bool,
    /// Size of the latest decoded frame.
    pub size: Option<(u32, u32)>,
    pub stats: Stats,
}

impl Conn {
    /// Takes an accepted stream and makes it non-blocking.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        max_body_len: u32,
        now: Instant,
    ) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            peer,
            reader: FrameReader::new(max_body_len),
            input: vec![0; INPUT_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            camera_id: None,
            frames: 0,
            last_rx: now,
            read_at: now,
            paused: false,
            size: None,
            stats: Stats::new(now),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// True when read bytes are waiting to be fed (left over after `max_frames`).
    pub fn has_buffered_input(&self) -> bool {
        self.start < self.end
    }

    /// True when part of a frame has arrived but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        self.reader.is_mid_frame() || self.has_buffered_input()
    }

    /// Bytes of the unfinished frame received so far.
    pub fn partial_len(&self) -> usize {
        self.reader.buffered_len() + (self.end - self.start)
    }

    /// `camera 3 (10.0.0.5:41234)`, or `camera ? (...)` before any header.
    pub fn label(&self) -> Label {
        Label {
            camera_id: self.camera_id,
            peer: self.peer,
        }
    }

    /// Reads up to [`READ_BUDGET`] bytes and appends the frames they complete
    /// to `frames` (with their sequence numbers and arrival times), stopping early once
    /// `frames` holds `max_frames`; unconsumed bytes stay buffered for the
    /// next call.
    pub fn read_some(
        &mut self,
        now: Instant,
        max_frames: usize,
        frames: &mut Vec<Received>,
    ) -> Result<Status, Close> {
        let mut read_len = 0;
        loop {
            while self.start < self.end {
                if frames.len() >= max_frames {
                    return Ok(Status::Open);
                }
                let fed = self.reader.feed(&self.input[self.start..self.end]);
                let (used, frame) = match fed {
                    Ok(fed) => fed,
                    Err(e) => {
                        if let WireError::EmptyBody { camera_id }
                        | WireError::BodyTooLarge { camera_id, .. } = e
                        {
                            self.camera_id = Some(camera_id);
                        }
                        return Err(Close::Error(CloseError::Wire(e)));
                    }
                };
                self.start += used;
                if let Some(id) = self.reader.camera_id() {
                    self.camera_id = Some(id);
                }
                if let Some(frame) = frame {
                    self.camera_id = Some(frame.camera_id);
                    self.stats.received(frame.body.len());
                    frames.push(Received {
                        seq: self.frames,
                        frame,
                        at: self.read_at,
                    });
                    self.frames += 1;
                } else if used == 0 {
                    // Cannot happen with proto's reader; never spin if it did.
                    break;
                }
            }
            self.start = 0;
            self.end = 0;
            if read_len >= READ_BUDGET || frames.len() >= max_frames {
                return Ok(Status::Open);
            }
            match self.stream.read(&mut self.input) {
                Ok(0) if self.reader.is_mid_frame() => {
                    return Err(Close::Error(CloseError::EofMidFrame {
                        received_len: self.reader.buffered_len(),
                    }))
                }
                Ok(0) => return Ok(Status::Eof),
                Ok(n) => {
                    self.end = n;
                    read_len += n;
                    self.last_rx = now;
                    // `now` is the wake-up; the read may come much later
                    // (other cameras read first).
                    self.read_at = Instant::now();
                }
                Err(e) if would_block(&e) => return Ok(Status::Open),
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    let mid_frame = self.reader.is_mid_frame();
                    if !mid_frame && e.kind() == io::ErrorKind::ConnectionReset {
                        return Err(Close::Reset);
                    }
                    return Err(Close::Error(CloseError::Io {
                        error: e,
                        received_len: mid_frame.then(|| self.reader.buffered_len()),
                    }));
                }
            }
        }
    }
}

/// How log lines name a connection: `camera 3 (10.0.0.5:41234)`.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    camera_id: Option<CameraId>,
    peer: SocketAddr,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.camera_id {
            Some(id) => write!(f, "camera {id} ({})", self.peer),
            None => write!(f, "camera ? ({})", self.peer),
        }
    }
}

/// The operation would block: try again when poll says so (mio's helper).
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A signal interrupted the call: retry it (mio's helper).
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
