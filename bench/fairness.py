#!/usr/bin/env python3
"""chatd flood fairness: a quiet client's ping round trip while another
client floods.

For each configuration and each of --runs fresh (non-sanitized) chatd
processes: a quiet client logs in and measures --pings XEP-0199 round trips
to the server, one at a time (baseline); then a flooder (another process)
logs in and writes headline messages to an offline full JID as fast as TCP
takes them (chatd drops them: no output), and the quiet client measures
--pings round trips again while the flood runs. Configurations: chatd's
defaults (the input shaper on), and --rate-limit 0 (only the loop's
per-iteration input bound).

Prints a Markdown section on stdout: the quiet client's p50 and p99 with
and without the flood (min / median / max over the runs), and the rate the
flooder got through.

Usage: bench/fairness.py [--build build] [--pings 1000] [--runs 3] [--interval-ms 5]
"""
import argparse
import multiprocessing
import os
import shlex
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402
import xmpp  # noqa: E402


def flooder(port, stop, ready):
    c = xmpp.Client(port, timeout=10)
    c.login("flooder", "flooder", mech="PLAIN")
    one = ("<message to='nobody@%s/gone' type='headline'><body>%s</body></message>"
           % (xmpp.DOMAIN, "f" * 150)).encode()
    chunk = one * 300
    c.sock.settimeout(0.2)
    ready.set()
    while not stop.is_set():
        try:
            c.sock.sendall(chunk)
        except OSError:
            pass
    c.sock.close()


def pings(c, n, interval, secs=0.0):
    """At least n round trips, one every interval seconds (a quiet client,
    well under the shaper's rate), and for at least secs seconds."""
    out = []
    end = time.monotonic() + secs
    while len(out) < n or time.monotonic() < end:
        time.sleep(interval)
        t0 = time.perf_counter()
        r = c.iq("<ping xmlns='urn:xmpp:ping'/>", to=xmpp.DOMAIN, timeout=30)
        out.append(time.perf_counter() - t0)
        if r.get("type") != "result":
            raise RuntimeError("ping answered %s" % r.get("type"))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def one_run(build, args, n, interval):
    d = xmpp.Chatd(auth_any=True, tls=False, args=["--log-level", "warn"] + args)
    harness.BUILD = build
    d.start()
    stop, ready = multiprocessing.Event(), multiprocessing.Event()
    p = None
    try:
        q = d.client(timeout=30)
        q.login("quiet", "quiet", mech="PLAIN")
        base = pings(q, n, interval)
        p = multiprocessing.Process(target=flooder, args=(d.port, stop, ready))
        p.start()
        ready.wait(20)
        time.sleep(0.5)
        b0, t0 = d.metric("chatd_bytes_in_total"), time.monotonic()
        under = pings(q, n, interval, 3.0)
        rate = (d.metric("chatd_bytes_in_total") - b0) / (time.monotonic() - t0)
        q.close()
        return base, under, rate
    finally:
        stop.set()
        if p is not None:
            p.join(10)
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--pings", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interval-ms", type=float, default=5.0,
                    help="pause between the quiet client's pings")
    a = ap.parse_args()
    build = a.build if os.path.isabs(a.build) else os.path.join(ROOT, a.build)
    configs = [("defaults (shaper on: 64 KiB/s after login)", []),
               ("--rate-limit 0 (loop fairness only)", ["--rate-limit", "0"])]
    rows = []
    for label, args in configs:
        res = []
        for r in range(a.runs):
            base, under, rate = one_run(build, args, a.pings, a.interval_ms / 1000.0)
            res.append((statistics.median(base) * 1e3, pct(base, 99) * 1e3,
                        statistics.median(under) * 1e3, pct(under, 99) * 1e3, rate / 1024))
            print("fairness: %s run %d: p50 %.3f ms alone, %.3f ms under flood (%.0f KiB/s)"
                  % (label, r + 1, res[-1][0], res[-1][2], res[-1][4]), file=sys.stderr)
        rows.append((label, res))

    def mmm(res, i, fmt="%.3f"):
        xs = [x[i] for x in res]
        return " / ".join(fmt % v for v in (min(xs), statistics.median(xs), max(xs)))

    print("## chatd: a quiet client's ping while another client floods\n")
    print("XEP-0199 ping round trips of a quiet client, %d one at a time with %.0f ms "
          "between them, alone and then "
          "while a second client (another process) writes headline messages to an offline "
          "full JID as fast as TCP takes them; %d fresh chatd processes per configuration. "
          "Figures are min / median / max over the runs; times in ms.\n" % (a.pings, a.interval_ms,
                                                                    a.runs))
    print("| chatd | p50 alone | p99 alone | p50 under flood | p99 under flood | "
          "flooder's input (KiB/s) |")
    print("|---|---|---|---|---|---|")
    for label, res in rows:
        print("| %s | %s | %s | %s | %s | %s |" % (label, mmm(res, 0), mmm(res, 1), mmm(res, 2),
                                                mmm(res, 3), mmm(res, 4, "%.0f")))
    print("\nCommand: `python3 bench/fairness.py --build %s --pings %d --runs %d "
          "--interval-ms %g`" % (shlex.quote(a.build), a.pings, a.runs, a.interval_ms))


if __name__ == "__main__":
    main()
