//! What a camera offers, and what the agent picks from it.
//!
//! [`offers`] reads every format, frame size and frame rate with
//! VIDIOC_ENUM_FMT, ENUM_FRAMESIZES and ENUM_FRAMEINTERVALS (issued here
//! with `v4l`'s bindings, reading only plain integers: see the parent
//! module on why not `v4l`'s wrappers). The rest is pure and tested on
//! made-up cameras:
//!
//! - [`choose`]: `--format auto`'s rule, or a fixed format checked against
//!   the offers; when the size or format is not offered, the error names
//!   the nearest modes that are;
//! - [`describe`]: the `--list-formats` text, one line per frame size.
//!
//! **`auto`'s rule.** Among the formats offered at `--size`, take the first
//! raw colour format (YUYV, UYVY, YVYU, NV12, NV21, YU12, YV12, RGB3, BGR3,
//! in that order) whose frame rate at that size reaches `--fps`; else MJPG;
//! else GREY if it reaches `--fps`; else the raw format with the highest
//! rate. Over USB 2.0 most webcams give 1280x720 at 30 fps only as MJPEG:
//! YUYV there runs at 5-10 fps, so the rate, not the format, decides. GREY
//! comes after MJPG because a camera offering both is a colour camera.
//! A size whose rates the driver does not list counts as reaching any rate
//! (the driver's S_PARM answer is logged), and `--fps 0` takes any rate.

use std::ffi::c_void;
use std::fmt::Write as _;
use std::io;

use proto::format::PixelFormat;
use v4l::v4l_sys;
use v4l::Device;

use super::{c_string, fourcc_name, trim_float, EINVAL};
use crate::cli::{FormatChoice, Size};

/// One format the camera offers, with its sizes and rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub fourcc: [u8; 4],
    /// The driver's name for it, e.g. "YUYV 4:2:2".
    pub description: String,
    pub sizes: Sizes,
}

/// The frame sizes of one format.
#[derive(Debug, Clone, PartialEq)]
pub enum Sizes {
    /// A list of sizes, each with its rates.
    Discrete(Vec<(Size, Rates)>),
    /// Any size from `min` to `max` in steps of `step` (continuous: step
    /// 1x1), with the rates at the size asked for, if inside.
    Range {
        min: Size,
        max: Size,
        step: Size,
        rates: Rates,
    },
    /// The driver does not enumerate sizes: S_FMT alone tells.
    Unlisted,
}

/// The frame rates of one format at one size, in frames per second.
#[derive(Debug, Clone, PartialEq)]
pub enum Rates {
    /// Discrete rates, fastest first.
    Discrete(Vec<f64>),
    /// Any rate from `min` to `max`.
    Range { min: f64, max: f64 },
    /// The driver does not enumerate rates.
    Unlisted,
}

impl Rates {
    /// The highest rate, if listed.
    pub fn max(&self) -> Option<f64> {
        match self {
            Rates::Discrete(list) => list.first().copied(),
            Rates::Range { max, .. } => Some(*max),
            Rates::Unlisted => None,
        }
    }

    /// "30, 15 fps", "1-60 fps", "rates not listed".
    fn text(&self) -> String {
        match self {
            Rates::Discrete(list) if !list.is_empty() => {
                let list: Vec<String> = list.iter().map(|&f| trim_float(f)).collect();
                format!("{} fps", list.join(", "))
            }
            Rates::Range { min, max } => format!("{}-{} fps", trim_float(*min), trim_float(*max)),
            _ => "rates not listed".into(),
        }
    }
}

impl Offer {
    /// The format, if the agent takes it.
    pub fn format(&self) -> Option<PixelFormat> {
        PixelFormat::from_fourcc(self.fourcc)
    }

    /// The rates at `size`, if this format offers that size (`Unlisted`
    /// sizes count as offered, with unlisted rates).
    pub fn rates_at(&self, size: Size) -> Option<&Rates> {
        match &self.sizes {
            Sizes::Discrete(list) => list.iter().find(|(s, _)| *s == size).map(|(_, r)| r),
            Sizes::Range {
                min,
                max,
                step,
                rates,
            } => {
                let fits = |v: u32, lo: u32, hi: u32, step: u32| {
                    (lo..=hi).contains(&v) && (v - lo).is_multiple_of(step.max(1))
                };
                (fits(size.width, min.width, max.width, step.width)
                    && fits(size.height, min.height, max.height, step.height))
                .then_some(rates)
            }
            Sizes::Unlisted => Some(&Rates::Unlisted),
        }
    }
}

