"""The original design's server path, headless, as the reference.

select() over the listener and the clients; for a readable client, a blocking
read of the 5-byte header and then of the whole body (as the original does: one
slow client stalls everyone), gzip.decompress, cv2.imdecode. cv2.imshow is left
out (headless), which favours the reference.

First stdout line: `listening on HOST:PORT`. On SIGTERM/SIGINT it prints one
JSON line with the frames decoded per camera, and exits 0.
"""

import argparse
import gzip
import json
import select
import signal
import socket
import struct
import sys

import cv2
import numpy as np


class Stop(Exception):
    pass


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1:0")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host, port = args.listen.rsplit(":", 1)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(64)
    addr = server.getsockname()
    print(f"listening on {addr[0]}:{addr[1]}", flush=True)

    clients = []
    decoded = {}
    errors = 0
    try:
        while True:
            readable, _, _ = select.select([server] + clients, [], [])
            for s in readable:
                if s is server:
                    conn, _ = server.accept()
                    clients.append(conn)
                    continue
                # The original tells an orderly close from a frame with a 1-byte peek.
                header = recv_exact(s, 5) if s.recv(1, socket.MSG_PEEK) else None
                body = None
                if header is not None:
                    cam_id, length = struct.unpack("!BI", header)
                    body = recv_exact(s, length)
                if body is None:
                    clients.remove(s)
                    s.close()
                    continue
                bmp = gzip.decompress(body)
                img = cv2.imdecode(np.frombuffer(bmp, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    errors += 1
                    continue
                decoded[cam_id] = decoded.get(cam_id, 0) + 1
    except Stop:
        pass
    print(json.dumps({"decoded": {str(k): v for k, v in sorted(decoded.items())}, "errors": errors}),
          flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
