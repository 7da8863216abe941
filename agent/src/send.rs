//! The sender thread: one blocking TCP connection to the viewer, one write
//! per frame, and reconnection with capped, jittered exponential backoff.
//!
//! - `TCP_NODELAY`, and header plus body in one buffer written at once:
//!   two writes stalled small frames by ~44 ms on delayed ACK.
//! - A frame whose write makes no progress for `--send-timeout` (the viewer
//!   stopped reading) breaks the connection; capture and encoding never wait
//!   for the sender, they only lose frames.
//! - A viewer that vanished without a FIN or an RST (power loss, a pulled
//!   cable) is found by the kernel: `TCP_USER_TIMEOUT` = `--send-timeout`
//!   ends a connection whose data stays unacknowledged that long, and TCP
//!   keepalive probes a connection with nothing to send (a stalled camera).
//!   Small frames fill the socket buffer slowly, so a blocked write alone
//!   could take minutes to notice.
//! - **Almost nothing queues in the kernel.** `TCP_NOTSENT_LOWAT` =
//!   [`NOTSENT_LOWAT`]: a write blocks while that many bytes are still
//!   unsent, and the socket polls writable (POLLOUT) only below half of it.
//!   The sender waits for POLLOUT before taking each frame, so the frame it
//!   takes is the newest one at the moment the link can carry it, and the
//!   kernel never holds more than the tail of one frame plus
//!   `NOTSENT_LOWAT` (the default send buffer grew to hold 1.7–1.8 frames
//!   of a 100 or 20 Mbit/s link, up to 2.4 in issue 17's measurement). The time from taking a frame to the
//!   next POLLOUT is the link's time for it: the outbox paces encoding by it,
//!   and it ends the frame's latency sample (capture to on the wire).
//! - When the sender spends most of its time waiting for the link, not for
//!   frames, the link limits the frame rate: said once ([`LinkWatch`]), and
//!   again at most every [`LINK_REPORT_EVERY`], across reconnections.
//! - With `--tls-*` ([`crate::tls`]) the same socket carries TLS 1.3: the
//!   handshake follows the connect, each frame goes through rustls, and all
//!   of its records are in the kernel when the write returns, so the pacing
//!   above is unchanged (rustls holds nothing between frames). Before each
//!   frame the socket is checked for an alert from the viewer (it refused
//!   our certificate, or our camera id), whose text replaces a bare
//!   "connection reset".
//! - While disconnected, frames are dropped, so memory stays flat.
//! - The backoff is reset only by a connection that stayed up for
//!   [`HEALTHY_AFTER`]: a viewer that accepts and then refuses us
//!   (`--max-clients`, `--allow`, a frame over `--max-bmp-bytes`) gets one
//!   attempt per backoff step, not one per frame time.
//! - State changes are logged once ([`Reports`]): `connected to
//!   127.0.0.1:5000`; `viewer 127.0.0.1:5000 unreachable (...), retrying`;
//!   `lost connection to 127.0.0.1:5000: ...; reconnecting`. A run of the
//!   same failure is logged at warn once, the rest at debug, and the count is
//!   logged when a connection is healthy again.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::Level;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use proto::stats::XorShift64;

use crate::outbox::Outbox;
use crate::pool::BufferPool;
use crate::stats::Stats;
use crate::sync::{lock, Stop, WAIT_SLICE};
use crate::tls;

/// First reconnect delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnect delay. The first spec said 5 s, but agents must be back
/// within 2 s of a restarted viewer (measured 1.2–3.2 s with a 5 s cap); a
/// refused connect costs one SYN and one RST, so 1.5 s is cheap even for
/// many agents.
const BACKOFF_CAP: Duration = Duration::from_millis(1500);

/// A connection that has carried frames for this long is healthy: only then
/// is the backoff reset. A refusing viewer accepts and closes at once, and
/// we learn it at the second or third write (the first ones still fit in the
/// socket buffer before the RST comes back): at the slowest camera, 1 fps,
/// that is within 2 s of connecting. So 3 s never mistakes a refusal for
/// health, and costs a real reconnect nothing: the backoff only matters if
/// the new connection breaks again.
const HEALTHY_AFTER: Duration = Duration::from_secs(3);

