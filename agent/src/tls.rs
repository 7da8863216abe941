//! Optional mutual TLS to the viewer (issue 15): `--tls-ca`, `--tls-cert`,
//! `--tls-key`, and `--tls-server-name` when `--server`'s host is not a name
//! in the viewer's certificate.
//!
//! - **What is checked.** The viewer's certificate must chain to `--tls-ca`
//!   and name the server (DNS name or IP address); TLS 1.3 only. The agent
//!   presents its own certificate, which the viewer checks against its
//!   `--tls-client-ca`, and whose `camstream-camera-N.invalid` names
//!   ([`pki::identity`]) bound the camera ids it may send.
//! - **Errors say what to do** ([`explain`]): an expired certificate, the
//!   wrong CA, a name mismatch, a viewer that does not speak TLS, a viewer
//!   that refused our certificate (its alert, read back after a failed
//!   write or before the next frame: TLS 1.3 tells a client about its
//!   certificate only after the handshake).
//! - **Cipher order.** On a CPU without AES instructions (the Raspberry Pi
//!   3 and 4: their Cortex-A53/A72 lack the ARMv8 crypto extensions) the
//!   agent asks for ChaCha20-Poly1305 first, which runs several times faster
//!   there than AES-GCM in software; the viewer honours the client's order.
//! - **Pacing is unchanged** ([`write_frame`]). rustls encrypts into its own
//!   buffer, at most [`TLS_BUFFER_LEN`] bytes of records at a time, and
//!   [`write_frame`] hands every record to the socket before it returns. So
//!   between frames rustls holds nothing, the kernel's `TCP_NOTSENT_LOWAT`
//!   and the POLLOUT wait in `send` work as they do in plaintext, and while
//!   a frame is being written at most `TLS_BUFFER_LEN` more bytes wait in
//!   rustls (a write blocks in the kernel, not in rustls).
//!
//! The blocking socket is `send`'s own; this module only adds the record
//! layer over it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use pki::identity::certificate_camera_ids;
use pki::pem::{load_certs, load_key};
use proto::wire::CameraId;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore};

/// Most bytes of encrypted records rustls holds while a frame is written.
pub const TLS_BUFFER_LEN: usize = 64 << 10;

/// The flags that turn TLS on.
#[derive(Debug, Clone)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name to check in the viewer's certificate; `None`: `--server`'s host.
    pub server_name: Option<String>,
}

/// What a TLS connection to the viewer needs, built once at start.
pub struct Client {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    ca: PathBuf,
}

impl Client {
    /// Loads the files and checks them now, so a wrong path fails at start.
    /// `server` is `--server`; `id` is `--id`, checked against the ids the
    /// certificate names (a mismatch is logged: the viewer will refuse the
    /// frames, and says so).
    pub fn new(files: &Files, server: &str, id: CameraId) -> Result<Client> {
        let host = match &files.server_name {
            Some(name) => name.clone(),
            None => host_of(server).to_owned(),
        };
        let server_name = ServerName::try_from(host.clone()).with_context(|| {
            format!("`{host}` is not a DNS name or IP address to check the viewer's certificate against (set --tls-server-name)")
        })?;
        let mut roots = RootCertStore::empty();
        for ca in load_certs(&files.ca, "--tls-ca")? {
            roots.add(ca).with_context(|| {
                format!(
                    "--tls-ca {}: a certificate in it is not a usable CA certificate",
                    files.ca.display()
                )
            })?;
        }
        let chain = load_certs(&files.cert, "--tls-cert")?;
        let named = certificate_camera_ids(&chain[0]);
        if !named.is_empty() && !named.contains(id) {
            log::warn!(
                "--tls-cert {} names camera {named}, but --id is {id}: the viewer will refuse every frame (use --id {}, or issue a certificate for camera {id})",
                files.cert.display(),
                named.iter().next().unwrap_or_default()
            );
        }
        let key = load_key(&files.key, "--tls-key")?;
        let aes = has_aes_instructions();
        log::info!(
            "TLS 1.3: the viewer's certificate must be signed by {} and name {host}; {} first",
            files.ca.display(),
            if aes {
                "AES-128-GCM (this CPU has AES instructions)"
            } else {
                "ChaCha20-Poly1305 (this CPU has no AES instructions)"
            }
        );
        let provider = provider(aes);
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("the ring provider lacks TLS 1.3")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .with_context(|| {
                format!(
                    "--tls-cert {} and --tls-key {} do not make a usable pair (is the key the one the certificate was issued for?)",
                    files.cert.display(),
                    files.key.display()
                )
            })?;
        Ok(Client {
            config: Arc::new(config),
            server_name,
            ca: files.ca.clone(),
        })
    }

