/*
 * chatd's HTTP endpoint: libmicrohttpd on its own thread, answers computed
 * on the loop (/metrics, /healthz, /readyz).
 */
#include "http.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "addr.h"
#include "cluster_glue.h"
#include "log.h"
#include "move.h"
#include "srv.h"
#include "unconst.h"

#define HTTP_METRICS_MAX 32768
/* Memory MHD reserves per connection for the request head and our reply's
 * headers; our requests and headers are small. */
#define HTTP_CONN_MEMORY 16384
/* Out of descriptors with no HTTP connection open, MHD retries accept() in
 * a busy loop on its thread; its message about it makes the thread pause
 * this long instead of spinning a core. */
#define HTTP_STARVED_PAUSE_MS 100

enum http_what { HTTP_METRICS, HTTP_HEALTHZ, HTTP_READYZ, HTTP_MOVE };

/* The control endpoint's header, and the largest token it may carry. */
#define HTTP_TOKEN_HEADER "X-Chatd-Control-Token"
#define HTTP_TOKEN_MAX 4096

/* One request waiting for (or holding) its answer from the loop. Owned by
 * the MHD thread, except between being taken off the queue by the loop and
 * MHD_resume_connection(), when only the loop touches it. */
struct http_req {
	struct MHD_Connection *mc;
	struct http_req *next; /* h->queue */
	enum http_what what;
	int done; /* the loop filled status/ctype/body */
	unsigned status;
	const char *ctype;
	char *body; /* malloc'd */
	size_t len;
	unsigned count; /* HTTP_MOVE: sessions to move */
};

struct http {
	struct srv *srv; /* read on the loop thread only */
	struct MHD_Daemon *d;
	uint8_t *token; /* --control-token-file's token (a copy for MHD's thread), or NULL */
	size_t token_len;
	uv_async_t async;	/* wakes the loop for queued requests */
	pthread_mutex_t lock;	/* guards queue and stopping */
	struct http_req *queue; /* suspended requests not yet answered */
	int stopping;		/* http_stop() ran: answer 503 at once */
	/* MHD's messages (MHD thread only) */
	uint64_t log_next;	 /* monotonic ms before which messages are counted only */
	uint64_t log_suppressed; /* messages not logged since the last line */
};

static const char text_plain[] = "text/plain; charset=utf-8";

