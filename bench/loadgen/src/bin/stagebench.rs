//! Times one of `proto`'s stages on one input file and prints the figures as
//! one JSON line. `bench/run` calls it alternately with `bench/stages.py`
//! (the OpenCV/zlib side), so every ratio comes from the same round on the
//! same machine load. Run through `bench/run`; this binary judges nothing.
//!
//! Stages and their input file:
//! - `yuyv2bgr`   raw YUYV (`--size` needed): `proto::pixel::yuyv_to_bgr`
//! - `raw2bgr`    a raw frame of `--format` and `--size`, tightly packed:
//!   `proto::convert::to_bgr`
//! - `bmpdecode`  a BMP file: `proto::bmp::decode_0rgb`
//! - `gunzip`     a gzip body: `proto::gzip::Decompressor`
//! - `gzip`       a BMP file: `proto::gzip::Compressor` at `--level`, one thread
//! - `decode`     a gzip body: gunzip then BMP decode, the viewer's per-frame path
//! - `encode`     raw YUYV: convert, BMP, gzip, the agent's per-frame path on one thread
//! - `jpegdecode` a JPEG file: `proto::jpeg::Decoder` to BGR (the agent's MJPEG path)
//! - `jpegencode` a BGR frame (`--size`): `proto::jpeg::Encoder` at `--quality`
//! - `bodydecode` a frame body of either kind: `proto::body::Decoder` to 0RGB,
//!   the viewer's per-frame path
//! - `frame`      raw YUYV: the agent's per-frame stages timed one by one
//!   (YUYV→BGR, YUYV→BMP, gzip of that BMP at `--level`), printed as a
//!   table for people rather than JSON. The figure to run on a Raspberry Pi:
//!   `stagebench --stage frame --input coffee_640x480_noise.yuyv` (README,
//!   "Raspberry Pi").
//!
//! `--path` picks the YUYV→BGR code for `yuyv2bgr`, and the byte
//! shuffles (gathers into YUYV, GREY and RGB) for `raw2bgr`: `portable`,
//! or the intrinsics this CPU has (`ssse3`, `avx2`, `neon`), so paths can
//! be compared; the default is the one the agent uses.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use proto::format::{Layout, PixelFormat};
use proto::{bmp, body, convert, gzip, jpeg, pixel};

/// Time one proto stage.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// yuyv2bgr, raw2bgr, bmpdecode, gunzip, gzip, decode, encode,
    /// jpegdecode, jpegencode, bodydecode or frame.
    #[arg(long)]
    stage: String,
    /// For yuyv2bgr (the YUYV kernel) and raw2bgr (the byte shuffles):
    /// portable, or an intrinsics path this CPU has (ssse3, avx2, neon).
    /// Default: the one the agent uses.
    #[arg(long)]
    path: Option<String>,
    /// The input file for that stage.
    #[arg(long)]
    input: PathBuf,
    /// WxH, for the stages whose input is a raw frame.
    #[arg(long, default_value = "640x480")]
    size: String,
    /// The capture format (V4L2 fourcc) of `raw2bgr`'s input.
    #[arg(long, default_value = "YUYV")]
    format: String,
    /// Timed iterations (after 10% more, at least 1, as warm-up).
    #[arg(long, default_value_t = 50)]
    iters: u32,
    /// gzip level for `gzip` and `encode`.
    #[arg(long, default_value_t = 9)]
    level: u32,
    /// JPEG quality for `jpegencode`.
    #[arg(long, default_value_t = 85)]
    quality: u8,
    /// Keep iterating until at least this much wall time has passed, so the
    /// CPU-time total (tick-granular) is precise.
    #[arg(long, default_value_t = 0.5)]
    min_seconds: f64,
}

/// This thread's CPU time in ns, from /proc/thread-self/schedstat: unlike
/// wall time, it does not count the time other processes had the core.
/// Same source as bench/stages.py, so the two sides are measured alike.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn parse_size(size: &str) -> Result<(u32, u32)> {
    let (w, h) = size
        .split_once('x')
        .with_context(|| format!("--size {size:?} is not WxH, e.g. 640x480"))?;
    Ok((w.parse().context("width")?, h.parse().context("height")?))
}

