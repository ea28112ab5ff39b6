#!/usr/bin/env python3
"""rainbow benchmarks on the local platform (real chatd, non-sanitized build):

  switch     time from "new colour observed ready" to "switch confirmed"
             (rainbow's own record: since_obs_ms of the select event), over
             N deploys; and the select operation alone (op_ms)
  drain      drain detection latency: the last connection of an old colour
             closes at a known time; how long until rainbow deleted it
             (expected: settle + up to one poll + the delete itself)
  proxy      the switch's added round-trip latency (echo, 1 byte in flight)
             and bulk throughput, switch vs direct, same client and backend

Usage: bench/rainbow_bench.py [--build DIR] [switch|drain|proxy|all]
Progress lines go to stderr; stdout is a Markdown section (bench/run.sh
puts it into docs/benchmarks.md).
Bounded: every loop has a fixed count; a run takes about a minute.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import benchlocal  # noqa: E402


def note(*a):
    print(*a, file=sys.stderr, flush=True)


def summary(xs):
    xs = sorted(xs)
    return "%.1f / **%.1f** / %.1f ms (n=%d)" % (xs[0], statistics.median(xs), xs[-1], len(xs))


def bench_switch(build, rows, n=8):
    loc = benchlocal.LocalPlatform(build, "rb-bench-")
    load = benchlib.MachineLoad().start()
    try:
        for i in range(n):
            loc.rb("deploy", "%07x" % (0xa000000 + i), "--replicas", "2", "--settle", "0",
                   "--poll", "0.05s")
        sel = [e for e in loc.record() if e["event"] == "select"]
        since = [e["since_obs_ms"] for e in sel]
        op = [e["op_ms"] for e in sel]
        note("switch: ready observed -> switch confirmed: " + summary(since))
        note("switch: select operation (control socket + read-back): " + summary(op))
        ld = benchlib.fmt_load([load.stop()])
        rows.append(("ready observed -> switch confirmed (local)", summary(since), ld))
        rows.append(("select operation alone", summary(op), ld))
    finally:
        loc.close()


def bench_drain(build, rows, reps=3, settle=1.0, poll=0.2):
    loc = benchlocal.LocalPlatform(build, "rb-bench-")
    lat = []
    load = benchlib.MachineLoad().start()
    try:
        for i in range(reps):
            old = "%07x" % (0xb000000 + 2 * i)
            new = "%07x" % (0xb000001 + 2 * i)
            loc.rb("deploy", old, "--replicas", "1", "--settle", "0", "--poll", "0.05s")
            c = socket.create_connection(("127.0.0.1", loc.port))
            time.sleep(0.5)  # chatd counted it
            p = subprocess.Popen([loc.rainbow, "deploy", new, "--replicas", "1", "--settle",
                                  "%gs" % settle, "--poll", "%gs" % poll, "--quiet"],
                                 env=loc.env)
            deadline = time.time() + 30
            while time.time() < deadline:
                if any(e["event"] == "select" and e["sha"] == new for e in loc.record()):
                    break
                time.sleep(0.02)
            time.sleep(1.0)
            t_close = time.time()
            c.close()
            p.wait(60)
            rm = [e for e in loc.record() if e["event"] == "remove" and e["sha"] == old]
            lat.append((rm[-1]["t"] - t_close) * 1000.0)
        note("drain: last close -> colour deleted (settle %gs, poll %gs): %s"
              % (settle, poll, summary(lat)))
        rows.append(("drain detection + delete (settle %gs, poll %gs)" % (settle, poll),
                     summary(lat), benchlib.fmt_load([load.stop()])))
    finally:
        loc.close()


class Echo:
    """Echo backend with large buffers; bulk mode discards what it reads."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        benchlocal.serve_threads(self.sock, self.serve)

    def serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = c.recv(1)
        buf = bytearray(1 << 20)
        try:
            if mode == b"e":
                while True:
                    n = c.recv_into(buf, 1)
                    if not n:
                        break
                    c.sendall(buf[:n])
            else:
                total = 0
                while True:
                    n = c.recv_into(buf)
                    if not n:
                        break
                    total += n
                c.sendall(str(total).encode())
        finally:
            c.close()


