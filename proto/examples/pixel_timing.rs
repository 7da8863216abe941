//! Times `pixel::yuyv_to_bgr` on the noisy test frames and prints one line
//! per frame: `NAME WIDTHxHEIGHT MEDIAN_MS`, the median of `REPS` calls
//! (default 200) into a reused buffer, as the agent calls it.
//!
//! `proto/examples/pixel_vs_cv2.py` runs this in rounds alternating with
//! `cv2.cvtColor` and reports medians and ratios; run it rather than this
//! alone when comparing, because the machine is shared and noisy.
//!
//! ```text
//! cargo run --release -p proto --example pixel_timing -- [REPS]
//! ```

use std::hint::black_box;
use std::time::Instant;

use proto::pixel;

const FRAMES: [(&str, u32, u32); 2] = [
    ("coffee_640x480_noise", 640, 480),
    ("astronaut_1280x720_noise", 1280, 720),
];

fn main() {
    let reps: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 200,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: pixel_timing [REPS]  (REPS: calls per frame, > 0)");
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
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let start = Instant::now();
            let result = pixel::yuyv_to_bgr(
                black_box(&yuyv),
                width,
                height,
                2 * width as usize,
                black_box(&mut bgr),
            );
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if let Err(e) = result {
                eprintln!("{stem}: {e}");
                std::process::exit(1);
            }
        }
        times.sort_by(f64::total_cmp);
        println!("{stem} {width}x{height} {:.4}", times[reps / 2]);
    }
}
