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

Each phase runs --runs times (3 unless told), every run on a fresh platform
(its own switch processes, chatd replicas and chatload); each figure is
given as min / median / max over the runs, with the clean verdict of every
run and the machine's load while each phase ran (benchlib.MachineLoad: the
share of the cores busy, the part of it not spent by the phase's own
processes, the load average).

Usage: bench/scale_bench.py [--build DIR] [--runs N] [--clients N] [--quick]
                            [stalled|scale|all]
Progress lines go to stderr; stdout is a Markdown section (bench/run.sh puts
it into docs/benchmarks.md). Bounded: chatload runs with --duration, every
wait has a deadline; a run of `scale` at 40,000 clients takes about 10
minutes, the default (3 runs of each phase) about 35.
"""
import argparse
import json
import math
import os
import resource
import signal
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


class PhaseLoad(benchlib.MachineLoad):
    """The machine's load over a run of a phase. The phase's own processes
    are this script and what own() counts: the CPU the others (switch
    processes, chatd replicas that come and go, chatload and its workers)
    spent since start(), as the phase's sampler saw it."""

    def __init__(self, own):
        super().__init__([os.getpid()])
        self.own_fn = own

    def _own(self):
        # this script's threads (the flood's) end before the run does: its
        # rusage keeps what they spent
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime + self.own_fn()



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
        cpu0 = sum(benchlib.cpu_s(p) for p in plat.switch_pids())
        # the switch processes live over the whole run; the flood is this script
        machine = PhaseLoad(lambda: sum(benchlib.cpu_s(p) for p in plat.switch_pids()) - cpu0)
        machine.start()
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
        machine = machine.stop()
        log("stalled: closed, RSS %d KiB; a second wave: %d KiB" % (after, second))
    finally:
        flood.stop = True
        flood.sock.close()
        plat.close()
    per = (first - base) / n
    return {"n": n, "base": base, "first": first, "after": after, "second": second,
            "per_kib": per, "queued_per_kib": queued / 1024 / n,
            "growth_kib": second - first, "machine": machine}


# ---- scale: N clients through three deploys and a rollback ---------------------------

def children(pid):
    """The processes whose parent is pid (chatload's workers)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rfind(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


class Sampler(threading.Thread):
    """Every second: the switch's connections and its processes' CPU and RSS;
    and the CPU of the run's other processes (chatd replicas, chatload and its
    workers: load_pid) for the machine's load."""

    def __init__(self, plat, load_pid=None):
        super().__init__(daemon=True)
        self.plat = plat
        self.load_pid = load_pid
        self.stop = False
        self.rows = []  # (t, connections, cpu_s of every switch process, rss KiB)
        self.conn_seconds = 0.0
        self.peak = (0, 0)  # (connections, rss KiB) at the most connections
        self.cpu = {}  # pid -> (first cpu, last cpu)
        self.other = {}  # the same for replicas, chatload and its workers
        self.lock = threading.Lock()

    def own_cpu(self):
        """CPU seconds every process of the run spent while sampled."""
        with self.lock:
            return sum(b - a for a, b in list(self.cpu.values()) + list(self.other.values()))

    def _others(self, st):
        pids = [r["pid"] for c in st.get("colours", []) for r in c.get("replicas", [])
                if r.get("pid", 0) > 0]
        if self.load_pid:
            pids += [self.load_pid] + children(self.load_pid)
        for pid in pids:
            try:
                cpu = benchlib.cpu_s(pid)
            except OSError:
                continue
            with self.lock:
                self.other[pid] = (self.other.get(pid, (cpu, cpu))[0], cpu)

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
                with self.lock:
                    self.cpu[pid] = (self.cpu.get(pid, (cpu, cpu))[0], cpu)
            self._others(st)
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
        machine = PhaseLoad(sampler.own_cpu).start()
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
        sampler.load_pid = load.pid
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
        load_err = load.communicate(timeout=180)[1]
        out["machine"] = machine.stop()
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
            "chatload_rc": load.returncode, "chatload_err": (load_err or "")[-300:],
            "dropped": rep.get("dropped"),
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


def f3(runs, key, fmt="%.0f", unit=""):
    """min / median / max of a figure over the runs (key: a name or a function)."""
    get = key if callable(key) else (lambda r: r.get(key))
    return benchlib.fmt3([get(r) for r in runs], fmt, unit)


def verdicts(runs, why):
    """'clean 3 of 3', or which runs were not and why (why(run): a list of reasons)."""
    bad = [(i + 1, why(r)) for i, r in enumerate(runs) if why(r)]
    head = "clean %d of %d" % (len(runs) - len(bad), len(runs))
    if not bad:
        return "**%s**" % head
    return "**%s**; not clean: %s" % (head, "; ".join(
        "run %d: %s" % (i, ", ".join(w)) for i, w in bad))


def stalled_why(s):
    if "error" in s:
        return ["failed (%s)" % s["error"]]
    return ["%.0f KiB per stalled client (target ≤ 256 KiB)" % s["per_kib"]] \
        if s["per_kib"] > 256 else []


