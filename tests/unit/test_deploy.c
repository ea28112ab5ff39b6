/*
 * The deploy state machine against a simulated platform: actions are applied
 * to an in-memory world whose replicas become ready after a delay and whose
 * connection counts the tests set; kills are simulated by dropping the
 * volatile memory and applying only a prefix of a step's actions.
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

#include "../../deployer/cli.h"
#include "../../deployer/deploy.h"

#define SIM_COLOURS 16
#define SIM_REPS 8

struct sim_colour {
	struct platform_colour c;
	struct platform_replica rep[SIM_REPS];
	size_t n_rep;
	int next_rep;
};

struct sim {
	int64_t now;
	int64_t ready_delay;
	char never_ready[PLATFORM_SHA_MAX];
	char selected[PLATFORM_SHA_MAX];
	size_t n;
	struct sim_colour col[SIM_COLOURS];
	/* obs buffers */
	struct deploy_colour_obs obs_col[SIM_COLOURS];
	/* invariants */
	int removed_with_conns; /* colours removed holding connections (not shutdown) */
	int replica_removed_with_conns;
	int selected_unready;
	int n_removed;
	int n_select;
	char removed[SIM_COLOURS * 4][PLATFORM_SHA_MAX];
	int64_t last_drain_ms;
	/* assisted drain: every batch, and its time */
	long moved;
	int n_moves;
	int64_t move_at[4096];
	int move_n[4096];
	int moves_on_selected;
};

static struct sim_colour *sim_find(struct sim *s, const char *sha)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->col[i].c.sha, sha) == 0)
			return &s->col[i];
	return NULL;
}

static void sim_add_rep(struct sim_colour *c)
{
	struct platform_replica *r = &c->rep[c->n_rep++];
	char sha[PLATFORM_SHA_MAX];

	memcpy(sha, c->c.sha, sizeof(sha));
	snprintf(r->name, sizeof(r->name), "chat-%s-%d", sha, c->next_rep++);
	r->ready = 0;
	r->connections = 0;
}

static struct sim_colour *sim_create(struct sim *s, const char *sha, int replicas)
{
	struct sim_colour *c = &s->col[s->n++];

	memset(c, 0, sizeof(*c));
	snprintf(c->c.sha, sizeof(c->c.sha), "%s", sha);
	c->c.replicas = replicas;
	c->c.created = s->now / 1000;
	for (int i = 0; i < replicas; i++)
		sim_add_rep(c);
	return c;
}

/* A colour that is live and ready now (the world before a deploy). */
static struct sim_colour *sim_live(struct sim *s, const char *sha, int replicas, long conns)
{
	struct sim_colour *c = sim_create(s, sha, replicas);

	for (size_t i = 0; i < c->n_rep; i++) {
		c->rep[i].ready = 1;
		c->rep[i].connections = conns;
	}
	snprintf(s->selected, sizeof(s->selected), "%s", sha);
	return c;
}

static long sim_conns(const struct sim_colour *c)
{
	long n = 0;

	for (size_t i = 0; i < c->n_rep; i++)
		n += c->rep[i].connections > 0 ? c->rep[i].connections : 0;
	return n;
}

static void sim_set_conns(struct sim *s, const char *sha, long per_replica)
{
	struct sim_colour *c = sim_find(s, sha);

	assert_non_null(c);
	for (size_t i = 0; i < c->n_rep; i++)
		c->rep[i].connections = per_replica;
}

static void sim_remove(struct sim *s, struct sim_colour *c)
{
	snprintf(s->removed[s->n_removed++], PLATFORM_SHA_MAX, "%s", c->c.sha);
	*c = s->col[--s->n];
}

static void sim_apply(struct sim *s, const struct deploy_act *a)
{
	struct sim_colour *c = sim_find(s, a->sha);

	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		assert_null(c);
		sim_create(s, a->sha, a->replicas);
		break;
	case DEPLOY_ACT_SCALE:
		assert_non_null(c);
		if (a->replicas < (int)c->n_rep && sim_conns(c) > 0)
			s->replica_removed_with_conns++;
		while ((int)c->n_rep > a->replicas)
			c->n_rep--;
		while ((int)c->n_rep < a->replicas)
			sim_add_rep(c);
		c->c.replicas = a->replicas;
		break;
	case DEPLOY_ACT_SELECT: {
		size_t ready = 0;

		assert_non_null(c);
		for (size_t i = 0; i < c->n_rep; i++)
			ready += c->rep[i].ready != 0;
		if (ready < c->n_rep || c->n_rep == 0)
			s->selected_unready++;
		snprintf(s->selected, sizeof(s->selected), "%s", a->sha);
		c->c.route_drift = 0;
		s->n_select++;
		break;
	}
	case DEPLOY_ACT_META:
		assert_non_null(c);
		assert_int_equal(platform_meta_put(&c->c, a->key, a->has_value ? a->value : NULL),
				 0);
		break;
	case DEPLOY_ACT_REMOVE:
		assert_non_null(c);
		if (sim_conns(c) > 0 && a->why != DEPLOY_WHY_MAX_DRAIN)
			s->removed_with_conns++;
		if (a->why == DEPLOY_WHY_DRAINED)
			s->last_drain_ms = a->drain_ms;
		assert_string_not_equal(a->sha, s->selected);
		sim_remove(s, c);
		break;
	case DEPLOY_ACT_MOVE: {
		size_t i;

		assert_non_null(c);
		if (strcmp(a->sha, s->selected) == 0)
			s->moves_on_selected++;
		for (i = 0; i < c->n_rep; i++)
			if (strcmp(c->rep[i].name, a->name) == 0)
				break;
		assert_true(i < c->n_rep);
		/* never more than the replica holds, detached sessions left out */
		assert_true(a->count > 0 && a->count <= c->rep[i].connections - c->rep[i].detached);
		c->rep[i].connections -= a->count;
		s->moved += a->count;
		if (s->n_moves < 4096) {
			s->move_at[s->n_moves] = s->now;
			s->move_n[s->n_moves++] = a->count;
		}
		break;
	}
	case DEPLOY_ACT_REMOVE_REPLICA: {
		size_t i;

		assert_non_null(c);
		for (i = 0; i < c->n_rep; i++)
			if (strcmp(c->rep[i].name, a->name) == 0)
				break;
		assert_true(i < c->n_rep);
		if (c->rep[i].connections != 0)
			s->replica_removed_with_conns++;
		c->rep[i] = c->rep[--c->n_rep];
		c->c.replicas--;
		assert_true(c->c.replicas >= 1);
		break;
	}
	}
}

