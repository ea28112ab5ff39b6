/*
 * Past one process's descriptor limit: follower switch processes. The
 * leader (the switch that owns the control socket, the state and the
 * replicas) starts N-1 followers, each with its own listening socket bound
 * to the public address with SO_REUSEPORT (the kernel spreads new
 * connections over the group by a hash of their addresses) and a unix
 * socket pair to the leader. A follower is only a data path: it proxies
 * and is steered as one with the leader through that link:
 *
 *   leader -> follower   route N ID SHA ADDR ...   (where new connections go)
 *   follower -> leader   stats {JSON}              (every 500 ms: its counters)
 *                        down ID WHY               (a connect failed: passive detection)
 *
 * A follower that dies drops its share of the connections (like one node's
 * data plane); the leader starts another after a second. When the leader
 * dies, every follower sees its link close and exits at once: the switch is
 * one unit, and `local up` starts it whole again.
 */
#include "lsw_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "run.h"

#define LSW_LINK_LINE_MAX (64 * 1024)
#define LSW_LINK_QUEUE_MAX (4 * 1024 * 1024)
#define LSW_STATS_MS 500
#define LSW_FOLLOWER_RESERVE 64
#define LSW_FOLLOWER_RESTART_MS 1000
#define LSW_FOLLOWER_LISTEN_FD 3
#define LSW_FOLLOWER_LINK_FD 4

struct link_write {
	uv_write_t req;
	char data[];
};

static void link_write_cb(uv_write_t *req, int status)
{
	free(req);
}

/* Sends one line (text has no newline); dropped when the peer stopped reading. */
static int link_send(uv_stream_t *s, const char *text)
{
	size_t len = strlen(text);
	struct link_write *w;
	uv_buf_t b;

	if (uv_stream_get_write_queue_size(s) > LSW_LINK_QUEUE_MAX)
		return -ENOBUFS;
	w = malloc(sizeof(*w) + len + 1);
	if (!w)
		return -ENOMEM;
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	b = uv_buf_init(w->data, (unsigned)len + 1);
	if (uv_write(&w->req, s, &b, 1, link_write_cb) != 0) {
		free(w);
		return -EIO;
	}
	return 0;
}

/* Splits what arrived into lines; calls line() for each. 0, or -1 when a line is too long. */
static int link_lines(char *buf, size_t *len, ssize_t nread, void (*line)(void *, char *), void *ud)
{
	char *nl;

	*len += (size_t)nread;
	while ((nl = memchr(buf, '\n', *len))) {
		size_t used = (size_t)(nl - buf) + 1;

		*nl = '\0';
		line(ud, buf);
		memmove(buf, buf + used, *len - used);
		*len -= used;
	}
	return *len >= LSW_LINK_LINE_MAX ? -EMSGSIZE : 0;
}

/* ---- the leader's side --------------------------------------------------- */

static char *route_line(struct lsw *sw)
{
	size_t cap = 32 + sw->dp.n_route * 128, off;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	off = (size_t)snprintf(s, cap, "route %zu", sw->dp.n_route);
	for (size_t i = 0; i < sw->dp.n_route && off < cap; i++) {
		const struct lsw_backend *be = sw->dp.route[i];

		off += (size_t)snprintf(s + off, cap - off, " %u %s %s", be->id,
					be->sha[0] ? be->sha : "-", be->addr);
	}
	return s;
}

void lsw_followers_route(struct lsw *sw)
{
	char *line;

	if (!sw->n_followers)
		return;
	line = route_line(sw);
	if (!line)
		return;
	for (size_t i = 0; i < sw->n_followers; i++)
		if (sw->followers[i].link_open)
			link_send((uv_stream_t *)&sw->followers[i].link, line);
	free(line);
}