fn main() {
    if let Err(err) = run(Args::parse()) {
        eprintln!("stagebench: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let input = std::fs::read(&args.input).with_context(|| {
        format!(
            "cannot read {} (bench/run prepares it)",
            args.input.display()
        )
    })?;
    let (width, height) = parse_size(&args.size)?;
    let pixels = (width as usize) * (height as usize);
    let mut bgr = vec![0u8; pixels * 3];
    let mut bmp_out = Vec::new();
    let mut gz_out = Vec::new();
    let mut unzipped = Vec::new();
    let mut argb = Vec::new();
    let mut compressor = gzip::Compressor::new(args.level).context("gzip level")?;
    let mut decompressor = gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN);
    // The compressed size, for the stages that compress: the level's ratio.
    let gz_len = std::cell::Cell::new(0usize);

    // Each closure does one iteration of the stage and reports failure as text.
    let mut step: Box<dyn FnMut() -> Result<()>> = match args.stage.as_str() {
        "yuyv2bgr" => {
            let row = row_path(args.path.as_deref())?;
            let row_in = width as usize * 2;
            let row_out = width as usize * 3;
            // Once through the checked API: rejects a size the input does not fit.
            pixel::yuyv_to_bgr(&input, width, height, row_in, &mut bgr).map_err(|e| {
                anyhow::anyhow!("--input is not a {width}x{height} YUYV frame: {e}")
            })?;
            Box::new(move || {
                // Row by row with the chosen path, as yuyv_to_bgr does with its own.
                for (src, dst) in input
                    .chunks_exact(row_in.max(1))
                    .zip(bgr.chunks_exact_mut(row_out.max(1)))
                {
                    row(src, dst);
                }
                black_box(&bgr);
                Ok(())
            })
        }
        "raw2bgr" => {
            let format = PixelFormat::parse(&args.format)?;
            let layout = Layout::new(format, width, height, 0)?;
            let path = shuffle_path(args.path.as_deref())?;
            Box::new(move || {
                convert::to_bgr_on(path, &layout, &input, &mut bgr)?;
                black_box(&bgr);
                Ok(())
            })
        }
        "bmpdecode" => Box::new(|| {
            bmp::decode_0rgb(&input, &mut argb).map_err(|e| anyhow::anyhow!("decode_0rgb: {e}"))?;
            black_box(&argb);
            Ok(())
        }),
        "gunzip" => Box::new(|| {
            decompressor
                .decompress(&input, &mut unzipped)
                .map_err(|e| anyhow::anyhow!("gunzip: {e}"))?;
            black_box(&unzipped);
            Ok(())
        }),
        "gzip" => Box::new(|| {
            gz_out.clear();
            compressor.compress_append(&input, &mut gz_out);
            gz_len.set(gz_out.len());
            black_box(&gz_out);
            Ok(())
        }),
        "decode" => Box::new(|| {
            decompressor
                .decompress(&input, &mut unzipped)
                .map_err(|e| anyhow::anyhow!("gunzip: {e}"))?;
            bmp::decode_0rgb(&unzipped, &mut argb)
                .map_err(|e| anyhow::anyhow!("decode_0rgb: {e}"))?;
            black_box(&argb);
            Ok(())
        }),
        "encode" => Box::new(|| {
            pixel::yuyv_to_bgr(&input, width, height, width as usize * 2, &mut bgr)
                .map_err(|e| anyhow::anyhow!("yuyv_to_bgr: {e}"))?;
            bmp::encode_bgr24(&bgr, width, height, &mut bmp_out)
                .map_err(|e| anyhow::anyhow!("encode_bgr24: {e}"))?;
            gz_out.clear();
            compressor.compress_append(&bmp_out, &mut gz_out);
            gz_len.set(gz_out.len());
            black_box(&gz_out);
            Ok(())
        }),
        "jpegdecode" => {
            let mut decoder = jpeg::Decoder::new(bmp::MAX_PIXELS);
            let (input, bgr) = (&input, &mut bgr);
            Box::new(move || {
                decoder.decode(input, jpeg::Layout::Bgr, bgr)?;
                black_box(&bgr);
                Ok(())
            })
        }
        "jpegencode" => {
            let encoder = jpeg::Encoder::new(args.quality)?;
            let input = input
                .get(..pixels * 3)
                .context("jpegencode's input is a BGR frame of --size")?;
            let (gz_out, gz_len) = (&mut gz_out, &gz_len);
            Box::new(move || {
                gz_out.clear();
                encoder.encode_bgr(input, width, height, gz_out)?;
                gz_len.set(gz_out.len());
                black_box(&gz_out);
                Ok(())
            })
        }
        "bodydecode" => {
            let mut decoder = body::Decoder::new(gzip::MAX_DECOMPRESSED_LEN);
            let mut frame_body = input.clone();
            let argb = &mut argb;
            Box::new(move || {
                decoder.decode_0rgb(&mut frame_body, argb)?;
                black_box(&argb);
                Ok(())
            })
        }
        "frame" => return frame(&args, &input, width, height),
        other => bail!(
            "unknown --stage {other:?}: use yuyv2bgr, raw2bgr, bmpdecode, gunzip, gzip, decode, \
             encode, jpegdecode, jpegencode, bodydecode or frame"
        ),
    };

    let timing = measure(&args, &mut step)?;
    println!(
        "{{\"stage\":\"{}\",\"impl\":\"proto\",\"iters\":{},\"median_ms\":{:.5},\"min_ms\":{:.5},\"cpu_ms\":{},\"gzip_len\":{}}}",
        args.stage,
        timing.iters,
        timing.median_ms,
        timing.min_ms,
        timing.cpu_ms.map_or("null".to_string(), |ms| format!("{ms:.5}")),
        gz_len.get()
    );
    Ok(())
}

