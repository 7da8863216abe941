//! camstream's trust material for the optional mutual TLS (issue 15): what
//! the agent, the viewer and `camstream-cert` share.
//!
//! ```text
//! pki ─┬─ identity  camera ids as DNS names in a certificate
//!      │            (camstream-camera-N.invalid), and a verified
//!      │            certificate's ids
//!      └─ pem       certificate chains and private keys from PEM files,
//!                   with errors that name the flag
//! ```
//!
//! Not in `proto`, which does no I/O: `pem` reads files, and both modules
//! speak rustls's certificate types. The TLS sessions themselves stay in the
//! binaries (`agent::tls` is a blocking client, `viewer::tls` is driven by
//! the poll loop); they share only what is here.

pub mod identity;
pub mod pem;
