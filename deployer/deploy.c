/*
 * Pure deploy decisions. Rules (each derived from the observation, so any
 * step may be the first after a kill):
 *  - target missing -> create; failed earlier -> remove, then create;
 *  - target with fewer replicas than wanted (kept at 0, shrunk) -> scale up;
 *  - not selected: wait until every wanted replica is ready, then select;
 *    past the ready timeout -> mark failed, remove unless --keep-failed,
 *    never touch the selection (an old colour that may still hold
 *    connections is left draining instead);
 *  - selected: every other colour with replicas gets draining-since; a
 *    draining colour whose count read 0 for the settle period is drained
 *    (removed, or scaled to 0 with --keep-drained); past --max-drain it is
 *    shut down or left and reported; with --shrink single replicas settled
 *    at 0 are given back (never the last one: it goes with the colour).
 */
#include "deploy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void deploy_mem_init(struct deploy_mem *m)
{
	memset(m, 0, sizeof(*m));
}

int64_t deploy_meta_time(const struct platform_colour *c, const char *key)
{
	const char *v = platform_meta_get(c, key);
	char *end;
	double d;

	if (!v || !*v)
		return 0;
	d = strtod(v, &end);
	if (*end || d <= 0 || d > 1e11)
		return 0;
	return (int64_t)(d * 1000.0 + 0.5);
}

void deploy_format_time(char *buf, size_t len, int64_t ms)
{
	snprintf(buf, len, "%" PRId64 ".%03d", ms / 1000, (int)(ms % 1000));
}

long deploy_colour_connections(const struct deploy_colour_obs *c)
{
	long sum = 0;

	for (size_t i = 0; i < c->n_rep; i++) {
		if (c->rep[i].connections < 0)
			return -1;
		sum += c->rep[i].connections;
	}
	return sum;
}

/* A replica that exited before it was ever ready (not restarted), or NULL. */
static const struct platform_replica *failed_replica(const struct deploy_colour_obs *c)
{
	for (size_t i = 0; i < c->n_rep; i++)
		if (c->rep[i].failed)
			return &c->rep[i];
	return NULL;
}

static int colour_ready(const struct deploy_colour_obs *c)
{
	int n = 0;

	for (size_t i = 0; i < c->n_rep; i++)
		n += c->rep[i].ready != 0;
	return n;
}

enum deploy_state deploy_colour_state(const struct deploy_colour_obs *c, const char *selected)
{
	if (selected && strcmp(c->c.sha, selected) == 0)
		return DEPLOY_STATE_LIVE;
	if (platform_meta_get(&c->c, PLATFORM_META_FAILED))
		return DEPLOY_STATE_FAILED;
	if (c->c.replicas == 0)
		return DEPLOY_STATE_KEPT;
	if (deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE))
		return DEPLOY_STATE_DRAINING;
	return DEPLOY_STATE_STARTING;
}

const char *deploy_state_name(enum deploy_state s)
{
	static const char *const names[] = { "live", "starting", "draining", "kept", "failed" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

const char *deploy_phase_name(enum deploy_phase p)
{
	static const char *const names[] = { "create", "wait-ready", "switch", "drain",
					     "done",   "failed",     "scale" };

	return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

const char *deploy_why_name(enum deploy_why w)
{
	static const char *const names[] = {
		[DEPLOY_WHY_NONE] = "",
		[DEPLOY_WHY_DRAINED] = "drained",
		[DEPLOY_WHY_MAX_DRAIN] = "max-drain",
		[DEPLOY_WHY_FAILED] = "failed",
		[DEPLOY_WHY_EXCESS_KEPT] = "excess-kept",
		[DEPLOY_WHY_SHRINK] = "shrink",
		[DEPLOY_WHY_PRUNE_FAILED] = "prune-failed",
		[DEPLOY_WHY_ROLLBACK] = "rollback",
		[DEPLOY_WHY_ASSIST] = "assist",
	};

	return (unsigned)w < sizeof(names) / sizeof(names[0]) ? names[w] : "?";
}

const struct deploy_colour_obs *deploy_obs_find(const struct deploy_obs *o, const char *sha)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->colours[i].c.sha, sha) == 0)
			return &o->colours[i];
	return NULL;
}

/* A fresh action, or NULL when the step is full (the rest waits a step). */
static struct deploy_act *act(struct deploy_result *r, enum deploy_act_kind kind,
			      enum deploy_why why, const char *sha)
{
	struct deploy_act *a;

