"""camstream benchmark harness: our agent and viewer against the original
Python/OpenCV design, side by side, on the same frames, in one run.

Run it through `bench/run` (which builds the release binaries and picks the
venv); see bench/README.md. The machine is shared and noisy, so every section
runs several rounds, alternates the contenders' order from round to round,
reports medians, and computes every ratio within a round before taking the
median of the ratios.

Sections:
  agent    Python reference pipeline vs `agent --source file:... --fps 0`,
           both into a discard sink (`loadgen sink`): frames/s, CPU s/frame,
           peak RSS, at 640x480 and 1280x720.
  viewer   `loadgen send` replays a pre-compressed frame from N cameras at
           30 fps (paced) into the Python server and into `viewer --headless`:
           delivered fps per camera, CPU, peak RSS; plus an unpaced run that
           measures how many frames/s each can decode at most.
  unpaced  only that unpaced run of the viewer section (16 cameras): the
           decode-path ratio and the CPU per decoded frame, in 1/4 the time.
  stages   per-stage timings: proto (`stagebench`) vs OpenCV/zlib (stages.py).
  formats  each raw capture format to BGR: proto::convert vs cv2.cvtColor on
           one thread (goal <= 1.2x), at 640x480 and 1280x720.
  latency  agent --fps 30 -> viewer --headless on loopback; the p50/p99 each
           prints in its stats line.
  jpeg     JPEG bodies and MJPEG (issues 12 and 13): bytes per frame and agent
           CPU per frame of --encoding jpeg q85 and MJPEG passthrough against
           gzip-bmp, agent fps with jpeg at 720p, agent fps from an MJPEG 720p
           source at level 9 against the original design fed the same JPEGs,
           JPEG decode/encode against cv2.imdecode/imencode, and the viewer's
           decode of a JPEG body against a gzip-BMP one.
  tls      TLS 1.3 against plaintext, our binaries only, alternated each round:
           the agent's CPU per 640x480 frame (into a headless viewer, both
           ways), and the viewer's CPU per frame and slowest camera with 16
           cameras x 640x480 x 30 fps (loadgen --tls-*). Certificates from
           camstream-cert.

Nothing here asserts: it prints figures and marks each goal met or missed.
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
LOGS = WORK / "logs"
BIN = ROOT / "target" / "release"
HERE = Path(__file__).resolve().parent
FRAMES = {
    "640x480": ROOT / "testdata" / "frames" / "coffee_640x480_noise.yuyv",
    "1280x720": ROOT / "testdata" / "frames" / "astronaut_1280x720_noise.yuyv",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def proc_cpu_s(pid):
    """User+system CPU seconds of a live process, all its threads (/proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_s(pid):
    """{thread name: [user, system] CPU seconds} of a live process, threads of
    one name summed (/proc/PID/task/TID/stat): the viewer's poll thread is
    `viewer`, its decode workers `decode-N`."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        name = "decode" if name.startswith("decode-") else name
        cpu = out.setdefault(name, [0.0, 0.0])
        cpu[0] += int(fields[11]) / CLK_TCK
        cpu[1] += int(fields[12]) / CLK_TCK
    return out


def proc_hwm_kib(pid):
    """Peak RSS (VmHWM) of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def kib_to_mib(value):
    """KiB to MiB; None (not measured) stays None."""
    return value / 1024 if value else None


def machine_jiffies():
    """(busy, total) jiffies of the whole machine, all processes of all users."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(v) for v in parts[:8]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, vals[1]


class Machine:
    """Busy cores over an interval, from /proc/stat: ours plus everyone else's.
    Also the niced share (user time at nice > 0), which mostly yields to us."""

    def __init__(self):
        self.b0, self.n0 = machine_jiffies()
        self.w0 = time.monotonic()
        self.niced = 0.0

    def busy_cores(self):
        b1, n1 = machine_jiffies()
        wall = time.monotonic() - self.w0
        if wall <= 0:
            return 0.0
        self.niced = (n1 - self.n0) / CLK_TCK / wall
        return (b1 - self.b0) / CLK_TCK / wall


class Proc:
    """A child with its stdout/stderr in log files, reaped with wait4 so its
    CPU (all threads) is exact.

    Its peak RSS is VmHWM, read at every poll while it runs (every 10 ms in
    wait), not ru_maxrss: Linux folds the parent's memory into a child's
    ru_maxrss when the child execs (exec_mmap takes the high-water mark of
    the mm it leaves, which after vfork or fork is this harness's), so
    ru_maxrss can never be below this harness's own RSS. That floor is 14-18
    MiB and grows over a run, and it was what the agent's "peak RSS" showed
    (16.3 / 15.5 / 17.5 MiB) while the agent itself peaked at 10.2-11.0 MiB.
    VmHWM belongs to the new program's own mm. Our binaries allocate all
    their buffers before the first frame, so a sample every 10 ms misses
    nothing of theirs."""

    def __init__(self, name, cmd, env=None):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.out_path = LOGS / f"{name}.out"
        self.err_path = LOGS / f"{name}.err"
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.start = time.monotonic()
        self.p = subprocess.Popen(self.cmd, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                  env=env)
        self.pid = self.p.pid
        self.result = None
        self.hwm_kib = None

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def wait_for(self, pattern, timeout=30, stream="both"):
        """Waits for a regex in the output; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = ""
            if stream in ("both", "out"):
                text += self.stdout()
            if stream in ("both", "err"):
                text += self.stderr()
            m = rx.search(text)
            if m:
                return m
            if self.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: no {pattern!r} within {timeout}s; exit={self.result and self.result['code']}\n"
                           f"command: {shlex.join(self.cmd)}\nstderr tail:\n{self.stderr()[-2000:]}")

    def poll(self):
        if self.result is None:
            # Before the wait4: a process that has exited has no VmHWM left.
            hwm = proc_hwm_kib(self.pid)
            if hwm is not None:
                self.hwm_kib = max(hwm, self.hwm_kib or 0)
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._reaped(status, ru)
        return self.result

    def _reaped(self, status, ru):
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.result = {
            "code": self.p.returncode,
            "wall_s": time.monotonic() - self.start,
            "cpu_s": ru.ru_utime + ru.ru_stime,
            # Kept for the record only; it includes this harness's own RSS (see the class doc).
            "maxrss_kib": ru.ru_maxrss,
            "peak_rss_kib": self.hwm_kib,
        }
        self.out.close()
        self.err.close()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                log(f"{self.name}: still running after {timeout}s, killing it")
                self.p.kill()
                pid, status, ru = os.wait4(self.pid, 0)
                self._reaped(status, ru)
                self.result["timed_out"] = True
                break
            time.sleep(0.01)
        return self.result

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        return self.wait(timeout)


def listening_addr(proc):
    return proc.wait_for(r"listening on (\S+)").group(1)


# ---------------------------------------------------------------- figures

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1, unit=""):
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}{unit}"


def kib(v):
    return v / 1024 if v is not None else None


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def head_to_head(cfg, label, detail, tag, run):
    """The original ("py") and ours, each run once per round for cfg.rounds
    rounds, who goes first swapped every round (so neither always runs on the
    machine the other just warmed). `run(who, tag)` returns one contender's
    result; its logs are named `{tag}-r{round}-{who}`. Yields each round's
    number and its {who: result}; the caller adds that round's ratios."""
    for r in range(cfg.rounds):
        res = {}
        for who in (["py", "ours"] if r % 2 == 0 else ["ours", "py"]):
            log(f"{label} round {r + 1}/{cfg.rounds}: {who} ({detail})")
            res[who] = run(who, f"{tag}-r{r}-{who}")
        yield r, res


MS_RX = r"([0-9.]+)\s*(us|µs|ms|s)\b"


def to_ms(value, unit):
    v = float(value)
    return {"us": v / 1000, "µs": v / 1000, "ms": v, "s": v * 1000}[unit]


