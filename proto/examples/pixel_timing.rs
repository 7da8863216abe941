//! Times `pixel::yuyv_to_bgr` on the noisy test frames and prints one line
//! per frame: `NAME WIDTHxHEIGHT MEDIAN_MS`, the median of `REPS` calls
//! (default 200) into a reused buffer, as the agent calls it.
//!
//! With `--bmp` it also prints, per frame, `bmp:NAME` lines for the two
//! ways to make the agent's BMP: `yuyv_to_bgr` + `bmp::encode_bgr24`
//! (`via_bgr`), and `bmp::encode_yuyv` straight from YUYV (`direct`).
//!
//! `proto/examples/pixel_vs_cv2.py` runs this in rounds alternating with
//! `cv2.cvtColor` and reports medians and ratios; run it rather than this
//! alone when comparing, because the machine is shared and noisy.
//!
//! ```text
//! cargo run --release -p proto --example pixel_timing -- [REPS] [--bmp]
//! ```

use std::hint::black_box;
use std::time::Instant;

use proto::{bmp, pixel};

const FRAMES: [(&str, u32, u32); 2] = [
    ("coffee_640x480_noise", 640, 480),
    ("astronaut_1280x720_noise", 1280, 720),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_bmp = args.iter().any(|a| a == "--bmp");
    let reps: usize = match args.iter().find(|a| *a != "--bmp").map(|a| a.parse()) {
        None => 200,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: pixel_timing [REPS] [--bmp]  (REPS: calls per frame, > 0)");
            std::process::exit(2);
        }
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/frames");
    for (stem, width, height) in FRAMES {
        let path = format!("{dir}/{stem}.yuyv");
        let yuyv = match std::fs::read(&path) {
            Ok(data) => data,
            Err(e) => {
                eprintln!("cannot read {path}: {e} (run from a full checkout)");
                std::process::exit(1);
            }
        };
        let mut bgr = vec![0u8; (width * height * 3) as usize];
        let stride = 2 * width as usize;
        let convert = median_ms(reps, || {
            pixel::yuyv_to_bgr(black_box(&yuyv), width, height, stride, black_box(&mut bgr))
                .map_err(|e| e.to_string())
        });
        println!("{stem} {width}x{height} {convert:.4}");
        if with_bmp {
            let mut file = Vec::new();
            let via_bgr = median_ms(reps, || {
                pixel::yuyv_to_bgr(black_box(&yuyv), width, height, stride, &mut bgr)
                    .map_err(|e| e.to_string())?;
                bmp::encode_bgr24(&bgr, width, height, black_box(&mut file))
                    .map_err(|e| e.to_string())
            });
            let direct = median_ms(reps, || {
                bmp::encode_yuyv(
                    black_box(&yuyv),
                    width,
                    height,
                    stride,
                    black_box(&mut file),
                )
                .map_err(|e| e.to_string())
            });
            println!("bmp:{stem} via_bgr {via_bgr:.4} direct {direct:.4}");
        }
    }
}

/// Median wall time of `reps` calls of `f`, in milliseconds; exits on error.
fn median_ms(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> f64 {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let result = f();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if let Err(e) = result {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}
