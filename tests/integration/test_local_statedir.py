"""The local platform on a state directory that fills up or is read-only:
the real error is reported (not "Input/output error", not "another rainbow
is deploying"), a full one is retried with backoff until space comes back,
and a deploy that cannot record its colour starts no replica.

The state directory is a small tmpfs in a private mount namespace
(`unshare -m`); the read-only case is a read-only bind mount of the same
directory, so the switch keeps writing its state while rainbow cannot. The
whole scenario runs inside the namespace as one shell script; its output is
checked here.
"""
import os
import subprocess
import unittest

import harness

SCRIPT = r'''
set -u
B=$1; P=$2
D=$(mktemp -d /tmp/rb-statedir.XXXXXX); RO=$(mktemp -d /tmp/rb-statedir-ro.XXXXXX)
OUT=$(mktemp /tmp/rb-statedir-out.XXXXXX)
mount -t tmpfs -o size=4m tmpfs "$D" || exit 77
R="$B/rainbow --state-dir $D"
export RAINBOW_CHATD=$B/chatd
cleanup() {
	$R local down --force >/dev/null 2>&1
	umount "$RO" 2>/dev/null; umount "$D" 2>/dev/null; rmdir "$D" "$RO"; rm -f "$OUT"
}
trap cleanup EXIT
$R local up --listen 127.0.0.1:$P >/dev/null || { echo "UP FAILED"; exit 1; }
$R deploy aaaaaaa -r 1 --settle 1s --poll 0.2s >/dev/null || echo "FIRST DEPLOY FAILED"
# Full: fill what is left, deploy in the background.
dd if=/dev/zero of="$D/fill" bs=4k 2>/dev/null
$R deploy bbbbbbb -r 1 --settle 1s --poll 0.2s --ready-timeout 20s > "$OUT" 2>&1 &
DEP=$!
for i in $(seq 300); do grep -q "No space left" "$OUT" 2>/dev/null && break; sleep 0.1; done
echo "RUNNING-B-WHILE-FULL=$(pgrep -fc -- '--instance chat-bbbbbbb( |$)')"
sleep 1
rm -f "$D/fill"
wait $DEP; echo "ENOSPC-DEPLOY-RC=$?"
sed 's/^/ENOSPC: /' "$OUT"
# Read-only: rainbow sees the same directory through a read-only bind mount.
mount --bind "$D" "$RO" && mount -o remount,ro,bind "$RO" || exit 77
$B/rainbow --state-dir "$RO" deploy ccccccc -r 1 --settle 1s --poll 0.2s 2>&1 | sed 's/^/EROFS: /'
echo "EROFS-DEPLOY-RC=${PIPESTATUS[0]}"
echo "RUNNING-C=$(pgrep -fc -- '--instance chat-ccccccc( |$)')"
$B/rainbow --state-dir "$RO" status > /dev/null 2>&1; echo "EROFS-STATUS-RC=$?"
'''


class StateDir(unittest.TestCase):
    def test_full_and_read_only_state_dir(self):
        build = os.path.dirname(harness.binary("rainbow"))
        try:
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c",
                                SCRIPT, "script", build, str(harness.free_port())],
                               capture_output=True, text=True, timeout=180,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            self.skipTest("no unshare(1)")
        if r.returncode == 77 or "unshare failed" in r.stderr:
            self.skipTest("no private mount namespace here: " + r.stderr[-300:])
        out = r.stdout
        self.assertNotIn("FAILED", out, out + r.stderr)
        # Full: the real error, nothing started, and the deploy goes through
        # once space is back (it retried with backoff meanwhile).
        self.assertIn("RUNNING-B-WHILE-FULL=0", out, out)
        self.assertIn("ENOSPC: rainbow: create chat-bbbbbbb failed: cannot write", out)
        self.assertIn("No space left on device", out)
        self.assertNotIn("Input/output error", out)
        self.assertIn("ENOSPC-DEPLOY-RC=0", out, out)
        # Read-only: said so at once (not "another rainbow is deploying").
        self.assertIn("Read-only file system", out, out)
        self.assertNotIn("another rainbow", out)
        self.assertIn("EROFS-DEPLOY-RC=1", out, out)
        self.assertIn("RUNNING-C=0", out, out)
        self.assertIn("EROFS-STATUS-RC=0", out, out)


if __name__ == "__main__":
    unittest.main()
