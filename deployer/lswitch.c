/*
 * The L4 switch. Every proxied connection lives in this process, so the
 * rules are: never exit on bad control input, never touch an established
 * proxy when the selection changes, and bound memory per proxy with
 * back-pressure (a side's reads stop while the other side's output queue
 * holds the high-water mark of allocated bytes, and resume at a quarter of
 * it).
 *
 * Memory: one loop-wide read buffer; what a read brings is written to the
 * other side at once (uv_try_write), and only what that side's kernel
 * buffer does not take is copied into its output queue (common/outq.h),
 * which counts allocated bytes. A read never asks for more than the room
 * left under the mark, so a proxy holds at most about 2 x the mark whatever
 * its peers do. A proxy is freed only in the close callback of its last
 * handle.
 */
#include "lswitch.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "log.h"
#include "outq.h"

#define LSWITCH_READ_SIZE 65536
#define LSWITCH_HIGH_WATER_DEFAULT (128 * 1024)
#define LSWITCH_READ_MIN 4096			/* reads stop when less room than this is left */
#define LSWITCH_CTL_QUEUE_MAX (4 * 1024 * 1024) /* unread reply bytes per control client */

struct backend {
	struct backend *next;
	char sha[48];
	char addr[64];
	struct sockaddr_storage sa;
	long active; /* proxies connected to it now */
	long total;  /* proxies ever connected */
	long failed; /* connects that failed */
	long refs;   /* proxies pointing at it, connecting or connected */
	int selected;
};

struct proxy;

struct side {
	uv_tcp_t tcp;
	struct outq q; /* bytes to write to this side */
	struct proxy *px;
	struct side *peer;
	int eof; /* read EOF from this side */
	int reading;
	int open;
};

struct proxy {
	struct lsw *sw;
	struct backend *be;
	struct side cli;
	struct side up;
	uv_connect_t connect;
	int counted;   /* counted in be->active */
	int shut_done; /* half-closes passed on (2: both directions done) */
	int closing;
	struct proxy *prev, *next;
};

struct ctl_client {
	uv_pipe_t pipe;
	struct lsw *sw;
	size_t len;
	char buf[LSWITCH_LINE_MAX + 1];
	int closing;
};

struct lsw {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_pipe_t ctl;
	uv_signal_t sig_term, sig_int;
	char listen[64];
	char sock_path[108];
	char json_path[4096];
	size_t high_water;
	char selected[48];
	struct backend *backends;
	struct backend *sel[LSWITCH_BACKENDS_MAX];
	size_t n_sel;
	size_t rr;
	long active, accepted, refused, failed;
	struct proxy *proxies;
	char rbuf[LSWITCH_READ_SIZE]; /* every proxy reads here; forwarded before the next read */
	int stopping;
	int ctl_bound; /* sock_path is ours to unlink */
};

static void side_close_cb(uv_handle_t *h)
{
	struct side *s = h->data;
	struct proxy *px = s->px;

	outq_free(&s->q);
	s->open = 0;
	if (px->cli.open || px->up.open)
		return;
	if (px->prev)
		px->prev->next = px->next;
	else
		px->sw->proxies = px->next;
	if (px->next)
		px->next->prev = px->prev;
	free(px);
}

static void side_close(struct side *s)
{
	if (s->open && !uv_is_closing((uv_handle_t *)&s->tcp))
		uv_close((uv_handle_t *)&s->tcp, side_close_cb);
}

/* The one close path of a proxy: both sides closed, counters dropped once. */
static void proxy_close(struct proxy *px)
{
	if (px->closing)
		return;
	px->closing = 1;
	if (px->counted) {
		px->be->active--;
		px->sw->active--;
		px->counted = 0;
	}
	if (px->be) {
		px->be->refs--;
		px->be = NULL;
	}
	side_close(&px->cli);
	side_close(&px->up);
}