static enum MHD_Result http_reply(struct MHD_Connection *mc, unsigned status, const char *ctype,
				  const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, unconst(body), MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	ret = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* ------------------------------------------------------- the loop thread */

static void http_set(struct http_req *r, unsigned status, const char *ctype, const char *body)
{
	r->status = status;
	r->ctype = ctype;
	r->len = strlen(body);
	r->body = strdup(body);
}

/* Computes the answer from the loop's state. */
static void http_answer(struct http *h, struct http_req *r)
{
	struct srv *srv = h->srv;
	long n;

	switch (r->what) {
	case HTTP_METRICS:
		r->body = malloc(HTTP_METRICS_MAX);
		if (!r->body)
			break;
		n = metrics_format(&srv->metrics, uv_now(srv->loop), srv->cfg->version_label,
				   srv->cfg->instance, r->body, HTTP_METRICS_MAX);
		if (n < 0) {
			free(r->body);
			http_set(r, MHD_HTTP_INTERNAL_SERVER_ERROR, text_plain, "overflow\n");
			break;
		}
		/* cluster hook */
		n += (long)cluster_glue_metrics(srv, r->body + n, HTTP_METRICS_MAX - (size_t)n);
		r->status = MHD_HTTP_OK;
		r->ctype = "text/plain; version=0.0.4; charset=utf-8";
		r->len = (size_t)n;
		break;
	case HTTP_HEALTHZ:
		http_set(r, MHD_HTTP_OK, text_plain, "ok\n");
		break;
	case HTTP_MOVE: {
		char body[160];
		unsigned moved = move_sessions(srv, r->count);

		snprintf(body, sizeof(body),
			 "{\"requested\":%u,\"moved\":%u,\"sessions\":%llu,\"connections\":%llu}\n",
			 r->count, moved, (unsigned long long)srv->metrics.sessions,
			 (unsigned long long)srv->metrics.connections);
		http_set(r, MHD_HTTP_OK, "application/json", body);
		break;
	}
	case HTTP_READYZ:
		/* cluster hook: a new instance is ready once it reaches its peers */
		if (srv->phase == SRV_RUNNING && cluster_glue_ready(srv))
			http_set(r, MHD_HTTP_OK, text_plain, "ready\n");
		else
			http_set(r, MHD_HTTP_SERVICE_UNAVAILABLE, text_plain,
				 srv->phase <= SRV_RUNNING ? "starting\n" : "draining\n");
		break;
	}
	r->done = 1;
}

/* Answers every queued request and hands it back to MHD. */
static void http_async_cb(uv_async_t *a)
{
	struct http *h = a->data;
	struct http_req *r, *next;

	pthread_mutex_lock(&h->lock);
	r = h->queue;
	h->queue = NULL;
	pthread_mutex_unlock(&h->lock);
	for (; r; r = next) {
		next = r->next; /* r may be freed by MHD as soon as it is resumed */
		http_answer(h, r);
		MHD_resume_connection(r->mc);
	}
}

/* -------------------------------------------------------- the MHD thread */

/*
 * POST /control/move?count=N: only with --control-token-file, and only with
 * that token in X-Chatd-Control-Token (compared in constant time). Checked
 * here on MHD's thread (the token never changes after the start). The
 * status: 200 to go on, else the refusal (404 without a token file, 405,
 * 403, 400).
 */
static unsigned http_control_check(struct http *h, struct MHD_Connection *mc, const char *method,
				   unsigned *count)
{
	const char *tok, *n;
	unsigned long v;
	size_t len;
	char *end;

	if (!h->token)
		return MHD_HTTP_NOT_FOUND;
	if (strcmp(method, "POST") != 0)
		return MHD_HTTP_METHOD_NOT_ALLOWED;
	tok = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, HTTP_TOKEN_HEADER);
	len = tok ? strnlen(tok, HTTP_TOKEN_MAX + 1) : 0;
	if (!tok || len != h->token_len || CRYPTO_memcmp(tok, h->token, len) != 0)
		return MHD_HTTP_FORBIDDEN;
	n = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "count");
	if (!n || !*n || *n == '-' || *n == '+')
		return MHD_HTTP_BAD_REQUEST;
	v = strtoul(n, &end, 10);
	if (*end || v < 1 || v > MOVE_MAX_PER_REQUEST)
		return MHD_HTTP_BAD_REQUEST;
	*count = (unsigned)v;
	return MHD_HTTP_OK;
}

static enum MHD_Result http_control_refuse(struct MHD_Connection *mc, unsigned status)
{
	static const char *const why[] = { "not found\n", "method not allowed: POST\n",
					   "forbidden\n", "count must be 1..100000\n" };
	const char *msg = status == MHD_HTTP_NOT_FOUND		  ? why[0]
			  : status == MHD_HTTP_METHOD_NOT_ALLOWED ? why[1]
			  : status == MHD_HTTP_FORBIDDEN	  ? why[2]
								  : why[3];

	return http_reply(mc, status, text_plain, msg, strlen(msg));
}

static enum MHD_Result http_handler(void *cls, struct MHD_Connection *mc, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_data_size,
				    void **con_cls)
{
	struct http *h = cls;
	struct http_req *r = *con_cls;
	enum http_what what;
	unsigned count = 0;

	if (r) {
		/* Resumed: the loop answered. A request body is read and ignored. */
		if (*upload_data_size) {
			*upload_data_size = 0;
			return MHD_YES;
		}
		if (!r->done || !r->body)
			return http_reply(mc, MHD_HTTP_INTERNAL_SERVER_ERROR, text_plain,
					  "out of memory\n", 14);
		return http_reply(mc, r->status, r->ctype, r->body, r->len);
	}
	if (strcmp(url, "/control/move") == 0) {
		unsigned status = http_control_check(h, mc, method, &count);

		if (status != MHD_HTTP_OK)
			return http_control_refuse(mc, status);
		what = HTTP_MOVE;
		goto queue;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return http_reply(mc, MHD_HTTP_METHOD_NOT_ALLOWED, text_plain,
				  "method not allowed\n", 19);
	if (strcmp(url, "/metrics") == 0)
		what = HTTP_METRICS;
	else if (strcmp(url, "/healthz") == 0)
		what = HTTP_HEALTHZ;
	else if (strcmp(url, "/readyz") == 0)
		what = HTTP_READYZ;
	else
		return http_reply(mc, MHD_HTTP_NOT_FOUND, text_plain, "not found\n", 10);
queue:
	r = calloc(1, sizeof(*r));
	if (!r)
		return MHD_NO;
	r->mc = mc;
	r->what = what;
	r->count = count;
	*con_cls = r;
	pthread_mutex_lock(&h->lock);
	if (h->stopping) {
		pthread_mutex_unlock(&h->lock);
		return http_reply(mc, MHD_HTTP_SERVICE_UNAVAILABLE, text_plain, "stopping\n", 9);
	}
	/* Suspended before it is visible to the loop, so that the loop's
	 * resume always follows this suspend. */
	MHD_suspend_connection(mc);
	r->next = h->queue;
	h->queue = r;
	pthread_mutex_unlock(&h->lock);
	uv_async_send(&h->async);
	return MHD_YES;
}

static void http_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;

	if (!r)
		return;
	free(r->body);
	free(r);
	*con_cls = NULL;
}

