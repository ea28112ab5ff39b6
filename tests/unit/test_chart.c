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
	rc = chart_render(dir, prefix, 1.0, NULL, err, sizeof(err));
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

/* Switches are marked (a dashed line and the SHA); a hostile SHA in the
 * record never reaches the script. */
static void test_switch_markers(void **state)
{
	char dir[] = "/tmp/rb-chart-XXXXXX", path[320], err[256];
	char *gp;
	int rc;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/timeline.csv", dir);
	write_text(path, "time,sha,connections,state\n"
			 "100.0,aaaaaaa,3,live\n"
			 "110.0,aaaaaaa,3,draining\n"
			 "110.0,bbbbbbb,1,live\n"
			 "130.0,aaaaaaa,0,draining\n");
	snprintf(path, sizeof(path), "%s/record.jsonl", dir);
	write_text(path,
		   "{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":100.5}\n"
		   "{\"event\":\"select\",\"sha\":\"x' ; system('touch /tmp/rb-chart-pwned') ; '\","
		   "\"t\":105}\n"
		   "{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":110.25}\n"
		   "{\"event\":\"select\",\"sha\":\"ccccccc\",\"t\":5000}\n");
	rc = chart_render(dir, NULL, 1.0, NULL, err, sizeof(err));
	assert_true(rc == 0 || rc == -ENOENT);
	snprintf(path, sizeof(path), "%s/chart.gp", dir);
	gp = slurp(path);
	/* in each of the two terminals' sections */
	assert_non_null(strstr(gp, "set arrow from 0.500, graph 0 to 0.500, graph 1 nohead"));
	assert_non_null(strstr(gp, "set label 'chat-aaaaaaa' at 0.500, graph 0.02 rotate by 90"));
	assert_non_null(strstr(gp, "set arrow from 10.250, graph 0 to 10.250, graph 1 nohead"));
	assert_non_null(strstr(gp, "set label 'chat-bbbbbbb' at 10.250"));
	assert_null(strstr(gp, "system"));
	assert_null(strstr(gp, "ccccccc")); /* a switch outside the timeline's span */
	free(gp);
	assert_int_equal(access("/tmp/rb-chart-pwned", F_OK), -1);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

/* What a room reads off the chart: a rollback marked as one, headroom
 * above the total, no legend entry for a colour that never held a
 * connection, the witness's verdict drawn on it. */
static void test_rollback_headroom_legend_verdict(void **state)
{
	char dir[] = "/tmp/rb-chart-XXXXXX", path[320], err[256];
	char *gp;
	int rc;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/timeline.csv", dir);
	write_text(path, "time,sha,connections,state\n"
			 "100.0,aaaaaaa,60,live\n"
			 "110.0,aaaaaaa,40,draining\n"
			 "110.0,bbbbbbb,0,live\n"
			 "120.0,aaaaaaa,50,live\n"
			 "120.0,bbbbbbb,0,draining\n");
	snprintf(path, sizeof(path), "%s/record.jsonl", dir);
	write_text(path, "{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":100.5}\n"
			 "{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":110.25}\n"
			 "{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":115}\n");
	rc = chart_render(dir, NULL, 1.0, "0 dropped connections, 0 lost messages", err,
			  sizeof(err));
	assert_true(rc == 0 || rc == -ENOENT);
	snprintf(path, sizeof(path), "%s/chart.gp", dir);
	gp = slurp(path);
	assert_non_null(strstr(gp, "set label 'rollback to chat-aaaaaaa' at 15.000"));
	assert_non_null(strstr(gp, "set label 'chat-aaaaaaa' at 0.500"));
	assert_non_null(strstr(gp, "set yrange [0:71]")); /* 60 + a sixth + 1 */
	assert_non_null(strstr(gp, "title 'chat-aaaaaaa'"));
	assert_null(strstr(gp, "title 'chat-bbbbbbb'"));
	assert_non_null(strstr(gp, "notitle"));
	assert_non_null(strstr(gp, "set label '0 dropped connections, 0 lost messages' at graph"));
	free(gp);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

/* One colour's drain: the real remaining fraction and the forecast made at
 * the switch, from seconds since deselection. */
static void test_drain_curve(void **state)
{
	char dir[] = "/tmp/rb-chart-XXXXXX", path[320], err[256];
	char *dat, *gp;
	int rc;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/timeline.csv", dir);
	write_text(path, "time,sha,connections,state\n"
			 "99.0,aaaaaaa,200,live\n"
			 "101.0,aaaaaaa,150,draining\n"
			 "104.0,aaaaaaa,50,draining\n"
			 "108.0,aaaaaaa,0,draining\n"
			 "109.0,aaaaaaa,0,draining\n"
			 "150.0,aaaaaaa,0,draining\n");
	snprintf(path, sizeof(path), "%s/record.jsonl", dir);
	write_text(path,
		   "{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":10}\n"
		   "{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":100.1,"
		   "\"deselected\":\"aaaaaaa\",\"deselected_at\":100,"
		   "\"deselected_connections\":200}\n"
		   "{\"event\":\"forecast\",\"sha\":\"aaaaaaa\",\"t\":101,\"since_deselect_s\":1,"
		   "\"connections\":150,\"eta_s\":6,\"eta_p90_s\":8,\"t99_s\":5,"
		   "\"curve\":[[0,1],[3,0.5],[6,0]]}\n");
	rc = chart_render_drain(dir, NULL, "aaaaaaa", err, sizeof(err));
	assert_true(rc == 0 || rc == -ENOENT);
	snprintf(path, sizeof(path), "%s/drain-aaaaaaa.dat", dir);
	dat = slurp(path);
	/* the count from the deselection on, up to a second past 0 */
	assert_non_null(strstr(dat, "\n1.000 0.75000\n4.000 0.25000\n8.000 0.00000\n"
				    "9.000 0.00000\n\n\n"));
	assert_null(strstr(dat, "50.000"));
	assert_null(strstr(dat, "-1.000"));
	/* the forecast: made 1 s in with 150 of 200 left */
	assert_non_null(strstr(dat, "1.000 0.75000\n4.000 0.37500\n7.000 0.00000\n"));
	snprintf(path, sizeof(path), "%s/drain-aaaaaaa.gp", dir);
	gp = slurp(path);
	assert_non_null(strstr(gp, "set label 'forecast 7.0s' at 7.000"));
	assert_non_null(strstr(gp, "set label 'p90 9.0s' at 9.000"));
	assert_non_null(strstr(gp, "set label 'drained 8.0s' at 8.000"));
	assert_non_null(strstr(gp, "index 1 using 1:2 with lines"));
	assert_non_null(strstr(gp, "drain-aaaaaaa.svg"));
	free(dat);
	free(gp);
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/drain-aaaaaaa.png", dir);
		assert_int_equal(access(path, F_OK), 0);
	}
	/* no such drain, a bad SHA */
	assert_int_equal(chart_render_drain(dir, NULL, "ccccccc", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no drain of chat-ccccccc"));
	assert_int_equal(chart_render_drain(dir, NULL, "x'y", err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_timeline),
		cmocka_unit_test(test_switch_markers),
		cmocka_unit_test(test_rollback_headroom_legend_verdict),
		cmocka_unit_test(test_drain_curve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
