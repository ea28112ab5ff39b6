#!/usr/bin/env python3
"""chatd HTTP probe latency while connections hold the HTTP port.

For each of --runs fresh (non-sanitized) chatd processes: --held connections
to the HTTP port are opened from 127.0.0.2 ... (half idle, half slow-loris:
an unfinished request head), then /healthz is fetched --polls times, one at
a time, from 127.0.0.1 on a new connection each (as a kubelet probe does):
latency from connect() to the whole answer. The same is measured with no
connection held, for comparison. Every probe must answer 200, or the run
fails.

Prints a Markdown section on stdout: per run the median, p99 and max; over
the runs min / median / max of those.

Usage: bench/http_probe.py [--build build] [--held 1000] [--polls 300] [--runs 3]
"""
import argparse
import os
import shlex
import socket
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402


def hold(port, n):
    socks = []
    sources = ["127.0.0.%d" % i for i in range(2, 2 + max(1, (n + 49) // 50))]
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        s.connect(("127.0.0.1", port))
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks


def probe(port):
    """Seconds for one GET /healthz on a new connection; raises unless 200."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    finally:
        s.close()
    dt = time.perf_counter() - t0
    if not data.startswith(b"HTTP/1.0 200") and not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("probe answered %r" % data[:80])
    return dt


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def one_run(build, held, polls):
    port, hport = harness.free_port(), harness.free_port()
    proc = harness.Proc([os.path.join(build, "chatd"), "--listen", "127.0.0.1:%d" % port,
                         "--http", "127.0.0.1:%d" % hport, "--auth-any",
                         "--log-level", "warn"], name="chatd-bench")
    socks = []
    try:
        harness.wait_for(lambda: harness.http_get("http://127.0.0.1:%d/readyz" % hport)[0]
                         == 200, 20, what="chatd ready")
        base = [probe(hport) for _ in range(polls)]
        socks = hold(hport, held)
        time.sleep(0.5)
        under = [probe(hport) for _ in range(polls)]
        return base, under
    finally:
        for s in socks:
            s.close()
        proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--held", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    rows = []
    for r in range(a.runs):
        base, under = one_run(build, a.held, a.polls)
        rows.append({k: (statistics.median(v) * 1e3, pct(v, 99) * 1e3, max(v) * 1e3)
                     for k, v in (("base", base), ("under", under))})
        print("http_probe: run %d: median %.3f ms with %d held, %.3f ms with none" %
              (r + 1, rows[-1]["under"][0], a.held, rows[-1]["base"][0]), file=sys.stderr)

    def mmm(key, i):
        xs = [row[key][i] for row in rows]
        return "%.3f / %.3f / %.3f" % (min(xs), statistics.median(xs), max(xs))

    cmd = "python3 bench/http_probe.py --build %s --held %d --polls %d --runs %d" % (
        shlex.quote(a.build), a.held, a.polls, a.runs)
    print("## chatd HTTP probe latency under held connections\n")
    print("`GET /healthz` on a new connection each time, one at a time from 127.0.0.1, "
          "%d probes per run, while %d connections from other loopback addresses hold the "
          "HTTP port (half idle, half an unfinished request head); %d fresh chatd "
          "processes (default HTTP limits). Every probe answered 200. Figures are min / "
          "median / max over the runs, in ms.\n" % (a.polls, a.held, a.runs))
    print("| held connections | probe median | probe p99 | probe max |")
    print("|---|---|---|---|")
    print("| 0 | %s | %s | %s |" % (mmm("base", 0), mmm("base", 1), mmm("base", 2)))
    print("| %d | %s | %s | %s |" % (a.held, mmm("under", 0), mmm("under", 1),
                                      mmm("under", 2)))
    print("\nCommand: `%s`" % cmd)


if __name__ == "__main__":
    main()
