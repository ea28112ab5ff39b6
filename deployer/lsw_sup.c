/*
 * The switch as supervisor of the replicas, the way a ReplicaSet and the
 * kubelet are on Kubernetes:
 *  - it starts each replica (chatd with port 0 everywhere and --ports-file:
 *    the kernel picks free ports, chatd says which), detached, so replicas
 *    outlive the switch, and watches it until it exits (its child, or a
 *    pidfd for one started by an earlier switch);
 *  - it keeps readiness: GET /readyz every LSW_PROBE_MS; a ready replica
 *    leaves the route after LSW_PROBE_FAILS failed probes in a row (no
 *    answer within LSW_PROBE_TIMEOUT_MS, or not 200), as Kubernetes'
 *    failureThreshold, so that a replica merely slow under load, or one
 *    whose readiness blinks for a moment, stays; and at once when a connect
 *    to it is refused or times out; /metrics every fourth time gives the
 *    count a crash loses;
 *  - a replica that exits is restarted with backoff when its colour is
 *    live or starting; when the colour drains it is not (its connections
 *    are gone) and the crash is recorded with the connections it held; a
 *    replica that exits before it was ever ready is not restarted at all
 *    (its deploy fails at once with the last lines of its log).
 * Every change is saved (lsw_save) before it is acknowledged.
 */
#include "lsw_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "promtext.h"
#include "unconst.h"

#define LSW_PROBE_MS 250
#define LSW_PROBE_TIMEOUT_MS 2000
#define LSW_PROBE_FAILS 3	 /* failed probes in a row before a ready replica leaves */
#define LSW_STABLE_MS 10000	 /* up this long: the crash streak is forgiven */
#define LSW_BACKOFF_FIRST_MS 200 /* then doubled per crash in a row */
#define LSW_BACKOFF_MAX_MS 10000
#define LSW_TERM_GAP_MS 100 /* remove: the second SIGTERM (close now) this much later */
#define LSW_TAIL_LINES 6

static const char *const state_names[] = { "spawned", "starting", "ready",   "unready",
					   "backoff", "failed",	  "crashed", "terminating" };

static const char *state_name(enum lsw_rep_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static int state_parse(const char *s, enum lsw_rep_state *out)
{
	for (size_t i = 0; s && i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum lsw_rep_state)i;
			return 0;
		}
	return -EINVAL;
}

/* Reads up to cap bytes of /proc/PID/what; the count, or <= 0. */
static ssize_t proc_read(int pid, const char *what, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, cap);
	close(fd);
	return n;
}

