"""Browser-side load: `viewer --http` serving 16 cameras x 640x480 x 30 fps,
each watched by 2 HTTP MJPEG clients, headless (issue 14's speed goal).

`loadgen send` replays the noisy 640x480 frame from 16 cameras at 30 fps;
32 watchers (one Python thread, non-blocking sockets) read each camera's
`/cameras/N/stream.mjpg` and count the parts. It runs twice per body kind:

- `gzip-bmp`: the seed's level-9 gzip BMP, JPEG-encoded by the viewer for
  the watchers (once per frame, only while watched);
- `jpeg`: an OpenCV JPEG (quality 85) of the same frame, passed through to
  the watchers untouched (needs a viewer that accepts JPEG bodies).

Per run it prints: received fps per camera (the viewer's stats lines,
steady intervals), parts/s per watcher, the viewer's CPU, and from
`/metrics` the JPEG encodes against the frames decoded of the watched
cameras, and of one camera nobody watches (17th), whose encodes must be 0.

    bench/run --http                 # 20 s per run
    bench/run --http --seconds 10 --kinds gzip-bmp

Nothing here asserts: it prints figures and marks each goal met or missed.
"""

import argparse
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (Proc, prepare, venv_python, BIN)

CAMERAS = 16
WATCHERS_PER_CAMERA = 2
FPS = 30
BOUNDARY = b"--camstreamframe\r\n"


def jpeg_frame(py, bmp):
    """An OpenCV JPEG (quality 85) of the prepared BMP, made once."""
    out = bench.WORK / (bmp.stem + ".q85.jpg")
    if not out.exists() or out.stat().st_mtime < bmp.stat().st_mtime:
        subprocess.run([str(py), "-c", (
            "import cv2\n"
            f"img = cv2.imread({str(bmp)!r})\n"
            "ok, j = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 85])\n"
            f"open({str(out)!r}, 'wb').write(j.tobytes())\n")], check=True)
    return out


def metrics(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'(camstream_viewer_\w+)\{camera="(\d+)"\} (\S+)$', line)
        if m:
            out[(m.group(1), int(m.group(2)))] = float(m.group(3))
    return out


def cameras(http):
    import json
    with urllib.request.urlopen(f"http://{http}/api/cameras", timeout=10) as r:
        return json.loads(r.read())


class Watchers:
    """Non-blocking MJPEG readers in one thread, counting parts."""

    def __init__(self, http, paths):
        self.sel = selectors.DefaultSelector()
        self.parts = {}
        self.stop = False
        host, port = http.rsplit(":", 1)
        for i, path in enumerate(paths):
            s = socket.create_connection((host, int(port)))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n".encode())
            s.setblocking(False)
            self.parts[i] = 0
            self.sel.register(s, selectors.EVENT_READ, [i, b""])
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        buf = bytearray(1 << 20)
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                i, carry = key.data
                try:
                    n = key.fileobj.recv_into(buf)
                except BlockingIOError:
                    continue
                if n == 0:
                    self.sel.unregister(key.fileobj)
                    continue
                chunk = carry + bytes(buf[:n])
                self.parts[i] += chunk.count(BOUNDARY)
                key.data[1] = chunk[-(len(BOUNDARY) - 1):]

    def snapshot(self):
        return dict(self.parts)

    def close(self):
        self.stop = True
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def steady_received(stderr):
    per = {}
    for line in stderr.splitlines():
        m = re.search(r"camera (\d+) \([^)]*\): ([0-9.]+) fps received, ([0-9.]+) fps decoded", line)
        if m:
            per.setdefault(int(m.group(1)), []).append((float(m.group(2)), float(m.group(3))))
    out = {}
    for cam, values in per.items():
        steady = values[1:-1] if len(values) >= 4 else values
        out[cam] = (statistics.median(v[0] for v in steady), statistics.median(v[1] for v in steady))
    return out


