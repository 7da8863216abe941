#!/usr/bin/env python3
"""Camera client of the original Python/OpenCV design, used as an independent peer.

Written from the design, not from our Rust code:
    cv2.imencode('.bmp') -> gzip.compress(level=9) -> struct.pack('!BI', id, len) + body -> sendall

Instead of a camera it sends a raw BGR frame from a file (colour, or converted to
grayscale with OpenCV, which makes imencode write an 8-bit paletted BMP).

With --tls-ca (and --tls-cert/--tls-key for a client certificate) it speaks
TLS 1.3 through Python's ssl module (OpenSSL) instead: the same frames, inside
TLS, as camstream's optional mutual TLS expects.

With --save-sent DIR it also writes what it sent, so a test can compare:
    DIR/sent.bmp  the BMP bytes exactly as cv2.imencode produced them
    DIR/sent.raw  the pixels (rows top-down, no padding; BGR or one byte of gray)

With --jpeg QUALITY (not part of the original design) each body is instead
cv2.imencode('.jpg') at that quality, sent as it is (no gzip); frame i is made
at quality QUALITY - i, so every frame differs, and --save-sent writes them as
DIR/sent_<i>.jpg.
"""

import argparse
import gzip
import os
import socket
import ssl
import struct
import sys
import time

import cv2
import numpy as np


def parse_size(text):
    width, height = text.lower().split("x")
    return int(width), int(height)


def parse_addr(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="HOST:PORT of the viewer")
    ap.add_argument("--id", type=int, default=0, help="camera id, 0-255")
    ap.add_argument("--image", required=True, help="raw BGR24 file, rows top-down")
    ap.add_argument("--size", required=True, help="WxH of the raw file")
    ap.add_argument("--crop", help="WxH: send only the top-left part (odd widths pad BMP rows)")
    ap.add_argument("--gray", action="store_true", help="send it as a 1-channel image")
    ap.add_argument("--count", type=int, default=1, help="frames to send")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between frames")
    ap.add_argument("--save-sent", help="directory for sent.bmp and sent.raw")
    ap.add_argument("--jpeg", type=int, metavar="QUALITY", help="send JPEG bodies, not gzip-BMP")
    ap.add_argument("--tls-ca", help="speak TLS 1.3, trusting the viewer's certificate from this CA (PEM)")
    ap.add_argument("--tls-cert", help="client certificate (PEM); omit to present none")
    ap.add_argument("--tls-key", help="its private key (PEM)")
    ap.add_argument("--tls-server-name", default=None, help="name to check in the viewer's certificate")
    args = ap.parse_args()

    width, height = parse_size(args.size)
    raw = np.fromfile(args.image, dtype=np.uint8)
    if raw.size != width * height * 3:
        sys.exit(f"client: {args.image} has {raw.size} bytes, not {width}x{height}x3")
    image = raw.reshape(height, width, 3)
    if args.crop:
        crop_width, crop_height = parse_size(args.crop)
        image = np.ascontiguousarray(image[:crop_height, :crop_width])
        width, height = crop_width, crop_height
    if args.gray:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)

    ok, encoded = cv2.imencode(".bmp", image)
    if not ok:
        sys.exit("client: cv2.imencode('.bmp') failed")
    bmp = encoded.tobytes()
    body = gzip.compress(bmp, compresslevel=9)
    message = struct.pack("!BI", args.id, len(body)) + body

    if args.save_sent:
        os.makedirs(args.save_sent, exist_ok=True)
        with open(os.path.join(args.save_sent, "sent.bmp"), "wb") as f:
            f.write(bmp)
        with open(os.path.join(args.save_sent, "sent.raw"), "wb") as f:
            f.write(np.ascontiguousarray(image).tobytes())

    messages = [message] * args.count
    if args.jpeg:
        messages = []
        for i in range(args.count):
            quality = max(1, args.jpeg - i)
            ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                sys.exit("client: cv2.imencode('.jpg') failed")
            jpg = jpg.tobytes()
            messages.append(struct.pack("!BI", args.id, len(jpg)) + jpg)
            if args.save_sent:
                with open(os.path.join(args.save_sent, f"sent_{i}.jpg"), "wb") as f:
                    f.write(jpg)

    host, port = parse_addr(args.server)
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls_ca:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(args.tls_ca)
        if args.tls_cert:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        sock = context.wrap_socket(sock, server_hostname=args.tls_server_name or host)
        print(f"client: TLS {sock.version()} {sock.cipher()[0]}", flush=True)
    try:
        for i, message in enumerate(messages):
            sock.sendall(message)
            if args.interval and i + 1 < args.count:
                time.sleep(args.interval)
        # (With TLS, no close_notify: the framing tells a cut frame, and the
        # viewer treats the TCP close as the end.)
        # An orderly close: the viewer sees a read of 0 only after every byte above.
        sock.shutdown(socket.SHUT_WR)
        sock.close()
    except (OSError, ssl.SSLError) as e:
        sys.exit(f"client: the viewer ended the connection: {e}")
    kind = "gray" if args.gray else "colour"
    if args.jpeg:
        print(f"client: sent {args.count} {kind} {width}x{height} JPEG frames, "
              f"{sum(len(m) for m in messages)} bytes", flush=True)
        return
    print(f"client: sent {args.count} {kind} {width}x{height} frames, bmp {len(bmp)} bytes, "
          f"gzip {len(body)} bytes", flush=True)


if __name__ == "__main__":
    main()
