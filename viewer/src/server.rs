//! The poll(2) loop (mio's tcp_server shape, with raw poll through nix).
//!
//! One thread watches, level-triggered:
//! - the signal self-pipe (SIGINT, SIGTERM);
//! - the decode workers' wake-up socket;
//! - the listener;
//! - every client that may be read now.
//!
//! Poll is the only place this thread waits: sockets are non-blocking, and
//! the decode workers and the display thread are reached through mutexes
//! they hold only to move a frame, a picture or a result (never while
//! decoding, writing or talking to X). Its timeout is the nearest of the
//! idle-timeout deadlines, the stats tick, the end of a log line window and,
//! while windows are open, the next collection of the display thread's
//! events. It never calls X: the windows live on the display thread
//! (`display`), so a hung X server freezes the windows, not the cameras.
//!
//! With `--http`, HTTP clients live on a thread of their own (`http`); this
//! loop only counts accepts and refusals for it, publishes every
//! connection's counts to its hub every [`http::PUBLISH_INTERVAL`] (one
//! more deadline in the timeout), and hands it a connection's last counts
//! when it closes.
//!
//! The server owns the connections and asks them: each [`Conn`] keeps its
//! state behind methods. Whatever ends a connection (the connection's own
//! [`Close`], a frame that does not decode, a closed or failed window) comes
//! to `Server::close` as a [`Reason`], which logs it once, rate-limited per
//! peer and camera id (`peer_log`; refusals per peer). The `connection from`
//! line waits for the first header, so that it too is limited per peer and
//! camera id: a camera reconnecting in a loop costs a line and a count, not a
//! line per connection. A connection's error, or its window's, closes that
//! connection only.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, error, info, log, warn, Level};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::allow::AllowList;
use crate::conn::{interrupted, would_block, Close, CloseError, Conn, Received, Status, Transport};
use crate::decode::{self, DecodeError, Decoders, Done, Submitted};
use crate::display::{self, Display, Events, Picture, ShowError};
use crate::http;
use crate::peer_log::{self, PeerLog, Summary, Verdict};
use crate::tls::TlsStream;
use crate::ConnId;
use proto::wire::CameraId;

/// Connections accepted per wake-up, so a connection flood cannot starve
/// the cameras already streaming.
const ACCEPTS_PER_WAKE: usize = 32;

/// Bodies of frames done with, kept for connections to read the next
/// frames into, so that reading a frame allocates nothing. Every frame read
/// takes one and every frame decoded or skipped gives one back, so a few
/// cover the jitter between the two: at most [`SPARE_BODIES`] of them, and
/// at most [`SPARE_BODY_LEN`] bytes of capacity in all, so the spares add a
/// fixed 8 MiB to the memory bound whatever `--max-frame-bytes` is (a body
/// larger than that is freed, not kept).
const SPARE_BODIES: usize = 16;

/// Most bytes of capacity the spare bodies hold together.
const SPARE_BODY_LEN: usize = 8 << 20;

/// How long to stop accepting after running out of file descriptors, which
/// would otherwise leave the listener readable and spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub allow: AllowList,
    pub headless: bool,
    pub record_dir: Option<PathBuf>,
    pub max_frame_len: u32,
    pub max_bmp_len: usize,
    pub idle_timeout: Duration,
    /// `None`: no stats lines.
    pub stats_interval: Option<Duration>,
    pub decode_threads: usize,
    /// `--http`: the HTTP thread's settings.
    pub http: Option<http::Config>,
    /// `Some`: every client speaks TLS 1.3 with a certificate (`tls`).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Runs the viewer until SIGINT, SIGTERM or Esc.
