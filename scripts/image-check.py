#!/usr/bin/env python3
"""The images run as Kubernetes would run them, without a cluster.

Builds docker/rainbow.Dockerfile with docker or podman, then runs the image
the way k8s/jobs/rainbow-deploy-job.yaml has the kubelet run it: the Job's
args and env, its user (runAsUser/runAsGroup), a read-only root filesystem,
an empty writable dir at the emptyDir's mount path, the pod template
ConfigMap at its mount path, and a service account token, CA and namespace
at /var/run/secrets/kubernetes.io/serviceaccount. The API server is the
test double (tests/lib/kubedouble.py, on 127.0.0.1; the container shares
the host's network), whose pods are chatd processes of build/chatd. Passes
when the deploy succeeds and `rainbow history` reads the Job's state dir.

Then builds docker/chatd.Dockerfile and runs it as k8s/pod-template.yaml
has every colour's pod run it: the pod's user and fsGroup (a supplementary
group), a read-only root, no capabilities, the env of the ConfigMaps it
names (listen addresses moved to free loopback ports, no peers DNS), the
cluster secret as the kubelet mounts a Secret (owned by root, group
fsGroup, defaultMode); passes when /readyz answers 200.

    make && scripts/image-check.py

CONTAINER_ENGINE=docker|podman picks the engine (default: docker, else
podman); ENGINE_FLAGS are given before every engine command and RUN_FLAGS to
build and run (where containers cannot raise ulimits, e.g. a VM without
CAP_SYS_RESOURCE: RUN_FLAGS="--ulimit nofile=1024:1024 --ulimit
nproc=4096:4096"; with crun on a hybrid cgroup host: ENGINE_FLAGS="--runtime
runc --cgroup-manager cgroupfs"). IMAGE=NAME skips the rainbow build and
uses NAME, CHATD_IMAGE=NAME the chatd one; CHECKS="rainbow chatd" (default)
picks the checks.
"""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "lib"), os.path.join(ROOT, "tests", "integration")]
os.environ.setdefault("RAINBOW_BUILD", os.path.join(ROOT, "build"))
os.environ.setdefault("RAINBOW_ROOT", ROOT)

import yaml  # noqa: E402

import kubedouble  # noqa: E402
import kustomize  # noqa: E402
from test_kube_jobs import config_map_files  # noqa: E402

NS = "rainbow"
SHA = "1a2b3c4"
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def say(msg):
    print("image-check: " + msg, flush=True)


