//! One client connection: a non-blocking socket, a bounded input buffer, a
//! proto frame reader, and the connection's stats. It knows nothing about
//! poll, decoding or windows; the server owns the set of connections and
//! asks each one (mio's `tcp_server` shape):
//!
//! - [`Conn::read_some`], when poll says the socket is readable or input is
//!   left over: the complete frames, or why the connection is over;
//! - [`Conn::pause`] and [`Conn::resume`], around the time the server does not
//!   read it (a recording backlog), which the idle timeout must not count;
//! - [`Conn::idle_deadline`] and [`Conn::close_reason`]: when the peer has
//!   been silent too long, between frames or in the middle of one (a camera
//!   that lost power sends no FIN: silence is all the viewer ever sees);
//! - `frame_skipped`, `frame_decoded`, `frame_shown` and
//!   [`Conn::take_stats_line`]: what became of its frames.
//!
//! The kernel looks for dead links too: accepted sockets get TCP keepalive
//! ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_COUNT`]). A live
//! peer's kernel answers the probes however slow its camera is, so they
//! never drop a slow camera; they find a dead one even while the idle
//! timeout is stopped (a recording backlog) or set longer than theirs.
//!
//! `Conn` reads a [`Transport`]: the accepted `TcpStream`, or a
//! [`TlsStream`] (`--tls-cert`) that hands it the decrypted bytes through the
//! same `io::Read`, so framing, limits and the read budget are the same
//! with TLS (the budget counts plaintext). A TLS client certificate that
//! names camera ids ([`pki::identity`]) limits the ids its frame headers
//! may carry: any other closes the connection
//! ([`CloseError::NotItsCamera`]), checked as soon as the header is in.
//! `Conn` is generic over its [`Stream`] so that a test can also hand it more
//! input at once than a loopback socket buffers.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use pki::identity::CameraIds;
use proto::wire::{CameraId, Frame, FrameReader, WireError};

use crate::stats::{Stats, Totals};
use crate::tls::{TlsError, TlsStream};

/// Bytes read from the socket per `read` call. Each connection owns one
/// buffer of this size; it holds input the frame reader has not consumed yet.
pub const INPUT_BUF_LEN: usize = 128 << 10;

/// Most bytes read from one connection per wake-up of the loop, so one fast
/// camera cannot starve the others (poll is level-triggered: the rest is read
/// on the next turn).
pub const READ_BUDGET: usize = 1 << 20;

/// A body with more than this still to come is read from the socket
/// straight into its buffer; a shorter rest goes through the input buffer
/// with the headers and bodies that follow it, one read for several small
/// frames.
pub const DIRECT_READ_MIN: usize = 16 << 10;

/// Seconds without any packet from the peer before the kernel sends the
/// first keepalive probe. Short, because a probe costs one empty segment and
/// a live peer's kernel answers it whatever its camera does.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// Seconds between unanswered keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Unanswered probes after which the kernel declares the link dead and the
/// next read fails with ETIMEDOUT: 5 + 3 x 2 = 11 s after the peer's last
/// packet, just past the default `--idle-timeout` of 10 s, so with the
/// defaults the idle timeout (a clearer log line) normally comes first.
pub const KEEPALIVE_COUNT: u32 = 3;

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

/// What the connection itself did wrong; its Display is what the log says.
/// (The server drops connections for reasons of its own too: a frame that
/// does not decode, a closed window.)
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
    /// Silence for the idle timeout between frames (after `frames` whole
    /// ones): a peer gone without a FIN, or one holding a slot for nothing.
    Silent { frames: u64, timeout: Duration },
    /// TLS refused the peer (handshake, certificate) or one of its records.
    Tls(TlsError),
    /// A frame header carried camera `id`, which the peer's TLS certificate
    /// does not name.
    NotItsCamera { id: CameraId, named: CameraIds },
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
                received_len,
            } => {
                write!(f, "{error}")?;
                if let Some(n) = received_len {
                    write!(f, " in the middle of a frame ({n} bytes of it received)")?;
                }
                if error.raw_os_error() == Some(nix::libc::ETIMEDOUT) {
                    // The only way a read times out here: keepalive gave up.
                    write!(
                        f,
                        " (the peer stopped answering TCP keepalive probes: a dead link, or a camera node that lost power)"
                    )?;
                }
                Ok(())
            }
            CloseError::Idle {
                received_len,
                timeout,
            } => write!(
                f,
                "sent {received_len} bytes of a frame, then nothing for {:.1} s (--idle-timeout)",
                timeout.as_secs_f64()
            ),
            CloseError::Silent { frames: 0, timeout } => write!(
                f,
                "sent nothing for {:.1} s after connecting (--idle-timeout)",
                timeout.as_secs_f64()
            ),
            CloseError::Silent { timeout, .. } => write!(
                f,
                "sent nothing for {:.1} s after its last frame (--idle-timeout)",
                timeout.as_secs_f64()
            ),
            CloseError::Tls(e) => write!(f, "{e}"),
            CloseError::NotItsCamera { id, named } => write!(
                f,
                "a frame for camera {id}, but its TLS certificate names camera {named} only \
                 (a node may send only the ids its certificate names: fix the agent's --id, \
                 or issue it a certificate for camera {id})"
            ),
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

