//! Wires the threads together and supervises them. The only module that
//! knows every part: it owns them all ([`Parts`]) and lends each thread the
//! few its stage names in its own `Links` (`source::Links`,
//! `encode::Links`, `send::Links`).
//!
//! ```text
//! capture ──newest frame──▶ mailbox ──▶ encoder × N ──▶ outbox ──▶ sender ──TCP──▶ viewer
//!    ▲  (1 slot, replaced)             (in order, ≤ workers frames)    │
//!    └──────────── buffers recycled through pools ◀───────────────────┘
//! ```
//!
//! The main thread waits for the first of: SIGINT/SIGTERM, a thread
//! finishing (`--frames` reached, or an error), and logs the stats line on
//! schedule. Then it asks every thread to stop, lets the sender finish the
//! frame it is writing, shuts the socket down so a blocked write returns,
//! and waits a bounded time for the threads; any that is still stuck (in DNS
//! or connect) is abandoned, so exit takes well under a second.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use proto::format::{Layout, PixelFormat};
use proto::{bmp, gzip, wire};

use crate::cli::{self, Args, Encoding, FormatChoice, Source};
use crate::encode::{self, Encoder};
use crate::mailbox::Mailbox;
use crate::metrics;
use crate::outbox::Outbox;
use crate::pool::BufferPool;
use crate::send::{self, CurrentSocket};
use crate::source::{self, Capture};
use crate::stats::Stats;
use crate::sync::Stop;
use crate::tls;

/// How often the main thread looks at the signal flag.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// How long a sender may take to finish the frame it is writing at exit.
const SEND_GRACE: Duration = Duration::from_millis(250);

/// How long to wait for the threads once stopping, before exiting anyway.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// Every part the threads work on, owned here; each thread borrows only the
/// parts its stage names in its `Links`.
struct Parts {
    stop: Stop,
    mailbox: Mailbox,
    outbox: Outbox,
    /// Buffers for raw frames.
    raw_pool: BufferPool,
    /// Buffers for encoded frames.
    wire_pool: BufferPool,
    stats: Stats,
    socket: CurrentSocket,
}

impl Parts {
    fn new(args: &Args, workers: usize) -> Parts {
        Parts {
            stop: Stop::default(),
            mailbox: Mailbox::new(),
            outbox: Outbox::new(workers, args.frames),
            raw_pool: BufferPool::default(),
            wire_pool: BufferPool::default(),
            stats: Stats::new(args.id).with_encoding(encoding_label(args)),
            socket: CurrentSocket::default(),
        }
    }

    fn capture(&self) -> source::Links<'_> {
        source::Links {
            mailbox: &self.mailbox,
            raw_pool: &self.raw_pool,
            outbox: &self.outbox,
            stats: &self.stats,
            stop: &self.stop,
        }
    }

    fn encode(&self) -> encode::Links<'_> {
        encode::Links {
            mailbox: &self.mailbox,
            raw_pool: &self.raw_pool,
            outbox: &self.outbox,
            wire_pool: &self.wire_pool,
            stats: &self.stats,
            stop: &self.stop,
        }
    }

    fn send(&self) -> send::Links<'_> {
        send::Links {
            outbox: &self.outbox,
            wire_pool: &self.wire_pool,
            stats: &self.stats,
            stop: &self.stop,
            socket: &self.socket,
        }
    }

    /// Asks every thread to stop and wakes the ones waiting.
    fn stop_all(&self) {
        self.stop.request();
        self.mailbox.wake_all();
        self.outbox.wake_all();
    }
}

/// How a thread ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// It was asked to stop.
    Stopped,
    /// The sender sent `--frames` frames: the agent's job is done.
    Done,
}

struct Event {
    thread: String,
    result: Result<Exit>,
}

