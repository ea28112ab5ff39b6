/*
 * The Kubernetes REST client: libcurl easy requests with retries, a size
 * cap, and API errors turned into errno codes and sentences.
 */
#include "kubeclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "bodybuf.h"
#include "errmsg.h"
#include "log.h"
#include "version.h"

/* One watch event larger than this is refused (a Deployment is a few KiB). */
#define KUBECLIENT_MAX_EVENT (4u << 20)
#define KUBECLIENT_BACKOFF_CAP_MS 5000

struct kubeclient {
	struct kubeconfig kc; /* owned */
	struct kubeclient_opts opts;
	CURL *curl;		       /* reused so connections are kept alive */
	char *base;		       /* URL prefix requests go to (server, or tls-server-name) */
	struct curl_slist *connect_to; /* tls-server-name: "name:port:host:port", else NULL */
	char curl_err[CURL_ERROR_SIZE];
	json_t *dry_log; /* borrowed; set: requests other than GET are logged, not sent */
};

/* A growing response buffer with a hard cap. */
/* The state of a streaming watch: a line buffer and the callback. */
struct kc_watch {
	struct bodybuf line;
	struct bodybuf head; /* the first bytes, kept to decode a refused watch's Status */
	kubeclient_watch_cb cb;
	void *arg;
	int stopped;   /* 1 when the callback asked to stop, <0 when it failed */
	int gone;      /* an ERROR event with code 410 arrived */
	long err_code; /* code of another ERROR event */
	char err_msg[256];
};

/*
 * tls-server-name: the certificate is checked (and SNI sent) for that name
 * while the TCP connection goes to the server's address. libcurl does this
 * with a URL naming the TLS name plus CURLOPT_CONNECT_TO to the real host.
 */
static int set_base(struct kubeclient *c)
{
	CURLU *u;
	char *host = NULL, *port = NULL, *scheme = NULL, *entry = NULL;
	int rc = -ENOMEM;

	if (!c->kc.tls_server_name) {
		c->base = strdup(c->kc.server);
		return c->base ? 0 : -ENOMEM;
	}
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, c->kc.server, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		rc = -EINVAL;
		goto out;
	}
	if (asprintf(&c->base, "%s://%s:%s", scheme, c->kc.tls_server_name, port) < 0) {
		c->base = NULL;
		goto out;
	}
	if (asprintf(&entry, "%s:%s:%s:%s", c->kc.tls_server_name, port, host, port) < 0) {
		entry = NULL;
		goto out;
	}
	c->connect_to = curl_slist_append(NULL, entry);
	rc = c->connect_to ? 0 : -ENOMEM;
out:
	free(entry);
	curl_free(host);
	curl_free(port);
	curl_free(scheme);
	curl_url_cleanup(u);
	return rc;
}

int kubeclient_new(struct kubeclient **out, struct kubeconfig *kc,
		   const struct kubeclient_opts *opts)
{
	struct kubeclient *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return -ENOMEM;
	}
	c->kc = *kc;
	memset(kc, 0, sizeof(*kc));
	if (opts)
		c->opts = *opts;
	if (c->opts.timeout_ms <= 0)
		c->opts.timeout_ms = 30000;
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 5000;
	if (c->opts.retries < 0)
		c->opts.retries = 0;
	else if (!opts)
		c->opts.retries = 4;
	if (c->opts.backoff_ms <= 0)
		c->opts.backoff_ms = 250;
	if (!c->opts.max_response)
		c->opts.max_response = KUBECLIENT_MAX_RESPONSE;
	if (set_base(c) != 0) {
		kubeclient_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void kubeclient_free(struct kubeclient *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->connect_to);
	free(c->base);
	curl_global_cleanup();
	kubeconfig_free(&c->kc);
	free(c);
}

void kubeclient_set_dry_run(struct kubeclient *c, json_t *log)
{
	c->dry_log = log;
}

int kubeclient_dry_run(const struct kubeclient *c)
{
	return c->dry_log != NULL;
}

int kubeclient_set_retries(struct kubeclient *c, int retries)
{
	int old = c->opts.retries;

	c->opts.retries = retries < 0 ? 0 : retries;
	return old;
}

