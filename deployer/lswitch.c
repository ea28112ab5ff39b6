/*
 * The switch process: control socket, selection and route, saved state,
 * status; the data path is lsw_proxy.c, the replicas lsw_sup.c. Rules:
 * never exit on bad control input, never touch an established proxy when
 * the selection changes, save every change before acknowledging it, and
 * keep descriptors in reserve so that the control socket and the probes
 * work when the proxies have used up their budget.
 */
#include "lswitch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "log.h"
#include "lsw_int.h"
#include "run.h"

#define LSWITCH_CTL_QUEUE_MAX (4 * 1024 * 1024) /* unread reply bytes per control client */
#define LSWITCH_CTL_CLIENTS_MAX 64
#define LSWITCH_TICK_MS 50
#define LSWITCH_DOWN_WAIT_MS 6000
/* Descriptors kept out of the proxies' budget: control clients, probes, pidfds, state files. */
#define LSWITCH_FD_RESERVE 512

struct lsw_ctl {
	uv_pipe_t pipe;
	struct lsw *sw;
	size_t len;
	char buf[LSWITCH_LINE_MAX + 1];
	int closing;
};

/* A connect to a static backend that a failed connect took out of the route. */
struct static_probe {
	uv_tcp_t tcp;
	uv_connect_t req;
	struct lsw *sw;
	unsigned id;
	uint64_t start;
	int done;
};

/* ---- parsing ------------------------------------------------------------- */

static int sha_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 7 || n > 40)
		return 0;
	return strspn(s, "0123456789abcdef") == n;
}