/// TCP keepalive, for a connection with nothing to send (a camera stalled or
/// being reopened; while frames flow the connection is never idle, and
/// `TCP_USER_TIMEOUT` watches the data). First probe after this much
/// silence: 5 s, five times a 1 fps camera's frame interval.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Between unanswered probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unanswered probes before the kernel gives up. With `TCP_USER_TIMEOUT`
/// set (always, to `--send-timeout`), Linux drops the connection instead at
/// the first probe after `--send-timeout` of silence: with the defaults
/// about 6 s after the last packet from the viewer.
const KEEPALIVE_PROBES: u32 = 5;

/// `TCP_NOTSENT_LOWAT`: unsent bytes above which a write blocks; POLLOUT
/// comes below half of it. Half of it is the link's work left when the
/// sender is woken to take the next frame: 32 KiB is 2.6 ms at 100 Mbit/s,
/// 13 ms at 20 Mbit/s, ample for a wake-up. On a free link (loopback, a
/// reading viewer) nothing stays unsent and this changes nothing.
pub const NOTSENT_LOWAT: u32 = 64 * 1024;

/// The sender is link-limited over a window when at least this share of its
/// time went to waiting for the link (the rest to waiting for frames).
const LINK_LIMITED_SHARE: f64 = 0.9;

/// Window over which [`LinkWatch`] judges who limits the frame rate.
const LINK_WINDOW: Duration = Duration::from_secs(2);

/// A "the link limits the frame rate" line is logged at most this often.
const LINK_REPORT_EVERY: Duration = Duration::from_secs(60);

pub struct Config<'a> {
    pub server: &'a str,
    pub send_timeout: Duration,
    /// Stop after this many frames were sent; 0 means never.
    pub frames: u64,
    /// `Some`: TLS to the viewer (`--tls-*`).
    pub tls: Option<&'a tls::Client>,
}

/// What the sender thread works with.
pub struct Links<'a> {
    /// Where the encoded frames come from, in order.
    pub outbox: &'a Outbox,
    /// Where a frame's buffer goes once it is written (or dropped).
    pub wire_pool: &'a BufferPool,
    pub stats: &'a Stats,
    pub stop: &'a Stop,
    /// Where the connected socket is published, so the supervisor can cut
    /// a blocked write short at exit.
    pub socket: &'a CurrentSocket,
}

/// A clone of the sender's connected socket, if any, that another thread
/// can shut down to unblock a write stuck on a viewer that stopped reading.
#[derive(Default)]
pub struct CurrentSocket(Mutex<Option<TcpStream>>);

impl CurrentSocket {
    fn set(&self, socket: Option<TcpStream>) {
        *lock(&self.0) = socket;
    }

