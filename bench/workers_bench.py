#!/usr/bin/env python3
"""chatload split over processes (issue 16): one run of 40,000 clients over
4 worker processes on this machine, every client messaging clients of any
worker, against chatd on loopback, next to a single process of 10,000.

  split   chatload --workers 4 --clients 40000 --source-ips (20 addresses:
          one address has 28,232 ports toward one server port) against a
          full mesh of chatd processes of at most 7,000 sessions each (so
          that a message between any two clients is routed), ramped at
          2,000/s, --message-rate 0.05 (2,000 messages/s in all). Once all
          are connected and 8 s idle, the RSS of each worker and of the
          parent (the accountant); then the run ends (SIGINT) and the
          merged report is checked against ground truth: its connections
          against the chatd processes' accepted connections, every one with
          one fate, every message sent delivered, bounced or lost, lost 0,
          messages across workers.
  single  a single chatload process holding 10,000 clients the same way
          (same rate, same chatd mesh), and a fresh one holding 1.

RSS per client, single process = (VmRSS with 10,000 - VmRSS of a fresh
chatload holding 1) / 9,999; per worker = (its VmRSS with its 10,000 -
VmRSS of the worker of a fresh --workers 1 run holding 1) / 9,999; the
accountant's growth per client of the run = (its VmRSS - VmRSS of the
parent of that --workers 1 run) / 39,999. Every figure is run --runs times (default 3) with fresh chatload and
chatd processes; min / median / max with the machine's load
(bench/lib/benchlib.py). Prints the Markdown section on stdout.

usage: bench/workers_bench.py [--build DIR] [--runs 3] [--clients 40000]
                              [--workers 4] [--quick]
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

PER_CHATD = 7000  # sessions per chatd, well under the open-files limit
RATE = 0.05  # messages per second per client
SOURCES = "127.0.0.2-127.0.0.21"


def log(*a):
    print("workers_bench:", *a, file=sys.stderr, flush=True)


def metric(http, name):
    st, body = harness.http_get("http://127.0.0.1:%d/metrics" % http)
    return harness.parse_metrics(body).get(name) if st == 200 else None


class Mesh:
    """n chatd processes, each linked to every other (cluster routing)."""

    def __init__(self, a, n):
        self.procs = []
        self.secret = os.path.join(a.tmp, "secret")
        with open(self.secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(self.secret, 0o600)
        cports = [harness.free_port() for _ in range(n)]
        for i in range(n):
            port, http = harness.free_port(), harness.free_port()
            peers = ",".join("127.0.0.1:%d" % c for j, c in enumerate(cports) if j != i)
            argv = [os.path.join(a.build, "chatd"), "--listen", "127.0.0.1:%d" % port,
                    "--http", "127.0.0.1:%d" % http, "--auth-any", "--log-level", "warn",
                    "--ping-interval", "0", "--max-connections", str(PER_CHATD + 100),
                    "--version-label", "bench", "--instance", "bench-%d" % i,
                    "--cluster-listen", "127.0.0.1:%d" % cports[i],
                    "--cluster-secret-file", self.secret]
            if peers:
                argv += ["--peers", peers]
            p = harness.Proc(argv, name="chatd-mesh-%d" % i)
            p.port, p.http = port, http
            self.procs.append(p)
        for p in self.procs:
            harness.wait_for(lambda p=p: harness.http_get(
                "http://127.0.0.1:%d/readyz" % p.http)[0] == 200, 30, what="chatd ready")
        harness.wait_for(lambda: all(metric(p.http, "chatd_cluster_peers") == n - 1
                                     for p in self.procs), 30, what="chatd mesh linked")

    def sessions(self):
        return sum(metric(p.http, "chatd_sessions") or 0 for p in self.procs)

    def accepted(self):
        return sum(metric(p.http, "chatd_connections_accepted_total") or 0 for p in self.procs)

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.stop(signal.SIGINT, 30)
            shutil.rmtree(p.dir, ignore_errors=True)


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def hold(a, clients, workers, name):
    """A fresh chatload (with `workers` worker processes, or 0) holding
    `clients` talking clients through a fresh chatd mesh: RSS of each
    process once all are connected and idle, then the report after its end."""
    mesh = Mesh(a, max(1, -(-clients // PER_CHATD)))
    report = os.path.join(a.tmp, name + ".json")
    argv = [os.path.join(a.build, "chatload"), "--quiet", "--ping-interval", "0",
            "--report", report, "--clients", str(clients), "--ramp", "2000/s",
            "--message-rate", str(RATE), "--duration", "600",
            "--source-ips", SOURCES, "--expect-zero-loss"]
    if workers:
        argv += ["--workers", str(workers)]
    for p in mesh.procs:
        argv += ["--server", "127.0.0.1:%d" % p.port]
    log_f = open(os.path.join(a.tmp, name + ".log"), "wb")
    try:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=log_f, stderr=log_f)
        deadline = t0 + clients / 1000 + 60
        while time.monotonic() < deadline and mesh.sessions() < clients:
            time.sleep(0.5)
        connected = mesh.sessions()
        time.sleep(8)  # idle between messages: parsers compacted, heap trimmed
        kids = children(p.pid)
        load = benchlib.MachineLoad([p.pid] + kids + mesh.pids()).start()
        rss = {"parent": benchlib.rss_kib(p.pid), "workers": [benchlib.rss_kib(k) for k in kids]}
        cpu0 = sum(benchlib.cpu_s(x) for x in [p.pid] + kids)
        time.sleep(2)
        cpu1 = sum(benchlib.cpu_s(x) for x in [p.pid] + kids)
        parent_cpu = benchlib.cpu_s(p.pid)
        ld = load.stop()
        p.send_signal(signal.SIGINT)  # the end of the run: settle, log out, report
        rc = p.wait(timeout=180)
        log_f.close()
        harness.wait_for(lambda: mesh.sessions() == 0, 60, what="sessions closed")
        accepted = mesh.accepted()
        with open(report) as f:
            r = json.load(f)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        mesh.stop()
    out = {"clients": clients, "workers": workers, "rc": rc, "connected": connected,
           "rss": rss, "load": ld, "chatd_accepted": accepted,
           "chatload_cpu_share": (cpu1 - cpu0) / 2.0, "parent_cpu_s": parent_cpu,
           "report": {k: r[k] for k in (
               "connections", "logins", "closed_by_client", "closed_by_server_total",
               "dropped", "connect_failures", "login_failures", "ping_timeouts",
               "messages_sent", "messages_delivered", "messages_lost", "messages_bounced",
               "messages_duplicated", "messages_misdelivered", "messages_foreign",
               "messages_cross_worker", "workers_failed", "ok", "latency_ms")}}
    log("%s: %s" % (name, json.dumps(out)))
    return out


def exact(run):
    """The merged report against ground truth: True when it all adds up."""
    r = run["report"]
    fates = (r["closed_by_client"] + r["closed_by_server_total"] + r["dropped"] +
             r["connect_failures"] + r["login_failures"] + r["ping_timeouts"])
    settled = r["messages_delivered"] + r["messages_lost"] + r["messages_bounced"]
    return (r["connections"] == run["chatd_accepted"] == fates and
            r["logins"] >= run["clients"] and settled == r["messages_sent"] and
            r["messages_lost"] == 0 and r["messages_misdelivered"] == 0 and
            r["workers_failed"] == 0 and r["ok"] is True and run["rc"] == 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=40000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="8,000 clients over 4 workers")
    a = ap.parse_args()
    if a.quick:
        a.clients = 8000
    per = a.clients // a.workers
    a.build_arg = a.build
    a.build = os.path.join(ROOT, a.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a.tmp = tempfile.mkdtemp(prefix="rainbow-workers-bench-")
    single, split = [], []
    try:
        for run in range(a.runs):
            one = hold(a, 1, 0, "one-%d" % run)
            s = hold(a, per, 0, "single-%d" % run)
            s["kib_per_client"] = (s["rss"]["parent"] - one["rss"]["parent"]) / (per - 1)
            single.append(s)
            base = hold(a, 1, 1, "base-%d" % run)
            w = hold(a, a.clients, a.workers, "split-%d" % run)
            w["kib_per_client"] = [(x - base["rss"]["workers"][0]) / (per - 1)
                                   for x in w["rss"]["workers"]]
            w["acct_kib_per_client"] = (w["rss"]["parent"] - base["rss"]["parent"]) / (
                a.clients - 1)
            w["total_kib_per_client"] = (
                sum(w["rss"]["workers"]) + w["rss"]["parent"] -
                a.workers * base["rss"]["workers"][0] - base["rss"]["parent"]) / a.clients
            split.append(w)
    finally:
        shutil.rmtree(a.tmp, ignore_errors=True)

    def col(rows, f):
        return [f(r) for r in rows]
    cmd = "python3 bench/workers_bench.py --build %s%s" % (a.build_arg,
                                                          " --quick" if a.quick else "")
    x = lambda r: r["report"]["messages_cross_worker"]  # noqa: E731
    L = ["One chatload run of %d clients over %d worker processes on this machine "
         "(`--workers %d --source-ips %s`), every client sending %.2f messages/s to clients "
         "of any worker, against a full mesh of chatd processes (cluster routing, at most "
         "%d sessions each, `--auth-any --ping-interval 0`, non-sanitized build) on "
         "loopback, next to a single chatload process holding %d clients the same way; "
         "fresh chatload and chatd processes for every run; %d runs, min / **median** / "
         "max. **RSS per client** = (the process's VmRSS with its clients connected and "
         "idle between messages − VmRSS of the same kind of process, fresh, holding 1 "
         "client: a single chatload, or the worker of a `--workers 1` run) / (its clients "
         "− 1); the **accountant** (the parent, which settles every message and hands out "
         "targets) = (its VmRSS − that of the parent of the `--workers 1` run) / (all "
         "clients − 1). **Exact** = the merged report's "
         "connections equal the chatd processes' accepted connections and the sum of the "
         "fates, every message sent is delivered, bounced or lost, none lost or "
         "misdelivered, no worker failed, ok." % (
             a.clients, a.workers, a.workers, SOURCES, RATE, PER_CHATD, per, a.runs), "",
         benchlib.LOAD_NOTE, "",
         "| figure | min / **median** / max | machine load | command |", "|---|---|---|---|"]
    L.append("| merged report exact (runs) | %d of %d | | `%s` |" % (
        sum(exact(r) for r in split), len(split), cmd))
    L.append("| clients connected at once, split run | %s | %s | `%s` |" % (
        benchlib.fmt3(col(split, lambda r: r["connected"]), "%.0f"),
        benchlib.fmt_load(col(split, lambda r: r["load"])), cmd))
    for label, f in (("messages sent", lambda r: r["report"]["messages_sent"]),
                     ("… of them across workers", lambda r: x(r)["sent"]),
                     ("… delivered", lambda r: r["report"]["messages_delivered"]),
                     ("… bounced", lambda r: r["report"]["messages_bounced"]),
                     ("… lost", lambda r: r["report"]["messages_lost"])):
        L.append("| %s, split run | %s | | |" % (label, benchlib.fmt3(col(split, f), "%.0f")))
    L.append("| message latency p99, split run | %s | | |" % benchlib.fmt3(
        col(split, lambda r: r["report"]["latency_ms"]["p99"]), "%.1f", "ms"))
    L.append("| **chatload RSS per client, single process (%d)** | %s | %s | `%s` |" % (
        per, benchlib.fmt3(col(single, lambda r: r["kib_per_client"]), "%.2f", "KiB"),
        benchlib.fmt_load(col(single, lambda r: r["load"])), cmd))
    L.append("| **chatload RSS per client, each worker of the split run (%d)** | %s | %s | "
             "`%s` |" % (per, benchlib.fmt3([v for r in split for v in r["kib_per_client"]],
                                           "%.2f", "KiB"),
                         benchlib.fmt_load(col(split, lambda r: r["load"])), cmd))
    L.append("| accountant RSS per client of the run | %s | | |" % benchlib.fmt3(
        col(split, lambda r: r["acct_kib_per_client"]), "%.3f", "KiB"))
    L.append("| chatload RSS per client, all processes of the split run | %s | | |" % (
        benchlib.fmt3(col(split, lambda r: r["total_kib_per_client"]), "%.2f", "KiB")))
    L.append("| chatload CPU share (of one core) holding %d clients, single process | %s | "
             "| |" % (per, benchlib.fmt3(col(single, lambda r: 100 * r["chatload_cpu_share"]),
                                         "%.0f", "%")))
    L.append("| chatload CPU share (of one core) holding %d clients, all processes of the "
             "split run | %s | | |" % (a.clients, benchlib.fmt3(
                 col(split, lambda r: 100 * r["chatload_cpu_share"]), "%.0f", "%")))
    sys.stdout.write("\n".join(L) + "\n\n")
    return 0 if all(exact(r) for r in split) else 1


if __name__ == "__main__":
    sys.exit(main())