/* Room under the high-water mark in the queue this side's reads go to. */
static size_t side_room(const struct side *s)
{
	size_t used = outq_allocated(&s->peer->q), hw = s->px->sw->high_water;

	return used < hw ? hw - used : 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct side *s = h->data;
	size_t room = side_room(s);

	buf->base = s->px->sw->rbuf;
	buf->len = room < LSWITCH_READ_SIZE ? room : LSWITCH_READ_SIZE;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void side_read_start(struct side *s)
{
	if (s->reading || s->eof || s->px->closing || side_room(s) < LSWITCH_READ_MIN)
		return;
	if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
		s->reading = 1;
	else
		proxy_close(s->px);
}

static void side_read_stop(struct side *s)
{
	if (!s->reading)
		return;
	uv_read_stop((uv_stream_t *)&s->tcp);
	s->reading = 0;
}

/* Events of the output queue towards side s (q->data). */
static void outq_event(struct outq *q, enum outq_event ev, int status)
{
	struct side *s = q->data;
	struct proxy *px = s->px;

	if (px->closing)
		return;
	switch (ev) {
	case OUTQ_DRAINED:
		/* Room again: the other side may read. */
		side_read_start(s->peer);
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
	struct side *s = stream->data;
	struct proxy *px = s->px;
	struct side *dst = s->peer;

	if (nread == 0 || nread == UV_ENOBUFS) {
		if (nread == UV_ENOBUFS)
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
	if (side_room(s) < LSWITCH_READ_MIN)
		side_read_stop(s);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct proxy *px = req->data;

	if (status == UV_ECANCELED || px->closing)
		return;
	if (status < 0) {
		px->be->failed++;
		px->sw->failed++;
		log_warn("upstream-failed", "backend=%s sha=%s err=%s", px->be->addr, px->be->sha,
			 uv_strerror(status));
		proxy_close(px);
		return;
	}
	px->counted = 1;
	px->be->active++;
	px->be->total++;
	px->sw->active++;
	side_read_start(&px->cli);
	side_read_start(&px->up);
}

static struct backend *pick_backend(struct lsw *sw)
{
	struct backend *be;

	if (sw->n_sel == 0)
		return NULL;
	be = sw->sel[sw->rr % sw->n_sel];
	sw->rr++;
	return be;
}

static void side_init(struct proxy *px, struct side *s, struct side *peer)
{
	s->px = px;
	s->peer = peer;
	s->tcp.data = s;
	outq_init(&s->q, (uv_stream_t *)&s->tcp, 0, px->sw->high_water / 4, outq_event, s);
}

static void on_accept(uv_stream_t *server, int status)
{
	struct lsw *sw = server->data;
	struct proxy *px;
	struct backend *be;

	if (status < 0) {
		log_warn("accept-failed", "err=%s", uv_strerror(status));
		return;
	}
	px = calloc(1, sizeof(*px));
	if (!px) {
		log_error("oom", "what=proxy");
		return;
	}
	px->sw = sw;
	side_init(px, &px->cli, &px->up);
	side_init(px, &px->up, &px->cli);
	px->next = sw->proxies;
	if (sw->proxies)
		sw->proxies->prev = px;
	sw->proxies = px;
	uv_tcp_init(sw->loop, &px->cli.tcp);
	px->cli.open = 1;
	if (uv_accept(server, (uv_stream_t *)&px->cli.tcp) != 0) {
		proxy_close(px);
		return;
	}
	sw->accepted++;
	uv_tcp_nodelay(&px->cli.tcp, 1);
	be = pick_backend(sw);
	if (!be) {
		/* Nothing selected: refuse (close) rather than hold the client. */
		sw->refused++;
		proxy_close(px);
		return;
	}
	/* Held until proxy_close: a selection change must not free it under a connect. */
	px->be = be;
	be->refs++;
	uv_tcp_init(sw->loop, &px->up.tcp);
	px->up.open = 1;
	uv_tcp_nodelay(&px->up.tcp, 1);
	px->connect.data = px;
	if (uv_tcp_connect(&px->connect, &px->up.tcp, (struct sockaddr *)&be->sa, connect_cb) !=
	    0) {
		be->failed++;
		sw->failed++;
		proxy_close(px);
	}
}

/* ---- selection ---------------------------------------------------------- */

static int sha_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 7 || n > 40)
		return 0;
	return strspn(s, "0123456789abcdef") == n;
}

/* "ADDR:PORT" with a numeric IPv4 address or "[v6]:PORT". */
static int parse_addr(const char *s, struct sockaddr_storage *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;
	size_t hl;

	if (!colon || colon == s)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[' && hl > 2 && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || end == colon + 1)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0)
		return 0;
	return -EINVAL;
}

static struct backend *backend_get(struct lsw *sw, const char *sha, const char *addr,
				   const struct sockaddr_storage *sa)
{
	struct backend *be;

	for (be = sw->backends; be; be = be->next)
		if (strcmp(be->sha, sha) == 0 && strcmp(be->addr, addr) == 0)
			return be;
	be = calloc(1, sizeof(*be));
	if (!be)
		return NULL;
	snprintf(be->sha, sizeof(be->sha), "%s", sha);
	snprintf(be->addr, sizeof(be->addr), "%s", addr);
	be->sa = *sa;
	be->next = sw->backends;
	sw->backends = be;
	return be;
}

/* Drops backends that are neither selected nor referenced by a proxy (bounded memory). */
static void backends_gc(struct lsw *sw)
{
	struct backend **pp = &sw->backends;

	while (*pp) {
		struct backend *be = *pp;

		if (!be->selected && be->refs == 0) {
			*pp = be->next;
			free(be);
		} else {
			pp = &be->next;
		}
	}
}

static int persist(struct lsw *sw)
{
	char tmp[4200];
	json_t *o = json_object(), *arr = json_array();
	int rc;

	for (size_t i = 0; i < sw->n_sel; i++)
		json_array_append_new(arr, json_string(sw->sel[i]->addr));
	json_object_set_new(o, "listen", json_string(sw->listen));
	json_object_set_new(o, "selected", json_string(sw->selected));
	json_object_set_new(o, "backends", arr);
	snprintf(tmp, sizeof(tmp), "%s.tmp", sw->json_path);
	rc = json_dump_file(o, tmp, JSON_INDENT(1)) == 0 ? 0 : -EIO;
	json_decref(o);
	if (rc == 0 && rename(tmp, sw->json_path) != 0)
		rc = -errno;
	return rc;
}

int lswitch_parse_select(const char *sha, const char *list, struct lswitch_cmd *cmd, char *err,
			 size_t errlen)
{
	const char *p = list;
	size_t n = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->kind = LSWITCH_CMD_SELECT;
	if (strcmp(sha, "-") == 0) {
		sha = "";
		list = "";
		p = list;
	} else if (!sha_ok(sha)) {
		snprintf(err, errlen, "bad sha (want 7-40 lower-case hex)");
		return -EINVAL;
	}
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (n >= LSWITCH_BACKENDS_MAX) {
			snprintf(err, errlen, "too many backends (max %d)", LSWITCH_BACKENDS_MAX);
			return -EINVAL;
		}
		if (len == 0 || len >= sizeof(cmd->addrs[0])) {
			snprintf(err, errlen, "bad backend address");
			return -EINVAL;
		}
		memcpy(cmd->addrs[n], p, len);
		cmd->addrs[n][len] = '\0';
		if (parse_addr(cmd->addrs[n], &cmd->sas[n]) != 0) {
			snprintf(err, errlen, "bad backend address %.64s (want IP:PORT)",
				 cmd->addrs[n]);
			return -EINVAL;
		}
		n++;
		p += len + (comma ? 1 : 0);
		if (comma && !*p) {
			snprintf(err, errlen, "bad backend list (trailing comma)");
			return -EINVAL;
		}
	}
	if (sha[0] && n == 0) {
		snprintf(err, errlen, "select needs at least one backend");
		return -EINVAL;
	}
	snprintf(cmd->sha, sizeof(cmd->sha), "%s", sha);
	cmd->n = n;
	return 0;
}

int lswitch_parse_command(char *line, struct lswitch_cmd *cmd, char *err, size_t errlen)
{
	char *name, *a1, *a2, *extra, *save = NULL;

	memset(cmd, 0, sizeof(*cmd));
	name = strtok_r(line, " \t\r", &save);
	a1 = strtok_r(NULL, " \t\r", &save);
	a2 = strtok_r(NULL, " \t\r", &save);
	extra = strtok_r(NULL, " \t\r", &save);
	if (!name) {
		snprintf(err, errlen, "empty request");
		return -EINVAL;
	}
	if (strcmp(name, "status") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_STATUS;
	} else if (strcmp(name, "select") == 0 && a1 && !extra && (a2 || strcmp(a1, "-") == 0)) {
		return lswitch_parse_select(a1, a2 ? a2 : "", cmd, err, errlen);
	} else if (strcmp(name, "stop") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_STOP;
	} else if (strcmp(name, "ping") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_PING;
	} else {
		snprintf(err, errlen,
			 "unknown or malformed request (select SHA ADDR:PORT,..., "
			 "select -, status, stop)");
		return -EINVAL;
	}
	return 0;
}

/* Swaps the selection to a parsed select (a bad request never gets here). */
static int apply_select(struct lsw *sw, const struct lswitch_cmd *cmd, char *err, size_t errlen,
			int save)
{
	struct backend *picked[LSWITCH_BACKENDS_MAX];
	struct backend *be;
	size_t n = cmd->n;

	for (size_t i = 0; i < n; i++) {
		picked[i] = backend_get(sw, cmd->sha, cmd->addrs[i], &cmd->sas[i]);
		if (!picked[i]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	for (be = sw->backends; be; be = be->next)
		be->selected = 0;
	for (size_t i = 0; i < n; i++) {
		picked[i]->selected = 1;
		sw->sel[i] = picked[i];
	}
	sw->n_sel = n;
	sw->rr = 0;
	snprintf(sw->selected, sizeof(sw->selected), "%s", cmd->sha);
	backends_gc(sw);
	if (save) {
		int rc = persist(sw);

		if (rc < 0) {
			snprintf(err, errlen, "selection applied but not saved: %s", strerror(-rc));
			return rc;
		}
	}
	log_info("select", "sha=%s backends=%zu", cmd->sha[0] ? cmd->sha : "-", n);
	return 0;
}

static void resume_selection(struct lsw *sw)
{
	json_error_t jerr;
	json_t *o = json_load_file(sw->json_path, 0, &jerr), *arr;
	char list[LSWITCH_LINE_MAX] = "", err[256];
	struct lswitch_cmd cmd;
	size_t i, off = 0;
	json_t *v;
	const char *sha;

	if (!o)
		return;
	sha = json_string_value(json_object_get(o, "selected"));
	arr = json_object_get(o, "backends");
	json_array_foreach (arr, i, v) {
		const char *a = json_string_value(v);

		if (a && off + strlen(a) + 2 < sizeof(list))
			off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
						off ? "," : "", a);
	}
	if (sha && sha[0] &&
	    (lswitch_parse_select(sha, list, &cmd, err, sizeof(err)) != 0 ||
	     apply_select(sw, &cmd, err, sizeof(err), 0) != 0))
		log_warn("resume-failed", "err=%s", err);
	else if (sha && sha[0])
		log_info("resumed", "sha=%s", sha);
	json_decref(o);
}

/* ---- control ------------------------------------------------------------ */

static char *status_json(struct lsw *sw)
{
	json_t *o = json_object(), *per = json_array(), *sel = json_array();
	struct backend *be;
	char *s;

	for (size_t i = 0; i < sw->n_sel; i++)
		json_array_append_new(sel, json_string(sw->sel[i]->addr));
	for (be = sw->backends; be; be = be->next) {
		json_t *b = json_object();

		json_object_set_new(b, "sha", json_string(be->sha));
		json_object_set_new(b, "addr", json_string(be->addr));
		json_object_set_new(b, "active", json_integer(be->active));
		json_object_set_new(b, "total", json_integer(be->total));
		json_object_set_new(b, "failed", json_integer(be->failed));
		json_object_set_new(b, "selected", json_boolean(be->selected));
		json_array_append_new(per, b);
	}
	json_object_set_new(o, "listen", json_string(sw->listen));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "selected", json_string(sw->selected));
	json_object_set_new(o, "backends", sel);
	json_object_set_new(o, "connections", json_integer(sw->active));
	json_object_set_new(o, "accepted", json_integer(sw->accepted));
	json_object_set_new(o, "refused", json_integer(sw->refused));
	json_object_set_new(o, "failed", json_integer(sw->failed));
	json_object_set_new(o, "per_backend", per);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void ctl_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void ctl_client_close(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close((uv_handle_t *)&c->pipe, ctl_close_cb);
}

struct ctl_write {
	uv_write_t req;
	struct lsw *stop; /* the reply to `stop`: stop once it is written */
	char data[];
};

static void lsw_stop(struct lsw *sw);

static void ctl_write_cb(uv_write_t *req, int status)
{
	struct ctl_write *w = (struct ctl_write *)req;
	struct lsw *sw = w->stop;

	free(w);
	if (sw)
		lsw_stop(sw);
}

/* Writes "WORD TEXT\n" (or "WORD\n" when text is NULL). */
static struct ctl_write *ctl_reply(struct ctl_client *c, const char *word, const char *text)
{
	size_t len = strlen(word) + (text ? strlen(text) + 1 : 0) + 2;
	struct ctl_write *w = malloc(sizeof(*w) + len);
	uv_buf_t b;
	int n;

	if (!w) {
		ctl_client_close(c);
		return NULL;
	}
	w->stop = NULL;
	n = snprintf(w->data, len, "%s%s%s", word, text ? " " : "", text ? text : "");
	w->data[n++] = '\n';
	b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, ctl_write_cb) != 0) {
		free(w);
		ctl_client_close(c);
		return NULL;
	}
	return w;
}