	if (r->n_act >= DEPLOY_ACT_MAX)
		return NULL;
	a = &r->act[r->n_act++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->why = why;
	snprintf(a->sha, sizeof(a->sha), "%s", sha);
	return a;
}

static void meta_set(struct deploy_result *r, const char *sha, const char *key, const char *value)
{
	struct deploy_act *a = act(r, DEPLOY_ACT_META, DEPLOY_WHY_NONE, sha);

	if (!a)
		return;
	snprintf(a->key, sizeof(a->key), "%s", key);
	if (value) {
		snprintf(a->value, sizeof(a->value), "%s", value);
		a->has_value = 1;
	}
}

static void meta_time(struct deploy_result *r, const char *sha, const char *key, int64_t ms)
{
	char buf[32];

	deploy_format_time(buf, sizeof(buf), ms);
	meta_set(r, sha, key, buf);
}

static void meta_clear(struct deploy_result *r, const struct deploy_colour_obs *c, const char *key)
{
	if (platform_meta_get(&c->c, key))
		meta_set(r, c->c.sha, key, NULL);
}

/* The settle clock of (sha, name); NULL when the table is full (never settles). */
static int64_t *zero_clock(struct deploy_mem *m, const char *sha, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_track; i++)
		if (strcmp(m->track[i].sha, sha) == 0 && strcmp(m->track[i].name, name) == 0)
			break;
	if (i == m->n_track) {
		if (m->n_track >= DEPLOY_TRACK_MAX)
			return NULL;
		memset(&m->track[i], 0, sizeof(m->track[i]));
		snprintf(m->track[i].sha, sizeof(m->track[i].sha), "%s", sha);
		snprintf(m->track[i].name, sizeof(m->track[i].name), "%s", name);
		m->n_track++;
	}
	m->track[i].seen = 1;
	return &m->track[i].zero_since_ms;
}

/* True when count has read 0 for the settle period (starting the clock if needed). */
static int settled(struct deploy_mem *m, const struct deploy_cfg *cfg, int64_t now, const char *sha,
		   const char *name, long count, int64_t *zero_since)
{
	int64_t *z = zero_clock(m, sha, name);

	if (!z)
		return 0;
	if (count != 0) {
		*z = 0;
		return 0;
	}
	if (!*z)
		*z = now;
	if (zero_since)
		*zero_since = *z;
	return now - *z >= cfg->settle_ms;
}

static void shrink_colour(const struct deploy_cfg *cfg, const struct deploy_obs *o,
			  struct deploy_mem *m, const struct deploy_colour_obs *c,
			  struct deploy_result *r)
{
	int keep = c->c.replicas; /* replicas left after this step */

	for (size_t i = 0; i < c->n_rep; i++) {
		const struct platform_replica *rep = &c->rep[i];
		struct deploy_act *a;

		if (!settled(m, cfg, o->now_ms, c->c.sha, rep->name, rep->connections, NULL))
			continue;
		if (keep <= 1)
			continue; /* the last replica goes with the colour */
		a = act(r, DEPLOY_ACT_REMOVE_REPLICA, DEPLOY_WHY_SHRINK, c->c.sha);
		if (!a)
			return;
		snprintf(a->name, sizeof(a->name), "%s", rep->name);
		keep--;
	}
}

/* The assist bucket of sha, or -1 when the table is full (no assist then). */

static int assist_slot(struct deploy_mem *m, const char *sha)
{
	size_t i;

	for (i = 0; i < m->n_assist; i++)
		if (strcmp(m->assist[i].sha, sha) == 0)
			break;
	if (i == m->n_assist) {
		if (m->n_assist >= DEPLOY_ASSIST_MAX)
			return -1;
		memset(&m->assist[i], 0, sizeof(m->assist[i]));
		snprintf(m->assist[i].sha, sizeof(m->assist[i].sha), "%s", sha);
		m->n_assist++;
	}
	m->assist[i].seen = 1;
	return (int)i;
}

/*
 * Assisted drain of a draining colour that still holds `count` sessions:
 * the bucket earns assist_rate sessions a second (at most one second's
 * worth waits), and what it holds is asked of the replicas in proportion
 * to their counts (largest remainders first), never more than a replica
 * holds. Returns 1 while the colour is being assisted.
 */