pub fn run(config: Config) -> Result<()> {
    let display = if config.headless {
        None
    } else {
        let screen = display::probe()?;
        Some(Display::start(screen, config.max_clients)?)
    };
    if let Some(dir) = &config.record_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the --record directory {}", dir.display()))?;
    }

    // Signals first: a SIGINT that arrives right after the startup line
    // must already reach the loop.
    let (signal_rx, signal_tx) = UnixStream::pair().context("cannot create the signal pipe")?;
    signal_rx.set_nonblocking(true)?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(signal, signal_tx.try_clone()?)
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }

    let listener = TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another viewer running there? choose another address or port with --listen)",
            config.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    info!("listening on {local}");
    if !config.allow.allows_all() {
        info!("accepting only {}", config.allow);
    }
    if config.tls.is_some() {
        info!("TLS 1.3 only: every client must present a certificate signed by --tls-client-ca");
    }

    let http = config.http.clone().map(http::Link::start).transpose()?;
    let decoders = Decoders::new(decode::Config {
        http: http.as_ref().map(|h| Arc::clone(&h.hub)),
        threads: config.decode_threads,
        max_bmp_len: config.max_bmp_len,
        want_pixels: display.is_some(),
        record_dir: config.record_dir.clone(),
    })
    .context("cannot start the decode threads")?;

    let now = Instant::now();
    let mut server = Server {
        next_stats: config.stats_interval.map(|i| now + i),
        config,
        listener,
        signal_rx,
        decoders,
        display,
        display_events: Events::default(),
        conns: BTreeMap::new(),
        next_id: 0,
        accept_paused_until: None,
        refusals: PeerLog::new(),
        ends: PeerLog::new(),
        arrivals: PeerLog::new(),
        frames: Vec::new(),
        done: Vec::new(),
        spare_bodies: Vec::with_capacity(SPARE_BODIES),
        http,
    };
    let result = server.run_loop();
    server.shutdown();
    result
}

struct Server {
    config: Config,
    listener: TcpListener,
    signal_rx: UnixStream,
    decoders: Decoders,
    display: Option<Display>,
    /// Reused for [`Display::poll`].
    display_events: Events,
    conns: BTreeMap<ConnId, Conn>,
    /// The next connection's [`ConnId`].
    next_id: u64,
    accept_paused_until: Option<Instant>,
    next_stats: Option<Instant>,
    /// Refusals, one line per peer per window (`peer_log`).
    refusals: PeerLog<IpAddr, Refused>,
    /// Disconnect and drop lines, one per peer and camera id per window: a
    /// node runs several cameras, and each one's end is news.
    ends: PeerLog<(IpAddr, Option<CameraId>), String>,
    /// `connection from` lines, logged when the first header names the
    /// camera: one per peer and camera id per window, like `ends`; the
    /// detail is the last unlogged connection's peer address.
    arrivals: PeerLog<(IpAddr, CameraId), SocketAddr>,
    /// Reused buffers.
    frames: Vec<Received>,
    done: Vec<Done>,
    /// Frame bodies for connections to read into ([`SPARE_BODY_LEN`]).
    spare_bodies: Vec<Vec<u8>>,
    /// `--http`: counts, and every connection's figures, for the HTTP thread.
    http: Option<http::Link>,
}

/// Indices of the fixed entries in the poll set; clients follow.
const SIGNAL: usize = 0;
const WAKE: usize = 1;
const LISTENER: usize = 2;
const FIRST_CONN: usize = 3;

