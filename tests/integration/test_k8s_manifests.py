"""What users copy from docs/, scripts/ and k8s/: every `kubectl` command
written anywhere must land in the namespace the manifests live in, and must
be a command kubectl accepts; no cluster needed.

- Each kubectl command line is taken from the docs (code spans and code
  blocks), the scripts, the workflows and the comments of k8s/ and docker/
  (shell continuations joined, shell variables given the scripts' defaults).
  Its namespace is worked out as kubectl would: -n/--namespace, else the
  objects' metadata.namespace (apply/create/delete -f FILE, also through a
  `sed ... FILE |` pipe), else the kustomization's namespace (-k DIR), else
  "default". It must be "rainbow" for everything namespaced.
- Each one is run by the real kubectl (where installed) against an API
  server address that refuses connections: it must get as far as trying to
  connect (no unknown command, flag or file).
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

import yaml

import harness

ROOT = harness.ROOT
NS = "rainbow"

SUBCOMMANDS = {"apply", "create", "get", "logs", "wait", "delete", "describe", "kustomize",
               "version", "rollout", "exec", "port-forward", "cp", "top", "patch", "label",
               "annotate", "scale", "config", "auth", "run", "set", "edit", "replace", "proxy",
               "events", "debug", "attach"}
NO_CLUSTER = {"kustomize", "version", "config"}
CLUSTER_SCOPED = {"nodes", "node", "no", "namespaces", "namespace", "ns", "clusterroles",
                  "clusterrolebindings", "persistentvolumes", "pv", "storageclasses"}
# shell variables of the scripts, at their defaults; $OUT/manifests is what
# `scripts/kind-e2e.sh render` writes (rendered once, below)
SHELL_VARS = {"NS": NS, "NAMESPACE": NS}
RENDER_DIR = None


def rendered_out():
    """A run's OUT with its manifests, as scripts/kind-e2e.sh renders them."""
    global RENDER_DIR
    if RENDER_DIR is None:
        RENDER_DIR = tempfile.mkdtemp(prefix="rb-kind-render-")
        subprocess.run([os.path.join(ROOT, "scripts", "kind-e2e.sh"), "render",
                        os.path.join(RENDER_DIR, "manifests"), "abc1234"], check=True,
                       env=dict(os.environ, NODE_CIDR="172.18.0.0/16"), capture_output=True)
        SHELL_VARS["OUT"] = RENDER_DIR
    return RENDER_DIR
FLAGS_WITH_VALUE = {"-n", "--namespace", "-f", "--filename", "-k", "--kustomize", "-l",
                    "--selector", "-o", "--output", "-c", "--container", "--kubeconfig",
                    "--context", "--for", "--timeout", "--tail", "--from-literal",
                    "--from-file", "--type", "--field-selector", "--since", "-p", "--patch",
                    "--replicas", "--request-timeout"}


def sources():
    """(path, kind) of every file whose text may hold a kubectl command."""
    out = []
    for d, kind in (("docs", "md"), ("scripts", "sh"), ("k8s", "yaml"), ("docker", "sh"),
                    (".github", "yaml")):
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for f in sorted(files):
                out.append((os.path.join(base, f), kind))
    out.append((os.path.join(ROOT, "README.md"), "md"))
    return [(p, k) for p, k in out if not p.endswith((".png", ".svg"))]


