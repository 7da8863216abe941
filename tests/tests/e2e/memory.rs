//! The viewer's memory bound (README, "Memory bound"), measured on the real
//! binary: `--max-clients` hostile clients send the worst frames the flags
//! allow, with `--record` and connection churn, and the viewer's peak RSS
//! (VmHWM) must stay under the formula's value for those flags.
//!
//! The worst frames, for `--max-frame-bytes F --max-bmp-bytes B`:
//! - an 8-bit BMP of nearly B bytes and B pixels (one pixel per byte, the
//!   most any OpenCV BMP packs), half noise so that its gzip body is nearly F;
//! - a 1-bit BMP of exactly B pixels (the pixel cap), which goes through the
//!   `bmp` crate fallback and its extra 3 bytes a pixel, its body padded to
//!   nearly F with empty deflate blocks (valid gzip, inflating to the same
//!   512 KiB).
//!
//! Each client connection sends gray, 1-bit, gray, closes its side and waits
//! for the viewer to close, then connects again at once: the churn that left
//! frames queued for closed connections outside `--max-clients`. Every
//! frame of a connection the viewer accepted must be recorded (the bound
//! may refuse clients, never lose frames it received).
//!
//! The same again over mutual TLS (issue 15), with rustls clients holding a
//! camera certificate from `camstream-cert`: every connection is a full
//! handshake, and the bound has the README's TLS term per client place.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use camstream_tests::{start_viewer, PATIENCE};
use proto::{gzip, wire};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::tls::{strs, Pki};

const MIB: u64 = 1 << 20;
/// The flags under test: small, so the test runs in seconds.
const MAX_CLIENTS: u64 = 4;
const MAX_FRAME_BYTES: u64 = 2 * MIB;
const MAX_BMP_BYTES: u64 = 4 * MIB;
const DECODE_THREADS: u64 = 2;

/// The README's TLS term: per client place, with `--tls-*`.
const TLS_PLACE_BYTES: u64 = 224 << 10;

/// The README's bound for these flags, in bytes, above the idle process:
/// C·(128 KiB + (1+W)·F [+ 224 KiB with TLS]) + T·(F + B + 7P) + 8 MiB,
/// with W = 2 (`--record`) and P = min(B, 16384²) pixels.
fn bound_bytes(tls: bool) -> u64 {
    let (c, f, b, t) = (MAX_CLIENTS, MAX_FRAME_BYTES, MAX_BMP_BYTES, DECODE_THREADS);
    let w = 2;
    let p = b.min(16384 * 16384);
    let input = 128 << 10;
    let spare_bodies = 8 * MIB;
    let tls_place = if tls { TLS_PLACE_BYTES } else { 0 };
    c * (input + (1 + w) * f + tls_place) + t * (f + b + 7 * p) + spare_bodies
}

const WIDTH: u32 = 2048;
/// 54 + 1024 + 2048 x 2047 = 4 193 334 bytes, under B = 4 194 304.
const GRAY_HEIGHT: u32 = 2047;
/// 2048 x 2048 = 4 194 304 pixels: exactly the pixel cap for B.
const BITS_HEIGHT: u32 = 2048;

fn bmp_file(width: u32, height: u32, bits: u16, palette: &[[u8; 4]], pixels: &[u8]) -> Vec<u8> {
    let offset = 54 + 4 * palette.len() as u32;
    let file_len = offset + pixels.len() as u32;
    let mut f = Vec::with_capacity(file_len as usize);
    f.extend_from_slice(b"BM");
    f.extend_from_slice(&file_len.to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&offset.to_le_bytes());
    f.extend_from_slice(&40u32.to_le_bytes());
    f.extend_from_slice(&width.to_le_bytes());
    f.extend_from_slice(&height.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes()); // BI_RGB
    f.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
    f.extend_from_slice(&[0; 8]); // pixels per metre
    f.extend_from_slice(&(palette.len() as u32).to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    for entry in palette {
        f.extend_from_slice(entry);
    }
    f.extend_from_slice(pixels);
    assert_eq!(f.len(), file_len as usize);
    f
}

/// Deterministic noise (xorshift64).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The 8-bit gray frame's BMP: noise rows up to nearly F, then black.
fn gray_bmp() -> Vec<u8> {
    let palette: Vec<[u8; 4]> = (0..=255u8).map(|v| [v, v, v, 0]).collect();
    let data_len = (WIDTH * GRAY_HEIGHT) as usize;
    let noisy = MAX_FRAME_BYTES as usize - (64 << 10);
    let mut pixels = noise(noisy, 0x9E37_79B9_7F4A_7C15);
    pixels.resize(data_len, 0);
    bmp_file(WIDTH, GRAY_HEIGHT, 8, &palette, &pixels)
}

/// The 1-bit frame's BMP: noise, 256 bytes a row.
fn bits_bmp() -> Vec<u8> {
    let pixels = noise((WIDTH / 8 * BITS_HEIGHT) as usize, 0xD1B5_4A32_D192_ED03);
    bmp_file(WIDTH, BITS_HEIGHT, 1, &[[0; 4], [255; 4]], &pixels)
}

/// CRC-32 (IEEE, as gzip's trailer), bit by bit: only for test frames.
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A gzip member of `data` in stored deflate blocks, padded with empty
/// stored blocks to `len` bytes in all: what a hostile sender can do to make
/// a small BMP cost a whole `--max-frame-bytes` body.
fn padded_gzip(data: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for chunk in data.chunks(65535) {
        let n = chunk.len() as u16;
        out.push(0); // not final, stored
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let empty = [0u8, 0, 0, 0xff, 0xff];
    while out.len() + 2 * empty.len() + 8 <= len {
        out.extend_from_slice(&empty);
    }
    out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]); // final, empty
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn wire_frame(camera_id: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() as u64 <= MAX_FRAME_BYTES, "{} bytes", body.len());
    let mut out = Vec::new();
    wire::encode_frame(camera_id, body, &mut out).expect("encode frame");
    out
}

