"""The Kubernetes platform against the API double (tests/lib/kubedouble.py),
whose pods are real chatd processes on loopback.

Two levels:
- the platform's operations one by one through tests/helpers/kube_ops.c
  (every op, every error path: 401, 403 naming verb and resource, 404
  namespace/Service, 409 re-read and retry, 5xx with bounded retries,
  timeouts, an unreachable API server, in-cluster credentials, watches that
  end, go silent or expire);
- rainbow itself with --platform kubernetes (deploy, status, rollback,
  prune, a colour that never becomes ready, kill-and-rerun, and a deploy
  with chatload connected through the double's Service: 0 drops).
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
import kubedouble
import kustomize

NS = "rainbow"
SHA_A = "aaaaaaa"
SHA_B = "bbbbbbb"
SHA_C = "ccccccc"
TEMPLATE = os.path.join(harness.ROOT, "k8s", "pod-template.yaml")


def have(name):
    try:
        harness.binary(name)
        return True
    except FileNotFoundError:
        return False


def yaml_file(path):
    """A manifest of k8s/ as JSON, through rainbow's own YAML loader."""
    p = subprocess.run([harness.binary("kube_ops"), "yaml2json", path], capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return json.loads(p.stdout)


class KubeBase(unittest.TestCase):
    tls = True

    def setUp(self):
        if not have("chatd") or not have("kube_ops"):
            self.skipTest("chatd or tests/helpers/kube_ops not built")
        self.tmp = tempfile.mkdtemp(prefix="rb-kube-")
        self.d = kubedouble.KubeDouble(chatd=harness.binary("chatd"), namespace=NS,
                                       tls=self.tls)
        self.addCleanup(self._stop_double)
        # The ConfigMaps and Services of `kubectl apply -k k8s/` (demo credentials).
        for o in kustomize.build(os.path.join(harness.ROOT, "k8s")):
            if o["kind"] in ("ConfigMap", "Service"):
                self.d.create(NS, o["kind"].lower() + "s", o)
        # The Secrets docs/kubernetes.md's quick start creates with kubectl.
        self.d.secret(NS, "chat-cluster", {"secret": os.urandom(32).hex()})
        self.d.secret(NS, "chat-control", {"token": os.urandom(32).hex()})
        self.kubeconfig = kubedouble.write_kubeconfig(
            os.path.join(self.tmp, "kubeconfig"), self.d.url, token="rainbow-token",
            ca=self.d.cert, namespace=NS)
        self.stderrs = []

    def _stop_double(self):
        self.d.stop()
        reports = self.d.sanitizer_reports()
        self.assertEqual(reports, [], "sanitizer report in a pod's chatd")

    def ops(self, *args, kubeconfig=None, env=None, extra=()):
        argv = [harness.binary("kube_ops")]
        if kubeconfig is not False:
            argv += ["--kubeconfig", kubeconfig or self.kubeconfig]
        argv += ["-P", "template=" + TEMPLATE, "-P", "backoff-ms=20"]
        argv += list(extra) + [str(a) for a in args]
        e = dict(os.environ)
        e.pop("KUBECONFIG", None)
        if env:
            e.update(env)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=e)
        m = harness.SANITIZER_RE.search(p.stderr)
        self.assertIsNone(m, p.stderr)
        out = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
        return p.returncode, out, p.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.ops(*args, **kw)
        self.assertEqual(rc, 0, err)
        return out

    def fails(self, *args, **kw):
        rc, out, err = self.ops(*args, **kw)
        self.assertEqual(rc, 1, "expected a failure, got %r" % (out,))
        return err

    def wait_ready(self, sha, n, timeout=30):
        def ready():
            cs = [c for c in self.ok("list") if c["sha"] == sha]
            return cs and cs[0]["ready"] == n and cs[0]["replicas"] == n
        harness.wait_for(ready, timeout=timeout, interval=0.2, what="colour %s ready" % sha)

    def selector(self):
        return self.d.get(NS, "services", "chat")["spec"]["selector"]


