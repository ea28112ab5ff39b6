/*
 * The fleet: all clients of one process on one libuv loop. One timer ticks
 * every FLEET_TICK_MS and does all timed work by scanning the slots (no
 * per-client timers): ramped (re)connects, lifetimes, messages, pings,
 * deadlines, the timeline sample and the progress output once a second.
 *
 * End of a run (--duration, or SIGINT/SIGTERM): stop connecting and
 * sending, wait up to --loss-timeout for messages in flight, log every
 * client out and wait up to --close-timeout for the server's stream close.
 * A second signal (a second later or more) skips the waiting.
 */
#ifndef CHATLOAD_FLEET_H
#define CHATLOAD_FLEET_H

#include "opts.h"
#include "stats.h"
#include "wire.h"

#define FLEET_TICK_MS 100

/*
 * Runs the clients of this process (slots o->worker_first ..
 * + o->worker_clients) until the end of the run, filling st. worker numbers
 * message ids ("w<worker>-<n>"). link != NULL: a worker of a split run,
 * which waits for the accountant's start, reports records and status there
 * instead of keeping message books and printing progress (account.h). 0,
 * or a negative errno when the run could not start (message printed).
 */
int fleet_run(const struct load_opts *o, struct stats *st, struct wire *link, unsigned worker);

/* The longest a worker waits past --loss-timeout, after its own end, for the
 * accountant to settle the last messages. */
#define FLEET_LINK_GRACE_MS 5000

/* Prints a live progress line: \r-updated on a terminal, else a plain line. */
void fleet_print_progress(const char *line, bool tty, bool final);

#endif
