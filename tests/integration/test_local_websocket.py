"""The local switch carries XMPP over WebSocket like 5222 (`rainbow local up
--websocket`): new WebSocket connections go to the selected colour, an
established one stays on its colour across a deploy and keeps talking."""
import unittest

import harness
import localplat
import wsxmpp


def version_of(c):
    c.send("<iq xmlns='jabber:client' type='get' to='localhost' id='v'>"
           "<query xmlns='jabber:iq:version'/></iq>")
    r = c.expect(lambda e: e.get("id") == "v")
    return r.find(".//{jabber:iq:version}version").text


class LocalWebSocketTest(unittest.TestCase):
    def setUp(self):
        why = wsxmpp.available()
        if why:
            self.skipTest(why)
        self.wsport = harness.free_port()
        self.plat = localplat.Platform(self, prefix="rb-lws-",
                                       up_args=["--websocket", "127.0.0.1:%d" % self.wsport])
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.assertEqual(self.plat.down(), [])

    def ws(self, user):
        c = wsxmpp.Client(self.wsport).login(user)
        self.clients.append(c)
        return c

    def test_new_connections_follow_the_selection(self):
        self.plat.up()
        self.assertEqual(self.plat.switch()["websocket"], "127.0.0.1:%d" % self.wsport)
        self.plat.deploy("1111111")
        a = self.ws("alice")
        self.assertEqual(version_of(a), "1111111")
        self.plat.deploy("2222222", "--no-wait")
        b = self.ws("bob")
        self.assertEqual(version_of(b), "2222222")
        # alice stayed on the old colour, and the two colours talk (cluster).
        self.assertEqual(version_of(a), "1111111")
        b.send("<message xmlns='jabber:client' to='alice@localhost' type='chat' id='m1'>"
               "<body>across colours</body></message>")
        m = a.expect(lambda e: e.tag == "{jabber:client}message")
        self.assertEqual(m.find("{jabber:client}body").text, "across colours")
        self.assertEqual(self.plat.switch()["websocket_connections"], 2)
        # The old colour counts alice (chatd_connections includes WebSocket).
        self.assertEqual(self.plat.colour("1111111")["connections"], 1)
        self.assertEqual(self.plat.colour("1111111")["state"], "draining")


if __name__ == "__main__":
    unittest.main()
