"""Times one stage of the original design (OpenCV / Python zlib) on one input
file and prints one JSON line, like loadgen's `stagebench` does for proto.

Stages: yuyv2bgr (cv2.cvtColor), raw2bgr (cv2.cvtColor of a raw frame of
--format: COLOR_YUV2BGR_UYVY, _NV12, ..., GRAY2BGR, RGB2BGR), bmpdecode (cv2.imdecode), gunzip
(zlib.decompress, wbits=31), gzip (gzip.compress), decode (gzip.decompress +
cv2.imdecode: the original server's per-frame path), encode (cvtColor +
imencode + gzip.compress: the original agent's per-frame path), jpegdecode
(cv2.imdecode of a JPEG), jpegencode (cv2.imencode('.jpg') of a BGR frame at
--quality).
--threads N calls cv2.setNumThreads(N) first (0 keeps OpenCV's default).

--make FOURCC --bgr FRAME.bgr --output PATH writes, instead of timing, the
raw2bgr input: --input (a YUYV frame) and FRAME.bgr rearranged into FOURCC,
tightly packed, as proto/tests/golden/make_golden.py derives its inputs.
"""

import argparse
import gzip
import json
import statistics
import time
import zlib

import cv2
import numpy as np

# V4L2 fourcc -> (OpenCV's conversion to BGR, the input's shape for (h, w)).
RAW = {
    "YUYV": (cv2.COLOR_YUV2BGR_YUYV, lambda h, w: (h, w, 2)),
    "UYVY": (cv2.COLOR_YUV2BGR_UYVY, lambda h, w: (h, w, 2)),
    "YVYU": (cv2.COLOR_YUV2BGR_YVYU, lambda h, w: (h, w, 2)),
    "NV12": (cv2.COLOR_YUV2BGR_NV12, lambda h, w: (h * 3 // 2, w)),
    "NV21": (cv2.COLOR_YUV2BGR_NV21, lambda h, w: (h * 3 // 2, w)),
    "YU12": (cv2.COLOR_YUV2BGR_I420, lambda h, w: (h * 3 // 2, w)),
    "YV12": (cv2.COLOR_YUV2BGR_YV12, lambda h, w: (h * 3 // 2, w)),
    "GREY": (cv2.COLOR_GRAY2BGR, lambda h, w: (h, w)),
    "RGB3": (cv2.COLOR_RGB2BGR, lambda h, w: (h, w, 3)),
}


def make_raw(fourcc, yuyv_path, bgr_path, width, height):
    """A whole frame in `fourcc`, from its YUYV and BGR files (bytes
    rearranged only; 4:2:0 chroma from the even rows)."""
    if fourcc == "RGB3":
        return np.fromfile(bgr_path, np.uint8).reshape(height, width, 3)[:, :, ::-1]
    yuyv = np.fromfile(yuyv_path, np.uint8)[: width * height * 2].reshape(height, width * 2)
    luma, u, v = yuyv[:, 0::2], yuyv[0::2, 1::4], yuyv[0::2, 3::4]
    if fourcc == "YUYV":
        return yuyv
    if fourcc == "UYVY":
        return yuyv.reshape(height, width, 2)[:, :, ::-1]
    if fourcc == "YVYU":
        return yuyv.reshape(height, width // 2, 4)[:, :, [0, 3, 2, 1]]
    if fourcc == "GREY":
        return luma
    first, second = (v, u) if fourcc in ("YV12", "NV21") else (u, v)
    if fourcc in ("NV12", "NV21"):
        chroma = np.stack([first, second], axis=2).reshape(height // 2, width)
    else:
        chroma = np.concatenate([first.ravel(), second.ravel()])
    return np.concatenate([luma.ravel(), chroma.ravel()])


def thread_cpu_ns():
    """This thread's CPU time in ns (/proc/thread-self/schedstat), as stagebench reads it."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage", help="required unless --make")
    ap.add_argument("--input", required=True)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--level", type=int, default=9)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--format", default="YUYV", help="raw2bgr's input format (V4L2 fourcc)")
    ap.add_argument("--make", metavar="FOURCC", help="write raw2bgr's input instead of timing")
    ap.add_argument("--bgr", help="with --make: the frame's BGR file")
    ap.add_argument("--output", help="with --make: where to write")
    args = ap.parse_args()
    if args.make:
        width, height = (int(v) for v in args.size.split("x"))
        raw = make_raw(args.make, args.input, args.bgr, width, height)
        open(args.output, "wb").write(np.ascontiguousarray(raw).tobytes())
        return
    if not args.stage:
        ap.error("--stage is required (or --make)")
    if args.threads > 0:
        cv2.setNumThreads(args.threads)

    width, height = (int(v) for v in args.size.split("x"))
    data = open(args.input, "rb").read()
    arr = np.frombuffer(data, np.uint8)

    if args.stage == "yuyv2bgr":
        yuyv = arr[: width * height * 2].reshape(height, width, 2)
        step = lambda: cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
    elif args.stage == "raw2bgr":
        code, shape = RAW[args.format]
        raw = arr[: int(np.prod(shape(height, width)))].reshape(shape(height, width))
        step = lambda: cv2.cvtColor(raw, code)
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
    elif args.stage == "jpegdecode":
        step = lambda: cv2.imdecode(arr, cv2.IMREAD_COLOR)
    elif args.stage == "jpegencode":
        bgr = arr[: width * height * 3].reshape(height, width, 3)
        step = lambda: cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
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
