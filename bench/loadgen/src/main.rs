//! camstream's benchmark load tools, driven by `bench/run` (see bench/README.md).
//!
//! - `loadgen send`: N cameras, one thread each, replaying one pre-compressed
//!   frame at R fps to a viewer. Each thread behaves like a real agent: it
//!   wakes on its camera's clock, and if a send ran late it sends the newest
//!   frame at once and counts the ticks it missed, instead of building a
//!   backlog. The threads sleep between frames, so the generator's own CPU
//!   is mostly the kernel's loopback copy; `bench/run` measures and reports it.
//!   With `--tls-ca/--tls-cert/--tls-key` each camera speaks TLS 1.3
//!   (rustls, as the agent does), for the viewer's TLS figures.
//! - `loadgen sink`: a discard server for the agent benchmarks. It walks the
//!   `[id][u32 BE len][body]` headers without copying bodies, so it can count
//!   whole frames at next to no cost, and prints the count when its senders
//!   have gone.
//!
//! Both print one JSON object on stdout at the end, for `bench/bench.py`.
//! Nothing here is a test: these tools print figures, they never judge them.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// camstream benchmark load tools.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a pre-compressed frame from N concurrent cameras at R fps.
    Send {
        /// The viewer to send to.
        #[arg(long)]
        server: SocketAddr,
        /// Number of concurrent cameras (connections).
        #[arg(long, default_value_t = 1)]
        clients: u32,
        /// Frames per second per camera; 0 sends as fast as the socket takes them.
        #[arg(long, default_value_t = 30.0)]
        fps: f64,
        /// How long to send, in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// A gzip body (one frame, no wire header), e.g. made by bench/prepare.
        #[arg(long)]
        frame: std::path::PathBuf,
        /// Camera id of the first client; the others count up from it.
        #[arg(long, default_value_t = 0)]
        first_id: u8,
        /// Speak TLS 1.3, trusting the viewer's certificate from this CA.
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<std::path::PathBuf>,
        /// Client certificate (PEM); it must not name camera ids, or only
        /// the ones sent.
        #[arg(long)]
        tls_cert: Option<std::path::PathBuf>,
        /// Its key (PEM).
        #[arg(long)]
        tls_key: Option<std::path::PathBuf>,
        /// The name to check in the viewer's certificate.
        #[arg(long, default_value = "127.0.0.1")]
        tls_server_name: String,
    },
    /// Accept connections and discard whole frames, counting them.
    Sink {
        /// Address to listen on; port 0 picks one. The first stdout line is `listening on ADDR`.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Exit after this many connections have closed.
        #[arg(long, default_value_t = 1)]
        conns: u32,
    },
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Send {
            server,
            clients,
            fps,
            seconds,
            frame,
            first_id,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
        } => {
            let tls = match (tls_ca, tls_cert, tls_key) {
                (Some(ca), Some(cert), Some(key)) => {
                    tls_config(&ca, &cert, &key).map(|c| Some((c, tls_server_name)))
                }
                _ => Ok(None),
            };
            tls.and_then(|tls| send(server, clients, fps, seconds, &frame, first_id, tls))
        }
        Command::Sink { listen, conns } => sink(listen, conns),
    };
    if let Err(err) = result {
        eprintln!("loadgen: {err:#}");
        std::process::exit(1);
    }
}

