"""A Kubernetes API server double for rainbow's tests (python stdlib only).

It serves the endpoints rainbow uses, with the URLs, query parameters, JSON
objects, status codes and Status error bodies of the real API server
(k8s 1.30-ish):

  GET    /api/v1/namespaces/NS
  GET    /api/v1/namespaces/NS/services[/NAME]     POST  .../services
  PUT|PATCH|DELETE /api/v1/namespaces/NS/services/NAME
  GET|POST /api/v1/namespaces/NS/configmaps[/NAME]
  GET|POST /api/v1/namespaces/NS/secrets[/NAME]   (stringData stored as data)
  GET    /api/v1/namespaces/NS/pods?labelSelector=...   (and ?watch=true)
  GET|PATCH|DELETE /api/v1/namespaces/NS/pods/NAME
  GET|POST|PUT|PATCH|DELETE /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH[?QUERY]
         (RBAC verb get|create|update|patch|delete on pods/proxy; the request's
         method, query, body and headers but Authorization go to the pod)
  GET    /apis/apps/v1/namespaces/NS/deployments?labelSelector=&watch=true
         &resourceVersion=&timeoutSeconds=&allowWatchBookmarks=
  POST   /apis/apps/v1/namespaces/NS/deployments
  GET|PUT|PATCH|DELETE /apis/apps/v1/namespaces/NS/deployments/NAME
  GET|PUT|PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale
  GET|POST /apis/events.k8s.io/v1/namespaces/NS/events[/NAME]  (?fieldSelector=)
  GET    /api/v1/namespaces/NS/events[/NAME]   the same Events, core/v1 view

What it does like the real server:
- Bearer-token (or verified client-certificate) authentication: 401 with
  a Status body (reason Unauthorized) without it.
- RBAC: a table of allowed (verb, group, resource) the test can restrict,
  or (verb, group, resource, name) for a rule with resourceNames;
  403 with the real message shape ('deployments.apps "x" is forbidden:
  User "system:serviceaccount:ns:rainbow" cannot patch resource
  "deployments" in API group "apps" in the namespace "ns"').
- Objects carry metadata uid, resourceVersion (one global counter, as
  etcd's revision), generation (bumped on spec changes only),
  creationTimestamp, labels, annotations; Deployments get status
  observedGeneration/replicas/updatedReplicas/readyReplicas/
  availableReplicas from the controller.
- PUT without metadata.resourceVersion: 422; PUT or PATCH whose body
  carries a stale metadata.resourceVersion: 409 Conflict.
- Patch content types: application/merge-patch+json (RFC 7386: maps merge,
  null deletes a key, lists replace), application/strategic-merge-patch+json
  (maps merge too, null deletes, "$patch: replace"/"$patch: delete"
  directives; lists of containers/ports/env merge by name, others replace),
  application/json-patch+json (RFC 6902 add/remove/replace/move/copy/test;
  a failed op is 422). Anything else: 415. So patching spec.selector with a
  merge or strategic patch MERGES keys, exactly the trap the real server
  sets.
- Watches: newline-delimited {"type","object"} events over a chunked
  response, from resourceVersion, filtered by labelSelector, closed after
  timeoutSeconds; a resourceVersion older than the compacted history gets
  an ERROR event with a 410 Expired Status.
- DELETE with propagationPolicy Background (the default here) or Orphan.
- Events: one store seen through both APIs, as the real server keeps them
  (events.k8s.io/v1 regarding/note/reportingController are core/v1
  involvedObject/message/reportingComponent). A create through
  events.k8s.io/v1 gets the API server's strict validation (422 Invalid
  naming every bad field: eventTime, reportingController as a qualified
  name, reportingInstance, action, reason, type, note length, deprecated*
  fields unset, series); field selectors with each API's own labels
  (regarding.name there, involvedObject.name here; any other label is 400
  "field label not supported"), as kubectl get events and kubectl describe
  use them.

Pods are REAL chatd processes on loopback: the controller starts one per
wanted replica from the pod template (image and command ignored; args and
env kept; env valueFrom fieldRef/configMapKeyRef and envFrom configMapRef
resolved; POD_NAME from the downward API as written in the template;
secret volumes are written from the Secret to a private directory per pod,
and the mount paths in env and args rewritten to it: a Secret missing at
start leaves the path as it is, so chatd exits on the missing file (the
kubelet would not start the container at all: either way the pod is never
ready); a --service-address naming a Service of the namespace (NAME,
NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local) is rewritten to that
Service's forwarder, as the cluster's DNS and kube-proxy would lead there). Each
containerPort gets a free loopback port, and the listen addresses in env and
args are rewritten to it. Readiness comes from the template's readinessProbe
(httpGet against the pod). Deleting a pod sends SIGTERM, then SIGKILL after
terminationGracePeriodSeconds; scale-down picks pods as the ReplicaSet
controller ranks them (not ready first, then lowest
controller.kubernetes.io/pod-deletion-cost, then newest). A container that
exits is restarted (restartCount, back-off), as the kubelet does.

Services with a selector get a TCP forwarder per port with kube-proxy
semantics: each NEW connection goes to a ready pod matching the selector
as it is at that instant; established connections keep flowing to the pod
they started on. service_address() says where it listens.

Test controls: restrict RBAC, inject faults (status codes, delays, silent
watches) for requests matching a method and a path pattern, rotate tokens,
compact the watch history, and read every request received (requests).
"""
import base64
import copy
import datetime
import http.server
import json
import os
import random
import re
import selectors
import signal
import socket
import socketserver
import ssl
import string
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

import harness

APPS = ("apps", "v1")
CORE = ("", "v1")
KINDS = {
    "deployments": ("Deployment", APPS),
    "services": ("Service", CORE),
    "pods": ("Pod", CORE),
    "configmaps": ("ConfigMap", CORE),
    "secrets": ("Secret", CORE),
}
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code, reason, message, name=None, group=None, kind=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
          "status": "Failure", "message": message, "reason": reason,
          "code": code}
    if name is not None or kind is not None:
        d = {}
        if name is not None:
            d["name"] = name
        if group:
            d["group"] = group
        if kind:
            d["kind"] = kind
        st["details"] = d
    return st


def qualified(resource, group):
    """deployments.apps / services (the form real error messages use)."""
    base = resource.split("/")[0]
    return "%s.%s" % (base, group) if group else base


# ---------- label selectors ----------

def parse_selector(text):
    """labelSelector query syntax -> list of (key, op, values)."""
    reqs = []
    if not text:
        return reqs
    # split on commas outside parentheses
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        if not p:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", p)
        if m:
            reqs.append((m.group(1), m.group(2),
                         [v.strip() for v in m.group(3).split(",") if v.strip()]))
            continue
        m = re.match(r"^([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)$", p)
        if m:
            op = {"==": "=", "=": "=", "!=": "!="}[m.group(2)]
            reqs.append((m.group(1), op, [m.group(3)]))
            continue
        m = re.match(r"^!([\w./-]+)$", p)
        if m:
            reqs.append((m.group(1), "!exists", []))
            continue
        m = re.match(r"^([\w./-]+)$", p)
        if m:
            reqs.append((m.group(1), "exists", []))
            continue
        raise ValueError("unable to parse requirement: %s" % p)
    return reqs