    /// Shuts the connection down, both ways; a blocked write returns at once.
    pub fn shut_down(&self) {
        if let Some(socket) = lock(&self.0).as_ref() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// How the sender ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// A stop was requested.
    Stopped,
    /// `--frames` frames were sent: the agent's job is done.
    FrameLimit,
}

/// Runs until a stop is requested, or until `frames` frames were sent.
pub fn run(cfg: &Config, links: &Links) -> Finished {
    let server = cfg.server;
    let mut backoff = Backoff::new();
    let mut reports = Reports::default();
    let mut tally = Tally {
        sent: 0,
        watch: LinkWatch::new(Instant::now()),
    };
    while !links.stop.is_requested() {
        let stream = match connect(server, cfg.send_timeout) {
            Ok(stream) => stream,
            Err(e) => {
                let (level, lost) = reports.unreachable();
                let lost = match lost {
                    0 | 1 => String::new(),
                    n => format!(" (after {n} lost connections in a row)"),
                };
                log::log!(level, "viewer {server} unreachable ({e}), retrying{lost}");
                if links.stop.sleep(backoff.next_delay()) {
                    break;
                }
                continue;
            }
        };
        let mut secure = match cfg.tls {
            None => None,
            Some(client) => match client.handshake(&stream, cfg.send_timeout) {
                Ok(conn) => Some((client, conn)),
                Err(e) => {
                    let (level, _) = reports.unreachable();
                    log::log!(level, "TLS with {server} failed: {e}; retrying");
                    if links.stop.sleep(backoff.next_delay()) {
                        break;
                    }
                    continue;
                }
            },
        };
        let peer = stream
            .peer_addr()
            .map_or_else(|_| server.to_string(), |a| a.to_string());
        let over = if secure.is_some() { " over TLS" } else { "" };
        log::log!(reports.connected(), "connected to {peer}{over}");
        links.stats.connected();
        // Let the supervisor shut the socket down to unblock a write at exit.
        links.socket.set(stream.try_clone().ok());
        links.outbox.on_connect();
        let connected = Instant::now();
        let mut on_healthy = || {
            backoff.reset();
            if let Some(lost) = reports.healthy() {
                log::info!(
                    "connection to {peer} healthy again after {lost} lost connections in a row \
                     (all but the first logged at debug level)"
                );
            }
        };
        tally.watch.restart(connected);
        let result = stream_frames(
            cfg,
            links,
            &stream,
            secure.as_mut().map(|(client, conn)| (*client, conn)),
            &mut tally,
            connected,
            &mut on_healthy,
        );
        if let (Ok(_), Some((_, conn))) = (&result, secure.as_mut()) {
            tls::close(conn, &stream);
        }
        let dropped = links.outbox.on_disconnect(links.wire_pool);
        links.stats.skipped_after_encoding(dropped as u64);
        links.socket.set(None);
        drop(stream);
        match result {
            Ok(finished) => return finished,
            Err(_) if links.stop.is_requested() => break,
            Err(e) => {
                let (level, lost) = reports.lost();
                let count = if lost > 1 {
                    format!(" ({lost} in a row, none healthy)")
                } else {
                    String::new()
                };
                log::log!(
                    level,
                    "lost connection to {server}: {e}; reconnecting{count}"
                );
                if links.stop.sleep(backoff.next_delay()) {
                    break;
                }
            }
        }
    }
    Finished::Stopped
}

/// What the sender keeps across connections.
struct Tally {
    /// Frames sent, for `--frames`.
    sent: u64,
    /// Who limits the frame rate, and when that was last logged.
    watch: LinkWatch,
}

/// Sends frames until a stop, the frame limit or a broken connection (Err).
///
/// Each round: wait until the socket wants more (the frame before is all
/// but [`NOTSENT_LOWAT`]` / 2` bytes on the wire: its latency sample, and
/// the link's time for it), take the frame to send (the newest one, if the
/// link made us wait), write it.
fn stream_frames(
    cfg: &Config,
    links: &Links,
    stream: &TcpStream,
    mut secure: Option<(&tls::Client, &mut rustls::ClientConnection)>,
    tally: &mut Tally,
    connected: Instant,
    on_healthy: &mut dyn FnMut(),
) -> io::Result<Finished> {
    let mut healthy = false;
    // The frame last written: when it was captured and taken.
    let mut on_the_way: Option<(Instant, Instant)> = None;
    loop {
        if let Some((client, conn)) = secure.as_mut() {
            if let Some(e) = tls::check_incoming(client, conn, stream) {
                return Err(e);
            }
        }
        let polled = Instant::now();
        let waited = wait_writable(stream, cfg.send_timeout, links.stop)?;
        let writable = Instant::now();
        if let Some((captured, taken)) = on_the_way.take() {
            links.stats.on_wire(writable - captured);
            links.outbox.link_drained(writable - taken);
            log::trace!(
                "on the wire {:?} after capture, link {:?}",
                writable - captured,
                writable - taken
            );
        }
        let taken = if waited {
            links
                .outbox
                .next_newest(links.stop, links.wire_pool)
                .map(|(frame, stale)| {
                    links.stats.skipped_after_encoding(stale as u64);
                    frame
                })
        } else {
            links.outbox.next(links.stop)
        };
        let Some(frame) = taken else {
            return Ok(Finished::Stopped);
        };
        let took = Instant::now();
        log::trace!(
            "frame {} taken {:?} after capture, {:?} after POLLOUT (waited {waited})",
            frame.seq,
            took - frame.captured,
            took - writable
        );
        let result = match secure.as_mut() {
            None => write_frame(stream, frame.frame_bytes(), cfg.send_timeout),
            Some((client, conn)) => {
                tls::write_frame(conn, stream, frame.frame_bytes(), cfg.send_timeout, || {
                    blocked(cfg.send_timeout)
                })
                .map_err(|e| {
                    // A refusal from the viewer explains a reset better.
                    tls::check_incoming(client, conn, stream).unwrap_or(e)
                })
            }
        };
        let written = Instant::now();
        let wire_len = frame.frame_bytes().len();
        let captured = frame.captured;
        links.wire_pool.put(frame.wire);
        if let Err(e) = result {
            links.stats.skipped_after_encoding(1);
            return Err(e);
        }
        links.outbox.written();
        on_the_way = Some((captured, took));
        let body_len = wire_len - proto::wire::HEADER_LEN;
        links.stats.sent(wire_len, frame.bmp_len, body_len);
        let link = (writable - polled) + (written - took);
        if let Some(report) = tally.watch.frame(written, link, took - writable, wire_len) {
            log::log!(
                if report.first_in_a_while {
                    Level::Info
                } else {
                    Level::Debug
                },
                "the link to {} limits the frame rate: it carries {:.1} frames/s, \
                 {:.1} Mbit/s of {:.0} KB frames; encoding only the frames it can carry",
                cfg.server,
                report.fps,
                report.mbit_per_s,
                report.frame_kb
            );
        }
        // Not at the first frame: a refusing viewer lets that one through.
        if !healthy && connected.elapsed() >= HEALTHY_AFTER {
            healthy = true;
            on_healthy();
        }
        tally.sent += 1;
        if cfg.frames > 0 && tally.sent >= cfg.frames {
            log::info!("sent {} frames (--frames), stopping", tally.sent);
            return Ok(Finished::FrameLimit);
        }
    }
}

/// Waits until the socket wants more data (POLLOUT: fewer than half of
/// [`NOTSENT_LOWAT`] bytes unsent), a stop is requested, or `timeout`
/// passes (an error: the viewer stopped reading). Returns true if it had to
/// wait, i.e. the link, not the frames, was what the sender waited for. An
/// error or hang-up on the socket returns at once: the write reports it.
fn wait_writable(stream: &TcpStream, timeout: Duration, stop: &Stop) -> io::Result<bool> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        let slice = if waited { WAIT_SLICE } else { Duration::ZERO };
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        match poll(
            &mut fds,
            PollTimeout::try_from(slice).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return Ok(waited),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if stop.is_requested() {
            return Ok(waited);
        }
        if waited && started.elapsed() >= timeout {
            return Err(blocked(timeout));
        }
        waited = true;
    }
}

