#!/usr/bin/env python3
"""The local platform at scale (real chatd, chatload and rainbow; the plain
optimized build):

  stalled   switch memory per client that stops reading while its backend
            floods it: RSS growth of the switch with N such clients, and
            again after they closed and N new ones stalled (no growth
            wanted); the target is at most 256 KiB each
  scale     N connected, messaging chatload clients (with --lifetime churn)
            through three deploys and a rollback on a local platform with
            several switch processes (SO_REUSEPORT): dropped connections and
            lost messages (0 wanted), the switch's CPU per connection-second
            and memory per connection, rainbow's own CPU, each old colour's
            drain time

Usage: bench/scale_bench.py [--build DIR] [--clients N] [--quick] [stalled|scale|all]
Progress lines go to stderr; stdout is a Markdown section (bench/run.sh puts
it into docs/benchmarks.md). Bounded: chatload runs with --duration, every
wait has a deadline; `scale` at 40,000 clients takes about 10 minutes.
"""
import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import benchlocal  # noqa: E402

PER_SWITCH = 9744  # (20,000 - 512) / 2: one switch process's budget
PER_CHATD = 10000  # clients one replica is given at most here


def log(msg):
    print("scale_bench: " + msg, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Local(benchlocal.LocalPlatform):
    """A local platform in a temp state dir, torn down at the end."""

    def __init__(self, build, switches=1):
        super().__init__(build, "rb-scale-", up_args=("--switches", str(switches)),
                         timeout=900, preexec_fn=raise_nofile)

    def ctl(self, line):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(os.path.join(self.state, "switch.sock"))
        try:
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                d = s.recv(1 << 16)
                if not d:
                    break
                data += d
        finally:
            s.close()
        return data.decode()

    def status(self):
        reply = self.ctl("status")
        if not reply.startswith("ok "):
            raise RuntimeError("switch status: " + reply)
        return json.loads(reply[3:])

    def switch_pids(self):
        return [w["pid"] for w in self.status()["switches"] if w["pid"] > 0]



# ---- stalled: memory per client that does not read ---------------------------------

class Flood:
    """A backend that sends without end to every client ("flood" protocol of
    the switch test): it blocks once the kernel buffers are full."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        benchlocal.serve_threads(self.sock, self._serve, lambda: not self.stop)

    def _serve(self, c):
        chunk = b"x" * 65536
        try:
            while not self.stop:
                c.sendall(chunk)
        except OSError:
            pass
        finally:
            c.close()


def steady_rss(pid):
    last = benchlib.rss_kib(pid)
    for _ in range(60):
        time.sleep(0.25)
        now = benchlib.rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def settle_queued(plat, n):
    """Waits until every stalled proxy holds its mark (queued bytes stop growing)."""
    last, deadline = -1, time.time() + 120
    while time.time() < deadline:
        time.sleep(1)
        q = plat.status()["queued_bytes"]
        if q == last or q >= n * 128 * 1024:
            return q
        last = q
    return last


def stall(port, n):
    cs = []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.connect(("127.0.0.1", port))
        cs.append(c)
    return cs


def bench_stalled(build, n):
    plat = Local(build)
    flood = Flood()
    try:
        if not plat.ctl("select aaaaaaa " + flood.addr).startswith("ok"):
            raise RuntimeError("select failed")
        pid = plat.status()["pid"]
        base = steady_rss(pid)
        wave = stall(plat.port, n)
        queued = settle_queued(plat, n)
        first = steady_rss(pid)
        log("stalled: %d clients, RSS %d -> %d KiB, %d bytes queued" % (n, base, first, queued))
        for c in wave:
            c.close()
        deadline = time.time() + 60
        while plat.status()["connections"] and time.time() < deadline:
            time.sleep(0.2)
        after = steady_rss(pid)
        wave = stall(plat.port, n)
        second = steady_rss(pid)
        for c in wave:
            c.close()
        log("stalled: closed, RSS %d KiB; a second wave: %d KiB" % (after, second))
    finally:
        flood.stop = True
        flood.sock.close()
        plat.close()
    per = (first - base) / n
    return {"n": n, "base": base, "first": first, "after": after, "second": second,
            "per_kib": per, "queued_per_kib": queued / 1024 / n,
            "growth_kib": second - first}


# ---- scale: N clients through three deploys and a rollback ---------------------------

class Sampler(threading.Thread):
    """Every second: the switch's connections and its processes' CPU and RSS."""

    def __init__(self, plat):
        super().__init__(daemon=True)
        self.plat = plat
        self.stop = False
        self.rows = []  # (t, connections, cpu_s of every switch process, rss KiB)
        self.conn_seconds = 0.0
        self.peak = (0, 0)  # (connections, rss KiB) at the most connections
        self.cpu = {}  # pid -> (first cpu, last cpu)

    def run(self):
        last_t = None
        last_c = 0
        while not self.stop:
            t = time.time()
            try:
                st = self.plat.status()
            except (OSError, RuntimeError, ValueError):
                time.sleep(1)
                continue
            pids = [w["pid"] for w in st["switches"] if w["pid"] > 0]
            rss = 0
            for pid in pids:
                try:
                    cpu = benchlib.cpu_s(pid)
                    rss += benchlib.rss_kib(pid)
                except OSError:
                    continue
                first = self.cpu.get(pid, (cpu, cpu))[0]
                self.cpu[pid] = (first, cpu)
            conns = st["connections"]
            if last_t is not None:
                self.conn_seconds += (t - last_t) * (conns + last_c) / 2
            last_t, last_c = t, conns
            if conns > self.peak[0]:
                self.peak = (conns, rss)
            self.rows.append((t, conns, rss))
            time.sleep(1)

    def switch_cpu(self):
        return sum(b - a for a, b in self.cpu.values())


def run_rainbow(plat, *args):
    """A rainbow command; returns (its output, the CPU seconds it used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    r = plat.rb(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log("rainbow %s: %.1f s, %.2f CPU s" % (" ".join(args[:2]), time.time() - t0, cpu))
    return r.stdout, cpu, time.time() - t0


def bench_scale(build, n, rate, lifetime, ramp):
    switches = max(1, math.ceil(n * 1.2 / PER_SWITCH))
    replicas = max(1, math.ceil(n / PER_CHATD))
    workers = max(1, math.ceil(n / 15000))
    ips = max(1, math.ceil(n / 20000))
    drain = ["--settle", "2s", "--ready-timeout", "120s", "--max-drain", "10m"]
    log("scale: %d clients, %d switch processes, %d replicas a colour, %d chatload "
        "workers, %d source addresses" % (n, switches, replicas, workers, ips))
    plat = Local(build, switches)
    load = None
    out = {"n": n, "switches": switches, "replicas": replicas, "workers": workers,
           "rate": rate, "lifetime": lifetime, "ramp": ramp, "rainbow_cpu": 0.0,
           "rainbow_s": 0.0, "steps": []}
    try:
        _, cpu, secs = run_rainbow(plat, "deploy", "aaaaaaa", "-r", str(replicas), *drain)
        out["rainbow_cpu"] += cpu
        out["rainbow_s"] += secs
        sampler = Sampler(plat)
        sampler.start()
        report = os.path.join(plat.state, "chatload.json")
        ramp_s = n / ramp
        duration = 3600  # ended with SIGINT after the rollback; a bound, not a plan
        load = subprocess.Popen(
            [os.path.join(build, "chatload"), "--server", plat.listen, "--clients", str(n),
             "--ramp", "%d/s" % ramp, "--workers", str(workers), "--source-ips",
             "127.0.0.2-127.0.0.%d" % (1 + ips), "--message-rate", str(rate), "--lifetime",
             lifetime, "--loss-timeout", "30s", "--duration", str(duration), "--quiet",
             "--report", report,
             "--expect-zero-drops", "--expect-zero-loss"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        deadline = time.time() + ramp_s + 180
        while time.time() < deadline and plat.status()["connections"] < n * 0.98:
            if load.poll() is not None:
                raise RuntimeError("chatload ended early: " + load.stderr.read()[-2000:])
            time.sleep(1)
        out["connected_at_ramp"] = plat.status()["connections"]
        log("scale: %d connected" % out["connected_at_ramp"])
        # Two deploys that do not wait (their old colours drain side by side), a
        # third that waits for every old colour to drain and keeps the last one,
        # and a rollback to it that waits for the third to drain: four colours
        # drained, in about two client lifetimes.
        steps = [("deploy", "bbbbbbb", ["--no-wait"], 20), ("deploy", "ccccccc", ["--no-wait"], 20),
                 ("deploy", "ddddddd", [], 0), ("rollback", None, [], 0)]
        for kind, sha, extra, pause in steps:
            args = ["deploy", sha, "-r", str(replicas)] if kind == "deploy" else ["rollback"]
            stdout, cpu, secs = run_rainbow(plat, *args, *drain, "--keep-drained", "1", *extra)
            out["rainbow_cpu"] += cpu
            out["rainbow_s"] += secs
            out["steps"].append({"kind": kind + (" --no-wait" if extra else ""), "sha": sha,
                                 "seconds": secs, "cpu": cpu,
                                 "connections": plat.status()["connections"]})
            time.sleep(pause)
        load.send_signal(2)
        load.wait(timeout=180)
        sampler.stop = True
        sampler.join(10)
        with open(report) as f:
            rep = json.load(f)
        st = plat.status()
        rec = plat.record()
        # What each colour held when it was deselected (the select that replaced it).
        drain_from = {e["deselected"]: e.get("deselected_connections", "?") for e in rec
                      if e.get("event") == "select" and e.get("deselected")}
        out.update({
            "chatload_rc": load.returncode, "dropped": rep.get("dropped"),
            "messages_lost": rep.get("messages_lost"),
            "messages_delivered": rep.get("messages_delivered"),
            "messages_sent": rep.get("messages_sent"), "logins": rep.get("logins"),
            "connect_failures": rep.get("connect_failures"),
            "login_failures": rep.get("login_failures"),
            "closed_by_server": rep.get("closed_by_server_total"),
            "closed_by_server_why": rep.get("closed_by_server"),
            "dropped_why": rep.get("dropped_by_reason"),
            "latency": rep.get("latency_ms") or {}, "login_ms": rep.get("login_ms") or {},
            "refused": st["refused"], "refused_limit": st["refused_limit"],
            "switch_failed": st["failed"],
            "switch_cpu": sampler.switch_cpu(), "conn_seconds": sampler.conn_seconds,
            "peak_connections": sampler.peak[0], "peak_rss_kib": sampler.peak[1],
            "idle_rss_kib": sampler.rows[0][2] if sampler.rows else 0,
            "drains": [(e["sha"], e.get("drain_ms", 0) / 1000.0, drain_from.get(e["sha"], "?"))
                       for e in rec if e.get("event") in ("remove", "scale")
                       and e.get("why") == "drained"],
            "restarts": [e for e in rec if e.get("event") in ("restart", "crash")],
        })
    finally:
        if load and load.poll() is None:
            load.kill()
        plat.close()
    return out


def md_stalled(s):
    return "\n".join([
        "**Memory per stalled client** (a client that stops reading while its backend",
        "floods it; the switch's RSS, plain build):",
        "",
        "| stalled clients | switch RSS before | with them | per client | after they closed "
        "| a second wave | growth over the first |",
        "|---|---|---|---|---|---|---|",
        "| %d | %d KiB | %d KiB | **%.0f KiB** (target ≤ 256 KiB; queued: %.0f KiB) | %d KiB "
        "| %d KiB | %+d KiB |" % (s["n"], s["base"], s["first"], s["per_kib"],
                               s["queued_per_kib"], s["after"], s["second"], s["growth_kib"]),
        ""])


def md_scale(r):
    cps = r["switch_cpu"] / r["conn_seconds"] if r["conn_seconds"] else 0
    mem = ((r["peak_rss_kib"] - r["idle_rss_kib"]) / r["peak_connections"]
           if r["peak_connections"] else 0)
    ok = (r["dropped"] == 0 and r["messages_lost"] == 0 and r["refused_limit"] == 0)
    lines = [
        "**%d connected, messaging clients through three deploys and a rollback** "
        "(chatload: %d workers, --ramp %d/s, --message-rate %s, --lifetime %s; "
        "%d switch processes, %d replicas a colour): **%s**" % (
            r["n"], r["workers"], r["ramp"], r["rate"], r["lifetime"], r["switches"],
            r["replicas"], "clean" if ok else "NOT clean"),
        "",
        "| figure | value |",
        "|---|---|",
        "| dropped connections / lost messages | %s / %s |" % (r["dropped"], r["messages_lost"]),
        "| logins / messages delivered | %s / %s |" % (r["logins"], r["messages_delivered"]),
        "| connect failures / login failures / closed by the server | %s / %s / %s |" % (
            r["connect_failures"], r["login_failures"], r["closed_by_server"]),
        "| message latency p50 / p99 / max (a message not delivered in 30 s is lost) | "
        "%.0f / %.0f / %.0f ms |" % (r["latency"].get("p50", 0), r["latency"].get("p99", 0),
                                     r["latency"].get("max", 0)),
        "| login p50 / p99 / max (TCP connect to session) | %.0f / %.0f / %.0f ms |" % (
            r["login_ms"].get("p50", 0), r["login_ms"].get("p99", 0),
            r["login_ms"].get("max", 0)),
        "| why dropped / why closed by the server | %s / %s |" % (
            json.dumps(r["dropped_why"]), json.dumps(r["closed_by_server_why"])),
        "| switch refusals (no ready replica / descriptor budget) / failed connects | "
        "%d / %d / %d |" % (r["refused"], r["refused_limit"], r["switch_failed"]),
        "| most connections through the switch | %d |" % r["peak_connections"],
        "| switch CPU per connection-second (all switch processes) | %.1f µs "
        "(%.0f CPU s over %.0f connection-seconds) |" % (cps * 1e6, r["switch_cpu"],
                                                       r["conn_seconds"]),
        "| switch memory per connection | %.2f KiB (RSS %d KiB idle, %d KiB at %d "
        "connections) |" % (mem, r["idle_rss_kib"], r["peak_rss_kib"], r["peak_connections"]),
        "| rainbow's own CPU (every deploy and the rollback) | %.2f CPU s in %.0f s "
        "(%.2f %% of one core) |" % (r["rainbow_cpu"], r["rainbow_s"],
                                     100 * r["rainbow_cpu"] / r["rainbow_s"]
                                     if r["rainbow_s"] else 0),
        "| replica restarts / crashes | %d |" % len(r["restarts"]),
        "",
        "| step | took | connections after |",
        "|---|---|---|",
    ]
    for s in r["steps"]:
        lines.append("| %s %s | %.0f s | %d |" % (s["kind"], s["sha"] or "(to the last "
                                                 "drained)", s["seconds"], s["connections"]))
    lines += ["", "| colour drained | drain time | connections when deselected |",
              "|---|---|---|"]
    for sha, secs, conns in r["drains"]:
        lines.append("| chat-%s | %.1f s | %s |" % (sha, secs, conns))
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--clients", type=int, default=40000)
    ap.add_argument("--stalled", type=int, default=200)
    ap.add_argument("--rate", default="0.01")
    ap.add_argument("--lifetime", default="uniform:120s-240s")
    ap.add_argument("--ramp", type=int, default=1000)
    ap.add_argument("--quick", action="store_true",
                    help="5,000 clients living 20-60 s, 100 stalled")
    ap.add_argument("what", nargs="?", default="all", choices=["stalled", "scale", "all"])
    a = ap.parse_args()
    if a.quick:
        a.clients, a.stalled, a.lifetime = 5000, 100, "uniform:20s-60s"
    raise_nofile()
    print("Where the local platform holds many connections: several switch processes on")
    print("one port, memory per connection bounded, old colours drained to the end")
    print("(bench/scale_bench.py; docs/rainbow.md, \"The local platform\").")
    print()
    rc = 0
    if a.what in ("stalled", "all"):
        s = bench_stalled(a.build, a.stalled)
        print(md_stalled(s))
        if s["per_kib"] > 256:
            rc = 1
    if a.what in ("scale", "all"):
        r = bench_scale(a.build, a.clients, a.rate, a.lifetime, a.ramp)
        print(md_scale(r))
        if r["dropped"] != 0 or r["messages_lost"] != 0:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