/// Runs the agent until a signal, `--frames`, or a fatal error.
pub fn run(args: &Args) -> Result<()> {
    let workers = args.worker_count();
    // Set up every encoder before starting anything, so a bad level fails here.
    let encoders = (0..workers)
        .map(|_| Encoder::new(args.id, args.encoding, args.level, args.quality))
        .collect::<Result<Vec<_>>>()?;

    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&signal))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }

    // Certificates are read and checked now, so a wrong path fails at start.
    let tls_client = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            let files = tls::Files {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
                server_name: args.tls_server_name.clone(),
            };
            Some(tls::Client::new(&files, &args.server, args.id)?)
        }
        // clap requires all three together.
        _ => None,
    };

    let parts = Arc::new(Parts::new(args, workers));
    prefill_pools(&parts, args, workers)?;
    if let Some(addr) = args.metrics {
        let parts = Arc::clone(&parts);
        metrics::serve(addr, move || metrics::render(&parts.stats))?;
    }
    let (events, inbox) = mpsc::channel();
    let mut threads = Vec::new();

    log::info!(
        "camera {}: {} → {}, {} as {}, {} encoder thread(s)",
        args.id,
        args.source,
        args.server,
        args.size,
        encoding_label(args),
        workers
    );
    {
        let args = args.clone();
        threads.push(spawn("capture", &parts, &events, move |parts| {
            let mut capture = Capture::new(parts.capture());
            match &args.source {
                Source::Pattern => source::pattern::run(args.size, args.fps, &mut capture)?,
                Source::File(path) => {
                    let format = match args.format {
                        FormatChoice::Fixed(format) => format,
                        FormatChoice::Auto => cli::file_format(path),
                    };
                    source::file::run(path, format, args.size, args.fps, &mut capture)?
                }
                Source::V4l2 => {
                    let cfg = source::v4l2::Config {
                        device: &args.device,
                        format: args.format,
                        size: args.size,
                        fps: args.fps,
                        timeout: args.capture_timeout.0,
                        reopen: args.reopen,
                    };
                    source::v4l2::run(&cfg, &mut capture)?
                }
            }
            Ok(Exit::Stopped)
        })?);
    }
    for (i, mut encoder) in encoders.into_iter().enumerate() {
        threads.push(spawn(
            &format!("encode-{i}"),
            &parts,
            &events,
            move |parts| {
                encode::run(&mut encoder, &parts.encode());
                Ok(Exit::Stopped)
            },
        )?);
    }
    let sender = {
        let (server, timeout, frames) = (args.server.clone(), args.send_timeout.0, args.frames);
        spawn("send", &parts, &events, move |parts| {
            let cfg = send::Config {
                server: &server,
                send_timeout: timeout,
                frames,
                tls: tls_client.as_ref(),
            };
            Ok(match send::run(&cfg, &parts.send()) {
                send::Finished::Stopped => Exit::Stopped,
                send::Finished::FrameLimit => Exit::Done,
            })
        })?
    };
    drop(events);

    let outcome = supervise(&parts, &inbox, &signal, args.stats_interval.0);
    parts.stop_all();
    // A sender in the middle of a frame gets a moment to finish it, so the
    // viewer sees a clean close rather than a cut frame; a stuck one is
    // cut loose.
    let deadline = Instant::now() + SEND_GRACE;
    while Instant::now() < deadline && !sender.is_finished() {
        thread::sleep(Duration::from_millis(5));
    }
    parts.socket.shut_down();
    threads.push(sender);
    join_bounded(threads);
    let totals = parts.stats.totals();
    log::info!(
        "stopped: {} frames captured, {} sent, {} dropped ({} skipped before encoding, {} after)",
        totals.captured,
        totals.sent,
        totals.skipped_before + totals.skipped_after,
        totals.skipped_before,
        totals.skipped_after
    );
    outcome
}

/// The encoding as the logs name it: `gzip-bmp level 9`, `jpeg q85`.
fn encoding_label(args: &Args) -> String {
    match args.encoding {
        Encoding::GzipBmp => format!("gzip-bmp level {}", args.level),
        Encoding::Jpeg => format!("jpeg q{}", args.quality),
    }
}

