"""End to end on the local platform with the real binaries: rainbow deploys
real chatd colours behind its switch while chatload keeps a few hundred
clients connected and talking, and the claim is checked from chatload's
report and rainbow's own record:

- 0 dropped connections and 0 lost messages across 3 deploys + 1 rollback,
  with a deploy that never gets ready in the middle (traffic untouched);
- each old colour deleted only after its count read 0 for the settle period;
- rainbow SIGKILLed after each step in turn, re-run, converges, 0 drops;
- --on-max-drain shutdown ends connections only with system-shutdown;
- bad usage gets a clear error and a non-zero exit.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness

SETTLE = 1.0
POLL = 0.2
DRAIN_FLAGS = ["--settle", "%gs" % SETTLE, "--poll", "%gs" % POLL]


class Platform:
    """A local platform in a temp state dir, torn down at the end."""

    def __init__(self, test):
        self.test = test
        self.state = tempfile.mkdtemp(prefix="rb-e2e-")
        self.port = harness.free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.rainbow = harness.binary("rainbow")
        self.env = dict(os.environ)
        self.env["RAINBOW_CHATD"] = harness.binary("chatd")
        self.env["RAINBOW_STATE_DIR"] = self.state

    def up(self):
        r = self.rb("local", "up", "--listen", self.listen)
        self.test.assertEqual(r.returncode, 0, r.stderr)

    def rb(self, *args, timeout=120):
        return subprocess.run([self.rainbow] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=self.env, stdin=subprocess.DEVNULL)

    def deploy(self, sha, *extra, ok=True):
        r = self.rb("deploy", sha, "--replicas", "2", "--ready-timeout", "20s",
                    *DRAIN_FLAGS, *extra)
        if ok:
            self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def status(self):
        r = self.rb("status", "-o", "json")
        self.test.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def record(self):
        path = os.path.join(self.state, "record.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def timeline(self):
        rows = []
        with open(os.path.join(self.state, "timeline.csv")) as f:
            next(f)
            for line in f:
                t, sha, conns, state = line.strip().split(",")
                rows.append((float(t), sha, int(conns), state))
        return rows

    def sanitizer_reports(self):
        out = []
        paths = [os.path.join(self.state, "switch.log")]
        logs = os.path.join(self.state, "logs")
        if os.path.isdir(logs):
            paths += [os.path.join(logs, n) for n in os.listdir(logs)]
        for p in paths:
            if not os.path.exists(p):
                continue
            with open(p, errors="replace") as f:
                text = f.read()
            m = harness.SANITIZER_RE.search(text)
            if m:
                out.append("%s:\n%s" % (p, text[m.start():m.start() + 3000]))
        return out

    def down(self):
        self.rb("local", "down", "--force")
        reports = self.sanitizer_reports()
        shutil.rmtree(self.state, ignore_errors=True)
        return reports


class RainbowE2E(unittest.TestCase):
    def setUp(self):
        self.plat = Platform(self)
        self.procs = []
        # A cleanup, not tearDown: it also runs when `local up` itself fails.
        self.addCleanup(self.cleanup)
        self.plat.up()

    def cleanup(self):
        for p in self.procs:
            if p.alive():
                p.stop(signal.SIGKILL, timeout=5)
        reports = self.plat.down()
        for p in self.procs:
            rep = p.sanitizer_report()
            if rep:
                reports.append("%s: %s" % (p.name, rep))
        self.assertEqual(reports, [], "\n".join(reports))

    def chatload(self, clients, *extra):
        report = os.path.join(self.plat.state, "chatload-%d.json" % len(self.procs))
        p = harness.Proc([harness.binary("chatload"), "--server", self.plat.listen,
                          "--clients", clients, "--ramp", "300/s", "--quiet",
                          "--report", report, *extra], name="chatload")
        self.procs.append(p)
        return p, report

    def wait_connected(self, n, timeout=30):
        harness.wait_for(lambda: sum(max(c["connections"], 0) for c in
                                     self.plat.status()["colours"]) >= n,
                         timeout=timeout, interval=0.3, what="%d clients connected" % n)

    def finish(self, proc, report):
        proc.signal(signal.SIGINT)
        rc = proc.wait(60)
        with open(report) as f:
            r = json.load(f)
        return rc, r

    def assert_removed_only_at_zero(self):
        """Every drained colour was removed with a count of 0 that had held for
        the settle period (rainbow's record against its timeline)."""
        rows = self.plat.timeline()
        removed = [e for e in self.plat.record() if e["event"] == "remove"]
        for e in removed:
            if e["why"] != "drained":
                continue
            self.assertEqual(e["connections"], 0, e)
            window = [r for r in rows if r[1] == e["sha"] and e["t"] - SETTLE <= r[0] <= e["t"]]
            self.assertTrue(window, e)
            self.assertTrue(all(r[2] == 0 for r in window), (e, window))
            before = [r for r in rows if r[1] == e["sha"] and r[0] <= e["t"] - SETTLE + POLL]
            self.assertTrue(before, "no observation a settle period before removal: %s" % e)
        return removed

    def test_deploys_rollback_failed_deploy_zero_drops(self):
        p = self.plat
        p.deploy("aaaaaaa")
        load, report = self.chatload("300", "--message-rate", "1", "--lifetime",
                                     "uniform:2s-6s", "--expect-zero-drops",
                                     "--expect-zero-loss", "--expect-no-server-close")
        self.wait_connected(250)
        out = p.deploy("bbbbbbb").stdout
        self.assertIn("chat-aaaaaaa: drained in", out)
        # A colour that never gets ready: chatd refuses a bad flag and exits.
        r = p.rb("deploy", "ddddddd", "--ready-timeout", "3s", "--chatd-args",
                 "--no-such-flag", *DRAIN_FLAGS)
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)  # not-ready
        self.assertIn("exited before it was ready", r.stderr)
        self.assertIn("no-such-flag", r.stderr)
        self.assertIn("traffic stays on bbbbbbb", r.stderr)
        st = p.status()
        self.assertEqual(st["selected"], "bbbbbbb")
        self.assertEqual([c["sha"] for c in st["colours"]], ["bbbbbbb"])
        # Two deploys back to back: two old colours draining at once.
        p.deploy("ccccccc", "--no-wait")
        out = p.deploy("eeeeeee", "--keep-drained", "1").stdout
        self.assertIn("chat-bbbbbbb", out)
        self.assertIn("chat-ccccccc", out)
        st = p.status()
        kept = [c["sha"] for c in st["colours"] if c["state"] == "kept"]
        self.assertEqual(len(kept), 1, st)
        # Rollback: the kept colour scales back up, gets ready, takes traffic.
        r = p.rb("rollback", *DRAIN_FLAGS, "--keep-drained", "1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        st = p.status()
        self.assertEqual(st["selected"], kept[0])
        self.assertEqual({c["sha"]: c["state"] for c in st["colours"]},
                         {kept[0]: "live", "eeeeeee": "kept"})
        self.wait_connected(250)
        rc, rep = self.finish(load, report)
        self.assertEqual(rc, 0, load.stderr()[-3000:])
        self.assertEqual(rep["dropped"], 0, rep["dropped_by_reason"])
        self.assertEqual(rep["messages_lost"], 0)
        self.assertEqual(rep["closed_by_server_total"], 0)
        self.assertGreater(rep["messages_delivered"], 500)
        # ccccccc is live only while eeeeeee starts: it may see no login at all.
        self.assertGreaterEqual(len(rep["per_version"]), 3, rep["per_version"].keys())
        removed = self.assert_removed_only_at_zero()
        self.assertIn("ddddddd", [e["sha"] for e in removed if e["why"] == "failed"])
        self.assertIn("aaaaaaa", [e["sha"] for e in removed if e["why"] == "drained"])
        r = p.rb("chart")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.getsize(os.path.join(p.state, "chart.png")) > 1000)
        self.assertTrue(os.path.getsize(os.path.join(p.state, "chart.svg")) > 1000)
        r = p.rb("history")
        self.assertEqual(r.returncode, 0)
        self.assertIn("why=drained", r.stdout)

    def test_kill_after_each_step_converges(self):
        p = self.plat
        p.deploy("1111111")
        load, report = self.chatload("200", "--message-rate", "1", "--lifetime",
                                     "uniform:1s-4s", "--expect-zero-drops",
                                     "--expect-zero-loss")
        self.wait_connected(150)
        # Kill points: right away, after create, after select, mid-drain.
        kills = [("2222222", None), ("3333333", "create"), ("4444444", "select"),
                 ("5555555", "drain")]
        for sha, after in kills:
            n_before = len(p.record())
            proc = harness.Proc([p.rainbow, "deploy", sha, *DRAIN_FLAGS], env=p.env,
                                name="rainbow-" + sha)
            self.procs.append(proc)
            if after in ("create", "select"):
                harness.wait_for(lambda: any(e["event"] == after and e["sha"] == sha
                                             for e in p.record()[n_before:]),
                                 timeout=30, interval=0.01, what=after)
            elif after == "drain":
                harness.wait_for(lambda: "draining" in proc.stdout(), timeout=30,
                                 interval=0.01, what="draining")
            proc.signal(signal.SIGKILL)
            proc.wait(10)
            r = p.deploy(sha)
            self.assertIn("done in", r.stdout)
            st = p.status()
            self.assertEqual(st["selected"], sha)
            self.assertEqual([c["sha"] for c in st["colours"]], [sha], st)
        rc, rep = self.finish(load, report)
        self.assertEqual(rc, 0, load.stderr()[-3000:])
        self.assertEqual(rep["dropped"], 0, rep["dropped_by_reason"])
        self.assertEqual(rep["messages_lost"], 0)
        self.assert_removed_only_at_zero()

    def test_max_drain_shutdown_is_system_shutdown(self):
        p = self.plat
        p.deploy("aaaaaaa")
        # Long-lived clients: the old colour would never drain by itself.
        load, report = self.chatload("60", "--message-rate", "0.5", "--expect-zero-drops")
        self.wait_connected(60)
        r = p.deploy("bbbbbbb", "--max-drain", "2s", "--on-max-drain", "shutdown")
        self.assertIn("passed --max-drain", r.stdout)
        st = p.status()
        self.assertEqual([c["sha"] for c in st["colours"]], ["bbbbbbb"])
        self.wait_connected(60)
        rc, rep = self.finish(load, report)
        self.assertEqual(rc, 0, load.stderr()[-3000:])
        self.assertEqual(rep["dropped"], 0, rep["dropped_by_reason"])
        self.assertEqual(set(rep["closed_by_server"]), {"system-shutdown"})
        self.assertGreaterEqual(rep["closed_by_server"]["system-shutdown"], 60)
        ev = [e for e in p.record() if e["event"] == "remove"]
        self.assertEqual([(e["sha"], e["why"]) for e in ev], [("aaaaaaa", "max-drain")])
        self.assertGreater(ev[0]["connections"], 0)

    def test_shrink_gives_back_empty_replicas_only(self):
        p = self.plat
        p.deploy("aaaaaaa", "--replicas", "3")
        # Three raw TCP connections: round robin puts one on each replica.
        socks = [socket.create_connection(("127.0.0.1", p.port)) for _ in range(3)]
        harness.wait_for(lambda: [r["connections"] for c in p.status()["colours"]
                                  for r in c["replica_list"]] == [1, 1, 1],
                         timeout=10, interval=0.1, what="one connection per replica")
        proc = harness.Proc([p.rainbow, "deploy", "bbbbbbb", "--replicas", "1", "--shrink",
                             *DRAIN_FLAGS], env=p.env, name="rainbow-shrink")
        self.procs.append(proc)
        harness.wait_for(lambda: any(e["event"] == "select" for e in p.record()[2:]),
                         timeout=20, interval=0.05, what="switch")
        socks[0].close()
        socks[1].close()
        shrunk = lambda: [e for e in p.record() if e["event"] == "remove-replica"]
        harness.wait_for(lambda: len(shrunk()) == 2, timeout=20, interval=0.1,
                         what="two replicas given back")
        old = [c for c in p.status()["colours"] if c["sha"] == "aaaaaaa"][0]
        self.assertEqual(old["replicas"], 1)
        self.assertEqual([r["connections"] for r in old["replica_list"]], [1])
        for e in shrunk():
            self.assertEqual(e["why"], "shrink")
        self.assertTrue(proc.alive())
        # The last connection still works and still holds the colour.
        socks[2].sendall(b"<?xml version='1.0'?>")
        socks[2].close()
        self.assertEqual(proc.wait(30), 0, proc.stderr())
        self.assertEqual([c["sha"] for c in p.status()["colours"]], ["bbbbbbb"])
        self.assert_removed_only_at_zero()

    def test_drain_forecast_fields(self):
        """The drain forecast is there and sane wherever it is shown: `status
        -o json` (eta_s, eta_p90_s), the table, the deploy's heartbeat and
        its record. Fields and their consistency only, never a timing."""
        p = self.plat
        p.deploy("aaaaaaa")
        load, report = self.chatload("150", "--lifetime", "uniform:3s-8s")
        self.wait_connected(140)
        # Before the switch nothing drains: no forecast.
        st = p.status()
        self.assertEqual([(c["eta_s"], c["eta_p90_s"]) for c in st["colours"]], [(None, None)])

        # 120 lifetimes ended (the model over every replica's metrics)
        harness.wait_for(lambda: p.status()["lifetimes"]["ended"] >= 120, timeout=60,
                         interval=0.5, what="120 lifetimes ended")
        st = p.status()
        lt = st["lifetimes"]
        self.assertEqual(lt["replicas"] + lt["skipped"], 2, lt)  # skipped: metrics unreadable
        if lt["replicas"]:
            self.assertGreater(lt["window_s"], 0)
        if lt["replicas"] == 2:
            self.assertEqual(lt["open"], sum(c["connections"] for c in st["colours"]))
        d = p.rb("deploy", "bbbbbbb", "--replicas", "2", "--ready-timeout", "20s",
                 *DRAIN_FLAGS, "--no-wait")
        self.assertEqual(d.returncode, 0, d.stdout + d.stderr)

        def colours():
            st = p.status()
            return ([c for c in st["colours"] if c["sha"] == "aaaaaaa"][0],
                    [c for c in st["colours"] if c["sha"] == "bbbbbbb"][0])

        # A connection older than every lifetime that ended (a login slowed
        # by a loaded machine makes one outlive 8 s) has no forecast until
        # it ends; its lifetime is at most 8 s, so that passes.
        def settled():
            o, n = colours()
            note = (o["forecast"] or {}).get("note") or ""
            if o["eta_s"] is None and o["connections"] > 0 and "older than" in note:
                return None
            return o, n

        old, new = harness.wait_for(settled, timeout=30, interval=0.5,
                                    what="the old colour's forecast")
        self.assertEqual((new["eta_s"], new["eta_p90_s"]), (None, None))
        self.assertEqual(old["state"], "draining")
        f = old["forecast"]
        if old["connections"] > 0:  # (-1: a replica's metrics could not be read)
            self.assertIsNotNone(old["eta_s"], f)  # 120 lifetimes of a few seconds were seen
            self.assertGreaterEqual(old["eta_s"], 0)
            self.assertLessEqual(old["eta_s"], old["eta_p90_s"])
            self.assertLess(old["eta_p90_s"], 60)
            self.assertLessEqual(f["t50_s"], f["t90_s"])
            self.assertLessEqual(f["t90_s"], f["t99_s"])
            if old["connections"] >= 11:  # then 1 % left comes before all gone at 90 %
                self.assertLessEqual(f["t99_s"], old["eta_p90_s"])
        table = p.rb("status").stdout
        self.assertRegex(table, r"chat-aaaaaaa +draining .*(~\w+|\?) left")
        # The same deploy, waiting for the drain this time: its heartbeat says it too.
        r = p.deploy("bbbbbbb")
        self.assertIn("chat-aaaaaaa: drained in", r.stdout)
        self.assertRegex(r.stdout, r"draining: chat-aaaaaaa=-?\d+ \((~\w+|\?) left\)")
        fc = [e for e in p.record() if e["event"] == "forecast" and e["sha"] == "aaaaaaa"]
        self.assertTrue(fc, p.record())
        for e in fc:
            self.assertIn("eta_s", e)
            self.assertIn("eta_p90_s", e)
            self.assertGreaterEqual(e["since_deselect_s"], 0)
            if e["eta_s"] is not None:
                self.assertLessEqual(e["eta_s"], e["eta_p90_s"])
                self.assertEqual(e["curve"][0], [0.0, 1.0])
                fr = [x[1] for x in e["curve"]]
                self.assertEqual(fr, sorted(fr, reverse=True))
        sel = [e for e in p.record() if e["event"] == "select" and e["sha"] == "bbbbbbb"][0]
        self.assertEqual(sel["deselected"], "aaaaaaa")
        self.assertGreaterEqual(sel["deselected_connections"], 0)
        self.assertLessEqual(sel["deselected_at"], sel["t"])
        # The report: drain times in order, the forecast made at the switch.
        r = p.rb("report", "-o", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        d = [x for x in rep["drains"] if x["sha"] == "aaaaaaa"][0]
        self.assertEqual((d["replaced_by"], d["outcome"]), ("bbbbbbb", "drained"))
        self.assertEqual(d["drain_from"], sel["deselected_connections"])
        ts = [d["drain_t50_s"], d["drain_t90_s"], d["drain_t99_s"], d["drain_t100_s"]]
        self.assertTrue(all(t is not None and t >= 0 for t in ts), d)
        self.assertEqual(ts, sorted(ts))
        if d["forecast_at_switch_s"] is not None:
            self.assertLessEqual(d["forecast_made_s"], 10)
            self.assertLessEqual(d["forecast_at_switch_s"], d["forecast_p90_at_switch_s"])
            self.assertAlmostEqual(d["forecast_error_s"],
                                   d["forecast_at_switch_s"] - d["drain_t100_s"], places=2)
        else:
            self.assertTrue(d["forecast_note"], d)
        sw = [x for x in rep["switches"] if x["sha"] == "bbbbbbb"]
        self.assertGreaterEqual(sw[0]["create_to_ready_s"], 0)
        self.assertGreaterEqual(sw[0]["ready_to_switch_s"], 0)
        r = p.rb("report", "-o", "md")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| chat-aaaaaaa | chat-bbbbbbb | %d |" % d["drain_from"], r.stdout)
        # The chart marks both switches; the drain curve of aaaaaaa beside its forecast.
        r = p.rb("chart")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(p.state, "chart.gp")) as fh:
            gp = fh.read()
        self.assertIn("set label 'chat-aaaaaaa'", gp)
        self.assertIn("set label 'chat-bbbbbbb'", gp)
        r = p.rb("chart", "--drain", "aaaaaaa")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(os.path.join(p.state, "drain-aaaaaaa.png"), r.stdout)
        self.assertTrue(os.path.getsize(os.path.join(p.state, "drain-aaaaaaa.png")) > 1000)
        load.signal(signal.SIGINT)
        load.wait(60)

    def test_bad_usage(self):
        p = self.plat
        r = p.rb("deploy", "xyz")
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid SHA", r.stderr)
        r = p.rb("deploy", "ABCDEF0")
        self.assertEqual(r.returncode, 2)
        r = p.rb("deploy")
        self.assertEqual(r.returncode, 2)
        self.assertIn("needs a SHA", r.stderr)
        r = p.rb("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        r = p.rb("deploy", "abcdef0", "--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option", r.stderr)
        r = p.rb("status", "--shrink")
        self.assertEqual(r.returncode, 2)
        self.assertIn("does not apply", r.stderr)
        r = p.rb("status", "-o", "md")
        self.assertEqual(r.returncode, 2)
        self.assertIn("table or json)", r.stderr)
        r = p.rb("report", "-o", "yaml")
        self.assertEqual(r.returncode, 2)
        self.assertIn("table or json or md", r.stderr)
        r = p.rb("report")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no history", r.stderr)
        r = p.rb("deploy", "abcdef0", "--on-max-drain", "explode")
        self.assertEqual(r.returncode, 2)
        r = p.rb("rollback")
        self.assertEqual(r.returncode, 9)  # no-target
        self.assertIn("nothing to roll back to", r.stderr)
        r = p.rb("rollback", "abcdef0")
        self.assertEqual(r.returncode, 9)
        self.assertIn("does not exist", r.stderr)
        r = p.rb("--platform", "mars", "status")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown platform", r.stderr)
        r = p.rb("deploy", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--keep-drained", r.stdout)
        other = tempfile.mkdtemp(prefix="rb-e2e-down-")
        try:
            r = p.rb("--state-dir", other, "deploy", "abcdef0")
            self.assertEqual(r.returncode, 3)  # platform: the local switch is not up
            self.assertIn("not up", r.stderr)
            self.assertIn("rainbow local up", r.stderr)
        finally:
            shutil.rmtree(other, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
