//! The decode workers: each body by its kind, gzip-BMP (gunzip with a cap,
//! BMP → 0RGB) or JPEG (checked, capped, decoded to 0RGB), and the
//! recording.
//!
//! The poll thread hands each complete frame to [`Decoders::submit`] and goes
//! back to poll(2); it never waits for a worker. Each connection has a slot:
//!
//! - Without `--record`, the slot holds at most one waiting frame, and a
//!   newer frame replaces it: only the newest frame is decoded, and a slow
//!   decoder means fewer frames, never older ones.
//! - With `--record`, every frame must reach the disk, so frames queue up to
//!   [`RECORD_QUEUE_LEN`]; then [`Decoders::room`] is 0 and the server stops
//!   reading that socket until a worker catches up (TCP flow control pushes
//!   back on the agent, which drops frames at its end). A connection that
//!   closes keeps its queued frames until they are written; while it does, it
//!   is [`Decoders::draining`], and the server counts it toward
//!   `--max-clients`, so closed and open connections together never hold
//!   more than `--max-clients` queues.
//!
//! A connection is worked on by one worker at a time, so its frames are
//! decoded and recorded in order. Workers reuse their buffers. Results come
//! back through [`Decoders::take_done`], and each one writes a byte to a socket
//! pair that the poll loop watches, so poll(2) stays the only wait.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use proto::body;
use proto::wire::Frame;

use crate::http::{self, Hub};
use crate::record::{FileKind, Recorder};
use crate::ConnId;

/// Frames that may wait per connection with `--record` before the server
/// stops reading it.
pub const RECORD_QUEUE_LEN: usize = 2;

/// Pixel buffers kept for reuse between the display and the workers; few,
/// because each may be as large as the biggest frame seen (memory bound).
const SPARE_PIXEL_BUFS: usize = 2;

#[derive(Debug, Clone)]
pub struct Config {
    pub threads: usize,
    pub max_bmp_len: usize,
    /// Hand decoded pixels to the poll thread (there are windows).
    pub want_pixels: bool,
    pub record_dir: Option<PathBuf>,
    /// `--http`: decoded frames of watched cameras become JPEGs here.
    pub http: Option<Arc<Hub>>,
}

/// Why a frame was rejected (`proto::body`'s errors, which name the body
/// kind). Every variant closes its connection.
pub use proto::body::BodyError as DecodeError;

/// A frame that decoded.
#[derive(Debug)]
pub struct Decoded {
    pub seq: u64,
    /// When the frame's last byte was read (for the latency figures).
    pub received: Instant,
    pub width: u32,
    pub height: u32,
    /// `width * height` 0RGB pixels, top row first, when `want_pixels`.
    pub pixels: Option<Vec<u32>>,
    /// Recording failed for this frame; recording of this connection stops.
    pub record_error: Option<io::Error>,
}

/// The outcome of one frame of connection `conn`.
#[derive(Debug)]
pub struct Done {
    pub conn: ConnId,
    pub outcome: Result<Decoded, DecodeError>,
    /// The frame's body, done with: a buffer for the next frame to be read
    /// into.
    pub body: Vec<u8>,
}

/// What [`Decoders::submit`] did with a frame. The variants that did not
/// keep it hand its body back, a buffer to read another frame into.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// It replaced an older frame that had not been decoded yet; this is
    /// that frame's body.
    ReplacedStale(Vec<u8>),
    /// The connection is closed or failed: nothing of it is decoded any
    /// more; this is the frame's body.
    Discarded(Vec<u8>),
}

struct Job {
    seq: u64,
    frame: Frame,
    received: Instant,
}

struct Slot {
    waiting: VecDeque<Job>,
    /// A worker has a job of this slot.
    busy: bool,
    /// The connection is gone: discard results, remove the slot when idle.
    closed: bool,
    /// A frame failed: later frames of this connection are not worth decoding.
    failed: bool,
    /// Taken by the worker while busy.
    recorder: Option<Recorder>,
}

