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

/// A fresh body buffer grows to at least this much past the bytes received
/// when a caller asks for room to read into ([`FrameReader::body_tail`]):
/// one socket read's worth, so a peer that announces a large body and sends
/// one byte costs at most this.
pub const BODY_READ_ROOM: usize = 64 << 10;

/// An incremental frame reader: feed it bytes as they arrive, in chunks of any
/// size, and it yields complete frames. It does no I/O.
///
/// Two ways in, freely mixed: [`FrameReader::feed`] copies from a slice the
/// caller read into; once a header is in, [`FrameReader::body_tail`] lends
/// the body's unfilled room, the caller reads into it and
/// [`FrameReader::commit`]s what it read, so a body is read in place.
///
/// The header is checked the moment its 5 bytes exist, so a hostile length is
/// refused before any body byte is buffered. A fresh body buffer grows with
/// the bytes actually received (to at most twice them, or [`BODY_READ_ROOM`]
/// past them when the caller asks for room to read into, and never past the
/// announced length), so a peer that announces 32 MiB and sends nothing costs
/// nothing. A buffer handed back with [`FrameReader::recycle`] keeps its
/// capacity, so a stream of frames reuses one allocation instead of growing
/// a new one per frame.
#[derive(Debug)]
pub struct FrameReader {
    max_body_len: u32,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// The checked header of the frame being read, once all 5 bytes are in.
    current: Option<Header>,
    /// `body[..body_filled]` is the current frame's body so far; the rest of
    /// `body` is initialized room (zeros, or a recycled frame's old bytes)
    /// that reads may land in.
    body: Vec<u8>,
    body_filled: usize,
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
            body_filled: 0,
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
        let rest = &input[used..];
        let take = self.body_remaining_len().min(rest.len());
        let filled = self.body_filled;
        self.make_room(filled + take);
        self.body[filled..filled + take].copy_from_slice(&rest[..take]);
        used += take;
        Ok((used, self.commit(take)))
    }

    /// The unfilled room of the current frame's body, for the caller to read
    /// into and then [`commit`](FrameReader::commit); `None` until a header
    /// is complete. Never empty: a buffer without room grows by at most
    /// [`BODY_READ_ROOM`] or the bytes received so far, whichever is more,
    /// and never past the announced length.
    pub fn body_tail(&mut self) -> Option<&mut [u8]> {
        let body_len = self.current?.body_len as usize;
        let filled = self.body_filled;
        if self.body.len() == filled {
            self.make_room(filled + (body_len - filled).min(BODY_READ_ROOM));
        }
        let end = self.body.len().min(body_len);
        Some(&mut self.body[filled..end])
    }

    /// Takes `n` bytes just written at the start of
    /// [`body_tail`](FrameReader::body_tail) as received, and returns the
    /// frame they complete, if any.
    ///
    /// # Panics
    ///
    /// If `n` is larger than the tail last lent (a bug in the caller, never
    /// the input's doing).
    pub fn commit(&mut self, n: usize) -> Option<Frame> {
        let header = self.current?;
        let body_len = header.body_len as usize;
        let room = self.body.len().min(body_len) - self.body_filled;
        assert!(n <= room, "committed {n} bytes into {room} bytes of room");
        self.body_filled += n;
        if self.body_filled < body_len {
            return None;
        }
        self.current = None;
        self.header_filled = 0;
        self.body_filled = 0;
        let mut body = std::mem::take(&mut self.body);
        body.truncate(body_len);
        Some(Frame {
            camera_id: header.camera_id,
            body,
        })
    }

    /// Offers a used body buffer (a [`Frame::body`] whose frame is done
    /// with) for the reader to read the next body into. The reader keeps
    /// the larger of it and its own buffer while it holds no body bytes, and
    /// gives back the other one if that has any capacity.
    pub fn recycle(&mut self, body: Vec<u8>) -> Option<Vec<u8>> {
        if self.body_filled > 0 || body.capacity() <= self.body.capacity() {
            return Some(body);
        }
        let old = std::mem::replace(&mut self.body, body);
        (old.capacity() > 0).then_some(old)
    }

    /// True when the reader has no body buffer of its own (it handed the
    /// last one out with a frame): the moment to [`recycle`](FrameReader::recycle) one.
    pub fn wants_buffer(&self) -> bool {
        self.body.capacity() == 0
    }

    /// Body bytes of the current frame still to come; 0 until a header is
    /// complete.
    pub fn body_remaining_len(&self) -> usize {
        self.current
            .map_or(0, |h| h.body_len as usize - self.body_filled)
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
        self.header_filled + self.body_filled
    }

    /// Makes `body[..want]` initialized room. A buffer that must grow grows
    /// to `want`, or to twice the bytes received if that is more, never past
    /// the announced length (`want` never is: callers ask for bytes in hand,
    /// or [`BODY_READ_ROOM`] at most).
    fn make_room(&mut self, want: usize) {
        if want <= self.body.len() {
            return;
        }
        let body_len = self.current.map_or(0, |h| h.body_len as usize);
        let new_len = want.max((2 * self.body_filled).min(body_len));
        self.body.reserve_exact(new_len - self.body.len());
        self.body.resize(new_len, 0);
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

    /// Camera 1 announcing the largest body the limit allows.
    fn largest_header() -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        Header {
            camera_id: 1,
            body_len: MAX_BODY_LEN,
        }
        .write(&mut header);
        header
    }

    #[test]
    fn announced_length_does_not_preallocate() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let header = largest_header();
        r.feed(&header).unwrap();
        r.feed(&[0; 10]).unwrap();
        assert!(r.body.capacity() < 1024, "capacity {}", r.body.capacity());
    }

    /// Reads `stream` the way the viewer does: bodies in place through
    /// `body_tail`/`commit` in chunks of at most `chunk` bytes, everything
    /// else through `feed`, recycling each frame's body into the reader.
    fn read_in_place(stream: &[u8], chunk: usize) -> Vec<Frame> {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let mut frames: Vec<Frame> = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            if let Some(tail) = r.body_tail() {
                let n = tail.len().min(chunk).min(rest.len());
                tail[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                frames.extend(r.commit(n));
            } else {
                let n = chunk.min(rest.len());
                let (used, frame) = r.feed(&rest[..n]).unwrap();
                rest = &rest[used..];
                frames.extend(frame);
            }
            if r.wants_buffer() {
                if let Some(last) = frames.last() {
                    r.recycle(last.body.clone());
                }
            }
        }
        assert!(!r.is_mid_frame());
        frames
    }

    #[test]
    fn reading_in_place_gives_the_frames_feed_gives() {
        let mut stream = Vec::new();
        for (id, len) in [(1u8, 3usize), (2, 200_000), (3, 1), (4, 70_000), (5, 9)] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ id).collect();
            encode_frame(id, &body, &mut stream).unwrap();
        }
        let mut expected = Vec::new();
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (used, frame) = r.feed(rest).unwrap();
            rest = &rest[used..];
            expected.extend(frame);
        }
        assert_eq!(expected.len(), 5);
        for chunk in [1, 2, 5, 7, 4096, 1 << 20] {
            assert_eq!(read_in_place(&stream, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn body_tail_does_not_preallocate_the_announced_length() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        assert!(r.body_tail().is_none(), "no room before a header");
        let header = largest_header();
        r.feed(&header).unwrap();
        assert_eq!(r.body_tail().unwrap().len(), BODY_READ_ROOM);
        assert!(r.body.capacity() <= BODY_READ_ROOM);
        // Room grows with what arrives: twice the bytes received at most.
        assert_eq!(r.commit(BODY_READ_ROOM), None);
        assert_eq!(r.body_tail().unwrap().len(), BODY_READ_ROOM);
        assert!(r.body.capacity() <= 2 * BODY_READ_ROOM);
        assert_eq!(r.buffered_len(), HEADER_LEN + BODY_READ_ROOM);
        // Never past the announced length.
        let mut r = FrameReader::new(MAX_BODY_LEN);
        r.feed(&[1, 0, 0, 0, 10]).unwrap();
        assert_eq!(r.body_tail().unwrap().len(), 10);
        assert_eq!(r.body_remaining_len(), 10);
    }

    #[test]
    fn a_recycled_buffer_is_read_into_without_growing() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        let spare = Vec::with_capacity(4096);
        let ptr = spare.as_ptr();
        assert!(r.wants_buffer());
        assert_eq!(r.recycle(spare), None);
        assert!(!r.wants_buffer());
        // A smaller one is handed back; so is any while a body is half in.
        assert_eq!(r.recycle(Vec::with_capacity(16)).unwrap().capacity(), 16);
        r.feed(&[3, 0, 0, 0x0b, 0xb8]).unwrap(); // 3000 bytes
        let tail = r.body_tail().unwrap();
        assert_eq!(tail.len(), 3000, "the whole body in one read");
        tail[..2].copy_from_slice(b"hi");
        assert_eq!(r.commit(2), None);
        let bigger = r.recycle(Vec::with_capacity(1 << 20)).unwrap();
        assert_eq!(bigger.capacity(), 1 << 20, "refused mid-body");
        let frame = r.commit(2998).unwrap();
        assert_eq!((frame.body.len(), &frame.body[..2]), (3000, &b"hi"[..]));
        assert_eq!(frame.body.as_ptr(), ptr, "the same allocation");
        assert!(r.wants_buffer());
    }

    #[test]
    #[should_panic(expected = "committed 11 bytes into 10 bytes of room")]
    fn committing_more_than_the_tail_is_a_caller_bug() {
        let mut r = FrameReader::new(MAX_BODY_LEN);
        r.feed(&[1, 0, 0, 0, 10]).unwrap();
        let _ = r.body_tail();
        r.commit(11);
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
            WireError::BodyTooLong { len: usize::MAX },
        ];
        for e in errors {
            assert!(e.to_string().len() > 20, "{e:?}");
        }
    }
}
