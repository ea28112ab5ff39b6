/*
 * connlife.c: the lifetime histogram and the open connections' age buckets
 * are exact at every instant, checked against counting every connection by
 * hand, on a synthetic clock.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../server/connlife.h"

static void test_bounds(void **state)
{
	(void)state;
	assert_int_equal(connlife_bound_ms(0), 1000);
	assert_int_equal(connlife_bound_ms(1), 1250);
	assert_int_equal(connlife_bound_ms(5), 3150);
	assert_int_equal(connlife_bound_ms(9), 8000);
	assert_int_equal(connlife_bound_ms(10), 10000);
	assert_int_equal(connlife_bound_ms(47), 50000000);
	assert_int_equal(connlife_bound_ms(CONNLIFE_BOUNDS - 1), 1000000000); /* 11.6 days */
	for (size_t i = 1; i < CONNLIFE_BOUNDS; i++)
		assert_true(connlife_bound_ms(i) > connlife_bound_ms(i - 1));
}

static void test_durations(void **state)
{
	struct connlife l;
	struct connlife_node n[5];
	char buf[16384];
	long len;

	(void)state;
	memset(&l, 0, sizeof(l));
	for (int i = 0; i < 5; i++)
		connlife_open(&l, &n[i], 100);
	connlife_close(&l, &n[0], 100);	 /* 0 s: le="1" */
	connlife_close(&l, &n[1], 1100); /* exactly 1 s: still le="1" */
	connlife_close(&l, &n[2], 1101); /* just over: le="1.25" */
	connlife_close(&l, &n[3], 3250); /* 3.15 s: le="3.15" */
	assert_int_equal(l.ended[0], 2);
	assert_int_equal(l.ended[1], 1);
	assert_int_equal(l.ended[5], 1);
	assert_int_equal(l.ended_total, 4);
	assert_int_equal(l.ended_ms_sum, 0 + 1000 + 1001 + 3150);
	len = connlife_format(&l, 5000, buf, sizeof(buf));
	assert_true(len > 0 && (size_t)len == strlen(buf));
	assert_non_null(strstr(buf, "# TYPE chatd_connection_duration_seconds histogram\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"1.25\"} 3\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"2.5\"} 3\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"3.15\"} 4\n"));
	assert_non_null(
		strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"1000000\"} 4\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_sum 5.151\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_count 4\n"));
	/* the open one is 4.9 s old at 5000 */
	assert_non_null(strstr(buf, "\nchatd_connection_age_seconds_bucket{le=\"4\"} 0\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_age_seconds_bucket{le=\"5\"} 1\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_age_seconds_bucket{le=\"+Inf\"} 1\n"));
	/* lifetimes past the last bound go to +Inf only */
	connlife_close(&l, &n[4], 100 + 2000000000ull);
	assert_int_equal(l.ended[CONNLIFE_BOUNDS], 1);
	/* too small a buffer is an error, not a truncated page */
	assert_int_equal(connlife_format(&l, 5000, buf, 200), -ENOSPC);
}

/* The truth, by visiting every connection. */
static void brute_ages(const uint64_t *start, const int *open, size_t n, uint64_t now,
		       uint64_t out[CONNLIFE_BOUNDS + 1])
{
	memset(out, 0, sizeof(uint64_t) * (CONNLIFE_BOUNDS + 1));
	for (size_t k = 0; k < n; k++) {
		if (!open[k])
			continue;
		for (size_t i = 0; i < CONNLIFE_BOUNDS; i++)
			if (now - start[k] <= connlife_bound_ms(i))
				out[i]++;
		out[CONNLIFE_BOUNDS]++;
	}
}

