"""Monitoring of the chat service (k8s/monitoring/, the pod templates'
scrape annotations), checked against the real tools and a real chatd:

- every metric the alert rules and the Grafana dashboard query exists in
  what a running chatd serves at /metrics (plus Prometheus' own `up` and
  the rules' recorded series);
- `promtool check rules` on the PrometheusRule's groups, `promtool test
  rules` on tests/monitoring/rules-test.yaml (each alert fires when it
  should and not before), and every dashboard query parses as PromQL;
- the dashboard's variables, the rainbow chart stacked, one panel per
  subject;
- `kubectl kustomize k8s/monitoring` renders the PodMonitor, the
  PrometheusRule, the dashboard ConfigMap and the NetworkPolicy, alone and
  as a component of an overlay (skipped, saying why, without kubectl);
- the pod templates carry prometheus.io/scrape|port|path for chatd's http
  port, and rainbow keeps them on the colour's pods.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

import harness

ROOT = harness.ROOT
MON = os.path.join(ROOT, "k8s", "monitoring")
RULES = os.path.join(MON, "prometheusrule.yaml")
DASHBOARD = os.path.join(MON, "rainbow-dashboard.json")
RULES_TEST = os.path.join(ROOT, "tests", "monitoring", "rules-test.yaml")

# Grafana's variables, replaced by values of the right kind to parse the
# dashboard's queries as PromQL.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "3h", "$__interval": "15s",
                "$namespace": "rainbow", "$colour": ".*"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "offset", "bool", "sum", "min", "max", "avg", "count", "stddev",
                "stdvar", "topk", "bottomk", "quantile", "count_values", "group", "inf", "nan"}


def promtool():
    return shutil.which("promtool")


def load_rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_exprs(dash):
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_names(expr):
    """The metric names a PromQL expression reads: identifiers left once
    strings, label matchers, durations, label lists of by/on/..., function
    calls and keywords are taken out."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # a duration's unit (30m) or a number's exponent
        names.add(word)
    return names


def substitute(expr):
    for k, v in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(k, v)
    return expr