impl Server {
    fn run_loop(&mut self) -> Result<()> {
        let mut polled: Vec<ConnId> = Vec::new();
        let mut revents: Vec<PollFlags> = Vec::new();
        loop {
            let now = Instant::now();
            // Which clients to watch: one whose recording backlog is full is
            // not read (nor polled) until a worker catches up.
            polled.clear();
            let mut pending_input = false;
            for (&id, conn) in &mut self.conns {
                if self.decoders.room(id) == 0 {
                    conn.pause();
                    continue;
                }
                conn.resume(now);
                pending_input |= conn.has_buffered_input();
                polled.push(id);
            }
            let timeout = if pending_input {
                PollTimeout::ZERO
            } else {
                self.poll_timeout(now)
            };

            revents.clear();
            {
                let accepting = self.accept_paused_until.is_none_or(|t| now >= t);
                let mut fds = Vec::with_capacity(FIRST_CONN + polled.len());
                fds.push(PollFd::new(self.signal_rx.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.decoders.wake_fd(), PollFlags::POLLIN));
                let listen_events = if accepting {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(self.listener.as_fd(), listen_events));
                for id in &polled {
                    if let Some(conn) = self.conns.get(id) {
                        // POLLOUT only while TLS has a handshake flight to send.
                        let out = if conn.wants_write() {
                            PollFlags::POLLOUT
                        } else {
                            PollFlags::empty()
                        };
                        fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN | out));
                    }
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e).context("poll(2) failed"),
                }
                revents.extend(
                    fds.iter()
                        .map(|fd| fd.revents().unwrap_or(PollFlags::empty())),
                );
            }
            let now = Instant::now();

            if !revents[SIGNAL].is_empty() {
                info!("shutting down on a signal");
                return Ok(());
            }
            if !revents[WAKE].is_empty() {
                self.decoders.drain_wake();
            }
            // Results first: a decode error closes its connection before more
            // of its bytes are read.
            self.handle_done(now);

            for (i, &id) in polled.iter().enumerate() {
                let ready = revents.get(FIRST_CONN + i).is_some_and(|r| !r.is_empty());
                let buffered = self.conns.get(&id).is_some_and(Conn::has_buffered_input);
                if ready || buffered {
                    self.read_conn(id, now);
                }
            }

            if !revents[LISTENER].is_empty() {
                self.accept(now);
            }

            self.expire_idle(now);
            self.flush_peer_logs(now);

            if let Some(display) = &mut self.display {
                let mut events = std::mem::take(&mut self.display_events);
                display.poll(now, &mut events);
                for (id, latency) in events.shown.drain(..) {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.frame_shown(latency);
                    }
                }
                for pixels in events.spent.drain(..) {
                    self.decoders.recycle_pixels(pixels);
                }
                for id in events.closed.drain(..) {
                    self.close(id, Reason::WindowClosed, now);
                }
                for (id, e) in events.failed.drain(..) {
                    self.close(id, Reason::Window(e), now);
                }
                let quit = events.quit;
                self.display_events = events;
                if quit {
                    info!("Esc pressed: shutting down");
                    return Ok(());
                }
            }

            if let Some(http) = &mut self.http {
                http.publish(now, self.conns.iter());
            }
            if self.next_stats.is_some_and(|t| now >= t) {
                self.log_stats(now);
            }
        }
    }

    /// The nearest deadline: idle timeouts, stats, window events, accept
    /// backoff, the end of a log line window.
    fn poll_timeout(&self, now: Instant) -> PollTimeout {
        let mut next: Option<Instant> = self.next_stats;
        if let Some(http) = &self.http {
            next = Some(next.map_or(http.next_publish(), |n| n.min(http.next_publish())));
        }
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for conn in self.conns.values() {
            if let Some(t) = conn.idle_deadline() {
                consider(t);
            }
        }
        if let Some(t) = self.accept_paused_until {
            consider(t);
        }
        for t in [
            self.refusals.next_flush(),
            self.ends.next_flush(),
            self.arrivals.next_flush(),
        ]
        .into_iter()
        .flatten()
        {
            consider(t);
        }
        if let Some(t) = self.display.as_ref().and_then(Display::next_poll) {
            consider(t);
        }
        crate::deadline::timeout_until(next, now)
    }

    fn accept(&mut self, now: Instant) {
        self.accept_paused_until = None;
        for _ in 0..ACCEPTS_PER_WAKE {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                // The peer gave up before we accepted: nothing to do.
                Err(e) if e.raw_os_error() == Some(nix::libc::ECONNABORTED) => continue,
                Err(e) if is_out_of_resources(&e) => {
                    error!(
                        "cannot accept a connection: {e} (raise the open-file limit with `ulimit -n`, or lower --max-clients); retrying in {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    warn!("cannot accept a connection: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        if !self.config.allow.allows(peer.ip()) {
            self.refuse(now, peer, Refused::NotAllowed);
            return; // Dropping the stream closes it.
        }
        // With --record, a closed connection's frames still queued for the
        // disk hold a client's place until written (memory bound).
        let draining = if self.conns.len() < self.config.max_clients {
            self.decoders.draining()
        } else {
            0
        };
        if self.conns.len() + draining >= self.config.max_clients {
            let n = self.conns.len();
            self.refuse(now, peer, Refused::Full { n, draining });
            return;
        }
        let config = &self.config;
        let transport = match &config.tls {
            None => Ok(Transport::Plain(stream)),
            Some(tls) => TlsStream::new(stream, tls.clone()).map(|s| Transport::Tls(Box::new(s))),
        };
        let conn = transport.and_then(|transport| {
            Conn::new(
                transport,
                peer,
                config.max_frame_len,
                config.idle_timeout,
                now,
            )
        });
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                warn!("dropped {peer}: cannot set up the socket: {e}");
                return;
            }
        };
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.decoders.open(id, peer);
        self.conns.insert(id, conn);
        if let Some(http) = &self.http {
            http.counted(None);
        }
        // Logged at info once its first header names the camera (read_conn).
        debug!("accepted {peer}");
    }

    /// Logs a refusal: the first from its peer in a window; the rest are
    /// summed up by [`Server::flush_peer_logs`].
    fn refuse(&mut self, now: Instant, peer: SocketAddr, why: Refused) {
        let max = self.config.max_clients;
        let ip = peer.ip().to_canonical();
        if let Some(http) = &self.http {
            http.counted(Some(matches!(why, Refused::NotAllowed)));
        }
        if self.refusals.line(now, &ip, || why) == Verdict::Log {
            warn!("refused {peer}: {}", why.text(max));
        }
    }

    /// Writes the summaries of the log line windows that ended.
    fn flush_peer_logs(&mut self, now: Instant) {
        let max = self.config.max_clients;
        fn secs<D>(s: &Summary<D>) -> u64 {
            s.window.as_secs()
        }
        self.refusals.flush(now, |ip, s| match ip {
            Some(ip) => warn!(
                "refused {ip} {} more times in the last {} s ({})",
                s.count,
                secs(&s),
                s.last.short(max)
            ),
            None => warn!(
                "refused {} more connections from other peers in the last {} s (more than {} peers refused at once; the last: {})",
                s.count,
                secs(&s),
                peer_log::MAX_PEERS,
                s.last.short(max)
            ),
        });
        self.arrivals.flush(now, |key, s| match key {
            Some((ip, camera_id)) => info!(
                "camera {camera_id} ({ip}): {} more connections in the last {} s, not logged one by one; the last from {}",
                s.count,
                secs(&s),
                s.last
            ),
            None => info!(
                "{} more connections from other peers in the last {} s (more than {} peers at once); the last from {}",
                s.count,
                secs(&s),
                peer_log::MAX_PEERS,
                s.last
            ),
        });
        self.ends.flush(now, |key, s| match key {
            Some((ip, camera_id)) => {
                let camera = camera_id.map_or("?".to_owned(), |id| id.to_string());
                warn!(
                    "camera {camera} ({ip}): {} more connections ended in the last {} s, not logged one by one; the last: {}",
                    s.count,
                    secs(&s),
                    s.last
                )
            }
            None => warn!(
                "{} more connections from other peers ended in the last {} s (more than {} peers at once); the last: {}",
                s.count,
                secs(&s),
                peer_log::MAX_PEERS,
                s.last
            ),
        });
    }

    fn read_conn(&mut self, id: ConnId, now: Instant) {
        let clients = self.conns.len();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let max_frames = self.decoders.room(id);
        self.frames.clear();
        let named = conn.camera_id().is_some();
        let result = conn.read_some(now, max_frames, &mut self.frames, &mut self.spare_bodies);
        if let (false, Some(camera_id)) = (named, conn.camera_id()) {
            let peer = conn.peer();
            let key = (peer.ip().to_canonical(), camera_id);
            if self.arrivals.line(now, &key, || peer) == Verdict::Log {
                info!(
                    "connection from {peer} (camera {camera_id}, {clients} of at most {} clients)",
                    self.config.max_clients
                );
            }
        }
        for Received { seq, frame, at } in self.frames.drain(..) {
            match self.decoders.submit(id, seq, frame, at) {
                Submitted::Queued => {}
                Submitted::ReplacedStale(body) => {
                    conn.frame_skipped();
                    spare_body(&mut self.spare_bodies, body);
                }
                Submitted::Discarded(body) => spare_body(&mut self.spare_bodies, body),
            }
        }
        match result {
            Ok(Status::Open) => {}
            Ok(Status::Eof) => self.close(id, Reason::Conn(Close::Eof), now),
            Err(close) => self.close(id, Reason::Conn(close), now),
        }
    }

    fn handle_done(&mut self, now: Instant) {
        self.decoders.take_done(&mut self.done);
        let mut done = std::mem::take(&mut self.done);
        for Done {
            conn: id,
            outcome,
            body,
        } in done.drain(..)
        {
            spare_body(&mut self.spare_bodies, body);
            let Some(conn) = self.conns.get_mut(&id) else {
                if let Ok(decoded) = outcome {
                    if let Some(pixels) = decoded.pixels {
                        self.decoders.recycle_pixels(pixels);
                    }
                }
                continue;
            };
            let decoded = match outcome {
                Ok(decoded) => decoded,
                Err(e) => {
                    self.close(id, Reason::Decode(e), now);
                    continue;
                }
            };
            if let Some(e) = &decoded.record_error {
                error!(
                    "{}: recording stopped for this connection: {e} (is the disk full?)",
                    conn.label()
                );
            }
            if conn.frame_decoded(decoded.width, decoded.height, now) {
                debug!(
                    "{}: frame {} is {}x{}",
                    conn.label(),
                    decoded.seq,
                    decoded.width,
                    decoded.height
                );
            }
            if let (Some(display), Some(pixels)) = (&mut self.display, decoded.pixels) {
                // The title carries the fps, so it is rebuilt every frame;
                // `show` renames the window only when the text changed.
                let camera_id = conn.camera_id().unwrap_or(0);
                let title = display::title(camera_id, conn.peer(), conn.fps());
                // Latency is counted when the display thread draws it.
                let replaced = display.show(
                    id,
                    title,
                    Picture {
                        width: decoded.width,
                        height: decoded.height,
                        pixels,
                        received: decoded.received,
                    },
                );
                if let Some(never_drawn) = replaced {
                    conn.frame_skipped();
                    self.decoders.recycle_pixels(never_drawn);
                }
            } else {
                // Headless: this is where it would be shown (with --record,
                // it is on disk by now).
                conn.frame_shown(Instant::now().saturating_duration_since(decoded.received));
            }
        }
        self.done = done;
    }

    /// Closes the connections that say they must go though their sockets
    /// are quiet (the idle timeout).
    fn expire_idle(&mut self, now: Instant) {
        // Empty, as it nearly always is, this allocates nothing.
        let expired: Vec<(ConnId, CloseError)> = self
            .conns
            .iter()
            .filter_map(|(&id, conn)| Some((id, conn.close_reason(now)?)))
            .collect();
        for (id, reason) in expired {
            self.close(id, Reason::Conn(Close::Error(reason)), now);
        }
    }

    /// Closes one connection and its window, and says why: the first end
    /// from its peer and camera id in a window; the rest are summed up.
    fn close(&mut self, id: ConnId, reason: Reason, now: Instant) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.decoders.close(id);
        if let Some(display) = &mut self.display {
            if let Some(pixels) = display.remove(id) {
                self.decoders.recycle_pixels(pixels);
            }
        }
        if let Some(http) = &self.http {
            let decode_error = match &reason {
                Reason::Decode(e) => Some(format!("{e:?}")),
                _ => None,
            };
            http.closed(id, &conn, decode_error);
        }
        let label = conn.label();
        let frames = conn.frames_received();
        let (level, line) = match reason {
            Reason::Conn(Close::Eof) => (
                Level::Info,
                format!("{label} disconnected after {frames} frames"),
            ),
            Reason::Conn(Close::Reset) => (
                Level::Info,
                format!("{label} disconnected after {frames} frames (connection reset)"),
            ),
            Reason::Conn(Close::Error(e)) => (
                Level::Warn,
                format!("{label} dropped after {frames} frames: {e}"),
            ),
            Reason::Decode(e) => (
                Level::Warn,
                format!("{label} dropped after {frames} frames: {e}"),
            ),
            Reason::WindowClosed => (
                Level::Warn,
                format!("{label} dropped after {frames} frames: its window was closed"),
            ),
            Reason::Window(e) => (
                Level::Warn,
                format!("{label} dropped after {frames} frames: {e}"),
            ),
        };
        let key = (conn.peer().ip().to_canonical(), conn.camera_id());
        if self.ends.line(now, &key, || line.clone()) == Verdict::Log {
            log!(level, "{line}");
        }
        // Dropping `conn` closes the socket.
    }

    fn log_stats(&mut self, now: Instant) {
        if let Some(interval) = self.config.stats_interval {
            self.next_stats = Some(now + interval);
        }
        if self.conns.is_empty() {
            debug!("no cameras connected");
        }
        for conn in self.conns.values_mut() {
            info!("{}: {}", conn.label(), conn.take_stats_line(now));
        }
    }

    /// Closes every socket and window, then lets the workers write the
    /// frames still queued for recording.
    fn shutdown(mut self) {
        let n = self.conns.len();
        self.conns.clear();
        self.display = None;
        if let Some(http) = &mut self.http {
            http.stop();
        }
        self.decoders.shutdown();
        info!("closed {n} connections; stopped");
    }
}

