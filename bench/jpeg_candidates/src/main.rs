//! Times the JPEG candidates on camera-like frames (`testdata/frames`,
//! 640x480 and 1280x720 noisy): decoders zune-jpeg, jpeg-decoder and
//! libjpeg-turbo (the `turbojpeg` crate) on JPEGs libjpeg-turbo made at
//! qualities 75, 85, 95 in 4:2:0 and 4:2:2; encoders jpeg-encoder and
//! libjpeg-turbo at the same qualities, 4:2:0. Prints the mean CPU time of
//! this thread per call (mean) and the ratio to libjpeg-turbo. Decoders produce
//! BGR... as the agent needs it: zune-jpeg decodes RGB (its fastest output;
//! proto swaps to BGR in place), the others their usual RGB.

use std::hint::black_box;
use std::path::Path;

/// This thread's CPU time in ns (/proc/thread-self/schedstat), as stagebench.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Mean CPU milliseconds of `f` over at least `n` calls and 0.5 s, after
/// one warm-up: schedstat is tick-granular on some kernels, so one call is
/// too short to time alone (stagebench does the same).
fn cpu_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let (start, cpu0) = (std::time::Instant::now(), cpu_ns());
    let mut calls = 0;
    while calls < n || start.elapsed().as_secs_f64() < 0.5 {
        f();
        calls += 1;
    }
    (cpu_ns() - cpu0) as f64 / 1e6 / calls as f64
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/frames");
    let n = 41;
    println!("| frame | quality | sampling | zune-jpeg | jpeg-decoder | libjpeg-turbo | zune / turbo | jpeg-decoder / turbo |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut encodes = Vec::new();
    for (name, w, h) in [("coffee_640x480_noise", 640usize, 480usize), ("astronaut_1280x720_noise", 1280, 720)] {
        let bgr = std::fs::read(root.join(format!("{name}.bgr"))).expect("testdata frame");
        let image = turbojpeg::Image { pixels: &bgr[..], width: w, pitch: w * 3, height: h, format: turbojpeg::PixelFormat::BGR };
        for quality in [75, 85, 95] {
            for (label, subsamp) in [("4:2:0", turbojpeg::Subsamp::Sub2x2), ("4:2:2", turbojpeg::Subsamp::Sub2x1)] {
                let mut comp = turbojpeg::Compressor::new().unwrap();
                comp.set_quality(quality).unwrap();
                comp.set_subsamp(subsamp).unwrap();
                let jpg = comp.compress_to_vec(image).unwrap();
                let zune = cpu_ms(n, || {
                    let opts = zune_core::options::DecoderOptions::default()
                        .set_strict_mode(true)
                        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
                    let mut d = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(&jpg), opts);
                    black_box(d.decode().unwrap());
                });
                let jd = cpu_ms(n, || {
                    black_box(jpeg_decoder::Decoder::new(&jpg[..]).decode().unwrap());
                });
                let mut dec = turbojpeg::Decompressor::new().unwrap();
                let turbo = cpu_ms(n, || {
                    let header = dec.read_header(&jpg).unwrap();
                    let mut out = turbojpeg::Image { pixels: vec![0u8; header.width * header.height * 3], width: header.width,
                                                     pitch: header.width * 3, height: header.height, format: turbojpeg::PixelFormat::BGR };
                    dec.decompress(&jpg, out.as_deref_mut()).unwrap();
                    black_box(out);
                });
                println!("| {w}x{h} | {quality} | {label} | {zune:.2} ms | {jd:.2} ms | {turbo:.2} ms | {:.2}x | {:.2}x |", zune / turbo, jd / turbo);
            }
            let mut len = 0;
            let ours = cpu_ms(n, || {
                let mut out = Vec::with_capacity(1 << 20);
                let mut e = jpeg_encoder::Encoder::new(&mut out, quality as u8);
                e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
                e.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
                e.encode(&bgr, w as u16, h as u16, jpeg_encoder::ColorType::Bgr).unwrap();
                len = out.len();
            });
            let mut comp = turbojpeg::Compressor::new().unwrap();
            comp.set_quality(quality).unwrap();
            comp.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
            let mut turbo_len = 0;
            let turbo = cpu_ms(n, || turbo_len = comp.compress_to_vec(image).unwrap().len());
            encodes.push(format!("| {w}x{h} | {quality} | {ours:.2} ms, {len} B | {turbo:.2} ms, {turbo_len} B | {:.2}x |", ours / turbo));
        }
    }
    println!("\n| frame | quality (4:2:0) | jpeg-encoder | libjpeg-turbo | ratio |\n|---|---|---|---|---|");
    for line in encodes {
        println!("{line}");
    }
}
