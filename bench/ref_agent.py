"""The original design's agent pipeline, single-threaded, as the reference.

Per frame: cv2.cvtColor(COLOR_YUV2BGR_YUYV) -> cv2.imencode('.bmp') ->
gzip.compress(level 9) -> struct.pack('!BI') header -> sendall to a discard
sink. The frame source is a raw YUYV file (the same one our agent loops over),
so capture costs nothing on either side.

With --jpeg FILE it is the original design fed an MJPEG camera's frames
instead: per frame cv2.imdecode(JPEG) -> cv2.imencode('.bmp') -> gzip.compress
-> sendall, the JPEG read once (what OpenCV's own capture would hand over after
decoding, done here in the frame loop).

Prints one JSON line: frames, wall and CPU seconds of the frame loop only
(interpreter start-up and `import cv2` are left out, which favours the
reference), and the process's ru_maxrss. bench.py takes the peak RSS from
VmHWM instead (start-up and `import cv2` included: that is what the original
design costs in memory): a child's ru_maxrss also counts its parent's memory,
here the harness's (see bench.Proc).
"""

import argparse
import gzip
import json
import resource
import socket
import struct
import time

import cv2
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--input", help="raw YUYV file")
    ap.add_argument("--jpeg", help="a JPEG file: decode it per frame instead of converting YUYV")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--level", type=int, default=9)
    ap.add_argument("--server", required=True, help="HOST:PORT of a discard sink")
    ap.add_argument("--id", type=int, default=0)
    args = ap.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    if args.jpeg:
        jpg = np.fromfile(args.jpeg, dtype=np.uint8)

        def to_bgr():
            return cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    else:
        if not args.input:
            raise SystemExit("give --input (raw YUYV) or --jpeg")
        raw = np.fromfile(args.input, dtype=np.uint8)
        frame_len = width * height * 2
        if raw.size < frame_len:
            raise SystemExit(f"{args.input}: {raw.size} bytes, less than one {args.size} YUYV frame")
        yuyv = raw[:frame_len].reshape(height, width, 2)

        def to_bgr():
            return cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
    host, port = args.server.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    sent_bytes = 0
    for _ in range(args.frames):
        bgr = to_bgr()
        ok, bmp = cv2.imencode(".bmp", bgr)
        if not ok:
            raise SystemExit("cv2.imencode failed")
        body = gzip.compress(bmp.tobytes(), compresslevel=args.level)
        sock.sendall(struct.pack("!BI", args.id, len(body)) + body)
        sent_bytes += len(body)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    sock.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(json.dumps({
        "frames": args.frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "maxrss_kib": ru1.ru_maxrss,
        "body_bytes_avg": sent_bytes / max(args.frames, 1),
        "cv2_threads": cv2.getNumThreads(),
    }))


if __name__ == "__main__":
    main()
