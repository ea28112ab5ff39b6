/*
 * Proxies. A proxy is freed only in the close callback of its last handle;
 * it holds a reference on its backend from the moment a connect starts
 * until it closes, so a route change never frees a backend under it.
 */
#include "lsw_proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "outq.h"

#define LSW_READ_MIN 4096 /* reads stop when less room than this is left */
#define LSW_TRIES_MAX 8	  /* backends one new connection may try */
#define LSW_SWEEP_MS 250
#define LSW_LOG_EVERY_MS 1000 /* refusals: at most one log line a second */

struct lsw_side {
	uv_tcp_t tcp;
	struct outq q; /* bytes to write to this side */
	struct lsw_proxy *px;
	struct lsw_side *peer;
	int eof; /* read EOF from this side */
	int reading;
	int open;
};

struct lsw_proxy {
	struct lsw_dp *dp;
	struct lsw_backend *be;
	struct lsw_side cli, up;
	uv_connect_t connect;
	uint64_t connect_start; /* ms; 0 when not connecting */
	unsigned tried[LSW_TRIES_MAX];
	int tries;
	int counted;   /* counted in be->active */
	int shut_done; /* half-closes passed on (2: both directions done) */
	int closing;
	int retrying; /* the upstream handle closes to connect elsewhere */
	struct lsw_proxy *prev, *next;
};

uint64_t lsw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- proxies ------------------------------------------------------------ */

static void proxy_free(struct lsw_proxy *px)
{
	struct lsw_dp *dp = px->dp;

	if (px->prev)
		px->prev->next = px->next;
	else
		dp->proxies = px->next;
	if (px->next)
		px->next->prev = px->prev;
	dp->open--;
	free(px);
}

static void side_close_cb(uv_handle_t *h)
{
	struct lsw_side *s = h->data;
	struct lsw_proxy *px = s->px;

	outq_free(&s->q);
	s->open = 0;
	if (!px->cli.open && !px->up.open)
		proxy_free(px);
}

static void side_close(struct lsw_side *s)
{
	if (s->open && !uv_is_closing((uv_handle_t *)&s->tcp))
		uv_close((uv_handle_t *)&s->tcp, side_close_cb);
}

static void backend_release(struct lsw_proxy *px)
{
	if (px->counted) {
		px->be->active--;
		px->dp->active--;
		px->counted = 0;
	}
	if (px->be) {
		px->be->refs--;
		px->be = NULL;
	}
}

/* The one close path of a proxy: both sides closed, counters dropped once. */
static void proxy_close(struct lsw_proxy *px)
{
	if (px->closing)
		return;
	px->closing = 1;
	px->connect_start = 0;
	backend_release(px);
	side_close(&px->cli);
	side_close(&px->up);
}

/* Room under the high-water mark in the queue this side's reads go to. */
static size_t side_room(const struct lsw_side *s)
{
	size_t used = outq_allocated(&s->peer->q), hw = s->px->dp->high_water;

	return used < hw ? hw - used : 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lsw_side *s = h->data;
	size_t room = side_room(s);

	buf->base = s->px->dp->rbuf;
	buf->len = room < LSW_READ_SIZE ? room : LSW_READ_SIZE;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void side_read_start(struct lsw_side *s)
{
	if (s->reading || s->eof || s->px->closing || side_room(s) < LSW_READ_MIN)
		return;
	if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
		s->reading = 1;
	else
		proxy_close(s->px);
}

static void side_read_stop(struct lsw_side *s)
{
	if (!s->reading)
		return;
	uv_read_stop((uv_stream_t *)&s->tcp);
	s->reading = 0;
}

/* Events of the output queue towards side s (q->data). */
static void outq_event(struct outq *q, enum outq_event ev, int status)
{
	struct lsw_side *s = q->data;
	struct lsw_proxy *px = s->px;

	if (px->closing)
		return;
	switch (ev) {
	case OUTQ_DRAINED:
		side_read_start(s->peer); /* room again: the other side may read */
		break;
	case OUTQ_ERROR:
		proxy_close(px);
		break;
	case OUTQ_SHUTDOWN:
		/* Both directions finished (or one failed): the proxy is done. */
		px->shut_done++;
		if (status < 0 || px->shut_done == 2)
			proxy_close(px);
		break;
	}
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct lsw_side *s = stream->data;
	struct lsw_proxy *px = s->px;
	struct lsw_side *dst = s->peer;

	if (nread == 0)
		return;
	if (nread == UV_ENOBUFS) {
		side_read_stop(s);
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF) {
			proxy_close(px);
			return;
		}
		/* Half-close: pass the FIN on once queued data is written. */
		s->eof = 1;
		side_read_stop(s);
		if (outq_shutdown(&dst->q) != 0)
			proxy_close(px);
		return;
	}
	if (outq_write(&dst->q, buf->base, (size_t)nread) != 0) {
		proxy_close(px);
		return;
	}
	if (side_room(s) < LSW_READ_MIN)
		side_read_stop(s);
}