fn connect(server: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in server.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                configure(&stream, timeout)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address")
    }))
}

/// Sets up a connected socket: no Nagle delay, writes that give up after
/// `send_timeout`, and the kernel's dead-peer detection (see the module doc).
fn configure(stream: &TcpStream, send_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(send_timeout))?;
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &whole_secs(KEEPALIVE_IDLE))?;
    setsockopt(
        stream,
        sockopt::TcpKeepInterval,
        &whole_secs(KEEPALIVE_INTERVAL),
    )?;
    setsockopt(stream, sockopt::TcpKeepCount, &KEEPALIVE_PROBES)?;
    setsockopt(
        stream,
        sockopt::TcpUserTimeout,
        &user_timeout_ms(send_timeout),
    )?;
    set_notsent_lowat(stream, NOTSENT_LOWAT)
}

/// Sets `TCP_NOTSENT_LOWAT` (Linux 3.12+), which nix 0.30 has no sockopt
/// for.
fn set_notsent_lowat(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    use nix::libc::{c_int, c_void, socklen_t, IPPROTO_TCP, TCP_NOTSENT_LOWAT};
    let value = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    // SAFETY: the fd is the open socket `stream` borrows for the whole call;
    // the option value points at a live c_int, and its length says so; the
    // kernel only reads it.
    let rc = unsafe {
        nix::libc::setsockopt(
            stream.as_raw_fd(),
            IPPROTO_TCP,
            TCP_NOTSENT_LOWAT,
            (&value as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>() as socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn whole_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

/// `TCP_USER_TIMEOUT` in milliseconds; 0 would mean the system default, so
/// at least 1, and a timeout too long for 32 bits is about 49 days anyway.
fn user_timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Writes one whole frame. Normally one write(2) does it; if the socket
/// buffer is full, the rest follows, and the whole frame may take at most
/// `timeout` (a viewer that drains a byte at a time does not keep us stuck).
fn write_frame(mut stream: &TcpStream, buf: &[u8], timeout: Duration) -> io::Result<()> {
    let started = Instant::now();
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // SO_SNDTIMEO: the buffer stayed full (the viewer stopped reading).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(blocked(timeout)),
            // TCP_USER_TIMEOUT or keepalive: nothing came back at all.
            Err(e) if e.raw_os_error() == Some(nix::libc::ETIMEDOUT) => {
                return Err(unacknowledged(timeout))
            }
            Err(e) => return Err(e),
        }
        if written < buf.len() && started.elapsed() >= timeout {
            return Err(blocked(timeout));
        }
    }
    Ok(())
}

fn blocked(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "a send was blocked for {} s (the viewer stopped reading)",
            timeout.as_secs_f64()
        ),
    )
}