void kubeclient_result_free(struct kubeclient_result *res)
{
	if (!res)
		return;
	json_decref(res->body);
	free(res->text);
	memset(res, 0, sizeof(*res));
}

char *kubeclient_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A PEM object to curl: its bytes through blob_opt (not copied: kc outlives the
 * request), or its path through path_opt. */
static void set_pem(CURL *h, const struct kubeconfig_pem *m, CURLoption blob_opt,
		    CURLoption path_opt)
{
	if (m->data) {
		struct curl_blob b = { m->data, m->len, CURL_BLOB_NOCOPY };

		curl_easy_setopt(h, blob_opt, &b);
	} else if (m->path) {
		curl_easy_setopt(h, path_opt, m->path);
	}
}

/* Sets every per-request option: the handle is reset between requests. */
static int setup(struct kubeclient *c, const char *method, const char *url,
		 struct curl_slist **hdrs, const char *content_type, const char *body,
		 const char *header)
{
	struct kubeconfig *kc = &c->kc;
	const char *tok = kubeconfig_token(kc);
	CURL *h = c->curl;
	char *auth = NULL;
	char ua[64];

	curl_easy_reset(h);
	c->curl_err[0] = '\0';
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	snprintf(ua, sizeof(ua), "rainbow/%s", rainbow_version);
	curl_easy_setopt(h, CURLOPT_USERAGENT, ua); /* libcurl copies it */
	if (c->connect_to)
		curl_easy_setopt(h, CURLOPT_CONNECT_TO, c->connect_to);
	if (kc->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	set_pem(h, &kc->ca, CURLOPT_CAINFO_BLOB, CURLOPT_CAINFO);
	set_pem(h, &kc->cert, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERT);
	if (kc->cert.data)
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
	set_pem(h, &kc->key, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEY);
	if (kc->key.data)
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (body) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		} else if (strcmp(method, "DELETE") != 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		}
	}
	*hdrs = curl_slist_append(*hdrs, "Accept: application/json, */*");
	if (body) {
		char ct[128];

		snprintf(ct, sizeof(ct), "Content-Type: %s",
			 content_type ? content_type : "application/json");
		*hdrs = curl_slist_append(*hdrs, ct);
	}
	if (tok && *tok) {
		if (asprintf(&auth, "Authorization: Bearer %s", tok) < 0)
			return -ENOMEM;
		*hdrs = curl_slist_append(*hdrs, auth);
		OPENSSL_cleanse(auth, strlen(auth));
		free(auth);
	}
	if (header)
		*hdrs = curl_slist_append(*hdrs, header);
	if (!*hdrs)
		return -ENOMEM;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	return 0;
}

/* "deployments.apps", "services", "pods/proxy". */
static void resource_name(char *out, size_t n, const struct kubeclient_target *t)
{
	const char *slash = t && t->resource ? strchr(t->resource, '/') : NULL;

	if (!t || !t->resource) {
		snprintf(out, n, "object");
		return;
	}
	if (t->group && *t->group) {
		if (slash)
			snprintf(out, n, "%.*s.%s%s", (int)(slash - t->resource), t->resource,
				 t->group, slash);
		else
			snprintf(out, n, "%s.%s", t->resource, t->group);
	} else {
		snprintf(out, n, "%s", t->resource);
	}
}

/* The message of a Status body, or the raw text, or "". */
static const char *status_message(const struct kubeclient_result *r)
{
	const char *m = r->body ? json_string_value(json_object_get(r->body, "message")) : NULL;

	if (m)
		return m;
	return "";
}