/* Each backend's counts in the followers, summed from their last reports. */
static void followers_sum(struct lsw *sw)
{
	struct lsw_backend *be;

	for (be = sw->dp.backends; be; be = be->next)
		be->f_active = be->f_total = be->f_failed = 0;
	for (size_t i = 0; i < sw->n_followers; i++) {
		json_t *per = json_object_get(sw->followers[i].stats, "per"), *row;
		size_t k;

		json_array_foreach (per, k, row) {
			be = lsw_dp_backend_find(
				&sw->dp, (unsigned)json_integer_value(json_array_get(row, 0)));
			if (!be)
				continue;
			be->f_active += (long)json_integer_value(json_array_get(row, 1));
			be->f_total += (long)json_integer_value(json_array_get(row, 2));
			be->f_failed += (long)json_integer_value(json_array_get(row, 3));
		}
	}
}

static void leader_line(void *ud, char *line)
{
	struct lsw_follower *f = ud;
	struct lsw *sw = f->sw;

	if (strncmp(line, "stats ", 6) == 0) {
		json_t *o = json_loads(line + 6, 0, NULL);

		if (!o)
			return;
		json_decref(f->stats);
		f->stats = o;
		followers_sum(sw);
	} else if (strncmp(line, "down ", 5) == 0) {
		char *end;
		unsigned id = (unsigned)strtoul(line + 5, &end, 10);
		struct lsw_backend *be = lsw_dp_backend_find(&sw->dp, id);

		if (be && sw->dp.down_cb)
			sw->dp.down_cb(&sw->dp, be, *end ? end + 1 : "connect failed");
	}
}

static void leader_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lsw_follower *f = h->data;

	buf->base = f->buf + f->len;
	buf->len = sizeof(f->buf) - 1 - f->len;
}

static void link_closed(uv_handle_t *h)
{
	struct lsw_follower *f = h->data;

	f->link_open = 0;
}

static void leader_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lsw_follower *f = s->data;

	if (nread < 0) {
		if (!uv_is_closing((uv_handle_t *)s))
			uv_close((uv_handle_t *)s, link_closed);
		return;
	}
	if (link_lines(f->buf, &f->len, nread, leader_line, f) != 0) {
		log_warn("follower-link", "slot=%d err=\"line too long\"", f->slot);
		f->len = 0;
	}
}

static void proc_closed(uv_handle_t *h)
{
	struct lsw_follower *f = h->data;

	f->proc_open = 0;
}

static void follower_exit(uv_process_t *p, int64_t status, int sig)
{
	struct lsw_follower *f = p->data;
	struct lsw *sw = f->sw;
	long conns = (long)json_integer_value(json_object_get(f->stats, "connections"));

	if (!sw->stopping) {
		log_error("switch-process-died",
			  "slot=%d pid=%d how=\"%s %d\" connections_dropped=%ld (its share; "
			  "another starts in %d ms)",
			  f->slot, f->pid, sig ? "signal" : "status", sig ? sig : (int)status,
			  conns, LSW_FOLLOWER_RESTART_MS);
		run_record(sw->state_dir,
			   json_pack("{s:s,s:i,s:i,s:I}", "event", "switch-process-died", "slot",
				     f->slot, "pid", f->pid, "connections", (json_int_t)conns));
	}
	f->pid = 0;
	json_decref(f->stats);
	f->stats = NULL;
	followers_sum(sw);
	f->backoff_until = lsw_now_ms() + LSW_FOLLOWER_RESTART_MS;
	uv_close((uv_handle_t *)p, proc_closed);
	if (f->link_open && !uv_is_closing((uv_handle_t *)&f->link))
		uv_close((uv_handle_t *)&f->link, link_closed);
}

