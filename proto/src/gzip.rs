//! gzip (RFC 1952) compression and capped decompression, with libdeflate.
//!
//! libdeflate works on whole buffers, which is exactly our case: one frame is
//! one gzip member. At level 9 it ran about 2x zlib's speed on camera frames
//! at the same ratio (README, "Performance"), and gzip is most of the agent's
//! CPU time.
//!
//! Decompression is capped without trusting the peer: the gzip trailer's
//! ISIZE field announces the output size. A size over the cap is refused
//! before anything is allocated; otherwise exactly that many bytes are
//! allocated, and a stream that inflates to more than it announced fails
//! instead of growing the buffer. So a decompression bomb costs at most the
//! cap, whatever it says.

use std::fmt;

/// The level the protocol's original design uses.
pub const DEFAULT_LEVEL: u32 = 9;

/// Highest supported level: gzip's scale is 0 (store) to 9 (best).
pub const MAX_LEVEL: u32 = 9;

/// Default cap on a decompressed body: 64 MiB.
pub const MAX_DECOMPRESSED_LEN: usize = 64 << 20;

/// gzip's fixed 10-byte header plus its 8-byte trailer: the smallest member.
const MIN_GZIP_LEN: usize = 18;
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Why compression or decompression failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GzipError {
    /// A compression level outside 0..=9.
    BadLevel {
        /// The level asked for.
        level: u32,
    },
    /// The body does not start with the gzip magic and deflate method.
    NotGzip,
    /// The body is shorter than the smallest possible gzip member.
    Truncated {
        /// Bytes in the body.
        len: usize,
    },
    /// The trailer announces more output than the cap allows.
    TooLarge {
        /// The decompressed length the trailer announces (ISIZE), in bytes.
        announced: u32,
        /// The decompressor's cap, in bytes.
        max: usize,
    },
    /// The deflate data is corrupt, or inflates to more than the trailer announced.
    Corrupt,
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GzipError::BadLevel { level } => {
                write!(f, "gzip level {level} is out of range 0..={MAX_LEVEL}")
            }
            GzipError::NotGzip => write!(f, "body is not a gzip stream (bad magic)"),
            GzipError::Truncated { len } => {
                write!(f, "gzip stream of {len} bytes is truncated")
            }
            GzipError::TooLarge { announced, max } => write!(
                f,
                "gzip stream announces {announced} decompressed bytes, over the {max}-byte limit"
            ),
            GzipError::Corrupt => write!(
                f,
                "gzip stream is corrupt or inflates to more than its trailer announces"
            ),
        }
    }
}

impl std::error::Error for GzipError {}

/// A reusable gzip compressor at a fixed level.
pub struct Compressor {
    inner: libdeflater::Compressor,
}

impl Compressor {
    /// A compressor at `level`: 0 stores without compressing, 9 (the
    /// protocol's [`DEFAULT_LEVEL`]) is smallest and slowest. Over
    /// [`MAX_LEVEL`] is [`GzipError::BadLevel`].
    pub fn new(level: u32) -> Result<Compressor, GzipError> {
        if level > MAX_LEVEL {
            return Err(GzipError::BadLevel { level });
        }
        let level = libdeflater::CompressionLvl::new(level as i32)
            .map_err(|_| GzipError::BadLevel { level })?;
        Ok(Compressor {
            inner: libdeflater::Compressor::new(level),
        })
    }

    /// Appends the gzip member of `input` to `out`. `out` keeps its capacity
    /// across calls, so steady state allocates nothing. (Its spare capacity
    /// is zero-filled to the worst-case bound first, about 0.9 MB for a
    /// 640x480 BMP; a caller that can keep one buffer at its high-water
    /// length avoids that with [`compress_at`](Compressor::compress_at).)
    pub fn compress_append(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let written = self.compress_at(input, out, start);
        out.truncate(start + written);
    }

    /// The most bytes a gzip member of `input_len` bytes can take: what
    /// [`compress_at`](Compressor::compress_at) grows its buffer to.
    pub fn compress_bound(&mut self, input_len: usize) -> usize {
        self.inner.gzip_compress_bound(input_len)
    }

    /// Writes the gzip member of `input` at `out[start..]` and returns its
    /// length. `out` is grown to `start` + libdeflate's worst-case bound if
    /// it is shorter, and never shrunk: a buffer reused at its high-water
    /// length is not zero-filled again, only the part that grows is (safe
    /// Rust must initialise what it hands to libdeflate). Bytes before
    /// `start` are kept; bytes after the member are left as they were.
    pub fn compress_at(&mut self, input: &[u8], out: &mut Vec<u8>, start: usize) -> usize {
        let end = start + self.compress_bound(input.len());
        if out.len() < end {
            out.resize(end, 0);
        }
        self.inner
            .gzip_compress(input, &mut out[start..end])
            // The buffer is the library's own worst-case bound, so this cannot fail.
            .expect("libdeflate output fits its own compress bound")
    }
}

/// A reusable gzip decompressor with an output cap.
pub struct Decompressor {
    inner: libdeflater::Decompressor,
    max_len: usize,
}

impl Decompressor {
    /// A decompressor that refuses to produce more than `max_len` bytes.
    pub fn new(max_len: usize) -> Decompressor {
        Decompressor {
            inner: libdeflater::Decompressor::new(),
            max_len,
        }
    }