/* What replica r can move now: its connections (sessions held detached,
 * waiting for their clients, are counted but cannot be moved). */
static long movable(const struct platform_replica *r)
{
	long n = r->connections - (r->detached > 0 ? r->detached : 0);

	return n > 0 ? n : 0;
}

static int assist(const struct deploy_cfg *cfg, const struct deploy_obs *o, struct deploy_mem *m,
		  const struct deploy_colour_obs *c, long count, int64_t ds,
		  struct deploy_result *r)
{
	int64_t start = ds + cfg->assist_after_ms;
	double cap = cfg->assist_rate < 1.0 ? 1.0 : cfg->assist_rate;
	long n, given = 0, share[DEPLOY_ACT_MAX];
	double rem[DEPLOY_ACT_MAX];
	size_t nrep = c->n_rep < DEPLOY_ACT_MAX ? c->n_rep : DEPLOY_ACT_MAX;
	char rate[32];
	int k;

	if (cfg->assist_rate <= 0 || o->now_ms < start || count <= 0)
		return 0;
	if (!platform_meta_get(&c->c, DEPLOY_META_ASSIST_SINCE)) {
		meta_time(r, c->c.sha, DEPLOY_META_ASSIST_SINCE, o->now_ms);
		snprintf(rate, sizeof(rate), "%g", cfg->assist_rate);
		meta_set(r, c->c.sha, DEPLOY_META_ASSIST_RATE, rate);
	}
	k = assist_slot(m, c->c.sha);
	if (k < 0)
		return 1;
	if (!m->assist[k].last_ms) {
		/* First step (or memory lost): what accrued since the start. */
		m->assist[k].credit = cfg->assist_rate * (double)(o->now_ms - start) / 1000.0;
	} else if (o->now_ms > m->assist[k].last_ms) {
		m->assist[k].credit +=
			cfg->assist_rate * (double)(o->now_ms - m->assist[k].last_ms) / 1000.0;
	}
	m->assist[k].last_ms = o->now_ms;
	if (m->assist[k].credit > cap)
		m->assist[k].credit = cap;
	count = 0; /* what can be moved: sessions held detached cannot */
	for (size_t i = 0; i < nrep; i++)
		count += movable(&c->rep[i]);
	n = (long)m->assist[k].credit;
	if (n > count)
		n = count;
	if (n <= 0)
		return 1;
	/* Spread by counts: floor of each share, then the remainders. */
	for (size_t i = 0; i < nrep; i++) {
		long have = movable(&c->rep[i]);
		double exact = (double)n * (double)have / (double)count;

		share[i] = (long)exact;
		if (share[i] > have)
			share[i] = have;
		rem[i] = exact - (double)share[i];
		given += share[i];
	}
	while (given < n) {
		size_t best = nrep;

		for (size_t i = 0; i < nrep; i++) {
			long have = movable(&c->rep[i]);

			if (share[i] < have && (best == nrep || rem[i] > rem[best]))
				best = i;
		}
		if (best == nrep)
			break;
		share[best]++;
		rem[best] = -1.0;
		given++;
	}
	for (size_t i = 0; i < nrep; i++) {
		struct deploy_act *a;

		if (share[i] <= 0)
			continue;
		a = act(r, DEPLOY_ACT_MOVE, DEPLOY_WHY_ASSIST, c->c.sha);
		if (!a) {
			given -= share[i];
			continue;
		}
		snprintf(a->name, sizeof(a->name), "%s", c->rep[i].name);
		a->count = (int)share[i];
	}
	m->assist[k].credit -= (double)given;
	return 1;
}

static int cmp_kept(const void *a, const void *b)
{
	const struct deploy_colour_obs *x = *(const struct deploy_colour_obs *const *)a;
	const struct deploy_colour_obs *y = *(const struct deploy_colour_obs *const *)b;
	int64_t tx = deploy_meta_time(&x->c, PLATFORM_META_DRAINED_AT);
	int64_t ty = deploy_meta_time(&y->c, PLATFORM_META_DRAINED_AT);

	if (tx != ty)
		return tx > ty ? -1 : 1; /* newest first */
	return strcmp(x->c.sha, y->c.sha);
}

