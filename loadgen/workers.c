/*
 * --workers and --pods: forking workers, the coordinator's listener, and
 * the accountant's loop over every worker's wire.
 */
#include "workers.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "addr.h"
#include "fleet.h"
#include "log.h"

/* Longest record line: a final report with its timeline (hours of rows). */
#define WORKERS_LINE_MAX (64u << 20)
/* A new target sample for every worker this often. */
#define WORKERS_SAMPLE_S 0.25
/* A sample is skipped while a worker has this much unread from us. */
#define WORKERS_OUT_MAX (256u << 10)

struct worker {
	pid_t pid;	/* forked here; 0 for a worker of another pod */
	struct wire w;	/* fd -1: not connected yet, or closed */
	bool hello;	/* said "H" */
	bool closed;	/* its channel ended */
	bool failed;	/* counted in workers_failed */
	json_t *status; /* last "P" */
	json_t *final;	/* its report ("F") */
	double last_rx; /* last input (monotonic s) */
};

/* A connection from another pod that has not said which worker it is. */
struct workers_conn {
	struct wire w;
	double since;
	int gw; /* -1 until "H" */
	bool bad;
};

struct workers {
	const struct load_opts *o;
	struct account *acct;
	struct worker *ws;
	unsigned n;		      /* workers of the whole run */
	unsigned local_first, nlocal; /* the ones forked here */
	unsigned nclosed;
	int lfd; /* --coordinator-listen socket, or -1 */
	struct workers_conn *conns;
	unsigned nconns;
	bool started, settled_sent;
	uint64_t t0_wall;
	double t0, start_deadline;
	bool tty;
	int rc;
	unsigned cur; /* the worker whose lines are being read */
};

static volatile sig_atomic_t workers_signalled;

static void workers_on_signal(int sig)
{
	(void)sig;
	workers_signalled++;
}

static double workers_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ worker side */

/* The worker process: its share of the slots, records over fd, its report
 * as the last line ("F"). Never returns. */
static void workers_child(struct load_opts *o, unsigned gw, int fd)
{
	struct stats *st = stats_new();
	struct wire w;
	int rc = 3;

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	o->worker_index = (int)gw;
	opts_share(o, gw, &o->worker_first, &o->worker_clients);
	wire_init(&w, fd, 4096);
	wire_printf(&w, "H %u\n", gw);
	if (st && wire_flush(&w, true) == 0 && fleet_run(o, st, &w, gw) == 0 && !w.failed) {
		json_t *r = stats_report_json(st, NULL);
		char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
		if (text) {
			wire_put(&w, "F ", 2);
			wire_put(&w, text, strlen(text));
			wire_put(&w, "\n", 1);
			if (wire_flush(&w, true) == 0)
				rc = 0;
		}
		free(text);
		json_decref(r);
	}
	stats_free(st);
	wire_close(&w);
	_exit(rc);
}

/* Connects to --coordinator, retrying while the coordinator pod is not up
 * yet (its name may not even resolve). The fd, or -1 after the wait. */
static int workers_connect(const char *hostport, unsigned gw)
{
	double until = workers_now() + WORKERS_REMOTE_WAIT_S;
	bool told = false;
	struct addr a;
	char port[8];

	/* Resolved at every try: the name may not exist before its pod. */
	if (addr_parse(hostport, ADDR_NAME, 0, &a) < 0)
		return -1;
	snprintf(port, sizeof(port), "%d", a.port);
	while (workers_now() < until) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
		int e = getaddrinfo(a.host, port, &hints, &res);
		for (ai = e == 0 ? res : NULL; ai; ai = ai->ai_next) {
			int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
			if (fd < 0)
				continue;
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				freeaddrinfo(res);
				return fd;
			}
			close(fd);
		}
		if (res)
			freeaddrinfo(res);
		if (!told) {
			log_warn("coordinator_wait", "worker=%u coordinator=%s error=%s", gw,
				 hostport, e ? gai_strerror(e) : strerror(errno));
			told = true;
		}
		sleep(1);
	}
	fprintf(stderr, "chatload: worker %u: cannot reach the coordinator %s in %d s\n", gw,
		hostport, WORKERS_REMOTE_WAIT_S);
	return -1;
}

/* A pod that reports to --coordinator: forks its workers, each connects to
 * the coordinator; this process only waits for them. */
