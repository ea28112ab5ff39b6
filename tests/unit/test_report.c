/*
 * report.c: drain times, the forecast made at the switch and the deploy
 * overheads, from a synthetic history, exactly; records written before
 * selects named what they replaced; a rollback in the middle of a drain;
 * lines rainbow could not have written.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../deployer/report.h"

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static double get(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_null(v))
		return -1;
	assert_true(json_is_number(v));
	return json_number_value(v);
}

static void near(double got, double want, int line)
{
	if (!(fabs(got - want) <= 1e-6))
		fail_msg("line %d: %.6g, want %.6g", line, got, want);
}
#define assert_near(a, b) near((a), (b), __LINE__)

static void rm_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_drain_and_forecast(void **state)
{
	char dir[] = "/tmp/rb-report-XXXXXX", *md;
	json_t *rep, *d, *s;
	char err[256];
	size_t len;
	FILE *mf;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* aaaaaaa created at 100 (op 0.5 s), ready observed at 102, selected
	 * 102.25; bbbbbbb created 200, ready 203, selected 203.5 replacing it
	 * with 200 connections; its forecast 1 s later: 20 s more. */
	write_text(
		dir, "record.jsonl",
		"{\"event\":\"create\",\"sha\":\"aaaaaaa\",\"t\":100.5,\"op_ms\":500}\n"
		"{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":102.25,\"since_obs_ms\":250}\n"
		"not json\n"
		"{\"event\":\"select\",\"sha\":\"x'; rm -rf /\",\"t\":150}\n"
		"{\"event\":\"create\",\"sha\":\"bbbbbbb\",\"t\":200,\"op_ms\":0}\n"
		"{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":203.5,\"since_obs_ms\":500,"
		"\"deselected\":\"aaaaaaa\",\"deselected_at\":203,\"deselected_connections\":200}\n"
		"{\"event\":\"forecast\",\"sha\":\"aaaaaaa\",\"t\":204,\"since_deselect_s\":1,"
		"\"eta_s\":20,\"eta_p90_s\":25,\"t99_s\":18,\"note\":null}\n"
		"{\"event\":\"forecast\",\"sha\":\"aaaaaaa\",\"t\":264,\"since_deselect_s\":61,"
		"\"eta_s\":1}\n"
		"{\"event\":\"remove\",\"sha\":\"aaaaaaa\",\"t\":230,\"why\":\"drained\"}\n");
	/* the count of aaaaaaa falls 200 -> 0; rows out of order, a bad one */
	write_text(dir, "timeline.csv",
		   "time,sha,connections,state\n"
		   "203.0,aaaaaaa,200,live\n"
		   "205.0,aaaaaaa,120,draining\n"
		   "204.0,aaaaaaa,150,draining\n"
		   "207.0,aaaaaaa,100,draining\n"
		   "209.0,aaaaaaa,30,draining\n"
		   "212.0,aaaaaaa,20,draining\n"
		   "nan,aaaaaaa,0,draining\n"
		   "213.0,aaaaaaa,-1,draining\n"
		   "215.0,aaaaaaa,2,draining\n"
		   "218.0,aaaaaaa,1,draining\n"
		   "224.0,aaaaaaa,0,draining\n"
		   "225.0,aaaaaaa,0,draining\n");
	assert_int_equal(report_build(dir, &rep, err, sizeof(err)), 0);
	assert_int_equal(json_array_size(json_object_get(rep, "drains")), 1);
	d = json_array_get(json_object_get(rep, "drains"), 0);
	assert_string_equal(json_string_value(json_object_get(d, "sha")), "aaaaaaa");
	assert_string_equal(json_string_value(json_object_get(d, "replaced_by")), "bbbbbbb");
	assert_string_equal(json_string_value(json_object_get(d, "outcome")), "drained");
	assert_near(get(d, "drain_from"), 200);
	assert_near(get(d, "drain_t50_s"), 4);	 /* 207: 100 <= 100 */
	assert_near(get(d, "drain_t90_s"), 9);	 /* 212: 20 <= 20 */
	assert_near(get(d, "drain_t99_s"), 12);	 /* 215: 2 <= 2 */
	assert_near(get(d, "drain_t100_s"), 21); /* 224 */
	assert_near(get(d, "forecast_made_s"), 1);
	assert_near(get(d, "forecast_at_switch_s"), 21);
	assert_near(get(d, "forecast_p90_at_switch_s"), 26);
	assert_near(get(d, "forecast_t99_at_switch_s"), 19);
	assert_near(get(d, "forecast_error_s"), 0);
	assert_near(get(d, "forecast_error_pct"), 0);
	assert_near(get(d, "forecast_t99_error_pct"), 58.3); /* 19 vs 12 */
	assert_int_equal(json_array_size(json_object_get(rep, "switches")), 2);
	s = json_array_get(json_object_get(rep, "switches"), 0);
	assert_near(get(s, "create_to_ready_s"), 2);
	assert_near(get(s, "ready_to_switch_s"), 0.25);
	s = json_array_get(json_object_get(rep, "switches"), 1);
	assert_near(get(s, "create_to_ready_s"), 3);
	assert_near(get(s, "ready_to_switch_s"), 0.5);
	assert_string_equal(json_string_value(json_object_get(s, "replaced")), "aaaaaaa");
	/* Markdown: a header row, an alignment row and one row per drain/switch */
	mf = open_memstream(&md, &len);
	assert_non_null(mf);
	report_print_md(mf, rep);
	fclose(mf);
	assert_non_null(strstr(md,
			       "| chat-aaaaaaa | chat-bbbbbbb | 200 | 4.0 s | 9.0 s | 12.0 s | "
			       "21.0 s | 21.0 s | 26.0 s | +0 % | 19.0 s | +58 % | drained |\n"));
	assert_non_null(strstr(md, "| chat-bbbbbbb | 3.00 s | 0.500 s |\n"));
	assert_null(strstr(md, "rm -rf"));
	free(md);
	json_decref(rep);
	rm_dir(dir);
}

