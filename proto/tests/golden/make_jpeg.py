#!/usr/bin/env python3
"""Writes the JPEG golden data for proto's JPEG tests (proto/tests/jpeg_golden.rs).

libjpeg-turbo, through OpenCV, is the reference: the files here are what
cv2.imencode('.jpg') makes of crops of testdata/frames at several qualities
and samplings (the kinds of JPEG a camera or an OpenCV client sends), and
what cv2.imdecode makes of them. proto's decoder must come within 45 dB PSNR
of cv2.imdecode on each, so `cargo test` needs no Python. Rerun it after
changing the cases below or the OpenCV pin:

    tests/python/setup.sh
    .venv/bin/python proto/tests/golden/make_jpeg.py

Outputs, in jpeg/:
- NAME.jpg: the JPEG file;
- NAME.bgr.gz: cv2.imdecode(NAME.jpg) as top-down BGR24 (grey files too),
  gzip-compressed with mtime 0 so reruns are byte-identical;
- MANIFEST: `NAME WIDTH HEIGHT STANDARD_TABLES` per file, STANDARD_TABLES 1
  when the file uses libjpeg's default (ITU T.81 Annex K) Huffman tables.
"""

import gzip
import pathlib

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[3]
FRAMES = ROOT / "testdata" / "frames"
OUT = pathlib.Path(__file__).resolve().parent / "jpeg"

S420 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
S422 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422
S444 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444

# (name, frame, x, y, width, height, grey, quality, sampling, extra params)
CASES = [
    ("coffee_160x120_q85_420", "coffee_640x480_noise", 200, 150, 160, 120, False, 85, S420, []),
    ("coffee_160x120_q75_422", "coffee_640x480_noise", 200, 150, 160, 120, False, 75, S422, []),
    ("coffee_161x97_q95_444", "coffee_640x480", 17, 301, 161, 97, False, 95, S444, []),
    ("coffee_99x71_q90_422", "coffee_640x480", 301, 17, 99, 71, False, 90, S422, []),
    ("coffee_gray_67x45_q85", "coffee_640x480", 300, 200, 67, 45, True, 85, S420, []),
    ("coffee_160x120_q50_420_rst", "coffee_640x480_noise", 40, 40, 160, 120, False, 50, S420,
     [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]),
    ("coffee_160x120_q85_420_progressive", "coffee_640x480", 100, 100, 160, 120, False, 85, S420,
     [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    ("bars75_640x480_q85_422", "bars75_640x480", 0, 0, 640, 480, False, 85, S422, []),
]


def load_bgr(name):
    width, height = (int(v) for v in name.split("_")[1].split("x"))
    return np.fromfile(FRAMES / f"{name}.bgr", dtype=np.uint8).reshape(height, width, 3)


def main():
    OUT.mkdir(exist_ok=True)
    manifest = []
    for name, frame, x, y, w, h, grey, quality, sampling, extra in CASES:
        crop = np.ascontiguousarray(load_bgr(frame)[y:y + h, x:x + w])
        if grey:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
        ok, jpg = cv2.imencode(".jpg", crop, params + extra)
        assert ok, name
        jpg = jpg.tobytes()
        (OUT / f"{name}.jpg").write_bytes(jpg)
        decoded = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (h, w, 3), (name, decoded.shape)
        with open(OUT / f"{name}.bgr.gz", "wb") as f:
            f.write(gzip.compress(decoded.tobytes(), mtime=0))
        standard = 0 if cv2.IMWRITE_JPEG_PROGRESSIVE in extra else 1
        manifest.append(f"{name} {w} {h} {standard}")
    (OUT / "MANIFEST").write_text("\n".join(manifest) + "\n")
    print(f"wrote {len(manifest)} JPEG cases to {OUT}")


if __name__ == "__main__":
    main()
