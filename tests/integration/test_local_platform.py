"""The local platform keeps its promise under faults, as the Kubernetes it
stands in for would: a deploy of the live SHA reconciles it (replicas,
readiness, the switch's backends); the switch supervises the replicas
(restarts those of a live colour, reports a draining colour's crash with
the connections it held); it sends new connections only to ready replicas
(a SIGSTOPped one gets none) and refuses cleanly when none is ready; a
replica that exits before it is ready fails the deploy at once, with the
last lines of its log.
"""
import json
import os
import re
import signal
import socket
import time
import unittest

import harness
import localplat


class LocalPlatform(unittest.TestCase):
    def setUp(self):
        self.plat = localplat.Platform(self)
        self.clients = []
        self.addCleanup(self.cleanup)
        self.plat.up()

    def cleanup(self):
        for c in self.clients:
            c.abort()
        reports = self.plat.down()
        self.assertEqual(reports, [], "\n".join(reports))

    def login_all(self, n, prefix):
        cs = self.plat.login(n, prefix=prefix)
        self.clients += cs
        return cs

    def test_redeploy_live_sha_reconciles(self):
        p = self.plat
        p.deploy("8c8c8c8", "-r", "1")
        r = p.rb("local", "down", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        p.up()
        # The switch resumed selecting 8c8c8c8, whose replicas are gone.
        out = p.deploy("8c8c8c8", "-r", "1").stdout
        self.assertIn("done", out)
        self.login_all(4, "a")
        # -r on the live SHA scales it; every replica is a backend of the switch.
        p.deploy("8c8c8c8", "-r", "3")
        c = p.colour("8c8c8c8")
        self.assertEqual((c["state"], c["replicas"], c["ready"]), ("live", 3, 3), c)
        sw = p.switch()
        self.assertEqual(len(sw["backends"]), 3, sw)
        self.login_all(6, "b")
        harness.wait_for(lambda: all(r["connections"] > 0 for r in
                                     p.colour("8c8c8c8")["replica_list"]),
                         timeout=10, interval=0.2, what="every replica serving")
        # Without -r the colour keeps its count.
        p.deploy("8c8c8c8")
        self.assertEqual(p.colour("8c8c8c8")["replicas"], 3)

    def one_replica(self, sha, **want):
        reps = self.plat.replicas(sha)
        for r in reps.values():
            if all(r.get(k) == v for k, v in want.items()):
                return r
        return None

    def test_crashed_replica_of_live_colour_is_restarted(self):
        p = self.plat
        p.deploy("aaaaaaa", "-r", "2")
        victim = sorted(p.replicas("aaaaaaa").values(), key=lambda r: r["name"])[0]
        os.kill(victim["pid"], signal.SIGKILL)
        # Restarted under the same name, with a new process, and ready again.
        harness.wait_for(lambda: (p.replicas("aaaaaaa")[victim["name"]]["restarts"] == 1 and
                                  p.replicas("aaaaaaa")[victim["name"]]["ready"]),
                         timeout=30, interval=0.2, what="restarted and ready")
        again = p.replicas("aaaaaaa")[victim["name"]]
        self.assertNotEqual(again["pid"], victim["pid"])
        self.assertIn("killed by signal 9", again["fault"])
        # (A young sibling may be unready a moment: chatd waits for its new peer.)
        harness.wait_for(lambda: re.search(r"chat-aaaaaaa\s+live\s+2/2\s+1\s",
                                           p.rb("status").stdout),
                         timeout=20, interval=0.2, what="status: live 2/2, 1 restart")
        c = p.colour("aaaaaaa")
        self.assertEqual(c["restarts"], 1, c)
        hist = p.rb("history").stdout
        self.assertIn("restart", hist)
        self.assertIn("replica=%s" % victim["name"], hist)
        self.assertEqual(len(self.login_all(6, "r")), 6)

    def test_draining_colour_crash_is_reported_not_drained(self):
        p = self.plat
        p.deploy("aaaaaaa", "-r", "2")
        clients = self.login_all(6, "d")
        # The switch's own count of each replica (from its /metrics) has them all.
        harness.wait_for(lambda: sum(max(r["count"], 0) for r in
                                     p.replicas("aaaaaaa").values()) == 6,
                         timeout=20, interval=0.2, what="counts read by the switch")
        victim = max(p.replicas("aaaaaaa").values(), key=lambda r: r["count"])
        held = victim["count"]
        self.assertGreater(held, 0)
        proc = harness.Proc([p.rainbow, "deploy", "bbbbbbb", "-r", "1", "--settle", "1s",
                             "--poll", "0.2s"], env=p.env, name="rainbow-deploy")
        self.addCleanup(proc.stop)
        harness.wait_for(lambda: any(e["event"] == "select" and e["sha"] == "bbbbbbb"
                                     for e in p.record()), timeout=30, interval=0.1,
                         what="switched to bbbbbbb")
        os.kill(victim["pid"], signal.SIGKILL)
        harness.wait_for(lambda: p.replicas("aaaaaaa").get(victim["name"], {}).get("state")
                         == "crashed", timeout=20, interval=0.1, what="crash seen")
        # Not restarted while its colour drains; the others end normally.
        time.sleep(0.5)
        self.assertEqual(p.replicas("aaaaaaa")[victim["name"]]["restarts"], 0)
        for c in clients:
            c.close()
        self.clients = []
        self.assertEqual(proc.wait(60), 0, proc.stdout() + proc.stderr())
        out = proc.stdout()
        self.assertIn("replica %s crashed: %d connections lost" % (victim["name"], held), out)
        self.assertIn("%d connections lost in crashes (not drained)" % held, out)
        crash = [e for e in p.record() if e["event"] == "crash"]
        self.assertEqual([(e["replica"], e["connections"]) for e in crash],
                         [(victim["name"], held)])
        removed = [e for e in p.record() if e["event"] == "remove" and e["sha"] == "aaaaaaa"]
        self.assertEqual(removed[0].get("lost"), held, removed)

    def test_stopped_replica_gets_no_new_connections(self):
        p = self.plat
        p.deploy("aaaaaaa", "-r", "2")
        reps = sorted(p.replicas("aaaaaaa").values(), key=lambda r: r["name"])
        os.kill(reps[0]["pid"], signal.SIGSTOP)
        self.addCleanup(os.kill, reps[0]["pid"], signal.SIGCONT)
        # (In its first 5 s the other may be unready too: chatd waits for its peers.)
        harness.wait_for(lambda: p.switch()["backends"] == [reps[1]["listen"]],
                         timeout=20, interval=0.1, what="stopped replica taken out")
        self.assertFalse(p.replicas("aaaaaaa")[reps[0]["name"]]["ready"])
        # Every new client logs in (half of them timed out at login before).
        self.assertEqual(len(self.login_all(10, "s")), 10)
        # No ready replica at all: a new connection is refused at once (reset),
        # never left hanging.
        os.kill(reps[1]["pid"], signal.SIGSTOP)
        self.addCleanup(os.kill, reps[1]["pid"], signal.SIGCONT)
        harness.wait_for(lambda: p.switch()["backends"] == [], timeout=20, interval=0.1,
                         what="no ready replica")
        # (On loopback the reset may even beat connect() itself.)
        try:
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            try:
                s.sendall(b"<?xml version='1.0'?>")
                self.assertEqual(s.recv(100), b"")
            finally:
                s.close()
        except ConnectionResetError:
            pass
        self.assertGreaterEqual(p.switch()["refused"], 1)
        os.kill(reps[0]["pid"], signal.SIGCONT)
        os.kill(reps[1]["pid"], signal.SIGCONT)
        harness.wait_for(lambda: len(p.switch()["backends"]) == 2, timeout=20, interval=0.1,
                         what="both back")
        self.assertEqual(len(self.login_all(4, "t")), 4)

    def test_replica_exiting_before_ready_fails_deploy_at_once(self):
        p = self.plat
        p.deploy("aaaaaaa", "-r", "1")
        # Ports are the kernel's pick (port 0), reported by chatd: never chosen here.
        r = list(p.replicas("aaaaaaa").values())[0]
        with open("/proc/%d/cmdline" % r["pid"], "rb") as f:
            argv = f.read().split(b"\0")
        self.assertIn(b"--ports-file", argv)
        self.assertEqual(argv[argv.index(b"--listen") + 1], b"127.0.0.1:0")
        self.assertEqual(argv[argv.index(b"--http") + 1], b"127.0.0.1:0")
        # A chatd that refuses its flags: the deploy fails at once, not after 60 s.
        r = p.rb("deploy", "bbbbbbb", "--ready-timeout", "60s", "--settle", "1s",
                 "--chatd-args", "--no-such-flag", timeout=30)
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("exited before it was ready", r.stderr)
        self.assertIn("no-such-flag", r.stderr)  # from the replica's own log
        self.assertIn("traffic stays on aaaaaaa", r.stderr)
        st = p.status()
        self.assertEqual([c["sha"] for c in st["colours"]], ["aaaaaaa"])
        self.assertEqual(st["selected"], "aaaaaaa")
        self.assertEqual(p.replicas("bbbbbbb"), {})

    def test_switch_that_does_not_answer_for_a_while(self):
        # A switch that does not answer (stopped for longer than rainbow's 5 s
        # request timeout: as a switch busy at its limits would be) is not a
        # switch that is gone: the deploy and a watch retry, with backoff.
        p = self.plat
        p.deploy("aaaaaaa", "-r", "1")
        clients = self.login_all(2, "w")
        watch = harness.Proc([p.rainbow, "watch", "--poll", "0.2s"], env=p.env, name="watch")
        self.addCleanup(watch.stop)
        proc = harness.Proc([p.rainbow, "deploy", "bbbbbbb", "-r", "1", "--settle", "1s",
                             "--poll", "0.2s"], env=p.env, name="deploy")
        self.addCleanup(proc.stop)
        harness.wait_for(lambda: any(e["event"] == "select" and e["sha"] == "bbbbbbb"
                                     for e in p.record()), timeout=30, interval=0.1,
                         what="switched to bbbbbbb")
        pid = p.switch()["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(6.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        for c in clients:
            c.close()
        self.clients = []
        self.assertEqual(proc.wait(60), 0, proc.stdout() + proc.stderr())
        self.assertIn("did not answer in time", proc.stderr())
        self.assertTrue(watch.alive(), watch.stderr())
        self.assertIn("retrying", watch.stderr())
        watch.signal(signal.SIGINT)
        self.assertEqual(watch.wait(10), 0, watch.stderr())

    def test_switch_death_is_loud_and_local_up_says_what_was_lost(self):
        p = self.plat
        p.deploy("aaaaaaa", "-r", "1")
        clients = self.login_all(3, "k")
        beat = os.path.join(p.state, "switch.beat")

        def beat_conns():
            try:
                with open(beat) as f:
                    return json.load(f)["connections"]
            except (OSError, ValueError):
                return -1
        harness.wait_for(lambda: beat_conns() == 3, timeout=10, interval=0.2,
                         what="heartbeat with 3 connections")
        pid = p.switch()["pid"]
        os.kill(pid, signal.SIGKILL)
        # The switch carried them: they are gone.
        for c in clients:
            c.sock.settimeout(5)
            try:
                self.assertEqual(c.sock.recv(100), b"")
            except ConnectionResetError:
                pass
            c.sock.close()
        self.clients = []
        r = p.rb("status")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("THE LOCAL SWITCH IS DOWN", r.stderr)
        self.assertIn("pid %d" % pid, r.stderr)
        self.assertIn("3 at its last heartbeat", r.stderr)
        r = p.rb("local", "status")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("THE LOCAL SWITCH IS DOWN", r.stderr)
        r = p.up()
        self.assertIn("had died", r.stdout)
        self.assertIn("the 3 connections it carried", r.stdout)
        # The replica ran on: adopted, routed again.
        harness.wait_for(lambda: p.colour("aaaaaaa")["ready"] == 1, timeout=20, interval=0.2,
                         what="adopted and ready")
        self.assertEqual(len(self.login_all(3, "l")), 3)
        died = [e for e in p.record() if e["event"] == "switch-died"]
        self.assertEqual([(e["pid"], e["connections"]) for e in died], [(pid, 3)])
        self.assertIn("switch-died", p.rb("history").stdout)
        # Told once: a later local up (the switch runs) says nothing of it.
        self.assertNotIn("died", p.up().stdout)

    def test_several_switch_processes_steered_as_one(self):
        p = self.plat
        r = p.rb("local", "down", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        p.up("--switches", "2")
        p.deploy("aaaaaaa", "-r", "2")
        sw = p.switch()
        self.assertEqual(sw["switch_processes"], 2)
        self.assertEqual(len(sw["backends"]), 2)
        clients = self.login_all(40, "m")
        sw = p.switch()
        procs = sw["switches"]
        self.assertEqual(len(procs), 2)
        # The kernel spreads them over both processes; status adds them up.
        harness.wait_for(lambda: p.switch()["connections"] == 40, timeout=10, interval=0.2,
                         what="both processes reporting")
        self.assertTrue(all(w["accepted"] > 0 for w in p.switch()["switches"]),
                        p.switch()["switches"])
        # A follower that dies drops its share only; the leader starts another.
        follower = [w for w in procs if w["pid"] != sw["pid"]][0]
        os.kill(follower["pid"], signal.SIGKILL)
        harness.wait_for(lambda: any(e["event"] == "switch-process-died" for e in p.record()),
                         timeout=10, interval=0.1, what="death recorded")
        harness.wait_for(lambda: all(w["pid"] > 0 and w["pid"] != follower["pid"]
                                     for w in p.switch()["switches"]),
                         timeout=10, interval=0.2, what="another follower")
        alive = 0
        for c in clients:
            try:
                c.sock.settimeout(0.2)
                alive += c.sock.recv(1) != b""
            except socket.timeout:
                alive += 1  # still open (nothing to read): it survived
            except OSError:
                pass
        self.assertGreater(alive, 0)
        self.assertLess(alive, 40)
        self.assertEqual(len(self.login_all(10, "n")), 10)
        # The leader dies: the followers go with it (the switch is one unit).
        pids = [w["pid"] for w in p.switch()["switches"]]
        os.kill(p.switch()["pid"], signal.SIGKILL)
        def running(pid):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            except OSError:
                return False
        harness.wait_for(lambda: not any(running(q) for q in pids), timeout=10, interval=0.1,
                         what="followers gone")
        p.up()
        self.assertEqual(p.switch()["switch_processes"], 2)


if __name__ == "__main__":
    unittest.main()
