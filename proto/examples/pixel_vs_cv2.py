#!/usr/bin/env python3
"""Our YUYV->BGR against cv2.cvtColor(COLOR_YUV2BGR_YUYV), side by side.

Runs ROUNDS rounds (default 9). Each round runs, one after the other:
our converter (the `pixel_timing` example, REPS calls per frame), cv2 with
one thread (as the original design runs), and cv2 with OpenCV's default
thread count. Every figure is a median of REPS calls; the ratios are taken
within a round, and the table shows the median over rounds.

    cargo build --release -p proto --example pixel_timing
    .venv/bin/python proto/examples/pixel_vs_cv2.py [ROUNDS] [REPS]

Needs opencv-python-headless and numpy (tests/python/requirements.txt).
"""
import pathlib
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "target/release/examples/pixel_timing"
FRAMES = [("coffee_640x480_noise", 640, 480), ("astronaut_1280x720_noise", 1280, 720)]


def cv2_ms(yuyv, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: cargo build --release -p proto --example pixel_timing")
    default_threads = cv2.getNumThreads()
    frames = {}
    for stem, w, h in FRAMES:
        raw = np.fromfile(ROOT / f"testdata/frames/{stem}.yuyv", dtype=np.uint8)
        frames[stem] = raw.reshape(h, w, 2)
    rows = {stem: {"ours": [], "cv1": [], "cvN": []} for stem, _, _ in FRAMES}
    for _ in range(rounds):
        out = subprocess.run([str(BIN), str(reps)], check=True, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            stem, _, ms = line.split()
            rows[stem]["ours"].append(float(ms))
        for threads, key in ((1, "cv1"), (default_threads, "cvN")):
            cv2.setNumThreads(threads)
            for stem, _, _ in FRAMES:
                rows[stem][key].append(cv2_ms(frames[stem], reps))
    print(f"OpenCV {cv2.__version__}, {rounds} rounds x {reps} calls, medians in ms")
    print(f"{'frame':10} {'ours':>7} {'cv2 1t':>7} {'cv2 ' + str(default_threads) + 't':>7} "
          f"{'ours/cv2 1t':>12} {'ours/cv2 ' + str(default_threads) + 't':>12}")
    for stem, w, h in FRAMES:
        r = rows[stem]
        ratio1 = statistics.median(o / c for o, c in zip(r["ours"], r["cv1"]))
        ratioN = statistics.median(o / c for o, c in zip(r["ours"], r["cvN"]))
        print(f"{w}x{h:<6} {statistics.median(r['ours']):7.3f} {statistics.median(r['cv1']):7.3f} "
              f"{statistics.median(r['cvN']):7.3f} {ratio1:12.2f} {ratioN:12.2f}")


if __name__ == "__main__":
    main()