static void ctl_line(struct ctl_client *c, char *line)
{
	struct lsw *sw = c->sw;
	struct lswitch_cmd *cmd;
	char err[256];

	/* ~12 KiB: on the heap rather than on the loop's stack. */
	cmd = malloc(sizeof(*cmd));
	if (!cmd) {
		ctl_reply(c, "error", "out of memory");
		return;
	}
	if (lswitch_parse_command(line, cmd, err, sizeof(err)) != 0) {
		ctl_reply(c, "error", err);
	} else if (cmd->kind == LSWITCH_CMD_STATUS) {
		char *js = status_json(sw);

		ctl_reply(c, "ok", js ? js : "{}");
		free(js);
	} else if (cmd->kind == LSWITCH_CMD_SELECT) {
		if (apply_select(sw, cmd, err, sizeof(err), 1) == 0)
			ctl_reply(c, "ok", NULL);
		else
			ctl_reply(c, "error", err);
	} else if (cmd->kind == LSWITCH_CMD_STOP) {
		struct ctl_write *w = ctl_reply(c, "ok", NULL);

		if (w)
			w->stop = sw;
		else
			lsw_stop(sw);
	} else {
		ctl_reply(c, "ok", "pong");
	}
	free(cmd);
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ctl_client *c = h->data;

	buf->base = c->buf + c->len;
	buf->len = LSWITCH_LINE_MAX - c->len;
}

