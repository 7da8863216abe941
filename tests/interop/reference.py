#!/usr/bin/env python3
"""OpenCV's YUYV->BGR of a raw frame, the reference our agent's conversion is checked against.

usage: reference.py IN.yuyv WxH OUT.npy
Writes cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUYV) (BT.601 limited range) as an HxWx3 uint8 .npy.
"""

import sys

import cv2
import numpy as np


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip())
    src, size, dst = sys.argv[1:]
    width, height = (int(v) for v in size.lower().split("x"))
    raw = np.fromfile(src, dtype=np.uint8)
    if raw.size != width * height * 2:
        sys.exit(f"reference: {src} has {raw.size} bytes, not {width}x{height}x2")
    bgr = cv2.cvtColor(raw.reshape(height, width, 2), cv2.COLOR_YUV2BGR_YUYV)
    np.save(dst, bgr)


if __name__ == "__main__":
    main()
