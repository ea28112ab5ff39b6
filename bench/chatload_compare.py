#!/usr/bin/env python3
"""chatd side by side with Prosody and ejabberd (Debian packages, installed by
`scripts/deps.sh bench`), all driven by the same chatload runs (issue 3).

Each server runs on loopback only, on an unused port, plaintext, accepting
any user and password through SASL PLAIN (chatd --auth-any, Prosody's
mod_auth_insecure, ejabberd's login_anon), in a private temporary directory.
For each server and each phase the server is started afresh:

  idle N    N clients log in (chatload --ramp) and stay idle: server RSS per
            idle session (RSS after they settled minus RSS before), server
            CPU per login (user+system time of the server's processes while
            they logged in / N), logins/s (N / chatload's ramp_s), login p50/p99
  messages  M clients, --message-rate R each for D seconds: delivered, lost,
            latency p50/p99

Prints a Markdown section (every figure measured by this run) to stdout and,
with --out FILE, writes it there.

usage: bench/chatload_compare.py [--build DIR] [--servers chatd,prosody,ejabberd]
                                 [--idle 2000,10000] [--msg-clients 2000]
                                 [--msg-rate 1] [--msg-duration 15] [--out FILE]
"""
import argparse
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def usage(pid):
    """(RSS KiB, CPU seconds) summed over the process tree."""
    rss = cpu = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            fields = st[st.rfind(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return rss, cpu


class Server:
    def __init__(self, kind, build, tmp):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=kind + "-", dir=tmp)
        self.log = open(os.path.join(self.dir, "out.log"), "wb")
        env = dict(os.environ)
        kw = {}
        if kind == "chatd":
            argv = [os.path.join(build, "chatd"), "--listen", "127.0.0.1:%d" % self.port,
                    "--http", "", "--auth-any", "--log-level", "warn", "--ping-interval", "0",
                    "--version-label", "bench", "--instance", "bench"]
        elif kind == "prosody":
            cfg = os.path.join(self.dir, "prosody.cfg.lua")
            os.makedirs(os.path.join(self.dir, "data"))
            with open(cfg, "w") as f:
                f.write(PROSODY_CFG % {"dir": self.dir, "port": self.port})
            argv = ["prosody", "--config", cfg, "-F"]
        elif kind == "ejabberd":
            for d in ("spool", "logs"):
                os.makedirs(os.path.join(self.dir, d))
            with open(os.path.join(self.dir, "ejabberd.yml"), "w") as f:
                f.write(EJABBERD_YML % {"port": self.port})
            with open(os.path.join(self.dir, "ejabberdctl.cfg"), "w") as f:
                f.write("ERL_EPMD_ADDRESS=127.0.0.1\nINET_DIST_INTERFACE=127.0.0.1\n")
            uid = pwd.getpwnam("ejabberd").pw_uid
            for base, dirs, files in os.walk(self.dir):
                for n in dirs + files + [""]:
                    os.chown(os.path.join(base, n), uid, -1)
            os.chown(tmp, uid, -1)
            self.node = "ejabberd-bench-%d@localhost" % self.port
            self.ctl = ["ejabberdctl", "--config", os.path.join(self.dir, "ejabberd.yml"),
                        "--ctl-config", os.path.join(self.dir, "ejabberdctl.cfg"),
                        "--logs", os.path.join(self.dir, "logs"),
                        "--spool", os.path.join(self.dir, "spool"), "--node", self.node]
            env["ERL_EPMD_ADDRESS"] = "127.0.0.1"
            env["HOME"] = self.dir
            argv = self.ctl + ["foreground"]
            # Started as the ejabberd user directly: through ejabberdctl's su,
            # PAM would reset the open-files limit to 1024.
            kw = {"user": "ejabberd", "group": "ejabberd"}
        else:
            raise ValueError(kind)
        self.env, self.kw = env, kw
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env,
                                  start_new_session=True, **kw)
        deadline = time.monotonic() + 60
        while not listening(self.port):
            if time.monotonic() > deadline or self.p.poll() is not None:
                raise RuntimeError("%s did not start, see %s" % (kind, self.dir))
            time.sleep(0.2)
        time.sleep(2)

    def usage(self):
        return usage(self.p.pid)

    def stop(self):
        if self.kind == "ejabberd":
            subprocess.run(self.ctl + ["stop"], capture_output=True, timeout=60,
                           env=self.env, **self.kw)
        else:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        self.log.close()


PROSODY_CFG = """
pidfile = "%(dir)s/prosody.pid"
data_path = "%(dir)s/data"
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %(port)d }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = {}
https_ports = {}
c2s_direct_tls_ports = {}
admin_socket = "%(dir)s/admin.sock"
certificates = "%(dir)s"
daemonize = false
run_as_root = true
log = { error = "*console" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
insecure_open_authentication = "Yes please, I know what I'm doing!"
authentication = "insecure"
storage = "memory"
modules_enabled = { "roster", "saslauth", "disco", "ping", "version" }
modules_disabled = { "s2s", "offline", "tls", "admin_shell" }
VirtualHost "localhost"
"""

EJABBERD_YML = """
hosts:
  - localhost
loglevel: warning
listen:
  -
    port: %(port)d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: all
    starttls: false
    backlog: 4096
auth_method: [anonymous]
anonymous_protocol: login_anon
allow_multiple_connections: true
shaper: {}
shaper_rules: {}
acl: {}
access_rules:
  c2s:
    allow: all
  local:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_version: {}
  mod_roster: {}
"""


