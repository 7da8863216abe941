#!/usr/bin/env python3
"""Writes the fuzz seed corpus in fuzz/seeds/<target>/ from real inputs.

The seeds are small crops of the camera-like frames in testdata/frames, as
OpenCV writes them (24-bit, 8-bit paletted from grayscale, 32-bit from BGRA),
plus the BMP variants the viewer also accepts (top-down, 32-bit bit fields,
1- and 4-bit) built by hand, gzip members of them, and wire streams of those;
and JPEGs as OpenCV writes them (4:2:0, 4:2:2, grey, progressive, restart
markers) and as cameras send them (no DHT, cut short, padded after EOI), for
the JPEG targets (`jpeg_seeds`).
The output is committed, together with inputs the fuzzers found (named
fuzz_*, not made here); rerun this only to change the seeds:

    .venv/bin/python fuzz/make_seeds.py    # needs opencv-python-headless, numpy
"""

import gzip
import io
import struct
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def crop(stem, width, height, x, y, w, h):
    raw = (ROOT / "testdata" / "frames" / f"{stem}.bgr").read_bytes()
    img = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def imencode(img):
    ok, buf = cv2.imencode(".bmp", img)
    assert ok
    return buf.tobytes()


def bmp(width, height, bits, rows, palette=b"", compression=0, masks=b""):
    """A BITMAPINFOHEADER BMP; `rows` are the stored rows, already padded."""
    pixels = b"".join(rows)
    offset = 54 + len(masks) + len(palette)
    size = offset + len(pixels)
    colors = len(palette) // 4
    return (
        struct.pack("<2sIHHI", b"BM", size, 0, 0, offset)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression,
                      len(pixels), 2835, 2835, colors, 0)
        + masks + palette + pixels
    )


def pad(row):
    return row + b"\0" * (-len(row) % 4)


def gz(data, name=None):
    out = io.BytesIO()
    with gzip.GzipFile(filename=name or "", mode="wb", compresslevel=9, fileobj=out, mtime=0) as f:
        f.write(data)
    return out.getvalue()


def frame(camera_id, body):
    return struct.pack("!BI", camera_id, len(body)) + body


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def raw_convert_seeds():
    """raw_convert: byte 0 the format (PixelFormat::ALL's raw ones in order:
    YUYV UYVY YVYU NV12 NV21 YU12 YV12 RGB3 BGR3 GREY), bytes 1-2 the width,
    3 the height, 4 the bytesperline padding, then the frame's bytes."""
    rng = np.random.default_rng(12)

    def seed(name, fmt, w, h, pad, n):
        head = bytes([fmt]) + struct.pack("<H", w) + bytes([h, pad])
        write("raw_convert", name, head + rng.integers(0, 256, n, dtype=np.uint8).tobytes())

    seed("yuyv_34x3", 0, 34, 3, 0, 34 * 3 * 2)
    seed("nv12_34x4_padded", 3, 34, 4, 6, 40 * 4 + 40 * 2)
    seed("yv12_36x2", 6, 36, 2, 0, 36 * 2 * 3 // 2)
    seed("rgb3_21x2_padded", 7, 21, 2, 5, 68 + 63)
    seed("grey_17x3_short", 9, 17, 3, 0, 17 * 3 - 1)


def main():
    raw_convert_seeds()
    bgr = crop("coffee_640x480_noise", 640, 480, 300, 200, 24, 16)
    odd = crop("astronaut_1280x720_noise", 1280, 720, 600, 300, 13, 7)
    bars = crop("bars75_640x480", 640, 480, 0, 100, 640, 2)[:, ::20]  # 32x2, every bar

    bmps = {
        "bgr24_24x16.bmp": imencode(bgr),
        "bgr24_13x7.bmp": imencode(odd),
        "bars_32x2.bmp": imencode(np.ascontiguousarray(bars)),
        "gray8_24x16.bmp": imencode(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)),
        "bgra32_13x7.bmp": imencode(cv2.cvtColor(odd, cv2.COLOR_BGR2BGRA)),
    }
    # Top-down 24-bit: the same pixels, rows in file order reversed, height negative.
    h, w = odd.shape[:2]
    rows = [pad(odd[y].tobytes()) for y in range(h)]
    bmps["bgr24_13x7_topdown.bmp"] = bmp(w, -h, 24, rows)
    # 32-bit BI_BITFIELDS with the masks after the header.
    rows = [b"".join(bytes(p) + b"\0" for p in odd[y]) for y in reversed(range(h))]
    masks = struct.pack("<III", 0xFF0000, 0xFF00, 0xFF)
    bmps["bitfields32_13x7.bmp"] = bmp(w, h, 32, rows, compression=3, masks=masks)
    # 1- and 4-bit from the grayscale crop (the `bmp` crate fallback path).
    gray = cv2.cvtColor(odd, cv2.COLOR_BGR2GRAY)
    pal2 = b"\0\0\0\0\xff\xff\xff\0"
    rows = [pad(np.packbits(gray[y] > 127).tobytes()) for y in reversed(range(h))]
    bmps["mono1_13x7.bmp"] = bmp(w, h, 1, rows, palette=pal2)
    pal16 = b"".join(bytes([i * 17] * 3) + b"\0" for i in range(16))
    rows = []
    for y in reversed(range(h)):
        nib = list(gray[y] >> 4) + [0]
        rows.append(pad(bytes((nib[i] << 4) | nib[i + 1] for i in range(0, w, 2))))
    bmps["gray4_13x7.bmp"] = bmp(w, h, 4, rows, palette=pal16)
    for name, data in bmps.items():
        write("bmp_decode", name, data)

    big = bmps["bgr24_24x16.bmp"]
    write("gzip_decompress", "bgr24_24x16.bmp.gz", gz(big))
    write("gzip_decompress", "gray8_24x16.bmp.gz", gz(bmps["gray8_24x16.bmp"], name="gray.bmp"))
    write("gzip_decompress", "empty.gz", gz(b""))
    # Bombs around the fuzz target's 1 MiB cap: one under it, one over it,
    # and one over it whose trailer lies that it is small.
    write("gzip_decompress", "zeros_512k.gz", gz(bytes(512 << 10)))
    over = gz(bytes(2 << 20))
    write("gzip_decompress", "zeros_2m.gz", over)
    write("gzip_decompress", "zeros_2m_lying_isize.gz", over[:-4] + struct.pack("<I", 1000))

    stream = frame(3, gz(big)) + frame(200, gz(bmps["bgr24_13x7.bmp"]))
    # Control byte: bits 0-1 pick the limit, bits 2-5 count chunk lengths.
    write("frame_reader", "two_frames_whole", bytes([0]) + stream)
    write("frame_reader", "two_frames_chunks", bytes([3 << 2, 1, 4, 200]) + stream)
    write("frame_reader", "frame_and_partial_header", bytes([2 << 2, 0, 5]) + frame(3, gz(big)) + b"\x07\0\0")
    write("frame_reader", "partial_body", bytes([1 << 2, 255]) + stream[:-1000])
    write("frame_reader", "over_limit", bytes([3 | (1 << 2), 2]) + frame(9, b"x" * 301))
    write("frame_reader", "empty_body", bytes([0]) + frame(1, b"") + frame(2, b"y"))


