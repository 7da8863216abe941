//! A link with added delay, for kernels without netem: two TUN devices, one
//! in the host's namespace and one in the test's, and this process copying
//! IP packets between them, holding each one for a fixed time first.
//!
//! This project's test kernels lack the netem qdisc (`CONFIG_NET_SCH_NETEM`
//! unset; fq and cake are missing too, so there is no EDT-based delay
//! either), yet a long round trip is one of the links the agent must handle.
//! Only the medium is ours: both TCP stacks, their congestion control and
//! their send queues are the real kernel's, and `tc` qdiscs still shape
//! each TUN device's egress, so a token bucket in front of the delay gives
//! "100 Mbit/s, 30 ms" as netem would.
//!
//! One thread per direction reads packets (`IFF_TUN | IFF_NO_PI`: one read is
//! one IP packet) from one device and writes them into the other after the
//! delay, in order. Like netem's default, at most [`QUEUE_LIMIT`] packets
//! wait per direction; more are dropped, as a full queue would. Dropping the
//! [`DelayLine`] stops both threads and closes the devices, which deletes
//! them (they are not persistent).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Packets waiting per direction before more are dropped (netem's default).
pub const QUEUE_LIMIT: usize = 1000;

/// Longest wait in `poll`, so a stop request is seen this soon.
const STOP_CHECK: Duration = Duration::from_millis(10);

/// `TUNSETIFF` (`_IOW('T', 202, int)`), which names and creates a TUN device
/// on the file that `/dev/net/tun` opened.
const TUNSETIFF: u64 = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags, padded
/// to the union's 24 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// Creates the TUN device `name` in the calling thread's network namespace
/// and returns the file that carries its packets (non-blocking). The device
/// lives while the file is open. Err if the name is taken (EBUSY) or TUN is
/// unavailable.
pub fn open_tun(name: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    assert!(
        name.len() < req.name.len(),
        "interface name {name} too long"
    );
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads (and may write back the name into) a `struct
    // ifreq`; `req` is one, laid out as the kernel expects, and outlives the
    // call.
    let rc = unsafe { nix::libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Like [`open_tun`], with the device created inside the network namespace
/// `/run/netns/<ns>`. A thread of its own joins that namespace (`setns`
/// applies to the calling thread only) and ends after, so no other thread of
/// the test changes namespace.
pub fn open_tun_in(ns: &str, name: &str) -> std::io::Result<File> {
    let ns_path = format!("/run/netns/{ns}");
    let name = name.to_owned();
    std::thread::spawn(move || {
        let ns_file = File::open(&ns_path)?;
        nix::sched::setns(ns_file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        open_tun(&name)
    })
    .join()
    .expect("the thread that opens the namespace's TUN device panicked")
}

/// Copies packets both ways between two TUN devices with a delay each way;
/// see the module doc. Dropping it stops the copying and deletes both
/// devices.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts copying: what `a` sends reaches `b` after `a_to_b`, and the
    /// other way after `b_to_a`.
    pub fn start(a: File, b: File, a_to_b: Duration, b_to_a: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (a_write, b_write) = (a.try_clone()?, b.try_clone()?);
        let threads = vec![
            spawn_direction("delay-line a>b", a, b_write, a_to_b, Arc::clone(&stop)),
            spawn_direction("delay-line b>a", b, a_write, b_to_a, Arc::clone(&stop)),
        ];
        Ok(DelayLine { stop, threads })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn_direction(
    name: &str,
    from: File,
    to: File,
    delay: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || forward(from, to, delay, &stop))
        .expect("spawn a delay-line thread")
}

/// One direction: read every packet `from` offers, stamp it due at
/// now + `delay`, and write the due ones `to`, oldest first.
fn forward(mut from: File, mut to: File, delay: Duration, stop: &AtomicBool) {
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = queue
            .front()
            .map_or(STOP_CHECK, |(due, _)| due.saturating_duration_since(now))
            .min(STOP_CHECK);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        // Round up, so a packet due in 0.4 ms is not polled for 0 ms in a
        // busy loop; the next pass writes it.
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let _ = poll(&mut fds, PollTimeout::from(ms));
        // Drain what arrived: reading until EAGAIN keeps `poll` calls per
        // packet low at 100 Mbit/s (about 8,500 packets a second).
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if queue.len() >= QUEUE_LIMIT {
                        continue; // a full queue drops, as netem's does
                    }
                    let mut packet = spare.pop().unwrap_or_default();
                    packet.clear();
                    packet.extend_from_slice(&buf[..n]);
                    queue.push_back((Instant::now() + delay, packet));
                }
                // EAGAIN: nothing more; EIO and the like: the device is down
                // (a test cut the link), so nothing is readable now.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while queue.front().is_some_and(|(due, _)| *due <= now) {
            let (_, packet) = queue.pop_front().expect("checked non-empty");
            // A device that is down or whose queue is full drops the packet:
            // a lossy link, which TCP handles.
            let _ = to.write(&packet);
            spare.push(packet);
        }
    }
}