/// What `Conn` reads from: plaintext through `io::Read`, and what TLS adds.
pub trait Stream: Read {
    /// The camera ids the peer may send; `None`: any.
    fn camera_ids(&self) -> Option<CameraIds> {
        None
    }

    /// Bytes wait to be sent (a TLS handshake): poll for POLLOUT too.
    fn wants_write(&self) -> bool {
        false
    }

    /// Input waits inside the stream, which the socket will not poll
    /// readable for again.
    fn has_buffered_input(&self) -> bool {
        false
    }
}

impl Stream for TcpStream {}

/// An accepted connection: plaintext, or TLS (`--tls-cert`).
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Stream for Transport {
    fn camera_ids(&self) -> Option<CameraIds> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(s) => s.camera_ids(),
        }
    }

    fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(s) => s.wants_write(),
        }
    }

    fn has_buffered_input(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(s) => s.has_buffered_input(),
        }
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Plain(s) => s.as_fd(),
            Transport::Tls(s) => s.as_fd(),
        }
    }
}

/// One client connection; every field is its own, behind the methods below.
pub struct Conn<S = Transport> {
    stream: S,
    peer: SocketAddr,
    reader: FrameReader,
    input: Box<[u8]>,
    /// `input[start..end]` is read but not yet fed to `reader`.
    start: usize,
    end: usize,
    /// The camera id of the latest header seen, for log lines.
    camera_id: Option<CameraId>,
    /// Complete frames received; also the next frame's sequence number.
    frames: u64,
    /// This long without a byte, between frames or inside one, closes the
    /// connection.
    idle_timeout: Duration,
    /// When a byte last arrived (or reading last resumed after a pause).
    last_rx: Instant,
    /// When the `read` that filled `input[..end]` returned.
    read_at: Instant,
    /// True while the server does not read this connection.
    paused: bool,
    /// Size of the latest decoded frame.
    size: Option<(u32, u32)>,
    stats: Stats,
}

impl<S: Stream + AsFd> Conn<S> {
    /// Takes an accepted stream, makes its socket non-blocking and turns on
    /// TCP keepalive. A connection that sends nothing for `idle_timeout` is
    /// closed.
    pub fn new(
        stream: S,
        peer: SocketAddr,
        max_body_len: u32,
        idle_timeout: Duration,
        now: Instant,
    ) -> io::Result<Conn<S>> {
        set_nonblocking(&stream)?;
        set_keepalive(&stream)?;
        Ok(Conn::from_stream(
            stream,
            peer,
            max_body_len,
            idle_timeout,
            now,
        ))
    }
}

