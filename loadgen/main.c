/*
 * chatload: keeps XMPP clients connected and talking, and accounts for the
 * fate of every connection and every message (docs/chatload.md).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "fleet.h"
#include "log.h"
#include "merge.h"
#include "opts.h"
#include "stats.h"
#include "workers.h"

/* The reason most connect failures had, for the one-line diagnosis. */
static const char *main_top_reason(const struct stats_names *n)
{
	const char *best = "unknown";
	uint64_t most = 0;

	for (unsigned i = 0; i < n->n; i++) {
		if (n->e[i].count > most) {
			most = n->e[i].count;
			best = n->e[i].name;
		}
	}
	return best;
}

/* Each client holds a socket: raise the soft open-files limit to the hard
 * one and say so when one process would still run out. */
static void main_check_files(const struct load_opts *o)
{
	struct rlimit rl;
	unsigned n = opts_total_workers(o);
	unsigned per = (o->clients + n - 1) / n;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && per + 64 > rl.rlim_cur) {
		/* 64 descriptors kept for the loop, logs and the report. */
		rlim_t usable = rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 1;
		fprintf(stderr,
			"chatload: warning: %u clients per process but the open-files "
			"limit is %llu; use --workers %llu or more\n",
			per, (unsigned long long)rl.rlim_cur,
			(unsigned long long)(o->clients / usable + 1) / (o->pods ? o->pods : 1));
	}
}

int main(int argc, char **argv)
{
	struct load_opts o;
	struct stats *st;
	enum log_level lvl = LOG_WARN;
	int r, rc = 0;

	if (argc > 1 && strcmp(argv[1], "merge") == 0)
		return merge_main(argc - 1, argv + 1);
	r = opts_parse(&o, argc, argv, stderr);
	if (r == 1)
		return 0;
	if (r != 0)
		return 2;
	log_level_parse(o.log_level, &lvl);
	log_init("chatload", lvl);
	if (o.seed == 0) {
		struct timeval tv;
		gettimeofday(&tv, NULL);
		o.seed = (unsigned)(tv.tv_sec ^ tv.tv_usec ^ getpid());
	}
	signal(SIGPIPE, SIG_IGN);
	main_check_files(&o);
	st = stats_new();
	if (!st) {
		fprintf(stderr, "chatload: out of memory\n");
		return 1;
	}
	if (o.coordinator) {
		/* A pod of a split run: the coordinator writes the report. */
		r = workers_run(&o, st);
		stats_free(st);
		return r < 0 ? 1 : 0;
	}
	if (o.workers > 0)
		r = workers_run(&o, st);
	else
		r = fleet_run(&o, st, NULL, 0);
	if (r < 0)
		rc = 1;
	if (st->connections > 0) {
		char verdict[512];

		/* At --duration's end and after Ctrl-C alike: the one line to read. */
		stats_verdict(st, verdict, sizeof(verdict));
		printf("%s\n", verdict);
		fflush(stdout);
	}
	if (o.report && stats_write_report(st, &o, o.report) < 0) {
		fprintf(stderr, "chatload: cannot write report %s\n", o.report);
		rc = 1;
	}
	if (o.timeline && stats_write_timeline(st, o.timeline) < 0) {
		fprintf(stderr, "chatload: cannot write timeline %s\n", o.timeline);
		rc = 1;
	}
	if (st->logins == 0 && st->connections > 0) {
		if (st->connect_failures)
			fprintf(stderr,
				"chatload: no client logged in: cannot connect to %s: %s "
				"(%llu connect failures)\n",
				o.server_names[0], main_top_reason(&st->connect_failure_reasons),
				(unsigned long long)st->connect_failures);
		else if (st->login_failures)
			fprintf(stderr,
				"chatload: no client logged in: login failed: %s (%llu "
				"login failures)\n",
				main_top_reason(&st->login_failure_reasons),
				(unsigned long long)st->login_failures);
		else
			fprintf(stderr, "chatload: no client logged in\n");
		rc = 1;
	}
	if (!stats_expectations_ok(st, &o, stderr))
		rc = 1;
	stats_free(st);
	return rc;
}
