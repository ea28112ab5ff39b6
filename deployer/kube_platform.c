/*
 * The Kubernetes platform: colours are apps/v1 Deployments, the
 * switch is the client Service's spec.selector, connection counts come from
 * each pod's /metrics. Every piece of state lives in the cluster (labels,
 * annotations, the selector), so a killed rainbow re-run converges.
 *
 * Names and labels (docs/kubernetes.md):
 *   Deployment   chat-<sha>
 *   labels       app=<app> (default "chat") and rainbow.chat/sha=<sha> on the
 *                Deployment, its selector and its pod template: each colour
 *                selects only its own pods.
 *   Service      <service> (default "chat"); rainbow owns its spec.selector:
 *                {app: <app>, rainbow.chat/sha: <selected sha>}; "none"
 *                as the sha selects no pod.
 *   annotations  rainbow.chat/<meta key> on the Deployment (platform meta);
 *                metrics.rainbow.chat/port: chatd's metrics port, recorded at
 *                create so that counts are read right without the template.
 *   preview      chat-<sha>-preview, a Service per colour when -P preview=1.
 *
 * Options (-P KEY=VALUE): service, app, template (pod template file; default
 * $RAINBOW_POD_TEMPLATE or k8s/pod-template.yaml), metrics-port (default: the
 * template's container port named "http" or "metrics", else 8080),
 * metrics-via (proxy | pod-ip; default pod-ip in-cluster, proxy outside),
 * preview (0|1), watch-s (how long list() may wait on a watch for a rollout
 * to move, default 2), retries, backoff-ms, timeout-ms (API requests),
 * control-secret (the Secret holding chatd's control token, key "token";
 * default chat-control).
 *
 * Moving sessions (the assisted drain): POST
 * pods/NAME:PORT/proxy/control/move?count=N through the API server (RBAC:
 * create on pods/proxy; in-cluster: to the pod IP, as /metrics) with the
 * token of the Secret (RBAC: get on that one Secret) that every chatd pod
 * mounts as --control-token-file.
 *
 * Events: every decision rainbow applies becomes an events.k8s.io/v1 Event
 * regarding the colour's Deployment (deployer/kubeevent.c builds it).
 */
#include "kube.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "addr.h"
#include "bodybuf.h"
#include "kubeclient.h"
#include "kubeconfig.h"
#include "kubeevent.h"
#include "kubeyaml.h"
#include "log.h"

#include <openssl/crypto.h>
#include "promtext.h"

#define KUBE_SHA_LABEL "rainbow.chat/sha"
#define KUBE_ANNOT_PREFIX "rainbow.chat/"
#define KUBE_DELETION_COST "controller.kubernetes.io/pod-deletion-cost"
#define KUBE_SELECT_NONE "none"
#define KUBE_PORT_ANNOT "metrics.rainbow.chat/port"
#define KUBE_CONFLICT_RETRIES 5
#define KUBE_METRICS_MAX (1u << 20)
#define KUBE_CONTROL_SECRET "chat-control"
#define KUBE_CONTROL_KEY "token"
#define KUBE_TOKEN_MIN 16 /* chatd's --control-token-file bounds */
#define KUBE_TOKEN_MAX 4096

struct kube {
	struct kubeclient *kc;
	char *ns;
	const char *service;
	const char *app;
	char *template_path;
	json_t *template;     /* the pod template (spec.template), loaded on first create */
	int metrics_port_opt; /* -P metrics-port, 0 when not given */
	int tpl_metrics_port; /* from the template (http/metrics port) or 8080 */
	int via_pod_ip;	      /* read /metrics from pod IPs (in-cluster) */
	int preview;
	int watch_s;
	char last_rv[64];	    /* resourceVersion of the last list; "" when unknown */
	int last_unsettled;	    /* the last list saw a rollout in progress */
	struct kubeevent_uids uids; /* Deployments' uids, for Events */
	char instance[KUBEEVENT_INSTANCE_MAX]; /* Events' reportingInstance */
	int64_t last_event_us;		       /* keeps Event names unique */
	const char *control_secret;	       /* -P control-secret */
	char *control_token; /* read from that Secret on the first move, or NULL */
	size_t control_token_len;
};

/* The value of -P key; when given twice, the last one wins. */
static const char *opt(const struct platform_opts *o, const char *key)
{
	const char *v = NULL;

	for (size_t i = 0; i < o->n_extra; i++)
		if (strcmp(o->extra[i].key, key) == 0)
			v = o->extra[i].value;
	return v;
}

static int opt_int(const struct platform_opts *o, const char *key, int def)
{
	const char *v = opt(o, key);

	return v && *v ? atoi(v) : def;
}

#define KT(verb, res, grp, k, nm) \
	(&(struct kubeclient_target){ (verb), (res), (grp), (k)->ns, (nm) })

/* ---- open / close ---- */

static int check_service(struct platform *p, struct kube *k)
{
	char path[512], err[PLATFORM_ERR_MAX];
	int rc;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", k->ns, k->service);
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				KT("get", "services", "", k, k->service), NULL, err, sizeof(err));
	if (rc != -ENOENT)
		return rc ? platform_error(p, rc == -EPERM ? -EACCES : rc, "%s", err) : 0;
	/* Tell a missing namespace from a missing Service when RBAC lets us look. */
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s", k->ns);
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				&(struct kubeclient_target){ "get", "namespaces", "", NULL, k->ns },
				NULL, err, sizeof(err));
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT,
				      "namespace \"%s\" does not exist: create it "
				      "(kubectl apply -k k8s/) or pass --namespace",
				      k->ns);
	if (rc == 0)
		return platform_error(p, -ENOENT,
				      "Service \"%s\" not found in namespace \"%s\": "
				      "apply k8s/ (kubectl apply -k k8s/) or pass -P service=NAME",
				      k->service, k->ns);
	return platform_error(p, -ENOENT,
			      "Service \"%s\" not found in namespace \"%s\" (the "
			      "namespace may not exist either): apply k8s/ or pass --namespace",
			      k->service, k->ns);
}

static void kube_close(struct platform *p)
{
	struct kube *k = p->ctx;

	if (!k)
		return;
	kubeclient_free(k->kc);
	if (k->control_token)
		OPENSSL_cleanse(k->control_token, k->control_token_len);
	free(k->control_token);
	json_decref(k->template);
	free(k->template_path);
	free(k->ns);
	free(k);
	p->ctx = NULL;
}