impl<S: Stream> Conn<S> {
    /// `stream` must be non-blocking: `read_some` reads until it would block.
    fn from_stream(
        stream: S,
        peer: SocketAddr,
        max_body_len: u32,
        idle_timeout: Duration,
        now: Instant,
    ) -> Conn<S> {
        Conn {
            stream,
            peer,
            reader: FrameReader::new(max_body_len),
            input: vec![0; INPUT_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            camera_id: None,
            frames: 0,
            idle_timeout,
            last_rx: now,
            read_at: now,
            paused: false,
            size: None,
            stats: Stats::new(now),
        }
    }

    /// `camera 3 (10.0.0.5:41234)`, or `camera ? (...)` before any header.
    pub fn label(&self) -> Label {
        Label {
            camera_id: self.camera_id,
            peer: self.peer,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The camera id of the latest header, `None` before the first.
    pub fn camera_id(&self) -> Option<CameraId> {
        self.camera_id
    }

    /// Complete frames received so far.
    pub fn frames_received(&self) -> u64 {
        self.frames
    }

    /// True when read bytes are waiting to be fed (left over after
    /// `max_frames`, or decrypted and kept by TLS): call [`Conn::read_some`]
    /// again without waiting for poll.
    pub fn has_buffered_input(&self) -> bool {
        self.start < self.end || self.stream.has_buffered_input()
    }

    /// The stream has bytes to send (a TLS handshake): poll for POLLOUT
    /// too, and call [`Conn::read_some`] when it comes.
    pub fn wants_write(&self) -> bool {
        self.stream.wants_write()
    }

    /// True when part of a frame has arrived but not all of it.
    fn is_mid_frame(&self) -> bool {
        self.reader.is_mid_frame() || self.start < self.end
    }

    /// Bytes of the unfinished frame received so far.
    fn partial_len(&self) -> usize {
        self.reader.buffered_len() + (self.end - self.start)
    }

    /// The server stops reading this connection (its recording backlog is
    /// full). The idle timeout stops too: the silence is ours, not the peer's.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The server reads this connection again from `now`; the idle timeout
    /// starts over. Does nothing if it was not paused.
    pub fn resume(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.last_rx = now;
        }
    }

    /// When this connection will have been silent too long, between frames
    /// or inside one: `idle_timeout` after its last byte (or its accept, or
    /// the end of a pause). None while the server does not read it. An
    /// `--idle-timeout` too large for the clock means never.
    pub fn idle_deadline(&self) -> Option<Instant> {
        if self.paused {
            return None;
        }
        self.last_rx.checked_add(self.idle_timeout)
    }

    /// Why this connection must be closed at `now` though its socket said
    /// nothing: silence past the idle deadline, in a frame or between two.
    pub fn close_reason(&self, now: Instant) -> Option<CloseError> {
        let deadline = self.idle_deadline()?;
        if now < deadline {
            return None;
        }
        let timeout = self.idle_timeout;
        Some(if self.is_mid_frame() {
            CloseError::Idle {
                received_len: self.partial_len(),
                timeout,
            }
        } else {
            CloseError::Silent {
                frames: self.frames,
                timeout,
            }
        })
    }

    /// Counts since it opened and the latest rates (for `--http`), with
    /// the latest frame's size.
    pub fn totals(&self) -> (Totals, Option<(u32, u32)>) {
        (self.stats.totals(), self.size)
    }

    /// A newer frame of this connection replaced one still waiting for a
    /// decoder, or for the display thread to draw it.
    pub fn frame_skipped(&mut self) {
        self.stats.skipped();
    }

    /// A frame of this connection decoded at `now` to `width` x `height`.
    /// Returns true when that size differs from the previous frame's (or
    /// this is the first).
    pub fn frame_decoded(&mut self, width: u32, height: u32, now: Instant) -> bool {
        self.stats.decoded(now);
        let changed = self.size != Some((width, height));
        self.size = Some((width, height));
        changed
    }

    /// A frame was shown (or would have been, headless) `latency` after its
    /// last byte was read.
    pub fn frame_shown(&mut self, latency: Duration) {
        self.stats.shown(latency);
    }

    /// Decoded frames per second, as last computed (for the window title).
    pub fn fps(&self) -> f64 {
        self.stats.fps()
    }

    /// The stats line since the last call; starts the next interval.
    pub fn take_stats_line(&mut self, now: Instant) -> String {
        self.stats.take_line(now, self.size)
    }

    /// Reads up to [`READ_BUDGET`] bytes and appends the frames they complete
    /// to `frames` (with their sequence numbers and arrival times), stopping early once
    /// `frames` holds `max_frames`; unconsumed bytes stay buffered for the
    /// next call.
    ///
    /// Once a header is in and more than [`DIRECT_READ_MIN`] bytes of its
    /// body are missing, the socket is read straight into the body (proto's
    /// `body_tail`), not through the input buffer. Each time the reader has
    /// handed its body buffer out with a frame, it takes one from `spares`
    /// (bodies of frames done with), so a stream of frames reuses buffers
    /// instead of growing a new one per frame.
    pub fn read_some(
        &mut self,
        now: Instant,
        max_frames: usize,
        frames: &mut Vec<Received>,
        spares: &mut Vec<Vec<u8>>,
    ) -> Result<Status, Close> {
        let mut read_len = 0;
        self.take_spare(spares);
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
                if let Some(named) = self.stream.camera_ids() {
                    let ids = [self.reader.camera_id(), frame.as_ref().map(|f| f.camera_id)];
                    if let Some(id) = ids.into_iter().flatten().find(|&id| !named.contains(id)) {
                        self.camera_id = Some(id);
                        return Err(Close::Error(CloseError::NotItsCamera { id, named }));
                    }
                }
                if let Some(frame) = frame {
                    self.hand_over(frame, frames);
                    self.take_spare(spares);
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
            let budget = READ_BUDGET - read_len;
            let direct = self.reader.body_remaining_len() > DIRECT_READ_MIN;
            let result = match self.reader.body_tail() {
                Some(tail) if direct => {
                    let len = tail.len().min(budget);
                    self.stream.read(&mut tail[..len])
                }
                _ => {
                    let len = self.input.len().min(budget);
                    self.stream.read(&mut self.input[..len])
                }
            };
            match result {
                Ok(0) if self.reader.is_mid_frame() => {
                    return Err(Close::Error(CloseError::EofMidFrame {
                        received_len: self.reader.buffered_len(),
                    }))
                }
                Ok(0) => return Ok(Status::Eof),
                Ok(n) => {
                    read_len += n;
                    self.last_rx = now;
                    // `now` is the wake-up; the read may come much later
                    // (other cameras read first).
                    self.read_at = Instant::now();
                    if direct {
                        if let Some(frame) = self.reader.commit(n) {
                            self.hand_over(frame, frames);
                            self.take_spare(spares);
                        }
                    } else {
                        self.end = n;
                    }
                }
                Err(e) if would_block(&e) => return Ok(Status::Open),
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    let e = match into_tls_error(e) {
                        Ok(tls) => return Err(Close::Error(CloseError::Tls(tls))),
                        Err(e) => e,
                    };
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

    /// Counts a complete frame and appends it to `frames`.
    fn hand_over(&mut self, frame: Frame, frames: &mut Vec<Received>) {
        self.camera_id = Some(frame.camera_id);
        self.stats.received(frame.body.len());
        frames.push(Received {
            seq: self.frames,
            frame,
            at: self.read_at,
        });
        self.frames += 1;
    }

    /// Gives the reader a spare body buffer if it handed its own out.
    fn take_spare(&mut self, spares: &mut Vec<Vec<u8>>) {
        if !self.reader.wants_buffer() {
            return;
        }
        if let Some(spare) = spares.pop() {
            if let Some(back) = self.reader.recycle(spare) {
                spares.push(back);
            }
        }
    }
}

/// The [`TlsError`] inside `e`, if that is what it carries; else `e`.
fn into_tls_error(e: io::Error) -> Result<TlsError, io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<TlsError>()) {
        return Err(e);
    }
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<TlsError>()) {
        Some(Ok(tls)) => Ok(*tls),
        Some(Err(other)) => Err(io::Error::new(kind, other)),
        None => Err(kind.into()),
    }
}

/// O_NONBLOCK on the socket: `read_some` reads until it would block.
fn set_nonblocking(stream: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(stream, FcntlArg::F_GETFL)?);
    fcntl(stream, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// SO_KEEPALIVE with [`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`] and
/// [`KEEPALIVE_COUNT`].
fn set_keepalive(stream: &impl AsFd) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let secs = |d: Duration| d.as_secs() as u32;
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &secs(KEEPALIVE_IDLE))?;
    setsockopt(stream, sockopt::TcpKeepInterval, &secs(KEEPALIVE_INTERVAL))?;
    setsockopt(stream, sockopt::TcpKeepCount, &KEEPALIVE_COUNT)?;
    Ok(())
}

/// What the server's poll(2) watches.
impl<S: AsFd> AsFd for Conn<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
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

#[cfg(test)]
mod tests {
    //! Most tests drive a real loopback TCP pair the way the server does:
    //! wait for poll, call `read_some`, look at what came back. The read
    //! budget, and a timeout no peer could wait out, use a stand-in stream
    //! (see [`Staged`]).

