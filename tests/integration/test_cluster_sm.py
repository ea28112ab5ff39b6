"""XEP-0198 resumption across instances and colours (docs/cluster.md
"Moving sessions"): three linked chatd (two colours); a session detached
on one instance is resumed on another of the other colour with its full
JID, presence and unacknowledged stanzas; the route changes owner once
(the third instance ends up with one route for it); stanzas sent while the
session moves are delivered exactly once; another user's id and an unknown
id are refused through the peers, an impossible ack count ends the session
where it is; an instance that does not answer fails
the resumption, and the session it sends later waits where it arrived.
"""
import os
import signal
import tempfile
import threading
import time
import unittest

import harness
import xmpp
from xmpp import NS_CLIENT, NS_SM, NS_STANZA_ERR, q


def is_msg(body):
    return lambda s: (s.tag == q(NS_CLIENT, "message") and s.get("type") != "error" and
                      s.findtext(q(NS_CLIENT, "body")) == body)


def failed_condition(st):
    return xmpp.condition(st, NS_STANZA_ERR) if st.tag == q(NS_SM, "failed") else None


class ClusterSM(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-clsm-")
        secret = os.path.join(self.tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)
        cport = [harness.free_port() for _ in range(3)]
        self.nodes = []
        for i, (inst, label) in enumerate((("a-0", "v-aaa"), ("b-0", "v-bbb"), ("c-0", "v-aaa"))):
            peers = ",".join("127.0.0.1:%d" % cport[k] for k in range(3) if k != i)
            d = xmpp.Chatd(auth_any=True, tls=False, instance="chat-%s" % inst,
                           version_label=label, name=inst,
                           args=["--cluster-listen", "127.0.0.1:%d" % cport[i],
                                 "--cluster-secret-file", secret, "--peers", peers,
                                 "--ping-interval", "600", "--resume-timeout", "60",
                                 "--drain-timeout", "5"])
            self.nodes.append(d.start())
        harness.wait_for(lambda: all(d.metric("chatd_cluster_peers") == 2 for d in self.nodes),
                         timeout=10, what="three instances linked")
        self.a, self.b, self.c = self.nodes
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for d in self.nodes:
            if d.alive():
                d.proc.signal(signal.SIGCONT)
            self.assertEqual(d.stop(timeout=15), 0)
            d.check_clean(self)

    def login(self, node, user, resource=None, presence=False, sm=False):
        c = node.client()
        self.clients.append(c)
        c.login(user, user, mech="PLAIN", resource=resource, presence=presence)
        if sm:
            en = c.sm_enable()
            self.assertEqual(en.tag, q(NS_SM, "enabled"))
            c.previd = en.get("id")
        return c

    def resume(self, node, user, previd, h):
        c = node.client()
        self.clients.append(c)
        c.authenticate(user, user, mech="PLAIN")
        return c, c.sm_resume(previd, h, timeout=10)

    def wait_routes(self, node, n):
        harness.wait_for(lambda: node.metric("chatd_cluster_routes") == n, timeout=10,
                         what="%s chatd_cluster_routes == %d" % (node.name, n))

    def test_resume_on_another_colour(self):
        x = self.login(self.a, "xena", resource="phone", presence=True, sm=True)
        w = self.login(self.b, "xena", resource="watch", presence=True)
        y = self.login(self.c, "yuri", resource="desk")
        # c sees xena/phone (a) and xena/watch (b)
        self.wait_routes(self.c, 2)
        for i in range(3):
            y.message(x.jid, "m%d" % i)
        for i in range(3):
            x.expect(is_msg("m%d" % i))
        seen = x.sm_h
        x.abort()
        harness.wait_for(lambda: self.a.metric("chatd_sessions_detached") == 1, timeout=5)
        for i in range(3, 5):
            y.message(x.jid, "m%d" % i)  # held on a, in the detached queue
        time.sleep(0.2)
        n, st = self.resume(self.b, "xena", x.previd, seen)
        self.assertEqual(st.tag, q(NS_SM, "resumed"), xmpp.ET.tostring(st))
        self.assertEqual(st.get("previd"), x.previd)
        for i in range(3, 5):
            n.expect(is_msg("m%d" % i))
        # the same full JID, now on b: the sender's instance routes there
        y.message(x.jid, "after")
        got = n.expect(is_msg("after"))
        self.assertEqual(got.get("to"), x.jid)
        self.assertEqual(self.b.metrics()['chatd_sessions_resumed_total{from="peer"}'], 1)
        self.assertEqual(self.a.metrics()['chatd_cluster_sessions_moved_total{direction="out"}'], 1)
        self.assertEqual(self.b.metrics()['chatd_cluster_sessions_moved_total{direction="in"}'], 1)
        # a forgot it; the route table of c holds it once (on b)
        self.assertEqual(self.a.metric("chatd_sessions"), 0)
        self.assertEqual(self.a.metric("chatd_sessions_detached"), 0)
        self.wait_routes(self.c, 2)
        self.wait_routes(self.a, 3)  # both xena resources on b, yuri on c
        self.assertEqual(self.b.metric("chatd_sessions"), 2)
        # presence went on: the other resource saw no unavailable, and its
        # broadcast reaches the moved one
        w.poll()
        self.assertFalse([s for s in w.pending if s.get("type") == "unavailable"],
                         [xmpp.ET.tostring(s) for s in w.pending])
        w.send("<presence><status>here</status></presence>")
        n.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == w.jid)
        # nothing bounced to the sender
        y.poll()
        self.assertFalse([s for s in y.pending if s.get("type") == "error"])

    def test_stanzas_in_flight_during_the_move_delivered_once(self):
        x = self.login(self.a, "mover", resource="r", sm=True)
        y = self.login(self.c, "sender", resource="r")
        self.wait_routes(self.c, 1)
        total = 400
        stop = threading.Event()

        def send_all():
            for i in range(total):
                y.message(x.jid, "n%d" % i)
                time.sleep(0.002)
            stop.set()
        t = threading.Thread(target=send_all)
        t.start()
        got = []
        # read a share on a, then break the connection mid-stream
        while len(got) < 60:
            s = x.next_stanza(timeout=5)
            self.assertIsNotNone(s, "no message on a")
            if s.tag == q(NS_CLIENT, "message"):
                got.append(s.findtext(q(NS_CLIENT, "body")))
        h = x.sm_h
        x.abort()
        n, st = self.resume(self.b, "mover", x.previd, h)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        n.sm_auto_ack = True
        t.join(timeout=30)
        deadline = time.monotonic() + 15
        while len(got) < total and time.monotonic() < deadline:
            s = n.next_stanza(timeout=1)
            if s is not None and s.tag == q(NS_CLIENT, "message"):
                got.append(s.findtext(q(NS_CLIENT, "body")))
        self.assertEqual(got, ["n%d" % i for i in range(total)],
                         "lost or duplicated or out of order")
        y.poll()
        self.assertFalse([s for s in y.pending if s.get("type") == "error"])
        # some of them crossed on a's tombstone, or went straight to b
        m = self.a.metrics()
        self.assertEqual(m['chatd_cluster_sessions_moved_total{direction="out"}'], 1)

    def test_other_user_and_unknown_ids_through_peers(self):
        x = self.login(self.a, "owner", resource="r", sm=True)
        y = self.login(self.c, "poke", resource="r")
        y.message(x.jid, "private")
        x.expect(is_msg("private"))
        x.abort()
        harness.wait_for(lambda: self.a.metric("chatd_sessions_detached") == 1, timeout=5)
        # another user with the stolen id, at b: refused like an unknown id
        self.login(self.a, "thief", resource="r")  # the thief has a route on a too
        c, st = self.resume(self.b, "thief", x.previd, 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        self.assertEqual(self.b.metrics()['chatd_resume_failed_total{reason="other-user"}'], 1)
        c.poll()
        self.assertFalse([s for s in c.pending if s.tag == q(NS_CLIENT, "message")])
        # an unknown id of the right user
        c, st = self.resume(self.b, "owner", "0123456789abcdef0123456789abcdef", 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        self.assertEqual(self.b.metrics()['chatd_resume_failed_total{reason="not-found"}'], 1)
        # the session is still on a, and its owner resumes it from b
        self.assertEqual(self.a.metric("chatd_sessions_detached"), 1)
        c, st = self.resume(self.b, "owner", x.previd, 0)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        c.expect(is_msg("private"))

    def test_handled_count_too_high_through_a_peer(self):
        x = self.login(self.a, "liar", resource="r", sm=True)
        y = self.login(self.c, "src", resource="r")
        self.wait_routes(self.c, 1)
        y.message(x.jid, "unacked")
        x.expect(is_msg("unacked"))
        x.abort()
        harness.wait_for(lambda: self.a.metric("chatd_sessions_detached") == 1, timeout=5)
        # one stanza was sent; the client at b claims five
        c, st = self.resume(self.b, "liar", x.previd, 5)
        self.assertEqual(failed_condition(st), "undefined-condition")
        key = 'chatd_resume_failed_total{reason="handled-count-too-high"}'
        self.assertEqual(self.b.metrics()[key], 1)
        # nothing can be trusted: the session ends on a, its queue is
        # answered for, and it cannot be resumed anywhere
        err = y.expect(lambda s: s.tag == q(NS_CLIENT, "message") and s.get("type") == "error"
                       and s.findtext(q(NS_CLIENT, "body")) == "unacked")
        self.assertEqual(xmpp.stanza_error(err), ("cancel", "service-unavailable"))
        harness.wait_for(lambda: self.a.metric("chatd_sessions_detached") == 0, timeout=5)
        self.assertEqual(self.b.metric("chatd_sessions_detached"), 0)
        c, st = self.resume(self.b, "liar", x.previd, 1)
        self.assertEqual(failed_condition(st), "item-not-found")

    def test_silent_instance_fails_then_session_waits_where_it_arrived(self):
        x = self.login(self.a, "slow", resource="r", sm=True)
        y = self.login(self.c, "tell", resource="r")
        y.message(x.jid, "kept")
        x.expect(is_msg("kept"))
        x.abort()
        harness.wait_for(lambda: self.a.metric("chatd_sessions_detached") == 1, timeout=5)
        self.a.proc.signal(signal.SIGSTOP)
        try:
            c, st = self.resume(self.b, "slow", x.previd, 0)
            self.assertEqual(failed_condition(st), "item-not-found")
            self.assertEqual(
                self.b.metrics()['chatd_resume_failed_total{reason="peer-unreachable"}'], 1)
            c.close()
        finally:
            self.a.proc.signal(signal.SIGCONT)
        # a answers late: the session moves to b all the same and waits there
        harness.wait_for(lambda: self.b.metric("chatd_sessions_detached") == 1, timeout=10,
                         what="the late state detached on b")
        self.assertEqual(self.a.metric("chatd_sessions"), 0)
        c, st = self.resume(self.b, "slow", x.previd, 0)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        c.expect(is_msg("kept"))
        y.message(x.jid, "later")
        c.expect(is_msg("later"))


if __name__ == "__main__":
    unittest.main()