class TestMetricNames(unittest.TestCase):
    def test_parser(self):
        self.assertEqual(metric_names(
            'sum by (sha, le) (rate(chatd_a_total{x="b", sha=~"$c"}[5m])) > on (sha) '
            'group_left () 0.5 * max_over_time(chatd_b[1h:1m] offset 30m) and ns:c:sum'),
            {"chatd_a_total", "chatd_b", "ns:c:sum"})

    def test_every_metric_exists_in_chatd(self):
        try:
            chatd = harness.binary("chatd")
        except FileNotFoundError:
            self.skipTest("chatd not built")
        tmp = tempfile.mkdtemp(prefix="rb-mon-")
        self.addCleanup(shutil.rmtree, tmp, True)
        ports = os.path.join(tmp, "ports")
        p = harness.Proc([chatd, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                          "--auth-any", "--ports-file", ports], name="chatd")
        self.addCleanup(p.stop)
        harness.wait_for(lambda: os.path.exists(ports), timeout=10, what="ports file")
        with open(ports) as f:
            http = dict(l.strip().split("=", 1) for l in f if "=" in l)["http"]
        code, body = harness.http_get("http://%s/metrics" % http)
        self.assertEqual(code, 200)
        served = {re.split(r"[{ ]", l, 1)[0] for l in body.splitlines()
                  if l and not l.startswith("#")}
        self.assertIn("chatd_connections", served)

        rules = load_rules()
        recorded = {r["record"] for g in rules["spec"]["groups"] for r in g["rules"]
                    if "record" in r}
        used = {}
        for g in rules["spec"]["groups"]:
            for r in g["rules"]:
                used[r.get("record") or r.get("alert")] = metric_names(r["expr"])
        dash = load_dashboard()
        for p_ in dash["panels"]:
            for t in p_.get("targets", []):
                used["panel %r" % p_["title"]] = metric_names(t["expr"])
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                used["variable %s" % v["name"]] = metric_names(
                    re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"]))
        known = served | recorded | {"up"}
        for where, names in sorted(used.items()):
            self.assertTrue(names, "%s reads no metric" % where)
            self.assertEqual(names - known, set(), "%s reads metrics chatd does not serve"
                             % where)
        # Prometheus' up is only for the scrape itself.
        self.assertEqual([w for w, n in used.items() if "up" in n], ["ChatdMetricsDown"])
        p.stop()
        self.assertIsNone(p.sanitizer_report())


class TestRules(unittest.TestCase):
    def setUp(self):
        if not promtool():
            self.fail("promtool is not installed: run scripts/deps.sh (it installs "
                      "Debian's promtool)")
        self.tmp = tempfile.mkdtemp(prefix="rb-rules-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def promtool(self, *args):
        p = subprocess.run([promtool()] + list(args), capture_output=True, text=True,
                           timeout=120, cwd=self.tmp)
        return p.returncode, p.stdout + p.stderr

    def test_check_and_unit_test_rules(self):
        rules = load_rules()
        self.assertEqual((rules["apiVersion"], rules["kind"]),
                         ("monitoring.coreos.com/v1", "PrometheusRule"))
        alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"]
                  if "alert" in r}
        self.assertEqual(set(alerts), {"RainbowColourDrainingTooLong", "RainbowDrainStalled",
                                       "ChatdConnectionsDropping", "ChatdNotReady",
                                       "ChatdMetricsDown"})
        with open(os.path.join(ROOT, "docs", "kubernetes.md")) as f:
            doc = f.read()
        for name, r in alerts.items():
            self.assertEqual(r["annotations"]["runbook_url"],
                             "docs/kubernetes.md#" + name.lower())
            self.assertIn("\n#### %s\n" % name, doc, "no runbook for %s" % name)
        with open(os.path.join(self.tmp, "chat-rules.yaml"), "w") as f:
            yaml.safe_dump({"groups": rules["spec"]["groups"]}, f, sort_keys=False)
        shutil.copy(RULES_TEST, self.tmp)
        rc, out = self.promtool("check", "rules", "chat-rules.yaml")
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS: 8 rules found", out)
        rc, out = self.promtool("test", "rules", "rules-test.yaml")
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)
        # Every alert has a unit test that expects it to fire.
        with open(RULES_TEST) as f:
            tests = yaml.safe_load(f)
        fired = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", [])
                 if a.get("exp_alerts")}
        self.assertEqual(fired, set(alerts))

    def test_dashboard_queries_parse(self):
        dash = load_dashboard()
        rules = [{"record": "dashboard:q%d" % i, "expr": substitute(e)}
                 for i, e in enumerate(dashboard_exprs(dash))]
        with open(os.path.join(self.tmp, "dash.yaml"), "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        rc, out = self.promtool("check", "rules", "dash.yaml")
        self.assertEqual(rc, 0, out)


class TestDashboard(unittest.TestCase):
    def test_layout_and_variables(self):
        dash = load_dashboard()
        self.assertEqual(dash["uid"], "rainbow-chat")
        var = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual(var["datasource"]["query"], "prometheus")
        self.assertEqual(var["namespace"]["definition"],
                         "label_values(chatd_build_info, namespace)")
        self.assertTrue(var["colour"]["multi"] and var["colour"]["includeAll"])
        self.assertIn('namespace="$namespace"', var["colour"]["definition"])
        titles = {p["title"]: p for p in dash["panels"]}
        chart = titles["Connections per colour (the rainbow chart)"]
        self.assertEqual(chart["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
                         "normal")
        wanted = {"Drain progress": "chatd_connections_accepted_total",
                  "Logins per second": "chatd_logins_total",
                  "Closes per second by reason": "chatd_connections_closed_total",
                  "Stanzas per second": "chatd_stanzas_total",
                  "Stanza errors": "chatd_stanza_errors_total",
                  "Connections per pod": "sum by (pod)"}
        for start, needle in wanted.items():
            ps = [p for t, p in titles.items() if t.startswith(start)]
            self.assertEqual(len(ps), 1, start)
            self.assertIn(needle, " ".join(t["expr"] for t in ps[0]["targets"]), start)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in dash["panels"]:
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            for t in p["targets"]:
                # every query follows the variables
                self.assertIn('namespace="$namespace"', t["expr"], p["title"])
                self.assertIn('sha=~"$colour"', t["expr"], p["title"])


class TestManifests(unittest.TestCase):
    def kustomize(self, d):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl is not installed (Debian has no package for it); "
                          "k8s/monitoring rendering is checked only where kubectl exists")
        p = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(p.stdout)
                if o}

    def test_monitoring_renders(self):
        objs = self.kustomize(MON)
        self.assertEqual(set(objs), {("PodMonitor", "chat"), ("PrometheusRule", "chat"),
                                     ("ConfigMap", "rainbow-dashboard"),
                                     ("NetworkPolicy", "chat-metrics-from-prometheus")})
        for o in objs.values():
            self.assertEqual(o["metadata"]["namespace"], "rainbow")
        pm = objs[("PodMonitor", "chat")]["spec"]
        self.assertEqual(pm["selector"]["matchLabels"], {"app": "chat"})
        self.assertIn({"key": "rainbow.chat/sha", "operator": "Exists"},
                      pm["selector"]["matchExpressions"])
        ep = pm["podMetricsEndpoints"][0]
        self.assertEqual((ep["port"], ep["path"]), ("http", "/metrics"))
        self.assertIn({"sourceLabels": ["__meta_kubernetes_pod_label_rainbow_chat_sha"],
                       "targetLabel": "sha"}, ep["relabelings"])
        cm = objs[("ConfigMap", "rainbow-dashboard")]
        self.assertEqual(cm["metadata"]["labels"], {"grafana_dashboard": "1"})
        self.assertEqual(json.loads(cm["data"]["rainbow-dashboard.json"]), load_dashboard())
        self.assertEqual(objs[("PrometheusRule", "chat")]["spec"], load_rules()["spec"])
        np = objs[("NetworkPolicy", "chat-metrics-from-prometheus")]["spec"]
        self.assertEqual(np["ingress"][0]["ports"], [{"port": "http", "protocol": "TCP"}])

    def test_monitoring_as_a_component(self):
        # components: [monitoring] in an overlay of k8s/production: the
        # overlay's namespace wins.
        tmp = tempfile.mkdtemp(prefix="rb-overlay-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rel = os.path.relpath(os.path.join(ROOT, "k8s"), tmp)
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                    "namespace: chat-prod\nresources:\n  - %s/production\n"
                    "components:\n  - %s/monitoring\n" % (rel, rel))
        objs = self.kustomize(tmp)
        for key in (("PodMonitor", "chat"), ("PrometheusRule", "chat"),
                    ("ConfigMap", "rainbow-dashboard"), ("NetworkPolicy", "chat"),
                    ("NetworkPolicy", "chat-metrics-from-prometheus")):
            self.assertEqual(objs[key]["metadata"]["namespace"], "chat-prod", key)

    def test_scrape_annotations(self):
        for path in ("k8s/pod-template.yaml", "k8s/production/pod-template.yaml"):
            with open(os.path.join(ROOT, path)) as f:
                tpl = yaml.safe_load(f)
            ann = tpl["metadata"]["annotations"]
            http = [p for p in tpl["spec"]["containers"][0]["ports"] if p["name"] == "http"]
            self.assertEqual(ann, {"prometheus.io/scrape": "true",
                                   "prometheus.io/port": str(http[0]["containerPort"]),
                                   "prometheus.io/path": "/metrics"}, path)
        # chatd listens for /metrics on that port in the pods (CHATD_HTTP).
        with open(os.path.join(ROOT, "k8s", "base", "configmap.yaml")) as f:
            cfg = yaml.safe_load(f)
        self.assertTrue(cfg["data"]["CHATD_HTTP"].endswith(":" + ann["prometheus.io/port"]))