    use std::io::Write;
    use std::net::TcpListener;
    use std::thread::sleep;

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    use proto::wire;

    use super::*;

    /// The tests' connections are plaintext TCP (or [`Staged`]).
    type Conn<S = TcpStream> = super::Conn<S>;

    const MAX_BODY_LEN: u32 = 1000;
    const IDLE: Duration = Duration::from_secs(10);
    /// Bounds every wait, so a bug fails a test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(10);
    /// `read_some`'s `max_frames` when the server has room for any number.
    const ANY: usize = usize::MAX;

    /// A connected loopback pair: the viewer's end as a `Conn`, and the
    /// camera's end.
    fn pair() -> (Conn, TcpStream) {
        pair_at(Instant::now())
    }

    /// [`pair`], its connection accepted at `now`.
    fn pair_at(now: Instant) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let camera = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // One-byte writes must leave at once, not wait for Nagle.
        camera.set_nodelay(true).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let conn = Conn::new(stream, peer, MAX_BODY_LEN, IDLE, now).unwrap();
        (conn, camera)
    }

    fn frame_bytes(camera_id: CameraId, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::encode_frame(camera_id, body, &mut out).unwrap();
        out
    }

    /// Waits until poll says the connection is readable, as the server does
    /// before reading it.
    fn wait_readable(conn: &Conn) {
        let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(PATIENCE).unwrap();
        assert_eq!(poll(&mut fds, timeout).unwrap(), 1, "not readable");
    }

    /// Waits until `len` bytes wait in the viewer's socket, so that one
    /// `read` takes them all.
    fn wait_queued(conn: &Conn, len: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = vec![0; len];
        while conn.stream.peek(&mut buf).unwrap_or(0) < len {
            assert!(Instant::now() < deadline, "{len} bytes never arrived");
            sleep(Duration::from_millis(1));
        }
    }

    /// One `read_some` after poll, with room for any number of frames.
    fn read(conn: &mut Conn) -> (Result<Status, Close>, Vec<Received>) {
        wait_readable(conn);
        let mut frames = Vec::new();
        let result = conn.read_some(Instant::now(), ANY, &mut frames, &mut Vec::new());
        (result, frames)
    }

    /// Reads until the connection is over: its frames, and how it ended.
    fn read_to_end(conn: &mut Conn) -> (Vec<Received>, Result<Status, Close>) {
        let mut frames = Vec::new();
        loop {
            wait_readable(conn);
            match conn.read_some(Instant::now(), ANY, &mut frames, &mut Vec::new()) {
                Ok(Status::Open) => continue,
                end => return (frames, end),
            }
        }
    }

    /// Closes the camera's end with a reset (RST) instead of a FIN: SO_LINGER
    /// on, with a zero timeout.
    fn reset(camera: TcpStream) {
        let linger = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(&camera, sockopt::Linger, &linger).unwrap();
        drop(camera);
    }

    fn seqs_and_bodies(frames: &[Received]) -> Vec<(u64, CameraId, &[u8])> {
        frames
            .iter()
            .map(|r| (r.seq, r.frame.camera_id, r.frame.body.as_slice()))
            .collect()
    }

