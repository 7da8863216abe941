//! Capture pixel formats: which V4L2 formats the agent takes, what their
//! fourcc codes are, and how a frame of each lies in its buffer ([`Layout`]:
//! planes, strides, the bytes a whole frame needs).
//!
//! A V4L2 driver reports one `bytesperline` (the stride of the first plane)
//! for a single-planar format. The other planes follow the V4L2 rules for
//! the contiguous planar formats: NV12/NV21's interleaved chroma plane has
//! the luma's stride, YU12/YV12's two chroma planes half of it, and each
//! plane starts right after the previous one's `height` rows, padding
//! included. Only the very last row of the frame may lack its padding.
//!
//! Nothing here does I/O; the agent asks the driver, then builds a
//! [`Layout`] from the answer and checks every frame against it.

use std::fmt;

/// A pixel format the agent can capture, by its V4L2 fourcc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `YUYV`: packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// `UYVY`: packed 4:2:2, U Y0 V Y1.
    Uyvy,
    /// `YVYU`: packed 4:2:2, Y0 V Y1 U.
    Yvyu,
    /// `NV12`: 4:2:0, a Y plane then one plane of interleaved U V.
    Nv12,
    /// `NV21`: 4:2:0, a Y plane then one plane of interleaved V U.
    Nv21,
    /// `YU12` (I420): 4:2:0, Y, U and V planes.
    Yu12,
    /// `YV12`: 4:2:0, Y, V and U planes.
    Yv12,
    /// `GREY`: 8-bit luma only.
    Grey,
    /// `RGB3`: packed 24-bit R G B.
    Rgb3,
    /// `BGR3`: packed 24-bit B G R.
    Bgr3,
    /// `MJPG`: each frame a JPEG (Motion-JPEG); its size is the JPEG's.
    Mjpg,
}

/// How the chroma of a YUV format is subsampled; `None` for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsampling {
    /// Not a subsampled YUV format: any width and height.
    None,
    /// Chroma per horizontal pixel pair: the width must be even.
    Yuv422,
    /// Chroma per 2x2 block: width and height must be even.
    Yuv420,
}

impl PixelFormat {
    /// Every format, in the order `auto` prefers them among raw formats
    /// (YUYV first: what nearly every webcam offers; GREY last of the raw
    /// formats: it has no colour) and MJPG at the end.
    pub const ALL: [PixelFormat; 11] = [
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Yvyu,
        PixelFormat::Nv12,
        PixelFormat::Nv21,
        PixelFormat::Yu12,
        PixelFormat::Yv12,
        PixelFormat::Rgb3,
        PixelFormat::Bgr3,
        PixelFormat::Grey,
        PixelFormat::Mjpg,
    ];