def parse_percentiles(line):
    """Every `<name> p50 X ms` / `p99 X ms` pair in a stats line, as ms.
    Also accepts `p50/p99 X/Y ms`. Returns {"p50": [...], "p99": [...]}."""
    found = {"p50": [], "p99": []}
    # The agent's line also has "encode p50 ..."; the latency share comes after "latency".
    for key in ("latency", "received→displayed", "received->displayed", "delay"):
        if key in line:
            line = line[line.rindex(key):]
            break
    for m in re.finditer(r"p50\s*/\s*p99[ =:]*([0-9.]+)\s*/\s*([0-9.]+)\s*(us|µs|ms|s)\b", line):
        found["p50"].append(to_ms(m.group(1), m.group(3)))
        found["p99"].append(to_ms(m.group(2), m.group(3)))
    for p in ("p50", "p99"):
        for m in re.finditer(p + r"[ =:]*" + MS_RX, line):
            found[p].append(to_ms(m.group(1), m.group(2)))
    return found


# ---------------------------------------------------------------- setup

def venv_python():
    py = Path(os.environ.get("BENCH_PYTHON", ROOT / ".venv" / "bin" / "python"))
    if not py.exists():
        raise SystemExit(f"no Python venv at {py}: run tests/python/setup.sh (needs python3-venv)")
    return py


def prepare(py):
    """Makes, once, the BMP and the level-9 gzip body of each noisy frame, with
    the original design's own code (cvtColor, imencode, gzip.compress)."""
    WORK.mkdir(parents=True, exist_ok=True)
    made = {}
    for size, yuyv in FRAMES.items():
        if not yuyv.exists():
            raise SystemExit(f"missing {yuyv}: copy it from ../shared/frames (see testdata/frames/README.md)")
        bmp, gz = WORK / f"{yuyv.stem}.bmp", WORK / f"{yuyv.stem}.bmp.gz"
        if not (bmp.exists() and gz.exists()) or bmp.stat().st_mtime < yuyv.stat().st_mtime:
            w, h = size.split("x")
            subprocess.run([str(py), "-c", (
                "import cv2, gzip, numpy as np, sys\n"
                f"y = np.fromfile({str(yuyv)!r}, np.uint8)[:{w}*{h}*2].reshape({h}, {w}, 2)\n"
                "ok, b = cv2.imencode('.bmp', cv2.cvtColor(y, cv2.COLOR_YUV2BGR_YUYV))\n"
                f"open({str(bmp)!r}, 'wb').write(b.tobytes())\n"
                f"open({str(gz)!r}, 'wb').write(gzip.compress(b.tobytes(), compresslevel=9))\n")],
                check=True)
        made[size] = {"yuyv": yuyv, "bmp": bmp, "gz": gz}
    return made


# ---------------------------------------------------------------- agent

def run_sink(tag):
    sink = Proc(f"sink-{tag}", [BIN / "loadgen", "sink", "--listen", "127.0.0.1:0", "--conns", "1"])
    return sink, listening_addr(sink)


def finish_sink(sink):
    res = sink.wait(30)
    try:
        info = json.loads(sink.stdout().strip().splitlines()[-1])
    except (ValueError, IndexError):
        info = {}
    return res, info


def agent_python(py, size, frames, tag, jpeg=None):
    sink, addr = run_sink(tag)
    machine = Machine()
    source = ["--jpeg", jpeg] if jpeg else ["--input", FRAMES[size]]
    ref = Proc(f"pyagent-{tag}", [py, HERE / "ref_agent.py", *source, "--size", size,
                                  "--frames", frames, "--server", addr])
    res = ref.wait(600)
    busy = machine.busy_cores()
    sres, sinfo = finish_sink(sink)
    if res["code"] != 0:
        raise RuntimeError(f"python reference failed: {ref.stderr()[-1500:]}")
    info = json.loads(ref.stdout().strip().splitlines()[-1])
    wall = res["wall_s"]
    return {
        "fps": info["frames"] / info["wall_s"],
        "cpu_per_frame_ms": info["cpu_s"] / info["frames"] * 1e3,
        "rss_mib": kib_to_mib(res["peak_rss_kib"]),
        "frames_at_sink": sinfo.get("frames"),
        "body_bytes": info["body_bytes_avg"],
        "others_cores": busy - (res["cpu_s"] + sres["cpu_s"]) / wall,
        "others_niced": machine.niced,
        "sink_cpu_s": sres["cpu_s"],
    }


def agent_ours(size, frames, tag, workers=None, extra=(), source=None):
    sink, addr = run_sink(tag)
    cmd = [BIN / "agent", "--source", f"file:{source or FRAMES[size]}", "--size", size, "--fps", "0",
           "--frames", frames, "--level", "9", "--server", addr, "--stats-interval", "1", *extra]
    if workers:
        cmd += ["--workers", workers]
    machine = Machine()
    agent = Proc(f"agent-{tag}", cmd)
    res = agent.wait(600)
    busy = machine.busy_cores()
    sres, sinfo = finish_sink(sink)
    if res["code"] != 0:
        raise RuntimeError(f"agent exited {res['code']}: {shlex.join(agent.cmd)}\n{agent.stderr()[-1500:]}")
    got = sinfo.get("frames")
    if got != frames:
        log(f"warning: agent {tag} asked for {frames} frames, the sink counted {got}")
    wall = res["wall_s"]
    return {
        # Whole process, start-up included: that only counts against us.
        "fps": (got or frames) / wall,
        "cpu_per_frame_ms": res["cpu_s"] / (got or frames) * 1e3,
        "rss_mib": kib_to_mib(res["peak_rss_kib"]),
        "frames_at_sink": got,
        "body_bytes": (sinfo.get("bytes", 0) / got - 5) if got else None,
        "others_cores": busy - (res["cpu_s"] + sres["cpu_s"]) / wall,
        "others_niced": machine.niced,
        "stats_lines": [l for l in agent.stderr().splitlines() if "fps" in l][-3:],
        # Frames captured and encoded but dropped as stale: CPU spent on frames never sent.
        "dropped": agent_dropped(agent.stderr()),
    }


def agent_dropped(stderr):
    m = re.findall(r"stopped: (\d+) frames captured, (\d+) sent, (\d+) dropped", stderr)
    return int(m[-1][2]) if m else None


def bench_agent(cfg, py, rows, notes):
    out = {}
    for size in ("640x480", "1280x720"):
        frames = cfg.agent_frames[size]

        def run(who, tag):
            return agent_python(py, size, frames, tag) if who == "py" else agent_ours(size, frames, tag)

        rounds = []
        for r, res in head_to_head(cfg, f"agent {size}", f"{frames} frames", size, run):
            if cfg.workers1 and size == "640x480":
                log(f"agent {size} round {r + 1}/{cfg.rounds}: ours --workers 1")
                res["ours1"] = agent_ours(size, frames, f"{size}-r{r}-w1", workers=1)
            res["fps_ratio"] = ratio(res["ours"]["fps"], res["py"]["fps"])
            res["cpu_ratio"] = ratio(res["ours"]["cpu_per_frame_ms"], res["py"]["cpu_per_frame_ms"])
            rounds.append(res)
        out[size] = rounds
    return out


# ---------------------------------------------------------------- viewer

def camera_fps_from_viewer(stderr, seconds):
    """Delivered (decoded/displayed) fps per camera from the viewer's stats
    lines. Skips the first and last interval (ramp-up and tear-down) when
    there are enough. Returns {camera: median fps}."""
    per_cam = {}
    for line in stderr.splitlines():
        # e.g. "camera 3 (127.0.0.1:4711): 30.0 fps received, 29.9 fps decoded, 0 skipped ..."
        m = re.search(r"(camera \d+[^:]*):.*?([0-9.]+) fps decoded", line)
        if m:
            per_cam.setdefault(m.group(1), []).append(float(m.group(2)))
    result = {}
    for cam, values in per_cam.items():
        steady = values[1:-1] if len(values) >= 4 else values
        result[cam] = statistics.median(steady)
    return result