/* Replicas become ready ready_delay after their colour exists. */
static void sim_tick(struct sim *s, int64_t ms)
{
	s->now += ms;
	for (size_t i = 0; i < s->n; i++) {
		struct sim_colour *c = &s->col[i];

		if (strcmp(c->c.sha, s->never_ready) == 0)
			continue;
		for (size_t j = 0; j < c->n_rep; j++)
			c->rep[j].ready = 1;
	}
}

static void sim_observe(struct sim *s, struct deploy_obs *o)
{
	o->now_ms = s->now;
	snprintf(o->selected, sizeof(o->selected), "%s", s->selected);
	o->n = s->n;
	for (size_t i = 0; i < s->n; i++) {
		s->obs_col[i].c = s->col[i].c;
		s->obs_col[i].n_rep = s->col[i].n_rep;
		s->obs_col[i].rep = s->col[i].rep;
	}
	o->colours = s->obs_col;
}

/*
 * One step: observe, decide, apply the first `apply` actions (all when -1).
 * Returns the phase.
 */
static enum deploy_phase sim_step(struct sim *s, const struct deploy_cfg *cfg, struct deploy_mem *m,
				  struct deploy_result *r, int apply)
{
	struct deploy_obs o;

	sim_observe(s, &o);
	deploy_step(cfg, &o, m, r);
	for (size_t i = 0; i < r->n_act && (apply < 0 || (int)i < apply); i++)
		sim_apply(s, &r->act[i]);
	return r->phase;
}

/* Runs until done/failed (bounded); ticks poll ms between steps. */
static enum deploy_phase sim_run(struct sim *s, const struct deploy_cfg *cfg, struct deploy_mem *m,
				 int max_steps)
{
	struct deploy_result r;
	enum deploy_phase ph = DEPLOY_PHASE_CREATE;

	for (int i = 0; i < max_steps; i++) {
		ph = sim_step(s, cfg, m, &r, -1);
		if (ph == DEPLOY_PHASE_DONE || ph == DEPLOY_PHASE_FAILED)
			return ph;
		sim_tick(s, 250);
	}
	return ph;
}

static void cfg_init(struct deploy_cfg *cfg, enum deploy_mode mode, const char *sha)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = mode;
	snprintf(cfg->sha, sizeof(cfg->sha), "%s", sha ? sha : "");
	cfg->replicas = mode == DEPLOY_MODE_DEPLOY ? 2 : 0;
	cfg->ready_timeout_ms = 5000;
	cfg->settle_ms = 1000;
	cfg->keep_drained = -1;
	cfg->prune_window_ms = 2000;
}

static void sim_init(struct sim *s)
{
	memset(s, 0, sizeof(*s));
	s->now = 1796000000000;
}

#define SHA_A "aaaaaaa"
#define SHA_B "bbbbbbb"
#define SHA_C "ccccccc"
#define SHA_D "ddddddd"

static void test_sha_valid(void **state)
{
	assert_true(platform_sha_valid("abcdef0"));
	assert_true(platform_sha_valid("0123456789abcdef0123456789abcdef01234567"));
	assert_false(platform_sha_valid("abcdef"));
	assert_false(platform_sha_valid("0123456789abcdef0123456789abcdef012345678"));
	assert_false(platform_sha_valid("ABCDEF0"));
	assert_false(platform_sha_valid("abcdefg"));
	assert_false(platform_sha_valid("abc def0"));
	assert_false(platform_sha_valid(""));
	assert_false(platform_sha_valid(NULL));
}

static void test_meta_put_get(void **state)
{
	struct platform_colour c;
	char key[16];

	memset(&c, 0, sizeof(c));
	assert_null(platform_meta_get(&c, "x"));
	assert_int_equal(platform_meta_put(&c, "x", "1"), 0);
	assert_int_equal(platform_meta_put(&c, "x", "2"), 0);
	assert_string_equal(platform_meta_get(&c, "x"), "2");
	assert_int_equal(c.n_meta, 1);
	assert_int_equal(platform_meta_put(&c, "x", NULL), 0);
	assert_null(platform_meta_get(&c, "x"));
	for (int i = 0; i < PLATFORM_META_MAX; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(platform_meta_put(&c, key, "v"), 0);
	}
	assert_int_equal(platform_meta_put(&c, "one-too-many", "v"), -ENOSPC);
	assert_int_equal(deploy_meta_time(&c, "k0"), 0); /* "v" is no time */
	assert_int_equal(platform_meta_put(&c, "k1", "1796000000.250"), 0);
	assert_int_equal(deploy_meta_time(&c, "k1"), 1796000000250LL);
}