def imencode_jpg(img, quality, sampling=None, extra=()):
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, buf = cv2.imencode(".jpg", img, params + list(extra))
    assert ok
    return buf.tobytes()


def strip_dht(jpg):
    out = bytearray(jpg[:2])
    pos = 2
    while jpg[pos + 1] != 0xDA:
        length = int.from_bytes(jpg[pos + 2:pos + 4], "big")
        if jpg[pos + 1] != 0xC4:
            out += jpg[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out + jpg[pos:])


def jpeg_seeds():
    bgr = crop("coffee_640x480_noise", 640, 480, 300, 200, 24, 16)
    odd = crop("astronaut_1280x720_noise", 1280, 720, 600, 300, 13, 7)
    jpgs = {
        "q75_420_24x16.jpg": imencode_jpg(bgr, 75, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
        "q90_422_13x7.jpg": imencode_jpg(odd, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
        "q85_444_13x7.jpg": imencode_jpg(odd, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
        "gray_24x16.jpg": imencode_jpg(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 80),
        "progressive_24x16.jpg": imencode_jpg(bgr, 80, extra=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "rst_24x16.jpg": imencode_jpg(bgr, 60, extra=(cv2.IMWRITE_JPEG_RST_INTERVAL, 1)),
    }
    camera = imencode_jpg(bgr, 85, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422)
    jpgs["camera_nodht_24x16.jpg"] = strip_dht(camera)
    jpgs["camera_cut_24x16.jpg"] = camera[: len(camera) * 2 // 3]
    jpgs["camera_padded_24x16.jpg"] = camera + bytes(64)
    for name, data in jpgs.items():
        # Control byte 0: the largest pixel cap.
        write("mjpeg_decode", name, bytes([0]) + data)
    write("mjpeg_decode", "over_cap_24x16.jpg", bytes([1]) + jpgs["q75_420_24x16.jpg"])

    gzbmp = gz(imencode(bgr))
    both = frame(3, jpgs["q75_420_24x16.jpg"]) + frame(4, gzbmp) + frame(5, jpgs["camera_nodht_24x16.jpg"])
    # Control byte: bits 0-1 pick the BMP byte cap, bits 2-5 count chunk lengths.
    write("receive_path", "both_kinds_whole", bytes([0]) + both)
    write("receive_path", "both_kinds_chunks", bytes([3 << 2, 1, 7, 200]) + both)
    write("receive_path", "over_pixel_cap", bytes([1 | (1 << 2), 50]) + both)
    write("receive_path", "cut_and_gray", bytes([0]) + frame(6, jpgs["camera_cut_24x16.jpg"])
          + frame(7, jpgs["gray_24x16.jpg"]) + frame(8, jpgs["progressive_24x16.jpg"]))
    write("receive_path", "neither_kind", bytes([0]) + frame(9, b"GIF89a") + frame(3, jpgs["rst_24x16.jpg"]))


if __name__ == "__main__":
    main()
    jpeg_seeds()
