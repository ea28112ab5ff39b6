"""The in-cluster Jobs of k8s/jobs/ run as a kubelet would run them, against
the API double (tests/lib/kubedouble.py).

A "pod" here is the Job's container spec applied to the built binary: the
image's ENV, WORKDIR and USER (from docker/*.Dockerfile, final stage), the
container's args and env, its volumeMounts as directories under a fresh root
(configMap volumes filled as `kubectl apply -k k8s/` makes them,
emptyDirs empty and world-writable as the kubelet makes them, the service
account token, CA and namespace where automountServiceAccountToken is set),
the pod's runAsUser/runAsGroup, and a root filesystem it cannot write
(readOnlyRootFilesystem). Paths in env and args that point into a mount are
mapped to its directory; the process runs with the working directory the
image sets, as the pod's user (when the test runs as root).

One deviation, said where it happens: the double's pods all share
127.0.0.1, so in-cluster rainbow reads counts through the pod proxy
(-P metrics-via=proxy) instead of pod IPs.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kustomize  # noqa: E402
from test_kube_platform import KubeBase, NS, SHA_A, SHA_B, yaml_file  # noqa: E402

ROOT = harness.ROOT
JOB = os.path.join(ROOT, "k8s", "jobs", "rainbow-deploy-job.yaml")
DOCKERFILE = os.path.join(ROOT, "docker", "rainbow.Dockerfile")
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def image_config(dockerfile):
    """ENV (dict), WORKDIR, USER of the Dockerfile's final stage."""
    with open(dockerfile) as f:
        text = re.sub(r"\\\n", " ", f.read())
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    last = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    env, workdir, user = {}, "/", "0"
    for l in lines[last:]:
        word, _, rest = l.partition(" ")
        word = word.upper()
        if word == "ENV":
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                env[k] = v.strip('"')
        elif word == "WORKDIR":
            workdir = os.path.join(workdir, rest.strip())
        elif word == "USER":
            user = rest.strip()
    return env, workdir, user


def config_map_files(name, variant="k8s"):
    """{file name: content} of ConfigMap `name` of `kubectl apply -k <variant>`."""
    return kustomize.find(kustomize.build(os.path.join(ROOT, variant)), "ConfigMap",
                          name)["data"]


class JobPod:
    """One run of a Job's pod: its own root, so a retry gets fresh emptyDirs."""

    def __init__(self, test, job, attempt, api_url, ca, extra_args=()):
        self.root = os.path.join(test.tmp, "%s-pod-%d" % (job["metadata"]["name"], attempt))
        spec = job["spec"]["template"]["spec"]
        c = spec["containers"][0]
        img_env, workdir, img_user = image_config(DOCKERFILE)
        os.chmod(test.tmp, 0o755)  # mkdtemp's 0700 would shut the pod's user out
        os.makedirs(self.root)
        mounts = {}
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            host = self.path(m["mountPath"])
            os.makedirs(host, exist_ok=True)
            v = vols[m["name"]]
            if "configMap" in v:
                for fname, text in config_map_files(v["configMap"]["name"]).items():
                    with open(os.path.join(host, fname), "w") as f:
                        f.write(text)
            elif "emptyDir" in v:
                os.chmod(host, 0o777)
            else:
                raise AssertionError("volume kind of %s not simulated" % m["name"])
            mounts[m["mountPath"]] = host
        self.mounts = mounts
        sa = None
        if spec.get("automountServiceAccountToken", True):
            sa = self.path(SA_PATH)
            os.makedirs(sa)
            with open(os.path.join(sa, "token"), "w") as f:
                f.write("rainbow-token\n")
            with open(os.path.join(sa, "namespace"), "w") as f:
                f.write(NS)
            shutil.copy(ca, os.path.join(sa, "ca.crt"))
            os.chmod(sa, 0o755)
        # the image's working directory exists; only mounts are writable
        os.makedirs(self.path(workdir), exist_ok=True)
        for d, _, _ in os.walk(self.root):
            if not any(d == h or d.startswith(h + "/") for h in mounts.values()):
                os.chmod(d, 0o755)
        self.cwd = self.path(workdir)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/",
               "HOSTNAME": "%s-attempt%d" % (job["metadata"]["name"], attempt)}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update({k: self.mapped(v) for k, v in img_env.items()})
        for e in c.get("env") or []:
            env[e["name"]] = self.mapped(e.get("value", ""))
        host, port = api_url.split("//", 1)[1].rsplit(":", 1)
        env.update({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})
        if sa:
            env["RAINBOW_SA_DIR"] = sa
        self.env = env
        sc = dict(spec.get("securityContext") or {})
        sc.update(c.get("securityContext") or {})
        user, _, group = img_user.partition(":")
        self.uid = int(sc.get("runAsUser", user or 0))
        self.gid = int(sc.get("runAsGroup", group or self.uid))
        self.argv = [harness.binary("rainbow")] + [self.mapped(a) for a in c.get("args") or []]
        self.argv += list(extra_args)
        self.proc = None

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def mapped(self, v):
        for m, host in sorted(self.mounts.items(), key=lambda x: -len(x[0])):
            if v == m or v.startswith(m + "/"):
                return host + v[len(m):]
        return v

    def _drop(self):
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)

    def start(self):
        # harness.Proc merges os.environ; a pod's environment is only its own
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=self._drop)
        return self

    def wait(self, timeout):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self):
        # a deleted pod: SIGTERM, and rainbow does not trap it
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(10)


