/*
 * Unit tests for chatload's option value parsers (loadgen/opts.c) beyond
 * test_chatload.c: the bounds fuzz_chatload_opts checks (values that used to
 * be accepted: infinite durations, lifetimes past uint32 milliseconds, a
 * uniform LOW with a negative exponent refused).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "../../loadgen/opts.h"

static void test_opts_duration_finite(void **state)
{
	double d = -1;

	(void)state;
	/* fuzz_chatload_opts checks this: a finite number of hours, infinite seconds. */
	assert_int_equal(opts_parse_duration("1e308h", &d), -EINVAL);
	assert_int_equal(opts_parse_duration("1e307m", &d), -EINVAL);
	assert_int_equal(opts_parse_duration("1e300h", &d), 0);
	assert_true(isfinite(d));
	assert_int_equal(opts_parse_duration("inf", &d), -EINVAL);
	assert_int_equal(opts_parse_duration("nan", &d), -EINVAL);
}

static void test_opts_lifetime_bounds(void **state)
{
	struct lifetime l;
	const char *why;

	(void)state;
	/* fuzz_chatload_opts checks this: client.c counts lifetimes in uint32 ms. */
	assert_int_equal(opts_parse_lifetime("fixed:1e308h", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("fixed:1e300s", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("exp:745h", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("uniform:1s-721h", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("fixed:720h", &l, &why), 0);
	assert_int_equal(opts_parse_lifetime("exp:720h", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 1 - 0x1p-53) <= OPTS_DURATION_MAX);
	assert_true(opts_lifetime_draw(&l, 0.5) > 0);
	/* fuzz_chatload_opts checks this: a '-' in LOW's exponent is not the separator. */
	assert_int_equal(opts_parse_lifetime("uniform:1e-3s-2s", &l, &why), 0);
	assert_true(l.kind == LIFETIME_UNIFORM && l.a == 0.001 && l.b == 2);
	assert_int_equal(opts_parse_lifetime("uniform:30s-90s", &l, &why), 0);
	assert_true(l.a == 30 && l.b == 90);
	assert_int_equal(opts_parse_lifetime("uniform:x-90s", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("uniform:-1s-90s", &l, &why), -EINVAL);
}

/* lognormal:MEDIAN,SIGMA: its quantiles, its mean, its bounds, its errors. */
static void test_opts_lifetime_lognormal(void **state)
{
	struct lifetime l;
	const char *why;
	double sum = 0, prev = 0;
	const int n = 200000;

	(void)state;
	assert_int_equal(opts_parse_lifetime("lognormal:10s,1.5", &l, &why), 0);
	assert_true(l.kind == LIFETIME_LOGNORMAL && l.a == 10 && l.b == 1.5);
	/* the median, and median * e^(sigma z) at the normal's quantiles */
	assert_true(fabs(opts_lifetime_draw(&l, 0.5) - 10) < 1e-9);
	assert_true(fabs(opts_lifetime_draw(&l, 0.8413447460685429) / (10 * exp(1.5)) - 1) < 1e-9);
	assert_true(fabs(opts_lifetime_draw(&l, 0.022750131948179195) / (10 * exp(-3.0)) - 1) <
		    1e-9);
	assert_true(fabs(opts_lifetime_draw(&l, 0.9986501019683699) / (10 * exp(4.5)) - 1) < 1e-9);
	assert_true(fabs(opts_lifetime_draw(&l, 1e-10) / (10 * exp(1.5 * -6.361340902404056)) - 1) <
		    1e-9);
	/* its mean is median * e^(sigma^2 / 2) = 30.8 s: a heavy tail */
	for (int i = 0; i < n; i++) {
		double v = opts_lifetime_draw(&l, (i + 0.5) / n);

		assert_true(v >= prev);
		prev = v;
		sum += v;
	}
	assert_true(fabs(sum / n / (10 * exp(1.125)) - 1) < 0.01);
	/* cut at 30 days, never negative */
	assert_int_equal(opts_parse_lifetime("lognormal:720h,10", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 1 - 0x1p-53) == OPTS_DURATION_MAX);
	assert_true(opts_lifetime_draw(&l, 0) == 0);
	assert_true(opts_lifetime_draw(&l, 0x1p-53) >= 0);
	/* errors */
	assert_int_equal(opts_parse_lifetime("lognormal:10s", &l, &why), -EINVAL);
	assert_non_null(strstr(why, "MEDIAN,SIGMA"));
	assert_int_equal(opts_parse_lifetime("lognormal:10s,0", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:10s,-1", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:10s,10.5", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:10s,nan", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:10s,1x", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:0s,1", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:721h,1", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("lognormal:x,1", &l, &why), -EINVAL);
	assert_int_equal(opts_parse_lifetime("gauss:5s", &l, &why), -EINVAL);
	assert_non_null(strstr(why, "lognormal:DUR,SIGMA"));
}

static void test_opts_ip_range_rate(void **state)
{
	uint32_t a, b;
	double r;

	(void)state;
	assert_int_equal(opts_parse_ip_range("127.0.0.2-127.0.0.20", &a, &b), 0);
	assert_true(a == 0x7f000002 && b == 0x7f000014);
	assert_int_equal(opts_parse_ip_range("127.0.0.9", &a, &b), 0);
	assert_true(a == b && a == 0x7f000009);
	assert_int_equal(opts_parse_ip_range("127.0.0.9-127.0.0.8", &a, &b), -EINVAL);
	assert_int_equal(opts_parse_ip_range("10.0.0.0-10.1.0.0", &a, &b), -EINVAL);
	assert_int_equal(opts_parse_ip_range("10.0.0.0-10.0.255.255", &a, &b), 0);
	assert_int_equal(opts_parse_ip_range("::1", &a, &b), -EINVAL);
	assert_int_equal(opts_parse_rate("500/s", &r), 0);
	assert_true(r == 500);
	assert_int_equal(opts_parse_rate("0.5", &r), 0);
	assert_true(r == 0.5);
	assert_int_equal(opts_parse_rate("0/s", &r), -EINVAL);
	assert_int_equal(opts_parse_rate("/s", &r), -EINVAL);
	assert_int_equal(opts_parse_rate("1e400", &r), -EINVAL);
}

/* Each flag lands in its own field (the table gives each a field and a kind). */
static void test_opts_table_fields(void **state)
{
	char *argv[] = { "chatload",	"--clients",	   "9",	    "--workers",
			 "3",		"--auth",	   "scram", "--target",
			 "bare",	"--ping-timeout",  "2s",    "--close-timeout",
			 "3s",		"--duration",	   "0",	    "--message-rate",
			 "2.5",		"--offline-share", "0.25",  "--seed",
			 "7",		"--quiet",	   "--tls", "--report",
			 "r.json",	"--password",	   "pw",    "--coordinator-listen",
			 "127.0.0.1:9", "--pods",	   "2",	    NULL };
	char *bad_choice[] = { "chatload", "--auth", "scra", NULL };
	char *bad_uint[] = { "chatload", "--workers", "65", NULL };
	struct load_opts o;
	FILE *err = fopen("/dev/null", "w");

	(void)state;
	assert_non_null(err);
	assert_int_equal(opts_parse(&o, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, err), 0);
	assert_int_equal(o.clients, 9);
	assert_int_equal(o.workers, 3);
	assert_int_equal(o.auth, OPTS_AUTH_SCRAM);
	assert_int_equal(o.target, OPTS_TARGET_BARE);
	assert_true(o.ping_timeout == 2);
	assert_true(o.close_timeout == 3);
	assert_true(o.duration == 0);
	assert_true(o.login_timeout == 30); /* untouched: its default */
	assert_true(o.message_rate == 2.5);
	assert_true(o.offline_share == 0.25);
	assert_int_equal(o.seed, 7);
	assert_true(o.quiet && o.tls && !o.stream_management && !o.expect_zero_loss);
	assert_string_equal(o.report, "r.json");
	assert_string_equal(o.password, "pw");
	assert_string_equal(o.coordinator_listen, "127.0.0.1:9");
	assert_null(o.coordinator);
	assert_int_equal(o.pods, 2);
	/* a choice is a whole word; a number stays in its range */
	assert_int_equal(opts_parse(&o, 3, bad_choice, err), 2);
	assert_int_equal(opts_parse(&o, 3, bad_uint, err), 2);
	fclose(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opts_duration_finite),
		cmocka_unit_test(test_opts_lifetime_bounds),
		cmocka_unit_test(test_opts_lifetime_lognormal),
		cmocka_unit_test(test_opts_ip_range_rate),
		cmocka_unit_test(test_opts_table_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