static void test_first_deploy(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;

	sim_init(&s);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_CREATE);
	assert_int_equal(r.act[0].kind, DEPLOY_ACT_CREATE);
	assert_int_equal(r.act[0].replicas, 2);
	/* not ready yet: waits, selects nothing */
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_READY);
	assert_string_equal(s.selected, "");
	sim_tick(&s, 100);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_SWITCH);
	assert_string_equal(s.selected, SHA_A);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_int_equal(s.selected_unready, 0);
	assert_non_null(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_SELECTED_AT));
	assert_string_equal(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_REPLICAS),
			    "2");
}

static void test_redeploy_selected_is_noop(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 5);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	deploy_mem_init(&m);
	sim_step(&s, &cfg, &m, &r, -1); /* fills selected-at */
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_DONE);
	assert_int_equal(r.n_act, 0);
	assert_int_equal(s.n, 1);
}

/*
 * The live SHA deployed again after the platform lost its replicas (local
 * down/up): the replicas come back, readiness is awaited and the switch is
 * pointed at them again before `done`.
 */
static void test_redeploy_live_reconciles(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	struct sim_colour *c;

	sim_init(&s);
	c = sim_live(&s, SHA_A, 2, 0);
	platform_meta_put(&c->c, PLATFORM_META_REPLICAS, "2");
	/* Both replicas gone and recreated unready; the switch points at old ones. */
	c->n_rep = 0;
	c->c.replicas = 0;
	c->c.route_drift = 2;
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	cfg.replicas = 0; /* no -r: the colour's own count */
	cfg.default_replicas = 2;
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_SCALE);
	assert_int_equal(r.act[0].kind, DEPLOY_ACT_SCALE);
	assert_int_equal(r.act[0].replicas, 2);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_READY);
	sim_tick(&s, 100);
	/* Ready, but the switch still points elsewhere: selected again. */
	c = sim_find(&s, SHA_A);
	c->c.route_drift = 2;
	s.n_select = 0;
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_SWITCH);
	assert_int_equal(s.n_select, 1);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_int_equal(sim_find(&s, SHA_A)->c.route_drift, 0);
	assert_int_equal(s.selected_unready, 0);
}

/* deploy <live SHA> -r 3 scales it (it was silently ignored), -r 1 back down. */
static void test_redeploy_live_with_replicas_scales(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 5);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	cfg.replicas = 3;
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_SCALE);
	assert_int_equal(sim_find(&s, SHA_A)->c.replicas, 3);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_int_equal(sim_find(&s, SHA_A)->n_rep, 3);
	assert_string_equal(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_REPLICAS),
			    "3");
	cfg.replicas = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_int_equal(sim_find(&s, SHA_A)->n_rep, 1);
	assert_string_equal(s.selected, SHA_A);
	/* Without -r the colour keeps its own count. */
	cfg.replicas = 0;
	cfg.default_replicas = 2;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_int_equal(sim_find(&s, SHA_A)->n_rep, 1);
}

/* A live colour whose replicas never get ready again: fails, but stays live. */
static void test_redeploy_live_not_ready_stays_live(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct sim_colour *c;

	sim_init(&s);
	c = sim_live(&s, SHA_A, 2, 0);
	c->rep[1].ready = 0;
	snprintf(s.never_ready, sizeof(s.never_ready), "%s", SHA_A);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_FAILED);
	assert_string_equal(s.selected, SHA_A);
	assert_int_equal(s.n_removed, 0);
	assert_null(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_FAILED));
}

/* A replica that exits before it is ever ready fails the deploy at once, with why. */
static void test_replica_failed_before_ready_fails_at_once(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	struct sim_colour *c;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 5);
	snprintf(s.never_ready, sizeof(s.never_ready), "%s", SHA_B);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.ready_timeout_ms = 3600 * 1000;
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_CREATE);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_READY);
	c = sim_find(&s, SHA_B);
	c->rep[1].failed = 1;
	snprintf(c->rep[1].fault, sizeof(c->rep[1].fault),
		 "exited with status 2; last lines: unknown option --bogus");
	sim_tick(&s, 50);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_FAILED);
	assert_non_null(strstr(r.msg, "exited before it was ready"));
	assert_non_null(strstr(r.msg, "unknown option --bogus"));
	assert_non_null(strstr(r.msg, "traffic stays on " SHA_A));
	assert_string_equal(s.selected, SHA_A);
	assert_int_equal(s.n_removed, 1);
	assert_string_equal(s.removed[0], SHA_B);
	/* On the live colour (scaled up): fails, stays selected, nothing removed. */
	sim_init(&s);
	c = sim_live(&s, SHA_A, 2, 5);
	c->rep[0].failed = 1;
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_FAILED);
	assert_string_equal(s.selected, SHA_A);
	assert_int_equal(s.n_removed, 0);
}