static void drained(const struct deploy_cfg *cfg, const struct deploy_colour_obs *c, int64_t now,
		    int64_t drain_ms, struct deploy_result *r)
{
	struct deploy_act *a;

	meta_time(r, c->c.sha, PLATFORM_META_DRAINED_AT, now);
	if (cfg->keep_drained > 0) {
		meta_set(r, c->c.sha, PLATFORM_META_KEPT, "1");
		a = act(r, DEPLOY_ACT_SCALE, DEPLOY_WHY_DRAINED, c->c.sha);
		if (a)
			a->drain_ms = drain_ms;
		return;
	}
	a = act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_DRAINED, c->c.sha);
	if (a)
		a->drain_ms = drain_ms;
}

/* The drain pass over every colour but the target. Returns colours waited for. */
static int drain_pass(const struct deploy_cfg *cfg, const struct deploy_obs *o,
		      struct deploy_mem *m, struct deploy_result *r)
{
	const struct deploy_colour_obs *kept[DEPLOY_ACT_MAX];
	size_t n_kept = 0;
	int waiting = 0;

	for (size_t i = 0; i < o->n; i++) {
		const struct deploy_colour_obs *c = &o->colours[i];
		enum deploy_state st = deploy_colour_state(c, o->selected);
		int64_t ds, zero_since = 0;
		long count;

		if (strcmp(c->c.sha, cfg->sha) == 0 || st == DEPLOY_STATE_LIVE)
			continue;
		if (st == DEPLOY_STATE_FAILED) {
			if (cfg->mode == DEPLOY_MODE_PRUNE)
				act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_PRUNE_FAILED, c->c.sha);
			continue;
		}
		if (st == DEPLOY_STATE_KEPT) {
			if (n_kept < DEPLOY_ACT_MAX)
				kept[n_kept++] = c;
			continue;
		}
		if (st == DEPLOY_STATE_STARTING) {
			/* Prune never takes a colour a concurrent deploy may be starting. */
			if (cfg->mode != DEPLOY_MODE_PRUNE) {
				meta_time(r, c->c.sha, PLATFORM_META_DRAINING_SINCE, o->now_ms);
				waiting++;
			}
			continue;
		}
		if (cfg->no_wait)
			continue;
		if (platform_meta_get(&c->c, DEPLOY_META_MAX_DRAIN_AT))
			continue; /* passed --max-drain and kept: reported, not waited for */
		ds = deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE);
		count = deploy_colour_connections(c);
		if (settled(m, cfg, o->now_ms, c->c.sha, "", count, &zero_since)) {
			drained(cfg, c, o->now_ms, zero_since - ds, r);
			continue;
		}
		if (count != 0 && cfg->max_drain_ms > 0 && o->now_ms - ds >= cfg->max_drain_ms &&
		    cfg->on_max_drain != DEPLOY_ON_MAX_ASSIST) {
			struct deploy_act *a;

			if (cfg->on_max_drain == DEPLOY_ON_MAX_SHUTDOWN) {
				meta_time(r, c->c.sha, PLATFORM_META_SHUTDOWN_AT, o->now_ms);
				a = act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_MAX_DRAIN, c->c.sha);
				if (a)
					a->drain_ms = o->now_ms - ds;
			} else {
				meta_time(r, c->c.sha, DEPLOY_META_MAX_DRAIN_AT, o->now_ms);
			}
			continue;
		}
		if (count > 0)
			r->assisting += assist(cfg, o, m, c, count, ds, r);
		if (cfg->shrink)
			shrink_colour(cfg, o, m, c, r);
		waiting++;
	}

	if (cfg->keep_drained >= 0 && n_kept > (size_t)cfg->keep_drained) {
		qsort(kept, n_kept, sizeof(kept[0]), cmp_kept);
		for (size_t i = (size_t)cfg->keep_drained; i < n_kept; i++)
			act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_EXCESS_KEPT, kept[i]->c.sha);
	}
	return waiting;
}

static void forget_unseen(struct deploy_mem *m)
{
	size_t j = 0;

	for (size_t i = 0; i < m->n_assist; i++) {
		if (!m->assist[i].seen)
			continue;
		m->assist[i].seen = 0;
		if (j != i)
			m->assist[j] = m->assist[i];
		j++;
	}
	m->n_assist = j;
	j = 0;

	for (size_t i = 0; i < m->n_track; i++) {
		if (!m->track[i].seen)
			continue;
		m->track[i].seen = 0;
		if (j != i)
			m->track[j] = m->track[i];
		j++;
	}
	m->n_track = j;
}