def snippets(path, kind):
    """Pieces of text that may be commands: code in markdown, whole lines elsewhere,
    with the number of the line each starts on."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    out = []
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        # shell continuations, and a pipe at the end of a line, go on
        while (line.endswith("\\") or line.rstrip().endswith("|")) and i + 1 < len(lines):
            i += 1
            nxt = lines[i].strip()
            if kind != "md":
                nxt = re.sub(r"^#\s*", "", nxt)  # a comment's continuation
            line = (line[:-1] if line.endswith("\\") else line) + " " + nxt
        i += 1
        if "kubectl" not in line:
            continue
        n = start + 1
        if kind == "md":
            if line.startswith("    ") or line.startswith("\t"):
                out.append((n, line.strip()))
            out += [(n, m) for m in re.findall(r"`([^`]*kubectl[^`]*)`", line)]
        else:
            out.append((n, re.sub(r"^\s*#\s*", "", line).strip()))
    return out


def commands(snippet):
    """kubectl argv lists in one snippet (with the file a preceding `sed` read)."""
    s = re.sub(r"\$\(([^()]|\([^()]*\))*\)", "SUBST", snippet)  # $(...) as one word
    s = re.sub(r"\$\{(\w+)(:-[^}]*)?\}", lambda m: "$" + m.group(1), s)
    s = re.sub(r"\$(\w+)", lambda m: SHELL_VARS.get(m.group(1), "X" + m.group(1)), s)
    out = []
    for pipeline in re.split(r"&&|\|\||;|\(|\)|`", s):
        stdin_file = None
        for part in pipeline.split("|"):
            try:
                words = shlex.split(part, comments=False)
            except ValueError:
                continue
            words = without_redirections(words)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words and words[0] in ("retry", "kubectl_retry", "exec", "command"):
                words = words[1:]
            if not words:
                continue
            if words[0] == "kubectl":
                args = words[1:]
                i = 0
                while i < len(args) and args[i].startswith("-"):
                    i += 1 if "=" in args[i] or args[i] not in FLAGS_WITH_VALUE else 2
                if i < len(args) and args[i] in SUBCOMMANDS:
                    out.append((args, stdin_file))
                # what it prints may be piped to the next: `... -o yaml | kubectl apply -f -`
                stdin_file = ("kubectl", args)
            elif words[0] in ("sed", "cat", "envsubst"):
                files = [w for w in words[1:] if os.path.isfile(os.path.join(ROOT, w))]
                stdin_file = files[-1] if files else None
            elif words[0] == "scripts/chatload-job.sh":
                # prints the chatload Job, sized (TestChatloadJobSize checks how)
                stdin_file = "k8s/jobs/chatload-job.yaml"
    return out


def without_redirections(words):
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif re.match(r"^\d*(>>?|<)(&\d+)?$", w):
            skip = not w.endswith(("&1", "&2"))
        elif re.match(r"^\d*(>>?|<)", w):
            pass
        else:
            out.append(w)
    return out


def option(args, *names):
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if n.startswith("--") and a.startswith(n + "="):
                return a.split("=", 1)[1]
            if not n.startswith("--") and a.startswith(n) and len(a) > len(n):
                return a[len(n):]
    return None


def subcommand(args):
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if "=" in args[i] or args[i] not in FLAGS_WITH_VALUE else 2
    return args[i], args[i + 1:]


def namespaces(args, stdin_file):
    """The namespaces the command acts in (empty: cluster-scoped or no cluster)."""
    sub, rest = subcommand(args)
    flag = option(args, "-n", "--namespace")
    if sub in NO_CLUSTER:
        return set()
    kdir = option(args, "-k", "--kustomize")
    if kdir:
        with open(os.path.join(ROOT, kdir, "kustomization.yaml")) as f:
            return {yaml.safe_load(f).get("namespace") or flag or "default"}
    fname = option(args, "-f", "--filename")
    if fname == "-" and isinstance(stdin_file, tuple):
        return namespaces(*stdin_file[1:], None)
    if fname:
        path = stdin_file if fname == "-" else fname
        if not path:
            raise AssertionError("kubectl %s -f -: cannot tell what is piped in" % sub)
        with open(os.path.join(ROOT, path)) as f:
            docs = [d for d in yaml.safe_load_all(f.read().replace("SHA_TO_DEPLOY", "abc1234"))
                    if d]
        return {(d.get("metadata") or {}).get("namespace") or flag or "default"
                for d in docs if d.get("kind") not in ("Namespace", "ClusterRole",
                                                       "ClusterRoleBinding")}
    if rest and rest[0].split("/")[0] in CLUSTER_SCOPED:
        return set()
    return {flag or "default"}


def all_commands():
    rendered_out()
    found = []
    for path, kind in sources():
        for n, snip in snippets(path, kind):
            for args, stdin_file in commands(snip):
                found.append(("%s:%d" % (os.path.relpath(path, ROOT), n), args, stdin_file))
    return found


class TestKubectlLines(unittest.TestCase):
    def test_found_the_documented_commands(self):
        where = {w.split(":")[0] for w, _, _ in all_commands()}
        for f in ("docs/kubernetes.md", "scripts/kind-e2e.sh", "k8s/jobs/kustomization.yaml"):
            self.assertIn(f, where)

    def test_every_kubectl_line_lands_in_the_rainbow_namespace(self):
        bad = []
        for where, args, stdin_file in all_commands():
            nss = namespaces(args, stdin_file)
            if nss - {NS}:
                bad.append("%s: kubectl %s -> namespace %s" % (where, " ".join(args),
                                                               ", ".join(sorted(nss))))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_every_kubectl_line_is_accepted_by_kubectl(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl is not installed: only the namespaces are checked")
        tmp = tempfile.mkdtemp(prefix="rb-kubectl-")
        self.addCleanup(shutil.rmtree, tmp, True)
        kc = os.path.join(tmp, "kubeconfig")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- name: x\n"
                    "  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: x\n"
                    "  context: {cluster: x, user: x}\nusers:\n- name: x\n  user: {token: t}\n")
        env = dict(os.environ, KUBECONFIG=kc, HOME=tmp)
        # The commands run in a copy of the tree's top level, where the files a
        # reader makes first (a users file, a key pair) exist too.
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        for n in os.listdir(ROOT):
            os.symlink(os.path.join(ROOT, n), os.path.join(work, n))

        def user_files(args):
            cert = option(args, "--cert")
            key = option(args, "--key")
            if cert and key and not os.path.exists(os.path.join(work, cert)):
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                "-keyout", os.path.join(work, key), "-out",
                                os.path.join(work, cert), "-days", "1", "-subj",
                                "/CN=chat.example"], check=True, capture_output=True)
            for f in (option(args, "--from-file"),):
                if f and not os.path.exists(os.path.join(work, f.split("=")[-1])):
                    with open(os.path.join(work, f.split("=")[-1]), "w") as fh:
                        fh.write("x\n")
        reached = re.compile(r"refused|dial tcp|unable to connect|Unable to connect")
        bad = []
        last_stdout = ""
        for where, args, stdin_file in all_commands():
            args = [a for a in args if not a.startswith("--kubeconfig")]
            data = None
            if isinstance(stdin_file, tuple):
                data = last_stdout  # the kubectl command piped into this one
            elif stdin_file:
                with open(os.path.join(ROOT, stdin_file)) as f:
                    data = f.read().replace("SHA_TO_DEPLOY", "abc1234")
            user_files(args)
            p = subprocess.run([kubectl] + args, input=data, capture_output=True, text=True,
                               cwd=work, env=env, timeout=60)
            last_stdout = p.stdout
            if p.returncode == 0:  # done without a cluster (--dry-run=client, kustomize)
                continue
            if p.returncode != 0 and reached.search(p.stderr):
                continue
            bad.append("%s: kubectl %s: rc %d: %s" % (where, " ".join(args), p.returncode,
                                                      p.stderr.strip()[-300:]))
        self.assertEqual(bad, [], "\n".join(bad))


if __name__ == "__main__":
    unittest.main()


# ---- the variants (k8s/ demo, k8s/production/) and the NetworkPolicy ----

import kustomize  # noqa: E402


def _matches(selector, labels):
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def ingress_allowed(objs, src, dst, port_name):
    """NetworkPolicy semantics (networking.k8s.io/v1) for pod src -> pod dst:port_name.
    A pod is {"ns", "labels", "ports": {name: number}}."""
    ns_labels = {src["ns"]: {"kubernetes.io/metadata.name": src["ns"]}}
    pols = [p for p in objs if p["kind"] == "NetworkPolicy" and
            p["metadata"].get("namespace") == dst["ns"] and
            "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"]) and
            _matches(p["spec"].get("podSelector") or {}, dst["labels"])]
    if not pols:
        return True
    for p in pols:
        for rule in p["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(
                    x.get("protocol", "TCP") == "TCP" and
                    (x.get("port") == port_name or x.get("port") == dst["ports"][port_name])
                    for x in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    ns_ok = _matches(peer["namespaceSelector"], ns_labels.get(src["ns"]))
                else:
                    ns_ok = src["ns"] == dst["ns"]
                if ns_ok and _matches(peer.get("podSelector") or {}, src["labels"]):
                    return True
    return False


def load_job(path):
    """The Job of a manifest file (chatload's has its headless Service too)."""
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d and d["kind"] == "Job"][0]