static void test_ages_by_hand(void **state)
{
	struct connlife l;
	struct connlife_node a, b, c;
	uint64_t ages[CONNLIFE_BOUNDS + 1];

	(void)state;
	memset(&l, 0, sizeof(l));
	connlife_open(&l, &a, 0);
	connlife_open(&l, &b, 1500);
	connlife_open(&l, &c, 3000);
	connlife_ages(&l, 3000, ages); /* ages 3, 1.5, 0 */
	assert_int_equal(ages[0], 1);  /* le 1 */
	assert_int_equal(ages[2], 2);  /* le 1.6 */
	assert_int_equal(ages[4], 2);  /* le 2.5 */
	assert_int_equal(ages[5], 3);  /* le 3.15 */
	assert_int_equal(ages[CONNLIFE_BOUNDS], 3);
	/* the cursor of le=1.6 is b: closing it moves that cursor on */
	connlife_close(&l, &b, 3000);
	connlife_ages(&l, 3000, ages);
	assert_int_equal(ages[0], 1);
	assert_int_equal(ages[2], 1);
	assert_int_equal(ages[5], 2);
	/* time passes: c ages past 1 s, a past 3.15 s */
	connlife_ages(&l, 4200, ages); /* ages 4.2, 1.2 */
	assert_int_equal(ages[0], 0);
	assert_int_equal(ages[1], 1);
	assert_int_equal(ages[5], 1);
	assert_int_equal(ages[7], 2); /* le 5 */
	/* a connection that aged out of every young set closes: nothing goes negative */
	connlife_close(&l, &a, 4200);
	connlife_ages(&l, 4200, ages);
	assert_int_equal(ages[0], 0);
	assert_int_equal(ages[1], 1);
	assert_int_equal(ages[7], 1);
	assert_int_equal(ages[CONNLIFE_BOUNDS], 1);
	connlife_close(&l, &c, 5000);
	connlife_ages(&l, 90000, ages);
	for (size_t i = 0; i <= CONNLIFE_BOUNDS; i++)
		assert_int_equal(ages[i], 0);
	assert_null(l.oldest);
	assert_null(l.newest);
	/* a new connection after everything aged out is counted again */
	connlife_open(&l, &a, 90000);
	connlife_ages(&l, 90000, ages);
	assert_int_equal(ages[0], 1);
	assert_int_equal(ages[CONNLIFE_BOUNDS], 1);
}

/* Random opens, closes (any connection, not only the oldest) and reads,
 * with ties in start times and long gaps, against brute_ages(). */
static void test_ages_random(void **state)
{
	enum { N = 3000 };
	struct connlife l;
	struct connlife_node *nodes = calloc(N, sizeof(*nodes));
	uint64_t *start = calloc(N, sizeof(*start));
	int *open = calloc(N, sizeof(*open));
	uint64_t got[CONNLIFE_BOUNDS + 1], want[CONNLIFE_BOUNDS + 1], now = 0, ended = 0;
	size_t n = 0;

	(void)state;
	assert_non_null(nodes);
	assert_non_null(start);
	assert_non_null(open);
	srand(1234);
	memset(&l, 0, sizeof(l));
	for (int step = 0; step < 20000; step++) {
		int r = rand() % 100;

		if (r < 30) {
			/* mostly small steps, sometimes none, sometimes hours */
			int g = rand() % 10;
			now += g == 0  ? 0
			       : g < 8 ? (uint64_t)(rand() % 700)
				       : (uint64_t)(rand() % 5000000);
		} else if (r < 60 && n < N) {
			connlife_open(&l, &nodes[n], now);
			start[n] = now;
			open[n++] = 1;
		} else if (r < 85 && n > 0) {
			size_t k = (size_t)rand() % n;

			if (open[k]) {
				connlife_close(&l, &nodes[k], now);
				open[k] = 0;
				ended++;
			}
		} else {
			connlife_ages(&l, now, got);
			brute_ages(start, open, n, now, want);
			assert_memory_equal(got, want, sizeof(got));
		}
	}
	connlife_ages(&l, now, got);
	brute_ages(start, open, n, now, want);
	assert_memory_equal(got, want, sizeof(got));
	assert_int_equal(l.ended_total, ended);
	free(nodes);
	free(start);
	free(open);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_ages_by_hand),
		cmocka_unit_test(test_ages_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