class Chatload:
    def __init__(self, build, tmp, port, args):
        self.report = os.path.join(tmp, "chatload-%d.json" % time.monotonic_ns())
        self.err = open(self.report + ".log", "w+")
        self.p = subprocess.Popen(
            [os.path.join(build, "chatload"), "--server", "127.0.0.1:%d" % port,
             "--auth", "plain", "--ping-interval", "0", "--progress-interval", "250ms",
             "--report", self.report] + [str(a) for a in args],
            stdout=subprocess.DEVNULL, stderr=self.err)

    def connected(self):
        self.err.seek(0)
        m = re.findall(r"connected (\d+)/", self.err.read())
        return int(m[-1]) if m else 0

    def wait_connected(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.connected() < n:
            if time.monotonic() > deadline or self.p.poll() is not None:
                return False
            time.sleep(0.1)
        return True

    def finish(self, sig=True, timeout=180):
        if sig:
            self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=timeout)
        self.err.close()
        with open(self.report) as f:
            return json.load(f)


def idle_phase(kind, build, tmp, n, ramp):
    srv = Server(kind, build, tmp)
    try:
        rss0, cpu0 = srv.usage()
        cl = Chatload(build, tmp, srv.port, ["--clients", n, "--ramp", "%d/s" % ramp])
        ok = cl.wait_connected(n, timeout=n / 100 + 60)
        _, cpu1 = srv.usage()
        time.sleep(5)
        rss1, _ = srv.usage()
        r = cl.finish()
    finally:
        srv.stop()
    ramp_s = r["ramp_s"] or 0
    return {"server": kind, "clients": n, "all_connected": ok,
            "rss_per_session_kib": (rss1 - rss0) / n, "server_rss_mib": rss1 / 1024,
            "cpu_ms_per_login": (cpu1 - cpu0) * 1000 / n,
            "logins_per_s": n / ramp_s if ramp_s else 0,
            "login_p50": r["login_ms"]["p50"], "login_p99": r["login_ms"]["p99"],
            "dropped": r["dropped"], "failures": r["login_failures"] + r["connect_failures"]}


def msg_phase(kind, build, tmp, n, rate, duration):
    srv = Server(kind, build, tmp)
    try:
        cl = Chatload(build, tmp, srv.port, ["--clients", n, "--ramp", "2000/s",
                                             "--message-rate", rate, "--duration", duration])
        r = cl.finish(sig=False, timeout=duration + n / 100 + 120)
    finally:
        srv.stop()
    lat = r["latency_ms"]
    return {"server": kind, "clients": n, "sent": r["messages_sent"],
            "delivered": r["messages_delivered"], "lost": r["messages_lost"],
            "p50": lat["p50"], "p99": lat["p99"], "max": lat["max"]}


def ratio(v, base):
    return "%.1fx" % (v / base) if base else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--servers", default="chatd,prosody,ejabberd")
    ap.add_argument("--idle", default="2000,10000")
    ap.add_argument("--ramp", type=int, default=2000)
    ap.add_argument("--msg-clients", type=int, default=2000)
    ap.add_argument("--msg-rate", type=float, default=1.0)
    ap.add_argument("--msg-duration", type=float, default=15)
    ap.add_argument("--out")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    servers = [s for s in a.servers.split(",") if s]
    for s in servers:
        if s != "chatd" and not shutil.which({"prosody": "prosody",
                                              "ejabberd": "ejabberdctl"}[s]):
            sys.exit("chatload_compare: %s is not installed (scripts/deps.sh bench)" % s)
    tmp = tempfile.mkdtemp(prefix="chatload-compare-")
    os.chmod(tmp, 0o755)
    idle, msgs = [], []
    for n in [int(x) for x in a.idle.split(",") if x]:
        for s in servers:
            r = idle_phase(s, a.build, tmp, n, a.ramp)
            print("idle:", json.dumps(r), file=sys.stderr)
            idle.append(r)
    for s in servers:
        r = msg_phase(s, a.build, tmp, a.msg_clients, a.msg_rate, a.msg_duration)
        print("messages:", json.dumps(r), file=sys.stderr)
        msgs.append(r)

    lines = ["## chatd, Prosody and ejabberd under the same chatload", "",
             "Measured by `bench/chatload_compare.py` on %s (%d CPUs, shared), loopback, "
             "plaintext, SASL PLAIN accepting any password, chatload `--ramp %d/s`. "
             "Ratios are against chatd." % (socket.gethostname(), os.cpu_count(), a.ramp), "",
             "| server | idle sessions | RSS per session | ratio | server CPU per login "
             "| ratio | logins/s | login p50 / p99 | failures | dropped |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in idle:
        base = next(x for x in idle if x["clients"] == r["clients"] and
                    x["server"] == servers[0])
        lines.append("| %s | %d%s | %.2f KiB | %s | %.3f ms | %s | %.0f | %.1f / %.1f ms "
                     "| %d | %d |" % (
                         r["server"], r["clients"], "" if r["all_connected"] else " (not all)",
                         r["rss_per_session_kib"],
                         ratio(r["rss_per_session_kib"], base["rss_per_session_kib"]),
                         r["cpu_ms_per_login"],
                         ratio(r["cpu_ms_per_login"], base["cpu_ms_per_login"]),
                         r["logins_per_s"], r["login_p50"], r["login_p99"], r["failures"],
                         r["dropped"]))
    lines += ["", "Message load: %d clients, %g messages/s each for %g s, to random "
              "full JIDs." % (a.msg_clients, a.msg_rate, a.msg_duration), "",
              "| server | sent | delivered | lost | latency p50 | p99 | max |",
              "|---|---|---|---|---|---|---|"]
    for r in msgs:
        lines.append("| %s | %d | %d | %d | %.2f ms | %.2f ms | %.2f ms |" % (
            r["server"], r["sent"], r["delivered"], r["lost"], r["p50"], r["p99"], r["max"]))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
