#!/usr/bin/env python3
"""Writes OpenCV's output for proto's golden tests (proto/tests/golden.rs).

OpenCV is the reference the original Python design used, so proto must match
it: its BMP encoder byte for byte, its YUYV->BGR converter within 1 per
channel. This script records what OpenCV produces, so `cargo test` needs no
Python. Rerun it after changing the crops below or the OpenCV pin:

    tests/python/setup.sh
    .venv/bin/python proto/tests/golden/make_golden.py

Inputs come from testdata/frames (headless BGR24 and YUYV files). Outputs,
gzip-compressed with mtime 0 so reruns are byte-identical:

- bmp/NAME.bmp.gz: cv2.imencode('.bmp', crop) for each crop in BMP_CROPS;
- yuyv/FRAME.bgr.gz: cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV), top-down BGR24;
- MANIFEST: one line per output, read by the Rust tests.
"""

import gzip
import pathlib

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[3]
FRAMES = ROOT / "testdata" / "frames"
OUT = pathlib.Path(__file__).resolve().parent

# (name, frame, x, y, width, height, channels). Odd widths make OpenCV pad
# rows; channels 1 and 4 exercise the 8-bit paletted and 32-bit writers.
BMP_CROPS = [
    ("coffee_1x1", "coffee_640x480", 320, 240, 1, 1, 3),
    ("coffee_3x2", "coffee_640x480", 100, 50, 3, 2, 3),
    ("coffee_33x17", "coffee_640x480_noise", 200, 150, 33, 17, 3),
    ("coffee_161x97", "coffee_640x480_noise", 17, 301, 161, 97, 3),
    ("bars75_640x480", "bars75_640x480", 0, 0, 640, 480, 3),
    ("coffee_gray_67x45", "coffee_640x480", 300, 200, 67, 45, 1),
    ("coffee_bgra_31x9", "coffee_640x480", 40, 400, 31, 9, 4),
]

# (frame, width, height): every shared frame.
YUYV_FRAMES = [
    ("bars75_640x480", 640, 480),
    ("coffee_640x480", 640, 480),
    ("coffee_640x480_noise", 640, 480),
    ("astronaut_1280x720_noise", 1280, 720),
]


def frame_size(name):
    width, height = name.split("_")[1].split("x")
    return int(width), int(height)


def load_bgr(name):
    width, height = frame_size(name)
    data = np.fromfile(FRAMES / f"{name}.bgr", dtype=np.uint8)
    return data.reshape(height, width, 3)


def write_gz(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw:
        # mtime=0 and no file name: the output depends only on the data.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(data)


def crop_image(frame, x, y, width, height, channels):
    crop = np.ascontiguousarray(load_bgr(frame)[y : y + height, x : x + width])
    if channels == 1:
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if channels == 4:
        bgra = cv2.cvtColor(crop, cv2.COLOR_BGR2BGRA)
        # A varying alpha, so a decoder that leaks alpha into 0RGB shows it.
        bgra[:, :, 3] = np.arange(width * height, dtype=np.uint32).reshape(height, width) * 7 % 256
        return bgra
    return crop


def main():
    manifest = [
        "# Written by make_golden.py with OpenCV " + cv2.__version__ + "; do not edit.",
        "# bmp NAME FRAME X Y WIDTH HEIGHT CHANNELS  (bmp/NAME.bmp.gz)",
        "# yuyv FRAME WIDTH HEIGHT                   (yuyv/FRAME.bgr.gz)",
    ]
    for name, frame, x, y, width, height, channels in BMP_CROPS:
        image = crop_image(frame, x, y, width, height, channels)
        ok, encoded = cv2.imencode(".bmp", image)
        if not ok:
            raise SystemExit(f"cv2.imencode failed for {name}")
        write_gz(OUT / "bmp" / f"{name}.bmp.gz", encoded.tobytes())
        manifest.append(f"bmp {name} {frame} {x} {y} {width} {height} {channels}")
    for frame, width, height in YUYV_FRAMES:
        yuyv = np.fromfile(FRAMES / f"{frame}.yuyv", dtype=np.uint8).reshape(height, width, 2)
        bgr = cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV)
        assert bgr.shape == (height, width, 3)
        write_gz(OUT / "yuyv" / f"{frame}.bgr.gz", np.ascontiguousarray(bgr).tobytes())
        manifest.append(f"yuyv {frame} {width} {height}")
    (OUT / "MANIFEST").write_text("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
