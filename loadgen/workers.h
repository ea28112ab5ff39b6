/*
 * --workers N: N forked processes, each running its own fleet with a slice
 * of the client slots (and of --source-ips), so that one run can pass the
 * per-process open-files limit. Each worker sends a JSON status line per
 * second over a pipe (the parent prints the combined progress line) and
 * writes its report to a private temporary directory; the parent merges
 * the reports into st. SIGINT/SIGTERM to the parent is passed on.
 */
#ifndef RAINBOW_LOADGEN_WORKERS_H
#define RAINBOW_LOADGEN_WORKERS_H

#include "opts.h"
#include "stats.h"

/* 0 when every worker reported, -1 otherwise (message printed). */
int workers_run(const struct load_opts *o, struct stats *st);

#endif