static int workers_pod(const struct load_opts *o)
{
	unsigned first = o->pod_index * o->workers;
	pid_t *pids = calloc(o->workers, sizeof(*pids));
	int rc = 0;

	if (!pids)
		return -ENOMEM;
	fflush(NULL);
	for (unsigned i = 0; i < o->workers; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct load_opts co = *o;
			int fd = workers_connect(o->coordinator, first + i);
			if (fd < 0)
				_exit(3);
			workers_child(&co, first + i, fd);
		}
		if (pids[i] < 0) {
			fprintf(stderr, "chatload: fork: %s\n", strerror(errno));
			rc = -1;
			break;
		}
	}
	for (unsigned i = 0; i < o->workers; i++) {
		int status = 0;
		if (pids[i] <= 0)
			continue;
		while (waitpid(pids[i], &status, 0) < 0) {
			if (errno != EINTR)
				break;
			if (workers_signalled) {
				/* Passed on: the coordinator stops them too. */
				for (unsigned k = 0; k < o->workers; k++)
					if (pids[k] > 0)
						kill(pids[k], SIGTERM);
				workers_signalled = 0;
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "chatload: worker %u failed (status %d)\n", first + i,
				status);
			rc = -1;
		}
	}
	free(pids);
	return rc;
}

/* --------------------------------------------------------- accountant side */

/* Connections that ended, each in its one fate (migrated is one). */
static uint64_t workers_ended(const struct stats *st)
{
	return st->closed_by_client + st->closed_by_server + st->dropped + st->connect_failures +
	       st->login_failures + st->ping_timeouts + st->migrated;
}

/* What a failed worker had done until its last status goes into the
 * report; the connections it had open count dropped ("worker-failed"). */
static void workers_fail_status(struct stats *st, json_t *status)
{
	uint64_t ended = workers_ended(st), before = st->connections, conns;
	const char *k;
	json_t *v;

	json_object_set_new(status, "connected_end", json_integer(0));
	json_object_foreach (json_object_get(status, "per_version"), k, v)
		json_object_set_new(v, "connected_end", json_integer(0));
	if (stats_merge_json(st, status) != 0)
		return;
	conns = st->connections - before;
	ended = workers_ended(st) - ended;
	if (conns > ended) {
		st->dropped += conns - ended;
		stats_names_add(&st->drop_reasons, "worker-failed", conns - ended);
	}
}

static void workers_fail(struct workers *W, unsigned gw, struct stats *st, const char *why)
{
	struct worker *w = &W->ws[gw];
	unsigned first, count;

	if (w->failed)
		return;
	w->failed = true;
	opts_share(W->o, gw, &first, &count);
	fprintf(stderr, "chatload: worker %u failed (%s): its %u clients are counted failed\n", gw,
		why, count);
	st->workers_failed++;
	st->workers_failed_clients += count;
	W->rc = -1;
	if (w->status)
		workers_fail_status(st, w->status);
}

static void workers_close(struct workers *W, unsigned gw)
{
	struct worker *w = &W->ws[gw];

	if (w->closed)
		return;
	w->closed = true;
	W->nclosed++;
	if (w->w.fd >= 0 || !w->w.failed)
		wire_close(&w->w);
	account_worker_gone(W->acct, gw);
}

static void workers_line(void *ud, char *line)
{
	struct workers *W = ud;
	struct worker *w = &W->ws[W->cur];
	json_t *j;

	if (w->closed || w->final)
		return;
	switch (line[0]) {
	case 'P':
		j = json_loads(line + 1, 0, NULL);
		if (j) {
			json_decref(w->status);
			w->status = j;
		}
		return;
	case 'F':
		w->final = json_loads(line + 1, 0, NULL);
		if (!w->final)
			w->w.failed = true;
		return;
	case 'H':
		return;
	default:
		if (account_record(W->acct, W->cur, line) < 0) {
			log_warn("bad_record", "worker=%u record=%.60s", W->cur, line);
			w->w.failed = true;
		}
	}
}

static void workers_read(struct workers *W, unsigned gw)
{
	struct worker *w = &W->ws[gw];
	int r;

	W->cur = gw;
	w->last_rx = workers_now();
	r = wire_read(&w->w, workers_line, W);
	if (r <= 0 || (w->w.failed && !w->final))
		workers_close(W, gw);
}

/* A pod's worker says who it is: "H gw". */
static void workers_conn_line(void *ud, char *line)
{
	struct workers_conn *c = ud;
	char *end;
	unsigned long gw;

	if (c->gw >= 0 || c->bad)
		return;
	gw = line[0] == 'H' && line[1] == ' ' ? strtoul(line + 2, &end, 10) : 0;
	if (line[0] != 'H' || line[1] != ' ' || *end || gw > 1u << 20)
		c->bad = true;
	else
		c->gw = (int)gw;
}