    /// The TLS handshake on a connected socket, waiting at most `timeout`
    /// for each answer. The error says what to do.
    pub fn handshake(&self, stream: &TcpStream, timeout: Duration) -> io::Result<ClientConnection> {
        let mut tls = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(TLS_BUFFER_LEN));
        stream.set_read_timeout(Some(timeout))?;
        let mut sock = stream;
        let result = (|| {
            while tls.is_handshaking() {
                tls.complete_io(&mut sock)?;
            }
            // Our certificate and Finished.
            while tls.wants_write() {
                tls.write_tls(&mut sock)?;
            }
            Ok(())
        })();
        stream.set_read_timeout(None)?;
        result.map_err(|e| self.explain(e, true, timeout))?;
        Ok(tls)
    }

    /// What went wrong, and what to do about it.
    pub fn explain(&self, e: io::Error, handshaking: bool, timeout: Duration) -> io::Error {
        explain(e, handshaking, timeout, &self.server_name, &self.ca)
    }
}

/// Writes one frame through TLS: every record is in the kernel when it
/// returns (so POLLOUT pacing sees what a plaintext write leaves). The
/// whole frame may take at most `timeout`, as in plaintext.
pub fn write_frame(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    buf: &[u8],
    timeout: Duration,
    blocked: impl Fn() -> io::Error,
) -> io::Result<()> {
    let started = Instant::now();
    let mut sock = stream;
    let mut written = 0;
    while written < buf.len() || tls.wants_write() {
        if written < buf.len() {
            written += tls.writer().write(&buf[written..])?;
        }
        if !tls.wants_write() {
            // rustls took nothing and has nothing to send: never spin.
            return Err(io::ErrorKind::WriteZero.into());
        }
        match tls.write_tls(&mut sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // SO_SNDTIMEO: the buffer stayed full (the viewer stopped reading).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(blocked()),
            Err(e) => return Err(e),
        }
        if started.elapsed() >= timeout && (written < buf.len() || tls.wants_write()) {
            return Err(blocked());
        }
    }
    Ok(())
}

/// Reads what the viewer sent, if anything, without waiting: it sends
/// nothing after the handshake unless it refuses us (an alert) or closes.
/// Returns the error that explains it.
pub fn check_incoming(
    client: &Client,
    tls: &mut ClientConnection,
    stream: &TcpStream,
) -> Option<io::Error> {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
        return None;
    }
    let mut sock = stream;
    match tls.read_tls(&mut sock) {
        Ok(0) => {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the viewer closed the connection",
            ))
        }
        Ok(_) => {}
        Err(e) => return Some(e),
    }
    if let Err(e) = tls.process_new_packets() {
        let e = io::Error::new(io::ErrorKind::InvalidData, e);
        return Some(client.explain(e, false, Duration::ZERO));
    }
    // Application data from the viewer is never expected: drop it.
    let mut sink = [0; 1024];
    while matches!(tls.reader().read(&mut sink), Ok(n) if n > 0) {}
    None
}

/// Sends close_notify, best effort, so the viewer sees a clean end.
pub fn close(tls: &mut ClientConnection, stream: &TcpStream) {
    tls.send_close_notify();
    let mut sock = stream;
    while tls.wants_write() {
        if tls.write_tls(&mut sock).is_err() {
            break;
        }
    }
}

/// `viewer.test` for rustls's `DnsName("viewer.test")`, `127.0.0.1` for
/// `IpAddress(127.0.0.1)`: what a person wrote in the certificate.
fn plain_name(presented: &str) -> &str {
    let inner = presented
        .strip_prefix("DnsName(")
        .or_else(|| presented.strip_prefix("IpAddress("))
        .and_then(|rest| rest.strip_suffix(')'));
    match inner {
        Some(inner) => inner.trim_matches('"'),
        None => presented,
    }
}

/// The host part of HOST:PORT, without IPv6 brackets.
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// ring's TLS 1.3 suites in the order the agent asks for them: with AES
/// instructions, AES-128-GCM first (TLS 1.3's mandatory suite, and cheaper
/// per byte than ring's default first choice, AES-256-GCM: every byte of
/// every frame goes through it, on the Pi and in the viewer); without them,
/// ChaCha20-Poly1305 first (AES-GCM in software is slow and not
/// constant-time).
fn provider(aes_instructions: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let first = if aes_instructions {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
    } else {
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    };
    // Stable: the others keep ring's order.
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != first);
    provider
}

/// True when the CPU has AES and carry-less multiply instructions, which
/// make AES-GCM fast.
fn has_aes_instructions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(all(target_arch = "arm", target_os = "linux"))]
    {
        // HWCAP2_AES (bit 0) and HWCAP2_PMULL (bit 1) of the 32-bit ARM
        // kernel ABI; std's detection macro for arm is not stable yet.
        // SAFETY: getauxval only reads the process's auxiliary vector.
        let hwcap2 = unsafe { nix::libc::getauxval(nix::libc::AT_HWCAP2) };
        hwcap2 & 0b11 == 0b11
    }
    #[cfg(not(any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "arm", target_os = "linux")
    )))]
    {
        false
    }
}