def job_pod(path):
    job = load_job(os.path.join(ROOT, path))
    return {"ns": job["metadata"].get("namespace", "default"),
            "labels": job["spec"]["template"]["metadata"]["labels"], "ports": {}}


def chat_pod(template):
    with open(os.path.join(ROOT, template)) as f:
        t = yaml.safe_load(f)
    labels = dict(t["metadata"]["labels"], app="chat")
    labels["rainbow.chat/sha"] = "1a2b3c4"
    ports = {p["name"]: p["containerPort"] for p in t["spec"]["containers"][0]["ports"]}
    return {"ns": NS, "labels": labels, "ports": ports}


class TestKindRender(unittest.TestCase):
    """scripts/kind-e2e.sh render: the manifests a kind run applies, without a cluster."""

    def render(self, **env):
        d = tempfile.mkdtemp(prefix="rb-kind-render-")
        self.addCleanup(shutil.rmtree, d, True)
        p = subprocess.run([os.path.join(ROOT, "scripts", "kind-e2e.sh"), "render", d,
                            "1234567"], env=dict(os.environ, **env), capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return d

    def load(self, path):
        with open(path) as f:
            return yaml.safe_load(f)

    def test_chatload_job_gets_the_counts_asked_for(self):
        # CLIENTS=300 used to give 240 clients: two seds rewrote the same line
        for clients, duration in (("300", "240"), ("500", "300"), ("240", "300")):
            d = self.render(CLIENTS=clients, DURATION=duration, LIFETIME="exp:20s")
            job = load_job(os.path.join(d, "chatload-job.yaml"))
            env = {e["name"]: e["value"]
                   for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            self.assertEqual(env, {"CLIENTS": clients, "PODS": "1", "DURATION": duration,
                                   "LIFETIME": "exp:20s", "MESSAGE_RATE": "0.2"})

    def test_everything_lands_in_the_namespace_asked_for(self):
        d = self.render(NAMESPACE="ci-1", NODE_CIDR="172.18.0.0/16")
        for f in ("chatload-job.yaml", "rainbow-job.yaml"):
            with open(os.path.join(d, f)) as fh:
                for doc in yaml.safe_load_all(fh):
                    self.assertEqual(doc["metadata"]["namespace"], "ci-1", (f, doc["kind"]))
        job = self.load(os.path.join(d, "rainbow-job.yaml"))
        self.assertEqual(job["metadata"]["name"], "rainbow-deploy-1234567")
        self.assertIn("1234567", job["spec"]["template"]["spec"]["containers"][0]["args"])
        objs = kustomize.build(os.path.join(d, "base"))
        self.assertEqual({o["metadata"].get("namespace") for o in objs
                          if o["kind"] != "Namespace"}, {"ci-1"})
        self.assertEqual(kustomize.find(objs, "Namespace", "ci-1")["kind"], "Namespace")
        # chatd's peers: a name resolved in the pod's own namespace
        peers = kustomize.find(objs, "ConfigMap", "chatd-config")["data"]["CHATD_PEERS_DNS"]
        self.assertNotIn("rainbow", peers)
        self.assertEqual(peers.split(":")[0], "chat-peers")
        # the nodes may read /metrics (rainbow outside reads it through the pod proxy)
        pol = kustomize.find(objs, "NetworkPolicy", "chat-metrics-from-nodes")
        self.assertEqual(pol["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"],
                         "172.18.0.0/16")
        kubectl = shutil.which("kubectl")
        if kubectl:
            p = subprocess.run([kubectl, "kustomize", os.path.join(d, "base")],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            real = [o for o in yaml.safe_load_all(p.stdout) if o]
            self.assertEqual(sorted((o["kind"], o["metadata"]["name"],
                                     o["metadata"].get("namespace")) for o in real),
                             sorted((o["kind"], o["metadata"]["name"],
                                     o["metadata"].get("namespace")) for o in objs))

    def test_the_kubeconfig_never_goes_to_the_artifacts(self):
        with open(os.path.join(ROOT, "scripts", "kind-e2e.sh")) as f:
            text = f.read()
        self.assertIn('KCDIR=$(mktemp -d)', text)
        self.assertIn('export KUBECONFIG="$KCDIR/kubeconfig"', text)
        for line in text.splitlines():
            if re.search(r'kubeconfig.*>\s*"?\$OUT|--kubeconfig[ =]"?\$OUT|KUBECONFIG=.*\$OUT',
                         line, re.I):
                self.fail("the kubeconfig written under $OUT: " + line)


class TestChatloadJobSize(unittest.TestCase):
    """The chatload Job at any size: scripts/chatload-job.sh derives the pods of
    the Indexed Job from CLIENTS, and each pod's shell (run here with sh, as
    the container runs it, with a stand-in chatload that prints its
    arguments) its workers and its part of the run."""

    def render(self, clients):
        p = subprocess.run([os.path.join(ROOT, "scripts", "chatload-job.sh")],
                           env=dict(os.environ, CLIENTS=str(clients), NAMESPACE="ci-2"),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        self.assertEqual([d["kind"] for d in docs], ["Service", "Job"])
        return docs

    def run_pod(self, job, index, **env_over):
        c = job["spec"]["template"]["spec"]["containers"][0]
        stub = tempfile.mkdtemp(prefix="rb-chatload-stub-")
        self.addCleanup(shutil.rmtree, stub, True)
        with open(os.path.join(stub, "chatload"), "w") as f:
            f.write('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >"$ARGS_OUT"\n'
                    'echo \'{"ok": true}\' >/tmp/report.json 2>/dev/null || true\n')
        os.chmod(os.path.join(stub, "chatload"), 0o755)
        env = {e["name"]: e["value"] for e in c["env"]}
        env.update(env_over)
        env.update(PATH=stub + ":/usr/bin:/bin", JOB_COMPLETION_INDEX=str(index),
                   CHAT_SERVICE_HOST="10.96.0.10", CHAT_SERVICE_PORT_XMPP="5222",
                   ARGS_OUT=os.path.join(stub, "args"))
        p = subprocess.run(c["command"] + c["args"], env=env, capture_output=True, text=True,
                           timeout=30)
        args = None
        if os.path.exists(env["ARGS_OUT"]):
            with open(env["ARGS_OUT"]) as f:
                args = f.read().split("\n")[:-1]
        return p, args

    @staticmethod
    def flag(args, name):
        return args[args.index(name) + 1] if name in args else None

    def test_pods_and_workers_follow_clients(self):
        # (CLIENTS, pods, workers per pod): 20,000 clients per pod at most
        # (28,232 ports toward one ClusterIP:port), 10,000 per process
        for clients, pods, workers in ((300, 1, 1), (10000, 1, 1), (10001, 1, 2),
                                       (20000, 1, 2), (20001, 2, 2), (50000, 3, 2),
                                       (500000, 25, 2)):
            svc, job = self.render(clients)
            self.assertEqual(svc["spec"]["clusterIP"], "None")
            self.assertEqual(svc["spec"]["selector"], {"job-name": "chatload"})
            self.assertEqual(job["metadata"]["namespace"], "ci-2")
            spec = job["spec"]
            self.assertEqual(spec["completionMode"], "Indexed")
            self.assertEqual((spec["completions"], spec["parallelism"]), (pods, pods), clients)
            self.assertEqual(spec["template"]["spec"]["subdomain"], svc["metadata"]["name"])
            env = {e["name"]: e["value"] for e in spec["template"]["spec"]["containers"][0]["env"]}
            self.assertEqual((env["CLIENTS"], env["PODS"]), (str(clients), str(pods)))
            for index in sorted({0, pods - 1}):
                p, args = self.run_pod(job, index)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(self.flag(args, "--clients"), str(clients))
                self.assertEqual(self.flag(args, "--workers"), str(workers), clients)
                self.assertEqual(self.flag(args, "--server"), "10.96.0.10:5222")
                self.assertIn("--expect-zero-loss", args)
                if pods == 1:
                    self.assertNotIn("--pods", args)
                    self.assertEqual(self.flag(args, "--report"), "/tmp/report.json")
                    continue
                self.assertEqual(self.flag(args, "--pods"), str(pods))
                self.assertEqual(self.flag(args, "--pod-index"), str(index))
                if index == 0:
                    self.assertEqual(self.flag(args, "--coordinator-listen"), "0.0.0.0:7400")
                    self.assertEqual(self.flag(args, "--report"), "/tmp/report.json")
                else:
                    self.assertEqual(self.flag(args, "--coordinator"), "chatload-0.chatload:7400")
                    self.assertIsNone(self.flag(args, "--report"))
                # each process's share stays within its limits
                per_process = -(-clients // (pods * workers))
                self.assertLessEqual(per_process, 10000)
                self.assertLessEqual(-(-clients // pods), 20000)

    def test_too_few_pods_for_the_clients_stops_at_once(self):
        # the file applied as it is (PODS 1) with CLIENTS raised by hand
        job = load_job(os.path.join(ROOT, "k8s", "jobs", "chatload-job.yaml"))
        p, args = self.run_pod(job, 0, CLIENTS="50000")
        self.assertEqual(p.returncode, 2)
        self.assertIsNone(args)
        self.assertIn("CLIENTS=50000 needs 3 pods", p.stderr)
        self.assertIn("scripts/chatload-job.sh", p.stderr)

    def test_bad_clients(self):
        for bad in ("0", "abc", "-5", "20000000"):
            p = subprocess.run([os.path.join(ROOT, "scripts", "chatload-job.sh")],
                               env=dict(os.environ, CLIENTS=bad), capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("CLIENTS=%s" % bad, p.stderr)


class TestVariants(unittest.TestCase):
    def build(self, d):
        return kustomize.build(os.path.join(ROOT, d))

    def test_python_kustomize_matches_kubectl(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl is not installed: tests/lib/kustomize.py is not compared")
        for d in ("k8s", "k8s/production", "k8s/jobs"):
            p = subprocess.run([kubectl, "kustomize", os.path.join(ROOT, d)],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            real = [o for o in yaml.safe_load_all(p.stdout) if o]
            if d == "k8s/jobs":
                continue  # rendering is what is checked there
            ours = self.build(d)
            key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
            self.assertEqual(sorted(map(key, real)), sorted(map(key, ours)), d)
            for o in real:
                mine = kustomize.find(ours, o["kind"], o["metadata"]["name"])
                self.assertEqual(o["metadata"].get("namespace"),
                                 mine["metadata"].get("namespace"), key(o))
                if o["kind"] == "ConfigMap":
                    self.assertEqual(o["data"], mine["data"], (d, key(o)))

    def test_network_policy_admits_only_what_must_reach_each_port(self):
        objs = self.build("k8s")
        chat = chat_pod("k8s/pod-template.yaml")
        rainbow = job_pod("k8s/jobs/rainbow-deploy-job.yaml")
        chatload = job_pod("k8s/jobs/chatload-job.yaml")
        stranger = {"ns": NS, "labels": {"run": "debug"}, "ports": {}}
        elsewhere = {"ns": "other", "labels": {"app": "chat"}, "ports": {}}
        want = {
            "xmpp": {"chat": True, "rainbow": True, "chatload": True, "stranger": True,
                     "elsewhere": True},
            "cluster": {"chat": True, "rainbow": False, "chatload": False, "stranger": False,
                        "elsewhere": False},
            "http": {"chat": False, "rainbow": True, "chatload": False, "stranger": False,
                     "elsewhere": False},
        }
        srcs = {"chat": chat, "rainbow": rainbow, "chatload": chatload, "stranger": stranger,
                "elsewhere": elsewhere}
        got = {port: {n: ingress_allowed(objs, s, chat, port) for n, s in srcs.items()}
               for port in want}
        self.assertEqual(got, want)
        # the same policy in the production variant
        self.assertEqual(kustomize.find(self.build("k8s/production"), "NetworkPolicy", "chat"),
                         kustomize.find(objs, "NetworkPolicy", "chat"))

    def test_demo_credentials_mode_is_named_and_production_has_none(self):
        demo = self.build("k8s")
        creds = kustomize.find(demo, "ConfigMap", "chatd-demo-credentials")
        self.assertEqual(creds["data"].get("CHATD_AUTH_ANY"), "1")
        with open(os.path.join(ROOT, "k8s", "demo-credentials.yaml")) as f:
            self.assertIn("DEMO CREDENTIALS MODE", f.read())
        with open(os.path.join(ROOT, "k8s", "kustomization.yaml")) as f:
            self.assertIn("DEMO CREDENTIALS MODE", f.read())
        self.assertNotIn("CHATD_AUTH_ANY", kustomize.find(demo, "ConfigMap",
                                                          "chatd-config")["data"])
        prod = self.build("k8s/production")
        for o in prod:
            text = yaml.safe_dump(o)
            self.assertNotIn("CHATD_AUTH_ANY", text, o["metadata"]["name"])
            self.assertNotIn("CHATD_ALLOW_PLAINTEXT_AUTH", text, o["metadata"]["name"])
            self.assertNotIn("chatd-demo-credentials", text, o["metadata"]["name"])
        cfg = kustomize.find(prod, "ConfigMap", "chatd-config")["data"]
        self.assertEqual(cfg["CHATD_REQUIRE_TLS"], "1")
        tpl = yaml.safe_load(kustomize.find(prod, "ConfigMap",
                                            "rainbow-pod-template")["data"]["pod-template.yaml"])
        mounts = {m["name"]: m["mountPath"]
                  for m in tpl["spec"]["containers"][0]["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in tpl["spec"]["volumes"]}
        for var, vol, secret in (("CHATD_USERS", "users", "chat-users"),
                                 ("CHATD_TLS_CERT", "tls", "chat-tls"),
                                 ("CHATD_TLS_KEY", "tls", "chat-tls")):
            self.assertEqual(os.path.dirname(cfg[var]), mounts[vol], var)
            self.assertEqual(secrets[vol], secret)

    def test_production_template_differs_from_the_demo_one_only_in_credentials(self):
        with open(os.path.join(ROOT, "k8s", "pod-template.yaml")) as f:
            demo = yaml.safe_load(f)
        with open(os.path.join(ROOT, "k8s", "production", "pod-template.yaml")) as f:
            prod = yaml.safe_load(f)
        dc, pc = demo["spec"]["containers"][0], prod["spec"]["containers"][0]
        dc["envFrom"] = [e for e in dc["envFrom"]
                         if e["configMapRef"]["name"] != "chatd-demo-credentials"]
        pc["volumeMounts"] = [m for m in pc["volumeMounts"] if m["name"] not in ("users", "tls")]
        prod["spec"]["volumes"] = [v for v in prod["spec"]["volumes"]
                                   if v["name"] not in ("users", "tls")]
        self.assertEqual(demo, prod)


class TestRainbowLines(unittest.TestCase):
    """Every rainbow command docs/kubernetes.md gives is one rainbow accepts:
    run with --help appended, each option before it is parsed and checked
    (an unknown option, a misplaced one or a bad value exits 2)."""

    def test_every_rainbow_line_parses(self):
        try:
            rainbow = harness.binary("rainbow")
        except FileNotFoundError:
            self.skipTest("rainbow not built")
        with open(os.path.join(ROOT, "docs", "kubernetes.md")) as f:
            text = re.sub(r"\\\n\s*", " ", f.read())
        found = []
        for line in text.splitlines():
            cands = [line.strip()] if line.startswith("    ") else []
            cands += re.findall(r"`(rainbow [^`]*)`", line)
            for c in cands:
                c = re.sub(r'"\$SHA"|\$SHA|SHA_TO_DEPLOY', "1a2b3c4", c)
                for part in re.split(r"&&|\|\||;|\|", c):
                    try:
                        words = without_redirections(shlex.split(part.strip(),
                                                                 comments=True))
                    except ValueError:
                        continue
                    if len(words) > 1 and words[0] == "rainbow" and \
                            not any("..." in w or "…" in w or "/" in w.split("=")[0]
                                    for w in words[1:2]):
                        found.append(words)
        self.assertGreater(len(found), 8)
        bad = []
        for words in found:
            p = subprocess.run([rainbow] + words[1:] + ["--help"], capture_output=True,
                               text=True, timeout=30)
            if p.returncode != 0:
                bad.append("%s: %s" % (" ".join(words), p.stderr.strip()))
        self.assertEqual(bad, [], "\n".join(bad))