def check_chatd(eng, run_flags, image):
    """The chatd image run as a colour's pod: 0 when /readyz says 200."""
    import harness
    with open(os.path.join(ROOT, "k8s", "pod-template.yaml")) as f:
        tpl = yaml.safe_load(f.read().replace("{{SHA}}", "1a2b3c4"))
    spec = tpl["spec"]
    c = spec["containers"][0]
    sc = dict(spec.get("securityContext") or {})
    csc = c.get("securityContext") or {}
    objs = kustomize.build(os.path.join(ROOT, "k8s"))
    env = {}
    for ef in c.get("envFrom") or []:
        name = ef["configMapRef"]["name"]
        try:
            env.update(kustomize.find(objs, "ConfigMap", name)["data"])
        except KeyError:
            if not ef["configMapRef"].get("optional"):
                raise
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = "chat-1a2b3c4-check"
    http = harness.free_port()
    env["CHATD_LISTEN"] = "127.0.0.1:%d" % harness.free_port()
    env["CHATD_HTTP"] = "127.0.0.1:%d" % http
    if "CHATD_CLUSTER_LISTEN" in env:
        env["CHATD_CLUSTER_LISTEN"] = "127.0.0.1:%d" % harness.free_port()
    env.pop("CHATD_PEERS_DNS", None)  # no cluster DNS here
    tmp = tempfile.mkdtemp(prefix="rb-image-check-chatd-")
    os.chmod(tmp, 0o755)
    name = "rb-image-check-chatd-%d" % os.getpid()
    argv = eng + ["run", "-d", "--name", name, "--network", "host"] + run_flags
    argv += ["--user", "%s:%s" % (sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"]))]
    if "fsGroup" in sc:
        argv += ["--group-add", str(sc["fsGroup"])]
    if csc.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    for cap in (csc.get("capabilities") or {}).get("drop") or []:
        argv += ["--cap-drop", cap]
    if csc.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        v = vols[m["name"]]
        host = os.path.join(tmp, m["name"])
        os.makedirs(host)
        if "secret" not in v:
            raise AssertionError("volume %s not simulated" % m["name"])
        # the kubelet's Secret volume: files owned by root, group fsGroup
        path = os.path.join(host, "secret")
        with open(path, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chown(path, 0, int(sc.get("fsGroup", 0)))
        os.chmod(path, v["secret"].get("defaultMode", 0o644))
        os.chmod(host, 0o755)
        argv += ["-v", "%s:%s:ro" % (host, m["mountPath"])]
    for k, v in sorted(env.items()):
        argv += ["-e", "%s=%s" % (k, v)]
    argv.append(image)
    say("running a colour's pod: " + " ".join(shlex.quote(a) for a in argv))
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st, _ = harness.http_get("http://127.0.0.1:%d/readyz" % http, timeout=1)
            if st == 200:
                say("PASS: chatd in the image is ready as uid %s, read-only root, the "
                    "cluster secret mode %o group %s" % (
                        sc["runAsUser"], vols["cluster-secret"]["secret"].get(
                            "defaultMode", 0o644), sc.get("fsGroup")))
                return 0
            time.sleep(0.5)
        say("chatd in the image never answered /readyz 200")
        return 1
    finally:
        logs = subprocess.run(eng + ["logs", name], capture_output=True, text=True)
        print(logs.stdout[-1500:] + logs.stderr[-1500:], end="")
        subprocess.run(eng + ["rm", "-f", name], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def build(eng, run_flags, engine, dockerfile, image):
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "unknown"
    say("building %s with %s" % (image, engine))
    net = ["--network", "host"] if engine == "podman" else []
    subprocess.run(eng + ["build"] + net + run_flags +
                   ["-f", dockerfile, "--build-arg", "GIT_SHA=" + sha, "-t", image, "."],
                   cwd=ROOT, check=True)


def main():
    engine = os.environ.get("CONTAINER_ENGINE") or shutil.which("docker") and "docker" or \
        shutil.which("podman") and "podman"
    if not engine:
        say("needs docker or podman")
        return 2
    eng = [engine] + shlex.split(os.environ.get("ENGINE_FLAGS", ""))
    run_flags = shlex.split(os.environ.get("RUN_FLAGS", ""))
    chatd = os.path.join(os.environ["RAINBOW_BUILD"], "chatd")
    rainbow = os.path.join(os.environ["RAINBOW_BUILD"], "rainbow")
    if not os.access(chatd, os.X_OK) or not os.access(rainbow, os.X_OK):
        say("build chatd and rainbow first (make)")
        return 2
    checks = os.environ.get("CHECKS", "rainbow chatd").split()
    rc = 0
    if "rainbow" in checks:
        image = os.environ.get("IMAGE")
        if not image:
            image = "rainbow/rainbow:image-check"
            build(eng, run_flags, engine, "docker/rainbow.Dockerfile", image)
        rc = check_rainbow(eng, run_flags, image, rainbow, chatd)
    if rc == 0 and "chatd" in checks:
        image = os.environ.get("CHATD_IMAGE")
        if not image:
            image = "rainbow/chatd:image-check"
            build(eng, run_flags, engine, "docker/chatd.Dockerfile", image)
        rc = check_chatd(eng, run_flags, image)
    return rc


def check_rainbow(eng, run_flags, image, rainbow, chatd):
    """The rainbow image run as the in-cluster Job: 0 when it deployed."""
    with open(os.path.join(ROOT, "k8s", "jobs", "rainbow-deploy-job.yaml")) as f:
        job = yaml.safe_load(f.read().replace("SHA_TO_DEPLOY", SHA))
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    sc = dict(spec.get("securityContext") or {})
    sc.update(c.get("securityContext") or {})

    tmp = tempfile.mkdtemp(prefix="rb-image-check-")
    os.chmod(tmp, 0o755)
    d = kubedouble.KubeDouble(chatd=chatd, namespace=NS, tls=True)
    try:
        for obj in kustomize.build(os.path.join(ROOT, "k8s")):
            if obj["kind"] in ("ConfigMap", "Service"):
                d.create(NS, obj["kind"].lower() + "s", obj)
        argv = eng + ["run", "--rm", "--network", "host"] + run_flags
        if sc.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        if "runAsUser" in sc:
            argv += ["--user", "%s:%s" % (sc["runAsUser"], sc.get("runAsGroup",
                                                                  sc["runAsUser"]))]
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        state_host = None
        for m in c.get("volumeMounts") or []:
            host = os.path.join(tmp, m["name"])
            os.makedirs(host)
            v = vols[m["name"]]
            if "configMap" in v:
                for name, text in config_map_files(v["configMap"]["name"]).items():
                    with open(os.path.join(host, name), "w") as fh:
                        fh.write(text)
                os.chmod(host, 0o755)
            elif "emptyDir" in v:
                os.chmod(host, 0o777)  # as the kubelet makes an emptyDir
                state_host = host
            argv += ["-v", "%s:%s%s" % (host, m["mountPath"], ":ro" if m.get("readOnly")
                                        else "")]
        if spec.get("automountServiceAccountToken", True):
            sa = os.path.join(tmp, "serviceaccount")
            os.makedirs(sa)
            with open(os.path.join(sa, "token"), "w") as fh:
                fh.write("rainbow-token\n")
            with open(os.path.join(sa, "namespace"), "w") as fh:
                fh.write(NS)
            shutil.copy(d.cert, os.path.join(sa, "ca.crt"))
            for n in os.listdir(sa):
                os.chmod(os.path.join(sa, n), 0o644)
            os.chmod(sa, 0o755)
            argv += ["-v", "%s:%s:ro" % (sa, SA_PATH)]
        port = d.url.rsplit(":", 1)[1]
        argv += ["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1", "-e",
                 "KUBERNETES_SERVICE_PORT=" + port]
        for e in c.get("env") or []:
            argv += ["-e", "%s=%s" % (e["name"], e.get("value", ""))]
        # the double's pods share 127.0.0.1: counts through the pod proxy
        argv += [image] + list(c.get("args") or []) + ["-P", "metrics-via=proxy"]
        say("running the Job's pod: " + " ".join(shlex.quote(a) for a in argv))
        t0 = time.monotonic()
        p = subprocess.run(argv, timeout=300)
        say("rainbow in the image exited %d after %.1fs" % (p.returncode,
                                                            time.monotonic() - t0))
        if p.returncode != 0:
            return 1
        sel = d.get(NS, "services", "chat")["spec"]["selector"]
        if sel.get("rainbow.chat/sha") != SHA:
            say("the Service does not select %s: %s" % (SHA, sel))
            return 1
        h = subprocess.run([rainbow, "--state-dir", state_host, "history"],
                           capture_output=True, text=True)
        print(h.stdout, end="")
        if h.returncode != 0 or "done" not in h.stdout:
            say("no history in the Job's state dir")
            return 1
        say("PASS: the image ran the Job as uid %s with a read-only root; state in %s" %
            (sc.get("runAsUser", "?"), c["volumeMounts"][-1]["mountPath"]))
        return 0
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