/// TLS 1.3 with the ring provider and a client certificate, as the agent.
fn tls_config(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("--tls-ca")? {
        roots.add(c.context("--tls-ca")?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .context("--tls-cert")?
        .collect::<Result<Vec<_>, _>>()
        .context("--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(key).context("--tls-key")?;
    // AES-128-GCM first, as the agent asks on a CPU with AES instructions.
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// What one camera thread did.
struct ClientReport {
    id: u8,
    sent: u64,
    missed_ticks: u64,
    error: Option<String>,
}

fn send(
    server: SocketAddr,
    clients: u32,
    fps: f64,
    seconds: f64,
    frame: &std::path::Path,
    first_id: u8,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
) -> Result<()> {
    if clients == 0 || clients > 256 {
        bail!("--clients {clients} is out of range 1..=256");
    }
    let valid = fps >= 0.0 && fps.is_finite() && seconds > 0.0 && seconds.is_finite();
    if !valid {
        bail!("--fps must be >= 0 and --seconds > 0");
    }
    let body = std::fs::read(frame).with_context(|| {
        format!(
            "cannot read the frame {} (run bench/run to make it)",
            frame.display()
        )
    })?;
    let body_len = u32::try_from(body.len()).context("frame body is over 4 GiB")?;
    if body_len == 0 {
        bail!("frame file {} is empty", frame.display());
    }

    // Connect everyone first, so the measured window has all cameras live.
    let mut streams = Vec::new();
    for i in 0..clients {
        let stream = TcpStream::connect(server).with_context(|| {
            format!("client {i}: cannot connect to {server} (is the viewer listening?)")
        })?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        // A server that stops reading must not hang the benchmark.
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .context("write timeout")?;
        let stream: Box<dyn Write + Send> = match &tls {
            None => Box::new(stream),
            Some((config, name)) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .context("--tls-server-name")?;
                let mut conn = rustls::ClientConnection::new(config.clone(), name)?;
                let mut sock = stream;
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)
                        .with_context(|| format!("client {i}: TLS handshake"))?;
                }
                Box::new(rustls::StreamOwned::new(conn, sock))
            }
        };
        streams.push(stream);
    }

    let barrier = Arc::new(Barrier::new(streams.len() + 1));
    let period = if fps > 0.0 {
        Some(Duration::from_secs_f64(1.0 / fps))
    } else {
        None
    };
    let length = Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let id = first_id.wrapping_add(i as u8);
        // One buffer per frame, header and body together: one write, as the agent does.
        let mut message = Vec::with_capacity(5 + body.len());
        message.push(id);
        message.extend_from_slice(&body_len.to_be_bytes());
        message.extend_from_slice(&body);
        let barrier = Arc::clone(&barrier);
        handles.push(thread::spawn(move || {
            barrier.wait();
            let start = Instant::now();
            let mut report = ClientReport {
                id,
                sent: 0,
                missed_ticks: 0,
                error: None,
            };
            // The tick index of the last frame sent.
            let mut last_tick: Option<u64> = None;
            loop {
                let now = start.elapsed();
                if now >= length {
                    break;
                }
                if let Some(period) = period {
                    // The newest tick that has happened, but never one already sent.
                    let current = (now.as_secs_f64() / period.as_secs_f64()) as u64;
                    let next = match last_tick {
                        None => 0,
                        Some(last) => (last + 1).max(current),
                    };
                    if let Some(last) = last_tick {
                        report.missed_ticks += next - last - 1;
                    }
                    let due = period.mul_f64(next as f64);
                    if due >= length {
                        break;
                    }
                    if due > now {
                        thread::sleep(due - now);
                    }
                    last_tick = Some(next);
                }
                if let Err(err) = stream.write_all(&message) {
                    report.error = Some(err.to_string());
                    break;
                }
                report.sent += 1;
            }
            report
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut reports = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(report) => reports.push(report),
            Err(_) => bail!("a sender thread panicked"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    let mut json = format!(
        "{{\"clients\":{clients},\"fps_target\":{fps},\"seconds\":{elapsed:.4},\"frame_len\":{body_len},\"per_client\":["
    );
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let error = match &r.error {
            Some(e) => format!("\"{}\"", e.replace(['"', '\\'], "'")),
            None => "null".to_string(),
        };
        json.push_str(&format!(
            "{{\"id\":{},\"sent\":{},\"missed_ticks\":{},\"error\":{error}}}",
            r.id, r.sent, r.missed_ticks
        ));
    }
    json.push_str("]}");
    println!("{json}");
    Ok(())
}

/// Per-connection frame counting without buffering bodies.
#[derive(Default)]
struct Walker {
    header: [u8; 5],
    header_len: usize,
    body_left: u64,
    frames: u64,
    bytes: u64,
}

impl Walker {
    fn feed(&mut self, mut input: &[u8]) {
        self.bytes += input.len() as u64;
        while !input.is_empty() {
            if self.body_left > 0 {
                let take = (self.body_left as usize).min(input.len());
                self.body_left -= take as u64;
                input = &input[take..];
                if self.body_left == 0 {
                    self.frames += 1;
                }
                continue;
            }
            let take = (5 - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&input[..take]);
            self.header_len += take;
            input = &input[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.body_left = u64::from(len);
                if len == 0 {
                    // Invalid on the wire, but the sink only counts; treat as an empty frame.
                    self.frames += 1;
                }
            }
        }
    }
}

fn sink(listen: SocketAddr, conns: u32) -> Result<()> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("local address")?;
    println!("listening on {addr}");
    std::io::stdout().flush().context("stdout")?;
    let mut handles = Vec::new();
    for _ in 0..conns {
        let (mut stream, _) = listener.accept().context("accept")?;
        handles.push(thread::spawn(move || {
            let mut walker = Walker::default();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => walker.feed(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            (
                walker.frames,
                walker.bytes,
                walker.body_left > 0 || walker.header_len > 0,
            )
        }));
    }
    let (mut frames, mut bytes, mut partial) = (0u64, 0u64, false);
    for handle in handles {
        match handle.join() {
            Ok((f, b, p)) => {
                frames += f;
                bytes += b;
                partial |= p;
            }
            Err(_) => bail!("a sink thread panicked"),
        }
    }
    println!("{{\"frames\":{frames},\"bytes\":{bytes},\"partial_at_close\":{partial}}}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Walker;

    fn message(id: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![id];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn walker_counts_frames_whatever_the_split() {
        let mut stream = message(1, b"abc");
        stream.extend(message(2, &[7u8; 300]));
        stream.extend(message(3, b"z"));
        for chunk in 1..=stream.len() {
            let mut w = Walker::default();
            for piece in stream.chunks(chunk) {
                w.feed(piece);
            }
            assert_eq!(
                (w.frames, w.bytes),
                (3, stream.len() as u64),
                "chunk size {chunk}"
            );
            assert_eq!((w.body_left, w.header_len), (0, 0));
        }
    }

    #[test]
    fn walker_sees_a_partial_frame() {
        let stream = message(1, b"abcdef");
        let mut w = Walker::default();
        w.feed(&stream[..8]);
        assert_eq!(w.frames, 0);
        assert!(w.body_left > 0);
    }
}
