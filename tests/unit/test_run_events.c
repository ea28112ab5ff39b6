/*
 * Unit tests for the events that tell rainbow's decisions
 * (run_action_events() in deployer/run.c): real decisions of deploy_step()
 * on hand-made observations, mapped to the events the platform records
 * (kube: Kubernetes Events on the colour's Deployment). Each decision of the
 * deploy gets its CamelCase reason, type and a note with the numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../deployer/run.h"

#define NOW 1796000000000LL /* unix ms */
#define MAX_EVENTS 64

struct world {
	struct deploy_colour_obs col[8];
	struct platform_replica rep[8][4];
	struct deploy_obs obs;
};

/* A colour with n replicas, each ready or not, each holding conns. */
static struct deploy_colour_obs *add(struct world *w, const char *sha, int n, int ready, long conns)
{
	size_t i = w->obs.n++;
	struct deploy_colour_obs *c = &w->col[i];

	memset(c, 0, sizeof(*c));
	snprintf(c->c.sha, sizeof(c->c.sha), "%s", sha);
	c->c.replicas = n;
	c->c.ready = ready ? n : 0;
	for (int r = 0; r < n; r++) {
		snprintf(w->rep[i][r].name, sizeof(w->rep[i][r].name), "chat-%s-%d", sha, r);
		w->rep[i][r].ready = ready;
		w->rep[i][r].connections = conns;
	}
	c->rep = w->rep[i];
	c->n_rep = (size_t)n;
	w->obs.colours = w->col;
	return c;
}

static void meta(struct deploy_colour_obs *c, const char *k, const char *v)
{
	assert_int_equal(platform_meta_put(&c->c, k, v), 0);
}

static void world_init(struct world *w, const char *selected)
{
	memset(w, 0, sizeof(*w));
	w->obs.now_ms = NOW;
	snprintf(w->obs.selected, sizeof(w->obs.selected), "%s", selected);
}

static struct deploy_cfg cfg_for(enum deploy_mode mode, const char *sha, int replicas)
{
	struct deploy_cfg c = { 0 };

	c.mode = mode;
	snprintf(c.sha, sizeof(c.sha), "%s", sha);
	c.replicas = replicas;
	c.ready_timeout_ms = 60000;
	c.settle_ms = 0;
	c.keep_drained = -1;
	c.prune_window_ms = 1000;
	return c;
}

struct told {
	size_t n;
	char sha[MAX_EVENTS][PLATFORM_SHA_MAX];
	struct platform_event ev[MAX_EVENTS];
};

/* One decision step and the events its actions tell, in order. */
static void step(const struct deploy_cfg *cfg, struct world *w, int64_t waited_ms, struct told *t)
{
	static struct deploy_mem mem;
	static struct deploy_result res;

	deploy_mem_init(&mem);
	deploy_step(cfg, &w->obs, &mem, &res);
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < res.n_act; i++) {
		struct platform_event ev[RUN_EVENTS_MAX];
		size_t n = run_action_events(cfg, &w->obs, &res.act[i], waited_ms, ev);

		for (size_t j = 0; j < n; j++) {
			assert_true(t->n < MAX_EVENTS);
			snprintf(t->sha[t->n], sizeof(t->sha[0]), "%s", res.act[i].sha);
			t->ev[t->n++] = ev[j];
		}
	}
}

/* Asserts event i: colour, type, reason, and that the note contains each of ... */
static void expect(const struct told *t, size_t i, const char *sha, const char *type,
		   const char *reason, const char *note_part)
{
	assert_true(i < t->n);
	assert_string_equal(t->sha[i], sha);
	assert_string_equal(t->ev[i].type, type);
	assert_string_equal(t->ev[i].reason, reason);
	assert_non_null(t->ev[i].action);
	assert_true(t->ev[i].action[0] >= 'A' && t->ev[i].action[0] <= 'Z');
	if (!strstr(t->ev[i].note, note_part))
		fail_msg("note \"%s\" lacks \"%s\"", t->ev[i].note, note_part);
}

static void test_create(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 3);
	struct world w;
	struct told t;

	(void)state;
	world_init(&w, "aaaaaaa");
	add(&w, "aaaaaaa", 2, 1, 5);
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 1);
	expect(&t, 0, "bbbbbbb", "Normal", "Created", "created chat-bbbbbbb with 3 replicas");
}

