/*
 * libcurl multi on libuv: curl tells which sockets to watch (socket
 * callback) and when to call back (timer callback); we tell curl what
 * happened with curl_multi_socket_action() and collect finished transfers.
 * Sockets are opened by us with SOCK_CLOEXEC, so no probe connection leaks
 * into a replica the switch starts.
 */
#include "lsw_probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "log.h"

struct lsw_probe {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	int closing;
};

struct probe_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct lsw_probe *pr;
};

static void check_done(struct lsw_probe *pr)
{
	CURLMsg *msg;
	int pending;

	while ((msg = curl_multi_info_read(pr->multi, &pending))) {
		struct lsw_probe_req *r = NULL;
		long code = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (msg->data.result == CURLE_OK)
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
		curl_multi_remove_handle(pr->multi, msg->easy_handle);
		if (!r)
			continue;
		r->busy = 0;
		if (r->body.overflow)
			code = 0;
		r->cb(r, code, r->body.data ? r->body.data : "", r->body.len);
		/* The callback may have freed or re-armed r: do not touch it. */
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct probe_sock *ps = h->data;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(ps->pr->multi, ps->fd, flags, &running);
	check_done(ps->pr);
}

static void sock_closed(uv_handle_t *h)
{
	free(h->data);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct lsw_probe *pr = userp;
	struct probe_sock *ps = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (ps) {
			/* Stopped now (before curl closes the descriptor), freed later. */
			uv_poll_stop(&ps->poll);
			uv_close((uv_handle_t *)&ps->poll, sock_closed);
			curl_multi_assign(pr->multi, s, NULL);
		}
		return 0;
	}
	if (!ps) {
		ps = calloc(1, sizeof(*ps));
		if (!ps)
			return -1;
		ps->fd = s;
		ps->pr = pr;
		if (uv_poll_init_socket(pr->loop, &ps->poll, s) != 0) {
			free(ps);
			return -1;
		}
		ps->poll.data = ps;
		curl_multi_assign(pr->multi, s, ps);
	}
	if (what != CURL_POLL_OUT)
		events |= UV_READABLE;
	if (what != CURL_POLL_IN)
		events |= UV_WRITABLE;
	uv_poll_start(&ps->poll, events, on_poll);
	return 0;
}

static void on_timer(uv_timer_t *t)
{
	struct lsw_probe *pr = t->data;
	int running;

	curl_multi_socket_action(pr->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(pr);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
	struct lsw_probe *pr = userp;

	if (pr->closing)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&pr->timer);
	else
		uv_timer_start(&pr->timer, on_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
	return 0;
}

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct lsw_probe_req *r = ud;

	if (!r->want_body)
		return size * nmemb;
	return bodybuf_curl_write(ptr, size, nmemb, &r->body);
}

struct lsw_probe *lsw_probe_new(uv_loop_t *loop)
{
	struct lsw_probe *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return NULL;
	pr->loop = loop;
	pr->multi = curl_multi_init();
	if (!pr->multi) {
		free(pr);
		return NULL;
	}
	uv_timer_init(loop, &pr->timer);
	pr->timer.data = pr;
	curl_multi_setopt(pr->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(pr->multi, CURLMOPT_SOCKETDATA, pr);
	curl_multi_setopt(pr->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
	curl_multi_setopt(pr->multi, CURLMOPT_TIMERDATA, pr);
	return pr;
}

int lsw_probe_get(struct lsw_probe *pr, struct lsw_probe_req *r, const char *url, long timeout_ms,
		  int want_body, lsw_probe_cb cb, void *data)
{
	CURL *e = r->easy;

	if (r->busy)
		return -EBUSY;
	if (!e) {
		e = curl_easy_init();
		if (!e)
			return -ENOMEM;
		r->easy = e;
	}
	r->pr = pr;
	r->cb = cb;
	r->data = data;
	r->want_body = want_body;
	bodybuf_reset(&r->body);
	r->body.max = LSW_PROBE_BODY_MAX;
	strncpy(r->url, url, sizeof(r->url) - 1);
	r->url[sizeof(r->url) - 1] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 500 ? timeout_ms : 500L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	if (curl_multi_add_handle(pr->multi, e) != CURLM_OK)
		return -EIO;
	r->busy = 1;
	return 0;
}

void lsw_probe_req_free(struct lsw_probe_req *r)
{
	if (r->easy) {
		if (r->busy && r->pr)
			curl_multi_remove_handle(r->pr->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	bodybuf_reset(&r->body);
	r->easy = NULL;
	r->busy = 0;
}

static void probe_closed(uv_handle_t *h)
{
	free(h->data);
}

void lsw_probe_free(struct lsw_probe *pr)
{
	if (!pr)
		return;
	pr->closing = 1;
	/* Closes the connections curl still caches (their polls go through on_socket). */
	curl_multi_cleanup(pr->multi);
	pr->multi = NULL;
	uv_timer_stop(&pr->timer);
	uv_close((uv_handle_t *)&pr->timer, probe_closed);
}
