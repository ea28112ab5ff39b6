#!/usr/bin/env python3
"""chatd, Prosody and ejabberd driven by the same chatload runs.

Called by bench/compare_servers.sh, which checks the installation, raises the
open-files limit, gives a private temporary directory (--tmp) and cleans up.
Each server runs with its configuration file from bench/servers/ (chatd.args,
prosody.cfg.lua, ejabberd.yml: described there and in the printed section),
on 127.0.0.1 on an unused port, with the same certificate for STARTTLS and
the same accounts (user0..userN-1, password "secret", created before the
server starts), started afresh for every run of every phase:

  idle N     chatload logs N clients in with no ramp limit (PLAIN; --tls:
             STARTTLS first) and keeps them idle. RSS per session = (server
             VmRSS 5 s after the last login - VmRSS before the first) / N;
             CPU per login = server CPU time (all threads, schedstat) from
             before the first connect until all N were bound / N; logins/s =
             N / chatload's ramp_s, with the CPU shares of server and
             chatload over that span (what bounded the rate).
  messages   M clients send R messages/s each (Poisson, to random other
             clients' full JIDs) for D seconds: delivered, lost, latency
             p50/p99 from chatload's report, server CPU per message.

Every phase runs --runs times (default 3), servers interleaved; figures are
min / median / max with the machine's load (bench/lib/benchlib.py). Prints
the Markdown section to stdout, progress to stderr; --json FILE keeps the
raw figures.
"""
import argparse
import base64
import hashlib
import hmac
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import benchlib  # noqa: E402
import harness  # noqa: E402

DOMAIN = "localhost"
PASSWORD = "secret"
NAMES = {"chatd": "chatd", "prosody": "Prosody", "ejabberd": "ejabberd"}
CONFIGS = {"chatd": "bench/servers/chatd.args", "prosody": "bench/servers/prosody.cfg.lua",
           "ejabberd": "bench/servers/ejabberd.yml"}
# Threads that can run server work at once: chatd and Prosody have one event
# loop; ejabberd's Erlang VM runs one scheduler per core.
SERVER_CORES = {"chatd": 1, "prosody": 1, "ejabberd": benchlib.NCPU}


def log(*a):
    print("compare:", *a, file=sys.stderr, flush=True)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def fill(text, **kw):
    for k, v in kw.items():
        text = text.replace("@%s@" % k, str(v))
    return text


def chown_tree(path, user):
    pw = pwd.getpwnam(user)
    for base, dirs, files in os.walk(path):
        os.chown(base, pw.pw_uid, pw.pw_gid)
        for n in files:
            os.chown(os.path.join(base, n), pw.pw_uid, pw.pw_gid)


# ------------------------------------------------------------------ accounts

def chatd_users(path, n):
    """chatd users file: SCRAM-SHA-256 with 1 PBKDF2 iteration (docs/chatd-users.md)."""
    with open(path, "w") as f:
        f.write("# written by bench/lib/compare.py\n")
        for i in range(n):
            salt = hashlib.sha256(b"bench%d" % i).digest()[:16]
            sp = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 1)
            stored = hashlib.sha256(hmac.new(sp, b"Client Key", hashlib.sha256).digest()).digest()
            server = hmac.new(sp, b"Server Key", hashlib.sha256).digest()
            f.write("user%d sha256:1:%s:%s:%s\n" % (i, base64.b64encode(salt).decode(),
                                                    base64.b64encode(stored).decode(),
                                                    base64.b64encode(server).decode()))
    os.chmod(path, 0o600)


def prosody_accounts(data, n):
    """Prosody's file storage: data/<host>/accounts/<user>.dat, plain password."""
    d = os.path.join(data, DOMAIN, "accounts")
    os.makedirs(d)
    for i in range(n):
        with open(os.path.join(d, "user%d.dat" % i), "w") as f:
            f.write('return {\n\t["password"] = "%s";\n};\n' % PASSWORD)


def ejabberd_env(a, d, cfg):
    env = dict(os.environ)
    env.update({"ERL_LIBS": os.environ.get("EJABBERD_ERL_LIBS", "/usr/lib/x86_64-linux-gnu"),
                "EJABBERD_CONFIG_PATH": cfg,
                "EJABBERD_LOG_PATH": os.path.join(d, "logs", "ejabberd.log"),
                "ERL_CRASH_DUMP": os.path.join(d, "logs", "erl_crash.dump"),
                "ERL_MAX_PORTS": str(a.nofile), "HOME": d})
    return env


