//! Optional mutual TLS on the listener (issue 15): `--tls-cert`, `--tls-key`
//! and `--tls-client-ca` turn it on. TLS 1.3 only, and every client must
//! present a certificate signed by the client CA.
//!
//! rustls is driven by the viewer's own poll(2) loop through its unbuffered
//! API (`UnbufferedServerConnection`): when the socket is readable, we read
//! it into a buffer of our own and `process_tls_records` works through it,
//! state by state. Application data is decrypted in place there and copied
//! into the caller's buffer; records rustls wants sent (the handshake's
//! flight, an alert) are queued in another buffer of ours, and while it
//! holds bytes the loop polls for POLLOUT too. [`TlsStream`] wraps that in
//! `io::Read`, so `Conn` reads plaintext from it exactly as it reads a
//! `TcpStream`: the framing, the limits and newest-frame-wins do not change,
//! and the handshake needs no loop of its own.
//!
//! - **Why unbuffered.** The buffered `ServerConnection` (rustls's
//!   `tlsserver-mio` example, our first version) copies every byte once
//!   more: from our socket buffer into its record buffer, at most 4 KiB per
//!   `read_tls`, each followed by a `process_new_packets`. That was 50-60 µs
//!   of a 2.7 ms frame (README "TLS against plaintext"). One copy inside
//!   rustls remains in both APIs (each decrypted record goes into a fresh
//!   `Vec`; in-place reading is a rustls TODO), then ours into the frame.
//! - **Nothing blocks.** The socket is non-blocking; a client that stops in
//!   the middle of the handshake is one more silent connection, and
//!   `--idle-timeout` counts from the accept until the first plaintext byte
//!   (handshake bytes do not count as traffic).
//! - **Refusals are named** ([`TlsError`]): a client that does not speak TLS
//!   (a plaintext agent), one with no certificate, one whose certificate
//!   another CA signed, a record that fails its integrity check (tampering).
//!   rustls queues the matching alert; it is sent once, best effort, before
//!   the connection closes.
//! - **The unbuffered contract.** rustls may keep ranges of our buffer (a
//!   handshake message it is joining), so every call sees the same bytes,
//!   less those it said to discard, and never an empty stand-in: its
//!   checks of that are assertions.
//! - **Identity** ([`pki::identity`]): once the handshake is done, the
//!   camera ids the client certificate names become [`TlsStream::camera_ids`];
//!   `Conn` refuses a frame header carrying any other id.
//!
//! Memory per TLS connection, on top of a plaintext one: our socket buffer
//! ([`INCOMING_LEN`], which also holds a handshake message rustls is joining),
//! the client's certificate chain or a handshake message being processed (up
//! to 64 KiB), one decrypted record in rustls and the rest of one in ours
//! (16 KiB each), and what waits to be sent (a few KiB; refused beyond
//! 64 KiB): at most 224 KiB, the README's L. `bench/tls_memory.py` measures
//! it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use pki::identity::{certificate_camera_ids, CameraIds};
use pki::pem::{load_certs, load_key};
use rustls::server::{NoServerSessionStorage, UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, InsufficientSizeError};
use rustls::{CertificateError, RootCertStore, ServerConfig};

/// The socket is read into a buffer this big, where rustls decrypts in
/// place: 64 KiB holds rustls's largest handshake message (and so any
/// record), and bigger reads mean fewer `recv` calls per frame.
pub const INCOMING_LEN: usize = 64 << 10;

/// Bytes queued for the client before it is refused as not reading them.
/// rustls queues a handshake flight and at most one alert or key update
/// reply, a few KiB: a bound that only a bug would reach.
const OUTGOING_MAX: usize = 64 << 10;

/// Where the listener's certificate, key and client CA come from.
#[derive(Debug, Clone)]
pub struct Files<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: &'a Path,
}