    #[test]
    fn a_frame_fed_one_byte_at_a_time_arrives_once_whole() {
        let (mut conn, mut camera) = pair();
        let peer = conn.peer();
        for seq in 0..2 {
            let bytes = frame_bytes(3, b"hello");
            let (last, head) = bytes.split_last().unwrap();
            for (i, byte) in head.iter().enumerate() {
                camera.write_all(&[*byte]).unwrap();
                let (result, frames) = read(&mut conn);
                assert_eq!(result.unwrap(), Status::Open);
                assert!(frames.is_empty(), "byte {i}: {frames:?}");
                assert!(conn.is_mid_frame());
                assert_eq!(conn.partial_len(), i + 1);
                // The label names the camera once the header is whole.
                let label = match (seq, i) {
                    (0, 0..=3) => format!("camera ? ({peer})"),
                    _ => format!("camera 3 ({peer})"),
                };
                assert_eq!(conn.label().to_string(), label, "byte {i}");
            }
            camera.write_all(&[*last]).unwrap();
            let (result, frames) = read(&mut conn);
            assert_eq!(result.unwrap(), Status::Open);
            assert_eq!(seqs_and_bodies(&frames), [(seq, 3, &b"hello"[..])]);
            assert!(!conn.is_mid_frame());
            assert_eq!(conn.frames_received(), seq + 1);
        }
    }

    /// A stand-in socket with all its input waiting from the start; each
    /// read fills the buffer it is given, then it would block. It can hold
    /// more than [`READ_BUDGET`], which a loopback pair cannot: its receive
    /// buffer holds about 128 KiB until the reader drains it.
    struct Staged {
        bytes: Vec<u8>,
        pos: usize,
        /// Where each read landed and how long it was.
        reads: Vec<(*const u8, usize)>,
    }

    impl Staged {
        fn new(bytes: Vec<u8>) -> Staged {
            Staged {
                bytes,
                pos: 0,
                reads: Vec::new(),
            }
        }
    }