/* Maps a final answer to the error convention with a sentence that says what to do. */
static int map_status(struct kubeclient *c, const char *method, const char *path,
		      const struct kubeclient_target *t, struct kubeclient_result *r, char *err,
		      size_t errlen)
{
	char res[96];
	const char *msg = status_message(r);
	const char *verb = t && t->verb ? t->verb : method;
	const char *ns = t && t->ns ? t->ns : NULL;

	resource_name(res, sizeof(res), t);
	if (r->status >= 200 && r->status < 300)
		return 0;
	switch (r->status) {
	case 401:
		errmsg_set(err, errlen,
			   "API server %s rejected the credentials from %s (401 "
			   "Unauthorized%s%s): the token or client certificate is missing, expired "
			   "or not trusted",
			   c->kc.server, c->kc.source ? c->kc.source : "?", *msg ? ": " : "", msg);
		return -EACCES;
	case 403:
		errmsg_set(err, errlen,
			   "RBAC: not allowed to %s %s%s%s%s%s%s; grant verb \"%s\" on "
			   "resource \"%s\" in API group \"%s\" to rainbow's Role "
			   "(k8s/base/rbac.yaml)%s%s",
			   verb, res, t && t->name ? " \"" : "", t && t->name ? t->name : "",
			   t && t->name ? "\"" : "", ns ? " in namespace " : "", ns ? ns : "", verb,
			   t && t->resource ? t->resource : "?", t && t->group ? t->group : "",
			   *msg ? "; API server: " : "", msg);
		return -EPERM;
	case 404:
		if (t && t->name)
			errmsg_set(err, errlen, "%s \"%s\" not found%s%s (%s %s%s%s)", res, t->name,
				   ns ? " in namespace " : "", ns ? ns : "", method, path,
				   *msg ? ": " : "", msg);
		else
			errmsg_set(err, errlen, "%s not found%s%s (%s %s%s%s)", res,
				   ns ? " in namespace " : "", ns ? ns : "", method, path,
				   *msg ? ": " : "", msg);
		return -ENOENT;
	case 409:
		if (strcmp(r->reason, "AlreadyExists") == 0) {
			errmsg_set(err, errlen, "%s \"%s\" already exists%s%s", res,
				   t && t->name ? t->name : "?", ns ? " in namespace " : "",
				   ns ? ns : "");
			return -EEXIST;
		}
		errmsg_set(err, errlen, "conflict on %s \"%s\": it changed since it was read (%s)",
			   res, t && t->name ? t->name : "?", msg);
		return -ESTALE;
	case 410:
		errmsg_set(err, errlen, "resource version expired (410 Gone): re-list %s", res);
		return -ESTALE;
	default:
		break;
	}
	if (r->status >= 500) {
		errmsg_set(err, errlen,
			   "API server %s failed to %s %s: HTTP %ld%s%s (after %d attempts)",
			   c->kc.server, verb, res, r->status, *msg ? ": " : "", msg,
			   c->opts.retries + 1);
		return -EIO;
	}
	errmsg_set(err, errlen, "API server refused to %s %s: HTTP %ld%s%s%s%s", verb, res,
		   r->status, r->reason[0] ? " " : "", r->reason, *msg ? ": " : "", msg);
	return -EINVAL;
}

static int retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return 1;
	default:
		return 0;
	}
}

static int curl_code_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNREFUSED;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void fill_result(struct kubeclient_result *r, struct bodybuf *b)
{
	json_error_t jerr;

	r->text = b->data;
	r->len = b->len;
	b->data = NULL;
	r->body = r->text && r->len ? json_loadb(r->text, r->len, 0, &jerr) : NULL;
	if (r->body && json_is_object(r->body)) {
		const char *kind = json_string_value(json_object_get(r->body, "kind"));
		const char *reason = json_string_value(json_object_get(r->body, "reason"));

		if (kind && strcmp(kind, "Status") == 0 && reason)
			snprintf(r->reason, sizeof(r->reason), "%s", reason);
	}
}

int kubeclient_request(struct kubeclient *c, const char *method, const char *path,
		       const char *content_type, json_t *body, const struct kubeclient_target *t,
		       struct kubeclient_result *res, char *err, size_t errlen)
{
	return kubeclient_request_header(c, method, path, content_type, body, NULL, t, res, err,
					 errlen);
}

