"""Slow links: the agent behind a token-bucket link narrower than its camera.

The agent runs in a network namespace of its own, joined to this machine by a
veth pair whose namespace end has a `tc tbf` qdisc (the link); the viewer runs
here, headless, on the host end. The camera is `--source file:` with the noisy
640x480 frame at 30 fps, gzip level 9 (about 0.77 MB a frame, 185 Mbit/s at
30 fps). Per link rate it prints:

- delivered frames/s, against the link's rate / frame size, and against what
  one bulk TCP stream through the same link carries (TCP/IP headers take
  about 4.5% of an Ethernet link);
- capture -> on the wire p50/p99 (the agent's `latency`), against the
  issue's bound: encode p99 + 1.5 x one frame's transmit time;
- the kernel's unsent bytes (`ss -ti` notsent, sampled every 100 ms; max and
  p99) in frames, and the bytes in flight (unacknowledged segments x MSS);
- agent CPU per delivered frame, against the same agent on a free link
  (loopback, 30 fps).

Run as root (namespaces, tc), from the repository root, after
`cargo build --release -p agent -p viewer`:

    python3 bench/slow_link.py                      # 100 and 20 Mbit/s, 20 s each
    python3 bench/slow_link.py --rates 100 --seconds 10 --bin /tmp/old-release
    python3 bench/slow_link.py --encoding jpeg      # JPEG q85 bodies instead

`bench/run --slow-link` builds and runs it. Only this machine is involved:
10.232.X.0/30 exists only on the pair, and the namespace has no other route.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAME = ROOT / "testdata" / "frames" / "coffee_640x480_noise.yuyv"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 4.0
STATS_S = 2


def log(msg):
    print(f"[slow_link {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, args))}` failed: {p.stderr.strip()}")
    return p


class Link:
    """A namespace behind a veth pair, 10.232.X.1 (host) <-> 10.232.X.2, with
    a tbf qdisc on the namespace's egress (the agent's direction)."""

    def __init__(self, mbit):
        self.ns = f"camslow-{os.getpid()}"
        sh("ip", "netns", "add", self.ns)
        for x in range(256):
            self.host, self.dev = f"camb{x}h", f"camb{x}n"
            if sh("ip", "link", "add", self.host, "type", "veth", "peer", "name", self.dev,
                  "netns", self.ns, check=False).returncode == 0:
                break
        else:
            raise RuntimeError("no free veth name camb<X>h")
        self.host_ip, self.ns_ip = f"10.232.{x}.1", f"10.232.{x}.2"
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host)
        sh("ip", "link", "set", self.host, "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.dev)
        sh("ip", "-n", self.ns, "link", "set", self.dev, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        self.set_rate(mbit)
        time.sleep(0.5)

    def set_rate(self, mbit):
        self.mbit = mbit
        sh("tc", "-n", self.ns, "qdisc", "replace", "dev", self.dev, "root", "tbf",
           "rate", f"{mbit}mbit", "burst", "64kb", "latency", "20ms")

    def exec(self, *cmd):
        return ["ip", "netns", "exec", self.ns, *map(str, cmd)]

    def close(self):
        sh("ip", "link", "del", self.host, check=False)
        sh("ip", "netns", "del", self.ns, check=False)


def cpu_s(pid):
    text = Path(f"/proc/{pid}/stat").read_text()
    f = text[text.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def machine_busy():
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(vals) - vals[3] - vals[4]


def start(cmd, logdir, name):
    err = open(logdir / f"{name}.err", "w")
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=err,
                            stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "info"})


def wait_listening(viewer_err, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"listening on (\S+)", viewer_err.read_text())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise RuntimeError("viewer did not listen")


def ss_sample(link, port):
    """(notsent bytes, bytes in flight) of the agent's connection, or None.
    In flight is unacknowledged segments x MSS (tcp_info's byte counters
    include retransmissions)."""
    out = sh(*link.exec("ss", "-tinH", "state", "established", "dport", f"= :{port}"), check=False).stdout
    if "mss:" not in out:
        return None
    field = lambda name: int(m.group(1)) if (m := re.search(rf"\b{name}:(\d+)", out)) else 0
    return field("notsent"), field("unacked") * field("mss")


STATS_RX = re.compile(r"([\d.]+) fps captured, ([\d.]+) sent.*?([\d.]+) Mbit/s.*?encode p50 (\d+) ms(?: p99 (\d+) ms)?"
                      r".*?latency p50 (\d+) ms p99 (\d+) ms")


def parse_stats(lines):
    rows = []
    for line in lines:
        m = STATS_RX.search(line)
        if m:
            cap, sent, mbit, e50, e99, l50, l99 = m.groups()
            rows.append({"captured": float(cap), "sent": float(sent), "mbit": float(mbit),
                         "encode_p50": float(e50), "encode_p99": float(e99 or e50),
                         "latency_p50": float(l50), "latency_p99": float(l99)})
    return rows


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def run_agent(bindir, seconds, logdir, tag, encoding, link=None):
    """One agent at 30 fps into a headless viewer, over `link` (or loopback),
    sending `encoding` bodies (gzip-bmp at level 9, or jpeg at the agent's
    default quality)."""
    listen = f"{link.host_ip}:0" if link else "127.0.0.1:0"
    viewer = start([bindir / "viewer", "--headless", "--listen", listen, "--stats-interval", STATS_S],
                   logdir, f"{tag}-viewer")
    try:
        addr = wait_listening(logdir / f"{tag}-viewer.err")
        port = addr.rsplit(":", 1)[1]
        cmd = [bindir / "agent", "--source", f"file:{FRAME}", "--size", "640x480", "--fps", "30",
               "--encoding", encoding, "--level", "9", "--id", "1", "--server", addr,
               "--stats-interval", STATS_S]
        agent = start(link.exec(*cmd) if link else cmd, logdir, f"{tag}-agent")
        try:
            time.sleep(WARMUP_S)
            errf = logdir / f"{tag}-agent.err"
            mark = len(errf.read_text().splitlines())
            c0, b0, t0 = cpu_s(agent.pid), machine_busy(), time.monotonic()
            samples = []
            while time.monotonic() - t0 < seconds:
                if link:
                    s = ss_sample(link, port)
                    if s:
                        samples.append(s)
                time.sleep(0.1)
            c1, b1, t1 = cpu_s(agent.pid), machine_busy(), time.monotonic()
            time.sleep(0.2)
            rows = parse_stats(errf.read_text().splitlines()[mark:])
        finally:
            agent.terminate()
            agent.wait(10)
    finally:
        viewer.terminate()
        viewer.wait(10)
    if not rows:
        raise RuntimeError(f"{tag}: no stats lines from the agent (see {logdir})")
    wall = t1 - t0
    sent_fps = statistics.mean(r["sent"] for r in rows)
    mbit = statistics.mean(r["mbit"] for r in rows)
    frame_bytes = mbit * 1e6 / 8 / sent_fps if sent_fps else None
    agent_cpu = c1 - c0
    return {
        "sent_fps": sent_fps, "captured_fps": statistics.mean(r["captured"] for r in rows),
        "mbit": mbit, "frame_bytes": frame_bytes,
        "encode_p99_ms": statistics.median(r["encode_p99"] for r in rows),
        "latency_p50_ms": statistics.median(r["latency_p50"] for r in rows),
        "latency_p99_ms": statistics.median(r["latency_p99"] for r in rows),
        "latency_p99_max_ms": max(r["latency_p99"] for r in rows),
        "agent_cpu_ms_per_frame": agent_cpu * 1000 / (sent_fps * wall) if sent_fps else None,
        "others_cores": ((b1 - b0) / CLK_TCK - agent_cpu) / wall,
        "notsent_max": max((s[0] for s in samples), default=None),
        "notsent_p99": pct([s[0] for s in samples], 99),
        "inflight_max": max((s[1] for s in samples), default=None),
        "samples": len(samples),
        "stats_lines": len(rows),
    }


BULK = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
buf = b"\0" * (1 << 20)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendall(buf)
"""