#[derive(Default)]
struct State {
    slots: HashMap<ConnId, Slot>,
    /// Slots that are not busy and have waiting jobs, in arrival order.
    ready: VecDeque<ConnId>,
    done: Vec<Done>,
    spare_pixels: Vec<Vec<u32>>,
    shutdown: bool,
}

/// What the poll thread and the workers share: jobs and results under one
/// lock, a condvar that wakes a worker for a job, and the socket that wakes
/// the poll thread for a result.
struct Queue {
    state: Mutex<State>,
    work: Condvar,
    wake_tx: UnixStream,
    config: Config,
}

impl Queue {
    /// A worker that panicked (it should not: proto does not panic) must not
    /// take the whole viewer down with a poisoned lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The decode worker threads, and the per-connection slots through which the
/// poll thread hands them frames.
pub struct Decoders {
    queue: Arc<Queue>,
    wake_rx: UnixStream,
    workers: Vec<JoinHandle<()>>,
}

impl Decoders {
    pub fn new(config: Config) -> io::Result<Decoders> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        // A full wake socket already guarantees a wake-up: never block on it.
        wake_tx.set_nonblocking(true)?;
        let threads = config.threads.max(1);
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            wake_tx,
            config,
        });
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let handle = thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || worker(&queue))?;
            workers.push(handle);
        }
        Ok(Decoders {
            queue,
            wake_rx,
            workers,
        })
    }

    /// The fd that becomes readable when results are waiting.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }

    /// Empties the wake socket (level-triggered poll would report it again).
    pub fn drain_wake(&self) {
        let mut buf = [0u8; 256];
        loop {
            match (&self.wake_rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return,
            }
        }
    }

    /// A new connection.
    pub fn open(&self, conn: ConnId, peer: SocketAddr) {
        let recorder = self
            .queue
            .config
            .record_dir
            .as_deref()
            .map(|dir| Recorder::new(dir, peer));
        self.queue.lock().slots.insert(
            conn,
            Slot {
                waiting: VecDeque::new(),
                busy: false,
                closed: false,
                failed: false,
                recorder,
            },
        );
    }

    /// How many more frames connection `conn` may submit now.
    pub fn room(&self, conn: ConnId) -> usize {
        if self.queue.config.record_dir.is_none() {
            return usize::MAX;
        }
        let state = self.queue.lock();
        match state.slots.get(&conn) {
            Some(slot) => RECORD_QUEUE_LEN.saturating_sub(slot.waiting.len()),
            None => 0,
        }
    }

    /// Hands a complete frame, whose last byte was read at `received`, to
    /// the workers.
    pub fn submit(&self, conn: ConnId, seq: u64, frame: Frame, received: Instant) -> Submitted {
        let recording = self.queue.config.record_dir.is_some();
        let mut state = self.queue.lock();
        let Some(slot) = state.slots.get_mut(&conn) else {
            return Submitted::Discarded(frame.body);
        };
        if slot.closed || slot.failed {
            return Submitted::Discarded(frame.body);
        }
        let job = Job {
            seq,
            frame,
            received,
        };
        if !recording {
            if let Some(stale) = slot.waiting.front_mut() {
                let stale = std::mem::replace(stale, job);
                return Submitted::ReplacedStale(stale.frame.body);
            }
        }
        slot.waiting.push_back(job);
        if !slot.busy && slot.waiting.len() == 1 {
            state.ready.push_back(conn);
            drop(state);
            self.queue.work.notify_one();
        }
        Submitted::Queued
    }

    /// The connection is gone. With `--record`, its frames already received
    /// are still decoded and written; otherwise they are dropped.
    pub fn close(&self, conn: ConnId) {
        let recording = self.queue.config.record_dir.is_some();
        let mut state = self.queue.lock();
        if let Some(slot) = state.slots.get_mut(&conn) {
            slot.closed = true;
            if !recording {
                slot.waiting.clear();
            }
            if !slot.busy && slot.waiting.is_empty() {
                state.slots.remove(&conn);
            }
        }
    }

    /// Closed connections whose frames still wait to be decoded and
    /// recorded (only with `--record`; otherwise a closed connection's
    /// frames are dropped). The server counts them toward `--max-clients`,
    /// so that a churn of connections cannot pile up frames: each one holds
    /// up to [`RECORD_QUEUE_LEN`] frames until the workers get to it.
    pub fn draining(&self) -> usize {
        let state = self.queue.lock();
        state
            .slots
            .values()
            .filter(|slot| slot.closed && !slot.waiting.is_empty())
            .count()
    }

    /// Moves the finished results into `out`.
    pub fn take_done(&self, out: &mut Vec<Done>) {
        let mut state = self.queue.lock();
        std::mem::swap(&mut state.done, out);
    }

    /// Gives a pixel buffer back for the workers to reuse.
    pub fn recycle_pixels(&self, pixels: Vec<u32>) {
        let mut state = self.queue.lock();
        if state.spare_pixels.len() < SPARE_PIXEL_BUFS {
            state.spare_pixels.push(pixels);
        }
    }

    /// Stops the workers after they have written every frame still queued
    /// for recording (frames only waiting for display are dropped).
    pub fn shutdown(mut self) {
        {
            let mut state = self.queue.lock();
            let recording = self.queue.config.record_dir.is_some();
            for slot in state.slots.values_mut() {
                slot.closed = true;
                if !recording {
                    slot.waiting.clear();
                }
            }
            state.shutdown = true;
        }
        self.queue.work.notify_all();
        for handle in self.workers.drain(..) {
            if handle.join().is_err() {
                log::error!("a decode worker panicked; some recorded frames may be missing");
            }
        }
    }
}

