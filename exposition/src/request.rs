//! One HTTP/1.x request head, bounded: the part of HTTP our endpoints read.
//!
//! Both servers answer `GET` (and `HEAD`) with no body and close or stream
//! afterwards, so a request is its head and nothing more. The head is
//! parsed by httparse from whatever bytes have arrived: "need more" is
//! `Ok(None)` (mini-redis's shape), and a head longer than
//! [`MAX_HEAD_LEN`] or with more than [`MAX_HEADERS`] headers is refused as
//! soon as that is known, so a client that sends an endless header line
//! costs at most [`MAX_HEAD_LEN`] bytes of buffer.

use std::fmt;

/// Largest request head accepted, request line and headers together.
/// Browsers send under 2 KiB; 8 KiB is what most servers allow.
pub const MAX_HEAD_LEN: usize = 8 << 10;

/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;

/// The parts of a request head the servers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// Bytes of the head, including its final empty line.
    pub head_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other method: answered 405.
    Other,
}

/// Why a request head was refused. Each one gets an error status and a
/// close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The head is over [`MAX_HEAD_LEN`] and not finished.
    TooLarge { len: usize, max: usize },
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders { max: usize },
    /// Not HTTP/1.x: httparse's reason.
    Malformed(httparse::Error),
}

impl RequestError {
    /// The status line to answer with.
    pub fn status(&self) -> &'static str {
        match self {
            RequestError::TooLarge { .. } | RequestError::TooManyHeaders { .. } => {
                "431 Request Header Fields Too Large"
            }
            RequestError::Malformed(_) => "400 Bad Request",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLarge { len, max } => {
                write!(f, "request head of {len}+ bytes, over the limit of {max}")
            }
            RequestError::TooManyHeaders { max } => {
                write!(f, "more than {max} request headers")
            }
            RequestError::Malformed(e) => write!(f, "malformed HTTP request ({e})"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is a
/// valid prefix within the limits.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) if head_len <= MAX_HEAD_LEN => {
            let method = match req.method {
                Some("GET") => Method::Get,
                Some("HEAD") => Method::Head,
                _ => Method::Other,
            };
            let target = req.path.unwrap_or("/");
            let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
            Ok(Some(Request {
                method,
                path,
                head_len,
            }))
        }
        Ok(httparse::Status::Complete(_)) | Ok(httparse::Status::Partial)
            if buf.len() >= MAX_HEAD_LEN =>
        {
            Err(RequestError::TooLarge {
                len: buf.len(),
                max: MAX_HEAD_LEN,
            })
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Err(RequestError::TooLarge {
            len,
            max: MAX_HEAD_LEN,
        }),
        Err(httparse::Error::TooManyHeaders) => {
            Err(RequestError::TooManyHeaders { max: MAX_HEADERS })
        }
        Err(e) => Err(RequestError::Malformed(e)),
    }
}

/// A complete response with a body and `Connection: close`: what every
/// answer but a stream is.
pub fn response(status: &str, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_split_anywhere_parses_the_same() {
        let req = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(req),
            Ok(Some(Request {
                method: Method::Get,
                path: "/metrics".into(),
                head_len: req.len()
            }))
        );
    }

    #[test]
    fn an_endless_header_line_is_refused_at_the_limit() {
        let mut req = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        req.resize(MAX_HEAD_LEN - 1, b'a');
        assert_eq!(parse(&req), Ok(None));
        req.push(b'a');
        assert_eq!(
            parse(&req),
            Err(RequestError::TooLarge {
                len: MAX_HEAD_LEN,
                max: MAX_HEAD_LEN
            })
        );
    }

    #[test]
    fn too_many_headers_and_garbage_are_refused() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&req),
            Err(RequestError::TooManyHeaders { max: MAX_HEADERS })
        );
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn other_methods_are_named_other() {
        let Ok(Some(r)) = parse(b"POST /x HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.method, Method::Other);
        let Ok(Some(r)) = parse(b"HEAD / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.method, Method::Head);
    }
}