static int kube_open(struct platform *p, const struct platform_opts *o)
{
	struct kubeclient_opts copts = { 0 };
	struct kubeconfig cfg;
	struct kube *k;
	const char *v;
	char err[PLATFORM_ERR_MAX];
	int rc;

	k = calloc(1, sizeof(*k));
	if (!k)
		return platform_error(p, -ENOMEM, "out of memory");
	p->ctx = k;
	rc = kubeconfig_auto(&cfg, o->kubeconfig, o->context, err, sizeof(err));
	if (rc)
		return platform_error(p, rc == -ENOENT ? -ENOENT : -EINVAL, "%s", err);
	v = o->namespace && *o->namespace ? o->namespace
	    : cfg.namespace		  ? cfg.namespace
					  : "default";
	k->ns = strdup(v);
	k->via_pod_ip = cfg.source && strcmp(cfg.source, "in-cluster") == 0;
	copts.retries = opt_int(o, "retries", 4);
	copts.backoff_ms = opt_int(o, "backoff-ms", 250);
	copts.timeout_ms = opt_int(o, "timeout-ms", 30000);
	copts.connect_timeout_ms = copts.timeout_ms < 5000 ? copts.timeout_ms : 5000;
	rc = kubeclient_new(&k->kc, &cfg, &copts);
	if (rc) {
		kubeconfig_free(&cfg);
		return platform_error(p, rc, "cannot create the Kubernetes client");
	}
	if (p->dry_run)
		kubeclient_set_dry_run(k->kc, p->dry_run);
	k->service = (v = opt(o, "service")) && *v ? v : "chat";
	k->app = (v = opt(o, "app")) && *v ? v : "chat";
	v = opt(o, "template");
	if (!v || !*v)
		v = getenv("RAINBOW_POD_TEMPLATE");
	k->template_path = strdup(v && *v ? v : "k8s/pod-template.yaml");
	k->metrics_port_opt = opt_int(o, "metrics-port", 0);
	if ((v = opt(o, "metrics-via")) && *v) {
		if (strcmp(v, "proxy") && strcmp(v, "pod-ip"))
			return platform_error(p, -EINVAL, "-P metrics-via: proxy or pod-ip, not %s",
					      v);
		k->via_pod_ip = strcmp(v, "pod-ip") == 0;
	}
	k->preview = opt_int(o, "preview", 0);
	k->control_secret = (v = opt(o, "control-secret")) && *v ? v : KUBE_CONTROL_SECRET;
	k->watch_s = opt_int(o, "watch-s", 2);
	if (!k->ns || !k->template_path)
		return platform_error(p, -ENOMEM, "out of memory");
	return check_service(p, k);
}

/* ---- helpers over objects ---- */

static json_t *jget(json_t *o, const char *path)
{
	char key[64];
	const char *dot;

	while ((dot = strchr(path, '.')) != NULL) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		o = json_object_get(o, key);
		path = dot + 1;
	}
	return json_object_get(o, path);
}

static const char *jstr(json_t *o, const char *path)
{
	return json_string_value(jget(o, path));
}

/* The string under a key that may hold dots ("rainbow.chat/sha") of the object at path. */
static const char *jkey(json_t *o, const char *path, const char *key)
{
	return json_string_value(json_object_get(jget(o, path), key));
}

static long jint(json_t *o, const char *path)
{
	return (long)json_integer_value(jget(o, path));
}