/// `VmHWM` or `VmRSS` of a process, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("viewer status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Recorded `.bmp` files, seen and deleted as they appear so the disk does
/// not fill: (connection directory, file name) -> size.
type Seen = Arc<Mutex<HashMap<(String, String), u64>>>;

fn sweep(root: &Path, seen: &Seen, delete: bool) {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return;
    };
    for dir in dirs.flatten() {
        let dir_name = dir.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".bmp") {
                continue; // a .part still being written
            }
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            seen.lock().unwrap().insert((dir_name.clone(), name), len);
            if delete {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

/// A rustls client configuration with the camera certificate `stem` of
/// `pki`, trusting its CA: what an agent with `--tls-*` holds.
fn tls_client(pki: &Pki, stem: &str) -> Arc<ClientConfig> {
    let pem = |name: &str| std::fs::read(pki.path(name)).expect("certificate file");
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&pem("ca.pem")) {
        roots.add(ca.expect("CA PEM")).expect("CA certificate");
    }
    let chain = CertificateDer::pem_slice_iter(&pem(&format!("{stem}.pem")))
        .collect::<Result<Vec<_>, _>>()
        .expect("camera PEM");
    let key = PrivateKeyDer::from_pem_slice(&pem(&format!("{stem}.key"))).expect("camera key");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client certificate");
    Arc::new(config)
}

/// Writes `frames` on `s`, through TLS when `tls` is given (the handshake
/// first, then the frames and a close_notify), and closes the write side.
fn send_frames(s: &TcpStream, frames: &[u8], tls: Option<&Arc<ClientConfig>>) -> bool {
    let Ok(mut sock) = s.try_clone() else {
        return false;
    };
    let sent = match tls {
        None => sock.write_all(frames).is_ok(),
        Some(config) => {
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            let Ok(conn) = ClientConnection::new(config.clone(), name) else {
                return false;
            };
            let mut stream = StreamOwned::new(conn, sock);
            stream.write_all(frames).is_ok() && {
                stream.conn.send_close_notify();
                stream.flush().is_ok()
            }
        }
    };
    sent && s.shutdown(Shutdown::Write).is_ok()
}

/// One hostile client: connects, sends its three frames, closes its side,
/// waits for the viewer's close, and does it again until `stop`. Returns how
/// many connections sent all their frames and were closed cleanly by the
/// viewer (accepted ones), and how many it refused.
fn churn(
    addr: SocketAddr,
    frames: Arc<Vec<u8>>,
    tls: Option<Arc<ClientConfig>>,
    stop: Arc<AtomicBool>,
) -> (usize, u64) {
    let mut accepted = 0;
    let mut refused = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let sent = send_frames(&s, &frames, tls.as_ref());
        // The viewer's close, read below TLS: it sends no more records
        // (no session tickets), only, when it refuses, an alert.
        let mut buf = [0u8; 64];
        let closed_cleanly = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        };
        if sent && closed_cleanly {
            accepted += 1;
        } else {
            refused += 1;
            thread::sleep(Duration::from_millis(2));
        }
    }
    (accepted, refused)
}

/// Issue 16: the README's bound missed the 1- and 4-bit fallback and the
/// frames that closed connections keep queued for `--record`, which churn
/// could pile up past `--max-clients`. Peak RSS, above the idle process,
/// must stay under the stated formula.
#[test]
fn worst_frames_with_record_and_churn_stay_under_the_memory_bound() {
    worst_frames_with_record_and_churn(false);
}

/// The same over mutual TLS: rustls's buffers and our raw socket buffer on
/// every place, and a handshake on every connection.
#[test]
fn worst_frames_over_tls_stay_under_the_memory_bound_with_its_tls_term() {
    worst_frames_with_record_and_churn(true);
}

