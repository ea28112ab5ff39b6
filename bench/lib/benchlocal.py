"""A local rainbow platform for the benchmark pieces: `rainbow local up` on
a free port in a temp state dir (the build's chatd as replicas), rainbow
run against it, its record read, and `close()` tearing it all down.
tests/lib must be on sys.path (harness, localplat).
"""
import os
import shutil
import subprocess
import tempfile
import threading

import harness
import localplat


class LocalPlatform:
    def __init__(self, build, prefix, up_args=(), timeout=120, preexec_fn=None):
        """timeout: seconds a rainbow command may take unless told;
        preexec_fn: run in each rainbow child before exec."""
        self.state = tempfile.mkdtemp(prefix=prefix)
        self.port = harness.free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.rainbow = os.path.join(build, "rainbow")
        self.timeout = timeout
        self.preexec_fn = preexec_fn
        self.env = dict(os.environ, RAINBOW_CHATD=os.path.join(build, "chatd"),
                        RAINBOW_STATE_DIR=self.state)
        self.rb("local", "up", "--listen", self.listen, *up_args)

    def rb(self, *args, check=True, timeout=None):
        r = subprocess.run([self.rainbow] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=timeout or self.timeout,
                           preexec_fn=self.preexec_fn)
        if check and r.returncode != 0:
            raise RuntimeError("rainbow %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def record(self):
        return localplat.read_record(self.state)

    def close(self):
        self.rb("local", "down", "--force", check=False)
        shutil.rmtree(self.state, ignore_errors=True)


def serve_threads(sock, serve, running=lambda: True):
    """Accepts on the listening sock while running() (until sock is closed),
    each connection handed to serve(conn) in a thread of its own."""
    def accept():
        while running():
            try:
                c, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