def run(kind, frame, seconds):
    viewer = bench.Proc(f"http-viewer-{kind}", [
        bench.BIN / "viewer", "--listen", "127.0.0.1:0", "--headless", "--max-clients", CAMERAS + 1,
        "--http", "127.0.0.1:0", "--http-max-clients", 64, "--stats-interval", 2])
    addr = bench.listening_addr(viewer)
    http = viewer.wait_for(r"http on http://(\S+)/").group(1)
    # The 17th camera (id 16) nobody watches; the generator numbers ids from 0.
    total = seconds + 6
    gen = bench.Proc(f"http-loadgen-{kind}", [bench.BIN / "loadgen", "send", "--server", addr,
                                             "--clients", CAMERAS + 1, "--fps", FPS,
                                             "--seconds", total, "--frame", frame])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = [c for c in cameras(http) if c["id"] is not None and c["width"]]
        if len(listed) == CAMERAS + 1:
            break
        time.sleep(0.2)
    else:
        gen.stop()
        viewer.stop()
        return {"error": f"only {len(listed)} cameras decoded a frame: {viewer.stderr()[-800:]}"}
    by_id = {c["id"]: c for c in listed}
    paths = [by_id[i]["stream"] for i in range(CAMERAS) for _ in range(WATCHERS_PER_CAMERA)]
    watchers = Watchers(http, paths)
    time.sleep(2)  # every watcher has its first part
    m0, p0, cpu0, t0 = metrics(http), watchers.snapshot(), bench.proc_cpu_s(viewer.pid), time.monotonic()
    time.sleep(seconds)
    m1, p1, cpu1, t1 = metrics(http), watchers.snapshot(), bench.proc_cpu_s(viewer.pid), time.monotonic()
    watchers.close()
    gen.wait(total + 30)
    viewer.stop(bench.signal.SIGINT)
    wall = t1 - t0
    rates = [(p1[i] - p0[i]) / wall for i in p1]
    fps = steady_received(viewer.stderr())

    def delta(name, cam):
        return m1.get((name, cam), 0) - m0.get((name, cam), 0)

    encodes = sum(delta("camstream_viewer_jpeg_encodes_total", c) for c in range(CAMERAS))
    passed = sum(delta("camstream_viewer_jpeg_passthrough_total", c) for c in range(CAMERAS))
    decoded = sum(delta("camstream_viewer_frames_decoded_total", c) for c in range(CAMERAS))
    decoded_all = sum(delta("camstream_viewer_frames_decoded_total", c) for c in range(CAMERAS + 1))
    return {
        "received_min": min((fps.get(c, (0, 0))[0] for c in range(CAMERAS + 1)), default=0),
        "decoded_min": min((fps.get(c, (0, 0))[1] for c in range(CAMERAS)), default=0),
        "watch_min": min(rates),
        "watch_med": statistics.median(rates),
        "cpu_cores": (cpu1 - cpu0) / wall,
        # Whatever others leave us: the viewer's CPU per frame decoded (all
        # cameras), and the cores the full load would take at that rate.
        "cpu_ms_per_frame": (cpu1 - cpu0) / max(1, decoded_all) * 1e3,
        "cores_needed": (cpu1 - cpu0) / max(1, decoded_all) * (CAMERAS + 1) * FPS,
        "encodes": encodes,
        "passed": passed,
        "decoded": decoded,
        "unwatched_encodes": delta("camstream_viewer_jpeg_encodes_total", CAMERAS),
        "unwatched_decoded": delta("camstream_viewer_frames_decoded_total", CAMERAS),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--kinds", default="gzip-bmp,jpeg")
    args = ap.parse_args()
    py = bench.venv_python()
    prepared = bench.prepare(py)["640x480"]
    frames = {"gzip-bmp": prepared["gz"], "jpeg": jpeg_frame(py, prepared["bmp"])}
    print(f"{CAMERAS} cameras x 640x480 x {FPS} fps, {WATCHERS_PER_CAMERA} watchers each, "
          f"plus one unwatched camera; {args.seconds:.0f} s measured; {bench.machine_desc()}; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print("| body | received fps/camera (min) | decoded fps/camera (min) | watcher parts/s (min / median) "
          "| viewer CPU (cores) | viewer CPU ms per decoded frame | cores the full load needs at that rate "
          "| JPEG encodes / decoded (watched) | passed through | unwatched: encodes / decoded |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        r = run(kind, frames[kind], args.seconds)
        if "error" in r:
            print(f"| {kind} | failed: {r['error'][:300]} |")
            continue
        goal = "met" if r["received_min"] >= 29 and r["watch_min"] >= 25 else "missed"
        print(f"| {kind} | {r['received_min']:.1f} | {r['decoded_min']:.1f} | {r['watch_min']:.1f} / {r['watch_med']:.1f} "
              f"| {r['cpu_cores']:.2f} | {r['cpu_ms_per_frame']:.2f} | {r['cores_needed']:.2f} | {r['encodes']:.0f} / {r['decoded']:.0f} | {r['passed']:.0f} "
              f"| {r['unwatched_encodes']:.0f} / {r['unwatched_decoded']:.0f} | goal (>= 29 received, >= 25 watched): {goal}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