static void ctl_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *c = stream->data;
	char *nl;

	if (nread < 0) {
		ctl_client_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->buf[c->len] = '\0';
	while (!c->closing && (nl = memchr(c->buf, '\n', c->len))) {
		size_t used = (size_t)(nl - c->buf) + 1;

		/* Requests from a client that does not read its replies: drop it. */
		if (uv_stream_get_write_queue_size(stream) > LSWITCH_CTL_QUEUE_MAX) {
			log_warn("control", "err=\"client does not read its replies: closed\"");
			ctl_client_close(c);
			return;
		}
		*nl = '\0';
		if (strlen(c->buf) != used - 1)
			ctl_reply(c, "error", "NUL byte in request");
		else
			ctl_line(c, c->buf);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		c->buf[c->len] = '\0';
	}
	if (!c->closing && c->len >= LSWITCH_LINE_MAX) {
		ctl_reply(c, "error", "request line too long");
		uv_read_stop(stream);
		ctl_client_close(c);
	}
}

static void on_ctl(uv_stream_t *server, int status)
{
	struct lsw *sw = server->data;
	struct ctl_client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->sw = sw;
	uv_pipe_init(sw->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read) != 0)
		ctl_client_close(c);
}

/* ---- lifetime ----------------------------------------------------------- */