static void side_init(struct lsw_proxy *px, struct lsw_side *s, struct lsw_side *peer)
{
	s->px = px;
	s->peer = peer;
	s->tcp.data = s;
	outq_init(&s->q, (uv_stream_t *)&s->tcp, 0, px->dp->high_water / 4, outq_event, s);
}

/* ---- routing and upstream connects --------------------------------------- */

static int tried(const struct lsw_proxy *px, unsigned id)
{
	for (int i = 0; i < px->tries; i++)
		if (px->tried[i] == id)
			return 1;
	return 0;
}

/* The next ready backend of the route this proxy has not tried; NULL when none. */
static struct lsw_backend *pick_backend(struct lsw_dp *dp, const struct lsw_proxy *px)
{
	for (size_t k = 0; k < dp->n_route; k++) {
		struct lsw_backend *be = dp->route[dp->rr++ % dp->n_route];

		if (be->ready && (!px || !tried(px, be->id)))
			return be;
	}
	return NULL;
}

static void connect_cb(uv_connect_t *req, int status);

static int start_connect(struct lsw_proxy *px, struct lsw_backend *be)
{
	struct lsw_dp *dp = px->dp;
	int rc;

	px->be = be;
	be->refs++;
	if (px->tries < LSW_TRIES_MAX)
		px->tried[px->tries++] = be->id;
	uv_tcp_init(dp->loop, &px->up.tcp);
	px->up.tcp.data = &px->up;
	px->up.open = 1;
	uv_tcp_nodelay(&px->up.tcp, 1);
	px->connect.data = px;
	px->connect_start = lsw_now_ms();
	rc = uv_tcp_connect(&px->connect, &px->up.tcp, (struct sockaddr *)&be->sa, connect_cb);
	if (rc != 0)
		px->connect_start = 0;
	return rc;
}

static void refuse(struct lsw_proxy *px)
{
	/* Nothing (else) to go to: reset, as at accept. */
	if (!px->closing && px->cli.open && !uv_is_closing((uv_handle_t *)&px->cli.tcp)) {
		px->closing = 1;
		px->connect_start = 0;
		backend_release(px);
		if (uv_tcp_close_reset(&px->cli.tcp, side_close_cb) != 0)
			uv_close((uv_handle_t *)&px->cli.tcp, side_close_cb);
		side_close(&px->up);
		return;
	}
	proxy_close(px);
}

static void retry_close_cb(uv_handle_t *h)
{
	struct lsw_side *s = h->data;
	struct lsw_proxy *px = s->px;
	struct lsw_backend *be;

	s->open = 0;
	px->retrying = 0;
	if (px->closing) {
		if (!px->cli.open)
			proxy_free(px);
		return;
	}
	be = pick_backend(px->dp, px);
	if (!be) {
		refuse(px);
		return;
	}
	px->dp->retried++;
	if (start_connect(px, be) != 0) {
		be->failed++;
		px->dp->failed++;
		proxy_close(px);
	}
}