fn unacknowledged(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "nothing acknowledged for {} s (the viewer or the network is gone)",
            timeout.as_secs_f64()
        ),
    )
}

/// Tells when the link, not the encoders or the camera, limits the frame
/// rate: over each [`LINK_WINDOW`], the share of the sender's time spent
/// waiting for the link (POLLOUT and writes) against waiting for frames.
/// Pure, so its tests need no socket.
struct LinkWatch {
    window_start: Instant,
    link: Duration,
    idle: Duration,
    frames: u32,
    bytes: u64,
    limited: bool,
    last_report: Option<Instant>,
}

/// What a link-limited window carried, for the log line.
#[derive(Debug, PartialEq)]
struct LinkReport {
    fps: f64,
    mbit_per_s: f64,
    frame_kb: f64,
    /// No such line in the last [`LINK_REPORT_EVERY`]: log it at info.
    first_in_a_while: bool,
}

impl LinkWatch {
    fn new(now: Instant) -> LinkWatch {
        LinkWatch {
            window_start: now,
            link: Duration::ZERO,
            idle: Duration::ZERO,
            frames: 0,
            bytes: 0,
            limited: false,
            last_report: None,
        }
    }

    /// Starts a new window at `now` (a new connection): what limited the
    /// last one is measured anew; when a line was last logged is kept.
    fn restart(&mut self, now: Instant) {
        *self = LinkWatch {
            last_report: self.last_report,
            ..LinkWatch::new(now)
        };
    }

    /// A frame of `len` bytes was written at `now`, after `link` spent on
    /// the link and `idle` waiting for it. At the end of a window that
    /// turned the sender link-limited, returns what to report.
    fn frame(
        &mut self,
        now: Instant,
        link: Duration,
        idle: Duration,
        len: usize,
    ) -> Option<LinkReport> {
        self.link += link;
        self.idle += idle;
        self.frames += 1;
        self.bytes += len as u64;
        let span = now.saturating_duration_since(self.window_start);
        if span < LINK_WINDOW {
            return None;
        }
        let busy = (self.link + self.idle).as_secs_f64();
        let limited = busy > 0.0 && self.link.as_secs_f64() >= LINK_LIMITED_SHARE * busy;
        let secs = span.as_secs_f64();
        let report = (limited && !self.limited).then(|| {
            let first_in_a_while = self
                .last_report
                .is_none_or(|at| now.saturating_duration_since(at) >= LINK_REPORT_EVERY);
            if first_in_a_while {
                self.last_report = Some(now);
            }
            LinkReport {
                fps: f64::from(self.frames) / secs,
                mbit_per_s: self.bytes as f64 * 8.0 / secs / 1e6,
                frame_kb: self.bytes as f64 / f64::from(self.frames) / 1e3,
                first_in_a_while,
            }
        });
        *self = LinkWatch {
            window_start: now,
            limited,
            last_report: self.last_report,
            ..LinkWatch::new(now)
        };
        report
    }
}

/// Decides how loudly to log each connection event, so that a run of the
/// same failure is one warning: the first at warn, the rest at debug, and
/// their count once a connection is healthy again (or in the next warning).
/// Pure, so its tests need no socket.
#[derive(Debug, Default)]
struct Reports {
    /// Connect attempts that failed in a row.
    unreachable: u32,
    /// Connections lost in a row before any became healthy.
    lost: u32,
    /// A failure was logged at warn since the last `connected to`, so the
    /// next one, its outcome, is worth an info line too.
    warned: bool,
}

