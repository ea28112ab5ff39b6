#!/usr/bin/env python3
"""chatd benchmark: memory per idle session (plaintext and STARTTLS), server
CPU per login, CPU while idle, message round trip.

Every phase starts a fresh non-sanitized chatd on loopback and drives it with
bench/chatd_idle_clients.c (built to BUILD/bench/chatd_idle_clients). A login
is the whole of it: TCP connect, stream, [STARTTLS,] SASL PLAIN, restart,
bind, session, initial presence (done when chatd echoed the presence back).
Phases (--only picks some; each runs --runs times, default 3):

  plain     --sessions plaintext sessions (default 15,000) over --procs client
            processes, --concurrency logins in flight per process
  floor     the same logins against bench/login_floor.c, which answers them
            with canned bytes: the kernel's share of a login (accept, six
            reads and writes over loopback), the floor under chatd's figure
  tls       --tls-sessions STARTTLS sessions (default 2,000), 64 in flight
  tls-burst the same number opened all at once (every login in flight)
  tls-floor bench/tls_conn_mem.c: the heap OpenSSL itself keeps per idle TLS
            connection, server side (chatd) and client side (chatload)
  idle      --idle-sessions plaintext sessions (default 19,000) held idle for
            --idle-window seconds: chatd's CPU share and wakeups meanwhile
  rtt       --rtt round trips A -> chatd -> B -> chatd -> A, one at a time

Figures: RSS per session = (chatd VmRSS with the sessions idle - VmRSS before
the first connect) / sessions; server CPU per login = chatd's CPU time
(/proc/PID/task/*/schedstat) from before the first connect until the last
login finished / logins; logins/s = logins / wall time of the same span; the
machine's load while each ran (bench/lib/benchlib.py).

Prints the Markdown section on stdout (bench/run.sh collects it), progress
on stderr; --json FILE keeps the raw figures.

Usage: bench/chatd_idle.py [--build build] [--runs 3] [--only plain,tls,...]
       [--sessions 15000] [--tls-sessions 2000] [--idle-sessions 19000]
       [--idle-window 30] [--rtt 5000] [--quick]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
import benchlib  # noqa: E402
import harness  # noqa: E402
import xmpp  # noqa: E402

PHASES = ["plain", "floor", "tls", "tls-burst", "tls-floor", "idle", "rtt"]
TARGETS = {
    "tls_kib": 10.0,          # KiB per idle STARTTLS session
    "login_ms": 0.05,         # ms server CPU per PLAIN login
    "idle_pct": 0.0,          # % CPU with 19,000 idle sessions (printed to 0.1)
}


def log(*a):
    print("chatd_idle:", *a, file=sys.stderr, flush=True)


class Chatd:
    def __init__(self, a, cert, key, extra=()):
        self.port, self.http = harness.free_port(), harness.free_port()
        argv = [a.chatd, "--listen", "127.0.0.1:%d" % self.port,
                "--http", "127.0.0.1:%d" % self.http, "--domain", xmpp.DOMAIN,
                "--auth-any", "--allow-plaintext-auth", "--tls-cert", cert, "--tls-key", key,
                "--max-connections", "19500", "--ping-interval", "0",
                "--auth-timeout", "600", "--log-level", "warn"] + list(extra)
        self.argv = argv
        self.proc = harness.Proc(argv, name="chatd-bench")
        harness.wait_for(lambda: harness.http_get(
            "http://127.0.0.1:%d/readyz" % self.http)[0] == 200, 20, what="chatd ready")
        self.pid = self.proc.pid

    def stop(self):
        rc = self.proc.stop(signal.SIGTERM, 60)
        if rc != 0:
            log("chatd exited %s:\n%s" % (rc, self.proc.stderr()[-2000:]))
        shutil.rmtree(self.proc.dir, ignore_errors=True)


def clients(a, port, total, procs, concurrency, tls, prefix):
    """Starts holding client processes; returns (processes, their results)."""
    per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    ps = []
    for i, n in enumerate(per):
        sources = ",".join("127.0.%d.%d" % (i + 1, j + 1) for j in range(4))
        argv = [a.clients, "--port", str(port), "--count", str(n), "--domain", xmpp.DOMAIN,
                "--concurrency", str(concurrency), "--source", sources,
                "--prefix", "%s%d-" % (prefix, i), "--hold", "--timeout", "900"]
        if tls:
            argv.append("--tls")
        ps.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True))
    return ps


def results(ps):
    out = []
    for p in ps:
        line = p.stdout.readline()
        out.append(json.loads(line) if line.startswith("{") else
                   {"sessions": 0, "failed": -1, "seconds": 0})
    return out


def release(ps):
    for p in ps:
        p.stdin.close()
    for p in ps:
        p.wait(120)


def login_phase(a, total, procs, concurrency, tls):
    """Fresh chatd; total logins held idle: RSS per session, CPU per login."""
    d = Chatd(a, a.cert, a.key)
    try:
        time.sleep(1.0)
        rss0, cpu0 = benchlib.rss_kib(d.pid), benchlib.cpu_s(d.pid)
        t0 = time.monotonic()
        ps = clients(a, d.port, total, procs, concurrency, tls, "t" if tls else "p")
        load = benchlib.MachineLoad([d.pid] + [p.pid for p in ps]).start()
        res = results(ps)
        wall = time.monotonic() - t0
        cpu1 = benchlib.cpu_s(d.pid)
        ld = load.stop()
        ok = sum(r["sessions"] for r in res)
        failed = sum(r["failed"] for r in res)
        time.sleep(2.0)  # idle: parsers compacted, nothing in flight
        rss1 = benchlib.rss_kib(d.pid)
        release(ps)
    finally:
        d.stop()
    r = {"sessions": ok, "failed": failed, "rss0_kib": rss0, "rss1_kib": rss1,
         "kib_per_session": (rss1 - rss0) / ok if ok else None,
         "cpu_ms_per_login": (cpu1 - cpu0) * 1000 / ok if ok else None,
         "logins_per_s": ok / wall if wall > 0 else None, "wall_s": wall,
         "chatd_cpu_share": (cpu1 - cpu0) / wall if wall > 0 else None, "load": ld}
    log("%s %d (concurrency %d): %s" % ("tls" if tls else "plain", total, concurrency,
                                         json.dumps(r)))
    return r


def floor_phase(a):
    """The plain logins against login_floor: CPU per login with no work."""
    port = harness.free_port()
    proc = harness.Proc([a.floor, "--port", str(port)], name="login-floor")
    try:
        harness.wait_for(lambda: _listening(port), 10, what="login_floor listening")
        time.sleep(0.5)
        cpu0 = benchlib.cpu_s(proc.pid)
        t0 = time.monotonic()
        ps = clients(a, port, a.sessions, a.procs, a.concurrency, False, "f")
        load = benchlib.MachineLoad([proc.pid] + [p.pid for p in ps]).start()
        res = results(ps)
        wall = time.monotonic() - t0
        cpu1 = benchlib.cpu_s(proc.pid)
        ld = load.stop()
        release(ps)
    finally:
        proc.stop(signal.SIGKILL, 10)
        shutil.rmtree(proc.dir, ignore_errors=True)
    ok = sum(r["sessions"] for r in res)
    r = {"sessions": ok, "failed": sum(r["failed"] for r in res),
         "cpu_ms_per_login": (cpu1 - cpu0) * 1000 / ok if ok else None,
         "logins_per_s": ok / wall if wall > 0 else None, "load": ld}
    log("floor %d: %s" % (a.sessions, json.dumps(r)))
    return r


def tls_floor_phase(a):
    p = subprocess.run([a.tls_mem, "--cert", a.cert, "--key", a.key, "--count", "500"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0 or not p.stdout.startswith("{"):
        raise RuntimeError("tls_conn_mem: %s" % p.stderr.strip())
    r = json.loads(p.stdout)
    r["server_kib"] = r["server_bytes_per_conn"] / 1024.0
    r["client_kib"] = r["client_bytes_per_conn"] / 1024.0
    log("tls-floor: %s" % json.dumps(r))
    return r


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def idle_phase(a):
    """Fresh chatd with --idle-sessions idle: chatd's CPU over a window."""
    d = Chatd(a, a.cert, a.key)
    try:
        ps = clients(a, d.port, a.idle_sessions, 2, 64, False, "i")
        res = results(ps)
        ok = sum(r["sessions"] for r in res)
        time.sleep(5.0)  # every parser compacted, every timer of the logins past
        load = benchlib.MachineLoad([d.pid] + [p.pid for p in ps]).start()
        cpu0, w0 = benchlib.cpu_s(d.pid), benchlib.wakeups(d.pid)
        time.sleep(a.idle_window)
        cpu1, w1 = benchlib.cpu_s(d.pid), benchlib.wakeups(d.pid)
        ld = load.stop()
        release(ps)
    finally:
        d.stop()
    r = {"sessions": ok, "window_s": ld["wall_s"],
         "cpu_pct": 100.0 * (cpu1 - cpu0) / ld["wall_s"],
         "cpu_ms": (cpu1 - cpu0) * 1000, "wakeups_per_s": (w1 - w0) / ld["wall_s"],
         "load": ld}
    log("idle %d: %s" % (a.idle_sessions, json.dumps(r)))
    return r