static int wanted_replicas(const struct deploy_cfg *cfg, const struct deploy_colour_obs *t)
{
	const char *v;

	if (cfg->replicas > 0)
		return cfg->replicas;
	v = t ? platform_meta_get(&t->c, PLATFORM_META_REPLICAS) : NULL;
	if (v && atoi(v) > 0)
		return atoi(v);
	return cfg->default_replicas > 0 ? cfg->default_replicas : 1;
}

static void meta_replicas(struct deploy_result *r, const struct deploy_colour_obs *t,
			  const char *sha, int wanted)
{
	char buf[16];
	const char *v = t ? platform_meta_get(&t->c, PLATFORM_META_REPLICAS) : NULL;

	snprintf(buf, sizeof(buf), "%d", wanted);
	if (!v || strcmp(v, buf) != 0)
		meta_set(r, sha, PLATFORM_META_REPLICAS, buf);
}

/*
 * The target is selected already (a re-run after a kill, a deploy of the live
 * SHA, the platform restarted under it): reconcile it like a first deploy
 * would leave it: the wanted replicas, every one ready, and the switch
 * sending new connections to exactly its ready replicas. Returns 1 while
 * something is being done (no drain pass yet), 0 when it is in line.
 */
static int reconcile_live(const struct deploy_cfg *cfg, const struct deploy_obs *o,
			  struct deploy_mem *m, const struct deploy_colour_obs *t, int wanted,
			  struct deploy_result *r)
{
	struct deploy_act *a;

	if (t->c.replicas != wanted && (cfg->replicas > 0 || t->c.replicas < wanted)) {
		a = act(r, DEPLOY_ACT_SCALE, DEPLOY_WHY_NONE, cfg->sha);
		if (a)
			a->replicas = wanted;
		meta_replicas(r, t, cfg->sha, wanted);
		r->phase = DEPLOY_PHASE_SCALE;
		m->wait_since_ms = o->now_ms;
		return 1;
	}
	r->ready = colour_ready(t);
	if (failed_replica(t)) {
		const struct platform_replica *f = failed_replica(t);

		r->phase = DEPLOY_PHASE_FAILED;
		r->failure = DEPLOY_FAIL_NOT_READY;
		snprintf(r->msg, sizeof(r->msg),
			 "live colour %s: replica %.128s exited before it was ready (%.700s); "
			 "it stays selected",
			 cfg->sha, f->name, f->fault[0] ? f->fault : "no details");
		m->wait_since_ms = 0;
		return 1;
	}
	if (r->ready < wanted) {
		if (!m->wait_since_ms)
			m->wait_since_ms = o->now_ms;
		if (o->now_ms - m->wait_since_ms >= cfg->ready_timeout_ms) {
			/* Live: never marked failed or removed, it keeps what it serves. */
			r->phase = DEPLOY_PHASE_FAILED;
			r->failure = DEPLOY_FAIL_NOT_READY;
			snprintf(r->msg, sizeof(r->msg),
				 "live colour %s has %d of %d replicas ready after %" PRId64
				 " ms; it stays selected",
				 cfg->sha, r->ready, wanted, o->now_ms - m->wait_since_ms);
			m->wait_since_ms = 0;
			return 1;
		}
		r->phase = DEPLOY_PHASE_READY;
		return 1;
	}
	m->wait_since_ms = 0;
	if (t->c.route_drift != 0) {
		/* The switch points elsewhere than the ready replicas: select again. */
		act(r, DEPLOY_ACT_SELECT, DEPLOY_WHY_NONE, cfg->sha);
		if (!platform_meta_get(&t->c, PLATFORM_META_SELECTED_AT))
			meta_time(r, cfg->sha, PLATFORM_META_SELECTED_AT, o->now_ms);
		r->phase = DEPLOY_PHASE_SWITCH;
		return 1;
	}
	return 0;
}

/*
 * The target will not get ready: past the ready timeout, or a replica
 * exited before it was ever ready (f; the platform does not restart it).
 * Traffic is not touched; the target is marked failed and removed (kept
 * with --keep-failed), unless it is an older colour scaled back up that
 * may still hold connections: that one stays draining.
 */
