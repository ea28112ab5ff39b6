/*
 * Connection lifetimes, the data a drain forecast needs: a histogram of how
 * long ended client connections lasted, and how old the open ones are now,
 * both over the same log-spaced bounds (CONNLIFE_BOUNDS, one second to
 * eleven days, ten per decade).
 *
 * Cost: connlife_open() and connlife_close() are O(bounds) with no
 * allocation; connlife_ages() is O(bounds) plus the connections that
 * crossed a bound since the previous call (each connection crosses each
 * bound at most once in its life). Nothing runs per connection on a timer.
 *
 * How the ages stay exact without visiting every connection: open
 * connections are kept in a list ordered by start time (oldest first; a
 * new one is the newest, as the clock never goes back). For each bound b
 * a cursor marks the oldest connection whose age is <= b; everything newer
 * than the cursor is young too, so the count of young ones is kept beside
 * the cursor and only changes when a connection opens, closes or ages past
 * b (then the cursor moves one step towards the newest).
 *
 * Times are milliseconds on any monotonic clock (chatd: uv_now()).
 */
#ifndef CHATD_CONNLIFE_H
#define CHATD_CONNLIFE_H

#include <stddef.h>
#include <stdint.h>

/* Finite bucket bounds; one more bucket (+Inf) holds the rest. */
#define CONNLIFE_BOUNDS 61

/* The upper bound of bucket i in milliseconds (i < CONNLIFE_BOUNDS). */
uint64_t connlife_bound_ms(size_t i);

/* Embedded in each open connection; owned by struct connlife while linked. */
struct connlife_node {
	struct connlife_node *older, *newer;
	uint64_t start_ms; /* when connlife_open() ran */
};

struct connlife {
	/* Ended connections: count per bucket (not cumulative), [CONNLIFE_BOUNDS] is +Inf. */
	uint64_t ended[CONNLIFE_BOUNDS + 1];
	uint64_t ended_total;
	uint64_t ended_ms_sum; /* sum of their lifetimes */
	/* Open connections, oldest first. */
	struct connlife_node *oldest, *newest;
	uint64_t open;
	/* Per bound: the oldest open connection with age <= bound (as of the
	 * last connlife_ages() or later opens), NULL when none, and how many
	 * are as young as it or younger. */
	struct connlife_node *cursor[CONNLIFE_BOUNDS];
	uint64_t young[CONNLIFE_BOUNDS];
};
/* A zeroed struct connlife is empty (struct srv's metrics are zeroed). */

/* A connection starts at now_ms (not earlier than the last call's now_ms). */
void connlife_open(struct connlife *l, struct connlife_node *n, uint64_t now_ms);

/* The connection ends: its lifetime goes into the histogram; n is unlinked. */
void connlife_close(struct connlife *l, struct connlife_node *n, uint64_t now_ms);

/*
 * Cumulative ages at now_ms: out[i] = open connections with age <= bound i;
 * out[CONNLIFE_BOUNDS] = every open connection.
 */
void connlife_ages(struct connlife *l, uint64_t now_ms, uint64_t out[CONNLIFE_BOUNDS + 1]);

/*
 * Writes chatd_connection_duration_seconds (histogram) and
 * chatd_connection_age_seconds_bucket (gauges) in the Prometheus text format;
 * the length, or -ENOSPC when it does not fit in cap.
 */
long connlife_format(struct connlife *l, uint64_t now_ms, char *buf, size_t cap);

#endif