/// Most formats read from one device.
const MAX_FORMATS: u32 = 512;

/// Reads every capture format the device offers, with its sizes and, for
/// each size, its rates (for a size range, the rates at `want`).
pub fn offers(device: &Device, want: Size) -> io::Result<Vec<Offer>> {
    let fd = device.handle().fd();
    let mut offers = Vec::new();
    // The list ends at EINVAL; the bound only stops a broken driver. vivid
    // alone offers 65 formats, so the bound is well above any camera.
    for index in 0..MAX_FORMATS {
        // SAFETY: all-zero is a valid v4l2_fmtdesc (integers and arrays).
        let mut raw: v4l_sys::v4l2_fmtdesc = unsafe { std::mem::zeroed() };
        raw.index = index;
        raw.type_ = v4l_sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        // SAFETY: VIDIOC_ENUM_FMT reads and fills one v4l2_fmtdesc.
        let result = unsafe {
            v4l::v4l2::ioctl(
                fd,
                v4l::v4l2::vidioc::VIDIOC_ENUM_FMT,
                &mut raw as *mut _ as *mut c_void,
            )
        };
        match result {
            Ok(()) => {}
            // EINVAL marks the end of the list.
            Err(e) if e.raw_os_error() == Some(EINVAL) => break,
            Err(e) => return Err(e),
        }
        let fourcc = raw.pixelformat.to_le_bytes();
        offers.push(Offer {
            fourcc,
            description: c_string(&raw.description),
            sizes: sizes(fd, fourcc, want),
        });
    }
    Ok(offers)
}

fn sizes(fd: i32, fourcc: [u8; 4], want: Size) -> Sizes {
    let mut list = Vec::new();
    for index in 0..64 {
        // SAFETY: all-zero is a valid v4l2_frmsizeenum (integers and a
        // union of integer structs).
        let mut raw: v4l_sys::v4l2_frmsizeenum = unsafe { std::mem::zeroed() };
        raw.index = index;
        raw.pixel_format = u32::from_le_bytes(fourcc);
        // SAFETY: VIDIOC_ENUM_FRAMESIZES reads and fills one v4l2_frmsizeenum.
        let result = unsafe {
            v4l::v4l2::ioctl(
                fd,
                v4l::v4l2::vidioc::VIDIOC_ENUM_FRAMESIZES,
                &mut raw as *mut _ as *mut c_void,
            )
        };
        if result.is_err() {
            break;
        }
        if raw.type_ == v4l_sys::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE {
            // SAFETY: `type_` says `discrete` is the member; plain integers.
            let d = unsafe { raw.__bindgen_anon_1.discrete };
            let size = Size {
                width: d.width,
                height: d.height,
            };
            list.push((size, rates(fd, fourcc, size)));
        } else {
            // SAFETY: stepwise and continuous both fill `stepwise`.
            let s = unsafe { raw.__bindgen_anon_1.stepwise };
            let size = |width, height| Size { width, height };
            let (min, max) = (
                size(s.min_width, s.min_height),
                size(s.max_width, s.max_height),
            );
            let step = size(s.step_width.max(1), s.step_height.max(1));
            let mut range = Sizes::Range {
                min,
                max,
                step,
                rates: Rates::Unlisted,
            };
            let probe = Offer {
                fourcc,
                description: String::new(),
                sizes: range.clone(),
            };
            if probe.rates_at(want).is_some() {
                if let Sizes::Range { rates, .. } = &mut range {
                    *rates = self::rates(fd, fourcc, want);
                }
            }
            return range;
        }
    }
    if list.is_empty() {
        Sizes::Unlisted
    } else {
        Sizes::Discrete(list)
    }
}

