#!/usr/bin/env python3
"""Cluster benchmark: message latency and throughput between two
chatd instances (forwarded over a cluster link) next to the same figures
within one instance.

Starts non-sanitized chatd processes on loopback (--auth-any, plaintext) and
raw XMPP clients (tests/lib/xmpp.py for the login, then plain sockets):

  local:   senders and receivers on instance A;
  cluster: senders on A, receivers on B (A and B linked), every message
           crosses the link.

For each layout, with --pairs sender/receiver pairs:
  1. latency: every sender sends --rate messages per second (open loop) for
     --seconds; each body carries the send time; p50/p99/max of receive
     time - send time (one clock: all clients live in this process);
  2. throughput: every sender keeps up to --window messages in flight to its
     receiver for --seconds; delivered messages per second.

The client side is Python in one process: it bounds the throughput figure
(the same bound in both layouts), which is why the local figure is printed
beside the cluster one. With --write the figures replace the section between
the BENCH markers of docs/cluster.md, with the command that reproduces them.

Usage: bench/cluster_bench.py [--build build] [--pairs 20] [--rate 50]
       [--seconds 5] [--window 32] [--write]
"""
import argparse
import datetime
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402
import xmpp  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
import benchlib  # noqa: E402

BODY_RE = re.compile(rb"<body>(\d+) (\d+)</body>")
MARK_BEGIN = "<!-- BENCH:BEGIN (bench/cluster_bench.py --write) -->"
MARK_END = "<!-- BENCH:END -->"


def start_chatd(build, name, cport, peers, secret):
    argv = [os.path.join(build, "chatd"), "--auth-any", "--domain", xmpp.DOMAIN,
            "--instance", name, "--log-level", "warn", "--ping-interval", "0",
            # the input shaper (64 KiB/s per session) would bound the
            # throughput measure instead of routing
            "--rate-limit", "0"]
    port, http = harness.free_port(), harness.free_port()
    argv += ["--listen", "127.0.0.1:%d" % port, "--http", "127.0.0.1:%d" % http]
    if cport:
        argv += ["--cluster-listen", "127.0.0.1:%d" % cport, "--cluster-secret-file", secret]
    if peers:
        argv += ["--peers", peers]
    p = harness.Proc(argv, name=name)
    harness.wait_for(lambda: harness.http_get("http://127.0.0.1:%d/readyz" % http)[0] == 200,
                     timeout=20, what=name + " ready")
    p.port, p.http = port, http
    return p


def metric(p, name):
    st, body = harness.http_get("http://127.0.0.1:%d/metrics" % p.http)
    return harness.parse_metrics(body).get(name) if st == 200 else None


def login(port, user):
    c = xmpp.Client(port, timeout=10)
    c.login(user, user)
    c.send("<presence/>")
    c.expect(lambda s: s.tag == xmpp.q(xmpp.NS_CLIENT, "presence"), what="own presence")
    c.sock.setblocking(False)
    return c


class Receiver:
    def __init__(self, client):
        self.c = client
        self.buf = b""
        self.got = 0
        self.lat = []

    def on_readable(self, record):
        try:
            data = self.c.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            raise RuntimeError("receiver connection closed")
        now = time.perf_counter_ns()
        self.buf += data
        end = self.buf.rfind(b"</message>")
        if end < 0:
            return
        for m in BODY_RE.finditer(self.buf, 0, end):
            self.got += 1
            if record:
                self.lat.append((now - int(m.group(2))) / 1e6)
        self.buf = self.buf[end + 10:]


def stanza(to, seq):
    return ("<message to='%s' type='chat'><body>%d %d</body></message>"
            % (to, seq, time.perf_counter_ns())).encode()


def send_all(sock, data):
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view)
            view = view[n:]
        except BlockingIOError:
            time.sleep(0.0005)


