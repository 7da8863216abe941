#!/usr/bin/env python3
"""MJPEG test frames made by OpenCV (libjpeg-turbo), as a camera would send them.

usage: make_mjpeg.py IN.bgr WxH OUT_DIR

Writes into OUT_DIR:
    frames.mjpg      the JPEGs below concatenated, in this order (what
                     `agent --source file:... --format MJPG` reads)
    NAME.jpg         each one on its own
    NAME.bgr         cv2.imdecode(NAME.jpg) of each decodable one, raw BGR24
    MANIFEST         one line per frame: NAME KIND, KIND one of
                     good    a whole JPEG with its Huffman tables
                     nodht   a whole JPEG whose DHT segments were removed,
                             as MJPEG cameras send them (decoded here with
                             the tables in place)
                     cut     a JPEG cut inside its scan, as a USB error cuts it

The frames: quality 50 4:2:0, 75 4:2:2, 95 4:4:4, a cut 85 4:2:0, and an 85
4:2:2 without DHT.
"""

import os
import sys

import cv2
import numpy as np

S420 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
S422 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422
S444 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444

FRAMES = [
    ("q50_420", 50, S420, "good"),
    ("q75_422", 75, S422, "good"),
    ("q85_420_cut", 85, S420, "cut"),
    ("q95_444", 95, S444, "good"),
    ("q85_422_nodht", 85, S422, "nodht"),
]


def strip_dht(jpg):
    """The JPEG without its DHT segments (everything before SOS is segments)."""
    out = bytearray(jpg[:2])
    pos = 2
    while jpg[pos + 1] != 0xDA:
        length = int.from_bytes(jpg[pos + 2:pos + 4], "big")
        if jpg[pos + 1] != 0xC4:
            out += jpg[pos:pos + 2 + length]
        pos += 2 + length
    out += jpg[pos:]
    return bytes(out)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip())
    src, size, out_dir = sys.argv[1:]
    width, height = (int(v) for v in size.lower().split("x"))
    image = np.fromfile(src, dtype=np.uint8).reshape(height, width, 3)
    os.makedirs(out_dir, exist_ok=True)
    stream = bytearray()
    manifest = []
    for name, quality, sampling, kind in FRAMES:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
        ok, jpg = cv2.imencode(".jpg", image, params)
        if not ok:
            sys.exit(f"make_mjpeg: cv2.imencode failed for {name}")
        jpg = jpg.tobytes()
        if kind != "cut":
            decoded = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            decoded.tofile(os.path.join(out_dir, f"{name}.bgr"))
        if kind == "nodht":
            jpg = strip_dht(jpg)
        elif kind == "cut":
            jpg = jpg[:len(jpg) * 3 // 5]
        with open(os.path.join(out_dir, f"{name}.jpg"), "wb") as f:
            f.write(jpg)
        stream += jpg
        manifest.append(f"{name} {kind}")
    with open(os.path.join(out_dir, "frames.mjpg"), "wb") as f:
        f.write(stream)
    with open(os.path.join(out_dir, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(f"make_mjpeg: {len(FRAMES)} frames, {len(stream)} bytes", flush=True)


if __name__ == "__main__":
    main()
