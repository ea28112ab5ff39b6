#!/usr/bin/env python3
"""Emptying a colour, five ways, on the same load (issue 15): the local
platform, real chatd and chatload (non-sanitized build).

Per run: `rainbow local up`, colour A with 2 replicas, chatload with
--clients N (XEP-0198 stream management on, --lifetime exp:30s so that a
natural drain ends, 0.5 messages/s per client), --warmup seconds of churn,
then colour B (2 replicas) and one way of emptying A:

  natural    rainbow deploy B: A drains as its sessions end by themselves
  assist-50  rainbow deploy B --drain-assist 50/s
  assist-10  rainbow deploy B --drain-assist 10/s
  shutdown   rainbow deploy B --max-drain 5s --on-max-drain shutdown
  rolling    a RollingUpdate-style replacement: rainbow deploy B --no-wait
             (the switch), then each replica of A in turn gets SIGTERM and,
             --grace seconds later, SIGKILL (Kubernetes' default
             terminationGracePeriodSeconds, shortened), then rainbow prune

Measured: seconds from the switch until A's count first read 0 (the
timeline rainbow writes every poll); the reconnect gap users saw
(chatload's reconnect_gap_ms for moved sessions, reconnect_gap_other_ms
for sessions a server ended or that dropped: from the end to established
again); messages lost, duplicated, bounced; the latency p99 of messages
delivered while A was being emptied (chatload's SIGUSR1 window, from the
moment B is deployed until A reads 0); and the pod-seconds spent running
two colours (A's replicas from the switch until each was gone).

Usage: bench/assist_bench.py [--build DIR] [--runs N] [--clients N]
                             [--warmup S] [--only NAME,...] [--quick]
Progress lines go to stderr; stdout is a Markdown section. Bounded: the
natural drain is capped by --max-drain 300s; the default (3 runs of 5
ways) takes about 30 minutes, --quick about 15.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import benchlocal  # noqa: E402

WAYS = [
    # name, rainbow deploy arguments (None: the rolling replacement), what
    ("natural", [], "natural drain"),
    ("assist-50", ["--drain-assist", "50/s"], "assisted drain, 50 sessions/s"),
    ("assist-10", ["--drain-assist", "10/s"], "assisted drain, 10 sessions/s"),
    ("shutdown", ["--max-drain", "5s", "--on-max-drain", "shutdown"],
     "`--max-drain 5s --on-max-drain shutdown`"),
    ("rolling", None, "RollingUpdate-style (SIGTERM, SIGKILL after the grace period)"),
]
OLD, NEW = "aaaaaaa", "bbbbbbb"


def note(*a):
    print(*a, file=sys.stderr, flush=True)


class Local(benchlocal.LocalPlatform):
    def __init__(self, build):
        super().__init__(build, "rb-assist-bench-", timeout=600)

    def pids(self, sha=None):
        """The chatd processes (of colour sha), from the switch's own status."""
        r = self.rb("local", "status", "-o", "json", check=False)
        out = []
        try:
            for c in json.loads(r.stdout).get("colours", []):
                if sha and c.get("sha") != sha:
                    continue
                out += [x["pid"] for x in c.get("replicas", []) if x.get("pid", 0) > 0]
        except ValueError:
            pass
        return out

    def count(self, sha):
        r = self.rb("status", "-o", "json", check=False)
        try:
            for c in json.loads(r.stdout)["colours"]:
                if c["sha"] == sha:
                    return c["connections"]
        except (ValueError, KeyError):
            return None
        return 0  # gone

    def timeline(self):
        rows = []
        with open(os.path.join(self.state, "timeline.csv")) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) == 4 and parts[0] != "time":
                    rows.append((float(parts[0]), parts[1], int(parts[2])))
        return rows


def watch_empty(loc, load, done, out):
    """Closes chatload's window and notes the time once A reads 0."""
    while not done.is_set():
        n = loc.count(OLD)
        if n == 0:
            out["empty_mono"] = time.monotonic()
            load.send_signal(signal.SIGUSR1)
            return
        time.sleep(0.25)