def run_layout(pairs, send_port, recv_port, args, tag, pids):
    senders = [login(send_port, "s%s%d" % (tag, i)) for i in range(pairs)]
    receivers = [Receiver(login(recv_port, "r%s%d" % (tag, i))) for i in range(pairs)]
    sel = selectors.DefaultSelector()
    for r in receivers:
        sel.register(r.c.sock, selectors.EVENT_READ, r)
    # warm up: one message per pair, also a barrier for the routes
    for s, r in zip(senders, receivers):
        send_all(s.sock, stanza(r.c.jid, 0))
    deadline = time.monotonic() + 10
    while sum(r.got for r in receivers) < pairs and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data.on_readable(False)
    if sum(r.got for r in receivers) < pairs:
        raise RuntimeError("warm-up messages not delivered")
    for r in receivers:
        r.got = 0

    # 1. latency, open loop at a moderate rate
    interval = 1.0 / args.rate
    t0 = time.monotonic()
    nxt = t0
    sent = 0
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic()
        if now >= nxt:
            for s, r in zip(senders, receivers):
                send_all(s.sock, stanza(r.c.jid, sent))
                sent += 1
            nxt += interval
        for key, _ in sel.select(max(0.0, min(nxt - time.monotonic(), 0.01))):
            key.data.on_readable(True)
    deadline = time.monotonic() + 10
    while sum(r.got for r in receivers) < sent and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data.on_readable(True)
    lat = sorted(x for r in receivers for x in r.lat)
    lost = sent - sum(r.got for r in receivers)

    # 2. throughput, a bounded window per pair
    for r in receivers:
        r.got = 0
        r.lat = []
    sent_pp = [0] * pairs
    load = benchlib.MachineLoad(pids + [os.getpid()]).start()
    cpu0 = [benchlib.cpu_s(x) for x in pids + [os.getpid()]]
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        for i, (s, r) in enumerate(zip(senders, receivers)):
            room = args.window - (sent_pp[i] - r.got)
            if room > 0:
                send_all(s.sock, b"".join(stanza(r.c.jid, sent_pp[i] + k) for k in range(room)))
                sent_pp[i] += room
        for key, _ in sel.select(0.001):
            key.data.on_readable(False)
    elapsed = time.monotonic() - t0
    delivered = sum(r.got for r in receivers)
    cpu = [benchlib.cpu_s(x) - c for x, c in zip(pids + [os.getpid()], cpu0)]
    ld = load.stop()
    for c in senders + [r.c for r in receivers]:
        c.sock.setblocking(True)
        c.close()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")
    # CPU shares of the throughput window, of one core: each chatd, and the
    # Python clients (this process); the one near 100 % bounded the rate.
    shares = [c / elapsed for c in cpu]
    return {"messages": len(lat), "lost": lost, "p50": pct(0.50), "p99": pct(0.99),
            "max": lat[-1] if lat else float("nan"), "throughput": delivered / elapsed,
            "server_us_per_msg": sum(cpu[:-1]) * 1e6 / delivered if delivered else None,
            "server_shares": shares[:-1], "client_share": shares[-1], "load": ld}


