//! Benchmarks of the agent's and the viewer's per-frame work on camera-like
//! frames (the `*_noise` frames in `testdata/frames`, 640x480 and 1280x720),
//! plus the measurement that chose the deflate implementation: libdeflate
//! (what `proto::gzip` uses) against flate2 with the zlib-rs backend, both at
//! level 9.
//!
//! Run with `cargo bench -p proto`. Criterion prints the time per frame and
//! the throughput in MB/s (decimal: 10^6 bytes per second); the compressed
//! sizes and ratios are printed once before the timings. Throughput is counted in bytes of the larger, raw side
//! of each step, so the gzip figures of both directions are comparable:
//!
//! | benchmark               | bytes counted            |
//! |-------------------------|--------------------------|
//! | `yuyv_to_bgr`           | YUYV input               |
//! | `bmp_encode_bgr24`      | BMP file written         |
//! | `bmp_encode_yuyv`       | BMP file written         |
//! | `bmp_decode_0rgb`       | BMP file read            |
//! | `gzip9_compress/*`      | BMP file compressed      |
//! | `gzip_decompress/*`     | BMP file produced        |
//!
//! Both decompressors read the same stream, the one libdeflate wrote (what
//! the agent sends), so their times compare the decoders alone.
//!
//! The sample counts and times are modest so the whole run takes a few
//! minutes on 2 shared cores; on a noisy machine compare figures from the
//! same run only.
//!
//! `PROTO_BENCH_CLOCK=cpu cargo bench -p proto` measures the benchmark
//! thread's CPU time (from `/proc/thread-self/schedstat`) instead of wall
//! time. On a shared, overloaded machine wall time mostly measures the other
//! users; CPU time stays close to what an idle machine shows, at the cost
//! of a longer run (criterion collects the same CPU time whatever the load).

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use proto::{bmp, gzip, pixel};

/// The realistic frames: photos with sensor noise, which is what makes
/// deflate work hard. `(file stem, width, height)`.
const FRAMES: [(&str, u32, u32); 2] = [
    ("coffee_640x480_noise", 640, 480),
    ("astronaut_1280x720_noise", 1280, 720),
];

/// Everything one frame needs, prepared once outside the timed loops.
struct Frame {
    /// `640x480` and the like, the parameter shown in benchmark names.
    label: String,
    width: u32,
    height: u32,
    yuyv: Vec<u8>,
    /// `yuyv` converted, as the agent converts it.
    bgr: Vec<u8>,
    /// `bgr` as a 24-bit BMP, the agent's gzip input.
    bmp: Vec<u8>,
    /// `bmp` compressed by libdeflate at level 9: the body the agent sends.
    gz_libdeflate: Vec<u8>,
    /// `bmp` compressed by flate2 (zlib-rs) at level 9, for the size ratio.
    gz_flate2: Vec<u8>,
}

/// Reads `testdata/frames/NAME`, or `NAME.gz` if the raw file was stored compressed.
fn read_testdata(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/frames");
    let raw = dir.join(name);
    if let Ok(bytes) = std::fs::read(&raw) {
        return bytes;
    }
    let gz = dir.join(format!("{name}.gz"));
    let compressed = std::fs::read(&gz).unwrap_or_else(|e| {
        panic!(
            "cannot read {} or {}: {e} (the benchmark frames live in testdata/frames)",
            raw.display(),
            gz.display()
        )
    });
    let mut bytes = Vec::new();
    GzDecoder::new(&compressed[..])
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("cannot gunzip {}: {e}", gz.display()));
    bytes
}

fn flate2_compress(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = GzEncoder::new(out, Compression::new(gzip::DEFAULT_LEVEL));
    encoder
        .write_all(input)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail");
}

fn flate2_decompress(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    GzDecoder::new(input)
        .read_to_end(out)
        .expect("the benchmark stream is valid gzip");
}