def ejabberd_argv(a, d, extra=()):
    # What ejabberdctl foreground runs, minus the Erlang distribution (no
    # node name: no epmd, no distribution port). +Q / ERL_MAX_PORTS lift the
    # socket limit to the open-files limit; +sbwt none and friends stop idle
    # schedulers from spinning, which would bill busy-waiting as CPU.
    return ["erl", "-noinput", "-noshell", "+K", "true", "+P", "250000",
            "+Q", str(a.nofile), "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none",
            "-env", "ERL_CRASH_DUMP_BYTES", "0", "-mnesia", "dir",
            '"%s"' % os.path.join(d, "spool"), "-s", "ejabberd"] + list(extra)


def ejabberd_pem(a, d):
    """ejabberd wants certificate and key in one file."""
    path = os.path.join(d, "cert.pem")
    with open(a.cert_pem) as c, open(a.key_pem) as k, open(path, "w") as f:
        f.write(c.read() + k.read())
    return path


def as_user(user, argv):
    pw = pwd.getpwnam(user)
    # setpriv keeps the raised open-files limit (su/runuser would go through
    # PAM limits).
    return ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid), "--init-groups",
            "--"] + argv


class Accounts:
    """Made once per comparison, copied for every server start."""

    def __init__(self, a, n):
        self.n = n
        self.dir = os.path.join(a.tmp, "accounts")
        os.makedirs(self.dir)
        t0 = time.monotonic()
        chatd_users(os.path.join(self.dir, "chatd-users"), n)
        prosody_accounts(os.path.join(self.dir, "prosody-data"), n)
        if "ejabberd" in a.servers:
            self.ejabberd_spool(a)
        log("accounts: %d users for each server in %.1f s" % (n, time.monotonic() - t0))

    def ejabberd_spool(self, a):
        """Registers the users into a mnesia spool with a separate, unmeasured
        ejabberd run that stops once they are in."""
        d = os.path.join(self.dir, "ejabberd")
        for sub in ("spool", "logs"):
            os.makedirs(os.path.join(d, sub))
        cfg = os.path.join(d, "ejabberd.yml")
        with open(os.path.join(ROOT, CONFIGS["ejabberd"])) as f:
            text = fill(f.read(), PORT=harness.free_port(), DIR=d, CERT=ejabberd_pem(a, d))
        with open(cfg, "w") as f:
            f.write(text)
        chown_tree(d, "ejabberd")
        ev = ("application:ensure_all_started(ejabberd), "
              "[ejabberd_auth:try_register(list_to_binary(\"user\" ++ integer_to_list(I)), "
              "<<\"%s\">>, <<\"%s\">>) || I <- lists:seq(0, %d)], "
              "io:format(\"registered ~p~n\", [ejabberd_auth:count_users(<<\"%s\">>)]), "
              "init:stop()." % (DOMAIN, PASSWORD, self.n - 1, DOMAIN))
        p = subprocess.run(as_user("ejabberd", ejabberd_argv(a, d, ["-eval", ev])),
                           env=ejabberd_env(a, d, cfg), cwd=d, capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
        m = re.search(r"registered (\d+)", p.stdout)
        if not m or int(m.group(1)) < self.n:
            raise RuntimeError("ejabberd registration failed: %s" % (p.stdout + p.stderr)[-800:])
        self.ejabberd = d


# ------------------------------------------------------------------- servers

class Server:
    """One server process on 127.0.0.1:port, in its own session and directory."""

    def __init__(self, kind, a, acc, tag):
        self.kind = kind
        self.port = harness.free_port()
        self.dir = os.path.join(a.tmp, "%s-%s" % (kind, tag))
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        env = dict(os.environ)
        user = None
        with open(os.path.join(ROOT, CONFIGS[kind])) as f:
            template = f.read()
        if kind == "chatd":
            shutil.copy(os.path.join(acc.dir, "chatd-users"), os.path.join(self.dir, "users"))
            os.chmod(os.path.join(self.dir, "users"), 0o600)
            argv = [os.path.join(a.build, "chatd")]
            for line in template.splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                for word in line.split(" ", 1):
                    argv.append("" if word == '""' else fill(
                        word, PORT=self.port, DIR=self.dir, CERT=a.cert_pem, KEY=a.key_pem))
        elif kind == "prosody":
            user = "prosody"
            shutil.copytree(os.path.join(acc.dir, "prosody-data"), os.path.join(self.dir, "data"))
            os.makedirs(os.path.join(self.dir, "certs"))
            cert = os.path.join(self.dir, "certs", DOMAIN + ".crt")
            key = os.path.join(self.dir, "certs", DOMAIN + ".key")
            shutil.copy(a.cert_pem, cert)
            shutil.copy(a.key_pem, key)
            cfg = os.path.join(self.dir, "prosody.cfg.lua")
            with open(cfg, "w") as f:
                f.write(fill(template, PORT=self.port, DIR=self.dir, CERT=cert, KEY=key))
            argv = ["prosody", "--config", cfg, "-F"]
        else:
            user = "ejabberd"
            shutil.copytree(os.path.join(acc.ejabberd, "spool"), os.path.join(self.dir, "spool"))
            os.makedirs(os.path.join(self.dir, "logs"))
            cert = ejabberd_pem(a, self.dir)
            cfg = os.path.join(self.dir, "ejabberd.yml")
            with open(cfg, "w") as f:
                f.write(fill(template, PORT=self.port, DIR=self.dir, CERT=cert))
            env = ejabberd_env(a, self.dir, cfg)
            argv = ejabberd_argv(a, self.dir)
        if user:
            chown_tree(self.dir, user)
            argv = as_user(user, argv)
        self.out = open(os.path.join(self.dir, "out.log"), "wb")
        self.p = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                  cwd=self.dir, stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(a.tmp, "pids"), "a") as f:
            f.write("%d\n" % self.p.pid)
        deadline = time.monotonic() + 90
        while not listening(self.port):
            if time.monotonic() > deadline or self.p.poll() is not None:
                self.stop()
                raise RuntimeError("%s did not start; log in %s" % (kind, self.dir))
            time.sleep(0.2)
        self.pid = self.main_pid()
        time.sleep(a.settle)

    def main_pid(self):
        """setpriv and erl exec, so the started pid is the server; checked."""
        comm = proc_comm(self.p.pid)
        want = {"chatd": "chatd", "prosody": "lua", "ejabberd": "beam"}[self.kind]
        if not comm.startswith(want):
            raise RuntimeError("%s: pid %d is %r, not the server" % (self.kind, self.p.pid, comm))
        return self.p.pid

    def rss(self):
        return benchlib.rss_kib(self.pid)

    def cpu(self):
        return benchlib.cpu_s(self.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.out.close()


class Chatload:
    def __init__(self, a, port, name, args):
        self.report = os.path.join(a.tmp, name + ".json")
        self.errpath = os.path.join(a.tmp, name + ".log")
        self.err = open(self.errpath, "w")
        argv = [os.path.join(a.build, "chatload"), "--server", "127.0.0.1:%d" % port,
                "--domain", DOMAIN, "--auth", "plain", "--user-pattern", "user%d",
                "--password", PASSWORD, "--ping-interval", "0",
                # Prosody logs 10,000 in at about 100-150 a second: a login
                # waits its turn for over a minute
                "--login-timeout", "%ds" % a.login_timeout,
                "--progress-interval", "250ms", "--source-ips", a.source_ips,
                "--report", self.report] + [str(x) for x in args]
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err,
                                  stdin=subprocess.DEVNULL)
        self.pid = self.p.pid
        with open(os.path.join(a.tmp, "pids"), "a") as f:
            f.write("%d\n" % self.p.pid)

    def connected(self):
        with open(self.errpath) as f:
            m = re.findall(r"connected (\d+)/", f.read())
        return int(m[-1]) if m else 0

    def wait_connected(self, n, timeout):
        deadline = time.monotonic() + timeout
        while True:
            c = self.connected()
            if c >= n or time.monotonic() > deadline or self.p.poll() is not None:
                return c
            time.sleep(0.05)

    def finish(self, interrupt, timeout):
        if interrupt and self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()
        try:
            with open(self.report) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def version(report):
    """The server's XEP-0092 version: the label most logins got."""
    pv = report.get("per_version") or {}
    known = [(e.get("logins", 0), k) for k, e in pv.items() if k != "unknown"]
    return max(known)[1] if known else "unknown"


