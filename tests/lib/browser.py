"""Headless Chromium driven through its DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4), with
only Python's standard library. For the browser tests of the dashboard and
the web chat.

    b = browser.Browser()            # raises unittest.SkipTest without chromium
    page = b.page("http://127.0.0.1:8080/")
    page.wait("document.querySelectorAll('tr').length > 1")
    page.eval("document.title")
    page.screenshot("out.png")
    b.close()

Every wait is bounded; a page's console errors and uncaught exceptions are
collected in page.errors.
"""
import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

CHROMIUM = os.environ.get("RAINBOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe"]


def available():
    """None when Chromium can run here, else why not (for skipTest)."""
    if not os.path.exists(CHROMIUM):
        return ("chromium is not installed (Debian package chromium; "
                "scripts/deps.sh installs it for make check)")
    return None


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, width=1280, height=900):
        why = available()
        if why:
            raise unittest.SkipTest(why)
        self.width, self.height = width, height
        self.dir = tempfile.mkdtemp(prefix="rb-chromium-")
        to_r, to_w = os.pipe()      # we write commands, Chromium reads fd 3
        from_r, from_w = os.pipe()  # Chromium writes fd 4, we read
        # Above 10 so that dup2 onto 3 and 4 in the child never meets them.
        c_in = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
        c_out = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_r)
        os.close(from_w)

        def child():
            os.dup2(c_in, 3)
            os.dup2(c_out, 4)

        self.log = open(os.path.join(self.dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM] + FLAGS + ["--user-data-dir=" + os.path.join(self.dir, "profile"),
                                  "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=child, pass_fds=(3, 4))
        os.close(c_in)
        os.close(c_out)
        self.w = to_w
        self.r = from_r
        self.next_id = 0
        self.replies = {}
        self.events = queue.Queue()
        self.cv = threading.Condition()
        self.pages = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.r, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cv:
                    self.replies[None] = "closed"
                    self.cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if "id" in m:
                    with self.cv:
                        self.replies[m["id"]] = m
                        self.cv.notify_all()
                else:
                    sid = m.get("sessionId")
                    page = self.pages.get(sid)
                    if page:
                        page._event(m)

    def send(self, method, params=None, session=None, timeout=20.0):
        with self.cv:
            self.next_id += 1
            mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        os.write(self.w, json.dumps(m).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self.cv:
            while mid not in self.replies:
                if None in self.replies:
                    raise BrowserError("chromium exited: " + self.chromium_log()[-2000:])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError("no answer to %s within %.0fs" % (method, timeout))
                self.cv.wait(left)
            r = self.replies.pop(mid)
        if "error" in r:
            raise BrowserError("%s: %s" % (method, r["error"]))
        return r.get("result", {})

    def page(self, url):
        """A new tab (its own browsing context: cookies and storage apart) at url."""
        ctx = self.send("Target.createBrowserContext")["browserContextId"]
        tid = self.send("Target.createTarget", {"url": "about:blank",
                                                "browserContextId": ctx})["targetId"]
        sid = self.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        p = Page(self, sid, tid)
        self.pages[sid] = p
        p.cmd("Runtime.enable")
        p.cmd("Page.enable")
        p.cmd("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                     "deviceScaleFactor": 1, "mobile": False})
        p.cmd("Page.navigate", {"url": url})
        p.wait("document.readyState === 'complete'")
        return p

    def chromium_log(self):
        self.log.flush()
        with open(os.path.join(self.dir, "chromium.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Page:
    def __init__(self, browser, session, target):
        self.b = browser
        self.session = session
        self.target = target
        self.errors = []

    def _event(self, m):
        if m.get("method") == "Runtime.exceptionThrown":
            self.errors.append(m["params"]["exceptionDetails"].get("text", "?") + " " +
                               json.dumps(m["params"]["exceptionDetails"].get("exception", {})
                                          .get("description", "")))
        elif m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in m["params"]["args"]))

    def cmd(self, method, params=None, timeout=20.0):
        return self.b.send(method, params, session=self.session, timeout=timeout)

    def eval(self, expr, timeout=20.0):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.cmd("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                          "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            raise BrowserError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expr, timeout=20.0, what=None):
        """Polls expr until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.eval(expr)
            except BrowserError as e:
                last = e
            if last and not isinstance(last, BrowserError):
                return last
            if time.monotonic() > deadline:
                raise BrowserError("timed out waiting for %s (last: %r; page errors: %s)"
                                   % (what or expr, last, self.errors))
            time.sleep(0.1)

    def screenshot(self, path):
        data = self.cmd("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.b.send("Target.closeTarget", {"targetId": self.target})