static void close_walk(uv_handle_t *h, void *arg)
{
	struct lsw *sw = arg;

	if (uv_is_closing(h))
		return;
	if (h == (uv_handle_t *)&sw->listener || h == (uv_handle_t *)&sw->ctl ||
	    h->type == UV_SIGNAL) {
		uv_close(h, NULL);
		return;
	}
	if (h->type == UV_TCP) {
		struct side *s = h->data;

		proxy_close(s->px);
		return;
	}
	if (h->type == UV_NAMED_PIPE)
		ctl_client_close(h->data);
}

static void lsw_stop(struct lsw *sw)
{
	if (sw->stopping)
		return;
	sw->stopping = 1;
	log_info("stop", "connections=%ld", sw->active);
	if (sw->ctl_bound)
		unlink(sw->sock_path);
	uv_walk(sw->loop, close_walk, sw);
}

static void on_signal(uv_signal_t *h, int signum)
{
	lsw_stop(h->data);
}

int lswitch_sock_path(const char *state_dir, char *buf, size_t len)
{
	struct sockaddr_un un;
	int n = snprintf(buf, len, "%s/switch.sock", state_dir);

	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(un.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int lswitch_run(const struct lswitch_opts *o)
{
	struct lsw sw;
	struct sockaddr_storage sa;
	struct backend *be;
	char reply[64];
	int rc;

	memset(&sw, 0, sizeof(sw));
	sw.loop = uv_default_loop();
	sw.high_water = o->high_water ? o->high_water : LSWITCH_HIGH_WATER_DEFAULT;
	snprintf(sw.listen, sizeof(sw.listen), "%s", o->listen);
	snprintf(sw.json_path, sizeof(sw.json_path), "%s/switch.json", o->state_dir);
	rc = lswitch_sock_path(o->state_dir, sw.sock_path, sizeof(sw.sock_path));
	if (rc < 0) {
		log_error("state-dir", "err=\"state dir path too long for a unix socket\"");
		return rc;
	}
	rc = parse_addr(o->listen, &sa);
	if (rc < 0) {
		log_error("listen", "addr=%s err=\"want IP:PORT\"", o->listen);
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	resume_selection(&sw);

	uv_tcp_init(sw.loop, &sw.listener);
	sw.listener.data = &sw;
	rc = uv_tcp_bind(&sw.listener, (struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&sw.listener, 1024, on_accept);
	if (rc < 0) {
		log_error("listen", "addr=%s err=\"%s\"", o->listen, uv_strerror(rc));
		goto out_close;
	}
	/* The socket is a live switch's (refuse) or a stale one of a dead switch. */
	if (lswitch_call(o->state_dir, "ping", reply, sizeof(reply)) == 0) {
		log_error("control", "path=%s err=\"another switch answers there\"", sw.sock_path);
		rc = -EADDRINUSE;
		goto out_close;
	}
	unlink(sw.sock_path);
	uv_pipe_init(sw.loop, &sw.ctl, 0);
	sw.ctl.data = &sw;
	rc = uv_pipe_bind(&sw.ctl, sw.sock_path);
	sw.ctl_bound = rc == 0;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&sw.ctl, 16, on_ctl);
	if (rc < 0) {
		log_error("control", "path=%s err=\"%s\"", sw.sock_path, uv_strerror(rc));
		goto out_close;
	}
	uv_signal_init(sw.loop, &sw.sig_term);
	uv_signal_init(sw.loop, &sw.sig_int);
	sw.sig_term.data = sw.sig_int.data = &sw;
	uv_signal_start(&sw.sig_term, on_signal, SIGTERM);
	uv_signal_start(&sw.sig_int, on_signal, SIGINT);
	log_info("listen", "addr=%s control=%s selected=%s", sw.listen, sw.sock_path,
		 sw.selected[0] ? sw.selected : "-");
	uv_run(sw.loop, UV_RUN_DEFAULT);
	rc = 0;
	goto out_free;
out_close:
	lsw_stop(&sw);
	uv_run(sw.loop, UV_RUN_DEFAULT);
out_free:
	while ((be = sw.backends)) {
		sw.backends = be->next;
		free(be);
	}
	uv_loop_close(sw.loop);
	return rc;
}

int lswitch_status(const char *state_dir, json_t **out)
{
	char *reply = malloc(LSWITCH_REPLY_MAX);
	int rc;

	*out = NULL;
	if (!reply)
		return -ENOMEM;
	rc = lswitch_call(state_dir, "status", reply, LSWITCH_REPLY_MAX);
	if (rc == 0) {
		*out = json_loads(reply + 3, 0, NULL);
		if (!*out)
			rc = -EIO;
	}
	free(reply);
	return rc;
}

int lswitch_call(const char *state_dir, const char *request, char *reply, size_t len)
{
	struct sockaddr_un un;
	struct timeval tv = { .tv_sec = 5 };
	size_t off = 0;
	int fd, rc;

	if (len)
		reply[0] = '\0';
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	rc = lswitch_sock_path(state_dir, un.sun_path, sizeof(un.sun_path));
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
		rc = -errno;
		goto out;
	}
	if (dprintf(fd, "%s\n", request) < 0) {
		rc = -EIO;
		goto out;
	}
	while (off + 1 < len) {
		ssize_t n = read(fd, reply + off, len - 1 - off);

		if (n <= 0) {
			rc = n == 0 ? -EPIPE : -errno;
			goto out;
		}
		off += (size_t)n;
		reply[off] = '\0';
		if (memchr(reply, '\n', off))
			break;
	}
	reply[strcspn(reply, "\n")] = '\0';
	rc = strncmp(reply, "ok", 2) == 0 ? 0 : -EPROTO;
out:
	close(fd);
	return rc;
}
