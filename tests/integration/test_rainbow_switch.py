"""The local platform's L4 switch (rainbow local up/down/status): bad control
input never hurts it, established connections never move when the selection
changes, back-pressure bounds its memory, its selection survives a restart,
and rainbow being killed does not touch it.

Backends are small python echo servers that prefix replies with their name,
so a test can tell which backend a connection reached.
"""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness


class Backend:
    """TCP server: every line from a client is answered "NAME:line"; a client
    sending "flood N" gets N bytes back as fast as the kernel takes them."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.startswith(b"flood "):
                        n = int(line.split()[1])
                        chunk = b"x" * 65536
                        sent = 0
                        while sent < n:
                            c.sendall(chunk)
                            sent += len(chunk)
                    else:
                        c.sendall(self.name.encode() + b":" + line + b"\n")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def ask(sock, line):
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        d = sock.recv(4096)
        if not d:
            break
        data += d
    return data.decode()


class SwitchTest(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="rb-switch-")
        self.port = harness.free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.rainbow = harness.binary("rainbow")
        self.backends = [Backend("b%d" % i) for i in range(3)]
        self.clients = []
        # A cleanup, not tearDown: it also runs when `local up` itself fails.
        self.addCleanup(self.cleanup)
        # A small ASan quarantine: memory freed is reused as in a plain build.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        r = subprocess.run([self.rainbow, "--state-dir", self.state, "local", "up", "--listen",
                            self.listen], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("up", r.stdout)

    def cleanup(self):
        for c in self.clients:
            c.close()
        self.rb("local", "down", "--force")
        for b in self.backends:
            b.close()
        log = os.path.join(self.state, "switch.log")
        report = None
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                text = f.read()
            m = harness.SANITIZER_RE.search(text)
            report = text[m.start():m.start() + 4000] if m else None
        shutil.rmtree(self.state, ignore_errors=True)
        self.assertIsNone(report, report)

    def rb(self, *args, timeout=30):
        return subprocess.run([self.rainbow, "--state-dir", self.state] + list(args),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def control(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(os.path.join(self.state, "switch.sock"))
        self.clients.append(s)
        return s

    def status(self):
        s = self.control()
        reply = ask(s, "status")
        self.assertTrue(reply.startswith("ok "), reply)
        return json.loads(reply[3:])

    def connect(self):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.clients.append(c)
        return c

    def echo(self, c, text):
        c.sendall(text.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            d = c.recv(4096)
            if not d:
                raise ConnectionError("closed")
            data += d
        return data.decode().strip()

    def select(self, sha, backends):
        reply = ask(self.control(), "select %s %s" % (sha, ",".join(b.addr for b in backends)))
        self.assertEqual(reply.strip(), "ok")

    def test_bad_control_input(self):
        self.select("aaaaaaa", self.backends[:1])
        bad = [
            "", "bogus", "select", "select aaaaaaa", "select ZZZZZZZ 127.0.0.1:1",
            "select abc 127.0.0.1:1", "select aaaaaaa notanaddr",
            "select aaaaaaa 127.0.0.1:99999", "select aaaaaaa 127.0.0.1:0",
            "select aaaaaaa 127.0.0.1:1,", "select aaaaaaa ,127.0.0.1:1",
            "select aaaaaaa 127.0.0.1:1 extra", "status now", "stop please",
            "select " + "a" * 41 + " 127.0.0.1:1",
            "select aaaaaaa " + ",".join(["127.0.0.1:1"] * 65),
            "\x00\x01\x02\xff", "select aaaaaaa 127.0.0.1:1\x00",
        ]
        s = self.control()
        for line in bad:
            s.sendall(line.encode("latin-1") + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                d = s.recv(4096)
                self.assertTrue(d, "switch closed the control connection on %r" % line)
                data += d
            self.assertTrue(data.startswith(b"error"), (line, data))
        # A line longer than the limit: error, then that control connection closes.
        s2 = self.control()
        s2.sendall(b"x" * 10000)
        data = s2.recv(4096)
        self.assertTrue(data.startswith(b"error"), data)
        # Control clients that vanish mid-line, many at once.
        for _ in range(50):
            c = socket.socket(socket.AF_UNIX)
            c.connect(os.path.join(self.state, "switch.sock"))
            c.sendall(b"sel")
            c.close()
        st = self.status()
        self.assertEqual(st["selected"], "aaaaaaa")
        self.assertEqual(st["backends"], [self.backends[0].addr])
        self.assertEqual(self.echo(self.connect(), "hi"), "b0:hi")

    def test_established_connections_never_move(self):
        self.select("aaaaaaa", self.backends[:2])
        old = [self.connect() for _ in range(4)]
        got = sorted(self.echo(c, "x") for c in old)
        self.assertEqual(got, ["b0:x", "b0:x", "b1:x", "b1:x"])  # round robin
        self.select("bbbbbbb", self.backends[2:])
        new = [self.connect() for _ in range(3)]
        for c in new:
            self.assertEqual(self.echo(c, "y"), "b2:y")
        for i, c in enumerate(old):
            self.assertIn(self.echo(c, "z%d" % i), ("b0:z%d" % i, "b1:z%d" % i))
        st = self.status()
        per = {(b["sha"], b["addr"]): b for b in st["per_backend"]}
        self.assertEqual(per[("aaaaaaa", self.backends[0].addr)]["active"], 2)
        self.assertEqual(per[("bbbbbbb", self.backends[2].addr)]["active"], 3)
        self.assertFalse(per[("aaaaaaa", self.backends[0].addr)]["selected"])
        self.assertEqual(st["connections"], 7)
        for c in old:
            c.close()
        harness.wait_for(lambda: self.status()["connections"] == 3, what="old flows closed")
        # Nothing selected: new connections are closed at once, old ones stay.
        self.assertEqual(ask(self.control(), "select -").strip(), "ok")
        # Refused with a reset right after accept (it may beat our first send).
        try:
            c = self.connect()
            c.sendall(b"q\n")
            self.assertEqual(c.recv(100), b"")
        except ConnectionResetError:
            pass
        self.assertEqual(self.echo(new[0], "still"), "b2:still")

    def test_half_close_delivers_everything(self):
        self.select("aaaaaaa", self.backends[:1])
        c = self.connect()
        c.sendall(b"one\ntwo\n")
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
        self.assertEqual(data, b"b0:one\nb0:two\n")

    def switch_rss_kb(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def steady_rss_kb(self, pid):
        """RSS once it stopped moving (the stalled flows reached their marks)."""
        last = self.switch_rss_kb(pid)
        for _ in range(40):
            time.sleep(0.25)
            now = self.switch_rss_kb(pid)
            if abs(now - last) < 64:
                return now
            last = now
        return last

    def stall(self, n):
        """n clients that ask for a flood of bytes and never read them."""
        cs = []
        for _ in range(n):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            c.settimeout(5)
            c.connect(("127.0.0.1", self.port))
            self.clients.append(c)
            c.sendall(b"flood 200000000\n")
            cs.append(c)
        return cs

    def test_stalled_clients_bounded_memory(self):
        # A client that stops reading while its backend floods it costs the
        # switch its output mark, not the flood (it cost ~24 MiB each: a
        # 64 KiB buffer per read, held until written); and memory freed when
        # they close is reused by the next ones (no growth).
        self.select("aaaaaaa", self.backends[:1])
        pid = self.status()["pid"]
        base = self.steady_rss_kb(pid)
        wave = self.stall(10)
        first = self.steady_rss_kb(pid)
        self.assertLess(first - base, 5 * 1024,
                        "10 stalled clients grew the switch by %d KiB" % (first - base))
        for c in wave:
            c.close()
        harness.wait_for(lambda: self.status()["connections"] == 0, timeout=20,
                         what="stalled flows closed")
        wave = self.stall(10)
        second = self.steady_rss_kb(pid)
        self.assertLess(second - first, 2 * 1024,
                        "a second wave grew the switch by %d KiB" % (second - first))
        # Reading resumes the flow.
        c = wave[0]
        got = 0
        while got < 8 * 1024 * 1024:
            d = c.recv(1 << 16)
            self.assertTrue(d)
            got += len(d)
        for c in wave:
            c.close()

    def test_control_client_that_never_reads(self):
        # 64 backends make each status reply KiBs long: a control client that
        # sends requests and never reads its replies must not grow the switch.
        addrs = ",".join("127.0.0.1:%d" % (i + 1) for i in range(64))
        self.assertEqual(ask(self.control(), "select aaaaaaa " + addrs).strip(), "ok")
        s = self.control()
        s.settimeout(0.5)
        try:
            for _ in range(50):   # ~350 KB of requests, ~300 MB of replies
                s.sendall(b"status\n" * 1000)
        except OSError:
            pass  # dropped by the switch already
        # The switch hangs up after a bounded amount of unread replies.
        got, closed = 0, False
        s.settimeout(10)
        while got < 32 * 1024 * 1024:
            try:
                d = s.recv(1 << 16)
            except ConnectionResetError:
                d = b""
            if not d:
                closed = True
                break
            got += len(d)
        self.assertTrue(closed, "still answering after %d bytes of replies" % got)
        self.assertEqual(self.status()["selected"], "aaaaaaa")

    def test_deselect_while_connecting(self):
        # A backend whose accept queue is full drops SYNs: the switch's connect
        # to it stays pending while the selection moves away from it.
        slow = socket.socket()
        slow.bind(("127.0.0.1", 0))
        slow.listen(0)
        self.addCleanup(slow.close)
        addr = "127.0.0.1:%d" % slow.getsockname()[1]
        for _ in range(3):
            f = socket.socket()
            f.settimeout(0.3)
            self.clients.append(f)
            try:
                f.connect(slow.getsockname())
            except OSError:
                pass
        reply = ask(self.control(), "select ddddddd %s" % addr)
        self.assertEqual(reply.strip(), "ok")
        c = self.connect()
        time.sleep(0.3)
        self.select("eeeeeee", self.backends[:1])
        # Let the pending connect complete (SYN retransmitted after ~1 s).
        slow.settimeout(0.2)
        accepted = []
        deadline = time.time() + 4
        while time.time() < deadline:
            try:
                accepted.append(slow.accept()[0])
            except OSError:
                pass
        st = self.status()
        self.assertEqual(st["selected"], "eeeeeee")
        c.close()
        for a in accepted:
            a.close()
        c = self.connect()
        self.assertEqual(self.echo(c, "z"), "b0:z")
        c.close()
        harness.wait_for(lambda: self.status()["connections"] == 0, what="closed")

    def test_second_switch_leaves_the_running_one_alone(self):
        self.select("aaaaaaa", self.backends[:1])
        # Same state dir, port taken: it fails, and must not take the control socket.
        r = self.rb("local", "serve", "--listen", self.listen, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.status()["selected"], "aaaaaaa")
        # Same state dir, another port: refused while a switch answers there.
        r = self.rb("local", "serve", "--listen", "127.0.0.1:%d" % harness.free_port(),
                    timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.status()["selected"], "aaaaaaa")
        self.assertEqual(self.echo(self.connect(), "y"), "b0:y")

    def test_restart_resumes_selection_and_rainbow_kill_is_harmless(self):
        self.select("ccccccc", self.backends[1:2])
        c = self.connect()
        self.assertEqual(self.echo(c, "a"), "b1:a")
        # rainbow killed while talking to the switch: the switch does not care.
        w = harness.Proc([self.rainbow, "--state-dir", self.state, "local", "status"])
        w.p.send_signal(signal.SIGKILL)
        w.wait(10)
        self.assertEqual(self.echo(c, "b"), "b1:b")
        # local down refuses while connections are open (no terminal, no --force).
        r = self.rb("local", "down")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--force", r.stderr)
        self.assertEqual(self.echo(c, "c"), "b1:c")
        c.close()
        harness.wait_for(lambda: self.status()["connections"] == 0, what="closed")
        r = self.rb("local", "down")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.rb("local", "status")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not up", r.stderr)
        r = self.rb("local", "up", "--listen", self.listen)
        self.assertEqual(r.returncode, 0, r.stderr)
        st = self.status()
        self.assertEqual(st["selected"], "ccccccc")
        self.assertEqual(self.echo(self.connect(), "d"), "b1:d")
        # A second `local up` finds it running.
        r = self.rb("local", "up", "--listen", self.listen)
        self.assertEqual(r.returncode, 0)
        self.assertIn("already up", r.stdout)


class LimitTest(unittest.TestCase):
    """The switch at its open-files limit (a hard limit of 128 here: 32 kept in
    reserve, 48 proxies): refusals are counted and logged, the control socket
    keeps answering, and connections are taken again once some closed."""

    LIMIT = 128
    cleanup, rb, echo = SwitchTest.cleanup, SwitchTest.rb, SwitchTest.echo

    def ctl(self, line):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(os.path.join(self.state, "switch.sock"))
        try:
            return ask(s, line)
        finally:
            s.close()

    def status(self):
        reply = self.ctl("status")
        self.assertTrue(reply.startswith("ok "), reply)
        return json.loads(reply[3:])

    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="rb-switch-limit-")
        self.port = harness.free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.rainbow = harness.binary("rainbow")
        self.backends = [Backend("b0")]
        self.clients = []
        self.addCleanup(self.cleanup)
        lim = self.LIMIT

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))

        r = subprocess.run([self.rainbow, "--state-dir", self.state, "local", "up", "--listen",
                            self.listen], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, preexec_fn=low_limit)
        self.assertEqual(r.returncode, 0, r.stderr)

    def attempt(self):
        """A client through the switch: it answers (kept open), or the switch
        refused it (a reset; on loopback it may even beat connect())."""
        try:
            c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except ConnectionResetError:
            return False
        self.clients.append(c)
        try:
            return self.echo(c, "x") == "b0:x"
        except (ConnectionError, OSError):
            return False

    def test_refusals_counted_and_control_keeps_working(self):
        self.assertEqual(self.ctl("select aaaaaaa " + self.backends[0].addr).strip(), "ok")
        st = self.status()
        cap = st["max_connections"]
        self.assertEqual((st["fd_limit"], cap), (self.LIMIT, (self.LIMIT - 32) // 2))
        served = sum(self.attempt() for _ in range(cap + 20))
        self.assertEqual(served, cap)
        st = self.status()    # the control socket answers at the limit
        self.assertEqual(st["connections"], cap)
        self.assertEqual(st["refused_limit"], 20)
        def logged():
            with open(os.path.join(self.state, "switch.log")) as f:
                return "accept-refused" in f.read()
        harness.wait_for(logged, timeout=5, what="log line")
        with open(os.path.join(self.state, "switch.log")) as f:
            self.assertEqual(f.read().count("accept-refused"), 1)  # rate-limited
        # Room again once some close.
        for c in [c for c in self.clients if c.fileno() >= 0][:5]:
            c.close()
        harness.wait_for(lambda: self.status()["connections"] <= cap - 5, timeout=10,
                         what="closed")
        self.assertTrue(self.attempt())


if __name__ == "__main__":
    unittest.main()
