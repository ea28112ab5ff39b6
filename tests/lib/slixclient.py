"""An independent XMPP client for the interop tests of stream management:
slixmpp (Debian's python3-slixmpp, an implementation nobody here wrote,
with XEP-0198 and see-other-host support), run as its own process.

    python3 slixclient.py HOST PORT JID PASSWORD

connects (plain TCP, no TLS), enables XEP-0198 with resumption, sends
presence and prints one JSON object per line on stdout for each event:
{"event": "session_start", "jid": ...}, {"event": "sm_enabled", "id": ...},
{"event": "stream_error", "condition": ..., "see_other_host": ...},
{"event": "session_resumed"}, {"event": "message", "from": ..., "body": ...},
{"event": "disconnected"}, {"event": "connected", "address": ...}. It sends
a message when a line `send JID BODY` arrives on stdin and ends at EOF.
"""
import asyncio
import json
import logging
import os
import sys

sys.path.append("/usr/lib/python3/dist-packages")

import slixmpp  # noqa: E402


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.redirect = None
        self.register_plugin("xep_0198")
        sm = self.plugin["xep_0198"]
        sm.window = 1  # ask for an ack after every stanza
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("sm_enabled", lambda e: emit(event="sm_enabled", id=sm.sm_id))
        self.add_event_handler("session_resumed", lambda e: emit(event="session_resumed",
                                                                 jid=str(self.boundjid)))
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", lambda e: emit(event="disconnected"))
        self.add_event_handler("connected", lambda e: emit(event="connected",
                                                           address=list(self.address)))

    async def on_start(self, event):
        self.send_presence()
        emit(event="session_start", jid=str(self.boundjid))

    def on_message(self, msg):
        emit(event="message", type=msg["type"], frm=str(msg["from"]), to=str(msg["to"]),
             body=msg["body"])

    def on_stream_error(self, err):
        emit(event="stream_error", condition=err["condition"],
             see_other_host=err["see_other_host"])
        if err["condition"] == "see-other-host" and err["see_other_host"]:
            # slixmpp calls reconnect() after this event; connect() below
            # goes where the server said (HOST:PORT or [V6]:PORT).
            host, _, port = err["see_other_host"].rpartition(":")
            self.redirect = (host.strip("[]") or err["see_other_host"],
                             int(port) if port.isdigit() else 5222)

    def connect(self, address=None, **kw):
        """slixmpp 1.8.3 parses see-other-host and reconnects, but its
        reconnect() calls connect() without an address (back to the JID's
        domain), and a numeric host in default_domain resolves to port
        5222 whatever the port said: go to the address as given (plain
        TCP), with no name resolution."""
        if address is None and self.redirect:
            address = self.redirect
        r = super().connect(address=address, use_ssl=False, force_starttls=False,
                            disable_starttls=True)
        if self.redirect:
            self._dns_answers = iter(())  # no records: self.address is used
        return r


async def read_commands(xmpp):
    loop = xmpp.loop
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        parts = line.decode().strip().split(" ", 2)
        if len(parts) == 3 and parts[0] == "send":
            xmpp.send_message(mto=parts[1], mbody=parts[2], mtype="chat")
    xmpp.disconnect()
    await asyncio.sleep(0.5)
    loop.stop()


def main():
    if os.environ.get("SLIX_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    host, port, jid, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    xmpp = Client(jid, password)
    xmpp.enable_plaintext = True
    xmpp.connect(address=(host, port))
    xmpp.commands = xmpp.loop.create_task(read_commands(xmpp))  # kept: a task nobody holds is collected
    xmpp.loop.run_forever()


if __name__ == "__main__":
    main()