def one_run(a, name, args, seed):
    loc = Local(a.build)
    load = None
    report = os.path.join(loc.state, "chatload.json")
    try:
        loc.rb("deploy", OLD, "--replicas", "2", "--settle", "1s", "--poll", "0.25s")
        load = subprocess.Popen(
            [os.path.join(a.build, "chatload"), "--server", "127.0.0.1:%d" % loc.port,
             "--clients", str(a.clients), "--ramp", "%g/s" % (a.clients / 5.0), "--lifetime",
             "exp:30s", "--message-rate", "0.5", "--stream-management", "--seed", str(seed),
             "--loss-timeout", "15s", "--quiet", "--report", report],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(a.warmup)
        # replicas come and go during the run: others' share is not told apart
        machine = benchlib.MachineLoad().start()
        done, empty = threading.Event(), {}
        load.send_signal(signal.SIGUSR1)  # the window opens
        watcher = threading.Thread(target=watch_empty, args=(loc, load, done, empty))
        watcher.start()
        kills = []
        common = ["--replicas", "2", "--settle", "1s", "--poll", "0.25s"]
        if args is None:
            old_pids = loc.pids(OLD)
            loc.rb("deploy", NEW, *common, "--no-wait")
            for pid in old_pids:
                os.kill(pid, signal.SIGTERM)
                time.sleep(a.grace)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kills.append(time.time())
            loc.rb("prune", "--settle", "1s", "--poll", "0.25s")
        else:
            loc.rb("deploy", NEW, *common, "--max-drain", "%ds" % a.max_drain, *args)
        watcher.join(timeout=30)
        done.set()
        machine = machine.stop()
        time.sleep(2)
        load.send_signal(signal.SIGINT)
        load.wait(timeout=120)
        load = None
        with open(report) as f:
            rep = json.load(f)
        rec = loc.record()
        t_switch = [e["t"] for e in rec if e.get("event") == "select" and e["sha"] == NEW][0]
        removed = [e["t"] for e in rec if e.get("event") == "remove" and e["sha"] == OLD]
        rows = [r for r in loc.timeline() if r[1] == OLD and r[0] >= t_switch]
        zero = [r[0] for r in rows if r[2] == 0]
        t_empty = zero[0] if zero else (removed[0] if removed else None)
        if kills:
            pod_s = sum(k - t_switch for k in kills)
        else:
            pod_s = 2 * ((removed[0] if removed else time.time()) - t_switch)
        gap = rep["reconnect_gap_ms"] if rep["migrated"] else rep["reconnect_gap_other_ms"]
        win = rep.get("window") or {}
        return {
            "empty_s": t_empty - t_switch if t_empty else None,
            "gap_p50": gap["p50"] if gap["count"] else None,
            "gap_p99": gap["p99"] if gap["count"] else None,
            "gaps": gap["count"],
            "lost": rep["messages_lost"], "duplicated": rep["messages_duplicated"],
            "bounced": rep["messages_bounced"], "dropped": rep["dropped"],
            "migrated": rep["migrated"], "resumed": rep["resumed"],
            "closed_by_server": rep["closed_by_server_total"],
            "lat_p99": (win.get("latency_ms") or {}).get("p99"),
            "pod_s": pod_s, "machine": machine,
            "from": rows[0][2] if rows else None,
        }
    finally:
        if load:
            load.kill()
            load.wait()
        loc.close()


def private_copies(build):
    """Copies of the three programs in a directory of the piece's own: a
    `make all` in the same tree while the piece runs (half an hour) rewrites
    build/, and exec'ing a binary being written fails ("Permission denied:
    build/rainbow" half-way through a run). The copies are what is measured,
    whatever happens to build/ meanwhile."""
    d = tempfile.mkdtemp(prefix="rb-assist-bench-bin-")
    for prog in ("chatd", "chatload", "rainbow"):
        src = os.path.join(build, prog)
        if not os.access(src, os.X_OK):
            sys.exit("assist_bench: %s is missing or not executable: make BUILD=%s all"
                     % (src, build))
        shutil.copy2(src, os.path.join(d, prog))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=400)
    ap.add_argument("--warmup", type=float, default=40.0)
    ap.add_argument("--grace", type=float, default=10.0)
    ap.add_argument("--max-drain", type=int, default=300)
    ap.add_argument("--only", default="")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    # A stopped benchmark still takes its platform down (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if a.quick:
        a.clients, a.warmup = 200, 25.0
    only = set(x for x in a.only.split(",") if x)
    a.build = private_copies(a.build)
    try:
        run_all(a, only)
    finally:
        shutil.rmtree(a.build, ignore_errors=True)