int kubeclient_request_header(struct kubeclient *c, const char *method, const char *path,
			      const char *content_type, json_t *body, const char *header,
			      const struct kubeclient_target *t, struct kubeclient_result *res,
			      char *err, size_t errlen)
{
	struct kubeclient_result local;
	char *url = NULL, *payload = NULL;
	long backoff = c->opts.backoff_ms;
	int rc = 0;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (c->dry_log && strcmp(method, "GET") != 0) {
		/* Dry run: what would be sent, as it would be sent; "answered" with the body. */
		json_t *r = json_pack(
			"{s:s,s:s,s:s,s:O?}", "method", method, "path", path, "content_type",
			body ? (content_type ? content_type : "application/json") : "", "body",
			body);

		if (!r || json_array_append_new(c->dry_log, r))
			return -ENOMEM;
		res->status = 200;
		res->body = body ? json_deep_copy(body) : json_object();
		if (res == &local)
			kubeclient_result_free(res);
		return 0;
	}
	if (asprintf(&url, "%s%s", c->base, path) < 0)
		return -ENOMEM;
	if (body && !(payload = json_dumps(body, JSON_COMPACT))) {
		free(url);
		return -ENOMEM;
	}
	for (int attempt = 0;; attempt++) {
		struct curl_slist *hdrs = NULL;
		struct bodybuf b = { .max = c->opts.max_response };
		CURLcode cc;
		int again = 0;

		kubeclient_result_free(res);
		rc = setup(c, method, url, &hdrs, content_type, payload, header);
		if (rc) {
			curl_slist_free_all(hdrs);
			goto out;
		}
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)c->opts.timeout_ms);
		curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, bodybuf_curl_write);
		curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
		cc = curl_easy_perform(c->curl);
		curl_slist_free_all(hdrs);
		if (cc == CURLE_WRITE_ERROR && b.overflow) {
			free(b.data);
			errmsg_set(err, errlen, "%s %s: response larger than %zu bytes", method,
				   path, c->opts.max_response);
			rc = -EFBIG;
			goto out;
		}
		if (cc != CURLE_OK) {
			free(b.data);
			rc = curl_code_errno(cc);
			again = retryable_curl(cc);
			errmsg_set(err, errlen,
				   "API server %s unreachable: %s %s: %s (after %d attempt%s)",
				   c->kc.server, method, path,
				   c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc),
				   attempt + 1, attempt ? "s" : "");
		} else {
			curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &res->status);
			fill_result(res, &b);
			free(b.data);
			again = res->status >= 500 || res->status == 429;
			rc = map_status(c, method, path, t, res, err, errlen);
			log_debug("kube_request", "method=%s path=%s status=%ld attempt=%d", method,
				  path, res->status, attempt + 1);
		}
		if (!again || attempt >= c->opts.retries)
			break;
		log_warn("kube_retry", "method=%s path=%s status=%ld attempt=%d backoff_ms=%ld",
			 method, path, res->status, attempt + 1, backoff);
		sleep_ms(backoff);
		backoff = backoff * 2 > KUBECLIENT_BACKOFF_CAP_MS ? KUBECLIENT_BACKOFF_CAP_MS
								  : backoff * 2;
	}
out:
	if (res == &local)
		kubeclient_result_free(&local);
	free(payload);
	free(url);
	return rc;
}

/* Handles one complete line of a watch stream. */
static int watch_line(struct kc_watch *w, const char *line, size_t n)
{
	json_error_t jerr;
	json_t *ev;
	const char *type;
	int r = 0;

	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (!n)
		return 0;
	ev = json_loadb(line, n, 0, &jerr);
	if (!ev) {
		snprintf(w->err_msg, sizeof(w->err_msg), "bad watch event: %s", jerr.text);
		w->stopped = -EPROTO;
		return -EPROTO;
	}
	type = json_string_value(json_object_get(ev, "type"));
	if (type && strcmp(type, "ERROR") == 0) {
		json_t *st = json_object_get(ev, "object");
		long code = (long)json_integer_value(json_object_get(st, "code"));
		const char *msg = json_string_value(json_object_get(st, "message"));

		if (code == 410)
			w->gone = 1;
		else
			w->err_code = code ? code : 500;
		snprintf(w->err_msg, sizeof(w->err_msg), "%s", msg ? msg : "watch error");
		json_decref(ev);
		return -EIO;
	}
	if (type)
		r = w->cb(type, json_object_get(ev, "object"), w->arg);
	json_decref(ev);
	if (r) {
		w->stopped = r; /* what the watch returns */
		return -ECANCELED;
	}
	return 0;
}