class TestRainbowJob(KubeBase):
    def job(self, sha):
        with open(JOB) as f:
            text = f.read().replace("SHA_TO_DEPLOY", sha)
        path = os.path.join(self.tmp, "job-%s.yaml" % sha)
        with open(path, "w") as f:
            f.write(text)
        return yaml_file(path)

    def pod(self, sha, attempt, *extra):
        # the double's pods share 127.0.0.1: counts through the pod proxy
        return JobPod(self, self.job(sha), attempt, self.d.url, self.d.cert,
                      ("-P", "metrics-via=proxy", "--settle", "1s") + extra)

    def check(self, rc, out, err):
        self.assertIsNone(harness.SANITIZER_RE.search(err), err)
        self.assertEqual(rc, 0, "the Job's pod failed:\n" + err + out)

    def test_job_pod_starts_and_keeps_its_state_in_the_state_dir(self):
        pod = self.pod(SHA_A, 1)
        if os.geteuid() != 0:
            self.skipTest("runs the pod as its runAsUser: needs root")
        self.check(*pod.start().wait(120))
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_A)
        # what it wrote went to the emptyDir at RAINBOW_STATE_DIR, nowhere else
        state = pod.mapped(pod.env["RAINBOW_STATE_DIR"])
        self.assertIn(state, pod.mounts.values())
        self.assertTrue(os.path.exists(os.path.join(state, "record.jsonl")))
        self.assertTrue(os.path.exists(os.path.join(state, "timeline.csv")))
        hist = subprocess.run([harness.binary("rainbow"), "--state-dir", state, "history",
                               "-o", "json"], capture_output=True, text=True, timeout=30)
        events = [json.loads(l)["event"] for l in hist.stdout.splitlines()]
        self.assertIn("select", events)
        self.assertEqual(events[-1], "done")

    def test_job_pod_deleted_mid_drain_retry_converges(self):
        if os.geteuid() != 0:
            self.skipTest("runs the pod as its runAsUser: needs root")
        self.check(*self.pod(SHA_A, 1).start().wait(120))
        client = socket.create_connection(self.d.service_address(NS, "chat"), timeout=5)
        self.addCleanup(client.close)
        first = self.pod(SHA_B, 1).start()
        self.addCleanup(lambda: first.proc.poll() is None and first.proc.kill())
        harness.wait_for(lambda: self.selector()["rainbow.chat/sha"] == SHA_B
                         or first.proc.poll() is not None, timeout=90, what="switch to B")
        self.assertIsNone(first.proc.poll(), "the first attempt ended before the drain")
        # mid-drain: A holds our client; the pod is deleted
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        first.kill()
        self.assertIsNotNone(self.d.get(NS, "deployments", "chat-" + SHA_A))
        # the Job's retry: a new pod, a new (empty) state dir, the same command
        retry = self.pod(SHA_B, 2).start()
        self.addCleanup(lambda: retry.proc.poll() is None and retry.proc.kill())
        harness.wait_for(lambda: "rainbow.chat/draining-since" in (self.d.get(
            NS, "deployments", "chat-" + SHA_A)["metadata"].get("annotations") or {}),
            timeout=30, what="A draining")
        self.assertIsNone(retry.proc.poll())
        client.close()
        self.check(*retry.wait(120))
        self.assertEqual(self.selector()["rainbow.chat/sha"], SHA_B)
        self.assertEqual(sorted(d["metadata"]["name"] for d in self.d.list(NS, "deployments")),
                         ["chat-" + SHA_B])
        # what the first pod recorded went with it; the retry's record has the drain
        state = retry.mapped(retry.env["RAINBOW_STATE_DIR"])
        with open(os.path.join(state, "record.jsonl")) as f:
            rec = [json.loads(l) for l in f]
        self.assertIn(("remove", SHA_A, "drained"),
                      [(r["event"], r["sha"], r.get("why")) for r in rec])