def run_all(a, only):
    results = {}
    for name, args, _ in WAYS:
        if only and name not in only:
            continue
        results[name] = []
        for i in range(a.runs):
            d = one_run(a, name, args, 2000 + i)
            results[name].append(d)
            note("assist %s run %d: empty after %s s, gap p50 %s p99 %s ms (%d), lost %d, "
                 "duplicated %d, bounced %d, dropped %d, migrated %d (resumed %d), latency p99 %s "
                 "ms, pod-s %.0f" % (name, i + 1, d["empty_s"], d["gap_p50"], d["gap_p99"],
                                     d["gaps"], d["lost"], d["duplicated"], d["bounced"],
                                     d["dropped"], d["migrated"], d["resumed"], d["lat_p99"],
                                     d["pod_s"]))
    print("## Emptying a colour: natural, assisted, shutdown, RollingUpdate (issue 15)")
    print()
    print("The same load for each way on a fresh local platform: %d chatload clients with "
          "XEP-0198 stream management (`--stream-management`), sessions lasting "
          "`exp:30s`, 0.5 messages/s each, on colour A (2 replicas); after %g s colour B (2 "
          "replicas) takes the new connections and A is emptied one way. %d runs each, "
          "min / **median** / max. *Empty after*: seconds from the switch until A's count "
          "first read 0. *Gap*: from the server's end of a session to the user "
          "established again (moved sessions: see-other-host to `<resumed/>`; others: "
          "the stream error or the drop to a new login). *Latency p99*: messages "
          "delivered while A was emptied (from B's deploy until A read 0). *Pod-seconds*: "
          "A's replicas from the switch until each was gone. The rolling replacement "
          "gives each replica SIGTERM and SIGKILL %g s later, one after the other."
          % (a.clients, a.warmup, a.runs, a.grace))
    print()
    print("| way | empty after s | gap p50 ms | gap p99 ms | lost | duplicated | bounced "
          "| dropped | moved | resumed | latency p99 during ms | pod-seconds | machine load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, _, what in WAYS:
        ds = results.get(name)
        if not ds:
            continue
        f = benchlib.fmt3
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            what, f([d["empty_s"] for d in ds], "%.1f"), f([d["gap_p50"] for d in ds], "%.0f"),
            f([d["gap_p99"] for d in ds], "%.0f"), f([d["lost"] for d in ds], "%.0f"),
            f([d["duplicated"] for d in ds], "%.0f"), f([d["bounced"] for d in ds], "%.0f"),
            f([d["dropped"] for d in ds], "%.0f"), f([d["migrated"] for d in ds], "%.0f"),
            f([d["resumed"] for d in ds], "%.0f"),
            f([d["lat_p99"] for d in ds], "%.0f"), f([d["pod_s"] for d in ds], "%.0f"),
            benchlib.fmt_load([d["machine"] for d in ds])))
    print()
    print("*Moved* counts the sessions chatload saw moved and back (fate `migrated`: "
          "`<see-other-host/>`, then established again), *resumed* those of them that "
          "resumed their session (XEP-0198 `<resumed/>`; the others logged in again after "
          "`<failed/>`); *dropped* the ones cut without a stream error (the SIGKILL). "
          "*Lost*, *duplicated* and *bounced* count over the whole chatload run (warm-up "
          "and the natural ends of sessions included, the same in every way; the natural "
          "drain's run is the longest); a *bounced* message came back as an error: the "
          "sender knows. The natural drain's gap is `-`: no session was ended by a server.")
    print()
    print(benchlib.LOAD_NOTE)


if __name__ == "__main__":
    main()