def selector_matches(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=" and (not has or v != vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and (not has or v not in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
    return True


def map_matches(selector, labels):
    """A Service/Deployment map selector; an empty one matches nothing here
    (a Service without selector has no managed endpoints)."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


# ---------- events (events.k8s.io/v1 and its core/v1 view) ----------

EVENTS_GROUP = "events.k8s.io"
# Field selector labels each API accepts, mapped to the stored
# (events.k8s.io/v1) field: pkg/apis/core/v1/conversion.go and
# pkg/apis/events/v1/conversion.go (AddFieldLabelConversionsForEvent).
_REF_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
               "fieldPath")
EVENT_FIELDS_CORE = dict([("involvedObject." + f, ("regarding", f)) for f in _REF_FIELDS] + [
    ("reason", ("reason",)), ("reportingComponent", ("reportingController",)),
    ("source", None), ("type", ("type",)), ("metadata.namespace", ("metadata", "namespace")),
    ("metadata.name", ("metadata", "name"))])
EVENT_FIELDS_V1 = dict([("regarding." + f, ("regarding", f)) for f in _REF_FIELDS] + [
    ("reason", ("reason",)), ("reportingController", ("reportingController",)),
    ("source", None), ("type", ("type",)), ("metadata.namespace", ("metadata", "namespace")),
    ("metadata.name", ("metadata", "name"))])
QUALIFIED_NAME_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                               r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MICROTIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def parse_field_selector(text, fields):
    """fieldSelector query -> [(stored path or None for source, op, value)].
    Raises ValueError with the API server's message."""
    reqs = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise ValueError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        label, op, value = m.group(1), m.group(2), m.group(3)
        if label not in fields:
            raise ValueError("field label not supported: %s" % label)
        reqs.append((label, fields[label], "!=" if op == "!=" else "=", value))
    return reqs


def event_field(ev, path, label):
    if path is None:  # "source": deprecatedSource.component, else reportingController
        return (ev.get("deprecatedSource") or {}).get("component") or \
            ev.get("reportingController", "")
    v = ev
    for k in path:
        v = (v or {}).get(k) if isinstance(v, dict) else None
    return "" if v is None else str(v)


def event_matches(ev, reqs):
    for label, path, op, value in reqs:
        got = event_field(ev, path, label)
        if (op == "=") != (got == value):
            return False
    return True


def event_to_core(ev):
    """The core/v1 view of a stored events.k8s.io/v1 Event."""
    c = {"kind": "Event", "apiVersion": "v1", "metadata": copy.deepcopy(ev["metadata"]),
         "involvedObject": copy.deepcopy(ev.get("regarding") or {}),
         "reason": ev.get("reason", ""), "message": ev.get("note", ""),
         "source": copy.deepcopy(ev.get("deprecatedSource") or {}),
         "firstTimestamp": ev.get("deprecatedFirstTimestamp"),
         "lastTimestamp": ev.get("deprecatedLastTimestamp"),
         "type": ev.get("type", ""), "eventTime": ev.get("eventTime"),
         "reportingComponent": ev.get("reportingController", ""),
         "reportingInstance": ev.get("reportingInstance", "")}
    for k_v1, k_core in (("deprecatedCount", "count"), ("series", "series"),
                         ("action", "action"), ("related", "related")):
        if ev.get(k_v1):
            c[k_core] = copy.deepcopy(ev[k_v1])
    return c


def validate_event_v1(ev, ns):
    """The API server's checks on an events.k8s.io/v1 create (ValidateEventCreate
    in pkg/apis/core/validation/events.go, strict for v1): the list of
    field errors, in its words."""
    errs = []
    md = ev.get("metadata") or {}
    name = md.get("name", "")
    if not name:
        errs.append("metadata.name: Required value: name or generateName is required")
    elif len(name) > 253 or not DNS_SUBDOMAIN_RE.match(name):
        errs.append("metadata.name: Invalid value: %s: a lowercase RFC 1123 subdomain must "
                    "consist of lower case alphanumeric characters, '-' or '.'"
                    % json.dumps(name))
    series = ev.get("series")
    if series is not None:
        if not isinstance(series.get("count"), int) or series["count"] < 2:
            errs.append('series.count: Invalid value: "": should be at least 2')
        if not series.get("lastObservedTime"):
            errs.append("series.lastObservedTime: Required value")
    et = ev.get("eventTime")
    if not et:
        errs.append("eventTime: Required value")
    elif not isinstance(et, str) or not MICROTIME_RE.match(et):
        raise ValueError('parsing time %s as "2006-01-02T15:04:05.000000Z07:00": cannot '
                         'parse' % json.dumps(et))
    if ev.get("type") not in ("Normal", "Warning"):
        errs.append('type: Invalid value: "": has invalid value: %s' % (ev.get("type") or ""))
    for f, path in (("deprecatedFirstTimestamp", "firstTimestamp"),
                    ("deprecatedLastTimestamp", "lastTimestamp"),
                    ("deprecatedCount", "count")):
        if ev.get(f):
            errs.append('%s: Invalid value: "": needs to be unset' % path)
    src = ev.get("deprecatedSource") or {}
    if src.get("component") or src.get("host"):
        errs.append('source: Invalid value: "": needs to be unset')
    reg_ns = (ev.get("regarding") or {}).get("namespace", "")
    if not reg_ns and ns not in ("default", "kube-system"):
        errs.append('involvedObject.namespace: Invalid value: "": does not match '
                    'event.namespace')
    rc = ev.get("reportingController") or ""
    if not rc:
        errs.append("reportingController: Required value")
    elif not QUALIFIED_NAME_RE.match(rc) or len(rc.split("/")[-1]) > 63:
        errs.append("reportingController: Invalid value: %s: must be a qualified name"
                    % json.dumps(rc))
    ri = ev.get("reportingInstance") or ""
    if not ri:
        errs.append("reportingInstance: Required value")
    elif len(ri) > 128:
        errs.append('reportingInstance: Invalid value: "": can have at most 128 characters')
    for f in ("action", "reason"):
        v = ev.get(f) or ""
        if not v:
            errs.append("%s: Required value" % f)
        elif len(v) > 128:
            errs.append('%s: Invalid value: "": can have at most 128 characters' % f)
    if len((ev.get("note") or "").encode()) > 1024:
        errs.append('message: Invalid value: "": can have at most 1024 characters')
    return errs


# ---------- patches ----------

class PatchError(Exception):
    pass


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# list fields that strategic merge patch merges by a key, as in the Go types
SMP_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ports": "containerPort",
                  "env": "name", "volumes": "name", "volumeMounts": "mountPath",
                  "conditions": "type", "imagePullSecrets": "name"}


def strategic_merge_patch(target, patch, field=None):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if not isinstance(target, dict):
        target = {}
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            r = strategic_merge_patch(out.get(k), v, k)
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
        elif isinstance(v, list) and k in SMP_MERGE_KEYS and isinstance(out.get(k), list):
            mk = SMP_MERGE_KEYS[k]
            if k == "ports" and v and isinstance(v[0], dict) and "containerPort" not in v[0]:
                mk = "port"
            cur = out[k]
            for item in v:
                if not isinstance(item, dict) or mk not in item:
                    cur.append(copy.deepcopy(item))
                    continue
                for i, old in enumerate(cur):
                    if isinstance(old, dict) and old.get(mk) == item[mk]:
                        if item.get("$patch") == "delete":
                            cur.pop(i)
                        else:
                            cur[i] = strategic_merge_patch(old, item)
                        break
                else:
                    if item.get("$patch") != "delete":
                        cur.append(copy.deepcopy(item))
        else:
            out[k] = copy.deepcopy(v)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError("doc is missing path: /%s" % "/".join(parts))
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise PatchError("doc is missing path: /%s" % "/".join(parts))
        else:
            raise PatchError("doc is missing path: /%s" % "/".join(parts))
    return cur


