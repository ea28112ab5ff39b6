"""rainbow deploy --drain-assist on the Kubernetes platform, against the API
double (tests/lib/kubedouble.py) whose pods are real chatd processes: the
moves go through the API server's pod proxy (POST
pods/NAME:5280/proxy/control/move) with the token of the Secret chat-control
that the pods mount, under the Role of k8s/base/rbac.yaml and nothing more;
stream-managed clients are told the Service's address (see-other-host),
resume there on the new colour, and the old colour is deleted once it reads
0. The refusals: a Role without create on pods/proxy or without get on the
Secret (exit 4, naming what is missing), no Secret, chatd without a token
file (exit 3, saying what to create).
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kustomize  # noqa: E402
import xmpp  # noqa: E402
from test_kube_platform import KubeBase, NS, SHA_A, SHA_B, TEMPLATE  # noqa: E402
from xmpp import NS_CLIENT, NS_SM, q  # noqa: E402

N_SM = 6
DOMAIN = "chat.example"


def see_other_host(c):
    raw = bytes(c.raw).decode(errors="replace")
    i = raw.find("<see-other-host")
    if i < 0:
        return None
    i = raw.index(">", i) + 1
    return raw[i:raw.index("</see-other-host>", i)]


def role_rules(objs):
    """The Role rainbow of k8s/base/rbac.yaml as the double's RBAC table."""
    role = kustomize.find(objs, "Role", "rainbow")
    allowed = set()
    for r in role["rules"]:
        for g in r.get("apiGroups") or [""]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    if r.get("resourceNames"):
                        allowed |= {(v, g, res, n) for n in r["resourceNames"]}
                    else:
                        allowed.add((v, g, res))
    return allowed