static void test_drain_waits_for_zero_and_settle(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	int i;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 10);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	deploy_mem_init(&m);
	sim_step(&s, &cfg, &m, &r, -1); /* create */
	sim_tick(&s, 100);
	sim_step(&s, &cfg, &m, &r, -1); /* switch */
	assert_string_equal(s.selected, SHA_B);
	assert_non_null(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE));
	assert_string_equal(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAIN_FROM),
			    "20");
	/* connections stay: never removed */
	for (i = 0; i < 40; i++) {
		assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_DRAIN);
		sim_tick(&s, 250);
	}
	assert_non_null(sim_find(&s, SHA_A));
	/* one replica empties; the other still holds one connection */
	sim_find(&s, SHA_A)->rep[0].connections = 0;
	sim_find(&s, SHA_A)->rep[1].connections = 1;
	for (i = 0; i < 10; i++) {
		sim_step(&s, &cfg, &m, &r, -1);
		sim_tick(&s, 250);
	}
	assert_non_null(sim_find(&s, SHA_A));
	/* zero, then a blip back to 1 (in-flight connection), then zero again */
	sim_set_conns(&s, SHA_A, 0);
	sim_step(&s, &cfg, &m, &r, -1);
	sim_tick(&s, 750);
	sim_find(&s, SHA_A)->rep[1].connections = 1;
	sim_step(&s, &cfg, &m, &r, -1);
	sim_tick(&s, 250);
	sim_set_conns(&s, SHA_A, 0);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_DRAIN);
	sim_tick(&s, 750);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_DRAIN);
	assert_non_null(sim_find(&s, SHA_A)); /* 750 ms < settle */
	sim_tick(&s, 250);
	sim_step(&s, &cfg, &m, &r, -1);
	assert_null(sim_find(&s, SHA_A));
	assert_true(s.last_drain_ms > 10000);
	assert_int_equal(sim_run(&s, &cfg, &m, 5), DEPLOY_PHASE_DONE);
	assert_int_equal(s.removed_with_conns, 0);
}

static void test_unknown_count_never_drains(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;

	sim_init(&s);
	sim_live(&s, SHA_A, 1, 0);
	sim_find(&s, SHA_A)->rep[0].connections = -1;
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 40), DEPLOY_PHASE_DRAIN);
	assert_non_null(sim_find(&s, SHA_A));
	sim_find(&s, SHA_A)->rep[0].connections = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 40), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
}

static void test_ready_timeout_aborts(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 3);
	snprintf(s.never_ready, sizeof(s.never_ready), SHA_B);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_FAILED);
	sim_step(&s, &cfg, &m, &r, 0);
	assert_string_equal(s.selected, SHA_A);
	assert_null(sim_find(&s, SHA_B));
	assert_null(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE));
	assert_int_equal(sim_conns(sim_find(&s, SHA_A)), 6);
}

static void test_ready_timeout_keep_failed_then_retry(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;

	sim_init(&s);
	sim_live(&s, SHA_A, 1, 3);
	snprintf(s.never_ready, sizeof(s.never_ready), SHA_B);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.keep_failed = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_FAILED);
	assert_non_null(sim_find(&s, SHA_B));
	assert_non_null(platform_meta_get(&sim_find(&s, SHA_B)->c, PLATFORM_META_FAILED));
	assert_string_equal(s.selected, SHA_A);
	/* a later deploy of another SHA leaves the failed colour alone ... */
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_C);
	deploy_mem_init(&m);
	sim_set_conns(&s, SHA_A, 0);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_DONE);
	assert_non_null(sim_find(&s, SHA_B));
	/* ... prune removes it ... */
	cfg_init(&cfg, DEPLOY_MODE_PRUNE, NULL);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_B));
	/* ... and deploying a failed kept SHA again starts it afresh */
	s.never_ready[0] = '\0';
	sim_create(&s, SHA_D, 1);
	platform_meta_put(&sim_find(&s, SHA_D)->c, PLATFORM_META_FAILED, "x");
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_D);
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_CREATE);
	assert_int_equal(r.act[0].kind, DEPLOY_ACT_REMOVE);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_DONE);
	assert_string_equal(s.selected, SHA_D);
	assert_null(platform_meta_get(&sim_find(&s, SHA_D)->c, PLATFORM_META_FAILED));
}

static void test_max_drain_shutdown(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	int shut = 0;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 4);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.max_drain_ms = 3000;
	cfg.on_max_drain = DEPLOY_ON_MAX_SHUTDOWN;
	deploy_mem_init(&m);
	for (int i = 0; i < 100; i++) {
		struct deploy_result r;
		int64_t before = s.now;

		if (sim_step(&s, &cfg, &m, &r, -1) == DEPLOY_PHASE_DONE)
			break;
		for (size_t j = 0; j < r.n_act; j++)
			if (r.act[j].why == DEPLOY_WHY_MAX_DRAIN) {
				shut++;
				assert_true(r.act[j].drain_ms >= 3000);
				(void)before;
			}
		sim_tick(&s, 250);
	}
	assert_int_equal(shut, 1);
	assert_null(sim_find(&s, SHA_A));
	assert_string_equal(s.selected, SHA_B);
}

static void test_max_drain_keep(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 4);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.max_drain_ms = 3000;
	cfg.on_max_drain = DEPLOY_ON_MAX_KEEP;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_DONE);
	assert_non_null(sim_find(&s, SHA_A));
	assert_non_null(platform_meta_get(&sim_find(&s, SHA_A)->c, DEPLOY_META_MAX_DRAIN_AT));
	/* prune deletes it once it drained after all */
	sim_set_conns(&s, SHA_A, 0);
	cfg_init(&cfg, DEPLOY_MODE_PRUNE, NULL);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_DONE);
	assert_non_null(sim_find(&s, SHA_A)); /* max-drain-at: reported, not pruned */
}

static void test_shrink(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct sim_colour *a;

	sim_init(&s);
	a = sim_live(&s, SHA_A, 4, 3);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.shrink = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	a = sim_find(&s, SHA_A);
	a->rep[0].connections = 0;
	a->rep[2].connections = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	a = sim_find(&s, SHA_A);
	assert_int_equal(a->c.replicas, 2);
	assert_int_equal(a->n_rep, 2);
	assert_int_equal(sim_conns(a), 6);
	/* a third empties: shrinks to 1, never below */
	a->rep[0].connections = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	a = sim_find(&s, SHA_A);
	assert_int_equal(a->c.replicas, 1);
	assert_int_equal(sim_conns(a), 3);
	a->rep[0].connections = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(s.replica_removed_with_conns, 0);
	assert_int_equal(s.removed_with_conns, 0);
}