/// The row converter `--path` names, or the one the agent uses.
fn row_path(name: Option<&str>) -> Result<pixel::RowFn> {
    let paths = pixel::row_paths();
    let name = name.unwrap_or(pixel::yuyv_path());
    match paths.iter().find(|(n, _)| *n == name) {
        Some(&(_, row)) => Ok(row),
        None => {
            let names: Vec<&str> = paths.iter().map(|(n, _)| *n).collect();
            bail!(
                "--path {name:?} does not run on this CPU: use one of {}",
                names.join(", ")
            )
        }
    }
}

/// The shuffle path `--path` names, or the one the agent uses.
fn shuffle_path(name: Option<&str>) -> Result<convert::Path> {
    let paths = convert::paths();
    let found = match name {
        Some(name) => paths.iter().find(|p| p.name == name),
        None => paths.last(),
    };
    match found {
        Some(&path) => Ok(path),
        None => {
            let names: Vec<&str> = paths.iter().map(|p| p.name).collect();
            bail!(
                "--path {:?} does not run on this CPU: use one of {}",
                name.unwrap_or_default(),
                names.join(", ")
            )
        }
    }
}

/// One stage's figures: wall-time median and minimum per call, and the
/// thread's CPU time per call when the kernel reports it.
struct Timing {
    iters: usize,
    median_ms: f64,
    min_ms: f64,
    cpu_ms: Option<f64>,
}

/// Runs `step` for warm-up (10% of `--iters`, at least 1), then at least
/// `--iters` times and `--min-seconds` long, timing each call.
fn measure(args: &Args, step: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
    let warmup = (args.iters / 10).max(1);
    for _ in 0..warmup {
        step()?;
    }
    let mut times_ms = Vec::with_capacity(args.iters as usize);
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    while times_ms.len() < args.iters.max(1) as usize
        || start.elapsed().as_secs_f64() < args.min_seconds
    {
        let t = Instant::now();
        step()?;
        times_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6 / times_ms.len() as f64),
        _ => None,
    };
    times_ms.sort_by(f64::total_cmp);
    Ok(Timing {
        iters: times_ms.len(),
        median_ms: times_ms[times_ms.len() / 2],
        min_ms: times_ms[0],
        cpu_ms,
    })
}

/// `--stage frame`: the agent's per-frame stages on one thread, each timed
/// alone, as a table.
fn frame(args: &Args, yuyv: &[u8], width: u32, height: u32) -> Result<()> {
    let stride = width as usize * 2;
    let mut bgr = vec![0u8; width as usize * height as usize * 3];
    let mut bmp_out = Vec::new();
    let mut gz_out = Vec::new();
    let mut compressor = gzip::Compressor::new(args.level).context("gzip level")?;
    // One encode up front: it checks the input, and gzip needs the BMP.
    bmp::encode_yuyv(yuyv, width, height, stride, &mut bmp_out)
        .map_err(|e| anyhow::anyhow!("--input is not a {width}x{height} YUYV frame: {e}"))?;
    let bmp_file = bmp_out.clone();

    let to_bgr = measure(args, &mut || {
        pixel::yuyv_to_bgr(yuyv, width, height, stride, &mut bgr)
            .map_err(|e| anyhow::anyhow!("yuyv_to_bgr: {e}"))?;
        black_box(&bgr);
        Ok(())
    })?;
    let to_bmp = measure(args, &mut || {
        bmp::encode_yuyv(yuyv, width, height, stride, &mut bmp_out)
            .map_err(|e| anyhow::anyhow!("encode_yuyv: {e}"))?;
        black_box(&bmp_out);
        Ok(())
    })?;
    let gz = measure(args, &mut || {
        gz_out.clear();
        compressor.compress_append(&bmp_file, &mut gz_out);
        black_box(&gz_out);
        Ok(())
    })?;

    let ms = |t: &Timing| t.cpu_ms.unwrap_or(t.median_ms);
    println!(
        "stagebench frame: {width}x{height} YUYV, {} arch, YUYV→BGR path {}, one thread, ms per frame (thread CPU time{})",
        std::env::consts::ARCH,
        pixel::yuyv_path(),
        if to_bgr.cpu_ms.is_some() { "" } else { " unavailable: wall-time medians" },
    );
    println!("  YUYV→BGR        {:8.3}", ms(&to_bgr));
    println!("  YUYV→BMP        {:8.3}", ms(&to_bmp));
    println!(
        "  gzip level {:<2}   {:8.3}   ({} → {} bytes)",
        args.level,
        ms(&gz),
        bmp_file.len(),
        gz_out.len()
    );
    let per_frame = ms(&to_bmp) + ms(&gz);
    println!(
        "  BMP + gzip      {:8.3}   = {:.1} frames/s per core",
        per_frame,
        1e3 / per_frame
    );
    Ok(())
}