class TestKubeOps(KubeBase):
    def test_colour_lifecycle(self):
        self.assertEqual(self.ok("list"), [])
        self.assertEqual(self.ok("selected"), {"selected": ""})
        self.ok("create", SHA_A, 2)
        dep = self.d.get(NS, "deployments", "chat-" + SHA_A)
        labels = {"app": "chat", "rainbow.chat/sha": SHA_A}
        self.assertEqual(dep["metadata"]["labels"], labels)
        # the colour selects only its own SHA (never app=chat alone)
        self.assertEqual(dep["spec"]["selector"], {"matchLabels": labels})
        tl = dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(tl["app"], "chat")
        self.assertEqual(tl["rainbow.chat/sha"], SHA_A)
        self.assertEqual(tl["app.kubernetes.io/version"], SHA_A)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["image"], "rainbow/chatd:" + SHA_A)
        self.assertIn({"name": "CHATD_VERSION", "value": SHA_A}, c["env"])
        self.assertEqual(dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 630)
        self.assertEqual(dep["metadata"]["annotations"]["rainbow.chat/replicas"], "2")
        # creating it again changes nothing and says so
        err = self.fails("create", SHA_A, 2)
        self.assertIn("EEXIST", err)
        self.wait_ready(SHA_A, 2)
        reps = self.ok("replicas", SHA_A)
        self.assertEqual(len(reps), 2)
        self.assertTrue(all(r["ready"] and r["connections"] == 0 for r in reps), reps)
        self.assertTrue(all(r["name"].startswith("chat-%s-" % SHA_A) for r in reps))
        # the metrics port is recorded on the colour: counts read right from
        # anywhere, without the template file
        self.assertEqual(dep["metadata"]["annotations"]["metrics.rainbow.chat/port"], "5280")
        reps = self.ok("replicas", SHA_A, extra=["-P", "template=/nonexistent.yaml"])
        self.assertEqual([r["connections"] for r in reps], [0, 0])

        self.ok("select", SHA_A)
        self.assertEqual(self.selector(), labels)
        self.assertEqual(self.ok("selected"), {"selected": SHA_A})
        self.assertTrue([c for c in self.ok("list") if c["selected"]])
        # one client through the Service's forwarder shows up in the counts
        s = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        try:
            harness.wait_for(lambda: sum(r["connections"] for r in self.ok("replicas", SHA_A))
                             == 1, timeout=10, interval=0.2, what="1 connection counted")
            # the lifetime data comes the same way: its age, then its lifetime
            reps = self.ok("replicas", SHA_A)
            self.assertEqual([(r["lifetimes_n"], r["ages_n"]) for r in reps], [(61, 61)] * 2)
            self.assertEqual(sum(r["ages_count"] for r in reps), 1)
            ended0 = sum(r["lifetimes_count"] for r in reps)
        finally:
            s.close()
        harness.wait_for(lambda: sum(r["lifetimes_count"] for r in self.ok("replicas", SHA_A))
                         == ended0 + 1, timeout=10, interval=0.2, what="1 lifetime counted")

        self.ok("meta", SHA_A, "draining-since", "1796000000.250")
        colour = self.ok("list")[0]
        self.assertEqual(colour["meta"]["draining-since"], "1796000000.250")
        self.assertEqual(self.d.get(NS, "deployments", "chat-" + SHA_A)["metadata"][
            "annotations"]["rainbow.chat/draining-since"], "1796000000.250")
        self.ok("meta", SHA_A, "draining-since")
        self.assertNotIn("draining-since", self.ok("list")[0]["meta"])

        self.ok("scale", SHA_A, 0)
        harness.wait_for(lambda: self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A) == [],
                         timeout=20, what="pods gone after scale 0")
        self.assertEqual(self.ok("list")[0]["replicas"], 0)
        self.ok("remove", SHA_A)
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        err = self.fails("remove", SHA_A)
        self.assertIn("ENOENT", err)
        dels = self.d.requests_matching("DELETE", "/deployments/chat-" + SHA_A)
        self.assertEqual(json.loads(dels[0][3])["propagationPolicy"], "Background")

    def test_switch_replaces_the_selector(self):
        # someone left a key in the selector: a merge would keep it matching
        self.d.update(NS, "services", "chat",
                      lambda svc: svc["spec"]["selector"].update(stale="x"))
        self.ok("select", SHA_B)
        self.assertEqual(self.selector(), {"app": "chat", "rainbow.chat/sha": SHA_B})
        patches = self.d.requests_matching("PATCH", "/services/chat$")
        self.assertEqual(patches[-1][2], "application/merge-patch+json")
        body = json.loads(patches[-1][3])
        self.assertEqual(body["spec"]["selector"],
                         {"app": "chat", "rainbow.chat/sha": SHA_B, "stale": None})
        self.assertTrue(body["metadata"]["resourceVersion"])
        # selecting nothing is a selector that matches no pod
        self.ok("select", "-")
        self.assertEqual(self.selector(), {"app": "chat", "rainbow.chat/sha": "none"})
        self.assertEqual(self.ok("selected"), {"selected": ""})

    def test_conflict_is_reread_and_retried(self):
        self.d.inject("PATCH", "/services/chat$", status=409, reason="Conflict", times=2)
        self.ok("select", SHA_A)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        self.assertEqual(len(self.d.requests_matching("PATCH", "/services/chat$")), 3)
        # every attempt re-read the Service first
        seq = [r[0] for r in self.d.requests if r[1].endswith("/services/chat")]
        self.assertEqual(seq[-7:], ["GET", "PATCH", "GET", "PATCH", "GET", "PATCH", "GET"])
        # conflicts that never end give up with a clear error
        self.d.inject("PATCH", "/services/chat$", status=409, reason="Conflict", times=50)
        err = self.fails("select", SHA_B)
        self.assertIn("kept changing", err)

    def test_5xx_bounded_retries_then_error(self):
        self.d.inject("GET", "/deployments\\?", status=503, times=2)
        self.assertEqual(self.ok("list", extra=["-P", "retries=3"]), [])
        n0 = len(self.d.requests_matching("GET", "/deployments\\?"))
        self.d.inject("GET", "/deployments\\?", status=500, times=100)
        err = self.fails("list", extra=["-P", "retries=2"])
        self.assertIn("HTTP 500", err)
        self.assertIn("after 3 attempts", err)
        self.assertIn("EIO", err)
        self.assertEqual(len(self.d.requests_matching("GET", "/deployments\\?")) - n0, 3)

    def test_not_a_list_is_an_error(self):
        # a proxy in front of the API server answering 200 with its own page
        # must not read as "there are no colours"
        self.d.inject("GET", "/deployments\\?", status=200, body=b"<html>login</html>")
        err = self.fails("list")
        self.assertIn("not a DeploymentList", err)
        self.d.inject("GET", "/services/chat$", status=200, body=b"<html>login</html>",
                      times=2)
        err = self.fails("selected")
        self.assertIn("not a Service", err)

    def test_timeout_and_unreachable(self):
        self.d.inject("GET", "/deployments\\?", delay=3.0, times=2)
        err = self.fails("list", extra=["-P", "timeout-ms=400", "-P", "retries=1"])
        self.assertIn("ETIMEDOUT", err)
        port = harness.free_port()
        kc = kubedouble.write_kubeconfig(os.path.join(self.tmp, "kc-dead"),
                                         "https://127.0.0.1:%d" % port, token="t",
                                         ca=self.d.cert, namespace=NS)
        err = self.fails("list", kubeconfig=kc, extra=["-P", "retries=1"])
        self.assertIn("unreachable", err)
        self.assertIn("ECONNREFUSED", err)

    def test_401(self):
        kc = kubedouble.write_kubeconfig(os.path.join(self.tmp, "kc-bad"), self.d.url,
                                         token="wrong", ca=self.d.cert, namespace=NS)
        err = self.fails("list", kubeconfig=kc)
        self.assertIn("401 Unauthorized", err)
        self.assertIn("rejected the credentials", err)
        self.assertIn("EACCES", err)
        # and the TLS check is real: no CA, no connection
        kc = kubedouble.write_kubeconfig(os.path.join(self.tmp, "kc-noca"), self.d.url,
                                         token="rainbow-token", namespace=NS)
        err = self.fails("list", kubeconfig=kc, extra=["-P", "retries=0"])
        self.assertIn("certificate", err.lower())

    def test_403_names_verb_and_resource(self):
        self.ok("create", SHA_A, 1)
        self.d.deny("patch", "apps", "deployments/scale")
        err = self.fails("scale", SHA_A, 0)
        self.assertIn('grant verb "patch" on resource "deployments/scale" in API group "apps"',
                      err)
        self.assertIn('cannot patch resource "deployments/scale" in API group "apps" in the '
                      'namespace "rainbow"', err)
        self.d.deny("patch", "", "services")
        err = self.fails("select", SHA_A)
        self.assertIn('not allowed to patch services "chat" in namespace rainbow', err)
        self.d.deny("list", "", "pods")
        err = self.fails("replicas", SHA_A)
        self.assertIn('grant verb "list" on resource "pods"', err)
        self.d.deny("create", "apps", "deployments")
        err = self.fails("create", SHA_B, 1)
        self.assertIn('cannot create resource "deployments" in API group "apps"', err)

    def test_404_namespace_and_service(self):
        err = self.fails("list", extra=["--namespace", "nope"])
        self.assertIn('namespace "nope" does not exist', err)
        self.d.add_namespace("empty")
        err = self.fails("list", extra=["--namespace", "empty"])
        self.assertIn('Service "chat" not found in namespace "empty"', err)
        # without RBAC on namespaces it cannot tell which one is missing and says so
        self.d.deny("get", "", "namespaces")
        err = self.fails("list", extra=["--namespace", "nope"])
        self.assertIn("the namespace may not exist either", err)
        err = self.fails("replicas", SHA_C)
        self.assertIn("colour %s does not exist" % SHA_C, err)

    def test_in_cluster_service_account(self):
        sa = os.path.join(self.tmp, "sa")
        os.makedirs(sa)
        with open(os.path.join(sa, "token"), "w") as f:
            f.write("rainbow-token\n")
        with open(os.path.join(sa, "namespace"), "w") as f:
            f.write(NS)
        with open(self.d.cert) as src, open(os.path.join(sa, "ca.crt"), "w") as dst:
            dst.write(src.read())
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": self.d.url.rsplit(":", 1)[1],
               "RAINBOW_SA_DIR": sa, "HOME": self.tmp}
        self.assertEqual(self.ok("list", kubeconfig=False, env=env), [])
        # from inside, counts come straight from the pod IP (no pods/proxy);
        # the double's pods share 127.0.0.1, so name this pod's port
        self.ok("create", SHA_A, 1, kubeconfig=False, env=env)
        self.wait_ready(SHA_A, 1)
        pod = self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A)[0]["metadata"]["name"]
        hp = self.d.pod_runtime(NS, pod).host_port("http")
        n_proxy = len(self.d.requests_matching("GET", "/proxy/metrics"))
        reps = self.ok("replicas", SHA_A, kubeconfig=False, env=env,
                       extra=["-P", "metrics-port=%d" % hp])
        self.assertEqual([(r["name"], r["connections"]) for r in reps], [(pod, 0)])
        self.assertEqual([(r["lifetimes_n"], r["ages_n"]) for r in reps], [(61, 61)])
        self.assertEqual(len(self.d.requests_matching("GET", "/proxy/metrics")), n_proxy)
        # the token rotates: the file is re-read
        self.d.set_token("rotated-token")
        err = self.fails("list", kubeconfig=False, env=env)
        self.assertIn("401", err)
        with open(os.path.join(sa, "token"), "w") as f:
            f.write("rotated-token\n")
        self.assertEqual(self.ok("list", kubeconfig=False, env=env)[0]["sha"], SHA_A)

    def test_client_certificate_data_and_token_file(self):
        import base64
        tmp = self.tmp

        def ssl(*a):
            subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=tmp)
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=rainbow-test-ca")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out",
            "client.csr", "-subj", "/CN=system:serviceaccount:rainbow:rainbow")
        ssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.crt", "-days", "1")
        d = kubedouble.KubeDouble(chatd=None, namespace=NS, token=None, tls=True,
                                  client_ca=os.path.join(tmp, "ca.crt"))
        self.addCleanup(d.stop)
        d.create(NS, "services", yaml_file(os.path.join(harness.ROOT, "k8s", "base",
                                                        "service.yaml")))

        def b64(name):
            with open(os.path.join(tmp, name), "rb") as f:
                return base64.b64encode(f.read()).decode()
        with open(d.cert, "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        kc = os.path.join(tmp, "kc-cert")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    "clusters:\n- name: d\n  cluster:\n    server: %s\n"
                    "    certificate-authority-data: %s\n"
                    "contexts:\n- name: c\n  context: {cluster: d, user: u, namespace: %s}\n"
                    "users:\n- name: u\n  user:\n    client-certificate-data: %s\n"
                    "    client-key-data: %s\n" % (d.url, ca, NS, b64("client.crt"),
                                                    b64("client.key")))
        self.assertEqual(self.ok("list", kubeconfig=kc), [])
        # the same double refuses a client without the certificate
        kc2 = kubedouble.write_kubeconfig(os.path.join(tmp, "kc-nocert"), d.url,
                                          ca=d.cert, namespace=NS)
        self.assertIn("401", self.fails("list", kubeconfig=kc2))
        # tokenFile (relative to the kubeconfig) and insecure-skip-tls-verify
        with open(os.path.join(tmp, "tok"), "w") as f:
            f.write("rainbow-token\n")
        kc3 = os.path.join(tmp, "kc-tokfile")
        with open(kc3, "w") as f:
            f.write("current-context: c\nclusters: [{name: d, cluster: {server: '%s', "
                    "insecure-skip-tls-verify: true}}]\ncontexts: [{name: c, context: "
                    "{cluster: d, user: u, namespace: %s}}]\nusers: [{name: u, user: "
                    "{tokenFile: tok}}]\n" % (self.d.url, NS))
        self.assertEqual(self.ok("list", kubeconfig=kc3), [])

    def test_tls_server_name(self):
        # the certificate names localhost and 127.0.0.1: verification follows
        # tls-server-name while the connection still goes to the server address
        def kc(name, tls_name):
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                f.write("current-context: c\nclusters: [{name: d, cluster: {server: '%s', "
                        "certificate-authority: '%s', tls-server-name: %s}}]\n"
                        "contexts: [{name: c, context: {cluster: d, user: u, namespace: %s}}]"
                        "\nusers: [{name: u, user: {token: rainbow-token}}]\n"
                        % (self.d.url, self.d.cert, tls_name, NS))
            return path
        self.assertEqual(self.ok("list", kubeconfig=kc("kc-sni", "localhost")), [])
        err = self.fails("list", kubeconfig=kc("kc-sni-bad", "wrong.example"),
                         extra=["-P", "retries=0"])
        self.assertIn("unreachable", err)
        self.assertIn("wrong.example", err)

    def test_preview_service(self):
        self.ok("create", SHA_A, 1, extra=["-P", "preview=1"])
        prev = self.d.get(NS, "services", "chat-%s-preview" % SHA_A)
        self.assertEqual(prev["spec"]["selector"], {"app": "chat", "rainbow.chat/sha": SHA_A})
        self.assertEqual(prev["spec"]["ports"][0]["port"], 5222)
        self.wait_ready(SHA_A, 1)
        # the preview reaches the new colour before any switch
        s = socket.create_connection(self.d.service_address(NS, "chat-%s-preview" % SHA_A),
                                     timeout=5)
        s.sendall(b"<?xml version='1.0'?><stream:stream to='chat.example' version='1.0' "
                  b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        s.settimeout(5)
        got = b""
        try:
            while b"stream:features" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        finally:
            s.close()
        self.assertIn(b"stream:features", got)
        self.assertEqual(self.selector()["rainbow.chat/sha"], "none")
        self.ok("remove", SHA_A)
        self.assertIsNone(self.d.get(NS, "services", "chat-%s-preview" % SHA_A))

    def test_list_watches_a_moving_rollout(self):
        # a colour that never gets ready (its chatd refuses to start)
        self.d.update(NS, "configmaps", "chatd-config",
                      lambda cm: cm["data"].update(CHATD_MAX_DEPTH="not-a-number"))
        self.ok("create", SHA_A, 1)
        # list after list in one process: while a rollout is unsettled each
        # list first waits on a bounded watch from the last resourceVersion
        out = self.ok("lists", 3, extra=["-P", "watch-s=1"])
        self.assertEqual((out[0]["sha"], out[0]["ready"]), (SHA_A, 0))
        watches = [r[1] for r in self.d.requests if "watch=true" in r[1]]
        self.assertEqual(len(watches), 2, watches)
        self.assertTrue(all("resourceVersion=" in w and "timeoutSeconds=1" in w and
                            "labelSelector=app%3Dchat%2Crainbow.chat%2Fsha" in w
                            for w in watches), watches)
        # a watch that goes silent (no events, never closed) is given up and re-listed
        self.d.inject("GET", "watch=true", silent_watch=True, times=5)
        t0 = time.monotonic()
        out = self.ok("lists", 2, extra=["-P", "watch-s=1"])
        self.assertEqual(out[0]["sha"], SHA_A)
        self.assertLess(time.monotonic() - t0, 30)
        # a resourceVersion that was compacted away: 410 Gone, re-list
        self.d.compact()
        self.assertEqual(self.ok("lists", 2, extra=["-P", "watch-s=1"])[0]["sha"], SHA_A)

    def test_shrink_removes_only_the_empty_pod(self):
        self.ok("create", SHA_A, 2)
        self.wait_ready(SHA_A, 2)
        pods = sorted(p["metadata"]["name"] for p in
                      self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A))
        busy, empty = pods
        rt = self.d.pod_runtime(NS, busy)
        s = socket.create_connection(("127.0.0.1", rt.host_port("xmpp")), timeout=5)
        try:
            harness.wait_for(lambda: {r["name"]: r["connections"]
                                      for r in self.ok("replicas", SHA_A)}.get(busy) == 1,
                             timeout=10, interval=0.2, what="busy pod counted")
            err = self.fails("remove-replica", SHA_A, busy)
            self.assertIn("EBUSY", err)
            self.assertIn("still holds 1 connection", err)
            self.ok("remove-replica", SHA_A, empty)
            # the controller may already have deleted the empty pod: read the
            # cost rainbow gave it from the PATCH the double received
            patches = [json.loads(x[3]) for x in self.d.requests_matching(
                "PATCH", r"/pods/%s$" % re.escape(empty))]
            self.assertTrue(patches, "no PATCH of the empty pod")
            self.assertEqual(patches[-1]["metadata"]["annotations"][kubedouble.DELETION_COST],
                             "-2147483647")
            costs = {p["metadata"]["name"]: p["metadata"]["annotations"][
                kubedouble.DELETION_COST] for p in self.d.list(NS, "pods",
                                                                "rainbow.chat/sha=" + SHA_A)}
            self.assertEqual(costs[busy], "1")
            harness.wait_for(lambda: [p["metadata"]["name"] for p in self.d.list(
                NS, "pods", "rainbow.chat/sha=" + SHA_A)] == [busy], timeout=20,
                what="only the empty pod removed")
            self.assertEqual(self.d.get(NS, "deployments", "chat-" + SHA_A)["spec"]["replicas"],
                             1)
            self.assertTrue(self.d.pod_runtime(NS, busy).proc.alive())
        finally:
            s.close()


    def test_shrink_refuses_when_a_busy_pod_would_go_first(self):
        # The ReplicaSet controller deletes a not-ready pod before it looks at
        # pod-deletion-cost: with a busy pod not ready, lowering the replicas
        # would take the busy pod, not the empty one.
        self.ok("create", SHA_A, 2)
        self.wait_ready(SHA_A, 2)
        busy, empty = sorted(p["metadata"]["name"] for p in
                             self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A))
        rt = self.d.pod_runtime(NS, busy)
        s = socket.create_connection(("127.0.0.1", rt.host_port("xmpp")), timeout=5)
        try:
            harness.wait_for(lambda: {r["name"]: r["connections"]
                                      for r in self.ok("replicas", SHA_A)}.get(busy) == 1,
                             timeout=10, interval=0.2, what="busy pod counted")
            # Its readiness probe starts failing (say, overloaded); it keeps its connection.
            # (The empty pod's probe is taken out so that a slow machine cannot flap it.)
            rt.probe = ("/no-such-path", rt.probe[1])
            self.d.pod_runtime(NS, empty).probe = None
            harness.wait_for(lambda: {r["name"]: r["ready"] for r in self.ok(
                "replicas", SHA_A)} == {busy: False, empty: True},
                             timeout=20, interval=0.2, what="busy pod not ready")
            err = self.fails("remove-replica", SHA_A, empty)
            self.assertIn("EBUSY", err)
            self.assertIn(busy, err)
            self.assertEqual(self.d.get(NS, "deployments", "chat-" + SHA_A)["spec"]["replicas"],
                             2)
            self.assertTrue(self.d.pod_runtime(NS, busy).proc.alive())
        finally:
            s.close()


