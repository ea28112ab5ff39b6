#include "http.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <uv.h>

#include "cluster_glue.h"
#include "log.h"
#include "srv.h"

#define HTTP_METRICS_MAX 16384

struct http {
	struct srv *srv;
	struct MHD_Daemon *d;
	uv_poll_t poll;		 /* MHD's epoll descriptor */
	uv_timer_t timer;	 /* MHD's next timeout, or the end of a back-off */
	int open_handles;	 /* handles not yet closed; free at 0 */
	int starved;		 /* MHD met EMFILE/ENFILE in this run: back off */
	uint64_t log_next;	 /* loop ms before which MHD messages are counted only */
	uint64_t log_suppressed; /* MHD messages not logged since the last line */
};

/* Out of descriptors, MHD's listen socket stays readable and every run
 * fails to accept again: stop watching it for this long instead of
 * spinning. */
#define HTTP_STARVED_BACKOFF_MS 200

static enum MHD_Result http_reply(struct MHD_Connection *mc, unsigned status, const char *ctype,
				  const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	ret = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result http_handler(void *cls, struct MHD_Connection *mc, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_data_size,
				    void **con_cls)
{
	struct http *h = cls;
	struct srv *srv = h->srv;
	static const char text[] = "text/plain; charset=utf-8";
	char buf[HTTP_METRICS_MAX];
	long n;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return http_reply(mc, MHD_HTTP_METHOD_NOT_ALLOWED, text, "method not allowed\n",
				  19);
	if (strcmp(url, "/metrics") == 0) {
		n = metrics_format(&srv->metrics, srv->cfg->version_label, srv->cfg->instance, buf,
				   sizeof(buf));
		if (n < 0)
			return http_reply(mc, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "overflow\n",
					  9);
		/* cluster hook */
		n += (long)cluster_glue_metrics(srv, buf + n, sizeof(buf) - (size_t)n);
		return http_reply(mc, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf,
				  (size_t)n);
	}
	if (strcmp(url, "/healthz") == 0)
		return http_reply(mc, MHD_HTTP_OK, text, "ok\n", 3);
	if (strcmp(url, "/readyz") == 0) {
		/* cluster hook: a new instance is ready once it reaches its peers */
		if (srv->phase == SRV_RUNNING && cluster_glue_ready(srv))
			return http_reply(mc, MHD_HTTP_OK, text, "ready\n", 6);
		return http_reply(mc, MHD_HTTP_SERVICE_UNAVAILABLE, text,
				  srv->phase <= SRV_RUNNING ? "starting\n" : "draining\n", 9);
	}
	return http_reply(mc, MHD_HTTP_NOT_FOUND, text, "not found\n", 10);
}

static void http_run(struct http *h);

static void http_timer_cb(uv_timer_t *t)
{
	http_run(t->data);
}

static void http_poll_cb(uv_poll_t *p, int status, int events)
{
	http_run(p->data);
}

/* Lets MHD do its work, then re-arms the timer for its next deadline. */
static void http_resume_cb(uv_timer_t *t)
{
	struct http *h = t->data;

	if (!h->d)
		return;
	uv_poll_start(&h->poll, UV_READABLE, http_poll_cb);
	http_run(h);
}

static void http_run(struct http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (!h->d)
		return;
	MHD_run(h->d);
	if (h->starved) {
		h->starved = 0;
		uv_poll_stop(&h->poll);
		uv_timer_start(&h->timer, http_resume_cb, HTTP_STARVED_BACKOFF_MS, 0);
		return;
	}
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		uv_timer_start(&h->timer, http_timer_cb, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

/* MHD's messages, at most one line a second (with how many were dropped):
 * under descriptor exhaustion it reports every failed accept. */
__attribute__((format(printf, 2, 0))) static void http_log(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char msg[512], q[560];
	uint64_t now = uv_now(h->srv->loop);

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	if (strstr(msg, "Too many open files") || strstr(msg, "resource limit"))
		h->starved = 1;
	if (now < h->log_next) {
		h->log_suppressed++;
		return;
	}
	log_warn("http_error", "msg=%s suppressed=%llu", log_quote(q, sizeof(q), msg),
		 (unsigned long long)h->log_suppressed);
	h->log_suppressed = 0;
	h->log_next = now + 1000;
}

struct http *http_start(struct srv *srv, const char *addr)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct http *h;

	if (srv_parse_addr(addr, &ss) != 0) {
		log_error("http_error", "addr=%s msg=\"bad address\"", addr);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->srv = srv;
	h->d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, http_handler, h, MHD_OPTION_EXTERNAL_LOGGER, http_log, h,
		MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!h->d) {
		log_error("http_error", "addr=%s msg=\"cannot listen\"", addr);
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || uv_poll_init(srv->loop, &h->poll, info->epoll_fd) != 0) {
		MHD_stop_daemon(h->d);
		free(h);
		return NULL;
	}
	uv_timer_init(srv->loop, &h->timer);
	h->poll.data = h;
	h->timer.data = h;
	h->open_handles = 2;
	uv_poll_start(&h->poll, UV_READABLE, http_poll_cb);
	http_run(h);
	log_info("http_listen", "addr=%s", addr);
	return h;
}

static void http_close_cb(uv_handle_t *hd)
{
	struct http *h = hd->data;

	if (--h->open_handles == 0)
		free(h);
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	/* Stop watching the descriptor before MHD closes it. */
	uv_close((uv_handle_t *)&h->poll, http_close_cb);
	uv_close((uv_handle_t *)&h->timer, http_close_cb);
	MHD_stop_daemon(h->d);
	h->d = NULL;
}
