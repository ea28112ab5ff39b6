#include "workers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "log.h"

#define WORKERS_LINE_MAX (256 * 1024)

struct worker {
	pid_t pid;
	int fd;	    /* status pipe, -1 at EOF */
	char *line; /* partial status line */
	size_t len;
	json_t *status;	   /* last complete status */
	char report[4200]; /* report path */
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
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void workers_child(struct load_opts *o, unsigned i, int fd, const char *report)
{
	struct stats *st = stats_new();
	unsigned per = o->clients / o->workers, extra = o->clients % o->workers;
	int rc = 3;

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	o->worker_index = (int)i;
	o->worker_first = i * per + (i < extra ? i : extra);
	o->worker_clients = per + (i < extra ? 1 : 0);
	if (st && fleet_run(o, st, fd, i) == 0 && stats_write_report(st, o, report) == 0)
		rc = 0;
	stats_free(st);
	close(fd);
	_exit(rc);
}

/* Reads what a worker wrote; keeps the last complete line. */
static void workers_read(struct worker *w)
{
	char buf[65536];
	ssize_t n = read(w->fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(w->fd);
		w->fd = -1;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (w->len + 1 < WORKERS_LINE_MAX) {
				char *p = realloc(w->line, w->len + 2);
				if (!p)
					continue;
				w->line = p;
				w->line[w->len++] = buf[i];
			}
			continue;
		}
		if (w->line) {
			json_t *j;
			w->line[w->len] = '\0';
			j = json_loads(w->line, 0, NULL);
			if (j) {
				json_decref(w->status);
				w->status = j;
			}
		}
		w->len = 0;
	}
}

static void workers_progress(const struct load_opts *o, struct worker *ws, double t, bool tty,
			     bool final)
{
	struct stats *sum = stats_new();
	char line[512];

	if (!sum)
		return;
	for (unsigned i = 0; i < o->workers; i++)
		if (ws[i].status)
			stats_merge_json(sum, ws[i].status);
	stats_progress_line(sum, t, o->clients, line, sizeof(line));
	fleet_print_progress(line, tty, final);
	stats_free(sum);
}

int workers_run(const struct load_opts *o, struct stats *st)
{
	struct worker *ws = calloc(o->workers, sizeof(*ws));
	struct pollfd *pfd = calloc(o->workers, sizeof(*pfd));
	char dir[] = "/tmp/chatload-XXXXXX";
	struct sigaction sa;
	bool tty = isatty(STDERR_FILENO);
	double t0 = workers_now(), next_progress = t0 + 1, first_signal = 0;
	int forwarded = 0, rc = 0;
	unsigned open_fds = 0;

	if (!ws || !pfd || !mkdtemp(dir)) {
		fprintf(stderr, "chatload: cannot set up workers: %s\n", strerror(errno));
		free(ws);
		free(pfd);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = workers_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fflush(NULL);
	for (unsigned i = 0; i < o->workers; i++) {
		int p[2];
		ws[i].fd = -1;
		snprintf(ws[i].report, sizeof(ws[i].report), "%s/worker-%u.json", dir, i);
		if (pipe(p) < 0) {
			fprintf(stderr, "chatload: pipe: %s\n", strerror(errno));
			rc = -1;
			break;
		}
		ws[i].pid = fork();
		if (ws[i].pid == 0) {
			struct load_opts co = *o;
			close(p[0]);
			for (unsigned k = 0; k < i; k++)
				if (ws[k].fd >= 0)
					close(ws[k].fd);
			workers_child(&co, i, p[1], ws[i].report);
		}
		close(p[1]);
		if (ws[i].pid < 0) {
			fprintf(stderr, "chatload: fork: %s\n", strerror(errno));
			close(p[0]);
			rc = -1;
			break;
		}
		ws[i].fd = p[0];
		open_fds++;
	}
	if (rc < 0)
		workers_signalled = 1; /* stop the ones already started */

	while (open_fds > 0) {
		unsigned n = 0;
		double now;
		for (unsigned i = 0; i < o->workers; i++) {
			if (ws[i].fd < 0)
				continue;
			pfd[n].fd = ws[i].fd;
			pfd[n].events = POLLIN;
			n++;
		}
		if (poll(pfd, n, 200) > 0) {
			n = 0;
			for (unsigned i = 0; i < o->workers; i++) {
				if (ws[i].fd < 0)
					continue;
				if (pfd[n++].revents) {
					workers_read(&ws[i]);
					if (ws[i].fd < 0)
						open_fds--;
				}
			}
		}
		now = workers_now();
		if (workers_signalled > forwarded &&
		    (forwarded == 0 || now - first_signal >= 1.0)) {
			/* Pass it on once, and once more for an abort a second later. */
			if (forwarded == 0)
				first_signal = now;
			forwarded = workers_signalled;
			for (unsigned i = 0; i < o->workers; i++)
				if (ws[i].pid > 0)
					kill(ws[i].pid, SIGTERM);
		}
		if (!o->quiet && now >= next_progress) {
			next_progress = now + (tty ? 0.5 : o->progress_interval);
			workers_progress(o, ws, now - t0, tty, false);
		}
	}
	for (unsigned i = 0; i < o->workers; i++) {
		int status = 0;
		json_t *r;
		if (ws[i].pid <= 0)
			continue;
		while (waitpid(ws[i].pid, &status, 0) < 0 && errno == EINTR)
			;
		r = json_load_file(ws[i].report, 0, NULL);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !r ||
		    stats_merge_json(st, r) < 0) {
			fprintf(stderr, "chatload: worker %u failed (status %d)\n", i, status);
			st->workers_failed++;
			rc = -1;
		}
		json_decref(r);
		unlink(ws[i].report);
	}
	rmdir(dir);
	if (!o->quiet) {
		char line[512];
		stats_progress_line(st, st->elapsed_s, o->clients, line, sizeof(line));
		fleet_print_progress(line, tty, true);
	}
	for (unsigned i = 0; i < o->workers; i++) {
		free(ws[i].line);
		json_decref(ws[i].status);
	}
	free(ws);
	free(pfd);
	return rc;
}