static int64_t parse_time(const char *s)
{
	struct tm tm = { 0 };

	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* Kubernetes' own error (from kubeclient) mapped to the platform convention. */
static int fail(struct platform *p, int rc, const char *err)
{
	if (rc == -EPERM)
		rc = -EACCES;
	return platform_error(p, rc, "%s", err);
}

/*
 * GET path into res, whose body must hold key as a want (a proxy's error
 * page with 200 is no answer): else res is freed and the platform error
 * (kind: what the answer should have been) returned.
 */
static int get_checked(struct platform *p, struct kube *k, const char *path,
		       const struct kubeclient_target *t, const char *key, json_type want,
		       const char *kind, struct kubeclient_result *res)
{
	char err[PLATFORM_ERR_MAX];
	json_t *v;
	int rc = kubeclient_request(k->kc, "GET", path, NULL, NULL, t, res, err, sizeof(err));

	if (rc) {
		kubeclient_result_free(res);
		return fail(p, rc, err);
	}
	v = json_object_get(res->body, key);
	if (!v || json_typeof(v) != want) {
		kubeclient_result_free(res);
		return platform_error(p, -EIO, "GET %s: the answer is not a %s", path, kind);
	}
	return 0;
}

/* The Deployment's rollout has caught up: observedGeneration and every replica. */
static int rollout_done(json_t *d)
{
	long want = jint(d, "spec.replicas");

	return jint(d, "status.observedGeneration") >= jint(d, "metadata.generation") &&
	       jint(d, "status.updatedReplicas") >= want &&
	       jint(d, "status.availableReplicas") >= want && jint(d, "status.replicas") == want;
}

/* A replica count from the API as an int: never negative, never wrapped. */
static int clamp_count(long v)
{
	return v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
}

static int deployment_ready_count(json_t *d)
{
	long upd = jint(d, "status.updatedReplicas"), avail = jint(d, "status.availableReplicas");

	/* A status older than the spec says nothing about the spec. */
	if (jint(d, "status.observedGeneration") < jint(d, "metadata.generation"))
		return 0;
	return clamp_count(upd < avail ? upd : avail);
}

void kube_colour_from_deployment(struct platform_colour *c, json_t *d, const char *selected)
{
	const char *sha = jkey(d, "metadata.labels", KUBE_SHA_LABEL), *key;
	json_t *ann = jget(d, "metadata.annotations"), *val;

	memset(c, 0, sizeof(*c));
	snprintf(c->sha, sizeof(c->sha), "%s", sha ? sha : "");
	c->replicas = clamp_count(jint(d, "spec.replicas"));
	c->ready = deployment_ready_count(d);
	c->selected = selected && *selected && strcmp(selected, c->sha) == 0;
	c->created = parse_time(jstr(d, "metadata.creationTimestamp"));
	json_object_foreach (ann, key, val) {
		/* One that does not fit is not one rainbow wrote: truncated, two
		 * long keys would become one key twice. */
		if (strncmp(key, KUBE_ANNOT_PREFIX, strlen(KUBE_ANNOT_PREFIX)) == 0 &&
		    json_is_string(val) &&
		    strlen(key) - strlen(KUBE_ANNOT_PREFIX) < PLATFORM_META_KEY_MAX &&
		    strlen(json_string_value(val)) < PLATFORM_META_VAL_MAX)
			platform_meta_put(c, key + strlen(KUBE_ANNOT_PREFIX),
					  json_string_value(val));
	}
}

static int read_service(struct platform *p, struct kube *k, struct kubeclient_result *res)
{
	char path[512];

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", k->ns, k->service);
	return get_checked(p, k, path, KT("get", "services", "", k, k->service), "metadata",
			   JSON_OBJECT, "Service", res);
}

static int kube_selected(struct platform *p, char out[PLATFORM_SHA_MAX])
{
	struct kube *k = p->ctx;
	struct kubeclient_result res;
	const char *sha;
	int rc = read_service(p, k, &res);

	if (rc)
		return rc;
	sha = jkey(res.body, "spec.selector", KUBE_SHA_LABEL);
	snprintf(out, PLATFORM_SHA_MAX, "%s", sha && platform_sha_valid(sha) ? sha : "");
	kubeclient_result_free(&res);
	return 0;
}

/* ---- list, with a bounded watch while a rollout is moving ---- */

struct list_watch {
	int changed;
};

static int on_deploy_event(const char *type, json_t *obj, void *arg)
{
	struct list_watch *w = arg;

	if (strcmp(type, "BOOKMARK") == 0)
		return 0;
	w->changed = 1;
	return 1; /* something moved: stop and re-list */
}

static int kube_list(struct platform *p, struct platform_colour **out, size_t *n)
{
	struct kube *k = p->ctx;
	struct kubeclient_result res = { 0 };
	char path[512], err[PLATFORM_ERR_MAX], sel[PLATFORM_SHA_MAX], *lsel = NULL, *q = NULL;
	struct platform_colour *cs = NULL;
	json_t *items;
	size_t i, cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (asprintf(&q, "app=%s,%s", k->app, KUBE_SHA_LABEL) < 0)
		return platform_error(p, -ENOMEM, "out of memory");
	lsel = kubeclient_escape(q);
	if (!lsel) {
		free(q);
		return platform_error(p, -ENOMEM, "out of memory");
	}
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments", k->ns);
	/*
	 * Polling callers see a rollout move as soon as it moves: when the last
	 * list saw one in progress, wait (bounded) on a watch from that list's
	 * resourceVersion, then re-list. A watch that ends or goes silent is
	 * simply followed by the re-list below.
	 */
	if (k->last_unsettled && k->last_rv[0] && k->watch_s > 0) {
		struct list_watch w = { 0 };

		rc = kubeclient_watch(
			k->kc, path, q, k->last_rv, k->watch_s, k->watch_s + 1, on_deploy_event, &w,
			KT("watch", "deployments", "apps", k, NULL), err, sizeof(err));
		if (rc < 0 && rc != -ESTALE)
			log_warn("kube_watch", "path=%s error=\"%s\"", path, err);
	}
	{
		size_t l = strlen(path);

		snprintf(path + l, sizeof(path) - l, "?labelSelector=%s", lsel);
	}
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				KT("list", "deployments", "apps", k, NULL), &res, err, sizeof(err));
	if (rc) {
		rc = fail(p, rc, err);
		goto out;
	}
	rc = kube_selected(p, sel);
	if (rc)
		goto out;
	snprintf(k->last_rv, sizeof(k->last_rv), "%s",
		 jstr(res.body, "metadata.resourceVersion")
			 ? jstr(res.body, "metadata.resourceVersion")
			 : "");
	k->last_unsettled = 0;
	items = json_object_get(res.body, "items");
	/* Anything but a list here (a proxy's error page with 200) must not read as "none". */
	if (!json_is_array(items)) {
		rc = platform_error(p, -EIO, "GET %s: the answer is not a DeploymentList", path);
		goto out;
	}
	cs = calloc(json_array_size(items) + 1, sizeof(*cs));
	if (!cs) {
		rc = platform_error(p, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < json_array_size(items); i++) {
		json_t *d = json_array_get(items, i);
		const char *sha = jkey(d, "metadata.labels", KUBE_SHA_LABEL);

		if (!sha || !platform_sha_valid(sha))
			continue;
		kube_colour_from_deployment(&cs[cnt++], d, sel);
		kubeevent_uid_put(&k->uids, sha, jstr(d, "metadata.uid"));
		if (!rollout_done(d))
			k->last_unsettled = 1;
	}
	*out = cs;
	*n = cnt;
	cs = NULL;
out:
	free(cs);
	free(lsel);
	free(q);
	kubeclient_result_free(&res);
	return rc;
}

/* ---- create ---- */

/* Replaces every "{{SHA}}" in every string of v with sha. */
static int subst_sha(json_t *v, const char *sha)
{
	const char *key;
	json_t *x;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach (v, key, x)
			if (subst_sha(x, sha))
				return -ENOMEM;
	} else if (json_is_array(v)) {
		json_array_foreach (v, i, x)
			if (subst_sha(x, sha))
				return -ENOMEM;
	} else if (json_is_string(v) && strstr(json_string_value(v), "{{SHA}}")) {
		const char *s = json_string_value(v), *m;
		char *buf = malloc(strlen(s) * 8 + 64), *o = buf;

		if (!buf)
			return -ENOMEM;
		while ((m = strstr(s, "{{SHA}}")) != NULL) {
			memcpy(o, s, (size_t)(m - s));
			o += m - s;
			o += sprintf(o, "%s", sha);
			s = m + 7;
		}
		strcpy(o, s);
		json_string_set(v, buf);
		free(buf);
	}
	return 0;
}

static int load_template(struct platform *p, struct kube *k)
{
	char err[PLATFORM_ERR_MAX];
	json_t *t, *inner;

	if (k->template)
		return 0;
	t = kubeyaml_load_file(k->template_path, err, sizeof(err));
	if (!t)
		return platform_error(p, -EINVAL, "pod template: %s", err);
	/* Accept a PodTemplateSpec ({metadata, spec}), or a PodTemplate with .template. */
	inner = json_object_get(t, "template");
	if (inner) {
		json_incref(inner);
		json_decref(t);
		t = inner;
	}
	if (!json_is_object(t) || !json_is_array(jget(t, "spec.containers")) ||
	    !json_array_size(jget(t, "spec.containers"))) {
		json_decref(t);
		return platform_error(p, -EINVAL, "pod template %s: no spec.containers",
				      k->template_path);
	}
	k->template = t;
	{
		json_t *ports = jget(json_array_get(jget(t, "spec.containers"), 0), "ports"), *pt;
		size_t i;

		json_array_foreach (ports, i, pt) {
			const char *name = jstr(pt, "name");

			if (name && (!strcmp(name, "http") || !strcmp(name, "metrics")))
				k->tpl_metrics_port = (int)jint(pt, "containerPort");
		}
		if (!k->tpl_metrics_port)
			k->tpl_metrics_port = 8080;
	}
	return 0;
}

