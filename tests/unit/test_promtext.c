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

#include "../../deployer/promtext.h"

#define N "chatd_connections"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_promtext_chatd_body),
		cmocka_unit_test(test_promtext_forms),
		cmocka_unit_test(test_promtext_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
