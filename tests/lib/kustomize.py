"""The objects `kubectl apply -k DIR` would create, for the kustomizations
of k8s/ (python: no kubectl needed).

It covers what k8s/ uses and nothing more: resources (files, several YAML
documents each, and directories with their own kustomization.yaml), the
namespace (set on every namespaced object), configMapGenerator (files and
literals; generatorOptions.disableNameSuffixHash must be true) and inline
strategic-merge `patches` (maps merge, as the real thing does for these).
Anything else is refused, so it cannot silently differ from kustomize;
tests/integration/test_k8s_manifests.py compares it with `kubectl kustomize`
where kubectl is installed.
"""
import copy
import os

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
KNOWN = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator",
         "generatorOptions", "patches"}


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        elif v is None:
            dst.pop(k, None)
        else:
            dst[k] = copy.deepcopy(v)


def build(directory):
    """The rendered objects of the kustomization in directory, in file order."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KNOWN
    if unknown:
        raise ValueError("%s: kustomization fields not modelled: %s" % (directory,
                                                                         sorted(unknown)))
    objs = []
    for r in k.get("resources") or []:
        path = os.path.join(directory, r)
        if os.path.isdir(path):
            objs += build(path)
        else:
            with open(path) as f:
                objs += [d for d in yaml.safe_load_all(f) if d]
    gens = k.get("configMapGenerator") or []
    if gens and not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise ValueError("%s: name suffix hashes are not modelled" % directory)
    for g in gens:
        data = {}
        for fname in g.get("files") or []:
            with open(os.path.join(directory, fname)) as f:
                data[os.path.basename(fname)] = f.read()
        for lit in g.get("literals") or []:
            key, _, val = lit.partition("=")
            data[key] = val
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": g["name"]}, "data": data})
    for p in k.get("patches") or []:
        if set(p) != {"patch"}:
            raise ValueError("%s: only inline patches are modelled" % directory)
        patch = yaml.safe_load(p["patch"])
        target = [o for o in objs if o["kind"] == patch["kind"] and
                  o["metadata"]["name"] == patch["metadata"]["name"]]
        if len(target) != 1:
            raise ValueError("%s: patch matches %d objects" % (directory, len(target)))
        _merge(target[0], patch)
    if k.get("namespace"):
        for o in objs:
            if o["kind"] == "Namespace":
                o["metadata"]["name"] = k["namespace"]  # kustomize renames it too
            elif o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
            for s in (o.get("subjects") or []):
                if s.get("kind") == "ServiceAccount":
                    s["namespace"] = k["namespace"]
    return objs


def find(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise KeyError("%s %s" % (kind, name))