static json_t *labels_for(struct kube *k, const char *sha)
{
	return json_pack("{s:s, s:s}", "app", k->app, KUBE_SHA_LABEL, sha);
}

static int create_preview(struct platform *p, struct kube *k, const char *sha)
{
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX];
	struct kubeclient_result svc = { 0 };
	json_t *body, *ports;
	int rc;

	/* The preview exposes the same ports as the client Service. */
	rc = read_service(p, k, &svc);
	if (rc)
		return rc;
	ports = json_deep_copy(jget(svc.body, "spec.ports"));
	kubeclient_result_free(&svc);
	snprintf(name, sizeof(name), "chat-%s-preview", sha);
	body = json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:o, s:o}}", "apiVersion", "v1", "kind",
			 "Service", "metadata", "name", name, "labels", labels_for(k, sha), "spec",
			 "selector", labels_for(k, sha), "ports", ports ? ports : json_array());
	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services", k->ns);
	rc = kubeclient_request(k->kc, "POST", path, NULL, body,
				KT("create", "services", "", k, name), NULL, err, sizeof(err));
	json_decref(body);
	if (rc && rc != -EEXIST)
		return fail(p, rc, err);
	return 0;
}

static int kube_create(struct platform *p, const char *sha, int replicas)
{
	struct kube *k = p->ctx;
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX], rep[16], port[16];
	json_t *tpl, *body = NULL, *meta, *lbl;
	int rc;

	if (!platform_sha_valid(sha))
		return platform_error(p, -EINVAL, "invalid sha \"%s\"", sha);
	rc = load_template(p, k);
	if (rc)
		return rc;
	tpl = json_deep_copy(k->template);
	if (!tpl || subst_sha(tpl, sha))
		goto oom;
	/* The pod template's labels: the user's plus ours, ours winning. */
	meta = json_object_get(tpl, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		if (!meta || json_object_set_new(tpl, "metadata", meta))
			goto oom;
	}
	lbl = json_object_get(meta, "labels");
	if (!json_is_object(lbl)) {
		lbl = json_object();
		if (!lbl || json_object_set_new(meta, "labels", lbl))
			goto oom;
	}
	json_object_set_new(lbl, "app", json_string(k->app));
	json_object_set_new(lbl, KUBE_SHA_LABEL, json_string(sha));
	snprintf(name, sizeof(name), "chat-%s", sha);
	snprintf(rep, sizeof(rep), "%d", replicas);
	snprintf(port, sizeof(port), "%d",
		 k->metrics_port_opt ? k->metrics_port_opt : k->tpl_metrics_port);
	body = json_pack("{s:s, s:s, s:{s:s, s:o, s:{s:s, s:s}}, s:{s:i, s:i, s:{s:o}, s:O}}",
			 "apiVersion", "apps/v1", "kind", "Deployment", "metadata", "name", name,
			 "labels", labels_for(k, sha), "annotations",
			 KUBE_ANNOT_PREFIX PLATFORM_META_REPLICAS, rep, KUBE_PORT_ANNOT, port,
			 "spec", "replicas", replicas, "revisionHistoryLimit", 1, "selector",
			 "matchLabels", labels_for(k, sha), "template", tpl);
	if (!body)
		goto oom;
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments", k->ns);
	rc = kubeclient_request(k->kc, "POST", path, NULL, body,
				KT("create", "deployments", "apps", k, name), NULL, err,
				sizeof(err));
	json_decref(body);
	json_decref(tpl);
	k->last_unsettled = 1;
	if (rc == -EEXIST)
		return platform_error(p, -EEXIST, "colour %s already exists (%s)", sha, err);
	if (rc)
		return fail(p, rc, err);
	if (k->preview)
		return create_preview(p, k, sha);
	return 0;
oom:
	json_decref(tpl);
	json_decref(body);
	return platform_error(p, -ENOMEM, "out of memory");
}

/* ---- replicas: pods and their /metrics ---- */

/* GET http://ip:port/metrics directly (in-cluster); NULL on any failure. */
static char *metrics_direct(const char *ip, int port)
{
	CURL *h = curl_easy_init();
	char url[ADDR_STR_MAX + 16], hp[ADDR_STR_MAX];
	struct bodybuf b = { .max = KUBE_METRICS_MAX };
	long code = 0;

	if (!h)
		return NULL;
	addr_join(ip, port, hp, sizeof(hp));
	snprintf(url, sizeof(url), "http://%s/metrics", hp);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_curl_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(h) != CURLE_OK ||
	    (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code), code != 200))
		bodybuf_reset(&b);
	curl_easy_cleanup(h);
	return b.data;
}

/*
 * chatd's metrics port for colour dep: -P metrics-port, else the port the
 * colour was created with (KUBE_PORT_ANNOT, so `rainbow status` works from
 * anywhere), else the template's, else 8080.
 */
static int metrics_port(struct platform *p, struct kube *k, json_t *dep)
{
	json_t *ann = jget(dep, "metadata.annotations");
	const char *v = json_string_value(json_object_get(ann, KUBE_PORT_ANNOT));

	if (k->metrics_port_opt)
		return k->metrics_port_opt;
	if (v && atoi(v) > 0 && atoi(v) < 65536)
		return atoi(v);
	if (!k->tpl_metrics_port && load_template(p, k) != 0)
		k->tpl_metrics_port = 8080;
	return k->tpl_metrics_port;
}

/*
 * chatd_connections of one pod, with its lifetime histogram and age
 * buckets, into *r (connections -1 when unreadable: not running yet, not
 * answering; the caller polls again). A refusal by the API server (401, or
 * 403: the Role lacks get on pods/proxy) is no such passing state: it is
 * returned as -EACCES with the message naming what is missing, never read
 * as an unknown count.
 */
static int pod_metrics(struct platform *p, struct kube *k, json_t *pod, int port,
		       struct platform_replica *r)
{
	const char *name = jstr(pod, "metadata.name"), *ip = jstr(pod, "status.podIP");
	char path[512], err[PLATFORM_ERR_MAX];
	struct kubeclient_result res = { 0 };
	int retries, rc;

	platform_replica_metrics(r, NULL);
	if (k->via_pod_ip) {
		char *text = ip ? metrics_direct(ip, port) : NULL;

		platform_replica_metrics(r, text);
		free(text);
		return 0;
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s:%d/proxy/metrics", k->ns, name,
		 port);
	retries = kubeclient_set_retries(k->kc, 0);
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				KT("get", "pods/proxy", "", k, name), &res, err, sizeof(err));
	kubeclient_set_retries(k->kc, retries);
	if (rc == 0 && res.text)
		platform_replica_metrics(r, res.text);
	else if (rc == -EPERM || rc == -EACCES)
		rc = platform_error(p, -EACCES, "reading pod %s's connection count: %s", name, err);
	else
		log_debug("kube_metrics", "pod=%s error=\"%s\"", name, err);
	kubeclient_result_free(&res);
	return rc == -EACCES ? rc : 0;
}