/// Each worker's reusable buffers.
struct Buffers {
    decoder: body::Decoder,
    pixels: Vec<u32>,
    /// BGR for the JPEG encoder (`--http`).
    bgr: Vec<u8>,
}

fn worker(queue: &Queue) {
    let mut bufs = Buffers {
        decoder: body::Decoder::new(queue.config.max_bmp_len),
        pixels: Vec::new(),
        bgr: Vec::new(),
    };
    loop {
        let (conn, job, mut recorder) = {
            let mut state = queue.lock();
            loop {
                if let Some(conn) = state.ready.pop_front() {
                    let Some(slot) = state.slots.get_mut(&conn) else {
                        continue;
                    };
                    let Some(job) = slot.waiting.pop_front() else {
                        continue;
                    };
                    slot.busy = true;
                    break (conn, job, slot.recorder.take());
                }
                if state.shutdown {
                    return;
                }
                state = queue.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };

        let mut job = job;
        let outcome = decode(&mut bufs, &mut job, recorder.as_mut());
        if let (Some(hub), Ok(d)) = (&queue.config.http, &outcome) {
            // A JPEG only for a watched camera, once, whoever watches.
            let (pixels, bgr) = (&bufs.pixels, &mut bufs.bgr);
            hub.frame(conn, &job.frame.body, || {
                http::encode_jpeg(pixels, d.width, d.height, bgr)
            });
        }
        let outcome = outcome.map(|mut decoded| {
            if decoded.record_error.is_some() {
                // Stop recording this connection: the disk is full or gone.
                recorder = None;
            }
            if queue.config.want_pixels {
                let spare = queue.lock().spare_pixels.pop().unwrap_or_default();
                decoded.pixels = Some(std::mem::replace(&mut bufs.pixels, spare));
            }
            decoded
        });

        let report = {
            let mut guard = queue.lock();
            let state = &mut *guard;
            let mut report = true;
            if let Some(slot) = state.slots.get_mut(&conn) {
                slot.busy = false;
                slot.recorder = recorder;
                if outcome.is_err() {
                    slot.failed = true;
                    slot.waiting.clear();
                }
                report = !slot.closed;
                if !slot.waiting.is_empty() {
                    state.ready.push_back(conn);
                } else if slot.closed {
                    state.slots.remove(&conn);
                }
            }
            if report {
                let body = job.frame.body;
                state.done.push(Done {
                    conn,
                    outcome,
                    body,
                });
            }
            report
        };
        if report {
            // Full means a wake-up is already pending; nothing else can fail here.
            let _ = (&queue.wake_tx).write(&[1]);
        }
    }
}

/// decode (both body kinds, `proto::body`), then record. Only a frame that
/// decodes is recorded: the BMP after gunzip, or the JPEG body as received.
fn decode(
    bufs: &mut Buffers,
    job: &mut Job,
    recorder: Option<&mut Recorder>,
) -> Result<Decoded, DecodeError> {
    let decoded = bufs
        .decoder
        .decode_0rgb(&mut job.frame.body, &mut bufs.pixels)?;
    let record_error = recorder.and_then(|recorder| {
        let (file, kind) = match decoded.kind {
            body::Kind::GzipBmp => (bufs.decoder.bmp(), FileKind::Bmp),
            body::Kind::Jpeg => (&job.frame.body[..], FileKind::Jpeg),
        };
        recorder
            .write(job.frame.camera_id, job.seq, file, kind)
            .err()
    });
    Ok(Decoded {
        seq: job.seq,
        received: job.received,
        width: decoded.width,
        height: decoded.height,
        pixels: None,
        record_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::bmp::{self, BmpError};
    use proto::gzip::Compressor;
    use proto::jpeg::{self, JpegError};
    use std::time::Duration;

    /// A gray `width` x `height` frame from camera 4.
    fn frame(width: u32, height: u32) -> Frame {
        let bgr = vec![0x40u8; (width * height * 3) as usize];
        let mut file = Vec::new();
        bmp::encode_bgr24(&bgr, width, height, &mut file).unwrap();
        gzipped(&file)
    }

    /// `file`, gzipped, as a frame from camera 4.
    fn gzipped(file: &[u8]) -> Frame {
        let mut body = Vec::new();
        Compressor::new(1).unwrap().compress_append(file, &mut body);
        Frame { camera_id: 4, body }
    }

    fn config(record_dir: Option<PathBuf>) -> Config {
        Config {
            threads: 1,
            max_bmp_len: 64 << 20,
            want_pixels: false,
            record_dir,
            http: None,
        }
    }

    /// Collects results until `done` says so (bounded, so a bug fails, not hangs).
    fn collect(decoders: &Decoders, mut done: impl FnMut(&[Done]) -> bool) -> Vec<Done> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut all = Vec::new();
        let mut batch = Vec::new();
        while !done(&all) {
            assert!(Instant::now() < deadline, "decode results: {all:?}");
            decoders.take_done(&mut batch);
            all.append(&mut batch);
            std::thread::sleep(Duration::from_millis(5));
        }
        all
    }

    #[test]
    fn a_newer_frame_replaces_one_still_waiting() {
        let decoders = Decoders::new(config(None)).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        // The first frame keeps the only worker busy (milliseconds) while
        // the next two arrive (microseconds apart).
        let submitted = [
            decoders.submit(ConnId(1), 0, frame(1500, 1500), Instant::now()),
            decoders.submit(ConnId(1), 1, frame(8, 8), Instant::now()),
            decoders.submit(ConnId(1), 2, frame(8, 8), Instant::now()),
        ];
        assert!(
            submitted
                .iter()
                .any(|s| matches!(s, Submitted::ReplacedStale(_))),
            "{submitted:?}"
        );
        let done = collect(&decoders, |d| {
            d.iter()
                .any(|d| d.outcome.as_ref().is_ok_and(|x| x.seq == 2))
        });
        let seqs: Vec<u64> = done
            .iter()
            .map(|d| d.outcome.as_ref().unwrap().seq)
            .collect();
        assert!(seqs.len() < 3, "a stale frame was decoded: {seqs:?}");
        assert_eq!(seqs.last(), Some(&2));
        assert!(
            decoders.room(ConnId(1)) > 0,
            "without --record, room never runs out"
        );
        decoders.shutdown();
    }

    #[test]
    fn with_record_every_frame_is_decoded_in_order_and_room_runs_out() {
        let dir = std::env::temp_dir().join(format!("viewer-decode-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let decoders = Decoders::new(config(Some(dir.clone()))).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        assert_eq!(decoders.room(ConnId(1)), RECORD_QUEUE_LEN);
        let mut saw_full = false;
        for seq in 0..6 {
            let size = if seq == 0 { 1500 } else { 8 };
            assert_eq!(
                decoders.submit(ConnId(1), seq, frame(size, size), Instant::now()),
                Submitted::Queued
            );
            saw_full |= decoders.room(ConnId(1)) == 0;
        }
        assert!(
            saw_full,
            "the record queue never filled while a big frame decoded"
        );
        let done = collect(&decoders, |d| d.len() == 6);
        let seqs: Vec<u64> = done
            .iter()
            .map(|d| d.outcome.as_ref().unwrap().seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        decoders.shutdown();
        let conn_dir = dir.join("cam4-127.0.0.1-9");
        assert_eq!(std::fs::read_dir(&conn_dir).unwrap().count(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 16: with --record, a closed connection kept its queued frames
    /// while the server admitted new clients, so churn piled frames up
    /// beyond what --max-clients bounds. `draining` lets the server count it.
    #[test]
    fn a_closed_connection_with_frames_to_record_is_draining_until_written() {
        let dir = tempfile_dir("draining");
        let decoders = Decoders::new(config(Some(dir.clone()))).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        // A big frame keeps the only worker busy while two more queue.
        for (seq, size) in [(0, 1500), (1, 8), (2, 8)] {
            decoders.submit(ConnId(1), seq, frame(size, size), Instant::now());
        }
        assert_eq!(decoders.draining(), 0, "open connections are not draining");
        decoders.close(ConnId(1));
        assert_eq!(decoders.draining(), 1, "closed with frames still queued");
        let deadline = Instant::now() + Duration::from_secs(60);
        while decoders.draining() > 0 {
            assert!(Instant::now() < deadline, "never drained");
            std::thread::sleep(Duration::from_millis(5));
        }
        decoders.shutdown();
        let written = std::fs::read_dir(dir.join("cam4-127.0.0.1-9"))
            .unwrap()
            .count();
        assert_eq!(
            written, 3,
            "every received frame of the recording was written"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // Without --record a closed connection's frames are dropped at once.
        let decoders = Decoders::new(config(None)).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        decoders.submit(ConnId(1), 0, frame(1500, 1500), Instant::now());
        decoders.submit(ConnId(1), 1, frame(8, 8), Instant::now());
        decoders.close(ConnId(1));
        assert_eq!(decoders.draining(), 0);
        decoders.shutdown();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("viewer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_bad_frame_fails_its_connection_only() {
        let decoders = Decoders::new(config(None)).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        decoders.open(ConnId(2), "127.0.0.1:10".parse().unwrap());
        let bad = Frame {
            camera_id: 4,
            body: b"not gzip at all, not even close".to_vec(),
        };
        decoders.submit(ConnId(1), 0, bad, Instant::now());
        decoders.submit(ConnId(2), 0, frame(8, 8), Instant::now());
        let done = collect(&decoders, |d| d.len() == 2);
        for d in &done {
            match (d.conn, &d.outcome) {
                (ConnId(1), Err(DecodeError::UnknownBody { start, len: 3 })) => {
                    assert_eq!(start, b"not")
                }
                (ConnId(2), Ok(decoded)) => assert_eq!((decoded.width, decoded.height), (8, 8)),
                other => panic!("unexpected {other:?}"),
            }
        }
        // After its error, connection 1's frames are not decoded any more.
        decoders.submit(ConnId(1), 1, frame(8, 8), Instant::now());
        decoders.close(ConnId(2));
        decoders.shutdown();
    }

    /// A `width` x `height` JPEG from camera 4, and its file.
    fn jpeg_frame(width: u32, height: u32) -> Frame {
        let bgr: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        let mut body = Vec::new();
        jpeg::Encoder::new(80)
            .unwrap()
            .encode_bgr(&bgr, width, height, &mut body)
            .unwrap();
        Frame { camera_id: 4, body }
    }

    /// `jpg` without its DHT segments, as MJPEG cameras send it.
    fn without_dht(jpg: &[u8]) -> Vec<u8> {
        let mut out = jpg[..2].to_vec();
        let mut pos = 2;
        while jpg[pos + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]));
            if jpg[pos + 1] != 0xC4 {
                out.extend_from_slice(&jpg[pos..pos + 2 + len]);
            }
            pos += 2 + len;
        }
        out.extend_from_slice(&jpg[pos..]);
        out
    }

    #[test]
    fn both_body_kinds_decode_and_record_as_received() {
        let dir = tempfile_dir("kinds");
        let mut cfg = config(Some(dir.clone()));
        cfg.want_pixels = true;
        let decoders = Decoders::new(cfg).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        let jpg = jpeg_frame(48, 32);
        let bare = Frame {
            camera_id: 4,
            body: without_dht(&jpg.body),
        };
        let sent = [frame(16, 8), jpg.clone(), bare.clone()];
        for (seq, f) in sent.iter().enumerate() {
            decoders.submit(ConnId(1), seq as u64, f.clone(), Instant::now());
        }
        let done = collect(&decoders, |d| d.len() == 3);
        let mut jpeg_pixels = Vec::new();
        for d in &done {
            let decoded = d.outcome.as_ref().unwrap();
            let size = (decoded.width, decoded.height);
            let pixels = decoded.pixels.as_ref().unwrap();
            assert_eq!(pixels.len(), (size.0 * size.1) as usize);
            match decoded.seq {
                0 => assert_eq!(size, (16, 8)),
                _ => {
                    assert_eq!(size, (48, 32));
                    jpeg_pixels.push(pixels.clone());
                }
            }
        }
        assert_eq!(
            jpeg_pixels[0], jpeg_pixels[1],
            "the standard tables decode alike"
        );
        decoders.shutdown();
        let conn_dir = dir.join("cam4-127.0.0.1-9");
        let bmp = std::fs::read(conn_dir.join("000000.bmp")).unwrap();
        assert_eq!(bmp[..2], *b"BM");
        assert_eq!(
            std::fs::read(conn_dir.join("000001.jpg")).unwrap(),
            jpg.body
        );
        assert_eq!(
            std::fs::read(conn_dir.join("000002.jpg")).unwrap(),
            bare.body,
            "recorded as received, without the tables inserted to decode it"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_jpegs_fail_their_connection_with_a_named_error() {
        let mut cfg = config(None);
        cfg.max_bmp_len = 100 * 100;
        let decoders = Decoders::new(cfg).unwrap();
        let good = jpeg_frame(64, 48).body;
        // Over the pixel cap (10 000): 101x100 declared.
        let big = jpeg_frame(101, 100).body;
        // A bomb: 16384x16384 declared in a small file.
        let mut bomb = good.clone();
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 9].copy_from_slice(&[0x40, 0, 0x40, 0]);
        let truncated = good[..good.len() / 2].to_vec();
        let mut progressive_arith = good.clone();
        progressive_arith[sof + 1] = 0xCA;
        type Expect = fn(&DecodeError) -> bool;
        let cases: [(Vec<u8>, Expect); 5] = [
            (big, |e| {
                matches!(
                    e,
                    DecodeError::Jpeg(JpegError::TooManyPixels {
                        width: 101,
                        height: 100,
                        max: 10_000
                    })
                )
            }),
            (bomb, |e| {
                matches!(
                    e,
                    DecodeError::Jpeg(JpegError::TooLittleData { width: 16384, .. })
                )
            }),
            (truncated, |e| {
                matches!(e, DecodeError::Jpeg(JpegError::Truncated { .. }))
            }),
            (progressive_arith, |e| {
                matches!(
                    e,
                    DecodeError::Jpeg(JpegError::UnsupportedProcess { marker: 0xCA })
                )
            }),
            (vec![0xFF, 0xD8], |e| {
                matches!(e, DecodeError::UnknownBody { .. })
            }),
        ];
        for (i, (body, _)) in cases.iter().enumerate() {
            decoders.open(ConnId(i as u64), "127.0.0.1:9".parse().unwrap());
            let f = Frame {
                camera_id: 1,
                body: body.clone(),
            };
            decoders.submit(ConnId(i as u64), 0, f, Instant::now());
        }
        decoders.open(ConnId(99), "127.0.0.1:10".parse().unwrap());
        decoders.submit(
            ConnId(99),
            0,
            Frame {
                camera_id: 2,
                body: good,
            },
            Instant::now(),
        );
        let done = collect(&decoders, |d| d.len() == cases.len() + 1);
        for d in &done {
            match (d.conn, &d.outcome) {
                (ConnId(99), Ok(decoded)) => assert_eq!((decoded.width, decoded.height), (64, 48)),
                (ConnId(i), Err(e)) if (i as usize) < cases.len() => {
                    assert!(cases[i as usize].1(e), "case {i}: {e}");
                    assert!(!e.to_string().is_empty());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        decoders.shutdown();
    }

    /// A 64x64 1-bit BMP: 574 bytes of file for 4096 pixels.
    fn one_bit_frame() -> Frame {
        let (w, h) = (64u32, 64u32);
        let row_len = 8usize;
        let data_off = 54 + 8;
        let file_len = data_off + row_len * h as usize;
        let mut file = Vec::new();
        file.extend_from_slice(b"BM");
        file.extend_from_slice(&(file_len as u32).to_le_bytes());
        file.extend_from_slice(&[0; 4]);
        file.extend_from_slice(&(data_off as u32).to_le_bytes());
        file.extend_from_slice(&40u32.to_le_bytes());
        file.extend_from_slice(&w.to_le_bytes());
        file.extend_from_slice(&h.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&[0; 24]);
        file.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 0]);
        file.resize(file_len, 0x55);
        gzipped(&file)
    }

    #[test]
    fn pixel_budget_is_one_pixel_per_bmp_byte() {
        let mut decoders_config = config(None);
        decoders_config.max_bmp_len = 1000;
        let decoders = Decoders::new(decoders_config).unwrap();
        decoders.open(ConnId(1), "127.0.0.1:9".parse().unwrap());
        decoders.open(ConnId(2), "127.0.0.1:10".parse().unwrap());
        let received = Instant::now() - Duration::from_millis(7);
        decoders.submit(ConnId(1), 0, frame(8, 8), received); // 246 bytes, 64 pixels: allowed
        decoders.submit(ConnId(2), 0, one_bit_frame(), Instant::now()); // 574 bytes, 4096 pixels: refused
        let done = collect(&decoders, |d| d.len() == 2);
        for d in &done {
            match (d.conn, &d.outcome) {
                (ConnId(1), Ok(decoded)) => {
                    assert_eq!((decoded.width, decoded.height), (8, 8));
                    // The receipt time comes back for the latency figures.
                    assert_eq!(decoded.received, received);
                }
                (ConnId(2), Err(DecodeError::Bmp(BmpError::TooManyPixels { .. }))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        decoders.shutdown();
    }
}