    /// Decompresses one gzip member into `out`, replacing its contents.
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), GzipError> {
        if input.len() >= GZIP_MAGIC.len() && input[..GZIP_MAGIC.len()] != GZIP_MAGIC {
            return Err(GzipError::NotGzip);
        }
        if input.len() < MIN_GZIP_LEN {
            return Err(GzipError::Truncated { len: input.len() });
        }
        let mut isize_bytes = [0u8; 4];
        isize_bytes.copy_from_slice(&input[input.len() - 4..]);
        let announced = u32::from_le_bytes(isize_bytes);
        let out_len = announced as usize;
        if out_len > self.max_len {
            return Err(GzipError::TooLarge {
                announced,
                max: self.max_len,
            });
        }
        out.clear();
        out.resize(out_len, 0);
        match self.inner.gzip_decompress(input, out) {
            Ok(n) if n == out_len => Ok(()),
            // Fewer bytes than announced: the trailer lied (or the CRC check
            // passed on a corrupt length field); either way, not trustworthy.
            Ok(_) => Err(GzipError::Corrupt),
            Err(_) => Err(GzipError::Corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Compressor::new(DEFAULT_LEVEL)
            .unwrap()
            .compress_append(data, &mut out);
        out
    }

    #[test]
    fn round_trip_and_append() {
        let mut out = vec![1, 2];
        Compressor::new(6)
            .unwrap()
            .compress_append(b"hello hello hello", &mut out);
        assert_eq!(out[..2], [1, 2]);
        assert_eq!(out[2..5], GZIP_MAGIC);
        let mut back = vec![9; 3];
        Decompressor::new(100)
            .decompress(&out[2..], &mut back)
            .unwrap();
        assert_eq!(back, b"hello hello hello");
    }

    #[test]
    fn compress_at_keeps_the_buffer_at_its_high_water_length() {
        let mut c = Compressor::new(DEFAULT_LEVEL).unwrap();
        let mut d = Decompressor::new(1 << 20);
        let big: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut out = vec![0xAA; 3];
        let n = c.compress_at(&big, &mut out, 3);
        assert_eq!(out[..3], [0xAA; 3], "bytes before start are kept");
        let high_water = out.len();
        assert!(high_water >= 3 + n);
        let mut back = Vec::new();
        d.decompress(&out[3..3 + n], &mut back).unwrap();
        assert_eq!(back, big);
        // A smaller input reuses the buffer without shrinking it, and its
        // member stands alone whatever the old bytes after it were.
        let n = c.compress_at(b"hello hello hello", &mut out, 3);
        assert_eq!(out.len(), high_water);
        d.decompress(&out[3..3 + n], &mut back).unwrap();
        assert_eq!(back, b"hello hello hello");
        // The same bytes as compress_append.
        let mut appended = vec![0xAA; 3];
        c.compress_append(b"hello hello hello", &mut appended);
        assert_eq!(appended[..], out[..3 + n]);
    }

    #[test]
    fn bad_level() {
        assert!(matches!(
            Compressor::new(10),
            Err(GzipError::BadLevel { level: 10 })
        ));
        assert!(Compressor::new(0).is_ok());
    }

    #[test]
    fn not_gzip() {
        let mut out = Vec::new();
        let mut d = Decompressor::new(100);
        assert_eq!(
            d.decompress(b"BM6\0\0\0", &mut out),
            Err(GzipError::NotGzip)
        );
        // A zlib stream (78 9c) is not gzip either.
        assert_eq!(
            d.decompress(&[0x78, 0x9c, 3, 0], &mut out),
            Err(GzipError::NotGzip)
        );
    }

    #[test]
    fn truncated() {
        let mut out = Vec::new();
        let mut d = Decompressor::new(100);
        assert_eq!(
            d.decompress(&[], &mut out),
            Err(GzipError::Truncated { len: 0 })
        );
        let full = gz(b"abc");
        assert_eq!(
            d.decompress(&full[..10], &mut out),
            Err(GzipError::Truncated { len: 10 })
        );
        // Cut inside the deflate data, long enough to have a "trailer".
        let long = gz(&(0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>());
        // Its last 4 bytes are deflate data read as ISIZE: whatever they
        // say, the result is a named error, never a short success.
        assert!(matches!(
            d.decompress(&long[..long.len() / 2], &mut out),
            Err(GzipError::Corrupt | GzipError::TooLarge { .. })
        ));
    }

    #[test]
    fn too_large_is_refused_before_allocating() {
        let data = vec![0u8; 1001];
        let mut out = Vec::new();
        assert_eq!(
            Decompressor::new(1000).decompress(&gz(&data), &mut out),
            Err(GzipError::TooLarge {
                announced: 1001,
                max: 1000
            })
        );
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn corrupt() {
        let mut body = gz(b"some camera frame bytes, some camera frame bytes");
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
        assert_eq!(
            Decompressor::new(1000).decompress(&body, &mut Vec::new()),
            Err(GzipError::Corrupt)
        );
    }

    #[test]
    fn regression_isize_that_lies_low_cannot_grow_the_buffer() {
        let mut body = gz(&[0u8; 5000]);
        let n = body.len();
        body[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        let mut out = Vec::new();
        assert_eq!(
            Decompressor::new(1 << 20).decompress(&body, &mut out),
            Err(GzipError::Corrupt)
        );
        assert!(out.capacity() <= 10, "capacity {}", out.capacity());
    }

    #[test]
    fn isize_that_lies_high_is_corrupt() {
        let mut body = gz(&[0u8; 5000]);
        let n = body.len();
        body[n - 4..].copy_from_slice(&6000u32.to_le_bytes());
        assert_eq!(
            Decompressor::new(1 << 20).decompress(&body, &mut Vec::new()),
            Err(GzipError::Corrupt)
        );
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            GzipError::BadLevel { level: 10 },
            GzipError::NotGzip,
            GzipError::Truncated { len: 3 },
            GzipError::TooLarge {
                announced: 2,
                max: 1,
            },
            GzipError::Corrupt,
        ];
        for e in errors {
            assert!(e.to_string().len() > 20, "{e:?}");
        }
    }
}