/* A socket bound to the public address in the SO_REUSEPORT group (not listening yet). */
static int reuseport_socket(const struct sockaddr_storage *sa)
{
	int one = 1, fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa,
		 sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in)) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static int follower_spawn(struct lsw *sw, struct lsw_follower *f)
{
	char *argv[] = { sw->exe,	"local",    "serve",	"--follower", "--state-dir",
			 sw->state_dir, "--listen", sw->listen, NULL };
	uv_stdio_container_t stdio[5];
	uv_process_options_t o;
	int sv[2], lfd, rc;

	if (f->proc_open || f->link_open)
		return -EBUSY; /* the last one's handles are still closing */
	lfd = reuseport_socket(&sw->listen_sa);
	if (lfd < 0)
		return lfd;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		rc = -errno;
		close(lfd);
		return rc;
	}
	memset(&o, 0, sizeof(o));
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].data.fd = 2;
	stdio[3].flags = stdio[4].flags = UV_INHERIT_FD;
	stdio[3].data.fd = lfd;
	stdio[4].data.fd = sv[1];
	o.file = sw->exe;
	o.args = argv;
	o.exit_cb = follower_exit;
	o.stdio_count = 5;
	o.stdio = stdio;
	f->proc.data = f;
	rc = uv_spawn(sw->loop, &f->proc, &o);
	/* Ours no more: the follower alone holds its listening socket. */
	close(lfd);
	close(sv[1]);
	if (rc < 0) {
		close(sv[0]);
		uv_close((uv_handle_t *)&f->proc, NULL);
		return rc;
	}
	f->proc_open = 1;
	f->pid = f->proc.pid;
	uv_pipe_init(sw->loop, &f->link, 0);
	f->link.data = f;
	f->len = 0;
	if (uv_pipe_open(&f->link, sv[0]) != 0) {
		close(sv[0]);
		uv_close((uv_handle_t *)&f->link, NULL);
		return -EIO;
	}
	f->link_open = 1;
	uv_read_start((uv_stream_t *)&f->link, leader_alloc, leader_read);
	{
		char *line = route_line(sw);

		if (line)
			link_send((uv_stream_t *)&f->link, line);
		free(line);
	}
	log_info("switch-process-started", "slot=%d pid=%d", f->slot, f->pid);
	return 0;
}

int lsw_followers_start(struct lsw *sw, int n)
{
	for (int i = 1; i < n && sw->n_followers < LSW_FOLLOWERS_MAX; i++) {
		struct lsw_follower *f = &sw->followers[sw->n_followers++];
		int rc;

		f->sw = sw;
		f->slot = i;
		rc = follower_spawn(sw, f);
		if (rc < 0) {
			log_error("switch-process-start", "slot=%d err=\"%s\"", i, uv_strerror(rc));
			return rc;
		}
	}
	return 0;
}

void lsw_followers_tick(struct lsw *sw)
{
	uint64_t now = lsw_now_ms();

	for (size_t i = 0; i < sw->n_followers; i++) {
		struct lsw_follower *f = &sw->followers[i];

		if (f->pid || f->proc_open || f->link_open || now < f->backoff_until)
			continue;
		f->restarts++;
		if (follower_spawn(sw, f) < 0)
			f->backoff_until = now + LSW_FOLLOWER_RESTART_MS;
	}
}

void lsw_followers_stop(struct lsw *sw)
{
	for (size_t i = 0; i < sw->n_followers; i++) {
		struct lsw_follower *f = &sw->followers[i];

		/* The link closing tells it to go; its exit callback needs no one. */
		if (f->link_open && !uv_is_closing((uv_handle_t *)&f->link))
			uv_close((uv_handle_t *)&f->link, link_closed);
		if (f->proc_open && !uv_is_closing((uv_handle_t *)&f->proc))
			uv_close((uv_handle_t *)&f->proc, proc_closed);
		json_decref(f->stats);
		f->stats = NULL;
	}
}