    /// The V4L2 fourcc, as the four bytes of `v4l2_pix_format.pixelformat`
    /// in memory order (`u32::from_le_bytes` gives the kernel's value).
    pub const fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Uyvy => *b"UYVY",
            PixelFormat::Yvyu => *b"YVYU",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Nv21 => *b"NV21",
            PixelFormat::Yu12 => *b"YU12",
            PixelFormat::Yv12 => *b"YV12",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Rgb3 => *b"RGB3",
            PixelFormat::Bgr3 => *b"BGR3",
            PixelFormat::Mjpg => *b"MJPG",
        }
    }

    /// The fourcc as text: `"YUYV"`.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Uyvy => "UYVY",
            PixelFormat::Yvyu => "YVYU",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Nv21 => "NV21",
            PixelFormat::Yu12 => "YU12",
            PixelFormat::Yv12 => "YV12",
            PixelFormat::Grey => "GREY",
            PixelFormat::Rgb3 => "RGB3",
            PixelFormat::Bgr3 => "BGR3",
            PixelFormat::Mjpg => "MJPG",
        }
    }

    /// The format with this fourcc, if the agent takes it.
    pub fn from_fourcc(fourcc: [u8; 4]) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == fourcc)
    }

    /// Parses a fourcc name, case-insensitive (`yuyv`, `Nv12`, `mjpg`).
    pub fn parse(text: &str) -> Result<PixelFormat, FormatError> {
        let upper = text.trim().to_ascii_uppercase();
        PixelFormat::ALL
            .into_iter()
            .find(|f| f.name() == upper)
            .ok_or_else(|| FormatError::Unknown {
                name: text.chars().take(16).collect(),
            })
    }

    /// True for MJPG: a frame is a JPEG of any length, not pixels.
    pub fn is_compressed(self) -> bool {
        self == PixelFormat::Mjpg
    }

    /// How the chroma is subsampled, which decides what sizes are valid.
    pub fn subsampling(self) -> Subsampling {
        match self {
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Yvyu => Subsampling::Yuv422,
            PixelFormat::Nv12 | PixelFormat::Nv21 | PixelFormat::Yu12 | PixelFormat::Yv12 => {
                Subsampling::Yuv420
            }
            PixelFormat::Grey | PixelFormat::Rgb3 | PixelFormat::Bgr3 | PixelFormat::Mjpg => {
                Subsampling::None
            }
        }
    }

    /// Bytes per pixel of the first plane (MJPG: 0, it has no rows).
    pub fn first_plane_bytes_per_pixel(self) -> u32 {
        match self {
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Yvyu => 2,
            PixelFormat::Nv12
            | PixelFormat::Nv21
            | PixelFormat::Yu12
            | PixelFormat::Yv12
            | PixelFormat::Grey => 1,
            PixelFormat::Rgb3 | PixelFormat::Bgr3 => 3,
            PixelFormat::Mjpg => 0,
        }
    }

    /// Checks that a `width` x `height` frame exists in this format: 4:2:2
    /// needs an even width, 4:2:0 an even width and height.
    pub fn check_size(self, width: u32, height: u32) -> Result<(), FormatError> {
        let (even_width, even_height) = match self.subsampling() {
            Subsampling::None => (false, false),
            Subsampling::Yuv422 => (true, false),
            Subsampling::Yuv420 => (true, true),
        };
        if (even_width && !width.is_multiple_of(2)) || (even_height && !height.is_multiple_of(2)) {
            return Err(FormatError::OddSize {
                format: self,
                width,
                height,
            });
        }
        Ok(())
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names `--format` takes, for messages: `"YUYV, UYVY, …, MJPG"`.
pub fn names() -> String {
    PixelFormat::ALL.map(PixelFormat::name).join(", ")
}

/// Why a format or a layout was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not a fourcc the agent takes (at most 16 characters of it kept).
    Unknown {
        /// What was given.
        name: String,
    },
    /// The size does not fit the format's chroma subsampling.
    OddSize {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The stride (`bytesperline`) is shorter than one row of pixels.
    StrideTooSmall {
        /// The stride given, in bytes per row.
        stride: u32,
        /// Bytes one row of pixels needs.
        min: u64,
    },
    /// A frame would not fit in 32 bits (the kernel's own `sizeimage`).
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row of the first plane.
        stride: u32,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Unknown { name } => write!(
                f,
                "unknown pixel format `{name}`; use auto or one of {}",
                names()
            ),
            FormatError::OddSize {
                format,
                width,
                height,
            } => {
                let need = match format.subsampling() {
                    Subsampling::Yuv420 => {
                        "an even width and height (it shares colour between 2x2 pixels)"
                    }
                    _ => "an even width (it shares colour between two pixels)",
                };
                write!(f, "{format} at {width}x{height}: {format} needs {need}")
            }
            FormatError::StrideTooSmall { stride, min } => write!(
                f,
                "{stride} bytes per row (bytesperline) is less than the {min} the pixels need"
            ),
            FormatError::TooLarge {
                width,
                height,
                stride,
            } => write!(
                f,
                "{width}x{height} at {stride} bytes per row is over 4 GiB a frame"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// One plane of a frame: where it starts, how far apart its rows are, how
/// many bytes of each row are pixels, and how many rows it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plane {
    /// Byte offset of the first row in the frame buffer.
    pub offset: usize,
    /// Bytes from one row to the next (`bytesperline` for the first plane).
    pub stride: usize,
    /// Bytes of pixels in a row (the rest of the stride is padding).
    pub row_len: usize,
    /// Rows in the plane.
    pub rows: usize,
}

/// Where the planes of a raw frame lie in its buffer. MJPG has no planes:
/// its frames are whatever length the camera sent, up to `frame_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    format: PixelFormat,
    width: u32,
    height: u32,
    planes: [Plane; 3],
    plane_count: usize,
    frame_len: usize,
}

impl Layout {
    /// The layout of a `width` x `height` frame in `format` with V4L2's
    /// `bytesperline` for the first plane (0: tightly packed, as drivers
    /// may report for packed formats). Checked: a stride shorter than a row
    /// or a frame over 4 GiB is an error, the same on 32- and 64-bit.
    ///
    /// For MJPG, `bytesperline` is ignored and a frame may be up to
    /// `max(width * height * 3, 64 KiB)` bytes (the file source's bound;
    /// the camera's is its `sizeimage`: [`Layout::compressed`]).
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        bytesperline: u32,
    ) -> Result<Layout, FormatError> {
        format.check_size(width, height)?;
        let too_large = FormatError::TooLarge {
            width,
            height,
            stride: bytesperline,
        };
        if format.is_compressed() {
            let len = u64::from(width) * u64::from(height) * 3;
            let len = u32::try_from(len.max(MIN_COMPRESSED_LEN)).map_err(|_| too_large)?;
            return Ok(Layout::compressed(width, height, len));
        }
        let row_len = u64::from(width) * u64::from(format.first_plane_bytes_per_pixel());
        let row_len = u32::try_from(row_len).map_err(|_| too_large.clone())?;
        let stride = match bytesperline {
            0 => row_len,
            s if s < row_len => {
                return Err(FormatError::StrideTooSmall {
                    stride: s,
                    min: u64::from(row_len),
                })
            }
            s => s,
        };
        let (w, h, s, r) = (
            u64::from(width),
            u64::from(height),
            u64::from(stride),
            u64::from(row_len),
        );
        // (offset, stride, row_len, rows) per plane, in u64: no overflow.
        let luma_end = s * h;
        let planes: Vec<(u64, u64, u64, u64)> = match format.subsampling() {
            Subsampling::None | Subsampling::Yuv422 => vec![(0, s, r, h)],
            Subsampling::Yuv420 => match format {
                PixelFormat::Nv12 | PixelFormat::Nv21 => {
                    vec![(0, s, r, h), (luma_end, s, w, h / 2)]
                }
                _ => {
                    let (cs, cr) = (s / 2, w / 2);
                    vec![
                        (0, s, r, h),
                        (luma_end, cs, cr, h / 2),
                        (luma_end + cs * (h / 2), cs, cr, h / 2),
                    ]
                }
            },
        };
        let last = planes.last().copied().unwrap_or_default();
        let frame_len = if h == 0 {
            0
        } else {
            last.0 + last.1 * last.3.saturating_sub(1) + last.2
        };
        if frame_len > u64::from(u32::MAX) {
            return Err(FormatError::TooLarge {
                width,
                height,
                stride,
            });
        }
        let mut out = [Plane::default(); 3];
        for (slot, &(offset, stride, row_len, rows)) in out.iter_mut().zip(&planes) {
            // Each is at most frame_len, which fits in u32 and so in usize.
            *slot = Plane {
                offset: offset as usize,
                stride: stride as usize,
                row_len: row_len as usize,
                rows: rows as usize,
            };
        }
        Ok(Layout {
            format,
            width,
            height,
            planes: out,
            plane_count: planes.len(),
            frame_len: frame_len as usize,
        })
    }

    /// The layout of a `width` x `height` MJPG frame of at most `max_len`
    /// bytes (the driver's `sizeimage`).
    pub fn compressed(width: u32, height: u32, max_len: u32) -> Layout {
        Layout {
            format: PixelFormat::Mjpg,
            width,
            height,
            planes: [Plane::default(); 3],
            plane_count: 0,
            frame_len: max_len as usize,
        }
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The planes, first (luma, or the only one) first; none for MJPG.
    pub fn planes(&self) -> &[Plane] {
        &self.planes[..self.plane_count]
    }

    /// The first plane's stride (`bytesperline`); 0 for MJPG.
    pub fn stride(&self) -> usize {
        self.planes().first().map_or(0, |p| p.stride)
    }

    /// For a raw format, the bytes a whole frame needs (the last row may
    /// lack its padding), which shorter buffers are refused for; for MJPG,
    /// the most a frame may hold.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }
}

/// The smallest buffer a compressed frame gets, whatever its size: a tiny
/// JPEG still carries its tables.
const MIN_COMPRESSED_LEN: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::parse(f.name()), Ok(f));
            assert_eq!(PixelFormat::parse(&f.name().to_lowercase()), Ok(f));
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(f.name().as_bytes(), f.fourcc());
        }
        assert_eq!(PixelFormat::parse("Nv12"), Ok(PixelFormat::Nv12));
        assert!(PixelFormat::parse("H264").is_err());
        assert_eq!(PixelFormat::from_fourcc(*b"H264"), None);
        let text = PixelFormat::parse("rgb24").unwrap_err().to_string();
        assert!(text.contains("RGB3") && text.contains("auto"), "{text}");
    }

    #[test]
    fn subsampled_formats_need_even_sizes() {
        assert!(PixelFormat::Yuyv.check_size(640, 481).is_ok());
        assert!(PixelFormat::Yuyv.check_size(641, 480).is_err());
        assert!(PixelFormat::Nv12.check_size(640, 481).is_err());
        assert!(PixelFormat::Grey.check_size(641, 481).is_ok());
        assert!(PixelFormat::Rgb3.check_size(3, 1).is_ok());
        let text = PixelFormat::Yu12
            .check_size(640, 481)
            .unwrap_err()
            .to_string();
        assert!(text.contains("even width and height"), "{text}");
    }

    #[test]
    fn packed_layouts_pad_every_row_but_the_last() {
        let l = Layout::new(PixelFormat::Yuyv, 640, 480, 0).unwrap();
        assert_eq!(
            (l.stride(), l.frame_len(), l.planes().len()),
            (1280, 1280 * 480, 1)
        );
        let l = Layout::new(PixelFormat::Rgb3, 5, 2, 16).unwrap();
        assert_eq!(
            l.planes(),
            [Plane {
                offset: 0,
                stride: 16,
                row_len: 15,
                rows: 2
            }]
        );
        assert_eq!(l.frame_len(), 16 + 15);
        assert_eq!(
            Layout::new(PixelFormat::Grey, 7, 3, 0).unwrap().frame_len(),
            21
        );
    }

    #[test]
    fn planar_layouts_follow_the_v4l2_rules() {
        // NV12: the UV plane has the luma stride and starts after all of
        // the luma's padded rows.
        let l = Layout::new(PixelFormat::Nv21, 6, 4, 8).unwrap();
        assert_eq!(
            l.planes(),
            [
                Plane {
                    offset: 0,
                    stride: 8,
                    row_len: 6,
                    rows: 4
                },
                Plane {
                    offset: 32,
                    stride: 8,
                    row_len: 6,
                    rows: 2
                }
            ]
        );
        assert_eq!(l.frame_len(), 32 + 8 + 6);
        // YU12: the chroma planes have half the stride.
        let l = Layout::new(PixelFormat::Yu12, 6, 4, 8).unwrap();
        assert_eq!(
            l.planes()[1..],
            [
                Plane {
                    offset: 32,
                    stride: 4,
                    row_len: 3,
                    rows: 2
                },
                Plane {
                    offset: 40,
                    stride: 4,
                    row_len: 3,
                    rows: 2
                }
            ]
        );
        assert_eq!(l.frame_len(), 40 + 4 + 3);
        // Tightly packed I420 is the textbook w*h*3/2.
        let l = Layout::new(PixelFormat::Yv12, 640, 480, 0).unwrap();
        assert_eq!(l.frame_len(), 640 * 480 * 3 / 2);
    }

    #[test]
    fn bad_strides_and_sizes_are_refused() {
        assert_eq!(
            Layout::new(PixelFormat::Uyvy, 640, 480, 1000),
            Err(FormatError::StrideTooSmall {
                stride: 1000,
                min: 1280
            })
        );
        assert!(matches!(
            Layout::new(PixelFormat::Nv12, 640, 16384, 1 << 20),
            Err(FormatError::TooLarge { .. })
        ));
        assert!(Layout::new(PixelFormat::Rgb3, u32::MAX, 1, 0).is_err());
    }

    #[test]
    fn lying_bytesperline_is_refused_not_wrapped_on_32_bit() {
        // 16384 rows of 1 MiB is 16 GiB: on 32-bit Pi OS a
        // `stride * (height - 1)` in usize wrapped to a small length.
        let err = Layout::new(PixelFormat::Yuyv, 640, 16384, 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "640x16384 at 1048576 bytes per row is over 4 GiB a frame"
        );
        // Exactly u32::MAX still fits: the last row carries no padding.
        let stride = u32::MAX - 4;
        assert_eq!(
            Layout::new(PixelFormat::Yuyv, 2, 2, stride).map(|l| l.frame_len()),
            Ok(u32::MAX as usize)
        );
    }

    #[test]
    fn mjpg_has_no_planes_and_a_bounded_frame() {
        let l = Layout::new(PixelFormat::Mjpg, 640, 480, 0).unwrap();
        assert!(l.planes().is_empty());
        assert_eq!((l.stride(), l.frame_len()), (0, 640 * 480 * 3));
        assert_eq!(
            Layout::new(PixelFormat::Mjpg, 2, 2, 0).unwrap().frame_len(),
            65536
        );
        assert_eq!(Layout::compressed(8, 8, 1000).frame_len(), 1000);
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            FormatError::Unknown { name: "x".into() },
            FormatError::OddSize {
                format: PixelFormat::Nv12,
                width: 3,
                height: 3,
            },
            FormatError::StrideTooSmall { stride: 1, min: 2 },
            FormatError::TooLarge {
                width: 1,
                height: 2,
                stride: 3,
            },
        ];
        for e in errors {
            assert!(e.to_string().len() > 20, "{e:?}");
        }
    }
}