fn load(stem: &str, width: u32, height: u32) -> Frame {
    let yuyv = read_testdata(&format!("{stem}.yuyv"));
    let stride = 2 * width as usize;
    assert_eq!(
        yuyv.len(),
        stride * height as usize,
        "{stem}.yuyv is not {width}x{height} YUYV"
    );
    let mut bgr = vec![0u8; 3 * width as usize * height as usize];
    pixel::yuyv_to_bgr(&yuyv, width, height, stride, &mut bgr).expect("frame converts");
    let mut bmp = Vec::new();
    bmp::encode_bgr24(&bgr, width, height, &mut bmp).expect("frame encodes");

    let mut direct = Vec::new();
    bmp::encode_yuyv(&yuyv, width, height, stride, &mut direct).expect("frame encodes");
    assert!(
        direct == bmp,
        "encode_yuyv differs from yuyv_to_bgr + encode_bgr24"
    );

    let mut gz_libdeflate = Vec::new();
    gzip::Compressor::new(gzip::DEFAULT_LEVEL)
        .expect("level 9 is valid")
        .compress_append(&bmp, &mut gz_libdeflate);
    let mut gz_flate2 = Vec::new();
    flate2_compress(&bmp, &mut gz_flate2);

    // Cross-check before timing anything: both streams must give the BMP back.
    let mut check = Vec::new();
    flate2_decompress(&gz_libdeflate, &mut check);
    assert!(check == bmp, "flate2 cannot read libdeflate's stream");
    gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN)
        .decompress(&gz_flate2, &mut check)
        .expect("libdeflate reads flate2's stream");
    assert!(check == bmp, "libdeflate cannot read flate2's stream");

    Frame {
        label: format!("{width}x{height}"),
        width,
        height,
        yuyv,
        bgr,
        bmp,
        gz_libdeflate,
        gz_flate2,
    }
}

fn load_all() -> Vec<Frame> {
    let frames: Vec<Frame> = FRAMES.iter().map(|&(s, w, h)| load(s, w, h)).collect();
    println!("gzip level 9 sizes (ratio = BMP bytes / compressed bytes):");
    for f in &frames {
        let ratio = |gz: &[u8]| f.bmp.len() as f64 / gz.len() as f64;
        println!(
            "  {:>9}: BMP {} B; libdeflate {} B (ratio {:.3}); flate2/zlib-rs {} B (ratio {:.3}); \
             libdeflate size / flate2 size = {:.4}",
            f.label,
            f.bmp.len(),
            f.gz_libdeflate.len(),
            ratio(&f.gz_libdeflate),
            f.gz_flate2.len(),
            ratio(&f.gz_flate2),
            f.gz_libdeflate.len() as f64 / f.gz_flate2.len() as f64,
        );
    }
    frames
}

/// A group sized for 2 shared cores: 10 samples over a few seconds, flat
/// sampling because one iteration takes milliseconds.
fn group<'a, M: Measurement>(c: &'a mut Criterion<M>, name: &str) -> BenchmarkGroup<'a, M> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);
    g
}

/// A group with one benchmark per frame, named by its size. `setup` makes
/// the buffers `run` reuses, outside the timing; throughput counts
/// `bytes(frame)`.
fn per_frame<M: Measurement, S>(
    c: &mut Criterion<M>,
    name: &str,
    frames: &[Frame],
    bytes: impl Fn(&Frame) -> usize,
    setup: impl Fn(&Frame) -> S,
    run: impl Fn(&Frame, &mut S),
) {
    let mut g = group(c, name);
    for f in frames {
        let mut state = setup(f);
        g.throughput(Throughput::BytesDecimal(bytes(f) as u64));
        g.bench_function(&f.label, |b| b.iter(|| run(f, &mut state)));
    }
    g.finish();
}