int lswitch_parse_select(const char *sha, const char *list, struct lswitch_cmd *cmd, char *err,
			 size_t errlen)
{
	const char *p = list;
	size_t n = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->kind = LSWITCH_CMD_SELECT;
	if (strcmp(sha, "-") == 0) {
		if (*list) {
			snprintf(err, errlen, "select - takes no backend");
			return -EINVAL;
		}
		return 0;
	}
	if (!sha_ok(sha)) {
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
		if (lsw_addr(cmd->addrs[n], &cmd->sas[n]) != 0) {
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
	snprintf(cmd->sha, sizeof(cmd->sha), "%s", sha);
	cmd->n = n;
	return 0;
}

static int parse_replicas(const char *s, int *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -EINVAL;
	v = strtol(s, &end, 10);
	if (*end || v < 0 || v > LSW_REPLICAS_MAX || end - s > 2)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

int lswitch_parse_command(char *line, struct lswitch_cmd *cmd, char *err, size_t errlen)
{
	char *name, *a1, *a2, *a3, *extra, *save = NULL;

	memset(cmd, 0, sizeof(*cmd));
	name = strtok_r(line, " \t\r", &save);
	if (!name) {
		snprintf(err, errlen, "empty request");
		return -EINVAL;
	}
	if (strcmp(name, "scale") == 0) {
		/* scale SHA N JSON: the JSON is the rest of the line (it has spaces). */
		a1 = strtok_r(NULL, " \t\r", &save);
		a2 = strtok_r(NULL, " \t\r", &save);
		a3 = save;
		while (a3 && (*a3 == ' ' || *a3 == '\t'))
			a3++;
		if (!a1 || !sha_ok(a1) || parse_replicas(a2, &cmd->replicas) != 0 || !a3 ||
		    *a3 != '{') {
			snprintf(err, errlen, "usage: scale SHA N(0-%d) {spec}", LSW_REPLICAS_MAX);
			return -EINVAL;
		}
		cmd->kind = LSWITCH_CMD_SCALE;
		snprintf(cmd->sha, sizeof(cmd->sha), "%s", a1);
		cmd->spec = a3;
		return 0;
	}
	a1 = strtok_r(NULL, " \t\r", &save);
	a2 = strtok_r(NULL, " \t\r", &save);
	extra = strtok_r(NULL, " \t\r", &save);
	if (strcmp(name, "status") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_STATUS;
	} else if (strcmp(name, "select") == 0 && a1 && !extra) {
		return lswitch_parse_select(a1, a2 ? a2 : "", cmd, err, errlen);
	} else if (strcmp(name, "stop") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_STOP;
	} else if (strcmp(name, "down") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_DOWN;
	} else if (strcmp(name, "ping") == 0 && !a1) {
		cmd->kind = LSWITCH_CMD_PING;
	} else if (strcmp(name, "remove") == 0 && a1 && sha_ok(a1) && !a2) {
		cmd->kind = LSWITCH_CMD_REMOVE;
		snprintf(cmd->sha, sizeof(cmd->sha), "%s", a1);
	} else if (strcmp(name, "remove-replica") == 0 && a1 && sha_ok(a1) && a2 && !extra &&
		   strlen(a2) < sizeof(cmd->name)) {
		cmd->kind = LSWITCH_CMD_REMOVE_REPLICA;
		snprintf(cmd->sha, sizeof(cmd->sha), "%s", a1);
		snprintf(cmd->name, sizeof(cmd->name), "%s", a2);
	} else {
		snprintf(err, errlen,
			 "unknown or malformed request (select SHA [ADDR:PORT,...], select -, "
			 "scale, remove, remove-replica, status, stop, down)");
		return -EINVAL;
	}
	return 0;
}

/* ---- state ------------------------------------------------------------------ */

unsigned lsw_new_id(struct lsw *sw)
{
	return ++sw->next_id;
}

int lsw_save(struct lsw *sw)
{
	char tmp[2300];
	json_t *o = json_object(), *arr = json_array();
	char *s;
	size_t len;
	int fd, rc = 0;

	for (size_t i = 0; sw->static_sel && i < sw->n_static; i++)
		json_array_append_new(arr, json_string(sw->statics[i]->addr));
	json_object_set_new(o, "listen", json_string(sw->listen));
	json_object_set_new(o, "switches", json_integer(sw->n_switches));
	json_object_set_new(o, "selected", json_string(sw->selected));
	json_object_set_new(o, "static", json_boolean(sw->static_sel));
	json_object_set_new(o, "backends", arr);
	json_object_set_new(o, "colours", lsw_sup_json(sw, 0));
	s = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", sw->json_path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
	} else {
		ssize_t n = write(fd, s, len);

		if (n < 0 || (size_t)n != len)
			rc = n < 0 ? -errno : -ENOSPC;
		if (close(fd) != 0 && rc == 0)
			rc = -errno;
		if (rc == 0 && rename(tmp, sw->json_path) != 0)
			rc = -errno;
		if (rc < 0)
			unlink(tmp);
	}
	free(s);
	if (rc < 0) {
		uint64_t now = lsw_now_ms();

		sw->dirty = 1;
		if (now >= sw->save_fail_log) {
			log_error("save-failed", "path=%s err=\"%s\"", sw->json_path,
				  strerror(-rc));
			sw->save_fail_log = now + 1000;
		}
	} else {
		sw->dirty = 0;
	}
	return rc;
}

void lsw_record(struct lsw *sw, json_t *event)
{
	run_record(sw->state_dir, event);
}

/*
 * STATE/switch.beat, every second while it runs, gone after a clean stop:
 * when it is there and its pid is gone, the switch died, and it says how
 * many connections went with it (local_switch_died()).
 */
static void totals(struct lsw *sw, struct lsw_totals *t, json_t *switches);

static void beat(struct lsw *sw, int force)
{
	char tmp[2300];
	uint64_t now = lsw_now_ms();
	struct lsw_totals t;
	json_t *o;
	int rc;

	if (!force && now < sw->beat_next)
		return;
	sw->beat_next = now + 1000;
	totals(sw, &t, NULL);
	o = json_pack("{s:i,s:f,s:I,s:I,s:s,s:s,s:i}", "pid", (int)getpid(), "t",
		      (double)run_now_ms() / 1000.0, "started", (json_int_t)sw->started_unix,
		      "connections", (json_int_t)t.connections, "listen", sw->listen, "selected",
		      sw->selected, "replicas", lsw_sup_running(sw));
	if (!o)
		return;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", sw->beat_path, (long)getpid());
	rc = json_dump_file(o, tmp, JSON_COMPACT);
	json_decref(o);
	if (rc != 0 || rename(tmp, sw->beat_path) != 0) {
		unlink(tmp);
		return;
	}
	sw->beat_written = 1;
}

/* ---- route ------------------------------------------------------------------ */

/*
 * The WebSocket listener's route: the WebSocket ports of the replicas the
 * TCP route holds (their backends share the TCP backend's id), so both
 * ports send new connections to the same colour at once.
 */
static void ws_route_update(struct lsw *sw, struct lsw_backend *const *route, size_t n)
{
	struct lsw_backend *ws_route[LSW_ROUTE_MAX], *be;
	struct lsw_colour *c = lsw_colour_find(sw, sw->selected);
	size_t m = 0;

	for (be = sw->ws_dp.backends; be; be = be->next)
		be->keep = 0;
	for (size_t i = 0; c && i < c->n_rep; i++) {
		struct lsw_rep *r = c->rep[i];
		struct sockaddr_storage sa;
		int routed = 0;

		for (size_t k = 0; k < n; k++)
			routed |= route[k] == r->be;
		if (!routed || !r->websocket[0] || lsw_addr(r->websocket, &sa) != 0)
			continue;
		be = lsw_dp_backend(&sw->ws_dp, r->be->id, c->sha, r->websocket, &sa);
		if (!be)
			continue;
		be->keep = 1;
		be->ready = 1;
		ws_route[m++] = be;
	}
	lsw_dp_set_route(&sw->ws_dp, ws_route, m);
	lsw_dp_gc(&sw->ws_dp);
}

/* A replica's WebSocket port refused: out of the WebSocket route until the
 * next route update (its TCP readiness decides the rest). */
static void on_ws_backend_down(struct lsw_dp *dp, struct lsw_backend *be, const char *why)
{
	be->ready = 0;
}

void lsw_route_update(struct lsw *sw)
{
	struct lsw_backend *route[LSW_ROUTE_MAX] = { 0 };
	char sig[sizeof(sw->route_sig)];
	uint64_t h = 1469598103934665603ULL;
	size_t n = 0;

	if (sw->static_sel) {
		for (size_t i = 0; i < sw->n_static; i++)
			if (sw->statics[i]->ready)
				route[n++] = sw->statics[i];
	} else if (sw->selected[0]) {
		struct lsw_colour *c = lsw_colour_find(sw, sw->selected);

		for (size_t i = 0; c && i < c->n_rep && n < LSW_ROUTE_MAX; i++)
			if (c->rep[i]->state == LSW_REP_READY && c->rep[i]->be)
				route[n++] = c->rep[i]->be;
	}
	lsw_dp_set_route(&sw->dp, route, n);
	if (sw->ws_listen[0])
		ws_route_update(sw, route, n);
	for (size_t i = 0; i < n; i++)
		h = (h ^ route[i]->id) * 1099511628211ULL;
	snprintf(sig, sizeof(sig), "%s/%zu/%016" PRIx64, sw->selected, n, h);
	if (strcmp(sig, sw->route_sig) != 0) {
		snprintf(sw->route_sig, sizeof(sw->route_sig), "%s", sig);
		log_info("route", "sha=%s backends=%zu", sw->selected[0] ? sw->selected : "-", n);
		lsw_followers_route(sw);
	}
	lsw_dp_gc(&sw->dp);
}

static void on_backend_down(struct lsw_dp *dp, struct lsw_backend *be, const char *why)
{
	struct lsw *sw = dp->data;

	if (sw->static_sel) {
		for (size_t i = 0; i < sw->n_static; i++)
			if (sw->statics[i] == be) {
				be->ready = 0;
				lsw_route_update(sw);
				return;
			}
		return;
	}
	lsw_sup_backend_down(sw, be, why);
}

/* Swaps the selection to a parsed select (a bad request never gets here). */
static int apply_select(struct lsw *sw, const struct lswitch_cmd *cmd, char *err, size_t errlen,
			int save)
{
	struct lsw_backend *picked[LSWITCH_BACKENDS_MAX];
	struct lsw_colour *c = NULL;

	if (cmd->sha[0] && cmd->n == 0) {
		c = lsw_colour_find(sw, cmd->sha);
		if (save && (!c || c->removing)) {
			snprintf(err, errlen, "no colour %s here (scale it first)", cmd->sha);
			return -ENOENT;
		}
	}
	for (size_t i = 0; i < cmd->n; i++) {
		picked[i] = lsw_dp_backend(&sw->dp, lsw_new_id(sw), cmd->sha, cmd->addrs[i],
					   &cmd->sas[i]);
		if (!picked[i]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < sw->n_static; i++)
		sw->statics[i]->keep = 0;
	for (size_t i = 0; i < cmd->n; i++) {
		picked[i]->keep = 1;
		sw->statics[i] = picked[i];
	}
	sw->n_static = cmd->n;
	sw->static_sel = cmd->n > 0;
	snprintf(sw->selected, sizeof(sw->selected), "%s", cmd->sha);
	if (c)
		c->ever_selected = 1;
	lsw_route_update(sw);
	log_info("select", "sha=%s backends=%s", cmd->sha[0] ? cmd->sha : "-",
		 cmd->n ? "fixed" : "its ready replicas");
	if (save) {
		int rc = lsw_save(sw);

		if (rc < 0) {
			snprintf(err, errlen, "selection applied but not saved: %s", strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void resume(struct lsw *sw)
{
	json_t *o = json_load_file(sw->json_path, 0, NULL), *arr, *v;
	char list[LSWITCH_LINE_MAX] = "", err[256];
	struct lswitch_cmd *cmd = malloc(sizeof(*cmd));
	const char *sha;
	size_t i, off = 0;

	if (!o || !cmd) {
		free(cmd);
		json_decref(o);
		return;
	}
	if (!sw->n_switches)
		sw->n_switches = (int)json_integer_value(json_object_get(o, "switches"));
	/* The selection first: a replica found dead while resuming is judged by it. */
	sha = json_string_value(json_object_get(o, "selected"));
	arr = json_object_get(o, "backends");
	json_array_foreach (arr, i, v) {
		const char *a = json_string_value(v);

		if (a && off + strlen(a) + 2 < sizeof(list))
			off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
						off ? "," : "", a);
	}
	if (sha && sha[0]) {
		if (lswitch_parse_select(sha, list, cmd, err, sizeof(err)) != 0 ||
		    apply_select(sw, cmd, err, sizeof(err), 0) != 0)
			log_warn("resume-failed", "err=\"%s\"", err);
		else
			log_info("resumed", "sha=%s", sha);
	}
	lsw_sup_resume(sw, json_object_get(o, "colours"));
	lsw_route_update(sw);
	lsw_save(sw);
	free(cmd);
	json_decref(o);
}

/* ---- static backends: a connect brings one back ------------------------------ */

static void static_probe_closed(uv_handle_t *h)
{
	free(h->data);
}

static void static_probe_cb(uv_connect_t *req, int status)
{
	struct static_probe *sp = req->data;
	struct lsw_backend *be;

	sp->done = 1;
	if (status == 0 && (be = lsw_dp_backend_find(&sp->sw->dp, sp->id)) && !be->ready) {
		be->ready = 1;
		log_info("backend-up", "addr=%s", be->addr);
		lsw_route_update(sp->sw);
	}
	/* Closed by the next tick, which also forgets it. */
}

static struct static_probe *static_probes[LSWITCH_BACKENDS_MAX];

static void static_probe_tick(struct lsw *sw)
{
	uint64_t now = lsw_now_ms();

	for (size_t i = 0; i < LSWITCH_BACKENDS_MAX; i++) {
		struct static_probe *sp = static_probes[i];

		if (sp && (sp->done || now - sp->start >= 1000)) {
			if (!uv_is_closing((uv_handle_t *)&sp->tcp))
				uv_close((uv_handle_t *)&sp->tcp, static_probe_closed);
			static_probes[i] = NULL;
		}
	}
	for (size_t i = 0; sw->static_sel && i < sw->n_static; i++) {
		struct lsw_backend *be = sw->statics[i];
		struct static_probe *sp;

		if (be->ready || static_probes[i] || sw->stopping)
			continue;
		sp = calloc(1, sizeof(*sp));
		if (!sp)
			return;
		sp->sw = sw;
		sp->id = be->id;
		sp->start = now;
		uv_tcp_init(sw->loop, &sp->tcp);
		sp->tcp.data = sp;
		sp->req.data = sp;
		if (uv_tcp_connect(&sp->req, &sp->tcp, (struct sockaddr *)&be->sa,
				   static_probe_cb) != 0) {
			uv_close((uv_handle_t *)&sp->tcp, static_probe_closed);
			continue;
		}
		static_probes[i] = sp;
	}
}

/* ---- control ---------------------------------------------------------------- */

static void totals(struct lsw *sw, struct lsw_totals *t, json_t *switches)
{
	const struct lsw_dp *dp = &sw->dp;

	memset(t, 0, sizeof(*t));
	t->connections = dp->active;
	t->accepted = dp->accepted;
	t->refused = dp->refused;
	t->refused_limit = dp->refused_limit;
	t->failed = dp->failed;
	t->retried = dp->retried;
	t->max_connections = dp->max_proxies;
	t->queued_bytes = (long)dp->queued_bytes;
	lsw_followers_totals(sw, t, switches);
}

static json_t *dp_json(const struct lsw_dp *dp, int pid)
{
	return json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "pid", pid, "connections",
			 (json_int_t)dp->active, "accepted", (json_int_t)dp->accepted, "refused",
			 (json_int_t)dp->refused, "refused_limit", (json_int_t)dp->refused_limit,
			 "failed", (json_int_t)dp->failed, "max_connections",
			 (json_int_t)dp->max_proxies, "fd_limit", (json_int_t)dp->fd_limit,
			 "queued_bytes", (json_int_t)dp->queued_bytes);
}

static char *status_json(struct lsw *sw)
{
	json_t *o = json_object(), *per = json_array(), *sel = json_array(), *sws = json_array();
	const struct lsw_dp *dp = &sw->dp;
	struct lsw_backend *be;
	struct lsw_totals t;
	char *s;

	for (size_t i = 0; i < dp->n_route; i++)
		json_array_append_new(sel, json_string(dp->route[i]->addr));
	for (be = dp->backends; be; be = be->next) {
		int in_sel = sw->static_sel ? be->keep && strcmp(be->sha, sw->selected) == 0
					    : strcmp(be->sha, sw->selected) == 0;
		json_t *b = json_pack("{s:i,s:s,s:s,s:I,s:I,s:I,s:b,s:b,s:b}", "id", (int)be->id,
				      "sha", be->sha, "addr", be->addr, "active",
				      (json_int_t)(be->active + be->f_active), "total",
				      (json_int_t)(be->total + be->f_total), "failed",
				      (json_int_t)(be->failed + be->f_failed), "selected", in_sel,
				      "ready", be->ready, "routed", be->routed);

		json_array_append_new(per, b);
	}
	json_array_append_new(sws, dp_json(dp, getpid()));
	totals(sw, &t, sws);
	json_object_set_new(o, "listen", json_string(sw->listen));
	json_object_set_new(o, "websocket",
			    sw->ws_listen[0] ? json_string(sw->ws_listen) : json_null());
	json_object_set_new(o, "websocket_connections", json_integer(sw->ws_dp.active));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "selected", json_string(sw->selected));
	json_object_set_new(o, "backends", sel);
	json_object_set_new(o, "connections", json_integer(t.connections));
	json_object_set_new(o, "accepted", json_integer(t.accepted));
	json_object_set_new(o, "refused", json_integer(t.refused));
	json_object_set_new(o, "refused_limit", json_integer(t.refused_limit));
	json_object_set_new(o, "failed", json_integer(t.failed));
	json_object_set_new(o, "retried", json_integer(t.retried));
	json_object_set_new(o, "max_connections", json_integer(t.max_connections));
	json_object_set_new(o, "fd_limit", json_integer(dp->fd_limit));
	json_object_set_new(o, "queued_bytes", json_integer(t.queued_bytes));
	json_object_set_new(o, "switch_processes", json_integer(1 + (json_int_t)sw->n_followers));
	json_object_set_new(o, "saved", json_boolean(!sw->dirty));
	json_object_set_new(o, "switches", sws);
	json_object_set_new(o, "per_backend", per);
	json_object_set_new(o, "colours", lsw_sup_json(sw, 1));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void ctl_close_cb(uv_handle_t *h)
{
	struct lsw_ctl *c = h->data;

	c->sw->n_ctl--;
	free(c);
}

static void ctl_client_close(struct lsw_ctl *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->sw->down_waiter == c)
		c->sw->down_waiter = NULL;
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
static struct ctl_write *ctl_reply(struct lsw_ctl *c, const char *word, const char *text)
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

static void ctl_scale(struct lsw_ctl *c, const struct lswitch_cmd *cmd)
{
	struct lsw_spec *spec = calloc(1, sizeof(*spec));
	json_t *o = json_loads(cmd->spec, 0, NULL);
	char err[512];

	if (!spec || !o || lsw_spec_parse(o, spec) != 0)
		ctl_reply(c, "error", "bad spec (want {\"chatd\":PATH,\"args\":STR,...})");
	else if (lsw_sup_scale(c->sw, cmd->sha, cmd->replicas, spec, err, sizeof(err)) != 0)
		ctl_reply(c, "error", err);
	else
		ctl_reply(c, "ok", NULL);
	json_decref(o);
	free(spec);
}

static void ctl_line(struct lsw_ctl *c, char *line)
{
	struct lsw *sw = c->sw;
	struct lswitch_cmd *cmd;
	char err[512];

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
	} else if (cmd->kind == LSWITCH_CMD_SCALE) {
		ctl_scale(c, cmd);
	} else if (cmd->kind == LSWITCH_CMD_REMOVE) {
		if (lsw_sup_remove(sw, cmd->sha, 0, err, sizeof(err)) == 0)
			ctl_reply(c, "ok", NULL);
		else
			ctl_reply(c, "error", err);
	} else if (cmd->kind == LSWITCH_CMD_REMOVE_REPLICA) {
		if (lsw_sup_remove_replica(sw, cmd->sha, cmd->name, err, sizeof(err)) == 0)
			ctl_reply(c, "ok", NULL);
		else
			ctl_reply(c, "error", err);
	} else if (cmd->kind == LSWITCH_CMD_STOP) {
		struct ctl_write *w = ctl_reply(c, "ok", NULL);

		if (w)
			w->stop = sw;
		else
			lsw_stop(sw);
	} else if (cmd->kind == LSWITCH_CMD_DOWN) {
		/* Every replica gets SIGTERM twice; the reply waits until they exited. The
		 * selection stays: `local up` resumes it (a deploy reconciles it). */
		lsw_sup_down(sw);
		sw->down_waiter = c;
		sw->down_deadline = lsw_now_ms() + LSWITCH_DOWN_WAIT_MS;
	} else {
		ctl_reply(c, "ok", "pong");
	}
	free(cmd);
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lsw_ctl *c = h->data;

	buf->base = c->buf + c->len;
	buf->len = LSWITCH_LINE_MAX - c->len;
}

static void ctl_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct lsw_ctl *c = stream->data;
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

static void reject_ctl_closed(uv_handle_t *h)
{
	free(h);
}

static void on_ctl(uv_stream_t *server, int status)
{
	struct lsw *sw = server->data;
	struct lsw_ctl *c;

	if (status < 0)
		return;
	/* At most half the descriptors kept in reserve go to control clients. */
	if (sw->n_ctl >= LSWITCH_CTL_CLIENTS_MAX || sw->n_ctl >= sw->dp.reserve / 2) {
		/* Too many at once: the newest goes (the reserve stays for the others). */
		uv_pipe_t *p = malloc(sizeof(*p));

		if (p) {
			uv_pipe_init(sw->loop, p, 0);
			if (uv_accept(server, (uv_stream_t *)p) == 0)
				log_warn("control", "err=\"too many control clients: one closed\"");
			uv_close((uv_handle_t *)p, reject_ctl_closed);
		}
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->sw = sw;
	sw->n_ctl++;
	uv_pipe_init(sw->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read) != 0)
		ctl_client_close(c);
}

/* ---- lifetime --------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	struct lsw *sw = t->data;

	if (sw->stopping)
		return;
	lsw_sup_tick(sw);
	static_probe_tick(sw);
	lsw_followers_tick(sw);
	beat(sw, 0);
	if (sw->dirty)
		lsw_save(sw);
	if (sw->down_deadline && (lsw_sup_running(sw) == 0 || lsw_now_ms() >= sw->down_deadline)) {
		struct lsw_ctl *c = sw->down_waiter;
		int left = lsw_sup_running(sw);
		char msg[128];

		sw->down_deadline = 0;
		if (left)
			log_warn("down",
				 "replicas_still_running=%d (they exit after their drain "
				 "timeout)",
				 left);
		snprintf(msg, sizeof(msg), "%d replicas still running", left);
		if (c) {
			struct ctl_write *w = ctl_reply(c, "ok", left ? msg : NULL);

			if (w) {
				w->stop = sw;
				return;
			}
		}
		lsw_stop(sw);
	}
}

static void close_walk(uv_handle_t *h, void *arg)
{
	struct lsw *sw = arg;

	if (uv_is_closing(h))
		return;
	if (h == (uv_handle_t *)&sw->ctl || h->type == UV_SIGNAL || h == (uv_handle_t *)&sw->tick) {
		uv_close(h, NULL);
		return;
	}
	if (h->type == UV_NAMED_PIPE && h->data && ((struct lsw_ctl *)h->data)->sw == sw)
		ctl_client_close(h->data);
}

static void lsw_stop(struct lsw *sw)
{
	if (sw->stopping)
		return;
	sw->stopping = 1;
	log_info("stop", "connections=%ld", sw->dp.active);
	if (sw->ctl_bound)
		unlink(sw->sock_path);
	/* A clean stop: no heartbeat left behind to say it died. */
	if (sw->beat_written)
		unlink(sw->beat_path);
	lsw_followers_stop(sw);
	lsw_dp_close(&sw->dp);
	if (sw->ws_listen[0])
		lsw_dp_close(&sw->ws_dp);
	lsw_sup_free(sw);
	for (size_t i = 0; i < LSWITCH_BACKENDS_MAX; i++) {
		struct static_probe *sp = static_probes[i];

		if (sp && !uv_is_closing((uv_handle_t *)&sp->tcp))
			uv_close((uv_handle_t *)&sp->tcp, static_probe_closed);
		static_probes[i] = NULL;
	}
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
	struct lsw *sw = calloc(1, sizeof(*sw));
	struct sockaddr_storage ws_sa;
	char reply[64];
	int rc;

	if (!sw)
		return -ENOMEM;
	if (o->follower) {
		free(sw);
		return lsw_follower_run(o);
	}
	sw->loop = uv_default_loop();
	sw->loop->data = sw;
	sw->n_switches = o->switches;
	snprintf(sw->exe, sizeof(sw->exe), "%s", o->exe ? o->exe : "rainbow");
	sw->started_ms = lsw_now_ms();
	snprintf(sw->listen, sizeof(sw->listen), "%s", o->listen);
	snprintf(sw->state_dir, sizeof(sw->state_dir), "%s", o->state_dir);
	snprintf(sw->json_path, sizeof(sw->json_path), "%s/switch.json", o->state_dir);
	snprintf(sw->beat_path, sizeof(sw->beat_path), "%s/switch.beat", o->state_dir);
	sw->started_unix = (int64_t)time(NULL);
	rc = lswitch_sock_path(o->state_dir, sw->sock_path, sizeof(sw->sock_path));
	if (rc < 0) {
		log_error("state-dir", "err=\"state dir path too long for a unix socket\"");
		free(sw);
		return rc;
	}
	rc = lsw_addr(o->listen, &sw->listen_sa);
	if (rc < 0) {
		log_error("listen", "addr=%s err=\"want IP:PORT\"", o->listen);
		free(sw);
		return rc;
	}
	if (o->websocket && *o->websocket) {
		if (lsw_addr(o->websocket, &ws_sa) < 0) {
			log_error("listen", "websocket=%s err=\"want IP:PORT\"", o->websocket);
			free(sw);
			return -EINVAL;
		}
		snprintf(sw->ws_listen, sizeof(sw->ws_listen), "%s", o->websocket);
	}
	signal(SIGPIPE, SIG_IGN);
	/* The socket is a live switch's (refuse) or a stale one of a dead switch. */
	if (lswitch_call(o->state_dir, "ping", reply, sizeof(reply)) == 0) {
		log_error("control", "path=%s err=\"another switch answers there\"", sw->sock_path);
		free(sw);
		return -EADDRINUSE;
	}
	lsw_dp_init(&sw->dp, sw->loop, o->high_water, LSWITCH_FD_RESERVE, on_backend_down, sw);
	if (sw->ws_listen[0])
		lsw_dp_init(&sw->ws_dp, sw->loop, o->high_water, LSWITCH_FD_RESERVE,
			    on_ws_backend_down, sw);
	rc = lsw_sup_init(sw);
	if (rc < 0) {
		log_error("state-dir", "err=\"%s\"", strerror(-rc));
		goto out_close;
	}
	resume(sw);
	if (sw->n_switches < 1 || sw->n_switches > LSWITCH_SWITCHES_MAX)
		sw->n_switches = 1;
	/* Several processes share the port only when asked: one alone owns it. */
	rc = lsw_dp_listen(&sw->dp, (struct sockaddr *)&sw->listen_sa, -1, sw->n_switches > 1);
	if (rc < 0) {
		log_error("listen", "addr=%s err=\"%s\"", o->listen, uv_strerror(rc));
		goto out_close;
	}
	if (sw->ws_listen[0]) {
		rc = lsw_dp_listen(&sw->ws_dp, (struct sockaddr *)&ws_sa, -1, 0);
		if (rc < 0) {
			log_error("listen", "websocket=%s err=\"%s\"", sw->ws_listen,
				  uv_strerror(rc));
			goto out_close;
		}
		lsw_route_update(sw);
	}
	unlink(sw->sock_path);
	uv_pipe_init(sw->loop, &sw->ctl, 0);
	sw->ctl.data = sw;
	rc = uv_pipe_bind(&sw->ctl, sw->sock_path);
	sw->ctl_bound = rc == 0;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&sw->ctl, 64, on_ctl);
	if (rc < 0) {
		log_error("control", "path=%s err=\"%s\"", sw->sock_path, uv_strerror(rc));
		goto out_close;
	}
	uv_signal_init(sw->loop, &sw->sig_term);
	uv_signal_init(sw->loop, &sw->sig_int);
	sw->sig_term.data = sw->sig_int.data = sw;
	uv_signal_start(&sw->sig_term, on_signal, SIGTERM);
	uv_signal_start(&sw->sig_int, on_signal, SIGINT);
	uv_timer_init(sw->loop, &sw->tick);
	sw->tick.data = sw;
	uv_timer_start(&sw->tick, on_tick, LSWITCH_TICK_MS, LSWITCH_TICK_MS);
	lsw_save(sw);
	if (sw->n_switches > 1 && lsw_followers_start(sw, sw->n_switches) < 0)
		goto out_close;
	beat(sw, 1);
	log_info("listen",
		 "addr=%s control=%s selected=%s max_connections=%ld fd_limit=%ld "
		 "switch_processes=%d",
		 sw->listen, sw->sock_path, sw->selected[0] ? sw->selected : "-",
		 sw->dp.max_proxies, sw->dp.fd_limit, sw->n_switches);
	uv_run(sw->loop, UV_RUN_DEFAULT);
	rc = 0;
	goto out_free;
out_close:
	lsw_stop(sw);
	uv_run(sw->loop, UV_RUN_DEFAULT);
out_free:
	lsw_dp_free(&sw->dp);
	if (sw->ws_listen[0])
		lsw_dp_free(&sw->ws_dp);
	uv_loop_close(sw->loop);
	free(sw);
	return rc;
}

/* ---- the client side ---------------------------------------------------------- */

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
	return lswitch_call_timeout(state_dir, request, reply, len, 5000);
}

int lswitch_call_timeout(const char *state_dir, const char *request, char *reply, size_t len,
			 int timeout_ms)
{
	struct sockaddr_un un;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
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
		return -EAGAIN; /* out of descriptors here: not the switch's fault */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
		/* No socket, or nobody listens on it: no switch. Anything else may pass. */
		rc = errno == ENOENT || errno == ECONNREFUSED ? -ENOENT : -EAGAIN;
		goto out;
	}
	if (dprintf(fd, "%s\n", request) < 0) {
		rc = -EAGAIN;
		goto out;
	}
	while (off + 1 < len) {
		ssize_t n = read(fd, reply + off, len - 1 - off);

		if (n <= 0) {
			rc = -EAGAIN;
			goto out;
		}
		off += (size_t)n;
		reply[off] = '\0';
		if (memchr(reply + off - (size_t)n, '\n', (size_t)n))
			break;
	}
	reply[strcspn(reply, "\n")] = '\0';
	rc = strncmp(reply, "ok", 2) == 0 ? 0 : -EPROTO;
out:
	close(fd);
	return rc;
}