class TestDoubleFidelity(KubeBase):
    """The double behaves like the real API server where rainbow depends on it."""
    tls = False

    def req(self, method, path, body=None, ctype="application/json", token="rainbow-token"):
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.d.url + path, data=data, method=method)
        if token:
            r.add_header("Authorization", "Bearer " + token)
        if data is not None:
            r.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def test_patch_content_types_on_a_selector(self):
        path = "/api/v1/namespaces/%s/services/chat" % NS
        # strategic merge and merge patch both MERGE map keys
        code, svc = self.req("PATCH", path, {"spec": {"selector": {"x": "1"}}},
                             "application/strategic-merge-patch+json")
        self.assertEqual(code, 200)
        self.assertEqual(svc["spec"]["selector"]["x"], "1")
        self.assertIn("app", svc["spec"]["selector"])
        code, svc = self.req("PATCH", path, {"spec": {"selector": {"x": None}}},
                             "application/merge-patch+json")
        self.assertNotIn("x", svc["spec"]["selector"])
        # a JSON patch replaces the whole map
        code, svc = self.req("PATCH", path, [{"op": "replace", "path": "/spec/selector",
                                              "value": {"only": "this"}}],
                             "application/json-patch+json")
        self.assertEqual(svc["spec"]["selector"], {"only": "this"})
        code, st = self.req("PATCH", path, [{"op": "test", "path": "/spec/type",
                                             "value": "NodePort"}],
                            "application/json-patch+json")
        self.assertEqual(code, 422)
        code, st = self.req("PATCH", path, {"a": 1}, "text/plain")
        self.assertEqual(code, 415)
        # a stale resourceVersion in a patch or an update: 409 Conflict
        code, st = self.req("PATCH", path, {"metadata": {"resourceVersion": "1"}},
                            "application/merge-patch+json")
        self.assertEqual((code, st["reason"], st["kind"], st["status"]),
                         (409, "Conflict", "Status", "Failure"))
        code, st = self.req("PUT", path, {"metadata": {"name": "chat"}, "spec": {}})
        self.assertEqual(code, 422)
        self.assertIn("must be specified for an update", st["message"])

    def test_status_bodies_and_generation(self):
        code, st = self.req("GET", "/apis/apps/v1/namespaces/%s/deployments/x" % NS)
        self.assertEqual(st, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": 'deployments.apps "x" not found',
                              "reason": "NotFound", "details": {"name": "x", "group": "apps",
                                                                "kind": "deployments"},
                              "code": 404})
        code, st = self.req("GET", "/apis/apps/v1/namespaces/%s/deployments" % NS, token=None)
        self.assertEqual((code, st["reason"]), (401, "Unauthorized"))
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g"},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
        code, d = self.req("POST", "/apis/apps/v1/namespaces/%s/deployments" % NS, dep)
        self.assertEqual((code, d["metadata"]["generation"]), (201, 1))
        code, st = self.req("POST", "/apis/apps/v1/namespaces/%s/deployments" % NS, dep)
        self.assertEqual((code, st["reason"]), (409, "AlreadyExists"))
        base = "/apis/apps/v1/namespaces/%s/deployments/g" % NS
        code, d2 = self.req("PATCH", base, {"metadata": {"annotations": {"k": "v"}}},
                            "application/merge-patch+json")
        self.assertEqual(d2["metadata"]["generation"], 1)   # metadata only
        self.assertGreater(int(d2["metadata"]["resourceVersion"]),
                           int(d["metadata"]["resourceVersion"]))
        code, sc = self.req("PATCH", base + "/scale", {"spec": {"replicas": 0}},
                            "application/merge-patch+json")
        self.assertEqual(sc["kind"], "Scale")
        code, d3 = self.req("PATCH", base, {"spec": {"minReadySeconds": 1}},
                            "application/merge-patch+json")
        self.assertEqual(d3["metadata"]["generation"], 2)
        harness.wait_for(lambda: self.req("GET", base)[1]["status"].get("observedGeneration")
                         == 2, timeout=5, what="observedGeneration")