static int not_ready(const struct deploy_cfg *cfg, const struct deploy_obs *o, struct deploy_mem *m,
		     const struct deploy_colour_obs *t, int wanted, struct deploy_result *r,
		     const struct platform_replica *f)
{
	r->phase = DEPLOY_PHASE_FAILED;
	r->failure = DEPLOY_FAIL_NOT_READY;
	if (f)
		snprintf(r->msg, sizeof(r->msg),
			 "colour %s: replica %.128s exited before it was ready (%.700s); "
			 "traffic stays on %s",
			 cfg->sha, f->name, f->fault[0] ? f->fault : "no details",
			 o->selected[0] ? o->selected : "(nothing)");
	else
		snprintf(r->msg, sizeof(r->msg),
			 "colour %s not ready after %" PRId64 " ms (%d of %d replicas ready); "
			 "traffic stays on %s",
			 cfg->sha, o->now_ms - m->wait_since_ms, r->ready, wanted,
			 o->selected[0] ? o->selected : "(nothing)");
	m->wait_since_ms = 0;
	if (deploy_meta_time(&t->c, PLATFORM_META_DRAINING_SINCE) &&
	    deploy_colour_connections(t) != 0)
		return 1;
	meta_set(r, cfg->sha, PLATFORM_META_FAILED,
		 f ? "a replica exited before it was ready" : "not ready before --ready-timeout");
	if (!cfg->keep_failed)
		act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_FAILED, cfg->sha);
	return 1;
}

/* Before the switch. Returns 1 when the step is complete (no drain pass). */
static int towards_switch(const struct deploy_cfg *cfg, const struct deploy_obs *o,
			  struct deploy_mem *m, struct deploy_result *r)
{
	const struct deploy_colour_obs *t = deploy_obs_find(o, cfg->sha);
	int wanted = wanted_replicas(cfg, t);
	struct deploy_act *a;

	r->wanted = wanted;
	if (t && strcmp(o->selected, cfg->sha) == 0)
		return reconcile_live(cfg, o, m, t, wanted, r);
	if (t && platform_meta_get(&t->c, PLATFORM_META_FAILED)) {
		if (cfg->mode == DEPLOY_MODE_ROLLBACK) {
			r->phase = DEPLOY_PHASE_FAILED;
			r->failure = DEPLOY_FAIL_NO_TARGET;
			snprintf(r->msg, sizeof(r->msg),
				 "colour %s failed earlier (%s); "
				 "not rolling back to it",
				 cfg->sha, platform_meta_get(&t->c, PLATFORM_META_FAILED));
			return 1;
		}
		/* A kept failed colour is replaced by a fresh attempt. */
		act(r, DEPLOY_ACT_REMOVE, DEPLOY_WHY_FAILED, cfg->sha);
		r->phase = DEPLOY_PHASE_CREATE;
		m->wait_since_ms = 0;
		return 1;
	}
	if (!t) {
		if (cfg->mode == DEPLOY_MODE_ROLLBACK) {
			r->phase = DEPLOY_PHASE_FAILED;
			r->failure = DEPLOY_FAIL_NO_TARGET;
			snprintf(r->msg, sizeof(r->msg),
				 "colour %s does not exist: nothing to roll back to", cfg->sha);
			return 1;
		}
		a = act(r, DEPLOY_ACT_CREATE, DEPLOY_WHY_NONE, cfg->sha);
		if (a)
			a->replicas = wanted;
		meta_replicas(r, NULL, cfg->sha, wanted);
		r->phase = DEPLOY_PHASE_CREATE;
		m->wait_since_ms = o->now_ms;
		return 1;
	}
	if (t->c.replicas < wanted) {
		a = act(r, DEPLOY_ACT_SCALE,
			t->c.replicas == 0 ? DEPLOY_WHY_ROLLBACK : DEPLOY_WHY_NONE, cfg->sha);
		if (a)
			a->replicas = wanted;
		meta_clear(r, t, PLATFORM_META_KEPT);
		meta_replicas(r, t, cfg->sha, wanted);
		r->phase = DEPLOY_PHASE_CREATE;
		m->wait_since_ms = o->now_ms;
		return 1;
	}
	if (!m->wait_since_ms)
		m->wait_since_ms = o->now_ms;
	r->ready = colour_ready(t);
	if (failed_replica(t))
		return not_ready(cfg, o, m, t, wanted, r, failed_replica(t));
	if (r->ready >= wanted) {
		act(r, DEPLOY_ACT_SELECT, DEPLOY_WHY_NONE, cfg->sha);
		meta_time(r, cfg->sha, PLATFORM_META_SELECTED_AT, o->now_ms);
		meta_clear(r, t, PLATFORM_META_DRAINING_SINCE);
		meta_clear(r, t, PLATFORM_META_DRAINED_AT);
		meta_clear(r, t, PLATFORM_META_KEPT);
		meta_clear(r, t, PLATFORM_META_SHUTDOWN_AT);
		meta_clear(r, t, DEPLOY_META_MAX_DRAIN_AT);
		meta_clear(r, t, PLATFORM_META_DRAIN_FROM);
		if (o->selected[0] && strcmp(o->selected, cfg->sha) != 0) {
			const struct deploy_colour_obs *old = deploy_obs_find(o, o->selected);
			char from[24];

			meta_time(r, o->selected, PLATFORM_META_DRAINING_SINCE, o->now_ms);
			/* What the drain starts from, for `status` progress. */
			if (old && deploy_colour_connections(old) >= 0) {
				snprintf(from, sizeof(from), "%ld", deploy_colour_connections(old));
				meta_set(r, o->selected, PLATFORM_META_DRAIN_FROM, from);
			}
		}
		r->phase = DEPLOY_PHASE_SWITCH;
		m->wait_since_ms = 0;
		return 1;
	}
	if (o->now_ms - m->wait_since_ms >= cfg->ready_timeout_ms)
		return not_ready(cfg, o, m, t, wanted, r, NULL);
	r->phase = DEPLOY_PHASE_READY;
	return 1;
}