def rtt_phase(a):
    # One client sending back to back passes chatd's default input rate
    # (64 KiB/s): the shaper's pauses would be the p99, not the routing.
    d = Chatd(a, a.cert, a.key, ["--rate-limit", "0"])
    try:
        load = benchlib.MachineLoad([d.pid]).start()
        p = subprocess.run([a.clients, "--port", str(d.port), "--rtt", str(a.rtt),
                            "--domain", xmpp.DOMAIN, "--prefix", "rtt", "--timeout", "300"],
                           capture_output=True, text=True, timeout=400)
        ld = load.stop()
    finally:
        d.stop()
    r = json.loads(p.stdout) if p.stdout.startswith("{") else None
    if r:
        r["load"] = ld
    log("rtt: %s" % json.dumps(r))
    return r


def col(runs, key):
    return [r[key] for r in runs if r and r.get(key) is not None]


def verdict(values, target, fmt):
    s = benchlib.summary(values)
    if not s:
        return "not measured"
    med = float(fmt % s["median"])
    return ("**met** (median %s)" if med <= target else "**not met** (median %s)") % (
        fmt % s["median"])


def markdown(a, R):
    cmd = "python3 bench/chatd_idle.py --build %s" % a.build_arg
    L = ["chatd (`--auth-any --allow-plaintext-auth --ping-interval 0 --log-level warn`, "
         "a self-signed 2048-bit RSA certificate for STARTTLS, TLS 1.3) is started afresh "
         "for every run of every phase and driven by bench/chatd_idle_clients.c: a login "
         "is TCP connect, stream, [STARTTLS,] SASL PLAIN, restart, bind, session and "
         "initial presence, done when chatd echoed the presence. %d runs per figure, "
         "given as min / **median** / max; each phase alone: `%s --only PHASE`." % (
             a.runs, cmd), "",
         "**RSS per session** = (chatd VmRSS with the sessions established and idle − "
         "VmRSS before the first connect) / sessions. **CPU per login** = chatd's CPU time "
         "(user + system, all threads, /proc/PID/task/*/schedstat) from before the first "
         "connect until the last login finished, / logins. **logins/s** = logins / wall "
         "time of that span, with chatd's own CPU share of the span: chatd and the client "
         "processes share the machine's 2 cores, so below 100 % chatd was not what bounded "
         "the rate (the clients and the other work on the machine were). The **floor** "
         "phase runs the same logins against bench/login_floor.c, which answers each read "
         "with canned bytes: its CPU per login is the kernel's part of a login (accept, six "
         "reads, six writes over loopback TCP), which no server can go below.", "",
         benchlib.LOAD_NOTE, "",
         "| phase | figure | min / **median** / max | machine load |",
         "|---|---|---|---|"]

    def row(phase, name, vals, fmt, unit, runs):
        loads = [r["load"] for r in runs if r and r.get("load")]
        L.append("| %s | %s | %s | %s |" % (phase, name, benchlib.fmt3(vals, fmt, unit),
                                            benchlib.fmt_load(loads)))

    def failed(runs):
        return sum(r.get("failed", 0) for r in runs if r)

    p = R.get("plain")
    if p:
        row("plain", "sessions held of %d (failed: %d)" % (a.sessions, failed(p)),
            col(p, "sessions"), "%.0f", "", p)
        row("plain", "**RSS per idle plaintext session** (%d × %d logins in flight)" % (
            a.procs, a.concurrency), col(p, "kib_per_session"), "%.2f", "KiB", p)
        row("plain", "**chatd CPU per PLAIN login**", col(p, "cpu_ms_per_login"), "%.4f",
            "ms", p)
        row("plain", "PLAIN logins/s (wall clock)", col(p, "logins_per_s"), "%.0f", "/s", p)
        row("plain", "chatd's CPU share of that span", [100 * x for x in col(
            p, "chatd_cpu_share")], "%.0f", "%", p)
    f = R.get("floor")
    if f:
        row("floor", "login_floor CPU per login (the kernel's part)",
            col(f, "cpu_ms_per_login"), "%.4f", "ms", f)
        row("floor", "logins/s against login_floor (wall clock)", col(f, "logins_per_s"),
            "%.0f", "/s", f)
    for key, label in (("tls", "64 in flight"), ("tls-burst", "all at once")):
        t = R.get(key)
        if not t:
            continue
        row(key, "STARTTLS sessions held of %d, %s (failed: %d)" % (
            a.tls_sessions, label, failed(t)), col(t, "sessions"), "%.0f", "", t)
        row(key, "**RSS per idle STARTTLS session**, %s" % label, col(t, "kib_per_session"),
            "%.2f", "KiB", t)
        row(key, "**chatd CPU per STARTTLS + PLAIN login**, %s" % label,
            col(t, "cpu_ms_per_login"), "%.3f", "ms", t)
        row(key, "STARTTLS logins/s (wall clock), %s" % label, col(t, "logins_per_s"),
            "%.0f", "/s", t)
    tf = R.get("tls-floor")
    if tf:
        top = ", ".join("%s %.0f B" % (x["site"], x["bytes_per_conn"])
                        for x in tf[0]["server_top"][:3])
        row("tls-floor", "OpenSSL's own heap per idle %s connection, server side (largest: "
            "%s)" % (tf[0]["version"], top), col(tf, "server_kib"), "%.2f", "KiB", tf)
        top = ", ".join("%s %.0f B" % (x["site"], x["bytes_per_conn"])
                        for x in tf[0]["client_top"][:3])
        row("tls-floor", "the same, client side (chatload's; largest: %s)" % top,
            col(tf, "client_kib"), "%.2f", "KiB", tf)
    i = R.get("idle")
    if i:
        row("idle", "sessions held of %d" % a.idle_sessions, col(i, "sessions"), "%.0f", "", i)
        row("idle", "**chatd CPU with %d idle sessions** (%.0f s window)" % (
            a.idle_sessions, a.idle_window), col(i, "cpu_pct"), "%.3f", "%", i)
        row("idle", "chatd wakeups (context switches) per second meanwhile",
            col(i, "wakeups_per_s"), "%.1f", "/s", i)
    t = [r for r in R.get("rtt", []) if r]
    if t:
        row("rtt", "message round trip A → chatd → B → chatd → A, p50 (%d, one at a time; "
            "`--rate-limit 0`: back to back they pass the default input rate)" % a.rtt,
            col(t, "p50_us"), "%.0f", "µs", t)
        row("rtt", "message round trip, p99", col(t, "p99_us"), "%.0f", "µs", t)
    L.append("")

    # The targets set for idle memory and login cost, against the medians above.
    tg = []

    def target(text, runs, key, limit, fmt, only):
        if runs:
            tg.append("| %s | %s | `%s --only %s` |" % (
                text, verdict(col(runs, key), limit, fmt), cmd, only))
    target("chatd ≤ %g KiB RSS per idle STARTTLS session, 64 in flight" % TARGETS["tls_kib"],
           R.get("tls"), "kib_per_session", TARGETS["tls_kib"], "%.2f", "tls")
    target("chatd ≤ %g KiB RSS per idle STARTTLS session, all at once" % TARGETS["tls_kib"],
           R.get("tls-burst"), "kib_per_session", TARGETS["tls_kib"], "%.2f", "tls-burst")
    target("chatd ≤ %g ms server CPU per PLAIN login (bind, session, presence)"
           % TARGETS["login_ms"], R.get("plain"), "cpu_ms_per_login", TARGETS["login_ms"],
           "%.3f", "plain,floor")
    target("chatd 0.0 %% CPU with %d idle sessions" % a.idle_sessions, R.get("idle"),
           "cpu_pct", TARGETS["idle_pct"], "%.1f", "idle")
    if tg:
        L += ["| target (issue 12) | result (median) | command |", "|---|---|---|"] + tg + [""]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(PHASES))
    ap.add_argument("--sessions", type=int, default=15000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tls-sessions", type=int, default=2000)
    ap.add_argument("--idle-sessions", type=int, default=19000)
    ap.add_argument("--idle-window", type=float, default=30)
    ap.add_argument("--rtt", type=int, default=5000)
    ap.add_argument("--quick", action="store_true",
                    help="smaller: 3000 / 500 / 5000 sessions, 10 s idle window")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--no-write", action="store_true", help="(accepted; nothing is written)")
    a = ap.parse_args()
    if a.quick:
        a.sessions, a.tls_sessions, a.idle_sessions = 3000, 500, 5000
        a.idle_window, a.rtt = 10, 2000
    phases = [p for p in a.only.split(",") if p]
    for p in phases:
        if p not in PHASES:
            sys.exit("chatd_idle: unknown phase %s (phases: %s)" % (p, ",".join(PHASES)))
    a.build_arg = a.build
    build = os.path.join(ROOT, a.build)
    a.chatd = os.path.join(build, "chatd")
    a.clients = os.path.join(build, "bench", "chatd_idle_clients")
    a.floor = os.path.join(build, "bench", "login_floor")
    a.tls_mem = os.path.join(build, "bench", "tls_conn_mem")
    for p in (a.chatd, a.clients, a.floor, a.tls_mem):
        if not os.path.exists(p):
            sys.exit("chatd_idle: %s not built (make BUILD=%s tests)" % (p, a.build))
    # chatd holds every session of a phase in one process.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    most = max([a.sessions if "plain" in phases else 0,
                a.idle_sessions if "idle" in phases else 0, a.tls_sessions])
    if soft < most + 200:
        sys.exit("chatd_idle: open-files limit %d is too low for %d sessions" % (soft, most))
    tmp = tempfile.mkdtemp(prefix="rainbow-chatd-bench-")
    try:
        return run(a, phases, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, phases, tmp):
    a.cert, a.key = xmpp.make_cert(tmp)

    R = {}
    failed = 0
    for run in range(a.runs):
        for ph in phases:
            log("run %d/%d: %s" % (run + 1, a.runs, ph))
            try:
                if ph == "plain":
                    r = login_phase(a, a.sessions, a.procs, a.concurrency, False)
                elif ph == "floor":
                    r = floor_phase(a)
                elif ph == "tls-floor":
                    r = tls_floor_phase(a)
                elif ph == "tls":
                    r = login_phase(a, a.tls_sessions, 1, 64, True)
                elif ph == "tls-burst":
                    r = login_phase(a, a.tls_sessions, 1, a.tls_sessions, True)
                elif ph == "idle":
                    r = idle_phase(a)
                else:
                    r = rtt_phase(a)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                log("%s failed: %s" % (ph, e))
                failed += 1
                continue
            if r is None or r.get("failed"):
                failed += 1
            R.setdefault(ph, []).append(r)
    sys.stdout.write(markdown(a, R))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(R, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