/* chatd_connections of one pod into *out, as pod_metrics(). */
static int pod_connections(struct platform *p, struct kube *k, json_t *pod, int port, long *out)
{
	struct platform_replica r;
	int rc = pod_metrics(p, k, pod, port, &r);

	*out = r.connections;
	return rc;
}

static int pod_ready(json_t *pod)
{
	json_t *conds = jget(pod, "status.conditions"), *c;
	size_t i;

	if (jget(pod, "metadata.deletionTimestamp") &&
	    !json_is_null(jget(pod, "metadata.deletionTimestamp")))
		return 0;
	json_array_foreach (conds, i, c) {
		const char *t = jstr(c, "type"), *s = jstr(c, "status");

		if (t && s && !strcmp(t, "Ready"))
			return !strcmp(s, "True");
	}
	return 0;
}

/* GET the pods of colour sha into res (items). */
static int list_pods(struct platform *p, struct kube *k, const char *sha,
		     struct kubeclient_result *res)
{
	char path[512], *q = NULL, *esc;

	if (asprintf(&q, "app=%s,%s=%s", k->app, KUBE_SHA_LABEL, sha) < 0)
		return platform_error(p, -ENOMEM, "out of memory");
	esc = kubeclient_escape(q);
	free(q);
	if (!esc)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", k->ns, esc);
	free(esc);
	return get_checked(p, k, path, KT("list", "pods", "", k, NULL), "items", JSON_ARRAY,
			   "PodList", res);
}

static int get_deployment(struct platform *p, struct kube *k, const char *sha,
			  struct kubeclient_result *res)
{
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX];
	int rc;

	snprintf(name, sizeof(name), "chat-%s", sha);
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments/%s", k->ns, name);
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				KT("get", "deployments", "apps", k, name), res, err, sizeof(err));
	if (rc) {
		kubeclient_result_free(res);
		if (rc == -ENOENT)
			return platform_error(p, -ENOENT,
					      "colour %s does not exist (no Deployment "
					      "%s in namespace %s)",
					      sha, name, k->ns);
		return fail(p, rc, err);
	}
	return 0;
}

/*
 * Colour sha's pods into pods (items), with the metrics port and (want not
 * NULL) the replicas wanted that its Deployment says.
 */
static int colour_pods(struct platform *p, struct kube *k, const char *sha, int *port, long *want,
		       struct kubeclient_result *pods)
{
	struct kubeclient_result dep = { 0 };
	int rc = get_deployment(p, k, sha, &dep);

	if (rc)
		return rc;
	if (want)
		*want = jint(dep.body, "spec.replicas");
	*port = metrics_port(p, k, dep.body);
	kubeclient_result_free(&dep);
	return list_pods(p, k, sha, pods);
}

static int kube_replicas(struct platform *p, const char *sha, struct platform_replica **out,
			 size_t *n)
{
	struct kube *k = p->ctx;
	struct kubeclient_result pods = { 0 };
	struct platform_replica *rs = NULL;
	json_t *items, *pod;
	size_t i, cnt = 0;
	int rc, port;

	*out = NULL;
	*n = 0;
	rc = colour_pods(p, k, sha, &port, NULL, &pods);
	if (rc)
		return rc;
	items = json_object_get(pods.body, "items");
	rs = calloc(json_array_size(items) + 1, sizeof(*rs));
	if (!rs) {
		kubeclient_result_free(&pods);
		return platform_error(p, -ENOMEM, "out of memory");
	}
	json_array_foreach (items, i, pod) {
		const char *name = jstr(pod, "metadata.name");
		const char *phase = jstr(pod, "status.phase");

		/* Finished pods are history, not replicas. */
		if (!name || (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))))
			continue;
		snprintf(rs[cnt].name, sizeof(rs[cnt].name), "%s", name);
		rs[cnt].ready = pod_ready(pod);
		rc = pod_metrics(p, k, pod, port, &rs[cnt]);
		if (rc) {
			free(rs);
			kubeclient_result_free(&pods);
			return rc;
		}
		cnt++;
	}
	kubeclient_result_free(&pods);
	*out = rs;
	*n = cnt;
	return 0;
}

/* ---- select: the switch ---- */

static int kube_select(struct platform *p, const char *sha)
{
	struct kube *k = p->ctx;
	const char *want = sha && *sha ? sha : KUBE_SELECT_NONE;
	char path[512], err[PLATFORM_ERR_MAX];
	int rc = 0;

	if (sha && *sha && !platform_sha_valid(sha))
		return platform_error(p, -EINVAL, "invalid sha \"%s\"", sha);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", k->ns, k->service);
	for (int attempt = 0; attempt < KUBE_CONFLICT_RETRIES; attempt++) {
		struct kubeclient_result svc = { 0 };
		json_t *sel, *old, *body, *v;
		const char *key, *rv;

		rc = read_service(p, k, &svc);
		if (rc)
			return rc;
		old = jget(svc.body, "spec.selector");
		rv = jstr(svc.body, "metadata.resourceVersion");
		/*
		 * A JSON merge patch (RFC 7386) of the whole selector: our two keys
		 * set, every other key present now set to null (deleted). A
		 * strategic merge patch would MERGE map keys, so a key left by
		 * someone else would keep matching. metadata.resourceVersion makes
		 * the patch conditional on what we read: 409 Conflict -> re-read.
		 */
		sel = labels_for(k, want);
		json_object_foreach (old, key, v)
			if (!json_object_get(sel, key))
				json_object_set_new(sel, key, json_null());
		body = json_pack("{s:{s:s}, s:{s:o}}", "metadata", "resourceVersion", rv ? rv : "",
				 "spec", "selector", sel);
		kubeclient_result_free(&svc);
		if (!body)
			return platform_error(p, -ENOMEM, "out of memory");
		rc = kubeclient_request(k->kc, "PATCH", path, KUBECLIENT_MERGE_PATCH, body,
					KT("patch", "services", "", k, k->service), &svc, err,
					sizeof(err));
		json_decref(body);
		if (rc == -ESTALE) {
			kubeclient_result_free(&svc);
			log_info("kube_conflict", "service=%s attempt=%d action=reread", k->service,
				 attempt + 1);
			continue;
		}
		if (rc) {
			kubeclient_result_free(&svc);
			return fail(p, rc, err);
		}
		kubeclient_result_free(&svc);
		break;
	}
	if (rc == -ESTALE)
		return platform_error(p, -EIO,
				      "Service %s/%s kept changing under us: %d conflicts "
				      "in a row",
				      k->ns, k->service, KUBE_CONFLICT_RETRIES);
	if (kubeclient_dry_run(k->kc))
		return 0; /* nothing was sent: nothing to read back */
	/* Read back: the switch is done only when the stored selector says so. */
	{
		struct kubeclient_result svc = { 0 };
		json_t *sel;
		const char *got;

		rc = read_service(p, k, &svc);
		if (rc)
			return rc;
		sel = jget(svc.body, "spec.selector");
		got = json_string_value(json_object_get(sel, KUBE_SHA_LABEL));
		if (!got || strcmp(got, want) || json_object_size(sel) != 2 ||
		    !json_string_value(json_object_get(sel, "app")) ||
		    strcmp(json_string_value(json_object_get(sel, "app")), k->app)) {
			char *dump = json_dumps(sel, JSON_COMPACT | JSON_SORT_KEYS);

			rc = platform_error(p, -EIO,
					    "Service %s/%s selector reads back as %s, not "
					    "app=%s,%s=%s",
					    k->ns, k->service, dump ? dump : "?", k->app,
					    KUBE_SHA_LABEL, want);
			free(dump);
		}
		kubeclient_result_free(&svc);
	}
	return rc;
}