/* The upstream connect failed (or timed out): report the backend, try another. */
static void connect_failed(struct lsw_proxy *px, const char *why)
{
	struct lsw_dp *dp = px->dp;
	struct lsw_backend *be = px->be;

	px->connect_start = 0;
	be->failed++;
	dp->failed++;
	log_warn("upstream-failed", "backend=%s sha=%s err=\"%s\"", be->addr, be->sha, why);
	if (dp->down_cb)
		dp->down_cb(dp, be, why);
	backend_release(px);
	px->retrying = 1;
	uv_close((uv_handle_t *)&px->up.tcp, retry_close_cb);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct lsw_proxy *px = req->data;

	if (status == UV_ECANCELED || px->closing || px->retrying)
		return;
	if (status < 0) {
		connect_failed(px, uv_strerror(status));
		return;
	}
	px->connect_start = 0;
	px->counted = 1;
	px->be->active++;
	px->be->total++;
	px->dp->active++;
	side_read_start(&px->cli);
	side_read_start(&px->up);
}

struct lsw_reject {
	uv_tcp_t tcp;
};

static void reject_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Accepts the pending connection only to reset it (a clear refusal). */
static void reject(struct lsw_dp *dp, uv_stream_t *server)
{
	struct lsw_reject *r = malloc(sizeof(*r));

	if (!r)
		return;
	uv_tcp_init(dp->loop, &r->tcp);
	r->tcp.data = r;
	if (uv_accept(server, (uv_stream_t *)&r->tcp) != 0 ||
	    uv_tcp_close_reset(&r->tcp, reject_closed) != 0)
		uv_close((uv_handle_t *)&r->tcp, reject_closed);
}

static void on_accept(uv_stream_t *server, int status)
{
	struct lsw_dp *dp = server->data;
	struct lsw_proxy *px;
	struct lsw_backend *be;

	if (status < 0) {
		/* Out of descriptors (libuv closed what it could not accept). */
		dp->refused_limit++;
		dp->log_refused_limit++;
		return;
	}
	if (dp->open >= dp->max_proxies) {
		dp->refused_limit++;
		dp->log_refused_limit++;
		reject(dp, server);
		return;
	}
	be = pick_backend(dp, NULL);
	if (!be) {
		dp->refused++;
		reject(dp, server);
		return;
	}
	px = calloc(1, sizeof(*px));
	if (!px) {
		log_error("oom", "what=proxy");
		reject(dp, server);
		return;
	}
	px->dp = dp;
	side_init(px, &px->cli, &px->up);
	side_init(px, &px->up, &px->cli);
	px->next = dp->proxies;
	if (dp->proxies)
		dp->proxies->prev = px;
	dp->proxies = px;
	dp->open++;
	uv_tcp_init(dp->loop, &px->cli.tcp);
	px->cli.open = 1;
	if (uv_accept(server, (uv_stream_t *)&px->cli.tcp) != 0) {
		proxy_close(px);
		return;
	}
	dp->accepted++;
	uv_tcp_nodelay(&px->cli.tcp, 1);
	if (start_connect(px, be) != 0) {
		be->failed++;
		dp->failed++;
		proxy_close(px);
	}
}

/* ---- the sweep: connect timeouts, log lines ------------------------------- */

static void sweep_cb(uv_timer_t *t)
{
	struct lsw_dp *dp = t->data;
	uint64_t now = lsw_now_ms();
	size_t queued = 0;
	struct lsw_proxy *px, *next;

	for (px = dp->proxies; px; px = next) {
		next = px->next;
		queued += outq_allocated(&px->cli.q) + outq_allocated(&px->up.q);
		if (px->connect_start && !px->closing && !px->retrying &&
		    now - px->connect_start >= LSW_CONNECT_TIMEOUT_MS)
			connect_failed(px, "connect timed out");
	}
	dp->queued_bytes = queued;
	if (dp->log_refused_limit && now >= dp->log_next_ms) {
		log_warn("accept-refused",
			 "reason=descriptors count=%ld total=%ld connections=%ld "
			 "max_connections=%ld fd_limit=%ld",
			 dp->log_refused_limit, dp->refused_limit, dp->open, dp->max_proxies,
			 dp->fd_limit);
		dp->log_refused_limit = 0;
		dp->log_next_ms = now + LSW_LOG_EVERY_MS;
	}
}

/* ---- lifetime ------------------------------------------------------------- */

