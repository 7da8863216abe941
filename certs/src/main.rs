//! camstream-cert: the certificates for camstream's optional mutual TLS
//! (issue 15), so nobody needs to learn openssl. Three subcommands:
//!
//! ```text
//! camstream-cert ca                                   -> ca.pem, ca.key
//! camstream-cert viewer --dns workstation.local --ip 192.168.1.10
//!                                                     -> viewer.pem, viewer.key
//! camstream-cert camera --id 3                        -> camera-3.pem, camera-3.key
//! ```
//!
//! All in `--dir` (default: the current directory); the viewer and camera
//! certificates are signed with `--ca-cert`/`--ca-key` (default: the CA in
//! `--dir`), which may be any CA's PEM files, not only ours. Keys are
//! ECDSA P-256 (quick to sign and verify on a Pi; every TLS library takes
//! them) and are written 0600; no file is overwritten without `--force`.
//!
//! A camera certificate names its ids as DNS names `camstream-camera-N.invalid`
//! ([`pki::identity`]): the viewer then refuses frames of any other id.
//! The viewer certificate carries the DNS names and IP addresses agents
//! connect to (`--server`), which they check.
//!
//! One module: the command line, then one function per subcommand, over
//! rcgen. Install it beside the viewer: the CA key belongs on the
//! workstation, never on a camera node.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pki::identity::camera_dns_name;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Validity starts this long before now, so a node whose clock is a little
/// behind still accepts a fresh certificate.
const BACKDATE: Duration = Duration::hours(1);

/// camstream certificate helper: makes a CA, the viewer's certificate and
/// camera certificates for mutual TLS (viewer --tls-cert/--tls-key/
/// --tls-client-ca, agent --tls-ca/--tls-cert/--tls-key).
#[derive(Parser, Debug)]
#[command(
    name = "camstream-cert",
    version,
    about,
    after_help = "\
Example, on the workstation:
  camstream-cert ca --dir /etc/camstream/tls
  camstream-cert viewer --dir /etc/camstream/tls --dns workstation.local --ip 192.168.1.10
  camstream-cert camera --dir /etc/camstream/tls --id 3