def md_stalled(runs):
    ok = [s for s in runs if "error" not in s]
    n = ok[0]["n"] if ok else "?"
    return "\n".join([
        "**Memory per stalled client** (%s clients that stop reading while their backend "
        "floods them; the switch's RSS, plain build; %d runs, each on a fresh platform, "
        "min / **median** / max): %s" % (n, len(runs), verdicts(runs, stalled_why)),
        "",
        "| figure | min / **median** / max |",
        "|---|---|",
        "| switch RSS before | %s |" % f3(ok, "base", "%.0f", "KiB"),
        "| with them | %s |" % f3(ok, "first", "%.0f", "KiB"),
        "| **per stalled client** (target ≤ 256 KiB) | %s |" % f3(ok, "per_kib", "%.0f", "KiB"),
        "| queued in the switch per client | %s |" % f3(ok, "queued_per_kib", "%.0f", "KiB"),
        "| after they closed | %s |" % f3(ok, "after", "%.0f", "KiB"),
        "| a second wave of as many | %s |" % f3(ok, "second", "%.0f", "KiB"),
        "| growth of the second wave over the first (none wanted) | %s |"
        % f3(ok, "growth_kib", "%+.0f", "KiB"),
        "| machine load | %s |" % benchlib.fmt_load([s["machine"] for s in ok]),
        ""])


def scale_why(r):
    if "error" in r:
        return ["failed (%s)" % r["error"]]
    w = []
    if r["dropped"] != 0:
        w.append("%s dropped %s" % (r["dropped"], json.dumps(r["dropped_why"])))
    if r["messages_lost"] != 0:
        w.append("%s messages lost" % r["messages_lost"])
    if r["refused_limit"] != 0:
        w.append("%d refused for the descriptor budget" % r["refused_limit"])
    if r["chatload_rc"] != 0:
        w.append("chatload exited %s (%s)" % (r["chatload_rc"], r["chatload_err"].strip()
                                               .replace("\n", " ").replace("|", "/")))
    return w


def cps_us(r):
    return 1e6 * r["switch_cpu"] / r["conn_seconds"] if r["conn_seconds"] else None


def mem_per_conn(r):
    return ((r["peak_rss_kib"] - r["idle_rss_kib"]) / r["peak_connections"]
            if r["peak_connections"] else None)


def md_scale(runs):
    ok = [r for r in runs if "error" not in r]
    r0 = ok[0] if ok else {}
    lat = lambda k: (lambda r: r["latency"].get(k))  # noqa: E731
    login = lambda k: (lambda r: r["login_ms"].get(k))  # noqa: E731
    lines = [
        "**%s connected, messaging clients through three deploys and a rollback** "
        "(chatload: %s workers, --ramp %s/s, --message-rate %s, --lifetime %s; "
        "%s switch processes, %s replicas a colour; %d runs, each on a fresh platform, "
        "min / **median** / max): %s" % (
            r0.get("n", "?"), r0.get("workers", "?"), r0.get("ramp", "?"), r0.get("rate", "?"),
            r0.get("lifetime", "?"), r0.get("switches", "?"), r0.get("replicas", "?"),
            len(runs), verdicts(runs, scale_why)),
        "",
        "| figure | min / **median** / max |",
        "|---|---|",
        "| dropped connections | %s |" % f3(ok, "dropped"),
        "| lost messages | %s |" % f3(ok, "messages_lost"),
        "| logins | %s |" % f3(ok, "logins"),
        "| messages delivered | %s |" % f3(ok, "messages_delivered"),
        "| connect failures | %s |" % f3(ok, "connect_failures"),
        "| login failures | %s |" % f3(ok, "login_failures"),
        "| closed by the server | %s |" % f3(ok, "closed_by_server"),
        "| message latency p50 (a message not delivered in 30 s is lost) | %s |"
        % f3(ok, lat("p50"), "%.0f", "ms"),
        "| message latency p99 | %s |" % f3(ok, lat("p99"), "%.0f", "ms"),
        "| message latency max | %s |" % f3(ok, lat("max"), "%.0f", "ms"),
        "| login p50 (TCP connect to session) | %s |" % f3(ok, login("p50"), "%.0f", "ms"),
        "| login p99 | %s |" % f3(ok, login("p99"), "%.0f", "ms"),
        "| login max | %s |" % f3(ok, login("max"), "%.0f", "ms"),
        "| switch refusals: no ready replica | %s |" % f3(ok, "refused"),
        "| switch refusals: descriptor budget | %s |" % f3(ok, "refused_limit"),
        "| switch: failed connects to a replica | %s |" % f3(ok, "switch_failed"),
        "| most connections through the switch | %s |" % f3(ok, "peak_connections"),
        "| **switch CPU per connection-second** (all switch processes) | %s |"
        % f3(ok, cps_us, "%.1f", "µs"),
        "| switch CPU over the run | %s |" % f3(ok, "switch_cpu", "%.0f", "CPU s"),
        "| connection-seconds through the switch | %s |" % f3(ok, "conn_seconds"),
        "| **switch memory per connection** | %s |" % f3(ok, mem_per_conn, "%.2f", "KiB"),
        "| switch RSS idle (all switch processes) | %s |" % f3(ok, "idle_rss_kib", "%.0f", "KiB"),
        "| switch RSS at the most connections | %s |" % f3(ok, "peak_rss_kib", "%.0f", "KiB"),
        "| rainbow's own CPU (every deploy and the rollback) | %s |"
        % f3(ok, "rainbow_cpu", "%.2f", "CPU s"),
        "| rainbow's time (every deploy and the rollback) | %s |"
        % f3(ok, "rainbow_s", "%.0f", "s"),
        "| rainbow's share of one core | %s |"
        % f3(ok, lambda r: 100 * r["rainbow_cpu"] / r["rainbow_s"] if r["rainbow_s"] else None,
             "%.2f", "%"),
        "| replica restarts / crashes | %s |" % f3(ok, lambda r: len(r["restarts"])),
        "| machine load (from the first deploy to chatload's end) | %s |"
        % benchlib.fmt_load([r["machine"] for r in ok]),
        "",
        "| step | took | connections after |",
        "|---|---|---|",
    ]
    for i, s in enumerate(r0.get("steps", [])):
        steps = [r["steps"][i] for r in ok if len(r["steps"]) > i]
        lines.append("| %s %s | %s | %s |" % (
            s["kind"], s["sha"] or "(to the last drained)",
            benchlib.fmt3([x["seconds"] for x in steps], "%.0f", "s"),
            benchlib.fmt3([x["connections"] for x in steps], "%.0f")))
    # Each colour in the order it was deployed (the sequence is the same in
    # every run): its drain time and what it held when it was deselected.
    order = []
    for r in ok:
        for sha in ["aaaaaaa"] + [s["sha"] for s in r["steps"] if s["sha"]]:
            if sha not in order:
                order.append(sha)
    lines += ["", "| colour drained (in deploy order) | drained in | runs | "
              "connections when deselected |", "|---|---|---|---|"]
    for sha in order:
        d = [x for r in ok for x in r["drains"] if x[0] == sha]
        lines.append("| chat-%s | %s | %d of %d | %s |" % (
            sha, benchlib.fmt3([x[1] for x in d], "%.1f", "s"), len(d), len(ok),
            benchlib.fmt3([x[2] for x in d if isinstance(x[2], (int, float))], "%.0f")))
    if ok:
        lines += ["", "Why dropped / why closed by the server, per run: %s." % "; ".join(
            "run %d: %s / %s" % (i + 1, json.dumps(r["dropped_why"]),
                                 json.dumps(r["closed_by_server_why"]))
            for i, r in enumerate(runs) if "error" not in r)]
    lines.append("")
    return "\n".join(lines)


