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
- raw/*.bgr.gz: for each capture format in RAW_FORMATS and each crop in
  RAW_CROPS, OpenCV's conversion of that crop in that format to BGR24 (BGR3,
  which OpenCV does not convert, is the crop itself). The input is derived
  from testdata/frames by rearranging bytes only (see `raw_input`; the Rust
  test derives it the same way), so only outputs are stored, and an output
  equal to one already written (UYVY's equals YUYV's: the same samples) is
  not written twice: its MANIFEST line names the earlier file;
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


# (frame, x, y, width, height): the crops every raw format is converted from.
# x and y are even (YUYV pairs, 4:2:0 row pairs); 322 = 10 * 32 + 2 leaves a
# tail after every SIMD step, and 242 / 2 = 121 chroma rows is odd.
RAW_CROPS = [
    ("bars75_640x480", 0, 0, 640, 480),
    ("coffee_640x480", 100, 60, 322, 242),
]

# V4L2 fourcc -> the OpenCV conversion to BGR (None: BGR3 is BGR already).
RAW_FORMATS = {
    "YUYV": cv2.COLOR_YUV2BGR_YUYV,
    "UYVY": cv2.COLOR_YUV2BGR_UYVY,
    "YVYU": cv2.COLOR_YUV2BGR_YVYU,
    "NV12": cv2.COLOR_YUV2BGR_NV12,
    "NV21": cv2.COLOR_YUV2BGR_NV21,
    "YU12": cv2.COLOR_YUV2BGR_I420,
    "YV12": cv2.COLOR_YUV2BGR_YV12,
    "GREY": cv2.COLOR_GRAY2BGR,
    "RGB3": cv2.COLOR_RGB2BGR,
    "BGR3": None,
}


def raw_input(fourcc, frame, x, y, width, height):
    """A crop of a shared frame in `fourcc`, tightly packed, in the shape
    cv2.cvtColor takes. Only bytes are rearranged:
    - 4:2:2 formats: the crop of FRAME.yuyv, with each pixel pair's bytes
      reordered (UYVY: U Y0 V Y1; YVYU: Y0 V Y1 U);
    - 4:2:0 formats: Y from every row of the YUYV crop, U and V from its even
      rows (0, 2, ...), as planes (YU12: Y U V; YV12: Y V U) or with the
      chroma interleaved (NV12: U V; NV21: V U);
    - GREY: the YUYV crop's Y;
    - RGB3: the crop of FRAME.bgr with each pixel's bytes reversed; BGR3: the
      crop as it is.
    """
    frame_width, frame_height = frame_size(frame)
    if fourcc in ("RGB3", "BGR3"):
        bgr = load_bgr(frame)[y : y + height, x : x + width]
        return np.ascontiguousarray(bgr[:, :, ::-1] if fourcc == "RGB3" else bgr)
    yuyv = np.fromfile(FRAMES / f"{frame}.yuyv", dtype=np.uint8).reshape(frame_height, frame_width * 2)
    yuyv = yuyv[y : y + height, 2 * x : 2 * (x + width)]
    luma = yuyv[:, 0::2]
    u, v = yuyv[0::2, 1::4], yuyv[0::2, 3::4]
    if fourcc == "YUYV":
        packed = yuyv
    elif fourcc == "UYVY":
        packed = yuyv.reshape(height, width, 2)[:, :, ::-1].reshape(height, 2 * width)
    elif fourcc == "YVYU":
        packed = yuyv.reshape(height, width // 2, 4)[:, :, [0, 3, 2, 1]].reshape(height, 2 * width)
    elif fourcc == "GREY":
        return np.ascontiguousarray(luma)
    else:
        first, second = (v, u) if fourcc in ("YV12", "NV21") else (u, v)
        if fourcc in ("NV12", "NV21"):
            chroma = np.stack([first, second], axis=2).reshape(height // 2, width)
        else:
            chroma = np.concatenate([first.ravel(), second.ravel()]).reshape(height // 2, width)
        return np.ascontiguousarray(np.vstack([luma, chroma]))
    return np.ascontiguousarray(packed).reshape(height, width, 2)


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
        "# raw FOURCC FRAME X Y WIDTH HEIGHT FILE     (FILE: OpenCV's BGR24, gzip)",
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
    written = {}  # output bytes -> the file holding them
    for frame, x, y, width, height in RAW_CROPS:
        for fourcc, code in RAW_FORMATS.items():
            image = raw_input(fourcc, frame, x, y, width, height)
            bgr = image if code is None else cv2.cvtColor(image, code)
            assert bgr.shape == (height, width, 3), (fourcc, bgr.shape)
            data = np.ascontiguousarray(bgr).tobytes()
            if data not in written:
                name = f"raw/{frame}_{x}_{y}_{width}x{height}.{fourcc.lower()}.bgr.gz"
                write_gz(OUT / name, data)
                written[data] = name
            manifest.append(f"raw {fourcc} {frame} {x} {y} {width} {height} {written[data]}")
    (OUT / "MANIFEST").write_text("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
