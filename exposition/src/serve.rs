//! The agent's `/metrics` server: one thread that takes one connection at a
//! time, reads one request head within [`REQUEST_TIMEOUT`], answers and
//! closes.
//!
//! Blocking and serial on purpose: Prometheus scrapes every few seconds, and
//! a serial server cannot be made to hold more than one socket and
//! [`MAX_HEAD_LEN`] bytes, whatever a client
//! does. A client that never finishes its request holds the next scrape back
//! by at most [`REQUEST_TIMEOUT`]; it never touches the camera's threads,
//! which only bump counters that [`serve`]'s `render` reads.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::request::{self, Method, MAX_HEAD_LEN};
use crate::text::CONTENT_TYPE;

/// The whole request head must arrive within this time of the accept.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// At most one line about bad requests per this interval; the rest are
/// counted into the next line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` from a thread named `metrics`, with
/// the text `render` returns. The thread ends only with the process.
pub fn serve<F>(listener: TcpListener, render: F) -> io::Result<JoinHandle<()>>
where
    F: Fn() -> String + Send + 'static,
{
    listener.set_nonblocking(false)?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut complaints = Complaints::default();
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(why) = answer(stream, &render) {
                            complaints.log(&why);
                        }
                    }
                    Err(e) => {
                        complaints.log(&format!("cannot accept a connection: {e}"));
                        // EMFILE and friends would fail again at once.
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

/// Reads one request and answers it; `Err` is a line for the log.
fn answer(mut stream: TcpStream, render: &impl Fn() -> String) -> Result<(), String> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut buf = vec![0u8; MAX_HEAD_LEN];
    let mut len = 0;
    let req = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "metrics: closed {peer}: no complete request within {} s",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Ok(()), // The client left without asking.
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("metrics: {peer}: {e}")),
        };
        len += n;
        match request::parse(&buf[..len]) {
            Ok(Some(req)) => break req,
            Ok(None) => {}
            Err(e) => {
                let reply =
                    request::response(e.status(), "text/plain", e.to_string().as_bytes(), false);
                let _ = stream.write_all(&reply);
                return Err(format!("metrics: closed {peer}: {e}"));
            }
        }
    };
    let head_only = req.method == Method::Head;
    let reply = match (req.method, req.path.as_str()) {
        (Method::Other, _) => request::response(
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            false,
        ),
        (_, "/metrics") => {
            request::response("200 OK", CONTENT_TYPE, render().as_bytes(), head_only)
        }
        _ => request::response(
            "404 Not Found",
            "text/plain",
            b"the metrics are at /metrics\n",
            head_only,
        ),
    };
    stream
        .write_all(&reply)
        .map_err(|e| format!("metrics: cannot answer {peer}: {e}"))
}

/// Log lines about bad clients, at most one per [`LOG_EVERY`].
#[derive(Default)]
struct Complaints {
    last: Option<Instant>,
    suppressed: u64,
}

impl Complaints {
    fn log(&mut self, line: &str) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!(
                "{line} (and {} more like it not logged in the last {} s)",
                self.suppressed,
                LOG_EVERY.as_secs()
            );
        } else {
            log::warn!("{line}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_survives_a_silent_client() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, || "up 1\n".to_owned()).unwrap();

        let reply = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nup 1\n"), "{reply}");
        assert!(get(addr, b"GET /other HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"hello\r\n\r\n").starts_with("HTTP/1.1 400"));

        // A client that never finishes is cut off after REQUEST_TIMEOUT, and
        // the next scrape is answered.
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let started = Instant::now();
        let reply = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(reply.ends_with("up 1\n"), "{reply}");
        assert!(started.elapsed() >= REQUEST_TIMEOUT / 2);
        let mut rest = Vec::new();
        let _ = silent.read_to_end(&mut rest);
        assert!(rest.is_empty(), "the unfinished request got no answer");
        let _ = silent.shutdown(Shutdown::Both);
    }
}
