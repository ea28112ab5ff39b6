#!/usr/bin/env python3
"""chatload benchmarks, against chatd on loopback:

  rss      one chatload process holding N idle bound clients (default
           15,000): RSS per client = (its VmRSS with the N clients idle -
           VmRSS of a fresh chatload holding 1 client) / (N - 1). The server
           side is split over chatd processes of at most 7,000 sessions.
  rss-tls  the same over STARTTLS (--tls; default 3,000 clients).
  logins   logins per second one chatload drives against one chatd with no
           ramp limit (default 5,000 clients): N / chatload's ramp_s, with
           the CPU shares of chatload and chatd over that span.

Every figure is run --runs times (default 3) with a fresh chatload and fresh
chatd processes; min / median / max with the machine's load
(bench/lib/benchlib.py). Prints the Markdown section on stdout.

usage: bench/chatload_bench.py [--build DIR] [--runs 3] [--clients N]
                               [--tls-clients N] [--login-clients N] [--quick]
                               [rss] [rss-tls] [logins]
"""
import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import harness  # noqa: E402
import xmpp  # noqa: E402

PER_CHATD = 7000  # sessions per chatd, well under the open-files limit


def log(*a):
    print("chatload_bench:", *a, file=sys.stderr, flush=True)


class Chatd:
    def __init__(self, a, i, max_conn, tls):
        self.port, self.http = harness.free_port(), harness.free_port()
        argv = [os.path.join(a.build, "chatd"), "--listen", "127.0.0.1:%d" % self.port,
                "--http", "127.0.0.1:%d" % self.http, "--auth-any", "--log-level", "warn",
                "--ping-interval", "0", "--max-connections", str(max_conn),
                "--version-label", "bench", "--instance", "bench-%d" % i]
        if tls:
            argv += ["--tls-cert", a.cert, "--tls-key", a.key]
        self.proc = harness.Proc(argv, name="chatd-bench-%d" % i)
        self.pid = self.proc.pid
        harness.wait_for(lambda: self.sessions() is not None, 20, what="chatd metrics")

    def sessions(self):
        st, body = harness.http_get("http://127.0.0.1:%d/metrics" % self.http)
        return harness.parse_metrics(body).get("chatd_sessions") if st == 200 else None

    def stop(self):
        self.proc.stop(signal.SIGINT, 30)
        shutil.rmtree(self.proc.dir, ignore_errors=True)


def chatload(a, servers, args, name):
    report = os.path.join(a.tmp, name + ".json")
    argv = [os.path.join(a.build, "chatload"), "--quiet", "--ping-interval", "0",
            "--report", report]
    for s in servers:
        argv += ["--server", "127.0.0.1:%d" % s.port]
    log_f = open(os.path.join(a.tmp, name + ".log"), "wb")
    p = subprocess.Popen(argv + [str(x) for x in args], stdout=log_f, stderr=log_f)
    return p, report, log_f


def chatload_report(p, report, log_f):
    """Stops a chatload() with SIGINT and returns the report it wrote."""
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    log_f.close()
    with open(report) as f:
        return json.load(f)