static void workers_conn_read(struct workers *W, unsigned i)
{
	struct workers_conn *c = &W->conns[i];
	int r = wire_read(&c->w, workers_conn_line, c);
	const char *why = NULL;

	if (c->gw >= 0) {
		unsigned gw = (unsigned)c->gw;
		if (W->started)
			why = "the run has started";
		else if (gw >= W->n || (gw >= W->local_first && gw < W->local_first + W->nlocal))
			why = "no such worker of another pod";
		else if (W->ws[gw].hello)
			why = "that worker is connected already";
		if (!why) {
			struct worker *w = &W->ws[gw];
			w->w = c->w;
			w->w.max_line = WORKERS_LINE_MAX;
			w->hello = true;
			w->last_rx = workers_now();
			c->w.fd = -1;
			c->bad = true; /* taken: drop the entry */
			log_info("worker_connected", "worker=%u", gw);
			return;
		}
	}
	if (c->bad || r <= 0 || why) {
		if (why) {
			wire_printf(&c->w, "X %s\n", why);
			wire_flush(&c->w, false);
		}
		c->bad = true;
	}
}

static void workers_accept(struct workers *W)
{
	int fd = accept4(W->lfd, NULL, NULL, SOCK_CLOEXEC);
	struct workers_conn *c;

	if (fd < 0)
		return;
	c = realloc(W->conns, (W->nconns + 1) * sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	W->conns = c;
	c = &W->conns[W->nconns++];
	wire_init(&c->w, fd, 256);
	c->since = workers_now();
	c->gw = -1;
	c->bad = false;
}

static void workers_drop_conns(struct workers *W, bool all)
{
	unsigned k = 0;

	for (unsigned i = 0; i < W->nconns; i++) {
		struct workers_conn *c = &W->conns[i];
		if (all || c->bad || workers_now() - c->since > 30) {
			if (c->w.fd >= 0)
				wire_close(&c->w);
			continue;
		}
		W->conns[k++] = *c;
	}
	W->nconns = k;
}

static int workers_listen(const char *addr)
{
	struct sockaddr_storage ss;
	struct addr a;
	socklen_t len;
	int fd, one = 1;

	if (addr_parse(addr, ADDR_RESOLVE, 0, &a) < 0) {
		fprintf(stderr, "chatload: --coordinator-listen %s: expected ADDR:PORT\n", addr);
		return -1;
	}
	ss = a.sa;
	len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 256) < 0) {
		fprintf(stderr, "chatload: --coordinator-listen %s: %s\n", addr, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Every worker said hello (or the wait is over): the run starts for all. */
static void workers_start(struct workers *W, struct stats *st)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	W->t0_wall = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	W->t0 = workers_now();
	W->started = true;
	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		if (w->closed)
			continue;
		if (!w->hello) {
			workers_fail(W, i, st, "never connected");
			workers_close(W, i);
			continue;
		}
		wire_printf(&w->w, "G %llu\n", (unsigned long long)W->t0_wall);
		wire_flush(&w->w, false);
	}
}

static void workers_progress(struct workers *W, double t, bool final)
{
	struct stats *sum = stats_new();
	json_t *a;
	char line[512];

	if (!sum)
		return;
	for (unsigned i = 0; i < W->n; i++)
		if (W->ws[i].status)
			stats_merge_json(sum, W->ws[i].status);
	a = stats_status_json(account_stats(W->acct));
	if (a)
		stats_merge_json(sum, a);
	json_decref(a);
	stats_progress_line(sum, t, W->o->clients, line, sizeof(line));
	fleet_print_progress(line, W->tty, final);
	stats_free(sum);
}

/* Sends "K 1" (stop) or "K 2" (abort) to every worker still running. */
static void workers_stop(struct workers *W, int how)
{
	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		if (w->closed || !w->hello)
			continue;
		wire_printf(&w->w, "K %d\n", how);
		wire_flush(&w->w, false);
	}
}