/// The listener's TLS configuration: TLS 1.3 only, the ring provider, a
/// client certificate required, no session tickets (agents reconnect rarely,
/// and a full handshake checks the certificate again each time).
pub fn server_config(files: &Files) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = load_certs(files.cert, "--tls-cert")?;
    let key = load_key(files.key, "--tls-key")?;
    let mut roots = RootCertStore::empty();
    for ca in load_certs(files.client_ca, "--tls-client-ca")? {
        roots.add(ca).with_context(|| {
            format!(
                "--tls-client-ca {}: a certificate in it is not a usable CA certificate",
                files.client_ca.display()
            )
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("cannot build the client certificate verifier from --tls-client-ca")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("the ring provider lacks TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "--tls-cert {} and --tls-key {} do not make a usable pair (is the key the one the certificate was issued for?)",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    // The client's cipher order wins: an agent on a CPU without AES
    // instructions asks for ChaCha20-Poly1305 first.
    config.ignore_client_order = false;
    Ok(Arc::new(config))
}

/// Why TLS ended a connection; its Display is what the log says.
#[derive(Debug)]
pub enum TlsError {
    /// rustls refused what the peer sent, or its certificate. `handshaking`:
    /// it happened before the handshake was complete.
    Refused {
        error: rustls::Error,
        handshaking: bool,
    },
    /// The peer closed the connection before the handshake was complete.
    ClosedInHandshake,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rustls::Error as E;
        let (error, handshaking) = match self {
            TlsError::ClosedInHandshake => {
                return f.write_str(
                    "TLS: closed the connection during the handshake (does the agent trust this viewer's certificate? its log says why)",
                )
            }
            TlsError::Refused { error, handshaking } => (error, *handshaking),
        };
        let stage = if handshaking {
            "TLS handshake refused"
        } else {
            "TLS error"
        };
        write!(f, "{stage}: ")?;
        match error {
            E::InvalidMessage(_) | E::InappropriateMessage { .. } if handshaking => write!(
                f,
                "not a TLS client ({error}); a plaintext agent? this viewer requires TLS: give the agent --tls-ca, --tls-cert and --tls-key"
            ),
            E::InappropriateHandshakeMessage { .. } if handshaking => write!(
                f,
                "not a TLS client ({error}); a plaintext agent? this viewer requires TLS: give the agent --tls-ca, --tls-cert and --tls-key"
            ),
            E::NoCertificatesPresented => f.write_str(
                "no client certificate; --tls-client-ca requires one (give the agent --tls-cert and --tls-key, issued by that CA)",
            ),
            E::InvalidCertificate(e) => {
                f.write_str("client certificate refused: ")?;
                match e {
                    CertificateError::UnknownIssuer => f.write_str(
                        "not signed by the --tls-client-ca CA (issue the camera a certificate from that CA)",
                    ),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        write!(f, "it has expired ({error}); issue the camera a new one")
                    }
                    CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. } => write!(
                        f,
                        "it is not valid yet ({error}); is this machine's clock right?"
                    ),
                    CertificateError::BadSignature => f.write_str(
                        "not signed by the --tls-client-ca CA: its signature does not verify (another CA of the same name signed it, or it is forged)",
                    ),
                    _ => write!(f, "{error}"),
                }
            }
            E::DecryptError => f.write_str(
                "a record failed its integrity check (changed on the way, or a broken peer)",
            ),
            E::PeerIncompatible(_) => write!(
                f,
                "{error} (this viewer speaks TLS 1.3 only, with AES-GCM or ChaCha20-Poly1305)"
            ),
            E::AlertReceived(alert) => write!(
                f,
                "the client sent alert {alert:?} (a BadCertificate or UnknownCA alert means it does not trust this viewer's --tls-cert: give it the CA that signed it with --tls-ca)"
            ),
            _ => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// One accepted TLS connection as a non-blocking `io::Read` of plaintext.
pub struct TlsStream {
    sock: TcpStream,
    tls: UnbufferedServerConnection,
    /// TLS bytes read from the socket; `incoming[start..filled]` not yet
    /// processed. rustls decrypts each record in place here.
    incoming: Box<[u8]>,
    start: usize,
    filled: usize,
    /// The last read stopped because the caller's buffer was full: records
    /// may still wait in `incoming` or in rustls.
    unread_records: bool,
    /// Decrypted plaintext the caller's buffer had no room for:
    /// `plaintext[plaintext_start..]`, read before anything else.
    plaintext: Vec<u8>,
    plaintext_start: usize,
    /// TLS bytes for the peer (a handshake flight, an alert, a key update
    /// reply); `outgoing[sent..]` not yet taken by the socket.
    outgoing: Vec<u8>,
    sent: usize,
    /// The socket said EOF, or the client sent close_notify.
    eof: bool,
    /// Set once, when the handshake completes.
    camera_ids: Option<CameraIds>,
    /// rustls refused the peer: every later read returns this again.
    failed: Option<TlsError>,
}

/// What one pass of rustls over `incoming` left to do.
enum Step {
    /// Go on: the caller's buffer has room and rustls may have more.
    More,
    /// The caller's buffer is full.
    Full,
    /// Every whole record is processed; rustls needs more bytes.
    NeedInput,
    /// The client sent close_notify.
    PeerClosed,
}

impl TlsStream {
    /// `sock` must be non-blocking.
    pub fn new(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            tls,
            incoming: vec![0; INCOMING_LEN].into_boxed_slice(),
            start: 0,
            filled: 0,
            unread_records: false,
            plaintext: Vec::new(),
            plaintext_start: 0,
            outgoing: Vec::new(),
            sent: 0,
            eof: false,
            camera_ids: None,
            failed: None,
        })
    }

    /// The camera ids the client's certificate names; `None` before the
    /// handshake is done, and when it names none (any id may come).
    pub fn camera_ids(&self) -> Option<CameraIds> {
        self.camera_ids.filter(|ids| !ids.is_empty())
    }

    /// Bytes for the peer wait for the socket: poll for POLLOUT too.
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Decrypted plaintext, whole records or the end (close_notify) wait in
    /// our buffers: the socket may not poll readable again, so read without
    /// waiting.
    pub fn has_buffered_input(&self) -> bool {
        self.plaintext_start < self.plaintext.len() || self.unread_records || self.eof
    }

    /// Sends what is queued for the peer, as far as the socket takes it now.
    fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.outgoing.len() {
            match self.sock.write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outgoing.clear();
        self.sent = 0;
        Ok(())
    }

    /// The error a refusal reads as, now and on every later read.
    fn failure(&self) -> Option<io::Error> {
        let e = self.failed.as_ref()?;
        let again = match e {
            TlsError::Refused { error, handshaking } => TlsError::Refused {
                error: error.clone(),
                handshaking: *handshaking,
            },
            TlsError::ClosedInHandshake => TlsError::ClosedInHandshake,
        };
        Some(io::Error::new(io::ErrorKind::InvalidData, again))
    }

    /// rustls refused the peer: queue the alert it made, try once to send
    /// it (never waits), and fail this read and every later one.
    fn refuse(&mut self, error: rustls::Error, handshaking: bool) -> io::Error {
        // After an error, rustls hands out the alert it queued as the next
        // record to encode. Ask once: it must see the same buffer as before,
        // less what it said to discard (it may hold ranges of a handshake
        // message in it), and asking again would process the bad input again.
        let incoming = &mut self.incoming[self.start..self.filled];
        let status = self.tls.process_tls_records(incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut record)) = status.state {
            let _ = encode(&mut record, &mut self.outgoing);
        }
        let _ = self.flush();
        self.failed = Some(TlsError::Refused { error, handshaking });
        self.failure()
            .unwrap_or_else(|| io::Error::other("TLS refused"))
    }

    /// Reads the socket into `incoming` (`WouldBlock` when it has nothing).
    /// `Ok(false)` at EOF.
    fn fill_incoming(&mut self) -> io::Result<bool> {
        // What is left is at most one partial record: move it to the front.
        self.incoming.copy_within(self.start..self.filled, 0);
        self.filled -= self.start;
        self.start = 0;
        if self.filled == self.incoming.len() {
            // Cannot happen with rustls's limits (a record is at most 18 KiB,
            // a handshake message 64 KiB); never read into an empty slice.
            return Err(io::Error::other(
                "TLS: a record or handshake message larger than the viewer's buffer",
            ));
        }
        match self.sock.read(&mut self.incoming[self.filled..])? {
            0 => Ok(false),
            n => {
                self.filled += n;
                Ok(true)
            }
        }
    }

    /// One pass of rustls over `incoming[start..filled]`: decrypted records
    /// go to `buf[*n..]` (the rest of one that does not fit, to
    /// `plaintext`); a record rustls wants sent is queued in `outgoing`.
    fn step(&mut self, buf: &mut [u8], n: &mut usize) -> io::Result<Step> {
        let handshaking = self.tls.is_handshaking();
        let status = self
            .tls
            .process_tls_records(&mut self.incoming[self.start..self.filled]);
        let mut discard = status.discard;
        let step = match status.state {
            Err(error) => {
                self.start += discard;
                return Err(self.refuse(error, handshaking));
            }
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                let mut step = Step::More;
                while *n < buf.len() {
                    let Some(record) = records.next_record() else {
                        break;
                    };
                    let record = record.map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                    discard += record.discard;
                    let payload = record.payload;
                    let fits = payload.len().min(buf.len() - *n);
                    buf[*n..*n + fits].copy_from_slice(&payload[..fits]);
                    *n += fits;
                    if fits < payload.len() {
                        self.plaintext.clear();
                        self.plaintext.extend_from_slice(&payload[fits..]);
                        self.plaintext_start = 0;
                    }
                }
                if *n == buf.len() {
                    step = Step::Full;
                }
                step
            }
            Ok(ConnectionState::EncodeTlsData(mut record)) => {
                encode(&mut record, &mut self.outgoing)?;
                if self.outgoing.len() > OUTGOING_MAX {
                    return Err(io::Error::other(
                        "TLS: the client does not read what the viewer sends",
                    ));
                }
                Step::More
            }
            Ok(ConnectionState::TransmitTlsData(sending)) => {
                // Queued in `outgoing` from here on: sent as the socket
                // takes it, POLLOUT meanwhile (`wants_write`).
                sending.done();
                Step::More
            }
            Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                Step::NeedInput
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Step::PeerClosed,
            // Early data stays off (`max_early_data_size` 0), and a state
            // this code does not know is not one to guess about.
            Ok(other) => {
                return Err(io::Error::other(format!(
                    "TLS: unexpected connection state {other:?}"
                )))
            }
        };
        self.start += discard;
        if handshaking && !self.tls.is_handshaking() {
            self.camera_ids = Some(self.certificate_ids());
        }
        Ok(step)
    }

    /// The camera ids among the verified client certificate's DNS names.
    fn certificate_ids(&self) -> CameraIds {
        let Some(cert) = self.tls.peer_certificates().and_then(<[_]>::first) else {
            return CameraIds::default();
        };
        certificate_camera_ids(cert)
    }
}