fn rates(fd: i32, fourcc: [u8; 4], size: Size) -> Rates {
    let fps = |f: v4l_sys::v4l2_fract| {
        (f.numerator > 0 && f.denominator > 0)
            .then(|| f64::from(f.denominator) / f64::from(f.numerator))
    };
    let mut list = Vec::new();
    for index in 0..64 {
        // SAFETY: all-zero is a valid v4l2_frmivalenum (integers and a
        // union of integer structs).
        let mut raw: v4l_sys::v4l2_frmivalenum = unsafe { std::mem::zeroed() };
        raw.index = index;
        raw.pixel_format = u32::from_le_bytes(fourcc);
        raw.width = size.width;
        raw.height = size.height;
        // SAFETY: VIDIOC_ENUM_FRAMEINTERVALS reads and fills one v4l2_frmivalenum.
        let result = unsafe {
            v4l::v4l2::ioctl(
                fd,
                v4l::v4l2::vidioc::VIDIOC_ENUM_FRAMEINTERVALS,
                &mut raw as *mut _ as *mut c_void,
            )
        };
        if result.is_err() {
            break;
        }
        if raw.type_ == v4l_sys::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE {
            // SAFETY: `type_` says `discrete` is the member; plain integers.
            if let Some(f) = fps(unsafe { raw.__bindgen_anon_1.discrete }) {
                list.push(f);
            }
        } else {
            // SAFETY: stepwise and continuous both fill `stepwise`. The
            // longest interval is the lowest rate.
            let s = unsafe { raw.__bindgen_anon_1.stepwise };
            return match (fps(s.max), fps(s.min)) {
                (Some(min), Some(max)) => Rates::Range { min, max },
                _ => Rates::Unlisted,
            };
        }
    }
    if list.is_empty() {
        return Rates::Unlisted;
    }
    list.sort_by(|a, b| b.total_cmp(a));
    list.dedup();
    Rates::Discrete(list)
}

/// What [`choose`] picked, and why (for the log).
#[derive(Debug, PartialEq)]
pub struct Choice {
    pub format: PixelFormat,
    pub why: String,
}

