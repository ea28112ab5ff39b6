#!/usr/bin/env python3
"""Drain forecast accuracy on the local platform (real chatd and chatload,
non-sanitized build): for each lifetime distribution, a deploy under load,
then what rainbow forecast at the switch against the real drain.

Per run: `rainbow local up`, deploy colour A (2 replicas), chatload with
--clients N and --lifetime SPEC ramped over --ramp-s seconds, --warmup
seconds of churn, deploy colour B (which waits until A drained), then
`rainbow report -o json`: drain_t99_s and drain_t100_s of A against the
forecast rainbow recorded in the first seconds after the switch (its median
of "all gone", eta_s, and its t99, when 1 % would be left).

Usage: bench/drain_bench.py [--build DIR] [--runs N] [--clients N]
                            [--warmup S] [--only NAME,...]
Progress lines go to stderr; stdout is a Markdown section (bench/run.sh puts
it into docs/benchmarks.md). Bounded: lifetimes of tens of seconds, every
drain capped by --max-drain; the default (3 runs of 3 distributions) takes
about 20 minutes.
"""
import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import benchlocal  # noqa: E402

DISTS = [
    # name, chatload --lifetime, what it is
    ("uniform", "uniform:10s-30s", "uniform 10-30 s"),
    ("exp", "exp:10s", "exponential, mean 10 s"),
    ("lognormal", "lognormal:5s,1", "lognormal, median 5 s, sigma 1 (mean 8.2 s, p99 51 s)"),
]


def note(*a):
    print(*a, file=sys.stderr, flush=True)


class Local(benchlocal.LocalPlatform):
    def __init__(self, build):
        super().__init__(build, "rb-drain-bench-")

    def chatd_pids(self):
        pids = []
        for path in glob.glob(os.path.join(self.state, "colours", "*.json")):
            with open(path) as f:
                pids += [r["pid"] for r in json.load(f).get("replicas", []) if r.get("pid")]
        return pids


def one_run(build, spec, clients, ramp_s, warmup, max_drain, seed):
    loc = Local(build)
    load = None
    try:
        loc.rb("deploy", "aaaaaaa", "--replicas", "2", "--settle", "1s", "--poll", "0.5s")
        load = subprocess.Popen(
            [os.path.join(build, "chatload"), "--server", "127.0.0.1:%d" % loc.port,
             "--clients", str(clients), "--ramp", "%g/s" % (clients / ramp_s), "--lifetime",
             spec, "--seed", str(seed), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(warmup)
        load_m = benchlib.MachineLoad([load.pid] + loc.chatd_pids()).start()
        loc.rb("deploy", "bbbbbbb", "--replicas", "2", "--settle", "1s", "--poll", "0.5s",
               "--max-drain", "%ds" % max_drain, timeout=max_drain + 120)
        machine = load_m.stop()
        rep = json.loads(loc.rb("report", "-o", "json").stdout)
        d = [d for d in rep["drains"] if d["sha"] == "aaaaaaa"][0]
        d["machine"] = machine
        return d
    finally:
        if load:
            load.send_signal(signal.SIGINT)
            try:
                load.wait(30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
        loc.close()


def pct(a, b):
    return None if a is None or not b else 100.0 * (a - b) / b


def fmt_s(xs):
    return benchlib.fmt3(xs, "%.1f")


def fmt_pct(xs):
    return benchlib.fmt3(xs, "%+.0f", "%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--ramp-s", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=50.0)
    ap.add_argument("--max-drain", type=int, default=400)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    only = set(x for x in a.only.split(",") if x)
    results = {}
    for name, spec, _ in DISTS:
        if only and name not in only:
            continue
        results[name] = []
        for i in range(a.runs):
            d = one_run(a.build, spec, a.clients, a.ramp_s, a.warmup, a.max_drain, 1000 + i)
            results[name].append(d)
            note("drain %s run %d: from %s, t99 %s s, t100 %s s; forecast at %s s: "
                 "eta %s s (p90 %s s), t99 %s s%s"
                 % (name, i + 1, d["drain_from"], d["drain_t99_s"], d["drain_t100_s"],
                    d["forecast_made_s"], d["forecast_at_switch_s"],
                    d["forecast_p90_at_switch_s"], d["forecast_t99_at_switch_s"],
                    "" if d["forecast_at_switch_s"] is not None
                    else " (%s)" % d["forecast_note"]))
    print("## Drain forecast accuracy (issue 14)")
    print()
    print("A deploy under load on the local platform (2 replicas a colour, %d chatload "
          "clients ramped over %g s, %g s of churn before the switch, settle 1 s, poll "
          "0.5 s), %d runs per lifetime distribution, each on a fresh platform. *Real*: "
          "seconds from the switch until the old colour's count first read at most 1 %% "
          "(t99) and 0 (t100) of its count at the switch (to within the 0.5 s poll). "
          "*Forecast*: what rainbow said in the first seconds after the switch, counted "
          "from the switch: `eta` (median of when the last connection ends) with its 90th "
          "percentile, and its t99 (when 1 %% is expected to be left). Errors are "
          "(forecast − real) / real. min / **median** / max over the runs."
          % (a.clients, a.ramp_s, a.warmup, a.runs))
    print()
    print("| lifetimes | connections at switch | real t99 s | real t100 s | forecast t99 s "
          "| forecast eta s | forecast p90 s | t99 error | eta error vs t100 | "
          "eta error vs t99 | t99 within ±20 % | machine load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, spec, what in DISTS:
        if name not in results:
            continue
        ds = results[name]
        f99 = [d["forecast_t99_at_switch_s"] for d in ds]
        eta = [d["forecast_at_switch_s"] for d in ds]
        p90 = [d["forecast_p90_at_switch_s"] for d in ds]
        r99 = [d["drain_t99_s"] for d in ds]
        r100 = [d["drain_t100_s"] for d in ds]
        e99 = [pct(f, r) for f, r in zip(f99, r99)]
        ok = sum(1 for e in e99 if e is not None and abs(e) <= 20)
        print("| %s (`%s`) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d of %d | %s |" % (
            what, spec, benchlib.fmt3([d["drain_from"] for d in ds], "%.0f"), fmt_s(r99),
            fmt_s(r100), fmt_s(f99), fmt_s(eta), fmt_s(p90), fmt_pct(e99),
            fmt_pct([pct(f, r) for f, r in zip(eta, r100)]),
            fmt_pct([pct(f, r) for f, r in zip(eta, r99)]), ok, len(ds),
            benchlib.fmt_load([d["machine"] for d in ds])))
    none = {}
    for name in results:
        for d in results[name]:
            if d["forecast_at_switch_s"] is None:
                none.setdefault(name, []).append(d["forecast_note"])
    for name, notes in none.items():
        print()
        print("%s: no forecast at the switch in %d run(s): %s." % (
            name, len(notes), "; ".join(sorted(set(n or "?" for n in notes)))))
    print()
    print(benchlib.LOAD_NOTE)

if __name__ == "__main__":
    main()