/// Why the server closes a connection: the connection's own ending, or a
/// reason only the server sees.
enum Reason {
    /// The peer left, or the connection broke or timed out.
    Conn(Close),
    /// One of its frames failed to gunzip or decode.
    Decode(DecodeError),
    /// The user closed its window.
    WindowClosed,
    /// Its window could not be created or drawn, or lost its X connection.
    Window(ShowError),
}

/// Keeps a body done with for a connection to read into, within
/// [`SPARE_BODIES`] and [`SPARE_BODY_LEN`]; frees it otherwise.
fn spare_body(spares: &mut Vec<Vec<u8>>, body: Vec<u8>) {
    let kept: usize = spares.iter().map(Vec::capacity).sum();
    if spares.len() < SPARE_BODIES
        && body.capacity() > 0
        && kept + body.capacity() <= SPARE_BODY_LEN
    {
        spares.push(body);
    }
}

/// EMFILE and friends: accepting again at once would fail the same way.
fn is_out_of_resources(e: &io::Error) -> bool {
    use nix::libc::{EMFILE, ENFILE, ENOBUFS, ENOMEM};
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Its address is not in `--allow`.
    NotAllowed,
    /// `n` clients were connected and `draining` closed ones still had
    /// frames queued for `--record`: `--max-clients` of them together.
    Full { n: usize, draining: usize },
}

