"""Times one stage of the original design (OpenCV / Python zlib) on one input
file and prints one JSON line, like loadgen's `stagebench` does for proto.

Stages: yuyv2bgr (cv2.cvtColor), bmpdecode (cv2.imdecode), gunzip
(zlib.decompress, wbits=31), gzip (gzip.compress), decode (gzip.decompress +
cv2.imdecode: the original server's per-frame path), encode (cvtColor +
imencode + gzip.compress: the original agent's per-frame path).
--threads N calls cv2.setNumThreads(N) first (0 keeps OpenCV's default).
"""

import argparse
import gzip
import json
import statistics
import time
import zlib

import cv2
import numpy as np


def thread_cpu_ns():
    """This thread's CPU time in ns (/proc/thread-self/schedstat), as stagebench reads it."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--level", type=int, default=9)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    args = ap.parse_args()
    if args.threads > 0:
        cv2.setNumThreads(args.threads)

    width, height = (int(v) for v in args.size.split("x"))
    data = open(args.input, "rb").read()
    arr = np.frombuffer(data, np.uint8)

    if args.stage == "yuyv2bgr":
        yuyv = arr[: width * height * 2].reshape(height, width, 2)
        step = lambda: cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
    elif args.stage == "bmpdecode":
        step = lambda: cv2.imdecode(arr, cv2.IMREAD_COLOR)
    elif args.stage == "gunzip":
        step = lambda: zlib.decompress(data, 31)
    elif args.stage == "gzip":
        step = lambda: gzip.compress(data, compresslevel=args.level)
    elif args.stage == "decode":
        step = lambda: cv2.imdecode(np.frombuffer(gzip.decompress(data), np.uint8), cv2.IMREAD_COLOR)
    elif args.stage == "encode":
        yuyv = arr[: width * height * 2].reshape(height, width, 2)

        def step():
            bgr = cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
            _, bmp = cv2.imencode(".bmp", bgr)
            return gzip.compress(bmp.tobytes(), compresslevel=args.level)
    else:
        raise SystemExit(f"unknown --stage {args.stage!r}")

    for _ in range(max(1, args.iters // 10)):
        step()
    times = []
    cpu0 = thread_cpu_ns()
    start = time.perf_counter()
    while len(times) < max(1, args.iters) or time.perf_counter() - start < args.min_seconds:
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    cpu1 = thread_cpu_ns()
    print(json.dumps({
        "stage": args.stage,
        "impl": "python",
        "iters": len(times),
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        # This thread only: OpenCV's own worker threads (cv2_threads > 1) are not counted.
        "cpu_ms": (cpu1 - cpu0) / 1e6 / len(times),
        "cv2_threads": cv2.getNumThreads(),
    }))


if __name__ == "__main__":
    main()