/// Picks the format to capture at `size` and `fps` (0: any rate), or says
/// why none fits, naming the nearest modes offered.
pub fn choose(
    offers: &[Offer],
    choice: FormatChoice,
    size: Size,
    fps: u32,
) -> Result<Choice, String> {
    let fits = |f: PixelFormat| f.check_size(size.width, size.height).is_ok();
    let reaches = |r: &Rates| fps == 0 || r.max().is_none_or(|max| max + 0.01 >= f64::from(fps));
    let at_size = |f: PixelFormat| -> Option<&Rates> {
        offers
            .iter()
            .find(|o| o.format() == Some(f))
            .and_then(|o| o.rates_at(size))
            .filter(|_| fits(f))
    };
    let at = |r: &Rates| match r.max() {
        Some(max) => format!("{} fps", trim_float(max)),
        None => "rates not listed".into(),
    };
    match choice {
        FormatChoice::Fixed(format) => {
            if !offers.iter().any(|o| o.format() == Some(format)) {
                return Err(format!(
                    "does not offer {format}; it offers {} (agent --list-formats shows every mode)",
                    offered_formats(offers)
                ));
            }
            match at_size(format) {
                Some(_) => Ok(Choice {
                    format,
                    why: format!("{format}, as --format asks"),
                }),
                None => Err(format!(
                    "does not offer {format} at {size}; nearest: {}",
                    nearest(offers, size, Some(format))
                )),
            }
        }
        FormatChoice::Auto => {
            let raw = PixelFormat::ALL
                .into_iter()
                .filter(|f| !f.is_compressed())
                .filter_map(|f| at_size(f).map(|r| (f, r)))
                .collect::<Vec<_>>();
            let colour = |&&(f, _): &&(PixelFormat, &Rates)| f != PixelFormat::Grey;
            if let Some((f, r)) = raw.iter().filter(colour).find(|(_, r)| reaches(r)) {
                return Ok(Choice {
                    format: *f,
                    why: format!("{f}: raw, and it reaches {fps} fps at {size} ({})", at(r)),
                });
            }
            let slow = || {
                raw.iter()
                    .map(|(f, r)| format!("{f} {}", at(r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some(r) = at_size(PixelFormat::Mjpg) {
                let why = if raw.is_empty() {
                    format!("MJPG: no raw format is offered at {size}")
                } else {
                    format!(
                        "MJPG ({}): no raw colour format reaches {fps} fps at {size} ({})",
                        at(r),
                        slow()
                    )
                };
                return Ok(Choice {
                    format: PixelFormat::Mjpg,
                    why,
                });
            }
            if let Some((f, r)) = raw
                .iter()
                .find(|(f, r)| *f == PixelFormat::Grey && reaches(r))
            {
                return Ok(Choice {
                    format: *f,
                    why: format!(
                        "GREY: the only format that reaches {fps} fps at {size} ({})",
                        at(r)
                    ),
                });
            }
            // The first of the fastest, so a tie goes to a colour format.
            let rate = |r: &Rates| r.max().unwrap_or(0.0);
            let fastest = raw
                .iter()
                .fold(None::<&(PixelFormat, &Rates)>, |best, x| match best {
                    Some(b) if rate(b.1) >= rate(x.1) => Some(b),
                    _ => Some(x),
                });
            if let Some((f, _)) = fastest {
                return Ok(Choice {
                    format: *f,
                    why: format!(
                        "{f}: nothing reaches {fps} fps at {size}, and it is the fastest ({})",
                        slow()
                    ),
                });
            }
            if !offers.iter().any(|o| o.format().is_some()) {
                return Err(format!(
                    "offers no format the agent takes ({}); it takes {}",
                    offered_formats(offers),
                    proto::format::names()
                ));
            }
            Err(format!(
                "offers no format the agent takes at {size}; nearest: {}",
                nearest(offers, size, None)
            ))
        }
    }
}

/// "YUYV, MJPG and H264 (not taken by the agent)".
fn offered_formats(offers: &[Offer]) -> String {
    if offers.is_empty() {
        return "no capture formats at all".into();
    }
    offers
        .iter()
        .map(|o| match o.format() {
            Some(f) => f.to_string(),
            None => format!("{} (not taken by the agent)", fourcc_name(o.fourcc)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Modes shown as the nearest: enough to choose from, few enough to read.
const NEAREST: usize = 4;

/// The offered modes nearest to `size` (of `only`'s format if given), as
/// "NV12 1280x720 @ 30 fps, YUYV 640x480 @ 30 fps".
pub fn nearest(offers: &[Offer], size: Size, only: Option<PixelFormat>) -> String {
    let mut modes: Vec<(u64, String)> = Vec::new();
    for offer in offers {
        let Some(format) = offer.format() else {
            continue;
        };
        if only.is_some_and(|f| f != format) {
            continue;
        }
        let distance = |s: Size| {
            u64::from(s.width.abs_diff(size.width)) + u64::from(s.height.abs_diff(size.height))
        };
        match &offer.sizes {
            Sizes::Discrete(list) => {
                for (s, r) in list
                    .iter()
                    .filter(|(s, _)| format.check_size(s.width, s.height).is_ok())
                {
                    let rate = r
                        .max()
                        .map_or(String::new(), |f| format!(" @ {} fps", trim_float(f)));
                    modes.push((distance(*s), format!("{format} {s}{rate}")));
                }
            }
            Sizes::Range { min, max, step, .. } => {
                modes.push((0, format!("{format} {min} to {max} in steps of {step}")))
            }
            Sizes::Unlisted => modes.push((0, format!("{format} (sizes not listed)"))),
        }
    }
    if modes.is_empty() {
        return "none (agent --list-formats shows every mode)".into();
    }
    modes.sort_by_key(|(d, _)| *d);
    let shown: Vec<String> = modes.into_iter().take(NEAREST).map(|(_, m)| m).collect();
    format!(
        "{} (agent --list-formats shows every mode)",
        shown.join(", ")
    )
}

/// The `--list-formats` text: for each format the agent takes, a line,
/// then one per size with its rates; then one line naming the formats it
/// does not take.
pub fn describe(offers: &[Offer]) -> String {
    if offers.is_empty() {
        return "no capture formats at all\n".into();
    }
    let mut out = String::new();
    for offer in offers.iter().filter(|o| o.format().is_some()) {
        let name = fourcc_name(offer.fourcc);
        let _ = writeln!(out, "{name:<4}  {}", offer.description);
        match &offer.sizes {
            Sizes::Discrete(list) => {
                for (size, rates) in list {
                    let _ = writeln!(out, "      {:<10} {}", size.to_string(), rates.text());
                }
            }
            Sizes::Range {
                min,
                max,
                step,
                rates,
            } => {
                let _ = writeln!(out, "      {min} to {max} in steps of {step}");
                if *rates != Rates::Unlisted {
                    let _ = writeln!(out, "      at --size: {}", rates.text());
                }
            }
            Sizes::Unlisted => {
                let _ = writeln!(out, "      sizes not listed");
            }
        }
    }
    let others: Vec<String> = offers
        .iter()
        .filter(|o| o.format().is_none())
        .map(|o| fourcc_name(o.fourcc))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "also offered, not taken by the agent: {}",
            others.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(width: u32, height: u32) -> Size {
        Size { width, height }
    }

    fn offer(fourcc: &[u8; 4], sizes: &[(u32, u32, &[f64])]) -> Offer {
        Offer {
            fourcc: *fourcc,
            description: format!("{} format", fourcc_name(*fourcc)),
            sizes: Sizes::Discrete(
                sizes
                    .iter()
                    .map(|&(w, h, r)| (size(w, h), Rates::Discrete(r.to_vec())))
                    .collect(),
            ),
        }
    }

    /// A USB 2.0 webcam: YUYV is slow at 720p, MJPG is not.
    fn webcam() -> Vec<Offer> {
        vec![
            offer(
                b"YUYV",
                &[(640, 480, &[30.0, 15.0]), (1280, 720, &[10.0, 5.0])],
            ),
            offer(
                b"MJPG",
                &[
                    (640, 480, &[30.0]),
                    (1280, 720, &[30.0]),
                    (1920, 1080, &[30.0]),
                ],
            ),
            offer(b"H264", &[(1920, 1080, &[30.0])]),
        ]
    }

    fn pick(
        offers: &[Offer],
        choice: FormatChoice,
        s: Size,
        fps: u32,
    ) -> Result<PixelFormat, String> {
        choose(offers, choice, s, fps).map(|c| c.format)
    }

    #[test]
    fn auto_takes_raw_when_it_reaches_the_rate_and_mjpeg_when_not() {
        let cam = webcam();
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Yuyv)
        );
        let c = choose(&cam, FormatChoice::Auto, size(1280, 720), 30).unwrap();
        assert_eq!(c.format, PixelFormat::Mjpg);
        assert!(
            c.why.contains("no raw colour format reaches 30 fps") && c.why.contains("YUYV 10 fps"),
            "{}",
            c.why
        );
        // At 10 fps YUYV is enough; at 0 (any rate) too.
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(1280, 720), 10),
            Ok(PixelFormat::Yuyv)
        );
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(1280, 720), 0),
            Ok(PixelFormat::Yuyv)
        );
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(1920, 1080), 30),
            Ok(PixelFormat::Mjpg)
        );
    }

    #[test]
    fn auto_prefers_colour_then_mjpeg_then_grey_then_the_fastest() {
        let grey_and_mjpg = vec![
            offer(b"GREY", &[(640, 480, &[60.0])]),
            offer(b"MJPG", &[(640, 480, &[30.0])]),
        ];
        assert_eq!(
            pick(&grey_and_mjpg, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Mjpg)
        );
        let mono = vec![offer(b"GREY", &[(640, 480, &[60.0])])];
        assert_eq!(
            pick(&mono, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Grey)
        );
        let slow = vec![
            offer(b"RGB3", &[(640, 480, &[5.0])]),
            offer(b"NV12", &[(640, 480, &[15.0])]),
        ];
        let c = choose(&slow, FormatChoice::Auto, size(640, 480), 30).unwrap();
        assert_eq!(c.format, PixelFormat::Nv12);
        assert!(c.why.contains("fastest"), "{}", c.why);
        // A tie in speed goes to colour: vivid offers everything at 25 fps.
        let vivid = vec![
            offer(b"YUYV", &[(640, 480, &[25.0])]),
            offer(b"GREY", &[(640, 480, &[25.0])]),
            offer(b"RGB3", &[(640, 480, &[25.0])]),
        ];
        assert_eq!(
            pick(&vivid, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Yuyv)
        );
        // Order among those that reach the rate: the documented one.
        let many = vec![
            offer(b"BGR3", &[(64, 48, &[30.0])]),
            offer(b"UYVY", &[(64, 48, &[30.0])]),
        ];
        assert_eq!(
            pick(&many, FormatChoice::Auto, size(64, 48), 30),
            Ok(PixelFormat::Uyvy)
        );
    }

    #[test]
    fn unlisted_rates_count_as_reaching_and_odd_sizes_skip_subsampled_formats() {
        let cam = vec![
            Offer {
                fourcc: *b"NV12",
                description: String::new(),
                sizes: Sizes::Unlisted,
            },
            offer(b"GREY", &[(641, 481, &[30.0])]),
        ];
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Nv12)
        );
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(641, 481), 30),
            Ok(PixelFormat::Grey)
        );
    }

    #[test]
    fn a_size_range_offers_the_sizes_on_its_steps() {
        let cam = vec![Offer {
            fourcc: *b"YUYV",
            description: String::new(),
            sizes: Sizes::Range {
                min: size(16, 16),
                max: size(1920, 1080),
                step: size(16, 8),
                rates: Rates::Range {
                    min: 1.0,
                    max: 60.0,
                },
            },
        }];
        assert_eq!(
            pick(&cam, FormatChoice::Auto, size(640, 480), 30),
            Ok(PixelFormat::Yuyv)
        );
        let err = pick(&cam, FormatChoice::Auto, size(650, 480), 30).unwrap_err();
        assert!(
            err.contains("YUYV 16x16 to 1920x1080 in steps of 16x8"),
            "{err}"
        );
    }

    #[test]
    fn refusals_name_the_nearest_modes() {
        let cam = webcam();
        let err = pick(
            &cam,
            FormatChoice::Fixed(PixelFormat::Yuyv),
            size(1000, 700),
            30,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "does not offer YUYV at 1000x700; nearest: YUYV 1280x720 @ 10 fps, YUYV 640x480 @ 30 fps \
             (agent --list-formats shows every mode)"
        );
        let err = pick(
            &cam,
            FormatChoice::Fixed(PixelFormat::Nv12),
            size(640, 480),
            30,
        )
        .unwrap_err();
        assert!(
            err.contains(
                "does not offer NV12; it offers YUYV, MJPG, H264 (not taken by the agent)"
            ),
            "{err}"
        );
        let err = pick(&cam, FormatChoice::Auto, size(800, 600), 30).unwrap_err();
        assert!(err.starts_with("offers no format the agent takes at 800x600; nearest: YUYV 640x480 @ 30 fps, MJPG 640x480"), "{err}");
        let h264 = vec![offer(b"H264", &[(640, 480, &[30.0])])];
        let err = pick(&h264, FormatChoice::Auto, size(640, 480), 30).unwrap_err();
        assert!(
            err.contains("offers no format the agent takes (H264 (not taken"),
            "{err}"
        );
        assert!(pick(&[], FormatChoice::Auto, size(640, 480), 30)
            .unwrap_err()
            .contains("no capture formats"));
    }

    #[test]
    fn fixed_format_at_an_offered_size_is_taken_whatever_the_rate() {
        let cam = webcam();
        assert_eq!(
            pick(
                &cam,
                FormatChoice::Fixed(PixelFormat::Yuyv),
                size(1280, 720),
                30
            ),
            Ok(PixelFormat::Yuyv)
        );
        assert_eq!(
            pick(
                &cam,
                FormatChoice::Fixed(PixelFormat::Mjpg),
                size(640, 480),
                30
            ),
            Ok(PixelFormat::Mjpg)
        );
    }

    #[test]
    fn the_listing_has_a_line_per_format_and_size() {
        let text = describe(&webcam());
        assert_eq!(
            text,
            "YUYV  YUYV format\n      640x480    30, 15 fps\n      1280x720   10, 5 fps\n\
             MJPG  MJPG format\n      640x480    30 fps\n      1280x720   30 fps\n      1920x1080  30 fps\n\
             also offered, not taken by the agent: H264\n"
        );
    }
}