static void test_switch(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 2);
	struct world w;
	struct told t;

	(void)state;
	world_init(&w, "aaaaaaa");
	add(&w, "aaaaaaa", 2, 1, 5);
	add(&w, "bbbbbbb", 2, 1, 0);
	step(&cfg, &w, 4200, &t);
	assert_int_equal(t.n, 3);
	expect(&t, 0, "bbbbbbb", "Normal", "Ready", "2 of 2 replicas ready after 4.2s");
	expect(&t, 1, "bbbbbbb", "Normal", "Switched",
	       "new connections switched from chat-aaaaaaa (10 connections) to chat-bbbbbbb");
	expect(&t, 2, "aaaaaaa", "Normal", "Draining",
	       "no longer selected, 10 connections left to drain (new connections go to "
	       "chat-bbbbbbb)");

	/* Not waited for (a re-run finds it ready): no Ready event. */
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "bbbbbbb", "Normal", "Switched", "from chat-aaaaaaa");

	/* The first colour of all: switched from nothing. */
	world_init(&w, "");
	add(&w, "bbbbbbb", 2, 1, 0);
	step(&cfg, &w, 100, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 1, "bbbbbbb", "Normal", "Switched", "switched from nothing to chat-bbbbbbb");
}

static void test_drained(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 2);
	struct deploy_colour_obs *a;
	struct world w;
	struct told t;

	(void)state;
	cfg.settle_ms = 5000;
	world_init(&w, "bbbbbbb");
	a = add(&w, "aaaaaaa", 2, 1, 0);
	add(&w, "bbbbbbb", 2, 1, 3);
	meta(a, PLATFORM_META_DRAINING_SINCE, "1795999880.000");
	meta(a, PLATFORM_META_DRAIN_FROM, "57");
	/* The settle clock starts at this step: nothing yet. */
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 0);
	cfg.settle_ms = 0;
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "aaaaaaa", "Normal", "Drained",
	       "drained in 120.0s (57 connections at the switch)");
	expect(&t, 1, "aaaaaaa", "Normal", "Deleted", "deleted: drained");

	/* --keep-drained: drained, then kept at 0 replicas. */
	cfg.keep_drained = 2;
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "aaaaaaa", "Normal", "Drained", "drained in 120.0s");
	expect(&t, 1, "aaaaaaa", "Normal", "Kept",
	       "scaled from 2 to 0 replicas and kept for rollback (--keep-drained 2)");
}

static void test_max_drain(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 2);
	struct deploy_colour_obs *a;
	struct world w;
	struct told t;

	(void)state;
	cfg.max_drain_ms = 60000;
	world_init(&w, "bbbbbbb");
	a = add(&w, "aaaaaaa", 1, 1, 4);
	add(&w, "bbbbbbb", 2, 1, 3);
	meta(a, PLATFORM_META_DRAINING_SINCE, "1795999900.000");
	cfg.on_max_drain = DEPLOY_ON_MAX_KEEP;
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 1);
	expect(&t, 0, "aaaaaaa", "Warning", "MaxDrainReached",
	       "still 4 connections after 100.0s of draining (--max-drain 60s): left running");
	cfg.on_max_drain = DEPLOY_ON_MAX_SHUTDOWN;
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "aaaaaaa", "Warning", "MaxDrainReached",
	       "still 4 connections after 100.0s of draining (--max-drain 60s): shut down");
	expect(&t, 1, "aaaaaaa", "Warning", "Deleted",
	       "deleted with 4 connections (--on-max-drain shutdown)");
}

static void test_shrink(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 2);
	struct deploy_colour_obs *a;
	struct world w;
	struct told t;

	(void)state;
	cfg.shrink = 1;
	world_init(&w, "bbbbbbb");
	a = add(&w, "aaaaaaa", 3, 1, 0);
	add(&w, "bbbbbbb", 2, 1, 3);
	meta(a, PLATFORM_META_DRAINING_SINCE, "1795999900.000");
	w.rep[0][1].connections = 7; /* chat-aaaaaaa-1 is busy */
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "aaaaaaa", "Normal", "Shrunk",
	       "removed replica chat-aaaaaaa-0: 0 connections for the settle period (0.0s); "
	       "the colour holds 7 connections on its other replicas");
	expect(&t, 1, "aaaaaaa", "Normal", "Shrunk", "removed replica chat-aaaaaaa-2");
}

