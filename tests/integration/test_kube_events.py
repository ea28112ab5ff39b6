"""Kubernetes Events for rainbow's decisions, against the API double
(tests/lib/kubedouble.py), whose Events endpoints validate and answer as the
real API server's do.

- the event op alone (tests/helpers/kube_ops event): the body the API server
  requires, seen through events.k8s.io/v1 (regarding.name) and through
  core/v1 (involvedObject.name, as `kubectl get events --field-selector`
  and `kubectl describe deployment` ask for them); a rejected body (422) and
  a forbidden create (403) are clear errors;
- rainbow deploy / rollback / prune: every decision leaves its Event on the
  colour's Deployment, in order; a colour that never becomes ready leaves a
  Failed warning;
- Events forbidden by RBAC: the deploy still succeeds, with one warning line.
"""
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import harness
from tests.integration.test_kube_platform import KubeBase, NS, SHA_A, SHA_B, TEMPLATE, have


class EventsBase(KubeBase):
    tls = False

    def get(self, path, **query):
        url = self.d.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        r = urllib.request.Request(url)
        r.add_header("Authorization", "Bearer rainbow-token")
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def core_events(self, **selector):
        """What `kubectl get events --field-selector K=V,...` lists (core/v1)."""
        code, body = self.get("/api/v1/namespaces/%s/events" % NS,
                              fieldSelector=",".join("%s=%s" % kv for kv in selector.items()))
        self.assertEqual(code, 200, body)
        self.assertEqual(body["kind"], "EventList")
        return sorted(body["items"], key=lambda e: e["eventTime"])

    def described(self, name):
        """The Events `kubectl describe deployment NAME` shows: core/v1 with
        involvedObject name, namespace, kind and the Deployment's uid."""
        dep = self.d.get(NS, "deployments", name)
        self.assertIsNotNone(dep, name)
        sel = {"involvedObject.name": name, "involvedObject.namespace": NS,
               "involvedObject.kind": "Deployment",
               "involvedObject.uid": dep["metadata"]["uid"]}
        return self.core_events(**sel)

    def reasons(self, events):
        return [e["reason"] for e in events]


class TestEventOp(EventsBase):
    def test_event_body_and_both_views(self):
        self.ok("create", SHA_A, 1)
        uid = self.d.get(NS, "deployments", "chat-" + SHA_A)["metadata"]["uid"]
        self.ok("event", SHA_A, "Normal", "Switched", "Switch",
                "new connections switched from nothing to chat-" + SHA_A)
        evs = self.d.k8s_events_list(NS)
        self.assertEqual(len(evs), 1)
        e = evs[0]
        self.assertEqual(e["apiVersion"], "events.k8s.io/v1")
        self.assertTrue(e["metadata"]["name"].startswith("chat-%s." % SHA_A), e)
        self.assertEqual(e["reportingController"], "rainbow.chat/rainbow")
        self.assertTrue(e["reportingInstance"].startswith("rainbow-"))
        self.assertEqual((e["type"], e["reason"], e["action"]), ("Normal", "Switched", "Switch"))
        self.assertRegex(e["eventTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual(e["regarding"], {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "namespace": NS, "name": "chat-" + SHA_A,
                                          "uid": uid})
        # kubectl get events --field-selector involvedObject.name=chat-<sha>
        core = self.core_events(**{"involvedObject.name": "chat-" + SHA_A})
        self.assertEqual(len(core), 1)
        self.assertEqual(core[0]["message"], e["note"])
        self.assertEqual(core[0]["involvedObject"]["uid"], uid)
        self.assertEqual(core[0]["reportingComponent"], "rainbow.chat/rainbow")
        # kubectl describe deployment chat-<sha>
        self.assertEqual(self.reasons(self.described("chat-" + SHA_A)), ["Switched"])
        # events.k8s.io/v1 selects on regarding.*; each API refuses the other's labels
        code, body = self.get("/apis/events.k8s.io/v1/namespaces/%s/events" % NS,
                              fieldSelector="regarding.name=chat-" + SHA_A)
        self.assertEqual((code, len(body["items"])), (200, 1))
        code, body = self.get("/apis/events.k8s.io/v1/namespaces/%s/events" % NS,
                              fieldSelector="involvedObject.name=chat-" + SHA_A)
        self.assertEqual((code, body["message"]),
                         (400, "field label not supported: involvedObject.name"))
        code, body = self.get("/api/v1/namespaces/%s/events" % NS,
                              fieldSelector="regarding.name=chat-" + SHA_A)
        self.assertEqual(code, 400)
        self.assertEqual(self.core_events(**{"involvedObject.name": "chat-" + SHA_B}), [])

    def test_event_on_a_deleted_colour(self):
        # A fresh process knows no uid and the Deployment is gone: the Event
        # is still recorded, by name (kubectl get events finds it).
        self.ok("event", SHA_B, "Normal", "Deleted", "Delete", "deleted: drained")
        core = self.core_events(**{"involvedObject.name": "chat-" + SHA_B})
        self.assertEqual(self.reasons(core), ["Deleted"])
        self.assertNotIn("uid", core[0]["involvedObject"])

    def test_rejected_and_forbidden(self):
        self.ok("create", SHA_A, 1)
        # The API server's validation: type must be Normal or Warning (422).
        err = self.fails("event", SHA_A, "Info", "Switched", "Switch", "x")
        self.assertIn("EINVAL", err)
        self.assertIn("type: Invalid value", err)
        err = self.fails("event", SHA_A, "Normal", "", "Switch", "x")
        self.assertIn("reason: Required value", err)
        self.d.deny("create", "events.k8s.io", "events")
        err = self.fails("event", SHA_A, "Normal", "Switched", "Switch", "x")
        self.assertIn("EACCES", err)
        self.assertIn("events", err)
        self.assertIn("events.k8s.io", err)
        self.assertEqual(self.d.k8s_events_list(NS), [])