int lswitch_pid_runs(int pid, const char *name)
{
	char buf[4096], st[512], want[LSW_NAME_MAX + 3];
	ssize_t n;
	char *paren;

	if (pid <= 0 || kill(pid, 0) != 0)
		return 0;
	n = proc_read(pid, "stat", st, sizeof(st) - 1);
	if (n <= 0)
		return 0;
	st[n] = '\0';
	paren = strrchr(st, ')');
	if (!paren || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X')
		return 0;
	if (!name || !name[0])
		return 1;
	n = proc_read(pid, "cmdline", buf, sizeof(buf) - 2);
	if (n <= 0)
		return 0;
	/* Arguments end with NUL: the name as a whole argument (x-1 is not x-10). */
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = ' ';
	buf[n + 1] = '\0';
	snprintf(want, sizeof(want), " %s ", name);
	return strstr(buf, want) != NULL;
}

/* ---- records ---------------------------------------------------------------- */

struct lsw_colour *lsw_colour_find(struct lsw *sw, const char *sha)
{
	struct lsw_colour *c;

	for (c = sw->colours; c; c = c->next)
		if (strcmp(c->sha, sha) == 0)
			return c;
	return NULL;
}

static struct lsw_colour *colour_new(struct lsw *sw, const char *sha)
{
	struct lsw_colour *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	snprintf(c->sha, sizeof(c->sha), "%s", sha);
	c->sw = sw;
	c->next = sw->colours;
	sw->colours = c;
	return c;
}

static void colour_free(struct lsw *sw, struct lsw_colour *c)
{
	struct lsw_colour **pp;

	for (pp = &sw->colours; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	free(c);
}

static void rep_drop_backend(struct lsw_rep *r)
{
	if (r->be) {
		r->be->keep = 0;
		r->be->ready = 0;
		r->be = NULL;
	}
}

static void watch_closed(uv_handle_t *h)
{
	struct lsw_watch *w = h->data;

	if (w->adopted && w->pidfd >= 0)
		close(w->pidfd);
	free(w);
}

static void watch_release(struct lsw_rep *r)
{
	struct lsw_watch *w = r->watch;

	if (!w)
		return;
	r->watch = NULL;
	w->rep = NULL;
	if (!uv_is_closing((uv_handle_t *)&w->h))
		uv_close((uv_handle_t *)&w->h, watch_closed);
}

/* Frees a replica record (its process, if any, is left alone). */
static void rep_free(struct lsw_colour *c, struct lsw_rep *r)
{
	for (size_t i = 0; i < c->n_rep; i++)
		if (c->rep[i] == r) {
			memmove(&c->rep[i], &c->rep[i + 1], (c->n_rep - i - 1) * sizeof(c->rep[0]));
			c->n_rep--;
			break;
		}
	watch_release(r);
	rep_drop_backend(r);
	lsw_probe_req_free(&r->readyz);
	lsw_probe_req_free(&r->metrics);
	free(r);
}

static void rep_paths(struct lsw *sw, const struct lsw_rep *r, char *log, size_t loglen,
		      char *ports, size_t portslen);

/* Forgets a replica that is gone for good (its ports file too). */
static void rep_forget(struct lsw *sw, struct lsw_colour *c, struct lsw_rep *r)
{
	char ports[2400];

	rep_paths(sw, r, NULL, 0, ports, sizeof(ports));
	unlink(ports);
	rep_free(c, r);
}

static int rep_active(const struct lsw_rep *r)
{
	return r->state != LSW_REP_FAILED && r->state != LSW_REP_CRASHED &&
	       r->state != LSW_REP_TERMINATING;
}

static void rep_paths(struct lsw *sw, const struct lsw_rep *r, char *log, size_t loglen,
		      char *ports, size_t portslen)
{
	if (log)
		snprintf(log, loglen, "%s/logs/%s.log", sw->state_dir, r->name);
	if (ports)
		snprintf(ports, portslen, "%s/run/%s.ports", sw->state_dir, r->name);
}

/* The last lines of a replica's log, on one line ("a | b | c"). */
static void log_tail(const char *path, char *out, size_t len)
{
	char buf[2048];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;
	off_t end;
	int lines = 0;
	char *p, *start;
	size_t o = 0;

	out[0] = '\0';
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > 0 && lseek(fd, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0,
			     SEEK_SET) >= 0)
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	for (p = buf + n; p > buf && lines < LSW_TAIL_LINES; p--)
		if (p[-1] == '\n')
			lines++;
	start = p == buf ? buf : p + 1;
	for (char *s = start; *s && o + 4 < len; s++) {
		if (*s == '\n') {
			o += (size_t)snprintf(out + o, len - o, " | ");
			continue;
		}
		out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	}
	out[o < len ? o : len - 1] = '\0';
}

/* A colour's state from rainbow's meta: restarted when live or starting. */
static int colour_restarts(struct lsw *sw, const struct lsw_colour *c)
{
	char path[2200];
	json_t *o, *meta;
	const char *v;
	int rc = 1;

	if (c->removing)
		return 0;
	if (!sw->static_sel && strcmp(sw->selected, c->sha) == 0)
		return 1;
	snprintf(path, sizeof(path), "%s/colours/%s.json", sw->state_dir, c->sha);
	o = json_load_file(path, 0, NULL);
	meta = json_object_get(o, "meta");
	if (json_object_get(meta, "failed"))
		rc = 0;
	v = json_string_value(json_object_get(meta, "draining-since"));
	if (v && *v)
		rc = 0;
	json_decref(o);
	if (c->ever_selected)
		rc = 0; /* deselected since: it drains */
	return rc;
}

/* ---- peers file ------------------------------------------------------------- */

/* STATE/peers: every running replica's cluster address (rewritten atomically on change). */
static void peers_update(struct lsw *sw)
{
	static char last[LSW_REPLICAS_MAX * 8 * 64];
	char buf[sizeof(last)], path[2200], tmp[2300];
	size_t o = 0;
	struct lsw_colour *c;
	FILE *f;

	for (c = sw->colours; c; c = c->next)
		for (size_t i = 0; i < c->n_rep; i++) {
			const struct lsw_rep *r = c->rep[i];

			if (r->pid > 0 && r->cluster[0] && o + 70 < sizeof(buf))
				o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s\n", r->cluster);
		}
	buf[o] = '\0';
	if (strcmp(buf, last) == 0)
		return;
	snprintf(path, sizeof(path), "%s/peers", sw->state_dir);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	f = fopen(tmp, "w");
	if (!f || fputs(buf, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		log_warn("peers-file", "path=%s err=\"%s\"", path, strerror(errno));
		unlink(tmp);
		return;
	}
	snprintf(last, sizeof(last), "%s", buf);
}

/*
 * After the replicas changed: saved, the peers' lists rewritten, the routes
 * updated. The save's result; its message in err when it failed (err may
 * be NULL).
 */
static int sup_changed(struct lsw *sw, char *err, size_t errlen)
{
	int rc = lsw_save(sw);

	peers_update(sw);
	lsw_route_update(sw);
	if (rc < 0 && err)
		snprintf(err, errlen, "cannot save %s: %s", sw->json_path, strerror(-rc));
	return rc;
}

/* ---- processes ---------------------------------------------------------------- */

static void rep_exited(struct lsw *sw, struct lsw_rep *r, const char *how);

static void on_child_exit(uv_process_t *h, int64_t status, int term_signal)
{
	struct lsw_watch *w = h->data;
	struct lsw_rep *r = w->rep;
	char how[128];

	if (term_signal)
		snprintf(how, sizeof(how), "killed by signal %d (%s)", term_signal,
			 strsignal(term_signal));
	else
		snprintf(how, sizeof(how), "exited with status %lld", (long long)status);
	if (r) {
		rep_exited(h->loop->data, r, how);
	} else {
		uv_close((uv_handle_t *)h, watch_closed);
	}
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct lsw_watch *w = h->data;
	struct lsw_rep *r = w->rep;

	uv_poll_stop(h);
	if (r)
		rep_exited(h->loop->data, r,
			   "exited (status unknown: started by an earlier switch)");
	else
		uv_close((uv_handle_t *)h, watch_closed);
}

/* Watches a running process this switch did not start. 0, or -ESRCH when it is gone. */
static int rep_adopt(struct lsw *sw, struct lsw_rep *r)
{
	struct lsw_watch *w;
	int fd = (int)syscall(SYS_pidfd_open, r->pid, 0);

	if (fd < 0)
		return -ESRCH;
	w = calloc(1, sizeof(*w));
	if (!w) {
		close(fd);
		return -ENOMEM;
	}
	w->adopted = 1;
	w->pidfd = fd;
	w->rep = r;
	if (uv_poll_init(sw->loop, &w->h.poll, fd) != 0) {
		close(fd);
		free(w);
		return -EIO;
	}
	w->h.poll.data = w;
	uv_poll_start(&w->h.poll, UV_READABLE, on_pidfd);
	r->watch = w;
	return 0;
}

static void rep_signal(struct lsw_rep *r, int sig)
{
	if (r->pid <= 0)
		return;
	if (r->watch && r->watch->adopted)
		syscall(SYS_pidfd_send_signal, r->watch->pidfd, sig, NULL, 0);
	else
		kill(r->pid, sig);
}

/* Starts (or restarts) replica r. 0 or -errno with the reason in err. */
static int rep_spawn(struct lsw *sw, struct lsw_rep *r, char *err, size_t errlen)
{
	const struct lsw_spec *sp = &r->col->spec;
	char log[2400], ports[2400], peers[2200], secret[2200], token[2200];
	char args[sizeof(sp->args)];
	char *argv[80], *save = NULL, *tok;
	uv_stdio_container_t stdio[3];
	uv_process_options_t o;
	struct lsw_watch *w;
	size_t n = 0;
	int logfd, nullfd, rc;

	rep_paths(sw, r, log, sizeof(log), ports, sizeof(ports));
	snprintf(peers, sizeof(peers), "%s/peers", sw->state_dir);
	snprintf(secret, sizeof(secret), "%s/cluster.secret", sw->state_dir);
	snprintf(token, sizeof(token), "%s/control.token", sw->state_dir);
	unlink(ports);
	argv[n++] = unconst(sp->chatd);
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--http";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--websocket";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--version-label";
	argv[n++] = r->col->sha;
	argv[n++] = "--instance";
	argv[n++] = r->name;
	argv[n++] = "--ports-file";
	argv[n++] = ports;
	if (sp->auth_any)
		argv[n++] = "--auth-any";
	if (sp->cluster) {
		argv[n++] = "--cluster-listen";
		argv[n++] = "127.0.0.1:0";
		argv[n++] = "--peers-file";
		argv[n++] = peers;
		if (sp->cluster_secret) {
			argv[n++] = "--cluster-secret-file";
			argv[n++] = secret;
		}
	}
	if (sp->control) {
		/* Moved sessions reconnect to the switch (the Service), never to
		 * the replica; the token lets rainbow ask (assisted drain). */
		argv[n++] = "--service-address";
		argv[n++] = sw->listen;
		argv[n++] = "--control-token-file";
		argv[n++] = token;
	}
	snprintf(args, sizeof(args), "%s", sp->args);
	for (tok = strtok_r(args, " \t", &save); tok && n < 78; tok = strtok_r(NULL, " \t", &save))
		argv[n++] = tok;
	argv[n] = NULL;

	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", log, strerror(errno));
		return rc;
	}
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	dprintf(logfd, "rainbow-switch: starting %s%s\n", r->name,
		r->restarts ? " again (restart)" : "");
	w = calloc(1, sizeof(*w));
	if (!w) {
		close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(&o, 0, sizeof(o));
	stdio[0].flags = nullfd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
	stdio[0].data.fd = nullfd;
	stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
	stdio[1].data.fd = stdio[2].data.fd = logfd;
	o.file = sp->chatd;
	o.args = argv;
	o.exit_cb = on_child_exit;
	o.flags = UV_PROCESS_DETACHED; /* its own session: it outlives the switch */
	o.stdio_count = 3;
	o.stdio = stdio;
	w->rep = r;
	w->h.proc.data = w;
	rc = uv_spawn(sw->loop, &w->h.proc, &o);
	close(logfd);
	if (nullfd >= 0)
		close(nullfd);
	if (rc < 0) {
		uv_close((uv_handle_t *)&w->h.proc, watch_closed);
		snprintf(err, errlen, "cannot start %s: %s", sp->chatd, uv_strerror(rc));
		return rc;
	}
	w->h.proc.data = w;
	r->watch = w;
	r->pid = w->h.proc.pid;
	r->state = LSW_REP_SPAWNED;
	r->listen[0] = r->http[0] = r->cluster[0] = '\0';
	r->ever_ready = 0;
	r->fails = 0;
	r->count = -1;
	r->tick = 0;
	r->term_sent = r->term_twice = 0;
	r->started_ms = lsw_now_ms();
	r->started_unix = (int64_t)time(NULL);
	log_info("replica-started", "name=%s pid=%d restarts=%d", r->name, r->pid, r->restarts);
	return 0;
}

/* ---- exits ---------------------------------------------------------------- */

static void rep_exited(struct lsw *sw, struct lsw_rep *r, const char *how)
{
	struct lsw_colour *c = r->col;
	char logpath[2400], tail[LSW_FAULT_MAX - 200];
	long lost = r->state == LSW_REP_SPAWNED ? 0 : r->count;
	uint64_t now = lsw_now_ms();
	json_t *e;

	watch_release(r);
	r->pid = 0;
	rep_drop_backend(r);
	lsw_probe_req_free(&r->readyz);
	lsw_probe_req_free(&r->metrics);
	if (r->state == LSW_REP_TERMINATING) {
		log_info("replica-stopped", "name=%s how=\"%s\"", r->name, how);
		rep_forget(sw, c, r);
		if (c->removing && c->n_rep == 0)
			colour_free(sw, c);
		goto out;
	}
	rep_paths(sw, r, logpath, sizeof(logpath), NULL, 0);
	log_tail(logpath, tail, sizeof(tail));
	/* Truncation is fine: the fault is a one-line summary for humans. */
	snprintf(r->fault, sizeof(r->fault), "%.100s; last lines of %.300s: %.600s", how, logpath,
		 tail[0] ? tail : "(empty)");
	if (!r->was_ready) {
		r->state = LSW_REP_FAILED;
		log_error("replica-failed",
			  "name=%s how=\"%s\" (exited before it was ever ready: "
			  "not restarted)",
			  r->name, how);
		e = json_pack("{s:s,s:s,s:s,s:s}", "event", "replica-failed", "sha", c->sha,
			      "replica", r->name, "reason", r->fault);
	} else if (colour_restarts(sw, c)) {
		uint64_t backoff = LSW_BACKOFF_FIRST_MS;

		for (int i = 0; i < r->streak && backoff < LSW_BACKOFF_MAX_MS; i++)
			backoff *= 2;
		if (backoff > LSW_BACKOFF_MAX_MS)
			backoff = LSW_BACKOFF_MAX_MS;
		r->streak++;
		r->state = LSW_REP_BACKOFF;
		r->backoff_until = now + backoff;
		if (lost > 0)
			r->lost += lost;
		log_warn("replica-crashed",
			 "name=%s how=\"%s\" connections_lost=%ld "
			 "restart_in_ms=%llu restarts=%d",
			 r->name, how, lost, (unsigned long long)backoff, r->restarts);
		e = json_pack("{s:s,s:s,s:s,s:s,s:I,s:i}", "event", "restart", "sha", c->sha,
			      "replica", r->name, "exit", how, "connections", (json_int_t)lost,
			      "restarts", r->restarts + 1);
	} else {
		r->state = LSW_REP_CRASHED;
		if (lost > 0)
			r->lost += lost;
		log_error("replica-crashed",
			  "name=%s how=\"%s\" connections_lost=%ld (its colour "
			  "drains: not restarted)",
			  r->name, how, lost);
		e = json_pack("{s:s,s:s,s:s,s:s,s:I}", "event", "crash", "sha", c->sha, "replica",
			      r->name, "exit", how, "connections", (json_int_t)lost);
	}
	lsw_record(sw, e);
out:
	sup_changed(sw, NULL, 0);
}

/* ---- readiness -------------------------------------------------------------- */

static void readyz_done(struct lsw_probe_req *q, long code, const char *body, size_t len)
{
	struct lsw_rep *r = q->data;

	if (r->state != LSW_REP_STARTING && r->state != LSW_REP_READY &&
	    r->state != LSW_REP_UNREADY)
		return;
	if (code == 200) {
		r->fails = 0;
		if (r->state != LSW_REP_READY) {
			int first = !r->was_ready;

			r->state = LSW_REP_READY;
			r->ever_ready = r->was_ready = 1;
			r->ready_ms = lsw_now_ms();
			if (r->be)
				r->be->ready = 1;
			log_info("replica-ready", "name=%s listen=%s", r->name, r->listen);
			if (first)
				lsw_save(r->col->sw);
			lsw_route_update(r->col->sw);
		}
		return;
	}
	r->fails++;
	if (r->state == LSW_REP_READY && r->fails >= LSW_PROBE_FAILS) {
		r->state = LSW_REP_UNREADY;
		if (r->be)
			r->be->ready = 0;
		log_warn("replica-unready", "name=%s readyz=%ld fails=%d", r->name, code, r->fails);
		lsw_route_update(r->col->sw);
	}
}

static void metrics_done(struct lsw_probe_req *q, long code, const char *body, size_t len)
{
	struct lsw_rep *r = q->data;

	if (code == 200)
		r->count = promtext_count(body, "chatd_connections");
}

void lsw_sup_backend_down(struct lsw *sw, struct lsw_backend *be, const char *why)
{
	struct lsw_colour *c;

	for (c = sw->colours; c; c = c->next)
		for (size_t i = 0; i < c->n_rep; i++) {
			struct lsw_rep *r = c->rep[i];

			if (r->be != be)
				continue;
			be->ready = 0;
			r->fails = LSW_PROBE_FAILS;
			if (r->state == LSW_REP_READY) {
				r->state = LSW_REP_UNREADY;
				log_warn("replica-unready", "name=%s why=\"connect: %s\"", r->name,
					 why);
			}
			lsw_route_update(sw);
			return;
		}
}

/* Reads a replica's ports file once it is there: it is listening. */
static void rep_ports(struct lsw *sw, struct lsw_rep *r)
{
	char path[2400], line[256];
	struct sockaddr_storage sa;
	FILE *f;

	rep_paths(sw, r, NULL, 0, path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '='), *v;

		if (!eq)
			continue;
		*eq = '\0';
		v = eq + 1;
		v[strcspn(v, "\r\n")] = '\0';
		if (strcmp(line, "listen") == 0)
			snprintf(r->listen, sizeof(r->listen), "%s", v);
		else if (strcmp(line, "http") == 0)
			snprintf(r->http, sizeof(r->http), "%s", v);
		else if (strcmp(line, "cluster") == 0)
			snprintf(r->cluster, sizeof(r->cluster), "%s", v);
		else if (strcmp(line, "websocket") == 0)
			snprintf(r->websocket, sizeof(r->websocket), "%s", v);
	}
	fclose(f);
	if (!r->listen[0] || lsw_addr(r->listen, &sa) != 0) {
		r->listen[0] = '\0';
		return;
	}
	r->be = lsw_dp_backend(&sw->dp, lsw_new_id(sw), r->col->sha, r->listen, &sa);
	if (r->be) {
		r->be->keep = 1;
		r->be->ready = 0;
	}
	r->state = LSW_REP_STARTING;
	log_info("replica-listening", "name=%s listen=%s http=%s cluster=%s", r->name, r->listen,
		 r->http, r->cluster[0] ? r->cluster : "-");
	lsw_save(sw);
	peers_update(sw);
}

static void rep_probe(struct lsw *sw, struct lsw_rep *r)
{
	char url[160];

	if (!r->http[0])
		return;
	if (!r->readyz.busy) {
		snprintf(url, sizeof(url), "http://%s/readyz", r->http);
		lsw_probe_get(sw->probe, &r->readyz, url, LSW_PROBE_TIMEOUT_MS, 0, readyz_done, r);
	}
	if (r->tick++ % 4 == 0 && !r->metrics.busy) {
		snprintf(url, sizeof(url), "http://%s/metrics", r->http);
		lsw_probe_get(sw->probe, &r->metrics, url, LSW_PROBE_TIMEOUT_MS, 1, metrics_done,
			      r);
	}
}

void lsw_sup_tick(struct lsw *sw)
{
	static uint64_t last_probe;
	uint64_t now = lsw_now_ms();
	int probe = now - last_probe >= LSW_PROBE_MS;
	struct lsw_colour *c, *cn;

	if (probe)
		last_probe = now;
	for (c = sw->colours; c; c = cn) {
		cn = c->next;
		for (size_t i = 0; i < c->n_rep; i++) {
			struct lsw_rep *r = c->rep[i];
			char err[512];

			switch (r->state) {
			case LSW_REP_SPAWNED:
				rep_ports(sw, r);
				break;
			case LSW_REP_BACKOFF:
				if (now < r->backoff_until)
					break;
				if (!colour_restarts(sw, c)) {
					/* Its colour started draining meanwhile: nothing to serve. */
					r->state = LSW_REP_CRASHED;
					log_info("replica-not-restarted",
						 "name=%s (its colour drains)", r->name);
					lsw_save(sw);
					break;
				}
				r->restarts++;
				if (rep_spawn(sw, r, err, sizeof(err)) != 0) {
					/* Cannot even start it: try again later. */
					r->state = LSW_REP_BACKOFF;
					r->backoff_until = now + LSW_BACKOFF_MAX_MS;
					snprintf(r->fault, sizeof(r->fault), "%s", err);
					log_error("replica-restart-failed", "name=%s err=\"%s\"",
						  r->name, err);
				}
				lsw_save(sw);
				break;
			case LSW_REP_STARTING:
			case LSW_REP_READY:
			case LSW_REP_UNREADY:
				if (r->state == LSW_REP_READY && r->streak &&
				    now - r->ready_ms >= LSW_STABLE_MS)
					r->streak = 0;
				if (probe)
					rep_probe(sw, r);
				break;
			case LSW_REP_TERMINATING:
				if (r->term_twice && now >= r->backoff_until) {
					r->term_twice = 0;
					rep_signal(r, SIGTERM);
				}
				break;
			default:
				break;
			}
		}
	}
}

/* ---- scale, remove --------------------------------------------------------------- */

static void rep_terminate(struct lsw *sw, struct lsw_colour *c, struct lsw_rep *r, int now)
{
	if (r->pid <= 0) {
		rep_forget(sw, c, r);
		return;
	}
	rep_drop_backend(r);
	lsw_probe_req_free(&r->readyz);
	lsw_probe_req_free(&r->metrics);
	r->state = LSW_REP_TERMINATING;
	rep_signal(r, SIGTERM);
	r->term_sent = 1;
	if (now) {
		/* The second SIGTERM: chatd closes what is left with system-shutdown. */
		r->term_twice = 1;
		r->backoff_until = lsw_now_ms() + LSW_TERM_GAP_MS;
	}
	log_info("replica-stopping", "name=%s pid=%d%s", r->name, r->pid,
		 now ? " (close now)" : " (drain)");
}

int lsw_sup_scale(struct lsw *sw, const char *sha, int n, const struct lsw_spec *spec, char *err,
		  size_t errlen)
{
	struct lsw_colour *c = lsw_colour_find(sw, sha);
	size_t active = 0;
	int rc = 0;

	if (n < 0 || n > LSW_REPLICAS_MAX) {
		snprintf(err, errlen, "replicas must be 0..%d", LSW_REPLICAS_MAX);
		return -EINVAL;
	}
	if (c && c->removing) {
		snprintf(err, errlen, "colour %s is being removed", sha);
		return -EBUSY;
	}
	if (!c) {
		c = colour_new(sw, sha);
		if (!c) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	c->spec = *spec;
	c->wanted = n;
	/* Replicas that never got ready are replaced, not kept. */
	for (size_t i = 0; i < c->n_rep;) {
		if (c->rep[i]->state == LSW_REP_FAILED)
			rep_forget(sw, c, c->rep[i]);
		else
			i++;
	}
	for (size_t i = 0; i < c->n_rep; i++)
		active += (size_t)rep_active(c->rep[i]);
	/* Scale down: the newest replicas go first; they drain (one SIGTERM). */
	while (active > (size_t)n) {
		struct lsw_rep *last = NULL;

		for (size_t i = 0; i < c->n_rep; i++)
			if (rep_active(c->rep[i]) && (!last || c->rep[i]->index > last->index))
				last = c->rep[i];
		rep_terminate(sw, c, last, 0);
		active--;
	}
	while (active < (size_t)n && c->n_rep < sizeof(c->rep) / sizeof(c->rep[0])) {
		struct lsw_rep *r = calloc(1, sizeof(*r));

		if (!r) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			break;
		}
		r->col = c;
		r->index = c->next_index++;
		snprintf(r->name, sizeof(r->name), "chat-%s-%d", sha, r->index);
		r->readyz.data = r->metrics.data = r;
		r->count = -1;
		c->rep[c->n_rep++] = r;
		/* Recorded before it runs: a crash of the switch never leaves it untracked. */
		r->state = LSW_REP_SPAWNED;
		rc = lsw_save(sw);
		if (rc < 0) {
			snprintf(err, errlen, "cannot save %s: %s", sw->json_path, strerror(-rc));
			rep_free(c, r);
			break;
		}
		rc = rep_spawn(sw, r, err, errlen);
		if (rc < 0) {
			rep_free(c, r);
			break;
		}
		rc = lsw_save(sw);
		if (rc < 0) {
			/* Not on disk: stop it rather than leave it untracked. */
			snprintf(err, errlen, "cannot save %s: %s", sw->json_path, strerror(-rc));
			rep_signal(r, SIGTERM);
			rep_free(c, r);
			break;
		}
		active++;
	}
	sup_changed(sw, NULL, 0);
	return rc;
}

int lsw_sup_remove(struct lsw *sw, const char *sha, int force, char *err, size_t errlen)
{
	struct lsw_colour *c = lsw_colour_find(sw, sha);

	if (!c)
		return 0;
	if (!force && !sw->static_sel && strcmp(sw->selected, sha) == 0) {
		snprintf(err, errlen, "colour %s is selected; select another first", sha);
		return -EBUSY;
	}
	c->removing = 1;
	c->wanted = 0;
	for (size_t i = c->n_rep; i-- > 0;) {
		struct lsw_rep *r = c->rep[i];

		if (r->state == LSW_REP_TERMINATING) {
			r->term_twice = 1;
			r->backoff_until = lsw_now_ms();
			continue;
		}
		rep_terminate(sw, c, r, 1);
	}
	if (c->n_rep == 0)
		colour_free(sw, c);
	return sup_changed(sw, err, errlen);
}

int lsw_sup_remove_replica(struct lsw *sw, const char *sha, const char *name, char *err,
			   size_t errlen)
{
	struct lsw_colour *c = lsw_colour_find(sw, sha);

	for (size_t i = 0; c && i < c->n_rep; i++) {
		struct lsw_rep *r = c->rep[i];

		if (strcmp(r->name, name) != 0)
			continue;
		if (r->state != LSW_REP_TERMINATING) {
			if (rep_active(r) && c->wanted > 0)
				c->wanted--;
			rep_terminate(sw, c, r, 0);
		}
		return sup_changed(sw, err, errlen);
	}
	snprintf(err, errlen, "colour %s has no replica %s", sha, name);
	return -ENOENT;
}

void lsw_sup_down(struct lsw *sw)
{
	struct lsw_colour *c, *cn;
	char err[256];

	for (c = sw->colours; c; c = cn) {
		cn = c->next;
		lsw_sup_remove(sw, c->sha, 1, err, sizeof(err));
	}
}

int lsw_sup_running(struct lsw *sw)
{
	struct lsw_colour *c;
	int n = 0;

	for (c = sw->colours; c; c = c->next)
		for (size_t i = 0; i < c->n_rep; i++)
			n += c->rep[i]->pid > 0;
	return n;
}

/* ---- state ------------------------------------------------------------------------- */

static json_t *rep_json(const struct lsw_rep *r, int for_status)
{
	json_t *o =
		json_pack("{s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:i,s:I,s:b,s:I,s:s}", "name", r->name,
			  "index", r->index, "pid", r->pid, "state", state_name(r->state), "listen",
			  r->listen, "http", r->http, "cluster", r->cluster, "restarts",
			  r->restarts, "lost", (json_int_t)r->lost, "was_ready", r->was_ready,
			  "started", (json_int_t)r->started_unix, "fault", r->fault);

	if (for_status && o) {
		json_object_set_new(o, "ready", json_boolean(r->state == LSW_REP_READY));
		json_object_set_new(o, "count", json_integer(r->count));
	}
	return o;
}

static json_t *spec_json(const struct lsw_spec *s)
{
	return json_pack("{s:s,s:b,s:b,s:b,s:b,s:s}", "chatd", s->chatd, "auth_any", s->auth_any,
			 "cluster", s->cluster, "cluster_secret", s->cluster_secret, "control",
			 s->control, "args", s->args);
}

int lsw_spec_parse(json_t *o, struct lsw_spec *s)
{
	const char *chatd = json_string_value(json_object_get(o, "chatd"));
	const char *args = json_string_value(json_object_get(o, "args"));

	memset(s, 0, sizeof(*s));
	if (!chatd || !*chatd || strlen(chatd) >= sizeof(s->chatd) ||
	    (args && strlen(args) >= sizeof(s->args)))
		return -EINVAL;
	snprintf(s->chatd, sizeof(s->chatd), "%s", chatd);
	snprintf(s->args, sizeof(s->args), "%s", args ? args : "");
	s->auth_any = json_is_true(json_object_get(o, "auth_any"));
	s->cluster = json_is_true(json_object_get(o, "cluster"));
	s->cluster_secret = json_is_true(json_object_get(o, "cluster_secret"));
	s->control = json_is_true(json_object_get(o, "control"));
	return 0;
}

json_t *lsw_sup_json(struct lsw *sw, int for_status)
{
	json_t *arr = json_array();
	struct lsw_colour *c;

	for (c = sw->colours; c; c = c->next) {
		json_t *reps = json_array();
		json_t *o = json_pack("{s:s,s:i,s:b,s:b,s:i}", "sha", c->sha, "wanted", c->wanted,
				      "removing", c->removing, "ever_selected", c->ever_selected,
				      "next_index", c->next_index);

		for (size_t i = 0; i < c->n_rep; i++)
			json_array_append_new(reps, rep_json(c->rep[i], for_status));
		json_object_set_new(o, "replicas", reps);
		if (!for_status)
			json_object_set_new(o, "spec", spec_json(&c->spec));
		json_array_append_new(arr, o);
	}
	return arr;
}

/* Takes up the colours of a saved state: running replicas are adopted. */
void lsw_sup_resume(struct lsw *sw, json_t *colours)
{
	size_t i, k;
	json_t *co, *ro;

	json_array_foreach (colours, i, co) {
		const char *sha = json_string_value(json_object_get(co, "sha"));
		struct lsw_colour *c;

		if (!sha || strlen(sha) >= sizeof(c->sha) || lsw_colour_find(sw, sha))
			continue;
		c = colour_new(sw, sha);
		if (!c)
			return;
		c->wanted = (int)json_integer_value(json_object_get(co, "wanted"));
		c->removing = json_is_true(json_object_get(co, "removing"));
		c->ever_selected = json_is_true(json_object_get(co, "ever_selected"));
		c->next_index = (int)json_integer_value(json_object_get(co, "next_index"));
		lsw_spec_parse(json_object_get(co, "spec"), &c->spec);
		json_array_foreach (json_object_get(co, "replicas"), k, ro) {
			struct lsw_rep *r;
			const char *name = json_string_value(json_object_get(ro, "name"));
			enum lsw_rep_state st = LSW_REP_STARTING;

			if (!name || strlen(name) >= sizeof(r->name) ||
			    c->n_rep >= sizeof(c->rep) / sizeof(c->rep[0]))
				continue;
			r = calloc(1, sizeof(*r));
			if (!r)
				return;
			r->col = c;
			snprintf(r->name, sizeof(r->name), "%s", name);
			r->index = (int)json_integer_value(json_object_get(ro, "index"));
			r->pid = (int)json_integer_value(json_object_get(ro, "pid"));
			r->restarts = (int)json_integer_value(json_object_get(ro, "restarts"));
			r->lost = (long)json_integer_value(json_object_get(ro, "lost"));
			r->was_ready = json_is_true(json_object_get(ro, "was_ready"));
			r->started_unix = json_integer_value(json_object_get(ro, "started"));
			r->count = -1;
			r->readyz.data = r->metrics.data = r;
			snprintf(r->fault, sizeof(r->fault), "%s",
				 json_string_value(json_object_get(ro, "fault")) ?: "");
			snprintf(r->listen, sizeof(r->listen), "%s",
				 json_string_value(json_object_get(ro, "listen")) ?: "");
			snprintf(r->http, sizeof(r->http), "%s",
				 json_string_value(json_object_get(ro, "http")) ?: "");
			snprintf(r->cluster, sizeof(r->cluster), "%s",
				 json_string_value(json_object_get(ro, "cluster")) ?: "");
			state_parse(json_string_value(json_object_get(ro, "state")), &st);
			r->state = st;
			r->started_ms = lsw_now_ms();
			c->rep[c->n_rep++] = r;
			if (st == LSW_REP_FAILED || st == LSW_REP_CRASHED) {
				r->pid = 0;
				continue;
			}
			if (st == LSW_REP_BACKOFF) {
				r->pid = 0;
				r->backoff_until = lsw_now_ms();
				continue;
			}
			if (r->pid <= 0 || !lswitch_pid_runs(r->pid, r->name) ||
			    rep_adopt(sw, r) != 0) {
				/* Ended while no switch ran: what it held is unknown. */
				r->count = -1;
				if (st != LSW_REP_TERMINATING)
					r->state =
						r->listen[0] ? LSW_REP_STARTING : LSW_REP_SPAWNED;
				rep_exited(sw, r, "exited while no switch was running");
				continue;
			}
			if (st == LSW_REP_TERMINATING)
				continue;
			r->state = LSW_REP_SPAWNED; /* re-read its ports, then probed */
			r->listen[0] = '\0';
			log_info("replica-adopted", "name=%s pid=%d", r->name, r->pid);
		}
		if (c->removing && c->n_rep == 0)
			colour_free(sw, c);
	}
	peers_update(sw);
}

int lsw_sup_init(struct lsw *sw)
{
	char dir[2200];

	snprintf(dir, sizeof(dir), "%s/run", sw->state_dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	sw->probe = lsw_probe_new(sw->loop);
	return sw->probe ? 0 : -ENOMEM;
}

void lsw_sup_free(struct lsw *sw)
{
	struct lsw_colour *c;

	while ((c = sw->colours)) {
		while (c->n_rep)
			rep_free(c, c->rep[c->n_rep - 1]);
		colour_free(sw, c);
	}
	lsw_probe_free(sw->probe);
	sw->probe = NULL;
}
