//! The command line (clap derive). Every option is documented here, and
//! `viewer --help` prints the same text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use proto::{gzip, wire};

use crate::allow::Cidr;

/// camstream viewer: receives camera streams over TCP and shows one window per
/// camera. Every byte from the network is treated as hostile: a broken or slow
/// client is dropped without disturbing the others.
///
/// Where to listen: 127.0.0.1 accepts this machine only; an interface's own
/// address (e.g. 192.168.1.10) accepts that network only; 0.0.0.0 or [::]
/// accepts every source, best combined with --allow.
// These doc comments are `--help`, which clap prints verbatim: `[::]` is
// the IPv6 any-address and `<ID>` a placeholder, not a link or an HTML tag
// (escaping them for rustdoc would print the escapes in `--help`).
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    /// Address and port to listen on; IPv4 or IPv6, e.g. 0.0.0.0:5000 or [::]:5000.
    /// Port 0 picks a free port; the chosen address is logged at startup.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// Clients beyond this many are refused at once (accepted, then closed, with a log line).
    /// Windows tile a grid with a cell for each of them, so a lower number gives bigger windows.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_clients: u32,

    /// Accept only clients from this network, e.g. 192.168.1.0/24, 10.0.0.7 or
    /// fd00::/8. Repeatable. Without it, every address may connect.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Open no windows (for servers and tests); frames are still decoded and checked.
    #[arg(long)]
    pub headless: bool,

    /// Write every received frame to DIR/cam<ID>-<peer ip>-<peer port>/<seq>.bmp,
    /// the BMP exactly as received after gunzip, or <seq>.jpg, a JPEG body as
    /// received. Works with or without windows.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Largest accepted frame body (compressed), in bytes; a larger announced
    /// length drops the connection before any of the body is buffered.
    #[arg(long, value_name = "N", default_value_t = wire::MAX_BODY_LEN,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_frame_bytes: u32,

    /// Largest accepted decompressed BMP, in bytes; gzip bombs stop here.
    /// Frames (BMP or JPEG) of more pixels than this are refused too.
    #[arg(long, value_name = "N", default_value_t = gzip::MAX_DECOMPRESSED_LEN as u64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_bmp_bytes: u64,

    /// Drop a connection from which nothing arrives for this many seconds,
    /// between frames or inside one (fractions allowed): a camera node that
    /// lost power or its link sends no FIN, and would hold its slot and its
    /// frozen window for ever. The default is ten frame intervals of a 1 fps
    /// camera; give a slower camera more. The kernel also probes every
    /// connection (TCP keepalive: after 5 s without a packet, every 2 s, dead
    /// after 3 unanswered), which a live peer answers however slow it is.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_secs)]
    pub idle_timeout: Duration,

    /// How often to log per-camera statistics, in seconds; 0 turns them off.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    pub stats_interval: Duration,

    /// Threads that gunzip and decode frames (and write recordings).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub decode_threads: u32,

    /// Also serve the cameras to browsers and tools at http://ADDR:PORT/:
    /// a live grid page, each camera as an MJPEG stream and a JPEG
    /// snapshot, /api/cameras (JSON) and /metrics (Prometheus). Off by
    /// default. There is NO authentication: anyone who reaches the port sees
    /// every camera. Bind it to a trusted interface (127.0.0.1, a management
    /// network); --allow applies to it too.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,

    /// HTTP clients (browsers, streams, scrapers) served at once; more are
    /// answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub http_max_clients: u32,
    /// Turn on TLS 1.3 with this certificate (PEM; the chain, leaf first).
    /// Needs --tls-key and --tls-client-ca: every agent must then present a
    /// certificate signed by that CA, and plaintext clients are refused.
    /// Make them with camstream-cert, or use any CA's PEM files.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_client_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The CA(s) whose client certificates are accepted (PEM). A client
    /// certificate naming camstream-camera-N.invalid among its DNS names may
    /// send camera id N only (several names: several ids).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// A duration in seconds, fractions allowed, zero allowed.
fn secs(s: &str) -> Result<Duration, String> {
    let value: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{s}` seconds is out of range (give a number from 0 up)"))
}

/// A duration in seconds that must be above zero.
fn positive_secs(s: &str) -> Result<Duration, String> {
    let d = secs(s)?;
    if d.is_zero() {
        return Err("the timeout must be above 0 seconds".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_issue() {
        let args = Args::try_parse_from(["viewer"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(args.max_clients, 16);
        assert!(args.allow.is_empty());
        assert!(!args.headless);
        assert!(args.record.is_none());
        assert_eq!(args.max_frame_bytes, 32 << 20);
        assert_eq!(args.max_bmp_bytes, 64 << 20);
        assert_eq!(args.idle_timeout, Duration::from_secs(10));
        assert_eq!(args.stats_interval, Duration::from_secs(10));
        assert!(args.http.is_none(), "--http is off by default");
        assert_eq!(args.http_max_clients, 32);
        assert!(args.tls_cert.is_none(), "plaintext is the default");
    }

    #[test]
    fn tls_needs_all_three_files() {
        let all = [
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ];
        assert!(Args::try_parse_from(std::iter::once("viewer").chain(all)).is_ok());
        for missing in [0, 2, 4] {
            let mut args = vec!["viewer"];
            for (i, pair) in all.chunks(2).enumerate() {
                if i * 2 != missing {
                    args.extend(pair);
                }
            }
            assert!(
                Args::try_parse_from(&args).is_err(),
                "{args:?} was accepted"
            );
        }
    }

    #[test]
    fn ipv6_listen_repeated_allow_and_fractional_secs_parse() {
        let args = Args::try_parse_from([
            "viewer",
            "--listen",
            "[::]:5000",
            "--allow",
            "10.0.0.0/8",
            "--allow",
            "fd00::/8",
            "--idle-timeout",
            "0.5",
            "--stats-interval",
            "0",
        ])
        .unwrap();
        assert_eq!(args.listen, "[::]:5000".parse().unwrap());
        assert_eq!(args.allow.len(), 2);
        assert_eq!(args.idle_timeout, Duration::from_millis(500));
        assert!(args.stats_interval.is_zero());
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["viewer", "--idle-timeout", "0"][..],
            &["viewer", "--idle-timeout", "-1"],
            &["viewer", "--idle-timeout", "nan"],
            &["viewer", "--max-clients", "0"],
            &["viewer", "--max-frame-bytes", "0"],
            &["viewer", "--allow", "10.0.0.0/40"],
            &["viewer", "--listen", "localhost"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