static void test_shrink_all_zero_at_once_removes_colour(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;

	sim_init(&s);
	sim_live(&s, SHA_A, 3, 0);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.shrink = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
}

static void test_several_draining_at_once(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;

	sim_init(&s);
	sim_live(&s, SHA_A, 1, 5);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.no_wait = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	sim_set_conns(&s, SHA_B, 7);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_C);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	assert_string_equal(s.selected, SHA_C);
	assert_non_null(sim_find(&s, SHA_A));
	assert_non_null(sim_find(&s, SHA_B));
	sim_set_conns(&s, SHA_B, 0);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	assert_null(sim_find(&s, SHA_B));
	assert_non_null(sim_find(&s, SHA_A));
	sim_set_conns(&s, SHA_A, 0);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(s.removed_with_conns, 0);
}

static void test_keep_drained_and_rollback(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_obs o;
	char sha[PLATFORM_SHA_MAX], err[256];

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 0);
	platform_meta_put(&sim_find(&s, SHA_A)->c, PLATFORM_META_REPLICAS, "2");
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.keep_drained = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_non_null(sim_find(&s, SHA_A));
	assert_int_equal(sim_find(&s, SHA_A)->c.replicas, 0);
	sim_observe(&s, &o);
	assert_int_equal(deploy_colour_state(&o.colours[0], o.selected) == DEPLOY_STATE_KEPT ||
				 deploy_colour_state(&o.colours[1], o.selected) ==
					 DEPLOY_STATE_KEPT,
			 1);
	/* C: A is the oldest kept colour and goes (K = 1), B is kept */
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_C);
	cfg.keep_drained = 1;
	deploy_mem_init(&m);
	sim_tick(&s, 1000);
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(sim_find(&s, SHA_B)->c.replicas, 0);
	/* rollback without a SHA picks B, scales it back up, waits ready, switches */
	sim_observe(&s, &o);
	assert_int_equal(deploy_rollback_target(&o, sha, err, sizeof(err)), 0);
	assert_string_equal(sha, SHA_B);
	cfg_init(&cfg, DEPLOY_MODE_ROLLBACK, sha);
	cfg.keep_drained = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 40), DEPLOY_PHASE_DONE);
	assert_string_equal(s.selected, SHA_B);
	assert_int_equal(sim_find(&s, SHA_B)->c.replicas, 2);
	assert_int_equal(sim_find(&s, SHA_C)->c.replicas, 0); /* C drained, kept */
	assert_null(platform_meta_get(&sim_find(&s, SHA_B)->c, PLATFORM_META_KEPT));
	assert_int_equal(s.selected_unready, 0);
	/* and again back to C */
	sim_observe(&s, &o);
	assert_int_equal(deploy_rollback_target(&o, sha, err, sizeof(err)), 0);
	assert_string_equal(sha, SHA_C);
}

static void test_rollback_refusals(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_obs o;
	struct deploy_result r;
	char sha[PLATFORM_SHA_MAX], err[256];

	sim_init(&s);
	sim_observe(&s, &o);
	assert_int_equal(deploy_rollback_target(&o, sha, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nothing to roll back to"));
	sim_live(&s, SHA_A, 1, 1);
	sim_create(&s, SHA_B, 1); /* starting, never selected */
	sim_create(&s, SHA_C, 1);
	platform_meta_put(&sim_find(&s, SHA_C)->c, PLATFORM_META_FAILED, "x");
	platform_meta_put(&sim_find(&s, SHA_C)->c, PLATFORM_META_DRAINING_SINCE, "1796000000");
	sim_observe(&s, &o);
	assert_int_equal(deploy_rollback_target(&o, sha, err, sizeof(err)), -ENOENT);
	cfg_init(&cfg, DEPLOY_MODE_ROLLBACK, SHA_D);
	deploy_mem_init(&m);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_FAILED);
	assert_non_null(strstr(r.msg, "does not exist"));
	assert_int_equal(r.n_act, 0);
	cfg_init(&cfg, DEPLOY_MODE_ROLLBACK, SHA_C);
	assert_int_equal(sim_step(&s, &cfg, &m, &r, -1), DEPLOY_PHASE_FAILED);
	assert_int_equal(r.n_act, 0);
	assert_string_equal(s.selected, SHA_A);
}

static void test_rollback_to_draining_colour(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_obs o;
	char sha[PLATFORM_SHA_MAX], err[256];

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 5);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.no_wait = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DONE);
	sim_set_conns(&s, SHA_B, 2);
	sim_observe(&s, &o);
	assert_int_equal(deploy_rollback_target(&o, sha, err, sizeof(err)), 0);
	assert_string_equal(sha, SHA_A);
	cfg_init(&cfg, DEPLOY_MODE_ROLLBACK, sha);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	assert_string_equal(s.selected, SHA_A);
	assert_null(platform_meta_get(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE));
	assert_non_null(platform_meta_get(&sim_find(&s, SHA_B)->c, PLATFORM_META_DRAINING_SINCE));
	assert_int_equal(sim_conns(sim_find(&s, SHA_A)), 10);
	sim_set_conns(&s, SHA_B, 0);
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_B));
}

/*
 * Redeploying a shrunk draining colour whose new replicas never get ready:
 * the deploy fails, but the colour still holds connections, so it is left
 * draining (not marked failed, not removed).
 */