def one_run(build, args):
    """Fresh chatd A and B, linked; both layouts measured."""
    tmp = tempfile.mkdtemp(prefix="rb-cluster-bench-")
    secret = os.path.join(tmp, "secret")
    with open(secret, "w") as f:
        f.write(os.urandom(24).hex())
    os.chmod(secret, 0o600)  # chatd refuses a secret others can read
    cports = [harness.free_port(), harness.free_port()]
    procs = []
    try:
        a = start_chatd(build, "bench-a", cports[0], "127.0.0.1:%d" % cports[1], secret)
        procs.append(a)
        b = start_chatd(build, "bench-b", cports[1], "127.0.0.1:%d" % cports[0], secret)
        procs.append(b)
        harness.wait_for(lambda: metric(a, "chatd_cluster_peers") == 1 and
                         metric(b, "chatd_cluster_peers") == 1, timeout=10, what="linked")
        local = run_layout(args.pairs, a.port, a.port, args, "l", [a.pid])
        fwd0 = metric(a, "chatd_cluster_stanzas_forwarded_total")
        cluster = run_layout(args.pairs, a.port, b.port, args, "c", [a.pid, b.pid])
        fwd = metric(a, "chatd_cluster_stanzas_forwarded_total") - fwd0
    finally:
        for p in procs:
            p.stop(signal.SIGTERM, timeout=10)
            rep = p.sanitizer_report()
            if rep:
                print(rep, file=sys.stderr)
            shutil.rmtree(p.dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return local, cluster, fwd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--rate", type=float, default=50, help="messages/s per sender (latency)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3, help="fresh chatd pairs, one after another")
    ap.add_argument("--quick", action="store_true", help="10 pairs, 3 s per measure")
    ap.add_argument("--write", action="store_true", help="update docs/cluster.md")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.seconds = 10, 3
    build = os.path.abspath(args.build)
    os.environ["RAINBOW_BUILD"] = build

    results = {"local": [], "cluster": []}
    fwd_total = 0
    for run in range(args.runs):
        local, cluster, fwd = one_run(build, args)
        results["local"].append(local)
        results["cluster"].append(cluster)
        fwd_total += fwd
        print("cluster_bench: run %d: local %s; cluster %s" % (run + 1, local, cluster),
              file=sys.stderr, flush=True)
    cmd = "bench/cluster_bench.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    rows = [("within one instance", results["local"]),
            ("between two instances (forwarded)", results["cluster"])]

    def f3(rs, key, fmt, unit=""):
        return benchlib.fmt3([r[key] for r in rs if r.get(key) is not None], fmt, unit)
    lines = [
        "Measured %s on %s (%d CPUs), %s, by `%s`: %d sender/receiver pairs, "
        "latency at %g msg/s per sender for %gs, throughput with %d messages in flight "
        "per pair for %gs; non-sanitized build, `--rate-limit 0` (chatd's input shaper, "
        "64 KiB/s per session by default, would bound the throughput instead of the "
        "routing); %d runs, each on a fresh pair of chatd "
        "processes, min / **median** / max. %d messages crossed the link in the cluster "
        "runs."
        % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), platform.node(),
           os.cpu_count(), platform.platform(terse=True), cmd.strip(), args.pairs, args.rate,
           args.seconds, args.window, args.seconds, args.runs, fwd_total),
        "",
        "| layout | latency p50 | p99 | max | lost | throughput (wall clock) | chatd CPU per "
        "message | machine load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in rows:
        lines.append("| %s | %s | %s | %s | %d of %d | %s | %s | %s |" % (
            name, f3(rs, "p50", "%.2f", "ms"), f3(rs, "p99", "%.2f", "ms"),
            f3(rs, "max", "%.2f", "ms"), sum(r["lost"] for r in rs),
            sum(r["messages"] + r["lost"] for r in rs), f3(rs, "throughput", "%.0f", "msg/s"),
            f3(rs, "server_us_per_msg", "%.1f", "µs"),
            benchlib.fmt_load([r["load"] for r in rs])))
    shares = "; ".join("%s: chatd %s, clients %.0f %%" % (
        name, " + ".join("%.0f %%" % (100 * benchlib.summary([r["server_shares"][k] for r in rs])[
            "median"]) for k in range(len(rs[0]["server_shares"]))),
        100 * benchlib.summary([r["client_share"] for r in rs])["median"]) for name, rs in rows)
    lines += ["", "chatd CPU per message = the CPU time of the chatd processes (all of them, "
              "schedstat) over the throughput window / messages delivered. What bounds the "
              "throughput: the CPU shares of that window, of one core each (median): %s. "
              "Senders and receivers are Python clients in the benchmark process, one "
              "thread: at close to 100 %% it is what bounds the rate, equally in both rows." %
              shares, "", benchlib.LOAD_NOTE]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = os.path.join(ROOT, "docs", "cluster.md")
        with open(path) as f:
            doc = f.read()
        i, j = doc.find(MARK_BEGIN), doc.find(MARK_END)
        if i < 0 or j < i:
            sys.exit("docs/cluster.md has no BENCH markers")
        doc = doc[:i + len(MARK_BEGIN)] + "\n" + text + "\n" + doc[j:]
        with open(path, "w") as f:
            f.write(doc)
    return 0 if all(r["lost"] == 0 for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