/* ---- delete, scale, shrink, meta ---- */

static int delete_object(struct platform *p, struct kube *k, const char *path,
			 const struct kubeclient_target *t)
{
	char err[PLATFORM_ERR_MAX];
	json_t *body = json_pack("{s:s, s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
				 "propagationPolicy", "Background");
	int rc;

	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = kubeclient_request(k->kc, "DELETE", path, NULL, body, t, NULL, err, sizeof(err));
	json_decref(body);
	if (rc && rc != -ENOENT)
		return fail(p, rc, err);
	return rc;
}

static int kube_remove(struct platform *p, const char *sha)
{
	struct kube *k = p->ctx;
	char path[512], name[PLATFORM_NAME_MAX];
	int rc, rc2;

	snprintf(name, sizeof(name), "chat-%s-preview", sha);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", k->ns, name);
	/* A preview Service may exist from an earlier run with -P preview=1. */
	rc2 = delete_object(p, k, path, KT("delete", "services", "", k, name));
	if (rc2 && rc2 != -ENOENT && rc2 != -EACCES)
		return rc2;
	snprintf(name, sizeof(name), "chat-%s", sha);
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments/%s", k->ns, name);
	rc = delete_object(p, k, path, KT("delete", "deployments", "apps", k, name));
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT, "colour %s does not exist", sha);
	return rc;
}

static int kube_scale(struct platform *p, const char *sha, int replicas)
{
	struct kube *k = p->ctx;
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX];
	json_t *body = json_pack("{s:{s:i}}", "spec", "replicas", replicas);
	int rc;

	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(name, sizeof(name), "chat-%s", sha);
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments/%s/scale", k->ns,
		 name);
	rc = kubeclient_request(k->kc, "PATCH", path, KUBECLIENT_MERGE_PATCH, body,
				KT("patch", "deployments/scale", "apps", k, name), NULL, err,
				sizeof(err));
	json_decref(body);
	k->last_unsettled = 1;
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT, "colour %s does not exist", sha);
	return rc ? fail(p, rc, err) : 0;
}

static int set_deletion_cost(struct platform *p, struct kube *k, const char *pod, long cost)
{
	char path[512], err[PLATFORM_ERR_MAX], val[32];
	json_t *body;
	int rc;

	snprintf(val, sizeof(val), "%ld", cost);
	body = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", KUBE_DELETION_COST, val);
	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", k->ns, pod);
	rc = kubeclient_request(k->kc, "PATCH", path, KUBECLIENT_MERGE_PATCH, body,
				KT("patch", "pods", "", k, pod), NULL, err, sizeof(err));
	json_decref(body);
	return rc ? fail(p, rc, err) : 0;
}

/*
 * The ReplicaSet controller ranks pods before it looks at pod-deletion-cost:
 * unscheduled first, then Pending < Unknown < Running, then not ready before
 * ready. A pod of a lower rank is deleted first whatever its cost.
 */
static int pod_delete_rank(json_t *pod)
{
	const char *node = jstr(pod, "spec.nodeName"), *phase = jstr(pod, "status.phase");
	int ph = 0;

	if (phase && !strcmp(phase, "Running"))
		ph = 2;
	else if (phase && !strcmp(phase, "Unknown"))
		ph = 1;
	return (node && *node ? 100 : 0) + ph * 10 + pod_ready(pod);
}

