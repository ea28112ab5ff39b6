/* Unit tests for chatload's pure parts: loadgen/hist.c, loadgen/msgtrack.c,
 * loadgen/opts.c, the report merge of loadgen/stats.c and the accountant of
 * split runs (loadgen/account.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../loadgen/account.h"
#include "../../loadgen/hist.h"
#include "../../loadgen/msgtrack.h"
#include "../../loadgen/opts.h"
#include "../../loadgen/stats.h"

static void test_hist_buckets(void **state)
{
	uint64_t prev_high = 0;

	(void)state;
	/* Exact below 128; every bucket's range follows the previous one. */
	for (uint64_t v = 0; v < 128; v++) {
		assert_int_equal(hist_index(v), v);
		assert_int_equal(hist_bucket_high(hist_index(v)), v);
	}
	for (unsigned i = 1; i < HIST_BUCKETS - 1; i++) {
		uint64_t high = hist_bucket_high(i);
		assert_true(high > prev_high || i == 1);
		assert_int_equal(hist_index(high), i);
		assert_int_equal(hist_index(high + 1), i + 1);
		prev_high = high;
	}
	/* Relative error below 1/64 above the exact range. */
	for (uint64_t v = 128; v < (1ULL << 40); v = v * 3 + 7) {
		uint64_t high = hist_bucket_high(hist_index(v));
		assert_true(high >= v);
		assert_true((double)(high - v) / (double)v < 1.0 / 64);
	}
	assert_int_equal(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
}