def run_phase(name, runs, fn, note):
    """runs fresh runs of a phase; a run that fails is kept with its error."""
    out = []
    for i in range(runs):
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - the run is reported as failed
            log("%s run %d of %d failed: %s" % (name, i + 1, runs, e))
            r = {"error": str(e).replace("\n", " ").replace("|", "/")[:300]}
        else:
            log("%s run %d of %d: %s" % (name, i + 1, runs, note(r)))
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each phase, each on a fresh platform (default 3)")
    ap.add_argument("--clients", type=int, default=40000)
    ap.add_argument("--stalled", type=int, default=200)
    ap.add_argument("--rate", default="0.01")
    ap.add_argument("--lifetime", default="uniform:120s-240s")
    ap.add_argument("--ramp", type=int, default=1000)
    ap.add_argument("--quick", action="store_true",
                    help="5,000 clients living 20-60 s, 100 stalled")
    ap.add_argument("what", nargs="?", default="all", choices=["stalled", "scale", "all"])
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    if a.quick:
        a.clients, a.stalled, a.lifetime = 5000, 100, "uniform:20s-60s"
    # A stopped benchmark still takes its platform down (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    raise_nofile()
    print("Where the local platform holds many connections: several switch processes on")
    print("one port, memory per connection bounded, old colours drained to the end")
    print("(bench/scale_bench.py; docs/rainbow.md, \"The local platform\").")
    print()
    rc = 0
    if a.what in ("stalled", "all"):
        ss = run_phase("stalled", a.runs, lambda: bench_stalled(a.build, a.stalled),
                       lambda s: "%.0f KiB per client" % s["per_kib"])
        print(md_stalled(ss))
        if any(stalled_why(s) for s in ss):
            rc = 1
    if a.what in ("scale", "all"):
        rs = run_phase("scale", a.runs,
                       lambda: bench_scale(a.build, a.clients, a.rate, a.lifetime, a.ramp),
                       lambda r: "dropped %s, lost %s, %s" % (
                           r["dropped"], r["messages_lost"],
                           ", ".join(scale_why(r)) or "clean"))
        print(md_scale(rs))
        if any(scale_why(r) for r in rs):
            rc = 1
    print(benchlib.LOAD_NOTE)
    print()
    return rc


if __name__ == "__main__":
    sys.exit(main())