/// Appends the record rustls wants sent to `outgoing`.
fn encode<Data>(record: &mut EncodeTlsData<'_, Data>, outgoing: &mut Vec<u8>) -> io::Result<()> {
    let at = outgoing.len();
    let required = match record.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
        Err(e) => return Err(io::Error::other(format!("TLS: {e}"))),
    };
    outgoing.resize(at + required, 0);
    match record.encode(&mut outgoing[at..]) {
        Ok(written) => {
            outgoing.truncate(at + written);
            Ok(())
        }
        Err(e) => {
            outgoing.truncate(at);
            Err(io::Error::other(format!("TLS: {e}")))
        }
    }
}

impl Read for TlsStream {
    /// Plaintext, `Ok(0)` at the end (close_notify, or a TCP close: a frame
    /// cut short is still caught by the frame reader), `WouldBlock` when
    /// the socket has nothing more, or an error whose inner error is a
    /// [`TlsError`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        // A handshake flight POLLOUT woke us for.
        self.flush()?;
        let left = &self.plaintext[self.plaintext_start..];
        let mut n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.plaintext_start += n;
        // After close_notify (or the socket's EOF) nothing more comes:
        // what was left, then `Ok(0)`.
        if self.plaintext_start < self.plaintext.len() || buf.is_empty() || self.eof {
            return Ok(n);
        }
        loop {
            match self.step(buf, &mut n)? {
                Step::More => {}
                Step::Full => {
                    self.unread_records = true;
                    self.flush()?;
                    return Ok(n);
                }
                Step::PeerClosed => {
                    self.eof = true;
                    self.unread_records = false;
                    return Ok(n);
                }
                Step::NeedInput => {
                    self.unread_records = false;
                    self.flush()?;
                    if n > 0 {
                        return Ok(n);
                    }
                    if !self.fill_incoming()? {
                        self.eof = true;
                        if self.tls.is_handshaking() {
                            self.failed = Some(TlsError::ClosedInHandshake);
                            return Err(self
                                .failure()
                                .unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into()));
                        }
                        return Ok(0);
                    }
                }
            }
        }
    }
}

