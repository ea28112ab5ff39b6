/*
 * chart.c: a timeline rainbow did not write (edited, truncated, hostile)
 * never breaks out of the gnuplot script nor the bin arithmetic.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "../../deployer/chart.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_hostile_timeline(void **state)
{
	char dir[] = "/tmp/rb-chart-XXXXXX", path[320], prefix[64], err[256];
	char *gp;
	int rc;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/timeline.csv", dir);
	write_text(path, "time,sha,connections,state\n"
			 "100.0,aaaaaaa,3,live\n"
			 "101.0,x' ; system('touch /tmp/rb-chart-pwned') ; ',1,live\n"
			 "nan,bbbbbbb,1,live\n"
			 "1e300,bbbbbbb,1,live\n"
			 "-1e300,bbbbbbb,1,live\n"
			 "102.0,aaaaaaa,2,live\n");
	/* A quote in the output path must not end a gnuplot string either. */
	snprintf(prefix, sizeof(prefix), "%s/it's", dir);
	rc = chart_render(dir, prefix, 1.0, err, sizeof(err));
	assert_true(rc == 0 || rc == -ENOENT); /* -ENOENT: no gnuplot installed */
	snprintf(path, sizeof(path), "%s.gp", prefix);
	gp = slurp(path);
	assert_null(strstr(gp, "system"));
	assert_null(strstr(gp, "bbbbbbb")); /* its rows had no usable time */
	assert_non_null(strstr(gp, "chat-aaaaaaa"));
	assert_non_null(strstr(gp, "it''s.png"));
	free(gp);
	assert_int_equal(access("/tmp/rb-chart-pwned", F_OK), -1);
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s.png", prefix);
		assert_int_equal(access(path, F_OK), 0);
	}
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_timeline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
