//! What camstream's two HTTP endpoints share: the viewer's `--http` and the
//! agent's `--metrics`.
//!
//! ```text
//! exposition ─┬─ text     Prometheus text format 0.0.4: families, samples,
//!             │           histograms, escaping (no I/O)
//!             ├─ request  one bounded HTTP/1.x request head, parsed by
//!             │           httparse (no I/O)
//!             └─ serve    the agent's /metrics server: one thread, one
//!                         request at a time, every read and write timed out
//! ```
//!
//! It is not in `proto`, which does no I/O: `serve` owns a listener and a
//! thread. `text` and `request` are pure and are what the viewer's
//! non-blocking HTTP server (`viewer::http`) uses; `serve` is the agent's
//! whole server, blocking because a scrape every few seconds needs no more.
//!
//! The text format is checked against Prometheus's own parser and linter
//! (`promtool check metrics`) by the end-to-end tests.

pub mod request;
pub mod serve;
pub mod text;

pub use text::{Histogram, Kind, Writer};
