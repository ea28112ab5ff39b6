/*
 * Bounds are the Renard R10 preferred numbers (ratio about 1.26): fine
 * enough that a lifetime spread over one bucket moves a forecast by a
 * fifth at most, coarse enough that both metrics stay a few kilobytes.
 */
#include "connlife.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "promout.h"

static const uint16_t connlife_mantissa[10] = { 100, 125, 160, 200, 250, 315, 400, 500, 630, 800 };

uint64_t connlife_bound_ms(size_t i)
{
	uint64_t scale = 10; /* 100 * 10 = 1000 ms: the first bound is one second */

	for (size_t d = i / 10; d > 0; d--)
		scale *= 10;
	return connlife_mantissa[i % 10] * scale;
}

/* The bucket of a lifetime: the first bound >= ms, or CONNLIFE_BOUNDS (+Inf). */
static size_t bucket_of(uint64_t ms)
{
	size_t lo = 0, hi = CONNLIFE_BOUNDS;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ms <= connlife_bound_ms(mid))
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void connlife_open(struct connlife *l, struct connlife_node *n, uint64_t now_ms)
{
	n->start_ms = now_ms;
	n->newer = NULL;
	n->older = l->newest;
	if (l->newest)
		l->newest->newer = n;
	else
		l->oldest = n;
	l->newest = n;
	l->open++;
	/* Age 0 is within every bound; it is the newest, so behind every cursor. */
	for (size_t i = 0; i < CONNLIFE_BOUNDS; i++) {
		if (!l->cursor[i])
			l->cursor[i] = n;
		l->young[i]++;
	}
}

void connlife_close(struct connlife *l, struct connlife_node *n, uint64_t now_ms)
{
	uint64_t ms = now_ms > n->start_ms ? now_ms - n->start_ms : 0;

	l->ended[bucket_of(ms)]++;
	l->ended_total++;
	l->ended_ms_sum += ms;
	/*
	 * n counts as young for bound i when it is the cursor or newer. Start
	 * times never decrease along the list, and every connection older than
	 * a cursor has a start strictly before the cursor's (it aged past the
	 * bound while the cursor's did not), so comparing starts decides.
	 */
	for (size_t i = 0; i < CONNLIFE_BOUNDS; i++) {
		struct connlife_node *c = l->cursor[i];

		if (!c || n->start_ms < c->start_ms)
			continue;
		l->young[i]--;
		if (c == n)
			l->cursor[i] = n->newer;
	}
	if (n->older)
		n->older->newer = n->newer;
	else
		l->oldest = n->newer;
	if (n->newer)
		n->newer->older = n->older;
	else
		l->newest = n->older;
	n->older = n->newer = NULL;
	l->open--;
}

void connlife_ages(struct connlife *l, uint64_t now_ms, uint64_t out[CONNLIFE_BOUNDS + 1])
{
	for (size_t i = 0; i < CONNLIFE_BOUNDS; i++) {
		uint64_t bound = connlife_bound_ms(i);
		struct connlife_node *c = l->cursor[i];

		while (c && now_ms > c->start_ms && now_ms - c->start_ms > bound) {
			c = c->newer;
			l->young[i]--;
		}
		l->cursor[i] = c;
		out[i] = l->young[i];
	}
	out[CONNLIFE_BOUNDS] = l->open;
}

/* Milliseconds as seconds without trailing zeros: 1250 -> "1.25", 4000 -> "4". */
static const char *secs(char *buf, size_t len, uint64_t ms)
{
	unsigned long long s = (unsigned long long)(ms / 1000);
	unsigned frac = (unsigned)(ms % 1000);

	if (frac == 0)
		snprintf(buf, len, "%llu", s);
	else if (frac % 100 == 0)
		snprintf(buf, len, "%llu.%u", s, frac / 100);
	else if (frac % 10 == 0)
		snprintf(buf, len, "%llu.%02u", s, frac / 10);
	else
		snprintf(buf, len, "%llu.%03u", s, frac);
	return buf;
}

long connlife_format(struct connlife *l, uint64_t now_ms, char *buf, size_t cap)
{
	struct promout o = { buf, cap, 0, 0 };
	uint64_t ages[CONNLIFE_BOUNDS + 1], cum = 0;
	char le[32];

	promout_put(&o, "# HELP chatd_connection_duration_seconds Lifetimes of ended client "
			"connections.\n# TYPE chatd_connection_duration_seconds histogram\n");
	for (size_t i = 0; i < CONNLIFE_BOUNDS; i++) {
		cum += l->ended[i];
		promout_put(&o, "chatd_connection_duration_seconds_bucket{le=\"%s\"} %llu\n",
			    secs(le, sizeof(le), connlife_bound_ms(i)), (unsigned long long)cum);
	}
	promout_put(&o, "chatd_connection_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
		    (unsigned long long)l->ended_total);
	promout_put(&o, "chatd_connection_duration_seconds_sum %s\n",
		    secs(le, sizeof(le), l->ended_ms_sum));
	promout_put(&o, "chatd_connection_duration_seconds_count %llu\n",
		    (unsigned long long)l->ended_total);
	connlife_ages(l, now_ms, ages);
	promout_put(&o,
		    "# HELP chatd_connection_age_seconds_bucket Open client connections at most "
		    "le seconds old.\n# TYPE chatd_connection_age_seconds_bucket gauge\n");
	for (size_t i = 0; i < CONNLIFE_BOUNDS; i++)
		promout_put(&o, "chatd_connection_age_seconds_bucket{le=\"%s\"} %llu\n",
			    secs(le, sizeof(le), connlife_bound_ms(i)),
			    (unsigned long long)ages[i]);
	promout_put(&o, "chatd_connection_age_seconds_bucket{le=\"+Inf\"} %llu\n",
		    (unsigned long long)ages[CONNLIFE_BOUNDS]);
	return o.overflow ? -ENOSPC : (long)o.len;
}
