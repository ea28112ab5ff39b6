/*
 * --workers N and --pods K: one run split over worker processes, and over
 * pods (or machines). Each worker runs its own fleet on its share of the
 * client slots (and of --source-ips) so that a run passes the per-process
 * open-files limit, and its clients send messages to clients of any worker
 * of the run.
 *
 * One process is the run's accountant (account.h): the parent of the
 * workers, or with --pods the one started with --coordinator-listen. Its
 * own workers talk to it over socketpairs, the workers of the other pods
 * (started with --coordinator) over TCP. It starts every worker at once
 * ("G"), settles every message from their records, hands out message
 * targets in other processes, prints the combined progress, tells the
 * workers when nothing is pending any more ("Q"), passes SIGINT/SIGTERM on
 * ("K"), and merges their reports (the "F" line each sends at its end) and
 * its own message numbers into the run's one report. A worker whose
 * channel ends without a report failed: what it had done until its last
 * status line is in the report, its open connections count dropped
 * ("worker-failed"), its client slots in workers_failed_clients, and ok is
 * false.
 */
#ifndef CHATLOAD_WORKERS_H
#define CHATLOAD_WORKERS_H

#include "opts.h"
#include "stats.h"

/* How long the coordinator waits for the other pods' workers to connect
 * (and they for it), in seconds. */
#define WORKERS_REMOTE_WAIT_S 300
/* A worker of another pod silent this long (seconds) has failed. */
#define WORKERS_SILENCE_S 60

/*
 * Runs the workers of this process. The accountant fills st with the run's
 * merged numbers; a --coordinator pod only waits for its workers (st stays
 * empty). 0 when every worker reported, a negative errno otherwise (message
 * printed).
 */
int workers_run(const struct load_opts *o, struct stats *st);

#endif