void lsw_dp_init(struct lsw_dp *dp, uv_loop_t *loop, size_t high_water, long reserve,
		 lsw_backend_down_cb down_cb, void *data)
{
	struct rlimit rl;

	memset(dp, 0, sizeof(*dp));
	dp->loop = loop;
	dp->high_water = high_water ? high_water : LSW_HIGH_WATER_DEFAULT;
	dp->down_cb = down_cb;
	dp->data = data;
	/* Every descriptor the hard limit allows: the shell's soft limit is no plan. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		dp->fd_limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000
				       ? 1000000
				       : (long)rl.rlim_cur;
	} else {
		dp->fd_limit = 1024;
	}
	/* Small limits (tests, a low ulimit -Hn) keep a quarter in reserve, at least 32. */
	if (reserve > dp->fd_limit / 4)
		reserve = dp->fd_limit / 4 > 32 ? dp->fd_limit / 4 : 32;
	dp->reserve = reserve;
	dp->max_proxies = (dp->fd_limit - reserve) / 2;
	if (dp->max_proxies < 1)
		dp->max_proxies = 1;
	uv_timer_init(loop, &dp->sweep);
	dp->sweep.data = dp;
	uv_timer_start(&dp->sweep, sweep_cb, LSW_SWEEP_MS, LSW_SWEEP_MS);
	dp->sweep_on = 1;
}

int lsw_dp_listen(struct lsw_dp *dp, const struct sockaddr *sa, int fd, int reuseport)
{
	int rc, one = 1;

	uv_tcp_init(dp->loop, &dp->listener);
	dp->listener.data = dp;
	dp->listening = 1;
	if (fd < 0) {
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (bind(fd, sa,
			 sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in)) != 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}
	rc = uv_tcp_open(&dp->listener, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return uv_listen((uv_stream_t *)&dp->listener, 4096, on_accept);
}

void lsw_dp_unlisten(struct lsw_dp *dp)
{
	if (dp->listening && !uv_is_closing((uv_handle_t *)&dp->listener))
		uv_close((uv_handle_t *)&dp->listener, NULL);
}

struct lsw_backend *lsw_dp_backend_find(struct lsw_dp *dp, unsigned id)
{
	struct lsw_backend *be;

	for (be = dp->backends; be; be = be->next)
		if (be->id == id)
			return be;
	return NULL;
}

struct lsw_backend *lsw_dp_backend(struct lsw_dp *dp, unsigned id, const char *sha,
				   const char *addr, const struct sockaddr_storage *sa)
{
	struct lsw_backend *be = lsw_dp_backend_find(dp, id);

	if (be)
		return be;
	be = calloc(1, sizeof(*be));
	if (!be)
		return NULL;
	be->id = id;
	snprintf(be->sha, sizeof(be->sha), "%s", sha);
	snprintf(be->addr, sizeof(be->addr), "%s", addr);
	be->sa = *sa;
	be->ready = 1;
	be->next = dp->backends;
	dp->backends = be;
	return be;
}

void lsw_dp_set_route(struct lsw_dp *dp, struct lsw_backend *const *bes, size_t n)
{
	struct lsw_backend *be;

	for (be = dp->backends; be; be = be->next)
		be->routed = 0;
	if (n > LSW_ROUTE_MAX)
		n = LSW_ROUTE_MAX;
	for (size_t i = 0; i < n; i++) {
		dp->route[i] = bes[i];
		bes[i]->routed = 1;
	}
	dp->n_route = n;
	if (dp->rr >= n)
		dp->rr = 0;
}

void lsw_dp_gc(struct lsw_dp *dp)
{
	struct lsw_backend **pp = &dp->backends;

	while (*pp) {
		struct lsw_backend *be = *pp;

		if (!be->keep && !be->routed && be->refs == 0 && be->f_active == 0) {
			*pp = be->next;
			free(be);
		} else {
			pp = &be->next;
		}
	}
}

void lsw_dp_close(struct lsw_dp *dp)
{
	struct lsw_proxy *px, *next;

	lsw_dp_unlisten(dp);
	if (dp->sweep_on) {
		uv_close((uv_handle_t *)&dp->sweep, NULL);
		dp->sweep_on = 0;
	}
	for (px = dp->proxies; px; px = next) {
		next = px->next;
		proxy_close(px);
	}
}

void lsw_dp_free(struct lsw_dp *dp)
{
	struct lsw_backend *be;

	while ((be = dp->backends)) {
		dp->backends = be->next;
		free(be);
	}
}