static void test_old_records_rollback_and_missing(void **state)
{
	char dir[] = "/tmp/rb-report-XXXXXX";
	json_t *rep, *d;
	char err[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(report_build(dir, &rep, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no history"));
	/* selects without "deselected": the previous select is what they
	 * replaced, its count from the timeline; bbbbbbb is rolled back to
	 * before it reached 0; ccccccc never gets a forecast */
	write_text(dir, "record.jsonl",
		   "{\"event\":\"select\",\"sha\":\"aaaaaaa\",\"t\":10}\n"
		   "{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":20,\"since_obs_ms\":0}\n"
		   "{\"event\":\"select\",\"sha\":\"ccccccc\",\"t\":30}\n"
		   "{\"event\":\"scale\",\"sha\":\"bbbbbbb\",\"t\":35,\"replicas\":2,\"op_ms\":0}\n"
		   "{\"event\":\"select\",\"sha\":\"bbbbbbb\",\"t\":40,\"since_obs_ms\":1000}\n");
	write_text(dir, "timeline.csv",
		   "time,sha,connections,state\n"
		   "19.0,aaaaaaa,10,live\n"
		   "25.0,aaaaaaa,0,draining\n"
		   "29.0,bbbbbbb,8,live\n"
		   "33.0,bbbbbbb,4,draining\n"
		   "45.0,bbbbbbb,0,live\n");
	assert_int_equal(report_build(dir, &rep, err, sizeof(err)), 0);
	/* a->b, b->c, c->b */
	assert_int_equal(json_array_size(json_object_get(rep, "drains")), 3);
	d = json_array_get(json_object_get(rep, "drains"), 0);
	assert_near(get(d, "drain_from"), 10);
	assert_near(get(d, "drain_t100_s"), 5);
	assert_string_equal(json_string_value(json_object_get(d, "outcome")), "drained");
	assert_true(json_is_null(json_object_get(d, "forecast_at_switch_s")));
	assert_true(json_is_string(json_object_get(d, "forecast_note")));
	d = json_array_get(json_object_get(rep, "drains"), 1);
	assert_string_equal(json_string_value(json_object_get(d, "sha")), "bbbbbbb");
	assert_near(get(d, "drain_from"), 8);
	assert_near(get(d, "drain_t50_s"), 3);
	assert_true(get(d, "drain_t100_s") < 0); /* the 0 at 45 is after the rollback */
	assert_string_equal(json_string_value(json_object_get(d, "outcome")), "rolled-back");
	d = json_array_get(json_object_get(rep, "drains"), 2);
	assert_string_equal(json_string_value(json_object_get(d, "sha")), "ccccccc");
	assert_true(json_is_null(json_object_get(d, "drain_from")));
	assert_string_equal(json_string_value(json_object_get(d, "outcome")), "draining");
	/* the rollback's overhead counts from the scale-up */
	d = json_array_get(json_object_get(rep, "switches"), 3);
	assert_near(get(d, "create_to_ready_s"), 4);
	d = json_array_get(json_object_get(rep, "switches"), 1);
	assert_true(get(d, "create_to_ready_s") < 0);
	json_decref(rep);
	rm_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drain_and_forecast),
		cmocka_unit_test(test_old_records_rollback_and_missing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
