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
# shell variables of the scripts, at their defaults
SHELL_VARS = {"NS": NS, "NAMESPACE": NS}
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
    """Pieces of text that may be commands: code in markdown, whole lines elsewhere."""
    with open(path, errors="replace") as f:
        text = f.read()
    text = re.sub(r"\\\n\s*", " ", text)  # shell continuations
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if "kubectl" not in line:
            continue
        if kind == "md":
            if line.startswith("    ") or line.startswith("\t"):
                out.append((n, line.strip()))
            out += [(n, m) for m in re.findall(r"`([^`]*kubectl[^`]*)`", line)]
        else:
            out.append((n, line.lstrip("#").strip()))
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
                stdin_file = None
            elif words[0] in ("sed", "cat", "envsubst"):
                files = [w for w in words[1:] if os.path.isfile(os.path.join(ROOT, w))]
                stdin_file = files[-1] if files else None
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
        reached = re.compile(r"refused|dial tcp|unable to connect|Unable to connect")
        bad = []
        for where, args, stdin_file in all_commands():
            args = [a for a in args if not a.startswith("--kubeconfig")]
            data = None
            if stdin_file:
                with open(os.path.join(ROOT, stdin_file)) as f:
                    data = f.read().replace("SHA_TO_DEPLOY", "abc1234")
            p = subprocess.run([kubectl] + args, input=data, capture_output=True, text=True,
                               cwd=ROOT, env=env, timeout=60)
            sub, _ = subcommand(args)
            if sub in NO_CLUSTER and p.returncode == 0:
                continue
            if p.returncode != 0 and reached.search(p.stderr):
                continue
            bad.append("%s: kubectl %s: rc %d: %s" % (where, " ".join(args), p.returncode,
                                                      p.stderr.strip()[-300:]))
        self.assertEqual(bad, [], "\n".join(bad))


if __name__ == "__main__":
    unittest.main()
