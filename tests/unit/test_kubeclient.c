/*
 * Unit tests for kubeclient: canned API server replies (a libmicrohttpd
 * server on 127.0.0.1) paired with the exact requests expected, as curl's
 * own test suite does. Covers the error mapping (401, 403 naming verb and
 * resource, 404, 409 AlreadyExists vs Conflict, 422, 5xx), bounded retries,
 * the response cap, bodies and headers sent, and watch streams split at
 * arbitrary points, ERROR events and refused watches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#include "../../deployer/kubeclient.h"
#include "log.h"
#include "unconst.h"

#define CANNED_MAX 16
#define REQ_MAX 16

struct canned {
	unsigned status;
	const char *body;
	size_t chunk; /* >0: stream the body in pieces of this size */
};

struct seen {
	char method[16];
	char url[512];
	char auth[256];
	char ctype[128];
	char token[128]; /* X-Chatd-Control-Token */
	char body[2048];
};

static struct {
	pthread_mutex_t lock;
	struct canned replies[CANNED_MAX];
	size_t n_replies, next;
	struct seen reqs[REQ_MAX];
	size_t n_reqs;
	struct MHD_Daemon *d;
	unsigned short port;
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct stream {
	const char *body;
	size_t len, chunk;
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	size_t n;

	if (pos >= s->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = s->len - (size_t)pos;
	if (n > s->chunk)
		n = s->chunk;
	if (n > max)
		n = max;
	memcpy(buf, s->body + pos, n);
	return (ssize_t)n;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct seen *r = cls;
	size_t l = strlen(r->url);

	snprintf(r->url + l, sizeof(r->url) - l, "%c%s=%s", strchr(r->url, '?') ? '&' : '?', key,
		 value ? value : "");
	return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *data,
			       size_t *data_size, void **con_cls)
{
	struct seen *r = *con_cls;
	struct MHD_Response *resp;
	struct canned reply = { 500, "{}", 0 };
	const char *h;
	enum MHD_Result ret;

	if (!r) {
		pthread_mutex_lock(&srv.lock);
		r = srv.n_reqs < REQ_MAX ? &srv.reqs[srv.n_reqs++] : &srv.reqs[REQ_MAX - 1];
		memset(r, 0, sizeof(*r));
		pthread_mutex_unlock(&srv.lock);
		snprintf(r->method, sizeof(r->method), "%s", method);
		snprintf(r->url, sizeof(r->url), "%s", url);
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, r);
		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
		snprintf(r->auth, sizeof(r->auth), "%s", h ? h : "");
		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
		snprintf(r->ctype, sizeof(r->ctype), "%s", h ? h : "");
		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Chatd-Control-Token");
		snprintf(r->token, sizeof(r->token), "%s", h ? h : "");
		*con_cls = r;
		return MHD_YES;
	}
	if (*data_size) {
		size_t l = strlen(r->body);

		snprintf(r->body + l, sizeof(r->body) - l, "%.*s", (int)*data_size, data);
		*data_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&srv.lock);
	if (srv.next < srv.n_replies)
		reply = srv.replies[srv.next++];
	pthread_mutex_unlock(&srv.lock);
	if (reply.chunk) {
		struct stream *s = malloc(sizeof(*s));

		s->body = reply.body;
		s->len = strlen(reply.body);
		s->chunk = reply.chunk;
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, stream_cb, s, free);
	} else {
		resp = MHD_create_response_from_buffer(strlen(reply.body), unconst(reply.body),
						       MHD_RESPMEM_PERSISTENT);
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	ret = MHD_queue_response(c, reply.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void canned(unsigned status, const char *body, size_t chunk)
{
	srv.replies[srv.n_replies++] = (struct canned){ status, body, chunk };
}

static int setup(void **state)
{
	const union MHD_DaemonInfo *info;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv.n_replies = srv.next = srv.n_reqs = 0;
	srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				 handler, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
	assert_non_null(srv.d);
	info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
	srv.port = info->port;
	return 0;
}

static int teardown(void **state)
{
	MHD_stop_daemon(srv.d);
	return 0;
}

static struct kubeclient *client(int retries, size_t max_response)
{
	struct kubeconfig kc;
	struct kubeclient *c = NULL;
	struct kubeclient_opts o = { .retries = retries,
				     .backoff_ms = 5,
				     .timeout_ms = 3000,
				     .max_response = max_response };
	char yaml[512], err[256];

	snprintf(yaml, sizeof(yaml),
		 "current-context: x\n"
		 "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:%u'}}]\n"
		 "contexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]\n"
		 "users: [{name: u, user: {token: sekret}}]\n",
		 srv.port);
	assert_int_equal(
		kubeconfig_load_string(&kc, yaml, strlen(yaml), "/", NULL, "mem", err, sizeof(err)),
		0);
	assert_int_equal(kubeclient_new(&c, &kc, &o), 0);
	return c;
}

static const struct kubeclient_target dep_patch = { "patch", "deployments", "apps", "ns",
						    "chat-abc" };

static void test_get_ok_and_request_shape(void **state)
{
	struct kubeclient *c = client(0, 0);
	struct kubeclient_result r;
	json_t *body = json_pack("{s:{s:i}}", "spec", "replicas", 3);
	char err[512] = "";

	canned(200, "{\"kind\":\"Deployment\",\"spec\":{\"replicas\":3}}", 0);
	assert_int_equal(kubeclient_request(c, "PATCH",
					    "/apis/apps/v1/namespaces/ns/deployments/"
					    "chat-abc?x=1",
					    KUBECLIENT_MERGE_PATCH, body, &dep_patch, &r, err,
					    sizeof(err)),
			 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(r.body, "spec"), "replicas")),
		3);
	kubeclient_result_free(&r);
	assert_int_equal(srv.n_reqs, 1);
	assert_string_equal(srv.reqs[0].method, "PATCH");
	assert_string_equal(srv.reqs[0].url,
			    "/apis/apps/v1/namespaces/ns/deployments/chat-abc?x=1");
	assert_string_equal(srv.reqs[0].auth, "Bearer sekret");
	assert_string_equal(srv.reqs[0].ctype, "application/merge-patch+json");
	assert_string_equal(srv.reqs[0].body, "{\"spec\":{\"replicas\":3}}");
	json_decref(body);
	kubeclient_free(c);
}

/* One more header goes with the request (and the credentials still do);
 * the dry run records the request without it. */
static void test_extra_header(void **state)
{
	static const struct kubeclient_target proxy = { "create", "pods/proxy", "", "ns", "p" };
	struct kubeclient *c = client(0, 0);
	struct kubeclient_result r;
	json_t *log = json_array();
	char err[512] = "", *dump;

	canned(200, "{\"moved\":2}", 0);
	assert_int_equal(kubeclient_request_header(c, "POST",
						   "/api/v1/namespaces/ns/pods/p:5280/proxy/"
						   "control/move?count=2",
						   NULL, NULL, "X-Chatd-Control-Token: t0ken",
						   &proxy, &r, err, sizeof(err)),
			 0);
	assert_int_equal(json_integer_value(json_object_get(r.body, "moved")), 2);
	kubeclient_result_free(&r);
	assert_int_equal(srv.n_reqs, 1);
	assert_string_equal(srv.reqs[0].method, "POST");
	assert_string_equal(srv.reqs[0].token, "t0ken");
	assert_string_equal(srv.reqs[0].auth, "Bearer sekret");
	/* without: no such header */
	canned(200, "{}", 0);
	assert_int_equal(kubeclient_request(c, "GET", "/api/v1/namespaces/ns", NULL, NULL, NULL,
					    NULL, err, sizeof(err)),
			 0);
	assert_string_equal(srv.reqs[1].token, "");
	kubeclient_set_dry_run(c, log);
	assert_int_equal(kubeclient_request_header(c, "POST", "/x", NULL, NULL,
						   "X-Chatd-Control-Token: t0ken", &proxy, NULL,
						   err, sizeof(err)),
			 0);
	assert_int_equal(srv.n_reqs, 2);
	dump = json_dumps(log, 0);
	assert_non_null(dump);
	assert_null(strstr(dump, "t0ken"));
	free(dump);
	kubeclient_set_dry_run(c, NULL);
	json_decref(log);
	kubeclient_free(c);
}

static void expect(unsigned status, const char *reply, int code, const char *needle)
{
	struct kubeclient *c = client(0, 0);
	struct kubeclient_result r;
	char err[1024] = "";
	int rc;

	srv.n_replies = srv.next = 0;
	canned(status, reply, 0);
	rc = kubeclient_request(c, "PATCH", "/p", NULL, NULL, &dep_patch, &r, err, sizeof(err));
	if (rc != code || !strstr(err, needle))
		fail_msg("status %u: rc=%d (want %d) err=\"%s\" (want \"%s\")", status, rc, code,
			 err, needle);
	assert_int_equal(r.status, status);
	kubeclient_result_free(&r);
	kubeclient_free(c);
}

static void test_error_mapping(void **state)
{
	expect(401,
	       "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"Unauthorized\","
	       "\"reason\":\"Unauthorized\",\"code\":401}",
	       -EACCES, "rejected the credentials from mem (401 Unauthorized: Unauthorized)");
	expect(403,
	       "{\"kind\":\"Status\",\"message\":\"deployments.apps \\\"chat-abc\\\" is "
	       "forbidden: User \\\"u\\\" cannot patch resource \\\"deployments\\\"\","
	       "\"reason\":\"Forbidden\",\"code\":403}",
	       -EPERM,
	       "RBAC: not allowed to patch deployments.apps \"chat-abc\" in namespace ns; grant "
	       "verb \"patch\" on resource \"deployments\" in API group \"apps\"");
	expect(404,
	       "{\"kind\":\"Status\",\"message\":\"deployments.apps \\\"chat-abc\\\" not "
	       "found\",\"reason\":\"NotFound\",\"code\":404}",
	       -ENOENT, "deployments.apps \"chat-abc\" not found in namespace ns");
	expect(409,
	       "{\"kind\":\"Status\",\"message\":\"exists\",\"reason\":\"AlreadyExists\","
	       "\"code\":409}",
	       -EEXIST, "already exists");
	expect(409,
	       "{\"kind\":\"Status\",\"message\":\"the object has been modified\","
	       "\"reason\":\"Conflict\",\"code\":409}",
	       -ESTALE, "conflict on deployments.apps");
	expect(422,
	       "{\"kind\":\"Status\",\"message\":\"spec.replicas: Invalid value\","
	       "\"reason\":\"Invalid\",\"code\":422}",
	       -EINVAL, "HTTP 422 Invalid: spec.replicas: Invalid value");
	expect(500, "not json at all", -EIO, "HTTP 500");
}

static void test_bounded_retries(void **state)
{
	struct kubeclient *c = client(2, 0);
	char err[512] = "";

	canned(503, "{}", 0);
	canned(500, "{}", 0);
	canned(200, "{\"ok\":1}", 0);
	assert_int_equal(
		kubeclient_request(c, "GET", "/x", NULL, NULL, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(srv.n_reqs, 3);
	canned(503, "{}", 0);
	canned(503, "{}", 0);
	canned(503, "{}", 0);
	canned(200, "{}", 0); /* never reached: 3 attempts in all */
	assert_int_equal(
		kubeclient_request(c, "GET", "/x", NULL, NULL, NULL, NULL, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "after 3 attempts"));
	assert_int_equal(srv.n_reqs, 6);
	/* 4xx other than 429 is never retried */
	srv.n_replies = srv.next = 0;
	canned(404, "{}", 0);
	assert_int_equal(
		kubeclient_request(c, "GET", "/x", NULL, NULL, NULL, NULL, err, sizeof(err)),
		-ENOENT);
	assert_int_equal(srv.n_reqs, 7);
	kubeclient_free(c);
}

static void test_response_cap(void **state)
{
	struct kubeclient *c = client(0, 64);
	char err[512] = "";

	canned(200,
	       "{\"items\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}",
	       0);
	assert_int_equal(
		kubeclient_request(c, "GET", "/big", NULL, NULL, NULL, NULL, err, sizeof(err)),
		-EFBIG);
	assert_non_null(strstr(err, "larger than 64 bytes"));
	kubeclient_free(c);
}

static void test_unreachable(void **state)
{
	struct kubeclient *c;
	char err[512] = "";

	MHD_stop_daemon(srv.d); /* nothing listens on the port any more */
	c = client(1, 0);
	assert_int_equal(
		kubeclient_request(c, "GET", "/x", NULL, NULL, NULL, NULL, err, sizeof(err)),
		-ECONNREFUSED);
	assert_non_null(strstr(err, "unreachable"));
	assert_non_null(strstr(err, "after 2 attempts"));
	kubeclient_free(c);
	setup(state);
}

struct seen_events {
	char log[512];
	int stop_after;
	int n;
};

static int on_event(const char *type, json_t *obj, void *arg)
{
	struct seen_events *s = arg;
	size_t l = strlen(s->log);

	snprintf(s->log + l, sizeof(s->log) - l, "%s:%s;", type,
		 json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")));
	return ++s->n == s->stop_after;
}

static const char events[] =
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
	"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\r\n"
	"\n"
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n"
	"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"d\"}}}\n";

static void test_watch_stream(void **state)
{
	static const struct kubeclient_target t = { "watch", "deployments", "apps", "ns", NULL };
	size_t chunks[] = { 1, 3, 7, 4096 };

	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct kubeclient *c = client(0, 0);
		struct seen_events s = { .stop_after = 0 };
		char err[512] = "";

		srv.n_replies = srv.next = srv.n_reqs = 0;
		canned(200, events, chunks[i]);
		/* the stream ended: 0, the caller re-lists */
		assert_int_equal(kubeclient_watch(c, "/apis/apps/v1/namespaces/ns/deployments",
						  "app=chat,x", "42", 5, 3, on_event, &s, &t, err,
						  sizeof(err)),
				 0);
		assert_string_equal(s.log, "ADDED:a;MODIFIED:b;BOOKMARK:c;DELETED:d;");
		assert_string_equal(srv.reqs[0].url,
				    "/apis/apps/v1/namespaces/ns/deployments?"
				    "watch=true&allowWatchBookmarks=true&timeoutSeconds=5&"
				    "labelSelector=app=chat,x&resourceVersion=42");
		kubeclient_free(c);
	}
}

static void test_watch_stop_error_gone_refused(void **state)
{
	static const struct kubeclient_target t = { "watch", "deployments", "apps", "ns", NULL };
	struct kubeclient *c = client(0, 0);
	struct seen_events s = { .stop_after = 2 };
	char err[512] = "";

	canned(200, events, 5);
	assert_int_equal(
		kubeclient_watch(c, "/w", NULL, NULL, 5, 3, on_event, &s, &t, err, sizeof(err)), 1);
	assert_string_equal(s.log, "ADDED:a;MODIFIED:b;");

	canned(200,
	       "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
	       "\"reason\":\"Expired\",\"message\":\"too old resource version: 1 (99)\"}}\n",
	       0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(
		kubeclient_watch(c, "/w", NULL, "1", 5, 3, on_event, &s, &t, err, sizeof(err)),
		-ESTALE);
	assert_non_null(strstr(err, "too old resource version"));

	canned(403,
	       "{\"kind\":\"Status\",\"message\":\"no watch for you\",\"reason\":"
	       "\"Forbidden\",\"code\":403}\n",
	       0);
	assert_int_equal(
		kubeclient_watch(c, "/w", NULL, "1", 5, 3, on_event, &s, &t, err, sizeof(err)),
		-EPERM);
	assert_non_null(strstr(err, "grant verb \"watch\" on resource \"deployments\""));

	canned(200, "{not json\n", 0);
	assert_int_equal(
		kubeclient_watch(c, "/w", NULL, "1", 5, 3, on_event, &s, &t, err, sizeof(err)),
		-EPROTO);
	kubeclient_free(c);
}

static void test_escape(void **state)
{
	char *e = kubeclient_escape("app=chat,rainbow.chat/sha in (a b)");

	assert_string_equal(e, "app%3Dchat%2Crainbow.chat%2Fsha%20in%20%28a%20b%29");
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_ok_and_request_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extra_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_mapping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounded_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_stop_error_gone_refused, setup,
						teardown),
		cmocka_unit_test(test_escape),
	};

	log_init("test_kubeclient", LOG_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