def _have(name):
    try:
        harness.binary(name)
        return True
    except FileNotFoundError:
        return False


@unittest.skipUnless(_have("chatd") and _have("kube_ops"), "chatd or kube_ops not built")
class TestColourPodsAnnotated(unittest.TestCase):
    def test_rainbow_keeps_the_annotations(self):
        import kubedouble
        d = kubedouble.KubeDouble(chatd=harness.binary("chatd"), namespace="rainbow")
        self.addCleanup(d.stop)
        tmp = tempfile.mkdtemp(prefix="rb-mon-kube-")
        self.addCleanup(shutil.rmtree, tmp, True)
        d.create("rainbow", "services", kubedouble.service_object(
            "chat", {"app": "chat", "rainbow.chat/sha": "none"}, [{"name": "xmpp", "port": 5222}]))
        kc = kubedouble.write_kubeconfig(os.path.join(tmp, "kubeconfig"), d.url,
                                         token="rainbow-token", namespace="rainbow")
        p = subprocess.run([harness.binary("kube_ops"), "--kubeconfig", kc, "-P",
                            "template=" + os.path.join(ROOT, "k8s", "pod-template.yaml"),
                            "create", "aaaaaaa", "0"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        ann = d.get("rainbow", "deployments", "chat-aaaaaaa")["spec"]["template"]["metadata"][
            "annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(ann["prometheus.io/port"], "5280")
