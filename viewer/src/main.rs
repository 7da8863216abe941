//! camstream viewer: receives camera streams over TCP and shows one window
//! per camera (or records them, or both).
//!
//! # Modules
//!
//! Each module uses only the modules drawn below it; none reaches up or
//! sideways.
//!
//! ```text
//! main ─┬─ cli
//!       └─ server ─┬─ conn ──┬─ stats
//!                  │         └─ tls (also used by server, to wrap an accepted socket)
//!                  ├─ decode ── record, http::hub (JPEGs for watchers)
//!                  ├─ display ─┬─ windows   (the display thread)
//!                  │           ├─ grid
//!                  │           └─ xlib
//!                  ├─ peer_log
//!                  └─ http ─┬─ hub ──── stats
//!                           ├─ serve ── peer_log
//!                           ├─ render
//!                           └─ (Link reads a conn's figures for the hub)
//!
//! allow: a leaf, used by main, cli, server and http (the --allow list)
//! deadline: a leaf, used by server and http::serve (poll's timeout)
//! ConnId (here): the name the server gives a connection, and the one
//!                that decode and display keep their state under
//! ```
//!
//! - [`cli`]: the command line.
//! - [`server`]: the poll(2) loop over the signal pipe, the listener, every
//!   client and the decode workers' wake-up socket. It owns the connections,
//!   the decoders and the display, and is the only module that knows them all.
//! - [`conn`]: one client: non-blocking socket, bounded input buffer, proto
//!   frame reader, and its stats; private state behind methods.
//! - [`stats`]: per-camera counters, fps and latency percentiles.
//! - [`tls`]: optional mutual TLS (`--tls-cert`): the rustls configuration,
//!   and a non-blocking TLS stream that `conn` reads plaintext from; the
//!   camera ids a client certificate names.
//! - [`decode`]: worker threads that gunzip, decode the BMP and record;
//!   only the newest frame of a camera is decoded.
//! - [`decode`]: worker threads that decode each body by its magic bytes
//!   (gzip-BMP: gunzip, then the BMP; JPEG: checked and capped, then
//!   decoded) and record; only the newest frame of a camera is decoded.
//! - [`record`]: `--record DIR` files.
//! - [`display`]: minifb windows, all on a display thread fed the newest
//!   picture per camera, so the poll thread never waits for X; windows tile
//!   a grid that fits the screen, and a window that fails or loses its X
//!   connection costs its camera only.
//! - [`peer_log`]: refusal, connection and disconnect log lines, one per
//!   peer per window and then a count, in a bounded table.
//! - [`http`]: `--http`: the page, MJPEG streams, snapshots, `/api/cameras`
//!   and `/metrics`, on a thread of its own; JPEGs made by the decode
//!   workers, once per frame and only for watched cameras.
//! - [`allow`]: `--allow CIDR` matching.
//!
//! Guarantees: every byte from the network is untrusted. A broken, slow or
//! hostile client is dropped with a log line naming its peer, camera id and
//! reason (rate-limited per peer), and never blocks the loop or the other
//! cameras; a client silent for `--idle-timeout` is dropped too. Memory is
//! bounded by the limits (`--max-clients`, `--max-frame-bytes`,
//! `--max-bmp-bytes`).
//! SIGINT and SIGTERM close everything, flush recordings and exit 0.
//!
//! Exit status: 0 after SIGINT, SIGTERM or Esc; 1 on a failure, whose cause
//! is printed once on stderr (whatever `RUST_LOG` says); 2 on invalid
//! arguments (clap).

mod allow;
mod cli;
mod conn;
mod deadline;
mod decode;
mod display;
mod http;
mod peer_log;
mod record;
mod server;
mod stats;
mod tls;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

/// The server's name for a connection, never reused while the viewer runs.
/// It lives at the root because `decode` and `display` keep state per
/// connection by it, without knowing what a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

fn main() -> ExitCode {
    // On invalid arguments clap prints why and exits 2.
    let args = cli::Args::parse();
    init_logger();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not through `log`: RUST_LOG=off must not hide why it stopped.
            eprintln!("viewer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr with no timestamps (journald adds its own) and the module
/// as target; RUST_LOG picks the level (default info).
fn init_logger() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
}

fn run(args: cli::Args) -> Result<()> {
    let max_bmp_len = usize::try_from(args.max_bmp_bytes)
        .context("--max-bmp-bytes is larger than this machine's address space")?;
    let allow = allow::AllowList::new(args.allow);
    let config = server::Config {
        listen: args.listen,
        max_clients: args.max_clients as usize,
        allow: allow.clone(),
        headless: args.headless,
        record_dir: args.record,
        max_frame_len: args.max_frame_bytes,
        max_bmp_len,
        idle_timeout: args.idle_timeout,
        stats_interval: (!args.stats_interval.is_zero()).then_some(args.stats_interval),
        decode_threads: args.decode_threads as usize,
        http: args.http.map(|listen| http::Config {
            listen,
            max_clients: args.http_max_clients as usize,
            allow,
        }),
        tls: match (&args.tls_cert, &args.tls_key, &args.tls_client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Some(tls::server_config(&tls::Files {
                cert,
                key,
                client_ca,
            })?),
            // clap requires all three together.
            _ => None,
        },
    };
    server::run(config)
}