def wait_sessions(servers, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(s.sessions() or 0 for s in servers) >= n:
            return True
        time.sleep(0.2)
    return False


def hold(a, clients, tls, run):
    """A fresh chatload holding `clients` idle; its RSS once they are idle."""
    nsrv = max(1, (clients + PER_CHATD - 1) // PER_CHATD)
    servers = [Chatd(a, i, PER_CHATD + 100, tls) for i in range(nsrv)]
    try:
        args = ["--clients", clients, "--ramp", "2000/s", "--duration", "600",
                "--source-ips", "127.0.0.2-127.0.0.9"] + (["--tls"] if tls else [])
        p, report, log_f = chatload(a, servers, args, "hold-%d-%d-%d" % (clients, tls, run))
        ok = wait_sessions(servers, clients, timeout=clients / 200 + 60)
        time.sleep(8)  # idle: parsers compacted, heap trimmed (every 5 s at most)
        load = benchlib.MachineLoad([p.pid] + [s.pid for s in servers]).start()
        rss = benchlib.rss_kib(p.pid)
        time.sleep(1)
        ld = load.stop()
        r = chatload_report(p, report, log_f)
    finally:
        for s in servers:
            s.stop()
    return {"clients": clients, "connected": r["connected_peak"], "all_connected": ok,
            "rss_kib": rss, "servers": nsrv, "dropped": r["dropped"], "load": ld}


def bench_rss(a, clients, tls, run):
    one = hold(a, 1, tls, run)
    many = hold(a, clients, tls, run)
    many["rss1_kib"] = one["rss_kib"]
    many["kib_per_client"] = (many["rss_kib"] - one["rss_kib"]) / (clients - 1)
    log("rss%s run %d: %s" % ("-tls" if tls else "", run, json.dumps(many)))
    return many


def bench_logins(a, clients, run):
    srv = Chatd(a, 99, clients + 100, False)
    try:
        p, report, log_f = chatload(a, [srv], ["--clients", clients, "--ramp", "1000000/s",
                                               "--duration", "600"], "logins-%d" % run)
        load = benchlib.MachineLoad([p.pid, srv.pid]).start()
        c0, s0 = benchlib.cpu_s(p.pid), benchlib.cpu_s(srv.pid)
        ok = wait_sessions([srv], clients, timeout=120)
        c1, s1 = benchlib.cpu_s(p.pid), benchlib.cpu_s(srv.pid)
        ld = load.stop()
        # chatd counts a session at bind, chatload once its version query
        # is answered: let the last ones arrive before ramp_s is read.
        time.sleep(2)
        r = chatload_report(p, report, log_f)
    finally:
        srv.stop()
    ramp = r["ramp_s"] or 0
    out = {"clients": clients, "all_connected": ok, "ramp_s": ramp,
           "logins_per_s": clients / ramp if ramp else None,
           "login_p50_ms": r["login_ms"]["p50"], "login_p99_ms": r["login_ms"]["p99"],
           "failures": r["login_failures"] + r["connect_failures"] + r["dropped"],
           "chatload_share": (c1 - c0) / ld["wall_s"], "chatd_share": (s1 - s0) / ld["wall_s"],
           "chatload_ms_per_login": (c1 - c0) * 1000 / clients, "load": ld}
    log("logins run %d: %s" % (run, json.dumps(out)))
    return out


def col(rows, key):
    return [r[key] for r in rows if r.get(key) is not None]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=15000)
    ap.add_argument("--tls-clients", type=int, default=3000)
    ap.add_argument("--login-clients", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="3000 / 500 / 2000 clients")
    ap.add_argument("which", nargs="*", default=["rss", "rss-tls", "logins"])
    a = ap.parse_args()
    if a.quick:
        a.clients, a.tls_clients, a.login_clients = 3000, 500, 2000
    for w in a.which:
        if w not in ("rss", "rss-tls", "logins"):
            sys.exit("chatload_bench: unknown figure %s" % w)
    a.build_arg = a.build
    a.build = os.path.join(ROOT, a.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a.tmp = tempfile.mkdtemp(prefix="rainbow-chatload-bench-")
    R = {}
    try:
        a.cert, a.key = xmpp.make_cert(a.tmp)
        for run in range(a.runs):
            if "rss" in a.which:
                R.setdefault("rss", []).append(bench_rss(a, a.clients, False, run))
            if "rss-tls" in a.which:
                R.setdefault("rss-tls", []).append(bench_rss(a, a.tls_clients, True, run))
            if "logins" in a.which:
                R.setdefault("logins", []).append(bench_logins(a, a.login_clients, run))
    finally:
        shutil.rmtree(a.tmp, ignore_errors=True)
    cmd = "python3 bench/chatload_bench.py --build %s" % a.build_arg
    L = ["chatload against chatd (`--auth-any --ping-interval 0`, non-sanitized build) on "
         "loopback, a fresh chatload and fresh chatd processes for every run; %d runs per "
         "figure, min / **median** / max. **RSS per client** = (chatload's VmRSS with N "
         "clients bound and idle − VmRSS of a fresh chatload holding 1 client) / (N − 1); "
         "the server side is split over chatd processes of at most %d sessions. "
         "**logins/s** = N / chatload's `ramp_s` with no ramp limit, wall clock, with the "
         "CPU shares of chatload and chatd over that span (of one core each)." % (
             a.runs, PER_CHATD), "", benchlib.LOAD_NOTE, "",
         "| figure | min / **median** / max | machine load | command |", "|---|---|---|---|"]
    for key, tls, n in (("rss", False, a.clients), ("rss-tls", True, a.tls_clients)):
        rs = R.get(key)
        if not rs:
            continue
        L.append("| %s clients connected of %d (dropped: %d) | %s | %s | `%s %s` |" % (
            "STARTTLS" if tls else "idle bound", n, sum(r["dropped"] for r in rs),
            benchlib.fmt3(col(rs, "connected"), "%.0f"), "-", cmd, key))
        L.append("| **chatload RSS per idle %s client** | %s | %s | `%s %s` |" % (
            "STARTTLS" if tls else "plaintext", benchlib.fmt3(col(rs, "kib_per_client"),
                                                            "%.2f", "KiB"),
            benchlib.fmt_load(col(rs, "load")), cmd, key))
    rs = R.get("logins")
    if rs:
        L.append("| logins/s, %d clients, no ramp limit (login p50 %.0f ms, p99 %.0f ms; "
                 "failures %d) | %s | %s | `%s logins` |" % (
                     a.login_clients, benchlib.summary(col(rs, "login_p50_ms"))["median"],
                     benchlib.summary(col(rs, "login_p99_ms"))["median"],
                     sum(r["failures"] for r in rs), benchlib.fmt3(col(rs, "logins_per_s"),
                                                                   "%.0f", "/s"),
                     benchlib.fmt_load(col(rs, "load")), cmd))
        L.append("| chatload CPU per login | %s | %s | `%s logins` |" % (
            benchlib.fmt3(col(rs, "chatload_ms_per_login"), "%.3f", "ms"),
            benchlib.fmt_load(col(rs, "load")), cmd))
        L.append("| CPU share of that span, chatload | %s | | |" % benchlib.fmt3(
            [100 * x for x in col(rs, "chatload_share")], "%.0f", "%"))
        L.append("| CPU share of that span, chatd | %s | | |" % benchlib.fmt3(
            [100 * x for x in col(rs, "chatd_share")], "%.0f", "%"))
    rt = R.get("rss-tls")
    if rt:
        med = benchlib.summary(col(rt, "kib_per_client"))["median"]
        L += ["", "| target (issue 12) | result (median) | command |", "|---|---|---|",
              "| chatload ≤ 10 KiB per TLS client | **%s** (median %.2f) | `%s rss-tls` |" % (
                  "met" if med <= 10 else "not met", med, cmd)]
    sys.stdout.write("\n".join(L) + "\n\n")
    bad = any(not r["all_connected"] for k in ("rss", "rss-tls") for r in R.get(k, []))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