void lsw_followers_totals(struct lsw *sw, struct lsw_totals *t, json_t *switches)
{
	static const char *const keys[] = { "connections",     "accepted",    "refused",
					    "refused_limit",   "failed",      "retried",
					    "max_connections", "queued_bytes" };

	for (size_t i = 0; i < sw->n_followers; i++) {
		struct lsw_follower *f = &sw->followers[i];
		long v[8];

		for (size_t k = 0; k < 8; k++)
			v[k] = (long)json_integer_value(json_object_get(f->stats, keys[k]));
		t->connections += v[0];
		t->accepted += v[1];
		t->refused += v[2];
		t->refused_limit += v[3];
		t->failed += v[4];
		t->retried += v[5];
		t->max_connections += f->pid ? v[6] : 0;
		t->queued_bytes += v[7];
		if (switches)
			json_array_append_new(
				switches,
				json_pack("{s:i,s:i,s:b,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "slot",
					  f->slot, "pid", f->pid, "alive", f->pid > 0, "restarts",
					  f->restarts, "connections", (json_int_t)v[0], "accepted",
					  (json_int_t)v[1], "refused", (json_int_t)v[2],
					  "refused_limit", (json_int_t)v[3], "failed",
					  (json_int_t)v[4], "max_connections", (json_int_t)v[6],
					  "queued_bytes", (json_int_t)v[7]));
	}
}

/* ---- a follower ------------------------------------------------------------ */

struct lsw_fol {
	uv_loop_t *loop;
	struct lsw_dp dp;
	uv_pipe_t link;
	uv_timer_t stats;
	uv_signal_t sig_term, sig_int;
	char buf[LSW_LINK_LINE_MAX + 1];
	size_t len;
	int stopping;
};

static void fol_stop(struct lsw_fol *f)
{
	if (f->stopping)
		return;
	f->stopping = 1;
	log_info("stop", "role=follower connections=%ld", f->dp.active);
	lsw_dp_close(&f->dp);
	if (!uv_is_closing((uv_handle_t *)&f->link))
		uv_close((uv_handle_t *)&f->link, NULL);
	uv_close((uv_handle_t *)&f->stats, NULL);
	uv_close((uv_handle_t *)&f->sig_term, NULL);
	uv_close((uv_handle_t *)&f->sig_int, NULL);
}

/* "route N ID SHA ADDR ...": the new route; backends that left it go once unused. */
static void fol_route(struct lsw_fol *f, char *args)
{
	struct lsw_backend *route[LSW_ROUTE_MAX] = { 0 }, *be;
	char *save = NULL, *tok = strtok_r(args, " ", &save);
	size_t n = 0, want = tok ? strtoul(tok, NULL, 10) : 0;

	for (be = f->dp.backends; be; be = be->next)
		be->keep = 0;
	while (n < want && n < LSW_ROUTE_MAX) {
		char *id = strtok_r(NULL, " ", &save), *sha = strtok_r(NULL, " ", &save);
		char *addr = strtok_r(NULL, " ", &save);
		struct sockaddr_storage sa;

		if (!id || !sha || !addr || lsw_addr(addr, &sa) != 0)
			break;
		be = lsw_dp_backend(&f->dp, (unsigned)strtoul(id, NULL, 10),
				    strcmp(sha, "-") ? sha : "", addr, &sa);
		if (!be)
			break;
		be->keep = 1;
		be->ready = 1;
		route[n++] = be;
	}
	lsw_dp_set_route(&f->dp, route, n);
	lsw_dp_gc(&f->dp);
}

static void fol_line(void *ud, char *line)
{
	struct lsw_fol *f = ud;

	if (strncmp(line, "route ", 6) == 0)
		fol_route(f, line + 6);
	else if (strcmp(line, "stop") == 0)
		fol_stop(f);
}

static void fol_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lsw_fol *f = h->data;

	buf->base = f->buf + f->len;
	buf->len = LSW_LINK_LINE_MAX - f->len;
}

static void fol_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lsw_fol *f = s->data;

	if (nread < 0) {
		/* The leader is gone (stopped, or died): the switch goes with it. */
		if (f->dp.active)
			log_error("leader-gone", "err=\"%s\" connections_dropped=%ld",
				  uv_strerror((int)nread), f->dp.active);
		else
			log_info("leader-gone", "err=\"%s\"", uv_strerror((int)nread));
		fol_stop(f);
		return;
	}
	if (link_lines(f->buf, &f->len, nread, fol_line, f) != 0)
		f->len = 0;
}