class KubeAssist(KubeBase):
    def setUp(self):
        super().setUp()
        self.clients = []
        self.addCleanup(self._close_clients)
        self.d.restrict(role_rules(kustomize.build(os.path.join(harness.ROOT, "k8s"))))

    def _close_clients(self):
        for c in self.clients:
            c.abort()

    def rb(self, *args, timeout=60):
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + TEMPLATE, "-P", "backoff-ms=20"] + [str(a) for a in args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        self.assertIsNone(harness.SANITIZER_RE.search(p.stderr), p.stderr)
        return p

    def client(self, addr=None):
        host, port = addr or self.d.service_address(NS, "chat")
        c = xmpp.Client(port, host=host, domain=DOMAIN, timeout=10)
        self.clients.append(c)
        return c

    def deploy_a(self, replicas=1):
        p = self.rb("deploy", SHA_A, "--replicas", replicas, "--settle", "1s", "--poll", "0.2s")
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)

    def colour_gone(self, sha):
        return self.d.get(NS, "deployments", "chat-" + sha) is None

    def test_assisted_drain_moves_every_session_through_the_pod_proxy(self):
        self.deploy_a(replicas=2)
        svc = "%s:%d" % self.d.service_address(NS, "chat")
        sm = []
        for i in range(N_SM):
            c = self.client()
            c.login("sm%d" % i, "pw", mech="PLAIN", resource="r", presence=True)
            en = c.sm_enable()
            self.assertEqual(en.tag, q(NS_SM, "enabled"))
            c.previd = en.get("id")
            sm.append(c)
        plain = self.client()
        plain.login("plain", "pw", mech="PLAIN", resource="r")
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + TEMPLATE, "-P", "backoff-ms=20", "deploy", SHA_B,
                "--replicas", "1", "--settle", "1s", "--poll", "0.2s", "--ready-timeout",
                "20s", "--drain-assist", "20/s"]
        dep = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        self.addCleanup(lambda: dep.poll() is None and dep.kill())
        resumed = {}
        for c in sm:
            self.assertEqual(c.wait_stream_error(timeout=30), "see-other-host")
            # the Service's address (CHATD_SERVICE_ADDRESS), never the pod's own
            self.assertEqual(see_other_host(c), svc)
            host, port = see_other_host(c).rsplit(":", 1)
            n = self.client((host, int(port)))
            n.authenticate(c.jid.split("@")[0], "pw", mech="PLAIN")
            st = n.sm_resume(c.previd, c.sm_h, timeout=10)
            self.assertEqual(st.tag, q(NS_SM, "resumed"), xmpp.ET.tostring(st))
            resumed[c] = n
        self.assertEqual(plain.wait_stream_error(timeout=30), "see-other-host")
        out, _ = dep.communicate(timeout=60)
        self.assertEqual(dep.returncode, 0, out)
        self.assertIsNone(harness.SANITIZER_RE.search(out), out)
        self.assertTrue(self.colour_gone(SHA_A), "the old colour was not deleted: " + out)
        # the resumed sessions live on the new colour, with their full JID
        s2 = self.client()
        s2.login("sender", "pw", mech="PLAIN", resource="r")
        for c, n in resumed.items():
            s2.message(c.jid, "after")
            got = n.expect(lambda s: s.findtext(q(NS_CLIENT, "body")) == "after")
            self.assertEqual(got.get("to"), c.jid)
        # the moves went through the pod proxy of the old colour's pods, and
        # the token was read from the one Secret
        with self.d.lock:
            reqs = [(m, p) for m, p, _, _ in self.d.requests]
        moves = [p for m, p in reqs if m == "POST" and "/proxy/control/move?count=" in p]
        self.assertTrue(moves, "no move through the pod proxy")
        for p in moves:
            self.assertRegex(p, r"^/api/v1/namespaces/%s/pods/chat-%s-[a-z0-9-]+:5280/proxy/"
                             r"control/move\?count=[0-9]+$" % (NS, SHA_A))
        self.assertIn(("GET", "/api/v1/namespaces/%s/secrets/chat-control" % NS), reqs)
        with open(os.path.join(self.tmp, "state", "record.jsonl")) as f:
            rec = [e for e in map(json.loads, f) if e.get("event") == "assist"]
        self.assertEqual(sum(e["moved"] for e in rec), N_SM + 1)

    def assist_fails(self, code, *want, extra=()):
        """A deploy of B with --drain-assist while a session holds A: fails
        with exit status code and a message holding every string of want."""
        c = self.client()
        c.login("u", "pw", mech="PLAIN", resource="r")
        p = self.rb(*extra, "deploy", SHA_B, "--replicas", 1, "--settle", "1s", "--poll",
                    "0.2s", "--ready-timeout", "20s", "--drain-assist", "20/s")
        self.assertEqual(p.returncode, code, p.stderr + p.stdout)
        for w in want:
            self.assertIn(w, p.stderr)
        self.assertFalse(self.colour_gone(SHA_A))

    def test_a_role_without_create_on_pods_proxy_is_told(self):
        self.deploy_a()
        self.d.deny("create", "", "pods/proxy")
        self.assist_fails(4, 'verb "create" on resource "pods/proxy"')

    def test_a_role_without_get_on_the_secret_is_told(self):
        self.deploy_a()
        with self.d.lock:
            self.d.rbac.discard(("get", "", "secrets", "chat-control"))
        self.assist_fails(4, 'verb "get" on resource "secrets"', "chat-control")

    def test_no_secret_is_told_with_what_to_create(self):
        # -P control-secret names a Secret that is not there (a Role that
        # may read it: the 404 is the API server's answer, not RBAC's)
        self.deploy_a()
        with self.d.lock:
            self.d.rbac.add(("get", "", "secrets", "chat-ctl"))
        self.assist_fails(3, 'no Secret "chat-ctl" in namespace rainbow',
                          "kubectl -n rainbow create secret generic chat-ctl",
                          extra=("-P", "control-secret=chat-ctl"))

    def test_chatd_without_a_token_file_is_told(self):
        self.d.update(NS, "configmaps", "chatd-config",
                      lambda o: o["data"].pop("CHATD_CONTROL_TOKEN_FILE"))
        self.deploy_a()
        self.assist_fails(3, "has no control endpoint", "CHATD_CONTROL_TOKEN_FILE")

    def test_a_pod_gone_is_nothing_to_move(self):
        self.deploy_a()
        pods = [p["metadata"]["name"] for p in self.d.list(NS, "pods")]
        err = self.fails("move", SHA_A, "chat-%s-gone" % SHA_A, 3)
        self.assertIn("ENOENT", err)
        out = self.ok("move", SHA_A, pods[0], 3)
        self.assertEqual(out, {"moved": 0})

    def test_in_cluster_moves_go_to_the_pod_ip(self):
        # metrics-via pod-ip (rainbow in a pod): the move goes to the pod IP,
        # not through the API server. The double's pods all have 127.0.0.1
        # and a host port per container port: -P metrics-port names it.
        self.deploy_a()
        pod = self.d.list(NS, "pods")[0]["metadata"]["name"]
        hp = self.d.pod_runtime(NS, pod).host_port("http")
        cs = []
        for i in range(2):
            c = self.client()
            c.login("in%d" % i, "pw", mech="PLAIN", resource="r")
            cs.append(c)
        with self.d.lock:
            self.d.requests.clear()
        extra = ("-P", "metrics-via=pod-ip", "-P", "metrics-port=%d" % hp)
        self.assertEqual(self.ok("move", SHA_A, pod, 5, extra=extra), {"moved": 2})
        for c in cs:
            self.assertEqual(c.wait_stream_error(timeout=10), "see-other-host")
        with self.d.lock:
            self.assertFalse([p for _, p, _, _ in self.d.requests if "/proxy/" in p])
        err = self.fails("move", SHA_A, "chat-%s-gone" % SHA_A, 3, extra=extra)
        self.assertIn("ENOENT", err)


if __name__ == "__main__":
    unittest.main()