void deploy_step(const struct deploy_cfg *cfg, const struct deploy_obs *o, struct deploy_mem *m,
		 struct deploy_result *r)
{
	const struct deploy_colour_obs *t;

	memset(r, 0, sizeof(*r));
	if (!m->started_ms)
		m->started_ms = o->now_ms;
	if (cfg->mode != DEPLOY_MODE_PRUNE && towards_switch(cfg, o, m, r))
		goto out;

	t = cfg->mode != DEPLOY_MODE_PRUNE ? deploy_obs_find(o, cfg->sha) : NULL;
	if (t) {
		/* Selected already (e.g. killed right after the switch): tidy its meta. */
		meta_clear(r, t, PLATFORM_META_DRAINING_SINCE);
		meta_clear(r, t, PLATFORM_META_DRAINED_AT);
		meta_clear(r, t, PLATFORM_META_KEPT);
		meta_clear(r, t, DEPLOY_META_MAX_DRAIN_AT);
		if (!platform_meta_get(&t->c, PLATFORM_META_SELECTED_AT))
			meta_time(r, t->c.sha, PLATFORM_META_SELECTED_AT, o->now_ms);
		r->ready = colour_ready(t);
		r->wanted = wanted_replicas(cfg, t);
	}
	r->draining = drain_pass(cfg, o, m, r);
	if (r->draining == 0 && r->n_act == 0)
		r->phase = DEPLOY_PHASE_DONE;
	else if (cfg->no_wait && r->n_act == 0)
		r->phase = DEPLOY_PHASE_DONE;
	else if (cfg->mode == DEPLOY_MODE_PRUNE && r->n_act == 0 &&
		 o->now_ms - m->started_ms >= cfg->prune_window_ms)
		r->phase = DEPLOY_PHASE_DONE;
	else
		r->phase = DEPLOY_PHASE_DRAIN;
out:
	forget_unseen(m);
}

int deploy_rollback_target(const struct deploy_obs *o, char out[PLATFORM_SHA_MAX], char *err,
			   size_t errlen)
{
	const struct deploy_colour_obs *best = NULL;
	int64_t best_t = 0;

	for (size_t i = 0; i < o->n; i++) {
		const struct deploy_colour_obs *c = &o->colours[i];
		enum deploy_state st = deploy_colour_state(c, o->selected);
		int64_t ds = deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE);

		if (st != DEPLOY_STATE_DRAINING && st != DEPLOY_STATE_KEPT)
			continue;
		if (!ds || platform_meta_get(&c->c, PLATFORM_META_SHUTDOWN_AT))
			continue;
		if (!best || ds > best_t) {
			best = c;
			best_t = ds;
		}
	}
	if (!best) {
		snprintf(err, errlen,
			 "nothing to roll back to: no earlier colour is still "
			 "running or kept (use --keep-drained K to keep drained colours)");
		return -ENOENT;
	}
	snprintf(out, PLATFORM_SHA_MAX, "%s", best->c.sha);
	return 0;
}
