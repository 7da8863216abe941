"""The viewer's memory per TLS client place, against a plaintext one.

README "Memory bound" counts each client place; with `--tls-*` a place also
holds `viewer/src/tls.rs`'s socket buffer (INCOMING_LEN, 64 KiB, where
rustls decrypts in place and joins handshake messages), rustls's state (the
client's certificate chain, one decrypted record) and the rest of a record
the reader had no room for. This measures it on the real binary:
the viewer's VmRSS with N clients in each state, minus before they came,
divided by N, for a plaintext viewer and a TLS one:

- `idle`: connected (TLS: handshake done, with a camera certificate), and
  nothing sent;
- `frame`: then each sends one gzip-BMP frame (320x240 noise, about 230 KB,
  so every buffer on the way fills) and stays connected;
- `stalled` (TLS only): a client that sends 60 KiB of an unfinished
  64 KiB ClientHello and stops, which keeps the socket buffer holding
  it until --idle-timeout.

    python3 bench/tls_memory.py                      # after cargo build --release
    python3 bench/tls_memory.py --bin target/debug --clients 32

Loopback only; the certificates come from camstream-cert into a temp dir.
Python's standard library alone (ssl is OpenSSL).
"""

import argparse
import gzip
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

KIB = 1024


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss(pid, seconds=1.5):
    """VmRSS once it has stopped moving (the viewer handles the new
    connections or frames on its own time)."""
    last = rss_kib(pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def frame(camera_id):
    """One gzip-BMP frame: a 24-bit 320x240 BMP of noise, gzip level 1."""
    width, height = 320, 240
    pixels = os.urandom(width * height * 3)
    header = struct.pack(
        "<2sIHHIIiiHHIIiiII",
        b"BM", 54 + len(pixels), 0, 0, 54,
        40, width, height, 1, 24, 0, len(pixels), 0, 0, 0, 0,
    )
    body = gzip.compress(header + pixels, compresslevel=1)
    return struct.pack("!BI", camera_id, len(body)) + body


def stalled_client_hello():
    """TLS records carrying the first 60 KiB of a 64 KiB ClientHello: rustls
    joins handshake messages up to 64 KiB (record headers included), so it
    buffers all of it and waits for the rest."""
    total = 0xFFF0
    message = bytes([1]) + total.to_bytes(3, "big") + b"\x03\x03" + bytes(total - 2)
    out = b""
    sent = 0
    # 4 KiB records: the 64 KiB counts their headers too, and with 16 KiB
    # records the fourth one overflows it (rustls: "message buffer full").
    while sent < 60 * KIB:
        chunk = message[sent:sent + 4 * KIB]
        out += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
        sent += len(chunk)
    return out


class Viewer:
    def __init__(self, bin_dir, clients, tls_args):
        cmd = [
            str(bin_dir / "viewer"), "--headless", "--listen", "127.0.0.1:0",
            "--max-clients", str(clients + 4), "--idle-timeout", "600",
            "--stats-interval", "0",
        ] + tls_args
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if "listening on " in line:
                host, port = line.split("listening on ")[1].split()[0].rsplit(":", 1)
                self.addr = (host, int(port))
                break
        else:
            raise RuntimeError("the viewer exited before listening")
        # Keep reading its log: a full pipe would stop the viewer.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(bin_dir, clients, tls, certs):
    """{state: KiB per client} for one viewer."""
    tls_args = []
    context = None
    if tls:
        tls_args = [
            "--tls-cert", str(certs / "viewer.pem"), "--tls-key", str(certs / "viewer.key"),
            "--tls-client-ca", str(certs / "ca.pem"),
        ]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(certs / "ca.pem")
        context.load_cert_chain(certs / "camera-1.pem", certs / "camera-1.key")
    viewer = Viewer(bin_dir, clients, tls_args)
    pid = viewer.proc.pid
    result = {}
    try:
        time.sleep(0.5)
        base = settled_rss(pid)
        socks = []
        for _ in range(clients):
            s = socket.create_connection(viewer.addr)
            if context is not None:
                # server_hostname: the viewer's certificate names 127.0.0.1.
                s = context.wrap_socket(s, server_hostname="127.0.0.1")
            socks.append(s)
        result["idle"] = (settled_rss(pid) - base) / clients
        data = frame(1)
        for s in socks:
            s.sendall(data)
        result["frame"] = (settled_rss(pid) - base) / clients
        for s in socks:
            s.close()
    finally:
        viewer.stop()
    if tls:
        # A fresh viewer: memory the first clients freed would be reused.
        viewer = Viewer(bin_dir, clients, tls_args)
        pid = viewer.proc.pid
        try:
            time.sleep(0.5)
            base = settled_rss(pid)
            hello = stalled_client_hello()
            stalled = []
            for _ in range(clients):
                s = socket.create_connection(viewer.addr)
                s.sendall(hello)
                stalled.append(s)
            result["stalled"] = (settled_rss(pid) - base) / clients
            # Still connected: rustls was waiting for the rest, not refusing.
            for s in stalled:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        raise RuntimeError("the viewer closed a stalled handshake")
                except BlockingIOError:
                    pass
                s.close()
        finally:
            viewer.stop()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default="target/release", type=Path,
                        help="directory holding viewer and camstream-cert")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        cert = str(args.bin / "camstream-cert")
        for sub in (["ca"], ["viewer", "--ip", "127.0.0.1"], ["camera", "--id", "1"]):
            subprocess.run([cert] + sub + ["--dir", tmp], check=True, capture_output=True)
        for rnd in range(args.rounds):
            plain = measure(args.bin, args.clients, False, certs)
            tls = measure(args.bin, args.clients, True, certs)
            print(
                f"round {rnd + 1}, {args.clients} clients, KiB per client: "
                f"idle plaintext {plain['idle']:.1f} TLS {tls['idle']:.1f} "
                f"(+{tls['idle'] - plain['idle']:.1f}); "
                f"after a frame plaintext {plain['frame']:.1f} TLS {tls['frame']:.1f} "
                f"(+{tls['frame'] - plain['frame']:.1f}); "
                f"TLS stalled in a 64 KiB ClientHello {tls['stalled']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
