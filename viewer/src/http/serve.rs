//! The HTTP thread: its own poll(2) loop over a stop pipe, the hub's wake
//! socket, the listener and every HTTP client.
//!
//! Every socket is non-blocking and every client is bounded:
//! - at most `--http-max-clients` at once; more are answered 503 and closed;
//!   peers outside `--allow` are closed at once;
//! - a request head of at most [`MAX_HEAD_LEN`] bytes that must be complete
//!   within [`REQUEST_TIMEOUT`] of the accept (slowloris, endless header
//!   lines and requests never finished are closed with a log line);
//! - output is one response, or one MJPEG part at a time. A part is a
//!   camera's newest JPEG (shared, never copied per watcher); when it is
//!   written, the next part is whatever is newest then, so a slow watcher
//!   gets fewer frames, never older ones, and nobody waits for it. One that
//!   takes no byte for [`STALL_TIMEOUT`] is closed.
//!
//! Complaints are logged once per peer per window (`peer_log`), so a flood
//! of bad clients costs a few lines.

use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use exposition::request::{self, Method, Request, MAX_HEAD_LEN};
use log::{debug, info, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::hub::{Hub, Jpeg};
use super::render;
use crate::allow::AllowList;
use crate::deadline;
use crate::peer_log::{PeerLog, Verdict};
use crate::ConnId;

/// A request head must be complete this long after the accept.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client with output waiting that takes no byte of it for this long is
/// closed: a watcher that stopped reading.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A snapshot waits this long for the camera's next frame, then is 504.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections accepted per wake-up, so a flood cannot starve the clients
/// already served.
const ACCEPTS_PER_WAKE: usize = 32;

/// Bytes read and thrown away per wake-up from a client that already sent
/// its request (nothing more is expected; its EOF ends it).
const DISCARD_LEN: usize = 4096;

/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A watcher's socket send buffer (the kernel doubles it): about two VGA
/// JPEGs. The kernel's queue is where a slow watcher's frames would grow
/// old (with the default, up to 4 MiB: seconds of video); kept small, a
/// slow watcher's next part waits here instead, as the newest frame.
const STREAM_SNDBUF: usize = 128 << 10;

/// The multipart boundary of the MJPEG stream.
const BOUNDARY: &str = "camstreamframe";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub allow: AllowList,
}

/// The running HTTP thread; [`HttpServer::stop`] ends it.
pub struct HttpServer {
    stop_tx: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// Binds `config.listen` and starts the HTTP thread.
pub fn start(config: Config, hub: Arc<Hub>, wake_rx: UnixStream) -> Result<HttpServer> {
    let listener = TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {} for --http (is the port in use? choose another)",
            config.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (stop_rx, stop_tx) = UnixStream::pair().context("cannot create the HTTP stop pipe")?;
    stop_rx.set_nonblocking(true)?;
    info!("http on http://{local}/ (no authentication: anyone who can reach it sees every camera)");
    let mut server = Loop {
        config,
        listener,
        hub,
        wake_rx,
        stop_rx,
        clients: BTreeMap::new(),
        next_id: 0,
        accept_paused_until: None,
        complaints: PeerLog::new(),
        watchers_dirty: false,
    };
    let thread = thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = server.run() {
                log::error!("http: stopped: {e:#}");
            }
        })
        .context("cannot start the HTTP thread")?;
    Ok(HttpServer {
        stop_tx,
        thread: Some(thread),
    })
}