fn benches<M: Measurement>(c: &mut Criterion<M>, frames: &[Frame]) {
    per_frame(
        c,
        "yuyv_to_bgr",
        frames,
        |f| f.yuyv.len(),
        |f| vec![0u8; f.bgr.len()],
        |f, bgr| {
            let stride = 2 * f.width as usize;
            pixel::yuyv_to_bgr(black_box(&f.yuyv), f.width, f.height, stride, bgr)
                .expect("frame converts")
        },
    );
    per_frame(
        c,
        "bmp_encode_bgr24",
        frames,
        |f| f.bmp.len(),
        |f| Vec::with_capacity(f.bmp.len()),
        |f, out| {
            bmp::encode_bgr24(black_box(&f.bgr), f.width, f.height, out).expect("frame encodes")
        },
    );
    // The agent's shortcut: YUYV straight into the BMP, no BGR buffer.
    per_frame(
        c,
        "bmp_encode_yuyv",
        frames,
        |f| f.bmp.len(),
        |f| Vec::with_capacity(f.bmp.len()),
        |f, out| {
            let stride = 2 * f.width as usize;
            bmp::encode_yuyv(black_box(&f.yuyv), f.width, f.height, stride, out)
                .expect("frame encodes")
        },
    );
    per_frame(
        c,
        "bmp_decode_0rgb",
        frames,
        |f| f.bmp.len(),
        |f| Vec::with_capacity(f.width as usize * f.height as usize),
        |f, out| {
            bmp::decode_0rgb(black_box(&f.bmp), out).expect("frame decodes");
        },
    );

    let mut g = group(c, "gzip9_compress");
    for f in frames {
        g.throughput(Throughput::BytesDecimal(f.bmp.len() as u64));
        let mut compressor = gzip::Compressor::new(gzip::DEFAULT_LEVEL).expect("level 9 is valid");
        let mut out = Vec::with_capacity(f.gz_libdeflate.len() * 2);
        g.bench_function(format!("libdeflate/{}", f.label), |b| {
            b.iter(|| {
                out.clear();
                compressor.compress_append(black_box(&f.bmp), &mut out);
            })
        });
        let mut out = Vec::with_capacity(f.gz_flate2.len() * 2);
        g.bench_function(format!("flate2_zlib-rs/{}", f.label), |b| {
            b.iter(|| flate2_compress(black_box(&f.bmp), &mut out))
        });
    }
    g.finish();

    let mut g = group(c, "gzip_decompress");
    for f in frames {
        g.throughput(Throughput::BytesDecimal(f.bmp.len() as u64));
        let mut decompressor = gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN);
        let mut out = Vec::with_capacity(f.bmp.len());
        g.bench_function(format!("libdeflate/{}", f.label), |b| {
            b.iter(|| {
                decompressor
                    .decompress(black_box(&f.gz_libdeflate), &mut out)
                    .expect("stream is valid")
            })
        });
        let mut out = Vec::with_capacity(f.bmp.len());
        g.bench_function(format!("flate2_zlib-rs/{}", f.label), |b| {
            b.iter(|| flate2_decompress(black_box(&f.gz_libdeflate), &mut out))
        });
    }
    g.finish();
}

/// CPU time of the calling thread. Linux updates the counter at every
/// context switch and scheduler tick, so a reading can lag by one tick
/// (at most 4 ms); samples here last hundreds of milliseconds.
struct ThreadCpuTime {
    wall: WallTime,
}

fn thread_cpu_ns() -> u64 {
    const PATH: &str = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(PATH).unwrap_or_else(|e| {
        panic!("cannot read {PATH}: {e} (unset PROTO_BENCH_CLOCK to time by wall clock)")
    });
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .unwrap_or_else(|| panic!("{PATH} does not start with nanoseconds on CPU: {text:?}"))
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, like wall time, so they print the same way.
        self.wall.formatter()
    }
}

fn main() {
    let frames = load_all();
    match std::env::var("PROTO_BENCH_CLOCK").as_deref() {
        Ok("cpu") => {
            println!("timing by the benchmark thread's CPU time (PROTO_BENCH_CLOCK=cpu)");
            let mut c = Criterion::default()
                .with_measurement(ThreadCpuTime { wall: WallTime })
                .configure_from_args();
            benches(&mut c, &frames);
            c.final_summary();
        }
        Ok("wall") | Err(_) => {
            let mut c = Criterion::default().configure_from_args();
            benches(&mut c, &frames);
            c.final_summary();
        }
        Ok(other) => panic!("PROTO_BENCH_CLOCK={other:?}: use \"wall\" (default) or \"cpu\""),
    }
}
