"""docs/tutorial.md runs as written: every fenced `sh` block, in order, in
one shell, in a fresh directory where `build` is the build under test, in a
network namespace of its own (the tutorial's fixed ports 5222, 5290 and 8080
are free there and nothing else sees them). Between blocks, the
`<!-- tutorial-test: ... -->` comments say what a person would do in the
browser: wait for the dashboard, take the screenshot the README shows, join
the web chat in two tabs and check they stay on their colour through a
deploy and are ended properly by --max-drain. Section 1 (`make demo`, an
indented block) is `make demo`'s own.

RAINBOW_UPDATE_DOCS=1 writes the screenshot to docs/img/dashboard.png (how
the README's picture is made); otherwise it goes to a temp dir.
"""
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import browser  # noqa: E402
import harness  # noqa: E402

TUTORIAL = os.path.join(harness.ROOT, "docs", "tutorial.md")


def steps(text):
    """[("sh", block) | ("hook", words)] in document order."""
    out = []
    for m in re.finditer(r"^```sh\n(.*?)^```$|<!-- tutorial-test: (.*?) -->", text, re.S | re.M):
        if m.group(1) is not None:
            out.append(("sh", m.group(1)))
        else:
            out.append(("hook", m.group(2).split()))
    return out


class Shell:
    """One bash for the whole tutorial (exports and background jobs persist)."""

    def __init__(self, cwd, env):
        self.p = subprocess.Popen(["bash", "--noprofile", "--norc", "-e"], cwd=cwd, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.log = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def run(self, block, timeout=240):
        self.p.stdin.write(block + "\necho @@done@@\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("block timed out:\n%s" % block)
            if line is None:
                raise AssertionError("the shell ended (a command failed) in:\n%s\n--- output:\n%s"
                                     % (block, "".join(self.log[-60:])))
            if line.strip() == "@@done@@":
                return

    def close(self):
        try:
            self.p.stdin.write("kill $(jobs -p) 2>/dev/null || true\nexit 0\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
            self.p.kill()


def http_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


def inside():
    """The tutorial, run in this (fresh) network namespace; raises on failure."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp(prefix="rb-tutorial-")
    os.symlink(harness.BUILD, os.path.join(work, "build"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAINBOW_", "CHATD_", "CHAT_PASSWORD"))}
    env["RAINBOW_CHATD"] = os.path.join(harness.BUILD, "chatd")
    shots = (os.path.join(harness.ROOT, "docs", "img") if os.environ.get("RAINBOW_UPDATE_DOCS")
             else tempfile.mkdtemp(prefix="rb-tutorial-img-"))
    sh = Shell(work, env)
    b = None
    pages = {}
    dash = "http://127.0.0.1:8080"
    try:
        with open(TUTORIAL) as f:
            plan = steps(f.read())
        assert sum(1 for k, _ in plan if k == "sh") >= 5, "the tutorial lost its sh blocks"
        for kind, what in plan:
            print("== %s %s" % (kind, what if kind == "hook" else what.splitlines()[0]),
                  flush=True)
            if kind == "sh":
                sh.run(what)
                continue
            hook, args = what[0], what[1:]
            if hook == "wait-http":
                harness.wait_for(lambda: harness.http_get(args[0])[0] == 200, timeout=30,
                                 what=args[0])
            elif hook == "wait-connections":
                sha, n = args[0], int(args[1])
                harness.wait_for(lambda: any(
                    c["sha"] == sha and c["connections"] >= n
                    for c in http_json(dash + "/api/state")["colours"]),
                    timeout=60, what="%s connections on %s" % (n, sha))
            elif hook == "screenshot":
                if b is None:
                    b = browser.Browser(width=1280, height=900)
                page = b.page(dash + "/")
                page.wait("document.querySelectorAll('#colours tbody tr').length > 0 && "
                          "document.querySelectorAll('#chart path').length > 0",
                          what="the dashboard drawn")
                time.sleep(1.0)  # one more poll drawn
                path = os.path.join(shots, os.path.basename(args[0]))
                page.screenshot(path)
                with open(path, "rb") as f:
                    assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
                assert page.errors == [], page.errors
                page.close()
                print("screenshot: %s" % path, flush=True)
            elif hook == "chat-join":
                if b is None:
                    b = browser.Browser(width=1280, height=900)
                for nick in args:
                    p = b.page(dash + "/chat")
                    p.eval("chat.join(%s)" % json.dumps(nick))
                    p.wait("chat.status === 'connected' && !!chat.colour", what=nick)
                    pages[nick] = p
                first = pages[args[0]]
                first.eval("chat.say('hello from the workshop')")
                for nick, p in pages.items():
                    p.wait("chat.received.some(m => m.text === 'hello from the workshop')",
                           what="%s heard it" % nick)
            elif hook == "chat-held":
                for nick, p in pages.items():
                    assert p.eval("chat.colour") == args[0], nick
                    assert p.eval("chat.status") == "connected", nick
                    assert p.eval("chat.disconnects") == 0, nick
                # The dashboard's next poll shows it draining, held by the pages.
                harness.wait_for(lambda: [
                    c for c in http_json(dash + "/api/state")["colours"]
                    if c["sha"] == args[0] and c["state"] == "draining" and
                    c["connections"] >= len(pages)], timeout=20, what="%s held" % args[0])
            elif hook == "chat-shutdown":
                for nick, p in pages.items():
                    p.wait("chat.disconnects === 1", what="%s ended by the deadline" % nick)
                    text = p.eval("document.getElementById('log').textContent")
                    assert "system-shutdown" in text, (nick, text)
                nick, p = next(iter(pages.items()))
                p.eval("chat.join(%s)" % json.dumps(nick))
                p.wait("chat.status === 'connected' && chat.colour === %s" % json.dumps(args[0]),
                       what="%s back on the newest colour" % nick)
            elif hook == "wait-file":
                path = os.path.join(work, args[0])
                harness.wait_for(lambda: os.path.exists(path), timeout=90, what=path)
                with open(path) as f:
                    r = json.load(f)
                assert r["dropped"] == 0 and r["messages_lost"] == 0, r
                # The dashboard's next poll shows the verdict in large type.
                harness.wait_for(lambda: http_json(dash + "/api/state")["report"] == {
                    "state": "final", "dropped": 0, "lost": 0, "connections": r["connections"],
                    "delivered": r["messages_delivered"], "note": "chatload report"},
                    timeout=20, what="the verdict on the dashboard")
            else:
                raise AssertionError("unknown tutorial-test hook %r" % hook)
    finally:
        if b:
            b.close()
        sh.close()
        out = "".join(sh.log)
        print("--- the tutorial's output:\n" + out, flush=True)
        subprocess.run([os.path.join(harness.BUILD, "rainbow"), "--state-dir",
                        os.path.join(work, ".rainbow"), "local", "down", "--force"],
                       capture_output=True, timeout=60)
    m = harness.SANITIZER_RE.search(out)
    assert not m, out[m.start():m.start() + 3000]
    for name in os.listdir(os.path.join(work, ".rainbow", "logs")):
        with open(os.path.join(work, ".rainbow", "logs", name), errors="replace") as f:
            text = f.read()
        m = harness.SANITIZER_RE.search(text)
        assert not m, name + ":\n" + text[m.start():m.start() + 3000]
    shutil.rmtree(work, ignore_errors=True)


class TutorialTest(unittest.TestCase):
    def test_every_command_runs_as_written(self):
        why = browser.available()
        if why:
            self.skipTest(why)
        if not shutil.which("unshare") or subprocess.run(
                ["unshare", "--net", "true"], capture_output=True).returncode != 0:
            self.skipTest("cannot make a network namespace here (unshare --net: needs root "
                          "or user namespaces)")
        r = subprocess.run(["unshare", "--net", "--", sys.executable, os.path.abspath(__file__),
                            "--inside"], capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr)[-12000:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--inside"]:
        inside()
        sys.exit(0)
    unittest.main()
