/* Unit tests for common/log.c: the logfmt line and the rate limit of
 * repeated lines (per event, LOG_RATE_BURST a second, the rest counted and
 * reported). stderr is redirected to a temp file and read back; the clock
 * is the test's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static uint64_t fake_now;
static FILE *out;
static int saved_stderr;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static int setup(void **state)
{
	fflush(stderr);
	saved_stderr = dup(2);
	out = tmpfile();
	assert_non_null(out);
	dup2(fileno(out), 2);
	fake_now = 100;
	log_set_clock(fake_clock);
	log_init("test", LOG_DEBUG);
	return 0;
}

static int teardown(void **state)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	fclose(out);
	log_set_clock(NULL);
	return 0;
}

/* Everything logged since the last call. */
static char *take(void)
{
	static char buf[1 << 16];
	size_t n;

	fflush(stderr);
	rewind(out);
	n = fread(buf, 1, sizeof(buf) - 1, out);
	buf[n] = '\0';
	rewind(out);
	assert_int_equal(ftruncate(fileno(out), 0), 0);
	return buf;
}

static int count(const char *s, const char *needle)
{
	int n = 0;

	for (; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

static void test_line_format(void **state)
{
	char *s;

	log_info("hello", "k=%d q=%s", 7, "v");
	s = take();
	assert_non_null(strstr(s, " level=info prog=test event=hello k=7 q=v\n"));
	assert_int_equal(strncmp(s, "ts=", 3), 0);
}

static void test_repeated_lines_are_limited_and_counted(void **state)
{
	char *s, want[64];

	for (int i = 0; i < 1000; i++)
		log_info("close", "conn=%d", i);
	log_warn("other", "%s", "");
	s = take();
	assert_int_equal(count(s, "event=close "), LOG_RATE_BURST);
	assert_int_equal(count(s, "event=other"), 1);
	assert_int_equal(count(s, "log_suppressed"), 0);
	/* the same second: nothing to report yet */
	log_flush();
	assert_int_equal(count(take(), "log_suppressed"), 0);
	/* the next second: the count, then the line */
	fake_now++;
	log_info("close", "conn=%d", 1000);
	s = take();
	snprintf(want, sizeof(want),
		 "level=info prog=test event=log_suppressed of=close count=%d\n",
		 1000 - LOG_RATE_BURST);
	assert_non_null(strstr(s, want));
	assert_true(strstr(s, want) < strstr(s, "event=close conn=1000"));
	/* a flood that stops is reported by log_flush() once its second is over */
	for (int i = 0; i < LOG_RATE_BURST + 5; i++)
		log_warn("refused", "%s", "");
	take();
	log_flush();
	assert_int_equal(count(take(), "log_suppressed"), 0);
	fake_now++;
	log_flush();
	s = take();
	assert_non_null(
		strstr(s, "level=warn prog=test event=log_suppressed of=refused count=5\n"));
	log_flush();
	assert_int_equal(count(take(), "log_suppressed"), 0);
}

static void test_flush_all_and_debug(void **state)
{
	char *s;

	/* debug lines are never limited */
	for (int i = 0; i < 100; i++)
		log_debug("state", "i=%d", i);
	assert_int_equal(count(take(), "event=state"), 100);
	for (int i = 0; i < LOG_RATE_BURST + 3; i++)
		log_info("auth_timeout", "%s", "");
	take();
	log_flush_all(); /* before exit: the current second too */
	s = take();
	assert_non_null(strstr(s, "event=log_suppressed of=auth_timeout count=3\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeated_lines_are_limited_and_counted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flush_all_and_debug, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