@unittest.skipUnless(have("rainbow") and have("chatd") and have("kube_ops"),
                     "rainbow, chatd or kube_ops not built")
class TestRainbowOnKube(KubeBase):
    def rainbow(self, *args, timeout=120):
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + TEMPLATE, "-P", "backoff-ms=20"] + [str(a) for a in args]
        p = harness.Proc(argv, name="rainbow")
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.stop(signal.SIGKILL)
            self.fail("rainbow %s timed out: %s" % (args, p.stderr()[-3000:]))
        self.assertIsNone(p.sanitizer_report(), p.sanitizer_report())
        return p.p.returncode, p.stdout(), p.stderr()

    def test_deploy_status_rollback_prune(self):
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--settle", "1s",
                                    "--keep-drained", 1)
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_B)
        # A drained and kept at 0 replicas for rollback
        dep = self.d.get(NS, "deployments", "chat-" + SHA_A)
        self.assertIsNotNone(dep, err + out)
        self.assertEqual(dep["spec"]["replicas"], 0)
        rc, out, err = self.rainbow("status", "-o", "json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st["selected"], SHA_B)
        rc, out, err = self.rainbow("rollback", SHA_A, "--settle", "1s", "--keep-drained", 1)
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        rc, out, err = self.rainbow("prune", "--settle", "1s", "--keep-drained", 0)
        self.assertEqual(rc, 0, err + out)
        names = sorted(d["metadata"]["name"] for d in self.d.list(NS, "deployments"))
        self.assertEqual(names, ["chat-" + SHA_A])

    def test_never_ready_aborts_with_traffic_untouched(self):
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        # a template whose chatd cannot start (bad flag): CrashLoopBackOff
        bad = os.path.join(self.tmp, "bad-template.yaml")
        with open(TEMPLATE) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("      envFrom:", "      args: [\"--no-such-flag\"]\n"
                                 "      envFrom:"))
        argv_extra = ["-P", "template=" + bad]
        p = harness.Proc([harness.binary("rainbow"), "--platform", "kubernetes",
                          "--kubeconfig", self.kubeconfig, "--state-dir",
                          os.path.join(self.tmp, "state")] + argv_extra +
                         ["deploy", SHA_B, "--replicas", 1, "--ready-timeout", "4s"],
                         name="rainbow")
        p.wait(60)
        self.assertIsNone(p.sanitizer_report())
        self.assertEqual(p.p.returncode, 5)  # not-ready
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        harness.wait_for(lambda: self.d.get(NS, "deployments", "chat-" + SHA_B) is None,
                         timeout=10, what="failed colour removed")

    def test_forbidden_switch_stops_at_once(self):
        # RBAC does not heal between steps: one clear error, no retry loop
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.d.deny("patch", "", "services")
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 4, out)  # denied
        self.assertIn("giving up: retrying cannot fix this", err)
        self.assertEqual(err.count("cannot patch resource"), 1, err)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)

    def test_deploy_json_outcome_and_exit_codes(self):
        # -o json: stdout is exactly one JSON object, progress goes to stderr
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s",
                                    "-o", "json")
        self.assertEqual(rc, 0, err)
        o = json.loads(out)
        self.assertEqual((o["command"], o["sha"], o["ok"], o["exit_code"], o["failure"]),
                         ("deploy", SHA_A, True, 0, None))
        self.assertIn("deploy chat-" + SHA_A, err)
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        p = harness.Proc([harness.binary("rainbow"), "--platform", "kubernetes",
                          "--kubeconfig", self.kubeconfig, "--state-dir",
                          os.path.join(self.tmp, "state"), "-P", "template=" + TEMPLATE,
                          "deploy", SHA_B, "--replicas", 1, "--settle", "1s", "-o", "json"],
                         name="rainbow")
        self.addCleanup(p.stop, signal.SIGKILL, 5)
        harness.wait_for(lambda: self.selector()["rainbow.chat/sha"] == SHA_B, timeout=60,
                         what="switch to B")
        # a second rainbow on the same state dir: locked (7), still one JSON object
        rc, out, err = self.rainbow("deploy", SHA_B, "-o", "json")
        self.assertEqual(rc, 7, err)
        self.assertEqual(json.loads(out)["failure"]["class"], "locked")
        client.close()
        self.assertEqual(p.wait(60), 0, p.stderr()[-3000:])
        o = json.loads(p.stdout())
        self.assertTrue(o["ok"])
        self.assertEqual((o["selected_before"], o["selected"]), (SHA_A, SHA_B))
        acts = [(a["event"], a["sha"], a["why"]) for a in o["actions"]]
        self.assertEqual(acts, [("create", SHA_B, ""), ("select", SHA_B, ""),
                                ("remove", SHA_A, "drained")], o)
        self.assertGreater(o["actions"][-1]["drain_ms"], 0)
        self.assertEqual([(c["sha"], c["state"]) for c in o["colours"]], [(SHA_B, "live")])
        self.assertLessEqual({"create", "switch", "drain"}, set(o["phases"]), o)
        self.assertLessEqual(set(o["phases"]), {"create", "wait-ready", "switch", "drain"}, o)
        # not ready: 5, the reason in the object; a rollback to nothing: 9
        rc, out, err = self.rainbow("deploy", SHA_C, "--replicas", 1, "--ready-timeout",
                                    "2s", "-P", "template=" + self.bad_template(), "-o", "json")
        self.assertEqual(rc, 5, err)
        o = json.loads(out)
        self.assertEqual(o["failure"]["class"], "not-ready")
        self.assertIn("not ready", o["failure"]["reason"])
        rc, out, err = self.rainbow("rollback", "-o", "json")
        self.assertEqual((rc, json.loads(out)["failure"]["class"]), (9, "no-target"))
        # the API server unreachable: 3; the credentials refused: 4
        self.d.set_token("other-token")
        rc, out, err = self.rainbow("deploy", SHA_C, "-o", "json")
        self.assertEqual((rc, json.loads(out)["failure"]["class"]), (4, "denied"), err)
        self.assertIn("401", json.loads(out)["failure"]["reason"])
        self.d.stop()
        rc, out, err = self.rainbow("deploy", SHA_C, "-o", "json", "-P", "retries=0")
        self.assertEqual((rc, json.loads(out)["failure"]["class"]), (3, "platform"), err)

    def test_wait_for_drained_and_live(self):
        # deploy --no-wait, then `rainbow wait`: it reads only, it deletes nothing
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        rc, out, err = self.rainbow("wait", "--for", "live", "--timeout", "10s")
        self.assertEqual(rc, 0, err + out)
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        self.addCleanup(client.close)
        harness.wait_for(lambda: sum(max(r["connections"], 0)
                                     for r in self.ok("replicas", SHA_A)) == 1,
                         timeout=10, interval=0.2, what="client counted on A")
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--no-wait")
        self.assertEqual(rc, 0, err + out)
        rc, out, err = self.rainbow("wait", SHA_B, "--for", "live", "-o", "json")
        self.assertEqual(rc, 0, err + out)
        self.assertTrue(json.loads(out)["ok"])
        # A holds the client: not drained in time (8, what is left named)
        rc, out, err = self.rainbow("wait", "--timeout", "2s", "--settle", "200ms",
                                    "--poll", "200ms", "-o", "json")
        self.assertEqual(rc, 8, err + out)
        o = json.loads(out)
        self.assertEqual(o["failure"]["class"], "timeout")
        self.assertIn("chat-%s draining=1" % SHA_A, o["failure"]["reason"])
        # a colour that never comes: timeout too
        rc, out, err = self.rainbow("wait", SHA_C, "--for", "live", "--timeout", "1s")
        self.assertEqual(rc, 8, err + out)
        self.assertIn("does not exist", err)
        p = harness.Proc([harness.binary("rainbow"), "--platform", "kubernetes",
                          "--kubeconfig", self.kubeconfig, "--state-dir",
                          os.path.join(self.tmp, "state"), "wait", "--settle", "500ms",
                          "--poll", "200ms"], name="rainbow-wait")
        self.addCleanup(p.stop, signal.SIGKILL, 5)
        harness.wait_for(lambda: "waiting: chat-%s draining=1" % SHA_A in p.stdout(),
                         timeout=20, what="wait says what it waits for")
        self.assertTrue(p.alive())
        client.close()
        self.assertEqual(p.wait(30), 0, p.stderr())
        self.assertIn("drained after", p.stdout())
        # waiting deleted nothing: prune does
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        rc, out, err = self.rainbow("prune", "--settle", "500ms")
        self.assertEqual(rc, 0, err + out)
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        # nothing draining: done at once
        rc, out, err = self.rainbow("wait", "--timeout", "5s")
        self.assertEqual(rc, 0, err + out)

    def test_deploy_dry_run_sends_nothing(self):
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        self.addCleanup(client.close)
        harness.wait_for(lambda: sum(max(r["connections"], 0)
                                     for r in self.ok("replicas", SHA_A)) == 1,
                         timeout=10, interval=0.2, what="client counted on A")

        def changes():
            return [r for r in self.d.requests if r[0] in ("POST", "PUT", "PATCH", "DELETE")]
        before = len(changes())
        svc_rv = self.d.get(NS, "services", "chat")["metadata"]["resourceVersion"]
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 2, "--dry-run", "-o", "json")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(len(changes()), before, changes()[before:])
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_B))
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        o = json.loads(out)
        self.assertTrue(o["dry_run"] and o["ok"])
        reqs = [r for st in o["steps"] for r in st["requests"]]
        dep = [r for r in reqs if r["method"] == "POST"]
        self.assertEqual([r["path"] for r in dep], ["/apis/apps/v1/namespaces/%s/deployments"
                                                    % NS])
        body = dep[0]["body"]
        labels = {"app": "chat", "rainbow.chat/sha": SHA_B}
        self.assertEqual((body["kind"], body["metadata"]["name"], body["spec"]["replicas"]),
                         ("Deployment", "chat-" + SHA_B, 2))
        self.assertEqual(body["spec"]["selector"]["matchLabels"], labels)
        self.assertEqual(body["spec"]["template"]["spec"]["containers"][0]["image"],
                         "rainbow/chatd:" + SHA_B)
        svc = [r for r in reqs if r["path"] == "/api/v1/namespaces/%s/services/chat" % NS]
        self.assertEqual(len(svc), 1, reqs)
        self.assertEqual(svc[0]["content_type"], "application/merge-patch+json")
        self.assertEqual(svc[0]["body"], {"metadata": {"resourceVersion": svc_rv},
                                          "spec": {"selector": labels}})
        ann = {(r["path"].rsplit("/", 1)[1], k): v for r in reqs if r["method"] == "PATCH"
               and "/deployments/" in r["path"]
               for k, v in r["body"]["metadata"]["annotations"].items()}
        self.assertIn(("chat-" + SHA_A, "rainbow.chat/draining-since"), ann)
        self.assertEqual(ann[("chat-" + SHA_A, "rainbow.chat/drain-from")], "1")
        self.assertIn(("chat-" + SHA_B, "rainbow.chat/selected-at"), ann)
        self.assertEqual(o["then_drain"], [{"sha": SHA_A, "connections": 1}])
        # the same as text
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 2, "--dry-run")
        self.assertEqual(rc, 0, err + out)
        self.assertIn("POST /apis/apps/v1/namespaces/%s/deployments (application/json)" % NS,
                      out)
        self.assertIn("PATCH /api/v1/namespaces/%s/services/chat "
                      "(application/merge-patch+json)" % NS, out)
        self.assertIn("then: wait until chat-%s (1 connections now)" % SHA_A, out)
        self.assertEqual(len(changes()), before)

    def bad_template(self):
        bad = os.path.join(self.tmp, "bad-template.yaml")
        with open(TEMPLATE) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("      envFrom:", "      args: [\"--no-such-flag\"]\n"
                                 "      envFrom:"))
        return bad

    def test_forbidden_metrics_read_is_an_error(self):
        # The Role without pods/proxy: from outside, no count can be read. That is
        # an RBAC error naming verb and resource, not a count of -1 and exit 0.
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.d.deny("get", "", "pods/proxy")
        rc, out, err = self.rainbow("status")
        self.assertEqual(rc, 4, out)  # denied
        self.assertIn('grant verb "get" on resource "pods/proxy"', err)
        self.assertNotIn(" -1 ", out)
        # deploy stops at once and deletes nothing
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--settle", "1s")
        self.assertNotEqual(rc, 0, out)
        self.assertIn('grant verb "get" on resource "pods/proxy"', err)
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        # a count that cannot be read for other reasons (the pod does not answer)
        # keeps the colour: it is deleted only once it reads 0
        self.d.allow_all()
        fault = self.d.inject("GET", r"/pods/chat-%s-[^/]*/proxy/metrics" % SHA_A, status=503,
                              times=10 ** 6)
        p = harness.Proc([harness.binary("rainbow"), "--platform", "kubernetes",
                          "--kubeconfig", self.kubeconfig, "--state-dir",
                          os.path.join(self.tmp, "state"), "-P", "template=" + TEMPLATE,
                          "deploy", SHA_B, "--replicas", 1, "--settle", "200ms", "--poll",
                          "100ms"], name="rainbow")
        self.addCleanup(p.stop, signal.SIGKILL, 5)
        harness.wait_for(lambda: self.selector()["rainbow.chat/sha"] == SHA_B, timeout=60,
                         what="switch to B")
        hits = fault["hits"]
        harness.wait_for(lambda: fault["hits"] >= hits + 10, timeout=30,
                         what="ten unreadable counts of A")
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        self.assertTrue(p.alive(), p.stderr()[-2000:])
        fault["times"] = 0
        self.assertEqual(p.wait(60), 0, p.stderr()[-3000:])
        self.assertIsNone(p.sanitizer_report())
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))

    def test_deploy_under_load_drops_nothing(self):
        if not have("chatload"):
            self.skipTest("chatload not built")
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 2, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        host, port = self.d.service_address(NS, "chat")
        report = os.path.join(self.tmp, "report.json")
        # clients churn (exp:3s lifetime) so the old colour drains by itself;
        # messages go to random other clients, across colours (cluster routing)
        load = harness.Proc([harness.binary("chatload"), "--server", "%s:%d" % (host, port),
                             "--domain", "chat.example", "--clients", 30, "--ramp", 60,
                             "--message-rate", 0.5, "--lifetime", "exp:3s", "--duration", "14s",
                             "--report", report, "--expect-zero-drops", "--expect-zero-loss",
                             "--quiet", "--seed", 7], name="chatload")
        self.addCleanup(load.stop, signal.SIGINT, 10)
        # clients are on colour A when the switch happens
        harness.wait_for(lambda: sum(max(r["connections"], 0)
                                     for r in self.ok("replicas", SHA_A)) >= 10,
                         timeout=20, interval=0.3, what="clients on colour A")
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 2, "--settle", "1s",
                                    timeout=120)
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_B)
        # the old colour was deleted only once drained
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        self.assertEqual(load.wait(60), 0, load.stderr()[-3000:])
        self.assertIsNone(load.sanitizer_report())
        with open(report) as f:
            r = json.load(f)
        self.assertEqual(r["dropped"], 0, r)
        self.assertEqual(r["messages_lost"], 0, r)
        self.assertGreater(r["messages_sent"], 0, r)

    def test_killed_rainbow_rerun_converges(self):
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        self.addCleanup(client.close)
        state = os.path.join(self.tmp, "state")
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", state, "-P", "template=" + TEMPLATE,
                "deploy", SHA_B, "--replicas", 1, "--settle", "1s"]
        # killed at different points: while creating/waiting, then while draining
        for point in ("created", "selected"):
            p = harness.Proc(argv, name="rainbow")
            if point == "created":
                harness.wait_for(lambda: self.d.get(NS, "deployments", "chat-" + SHA_B),
                                 timeout=30, what="colour B created")
            else:
                harness.wait_for(lambda: self.selector()["rainbow.chat/sha"] == SHA_B,
                                 timeout=60, what="switched to B")
            p.signal(signal.SIGKILL)
            p.wait(10)
        # A still holds our client: it must still be there, draining
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        client.close()
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_B)
        self.assertEqual(sorted(d["metadata"]["name"] for d in self.d.list(NS, "deployments")),
                         ["chat-" + SHA_B])

    def test_deploy_shrink(self):
        # --shrink: the draining colour gives back its empty pod (pod-deletion-cost,
        # then scale down) and keeps the one holding a client
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 2, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        pods = sorted(p["metadata"]["name"] for p in
                      self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A))
        busy = pods[0]
        rt = self.d.pod_runtime(NS, busy)
        client = socket.create_connection(("127.0.0.1", rt.host_port("xmpp")), timeout=5)
        self.addCleanup(client.close)
        harness.wait_for(lambda: {r["name"]: r["connections"]
                                  for r in self.ok("replicas", SHA_A)}.get(busy) == 1,
                         timeout=10, interval=0.2, what="busy pod counted")
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + TEMPLATE, "deploy", SHA_B, "--replicas", 1,
                "--settle", "1s", "--shrink"]
        p = harness.Proc(argv, name="rainbow")
        self.addCleanup(p.stop, signal.SIGKILL, 5)
        # the empty pod goes, the busy one stays while its client is there
        harness.wait_for(lambda: [x["metadata"]["name"] for x in self.d.list(
            NS, "pods", "rainbow.chat/sha=" + SHA_A)] == [busy], timeout=60,
            what="empty pod of A given back")
        self.assertEqual(self.d.get(NS, "deployments", "chat-" + SHA_A)["spec"]["replicas"], 1)
        self.assertTrue(p.alive())
        client.close()
        self.assertEqual(p.wait(60), 0, p.stderr()[-3000:])
        self.assertIsNone(p.sanitizer_report())
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))


    def test_deploy_shrink_waits_while_a_busy_pod_is_not_ready(self):
        # While the controller would take a busy not-ready pod first, the shrink
        # is refused (EBUSY) at every poll: rainbow waits, it does not give up.
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 2, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        busy, empty = sorted(p["metadata"]["name"] for p in
                             self.d.list(NS, "pods", "rainbow.chat/sha=" + SHA_A))
        rt = self.d.pod_runtime(NS, busy)
        client = socket.create_connection(("127.0.0.1", rt.host_port("xmpp")), timeout=5)
        self.addCleanup(client.close)
        harness.wait_for(lambda: {r["name"]: r["connections"]
                                  for r in self.ok("replicas", SHA_A)}.get(busy) == 1,
                         timeout=10, interval=0.2, what="busy pod counted")
        probe = rt.probe
        rt.probe = ("/no-such-path", probe[1])
        self.d.pod_runtime(NS, empty).probe = None
        harness.wait_for(lambda: {r["name"]: r["ready"] for r in self.ok(
            "replicas", SHA_A)} == {busy: False, empty: True},
                         timeout=20, interval=0.2, what="busy pod not ready")
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + TEMPLATE, "-P", "watch-s=0", "deploy", SHA_B,
                "--replicas", 1, "--settle", "200ms", "--poll", "100ms", "--shrink"]
        p = harness.Proc(argv, name="rainbow")
        self.addCleanup(p.stop, signal.SIGKILL, 5)
        harness.wait_for(lambda: self.selector().get("rainbow.chat/sha") == SHA_B,
                         timeout=60, what="switch to B")
        # Each poll lists A's pods once to observe and once more to try the shrink;
        # rainbow gives up after 20 failed steps in a row (and the client, which
        # never logs in, is dropped by chatd's auth timeout after 30 s).
        lists = len(self.d.requests_matching("GET", r"/pods\?labelSelector=.*" + SHA_A))
        harness.wait_for(lambda: not p.alive() or len(self.d.requests_matching(
            "GET", r"/pods\?labelSelector=.*" + SHA_A)) - lists >= 46,
            timeout=60, what="23 polls refusing the shrink")
        self.assertTrue(p.alive(), p.stderr()[-3000:] + p.stdout()[-3000:])
        self.assertTrue(self.d.pod_runtime(NS, busy).proc.alive())
        # Ready again: the empty pod goes; the client leaves: A is deleted.
        rt.probe = probe
        harness.wait_for(lambda: [x["metadata"]["name"] for x in self.d.list(
            NS, "pods", "rainbow.chat/sha=" + SHA_A)] == [busy], timeout=60,
            what="empty pod of A given back")
        client.close()
        self.assertEqual(p.wait(60), 0, p.stderr()[-3000:])
        self.assertIsNone(p.sanitizer_report())
        self.assertIsNone(self.d.get(NS, "deployments", "chat-" + SHA_A))