static void test_failed_scale_up_of_draining_colour_keeps_it(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct sim_colour *a;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 3);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.shrink = 1;
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	sim_find(&s, SHA_A)->rep[0].connections = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 10), DEPLOY_PHASE_DRAIN);
	assert_int_equal(sim_find(&s, SHA_A)->c.replicas, 1);

	snprintf(s.never_ready, sizeof(s.never_ready), SHA_A);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_A);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 100), DEPLOY_PHASE_FAILED);
	assert_int_equal(s.removed_with_conns, 0);
	assert_string_equal(s.selected, SHA_B);
	a = sim_find(&s, SHA_A);
	assert_non_null(a);
	assert_null(platform_meta_get(&a->c, PLATFORM_META_FAILED));
	assert_int_equal(sim_conns(a), 3);

	/* It drains like any old colour once its count reads 0. */
	sim_set_conns(&s, SHA_A, 0);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(s.removed_with_conns, 0);
}

/*
 * Durations become int64 milliseconds: a huge one must be refused, not cast
 * (1e20 s once became a negative --settle, i.e. no settle period at all).
 */
/* Sessions moved in (from, to]. */
static long moved_between(const struct sim *s, int64_t from, int64_t to)
{
	long n = 0;

	for (int i = 0; i < s->n_moves; i++)
		if (s->move_at[i] > from && s->move_at[i] <= to)
			n += s->move_n[i];
	return n;
}

/* --drain-assist 10/s after 2 s: nothing before, then never more than the
 * rate allows since the start (one second's worth at once at most), spread
 * over the replicas by their counts, never on the selected colour, until
 * the colour reads 0; then drained as usual. */
static void test_assist_rate_and_spread(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	struct sim_colour *a;
	int64_t ds = 0, start;
	long first_r0 = -1, first_r1 = -1;
	int i;

	sim_init(&s);
	a = sim_live(&s, SHA_A, 2, 0);
	a->rep[0].connections = 30;
	a->rep[1].connections = 10;
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.assist_rate = 10;
	cfg.assist_after_ms = 2000;
	deploy_mem_init(&m);
	for (i = 0; i < 200; i++) {
		enum deploy_phase ph = sim_step(&s, &cfg, &m, &r, -1);

		a = sim_find(&s, SHA_A);
		if (a && !ds)
			ds = deploy_meta_time(&a->c, PLATFORM_META_DRAINING_SINCE);
		if (a && first_r0 < 0 && s.moved >= 8) {
			first_r0 = a->rep[0].connections;
			first_r1 = a->rep[1].connections;
		}
		if (ph == DEPLOY_PHASE_DONE)
			break;
		sim_tick(&s, 250);
	}
	assert_null(sim_find(&s, SHA_A)); /* drained once all moved */
	assert_int_equal(s.moved, 40);
	assert_int_equal(s.moves_on_selected, 0);
	assert_int_equal(s.removed_with_conns, 0);
	start = ds + 2000;
	assert_int_equal(moved_between(&s, 0, start - 1), 0);
	/* never ahead of the rate since the start, and at most 1 s of it at once */
	for (int k = 0; k < s.n_moves; k++) {
		int64_t t = s.move_at[k];

		assert_true(moved_between(&s, 0, t) <= (long)(10 * (t - start) / 1000));
		assert_true(moved_between(&s, t - 1000, t) <= 20);
	}
	/* 40 sessions at 10/s: four seconds, not one step */
	assert_true(s.move_at[s.n_moves - 1] - s.move_at[0] >= 3000);
	/* spread 3:1 like the counts (30 and 10) */
	assert_true(labs((30 - first_r0) - 3 * (10 - first_r1)) <= 3);
	assert_true(10 - first_r1 >= 1);
}

/* --on-max-drain assist: at --max-drain the colour is neither shut down
 * nor left: its sessions move, and it drains. */
static void test_assist_on_max_drain(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	int64_t ds;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 6);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.max_drain_ms = 3000;
	cfg.on_max_drain = DEPLOY_ON_MAX_ASSIST;
	cfg.assist_rate = 4;
	cfg.assist_after_ms = 3000; /* what the command line makes of it */
	deploy_mem_init(&m);
	sim_step(&s, &cfg, &m, &(struct deploy_result){ 0 }, -1);
	sim_tick(&s, 100);
	sim_step(&s, &cfg, &m, &(struct deploy_result){ 0 }, -1);
	ds = deploy_meta_time(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE);
	assert_int_equal(sim_run(&s, &cfg, &m, 200), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(s.moved, 12);
	assert_int_equal(moved_between(&s, 0, ds + 2999), 0);
	assert_int_equal(s.removed_with_conns, 0);
}

/* The volatile memory lost mid-assist (rainbow killed and run again): the
 * rate still holds, with at most one second's worth at once. */
static void test_assist_memory_lost(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	int i;

	sim_init(&s);
	sim_live(&s, SHA_A, 3, 100);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.assist_rate = 20;
	deploy_mem_init(&m);
	for (i = 0; i < 400; i++) {
		if (i % 7 == 3)
			deploy_mem_init(&m);
		if (sim_step(&s, &cfg, &m, &r, -1) == DEPLOY_PHASE_DONE)
			break;
		sim_tick(&s, 250);
	}
	assert_int_equal(s.moved, 300);
	for (int k = 0; k < s.n_moves; k++)
		assert_true(moved_between(&s, s.move_at[k] - 1000, s.move_at[k]) <= 40);
	/* the meta says when and how fast */
	assert_int_equal(s.removed_with_conns, 0);
}

/* Off, or before its time: no move at all; a colour that reads 0 is never
 * asked; an unreadable replica is skipped. */