static void workers_periodic(struct workers *W, double now, double *next_sample)
{
	struct timespec ts;
	uint64_t wall;

	account_expire(W->acct);
	clock_gettime(CLOCK_REALTIME, &ts);
	wall = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	account_timeline(W->acct, W->t0_wall, wall);
	if (now >= *next_sample) {
		*next_sample = now + WORKERS_SAMPLE_S;
		for (unsigned i = 0; i < W->n; i++) {
			struct worker *w = &W->ws[i];
			if (w->closed || w->w.outlen > WORKERS_OUT_MAX)
				continue;
			account_sample(W->acct, i, &w->w);
		}
	}
	if (!W->settled_sent && account_settled(W->acct)) {
		W->settled_sent = true;
		for (unsigned i = 0; i < W->n; i++)
			if (!W->ws[i].closed)
				wire_put(&W->ws[i].w, "Q\n", 2);
	}
	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		if (w->closed)
			continue;
		if (w->w.outlen)
			wire_flush(&w->w, false);
		/* A worker of another pod that fell silent (its node died). */
		if (!w->pid && now - w->last_rx > WORKERS_SILENCE_S)
			workers_close(W, i);
	}
}

static int workers_fork_local(struct workers *W)
{
	for (unsigned k = 0; k < W->nlocal; k++) {
		unsigned gw = W->local_first + k;
		struct worker *w = &W->ws[gw];
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
			fprintf(stderr, "chatload: socketpair: %s\n", strerror(errno));
			return -errno;
		}
		w->pid = fork();
		if (w->pid == 0) {
			struct load_opts co = *W->o;
			close(sp[0]);
			for (unsigned i = 0; i < W->n; i++)
				if (W->ws[i].w.fd >= 0)
					close(W->ws[i].w.fd);
			if (W->lfd >= 0)
				close(W->lfd);
			workers_child(&co, gw, sp[1]);
		}
		close(sp[1]);
		if (w->pid < 0) {
			int e = errno;

			fprintf(stderr, "chatload: fork: %s\n", strerror(e));
			close(sp[0]);
			w->pid = 0;
			return -e;
		}
		wire_init(&w->w, sp[0], WORKERS_LINE_MAX);
		w->hello = true; /* a socketpair of ours: no need to wait for it */
		w->last_rx = workers_now();
	}
	return 0;
}

/* One poll() over the workers' wires, the listener and the connections
 * not identified yet (at most 64 of them), and what it found: read, flushed,
 * accepted. */
static void workers_poll(struct workers *W, struct pollfd *pfd)
{
	unsigned np = 0, maxconns = W->nconns < 64 ? W->nconns : 64;

	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		if (w->closed || w->w.fd < 0)
			continue;
		pfd[np].fd = w->w.fd;
		pfd[np].events = POLLIN | (w->w.outlen ? POLLOUT : 0);
		np++;
	}
	if (W->lfd >= 0) {
		pfd[np].fd = W->lfd;
		pfd[np++].events = POLLIN;
	}
	for (unsigned i = 0; i < maxconns; i++) {
		pfd[np].fd = W->conns[i].w.fd;
		pfd[np++].events = POLLIN;
	}
	if (poll(pfd, np, 100) <= 0)
		return;
	np = 0;
	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		if (w->closed || w->w.fd < 0)
			continue;
		if (pfd[np].revents & (POLLIN | POLLHUP | POLLERR))
			workers_read(W, i);
		else if ((pfd[np].revents & POLLOUT) && !w->closed)
			wire_flush(&w->w, false);
		np++;
	}
	if (W->lfd >= 0 && (pfd[np++].revents & POLLIN))
		workers_accept(W);
	for (unsigned i = 0; i < maxconns; i++)
		if (pfd[np++].revents)
			workers_conn_read(W, i);
	workers_drop_conns(W, false);
}

/* Every worker said hello (or the wait is over, or a signal came): true
 * once the run has started. */
static bool workers_ready(struct workers *W, struct stats *st, double now)
{
	unsigned hellos = 0;

	if (W->started)
		return true;
	for (unsigned i = 0; i < W->n; i++)
		hellos += W->ws[i].hello || W->ws[i].closed;
	if (hellos < W->n && now < W->start_deadline && !workers_signalled)
		return false;
	workers_start(W, st);
	return true;
}

static void workers_loop(struct workers *W, struct stats *st)
{
	struct pollfd *pfd = calloc(W->n + 1 + 64, sizeof(*pfd));
	double next_progress = workers_now() + 1, next_sample = 0, first_signal = 0;
	int forwarded = 0;

	if (!pfd) {
		W->rc = -1;
		return;
	}
	while (W->nclosed < W->n) {
		double now;

		workers_poll(W, pfd);
		now = workers_now();
		if (!workers_ready(W, st, now))
			continue;
		if (workers_signalled > forwarded &&
		    (forwarded == 0 || now - first_signal >= 1.0)) {
			/* Pass it on once, and once more for an abort a second later. */
			if (forwarded == 0)
				first_signal = now;
			workers_stop(W, forwarded == 0 ? 1 : 2);
			forwarded = workers_signalled;
		}
		workers_periodic(W, now, &next_sample);
		if (!W->o->quiet && now >= next_progress) {
			next_progress = now + (W->tty ? 0.5 : W->o->progress_interval);
			workers_progress(W, now - W->t0, false);
		}
	}
	free(pfd);
}

