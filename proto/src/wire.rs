//! The frame format on the TCP stream, and a sans-IO reader for it.
//!
//! ```text
//! offset 0  u8      camera id
//! offset 1  u32 BE  body length, 1..=max_body_len
//! offset 5  body    (a gzip stream of a BMP file, but this layer does not care)
//! ```

use std::fmt;

/// Byte ranges of the header fields, so offsets live in one place (smoltcp's `mod field`).
mod field {
    use std::ops::Range;
    pub const CAMERA_ID: usize = 0;
    pub const BODY_LEN: Range<usize> = 1..5;
}

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = field::BODY_LEN.end;

/// Default largest body the reader accepts: 32 MiB.
pub const MAX_BODY_LEN: u32 = 32 << 20;

/// The camera a frame comes from, as sent on the wire.
pub type CameraId = u8;

/// A frame header: who sent the frame and how long its body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sending camera.
    pub camera_id: CameraId,
    /// Bytes of gzip body that follow the header.
    pub body_len: u32,
}

impl Header {
    /// Reads a header from its 5 bytes. Any 5 bytes are a syntactically valid
    /// header; use [`Header::check`] to apply the limits.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[field::BODY_LEN]);
        Header {
            camera_id: bytes[field::CAMERA_ID],
            body_len: u32::from_be_bytes(len),
        }
    }

    /// Writes the header in wire byte order.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[field::CAMERA_ID] = self.camera_id;
        out[field::BODY_LEN].copy_from_slice(&self.body_len.to_be_bytes());
    }

    /// Rejects an empty body or one longer than `max_body_len`.
    pub fn check(&self, max_body_len: u32) -> Result<(), WireError> {
        if self.body_len == 0 {
            return Err(WireError::EmptyBody {
                camera_id: self.camera_id,
            });
        }
        if self.body_len > max_body_len {
            return Err(WireError::BodyTooLarge {
                camera_id: self.camera_id,
                len: self.body_len,
                max: max_body_len,
            });
        }
        Ok(())
    }
}