def bulk_goodput_mbit(link, seconds=3.0):
    """What one bulk TCP stream carries through the link, Mbit/s of payload."""
    import socket
    srv = socket.socket()
    srv.bind((link.host_ip, 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    p = subprocess.Popen(link.exec(sys.executable, "-c", BULK, link.host_ip, port, seconds + 1.5))
    conn, _ = srv.accept()
    got, t0 = 0, None
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        now = time.monotonic()
        if t0 is None and now >= 0:
            t0, start_at = now, now + 1.0  # skip slow start
            got = 0
        if now >= start_at:
            got += len(b)
    t1 = time.monotonic()
    p.wait(10)
    conn.close()
    srv.close()
    return got * 8 / (t1 - start_at) / 1e6


def fmt(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,20", help="link rates in Mbit/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds per run (after 4 s warm-up)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release"), help="directory of agent and viewer")
    ap.add_argument("--encoding", default="gzip-bmp", choices=["gzip-bmp", "jpeg"],
                    help="the agent's --encoding (gzip-bmp at level 9, or jpeg at its default quality)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("slow_link.py needs root: it creates a network namespace and a tc qdisc")
    bindir = Path(args.bin)
    logdir = Path(tempfile.mkdtemp(prefix="slow_link-"))
    results = {"bin": str(bindir), "logs": str(logdir)}
    log(f"free link (loopback), {args.seconds:.0f} s")
    results["free"] = free = run_agent(bindir, args.seconds, logdir, "free", args.encoding)
    for mbit in [float(r) for r in args.rates.split(",")]:
        link = Link(mbit)
        try:
            goodput = bulk_goodput_mbit(link)
            log(f"{mbit:g} Mbit/s link: one bulk TCP stream carries {goodput:.1f} Mbit/s; agent for {args.seconds:.0f} s")
            r = run_agent(bindir, args.seconds, logdir, f"{mbit:g}mbit", args.encoding, link)
        finally:
            link.close()
        fb = r["frame_bytes"]
        r["bulk_goodput_mbit"] = goodput
        r["link_fps"] = mbit * 1e6 / 8 / fb
        r["bulk_fps"] = goodput * 1e6 / 8 / fb
        r["transmit_ms"] = fb * 8 / (mbit * 1e6) * 1000
        r["latency_bound_ms"] = r["encode_p99_ms"] + 1.5 * r["transmit_ms"]
        results[f"{mbit:g}"] = r
    print()
    print(f"Slow links: agent file:{FRAME.name} 640x480 @ 30 fps, {args.encoding}{' level 9' if args.encoding == 'gzip-bmp' else ''}, behind tc tbf; binaries {bindir}")
    print()
    print(f"Free link (loopback): {fmt(free['sent_fps'])} fps, agent CPU {fmt(free['agent_cpu_ms_per_frame'])} ms/frame, "
          f"latency p50 {fmt(free['latency_p50_ms'], 0)} ms p99 {fmt(free['latency_p99_ms'], 0)} ms, "
          f"others' load {fmt(free['others_cores'], 2)} cores")
    print()
    print("| link | delivered fps | vs rate/frame | vs bulk TCP/frame | frame KB | capture→wire p50 / p99 (max) | bound: enc p99 + 1.5×tx | unsent max / p99 (frames) | in flight max | CPU/frame vs free | others' load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in results.items():
        if key in ("bin", "logs", "free"):
            continue
        fb = r["frame_bytes"]
        nmax = r["notsent_max"] / fb if r["notsent_max"] is not None else None
        n99 = r["notsent_p99"] / fb if r["notsent_p99"] is not None else None
        cpu_ratio = r["agent_cpu_ms_per_frame"] / free["agent_cpu_ms_per_frame"]
        print(f"| {key} Mbit/s | {fmt(r['sent_fps'])} | {r['sent_fps'] / r['link_fps']:.0%} | {r['sent_fps'] / r['bulk_fps']:.0%} "
              f"| {fb / 1e3:.0f} | {fmt(r['latency_p50_ms'], 0)} / {fmt(r['latency_p99_ms'], 0)} ({fmt(r['latency_p99_max_ms'], 0)}) ms "
              f"| {fmt(r['latency_bound_ms'], 0)} ms | {fmt(r['notsent_max'] and r['notsent_max'] / 1e3, 0)} KB / {fmt(r['notsent_p99'] and r['notsent_p99'] / 1e3, 0)} KB ({fmt(nmax, 2)} / {fmt(n99, 2)}) "
              f"| {fmt(r['inflight_max'] and r['inflight_max'] / 1e3, 0)} KB | {fmt(r['agent_cpu_ms_per_frame'])} ms ({cpu_ratio:.2f}x) | {fmt(r['others_cores'], 2)} cores |")
    print()
    print(f"logs: {logdir}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