def json_patch(doc, ops):
    """RFC 6902."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        parent = _walk(doc, parts[:-1]) if parts else None
        last = parts[-1] if parts else None

        def put(value, replace):
            if isinstance(parent, dict):
                if replace and last not in parent:
                    raise PatchError("replace operation does not apply: doc is missing "
                                     "key: %s" % op["path"])
                parent[last] = value
            elif isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    i = int(last)
                    if replace:
                        parent[i] = value
                    else:
                        parent.insert(i, value)
            else:
                raise PatchError("doc is missing path: %s" % op["path"])

        if kind == "add":
            if not parts:
                doc = copy.deepcopy(op["value"])
            else:
                put(copy.deepcopy(op["value"]), False)
        elif kind == "replace":
            if not parts:
                doc = copy.deepcopy(op["value"])
            else:
                put(copy.deepcopy(op["value"]), True)
        elif kind == "remove":
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError("unable to remove nonexistent key: %s" % last)
                del parent[last]
            elif isinstance(parent, list):
                parent.pop(int(last))
        elif kind in ("move", "copy"):
            src = _pointer(op["from"])
            val = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                sp = _walk(doc, src[:-1])
                if isinstance(sp, dict):
                    del sp[src[-1]]
                else:
                    sp.pop(int(src[-1]))
            parent = _walk(doc, parts[:-1])
            put(val, False)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError("testing value %s failed" % op["path"])
        else:
            raise PatchError("Unexpected kind: %s" % kind)
    return doc


# ---------- the TCP forwarder (kube-proxy) ----------

class Forwarder:
    """One thread, one selector: listeners for Service ports and the relays of
    every proxied connection. pick(svc_key) returns (host, port) of a ready
    endpoint for the CURRENT selector, or None (then the client gets a RST)."""

    def __init__(self, pick):
        self.pick = pick
        self.sel = selectors.DefaultSelector()
        self.listeners = {}   # (ns, svc, port) -> socket
        self.lock = threading.Lock()
        self.pending = []     # callables run on the loop thread
        self.rpipe, self.wpipe = os.pipe()
        os.set_blocking(self.rpipe, False)
        self.sel.register(self.rpipe, selectors.EVENT_READ, ("wake", None))
        self.running = True
        self.conns = 0
        self.thread = threading.Thread(target=self._loop, daemon=True, name="kube-proxy")
        self.thread.start()

    def _call(self, fn):
        with self.lock:
            self.pending.append(fn)
        try:
            os.write(self.wpipe, b"x")
        except OSError:
            pass

    def listen(self, key):
        """Opens a loopback listener for key; returns its port."""
        done = threading.Event()
        res = {}

        def fn():
            if key in self.listeners:
                res["port"] = self.listeners[key].getsockname()[1]
            else:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 0))
                s.listen(1024)
                s.setblocking(False)
                self.listeners[key] = s
                self.sel.register(s, selectors.EVENT_READ, ("accept", key))
                res["port"] = s.getsockname()[1]
            done.set()
        self._call(fn)
        done.wait(5)
        return res["port"]

    def unlisten(self, key):
        def fn():
            s = self.listeners.pop(key, None)
            if s:
                self.sel.unregister(s)
                s.close()
        self._call(fn)

    def stop(self):
        self.running = False
        self._call(lambda: None)
        self.thread.join(5)

    def _accept(self, key, ls):
        while True:
            try:
                c, _ = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            target = self.pick(key)
            if target is None:
                self._reset(c)
                continue
            try:
                b = socket.create_connection(target, timeout=2)
            except OSError:
                self._reset(c)
                continue
            c.setblocking(False)
            b.setblocking(False)
            relay = {"a": c, "b": b, "buf": {c: b"", b: b""}, "eof": set(), "peer": {c: b, b: c}}
            self.conns += 1
            self.sel.register(c, selectors.EVENT_READ, ("relay", relay))
            self.sel.register(b, selectors.EVENT_READ, ("relay", relay))

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        s.close()

    def _close_relay(self, relay, reset=False):
        for s in (relay["a"], relay["b"]):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if reset:
                self._reset(s)
            else:
                s.close()
        self.conns -= 1
        relay["closed"] = True

    def _interest(self, relay, s):
        """Read from s unless its peer's outgoing buffer is full or s hit EOF;
        write to s while data for it is buffered."""
        peer = relay["peer"][s]
        ev = 0
        if s not in relay["eof"] and len(relay["buf"][peer]) < 1 << 20:
            ev |= selectors.EVENT_READ
        if relay["buf"][s]:
            ev |= selectors.EVENT_WRITE
        try:
            if ev:
                self.sel.modify(s, ev, ("relay", relay))
            else:
                self.sel.unregister(s)
        except KeyError:
            if ev:
                self.sel.register(s, ev, ("relay", relay))
        except ValueError:
            pass

    def _relay_event(self, relay, s, mask):
        if relay.get("closed"):
            return
        peer = relay["peer"][s]
        try:
            if mask & selectors.EVENT_READ:
                data = s.recv(65536)
                if not data:
                    relay["eof"].add(s)
                    if not relay["buf"][peer]:
                        try:
                            peer.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                else:
                    relay["buf"][peer] += data
                    self._flush(relay, peer)
            if mask & selectors.EVENT_WRITE:
                self._flush(relay, s)
        except (ConnectionResetError, BrokenPipeError):
            self._close_relay(relay, reset=True)
            return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_relay(relay, reset=True)
            return
        if len(relay["eof"]) == 2 and not relay["buf"][relay["a"]] and \
                not relay["buf"][relay["b"]]:
            self._close_relay(relay)
            return
        for x in (relay["a"], relay["b"]):
            self._interest(relay, x)

    def _flush(self, relay, s):
        buf = relay["buf"][s]
        if buf:
            n = s.send(buf)
            relay["buf"][s] = buf[n:]
        if not relay["buf"][s] and relay["peer"][s] in relay["eof"]:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _loop(self):
        while self.running:
            for k, mask in self.sel.select(0.5):
                what, arg = k.data
                if what == "wake":
                    try:
                        os.read(self.rpipe, 4096)
                    except OSError:
                        pass
                    with self.lock:
                        fns, self.pending = self.pending, []
                    for fn in fns:
                        fn()
                elif what == "accept":
                    self._accept(arg, k.fileobj)
                else:
                    self._relay_event(arg, k.fileobj, mask)
        for key in list(self.listeners):
            self.listeners.pop(key).close()
        for k in list(self.sel.get_map().values()):
            if k.data[0] == "relay" and not k.data[1].get("closed"):
                self._close_relay(k.data[1])
        os.close(self.rpipe)
        os.close(self.wpipe)


# ---------- pods as chatd processes ----------

class PodRuntime:
    """The process side of a pod: host ports, the chatd process, probes."""

    def __init__(self, ns, name):
        self.ns = ns
        self.name = name
        self.ports = {}        # containerPort -> host port
        self.named = {}        # port name -> containerPort
        self.proc = None
        self.procs = []        # every process started (for sanitizer checks)
        self.restarts = 0
        self.next_start = 0.0
        self.started_at = None
        self.ready = False
        self.ready_since = None
        self.term_at = None    # monotonic time SIGTERM was sent
        self.grace = 30
        self.argv = None
        self.env = None
        self.probe = None      # (path, containerPort) or None

    def host_port(self, port):
        """port: a number or a name of a containerPort."""
        if isinstance(port, str) and not port.isdigit():
            port = self.named.get(port)
        if port is None:
            return None
        return self.ports.get(int(port))


class KubeDouble:
    def __init__(self, chatd=None, namespace="rainbow", token="rainbow-token",
                 sa="rainbow", tls=False, client_ca=None, workdir=None,
                 history=10000):
        self.chatd = chatd
        self.tokens = {token: "system:serviceaccount:%s:%s" % (namespace, sa)} if token else {}
        self.client_ca = client_ca
        self.dir = workdir or tempfile.mkdtemp(prefix="rb-kubedouble-")
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.store = {}            # (group, resource) -> {ns: {name: obj}}
        self.namespaces = {}
        self.events = []           # (rv, (group, resource), ns, type, obj)
        self.k8s_events = {}       # ns -> {name: events.k8s.io/v1 Event}
        self.history = history
        self.compacted_rv = 0      # watches from below this get 410
        self.runtime = {}          # (ns, pod) -> PodRuntime
        self.rbac = None           # None: everything allowed; else set of (verb, group, res)
        self.faults = []           # dicts: method, path (regex), status, delay, times, ...
        self.requests = []         # (method, path+query, content-type, body)
        self.stopping = False
        self.service_ports = {}    # (ns, svc, port) -> host port of the forwarder
        self.peers_files = {}
        self.secret_file = os.path.join(self.dir, "cluster-secret")
        with open(self.secret_file, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        os.chmod(self.secret_file, 0o600)  # chatd refuses a secret others can read
        self.add_namespace(namespace)
        self.forwarder = Forwarder(self._pick_endpoint)
        self.tls = tls
        self.cert = self.key = None
        if tls:
            self.cert, self.key = self._make_cert()
        self.server = self._make_server()
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http",
                                          self.server.server_address[1])
        self.http_thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                            name="kube-api")
        self.http_thread.start()
        self.ctl_thread = threading.Thread(target=self._controller, daemon=True,
                                           name="kube-controller")
        self.ctl_thread.start()

    # ----- setup helpers for tests -----

    def _make_cert(self):
        cert = os.path.join(self.dir, "apiserver.crt")
        key = os.path.join(self.dir, "apiserver.key")
        import subprocess
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj",
                        "/CN=kube-apiserver", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        return cert, key

    def _make_server(self):
        double = self

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                # a client that refuses our certificate or hangs up is the
                # client's business (tests check what the client says)
                pass

        srv = Server(("127.0.0.1", 0), _make_handler(double))
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self.key)
            if self.client_ca:
                ctx.verify_mode = ssl.CERT_OPTIONAL
                ctx.load_verify_locations(self.client_ca)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                         do_handshake_on_connect=False)
        return srv

    def add_namespace(self, ns):
        with self.lock:
            self.namespaces[ns] = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                             "resourceVersion": str(self._next_rv()),
                             "creationTimestamp": now_iso(),
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def create(self, ns, resource, obj):
        """Stores obj as a POST would (test setup: no auth, no RBAC)."""
        with self.lock:
            code, body = self._create(ns, resource, copy.deepcopy(obj))
            if code >= 300:
                raise RuntimeError(body["message"])
            return body

    def update(self, ns, resource, name, fn):
        """Changes a stored object as another client's PUT would: fn(obj)
        edits a copy, the result is stored with a new resourceVersion."""
        with self.lock:
            old = self._objs(resource, ns)[name]
            new = copy.deepcopy(old)
            fn(new)
            code, body = self._replace(resource, ns, name, new, old)
            if code >= 300:
                raise RuntimeError(body["message"])
            return body

    def get(self, ns, resource, name):
        with self.lock:
            o = self._objs(resource, ns).get(name)
            return copy.deepcopy(o) if o else None

    def list(self, ns, resource, selector=""):
        reqs = parse_selector(selector)
        with self.lock:
            return [copy.deepcopy(o) for o in self._objs(resource, ns).values()
                    if selector_matches(reqs, o["metadata"].get("labels"))]

    def restrict(self, allowed):
        """RBAC: only these (verb, group, resource) triples are allowed, and
        (verb, group, resource, name) for one object (a rule's resourceNames)."""
        with self.lock:
            self.rbac = set(allowed)

    def allow_all(self):
        with self.lock:
            self.rbac = None

    def deny(self, verb, group, resource):
        with self.lock:
            if self.rbac is None:
                self.rbac = {(v, g, r) for v in ALL_VERBS
                             for g, r in (("apps", "deployments"), ("apps", "deployments/scale"),
                                          ("", "services"), ("", "pods"), ("", "pods/proxy"),
                                          ("", "namespaces"), ("", "configmaps"),
                                          ("", "secrets"),
                                          (EVENTS_GROUP, "events"), ("", "events"))}
            self.rbac.discard((verb, group, resource))

    def inject(self, method=None, path=".*", status=None, reason=None, message=None,
               delay=0.0, times=1, silent_watch=False, close=False, body=None):
        """The next `times` requests matching method and the path regex get
        `status` (with a Status body), or wait `delay` seconds first, or (for a
        watch) stay open sending nothing, or are cut without an answer, or get
        `body` (bytes, text/html) with `status` (a proxy's page)."""
        f = {"method": method, "path": re.compile(path), "status": status,
             "reason": reason, "message": message, "delay": delay, "times": times,
             "silent_watch": silent_watch, "close": close, "body": body, "hits": 0}
        with self.lock:
            self.faults.append(f)
        return f

    def secret(self, ns, name, data):
        """Creates Secret name with data (str values), as
        `kubectl create secret generic NAME --from-literal=KEY=VALUE...`."""
        return self.create(ns, "secrets", {"apiVersion": "v1", "kind": "Secret",
                                           "metadata": {"name": name}, "type": "Opaque",
                                           "stringData": dict(data)})

    def set_token(self, token, user=None):
        with self.lock:
            self.tokens = {token: user or "system:serviceaccount:rainbow:rainbow"}

    def compact(self):
        """Forgets the watch history (as etcd compaction does): older
        resourceVersions now get 410 Gone."""
        with self.lock:
            self.compacted_rv = self.rv
            self.events = []

    def service_address(self, ns, name, port=None):
        """(host, port) of the forwarder of a Service port (first port if None)."""
        with self.lock:
            svc = self._objs("services", ns).get(name)
            if not svc:
                raise KeyError(name)
            ports = svc["spec"].get("ports") or []
            p = ports[0] if port is None else next(
                x for x in ports if x.get("name") == port or x.get("port") == port)
            key = (ns, name, p["port"])
        hp = self.forwarder.listen(key)
        return ("127.0.0.1", hp)

    def pod_runtime(self, ns, name):
        return self.runtime.get((ns, name))

    def k8s_events_list(self, ns):
        """Every Event stored in ns (events.k8s.io/v1 form), by name."""
        with self.lock:
            return [copy.deepcopy(e) for _, e in sorted(self.k8s_events.get(ns, {}).items())]

    def requests_matching(self, method, path_re):
        r = re.compile(path_re)
        with self.lock:
            return [x for x in self.requests if x[0] == method and r.search(x[1])]

    def sanitizer_reports(self):
        out = []
        for rt in list(self.runtime.values()) + list(getattr(self, "_dead", [])):
            for p in rt.procs:
                rep = p.sanitizer_report()
                if rep:
                    out.append("%s: %s" % (rt.name, rep))
        return out

    def stop(self):
        self.stopping = True
        self.server.shutdown()
        self.server.server_close()
        with self.cond:
            self.cond.notify_all()
        self.ctl_thread.join(10)
        procs = []
        with self.lock:
            for rt in self.runtime.values():
                if rt.proc and rt.proc.alive():
                    rt.proc.signal(signal.SIGTERM)
                    procs.append(rt.proc)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except Exception:
                p.stop(signal.SIGKILL, 5)
        self.forwarder.stop()

    # ----- the store -----

    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _objs(self, resource, ns):
        kind, (group, _) = KINDS[resource]
        return self.store.setdefault((group, resource), {}).setdefault(ns, {})

    def _emit(self, resource, ns, typ, obj):
        group = KINDS[resource][1][0]
        self.events.append((int(obj["metadata"]["resourceVersion"]), (group, resource), ns,
                            typ, copy.deepcopy(obj)))
        if len(self.events) > self.history:
            drop = len(self.events) - self.history
            self.compacted_rv = self.events[drop - 1][0]
            del self.events[:drop]
        self.cond.notify_all()

    def _stamp(self, resource, ns, obj, old=None):
        kind, (group, version) = KINDS[resource]
        obj["apiVersion"] = "%s/%s" % (group, version) if group else version
        obj["kind"] = kind
        md = obj.setdefault("metadata", {})
        md["namespace"] = ns
        if old:
            md["uid"] = old["metadata"]["uid"]
            md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            md["generation"] = old["metadata"].get("generation", 1)
            if json.dumps(old.get("spec"), sort_keys=True) != \
                    json.dumps(obj.get("spec"), sort_keys=True):
                md["generation"] += 1
            if "deletionTimestamp" in old["metadata"]:
                md["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        else:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_iso()
            md["generation"] = 1
        md["resourceVersion"] = str(self._next_rv())
        if not md.get("labels"):
            md.pop("labels", None)
        if not md.get("annotations"):
            md.pop("annotations", None)

    def _defaults(self, resource, obj):
        spec = obj.setdefault("spec", {})
        if resource == "deployments":
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxUnavailable": "25%", "maxSurge": "25%"}})
            tspec = spec.setdefault("template", {}).setdefault("spec", {})
            tspec.setdefault("restartPolicy", "Always")
            tspec.setdefault("terminationGracePeriodSeconds", 30)
            tspec.setdefault("dnsPolicy", "ClusterFirst")
            obj.setdefault("status", {})
        elif resource == "services":
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec.get("clusterIP") != "None":
                spec.setdefault("clusterIP", "10.96.%d.%d" % (random.randint(0, 255),
                                                             random.randint(1, 254)))
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
            obj.setdefault("status", {"loadBalancer": {}})

    def _validate(self, resource, obj):
        """The few validation rules rainbow could trip over (422 Invalid)."""
        name = obj.get("metadata", {}).get("name", "")
        if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name) or len(name) > 253:
            return "metadata.name: Invalid value: %r: a lowercase RFC 1123 subdomain" % name
        for k, v in (obj["metadata"].get("labels") or {}).items():
            if len(v) > 63:
                return "metadata.labels: Invalid value: %r: must be no more than 63 " \
                       "characters" % v
        if resource == "deployments":
            sel = (obj["spec"].get("selector") or {}).get("matchLabels")
            if not sel:
                return "spec.selector: Required value"
            tl = obj["spec"]["template"].get("metadata", {}).get("labels") or {}
            if not map_matches(sel, tl):
                return "spec.template.metadata.labels: Invalid value: %s: `selector` does " \
                       "not match template `labels`" % json.dumps(tl)
            if not obj["spec"]["template"]["spec"].get("containers"):
                return "spec.template.spec.containers: Required value"
            if not isinstance(obj["spec"].get("replicas"), int) or obj["spec"]["replicas"] < 0:
                return "spec.replicas: Invalid value: must be greater than or equal to 0"
        if resource == "pods":
            cost = (obj["metadata"].get("annotations") or {}).get(DELETION_COST)
            if cost is not None:
                try:
                    c = int(cost)
                    if c < -2147483648 or c > 2147483647:
                        raise ValueError
                except ValueError:
                    return "metadata.annotations: Invalid value: %r: must be a 32bit integer" \
                           % cost
        return None

    def _create(self, ns, resource, obj):
        kind, (group, _) = KINDS[resource]
        if ns not in self.namespaces:
            return 404, status_body(404, "NotFound", 'namespaces "%s" not found' % ns,
                                    name=ns, kind="namespaces")
        name = obj.get("metadata", {}).get("name")
        objs = self._objs(resource, ns)
        if name in objs:
            return 409, status_body(409, "AlreadyExists", '%s "%s" already exists'
                                    % (qualified(resource, group), name), name=name,
                                    group=group, kind=resource)
        obj.setdefault("metadata", {}).pop("resourceVersion", None)
        self._defaults(resource, obj)
        err = self._validate(resource, obj)
        if err:
            return 422, status_body(422, "Invalid", '%s %s "%s" is invalid: %s'
                                    % (kind, "", name, err), name=name, group=group,
                                    kind=kind)
        if resource == "deployments":
            obj["status"] = {}
        if resource == "secrets":
            # as the API server does: stringData merged into data, base64
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(v.encode()).decode()
            obj.setdefault("type", "Opaque")
        self._stamp(resource, ns, obj)
        objs[name] = obj
        self._emit(resource, ns, "ADDED", obj)
        if resource == "services":
            self._sync_service_listeners(ns, obj)
        return 201, obj

    def _replace(self, resource, ns, name, new, old):
        """Stores new over old (update/patch); the rv precondition is checked by
        the caller."""
        kind, (group, _) = KINDS[resource]
        if new.get("metadata", {}).get("name", name) != name:
            return 400, status_body(400, "BadRequest", "the name of the object (%s) does not "
                                    "match the name on the URL (%s)"
                                    % (new["metadata"]["name"], name))
        new.setdefault("metadata", {})["name"] = name
        if resource in ("deployments", "services", "pods"):
            new["status"] = copy.deepcopy(old.get("status", {}))
        self._defaults(resource, new)
        err = self._validate(resource, new)
        if err:
            return 422, status_body(422, "Invalid", '%s "%s" is invalid: %s'
                                    % (kind, name, err), name=name, group=group, kind=kind)
        if resource == "pods":
            if json.dumps(new.get("spec"), sort_keys=True) != \
                    json.dumps(old.get("spec"), sort_keys=True):
                return 422, status_body(422, "Invalid", 'Pod "%s" is invalid: spec: '
                                        'Forbidden: pod updates may not change fields other '
                                        'than `spec.containers[*].image`...' % name,
                                        name=name, kind="Pod")
        self._stamp(resource, ns, new, old)
        self._objs(resource, ns)[name] = new
        self._emit(resource, ns, "MODIFIED", new)
        if resource == "services":
            self._sync_service_listeners(ns, new)
        return 200, new

    def _sync_service_listeners(self, ns, svc):
        if svc["spec"].get("clusterIP") == "None" or not svc["spec"].get("selector"):
            return
        for p in svc["spec"].get("ports") or []:
            self.forwarder.listen((ns, svc["metadata"]["name"], p["port"]))

    # ----- endpoints (kube-proxy's view) -----

    def _pick_endpoint(self, key):
        ns, name, port = key
        with self.lock:
            svc = self._objs("services", ns).get(name)
            if not svc:
                return None
            sp = next((p for p in svc["spec"].get("ports") or [] if p["port"] == port), None)
            sel = svc["spec"].get("selector")
            cands = []
            for pod in self._objs("pods", ns).values():
                if "deletionTimestamp" in pod["metadata"]:
                    continue
                if not map_matches(sel, pod["metadata"].get("labels")):
                    continue
                rt = self.runtime.get((ns, pod["metadata"]["name"]))
                if not rt or not rt.ready or sp is None:
                    continue
                hp = rt.host_port(sp.get("targetPort", port))
                if hp:
                    cands.append(("127.0.0.1", hp))
            if not cands:
                return None
            return random.choice(cands)

    # ----- the controller: deployments -> pods -> processes -----

    def _controller(self):
        while not self.stopping:
            try:
                self._reconcile()
            except Exception as e:  # keep the double alive; tests see the log
                import traceback
                traceback.print_exc()
                print("kubedouble controller error:", e, flush=True)
            time.sleep(0.05)

    def _reconcile(self):
        starts = []
        with self.lock:
            for ns in list(self.namespaces):
                deps = self._objs("deployments", ns)
                pods = self._objs("pods", ns)
                for dname, d in list(deps.items()):
                    mine = [p for p in pods.values()
                            if p["metadata"].get("labels", {}).get("rainbow-double/owner")
                            == d["metadata"]["uid"]]
                    live = [p for p in mine if "deletionTimestamp" not in p["metadata"]]
                    want = d["spec"].get("replicas", 1)
                    if len(live) < want:
                        for _ in range(want - len(live)):
                            starts.append(self._new_pod(ns, d))
                    elif len(live) > want:
                        for p in self._rank_for_deletion(ns, live)[:len(live) - want]:
                            self._delete_pod(ns, p["metadata"]["name"])
                    self._update_deploy_status(ns, d, mine)
                # garbage collection: pods whose Deployment is gone
                uids = {d["metadata"]["uid"] for d in deps.values()}
                for p in list(pods.values()):
                    owner = p["metadata"].get("labels", {}).get("rainbow-double/owner")
                    if owner and owner not in uids and "deletionTimestamp" not in p["metadata"] \
                            and not p["metadata"].get("annotations", {}).get(
                                "rainbow-double/orphaned"):
                        self._delete_pod(ns, p["metadata"]["name"])
                self._write_peers(ns)
        for rt in starts:
            self._start_process(rt)
        self._tend_processes()

    def _rank_for_deletion(self, ns, pods):
        def key(p):
            rt = self.runtime.get((ns, p["metadata"]["name"]))
            ready = 1 if rt and rt.ready else 0
            started = 1 if rt and rt.proc else 0
            try:
                cost = int((p["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
            except ValueError:
                cost = 0
            since = rt.ready_since if rt and rt.ready_since else 0
            # ReplicaSet ranking: pending < running, not ready < ready, lower
            # deletion cost first, ready for less time first, newer first
            return (started, ready, cost, -since, -(rt.created if rt else 0))
        return sorted(pods, key=key)

    def _new_pod(self, ns, d):
        tpl = copy.deepcopy(d["spec"]["template"])
        h = "%010x" % (abs(hash(json.dumps(tpl, sort_keys=True))) % (1 << 40))
        h = "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16) % 27] for c in h)
        rs = "%s-%s" % (d["metadata"]["name"], h)
        while True:
            name = "%s-%s" % (rs, "".join(random.choice("bcdfghjklmnpqrstvwxz2456789")
                                          for _ in range(5)))
            if name not in self._objs("pods", ns):
                break
        md = tpl.get("metadata") or {}
        labels = dict(md.get("labels") or {})
        labels["pod-template-hash"] = h
        labels["rainbow-double/owner"] = d["metadata"]["uid"]
        pod = {"metadata": {"name": name, "namespace": ns, "labels": labels,
                            "annotations": dict(md.get("annotations") or {}),
                            "generateName": rs + "-",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": rs, "uid": str(uuid.uuid4()),
                                                 "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": tpl.get("spec") or {},
               "status": {"phase": "Pending", "conditions": [
                   {"type": "PodScheduled", "status": "True"},
                   {"type": "Ready", "status": "False"}], "qosClass": "Burstable"}}
        pod["spec"]["nodeName"] = "double-node"
        self._stamp("pods", ns, pod)
        self._objs("pods", ns)[name] = pod
        self._emit("pods", ns, "ADDED", pod)
        rt = PodRuntime(ns, name)
        rt.created = time.monotonic()
        rt.grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        c = pod["spec"]["containers"][0]
        for p in c.get("ports") or []:
            rt.ports[p["containerPort"]] = harness.free_port()
            if p.get("name"):
                rt.named[p["name"]] = p["containerPort"]
        rp = c.get("readinessProbe") or {}
        if "httpGet" in rp:
            rt.probe = (rp["httpGet"].get("path", "/"), rp["httpGet"].get("port"))
        rt.argv, rt.env = self._command(ns, pod, c, rt)
        self.runtime[(ns, name)] = rt
        return rt

    def _command(self, ns, pod, c, rt):
        """chatd argv and env from the container spec, listen addresses mapped
        to this pod's loopback ports."""
        env = {}
        cms = self._objs("configmaps", ns)
        for ef in c.get("envFrom") or []:
            ref = (ef.get("configMapRef") or {}).get("name")
            if ref and ref in cms:
                for k, v in (cms[ref].get("data") or {}).items():
                    env[ef.get("prefix", "") + k] = v
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)),
                                        e["value"])
            elif "valueFrom" in e:
                vf = e["valueFrom"]
                fp = (vf.get("fieldRef") or {}).get("fieldPath")
                if fp == "metadata.name":
                    env[e["name"]] = pod["metadata"]["name"]
                elif fp == "metadata.namespace":
                    env[e["name"]] = ns
                elif fp in ("status.podIP", "status.hostIP"):
                    env[e["name"]] = "127.0.0.1"
                elif "configMapKeyRef" in vf:
                    r = vf["configMapKeyRef"]
                    v = (cms.get(r.get("name")) or {}).get("data", {}).get(r.get("key"))
                    if v is not None:
                        env[e["name"]] = v
        ports = {"listen": None, "http": None, "cluster-listen": None, "websocket": None}
        for name, key in (("xmpp", "listen"), ("client", "listen"), ("http", "http"),
                          ("metrics", "http"), ("cluster", "cluster-listen"),
                          ("xmpp-ws", "websocket")):
            if name in rt.named:
                ports[key] = rt.ports[rt.named[name]]

        def mapped(addr, key):
            try:
                port = int(addr.rsplit(":", 1)[1])
            except (IndexError, ValueError):
                port = None
            hp = rt.ports.get(port) if port is not None else None
            hp = hp or ports.get(key) or harness.free_port()
            return "127.0.0.1:%d" % hp

        for key, var in (("listen", "CHATD_LISTEN"), ("http", "CHATD_HTTP"),
                         ("cluster-listen", "CHATD_CLUSTER_LISTEN"),
                         ("websocket", "CHATD_WEBSOCKET")):
            if var in env and key == "websocket" and not env[var]:
                continue  # "" turns the listener off
            if var in env:
                env[var] = mapped(env[var], key)
            elif ports[key]:
                env[var] = "127.0.0.1:%d" % ports[key]
        args = list(c.get("args") or [])
        i = 0
        while i < len(args):
            a = args[i]
            for key in ("listen", "http", "cluster-listen", "websocket"):
                if a == "--" + key and i + 1 < len(args):
                    args[i + 1] = mapped(args[i + 1], key)
                elif a.startswith("--%s=" % key):
                    args[i] = "--%s=%s" % (key, mapped(a.split("=", 1)[1], key))
            i += 1
        # secret volumes: the Secret's keys as files in a private directory
        vols = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
        for vm in c.get("volumeMounts") or []:
            sec = (vols.get(vm.get("name")) or {}).get("secret") or {}
            data = (self._objs("secrets", ns).get(sec.get("secretName")) or {}).get("data")
            mp = (vm.get("mountPath") or "").rstrip("/")
            if data is None or not mp:
                continue
            host = os.path.join(self.dir, "volumes", pod["metadata"]["name"], vm["name"])
            os.makedirs(host, mode=0o700, exist_ok=True)
            for k, v in data.items():
                fp = os.path.join(host, k)
                with open(fp, "wb") as f:
                    f.write(base64.b64decode(v))
                os.chmod(fp, 0o600)

            def remount(v, mp=mp, host=host):
                return host + v[len(mp):] if v == mp or v.startswith(mp + "/") else v
            env = {k: remount(v) for k, v in env.items()}
            args = [a.split("=", 1)[0] + "=" + remount(a.split("=", 1)[1])
                    if a.startswith("--") and "=" in a else remount(a) for a in args]

        # DNS and kube-proxy: a Service's name leads to its forwarder
        def service(addr):
            host, _, port = addr.rpartition(":")
            parts = host.split(".")
            if not port.isdigit() or not (len(parts) == 1 or parts[1:] in (
                    [ns], [ns, "svc"], [ns, "svc", "cluster", "local"])):
                return addr
            svc = self._objs("services", ns).get(parts[0])
            if not svc or not any(p.get("port") == int(port)
                                  for p in svc["spec"].get("ports") or []):
                return addr
            return "127.0.0.1:%d" % self.forwarder.listen((ns, parts[0], int(port)))
        if env.get("CHATD_SERVICE_ADDRESS"):
            env["CHATD_SERVICE_ADDRESS"] = service(env["CHATD_SERVICE_ADDRESS"])
        for i, a in enumerate(args):
            if a.startswith("--service-address="):
                args[i] = "--service-address=" + service(a.split("=", 1)[1])
            elif a == "--service-address" and i + 1 < len(args):
                args[i + 1] = service(args[i + 1])
        # cluster routing between pods: DNS is not available here, a peers file is
        if "CHATD_CLUSTER_LISTEN" in env:
            env.pop("CHATD_PEERS_DNS", None)
            env["CHATD_PEERS_FILE"] = self._peers_path(ns)
            sf = env.get("CHATD_CLUSTER_SECRET_FILE")
            if not sf or not os.path.exists(sf):
                env["CHATD_CLUSTER_SECRET_FILE"] = self.secret_file
        env.setdefault("CHATD_LOG_LEVEL", "warn")
        return [self.chatd] + args, env

    def _peers_path(self, ns):
        p = os.path.join(self.dir, "peers-%s" % ns)
        if not os.path.exists(p):
            open(p, "w").close()
        return p

    def _write_peers(self, ns):
        lines = []
        for (pns, _), rt in sorted(self.runtime.items()):
            if pns == ns and rt.proc and rt.term_at is None and rt.env and \
                    "CHATD_CLUSTER_LISTEN" in rt.env:
                lines.append(rt.env["CHATD_CLUSTER_LISTEN"])
        text = "".join(x + "\n" for x in lines)
        if self.peers_files.get(ns) != text:
            path = self._peers_path(ns)
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            self.peers_files[ns] = text

    def _start_process(self, rt):
        if not self.chatd:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
        env.update(rt.env)
        rt.proc = harness.Proc(rt.argv, env=env, name=rt.name)
        # harness.Proc merges os.environ: remove inherited CHATD_* by argv env
        rt.procs.append(rt.proc)
        rt.started_at = time.monotonic()

    def _delete_pod(self, ns, name, grace=None):
        pod = self._objs("pods", ns).get(name)
        if not pod or "deletionTimestamp" in pod["metadata"]:
            return
        rt = self.runtime.get((ns, name))
        g = grace if grace is not None else pod["spec"].get("terminationGracePeriodSeconds", 30)
        pod["metadata"]["deletionTimestamp"] = now_iso()
        pod["metadata"]["deletionGracePeriodSeconds"] = g
        pod["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit("pods", ns, "MODIFIED", pod)
        if rt:
            rt.grace = g
            rt.term_at = time.monotonic()
            rt.ready = False
            if rt.proc and rt.proc.alive():
                rt.proc.signal(signal.SIGTERM)

    def _finish_pod(self, ns, name):
        pod = self._objs("pods", ns).pop(name, None)
        rt = self.runtime.pop((ns, name), None)
        if rt:
            if not hasattr(self, "_dead"):
                self._dead = []
            self._dead.append(rt)
        if pod:
            pod["metadata"]["resourceVersion"] = str(self._next_rv())
            self._emit("pods", ns, "DELETED", pod)

    def _probe(self, rt):
        if not rt.proc or not rt.proc.alive():
            return False
        if rt.probe is None:
            return True
        path, port = rt.probe
        hp = rt.host_port(port)
        if not hp:
            return False
        st, _ = harness.http_get("http://127.0.0.1:%d%s" % (hp, path), timeout=0.5)
        return 200 <= st < 400

    def _tend_processes(self):
        with self.lock:
            items = list(self.runtime.items())
        for (ns, name), rt in items:
            if rt.term_at is not None:
                if not rt.proc or not rt.proc.alive():
                    with self.lock:
                        self._finish_pod(ns, name)
                elif time.monotonic() - rt.term_at > rt.grace:
                    rt.proc.signal(signal.SIGKILL)
                continue
            if rt.proc and not rt.proc.alive():
                # the kubelet restarts the container, with a back-off
                rt.restarts += 1
                rt.proc = None
                rt.ready = False
                rt.next_start = time.monotonic() + min(0.5 * (2 ** (rt.restarts - 1)), 5.0)
            if rt.proc is None and self.chatd and time.monotonic() >= rt.next_start:
                self._start_process(rt)
            ready = self._probe(rt)
            with self.lock:
                pod = self._objs("pods", ns).get(name)
                if not pod or rt.term_at is not None:
                    continue
                changed = ready != rt.ready
                rt.ready = ready
                if ready and changed:
                    rt.ready_since = time.monotonic()
                phase = "Running" if rt.proc else "Pending"
                st = pod["status"]
                if changed or st.get("phase") != phase or \
                        st.get("restarts") != rt.restarts:
                    st["phase"] = phase
                    st["podIP"] = "127.0.0.1"
                    st["podIPs"] = [{"ip": "127.0.0.1"}]
                    st["hostIP"] = "127.0.0.1"
                    st.setdefault("startTime", now_iso())
                    cond = "True" if ready else "False"
                    st["conditions"] = [
                        {"type": "PodScheduled", "status": "True"},
                        {"type": "Initialized", "status": "True"},
                        {"type": "ContainersReady", "status": cond},
                        {"type": "Ready", "status": cond}]
                    c = pod["spec"]["containers"][0]
                    st["containerStatuses"] = [{
                        "name": c.get("name", "chatd"), "ready": ready,
                        "restartCount": rt.restarts, "started": bool(rt.proc),
                        "image": c.get("image", ""), "imageID": "",
                        "state": {"running": {"startedAt": now_iso()}} if rt.proc else
                        {"waiting": {"reason": "CrashLoopBackOff"}}}]
                    st["restarts"] = rt.restarts
                    pod["metadata"]["resourceVersion"] = str(self._next_rv())
                    self._emit("pods", ns, "MODIFIED", pod)

    def _update_deploy_status(self, ns, d, mine):
        live = [p for p in mine if "deletionTimestamp" not in p["metadata"]]
        ready = sum(1 for p in live
                    if (self.runtime.get((ns, p["metadata"]["name"])) or PodRuntime(ns, "")).ready)
        want = d["spec"].get("replicas", 1)
        st = {"observedGeneration": d["metadata"].get("generation", 1),
              "replicas": len(live), "updatedReplicas": len(live),
              "readyReplicas": ready, "availableReplicas": ready,
              "unavailableReplicas": max(want - ready, 0)}
        st = {k: v for k, v in st.items() if v or k == "observedGeneration"}
        cond = [{"type": "Available",
                 "status": "True" if ready >= want - 0 else "False",
                 "reason": "MinimumReplicasAvailable" if ready >= want else
                 "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"
                 if ready >= want else "ReplicaSetUpdated"}]
        st["conditions"] = cond
        old = d.get("status") or {}
        if json.dumps(old, sort_keys=True) != json.dumps(st, sort_keys=True):
            d["status"] = st
            d["metadata"]["resourceVersion"] = str(self._next_rv())
            self._emit("deployments", ns, "MODIFIED", d)


# ---------- HTTP ----------

def _make_handler(double):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kubedouble"

        def log_message(self, fmt, *args):
            pass

        # --- plumbing ---
        def _send(self, code, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode() + b"\n"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code, reason, message, **kw):
            self._send(code, status_body(code, reason, message, **kw))

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return raw

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_DELETE(self):
            self._handle("DELETE")

        def _user(self):
            auth = self.headers.get("Authorization", "")
            with double.lock:
                if auth.startswith("Bearer ") and auth[7:] in double.tokens:
                    return double.tokens[auth[7:]]
            if double.client_ca and isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                if cert:
                    for rdn in cert.get("subject", ()):
                        for k, v in rdn:
                            if k == "commonName":
                                return v
            return None

        def _handle(self, method):
            u = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
            raw = self._body()
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            with double.lock:
                double.requests.append((method, self.path, ctype, raw.decode(errors="replace")))
                fault = None
                for f in double.faults:
                    if f["times"] > 0 and (f["method"] in (None, method)) and \
                            f["path"].search(self.path):
                        f["times"] -= 1
                        f["hits"] += 1
                        fault = f
                        break
            if fault:
                if fault["delay"]:
                    time.sleep(fault["delay"])
                if fault["close"]:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault["body"] is not None:
                    self._send(fault["status"] or 200, fault["body"], "text/html")
                    return
                if fault["status"]:
                    code = fault["status"]
                    reason = fault["reason"] or {500: "InternalError", 503: "ServiceUnavailable",
                                                 504: "Timeout", 409: "Conflict",
                                                 429: "TooManyRequests"}.get(code, "")
                    msg = fault["message"] or {
                        500: "Internal error occurred: injected",
                        503: "the server is currently unable to handle the request",
                        409: "Operation cannot be fulfilled: the object has been modified; "
                             "please apply your changes to the latest version and try again"
                    }.get(code, "injected fault")
                    self._status(code, reason, msg)
                    return
            user = self._user()
            if user is None:
                self._status(401, "Unauthorized", "Unauthorized")
                return
            try:
                self._route(method, u.path, q, raw, ctype, user,
                            fault["silent_watch"] if fault else False)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        # --- routing ---
        def _route(self, method, path, q, raw, ctype, user, silent):
            m = re.match(r"^/api/v1/namespaces/([^/]+)$", path)
            if m:
                if method != "GET":
                    return self._status(405, "MethodNotAllowed", "method not allowed")
                ns = m.group(1)
                if not self._allowed(user, "get", "", "namespaces", None, ns):
                    return
                with double.lock:
                    obj = copy.deepcopy(double.namespaces.get(ns))
                if not obj:
                    return self._status(404, "NotFound", 'namespaces "%s" not found' % ns,
                                        name=ns, kind="namespaces")
                return self._send(200, obj)
            m = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/:]+)(?::([^/]+))?/proxy(/.*)?$",
                         path)
            if m:
                return self._proxy(method, m.group(1), m.group(2), m.group(3),
                                   m.group(4) or "/", user, raw)
            m = re.match(r"^/(api/v1|apis/events\.k8s\.io/v1)/namespaces/([^/]+)/events"
                         r"(?:/([^/]+))?$", path)
            if m:
                return self._events(method, m.group(1) == "api/v1", m.group(2), m.group(3),
                                    q, raw, user)
            m = re.match(r"^/(api/v1|apis/apps/v1)/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?"
                         r"(?:/(scale|status))?$", path)
            if not m:
                return self._status(404, "NotFound", "the server could not find the requested "
                                    "resource")
            api, ns, resource, name, sub = m.groups()
            if resource not in KINDS or KINDS[resource][1][0] != ("apps" if api != "api/v1"
                                                                 else ""):
                return self._status(404, "NotFound", "the server could not find the requested "
                                    "resource")
            group = KINDS[resource][1][0]
            if sub == "scale" and resource != "deployments":
                return self._status(404, "NotFound", "the server could not find the requested "
                                    "resource")
            res_name = resource + ("/" + sub if sub else "")
            if name is None:
                if method == "GET":
                    verb = "watch" if q.get("watch") in ("true", "1") else "list"
                elif method == "POST":
                    verb = "create"
                else:
                    return self._status(405, "MethodNotAllowed", "method not allowed")
            else:
                verb = {"GET": "get", "PUT": "update", "PATCH": "patch",
                        "DELETE": "delete"}.get(method)
                if verb is None:
                    return self._status(405, "MethodNotAllowed", "method not allowed")
            if not self._allowed(user, verb, group, res_name, name, ns):
                return
            try:
                reqs = parse_selector(q.get("labelSelector", ""))
            except ValueError as e:
                return self._status(400, "BadRequest", "unable to parse requirement: %s" % e)
            if verb == "watch":
                return self._watch(ns, resource, reqs, q, silent)
            with double.lock:
                if verb == "list":
                    objs = double._objs(resource, ns)
                    items = [copy.deepcopy(o) for _, o in sorted(objs.items())
                             if selector_matches(reqs, o["metadata"].get("labels"))]
                    kind = KINDS[resource][0]
                    av = "apps/v1" if group else "v1"
                    return self._send(200, {"kind": kind + "List", "apiVersion": av,
                                            "metadata": {"resourceVersion": str(double.rv)},
                                            "items": items})
                if verb == "create":
                    try:
                        obj = json.loads(raw or b"null")
                    except ValueError as e:
                        return self._status(400, "BadRequest", "json: %s" % e)
                    if not isinstance(obj, dict):
                        return self._status(400, "BadRequest", "Object 'Kind' is missing")
                    code, body = double._create(ns, resource, obj)
                    return self._send(code, body)
                objs = double._objs(resource, ns)
                cur = objs.get(name)
                if cur is None:
                    if ns not in double.namespaces and verb != "get":
                        pass
                    return self._status(404, "NotFound", '%s "%s" not found'
                                        % (qualified(resource, group), name), name=name,
                                        group=group, kind=resource)
                if verb == "get":
                    if sub == "scale":
                        return self._send(200, self._scale_obj(ns, cur))
                    return self._send(200, copy.deepcopy(cur))
                if verb == "delete":
                    return self._delete(ns, resource, group, name, cur, raw, q)
                # update / patch
                base = self._scale_obj(ns, cur) if sub == "scale" else copy.deepcopy(cur)
                try:
                    body = json.loads(raw or b"null")
                except ValueError as e:
                    return self._status(400, "BadRequest", "error decoding patch: %s" % e)
                if verb == "update":
                    new = body
                    if not isinstance(new, dict):
                        return self._status(400, "BadRequest", "Object 'Kind' is missing")
                    if not new.get("metadata", {}).get("resourceVersion"):
                        return self._status(
                            422, "Invalid", '%s "%s" is invalid: metadata.resourceVersion: '
                            'Invalid value: 0x0: must be specified for an update'
                            % (KINDS[resource][0], name), name=name, group=group,
                            kind=KINDS[resource][0])
                else:
                    try:
                        if ctype == "application/merge-patch+json":
                            new = merge_patch(base, body)
                        elif ctype == "application/strategic-merge-patch+json":
                            new = strategic_merge_patch(base, body)
                        elif ctype == "application/json-patch+json":
                            new = json_patch(base, body)
                        else:
                            return self._status(
                                415, "UnsupportedMediaType", 'the body of the request was in '
                                'an unknown format - accepted media types include: '
                                'application/json-patch+json, application/merge-patch+json, '
                                'application/apply-patch+yaml')
                    except (PatchError, KeyError, ValueError, TypeError, IndexError) as e:
                        return self._status(422, "Invalid", "%s" % e)
                    if not isinstance(new, dict):
                        return self._status(422, "Invalid", "patch result is not an object")
                # optimistic concurrency: a resourceVersion in the result must match
                want_rv = (new.get("metadata") or {}).get("resourceVersion")
                if want_rv and want_rv != base["metadata"]["resourceVersion"]:
                    return self._status(
                        409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object '
                        'has been modified; please apply your changes to the latest version '
                        'and try again' % (qualified(resource, group), name), name=name,
                        group=group, kind=resource)
                if sub == "scale":
                    r = (new.get("spec") or {}).get("replicas")
                    if not isinstance(r, int) or r < 0:
                        return self._status(422, "Invalid", 'Scale.autoscaling "%s" is '
                                            'invalid: spec.replicas: Invalid value' % name)
                    full = copy.deepcopy(cur)
                    full["spec"]["replicas"] = r
                    code, out = double._replace(resource, ns, name, full, cur)
                    return self._send(code, self._scale_obj(ns, out) if code == 200 else out)
                code, out = double._replace(resource, ns, name, new, cur)
                return self._send(code, out)

        def _events(self, method, core, ns, name, q, raw, user):
            """Events: events.k8s.io/v1 (create, get, list) and the core/v1 view
            of the same store (get, list)."""
            group = "" if core else EVENTS_GROUP
            if name is None:
                verb = {"GET": "watch" if q.get("watch") in ("true", "1") else "list",
                        "POST": "create"}.get(method)
            else:
                verb = {"GET": "get"}.get(method)
            if verb is None or verb == "watch" or (core and verb == "create"):
                return self._status(405, "MethodNotAllowed",
                                    "the double serves no %s on events" % method)
            if not self._allowed(user, verb, group, "events", name, ns):
                return
            view = event_to_core if core else copy.deepcopy
            av = "v1" if core else "events.k8s.io/v1"
            what = qualified("events", group)
            if verb == "list":
                try:
                    reqs = parse_field_selector(
                        q.get("fieldSelector", ""),
                        EVENT_FIELDS_CORE if core else EVENT_FIELDS_V1)
                    lreqs = parse_selector(q.get("labelSelector", ""))
                except ValueError as e:
                    return self._status(400, "BadRequest", str(e))
                with double.lock:
                    items = [view(e) for _, e in sorted(double.k8s_events.get(ns, {}).items())
                             if event_matches(e, reqs) and
                             selector_matches(lreqs, e["metadata"].get("labels"))]
                    rv = str(double.rv)
                return self._send(200, {"kind": "EventList", "apiVersion": av,
                                        "metadata": {"resourceVersion": rv}, "items": items})
            if verb == "get":
                with double.lock:
                    e = double.k8s_events.get(ns, {}).get(name)
                    e = view(e) if e else None
                if e is None:
                    return self._status(404, "NotFound", '%s "%s" not found' % (what, name),
                                        name=name, group=group, kind="events")
                return self._send(200, e)
            # create (events.k8s.io/v1)
            try:
                ev = json.loads(raw or b"null")
            except ValueError as e:
                return self._status(400, "BadRequest", "json: %s" % e)
            if not isinstance(ev, dict):
                return self._status(400, "BadRequest", "Object 'Kind' is missing")
            if ev.get("apiVersion", av) != av:
                return self._status(400, "BadRequest", "the API version in the data (%s) does "
                                    "not match the expected API version (%s)"
                                    % (ev["apiVersion"], av))
            if ev.get("kind", "Event") != "Event":
                return self._status(400, "BadRequest", "the kind in the data (%s) does not "
                                    "match the expected kind (Event)" % ev["kind"])
            md = ev.setdefault("metadata", {})
            if md.get("namespace", ns) != ns:
                return self._status(400, "BadRequest", "the namespace of the provided object "
                                    "does not match the namespace sent on the request")
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + "".join(
                    random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            try:
                errs = validate_event_v1(ev, ns)
            except ValueError as e:
                return self._status(400, "BadRequest", str(e))
            ename = md.get("name", "")
            if errs:
                msg = errs[0] if len(errs) == 1 else "[%s]" % ", ".join(errs)
                return self._status(422, "Invalid", 'Event.events.k8s.io "%s" is invalid: %s'
                                    % (ename, msg), name=ename, group=group, kind="Event")
            with double.lock:
                if ns not in double.namespaces:
                    return self._status(404, "NotFound", 'namespaces "%s" not found' % ns,
                                        name=ns, kind="namespaces")
                store = double.k8s_events.setdefault(ns, {})
                if ename in store:
                    return self._status(409, "AlreadyExists", '%s "%s" already exists'
                                        % (what, ename), name=ename, group=group,
                                        kind="events")
                ev["apiVersion"], ev["kind"] = av, "Event"
                md["namespace"] = ns
                md["uid"] = str(uuid.uuid4())
                md["resourceVersion"] = str(double._next_rv())
                md["creationTimestamp"] = now_iso()
                store[ename] = ev
                out = copy.deepcopy(ev)
            return self._send(201, out)

        def _scale_obj(self, ns, d):
            sel = (d["spec"].get("selector") or {}).get("matchLabels") or {}
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": d["metadata"]["name"], "namespace": ns,
                                 "uid": d["metadata"]["uid"],
                                 "resourceVersion": d["metadata"]["resourceVersion"],
                                 "creationTimestamp": d["metadata"]["creationTimestamp"]},
                    "spec": {"replicas": d["spec"].get("replicas", 1)},
                    "status": {"replicas": (d.get("status") or {}).get("replicas", 0),
                               "selector": ",".join("%s=%s" % kv for kv in sorted(sel.items()))}}

        def _allowed(self, user, verb, group, resource, name, ns):
            with double.lock:
                rbac = double.rbac
                ok = rbac is None or (verb, group, resource) in rbac or \
                    (name is not None and (verb, group, resource, name) in rbac)
            if ok:
                return True
            what = qualified(resource.split("/")[0], group)
            if name:
                what += ' "%s"' % name
            msg = ('%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s"'
                   % (what, user, verb, resource, group))
            if resource == "namespaces":
                msg += " at the cluster scope"
            else:
                msg += ' in the namespace "%s"' % ns
            self._status(403, "Forbidden", msg, name=name or None, group=group,
                         kind=resource.split("/")[0])
            return False

        def _delete(self, ns, resource, group, name, cur, raw, q):
            try:
                opts = json.loads(raw) if raw else {}
            except ValueError:
                opts = {}
            policy = opts.get("propagationPolicy") or q.get("propagationPolicy") or "Background"
            pre = (opts.get("preconditions") or {}).get("resourceVersion")
            if pre and pre != cur["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": '
                                    'the ResourceVersion in the precondition (%s) does not '
                                    'match the ResourceVersion in record (%s). The object '
                                    'might have been modified' % (qualified(resource, group),
                                                                  name, pre,
                                                                  cur["metadata"][
                                                                      "resourceVersion"]))
            if resource == "pods":
                g = opts.get("gracePeriodSeconds")
                double._delete_pod(ns, name, g)
                return self._send(200, copy.deepcopy(double._objs("pods", ns).get(name, cur)))
            if resource == "deployments" and policy == "Orphan":
                for p in double._objs("pods", ns).values():
                    if p["metadata"].get("labels", {}).get("rainbow-double/owner") == \
                            cur["metadata"]["uid"]:
                        p["metadata"].setdefault("annotations", {})[
                            "rainbow-double/orphaned"] = "true"
            obj = double._objs(resource, ns).pop(name)
            obj["metadata"]["resourceVersion"] = str(double._next_rv())
            double._emit(resource, ns, "DELETED", obj)
            if resource == "services":
                for p in obj["spec"].get("ports") or []:
                    double.forwarder.unlisten((ns, name, p["port"]))
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Success",
                                    "details": {"name": name, "group": group, "kind": resource,
                                                "uid": obj["metadata"]["uid"]}})

        def _proxy(self, method, ns, pod, port, sub, user, raw):
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method)
            if verb is None:
                return self._status(405, "MethodNotAllowed", "method not allowed")
            if not self._allowed(user, verb, "", "pods/proxy", pod, ns):
                return
            with double.lock:
                obj = double._objs("pods", ns).get(pod)
                rt = double.runtime.get((ns, pod))
            if not obj:
                return self._status(404, "NotFound", 'pods "%s" not found' % pod, name=pod,
                                    kind="pods")
            hp = rt.host_port(port if port else (list(rt.ports) or [80])[0]) if rt else None
            if not hp or not rt.proc or not rt.proc.alive():
                return self._status(503, "ServiceUnavailable",
                                    "error trying to reach service: dial tcp 127.0.0.1:%s: "
                                    "connect: connection refused" % (port or ""))
            query = urllib.parse.urlsplit(self.path).query
            url = "http://127.0.0.1:%d%s%s" % (hp, sub, "?" + query if query else "")
            # The API server passes the request's headers on, but the
            # credentials it authenticated (and hop-by-hop ones).
            hdrs = {k: v for k, v in self.headers.items()
                    if k.lower() not in ("authorization", "host", "connection",
                                         "content-length", "transfer-encoding",
                                         "keep-alive", "upgrade")}
            req = urllib.request.Request(url, data=raw if method != "GET" else None,
                                         headers=hdrs, method=method)
            try:
                with urllib.request.urlopen(req, timeout=3) as r:
                    return self._send(r.status, r.read(),
                                      r.headers.get("Content-Type", "text/plain"))
            except urllib.error.HTTPError as e:
                return self._send(e.code, e.read(), e.headers.get("Content-Type", "text/plain"))
            except OSError as e:
                return self._status(503, "ServiceUnavailable",
                                    "error trying to reach service: %s" % e)

        def _watch(self, ns, resource, reqs, q, silent):
            group = KINDS[resource][1][0]
            try:
                timeout = int(q.get("timeoutSeconds") or 1800)
            except ValueError:
                return self._status(400, "BadRequest", "invalid timeoutSeconds")
            deadline = time.monotonic() + timeout
            rv_param = q.get("resourceVersion", "")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(obj):
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            with double.lock:
                if rv_param in ("", "0"):
                    # no resourceVersion: the current state as ADDED, then changes
                    cursor = double.rv
                    initial = [copy.deepcopy(o) for _, o in sorted(
                        double._objs(resource, ns).items())
                        if selector_matches(reqs, o["metadata"].get("labels"))]
                else:
                    try:
                        cursor = int(rv_param)
                    except ValueError:
                        cursor = -1
                    initial = []
                    if cursor < double.compacted_rv:
                        initial = None
            try:
                if initial is None:
                    chunk({"type": "ERROR", "object": status_body(
                        410, "Expired", "too old resource version: %s (%d)"
                        % (rv_param, double.compacted_rv))})
                    self.wfile.write(b"0\r\n\r\n")
                    return
                for o in initial:
                    chunk({"type": "ADDED", "object": o})
                if silent:
                    # a watch that stops delivering and never closes (seen
                    # behind broken proxies): the client must give up itself
                    end = time.monotonic() + 60
                    while time.monotonic() < end and not double.stopping:
                        time.sleep(0.1)
                        self.wfile.write(b"")
                    return
                while time.monotonic() < deadline and not double.stopping:
                    out = []
                    with double.cond:
                        evs = [e for e in double.events if e[0] > cursor and
                               e[1] == (group, resource) and e[2] == ns]
                        if not evs:
                            double.cond.wait(min(0.5, max(0.01, deadline - time.monotonic())))
                            continue
                        for rv, _, _, typ, obj in evs:
                            cursor = max(cursor, rv)
                            if selector_matches(reqs, obj["metadata"].get("labels")):
                                out.append({"type": typ, "object": obj})
                    for e in out:
                        chunk(e)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

    return Handler


def service_object(name, selector, ports, headless=False, publish_not_ready=False):
    """A v1 Service body for tests' setup."""
    spec = {"selector": selector, "ports": ports}
    if headless:
        spec["clusterIP"] = "None"
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def write_kubeconfig(path, server, token=None, ca=None, insecure=False, namespace=None,
                     cert=None, key=None, context="double"):
    """A kubeconfig file for rainbow pointing at the double."""
    lines = ["apiVersion: v1", "kind: Config", "current-context: %s" % context,
             "clusters:", "- name: double", "  cluster:", "    server: %s" % server]
    if ca:
        lines.append("    certificate-authority: %s" % ca)
    if insecure:
        lines.append("    insecure-skip-tls-verify: true")
    lines += ["contexts:", "- name: %s" % context, "  context:", "    cluster: double",
              "    user: rainbow"]
    if namespace:
        lines.append("    namespace: %s" % namespace)
    lines += ["users:", "- name: rainbow", "  user:"]
    if token:
        lines.append("    token: %s" % token)
    if cert:
        lines.append("    client-certificate: %s" % cert)
        lines.append("    client-key: %s" % key)
    if not token and not cert:
        lines.append("    {}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