static uint64_t http_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* MHD's messages, at most one line a second (with how many were dropped):
 * under descriptor exhaustion it reports every failed accept. */
__attribute__((format(printf, 2, 0))) static void http_log(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char msg[512], q[560];
	uint64_t now = http_mono_ms();

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	if (strstr(msg, "resource limit at FIRST"))
		nanosleep(&(struct timespec){ 0, HTTP_STARVED_PAUSE_MS * 1000000L }, NULL);
	if (now < h->log_next) {
		h->log_suppressed++;
		return;
	}
	log_warn("http_error", "msg=%s suppressed=%llu", log_quote(q, sizeof(q), msg),
		 (unsigned long long)h->log_suppressed);
	h->log_suppressed = 0;
	h->log_next = now + 1000;
}

/* ------------------------------------------------------------ lifecycle */

static void http_close_cb(uv_handle_t *hd)
{
	struct http *h = hd->data;

	if (h->token)
		OPENSSL_cleanse(h->token, h->token_len);
	free(h->token);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

struct http *http_start(struct srv *srv, const char *addr)
{
	const struct config *cfg = srv->cfg;
	struct addr a;
	struct http *h;

	if (addr_parse(addr, ADDR_PORT_ZERO, 0, &a) != 0) {
		log_error("http_error", "addr=%s msg=\"bad address\"", addr);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->srv = srv;
	if (srv->control_token) {
		h->token = malloc(srv->control_token_len);
		if (!h->token) {
			free(h);
			return NULL;
		}
		memcpy(h->token, srv->control_token, srv->control_token_len);
		h->token_len = srv->control_token_len;
	}
	pthread_mutex_init(&h->lock, NULL);
	if (uv_async_init(srv->loop, &h->async, http_async_cb) != 0) {
		pthread_mutex_destroy(&h->lock);
		free(h->token);
		free(h);
		return NULL;
	}
	h->async.data = h;
	h->d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
			MHD_USE_ERROR_LOG | (a.sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, http_handler, h, MHD_OPTION_EXTERNAL_LOGGER, http_log, h,
		MHD_OPTION_NOTIFY_COMPLETED, http_completed, h, MHD_OPTION_SOCK_ADDR, &a.sa,
		MHD_OPTION_CONNECTION_LIMIT, cfg->http_max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->http_max_per_ip,
		MHD_OPTION_CONNECTION_TIMEOUT, cfg->http_timeout,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY, MHD_OPTION_END);
	if (!h->d) {
		log_error("http_error", "addr=%s msg=\"cannot listen\"", addr);
		uv_close((uv_handle_t *)&h->async, http_close_cb); /* frees h */
		return NULL;
	}
	log_info("http_listen", "addr=%s max_connections=%u max_per_ip=%u timeout=%u", addr,
		 cfg->http_max_connections, cfg->http_max_per_ip, cfg->http_timeout);
	return h;
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = 1;
	pthread_mutex_unlock(&h->lock);
	/* MHD must not be stopped with suspended connections: answer them. */
	http_async_cb(&h->async);
	MHD_stop_daemon(h->d);
	h->d = NULL;
	uv_close((uv_handle_t *)&h->async, http_close_cb);
}

int http_bound_port(const struct http *h)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);

	return i && i->port ? (int)i->port : -ENOTCONN;
}