static void test_rollback(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_ROLLBACK, "aaaaaaa", 0);
	struct deploy_colour_obs *a;
	struct world w;
	struct told t;

	(void)state;
	world_init(&w, "bbbbbbb");
	a = add(&w, "aaaaaaa", 0, 0, 0);
	add(&w, "bbbbbbb", 2, 1, 9);
	meta(a, PLATFORM_META_DRAINING_SINCE, "1795999000.000");
	meta(a, PLATFORM_META_DRAINED_AT, "1795999100.000");
	meta(a, PLATFORM_META_KEPT, "1");
	meta(a, PLATFORM_META_REPLICAS, "2");
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 1);
	expect(&t, 0, "aaaaaaa", "Normal", "ScaledUp",
	       "rollback: kept colour scaled from 0 to 2 replicas");
	/* Scaled up and ready: the switch back. */
	world_init(&w, "bbbbbbb");
	a = add(&w, "aaaaaaa", 2, 1, 0);
	add(&w, "bbbbbbb", 2, 1, 9);
	meta(a, PLATFORM_META_REPLICAS, "2");
	step(&cfg, &w, 1500, &t);
	assert_int_equal(t.n, 3);
	expect(&t, 0, "aaaaaaa", "Normal", "Ready", "2 of 2 replicas ready after 1.5s");
	expect(&t, 1, "aaaaaaa", "Normal", "RolledBack",
	       "rollback: new connections switched from chat-bbbbbbb (18 connections) to "
	       "chat-aaaaaaa");
	expect(&t, 2, "bbbbbbb", "Normal", "Draining", "18 connections left to drain");
}

static void test_failed(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 2);
	struct deploy_colour_obs *b;
	struct world w;
	struct told t;

	(void)state;
	cfg.ready_timeout_ms = 0;
	world_init(&w, "aaaaaaa");
	add(&w, "aaaaaaa", 1, 1, 2);
	add(&w, "bbbbbbb", 2, 0, 0);
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 1);
	expect(&t, 0, "bbbbbbb", "Warning", "Deleted", "deleted: it never became ready");

	/* A kept failed colour replaced by a fresh attempt. */
	b = &w.col[1];
	meta(b, PLATFORM_META_FAILED, "not ready before --ready-timeout");
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 1);
	expect(&t, 0, "bbbbbbb", "Warning", "Deleted",
	       "never became ready in an earlier attempt; a fresh attempt follows");
}

static void test_prune(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_PRUNE, "", 0);
	struct deploy_colour_obs *c;
	struct world w;
	struct told t;

	(void)state;
	cfg.keep_drained = 1;
	world_init(&w, "aaaaaaa");
	add(&w, "aaaaaaa", 1, 1, 2);
	c = add(&w, "bbbbbbb", 0, 0, 0);
	meta(c, PLATFORM_META_DRAINED_AT, "1795999000.000");
	meta(c, PLATFORM_META_DRAINING_SINCE, "1795998000.000");
	c = add(&w, "ccccccc", 0, 0, 0);
	meta(c, PLATFORM_META_DRAINED_AT, "1795999500.000");
	meta(c, PLATFORM_META_DRAINING_SINCE, "1795998000.000");
	c = add(&w, "ddddddd", 1, 0, 0);
	meta(c, PLATFORM_META_FAILED, "not ready before --ready-timeout");
	step(&cfg, &w, -1, &t);
	assert_int_equal(t.n, 2);
	expect(&t, 0, "ddddddd", "Normal", "Deleted",
	       "deleted by prune: a failed colour kept with --keep-failed");
	/* The older of the two kept colours goes. */
	expect(&t, 1, "bbbbbbb", "Normal", "Deleted",
	       "deleted: more kept colours than --keep-drained 1");
}

static void test_meta_clears_tell_nothing(void **state)
{
	struct deploy_cfg cfg = cfg_for(DEPLOY_MODE_DEPLOY, "bbbbbbb", 1);
	struct deploy_act a = { 0 };
	struct platform_event ev[RUN_EVENTS_MAX];
	struct world w;

	(void)state;
	world_init(&w, "bbbbbbb");
	add(&w, "bbbbbbb", 1, 1, 0);
	a.kind = DEPLOY_ACT_META;
	snprintf(a.sha, sizeof(a.sha), "bbbbbbb");
	snprintf(a.key, sizeof(a.key), "%s", PLATFORM_META_DRAINING_SINCE);
	a.has_value = 0;
	assert_int_equal(run_action_events(&cfg, &w.obs, &a, -1, ev), 0);
	snprintf(a.key, sizeof(a.key), "%s", PLATFORM_META_SELECTED_AT);
	a.has_value = 1;
	assert_int_equal(run_action_events(&cfg, &w.obs, &a, -1, ev), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_switch),
		cmocka_unit_test(test_drained),
		cmocka_unit_test(test_max_drain),
		cmocka_unit_test(test_shrink),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_failed),
		cmocka_unit_test(test_prune),
		cmocka_unit_test(test_meta_clears_tell_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