/// Turns a TLS failure into a sentence that says what to do.
fn explain(
    e: io::Error,
    handshaking: bool,
    timeout: Duration,
    server_name: &ServerName,
    ca: &Path,
) -> io::Error {
    use rustls::Error as E;
    let not_tls = "the viewer does not speak TLS: start it with --tls-cert, --tls-key and --tls-client-ca, or run this agent without --tls-*";
    let kind = e.kind();
    let text = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(E::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the viewer's certificate is not signed by --tls-ca {}: give this agent the CA that signed the viewer's --tls-cert",
                ca.display()
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the viewer's certificate has expired ({cert:?}): issue it a new one (camstream-cert viewer) and restart the viewer"
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the viewer's certificate is not valid yet ({cert:?}): is this node's clock right? (a Pi has no clock battery: check NTP with `timedatectl`)"
            ),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "the viewer's certificate is for {}, not {}: point --server at one of those names, set --tls-server-name, or reissue the viewer's certificate with that name (camstream-cert viewer --dns/--ip)",
                presented.iter().map(|p| plain_name(p)).collect::<Vec<_>>().join(", "),
                expected.to_str()
            ),
            CertificateError::NotValidForName => format!(
                "the viewer's certificate does not name {}: point --server at a name it has, set --tls-server-name, or reissue it with that name (camstream-cert viewer --dns/--ip)",
                server_name.to_str()
            ),
            other => format!("the viewer's certificate is refused: {other:?}"),
        },
        Some(E::AlertReceived(alert)) => match alert {
            AlertDescription::CertificateExpired => {
                "the viewer says this agent's certificate has expired: issue a new one (camstream-cert camera)".to_owned()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => format!(
                "the viewer refused this agent's certificate (TLS alert {alert:?}): is --tls-cert signed by the CA the viewer has as --tls-client-ca?"
            ),
            other => format!("the viewer sent TLS alert {other:?}"),
        },
        Some(E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. })
            if handshaking =>
        {
            format!("{not_tls} (it answered the handshake with something else)")
        }
        Some(E::PeerIncompatible(p)) => format!(
            "the viewer offers no TLS 1.3 cipher this agent speaks ({p:?}): camstream speaks TLS 1.3 only"
        ),
        Some(other) => format!("TLS error: {other}"),
        None if handshaking
            && matches!(
                kind,
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            format!("{not_tls} (it closed the connection during the handshake: {e})")
        }
        None if handshaking
            && matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
        {
            format!(
                "no TLS answer from the viewer within {:.1} s; {not_tls}",
                timeout.as_secs_f64()
            )
        }
        None => return e,
    };
    io::Error::new(kind, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_aes_instructions_chacha20_comes_first() {
        let first = |aes| provider(aes).cipher_suites[0].suite();
        assert_eq!(
            first(false),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(first(true), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // Only the order changes.
        assert_eq!(
            provider(false).cipher_suites.len(),
            provider(true).cipher_suites.len()
        );
    }

    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(plain_name("DnsName(\"viewer.test\")"), "viewer.test");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("viewer.test"), "viewer.test");
    }

    #[test]
    fn the_host_is_the_server_name() {
        assert_eq!(host_of("viewer.local:5000"), "viewer.local");
        assert_eq!(host_of("192.168.1.10:5000"), "192.168.1.10");
        assert_eq!(host_of("[::1]:5000"), "::1");
    }

    #[test]
    fn failures_say_what_to_do() {
        let name = ServerName::try_from("viewer.test").unwrap();
        let ca = Path::new("/etc/camstream/ca.pem");
        let tls = |error: rustls::Error| {
            explain(
                io::Error::new(io::ErrorKind::InvalidData, error),
                true,
                Duration::from_secs(5),
                &name,
                ca,
            )
            .to_string()
        };
        let wrong_ca = tls(E::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(
            wrong_ca.contains("not signed by --tls-ca /etc/camstream/ca.pem"),
            "{wrong_ca}"
        );
        let expired = tls(E::InvalidCertificate(CertificateError::Expired));
        assert!(expired.contains("has expired"), "{expired}");
        let refused = tls(E::AlertReceived(AlertDescription::UnknownCA));
        assert!(
            refused.contains("refused this agent's certificate"),
            "{refused}"
        );
        let eof = explain(
            io::ErrorKind::UnexpectedEof.into(),
            true,
            Duration::from_secs(5),
            &name,
            ca,
        )
        .to_string();
        assert!(eof.starts_with("the viewer does not speak TLS"), "{eof}");
        let plain = explain(
            io::ErrorKind::ConnectionRefused.into(),
            true,
            Duration::from_secs(5),
            &name,
            ca,
        );
        assert_eq!(
            plain.kind(),
            io::ErrorKind::ConnectionRefused,
            "passed through"
        );
    }

    use rustls::Error as E;
}