impl HttpServer {
    /// Closes every HTTP client and waits for the thread.
    pub fn stop(mut self) {
        let _ = (&self.stop_tx).write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Loop {
    config: Config,
    listener: TcpListener,
    hub: Arc<Hub>,
    wake_rx: UnixStream,
    stop_rx: UnixStream,
    clients: BTreeMap<u64, Client>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    /// Bad requests, timeouts and refusals, one line per peer per window.
    complaints: PeerLog<(IpAddr, &'static str), String>,
    /// A client started or stopped watching: tell the hub.
    watchers_dirty: bool,
}

const STOP: usize = 0;
const WAKE: usize = 1;
const LISTENER: usize = 2;
const FIRST_CLIENT: usize = 3;

impl Loop {
    fn run(&mut self) -> Result<()> {
        let mut polled: Vec<u64> = Vec::new();
        let mut revents: Vec<PollFlags> = Vec::new();
        loop {
            let now = Instant::now();
            polled.clear();
            polled.extend(self.clients.keys().copied());
            revents.clear();
            {
                let accepting = self.accept_paused_until.is_none_or(|t| now >= t);
                let mut fds = Vec::with_capacity(FIRST_CLIENT + polled.len());
                fds.push(PollFd::new(self.stop_rx.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN));
                let listen = if accepting {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(self.listener.as_fd(), listen));
                for id in &polled {
                    let client = &self.clients[id];
                    let mut events = PollFlags::POLLIN;
                    if client.out.pending() {
                        events |= PollFlags::POLLOUT;
                    }
                    fds.push(PollFd::new(client.stream.as_fd(), events));
                }
                match poll(&mut fds, self.poll_timeout(now)) {
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
            if !revents[STOP].is_empty() {
                return Ok(());
            }
            if !revents[WAKE].is_empty() {
                drain(&self.wake_rx);
            }
            for (i, &id) in polled.iter().enumerate() {
                let ready = revents
                    .get(FIRST_CLIENT + i)
                    .copied()
                    .unwrap_or(PollFlags::empty());
                if !ready.is_empty() {
                    self.client_ready(id, ready, now);
                }
            }
            // New frames, cameras gone, and clients whose part is written.
            self.feed(now);
            if !revents[LISTENER].is_empty() {
                self.accept(now);
            }
            self.expire(now);
            self.flush_complaints(now);
            if self.watchers_dirty {
                self.watchers_dirty = false;
                let mut watchers: BTreeMap<ConnId, usize> = BTreeMap::new();
                for client in self.clients.values() {
                    if let Some(camera) = client.phase.watching() {
                        *watchers.entry(camera).or_default() += 1;
                    }
                }
                self.hub.watch(&watchers);
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> PollTimeout {
        let next = self
            .clients
            .values()
            .filter_map(Client::deadline)
            .chain(self.accept_paused_until)
            .chain(self.complaints.next_flush())
            .min();
        deadline::timeout_until(next, now)
    }

    fn accept(&mut self, now: Instant) {
        self.accept_paused_until = None;
        for _ in 0..ACCEPTS_PER_WAKE {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(nix::libc::ECONNABORTED) => continue,
                Err(e) => {
                    warn!(
                        "http: cannot accept a connection: {e} (raise the open-file limit with `ulimit -n`, or lower --http-max-clients); retrying in {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let counters = &self.hub.counters;
        if !self.config.allow.allows(peer.ip()) {
            Hub::count(&counters.http_refused_not_allowed);
            self.complain(
                now,
                peer,
                "refused",
                "refused: not in the --allow list".to_owned(),
            );
            return;
        }
        if self.clients.len() >= self.config.max_clients {
            Hub::count(&counters.http_refused_full);
            let max = self.config.max_clients;
            // Best effort: a full socket buffer just gets the close.
            let reply = request::response(
                "503 Service Unavailable",
                "text/plain",
                format!("already serving {max} HTTP clients (--http-max-clients)\n").as_bytes(),
                false,
            );
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(&reply);
            let _ = stream.shutdown(Shutdown::Write);
            self.complain(
                now,
                peer,
                "refused",
                format!("refused: already serving {max} HTTP clients (--http-max-clients {max})"),
            );
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("http: dropped {peer}: cannot set up the socket: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        Hub::count(&counters.http_accepted);
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(
            id,
            Client {
                stream,
                peer,
                input: Vec::new(),
                phase: Phase::Request,
                out: Out::default(),
                deadline: now + REQUEST_TIMEOUT,
            },
        );
        debug!("http: connection from {peer}");
    }

    /// Logs a complaint about a client: the first of its `kind` from its
    /// address in a window; the rest are counted (`flush_complaints`).
    fn complain(&mut self, now: Instant, peer: SocketAddr, kind: &'static str, why: String) {
        let key = (peer.ip().to_canonical(), kind);
        let line = format!("http: {peer}: {why}");
        if self.complaints.line(now, &key, || why) == Verdict::Log {
            warn!("{line}");
        }
    }

    fn flush_complaints(&mut self, now: Instant) {
        self.complaints.flush(now, |ip, s| match ip {
            Some((ip, _)) => warn!(
                "http: {ip}: {} more like it in the last {} s; the last: {}",
                s.count,
                s.window.as_secs(),
                s.last
            ),
            None => warn!(
                "http: {} more complaints about other peers in the last {} s; the last: {}",
                s.count,
                s.window.as_secs(),
                s.last
            ),
        });
    }

    fn close(&mut self, id: u64, complaint: Option<(Instant, &'static str, String)>) {
        let Some(client) = self.clients.remove(&id) else {
            return;
        };
        if client.phase.watching().is_some() {
            self.watchers_dirty = true;
        }
        if let Some((now, kind, why)) = complaint {
            self.complain(now, client.peer, kind, why);
        } else {
            debug!("http: {} closed", client.peer);
        }
        let _ = client.stream.shutdown(Shutdown::Both);
    }

    fn client_ready(&mut self, id: u64, ready: PollFlags, now: Instant) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if ready.contains(PollFlags::POLLOUT) || ready.intersects(PollFlags::POLLERR) {
            match client.write(now) {
                Ok(()) => {}
                Err(e) => return self.close(id, Some((now, "error", format!("closed: {e}")))),
            }
        }
        if !ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        let client = match self.clients.get_mut(&id) {
            Some(c) => c,
            None => return,
        };
        if !matches!(client.phase, Phase::Request) {
            // Nothing more is expected from it; EOF means it left.
            let mut buf = [0u8; DISCARD_LEN];
            return match client.stream.read(&mut buf) {
                Ok(0) => self.close(id, None),
                Ok(_) => {}
                Err(e) if retry_later(&e) => {}
                Err(_) => self.close(id, None),
            };
        }
        // Read no more than one byte past the limit, so an oversized head
        // is known as such.
        let room = (MAX_HEAD_LEN + 1).saturating_sub(client.input.len());
        let start = client.input.len();
        client.input.resize(start + room, 0);
        let n = match client.stream.read(&mut client.input[start..]) {
            Ok(n) => n,
            Err(e) if retry_later(&e) => {
                client.input.truncate(start);
                return;
            }
            Err(e) => {
                client.input.truncate(start);
                return self.close(id, Some((now, "error", format!("closed: {e}"))));
            }
        };
        client.input.truncate(start + n);
        if n == 0 {
            // EOF before a whole request (a head at the limit was refused
            // before it came to this).
            let why = (start > 0).then(|| {
                (
                    now,
                    "unfinished",
                    format!("closed after {start} bytes of an unfinished request"),
                )
            });
            return self.close(id, why);
        }
        match request::parse(&client.input) {
            Ok(None) => {}
            Ok(Some(req)) => self.route(id, req, now),
            Err(e) => {
                Hub::count(&self.hub.counters.http_bad_requests);
                let reply =
                    request::response(e.status(), "text/plain", format!("{e}\n").as_bytes(), false);
                if let Some(client) = self.clients.get_mut(&id) {
                    client.reply(reply, now);
                    let peer = client.peer;
                    self.complain(now, peer, "bad request", format!("closed: {e}"));
                }
            }
        }
    }

    /// Answers a complete request.
    fn route(&mut self, id: u64, req: Request, now: Instant) {
        let head_only = req.method == Method::Head;
        let reply = |status: &str, content_type: &str, body: &[u8]| {
            request::response(status, content_type, body, head_only)
        };
        let Some(peer) = self.clients.get(&id).map(|c| c.peer) else {
            return;
        };
        debug!("http: {peer}: {:?} {}", req.method, req.path);
        let answer = if req.method == Method::Other {
            reply(
                "405 Method Not Allowed",
                "text/plain",
                b"only GET and HEAD\n",
            )
        } else {
            match Route::of(&req.path) {
                Route::Page => reply(
                    "200 OK",
                    "text/html; charset=utf-8",
                    render::PAGE.as_bytes(),
                ),
                Route::Cameras => {
                    let json = render::cameras_json(&self.hub.lock());
                    reply("200 OK", "application/json", json.as_bytes())
                }
                Route::Metrics => {
                    let watchers = self
                        .clients
                        .values()
                        .filter(|c| c.phase.watching().is_some())
                        .count();
                    let text = render::metrics(&self.hub, self.clients.len(), watchers);
                    reply("200 OK", exposition::text::CONTENT_TYPE, text.as_bytes())
                }
                Route::Camera { key, what } => match self.resolve(key) {
                    None => reply(
                        "404 Not Found",
                        "text/plain",
                        b"no such camera connected (see /api/cameras)\n",
                    ),
                    Some(camera) => {
                        let after = self.newest(camera).map(|j| j.number);
                        let Some(client) = self.clients.get_mut(&id) else {
                            return;
                        };
                        client.input = Vec::new();
                        match what {
                            What::Stream if head_only => reply("200 OK", &stream_type(), b""),
                            What::Stream => {
                                // Best effort; the default grows to megabytes.
                                let _ = nix::sys::socket::setsockopt(
                                    &client.stream,
                                    nix::sys::socket::sockopt::SndBuf,
                                    &STREAM_SNDBUF,
                                );
                                info!("http: {peer} watching camera connection {}", camera.0);
                                client.out = Out::head(stream_head());
                                client.phase = Phase::Stream { camera, sent: None };
                                client.deadline = now + STALL_TIMEOUT;
                                self.watchers_dirty = true;
                                return;
                            }
                            What::Snapshot => {
                                // The next frame, made for it if nobody watches.
                                client.phase = Phase::Snapshot {
                                    camera,
                                    after,
                                    head_only,
                                };
                                client.deadline = now + SNAPSHOT_TIMEOUT;
                                self.watchers_dirty = true;
                                return;
                            }
                        }
                    }
                },
                Route::NotFound => reply(
                    "404 Not Found",
                    "text/plain",
                    b"not found: see / , /api/cameras and /metrics\n",
                ),
            }
        };
        if let Some(client) = self.clients.get_mut(&id) {
            client.reply(answer, now);
        }
    }

    /// The connection a URL names: `/cameras/<connection>/...` directly,
    /// `/by-id/<camera id>/...` the newest connection with that camera id.
    fn resolve(&self, key: Key) -> Option<ConnId> {
        let state = self.hub.lock();
        match key {
            Key::Conn(n) => state.cameras.contains_key(&ConnId(n)).then_some(ConnId(n)),
            Key::CameraId(camera_id) => state
                .cameras
                .iter()
                .rev()
                .find(|(_, c)| c.published.camera_id == Some(camera_id))
                .map(|(&id, _)| id),
        }
    }

    fn newest(&self, camera: ConnId) -> Option<Arc<Jpeg>> {
        self.hub
            .lock()
            .cameras
            .get(&camera)
            .and_then(|c| c.newest.clone())
    }

    /// Hands each watcher with nothing left to write its camera's newest
    /// frame, if newer than the one it had; answers snapshots; ends the
    /// streams of cameras that left.
    fn feed(&mut self, now: Instant) {
        let waiting: Vec<ConnId> = self
            .clients
            .values()
            .filter(|c| !c.out.pending())
            .filter_map(|c| c.phase.watching())
            .collect();
        if waiting.is_empty() {
            return self.finish_replies();
        }
        // One lock for every camera's newest frame; a camera missing here
        // has left.
        let newest: BTreeMap<ConnId, Option<Arc<Jpeg>>> = {
            let state = self.hub.lock();
            waiting
                .iter()
                .filter_map(|id| Some((*id, state.cameras.get(id)?.newest.clone())))
                .collect()
        };
        let mut gone = Vec::new();
        for (&id, client) in self.clients.iter_mut() {
            if client.out.pending() {
                continue;
            }
            let Some(camera) = client.phase.watching() else {
                continue;
            };
            let Some(newest) = newest.get(&camera) else {
                gone.push(id);
                continue;
            };
            let Some(jpeg) = newest else {
                continue;
            };
            match &mut client.phase {
                Phase::Stream { sent, .. } => {
                    if sent.is_some_and(|n| n >= jpeg.number) {
                        continue;
                    }
                    *sent = Some(jpeg.number);
                    client.out = Out::part(Arc::clone(jpeg));
                    client.deadline = now + STALL_TIMEOUT;
                    // Try at once: usually the socket takes the whole part.
                    if client.write(now).is_err() {
                        gone.push(id);
                    }
                }
                Phase::Snapshot {
                    after, head_only, ..
                } => {
                    if after.is_some_and(|n| n >= jpeg.number) {
                        continue;
                    }
                    let head_only = *head_only;
                    client.phase = Phase::Reply;
                    client.out = Out::snapshot(Arc::clone(jpeg), head_only);
                    client.deadline = now + STALL_TIMEOUT;
                    self.watchers_dirty = true;
                    let _ = client.write(now);
                }
                Phase::Request | Phase::Reply => {}
            }
        }
        for id in gone {
            // The camera left: its stream ends here (a browser's <img>
            // keeps the last frame; the page drops it on its next poll).
            match self.clients.get_mut(&id) {
                Some(client) if matches!(client.phase, Phase::Snapshot { .. }) => {
                    // A HEAD request gets the head only, as on every path.
                    let head_only = matches!(
                        client.phase,
                        Phase::Snapshot {
                            head_only: true,
                            ..
                        }
                    );
                    client.end_snapshot(
                        "404 Not Found",
                        b"the camera left before its next frame\n",
                        head_only,
                        now,
                    );
                    self.watchers_dirty = true;
                }
                _ => self.close(id, None),
            }
        }
        self.finish_replies();
    }

    /// Closes the clients whose whole reply was written.
    fn finish_replies(&mut self) {
        let done: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Reply) && !c.out.pending())
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(client) = self.clients.remove(&id) {
                // Our side is done; the client reads to EOF.
                let _ = client.stream.shutdown(Shutdown::Write);
            }
        }
    }

    /// Closes clients past their deadline: a request never finished, a
    /// watcher that stopped reading, a snapshot with no frame in time.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| now >= d))
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            match client.phase {
                Phase::Request => {
                    let len = client.input.len();
                    self.close(
                        id,
                        Some((
                            now,
                            "unfinished",
                            format!(
                                "closed: no complete request within {} s ({len} bytes of it received)",
                                REQUEST_TIMEOUT.as_secs()
                            ),
                        )),
                    );
                }
                Phase::Snapshot { head_only, .. } if !client.out.pending() => {
                    client.end_snapshot(
                        "504 Gateway Timeout",
                        b"the camera sent no frame in time\n",
                        head_only,
                        now,
                    );
                    self.watchers_dirty = true;
                }
                _ => {
                    let what = if client.phase.watching().is_some() {
                        "a watcher that stopped reading"
                    } else {
                        "a client that stopped reading its reply"
                    };
                    self.close(
                        id,
                        Some((
                            now,
                            "stalled",
                            format!(
                                "closed {what}: no byte taken for {} s",
                                STALL_TIMEOUT.as_secs()
                            ),
                        )),
                    );
                }
            }
        }
    }
}

/// What a URL asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Page,
    Cameras,
    Metrics,
    Camera { key: Key, what: What },
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Conn(u64),
    CameraId(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Stream,
    Snapshot,
}

impl Route {
    fn of(path: &str) -> Route {
        match path {
            "/" | "/index.html" => return Route::Page,
            "/api/cameras" => return Route::Cameras,
            "/metrics" => return Route::Metrics,
            _ => {}
        }
        let mut parts = path.trim_start_matches('/').split('/');
        let (Some(kind), Some(key), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Route::NotFound;
        };
        let key = match kind {
            "cameras" => key.parse().ok().map(Key::Conn),
            "by-id" => key.parse().ok().map(Key::CameraId),
            _ => None,
        };
        let what = match file {
            "stream.mjpg" => Some(What::Stream),
            "snapshot.jpg" => Some(What::Snapshot),
            _ => None,
        };
        match (key, what) {
            (Some(key), Some(what)) => Route::Camera { key, what },
            _ => Route::NotFound,
        }
    }
}

fn stream_type() -> String {
    format!("multipart/x-mixed-replace; boundary={BOUNDARY}")
}

fn stream_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n",
        stream_type()
    )
    .into_bytes()
}

/// What a client is doing.
#[derive(Debug)]
enum Phase {
    /// Reading its request head.
    Request,
    /// Writing one response; closed when written.
    Reply,
    /// Watching a camera: MJPEG parts; `sent` is the last frame's number.
    Stream { camera: ConnId, sent: Option<u64> },
    /// Waiting for a frame of `camera` newer than `after`.
    Snapshot {
        camera: ConnId,
        after: Option<u64>,
        head_only: bool,
    },
}

impl Phase {
    /// The camera it needs frames of.
    fn watching(&self) -> Option<ConnId> {
        match *self {
            Phase::Stream { camera, .. } | Phase::Snapshot { camera, .. } => Some(camera),
            Phase::Request | Phase::Reply => None,
        }
    }
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// The request head so far, at most `MAX_HEAD_LEN + 1` bytes.
    input: Vec<u8>,
    phase: Phase,
    out: Out,
    /// Set for the request, a pending output or a snapshot's wait.
    deadline: Instant,
}

impl Client {
    /// When it must have made progress, if it must.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Request | Phase::Snapshot { .. } => Some(self.deadline),
            Phase::Reply | Phase::Stream { .. } => self.out.pending().then_some(self.deadline),
        }
    }

    fn reply(&mut self, bytes: Vec<u8>, now: Instant) {
        self.input = Vec::new();
        self.phase = Phase::Reply;
        self.out = Out::head(bytes);
        self.deadline = now + STALL_TIMEOUT;
        let _ = self.write(now);
    }

    /// Answers a snapshot that will get no frame with a plain-text `status`
    /// saying `why`; it no longer watches its camera.
    fn end_snapshot(&mut self, status: &str, why: &[u8], head_only: bool, now: Instant) {
        self.reply(request::response(status, "text/plain", why, head_only), now);
    }

    /// Writes what the socket takes now; progress moves the deadline.
    fn write(&mut self, now: Instant) -> io::Result<()> {
        while self.out.pending() {
            match self.out.write_to(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => self.deadline = now + STALL_TIMEOUT,
                Err(e) if retry_later(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Output waiting for a client: a head, maybe a shared JPEG, and a tail,
/// written from `pos` on.
#[derive(Default)]
struct Out {
    head: Vec<u8>,
    body: Option<Arc<Jpeg>>,
    tail: &'static [u8],
    pos: usize,
}

impl Out {
    fn head(head: Vec<u8>) -> Out {
        Out {
            head,
            ..Out::default()
        }
    }

    /// One MJPEG part.
    fn part(jpeg: Arc<Jpeg>) -> Out {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.bytes.len()
        );
        Out {
            head: head.into_bytes(),
            body: Some(jpeg),
            tail: b"\r\n",
            pos: 0,
        }
    }

    /// A whole snapshot response.
    fn snapshot(jpeg: Arc<Jpeg>, head_only: bool) -> Out {
        let head = request::response("200 OK", "image/jpeg", &jpeg.bytes, true);
        // `response` with head_only gives the head with the right length.
        Out {
            head,
            body: (!head_only).then_some(jpeg),
            tail: b"",
            pos: 0,
        }
    }

    fn len(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |j| j.bytes.len()) + self.tail.len()
    }

    fn pending(&self) -> bool {
        self.pos < self.len()
    }

    fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let body: &[u8] = self.body.as_ref().map_or(&[], |j| &j.bytes);
        let mut skip = self.pos;
        let mut slices = Vec::with_capacity(3);
        for part in [&self.head[..], body, self.tail] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
        let n = w.write_vectored(&slices)?;
        self.pos += n;
        Ok(n)
    }
}

fn retry_later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn drain(socket: &UnixStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = (&*socket).read(&mut buf) {
        if n < buf.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/"), Route::Page);
        assert_eq!(Route::of("/api/cameras"), Route::Cameras);
        assert_eq!(Route::of("/metrics"), Route::Metrics);
        assert_eq!(
            Route::of("/cameras/7/stream.mjpg"),
            Route::Camera {
                key: Key::Conn(7),
                what: What::Stream
            }
        );
        assert_eq!(
            Route::of("/by-id/3/snapshot.jpg"),
            Route::Camera {
                key: Key::CameraId(3),
                what: What::Snapshot
            }
        );
        for bad in [
            "/by-id/256/stream.mjpg",
            "/cameras/x/stream.mjpg",
            "/cameras/1/other",
            "/cameras/1/stream.mjpg/x",
            "/etc/passwd",
        ] {
            assert_eq!(Route::of(bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn out_writes_head_body_and_tail_across_short_writes() {
        let jpeg = Arc::new(Jpeg {
            number: 0,
            bytes: vec![0xff, 0xd8, 0xff, 1, 2, 3],
        });
        let mut out = Out::part(jpeg);
        let mut sink = Vec::new();
        struct Short<'a>(&'a mut Vec<u8>);
        impl Write for Short<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(5);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        while out.pending() {
            out.write_to(&mut Short(&mut sink)).unwrap();
        }
        let mut want =
            format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: 6\r\n\r\n")
                .into_bytes();
        want.extend_from_slice(&[0xff, 0xd8, 0xff, 1, 2, 3, b'\r', b'\n']);
        assert_eq!(sink, want);
    }
}