impl Refused {
    fn text(self, max_clients: usize) -> String {
        match self {
            Refused::NotAllowed => "not in the --allow list".to_owned(),
            Refused::Full { n, draining: 0 } => {
                format!("already serving {n} clients (--max-clients {max_clients})")
            }
            Refused::Full { n, draining } => format!(
                "already serving {n} clients, and {draining} that left still have frames being recorded (--max-clients {max_clients} counts both)"
            ),
        }
    }

    /// For a summary line: which option refused it.
    fn short(self, max_clients: usize) -> String {
        match self {
            Refused::NotAllowed => "not in the --allow list".to_owned(),
            Refused::Full { .. } => format!("--max-clients {max_clients}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_bodies_stay_within_their_count_and_bytes() {
        let mut spares = Vec::new();
        for _ in 0..2 * SPARE_BODIES {
            spare_body(&mut spares, Vec::with_capacity(1000));
        }
        assert_eq!(spares.len(), SPARE_BODIES);

        let mut spares = Vec::new();
        spare_body(&mut spares, Vec::with_capacity(SPARE_BODY_LEN + 1));
        assert!(spares.is_empty(), "a body over the byte limit is freed");
        for _ in 0..3 {
            spare_body(&mut spares, Vec::with_capacity(3 << 20));
        }
        assert_eq!(spares.len(), 2, "8 MiB holds two 3 MiB bodies");
        spare_body(&mut spares, Vec::new());
        assert_eq!(spares.len(), 2, "an empty one is not worth keeping");
    }
}