static void test_assist_off_and_edges(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	struct sim_colour *a;

	sim_init(&s);
	sim_live(&s, SHA_A, 2, 5);
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	deploy_mem_init(&m);
	for (int i = 0; i < 20; i++) {
		sim_step(&s, &cfg, &m, &r, -1);
		sim_tick(&s, 250);
	}
	assert_int_equal(s.n_moves, 0);
	a = sim_find(&s, SHA_A);
	assert_null(platform_meta_get(&a->c, DEPLOY_META_ASSIST_SINCE));
	/* now on, but one replica unreadable: the count is unknown, nobody is
	 * asked; once it reads again, both are */
	cfg.assist_rate = 100;
	a->rep[0].connections = -1;
	sim_step(&s, &cfg, &m, &r, -1);
	sim_tick(&s, 250);
	sim_step(&s, &cfg, &m, &r, -1);
	assert_int_equal(s.n_moves, 0);
	a = sim_find(&s, SHA_A);
	a->rep[0].connections = 5;
	sim_tick(&s, 250);
	sim_step(&s, &cfg, &m, &r, -1);
	a = sim_find(&s, SHA_A);
	assert_string_equal(platform_meta_get(&a->c, DEPLOY_META_ASSIST_RATE), "100");
	assert_non_null(platform_meta_get(&a->c, DEPLOY_META_ASSIST_SINCE));
	assert_int_equal(a->rep[0].connections + a->rep[1].connections, 0);
	assert_int_equal(s.moved, 10);
	assert_int_equal(s.moves_on_selected, 0);
}

/* Sessions held detached (waiting for their clients to resume them) keep
 * the colour from draining but are never asked to move. */
static void test_assist_detached(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;
	struct deploy_result r;
	struct sim_colour *a;
	int i;

	sim_init(&s);
	a = sim_live(&s, SHA_A, 2, 0);
	a->rep[0].connections = 5; /* all five detached */
	a->rep[0].detached = 5;
	a->rep[1].connections = 3;
	cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_B);
	cfg.assist_rate = 100;
	deploy_mem_init(&m);
	for (i = 0; i < 30; i++) {
		sim_step(&s, &cfg, &m, &r, -1);
		sim_tick(&s, 250);
	}
	a = sim_find(&s, SHA_A);
	assert_non_null(a); /* not drained: five sessions wait */
	assert_int_equal(s.moved, 3);
	assert_int_equal(a->rep[1].connections, 0);
	assert_int_equal(a->rep[0].connections, 5);
	/* they are resumed elsewhere: the colour drains */
	a->rep[0].connections = 0;
	a->rep[0].detached = 0;
	assert_int_equal(sim_run(&s, &cfg, &m, 20), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_int_equal(s.moved, 3);
}

