/*
 * Unit tests for promtext (chatd_connections from chatd's /metrics), with
 * the regressions of the two readers it replaced: a timestamp read as the
 * value, a '}' inside a label value, and values out of a long's range
 * (undefined behaviour when converted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../deployer/platform.h"
#include "../../deployer/promtext.h"

#define N "chatd_connections"

/* A replica's count: open connections and sessions waiting to be resumed;
 * a chatd without the detached gauge reads as its connections. */
static void test_replica_count_with_detached(void **state)
{
	struct platform_replica r;

	platform_replica_metrics(&r, "chatd_connections 7\nchatd_sessions_detached 3\n");
	assert_int_equal(r.connections, 10);
	platform_replica_metrics(&r, "chatd_connections 7\n");
	assert_int_equal(r.connections, 7);
	platform_replica_metrics(&r, "chatd_connections 0\nchatd_sessions_detached 2\n");
	assert_int_equal(r.connections, 2);
	platform_replica_metrics(&r, "chatd_sessions_detached 2\n");
	assert_int_equal(r.connections, -1); /* no count: unreadable, whatever else */
	platform_replica_metrics(&r, NULL);
	assert_int_equal(r.connections, -1);
}

static void test_promtext_chatd_body(void **state)
{
	const char *body = "# HELP chatd_connections Open client connections.\n"
			   "# TYPE chatd_connections gauge\n"
			   "chatd_connections_accepted_total 40\n"
			   "chatd_connections 12\n"
			   "chatd_sessions 10\n";

	(void)state;
	assert_int_equal(promtext_count(body, N), 12);
	assert_int_equal(promtext_count(body, "chatd_sessions"), 10);
	assert_int_equal(promtext_count(body, "chatd_connections_accepted_total"), 40);
	assert_int_equal(promtext_count(body, "chatd_stanzas_total"), -1);
	assert_int_equal(promtext_count("", N), -1);
}

static void test_promtext_forms(void **state)
{
	(void)state;
	/* The timestamp after the value is not the value. */
	assert_int_equal(promtext_count(N " 7 1700000000000\n", N), 7);
	assert_int_equal(promtext_count(N "{instance=\"a b}c\",x=\"q\\\"}\"} 5 17\n", N), 5);
	assert_int_equal(promtext_count(N "\t3\r\n", N), 3);
	assert_int_equal(promtext_count(N " 2.5e1", N), 25);
	assert_int_equal(promtext_count("x 1\n" N "  4\n" N " 9\n", N), 4);
	/* An unterminated label block does not reach into the next line. */
	assert_int_equal(promtext_count(N "{a=\"x\n} 5\n", N), -1);
	assert_int_equal(promtext_count(N "{a=\"x\"\n" N " 6\n", N), -1);
	assert_int_equal(promtext_count(N "5\n", N), -1);
	assert_int_equal(promtext_count(N " \n", N), -1);
	assert_int_equal(promtext_count(N " 5x\n", N), -1);
}

static void test_promtext_range(void **state)
{
	(void)state;
	assert_int_equal(promtext_count(N " 1e300\n", N), -1);
	assert_int_equal(promtext_count(N " -1e300\n", N), -1);
	assert_int_equal(promtext_count(N " -3\n", N), -1);
	assert_int_equal(promtext_count(N " NaN\n", N), -1);
	assert_int_equal(promtext_count(N " +Inf\n", N), -1);
	assert_int_equal(promtext_count(N " 1e15\n", N), PROMTEXT_COUNT_MAX);
	assert_int_equal(promtext_count(N " 1.000001e15\n", N), -1);
}

#define H "chatd_connection_duration_seconds_bucket"

static void test_promtext_hist(void **state)
{
	double le[8], cum[9];
	const char *body = "# TYPE chatd_connection_duration_seconds histogram\n" H
			   "{le=\"1\"} 2\n" H "{le=\"1.25\"} 3\n" H "{le=\"+Inf\"} 7\n"
			   "chatd_connection_duration_seconds_sum 9.5\n"
			   "chatd_connection_duration_seconds_count 7\n"
			   "chatd_connection_age_seconds_bucket{le=\"1\"} 4\n"
			   "chatd_connection_age_seconds_bucket{le=\"+Inf\"} 5\n";

	(void)state;
	assert_int_equal(promtext_hist(body, H, le, cum, 8), 2);
	assert_true(le[0] == 1.0 && le[1] == 1.25);
	assert_true(cum[0] == 2 && cum[1] == 3 && cum[2] == 7);
	assert_int_equal(promtext_hist(body, "chatd_connection_age_seconds_bucket", le, cum, 8), 1);
	assert_true(le[0] == 1.0 && cum[0] == 4 && cum[1] == 5);
	/* any order, other labels around le, escapes in them */
	assert_int_equal(promtext_hist(H "{le=\"+Inf\"} 3\n" H "{a=\"x\\\"}\",le=\"2\"} 2\n" H
					 "{ le = \"0.5\" ,b=\"y\"} 1\n",
				       H, le, cum, 8),
			 2);
	assert_true(le[0] == 0.5 && le[1] == 2 && cum[0] == 1 && cum[1] == 2 && cum[2] == 3);
	/* only +Inf: a histogram without finite bounds */
	assert_int_equal(promtext_hist(H "{le=\"+Inf\"} 0\n", H, le, cum, 8), 0);
	assert_true(cum[0] == 0);
}

static void test_promtext_hist_bad(void **state)
{
	double le[2], cum[3];

	(void)state;
	assert_int_equal(promtext_hist("", H, le, cum, 2), -1);
	/* no +Inf, two +Inf, decreasing counts, +Inf below a finite one */
	assert_int_equal(promtext_hist(H "{le=\"1\"} 2\n", H, le, cum, 2), -1);
	assert_int_equal(promtext_hist(H "{le=\"+Inf\"} 2\n" H "{le=\"+Inf\"} 2\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"1\"} 3\n" H "{le=\"2\"} 2\n" H "{le=\"+Inf\"} 3\n",
				       H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"1\"} 3\n" H "{le=\"+Inf\"} 2\n", H, le, cum, 2),
			 -1);
	/* repeated, zero, negative, NaN or junk bounds; no le at all */
	assert_int_equal(promtext_hist(H "{le=\"1\"} 1\n" H "{le=\"1.0\"} 1\n" H
					 "{le=\"+Inf\"} 1\n",
				       H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"0\"} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"-1\"} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"NaN\"} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"1x\"} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{x=\"1\"} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2), -1);
	/* a bad value, an unterminated label block */
	assert_int_equal(promtext_hist(H "{le=\"1\"} -1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2),
			 -1);
	assert_int_equal(promtext_hist(H "{le=\"1} 1\n" H "{le=\"+Inf\"} 1\n", H, le, cum, 2), -1);
	/* more finite bounds than room */
	assert_int_equal(promtext_hist(H "{le=\"1\"} 1\n" H "{le=\"2\"} 1\n" H "{le=\"3\"} 1\n" H
					 "{le=\"+Inf\"} 1\n",
				       H, le, cum, 2),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_promtext_chatd_body),
		cmocka_unit_test(test_promtext_forms),
		cmocka_unit_test(test_promtext_range),
		cmocka_unit_test(test_promtext_hist),
		cmocka_unit_test(test_promtext_hist_bad),
		cmocka_unit_test(test_replica_count_with_detached),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