Then copy ca.pem, camera-3.pem and camera-3.key to the camera node (never ca.key).
Files from any other CA work too: camera ids go in DNS names camstream-camera-N.invalid."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a CA: DIR/ca.pem (give it to the viewer as --tls-client-ca and
    /// to agents as --tls-ca) and DIR/ca.key (keep it on this machine).
    Ca {
        #[command(flatten)]
        out: Out,
        /// The CA's name (its certificate's common name) [default: "camstream
        /// CA" and a tag from its key, so that two CAs never share a name].
        #[arg(long)]
        name: Option<String>,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue the viewer's certificate, DIR/viewer.pem and DIR/viewer.key,
    /// for the names and addresses agents use in --server.
    Viewer {
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        ca: Ca,
        /// A DNS name agents connect to (repeatable), e.g. workstation.local.
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// An IP address agents connect to (repeatable), e.g. 192.168.1.10.
        #[arg(long, value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 1825, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue a camera node's certificate, DIR/camera-N.pem and DIR/camera-N.key,
    /// naming the camera ids it may send.
    Camera {
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        ca: Ca,
        /// A camera id this node sends, 0-255 (repeatable, for a node with
        /// several cameras; the files are named after the first).
        #[arg(long = "id", value_name = "N", required = true)]
        ids: Vec<u8>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 1825, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
}

#[derive(Args, Debug)]
struct Out {
    /// Where the files go (and where the CA is read from by default).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct Ca {
    /// The CA certificate to sign with [default: DIR/ca.pem].
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// The CA's private key [default: DIR/ca.key].
    #[arg(long, value_name = "PEM")]
    ca_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camstream-cert: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Ca { out, name, days } => {
            let key = KeyPair::generate().context("cannot generate a key")?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let name = name.unwrap_or_else(|| {
                let tag: String = key.public_key_raw()[1..5]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("camstream CA {tag}")
            });
            params.distinguished_name = common_name(&name);
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut params, days);
            let cert = params.self_signed(&key).context("cannot sign the CA")?;
            write_pair(&out, "ca", &cert.pem(), &key.serialize_pem())
        }
        Command::Viewer {
            out,
            ca,
            dns,
            ip,
            days,
        } => {
            if dns.is_empty() && ip.is_empty() {
                bail!("give the names agents connect to: --dns NAME and/or --ip ADDR (what their --server says)");
            }
            let names: Vec<String> = dns
                .iter()
                .cloned()
                .chain(ip.iter().map(ToString::to_string))
                .collect();
            let mut params = CertificateParams::new(names.clone())
                .with_context(|| format!("not valid DNS names: {dns:?}"))?;
            params.distinguished_name = common_name(&format!("camstream viewer {}", names[0]));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            issue(&out, &ca, params, days, "viewer")
        }
        Command::Camera { out, ca, ids, days } => {
            let names: Vec<String> = ids.iter().map(|&id| camera_dns_name(id)).collect();
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name = common_name(&format!("camstream camera {}", ids[0]));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            issue(&out, &ca, params, days, &format!("camera-{}", ids[0]))
        }
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
}

/// Signs a leaf certificate with the CA and writes `stem`.pem and .key.
fn issue(out: &Out, ca: &Ca, mut params: CertificateParams, days: u32, stem: &str) -> Result<()> {
    let ca_cert_path = ca.ca_cert.clone().unwrap_or_else(|| out.dir.join("ca.pem"));
    let ca_key_path = ca.ca_key.clone().unwrap_or_else(|| out.dir.join("ca.key"));
    let ca_cert = fs::read_to_string(&ca_cert_path).with_context(|| {
        format!(
            "cannot read the CA certificate {} (create one with `camstream-cert ca`, or name yours with --ca-cert)",
            ca_cert_path.display()
        )
    })?;
    let ca_key = fs::read_to_string(&ca_key_path).with_context(|| {
        format!(
            "cannot read the CA key {} (name it with --ca-key)",
            ca_key_path.display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&ca_key)
        .with_context(|| format!("{} holds no usable private key", ca_key_path.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key)
        .with_context(|| format!("{} is not a PEM certificate", ca_cert_path.display()))?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = KeyPair::generate().context("cannot generate a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    write_pair(out, stem, &cert.pem(), &key.serialize_pem())
}

/// Writes DIR/`stem`.pem (0644) and DIR/`stem`.key (0600).
fn write_pair(out: &Out, stem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
    fs::create_dir_all(&out.dir).with_context(|| format!("cannot create {}", out.dir.display()))?;
    let cert_path = out.dir.join(format!("{stem}.pem"));
    let key_path = out.dir.join(format!("{stem}.key"));
    if !out.force {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                bail!(
                    "{} exists; remove it or pass --force (a CA replaced orphans every certificate it signed)",
                    path.display()
                );
            }
        }
    }
    write_file(&key_path, key_pem, 0o600)?;
    write_file(&cert_path, cert_pem, 0o644)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    // Removed first, so a key never keeps an old file's wider mode.
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn out(dir: &Path) -> Out {
        Out {
            dir: dir.to_path_buf(),
            force: false,
        }
    }

    fn no_ca() -> Ca {
        Ca {
            ca_cert: None,
            ca_key: None,
        }
    }

    /// The files our helper writes pass rustls's own verification, with the
    /// names and ids they claim.
    #[test]
    fn issued_certificates_verify_under_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(Command::Ca {
            out: out(d),
            name: Some("test CA".into()),
            days: 10,
        })
        .unwrap();
        run(Command::Viewer {
            out: out(d),
            ca: no_ca(),
            dns: vec!["viewer.test".into()],
            ip: vec!["127.0.0.1".parse().unwrap()],
            days: 10,
        })
        .unwrap();
        run(Command::Camera {
            out: out(d),
            ca: no_ca(),
            ids: vec![3, 7],
            days: 10,
        })
        .unwrap();
        let mode = fs::metadata(d.join("camera-3.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let der = |name: &str| CertificateDer::from_pem_file(d.join(name)).unwrap();
        let ca = der("ca.pem");
        let anchor = webpki::anchor_from_trusted_cert(&ca).unwrap();
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let now = UnixTime::now();

        let viewer = der("viewer.pem");
        let viewer = webpki::EndEntityCert::try_from(&viewer).unwrap();
        viewer
            .verify_for_usage(
                algs.all,
                std::slice::from_ref(&anchor),
                &[],
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .unwrap();
        for name in ["viewer.test", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap();
            viewer.verify_is_valid_for_subject_name(&name).unwrap();
        }

        let camera = der("camera-3.pem");
        let camera = webpki::EndEntityCert::try_from(&camera).unwrap();
        camera
            .verify_for_usage(
                algs.all,
                &[anchor],
                &[],
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .unwrap();
        let ids = pki::identity::CameraIds::from_dns_names(camera.valid_dns_names());
        assert_eq!(ids.iter().collect::<Vec<_>>(), [3, 7]);
    }

    #[test]
    fn nothing_is_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = || Command::Ca {
            out: out(dir.path()),
            name: None,
            days: 1,
        };
        run(ca()).unwrap();
        let before = fs::read(dir.path().join("ca.key")).unwrap();
        let e = format!("{:#}", run(ca()).unwrap_err());
        assert!(e.contains("exists; remove it or pass --force"), "{e}");
        assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), before);
    }

    #[test]
    fn a_viewer_needs_a_name_and_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let viewer = |dns: Vec<String>| Command::Viewer {
            out: out(dir.path()),
            ca: no_ca(),
            dns,
            ip: vec![],
            days: 1,
        };
        let e = format!("{:#}", run(viewer(vec![])).unwrap_err());
        assert!(e.contains("--dns NAME"), "{e}");
        let e = format!("{:#}", run(viewer(vec!["v.test".into()])).unwrap_err());
        assert!(e.contains("create one with `camstream-cert ca`"), "{e}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