static void fol_stats(uv_timer_t *t)
{
	struct lsw_fol *f = t->data;
	json_t *per = json_array(), *o;
	struct lsw_backend *be;
	char *s, *line;

	for (be = f->dp.backends; be; be = be->next)
		json_array_append_new(per,
				      json_pack("[i,I,I,I]", (int)be->id, (json_int_t)be->active,
						(json_int_t)be->total, (json_int_t)be->failed));
	o = json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "pid", (int)getpid(),
		      "connections", (json_int_t)f->dp.active, "accepted",
		      (json_int_t)f->dp.accepted, "refused", (json_int_t)f->dp.refused,
		      "refused_limit", (json_int_t)f->dp.refused_limit, "failed",
		      (json_int_t)f->dp.failed, "retried", (json_int_t)f->dp.retried,
		      "max_connections", (json_int_t)f->dp.max_proxies, "fd_limit",
		      (json_int_t)f->dp.fd_limit, "queued_bytes", (json_int_t)f->dp.queued_bytes,
		      "per", per);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return;
	line = malloc(strlen(s) + 7);
	if (line) {
		sprintf(line, "stats %s", s);
		link_send((uv_stream_t *)&f->link, line);
		free(line);
	}
	free(s);
}

static void fol_down(struct lsw_dp *dp, struct lsw_backend *be, const char *why)
{
	struct lsw_fol *f = dp->data;
	char line[256];

	/* Out of this follower's route at once; the leader decides for everyone. */
	be->ready = 0;
	snprintf(line, sizeof(line), "down %u %.200s", be->id, why);
	link_send((uv_stream_t *)&f->link, line);
}

static void fol_signal(uv_signal_t *h, int signum)
{
	fol_stop(h->data);
}

int lsw_follower_run(const struct lswitch_opts *o)
{
	struct lsw_fol *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	signal(SIGPIPE, SIG_IGN);
	f->loop = uv_default_loop();
	lsw_dp_init(&f->dp, f->loop, o->high_water, LSW_FOLLOWER_RESERVE, fol_down, f);
	uv_pipe_init(f->loop, &f->link, 0);
	f->link.data = f;
	rc = uv_pipe_open(&f->link, LSW_FOLLOWER_LINK_FD);
	if (rc == 0)
		rc = lsw_dp_listen(&f->dp, NULL, LSW_FOLLOWER_LISTEN_FD, 1);
	if (rc < 0) {
		log_error("follower", "err=\"%s\" (started by a leader switch only)",
			  uv_strerror(rc));
		fol_stop(f);
		uv_run(f->loop, UV_RUN_DEFAULT);
		lsw_dp_free(&f->dp);
		free(f);
		return rc;
	}
	uv_read_start((uv_stream_t *)&f->link, fol_alloc, fol_read);
	uv_timer_init(f->loop, &f->stats);
	f->stats.data = f;
	uv_timer_start(&f->stats, fol_stats, LSW_STATS_MS, LSW_STATS_MS);
	uv_signal_init(f->loop, &f->sig_term);
	uv_signal_init(f->loop, &f->sig_int);
	f->sig_term.data = f->sig_int.data = f;
	uv_signal_start(&f->sig_term, fol_signal, SIGTERM);
	uv_signal_start(&f->sig_int, fol_signal, SIGINT);
	log_info("listen", "role=follower addr=%s pid=%d max_connections=%ld fd_limit=%ld",
		 o->listen, (int)getpid(), f->dp.max_proxies, f->dp.fd_limit);
	uv_run(f->loop, UV_RUN_DEFAULT);
	lsw_dp_free(&f->dp);
	uv_loop_close(f->loop);
	free(f);
	return 0;
}