impl Reports {
    /// A connect attempt failed: the level to log it at, and the connections
    /// lost in a row before it (for the count).
    fn unreachable(&mut self) -> (Level, u32) {
        self.unreachable += 1;
        (self.failure(self.unreachable == 1), self.lost)
    }

    /// Connected: info after a warning (or at the first connection), else
    /// debug, since a refusing viewer gets connected to every retry.
    fn connected(&mut self) -> Level {
        self.unreachable = 0;
        if self.warned || self.lost == 0 {
            self.warned = false;
            Level::Info
        } else {
            Level::Debug
        }
    }

    /// A connection broke: the level to log it at, and how many broke in a
    /// row (this one included).
    fn lost(&mut self) -> (Level, u32) {
        self.lost += 1;
        (self.failure(self.lost == 1), self.lost)
    }

    /// The connection stayed up for [`HEALTHY_AFTER`]: ends the run of lost
    /// connections, and returns its length if some went unlogged.
    fn healthy(&mut self) -> Option<u32> {
        let lost = std::mem::take(&mut self.lost);
        (lost > 1).then_some(lost)
    }

    fn failure(&mut self, first: bool) -> Level {
        if first {
            self.warned = true;
            Level::Warn
        } else {
            Level::Debug
        }
    }
}

/// Exponential backoff from 100 ms to 1.5 s with ±25% jitter, so many agents
/// that lost the same viewer do not reconnect in lockstep.
struct Backoff {
    next: Duration,
    rng: XorShift64,
}

