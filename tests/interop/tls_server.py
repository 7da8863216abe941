#!/usr/bin/env python3
"""A TLS 1.3 viewer stand-in built on Python's ssl module (OpenSSL), to test
camstream's agent against a TLS stack we did not write.

It serves --cert/--key, requires a client certificate signed by --client-ca,
and reads frames as the original design does (struct '!BI' header, body,
gzip.decompress, cv2.imdecode), one connection at a time. A failed handshake
(the agent refused our certificate, say) is printed and the next connection
accepted. It prints `listening on HOST:PORT` first, `handshake failed: ...`
per failed handshake, `peer cipher NAME` per connection, and exits 0 after
--frames decoded frames, or 1 after --timeout seconds.
"""

import argparse
import gzip
import socket
import ssl
import struct
import sys
import time

import cv2
import numpy as np

HEADER = struct.Struct("!BI")


def recv_exact(sock, n):
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
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.client_ca)
    context.verify_mode = ssl.CERT_REQUIRED

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)

    deadline = time.monotonic() + args.timeout
    frames = 0
    while frames < args.frames:
        listener.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            raw, _ = listener.accept()
        except socket.timeout:
            sys.exit(f"tls_server: {frames} of {args.frames} frames within {args.timeout} s")
        raw.settimeout(10)
        try:
            conn = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print(f"handshake failed: {e}", flush=True)
            raw.close()
            continue
        print(f"peer cipher {conn.cipher()[0]}", flush=True)
        try:
            while frames < args.frames:
                camera_id, length = HEADER.unpack(recv_exact(conn, HEADER.size))
                bmp = gzip.decompress(recv_exact(conn, length))
                image = cv2.imdecode(np.frombuffer(bmp, dtype=np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    sys.exit(f"tls_server: frame {frames} from camera {camera_id} does not decode")
                frames += 1
                print(f"frame {frames} camera {camera_id} {image.shape[1]}x{image.shape[0]}", flush=True)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            print(f"connection ended: {e}", flush=True)
        conn.close()
    print(f"done: {frames} frames", flush=True)


if __name__ == "__main__":
    main()