impl AsFd for TlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_do() {
        let refused = |error, handshaking| TlsError::Refused { error, handshaking }.to_string();
        let no_cert = refused(rustls::Error::NoCertificatesPresented, true);
        assert!(no_cert.contains("no client certificate"), "{no_cert}");
        let other_ca = refused(
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            true,
        );
        assert!(
            other_ca.contains("not signed by the --tls-client-ca CA"),
            "{other_ca}"
        );
        let plaintext = refused(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            true,
        );
        assert!(plaintext.contains("not a TLS client"), "{plaintext}");
        let tampered = refused(rustls::Error::DecryptError, false);
        assert!(
            tampered.starts_with("TLS error: a record failed its integrity check"),
            "{tampered}"
        );
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let files = Files {
            cert: &missing,
            key: &empty,
            client_ca: &empty,
        };
        let e = format!("{:#}", server_config(&files).unwrap_err());
        assert!(e.starts_with("cannot read --tls-cert "), "{e}");
        let files = Files {
            cert: &empty,
            ..files
        };
        let e = format!("{:#}", server_config(&files).unwrap_err());
        assert!(e.contains("holds no certificate"), "{e}");
    }

    /// A CA, the viewer's certificate and a client certificate naming
    /// camera 3, written as PEM files, and the client's configuration.
    struct Pki {
        dir: tempfile::TempDir,
        client: Arc<rustls::ClientConfig>,
    }

    impl Pki {
        fn new() -> Pki {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
            let dir = tempfile::tempdir().unwrap();
            let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text);
            let ca_key = KeyPair::generate().unwrap();
            let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = ca.self_signed(&ca_key).unwrap();
            write("ca.pem", ca_cert.pem()).unwrap();
            let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
            let leaf = |name: String| {
                let key = KeyPair::generate().unwrap();
                let cert = CertificateParams::new(vec![name])
                    .unwrap()
                    .signed_by(&key, &issuer)
                    .unwrap();
                (cert.pem(), key.serialize_pem())
            };
            let (cert, key) = leaf("viewer.test".into());
            write("viewer.pem", cert).unwrap();
            write("viewer.key", key).unwrap();
            let (cert, key) = leaf(pki::identity::camera_dns_name(3));
            write("camera.pem", cert).unwrap();
            write("camera.key", key).unwrap();

            let mut roots = RootCertStore::empty();
            roots.add(ca_cert.der().clone()).unwrap();
            let path = |name: &str| dir.path().join(name);
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                load_certs(&path("camera.pem"), "camera").unwrap(),
                load_key(&path("camera.key"), "camera").unwrap(),
            )
            .unwrap();
            Pki {
                dir,
                client: Arc::new(client),
            }
        }

        fn server_config(&self) -> Arc<ServerConfig> {
            let path = |name: &str| self.dir.path().join(name);
            let (cert, key, client_ca) = (path("viewer.pem"), path("viewer.key"), path("ca.pem"));
            server_config(&Files {
                cert: &cert,
                key: &key,
                client_ca: &client_ca,
            })
            .unwrap()
        }
    }

    /// A connected pair: our non-blocking server end, and the client's
    /// blocking socket.
    fn pair(pki: &Pki) -> (TlsStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (TlsStream::new(server, pki.server_config()).unwrap(), client)
    }

    /// Reads with `sizes` in turn, as the frame reader does (a header, a
    /// body tail), waiting as the poll loop would, until `Ok(0)` or an error.
    fn read_all(server: &mut TlsStream, sizes: &[usize]) -> (Vec<u8>, io::Result<()>) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut got = Vec::new();
        let mut buf = vec![0; *sizes.iter().max().unwrap()];
        for size in sizes.iter().cycle() {
            if !server.has_buffered_input() {
                let events = if server.wants_write() {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                let mut fds = [PollFd::new(server.as_fd(), events)];
                assert_eq!(
                    poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(),
                    1,
                    "stalled"
                );
            }
            match server.read(&mut buf[..*size]) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (got, Err(e)),
            }
        }
        unreachable!()
    }

    /// Bytes no two records would share by chance.
    fn sent_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Whatever the sizes the reader asks for, it gets the bytes sent, in
    /// order, once each: records split across reads, several records in
    /// one read, and close_notify as the end.
    #[test]
    fn reads_of_any_size_get_the_plaintext_sent_then_the_end() {
        let pki = Pki::new();
        let sent = sent_bytes(300_000);
        for sizes in [&[1, 5, 4096][..], &[70_000], &[16_384, 3], &[300_000]] {
            let (mut server, sock) = pair(&pki);
            let config = pki.client.clone();
            let to_send = sent.clone();
            let client = std::thread::spawn(move || {
                let name = "viewer.test".try_into().unwrap();
                let conn = rustls::ClientConnection::new(config, name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                tls.write_all(&to_send).unwrap();
                tls.conn.send_close_notify();
                tls.flush().unwrap();
                tls
            });
            let (got, end) = read_all(&mut server, sizes);
            end.unwrap();
            assert!(
                got == sent,
                "sizes {sizes:?}: {} bytes of {} came",
                got.len(),
                sent.len()
            );
            let ids = server.camera_ids().expect("the certificate names camera 3");
            assert_eq!(ids.iter().collect::<Vec<_>>(), [3]);
            drop(client.join().unwrap());
        }
    }

    /// A key update from the client mid-stream: the records after it come
    /// under new keys, and reading goes on. (rustls answers it lazily, with
    /// the next record it sends, and the viewer sends none.)
    #[test]
    fn a_key_update_mid_stream_changes_nothing_read() {
        let pki = Pki::new();
        let (mut server, sock) = pair(&pki);
        let config = pki.client.clone();
        let client = std::thread::spawn(move || {
            let name = "viewer.test".try_into().unwrap();
            let conn = rustls::ClientConnection::new(config, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            tls.write_all(&sent_bytes(50_000)).unwrap();
            tls.conn.refresh_traffic_keys().unwrap();
            tls.write_all(&sent_bytes(50_000)).unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            tls
        });
        let (got, end) = read_all(&mut server, &[65_536]);
        end.unwrap();
        assert!(got == [sent_bytes(50_000), sent_bytes(50_000)].concat());
        drop(client.join().unwrap());
    }

    /// A client that hangs up in the middle of its hello is named as such,
    /// and so is every later read.
    #[test]
    fn a_close_in_the_handshake_is_an_error_that_stays() {
        let pki = Pki::new();
        let (mut server, mut sock) = pair(&pki);
        // The first 5 bytes of a ClientHello record: a header, no body.
        sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
        drop(sock);
        let (got, end) = read_all(&mut server, &[100]);
        assert!(got.is_empty());
        for e in [end.unwrap_err(), server.read(&mut [0; 10]).unwrap_err()] {
            let inner = e.get_ref().and_then(|e| e.downcast_ref::<TlsError>());
            assert!(matches!(inner, Some(TlsError::ClosedInHandshake)), "{e}");
        }
    }

    /// Sends what the client's rustls has queued, one byte per write: the
    /// viewer meets every record and handshake message in pieces.
    fn send_chopped(conn: &mut rustls::ClientConnection, sock: &mut TcpStream) {
        let mut tls = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut tls).unwrap();
        }
        for byte in tls {
            sock.write_all(&[byte]).unwrap();
        }
    }

    /// The whole conversation a byte at a time (TCP_NODELAY: most bytes
    /// arrive alone): rustls joins the handshake in our buffer across many
    /// reads and compactions, and the plaintext comes out whole.
    #[test]
    fn a_conversation_sent_a_byte_at_a_time_arrives_whole() {
        let pki = Pki::new();
        let (mut server, mut sock) = pair(&pki);
        sock.set_nodelay(true).unwrap();
        let config = pki.client.clone();
        let client = std::thread::spawn(move || {
            let name = "viewer.test".try_into().unwrap();
            let mut conn = rustls::ClientConnection::new(config, name).unwrap();
            while conn.is_handshaking() {
                send_chopped(&mut conn, &mut sock);
                if conn.is_handshaking() {
                    conn.read_tls(&mut sock).unwrap();
                    conn.process_new_packets().unwrap();
                }
            }
            conn.writer().write_all(&sent_bytes(40_000)).unwrap();
            conn.send_close_notify();
            send_chopped(&mut conn, &mut sock);
            sock
        });
        let (got, end) = read_all(&mut server, &[4096]);
        end.unwrap();
        assert!(got == sent_bytes(40_000), "{} bytes came", got.len());
        drop(client.join().unwrap());
    }

    /// A client hello cut short or with any one byte changed, then a close:
    /// every read ends in a named error, none panics (rustls's unbuffered
    /// API asserts its contract with us), and nothing reads as plaintext.
    #[test]
    fn cut_or_changed_client_hellos_end_in_an_error_never_a_panic() {
        let pki = Pki::new();
        let name = "viewer.test".try_into().unwrap();
        let mut client = rustls::ClientConnection::new(pki.client.clone(), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        let cut = (0..hello.len()).map(|at| hello[..at].to_vec());
        let changed = (0..hello.len()).map(|at| {
            let mut bytes = hello.clone();
            bytes[at] ^= 0x5a;
            bytes
        });
        for bytes in cut.chain(changed) {
            let (mut server, mut sock) = pair(&pki);
            sock.write_all(&bytes).unwrap();
            sock.shutdown(std::net::Shutdown::Write).unwrap();
            let (got, end) = read_all(&mut server, &[4096]);
            assert!(got.is_empty());
            let e = end.expect_err("a cut or changed hello was accepted");
            let inner = e.get_ref().and_then(|e| e.downcast_ref::<TlsError>());
            assert!(inner.is_some(), "not a named TLS error: {e}");
        }
    }
}