class TestManifests(unittest.TestCase):
    def test_kustomize_renders(self):
        import shutil
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl is not installed (Debian has no package for it); "
                          "k8s/ rendering is checked only where kubectl exists")
        objs = {}
        for d in ("k8s", "k8s/jobs"):
            p = subprocess.run([kubectl, "kustomize", os.path.join(harness.ROOT, d)],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            for doc in p.stdout.split("\n---\n"):
                kind = [l for l in doc.splitlines() if l.startswith("kind: ")][0][6:]
                name = [l for l in doc.splitlines() if l.startswith("  name: ")][0][8:]
                objs[(kind, name)] = doc
        for want in (("Namespace", "rainbow"), ("Service", "chat"), ("Service", "chat-peers"),
                     ("ConfigMap", "chatd-config"), ("ConfigMap", "rainbow-pod-template"),
                     ("ConfigMap", "chatd-demo-credentials"), ("NetworkPolicy", "chat"),
                     ("ServiceAccount", "rainbow"), ("Role", "rainbow"),
                     ("RoleBinding", "rainbow"), ("Job", "chatload"),
                     ("Job", "rainbow-deploy-SHA_TO_DEPLOY")):
            self.assertIn(want, objs)
        self.assertIn("namespace: rainbow", objs[("Service", "chat")])
        self.assertIn("publishNotReadyAddresses: true", objs[("Service", "chat-peers")])

    def test_pod_template_loads(self):
        if not have("kube_ops"):
            self.skipTest("tests/helpers/kube_ops not built")
        t = yaml_file(TEMPLATE)
        c = t["spec"]["containers"][0]
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertIn({"name": "POD_NAME", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.name"}}}, c["env"])
        self.assertGreater(t["spec"]["terminationGracePeriodSeconds"], 600)
        cm = yaml_file(os.path.join(harness.ROOT, "k8s", "base", "configmap.yaml"))
        # keepalive well under IPVS's 900 s idle timeout
        self.assertLess(int(cm["data"]["CHATD_PING_INTERVAL"]), 900)
        # the grace period outlasts chatd's own drain
        self.assertGreater(t["spec"]["terminationGracePeriodSeconds"],
                           int(cm["data"]["CHATD_DRAIN_TIMEOUT"]))