/// Allocates, and writes, every buffer the pipeline can hold at once:
/// `workers + 2` raw frames (one being captured, one in the mailbox, one per
/// encoder) and `workers + 1` wire buffers (one outbox place per encoder,
/// plus the one being written). Memory is then flat from the first frame,
/// instead of stepping up the first time a rare interleaving needs one more
/// buffer (the 5-minute soak saw a 1.5 MB step after 4 minutes). Raw
/// buffers are sized for the format if it is fixed and raw, else for YUYV
/// (2 bytes a pixel, what `auto` picks on most cameras); a camera whose
/// frames are larger (RGB3, padded strides) grows them once.
fn prefill_pools(parts: &Parts, args: &Args, workers: usize) -> Result<()> {
    let format = match args.format {
        FormatChoice::Fixed(f) if !f.is_compressed() => f,
        _ => PixelFormat::Yuyv,
    };
    let raw_len =
        Layout::new(format, args.size.width, args.size.height, 0).map_or(0, |l| l.frame_len());
    let bmp_len = bmp::encoded_len(args.size.width, args.size.height).context("frame size")?;
    let wire_len = wire::HEADER_LEN
        + gzip::Compressor::new(args.level)
            .context("cannot set up gzip")?
            .compress_bound(bmp_len);
    for (pool, count, len) in [
        (&parts.raw_pool, workers + 2, raw_len),
        (&parts.wire_pool, workers + 1, wire_len),
    ] {
        for _ in 0..count {
            // Not zeros: a zeroed allocation becomes calloc, whose pages are
            // mapped lazily and would not count until first use. Every user
            // overwrites what it reads, so the value is never seen.
            pool.put(vec![0xa5; len]);
        }
    }
    Ok(())
}

/// Waits for a signal or the first thread to end, logging stats meanwhile.
fn supervise(
    parts: &Parts,
    inbox: &mpsc::Receiver<Event>,
    signal: &AtomicBool,
    stats_interval: Duration,
) -> Result<()> {
    let mut last_stats = Instant::now();
    loop {
        match inbox.recv_timeout(SIGNAL_POLL) {
            Ok(Event {
                result: Ok(Exit::Done),
                ..
            }) => return Ok(()),
            Ok(Event {
                thread,
                result: Ok(Exit::Stopped),
            }) => {
                return Err(anyhow!("the {thread} thread stopped unexpectedly"));
            }
            Ok(Event { result: Err(e), .. }) => return Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("every thread stopped unexpectedly"));
            }
        }
        if signal.load(Ordering::SeqCst) {
            log::info!("signal received, stopping");
            return Ok(());
        }
        if !stats_interval.is_zero() && last_stats.elapsed() >= stats_interval {
            let elapsed = last_stats.elapsed();
            last_stats = Instant::now();
            log::info!("{}", parts.stats.line(elapsed));
        }
    }
}

/// Starts a named thread whose result (or panic) is reported as an event.
fn spawn(
    name: &str,
    parts: &Arc<Parts>,
    events: &mpsc::Sender<Event>,
    body: impl FnOnce(&Parts) -> Result<Exit> + Send + 'static,
) -> Result<JoinHandle<()>> {
    let parts = Arc::clone(parts);
    let events = events.clone();
    let thread = name.to_string();
    thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let result =
                panic::catch_unwind(AssertUnwindSafe(|| body(&parts))).unwrap_or_else(|_| {
                    Err(anyhow!(
                        "the {thread} thread panicked (a bug; please report it)"
                    ))
                });
            // The receiver is gone only when the agent is exiting anyway.
            let _ = events.send(Event { thread, result });
        })
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Joins every thread that finishes within [`JOIN_GRACE`]; the rest are
/// left to die with the process.
fn join_bounded(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + JOIN_GRACE;
    while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
        thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        } else {
            log::debug!(
                "thread {:?} did not stop in time; exiting without it",
                t.thread().name()
            );
        }
    }
}
