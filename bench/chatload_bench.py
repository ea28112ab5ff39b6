#!/usr/bin/env python3
"""chatload benchmarks (issue 3), against chatd on loopback:

  rss     one chatload process holding N idle bound clients (default 15,000):
          its RSS per client, read from /proc once every client is connected
          and idle. The server side is split over several chatd processes so
          that none passes the open-files limit.
  logins  logins per second one chatload drives against one chatd: N clients
          with no ramp limit, logins/s = N / (time until all were connected).

Prints a Markdown section (figures measured here, nothing typed in) to stdout
and, with --out FILE, writes it there too.

usage: bench/chatload_bench.py [--build DIR] [--clients N] [--login-clients N]
                               [--out FILE] [rss] [logins]
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metric(http_port, name):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Chatd:
    def __init__(self, build, tmp, i, max_conn):
        self.port, self.http = free_port(), free_port()
        self.log = open(os.path.join(tmp, "chatd-%d.log" % i), "wb")
        self.p = subprocess.Popen(
            [os.path.join(build, "chatd"), "--listen", "127.0.0.1:%d" % self.port,
             "--http", "127.0.0.1:%d" % self.http, "--auth-any", "--log-level", "warn",
             "--ping-interval", "0", "--max-connections", str(max_conn),
             "--version-label", "bench", "--instance", "bench-%d" % i],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 15
        while metric(self.http, "chatd_sessions") is None:
            if time.monotonic() > deadline or self.p.poll() is not None:
                raise RuntimeError("chatd did not start")
            time.sleep(0.1)

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def start_chatload(build, tmp, servers, args, name):
    report = os.path.join(tmp, name + ".json")
    argv = [os.path.join(build, "chatload"), "--quiet", "--ping-interval", "0",
            "--report", report]
    for s in servers:
        argv += ["--server", "127.0.0.1:%d" % s.port]
    log = open(os.path.join(tmp, name + ".log"), "wb")
    return subprocess.Popen(argv + args, stdout=log, stderr=log), report, log


def wait_sessions(servers, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(metric(s.http, "chatd_sessions") or 0 for s in servers)
        if total >= n:
            return True
        time.sleep(0.5)
    return False


def bench_rss(build, tmp, clients):
    per = 7000  # sessions per chatd, well under the open-files limit
    nsrv = max(1, (clients + per - 1) // per)
    servers = [Chatd(build, tmp, i, per + 100) for i in range(nsrv)]
    try:
        p, report, log = start_chatload(
            build, tmp, servers,
            ["--clients", str(clients), "--ramp", "2000/s", "--duration", "600",
             "--source-ips", "127.0.0.2-127.0.0.9"], "rss")
        ok = wait_sessions(servers, clients, timeout=clients / 500 + 60)
        time.sleep(8)  # idle: parsers compacted, heap trimmed
        rss = rss_kib(p.pid)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)
        log.close()
        with open(report) as f:
            r = json.load(f)
    finally:
        for s in servers:
            s.stop()
    return {"clients": clients, "connected": r["connected_peak"], "all_connected": ok,
            "rss_kib": rss, "kib_per_client": rss / clients, "servers": nsrv,
            "dropped": r["dropped"], "closed_by_client": r["closed_by_client"]}


def bench_logins(build, tmp, clients):
    srv = Chatd(build, tmp, 99, clients + 100)
    try:
        p, report, log = start_chatload(
            build, tmp, [srv],
            ["--clients", str(clients), "--ramp", "1000000/s", "--duration", "600"], "logins")
        ok = wait_sessions([srv], clients, timeout=120)
        time.sleep(1)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)
        log.close()
        with open(report) as f:
            r = json.load(f)
    finally:
        srv.stop()
    ramp = r["ramp_s"] or 0
    return {"clients": clients, "all_connected": ok, "ramp_s": ramp,
            "logins_per_s": clients / ramp if ramp else 0,
            "login_ms": r["login_ms"], "login_failures": r["login_failures"],
            "dropped": r["dropped"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--clients", type=int, default=15000)
    ap.add_argument("--login-clients", type=int, default=5000)
    ap.add_argument("--out")
    ap.add_argument("which", nargs="*", default=["rss", "logins"])
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="chatload-bench-")
    lines = ["## chatload", "",
             "Measured by `bench/chatload_bench.py` on %s (%d CPUs), loopback, "
             "chatd `--auth-any`, build `%s`." % (socket.gethostname(), os.cpu_count(),
                                                   a.build), ""]
    try:
        if "rss" in a.which:
            r = bench_rss(a.build, tmp, a.clients)
            print("rss:", json.dumps(r), file=sys.stderr)
            lines += ["| idle bound clients in one chatload | chatd processes | chatload RSS "
                      "| RSS per client | dropped |", "|---|---|---|---|---|",
                      "| %d (peak connected %d) | %d | %.1f MiB | %.2f KiB | %d |" % (
                          r["clients"], r["connected"], r["servers"], r["rss_kib"] / 1024.0,
                          r["kib_per_client"], r["dropped"]), ""]
        if "logins" in a.which:
            r = bench_logins(a.build, tmp, a.login_clients)
            print("logins:", json.dumps(r), file=sys.stderr)
            lm = r["login_ms"]
            lines += ["| clients (no ramp limit) | time to all connected | logins/s "
                      "| login p50 | login p99 | failures |", "|---|---|---|---|---|---|",
                      "| %d | %.2f s | %.0f | %.1f ms | %.1f ms | %d |" % (
                          r["clients"], r["ramp_s"], r["logins_per_s"], lm["p50"], lm["p99"],
                          r["login_failures"]), ""]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