def rtt(port, n=3000):
    c = socket.create_connection(("127.0.0.1", port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"e")
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        c.sendall(b"x")
        c.recv(1)
        ts.append((time.perf_counter() - t) * 1e6)
    c.close()
    ts.sort()
    return ts[len(ts) // 2], ts[int(len(ts) * 0.99)]


def bulk(port, total=512 << 20):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"b")
    chunk = b"y" * (1 << 20)
    t = time.perf_counter()
    sent = 0
    while sent < total:
        c.sendall(chunk)
        sent += len(chunk)
    c.shutdown(socket.SHUT_WR)
    got = int(c.recv(64))
    dt = time.perf_counter() - t
    c.close()
    assert got == total, (got, total)
    return total / dt / (1 << 20), dt


def bench_proxy(build, rows, runs):
    """Echo round trips and bulk, direct and through the switch, each run
    on a fresh local platform; this process (client and echo backend, one
    Python interpreter) and the switch share the machine."""
    res = []
    for run in range(runs):
        loc = benchlocal.LocalPlatform(build, "rb-bench-")
        echo = Echo()
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(os.path.join(loc.state, "switch.sock"))
            s.sendall(b"select abcdef0 127.0.0.1:%d\n" % echo.port)
            assert s.recv(100).startswith(b"ok")
            s.close()
            load = benchlib.MachineLoad([os.getpid()]).start()
            r = {}
            r["d50"], r["d99"] = rtt(echo.port)
            r["s50"], r["s99"] = rtt(loc.port)
            r["dt"], _ = bulk(echo.port)
            r["st"], _ = bulk(loc.port)
            r["load"] = load.stop()
            note("proxy run %d: %s" % (run + 1, json.dumps(r)))
            res.append(r)
        finally:
            loc.close()
    ld = benchlib.fmt_load([r["load"] for r in res])

    def f(key, fmt, unit):
        return benchlib.fmt3([r[key] for r in res], fmt, unit)
    rows.append(("echo round trip p50, direct", f("d50", "%.0f", "µs"), ld))
    rows.append(("echo round trip p50, via switch", f("s50", "%.0f", "µs"), ld))
    rows.append(("echo round trip p99, direct", f("d99", "%.0f", "µs"), ld))
    rows.append(("echo round trip p99, via switch", f("s99", "%.0f", "µs"), ld))
    rows.append(("bulk throughput, one connection, direct", f("dt", "%.0f", "MiB/s"), ld))
    rows.append(("bulk throughput, one connection, via switch", f("st", "%.0f", "MiB/s"), ld))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3, help="proxy runs (switch: 8 deploys, drain: 3)")
    ap.add_argument("--quick", action="store_true", help="(accepted: the figures are small)")
    ap.add_argument("what", nargs="?", default="all", choices=["switch", "drain", "proxy", "all"])
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    for b in ("rainbow", "chatd"):
        if not os.access(os.path.join(build, b), os.X_OK):
            sys.exit("rainbow_bench: %s/%s not built (make all)" % (build, b))
    rows = []
    if a.what in ("switch", "all"):
        bench_switch(build, rows)
    if a.what in ("drain", "all"):
        bench_drain(build, rows)
    if a.what in ("proxy", "all"):
        bench_proxy(build, rows, a.runs)
    print("Local platform, real chatd (%s): figures from rainbow's own record "
          "(`since_obs_ms`, `op_ms`, remove times) and from a Python client timing "
          "round trips and bulk transfers directly and through the switch; min / **median** "
          "/ max over the samples (switch: 8 deploys; drain: 3; proxy: %d runs, each on a "
          "fresh local platform). Client and echo backend are one Python process, the same "
          "for both rows: the direct row is its ceiling, the switch row adds one copy "
          "through the switch process.\n"
          % (os.path.relpath(build, ROOT), a.runs))
    print("| rainbow (local platform) | min / **median** / max | machine load |\n|---|---|---|")
    for k, v, ld in rows:
        print("| %s | %s | %s |" % (k, v, ld))
    print("\n" + benchlib.LOAD_NOTE)


if __name__ == "__main__":
    main()