static size_t write_watch(char *p, size_t size, size_t nmemb, void *arg)
{
	struct kc_watch *w = arg;
	size_t n = size * nmemb, start = 0;

	if (w->head.len < w->head.max)
		bodybuf_append(&w->head, p,
			       n < w->head.max - w->head.len ? n : w->head.max - w->head.len);
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (w->line.len) {
			if (bodybuf_append(&w->line, p + start, i - start) < 0)
				return 0;
			if (watch_line(w, w->line.data, w->line.len) < 0)
				return 0;
			w->line.len = 0;
		} else if (watch_line(w, p + start, i - start) < 0) {
			return 0;
		}
		start = i + 1;
	}
	if (start < n && bodybuf_append(&w->line, p + start, n - start) < 0)
		return 0;
	return n;
}

int kubeclient_watch(struct kubeclient *c, const char *path, const char *label_selector,
		     const char *resource_version, int timeout_s, int silence_s,
		     kubeclient_watch_cb cb, void *arg, const struct kubeclient_target *t,
		     char *err, size_t errlen)
{
	struct kc_watch w = { .line = { .max = KUBECLIENT_MAX_EVENT },
			      .head = { .max = 65536 },
			      .cb = cb,
			      .arg = arg };
	struct kubeclient_result r = { 0 };
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *sel = NULL, *rv = NULL;
	CURLcode cc;
	int rc;

	if (label_selector && !(sel = kubeclient_escape(label_selector)))
		return -ENOMEM;
	if (resource_version && !(rv = kubeclient_escape(resource_version))) {
		free(sel);
		return -ENOMEM;
	}
	if (asprintf(&url, "%s%s?watch=true&allowWatchBookmarks=true&timeoutSeconds=%d%s%s%s%s",
		     c->base, path, timeout_s, sel ? "&labelSelector=" : "", sel ? sel : "",
		     rv ? "&resourceVersion=" : "", rv ? rv : "") < 0) {
		url = NULL;
		rc = -ENOMEM;
		goto out;
	}
	rc = setup(c, "GET", url, &hdrs, NULL, NULL, NULL);
	if (rc)
		goto out;
	/* The server closes after timeoutSeconds; this only catches a server that does not. */
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s + 5) * 1000L);
	if (silence_s > 0) {
		curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, (long)silence_s);
	}
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_watch);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &w);
	cc = curl_easy_perform(c->curl);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r.status);
	if (r.status && (r.status < 200 || r.status >= 300)) {
		/* A refused watch answers with a plain Status body, not a stream. */
		fill_result(&r, &w.head);
		rc = map_status(c, "GET", path, t, &r, err, errlen);
		kubeclient_result_free(&r);
		goto out;
	}
	if (w.stopped > 0) {
		rc = 1;
	} else if (w.stopped < 0) {
		errmsg_set(err, errlen, "watch %s: %s", path, w.err_msg[0] ? w.err_msg : "aborted");
		rc = w.stopped;
	} else if (w.gone) {
		errmsg_set(err, errlen, "watch %s: %s (410 Gone): re-list", path, w.err_msg);
		rc = -ESTALE;
	} else if (w.err_code) {
		errmsg_set(err, errlen, "watch %s: error event %ld: %s", path, w.err_code,
			   w.err_msg);
		rc = -EIO;
	} else if (cc == CURLE_OK || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_PARTIAL_FILE ||
		   cc == CURLE_RECV_ERROR) {
		/* Ended, went silent or was cut: the caller re-lists. */
		log_debug("kube_watch_end", "path=%s curl=%d", path, (int)cc);
		rc = 0;
	} else {
		errmsg_set(err, errlen, "API server %s unreachable: watch %s: %s", c->kc.server,
			   path, c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
		rc = curl_code_errno(cc);
	}
out:
	curl_slist_free_all(hdrs);
	free(w.line.data);
	free(w.head.data);
	free(url);
	free(sel);
	free(rv);
	return rc;
}
