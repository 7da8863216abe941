#!/usr/bin/env python3
"""Viewer of the original Python/OpenCV design, used as an independent peer.

Written from the design, not from our Rust code: one select() loop over the
listener and the clients; for a readable client a 1-byte MSG_PEEK tells an
orderly close (b'') from a frame; then the 5-byte header struct '!BI', the body,
gzip.decompress, np.frombuffer, cv2.imdecode(IMREAD_COLOR).

Instead of a window it saves every decoded frame as OUT/cam<ID>_<seq 6 digits>.npy
(seq counts per camera id from 0) and exits 0 after --frames frames.
It prints `listening on HOST:PORT` first, and exits non-zero, saying why, if a frame
does not decode or the frames do not arrive within --timeout seconds.

With --jpeg (not part of the original design, which only reads gzip-BMP) the
bodies are JPEG files, given to cv2.imdecode as they are, without gunzip.
"""

import argparse
import gzip
import os
import select
import socket
import struct
import sys
import time

import cv2
import numpy as np

HEADER = struct.Struct("!BI")


def recv_exact(sock, n):
    """Blocking read of exactly n bytes, as the original design's recv loop."""
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError(f"peer closed with {n} bytes of a frame missing")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks one)")
    ap.add_argument("--frames", type=int, required=True, help="exit after this many frames")
    ap.add_argument("--out", required=True, help="directory for the decoded frames")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    ap.add_argument("--jpeg", action="store_true", help="bodies are JPEG files, not gzip")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    host, port = args.listen.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(8)
    print(f"listening on {host}:{listener.getsockname()[1]}", flush=True)

    deadline = time.monotonic() + args.timeout
    sockets = [listener]
    seq = {}
    total = 0
    while total < args.frames:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f"server: timed out after {args.timeout}s with {total} of {args.frames} frames")
        readable, _, _ = select.select(sockets, [], [], left)
        for sock in readable:
            if sock is listener:
                conn, peer = listener.accept()
                print(f"server: connection from {peer[0]}:{peer[1]}", flush=True)
                sockets.append(conn)
                continue
            if not sock.recv(1, socket.MSG_PEEK):
                print("server: connection closed", flush=True)
                sockets.remove(sock)
                sock.close()
                continue
            cam_id, body_len = HEADER.unpack(recv_exact(sock, HEADER.size))
            body = recv_exact(sock, body_len)
            if args.jpeg:
                if body[:3] != b"\xff\xd8\xff":
                    sys.exit(f"server: a {body_len}-byte body from camera {cam_id} is not a JPEG file")
                bmp = body
            else:
                bmp = gzip.decompress(body)
            image = cv2.imdecode(np.frombuffer(bmp, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                kind = "JPEG" if args.jpeg else "BMP"
                sys.exit(f"server: cv2.imdecode failed on a {len(bmp)}-byte {kind} from camera {cam_id}")
            n = seq.get(cam_id, 0)
            seq[cam_id] = n + 1
            np.save(os.path.join(args.out, f"cam{cam_id}_{n:06d}.npy"), image)
            total += 1
            print(f"server: frame cam={cam_id} seq={n} shape={'x'.join(map(str, image.shape))} "
                  f"gzip={body_len} bmp={len(bmp)}", flush=True)
    print(f"server: done, {total} frames", flush=True)


if __name__ == "__main__":
    main()
