"""chatload --stream-management against real chatd: clients enable
XEP-0198 and acknowledge; when a chatd moves them (its control endpoint,
<see-other-host/> naming another instance of the cluster) they follow and
resume there. The report counts the move as the fate migrated (not dropped,
not closed by the server), with resumed, resume_failed and the reconnect
gap (and, without stream management, the gap after a server's close; the
SIGUSR1 measurement window), and the messages exchanged meanwhile exactly (none lost, none
doubled). A move to an instance outside the cluster cannot resume: the
clients log in again (resume_failed), still migrated.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import harness

TOKEN = "chatload-sm-token-0123456789"


def metrics(http_port):
    st, body = harness.http_get("http://127.0.0.1:%d/metrics" % http_port)
    return harness.parse_metrics(body) if st == 200 else {}


def move(http_port, count):
    req = urllib.request.Request("http://127.0.0.1:%d/control/move?count=%d" % (http_port, count),
                                 data=b"", method="POST")
    req.add_header("X-Chatd-Control-Token", TOKEN)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read().decode())


class ChatloadSM(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-chatload-sm-")
        self.procs = []
        self.secret = os.path.join(self.tmp, "secret")
        with open(self.secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(self.secret, 0o600)
        self.token = os.path.join(self.tmp, "token")
        with open(self.token, "w") as f:
            f.write(TOKEN)
        os.chmod(self.token, 0o600)

    def tearDown(self):
        for p in self.procs:
            p.stop(signal.SIGTERM, timeout=15)
        for p in self.procs:
            self.assertIsNone(p.sanitizer_report(), "%s: sanitizer report" % p.name)

    def chatd(self, name, label, service=None, cluster=None, peers=()):
        port, http = harness.free_port(), harness.free_port()
        argv = [harness.binary("chatd"), "--listen", "127.0.0.1:%d" % port,
                "--http", "127.0.0.1:%d" % http, "--domain", "localhost", "--auth-any",
                "--version-label", label, "--instance", name, "--log-level", "warn",
                "--control-token-file", self.token, "--ping-interval", "600"]
        if service:
            argv += ["--service-address", service]
        if cluster:
            argv += ["--cluster-listen", "127.0.0.1:%d" % cluster,
                     "--cluster-secret-file", self.secret]
            if peers:
                argv += ["--peers", ",".join("127.0.0.1:%d" % p for p in peers)]
        p = harness.Proc(argv, name=name)
        self.procs.append(p)
        harness.wait_for(lambda: harness.http_get("http://127.0.0.1:%d/readyz" % http)[0] == 200,
                         timeout=15, what="%s ready" % name)
        return port, http

    def chatload(self, port, clients, duration, *extra):
        report = os.path.join(self.tmp, "report-%d.json" % len(self.procs))
        argv = [harness.binary("chatload"), "--server", "127.0.0.1:%d" % port,
                "--domain", "localhost", "--clients", str(clients), "--ramp", "500/s",
                "--message-rate", "2", "--duration", duration, "--stream-management",
                "--quiet", "--report", report] + list(extra)
        p = harness.Proc(argv, name="chatload")
        self.procs.append(p)
        return p, report

    def read(self, p, report):
        rc = p.wait(timeout=90)
        with open(report) as f:
            r = json.load(f)
        return rc, r

    def test_move_across_the_cluster_resumes(self):
        ca, cb = harness.free_port(), harness.free_port()
        pb, hb = self.chatd("b-0", "v-bbb", cluster=cb, peers=[ca])
        pa, ha = self.chatd("a-0", "v-aaa", service="127.0.0.1:%d" % pb, cluster=ca,
                            peers=[cb])
        harness.wait_for(lambda: metrics(ha).get("chatd_cluster_peers") == 1, timeout=10)
        p, report = self.chatload(pa, 40, "9s", "--expect-zero-drops", "--expect-zero-loss",
                                  "--expect-no-server-close")
        harness.wait_for(lambda: metrics(ha).get("chatd_sessions") == 40, timeout=20,
                         what="40 sessions on a")
        time.sleep(1)
        moved = 0
        for _ in range(4):  # ten a time, while everyone talks
            moved += move(ha, 10)["moved"]
            time.sleep(0.5)
        self.assertEqual(moved, 40)
        harness.wait_for(lambda: metrics(hb).get("chatd_sessions") == 40, timeout=20,
                         what="40 sessions moved to b")
        rc, r = self.read(p, report)
        self.assertEqual(rc, 0, json.dumps({k: r.get(k) for k in (
            "dropped", "messages_lost", "migrated", "resumed", "dropped_by_reason")}))
        self.assertEqual(r["migrated"], 40)
        self.assertEqual(r["resumed"], 40)
        self.assertEqual(r["resume_failed"], 0)
        self.assertEqual(r["dropped"], 0)
        self.assertEqual(r["closed_by_server_total"], 0)
        self.assertEqual(r["connections"], 80)  # each moved once
        self.assertEqual(r["messages_lost"], 0)
        self.assertEqual(r["messages_duplicated"], 0)
        self.assertEqual(r["messages_bounced"], 0)
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        self.assertGreater(r["messages_sent"], 200)
        self.assertEqual(r["reconnect_gap_ms"]["count"], 40)
        self.assertGreater(r["reconnect_gap_ms"]["p99"], 0)
        # the sessions moved: resumed from the peer, a counted them as moved
        self.assertEqual(metrics(hb)['chatd_sessions_resumed_total{from="peer"}'], 40)
        self.assertEqual(metrics(ha)["chatd_sessions_moved_total"], 40)
        # messages crossed colours both ways before and after the move
        pairs = {(x["from"], x["to"]) for x in r["message_pairs"]}
        self.assertIn(("v-aaa", "v-aaa"), pairs)
        self.assertIn(("v-bbb", "v-bbb"), pairs)

    def test_failed_worker_after_a_move(self):
        # A worker killed after its clients moved: its last status counts
        # them migrated, and only the connections it still had open count
        # dropped (worker-failed); every connection has one fate.
        ca, cb = harness.free_port(), harness.free_port()
        pb, hb = self.chatd("b-3", "v-bbb", cluster=cb, peers=[ca])
        pa, ha = self.chatd("a-3", "v-aaa", service="127.0.0.1:%d" % pb, cluster=ca,
                            peers=[cb])
        harness.wait_for(lambda: metrics(ha).get("chatd_cluster_peers") == 1, timeout=10)
        report = os.path.join(self.tmp, "failed-worker.json")
        p = harness.Proc([harness.binary("chatload"), "--server", "127.0.0.1:%d" % pa,
                          "--domain", "localhost", "--clients", "4", "--workers", "2",
                          "--stream-management", "--ping-interval", "0",
                          "--progress-interval", "100ms", "--report", report],
                         name="chatload-workers")
        self.procs.append(p)
        harness.wait_for(lambda: metrics(ha).get("chatd_sessions") == 4, timeout=20)
        self.assertEqual(move(ha, 4)["moved"], 4)
        # the parent's progress line sums the workers' last statuses: all
        # four on b now
        harness.wait_for(lambda: "v-bbb:4)" in p.stderr(), timeout=20,
                         what="both workers' status after the move")
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            kids = [int(x) for x in f.read().split()]
        self.assertEqual(len(kids), 2)
        os.kill(kids[0], signal.SIGKILL)
        p.signal(signal.SIGINT)
        rc, r = self.read(p, report)
        self.assertEqual(rc, 1)
        self.assertIn("failed (killed by signal 9): its 2 clients are counted failed",
                      p.stderr())
        self.assertEqual(r["workers_failed"], 1)
        self.assertEqual(r["migrated"], 4)
        self.assertEqual(r["dropped_by_reason"], {"worker-failed": 2})
        fates = (r["closed_by_client"] + r["closed_by_server_total"] + r["dropped"] +
                 r["connect_failures"] + r["login_failures"] + r["ping_timeouts"] +
                 r["migrated"])
        self.assertEqual(fates, r["connections"], r)

    def test_move_outside_the_cluster_logs_in_again(self):
        pc, hc = self.chatd("c-0", "v-ccc")
        pa, ha = self.chatd("a-1", "v-aaa", service="127.0.0.1:%d" % pc)
        p, report = self.chatload(pa, 10, "5s")
        harness.wait_for(lambda: metrics(ha).get("chatd_sessions") == 10, timeout=20)
        self.assertEqual(move(ha, 10)["moved"], 10)
        rc, r = self.read(p, report)
        self.assertEqual(r["migrated"], 10)
        self.assertEqual(r["resumed"], 0)
        self.assertEqual(r["resume_failed"], 10)
        self.assertEqual(r["dropped"], 0)
        self.assertEqual(r["reconnect_gap_ms"]["count"], 10)
        self.assertEqual(metrics(hc)['chatd_resume_failed_total{reason="not-found"}'], 10)

    def test_without_stream_management_see_other_host_is_a_server_close(self):
        pa, ha = self.chatd("a-2", "v-aaa", service="127.0.0.1:1")
        report = os.path.join(self.tmp, "plain.json")
        p = harness.Proc([harness.binary("chatload"), "--server", "127.0.0.1:%d" % pa,
                          "--domain", "localhost", "--clients", "5", "--duration", "3s",
                          "--quiet", "--report", report], name="chatload-plain")
        self.procs.append(p)
        harness.wait_for(lambda: metrics(ha).get("chatd_sessions") == 5, timeout=20)
        p.signal(signal.SIGUSR1)  # the measurement window opens
        move(ha, 5)
        harness.wait_for(lambda: metrics(ha).get("chatd_sessions") == 5, timeout=20,
                         what="5 sessions again")
        time.sleep(0.3)
        p.signal(signal.SIGUSR1)  # and closes
        rc, r = self.read(p, report)
        self.assertEqual(r["migrated"], 0)
        self.assertEqual(r["closed_by_server"].get("see-other-host"), 5)
        # each came back: the gap from the server's end to the next session
        self.assertEqual(r["reconnect_gap_other_ms"]["count"], 5)
        self.assertEqual(r["reconnect_gap_ms"]["count"], 0)
        self.assertGreater(r["window"]["seconds"], 0.2)
        self.assertIn("p99", r["window"]["latency_ms"])


if __name__ == "__main__":
    unittest.main()
