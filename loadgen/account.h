/*
 * The accountant of a run split over worker processes (--workers) and pods
 * (--pods): the one place that settles the fate of every message, whichever
 * process sent or received it.
 *
 * Workers do not keep message books themselves. Each reports records over
 * its wire (wire.h), in the order it made them:
 *   V vidx label          a server version label, index vidx of the worker
 *   E client vidx jid     client (global slot number) established on vidx
 *   X client              ... is no longer established
 *   S seq to vidx t       message seq (ids "w<worker>-<seq>", seq 1, 2, ...)
 *                         sent at t to client `to` by a client on vidx;
 *                         written before the message goes out
 *   R w seq by t          message seq of worker w arrived at client by at t
 *   B seq                 an error bounce of the worker's own message seq
 *   T t                   every record up to time t is written (watermark)
 *   D                     the worker stopped sending (end of the run)
 * Times are wall-clock microseconds (CLOCK_REALTIME): one clock for the
 * processes of a machine; pods on different nodes are as far apart as
 * their clocks are. A message is delivered when its first arrival at its
 * addressee is within the loss timeout of its send (latency = arrival -
 * send), lost when none is, and counted lost once the slowest worker's
 * watermark has passed send + loss timeout: by then every arrival in time
 * has been reported, so the verdict is exact, however late records travel.
 *
 * Memory: per sender the records of the messages of the last loss timeout
 * (msgtrack.h: the messages in flight), 2 bits per message ever sent (to
 * tell a late duplicate from a late first arrival), arrivals reported
 * before their send record (a few: records of different workers travel
 * separately), and one entry per client slot (the established ones with
 * their bound JID, to hand out message targets).
 */
#ifndef CHATLOAD_ACCOUNT_H
#define CHATLOAD_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "opts.h"
#include "stats.h"
#include "wire.h"

struct account;

/* The books of a run of opts_total_workers(o) workers; NULL without memory. */
struct account *account_new(const struct load_opts *o);
void account_free(struct account *a);

/* The message numbers (counters, latency, pairs, cross-worker, and the
 * message columns of the timeline): merged into the run's report. */
struct stats *account_stats(struct account *a);

/* One record line from worker gw (modified in place). 0, or -EINVAL when it is
 * malformed or breaks the protocol (the worker is then treated as failed). */
int account_record(struct account *a, unsigned gw, char *line);

/* Worker gw is gone (finished or failed): its clients are no longer
 * established, and the watermark no longer waits for it. */
void account_worker_gone(struct account *a, unsigned gw);

/* Counts as lost what every worker's watermark says was not delivered in
 * time; call often. */
void account_expire(struct account *a);

/* Samples the message columns of the timeline up to wall time now_us (the
 * run started at t0_us). */
void account_timeline(struct account *a, uint64_t t0_us, uint64_t now_us);

/* The end: what is still pending is lost; arrivals never matched by a send
 * are foreign. */
void account_finish(struct account *a);

/* Every worker has stopped sending (or is gone) and no message is pending:
 * the workers may log out. */
bool account_settled(const struct account *a);

/*
 * Writes a target sample for worker gw to w:
 *   A count n             count clients of other workers are established;
 *                         n lines follow
 *   a client jid          one of them, at random
 */
void account_sample(struct account *a, unsigned gw, struct wire *w);

#endif