static void test_parse_rate(void **state)
{
	double v;

	assert_int_equal(cli_parse_rate("50/s", &v), 0);
	assert_true(v == 50.0);
	assert_int_equal(cli_parse_rate("0.5", &v), 0);
	assert_true(v == 0.5);
	assert_int_equal(cli_parse_rate("0", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("0.001/s", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("100001", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("-5/s", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("5/m", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("nan", &v), -EINVAL);
	assert_int_equal(cli_parse_rate("", &v), -EINVAL);
}

static void test_parse_duration_bounds(void **state)
{
	double v;

	assert_int_equal(cli_parse_duration("500ms", &v), 0);
	assert_true(v > 0.49 && v < 0.51);
	assert_int_equal(cli_parse_duration("2m", &v), 0);
	assert_true(v == 120.0);
	assert_int_equal(cli_parse_duration("8760h", &v), 0);
	assert_int_equal(cli_parse_duration("8761h", &v), -EINVAL);
	assert_int_equal(cli_parse_duration("1e20", &v), -EINVAL);
	assert_int_equal(cli_parse_duration("1e300h", &v), -EINVAL);
	assert_int_equal(cli_parse_duration("nan", &v), -EINVAL);
	assert_int_equal(cli_parse_duration("-1s", &v), -EINVAL);
}

static void test_prune(void **state)
{
	struct sim s;
	struct deploy_cfg cfg;
	struct deploy_mem m;

	sim_init(&s);
	sim_live(&s, SHA_A, 1, 0);
	platform_meta_put(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE, "1795999990");
	sim_live(&s, SHA_B, 1, 3);
	platform_meta_put(&sim_find(&s, SHA_B)->c, PLATFORM_META_DRAINING_SINCE, "1795999990");
	sim_live(&s, SHA_D, 1, 3); /* selected */
	sim_create(&s, SHA_C, 1);  /* starting: maybe another deploy's, not pruned */
	cfg_init(&cfg, DEPLOY_MODE_PRUNE, NULL);
	deploy_mem_init(&m);
	assert_int_equal(sim_run(&s, &cfg, &m, 50), DEPLOY_PHASE_DONE);
	assert_null(sim_find(&s, SHA_A));
	assert_non_null(sim_find(&s, SHA_B));
	assert_non_null(sim_find(&s, SHA_C));
	assert_non_null(sim_find(&s, SHA_D));
	assert_true(s.now - 1796000000000 >= cfg.prune_window_ms);
	assert_int_equal(s.removed_with_conns, 0);
}

/*
 * The kill test: for every step k and every prefix p of that step's actions,
 * run a deploy of C over (A draining, B live), kill it after applying p
 * actions of step k, re-run with fresh memory, and check it converges to the
 * same end with nothing removed while holding connections.
 */
static void test_kill_at_any_step_converges(void **state)
{
	for (int k = 0; k < 30; k++) {
		for (int p = 0; p <= DEPLOY_ACT_MAX; p++) {
			struct sim s;
			struct deploy_cfg cfg;
			struct deploy_mem m;
			struct deploy_result r;
			int reached = 0, too_few = 0;

			sim_init(&s);
			sim_live(&s, SHA_A, 2, 0);
			platform_meta_put(&sim_find(&s, SHA_A)->c, PLATFORM_META_DRAINING_SINCE,
					  "1795999990");
			sim_live(&s, SHA_B, 2, 4);
			cfg_init(&cfg, DEPLOY_MODE_DEPLOY, SHA_C);
			cfg.shrink = 1;
			deploy_mem_init(&m);
			for (int i = 0; i <= k; i++) {
				enum deploy_phase ph = sim_step(&s, &cfg, &m, &r, i == k ? p : -1);

				if (i == k && (size_t)p > r.n_act)
					too_few = 1;
				if (ph == DEPLOY_PHASE_DONE || ph == DEPLOY_PHASE_FAILED)
					break;
				if (i == 12 && sim_find(&s, SHA_B))
					sim_set_conns(&s, SHA_B, 0);
				if (i == 6 && sim_find(&s, SHA_B))
					sim_find(&s, SHA_B)->rep[0].connections = 0;
				sim_tick(&s, 250);
				reached = i;
			}
			(void)reached;
			if (too_few)
				break;
			/* the kill: memory lost; the world keeps its state */
			deploy_mem_init(&m);
			if (sim_find(&s, SHA_B))
				sim_set_conns(&s, SHA_B, 0);
			assert_int_equal(sim_run(&s, &cfg, &m, 60), DEPLOY_PHASE_DONE);
			assert_string_equal(s.selected, SHA_C);
			assert_int_equal(s.n, 1);
			assert_int_equal(s.removed_with_conns, 0);
			assert_int_equal(s.replica_removed_with_conns, 0);
			assert_int_equal(s.selected_unready, 0);
			assert_null(platform_meta_get(&s.col[0].c, PLATFORM_META_DRAINING_SINCE));
		}
	}
}

static void test_states_and_names(void **state)
{
	struct deploy_colour_obs c;

	memset(&c, 0, sizeof(c));
	snprintf(c.c.sha, sizeof(c.c.sha), SHA_A);
	c.c.replicas = 1;
	assert_int_equal(deploy_colour_state(&c, SHA_A), DEPLOY_STATE_LIVE);
	assert_int_equal(deploy_colour_state(&c, ""), DEPLOY_STATE_STARTING);
	platform_meta_put(&c.c, PLATFORM_META_DRAINING_SINCE, "1796000000.5");
	assert_int_equal(deploy_colour_state(&c, ""), DEPLOY_STATE_DRAINING);
	c.c.replicas = 0;
	assert_int_equal(deploy_colour_state(&c, ""), DEPLOY_STATE_KEPT);
	platform_meta_put(&c.c, PLATFORM_META_FAILED, "x");
	assert_int_equal(deploy_colour_state(&c, ""), DEPLOY_STATE_FAILED);
	assert_string_equal(deploy_state_name(DEPLOY_STATE_DRAINING), "draining");
	assert_string_equal(deploy_phase_name(DEPLOY_PHASE_READY), "wait-ready");
	assert_int_equal(deploy_colour_connections(&c), 0);
	assert_string_equal(deploy_why_name(DEPLOY_WHY_EXCESS_KEPT), "excess-kept");
	assert_string_equal(deploy_why_name(DEPLOY_WHY_ROLLBACK), "rollback");
	assert_string_equal(deploy_why_name((enum deploy_why)99), "?");
	{
		struct deploy_obs o = { .colours = &c, .n = 1 };

		assert_ptr_equal(deploy_obs_find(&o, SHA_A), &c);
		assert_null(deploy_obs_find(&o, SHA_B));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha_valid),
		cmocka_unit_test(test_meta_put_get),
		cmocka_unit_test(test_first_deploy),
		cmocka_unit_test(test_redeploy_selected_is_noop),
		cmocka_unit_test(test_redeploy_live_reconciles),
		cmocka_unit_test(test_redeploy_live_with_replicas_scales),
		cmocka_unit_test(test_redeploy_live_not_ready_stays_live),
		cmocka_unit_test(test_replica_failed_before_ready_fails_at_once),
		cmocka_unit_test(test_drain_waits_for_zero_and_settle),
		cmocka_unit_test(test_unknown_count_never_drains),
		cmocka_unit_test(test_ready_timeout_aborts),
		cmocka_unit_test(test_ready_timeout_keep_failed_then_retry),
		cmocka_unit_test(test_max_drain_shutdown),
		cmocka_unit_test(test_max_drain_keep),
		cmocka_unit_test(test_assist_rate_and_spread),
		cmocka_unit_test(test_assist_on_max_drain),
		cmocka_unit_test(test_assist_memory_lost),
		cmocka_unit_test(test_assist_off_and_edges),
		cmocka_unit_test(test_assist_detached),
		cmocka_unit_test(test_parse_rate),
		cmocka_unit_test(test_shrink),
		cmocka_unit_test(test_shrink_all_zero_at_once_removes_colour),
		cmocka_unit_test(test_several_draining_at_once),
		cmocka_unit_test(test_keep_drained_and_rollback),
		cmocka_unit_test(test_rollback_refusals),
		cmocka_unit_test(test_rollback_to_draining_colour),
		cmocka_unit_test(test_failed_scale_up_of_draining_colour_keeps_it),
		cmocka_unit_test(test_parse_duration_bounds),
		cmocka_unit_test(test_prune),
		cmocka_unit_test(test_kill_at_any_step_converges),
		cmocka_unit_test(test_states_and_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