/* Pods the controller no longer counts: finished or already being deleted. */
static int pod_inactive(json_t *pod)
{
	const char *phase = jstr(pod, "status.phase");
	json_t *del = jget(pod, "metadata.deletionTimestamp");

	return (del && !json_is_null(del)) ||
	       (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")));
}

/*
 * --shrink: the ReplicaSet controller deletes, among equally ranked pods, the
 * one with the lowest pod-deletion-cost first. Every pod gets its connection
 * count as its cost (so later scale-downs also prefer empty pods) and the
 * named pod the lowest cost there is; then the replicas go down by one.
 */
static int kube_remove_replica(struct platform *p, const char *sha, const char *name)
{
	struct kube *k = p->ctx;
	struct kubeclient_result pods = { 0 };
	json_t *items, *pod;
	long want;
	size_t i;
	int rc, port, found = 0, rank = 0;

	rc = colour_pods(p, k, sha, &port, &want, &pods);
	if (rc)
		return rc;
	items = json_object_get(pods.body, "items");
	json_array_foreach (items, i, pod) {
		const char *pn = jstr(pod, "metadata.name");

		if (pn && !strcmp(pn, name)) {
			long c;

			rc = pod_connections(p, k, pod, port, &c);
			if (rc)
				goto out;
			found = 1;
			rank = pod_delete_rank(pod);
			if (c != 0) {
				rc = platform_error(
					p, -EBUSY, "pod %s still holds %ld connection%s%s", name, c,
					c == 1 ? "" : "s", c < 0 ? " (metrics unreadable)" : "");
				goto out;
			}
		}
	}
	if (!found) {
		rc = platform_error(p, -ENOENT, "colour %s has no pod %s", sha, name);
		goto out;
	}
	/* A busy pod that would be deleted before the named one: not now. */
	json_array_foreach (items, i, pod) {
		const char *pn = jstr(pod, "metadata.name");
		long c;

		if (!pn || !strcmp(pn, name) || pod_inactive(pod) || pod_delete_rank(pod) >= rank)
			continue;
		rc = pod_connections(p, k, pod, port, &c);
		if (rc)
			goto out;
		if (c != 0) {
			rc = platform_error(p, -EBUSY,
					    "pod %s (not ready or not running) holds %ld "
					    "connection%s%s and the ReplicaSet controller would "
					    "delete it before %s",
					    pn, c, c == 1 ? "" : "s",
					    c < 0 ? " (metrics unreadable)" : "", name);
			goto out;
		}
	}
	json_array_foreach (items, i, pod) {
		const char *pn = jstr(pod, "metadata.name");
		long c;

		if (!pn)
			continue;
		if (!strcmp(pn, name)) {
			rc = set_deletion_cost(p, k, pn, -2147483647L);
		} else {
			rc = pod_connections(p, k, pod, port, &c);
			if (rc == 0)
				rc = set_deletion_cost(p, k, pn, c < 0 ? 2147483647L : c);
		}
		if (rc)
			goto out;
	}
	rc = kube_scale(p, sha, want > 0 ? (int)want - 1 : 0);
out:
	kubeclient_result_free(&pods);
	return rc;
}

static int kube_meta_set(struct platform *p, const char *sha, const char *key, const char *value)
{
	struct kube *k = p->ctx;
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX], akey[128];
	json_t *body, *ann;
	int rc;

	snprintf(name, sizeof(name), "chat-%s", sha);
	snprintf(akey, sizeof(akey), KUBE_ANNOT_PREFIX "%s", key);
	ann = json_object();
	if (!ann || json_object_set_new(ann, akey, value ? json_string(value) : json_null())) {
		json_decref(ann);
		return platform_error(p, -ENOMEM, "out of memory");
	}
	/* A merge patch of one annotation: null deletes it; no read-modify-write race. */
	body = json_pack("{s:{s:o}}", "metadata", "annotations", ann);
	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments/%s", k->ns, name);
	rc = kubeclient_request(k->kc, "PATCH", path, KUBECLIENT_MERGE_PATCH, body,
				KT("patch", "deployments", "apps", k, name), NULL, err,
				sizeof(err));
	json_decref(body);
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT, "colour %s does not exist", sha);
	return rc ? fail(p, rc, err) : 0;
}

/* ---- events ---- */

static int kube_event(struct platform *p, const char *sha, const struct platform_event *ev)
{
	struct kube *k = p->ctx;
	struct kubeclient_result dep = { 0 };
	char path[512], name[PLATFORM_NAME_MAX], err[PLATFORM_ERR_MAX];
	const char *uid = kubeevent_uid_get(&k->uids, sha);
	struct timespec ts;
	int64_t us;
	json_t *body;
	int rc, retries;

	/* A colour created a moment ago is not in the last list yet. */
	if (!uid && get_deployment(p, k, sha, &dep) == 0) {
		kubeevent_uid_put(&k->uids, sha, jstr(dep.body, "metadata.uid"));
		uid = kubeevent_uid_get(&k->uids, sha);
	}
	kubeclient_result_free(&dep);
	if (!k->instance[0])
		kubeevent_instance(k->instance);
	clock_gettime(CLOCK_REALTIME, &ts);
	us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	if (us <= k->last_event_us)
		us = k->last_event_us + 1;
	k->last_event_us = us;
	snprintf(name, sizeof(name), "chat-%s", sha);
	body = kubeevent_body(k->ns, name, uid, ev, k->instance, us);
	if (!body)
		return platform_error(p, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/%s/events", k->ns);
	/* Best effort: one retry, so that a sick API server does not slow the deploy. */
	retries = kubeclient_set_retries(k->kc, 1);
	rc = kubeclient_request(k->kc, "POST", path, NULL, body,
				KT("create", "events", "events.k8s.io", k, NULL), NULL, err,
				sizeof(err));
	kubeclient_set_retries(k->kc, retries);
	json_decref(body);
	return rc ? fail(p, rc, err) : 0;
}

/* ---- move: the assisted drain ---- */

/*
 * The control token, from Secret control_secret's key "token" (read once:
 * the pods read their copy at start too). chatd drops trailing whitespace
 * from its file, so the same is dropped here; what is left must fit in an
 * HTTP header as it is (visible ASCII), 16..4096 bytes as chatd wants.
 */
static int control_token(struct platform *p, struct kube *k)
{
	struct kubeclient_result res = { 0 };
	char path[512], err[PLATFORM_ERR_MAX], *tok = NULL;
	const char *b64;
	size_t len = 0;
	int rc;

	if (k->control_token)
		return 0;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", k->ns, k->control_secret);
	rc = kubeclient_request(k->kc, "GET", path, NULL, NULL,
				KT("get", "secrets", "", k, k->control_secret), &res, err,
				sizeof(err));
	if (rc == -ENOENT) {
		kubeclient_result_free(&res);
		return platform_error(
			p, -ENOTSUP,
			"no Secret \"%s\" in namespace %s: the assisted drain needs "
			"the control token chatd's pods mount; create it (kubectl -n "
			"%s create secret generic %s --from-literal=%s=\"$(openssl rand "
			"-hex 32)\") before the colours start (docs/kubernetes.md, "
			"\"Assisted drain\")",
			k->control_secret, k->ns, k->ns, k->control_secret, KUBE_CONTROL_KEY);
	}
	if (rc) {
		kubeclient_result_free(&res);
		return fail(p, rc, err);
	}
	b64 = json_string_value(
		json_object_get(json_object_get(res.body, "data"), KUBE_CONTROL_KEY));
	rc = b64 ? kubeconfig_b64decode(b64, &tok, &len) : -EINVAL;
	kubeclient_result_free(&res);
	if (rc == -ENOMEM)
		return platform_error(p, -ENOMEM, "out of memory");
	while (rc == 0 && len > 0 &&
	       (tok[len - 1] == ' ' || tok[len - 1] == '\t' || tok[len - 1] == '\r' ||
		tok[len - 1] == '\n'))
		tok[--len] = '\0';
	for (size_t i = 0; rc == 0 && i < len; i++)
		if (tok[i] < 0x21 || tok[i] > 0x7e)
			rc = -EINVAL;
	if (rc || len < KUBE_TOKEN_MIN || len > KUBE_TOKEN_MAX) {
		if (tok)
			OPENSSL_cleanse(tok, len);
		free(tok);
		return platform_error(p, -ENOTSUP,
				      "Secret \"%s\" in namespace %s has no usable key \"%s\": the "
				      "control token must be %d..%d visible ASCII characters "
				      "(openssl rand -hex 32 makes one)",
				      k->control_secret, k->ns, KUBE_CONTROL_KEY, KUBE_TOKEN_MIN,
				      KUBE_TOKEN_MAX);
	}
	k->control_token = tok;
	k->control_token_len = len;
	return 0;
}

/*
 * In-cluster (metrics-via pod-ip): POST http://ip:port/control/move?count=N
 * straight to the pod, as /metrics is read there (the NetworkPolicy admits
 * rainbow's Job on the http port, not the API server). Fills res's status
 * (0: no answer), body and text.
 */
static void move_direct(const char *ip, int port, int count, const char *hdr,
			struct kubeclient_result *res)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[ADDR_STR_MAX + 48], hp[ADDR_STR_MAX];
	struct bodybuf b = { .max = KUBE_METRICS_MAX };

	memset(res, 0, sizeof(*res));
	hl = h ? curl_slist_append(NULL, hdr) : NULL;
	if (!hl) {
		curl_easy_cleanup(h);
		return;
	}
	addr_join(ip, port, hp, sizeof(hp));
	snprintf(url, sizeof(url), "http://%s/control/move?count=%d", hp, count);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_curl_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	curl_easy_cleanup(h);
	curl_slist_free_all(hl);
	res->text = b.data;
	res->len = b.len;
	res->body = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
}