/// Why a frame could not be encoded or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The header announces a body of length 0, which the protocol forbids.
    EmptyBody {
        /// The camera the header names.
        camera_id: CameraId,
    },
    /// The header announces a body longer than the limit.
    BodyTooLarge {
        /// The camera the header names.
        camera_id: CameraId,
        /// The body length the header announces, in bytes.
        len: u32,
        /// The reader's limit, in bytes.
        max: u32,
    },
    /// A body to encode does not fit the 32-bit length field.
    BodyTooLong {
        /// Bytes in the body.
        len: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::EmptyBody { camera_id } => {
                write!(
                    f,
                    "camera {camera_id} sent a frame header with body length 0"
                )
            }
            WireError::BodyTooLarge {
                camera_id,
                len,
                max,
            } => write!(
                f,
                "camera {camera_id} announced a {len}-byte frame body, over the {max}-byte limit"
            ),
            WireError::BodyTooLong { len } => {
                write!(f, "a {len}-byte body does not fit the 32-bit length field")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Appends one complete frame, header then body, to `out`.
///
/// The agent sends this buffer with a single write: two writes stall small
/// frames on delayed ACK.
pub fn encode_frame(camera_id: CameraId, body: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = begin_frame(camera_id, out);
    out.extend_from_slice(body);
    finish_frame(out, start)
}

/// Appends a header with a placeholder length and returns where it starts.
/// Write the body after it, then call [`finish_frame`]. This lets a
/// compressor write the body straight into the send buffer.
pub fn begin_frame(camera_id: CameraId, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut header = [0u8; HEADER_LEN];
    Header {
        camera_id,
        body_len: 0,
    }
    .write(&mut header);
    out.extend_from_slice(&header);
    start
}

/// Fills in the body length of the frame that [`begin_frame`] started at `start`.
pub fn finish_frame(out: &mut [u8], start: usize) -> Result<(), WireError> {
    let body_len = out.len() - start - HEADER_LEN;
    if body_len == 0 {
        return Err(WireError::EmptyBody {
            camera_id: out[start + field::CAMERA_ID],
        });
    }
    let len = u32::try_from(body_len).map_err(|_| WireError::BodyTooLong { len: body_len })?;
    out[start + field::BODY_LEN.start..start + field::BODY_LEN.end]
        .copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// One complete frame as read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The camera the header names.
    pub camera_id: CameraId,
    /// The gzip body, exactly as many bytes as the header announced.
    pub body: Vec<u8>,
}

/// An incremental frame reader: feed it bytes as they arrive, in chunks of any
/// size, and it yields complete frames. It does no I/O.
///
/// The header is checked the moment its 5 bytes exist, so a hostile length is
/// refused before any body byte is buffered. The body buffer grows with the
/// bytes actually received (never more than twice them, and never past the
/// announced length), so a peer that announces 32 MiB and sends nothing costs
/// nothing.
#[derive(Debug)]
pub struct FrameReader {
    max_body_len: u32,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// The checked header of the frame being read, once all 5 bytes are in.
    current: Option<Header>,
    body: Vec<u8>,
}

impl FrameReader {
    /// A reader at a frame boundary that refuses bodies longer than
    /// `max_body_len` bytes ([`MAX_BODY_LEN`] unless the user chose).
    pub fn new(max_body_len: u32) -> FrameReader {
        FrameReader {
            max_body_len,
            header: [0; HEADER_LEN],
            header_filled: 0,
            current: None,
            body: Vec::new(),
        }
    }

    /// Consumes a prefix of `input` and returns how many bytes it took, and
    /// the frame those bytes completed, if any.
    ///
    /// It stops right after a complete frame, so call it again with the rest
    /// of `input`. "Need more bytes" is `Ok((input.len(), None))`, never an
    /// error. After an error the stream is out of sync: drop the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), WireError> {
        let mut used = 0;
        if self.current.is_none() {
            let take = (HEADER_LEN - self.header_filled).min(input.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&input[..take]);
            self.header_filled += take;
            used += take;
            if self.header_filled < HEADER_LEN {
                return Ok((used, None));
            }
            let header = Header::parse(&self.header);
            header.check(self.max_body_len)?;
            self.current = Some(header);
        }
        let Some(header) = self.current else {
            return Ok((used, None));
        };
        let body_len = header.body_len as usize;
        let rest = &input[used..];
        let take = (body_len - self.body.len()).min(rest.len());
        let want = self.body.len() + take;
        if want > self.body.capacity() {
            // Grow geometrically for speed, but never past the announced length.
            let new_cap = want.max((self.body.capacity() * 2).min(body_len));
            self.body.reserve_exact(new_cap - self.body.len());
        }
        self.body.extend_from_slice(&rest[..take]);
        used += take;
        if self.body.len() < body_len {
            return Ok((used, None));
        }
        self.current = None;
        self.header_filled = 0;
        let frame = Frame {
            camera_id: header.camera_id,
            body: std::mem::take(&mut self.body),
        };
        Ok((used, Some(frame)))
    }

    /// True when part of a frame has been received but not all of it: an EOF
    /// now means the peer cut a frame short.
    pub fn is_mid_frame(&self) -> bool {
        self.header_filled > 0
    }

    /// The camera id of the frame being read, once its header is complete.
    pub fn camera_id(&self) -> Option<CameraId> {
        self.current.map(|h| h.camera_id)
    }

    /// Bytes of the current frame received so far (header included).
    pub fn buffered_len(&self) -> usize {
        self.header_filled + self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `struct.pack('!BI', 7, 3) + b"abc"`.
    static PY_FRAME: [u8; 8] = [7, 0, 0, 0, 3, b'a', b'b', b'c'];

    #[test]
    fn encode_matches_python_struct_pack() {
        let mut out = vec![0xEE]; // appended to, not replaced
        encode_frame(7, b"abc", &mut out).unwrap();
        assert_eq!(out[0], 0xEE);
        assert_eq!(out[1..], PY_FRAME);
    }

    #[test]
    fn header_parse_write_round_trip() {
        let h = Header::parse(&[9, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(
            h,
            Header {
                camera_id: 9,
                body_len: 0x0102_0304
            }
        );
        let mut b = [0; HEADER_LEN];
        h.write(&mut b);
        assert_eq!(b, [9, 1, 2, 3, 4]);
    }

    #[test]
    fn reader_yields_frame_and_stops_after_it() {
        let mut stream = PY_FRAME.to_vec();
        stream.extend_from_slice(&[1, 0, 0, 0, 1, b'z']);
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let (used, frame) = r.feed(&stream).unwrap();
        assert_eq!(used, 8);
        assert_eq!(
            frame,
            Some(Frame {
                camera_id: 7,
                body: b"abc".to_vec()
            })
        );
        assert!(!r.is_mid_frame());
        let (used, frame) = r.feed(&stream[8..]).unwrap();
        assert_eq!((used, frame.unwrap().body), (6, b"z".to_vec()));
    }

    #[test]
    fn need_more_bytes_is_not_an_error() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        assert_eq!(r.feed(&[]).unwrap(), (0, None));
        assert_eq!(r.feed(&PY_FRAME[..3]).unwrap(), (3, None));
        assert!(r.is_mid_frame());
        assert_eq!(r.camera_id(), None);
        assert_eq!(r.feed(&PY_FRAME[3..6]).unwrap(), (3, None));
        assert_eq!(r.camera_id(), Some(7));
        assert_eq!(r.buffered_len(), 6);
        let (used, frame) = r.feed(&PY_FRAME[6..]).unwrap();
        assert_eq!((used, frame.unwrap().body), (2, b"abc".to_vec()));
        assert_eq!(r.buffered_len(), 0);
    }

    #[test]
    fn empty_body_is_rejected_at_the_header() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        assert_eq!(
            r.feed(&[3, 0, 0, 0, 0]),
            Err(WireError::EmptyBody { camera_id: 3 })
        );
        let mut out = Vec::new();
        assert_eq!(
            encode_frame(4, b"", &mut out),
            Err(WireError::EmptyBody { camera_id: 4 })
        );
    }

    #[test]
    fn oversized_body_is_rejected_before_any_body_byte() {
        let mut r = FrameReader::new(1000);
        // Exactly the 5 header bytes: the error comes now, not after 1001 more.
        assert_eq!(
            r.feed(&[2, 0, 0, 0x03, 0xe9]),
            Err(WireError::BodyTooLarge {
                camera_id: 2,
                len: 1001,
                max: 1000
            })
        );
        let mut r = FrameReader::new(MAX_BODY_LEN);
        assert_eq!(
            r.feed(&[2, 0xff, 0xff, 0xff, 0xff, 0]),
            Err(WireError::BodyTooLarge {
                camera_id: 2,
                len: u32::MAX,
                max: MAX_BODY_LEN
            })
        );
        assert_eq!(r.buffered_len(), HEADER_LEN);
    }

    #[test]
    fn announced_length_does_not_preallocate() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let mut header = [0u8; HEADER_LEN];
        Header {
            camera_id: 1,
            body_len: MAX_BODY_LEN,
        }
        .write(&mut header);
        r.feed(&header).unwrap();
        r.feed(&[0; 10]).unwrap();
        assert!(r.body.capacity() < 1024, "capacity {}", r.body.capacity());
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            WireError::EmptyBody { camera_id: 1 },
            WireError::BodyTooLarge {
                camera_id: 1,
                len: 2,
                max: 1,
            },
            WireError::BodyTooLong { len: 1 << 33 },
        ];
        for e in errors {
            assert!(e.to_string().len() > 20, "{e:?}");
        }
    }
}