fn worst_frames_with_record_and_churn(tls: bool) {
    let record = tempfile::tempdir().expect("temp dir");
    let ids: Vec<u8> = (0..MAX_CLIENTS as u8).map(|i| 10 + i).collect();
    let pki = tls.then(|| Pki::helper(&ids));
    let tls_args = pki.as_ref().map(Pki::viewer_args).unwrap_or_default();
    let record_dir = record.path().to_str().unwrap().to_owned();
    let flags = [
        ("--max-clients", MAX_CLIENTS),
        ("--max-frame-bytes", MAX_FRAME_BYTES),
        ("--max-bmp-bytes", MAX_BMP_BYTES),
        ("--decode-threads", DECODE_THREADS),
    ];
    let values: Vec<String> = flags.iter().map(|(_, v)| v.to_string()).collect();
    let mut args = vec![
        "--headless",
        "--listen",
        "127.0.0.1:0",
        "--record",
        &record_dir,
        "--stats-interval",
        "0",
    ];
    for ((flag, _), value) in flags.iter().zip(&values) {
        args.push(flag);
        args.push(value);
    }
    args.extend(strs(&tls_args));
    let (mut viewer, addr) = start_viewer(&args);
    let pid = viewer.pid();
    // The idle process: code, libraries, the decode threads' stacks.
    thread::sleep(Duration::from_millis(200));
    let idle = status_bytes(pid, "VmRSS:");

    let gray = gray_bmp();
    let bits = bits_bmp();
    assert!(gray.len() as u64 <= MAX_BMP_BYTES);
    let mut gray_body = Vec::new();
    gzip::Compressor::new(1)
        .unwrap()
        .compress_append(&gray, &mut gray_body);
    let bits_body = padded_gzip(&bits, MAX_FRAME_BYTES as usize);
    let mut check = Vec::new();
    gzip::Decompressor::new(MAX_BMP_BYTES as usize)
        .decompress(&bits_body, &mut check)
        .expect("the padded gzip is valid");
    assert_eq!(check, bits);
    eprintln!(
        "frames: gray {} B BMP in a {} B body; 1-bit {} B BMP in a {} B body",
        gray.len(),
        gray_body.len(),
        bits.len(),
        bits_body.len()
    );
    assert!(gray_body.len() as u64 > MAX_FRAME_BYTES * 9 / 10);
    assert!(bits_body.len() as u64 > MAX_FRAME_BYTES * 9 / 10);

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let sweeper = {
        let (stop, seen, root) = (stop.clone(), seen.clone(), record.path().to_owned());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sweep(&root, &seen, true);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let clients: Vec<_> = ids
        .iter()
        .map(|&id| {
            let config = pki
                .as_ref()
                .map(|pki| tls_client(pki, &format!("camera-{id}")));
            let frames = [
                wire_frame(id, &gray_body),
                wire_frame(id, &bits_body),
                wire_frame(id, &gray_body),
            ]
            .concat();
            let (frames, stop) = (Arc::new(frames), stop.clone());
            thread::spawn(move || churn(addr, frames, config, stop))
        })
        .collect();

    // Long enough for dozens of connections, even on a busy machine.
    let peak_sampled = AtomicU64::new(0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        thread::sleep(Duration::from_millis(100));
        peak_sampled.fetch_max(status_bytes(pid, "VmRSS:"), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let mut accepted = 0;
    let mut refused = 0;
    for client in clients {
        let (a, r) = client.join().expect("client thread");
        accepted += a;
        refused += r;
    }
    sweeper.join().unwrap();
    let peak = status_bytes(pid, "VmHWM:");

    // SIGINT flushes every frame still queued for the disk.
    viewer.signal("INT");
    let status = viewer.wait_exit(PATIENCE).expect("viewer exits on SIGINT");
    assert!(status.success(), "viewer: {status:?}\n{}", viewer.tail(20));
    sweep(record.path(), &seen, false);

    let bound = bound_bytes(tls);
    let mb = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "{}: idle {:.1} MiB, peak {:.1} MiB (sampled {:.1}), above idle {:.1} MiB, bound {:.1} MiB; \
         {} connections recorded, {refused} refused",
        if tls { "TLS" } else { "plaintext" },
        mb(idle),
        mb(peak),
        mb(peak_sampled.load(Ordering::Relaxed)),
        mb(peak - idle),
        mb(bound),
        accepted
    );
    let dropped: Vec<String> = viewer
        .lines()
        .into_iter()
        .filter(|l| l.contains("dropped") || l.contains("recording stopped"))
        .collect();
    assert!(dropped.is_empty(), "the frames are valid: {dropped:#?}");
    assert!(
        accepted >= 6,
        "too little churn to mean anything: {accepted} connections"
    );

    // Every frame of every accepted connection was recorded, whole: one
    // directory per connection (a refused one never gets a directory), each
    // with its three frames.
    let seen = seen.lock().unwrap();
    let mut per_dir: HashMap<&str, Vec<u64>> = HashMap::new();
    for ((dir, _), len) in seen.iter() {
        per_dir.entry(dir).or_default().push(*len);
    }
    let expected = [bits.len() as u64, gray.len() as u64, gray.len() as u64];
    for (dir, lens) in &mut per_dir {
        lens.sort_unstable();
        assert_eq!(lens[..], expected, "{dir}");
    }
    assert_eq!(
        per_dir.len(),
        accepted,
        "one recording per accepted connection"
    );

    assert!(
        peak - idle <= bound,
        "peak RSS {:.1} MiB above the idle {:.1} MiB, over the bound {:.1} MiB",
        mb(peak - idle),
        mb(idle),
        mb(bound)
    );
}