class TestDoubleEvents(EventsBase):
    """The double's Events endpoint validates as the real API server does."""

    def post(self, body, ns=NS):
        r = urllib.request.Request(self.d.url + "/apis/events.k8s.io/v1/namespaces/%s/events"
                                   % ns, data=json.dumps(body).encode(), method="POST")
        r.add_header("Authorization", "Bearer rainbow-token")
        r.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def good(self, **over):
        ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
              "metadata": {"name": "chat-aaaaaaa.1"},
              "eventTime": "2026-11-27T03:50:00.000123Z",
              "reportingController": "rainbow.chat/rainbow", "reportingInstance": "rainbow-x",
              "action": "Switch", "reason": "Switched", "type": "Normal", "note": "n",
              "regarding": {"kind": "Deployment", "namespace": NS, "name": "chat-aaaaaaa"}}
        ev.update(over)
        return ev

    def test_validation(self):
        code, e = self.post(self.good())
        self.assertEqual(code, 201, e)
        self.assertIn("uid", e["metadata"])
        code, st = self.post(self.good())
        self.assertEqual((code, st["reason"]), (409, "AlreadyExists"))
        for over, want in (
                ({"eventTime": None}, "eventTime: Required value"),
                ({"reportingController": ""}, "reportingController: Required value"),
                ({"reportingController": "rainbow chat"}, "must be a qualified name"),
                ({"reportingInstance": "i" * 129}, "reportingInstance: Invalid value"),
                ({"action": ""}, "action: Required value"),
                ({"reason": "R" * 129}, "can have at most 128 characters"),
                ({"note": "n" * 1025}, "can have at most 1024 characters"),
                ({"deprecatedCount": 3}, "count: Invalid value: \"\": needs to be unset"),
                ({"series": {"count": 1}}, "series.count"),
                ({"regarding": {"kind": "Deployment", "name": "x"}},
                 "involvedObject.namespace: Invalid value"),
                ({"metadata": {"name": "Bad_Name"}}, "metadata.name: Invalid value")):
            ev = self.good(**over)
            ev["metadata"] = dict(ev["metadata"])
            if "metadata" not in over:
                ev["metadata"]["name"] = "chat-aaaaaaa.%d" % (len(want) + 2)
            code, st = self.post(ev)
            self.assertEqual((code, st["reason"]), (422, "Invalid"), (over, st))
            self.assertIn(want, st["message"], over)
        code, st = self.post(self.good(eventTime="yesterday"))
        self.assertEqual(code, 400)
        ev = self.good()
        ev["metadata"] = {"name": "x.2", "namespace": "other"}
        code, st = self.post(ev)
        self.assertEqual(code, 400)
        self.assertIn("does not match the namespace", st["message"])
        code, st = self.post(self.good(metadata={"name": "x.3"}), ns="nowhere")
        self.assertEqual(code, 404)


def _can_run_rainbow():
    return have("rainbow") and have("chatd") and have("kube_ops")