def bound(server_share, client_share, kind):
    """What bounded a rate, from the CPU shares of its span (of one core)."""
    if server_share >= 0.85 * SERVER_CORES[kind]:
        return "server CPU"
    if client_share >= 0.85:
        return "chatload CPU"
    return "the machine (others' work)"


def idle_phase(a, acc, kind, n, tls, run):
    srv = Server(kind, a, acc, "%s%d-%s-%d" % ("tls" if tls else "idle", n, kind, run))
    try:
        rss0, cpu0 = srv.rss(), srv.cpu()
        cl = Chatload(a, srv.port, "%s-%s%d-%d" % (kind, "tls" if tls else "idle", n, run),
                      ["--clients", n, "--ramp", "%d/s" % a.ramp] + (["--tls"] if tls else []))
        load = benchlib.MachineLoad([srv.pid, cl.pid]).start()
        ccpu0 = benchlib.cpu_s(cl.pid)
        got = cl.wait_connected(n, a.login_timeout + 30)
        cpu1 = srv.cpu()
        ccpu1 = benchlib.cpu_s(cl.pid) if cl.p.poll() is None else ccpu0
        ld = load.stop()
        time.sleep(a.idle_settle)
        held = cl.connected()
        rss1 = srv.rss()
        r = cl.finish(True, 180)
    finally:
        srv.stop()
    if not r:
        raise RuntimeError("%s: chatload wrote no report (%s)" % (kind, cl.errpath))
    if got < n or held < n:
        raise RuntimeError("%d of %d logged in, %d held (login failures %d, connect failures "
                           "%d)" % (got, n, held, r["login_failures"], r["connect_failures"]))
    ramp_s = r.get("ramp_s") or 0
    out = {"server": kind, "version": version(r), "clients": n, "tls": tls, "connected": got,
           "held": held, "rss0_kib": rss0, "rss1_kib": rss1,
           "rss_per_session_kib": (rss1 - rss0) / held if held else None,
           "cpu_ms_per_login": (cpu1 - cpu0) * 1000 / got if got else None,
           "ramp_s": ramp_s, "logins_per_s": n / ramp_s if ramp_s else None,
           "server_share": (cpu1 - cpu0) / ld["wall_s"], "client_share":
           (ccpu1 - ccpu0) / ld["wall_s"],
           "login_p50_ms": r["login_ms"]["p50"], "login_p99_ms": r["login_ms"]["p99"],
           "failures": r["login_failures"] + r["connect_failures"] + r["dropped"],
           "load": ld}
    out["bound"] = bound(out["server_share"], out["client_share"], kind)
    log("%s %d %s run %d: %s" % ("tls" if tls else "idle", n, kind, run, json.dumps(out)))
    return out


