//! Optional mutual TLS on the listener (issue 15): `--tls-cert`, `--tls-key`
//! and `--tls-client-ca` turn it on. TLS 1.3 only, and every client must
//! present a certificate signed by the client CA.
//!
//! rustls is driven by the viewer's own poll(2) loop, the way rustls's
//! `tlsserver-mio` example drives it from mio: when the socket is readable,
//! `read_tls` and `process_new_packets`, then take the plaintext from
//! `reader()`; when rustls has bytes to send (`wants_write`: the handshake's
//! flight, an alert), poll for POLLOUT too and `write_tls`. [`TlsStream`]
//! wraps that in `io::Read`, so `Conn` reads plaintext from it exactly as it
//! reads a `TcpStream`: the framing, the limits and newest-frame-wins do
//! not change, and the handshake needs no loop of its own.
//!
//! - **Nothing blocks.** The socket is non-blocking; a client that stops in
//!   the middle of the handshake is one more silent connection, and
//!   `--idle-timeout` counts from the accept until the first plaintext byte
//!   (handshake bytes do not count as traffic).
//! - **Refusals are named** ([`TlsError`]): a client that does not speak TLS
//!   (a plaintext agent), one with no certificate, one whose certificate
//!   another CA signed, a record that fails its integrity check (tampering).
//!   rustls queues the matching alert; it is sent once, best effort, before
//!   the connection closes.
//! - **Fewer system calls.** rustls reads at most 4 KiB from its reader per
//!   `read_tls`; reading the socket that way cost one `recv` per 4 KiB of a
//!   750 KB frame. [`TlsStream`] reads the socket in [`RAW_BUF_LEN`] bites
//!   into a buffer of its own and lets rustls read from that.
//! - **Identity** ([`pki::identity`]): once the handshake is done, the
//!   camera ids the client certificate names become [`TlsStream::camera_ids`];
//!   `Conn` refuses a frame header carrying any other id.
//!
//! Memory per TLS connection, on top of a plaintext one: the raw buffer
//! ([`RAW_BUF_LEN`]), rustls's record buffer (one record, 18 KiB, or up to
//! 64 KiB while it joins a handshake message), a handshake message being
//! processed or the client's certificate chain (up to 64 KiB), and its
//! decrypted plaintext (16 KiB before it stops reading, plus one record):
//! at most 224 KiB, the README's L. `bench/tls_memory.py` measures it:
//! 117-125 KiB for an idle client, 190-196 KiB for one stalled in a
//! 64 KiB ClientHello.

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use pki::identity::{certificate_camera_ids, CameraIds};
use pki::pem::{load_certs, load_key};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{CertificateError, RootCertStore, ServerConfig, ServerConnection};

/// Bytes read from the socket at once and handed to rustls 4 KiB at a time.
pub const RAW_BUF_LEN: usize = 64 << 10;

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
    tls: ServerConnection,
    /// Bytes read from the socket, `raw[start..end]` not yet given to rustls.
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    /// The socket said EOF; rustls has been told.
    eof: bool,
    /// Decrypted bytes rustls holds for us.
    plaintext_len: usize,
    /// Set once, when the handshake completes.
    camera_ids: Option<CameraIds>,
    /// The last alert was sent (or could not be): never again.
    alert_sent: bool,
}

impl TlsStream {
    /// `sock` must be non-blocking.
    pub fn new(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            tls,
            raw: vec![0; RAW_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            plaintext_len: 0,
            camera_ids: None,
            alert_sent: false,
        })
    }

    /// The camera ids the client's certificate names; `None` before the
    /// handshake is done, and when it names none (any id may come).
    pub fn camera_ids(&self) -> Option<CameraIds> {
        self.camera_ids.filter(|ids| !ids.is_empty())
    }

    /// rustls has bytes to send: poll for POLLOUT too.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Decrypted plaintext waits in rustls, or raw bytes in our buffer: the
    /// socket may not poll readable again, so read without waiting.
    pub fn has_buffered_input(&self) -> bool {
        self.plaintext_len > 0 || self.start < self.end
    }

    /// Sends what rustls has queued, as far as the socket takes it now.
    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The alert rustls queued for a fatal error: one try, never waits.
    fn send_alert(&mut self) {
        if !self.alert_sent {
            self.alert_sent = true;
            let _ = self.flush();
        }
    }

    fn refused(&mut self, error: rustls::Error, handshaking: bool) -> io::Error {
        self.send_alert();
        io::Error::new(
            io::ErrorKind::InvalidData,
            TlsError::Refused { error, handshaking },
        )
    }

    /// Gives rustls more TLS bytes: from our buffer, refilled from the
    /// socket when empty (`WouldBlock` when it has none).
    fn feed_rustls(&mut self) -> io::Result<()> {
        if self.start == self.end && !self.eof {
            match self.sock.read(&mut self.raw) {
                Ok(0) => self.eof = true,
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) => return Err(e),
            }
        }
        let mut pending = &self.raw[self.start..self.end];
        let before = pending.len();
        // At EOF this reads 0 bytes, which tells rustls the peer is gone.
        let result = self.tls.read_tls(&mut pending);
        let taken = before - pending.len();
        self.start += taken;
        if result? == 0 && before > 0 {
            // rustls took none of the bytes it was offered: never spin.
            return Err(io::Error::other("rustls took no input"));
        }
        let handshaking = self.tls.is_handshaking();
        match self.tls.process_new_packets() {
            Ok(state) => self.plaintext_len = state.plaintext_bytes_to_read(),
            Err(e) => return Err(self.refused(e, handshaking)),
        }
        if handshaking && !self.tls.is_handshaking() {
            self.camera_ids = Some(self.certificate_ids());
        }
        self.flush()
    }

    /// The camera ids among the verified client certificate's DNS names.
    fn certificate_ids(&self) -> CameraIds {
        let Some(cert) = self.tls.peer_certificates().and_then(<[_]>::first) else {
            return CameraIds::default();
        };
        certificate_camera_ids(cert)
    }
}

impl Read for TlsStream {
    /// Plaintext, `Ok(0)` at the end (close_notify, or a TCP close: a frame
    /// cut short is still caught by the frame reader), `WouldBlock` when
    /// the socket has nothing more, or an error whose inner error is a
    /// [`TlsError`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A handshake flight POLLOUT woke us for.
        self.flush()?;
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => {
                    self.plaintext_len = self.plaintext_len.saturating_sub(n);
                    return Ok(n);
                }
                // Nothing decrypted is waiting, whatever was counted: a
                // stale count would make the loop poll with no timeout.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.plaintext_len = 0,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return if self.tls.is_handshaking() {
                        Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            TlsError::ClosedInHandshake,
                        ))
                    } else {
                        Ok(0)
                    };
                }
                Err(e) => return Err(e),
            }
            if self.eof && self.start == self.end {
                // rustls has seen the EOF and still says WouldBlock: only
                // while handshaking (it reports UnexpectedEof otherwise).
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    TlsError::ClosedInHandshake,
                ));
            }
            self.feed_rustls()?;
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
}
