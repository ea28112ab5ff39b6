#!/usr/bin/env python3
"""chatd benchmark: memory per idle session, login rate, message round trip.

Starts one (non-sanitized) chatd on loopback and drives it with
bench/chatd_idle_clients.c (built to BUILD/bench/chatd_idle_clients):

  1. --sessions idle authenticated plaintext sessions (default 15,000),
     split over --procs client processes (the open-files limit is 20,000 per
     process) and several 127.0.0.x source addresses: chatd's RSS growth per
     session, and the PLAIN login rate (connect, stream, SASL PLAIN, bind)
     with --concurrency logins in flight per client process;
  2. --tls-sessions idle sessions over STARTTLS: RSS growth per session;
  3. --rtt round trips between two sessions (A -> chatd -> B -> chatd -> A),
     one at a time: p50 / p99.

Prints the Markdown section on stdout (bench/run.sh collects it with
--no-write); without --no-write it also replaces the chatd section of
docs/benchmarks.md (between the bench:chatd markers; other sections are
kept), together with the command that reproduces it.

Usage: bench/chatd_idle.py [--build build] [--sessions 15000] [--procs 2]
       [--tls-sessions 2000] [--rtt 5000] [--no-write]
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402
import xmpp  # noqa: E402


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return harness.parse_metrics(r.read().decode())


def wait_metric(port, name, value, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics(port).get(name) == value:
            return True
        time.sleep(0.2)
    return False


def settled_rss(pid, wait=2.0):
    """RSS after the process has been quiet for a moment."""
    time.sleep(wait)
    return xmpp.rss_kb(pid)


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.join(ROOT, a.build)
        self.chatd = os.path.join(self.build, "chatd")
        self.clients = os.path.join(self.build, "bench", "chatd_idle_clients")
        for p in (self.chatd, self.clients):
            if not os.path.exists(p):
                sys.exit("chatd_idle: %s not built (make BUILD=%s all %s)" % (
                    p, a.build, os.path.relpath(self.clients, ROOT)))
        self.proc = None

    def start_chatd(self):
        cert, key = xmpp.make_cert()
        self.port, self.http = harness.free_port(), harness.free_port()
        argv = [self.chatd, "--listen", "127.0.0.1:%d" % self.port,
                "--http", "127.0.0.1:%d" % self.http, "--domain", xmpp.DOMAIN,
                "--auth-any", "--allow-plaintext-auth", "--tls-cert", cert, "--tls-key", key,
                "--max-connections", "19000", "--ping-interval", "3600",
                "--auth-timeout", "600", "--log-level", "warn"]
        self.proc = harness.Proc(argv, name="chatd-bench")
        harness.wait_for(lambda: harness.http_get(
            "http://127.0.0.1:%d/readyz" % self.http)[0] == 200, 20, what="chatd ready")
        return self.proc

    def stop_chatd(self):
        rc = self.proc.stop(signal.SIGTERM, 60)
        if rc != 0:
            print("chatd exited %s:\n%s" % (rc, self.proc.stderr()[-2000:]), file=sys.stderr)

    def run_clients(self, total, procs, tls, prefix):
        """Starts `procs` holding client processes; returns (procs, results)."""
        per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        ps = []
        for i, n in enumerate(per):
            sources = ",".join("127.0.%d.%d" % (i + 1, j + 1) for j in range(4))
            argv = [self.clients, "--port", str(self.port), "--count", str(n),
                    "--concurrency", str(self.a.concurrency), "--source", sources,
                    "--prefix", "%s%d-" % (prefix, i), "--hold", "--timeout", "900"]
            if tls:
                argv.append("--tls")
            ps.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True))
        results = []
        for p in ps:
            line = p.stdout.readline()
            results.append(json.loads(line) if line.startswith("{") else
                           {"sessions": 0, "failed": -1, "seconds": 0, "logins_per_s": 0})
        return ps, results

    @staticmethod
    def release(ps):
        for p in ps:
            p.stdin.close()
        for p in ps:
            p.wait(120)

    def idle(self, total, tls):
        rss0 = settled_rss(self.proc.pid, 1.0)
        t0 = time.monotonic()
        procs = self.a.procs if total > 2000 else 1
        ps, res = self.run_clients(total, procs, tls, "t" if tls else "p")
        wall = time.monotonic() - t0
        ok = sum(r["sessions"] for r in res)
        failed = sum(r["failed"] for r in res)
        m = metrics(self.http)
        rss1 = settled_rss(self.proc.pid)
        out = {
            "sessions": ok, "failed": failed, "gauge_sessions": m.get("chatd_sessions"),
            "gauge_connections": m.get("chatd_connections"),
            "rss0_kb": rss0, "rss1_kb": rss1,
            "per_session_kib": (rss1 - rss0) / ok if ok else float("nan"),
            "logins_per_s": ok / wall if wall > 0 else 0.0, "seconds": wall,
            "procs": procs,
        }
        self.release(ps)
        wait_metric(self.http, "chatd_connections", 0, 120)
        return out

    def rtt(self, n):
        p = subprocess.run([self.clients, "--port", str(self.port), "--rtt", str(n),
                            "--prefix", "rtt", "--timeout", "300"],
                           capture_output=True, text=True, timeout=400)
        return json.loads(p.stdout) if p.stdout.startswith("{") else None


def machine():
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    return "%s, %d cores, Linux %s" % (cpu, os.cpu_count() or 0, platform.release())


def write_section(text, path):
    """Replaces the chatd section of the document, using the markers that
    bench/run.sh (bench/lib/assemble.py) uses, so both ways of running this
    keep the other sections."""
    begin, end = "<!-- bench:chatd:begin -->", "<!-- bench:chatd:end -->"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = begin + "\n" + text.rstrip("\n") + "\n" + end + "\n"
    m = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", old, re.S)
    if m:
        new = old[:m.start()] + block + old[m.end():]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--sessions", type=int, default=15000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tls-sessions", type=int, default=2000)
    ap.add_argument("--rtt", type=int, default=5000)
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if a.sessions + 100 > soft:
        sys.exit("chatd_idle: open-files limit %d is below --sessions %d" % (soft, a.sessions))

    b = Bench(a)
    b.start_chatd()
    try:
        plain = b.idle(a.sessions, tls=False)
        tls = b.idle(a.tls_sessions, tls=True) if a.tls_sessions else None
        rtt = b.rtt(a.rtt) if a.rtt else None
    finally:
        b.stop_chatd()

    argv = ["bench/chatd_idle.py"] + [x for x in sys.argv[1:] if x != "--no-write"]
    rows = [
        "| idle plaintext sessions | %d (failed %d; chatd_sessions gauge %d) |" % (
            plain["sessions"], plain["failed"], int(plain["gauge_sessions"] or -1)),
        "| chatd RSS before / after | %d KiB / %d KiB |" % (plain["rss0_kb"], plain["rss1_kb"]),
        "| **RSS growth per idle plaintext session** | **%.2f KiB** (target <= 8, aim 4) |" %
        plain["per_session_kib"],
        "| PLAIN logins per second (connect + stream + SASL PLAIN + bind, %d x %d in flight) "
        "| %.0f /s (%d logins in %.1f s) |" % (
            plain["procs"], a.concurrency, plain["logins_per_s"], plain["sessions"],
            plain["seconds"]),
    ]
    if tls:
        rows += [
            "| idle STARTTLS sessions | %d (failed %d) |" % (tls["sessions"], tls["failed"]),
            "| **RSS growth per idle TLS session** | **%.2f KiB** (target <= 40) |" %
            tls["per_session_kib"],
            "| STARTTLS + PLAIN logins per second | %.0f /s |" % tls["logins_per_s"],
        ]
    if rtt:
        rows += ["| message round trip A -> B -> A (%d, one at a time) | p50 %.0f us, "
                 "p99 %.0f us, mean %.0f us |" % (rtt["rtt_n"], rtt["p50_us"], rtt["p99_us"],
                                                 rtt["mean_us"])]
    text = "\n".join([
        "## chatd (issue 2)",
        "",
        "%s; %s, build `%s` (non-sanitized), chatd `--auth-any --allow-plaintext-auth "
        "--log-level warn`; the machine is shared with other people's work. "
        "Reproduce with:" % (
            datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), machine(), a.build),
        "",
        "    make BUILD=%s all %s/bench/chatd_idle_clients" % (a.build, a.build),
        "    " + " ".join(shlex.quote(x) for x in argv),
        "",
        "RSS is chatd's VmRSS (/proc/PID/status) after the sessions are established and "
        "idle, minus VmRSS before they connected, divided by the number of sessions. "
        "Clients: bench/chatd_idle_clients.c (%d process(es) for the plaintext sessions, "
        "source addresses 127.0.x.1-4); logins per second include the TCP connect and "
        "are wall-clock rates on the shared machine." % plain["procs"],
        "",
        "| measure | value |",
        "|---|---|",
    ] + rows) + "\n\n"
    print(text)
    if not a.no_write:
        write_section(text, os.path.join(ROOT, "docs", "benchmarks.md"))
    ok = plain["failed"] == 0 and plain["sessions"] == a.sessions
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