    impl Read for Staged {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let rest = &self.bytes[self.pos..];
            if rest.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pos += n;
            self.reads.push((buf.as_ptr(), n));
            Ok(n)
        }
    }

    impl Stream for Staged {}

    /// A stream whose peer's certificate names `ids` (what TLS reports).
    struct Named {
        staged: Staged,
        ids: CameraIds,
    }

    impl Read for Named {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.staged.read(buf)
        }
    }

    impl Stream for Named {
        fn camera_ids(&self) -> Option<CameraIds> {
            Some(self.ids)
        }
    }

    /// Issue 15: a certificate for camera 3 must not carry frames of
    /// camera 4, and the header alone condemns them.
    #[test]
    fn a_header_for_a_camera_the_certificate_does_not_name_is_refused_at_once() {
        let ids = CameraIds::from_dns_names(["camstream-camera-3.invalid"]);
        let mut bytes = frame_bytes(3, b"ok");
        // Camera 4's header and only the start of its body.
        bytes.extend_from_slice(&frame_bytes(4, &[9; 500])[..8]);
        let staged = Staged::new(bytes);
        let peer = "127.0.0.1:9".parse().unwrap();
        let now = Instant::now();
        let mut conn = Conn::from_stream(Named { staged, ids }, peer, MAX_BODY_LEN, IDLE, now);
        let mut frames = Vec::new();
        let end = conn.read_some(now, ANY, &mut frames, &mut Vec::new());
        assert_eq!(seqs_and_bodies(&frames), [(0, 3, &b"ok"[..])]);
        match end {
            Err(Close::Error(e @ CloseError::NotItsCamera { id: 4, .. })) => assert!(
                e.to_string().starts_with(
                    "a frame for camera 4, but its TLS certificate names camera 3 only"
                ),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.camera_id(), Some(4), "the log line names the id sent");
    }

    /// Issue 16: every body used to grow a fresh buffer through the input
    /// buffer, about 0.3 ms a frame in page faults and copies.
    #[test]
    fn big_bodies_are_read_in_place_into_recycled_buffers() {
        let body_len = 300_000;
        let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; body_len]).collect();
        let stream: Vec<u8> = bodies.iter().flat_map(|b| frame_bytes(9, b)).collect();
        let now = Instant::now();
        let peer = "127.0.0.1:9".parse().unwrap();
        let mut conn = Conn::from_stream(Staged::new(stream), peer, 1 << 20, IDLE, now);

        // One spare, given back after each frame as the server does once
        // the frame is decoded: no frame needs a buffer of its own.
        let mut spares = vec![Vec::with_capacity(body_len)];
        let spare = spares[0].as_ptr();
        for body in &bodies {
            let mut frames = Vec::new();
            conn.read_some(now, 1, &mut frames, &mut spares).unwrap();
            let frame = frames.pop().expect("a frame per call").frame;
            assert_eq!(&frame.body, body);
            assert_eq!(frame.body.as_ptr(), spare, "read into the spare");
            assert!(spares.is_empty());
            spares.push(frame.body);
        }

        // Each body came in place, but for the start and end of each that
        // share an input buffer read with a header.
        let in_body =
            |at: *const u8| (spare as usize..spare as usize + body_len).contains(&(at as usize));
        let reads = &conn.stream.reads;
        let in_place: usize = reads.iter().filter(|r| in_body(r.0)).map(|r| r.1).sum();
        let through_input: usize = reads.iter().map(|r| r.1).sum::<usize>() - in_place;
        assert_eq!(in_place + through_input, 3 * (body_len + 5));
        assert!(
            through_input <= 3 * (INPUT_BUF_LEN + DIRECT_READ_MIN),
            "{through_input} bytes through the input buffer, {in_place} in place"
        );
    }

    #[test]
    fn one_call_reads_at_most_the_budget_and_the_next_continues() {
        // Each read takes a whole buffer, so the budget is exactly 8 reads.
        assert_eq!(READ_BUDGET % INPUT_BUF_LEN, 0);
        // 1000 bytes a frame on the wire; 3 budgets' worth and a bit.
        let frame = frame_bytes(5, &[0xAB; 995]);
        let staged = Staged::new(frame.repeat(3 * READ_BUDGET / 1000 + 1));
        let now = Instant::now();
        let peer = "127.0.0.1:9".parse().unwrap();
        let mut conn = Conn::from_stream(staged, peer, MAX_BODY_LEN, IDLE, now);

        let mut frames = Vec::new();
        assert_eq!(
            conn.read_some(now, ANY, &mut frames, &mut Vec::new())
                .unwrap(),
            Status::Open
        );
        assert_eq!(conn.stream.pos, READ_BUDGET, "read past the budget");
        // 1 MiB holds 1048 whole frames; the 1049th is cut and kept.
        assert_eq!(frames.len(), READ_BUDGET / 1000);
        assert_eq!(frames.last().unwrap().seq, 1047);
        assert_eq!(conn.partial_len(), READ_BUDGET % 1000);

        frames.clear();
        assert_eq!(
            conn.read_some(now, ANY, &mut frames, &mut Vec::new())
                .unwrap(),
            Status::Open
        );
        assert_eq!(conn.stream.pos, 2 * READ_BUDGET);
        let seqs: Vec<u64> = frames.iter().map(|r| r.seq).collect();
        let expected: Vec<u64> = (1048..(2 * READ_BUDGET / 1000) as u64).collect();
        assert_eq!(seqs, expected, "the cut frame comes first, whole");
        assert!(frames.iter().all(|r| r.frame.body == [0xAB; 995]));
    }

    #[test]
    fn input_left_over_at_max_frames_is_fed_on_the_next_call() {
        let (mut conn, mut camera) = pair();
        let three = [
            frame_bytes(1, b"a"),
            frame_bytes(1, b"bb"),
            frame_bytes(1, b"ccc"),
        ]
        .concat();
        camera.write_all(&three).unwrap();
        wait_queued(&conn, three.len());

        // What the server does with a full recording queue but one place:
        // one frame per call, and no poll while input is left over.
        // One call with room for one frame; the connection stays open.
        let read_one = |conn: &mut Conn<_>, frames: &mut Vec<Received>| {
            frames.clear();
            let status = conn.read_some(Instant::now(), 1, frames, &mut Vec::new());
            assert_eq!(status.unwrap(), Status::Open);
        };
        let mut frames = Vec::new();
        read_one(&mut conn, &mut frames);
        assert_eq!(seqs_and_bodies(&frames), [(0, 1, &b"a"[..])]);
        assert!(conn.has_buffered_input());
        assert_eq!(conn.partial_len(), 7 + 8);

        read_one(&mut conn, &mut frames);
        assert_eq!(seqs_and_bodies(&frames), [(1, 1, &b"bb"[..])]);
        assert!(conn.has_buffered_input());

        read_one(&mut conn, &mut frames);
        assert_eq!(seqs_and_bodies(&frames), [(2, 1, &b"ccc"[..])]);
        assert!(!conn.has_buffered_input());
        assert!(!conn.is_mid_frame());

        read_one(&mut conn, &mut frames);
        assert!(frames.is_empty(), "{frames:?}");
    }

    #[test]
    fn eof_between_frames_is_a_clean_end() {
        let (mut conn, mut camera) = pair();
        camera.write_all(&frame_bytes(2, b"last")).unwrap();
        drop(camera);
        let (frames, end) = read_to_end(&mut conn);
        assert_eq!(seqs_and_bodies(&frames), [(0, 2, &b"last"[..])]);
        assert!(matches!(end, Ok(Status::Eof)), "{end:?}");
    }

    #[test]
    fn eof_mid_frame_says_how_much_of_it_came() {
        let (mut conn, mut camera) = pair();
        camera.write_all(&frame_bytes(4, &[7; 100])[..45]).unwrap();
        drop(camera);
        let (frames, end) = read_to_end(&mut conn);
        assert!(frames.is_empty(), "{frames:?}");
        match end {
            Err(Close::Error(e @ CloseError::EofMidFrame { received_len: 45 })) => assert_eq!(
                e.to_string(),
                "connection closed in the middle of a frame (45 bytes of it received)"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.camera_id(), Some(4));
    }

    #[test]
    fn reset_between_frames_is_a_reset_not_an_error() {
        let (mut conn, mut camera) = pair();
        let one = frame_bytes(6, b"one");
        camera.write_all(&one).unwrap();
        wait_queued(&conn, one.len());
        let (result, frames) = read(&mut conn);
        assert_eq!(result.unwrap(), Status::Open);
        assert_eq!(seqs_and_bodies(&frames), [(0, 6, &b"one"[..])]);

        reset(camera);
        let (frames, end) = read_to_end(&mut conn);
        assert!(frames.is_empty(), "{frames:?}");
        assert!(matches!(end, Err(Close::Reset)), "{end:?}");
    }

    #[test]
    fn reset_mid_frame_is_an_io_error_with_the_length_received() {
        let (mut conn, mut camera) = pair();
        camera.write_all(&frame_bytes(8, &[1; 50])[..20]).unwrap();
        wait_queued(&conn, 20);
        let (result, frames) = read(&mut conn);
        assert_eq!(result.unwrap(), Status::Open);
        assert!(frames.is_empty(), "{frames:?}");

        reset(camera);
        let (_, end) = read_to_end(&mut conn);
        match end {
            Err(Close::Error(
                e @ CloseError::Io {
                    received_len: Some(20),
                    ..
                },
            )) => {
                let CloseError::Io { error, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
                assert!(
                    e.to_string()
                        .ends_with(" in the middle of a frame (20 bytes of it received)"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hostile_header_is_a_wire_error_naming_its_camera() {
        let cases = [
            (
                [7, 0xFF, 0xFF, 0xFF, 0xFF],
                WireError::BodyTooLarge {
                    camera_id: 7,
                    len: u32::MAX,
                    max: MAX_BODY_LEN,
                },
            ),
            ([9, 0, 0, 0, 0], WireError::EmptyBody { camera_id: 9 }),
        ];
        for (header, expected) in cases {
            let (mut conn, mut camera) = pair();
            let peer = conn.peer();
            // Body bytes follow at once; the header alone must condemn it.
            camera.write_all(&header).unwrap();
            camera.write_all(&[0; 64]).unwrap();
            let (frames, end) = read_to_end(&mut conn);
            assert!(frames.is_empty(), "{frames:?}");
            match end {
                Err(Close::Error(CloseError::Wire(e))) => assert_eq!(e, expected),
                other => panic!("{header:?}: {other:?}"),
            }
            let id = expected_camera(&expected);
            assert_eq!(conn.label().to_string(), format!("camera {id} ({peer})"));
        }
    }

    fn expected_camera(e: &WireError) -> CameraId {
        match e {
            WireError::EmptyBody { camera_id } | WireError::BodyTooLarge { camera_id, .. } => {
                *camera_id
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn idle_deadline_runs_mid_frame_and_stops_while_paused() {
        let accepted = Instant::now();
        let (mut conn, mut camera) = pair_at(accepted);
        assert_eq!(
            conn.idle_deadline(),
            Some(accepted + IDLE),
            "from the accept"
        );

        camera.write_all(&frame_bytes(2, b"abcdef")[..3]).unwrap();
        wait_queued(&conn, 3);
        let t0 = Instant::now();
        let mut frames = Vec::new();
        assert_eq!(
            conn.read_some(t0, ANY, &mut frames, &mut Vec::new())
                .unwrap(),
            Status::Open
        );
        assert_eq!(conn.idle_deadline(), Some(t0 + IDLE));
        assert!(conn
            .close_reason(t0 + IDLE - Duration::from_millis(1))
            .is_none());
        match conn.close_reason(t0 + IDLE) {
            Some(CloseError::Idle {
                received_len: 3,
                timeout: IDLE,
            }) => {}
            other => panic!("{other:?}"),
        }

        // A recording backlog is our silence, not the peer's.
        conn.pause();
        assert_eq!(conn.idle_deadline(), None);
        assert!(conn.close_reason(t0 + 100 * IDLE).is_none());
        let t1 = t0 + 2 * IDLE;
        conn.resume(t1);
        assert_eq!(
            conn.idle_deadline(),
            Some(t1 + IDLE),
            "counts from the resume"
        );
        // Resuming a connection that is being read changes nothing.
        conn.resume(t1 + IDLE);
        assert_eq!(conn.idle_deadline(), Some(t1 + IDLE));

        // The rest of the frame restarts the wait, now between frames.
        camera.write_all(&frame_bytes(2, b"abcdef")[3..]).unwrap();
        wait_queued(&conn, 3);
        let t2 = t1 + 3 * IDLE;
        let mut frames = Vec::new();
        assert_eq!(
            conn.read_some(t2, ANY, &mut frames, &mut Vec::new())
                .unwrap(),
            Status::Open
        );
        assert_eq!(frames.len(), 1);
        assert_eq!(conn.idle_deadline(), Some(t2 + IDLE));
        assert!(matches!(
            conn.close_reason(t2 + IDLE),
            Some(CloseError::Silent { frames: 1, .. })
        ));
    }

    /// Issue 16: two clients that each sent one good frame and then nothing
    /// held `--max-clients 2` for ever, because only a frame left half-way
    /// had a deadline.
    #[test]
    fn silence_after_whole_frames_hits_the_idle_timeout() {
        let (mut conn, mut camera) = pair();
        let two = frame_bytes(5, b"one").repeat(2);
        camera.write_all(&two).unwrap();
        wait_queued(&conn, two.len());
        let t0 = Instant::now();
        let mut frames = Vec::new();
        assert_eq!(
            conn.read_some(t0, ANY, &mut frames, &mut Vec::new())
                .unwrap(),
            Status::Open
        );
        assert_eq!(frames.len(), 2);
        assert!(!conn.is_mid_frame());

        assert_eq!(conn.idle_deadline(), Some(t0 + IDLE));
        assert!(conn
            .close_reason(t0 + IDLE - Duration::from_millis(1))
            .is_none());
        let reason = conn.close_reason(t0 + IDLE).expect("silent too long");
        assert!(
            matches!(
                reason,
                CloseError::Silent {
                    frames: 2,
                    timeout: IDLE
                }
            ),
            "{reason:?}"
        );
        assert_eq!(
            reason.to_string(),
            "sent nothing for 10.0 s after its last frame (--idle-timeout)"
        );
    }

    #[test]
    fn a_client_that_never_sends_times_out_counting_from_its_accept() {
        let accepted = Instant::now();
        let (conn, _camera) = pair_at(accepted);
        assert_eq!(conn.idle_deadline(), Some(accepted + IDLE));
        let reason = conn.close_reason(accepted + IDLE).expect("silent too long");
        assert_eq!(
            reason.to_string(),
            "sent nothing for 10.0 s after connecting (--idle-timeout)"
        );
    }

    #[test]
    fn a_pause_between_frames_is_not_silence() {
        let (mut conn, mut camera) = pair();
        let one = frame_bytes(5, b"one");
        camera.write_all(&one).unwrap();
        wait_queued(&conn, one.len());
        let t0 = Instant::now();
        conn.read_some(t0, ANY, &mut Vec::new(), &mut Vec::new())
            .unwrap();

        // The recording backlog is full: the server stops reading it.
        conn.pause();
        assert_eq!(conn.idle_deadline(), None);
        assert!(conn.close_reason(t0 + 100 * IDLE).is_none());
        let t1 = t0 + 100 * IDLE;
        conn.resume(t1);
        assert_eq!(conn.idle_deadline(), Some(t1 + IDLE));
        assert!(conn
            .close_reason(t1 + IDLE - Duration::from_millis(1))
            .is_none());
        assert!(conn.close_reason(t1 + IDLE).is_some());
    }

    #[test]
    fn accepted_sockets_have_keepalive_with_the_documented_timing() {
        let (conn, _camera) = pair();
        let s = &conn.stream;
        assert!(getsockopt(s, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(s, sockopt::TcpKeepIdle).unwrap(), 5);
        assert_eq!(getsockopt(s, sockopt::TcpKeepInterval).unwrap(), 2);
        assert_eq!(getsockopt(s, sockopt::TcpKeepCount).unwrap(), 3);
    }

    #[test]
    fn a_keepalive_timeout_says_the_peer_stopped_answering() {
        let e = CloseError::Io {
            error: io::Error::from_raw_os_error(nix::libc::ETIMEDOUT),
            received_len: None,
        };
        let text = e.to_string();
        assert!(
            text.ends_with(
                " (the peer stopped answering TCP keepalive probes: a dead link, or a camera node that lost power)"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_idle_timeout_beyond_the_clock_never_expires_and_never_panics() {
        let huge = Duration::from_secs(u64::MAX);
        let peer = "127.0.0.1:9".parse().unwrap();
        let staged = Staged::new(frame_bytes(1, b"abc")[..2].to_vec());
        let now = Instant::now();
        let mut conn = Conn::from_stream(staged, peer, MAX_BODY_LEN, huge, now);
        conn.read_some(now, ANY, &mut Vec::new(), &mut Vec::new())
            .unwrap();
        assert!(conn.is_mid_frame());
        assert_eq!(conn.idle_deadline(), None);
        assert!(conn.close_reason(now + IDLE).is_none());
    }

    #[test]
    fn stats_count_what_became_of_the_frames() {
        let t0 = Instant::now();
        let (mut conn, mut camera) = pair_at(t0);
        let two = frame_bytes(3, &[0; 995]).repeat(2);
        camera.write_all(&two).unwrap();
        wait_queued(&conn, two.len());
        let mut frames = Vec::new();
        conn.read_some(t0, ANY, &mut frames, &mut Vec::new())
            .unwrap();
        assert_eq!(frames.len(), 2);

        assert!(conn.frame_decoded(640, 480, t0), "the first size is news");
        assert!(!conn.frame_decoded(640, 480, t0));
        assert!(conn.frame_decoded(320, 240, t0));
        conn.frame_skipped();
        conn.frame_shown(Duration::from_millis(2));
        assert_eq!(
            conn.take_stats_line(t0 + Duration::from_secs(1)),
            "2.0 fps received, 3.0 fps decoded, 1 skipped as stale, 0.00 MB/s, 320x240, \
             latency p50 2.00 ms p99 2.00 ms"
        );
    }
}