class TestRainbowEvents(EventsBase):
    def setUp(self):
        if not _can_run_rainbow():
            self.skipTest("rainbow, chatd or kube_ops not built")
        super().setUp()

    def rainbow_proc(self, *args, template=TEMPLATE):
        argv = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + template, "-P", "backoff-ms=20"] + [str(a) for a in args]
        return harness.Proc(argv, name="rainbow")

    def rainbow(self, *args, timeout=120, **kw):
        p = self.rainbow_proc(*args, **kw)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.stop(signal.SIGKILL)
            self.fail("rainbow %s timed out: %s" % (args, p.stderr()[-3000:]))
        self.assertIsNone(p.sanitizer_report(), p.sanitizer_report())
        return p.p.returncode, p.stdout(), p.stderr()

    def notes(self, name):
        return [(e["reason"], e["message"]) for e in
                self.core_events(**{"involvedObject.name": name})]

    def test_deploy_rollback_prune_trail(self):
        a, b = "chat-" + SHA_A, "chat-" + SHA_B
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.assertNotIn("warning", err)
        self.assertEqual(self.reasons(self.described(a)), ["Created", "Ready", "Switched"])
        # One client on A while B takes over: A drains from 1 connection.
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        self.addCleanup(client.close)
        harness.wait_for(lambda: self.ok("replicas", SHA_A)[0]["connections"] == 1,
                         timeout=10, interval=0.2, what="client counted on A")
        p = self.rainbow_proc("deploy", SHA_B, "--replicas", 1, "--settle", "1s",
                              "--keep-drained", 1)
        harness.wait_for(lambda: "Draining" in self.reasons(self.described(a)), timeout=60,
                         interval=0.2, what="A draining")
        client.close()
        self.assertEqual(p.wait(60), 0, p.stderr()[-3000:])
        self.assertIsNone(p.sanitizer_report())
        self.assertEqual(self.reasons(self.described(b)), ["Created", "Ready", "Switched"])
        na = self.notes(a)
        self.assertEqual([r for r, _ in na],
                         ["Created", "Ready", "Switched", "Draining", "Drained", "Kept"])
        self.assertIn("created chat-%s with 1 replica" % SHA_A, na[0][1])
        self.assertRegex(na[1][1], r"^1 of 1 replicas ready after \d+\.\ds$")
        self.assertEqual(na[2][1], "new connections switched from nothing to " + a)
        self.assertIn("1 connection left to drain (new connections go to %s)" % b, na[3][1])
        self.assertRegex(na[4][1], r"^drained in \d+\.\ds \(1 connection at the switch\)")
        self.assertIn("kept for rollback (--keep-drained 1)", na[5][1])
        self.assertIn("switched from %s (1 connection) to %s" % (a, b), self.notes(b)[2][1])
        # Rollback: A comes back, B drains and is kept.
        rc, out, err = self.rainbow("rollback", SHA_A, "--settle", "1s", "--keep-drained", 1)
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.reasons(self.described(a))[6:], ["ScaledUp", "Ready", "RolledBack"])
        self.assertEqual(self.reasons(self.described(b))[3:], ["Draining", "Drained", "Kept"])
        self.assertIn("rollback: new connections switched from %s" % b, self.notes(a)[8][1])
        # Prune with --keep-drained 0 deletes kept B: the Event still regards
        # the Deployment that was (its uid), found by name afterwards.
        uid_b = self.d.get(NS, "deployments", b)["metadata"]["uid"]
        rc, out, err = self.rainbow("prune", "--settle", "1s", "--keep-drained", 0)
        self.assertEqual(rc, 0, err + out)
        self.assertIsNone(self.d.get(NS, "deployments", b))
        last = self.core_events(**{"involvedObject.name": b})[-1]
        self.assertEqual((last["reason"], last["involvedObject"]["uid"]), ("Deleted", uid_b))
        self.assertIn("--keep-drained 0", last["message"])
        for e in self.d.k8s_events_list(NS):
            self.assertEqual(e["type"], "Normal", e)

    def test_never_ready_leaves_a_failed_warning(self):
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        bad = os.path.join(self.tmp, "bad-template.yaml")
        with open(TEMPLATE) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("      envFrom:", "      args: [\"--no-such-flag\"]\n"
                                 "      envFrom:"))
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--ready-timeout", "4s",
                                    template=bad, timeout=60)
        self.assertNotEqual(rc, 0)
        evs = self.core_events(**{"involvedObject.name": "chat-" + SHA_B})
        self.assertEqual([(e["type"], e["reason"]) for e in evs],
                         [("Normal", "Created"), ("Warning", "Deleted"),
                          ("Warning", "Failed")])
        self.assertIn("deleted: it never became ready", evs[1]["message"])
        self.assertIn("not ready after", evs[2]["message"])
        self.assertIn("(0 of 1 replicas ready); traffic stays on " + SHA_A, evs[2]["message"])
        # Warnings only: kubectl get events --field-selector type=Warning
        warn = self.core_events(type="Warning")
        self.assertEqual(len(warn), 2)

    def test_forbidden_events_never_fail_a_deploy(self):
        self.d.deny("create", "events.k8s.io", "events")
        rc, out, err = self.rainbow("deploy", SHA_A, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        lines = [l for l in err.splitlines() if "warning" in l]
        self.assertEqual(len(lines), 1, err)
        self.assertIn("rainbow: warning: event Created on chat-%s not recorded, the deploy "
                      "goes on" % SHA_A, lines[0])
        self.assertIn('grant verb "create" on resource "events" in API group '
                      '"events.k8s.io"', lines[0])
        self.assertEqual(self.d.k8s_events_list(NS), [])
        # A sick API server for Events (500 on every try): still done, still one line.
        self.d.allow_all()
        self.d.inject("POST", r"/apis/events\.k8s\.io/", status=500, times=100)
        rc, out, err = self.rainbow("deploy", SHA_B, "--replicas", 1, "--settle", "1s")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_B)
        self.assertEqual(len([l for l in err.splitlines() if "warning" in l]), 1, err)