static void test_hist_quantiles(void **state)
{
	struct hist *h = malloc(sizeof(*h));

	(void)state;
	hist_init(h);
	assert_int_equal(hist_quantile(h, 0.5), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		hist_record(h, v * 1000);
	assert_int_equal(h->count, 1000);
	assert_int_equal(h->min, 1000);
	assert_int_equal(h->max, 1000000);
	/* p50 is the 500th value (500000) within the bucket's precision. */
	assert_true(hist_quantile(h, 0.5) >= 500000 && hist_quantile(h, 0.5) < 508000);
	assert_true(hist_quantile(h, 0.99) >= 990000 && hist_quantile(h, 0.99) < 1006000);
	assert_int_equal(hist_quantile(h, 1.0), 1000000);
	assert_int_equal(hist_quantile(h, 0), 1000);
	free(h);
}

static void test_msgtrack_fates(void **state)
{
	struct stats *st = stats_new();
	struct msgtrack mt;
	uint64_t a, b, c, d, e;

	(void)state;
	msgtrack_init(&mt, st, 1.0);
	unsigned v1 = stats_version_index(st, "v1"), v2 = stats_version_index(st, "v2");
	a = msgtrack_send(&mt, 1000, v1, v2, 0);
	b = msgtrack_send(&mt, 2000, v1, v1, 0);
	c = msgtrack_send(&mt, 3000, v2, v1, 0);
	d = msgtrack_send(&mt, 4000, v1, MSGTRACK_NO_VERSION, 0);
	e = msgtrack_send(&mt, 5000, v2, v2, 0);
	assert_int_equal(a, 1);
	assert_int_equal(e, 5);
	assert_int_equal(mt.npending, 5);
	msgtrack_received(&mt, b, 2500, 0);   /* delivered, 500 us */
	msgtrack_received(&mt, b, 2600, 0);   /* duplicate */
	msgtrack_bounced(&mt, d);	      /* bounced */
	msgtrack_bounced(&mt, b);	      /* bounce after delivery: nothing */
	msgtrack_received(&mt, 999, 3000, 0); /* never sent: foreign */
	msgtrack_expire(&mt, 1000 + 999999);  /* nothing old enough */
	assert_int_equal(st->messages_lost, 0);
	msgtrack_expire(&mt, 1000 + 1000000); /* a is a second old: lost */
	assert_int_equal(st->messages_lost, 1);
	msgtrack_received(&mt, a, 1000 + 1000001, 0); /* late */
	msgtrack_received(&mt, c, 3000 + 20000, 0);   /* delivered, 20 ms */
	msgtrack_expire_all(&mt);		      /* e: lost at the end */
	assert_int_equal(st->messages_sent, 5);
	assert_int_equal(st->messages_delivered, 2);
	assert_int_equal(st->messages_duplicated, 1);
	assert_int_equal(st->messages_bounced, 1);
	assert_int_equal(st->messages_lost, 2);
	assert_int_equal(st->messages_late, 1);
	assert_int_equal(st->messages_foreign, 1);
	assert_int_equal(st->messages_offline, 1);
	assert_int_equal(mt.npending, 0);
	assert_int_equal(st->latency_us.count, 2);
	assert_int_equal(st->latency_us.min, 500);
	assert_int_equal(st->latency_us.max, 20000);
	assert_int_equal(st->pairs[v1][v2].sent, 1);
	assert_int_equal(st->pairs[v1][v2].lost, 1);
	assert_int_equal(st->pairs[v1][v1].delivered, 1);
	assert_int_equal(st->pairs[v1][v1].duplicated, 1);
	assert_int_equal(st->pairs[v2][v1].delivered, 1);
	assert_int_equal(st->pairs[v2][v2].lost, 1);
	msgtrack_free(&mt);
	stats_free(st);
}

static void test_msgtrack_many(void **state)
{
	struct stats *st = stats_new();
	struct msgtrack mt;
	uint64_t now = 0;

	(void)state;
	/* 300,000 messages through a 1 s window: the pending array stays the
	 * window's size, and every state is kept. */
	msgtrack_init(&mt, st, 1.0);
	for (uint64_t i = 1; i <= 300000; i++) {
		now += 10; /* 100,000 per second */
		assert_int_equal(msgtrack_send(&mt, now, 0, 0, 0), i);
		if (i > 50 && i % 7 != 0)
			msgtrack_received(&mt, i - 50, now, 0);
		msgtrack_expire(&mt, now);
	}
	assert_true(mt.len - mt.off <= 100001);
	msgtrack_received(&mt, 100, now, 0);
	assert_int_equal(st->messages_duplicated, 1);
	msgtrack_expire_all(&mt);
	assert_int_equal(st->messages_delivered + st->messages_lost, 300000);
	msgtrack_free(&mt);
	stats_free(st);
}

/* A duplicate of the oldest message (nothing older still pending) counts in
 * its version pair too, as long as it comes within the loss timeout. */
static void test_msgtrack_duplicate_pair(void **state)
{
	struct stats *st = stats_new();
	struct msgtrack mt;
	uint64_t a;

	(void)state;
	msgtrack_init(&mt, st, 1.0);
	unsigned v1 = stats_version_index(st, "v1"), v2 = stats_version_index(st, "v2");
	a = msgtrack_send(&mt, 1000, v1, v2, 0);
	msgtrack_received(&mt, a, 2000, 0);
	msgtrack_expire(&mt, 3000);
	msgtrack_received(&mt, a, 4000, 0);
	msgtrack_send(&mt, 5000, v2, v2, 0);
	msgtrack_received(&mt, a, 6000, 0);
	assert_int_equal(st->messages_duplicated, 2);
	assert_int_equal(st->pairs[v1][v2].delivered, 1);
	assert_int_equal(st->pairs[v1][v2].duplicated, 2);
	msgtrack_expire_all(&mt);
	assert_int_equal(st->messages_lost, 1);
	assert_int_equal(st->pairs[v2][v2].lost, 1);
	assert_int_equal(mt.npending, 0);
	msgtrack_free(&mt);
	stats_free(st);
}

/* A message that arrives at a client other than the one it was addressed
 * to is counted misdelivered; it stays pending for its addressee (and is
 * lost if it never gets there). */
static void test_msgtrack_misdelivered(void **state)
{
	struct stats *st = stats_new();
	struct msgtrack mt;
	uint64_t a, b;

	(void)state;
	msgtrack_init(&mt, st, 1.0);
	a = msgtrack_send(&mt, 1000, 0, 0, 7);
	b = msgtrack_send(&mt, 2000, 0, 0, 8);
	msgtrack_received(&mt, a, 1500, 3); /* client 3 got client 7's */
	assert_int_equal(st->messages_misdelivered, 1);
	assert_int_equal(st->messages_delivered, 0);
	assert_int_equal(mt.npending, 2);
	msgtrack_received(&mt, a, 1600, 7); /* the addressee's copy */
	msgtrack_received(&mt, a, 1700, 3); /* wrong again, after delivery */
	msgtrack_received(&mt, b, 2500, 9); /* b only reaches client 9 */
	msgtrack_expire_all(&mt);
	assert_int_equal(st->messages_misdelivered, 3);
	assert_int_equal(st->messages_delivered, 1);
	assert_int_equal(st->messages_duplicated, 0);
	assert_int_equal(st->messages_lost, 1);
	assert_int_equal(st->latency_us.count, 1);
	assert_int_equal(mt.npending, 0);
	msgtrack_free(&mt);
	stats_free(st);
}

static void test_opts_durations_lifetimes(void **state)
{
	double d;
	struct lifetime l;
	const char *why;

	(void)state;
	assert_int_equal(opts_parse_duration("500ms", &d), 0);
	assert_true(d == 0.5);
	assert_int_equal(opts_parse_duration("2m", &d), 0);
	assert_true(d == 120);
	assert_int_equal(opts_parse_duration("1.5", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(opts_parse_duration("1h", &d), 0);
	assert_true(d == 3600);
	assert_int_equal(opts_parse_duration("5x", &d), -EINVAL);
	assert_int_equal(opts_parse_duration("-1s", &d), -EINVAL);
	assert_int_equal(opts_parse_duration("", &d), -EINVAL);

	assert_int_equal(opts_parse_lifetime("none", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 0.5) < 0);
	assert_int_equal(opts_parse_lifetime("fixed:60s", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 0.3) == 60);
	assert_int_equal(opts_parse_lifetime("uniform:30s-90s", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 0.0) == 30);
	assert_true(opts_lifetime_draw(&l, 0.5) == 60);
	assert_int_equal(opts_parse_lifetime("exp:10s", &l, &why), 0);
	assert_true(opts_lifetime_draw(&l, 0.0) == 0);
	assert_true(opts_lifetime_draw(&l, 0.6321205588) > 9.99);
	assert_true(opts_lifetime_draw(&l, 0.6321205588) < 10.01);
	for (const char *const *bad =
		     (const char *const[]){ "fixed", "fixed:", "fixed:0s", "exp:-3s", "uniform:5s",
					    "uniform:9s-3s", "gauss:1s", "uniform:1s-x", NULL };
	     *bad; bad++)
		assert_int_equal(opts_parse_lifetime(*bad, &l, &why), -EINVAL);
}

static int parse(struct load_opts *o, FILE *err, int argc, char **argv)
{
	return opts_parse(o, argc, argv, err);
}

static void test_opts_parse(void **state)
{
	struct load_opts o;
	char buf[64];
	FILE *err = tmpfile();

	(void)state;
	char *ok[] = { "chatload",
		       "--server",
		       "127.0.0.1:5222",
		       "--server",
		       "[::1]:5223",
		       "--clients",
		       "100",
		       "--ramp",
		       "50/s",
		       "--source-ips",
		       "127.0.0.2-127.0.0.20",
		       "--user-pattern",
		       "u%%%d",
		       "--lifetime",
		       "exp:30s",
		       "--workers",
		       "4",
		       "--duration",
		       "2m",
		       NULL };
	assert_int_equal(parse(&o, err, 19, ok), 0);
	assert_int_equal(o.nservers, 2);
	assert_int_equal(o.clients, 100);
	assert_true(o.ramp == 50);
	assert_int_equal(o.src_last - o.src_first, 18);
	assert_int_equal(o.workers, 4);
	assert_true(o.duration == 120);
	assert_int_equal(o.lifetime.kind, LIFETIME_EXP);
	opts_user_name(&o, 42, buf, sizeof(buf));
	assert_string_equal(buf, "u%42");

	char *unknown[] = { "chatload", "--nope", NULL };
	assert_int_equal(parse(&o, err, 2, unknown), 2);
	char *missing[] = { "chatload", "--clients", NULL };
	assert_int_equal(parse(&o, err, 2, missing), 2);
	char *pattern[] = { "chatload", "--user-pattern", "u%s%d", NULL };
	assert_int_equal(parse(&o, err, 3, pattern), 2);
	char *workers[] = { "chatload", "--clients", "2", "--workers", "3", NULL };
	assert_int_equal(parse(&o, err, 5, workers), 2);
	fclose(err);
}

/* Two partial reports merged give the sums, the union of versions, and a
 * timeline whose shorter part carries its counters forward. */
static void test_stats_merge(void **state)
{
	struct stats *a = stats_new(), *b = stats_new(), *m = stats_new();
	json_t *ja, *jb;

	(void)state;
	unsigned va = stats_version_index(a, "v1");
	a->connections = 10;
	a->closed_by_client = 7;
	a->dropped = 3;
	stats_names_add(&a->drop_reasons, "eof", 3);
	a->logins = 10;
	a->versions[va].logins = 10;
	a->versions[va].connected = 4;
	a->connected = 4;
	a->connected_peak = 6;
	a->pairs[va][va].sent = 5;
	hist_record(&a->latency_us, 1000);
	stats_sample(a, 1);
	a->logins = 12;
	stats_sample(a, 2);

	unsigned vb2 = stats_version_index(b, "v2"), vb1 = stats_version_index(b, "v1");
	b->connections = 5;
	b->closed_by_server = 5;
	stats_names_add(&b->server_conditions, "system-shutdown", 5);
	b->logins = 5;
	b->versions[vb2].connected = 2;
	b->versions[vb1].connected = 1;
	b->connected = 3;
	b->connected_peak = 3;
	b->pairs[vb2][vb1].sent = 2;
	hist_record(&b->latency_us, 3000);
	stats_sample(b, 1);

	stats_mark_end(a);
	stats_mark_end(b);
	ja = stats_report_json(a, NULL);
	jb = stats_report_json(b, NULL);
	assert_int_equal(stats_merge_json(m, ja), 0);
	assert_int_equal(stats_merge_json(m, jb), 0);
	assert_int_equal(m->connections, 15);
	assert_int_equal(m->dropped, 3);
	assert_int_equal(m->closed_by_server, 5);
	assert_int_equal(m->server_conditions.n, 1);
	assert_int_equal(m->server_conditions.e[0].count, 5);
	assert_int_equal(m->nversions, 2);
	assert_int_equal(m->versions[0].connected, 5); /* v1: 4 + 1 */
	assert_int_equal(m->versions[1].connected, 2); /* v2 */
	assert_int_equal(m->connected, 7);
	assert_int_equal(m->connected_peak, 7); /* second 1: 4 + 3 */
	assert_int_equal(m->pairs[0][0].sent, 5);
	assert_int_equal(m->pairs[1][0].sent, 2);
	assert_int_equal(m->latency_us.count, 2);
	assert_int_equal(m->latency_us.max, 3000);
	assert_int_equal(m->nrows, 2);
	assert_int_equal(m->rows[0].logins, 15);
	assert_int_equal(m->rows[1].logins, 17); /* b's 5 carried forward */
	json_decref(ja);
	json_decref(jb);
	stats_free(a);
	stats_free(b);
	stats_free(m);
}

/* The report's verdict: "ok" is false when no client ever logged in (exit 1
 * then too), and true again once one did. */
static void test_stats_ok_needs_a_login(void **state)
{
	struct load_opts o;
	struct stats *s = stats_new();
	FILE *err = tmpfile();
	char *argv[] = { "chatload", NULL };
	json_t *r;

	(void)state;
	assert_int_equal(parse(&o, err, 1, argv), 0);
	s->connections = 3;
	s->connect_failures = 3;
	assert_false(stats_expectations_ok(s, &o, NULL));
	r = stats_report_json(s, &o);
	assert_true(json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	s->connections = 4;
	s->logins = 1;
	s->closed_by_client = 1;
	r = stats_report_json(s, &o);
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	stats_free(s);
	fclose(err);
}

/* ramp_s of a merge is null when one worker never had all its clients
 * connected at once: the whole run never did either. */
static void test_stats_merge_ramp_never(void **state)
{
	struct stats *a = stats_new(), *b = stats_new(), *m = stats_new();
	json_t *ja, *jb, *jm;

	(void)state;
	a->ramp_s = 1.5;
	ja = stats_report_json(a, NULL);
	jb = stats_report_json(b, NULL);
	assert_int_equal(stats_merge_json(m, ja), 0);
	assert_int_equal(stats_merge_json(m, jb), 0);
	jm = stats_report_json(m, NULL);
	assert_true(json_is_null(json_object_get(jm, "ramp_s")));
	json_decref(jm);
	stats_free(m);
	/* In the other order too. */
	m = stats_new();
	assert_int_equal(stats_merge_json(m, jb), 0);
	assert_int_equal(stats_merge_json(m, ja), 0);
	jm = stats_report_json(m, NULL);
	assert_true(json_is_null(json_object_get(jm, "ramp_s")));
	json_decref(jm);
	json_decref(ja);
	json_decref(jb);
	stats_free(a);
	stats_free(b);
	stats_free(m);
}

/* connected_end is what was established when the run ended, before the
 * final logout took every gauge back to 0; merged as a sum. */
static void test_stats_connected_end(void **state)
{
	struct stats *a = stats_new(), *m = stats_new();
	json_t *ja, *v;
	unsigned va;

	(void)state;
	va = stats_version_index(a, "v1");
	stats_instance_index(a, va, "i1");
	a->connected = 4;
	a->versions[va].connected = 4;
	a->instances[0].connected = 4;
	stats_mark_end(a);
	a->connected = 0; /* the final logout */
	a->versions[va].connected = 0;
	a->instances[0].connected = 0;
	ja = stats_report_json(a, NULL);
	assert_int_equal(json_integer_value(json_object_get(ja, "connected_end")), 4);
	v = json_object_get(json_object_get(ja, "per_version"), "v1");
	assert_int_equal(json_integer_value(json_object_get(v, "connected_end")), 4);
	v = json_object_get(json_object_get(v, "instances"), "i1");
	assert_int_equal(json_integer_value(json_object_get(v, "connected_end")), 4);
	assert_int_equal(stats_merge_json(m, ja), 0);
	assert_int_equal(stats_merge_json(m, ja), 0);
	json_decref(ja);
	ja = stats_report_json(m, NULL);
	assert_int_equal(json_integer_value(json_object_get(ja, "connected_end")), 8);
	v = json_object_get(json_object_get(ja, "per_version"), "v1");
	assert_int_equal(json_integer_value(json_object_get(v, "connected_end")), 8);
	json_decref(ja);
	stats_free(a);
	stats_free(m);
}

static int acct_rec(struct account *a, unsigned gw, const char *rec)
{
	char line[256];

	snprintf(line, sizeof(line), "%s", rec);
	return account_record(a, gw, line);
}

/* Two workers, two clients each (0-1 on worker 0, 2-3 on worker 1); loss
 * timeout 1 s; times in microseconds. */
static void test_account_exact(void **state)
{
	char *argv[] = { "chatload", "--clients", "4", "--workers", "2", "--loss-timeout", "1" };
	struct load_opts o;
	struct account *a;
	struct stats *st;
	struct wire w;
	int sp[2];

	(void)state;
	assert_int_equal(opts_parse(&o, 7, argv, stderr), 0);
	a = account_new(&o);
	assert_non_null(a);
	st = account_stats(a);
	assert_int_equal(acct_rec(a, 0, "V 0 v1"), 0);
	assert_int_equal(acct_rec(a, 1, "V 0 v2"), 0);
	assert_int_equal(acct_rec(a, 0, "E 0 0 user0@x/r0"), 0);
	assert_int_equal(acct_rec(a, 1, "E 2 0 user2@x/r0"), 0);
	/* Worker 1's client got message 1 of worker 0 before worker 0's send
	 * record was read: it waits for it, then is delivered in 2 ms. */
	assert_int_equal(acct_rec(a, 1, "R 0 1 2 1002000"), 0);
	assert_int_equal(acct_rec(a, 0, "S 1 2 0 1000000"), 0);
	assert_int_equal(st->messages_delivered, 1);
	assert_int_equal(st->cross.sent, 1);
	assert_int_equal(st->cross.delivered, 1);
	assert_int_equal(st->pairs[0][1].delivered, 1); /* v1 -> v2 */
	/* Message 2 to client 1 (same worker, not established: no pair). */
	assert_int_equal(acct_rec(a, 0, "S 2 1 0 1100000"), 0);
	/* Message 3 to client 2, lost; message 4 bounced; 5 to a user never
	 * online (offline). */
	assert_int_equal(acct_rec(a, 0, "S 3 2 0 1200000"), 0);
	assert_int_equal(acct_rec(a, 0, "S 4 2 0 1300000"), 0);
	assert_int_equal(acct_rec(a, 0, "B 4"), 0);
	assert_int_equal(acct_rec(a, 0, "S 5 9 0 1400000"), 0);
	assert_int_equal(st->messages_offline, 1);
	assert_int_equal(st->messages_bounced, 1);
	/* Worker 0's clock is past 3 s, worker 1's only at 2.15 s: message 2
	 * (sent at 1.1 s) is judged, message 3 not yet (worker 1 may still
	 * report its arrival). */
	assert_int_equal(acct_rec(a, 0, "T 3000000"), 0);
	assert_int_equal(acct_rec(a, 1, "T 2150000"), 0);
	account_expire(a);
	assert_int_equal(st->messages_lost, 1);
	assert_false(account_settled(a));
	/* Arrived in time (2.19 s < 1.2 s + 1 s): delivered, however late told. */
	assert_int_equal(acct_rec(a, 1, "R 0 3 2 2190000"), 0);
	assert_int_equal(st->messages_delivered, 2);
	/* Its copy later: a duplicate; message 2 arrives late: stays lost. */
	assert_int_equal(acct_rec(a, 1, "R 0 3 2 2300000"), 0);
	assert_int_equal(acct_rec(a, 0, "R 0 2 1 2400000"), 0);
	assert_int_equal(st->messages_duplicated, 1);
	assert_int_equal(st->messages_late, 1);
	/* Arrived at the wrong client, and a foreign id. */
	assert_int_equal(acct_rec(a, 0, "S 6 3 0 2500000"), 0);
	assert_int_equal(acct_rec(a, 1, "R 0 6 2 2501000"), 0);
	assert_int_equal(st->messages_misdelivered, 1);
	assert_int_equal(acct_rec(a, 1, "R 7 1 2 2501000"), 0);
	assert_int_equal(st->messages_foreign, 1);
	/* A target sample for worker 0 names worker 1's clients only. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	wire_init(&w, sp[0], 4096);
	account_sample(a, 0, &w);
	wire_put(&w, "", 1);
	assert_true(w.outlen > 1);
	assert_non_null(strstr(w.out, "A 1 "));
	assert_non_null(strstr(w.out, "a 2 user2@x/r0\n"));
	assert_null(strstr(w.out, "user0"));
	wire_close(&w);
	close(sp[1]);
	/* Both stopped sending; worker 1 finished: messages 5 (offline, never
	 * bounced) and 6 (misdelivered, never at its addressee) are lost. */
	assert_int_equal(acct_rec(a, 0, "D"), 0);
	account_worker_gone(a, 1);
	assert_false(account_settled(a));
	assert_int_equal(acct_rec(a, 0, "T 4000000"), 0);
	account_expire(a);
	assert_true(account_settled(a));
	account_finish(a);
	assert_int_equal(st->messages_sent, 6);
	assert_int_equal(st->messages_lost, 3);
	assert_int_equal(st->messages_delivered + st->messages_lost + st->messages_bounced,
			 st->messages_sent);
	assert_int_equal(st->cross.sent, 4); /* 1, 3, 4, 6 */
	assert_int_equal(st->cross.delivered, 2);
	assert_int_equal(st->cross.lost, 1);
	account_free(a);
}

static void test_account_bad_records(void **state)
{
	char *argv[] = { "chatload", "--clients", "4", "--workers", "2" };
	const char *bad[] = {
		"S 2 1 0 5",	  /* ids start at 1 */
		"S 1 1 7 5",	  /* version never announced */
		"E 2 0 u@x/r",	  /* not a client of worker 0 */
		"X 3",		  /* neither */
		"V 1 v",	  /* labels are announced in order */
		"T x",		  /* not a number */
		"R 0 1 2",	  /* a field missing */
		"Z",		  /* unknown record */
		"S 1 1 0 5 junk", /* trailing junk */
		"S 1 -1 0 5",	  /* not unsigned */
	};
	struct load_opts o;
	struct account *a;

	(void)state;
	assert_int_equal(opts_parse(&o, 5, argv, stderr), 0);
	a = account_new(&o);
	assert_non_null(a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(acct_rec(a, 0, bad[i]), -EINVAL);
	account_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_quantiles),
		cmocka_unit_test(test_msgtrack_fates),
		cmocka_unit_test(test_msgtrack_many),
		cmocka_unit_test(test_msgtrack_duplicate_pair),
		cmocka_unit_test(test_msgtrack_misdelivered),
		cmocka_unit_test(test_opts_durations_lifetimes),
		cmocka_unit_test(test_opts_parse),
		cmocka_unit_test(test_stats_merge),
		cmocka_unit_test(test_stats_ok_needs_a_login),
		cmocka_unit_test(test_stats_merge_ramp_never),
		cmocka_unit_test(test_stats_connected_end),
		cmocka_unit_test(test_account_exact),
		cmocka_unit_test(test_account_bad_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