/* The pod IP of pod name of colour sha into ip; -ENOENT when it is gone. */
static int pod_ip(struct platform *p, struct kube *k, const char *sha, const char *name,
		  char ip[ADDR_STR_MAX])
{
	struct kubeclient_result pods = { 0 };
	json_t *pod;
	size_t i;
	int rc = list_pods(p, k, sha, &pods);

	if (rc)
		return rc;
	rc = platform_error(p, -ENOENT, "pod %s is gone", name);
	json_array_foreach (json_object_get(pods.body, "items"), i, pod) {
		const char *pn = jstr(pod, "metadata.name"), *pip = jstr(pod, "status.podIP");

		if (pn && !strcmp(pn, name) && !pod_inactive(pod)) {
			if (pip && *pip) {
				snprintf(ip, ADDR_STR_MAX, "%s", pip);
				rc = 0;
			} else {
				rc = platform_error(p, -EIO, "pod %s has no IP yet", name);
			}
		}
	}
	kubeclient_result_free(&pods);
	return rc;
}

/*
 * Asks pod name of colour sha to move count sessions: POST
 * pods/NAME:PORT/proxy/control/move?count=N through the API server, which
 * checks RBAC (create on pods/proxy) and passes the token header on (from
 * inside the cluster: to the pod IP, as /metrics). A refusal by the API
 * server comes as a Status (403 Forbidden, 404 NotFound for a pod that is
 * gone); any other answer is chatd's own. Never retried: a move is not
 * idempotent, and the next step asks again if need be.
 */
static int kube_move(struct platform *p, const char *sha, const char *name, int count, int *moved)
{
	struct kube *k = p->ctx;
	struct kubeclient_result res = { 0 };
	char path[512], err[PLATFORM_ERR_MAX] = "", ip[ADDR_STR_MAX], *hdr = NULL;
	int rc, port, retries;

	*moved = 0;
	rc = get_deployment(p, k, sha, &res);
	if (rc)
		return rc;
	port = metrics_port(p, k, res.body);
	kubeclient_result_free(&res);
	rc = control_token(p, k);
	if (rc)
		return rc;
	if (k->via_pod_ip && (rc = pod_ip(p, k, sha, name, ip)) != 0)
		return rc;
	if (asprintf(&hdr, "X-Chatd-Control-Token: %s", k->control_token) < 0)
		return platform_error(p, -ENOMEM, "out of memory");
	if (k->via_pod_ip) {
		move_direct(ip, port, count, hdr, &res);
		rc = res.status == 200 ? 0 : -EIO;
		snprintf(err, sizeof(err), "pod %s (%s) answered HTTP %ld to a move", name, ip,
			 res.status);
	} else {
		snprintf(path, sizeof(path),
			 "/api/v1/namespaces/%s/pods/%s:%d/proxy/control/move?count=%d", k->ns,
			 name, port, count);
		retries = kubeclient_set_retries(k->kc, 0);
		rc = kubeclient_request_header(k->kc, "POST", path, NULL, NULL, hdr,
					       KT("create", "pods/proxy", "", k, name), &res, err,
					       sizeof(err));
		kubeclient_set_retries(k->kc, retries);
	}
	OPENSSL_cleanse(hdr, strlen(hdr));
	free(hdr);
	if (rc == 0) {
		json_t *m = json_object_get(res.body, "moved");

		if (json_is_integer(m) && json_integer_value(m) >= 0)
			*moved = clamp_count((long)json_integer_value(m));
		else
			rc = platform_error(p, -EIO, "pod %s answered a move with no count: %.80s",
					    name, res.text ? res.text : "");
	} else if (res.status == 403 && strcmp(res.reason, "Forbidden") == 0) {
		rc = platform_error(p, -EACCES, "moving sessions of pod %s: %s", name, err);
	} else if (res.status == 403) {
		rc = platform_error(p, -EACCES,
				    "pod %s refused the control token of Secret \"%s\": its chatd "
				    "read another one at start (the Secret changed since? restart "
				    "the colour's pods)",
				    name, k->control_secret);
	} else if (res.status == 404 && strcmp(res.reason, "NotFound") == 0) {
		rc = platform_error(p, -ENOENT, "pod %s is gone", name);
	} else if (res.status == 404) {
		rc = platform_error(p, -ENOTSUP,
				    "pod %s's chatd has no control endpoint (no "
				    "--control-token-file): its pod template must mount Secret "
				    "\"%s\" and set CHATD_CONTROL_TOKEN_FILE (docs/kubernetes.md, "
				    "\"Assisted drain\")",
				    name, k->control_secret);
	} else {
		rc = fail(p, rc, err);
	}
	kubeclient_result_free(&res);
	return rc;
}

static const struct platform_ops kube_ops = {
	.name = "kubernetes",
	.can_dry_run = 1,
	.open = kube_open,
	.close = kube_close,
	.list = kube_list,
	.create = kube_create,
	.replicas = kube_replicas,
	.select = kube_select,
	.selected = kube_selected,
	.remove = kube_remove,
	.scale = kube_scale,
	.remove_replica = kube_remove_replica,
	.meta_set = kube_meta_set,
	.event = kube_event,
	.move = kube_move,
};

const struct platform_ops *kube_platform_ops(void)
{
	return &kube_ops;
}