def received_fps_from_viewer(stderr):
    """Received fps per camera from the viewer's stats lines (median of the
    steady intervals, as camera_fps_from_viewer)."""
    per_cam = {}
    for line in stderr.splitlines():
        m = re.search(r"(camera \d+ \([^)]*\)): ([0-9.]+) fps received", line)
        if m:
            per_cam.setdefault(m.group(1), []).append(float(m.group(2)))
    return {cam: statistics.median(v[1:-1] if len(v) >= 4 else v) for cam, v in per_cam.items()}


def server_run(kind, py, n, fps, seconds, frame, tag, cfg, tls=None):
    if kind == "py":
        server = Proc(f"pyserver-{tag}", [py, HERE / "ref_server.py", "--listen", "127.0.0.1:0"])
    else:
        server = Proc(f"viewer-{tag}", [BIN / "viewer", "--listen", "127.0.0.1:0", "--headless",
                                        "--max-clients", max(16, n), "--stats-interval", cfg.stats_interval]
                      + (tls["viewer"] if tls else []))
    addr = listening_addr(server)
    gen = Proc(f"loadgen-{tag}", [BIN / "loadgen", "send", "--server", addr, "--clients", n, "--fps", fps,
                                  "--seconds", seconds, "--frame", frame] + (tls["client"] if tls else []))
    # Wait until every client is connected (the generator connects all, then starts).
    time.sleep(0.2)
    cpu0 = proc_cpu_s(server.pid)
    threads0 = thread_cpu_s(server.pid) if kind == "ours" else {}
    machine = Machine()
    t0 = time.monotonic()
    gres = gen.wait(seconds + 60)
    wall = time.monotonic() - t0
    cpu1 = proc_cpu_s(server.pid)
    threads1 = thread_cpu_s(server.pid) if kind == "ours" else {}
    busy = machine.busy_cores()
    hwm = proc_hwm_kib(server.pid)
    # Let the server drain what the kernel still holds, as a viewer would.
    time.sleep(0.3)
    sres = server.stop(signal.SIGINT if kind == "ours" else signal.SIGTERM)
    if gres.get("code") != 0:
        raise RuntimeError(f"loadgen failed: {gen.stderr()[-1500:]}")
    ginfo = json.loads(gen.stdout().strip().splitlines()[-1])
    gsec = ginfo["seconds"]
    sent_fps = [c["sent"] / gsec for c in ginfo["per_client"]]
    errors = [c["error"] for c in ginfo["per_client"] if c["error"]]
    if kind == "py":
        try:
            decoded = json.loads(server.stdout().strip().splitlines()[-1])["decoded"]
        except (ValueError, IndexError, KeyError):
            decoded = {}
        cams = {k: v / gsec for k, v in decoded.items()}
        source = "decoded count"
    else:
        cams = camera_fps_from_viewer(server.stderr(), gsec)
        source = "viewer stats"
        if not cams:
            cams = {str(c["id"]): c["sent"] / gsec for c in ginfo["per_client"]}
            source = "loadgen sent (viewer stats not parsed)"
    delivered = list(cams.values()) + [0.0] * max(0, n - len(cams))
    server_cpu = (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None else None
    # CPU per delivered frame does not depend on how much CPU others left us.
    total = sum(delivered)
    cpu_per_frame = (cpu1 - cpu0) / (total * gsec) * 1e3 if server_cpu is not None and total > 0 else None
    # Where the viewer's CPU goes: the poll thread per frame received (read
    # path; it reads every frame), the decode workers per frame decoded.
    split = None
    if kind == "ours" and threads0 and threads1:
        received = sum(received_fps_from_viewer(server.stderr()).values()) * gsec
        def delta(name, i):
            return threads1.get(name, [0, 0])[i] - threads0.get(name, [0, 0])[i]
        if received > 0 and total > 0:
            split = {
                "received_fps": received / gsec,
                "poll_user_us_per_received": delta("viewer", 0) / received * 1e6,
                "poll_sys_us_per_received": delta("viewer", 1) / received * 1e6,
                "decode_us_per_decoded": (delta("decode", 0) + delta("decode", 1)) / (total * gsec) * 1e6,
            }
    return {
        "per_cam_min": min(delivered) if delivered else None,
        "per_cam_med": statistics.median(delivered) if delivered else None,
        "total_fps": sum(delivered),
        "sent_min": min(sent_fps),
        "source": source,
        "server_cpu_cores": server_cpu,
        "server_cpu_ms_per_frame": cpu_per_frame,
        "split": split,
        "server_rss_mib": kib_to_mib(hwm or sres["peak_rss_kib"]),
        "gen_cpu_cores": gres["cpu_s"] / gres["wall_s"],
        "machine_busy_cores": busy,
        "others_cores": busy - (server_cpu or 0) - gres["cpu_s"] / gres["wall_s"],
        "others_niced": machine.niced,
        "errors": errors[:3],
        "exit": sres["code"],
        "stats_tail": [l for l in server.stderr().splitlines() if "p50" in l or "p99" in l][-3:],
    }


def bench_viewer(cfg, py, prepared, rows, notes, paced=True):
    frame = prepared["640x480"]["gz"]
    out = {}
    scenarios = ([(n, cfg.fps) for n in cfg.clients] if paced else []) + [(n, 0) for n in cfg.saturate]
    for n, fps in scenarios:
        def run(who, tag):
            return server_run(who, py, n, fps, cfg.viewer_seconds, frame, tag, cfg)

        rounds = []
        for _, res in head_to_head(cfg, f"viewer N={n} fps={fps or 'max'}", f"{cfg.viewer_seconds} s",
                                   f"n{n}-f{fps}", run):
            res["total_ratio"] = ratio(res["ours"]["total_fps"], res["py"]["total_fps"])
            # Frames per CPU-second: the decode path's speed whatever the machine's load.
            res["per_cpu_ratio"] = ratio(res["py"]["server_cpu_ms_per_frame"], res["ours"]["server_cpu_ms_per_frame"])
            rounds.append(res)
        out[(n, fps)] = rounds
    return out


# ---------------------------------------------------------------- tls

def make_pki():
    """CA, viewer (127.0.0.1) and one client certificate naming cameras
    0-15 (loadgen's ids; the agent sends as 0), made by camstream-cert."""
    d = WORK / "pki"
    shutil.rmtree(d, ignore_errors=True)
    cert = BIN / "camstream-cert"
    subprocess.run([cert, "ca", "--dir", d], check=True, capture_output=True)
    subprocess.run([cert, "viewer", "--dir", d, "--ip", "127.0.0.1"], check=True, capture_output=True)
    ids = [a for i in range(16) for a in ("--id", str(i))]
    subprocess.run([cert, "camera", "--dir", d] + ids, check=True, capture_output=True)
    return {"viewer": ["--tls-cert", d / "viewer.pem", "--tls-key", d / "viewer.key", "--tls-client-ca", d / "ca.pem"],
            "client": ["--tls-ca", d / "ca.pem", "--tls-cert", d / "camera-0.pem", "--tls-key", d / "camera-0.key"]}


def agent_into_viewer(size, frames, tag, tls):
    """Our agent (file source, unpaced) into a headless viewer; the agent's
    CPU per frame. Plaintext and TLS get the same sink: our viewer."""
    viewer = Proc(f"tlsviewer-{tag}", [BIN / "viewer", "--listen", "127.0.0.1:0", "--headless",
                                       "--stats-interval", "0"] + (tls["viewer"] if tls else []))
    addr = listening_addr(viewer)
    agent = Proc(f"tlsagent-{tag}", [BIN / "agent", "--source", f"file:{FRAMES[size]}", "--size", size,
                                     "--fps", "0", "--frames", frames, "--level", "9", "--server", addr,
                                     "--stats-interval", "0"] + (tls["client"] if tls else []))
    res = agent.wait(600)
    viewer.stop(signal.SIGINT)
    if res["code"] != 0:
        raise RuntimeError(f"agent exited {res['code']}: {agent.stderr()[-1500:]}")
    return {"cpu_per_frame_ms": res["cpu_s"] / frames * 1e3, "fps": frames / res["wall_s"]}


def bench_tls(cfg, prepared):
    """TLS against plaintext, same binaries, alternated each round: the
    agent's CPU per frame at 640x480 gzip-9 BMP, and the viewer's CPU per
    frame and slowest camera with 16 cameras x 640x480 x 30 fps."""
    pki = make_pki()
    # Three times the agent section's frames (about 5 s a run): a 1.6 s run
    # put single rounds anywhere from 0.93x to 1.13x on an idle machine.
    frames = cfg.agent_frames["640x480"] * 3
    out = {"agent": [], "viewer": []}
    for r in range(cfg.rounds):
        res = {}
        for who in (["plain", "tls"] if r % 2 == 0 else ["tls", "plain"]):
            log(f"tls agent round {r + 1}/{cfg.rounds}: {who}")
            res[who] = agent_into_viewer("640x480", frames, f"r{r}-{who}", pki if who == "tls" else None)
        res["cpu_ratio"] = ratio(res["tls"]["cpu_per_frame_ms"], res["plain"]["cpu_per_frame_ms"])
        out["agent"].append(res)
    n = 2 if cfg.quick else 16
    for r in range(cfg.rounds):
        res = {}
        for who in (["plain", "tls"] if r % 2 == 0 else ["tls", "plain"]):
            log(f"tls viewer round {r + 1}/{cfg.rounds}: {who} ({n} cameras)")
            res[who] = server_run("ours", None, n, cfg.fps, cfg.viewer_seconds, prepared["640x480"]["gz"],
                                  f"tls-r{r}-{who}", cfg, tls=pki if who == "tls" else None)
        res["cpu_ratio"] = ratio(res["tls"]["server_cpu_ms_per_frame"], res["plain"]["server_cpu_ms_per_frame"])
        out["viewer"].append(res)
    return out


def tls_report(tls):
    a, v = tls["agent"], tls["viewer"]

    def m(rounds, who, key):
        return med([x[who][key] for x in rounds if x[who].get(key) is not None])
    L = ["", "### TLS against plaintext (issue 15)", "",
         "| what | plaintext | TLS 1.3 | ratio (median of rounds) | goal |", "|---|---|---|---|---|"]
    ar = med([x["cpu_ratio"] for x in a if x["cpu_ratio"]])
    L.append(f"| agent CPU ms per frame, 640x480 gzip-9 BMP | {fmt(m(a, 'plain', 'cpu_per_frame_ms'), 2)} | "
             f"{fmt(m(a, 'tls', 'cpu_per_frame_ms'), 2)} | {fmt(ar, 3)}x | ≤ 1.05x {goal(ar <= 1.05 if ar else None)} |")
    vr = med([x["cpu_ratio"] for x in v if x["cpu_ratio"]])
    L.append(f"| viewer CPU ms per frame, 16 cameras × 640x480 × 30 fps | {fmt(m(v, 'plain', 'server_cpu_ms_per_frame'), 2)} | "
             f"{fmt(m(v, 'tls', 'server_cpu_ms_per_frame'), 2)} | {fmt(vr, 3)}x | ≤ 1.10x {goal(vr <= 1.10 if vr else None)} |")
    slow = m(v, "tls", "per_cam_min")
    L.append(f"| viewer slowest camera, fps | {fmt(m(v, 'plain', 'per_cam_min'), 1)} | {fmt(slow, 1)} | | "
             f"≥ 29 with 16 TLS cameras {goal(slow >= 29 if slow is not None else None)} |")
    L.append(f"| others' load, cores (viewer runs) | {fmt(m(v, 'plain', 'others_cores'), 2)} | "
             f"{fmt(m(v, 'tls', 'others_cores'), 2)} | | |")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- stages

STAGES = [
    # name, proto stage, python stage, input kind, what
    ("YUYV→BGR", "yuyv2bgr", "yuyv2bgr", "yuyv", "ours vs cv2.cvtColor"),
    ("BMP decode", "bmpdecode", "bmpdecode", "bmp", "ours (to 0RGB) vs cv2.imdecode (to BGR)"),
    ("gunzip", "gunzip", "gunzip", "gz", "libdeflate vs Python zlib.decompress"),
    ("gzip level 9", "gzip", "gzip", "bmp", "libdeflate vs Python gzip.compress (zlib)"),
    ("decode path (gunzip+BMP)", "decode", "decode", "gz", "viewer's per-frame work vs the original server's"),
    ("encode path (1 thread)", "encode", "encode", "yuyv", "agent's per-frame work vs the original agent's"),
]


def stage_once(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, cmd))} failed: {p.stderr[-1000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_stages(cfg, py, prepared):
    out = {}
    for size in cfg.stage_sizes:
        for name, ours, theirs, kind, _ in STAGES:
            inp = prepared[size][kind]
            iters = cfg.stage_iters(theirs, size)
            rounds = []
            for r in range(cfg.rounds):
                res = {}
                contenders = [
                    ("ours", [BIN / "stagebench", "--stage", ours, "--input", inp, "--size", size, "--iters", iters]),
                    ("cv2", [py, HERE / "stages.py", "--stage", theirs, "--input", inp, "--size", size,
                             "--iters", iters]),
                ]
                if theirs in ("yuyv2bgr",):
                    contenders.append(("cv2_1t", [py, HERE / "stages.py", "--stage", theirs, "--input", inp,
                                                  "--size", size, "--iters", iters, "--threads", "1"]))
                if r % 2:
                    contenders.reverse()
                for who, cmd in contenders:
                    got = stage_once(cmd)
                    # CPU time of the timing thread: other users of the machine do not inflate it.
                    res[who] = got["cpu_ms"]
                    res[who + "_wall"] = got["median_ms"]
                res["ratio"] = ratio(res["ours"], res["cv2"])
                res["ratio_wall"] = ratio(res["ours_wall"], res["cv2_wall"])
                if "cv2_1t" in res:
                    res["ratio_1t"] = ratio(res["ours"], res["cv2_1t"])
                rounds.append(res)
            log(f"stage {name} {size}: ours {med([x['ours'] for x in rounds]):.3f} ms, "
                f"original {med([x['cv2'] for x in rounds]):.3f} ms")
            out[(name, size)] = rounds
    return out


# ---------------------------------------------------------------- jpeg

JPEG_QUALITY = 85


def prepare_jpeg(py):
    """Per noisy frame, with OpenCV: its BGR (cvtColor of the YUYV), and a
    camera-like JPEG of it (cv2.imencode q85 4:2:2, what a UVC camera's
    MJPEG looks like), made once into target/bench/."""
    made = {}
    for size, yuyv in FRAMES.items():
        bgr, jpg = WORK / f"{yuyv.stem}.bgr", WORK / f"{yuyv.stem}.q{JPEG_QUALITY}.jpg"
        if not (bgr.exists() and jpg.exists()) or jpg.stat().st_mtime < yuyv.stat().st_mtime:
            w, h = size.split("x")
            subprocess.run([str(py), "-c", (
                "import cv2, numpy as np\n"
                f"y = np.fromfile({str(yuyv)!r}, np.uint8)[:{w}*{h}*2].reshape({h}, {w}, 2)\n"
                "bgr = cv2.cvtColor(y, cv2.COLOR_YUV2BGR_YUYV)\n"
                f"bgr.tofile({str(bgr)!r})\n"
                f"ok, j = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, {JPEG_QUALITY}, "
                "cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422])\n"
                f"open({str(jpg)!r}, 'wb').write(j.tobytes())\n")], check=True)
        made[size] = {"bgr": bgr, "jpg": jpg}
    return made


# (name, stagebench stage, stages.py stage, input kind): ours against OpenCV.
JPEG_STAGES = [
    ("JPEG decode to BGR", "jpegdecode", "jpegdecode", "jpg"),
    ("JPEG encode q85", "jpegencode", "jpegencode", "bgr"),
]


def bench_jpeg(cfg, py, prepared):
    jp = prepare_jpeg(py)
    out = {"stages": {}, "agent": {}, "viewer_decode": []}
    for size in cfg.stage_sizes:
        for name, ours, theirs, kind in JPEG_STAGES:
            inp = jp[size][kind]
            iters = cfg.stage_iters(theirs, size)
            rounds = []
            for r in range(cfg.rounds):
                contenders = [
                    ("ours", [BIN / "stagebench", "--stage", ours, "--input", inp, "--size", size,
                              "--iters", iters]),
                    ("cv2", [py, HERE / "stages.py", "--stage", theirs, "--input", inp, "--size", size,
                             "--iters", iters]),
                ]
                if r % 2:
                    contenders.reverse()
                res = {who: stage_once(cmd)["cpu_ms"] for who, cmd in contenders}
                res["ratio"] = ratio(res["ours"], res["cv2"])
                rounds.append(res)
            log(f"jpeg stage {name} {size}: ours {med([x['ours'] for x in rounds]):.3f} ms, "
                f"cv2 {med([x['cv2'] for x in rounds]):.3f} ms")
            out["stages"][(name, size)] = rounds
    # The viewer's per-frame decode path (proto::body) on a JPEG body and on
    # a gzip-BMP body of the same 640x480 frame, one thread.
    iters = cfg.stage_iters("decode", "640x480")
    for r in range(cfg.rounds):
        res = {}
        for who, inp in (("jpeg", jp["640x480"]["jpg"]), ("gzip_bmp", prepared["640x480"]["gz"])):
            res[who] = stage_once([BIN / "stagebench", "--stage", "bodydecode", "--input", inp,
                                   "--size", "640x480", "--iters", iters])["cpu_ms"]
        res["ratio"] = ratio(res["jpeg"], res["gzip_bmp"])
        out["viewer_decode"].append(res)
    # The agent: each encoding on the same frames, into a discard sink.
    jpeg_args = ("--encoding", "jpeg", "--quality", str(JPEG_QUALITY))
    mjpg = ("--format", "MJPG")
    for size in ("640x480", "1280x720"):
        frames = cfg.agent_frames[size] * (3 if size == "1280x720" else 1)
        runs = {
            "gzip_bmp": lambda tag: agent_ours(size, frames, tag),
            "jpeg": lambda tag: agent_ours(size, frames, tag, extra=jpeg_args),
            "passthrough": lambda tag: agent_ours(size, frames, tag, extra=jpeg_args + mjpg,
                                                  source=jp[size]["jpg"]),
            "mjpeg_gzip_bmp": lambda tag: agent_ours(size, frames, tag, extra=mjpg, source=jp[size]["jpg"]),
            "py_mjpeg": lambda tag: agent_python(py, size, frames, tag, jpeg=jp[size]["jpg"]),
        }
        rounds = []
        for r in range(cfg.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            res = {}
            for who in order:
                log(f"jpeg agent {size} round {r + 1}/{cfg.rounds}: {who}")
                res[who] = runs[who](f"jpeg-{size}-r{r}-{who}")
            g = res["gzip_bmp"]
            res["bytes_ratio"] = ratio(res["jpeg"]["body_bytes"], g["body_bytes"])
            res["cpu_ratio"] = ratio(res["jpeg"]["cpu_per_frame_ms"], g["cpu_per_frame_ms"])
            res["passthrough_cpu_ratio"] = ratio(res["passthrough"]["cpu_per_frame_ms"], g["cpu_per_frame_ms"])
            res["mjpeg_fps_ratio"] = ratio(res["mjpeg_gzip_bmp"]["fps"], res["py_mjpeg"]["fps"])
            res["mjpeg_cpu_ratio"] = ratio(res["mjpeg_gzip_bmp"]["cpu_per_frame_ms"],
                                           res["py_mjpeg"]["cpu_per_frame_ms"])
            rounds.append(res)
        out["agent"][size] = rounds
    return out


def jpeg_report(cfg, jp):
    L = ["### JPEG bodies and MJPEG (issues 12 and 13)", "",
         f"Noisy frames; JPEG quality {JPEG_QUALITY}. The MJPEG source is the same frame as "
         "cv2.imencode q85 4:2:2 (a camera-like JPEG), looped by `--source file: --format MJPG`. "
         "Agents run `--fps 0` into a discard sink, whole process timed; medians of "
         f"{cfg.rounds} round(s), ratios within a round.", "",
         "| what | 640x480 | 1280x720 | goal |", "|---|---|---|---|"]

    def agent(size, key, field):
        return med([r[key][field] for r in jp["agent"].get(size, [])])

    def ratio_of(size, key):
        return med([r[key] for r in jp["agent"].get(size, [])])

    sizes = ("640x480", "1280x720")
    row = lambda what, vals, goal: L.append(f"| {what} | {vals[0]} | {vals[1]} | {goal} |")
    row("bytes per frame, gzip-bmp level 9", [fmt(agent(s, "gzip_bmp", "body_bytes"), 0) for s in sizes], "")
    row(f"bytes per frame, jpeg q{JPEG_QUALITY}", [fmt(agent(s, "jpeg", "body_bytes"), 0) for s in sizes], "")
    row("**bytes ratio jpeg / gzip-bmp**", [f"**{fmt(ratio_of(s, 'bytes_ratio'), 3)}x**" for s in sizes],
        "≤ 1/6 (0.167x)")
    row("agent CPU ms per frame: gzip-bmp / jpeg / MJPEG passthrough",
        [" / ".join(fmt(agent(s, k, "cpu_per_frame_ms"), 2) for k in ("gzip_bmp", "jpeg", "passthrough"))
         for s in sizes], "")
    row("**agent CPU ratio jpeg / gzip-bmp**", [f"**{fmt(ratio_of(s, 'cpu_ratio'), 3)}x**" for s in sizes],
        "≤ 0.25x (VGA)")
    row("**agent CPU ratio passthrough / gzip-bmp**",
        [f"**{fmt(ratio_of(s, 'passthrough_cpu_ratio'), 3)}x**" for s in sizes], "≤ 0.05x (VGA)")
    row("agent fps: gzip-bmp / jpeg / passthrough",
        [" / ".join(fmt(agent(s, k, "fps"), 1) for k in ("gzip_bmp", "jpeg", "passthrough")) for s in sizes],
        "jpeg ≥ 120 at 720p")
    row("agent fps from MJPEG at level 9: ours / original (imdecode, imencode .bmp, gzip 9)",
        [f"{fmt(agent(s, 'mjpeg_gzip_bmp', 'fps'), 1)} / {fmt(agent(s, 'py_mjpeg', 'fps'), 1)}" for s in sizes], "")
    row("**MJPEG source fps ratio ours / original**",
        [f"**{fmt(ratio_of(s, 'mjpeg_fps_ratio'), 2)}x**" for s in sizes], "≥ 3x (720p)")
    row("agent CPU ms per frame from MJPEG at level 9: ours / original",
        [f"{fmt(agent(s, 'mjpeg_gzip_bmp', 'cpu_per_frame_ms'), 2)} / {fmt(agent(s, 'py_mjpeg', 'cpu_per_frame_ms'), 2)}: "
         f"**{fmt(ratio_of(s, 'mjpeg_cpu_ratio'), 3)}x**" for s in sizes], "")

    stage_names = sorted({n for n, _ in jp["stages"]})
    for name in stage_names:
        vals = []
        for s in sizes:
            rounds = jp["stages"].get((name, s))
            if not rounds:
                vals.append("n/a")
                continue
            vals.append(f"{fmt(med([r['ours'] for r in rounds]), 3)} vs {fmt(med([r['cv2'] for r in rounds]), 3)} ms: "
                        f"**{fmt(med([r['ratio'] for r in rounds]), 2)}x**")
        goal = "≤ 1.5x cv2.imdecode" if "decode" in name else "report (cv2.imencode)"
        row(f"{name}, one thread CPU, ours vs OpenCV", vals, goal)
    vd = jp["viewer_decode"]
    if vd:
        L.append(f"| viewer decode path (proto::body), one thread: JPEG {fmt(med([r['jpeg'] for r in vd]), 3)} ms "
                 f"vs gzip-BMP {fmt(med([r['gzip_bmp'] for r in vd]), 3)} ms | "
                 f"**{fmt(med([r['ratio'] for r in vd]), 3)}x** | | report |")
    others = med([r[k]["others_cores"] for s in sizes for r in jp["agent"].get(s, []) for k in ("jpeg", "gzip_bmp")])
    L.append("")
    L.append(f"Others' load during the agent runs: {fmt(others, 2)} cores (frames/s fall with the cores "
             "others leave; CPU per frame and the bytes do not).")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- formats

# The raw capture formats OpenCV converts (BGR3 is a copy: no cvtColor).
RAW_FORMATS = ["YUYV", "UYVY", "YVYU", "NV12", "NV21", "YU12", "YV12", "GREY", "RGB3"]
FORMAT_GOAL = 1.2


def bench_formats(cfg, py):
    """Each raw format's conversion to BGR, ours (stagebench raw2bgr) against
    cv2.cvtColor with cv2.setNumThreads(1), on the noisy frames rearranged into
    that format (stages.py --make), CPU time of the timing thread."""
    out = {}
    for size in cfg.stage_sizes:
        yuyv = FRAMES[size]
        for fourcc in RAW_FORMATS:
            inp = WORK / f"{yuyv.stem}.raw.{fourcc.lower()}"
            if not inp.exists() or inp.stat().st_mtime < yuyv.stat().st_mtime:
                subprocess.run([str(py), str(HERE / "stages.py"), "--make", fourcc, "--input", str(yuyv),
                                "--bgr", str(yuyv.with_suffix(".bgr")), "--size", size, "--output", str(inp)],
                               check=True)
            iters = cfg.stage_iters("raw2bgr", size)
            rounds = []
            for r in range(cfg.rounds):
                contenders = [
                    ("ours", [BIN / "stagebench", "--stage", "raw2bgr", "--format", fourcc, "--input", inp,
                              "--size", size, "--iters", iters]),
                    ("cv2", [py, HERE / "stages.py", "--stage", "raw2bgr", "--format", fourcc, "--input", inp,
                             "--size", size, "--iters", iters, "--threads", "1"]),
                ]
                if r % 2:
                    contenders.reverse()
                res = {who: stage_once(cmd)["cpu_ms"] for who, cmd in contenders}
                res["ratio"] = ratio(res["ours"], res["cv2"])
                rounds.append(res)
            log(f"format {fourcc} {size}: ours {med([x['ours'] for x in rounds]):.3f} ms, "
                f"cv2.cvtColor {med([x['cv2'] for x in rounds]):.3f} ms")
            out[f"{fourcc} {size}"] = rounds
    return out


def formats_report(formats):
    L = ["### Raw capture formats to BGR (ms per frame, CPU time of one thread; `cv2.setNumThreads(1)`)", "",
         f"| format | size | ours | cv2.cvtColor | **ratio** | goal ≤ {FORMAT_GOAL}x |", "|---|---|---|---|---|---|"]
    for key, rounds in formats.items():
        fourcc, size = key.split()
        r = med([x["ratio"] for x in rounds])
        L.append(f"| {fourcc} | {size} | {fmt(med([x['ours'] for x in rounds]), 3)} | "
                 f"{fmt(med([x['cv2'] for x in rounds]), 3)} | **{fmt(r, 2)}x** | "
                 f"{goal(r is not None and r <= FORMAT_GOAL)} |")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------- latency

def bench_latency(cfg):
    seconds = cfg.latency_seconds
    frames = int(seconds * 30)
    viewer = Proc("latency-viewer", [BIN / "viewer", "--listen", "127.0.0.1:0", "--headless",
                                     "--stats-interval", cfg.stats_interval])
    addr = listening_addr(viewer)
    agent = Proc("latency-agent", [BIN / "agent", "--source", f"file:{FRAMES['640x480']}", "--size", "640x480",
                                   "--fps", "30", "--frames", frames, "--level", "9", "--server", addr,
                                   "--stats-interval", cfg.stats_interval])
    ares = agent.wait(seconds + 60)
    time.sleep(0.3)
    viewer.stop(signal.SIGINT)
    a_lines = [l for l in agent.stderr().splitlines() if "p50" in l or "p99" in l]
    v_lines = [l for l in viewer.stderr().splitlines() if "p50" in l or "p99" in l]

    def summarize(lines):
        # Steady state: drop the first interval when there are several.
        use = lines[1:] if len(lines) > 2 else lines
        p50 = [parse_percentiles(l)["p50"] for l in use]
        p99 = [parse_percentiles(l)["p99"] for l in use]
        return {"p50": med([x[0] for x in p50 if x]), "p99": med([x[0] for x in p99 if x]),
                "lines": lines[-2:]}

    return {"agent": summarize(a_lines), "viewer": summarize(v_lines), "agent_exit": ares["code"],
            "agent_all_stats": [l for l in agent.stderr().splitlines() if "fps" in l][-2:],
            "viewer_all_stats": [l for l in viewer.stderr().splitlines() if "fps" in l][-2:]}


# ---------------------------------------------------------------- report

def goal(ok):
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**missed**"


def autogroup_state():
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "state unknown"
    return "on here" if on else "off here"


def machine_desc():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {model}, Linux {platform.release()}"


def report(cfg, agent, viewer, stages, latency, load_before, load_after, elapsed):
    L = []
    L.append("## Performance")
    L.append("")
    L.append(f"Machine: {machine_desc()}. Load average before/after: {load_before} / {load_after}. "
             f"Mode: {'quick (smoke only: figures are not meaningful)' if cfg.quick else 'full'}, "
             f"{cfg.rounds} rounds, contenders alternated each round; medians; ratios taken within a round. "
             f"Took {elapsed:.0f} s.")
    L.append("")
    L.append(f"Command: `{cfg.command}`")
    L.append("")
    goals = []

    if agent:
        L.append("### Agent pipeline (noisy frames, gzip level 9, into a discard sink)")
        L.append("")
        L.append("| size | contender | frames/s | CPU ms/frame | peak RSS MiB | gzip body KiB | frames dropped | "
                 "others' load, cores (niced) |")
        L.append("|---|---|---|---|---|---|---|---|")
        for size, rounds in agent.items():
            names = [("py", "Python/OpenCV original (1 thread)"), ("ours", "`agent` (default workers)"),
                     ("ours1", "`agent --workers 1`")]
            for key, label in names:
                if key not in rounds[0]:
                    continue
                xs = [r[key] for r in rounds]
                L.append(f"| {size} | {label} | {fmt(med([x['fps'] for x in xs]))} | "
                         f"{fmt(med([x['cpu_per_frame_ms'] for x in xs]), 2)} | "
                         f"{fmt(med([x['rss_mib'] for x in xs]))} | "
                         f"{fmt(kib(med([x['body_bytes'] for x in xs])), 0)} | "
                         f"{fmt(med([x.get('dropped') for x in xs]), 0) if key != 'py' else '0'} | "
                         f"{fmt(med([x['others_cores'] for x in xs]), 2)} ({fmt(med([x['others_niced'] for x in xs]), 2)}) |")
            fr = med([r["fps_ratio"] for r in rounds])
            cr = med([r["cpu_ratio"] for r in rounds])
            L.append(f"| {size} | **ratio ours/original** | **{fmt(fr, 2)}x** | **{fmt(cr, 2)}x** | | | | |")
            # What free cores would give, from CPU per frame (load-independent):
            # the reference is one thread, the agent runs one encoder per core.
            cores = os.cpu_count() or 1
            py_cpu = med([r["py"]["cpu_per_frame_ms"] for r in rounds])
            ours_cpu = med([r["ours"]["cpu_per_frame_ms"] for r in rounds])
            ours1_cpu = med([r["ours1"]["cpu_per_frame_ms"] for r in rounds]) if "ours1" in rounds[0] else None
            best = min(c for c in (ours_cpu, ours1_cpu) if c)
            proj_py = 1e3 / py_cpu if py_cpu else None
            proj_ours = cores * 1e3 / best if best else None
            L.append(f"| {size} | projection for {cores} free cores (1000 / CPU ms; ours x {cores} encoders, "
                     f"perfect scaling, lowest CPU/frame) | {fmt(proj_py)} vs {fmt(proj_ours)} | "
                     f"ratio {fmt(ratio(proj_ours, proj_py), 2)}x | | | | |")
            goals.append((f"agent frames/s {size} ≥ 3.5x", f"{fmt(fr, 2)}x", goal(fr and fr >= 3.5)))
            goals.append((f"agent CPU/frame {size} ≤ 0.55x", f"{fmt(cr, 2)}x", goal(cr and cr <= 0.55)))
            if size == "640x480":
                rss = med([r["ours"]["rss_mib"] for r in rounds])
                goals.append(("agent peak RSS 640x480 ≤ 16 MiB", f"{fmt(rss)} MiB", goal(rss and rss <= 16)))
            if size == "1280x720":
                f = med([r["ours"]["fps"] for r in rounds])
                goals.append(("agent 1280x720 sustains 30 fps (free-run ≥ 30)", f"{fmt(f)} fps",
                              goal(f and f >= 30)))
        L.append("")
        L.append("frames/s and CPU are whole-process for `agent` (start-up included) and the frame loop only for "
                 "the Python reference (interpreter and `import cv2` excluded); both favour the reference. "
                 "CPU includes all threads (wait4 rusage / getrusage). Peak RSS is VmHWM, read every 10 ms while "
                 "the process runs (ru_maxrss of a child includes this harness's own RSS). "
                 "\"others' load\" is the machine's busy cores (/proc/stat) minus the benchmarked processes: "
                 "other users of this shared machine; in brackets the part running at nice > 0. With autogroup "
                 f"scheduling ({autogroup_state()}), niceness only orders the processes of one session, so "
                 "other sessions' niced jobs still take their full share of the cores.")
        L.append("")

    if viewer:
        L.append(f"### Viewer: {cfg.fps:g} fps paced cameras, 640x480 noisy frames pre-compressed at level 9 "
                 f"({cfg.viewer_seconds:g} s per run)")
        L.append("")
        L.append("| cameras | rate | contender | delivered fps per camera (min / median) | total frames/s | "
                 "server CPU (cores) | server CPU ms/frame | server peak RSS MiB | load generator CPU (cores) | "
                 "others' load, cores (niced) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for (n, fps), rounds in viewer.items():
            for key, label in (("py", "Python original (select+gzip+imdecode)"), ("ours", "`viewer --headless`")):
                xs = [r[key] for r in rounds]
                L.append(f"| {n} | {'%g fps' % fps if fps else 'unpaced'} | {label} | "
                         f"{fmt(med([x['per_cam_min'] for x in xs]))} / {fmt(med([x['per_cam_med'] for x in xs]))} | "
                         f"{fmt(med([x['total_fps'] for x in xs]))} | "
                         f"{fmt(med([x['server_cpu_cores'] for x in xs]), 2)} | "
                         f"{fmt(med([x['server_cpu_ms_per_frame'] for x in xs]), 2)} | "
                         f"{fmt(med([x['server_rss_mib'] for x in xs]))} | "
                         f"{fmt(med([x['gen_cpu_cores'] for x in xs]), 2)} | "
                         f"{fmt(med([x['others_cores'] for x in xs]), 2)} ({fmt(med([x['others_niced'] for x in xs]), 2)}) |")
            tr = med([r["total_ratio"] for r in rounds])
            pr = med([r["per_cpu_ratio"] for r in rounds])
            L.append(f"| {n} | {'%g fps' % fps if fps else 'unpaced'} | **ratio ours/original** | | "
                     f"**{fmt(tr, 2)}x** | | **{fmt(pr, 2)}x fewer** | | | |")
            if fps and n == max(cfg.clients):
                our_ms = med([r["ours"]["server_cpu_ms_per_frame"] for r in rounds])
                gen = med([r["ours"]["gen_cpu_cores"] for r in rounds])
                if our_ms:
                    L.append(f"| {n} | {fps:g} fps | CPU needed for {n} x {fps:g} fps | | {n * fps:g} frames/s x "
                             f"{fmt(our_ms, 2)} ms = {fmt(n * fps * our_ms / 1e3, 2)} cores + load generator "
                             f"{fmt(gen, 2)} | | | | | |")
                m = med([r["ours"]["per_cam_min"] for r in rounds])
                goals.append((f"viewer {n} cameras x {cfg.fps:g} fps: ≥ 29 fps each (slowest camera)",
                              f"{fmt(m)} fps", goal(m and m >= 29) if n == 16 else "n/a (N<16)"))
            if not fps:
                # What free cores would give, from CPU per delivered frame (load-independent):
                # the Python server is one thread; the viewer decodes on one worker per core.
                cores = os.cpu_count() or 1
                py_ms = med([r["py"]["server_cpu_ms_per_frame"] for r in rounds])
                our_ms = med([r["ours"]["server_cpu_ms_per_frame"] for r in rounds])
                proj_py = 1e3 / py_ms if py_ms else None
                proj_ours = cores * 1e3 / our_ms if our_ms else None
                L.append(f"| {n} | unpaced | projection for {cores} free cores (1000 / CPU ms; viewer x {cores} "
                         f"workers, perfect scaling) | | {fmt(proj_py)} vs {fmt(proj_ours)}: "
                         f"{fmt(ratio(proj_ours, proj_py), 2)}x | | | | | |")
                goals.append((f"viewer decode path ≥ 3x Python (unpaced, {n} cameras, total frames/s)",
                              f"{fmt(tr, 2)}x", goal(tr and tr >= 3)))
                goals.append((f"viewer decode path ≥ 3x Python (unpaced, {n} cameras, frames per CPU-second)",
                              f"{fmt(pr, 2)}x", goal(pr and pr >= 3)))
                goals.append((f"viewer CPU per decoded frame (unpaced, {n} cameras; all threads)",
                              f"{fmt(our_ms, 2)} ms vs {fmt(py_ms, 2)} ms", "(reported)"))
                splits = [r["ours"]["split"] for r in rounds if r["ours"].get("split")]
                if splits:
                    def ms(key):
                        return med([x[key] for x in splits])
                    L.append(f"| {n} | unpaced | where the viewer's CPU goes | | received "
                             f"{fmt(ms('received_fps'))} frames/s, decoded {fmt(med([r['ours']['total_fps'] for r in rounds]))} | "
                             f"poll thread {fmt(ms('poll_user_us_per_received'), 0)} µs user + "
                             f"{fmt(ms('poll_sys_us_per_received'), 0)} µs system per frame received; decode workers "
                             f"{fmt(ms('decode_us_per_decoded'), 0)} µs per frame decoded | | | | | |")
            if fps:
                rss = med([r["ours"]["server_rss_mib"] for r in rounds])
                goals.append((f"viewer peak RSS, {n} cameras ≤ {10 + 4 * n} MiB", f"{fmt(rss)} MiB",
                              goal(rss and rss <= 10 + 4 * n)))
        srcs = sorted({r["ours"]["source"] for rounds in viewer.values() for r in rounds})
        L.append("")
        L.append(f"Delivered fps: Python = frames decoded / load seconds; viewer = {', '.join(srcs)}. "
                 "Server CPU is /proc/PID/stat over the load window (all threads); peak RSS is VmHWM.")
        L.append("")

    if stages:
        L.append("### Per-stage timings (ms per call, one thread; CPU time of the timing thread, and median wall time)")
        L.append("")
        L.append("| stage | size | ours CPU | original CPU | **ratio ours/original (CPU)** | ours wall | "
                 "original wall | ratio (wall) | what |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for (name, size), rounds in stages.items():
            what = next(s[4] for s in STAGES if s[0] == name)
            r = med([x["ratio"] for x in rounds])
            rw = med([x["ratio_wall"] for x in rounds])
            if "cv2_1t" in rounds[0]:
                # OpenCV may split cvtColor over its own threads, whose CPU the timing
                # thread does not see: judge against OpenCV on one thread, show both.
                r = med([x["ratio_1t"] for x in rounds])
                theirs = med([x["cv2_1t"] for x in rounds])
                what += " (cv2.setNumThreads(1); wall columns: OpenCV's default threads)"
            else:
                theirs = med([x["cv2"] for x in rounds])
            L.append(f"| {name} | {size} | {fmt(med([x['ours'] for x in rounds]), 3)} | {fmt(theirs, 3)} | "
                     f"**{fmt(r, 2)}x** | {fmt(med([x['ours_wall'] for x in rounds]), 3)} | "
                     f"{fmt(med([x['cv2_wall'] for x in rounds]), 3)} | {fmt(rw, 2)}x | {what} |")
            if "cv2_1t" in rounds[0]:
                goals.append((f"YUYV→BGR {size} ≤ 1.5x cv2.cvtColor (CPU vs 1 thread / wall vs default)",
                              f"{fmt(r, 2)}x / {fmt(rw, 2)}x", goal(r is not None and r <= 1.5)))
        L.append("")

    if latency:
        L.append("### Latency, 640x480 at 30 fps on loopback (agent → viewer --headless)")
        L.append("")
        L.append("| share | p50 ms | p99 ms | from |")
        L.append("|---|---|---|---|")
        L.append(f"| agent: capture → sent | {fmt(latency['agent']['p50'], 1)} | {fmt(latency['agent']['p99'], 1)} | agent stats line |")
        L.append(f"| viewer: received → displayed | {fmt(latency['viewer']['p50'], 1)} | {fmt(latency['viewer']['p99'], 1)} | viewer stats line |")
        L.append("")
        for who in ("agent", "viewer"):
            for line in latency[who]["lines"] or latency[f"{who}_all_stats"]:
                L.append(f"    {who}: {line.strip()}")
        L.append("")

    if goals:
        L.append("### Goals")
        L.append("")
        L.append("| goal | measured | |")
        L.append("|---|---|---|")
        for g in goals:
            L.append(f"| {g[0]} | {g[1]} | {g[2]} |")
        L.append("")
    return "\n".join(L)


class Config:
    def __init__(self, args):
        self.quick = args.quick
        self.rounds = args.rounds or (1 if args.quick else 3)
        self.agent_frames = {"640x480": 12, "1280x720": 6} if args.quick else {"640x480": 150, "1280x720": 50}
        self.workers1 = not args.quick
        self.viewer_seconds = args.seconds or (2.0 if args.quick else 10.0)
        self.clients = [1, 2] if args.quick else [1, 4, 16]
        self.saturate = [] if args.quick else [16]
        self.fps = 30.0
        self.stats_interval = 1 if args.quick else 2
        self.latency_seconds = 3 if args.quick else 12
        self.stage_sizes = ["640x480"] if args.quick else ["640x480", "1280x720"]
        self.command = "bench/run" + (" --quick" if args.quick else "") + \
            (f" --rounds {args.rounds}" if args.rounds else "") + \
            (f" --only {args.only}" if args.only else "")

    def stage_iters(self, stage, size):
        if self.quick:
            return 3
        slow = stage in ("gzip", "encode")
        n = 20 if slow else 100
        return n // 2 if size == "1280x720" else n


def main():
    ap = argparse.ArgumentParser(description="camstream benchmarks vs the original Python/OpenCV design")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny counts, 1 round (proves it runs)")
    ap.add_argument("--rounds", type=int, help="rounds per measurement (default 3; 1 with --quick)")
    ap.add_argument("--seconds", type=float, help="seconds per viewer run (default 10; 2 with --quick)")
    ap.add_argument("--only", help="comma-separated sections: agent,viewer,unpaced,stages,formats,latency,jpeg,tls "
                    "(unpaced: only the viewer's 16 unpaced cameras; tls: TLS against plaintext)")
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args()
    sections = set((args.only or "agent,viewer,stages,formats,latency,jpeg,tls").split(","))
    unknown = sections - {"agent", "viewer", "unpaced", "stages", "formats", "latency", "jpeg", "tls"}
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}: use agent, viewer, unpaced, stages, formats, "
                         "latency, jpeg, tls")
    cfg = Config(args)
    py = venv_python()
    needs = {"agent": ["agent", "loadgen"], "viewer": ["viewer", "loadgen"], "unpaced": ["viewer", "loadgen"],
             "stages": ["stagebench"], "formats": ["stagebench"], "jpeg": ["agent", "loadgen", "stagebench"],
             "latency": ["agent", "viewer"], "tls": ["agent", "viewer", "loadgen", "camstream-cert"]}
    for b in sorted({b for s in sections for b in needs[s]}):
        if not (BIN / b).exists():
            raise SystemExit(f"missing {BIN / b}: run bench/run, which builds it")
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    t0 = time.monotonic()
    prepared = prepare(py)
    failures = []

    def section(name, fn):
        if name not in sections:
            return None
        try:
            return fn()
        except Exception as e:  # one broken section must not hide the others' figures
            failures.append(f"{name}: {e}")
            log(f"section {name} FAILED: {e}")
            return None

    stages = section("stages", lambda: bench_stages(cfg, py, prepared))
    formats = section("formats", lambda: bench_formats(cfg, py))
    agent = section("agent", lambda: bench_agent(cfg, py, [], []))
    viewer = section("viewer", lambda: bench_viewer(cfg, py, prepared, [], []))
    if viewer is None and "viewer" not in sections:
        viewer = section("unpaced", lambda: bench_viewer(cfg, py, prepared, [], [], paced=False))
    latency = section("latency", lambda: bench_latency(cfg))
    jpeg = section("jpeg", lambda: bench_jpeg(cfg, py, prepared))
    tls = section("tls", lambda: bench_tls(cfg, prepared))
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    text = report(cfg, agent, viewer, stages, latency, load_before, load_after, time.monotonic() - t0)
    if formats:
        text += "\n" + formats_report(formats)
    if jpeg:
        text += "\n" + jpeg_report(cfg, jpeg)
    if tls:
        text += tls_report(tls)
    if failures:
        text += "\n### Sections that failed\n\n" + "\n".join(f"- {f.splitlines()[0]}" for f in failures) + \
            f"\n\nLogs: {LOGS}\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    raw = WORK / "last-run.json"
    raw.write_text(json.dumps({"agent": agent, "viewer": {f"{k[0]}x{k[1]}": v for k, v in (viewer or {}).items()},
                               "stages": {f"{k[0]} {k[1]}": v for k, v in (stages or {}).items()},
                               "formats": formats, "latency": latency,
                               "jpeg": jpeg and {**jpeg, "stages": {f"{k[0]} {k[1]}": v
                                                                    for k, v in jpeg["stages"].items()}},
                               "tls": tls},
                              indent=1, default=str))
    log(f"raw figures: {raw}; logs: {LOGS}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