impl Backoff {
    fn new() -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff {
            next: BACKOFF_START,
            // Seeded by time and pid, so agents started together differ.
            rng: XorShift64::new(nanos ^ (u64::from(std::process::id()) << 32)),
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        base.mul_f64(0.75 + 0.5 * self.rng.next_unit())
            .min(BACKOFF_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125));
        assert!(delays[1] >= Duration::from_millis(150) && delays[1] <= Duration::from_millis(250));
        assert!(delays.iter().all(|&d| d <= BACKOFF_CAP));
        assert!(delays[11] >= BACKOFF_CAP.mul_f64(0.75));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }

    /// An agent refused by `--max-clients 1` logged a warning per attempt,
    /// 67 in 10 s.
    #[test]
    fn a_run_of_refusals_is_one_warning_then_a_count_when_healthy() {
        let mut r = Reports::default();
        assert_eq!(r.connected(), Level::Info);
        assert_eq!(r.lost(), (Level::Warn, 1));
        // The reconnect after the warning says how it went.
        assert_eq!(r.connected(), Level::Info);
        for n in 2..=20 {
            assert_eq!(r.lost(), (Level::Debug, n));
            assert_eq!(r.connected(), Level::Debug);
        }
        assert_eq!(r.healthy(), Some(20));
        // A new run after a healthy connection warns again.
        assert_eq!(r.lost(), (Level::Warn, 1));
        assert_eq!(r.connected(), Level::Info);
        // One loss, then health: the warning and `connected` said it all.
        assert_eq!(r.healthy(), None);
    }

    #[test]
    fn an_unreachable_viewer_is_one_warning_with_the_lost_count() {
        let mut r = Reports::default();
        assert_eq!(r.unreachable(), (Level::Warn, 0));
        assert_eq!(r.unreachable(), (Level::Debug, 0));
        assert_eq!(r.connected(), Level::Info);
        r.lost();
        r.connected();
        r.lost();
        // The viewer goes away in the middle of a run of refusals.
        assert_eq!(r.unreachable(), (Level::Warn, 2));
        assert_eq!(r.unreachable(), (Level::Debug, 2));
        assert_eq!(r.connected(), Level::Info);
    }

    /// Reads back what [`connect`] set on a connected loopback socket.
    #[test]
    fn connected_socket_detects_a_dead_viewer() {
        use nix::sys::socket::getsockopt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let send_timeout = Duration::from_millis(2500);
        let stream = connect(&server, send_timeout).unwrap();
        assert!(getsockopt(&stream, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepIdle).unwrap(), 5);
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepInterval).unwrap(), 1);
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepCount).unwrap(), 5);
        assert_eq!(getsockopt(&stream, sockopt::TcpUserTimeout).unwrap(), 2500);
        assert!(getsockopt(&stream, sockopt::TcpNoDelay).unwrap());
        assert_eq!(stream.write_timeout().unwrap(), Some(send_timeout));
    }

    #[test]
    fn connected_socket_keeps_at_most_notsent_lowat_unsent() {
        use nix::libc::{c_int, c_void, socklen_t, IPPROTO_TCP, TCP_NOTSENT_LOWAT};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = connect(
            &listener.local_addr().unwrap().to_string(),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as socklen_t;
        // SAFETY: value and len are live locals of the sizes given.
        let rc = unsafe {
            nix::libc::getsockopt(
                stream.as_raw_fd(),
                IPPROTO_TCP,
                TCP_NOTSENT_LOWAT,
                (&mut value as *mut c_int).cast::<c_void>(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(value as u32, NOTSENT_LOWAT);
    }

    /// A viewer that stops reading: the sender waits for the link, not for
    /// ever, and not past --send-timeout.
    #[test]
    fn wait_writable_gives_up_after_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = connect(
            &listener.local_addr().unwrap().to_string(),
            Duration::from_secs(1),
        )
        .unwrap();
        let _peer = listener.accept().unwrap();
        let stop = Stop::default();
        assert!(!wait_writable(&stream, Duration::from_millis(300), &stop).unwrap());
        stream.set_nonblocking(true).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while stream.write(&chunk).is_ok() {}
        let started = Instant::now();
        let err = wait_writable(&stream, Duration::from_millis(300), &stop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn link_watch_reports_a_link_limited_window_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut watch = LinkWatch::new(t0);
        // 16 frames/s of 780 KB, the sender waiting on the link 95% of the time.
        let mut report = None;
        for i in 1..=40u32 {
            let r = watch.frame(t0 + ms(62) * i, ms(59), ms(3), 780_000);
            report = report.or(r);
        }
        let report = report.expect("a link-limited window is reported");
        assert!(report.first_in_a_while);
        assert!((report.fps - 16.1).abs() < 0.5, "{report:?}");
        assert!((report.mbit_per_s - 100.0).abs() < 5.0, "{report:?}");
        // Still limited: nothing more.
        for i in 41..=80u32 {
            assert_eq!(watch.frame(t0 + ms(62) * i, ms(59), ms(3), 780_000), None);
        }
        // Free for a window, limited again within a minute: at debug.
        let t1 = t0 + ms(62) * 80;
        for i in 1..=100u32 {
            let _ = watch.frame(t1 + ms(33) * i, ms(1), ms(32), 780_000);
        }
        let t2 = t1 + ms(3300);
        let again = (1..=80u32).find_map(|i| watch.frame(t2 + ms(62) * i, ms(59), ms(3), 780_000));
        assert_eq!(again.map(|r| r.first_in_a_while), Some(false));
        // A new connection is judged anew, but still logged at debug
        // within the minute: a reconnecting agent does not repeat the line.
        let t3 = t2 + ms(62) * 80;
        watch.restart(t3);
        let after_reconnect =
            (1..=40u32).find_map(|i| watch.frame(t3 + ms(62) * i, ms(59), ms(3), 780_000));
        assert_eq!(after_reconnect.map(|r| r.first_in_a_while), Some(false));
    }

    /// A camera (or the encoders) slower than the link is not the link's fault.
    #[test]
    fn link_watch_is_quiet_when_the_sender_waits_for_frames() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut watch = LinkWatch::new(t0);
        for i in 1..=200u32 {
            assert_eq!(watch.frame(t0 + ms(33) * i, ms(2), ms(31), 780_000), None);
        }
    }

    #[test]
    fn socket_timeouts_fit_their_fields() {
        assert_eq!(user_timeout_ms(Duration::from_secs(5)), 5000);
        assert_eq!(user_timeout_ms(Duration::from_micros(10)), 1);
        assert_eq!(user_timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX);
        assert_eq!(whole_secs(Duration::from_millis(500)), 1);
    }
}