def msg_phase(a, acc, kind, run):
    srv = Server(kind, a, acc, "msg-%s-%d" % (kind, run))
    n = a.msg_clients
    try:
        cl = Chatload(a, srv.port, "%s-msg-%d" % (kind, run),
                      ["--clients", n, "--ramp", "%d/s" % a.msg_ramp, "--message-rate",
                       a.msg_rate, "--duration", "%gs" % (a.msg_duration + n / a.msg_ramp),
                       "--loss-timeout", "10s"])
        # The CPU window: from all connected to the end of the sending.
        if cl.wait_connected(n, a.login_timeout + 30) < n:
            cl.finish(True, 60)
            raise RuntimeError("not all %d clients logged in" % n)
        load = benchlib.MachineLoad([srv.pid, cl.pid]).start()
        cpu0 = srv.cpu()
        time.sleep(a.msg_duration * 0.8)
        cpu1 = srv.cpu()
        ld = load.stop()
        r = cl.finish(False, a.msg_duration + n / a.msg_ramp + 120)
    finally:
        srv.stop()
    if not r:
        raise RuntimeError("%s: chatload wrote no report (%s)" % (kind, cl.errpath))
    lat = r["latency_ms"]
    rate = n * a.msg_rate
    out = {"server": kind, "clients": n, "connected_peak": r["connected_peak"],
           "sent": r["messages_sent"], "delivered": r["messages_delivered"],
           "lost": r["messages_lost"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
           "max_ms": lat["max"], "dropped": r["dropped"],
           "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / (rate * ld["wall_s"]),
           "server_share": (cpu1 - cpu0) / ld["wall_s"], "load": ld}
    log("messages %s run %d: %s" % (kind, run, json.dumps(out)))
    return out


# ------------------------------------------------------------------ markdown

def med(rows, key):
    s = benchlib.summary([r[key] for r in rows if r.get(key) is not None])
    return s["median"] if s else None


def ratio(v, base):
    if v is None or not base:
        return "-"
    x = v / base
    return "%.0f×" % x if x >= 10 else "%.1f×" % x


def markdown(a, idle, msgs, failed):
    versions = {}
    for r in idle:
        if r["version"] and r["version"] != "unknown":
            versions.setdefault(r["server"], r["version"])
    L = ["Each server runs with its configuration file kept in `bench/servers/` "
         "(every change from the stock file is marked there), on 127.0.0.1 on an unused "
         "port, started afresh for every run of every row:", "",
         "| | chatd %s | Prosody %s | ejabberd %s |" % (
             versions.get("chatd", ""), versions.get("prosody", ""),
             versions.get("ejabberd", "")),
         "|---|---|---|---|",
         "| configuration | `bench/servers/chatd.args` | `bench/servers/prosody.cfg.lua` "
         "(Debian's stock file, changes marked) | `bench/servers/ejabberd.yml` (Debian's stock "
         "file, changes marked) |",
         "| accounts, auth | %d accounts in a `--users` file, PLAIN; SCRAM-SHA-256 "
         "credentials with 1 PBKDF2 iteration (chatd stores no plain passwords; one HMAC "
         "more than a compare) | the same accounts, `internal_plain` (plain passwords in "
         "the stock file storage), PLAIN | the same accounts, `internal` with "
         "`auth_password_format: plain` (mnesia), PLAIN |" % a.accounts,
         "| modules | everything chatd has (roster, presence, disco, ping, version) | "
         "Debian's stock list (disco, roster, saslauth, tls, blocklist, bookmarks, carbons, "
         "dialback, limits, pep, private, smacks, vcard4, vcard_legacy, csi_simple, invites, "
         "ping, register, time, uptime, version, admin_adhoc, admin_shell, posix) | "
         "Debian's stock list (adhoc, admin_extra, announce, avatar, blocking, bosh, caps, "
         "carboncopy, client_state, configure, disco, fail2ban, http_api, last, mqtt, muc, "
         "offline, ping, pres_counter, privacy, private, pubsub, push, roster, "
         "s2s_dialback, shared_roster, sic, stream_mgmt, stun_disco, vcard, version, ...) |",
         "| STARTTLS | offered, not required; the same self-signed RSA 2048 certificate "
         "for all three; each server's own TLS defaults (all three negotiate TLS 1.3 "
         "through OpenSSL) | the same | the same |",
         "| traffic shaping | chatd's defaults | stock `limits` (c2s 10 kB/s) | stock "
         "`c2s_shaper` (3000 B/s, burst 20000); none of the three is reached by this "
         "traffic |",
         "| other | listen backlog 4096, no server pings, log level warn | backlog 4096 "
         "(stock 128), epoll, log level warn | backlog 4096 (stock 5), log level warning; "
         "Erlang `+K true +sbwt none` (idle schedulers do not spin), no distribution |", "",
         "The client is chatload for all three, one process, `--auth plain --ping-interval "
         "0 --source-ips %s`: it logs N clients in with no ramp limit (`--ramp %d/s`), "
         "each login being TCP connect, stream, [STARTTLS,] SASL PLAIN, restart, bind, "
         "initial presence and a XEP-0092 version query, and holds them idle. **RSS per "
         "session** = (server VmRSS %gs after the last login − VmRSS before the first) / "
         "sessions held, /proc/PID/status of the server process (for ejabberd the whole "
         "beam.smp). **CPU per login** = the server's CPU time (user + system, all "
         "threads, /proc/PID/task/*/schedstat) from before the first connect until all N "
         "were bound, / N. **logins/s** = N / chatload's `ramp_s` (first connect to all "
         "bound), wall clock; **bounded by** names what limited it, from the CPU shares "
         "of that span: the server at ≥ 85 %% of the cores it can use (one for chatd and "
         "Prosody, %d for ejabberd's schedulers), else chatload at ≥ 85 %% of a core, "
         "else the machine (the other work on it). With no ramp limit, login p50/p99 are "
         "mostly queueing. %d runs per row, min / **median** / max; ratios are of "
         "medians, the server's over chatd's." % (
             a.source_ips, a.ramp, a.idle_settle, benchlib.NCPU, a.runs), "",
         benchlib.LOAD_NOTE, ""]

    def table(rows, title):
        L.append(title)
        L.append("")
        L.append("| server | sessions held | RSS per session | × chatd | CPU per login | "
                 "× chatd | logins/s | bounded by | login p50 / p99 (median) | failures | "
                 "machine load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind in a.servers:
            rs = [r for r in rows if r["server"] == kind]
            if not rs:
                continue
            base = [r for r in rows if r["server"] == "chatd"]
            n = rs[0]["clients"]
            bounds = sorted(set(r["bound"] for r in rs))
            L.append("| %s | %s of %d | %s | %s | %s | %s | %s | %s | %.0f / %.0f ms | %d | "
                     "%s |" % (
                         NAMES[kind], benchlib.fmt3([r["held"] for r in rs], "%.0f"), n,
                         benchlib.fmt3([r["rss_per_session_kib"] for r in rs], "%.2f", "KiB"),
                         ratio(med(rs, "rss_per_session_kib"), med(base, "rss_per_session_kib")),
                         benchlib.fmt3([r["cpu_ms_per_login"] for r in rs], "%.3f", "ms"),
                         ratio(med(rs, "cpu_ms_per_login"), med(base, "cpu_ms_per_login")),
                         benchlib.fmt3([r["logins_per_s"] for r in rs], "%.0f", "/s"),
                         ", ".join(bounds), med(rs, "login_p50_ms") or 0,
                         med(rs, "login_p99_ms") or 0, sum(r["failures"] for r in rs),
                         benchlib.fmt_load([r["load"] for r in rs])))
        L.append("")
        # The CPU shares behind "bounded by".
        L.append("CPU shares of the login span (median, of one core): " + "; ".join(
            "%s %.0f %% server, %.0f %% chatload" % (
                NAMES[k], 100 * (med([r for r in rows if r["server"] == k], "server_share")
                                 or 0),
                100 * (med([r for r in rows if r["server"] == k], "client_share") or 0))
            for k in a.servers if any(r["server"] == k for r in rows)) + ".")
        L.append("")

    for n in a.idle:
        rows = [r for r in idle if r["clients"] == n and not r["tls"]]
        if rows:
            table(rows, "**%d idle sessions, plaintext** (`--only idle%d`):" % (n, n))
    for n in a.tls:
        rows = [r for r in idle if r["clients"] == n and r["tls"]]
        if rows:
            table(rows, "**%d idle sessions over STARTTLS** (`chatload --tls`; `--only tls%d`):"
                  % (n, n))
    if msgs:
        L.append("**Message load** (`--only messages`): %d clients logging in at %d a second "
                 "(below the slowest server's login rate, so that no server is saturated by "
                 "logins), each sending %g message(s)/s (Poisson) to random other clients' "
                 "full JIDs from its login on, for %gs after the last login; latency is send "
                 "→ receive in chatload (one clock), over the whole run, `--loss-timeout "
                 "10s`; server CPU per message = the server's CPU time over most of the "
                 "sending after the last login / the messages sent meanwhile." % (
                     a.msg_clients, a.msg_ramp, a.msg_rate, a.msg_duration))
        L.append("")
        L.append("| server | sent | delivered | lost | latency p50 | × chatd | p99 | × chatd "
                 "| server CPU per message | machine load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        base = [r for r in msgs if r["server"] == "chatd"]
        for kind in a.servers:
            rs = [r for r in msgs if r["server"] == kind]
            if not rs:
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                NAMES[kind], benchlib.fmt3([r["sent"] for r in rs], "%.0f"),
                benchlib.fmt3([r["delivered"] for r in rs], "%.0f"),
                benchlib.fmt3([r["lost"] for r in rs], "%.0f"),
                benchlib.fmt3([r["p50_ms"] for r in rs], "%.2f", "ms"),
                ratio(med(rs, "p50_ms"), med(base, "p50_ms")),
                benchlib.fmt3([r["p99_ms"] for r in rs], "%.2f", "ms"),
                ratio(med(rs, "p99_ms"), med(base, "p99_ms")),
                benchlib.fmt3([r["cpu_us_per_msg"] for r in rs], "%.1f", "µs"),
                benchlib.fmt_load([r["load"] for r in rs])))
        L.append("")
    if failed:
        L.append("Failed runs (no figures): " + "; ".join(failed))
        L.append("")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--servers", default="chatd,prosody,ejabberd")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="rows: idleN, tlsN, messages (comma-separated)")
    ap.add_argument("--idle", default="2000,10000", help="plaintext idle session counts")
    ap.add_argument("--tls", default="2000", help="STARTTLS idle session counts")
    ap.add_argument("--ramp", type=int, default=100000, help="chatload --ramp for idle runs")
    ap.add_argument("--msg-clients", type=int, default=1000)
    ap.add_argument("--msg-ramp", type=int, default=100,
                    help="logins/s of the message load: below Prosody's capacity")
    ap.add_argument("--msg-rate", type=float, default=1.0)
    ap.add_argument("--msg-duration", type=float, default=20)
    ap.add_argument("--source-ips", default="127.0.0.2-127.0.0.20")
    ap.add_argument("--settle", type=float, default=3, help="s after a server listens")
    ap.add_argument("--idle-settle", type=float, default=5, help="s after the last login")
    ap.add_argument("--login-timeout", type=int, default=300, help="chatload --login-timeout")
    ap.add_argument("--quick", action="store_true",
                    help="smaller: 1000 plaintext, 500 TLS, 500 clients for 10 s")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--cert", required=True, help="certificate PEM for all three")
    ap.add_argument("--key", required=True, help="its private key PEM")
    a = ap.parse_args()
    # SIGTERM (from compare_servers.sh's cleanup or timeout) unwinds like
    # Ctrl-C, so every started server is stopped by its finally block.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.quick:
        a.idle, a.tls, a.msg_clients, a.msg_duration = "1000", "500", 500, 10
    a.build = os.path.abspath(os.path.join(ROOT, a.build))
    a.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    a.servers = [s for s in a.servers.split(",") if s]
    for s in a.servers:
        if s not in NAMES:
            sys.exit("compare: unknown server %s" % s)
    a.idle = [int(x) for x in a.idle.split(",") if x]
    a.tls = [int(x) for x in a.tls.split(",") if x]
    only = [x for x in a.only.split(",") if x]
    if only:
        a.idle = [n for n in a.idle if "idle%d" % n in only]
        a.tls = [n for n in a.tls if "tls%d" % n in only]
        if "messages" not in only:
            a.msg_clients = 0
    most = max(a.idle + a.tls + [a.msg_clients])
    if most + 200 > a.nofile:
        sys.exit("compare: open-files limit %d too low for %d sessions" % (a.nofile, most))
    a.cert_pem, a.key_pem = a.cert, a.key
    a.accounts = most
    acc = Accounts(a, most)
    idle, msgs, failed = [], [], []
    rows = [("idle", n) for n in a.idle] + [("tls", n) for n in a.tls]
    if a.msg_clients and a.msg_rate:
        rows.append(("messages", a.msg_clients))
    for run in range(a.runs):
        for what, n in rows:
            for s in a.servers:
                try:
                    if what == "messages":
                        msgs.append(msg_phase(a, acc, s, run))
                    else:
                        idle.append(idle_phase(a, acc, s, n, what == "tls", run))
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    log("%s %d %s run %d failed: %s" % (what, n, s, run, e))
                    failed.append("%s %d on %s (run %d): %s" % (what, n, s, run + 1, e))
    sys.stdout.write(markdown(a, idle, msgs, failed))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"idle": idle, "messages": msgs, "failed": failed}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