/* W for a run of o's workers; 0 or -ENOMEM. */
static int workers_init(struct workers *W, const struct load_opts *o)
{
	memset(W, 0, sizeof(*W));
	W->o = o;
	W->n = opts_total_workers(o);
	W->nlocal = o->workers;
	W->local_first = o->pod_index * o->workers;
	W->lfd = -1;
	W->tty = isatty(STDERR_FILENO);
	W->start_deadline = workers_now() + WORKERS_REMOTE_WAIT_S;
	W->acct = account_new(o);
	W->ws = calloc(W->n, sizeof(*W->ws));
	if (!W->acct || !W->ws) {
		account_free(W->acct);
		free(W->ws);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < W->n; i++)
		W->ws[i].w.fd = -1;
	return 0;
}

/* The coordinator's listener and the workers forked here; when either
 * fails, the ones started are stopped and nobody else is waited for. */
static void workers_launch(struct workers *W)
{
	if (W->o->coordinator_listen && (W->lfd = workers_listen(W->o->coordinator_listen)) < 0)
		W->rc = -1;
	fflush(NULL);
	if (W->rc == 0 && workers_fork_local(W) < 0)
		W->rc = -1;
	if (W->rc == 0)
		return;
	workers_signalled = 2;
	for (unsigned i = 0; i < W->n; i++)
		if (!W->ws[i].hello) {
			W->ws[i].closed = true;
			W->nclosed++;
		}
}

/* Waits for the workers forked here and merges every worker's report; a
 * worker without one (or that failed) is counted failed. */
static void workers_reap(struct workers *W, struct stats *st)
{
	for (unsigned i = 0; i < W->n; i++) {
		struct worker *w = &W->ws[i];
		char why[64];
		int status = 0;

		if (w->pid > 0)
			while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
				;
		if (w->failed)
			continue;
		if (w->final && (w->pid <= 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) &&
		    stats_merge_json(st, w->final) >= 0)
			continue;
		if (w->pid > 0 && WIFSIGNALED(status))
			snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
		else
			snprintf(why, sizeof(why), "%s",
				 w->hello ? "no report" : "never connected");
		workers_fail(W, i, st, why);
	}
}

/* The accountant's own figures (messages, timeline) into st, and the last
 * progress line. */
static void workers_finish(struct workers *W, struct stats *st)
{
	json_t *acct_report;
	char line[512];

	account_finish(W->acct);
	acct_report = stats_report_json(account_stats(W->acct), NULL);
	if (!acct_report || stats_merge_json(st, acct_report) < 0)
		W->rc = -1;
	json_decref(acct_report);
	if (!W->o->quiet) {
		stats_progress_line(st, st->elapsed_s, W->o->clients, line, sizeof(line));
		fleet_print_progress(line, W->tty, true);
	}
}

/* No more workers of other pods: the listener and the connections that
 * never said who they are go. */
static void workers_unlisten(struct workers *W)
{
	if (W->lfd >= 0)
		close(W->lfd);
	W->lfd = -1;
	workers_drop_conns(W, true);
	free(W->conns);
	W->conns = NULL;
}

static void workers_free(struct workers *W)
{
	for (unsigned i = 0; i < W->n; i++) {
		json_decref(W->ws[i].status);
		json_decref(W->ws[i].final);
		if (W->ws[i].w.fd >= 0)
			wire_close(&W->ws[i].w);
	}
	free(W->ws);
	account_free(W->acct);
}

int workers_run(const struct load_opts *o, struct stats *st)
{
	struct workers W;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = workers_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (o->coordinator)
		return workers_pod(o);
	if (workers_init(&W, o) < 0) {
		fprintf(stderr, "chatload: cannot set up workers: out of memory\n");
		return -ECHILD;
	}
	workers_launch(&W);
	workers_loop(&W, st);
	workers_unlisten(&W);
	workers_reap(&W, st);
	workers_finish(&W, st);
	workers_free(&W);
	return W.rc;
}
