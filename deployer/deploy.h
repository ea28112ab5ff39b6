/*
 * The rainbow deploy logic as a pure state machine: given what the platform
 * shows now (colours, their meta, per-replica readiness and connection
 * counts, the selected colour, the time), decide the next platform actions.
 * No I/O here: deployer/run.c observes, calls deploy_step(), performs the
 * actions and observes again. Because every decision is derived from the
 * observed state (meta lives in the platform), a run killed at any point and
 * started again converges.
 *
 * The little state kept between steps (struct deploy_mem) only ever delays
 * decisions when lost: the settle clocks restart and the ready timeout
 * restarts.
 */
#ifndef RAINBOW_DEPLOY_H
#define RAINBOW_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"

enum deploy_mode {
	DEPLOY_MODE_DEPLOY,   /* create sha unless it exists, then as below */
	DEPLOY_MODE_ROLLBACK, /* sha must exist (running or kept at 0 replicas) */
	DEPLOY_MODE_PRUNE,    /* no target: settle and delete drained colours */
};

/* Past --max-drain: keep it draining (reported), shut it down, or move its
 * sessions to the new colour at the assist rate (assisted drain). */
enum deploy_on_max { DEPLOY_ON_MAX_KEEP, DEPLOY_ON_MAX_SHUTDOWN, DEPLOY_ON_MAX_ASSIST };

struct deploy_cfg {
	enum deploy_mode mode;
	char sha[PLATFORM_SHA_MAX]; /* target; "" in prune mode */
	int replicas;		    /* wanted replicas; 0 = from meta "replicas" */
	int default_replicas;	    /* when neither given nor in meta (0: 1) */
	int64_t ready_timeout_ms;
	int64_t settle_ms;    /* a count must read 0 this long to be drained */
	int64_t max_drain_ms; /* 0: no limit */
	enum deploy_on_max on_max_drain;
	int shrink;		 /* give back replicas that settled at 0 */
	int keep_drained;	 /* -1: leave kept colours alone; K: keep the last K */
	int keep_failed;	 /* keep a colour that never became ready */
	int no_wait;		 /* done right after the switch */
	int64_t prune_window_ms; /* prune: give up waiting after this */
	/*
	 * Assisted drain (--drain-assist RATE): from assist_after_ms of
	 * draining on, ask a draining colour's replicas to move sessions to the
	 * selected colour (see-other-host, XEP-0198 resumption), at most
	 * assist_rate sessions a second across the colour (one second's worth
	 * at most at once), spread over its replicas by their counts, until it
	 * reads 0. 0: off.
	 */
	double assist_rate;
	int64_t assist_after_ms;
};

/* One colour as observed (replica array borrowed from the caller). */
struct deploy_colour_obs {
	struct platform_colour c;
	size_t n_rep;
	const struct platform_replica *rep;
};

struct deploy_obs {
	int64_t now_ms;			 /* unix milliseconds */
	char selected[PLATFORM_SHA_MAX]; /* "" when none */
	size_t n;
	const struct deploy_colour_obs *colours;
};

/* Set on a colour that passed --max-drain with --on-max-drain keep. */
#define DEPLOY_META_MAX_DRAIN_AT "max-drain-at"
/* Set when the assisted drain of a colour begins: the time, and the rate. */
#define DEPLOY_META_ASSIST_SINCE "assist-since"
#define DEPLOY_META_ASSIST_RATE "assist-rate"

#define DEPLOY_TRACK_MAX 128
#define DEPLOY_ASSIST_MAX 32

/* Volatile memory between steps; zero it (deploy_mem_init) before the first. */
struct deploy_mem {
	int64_t started_ms;    /* first step's time */
	int64_t wait_since_ms; /* waiting for readiness since (0: not waiting) */
	size_t n_track;
	struct {
		char sha[PLATFORM_SHA_MAX];
		char name[PLATFORM_NAME_MAX]; /* "" = the colour's sum */
		int64_t zero_since_ms;	      /* count first read 0 (0: not zero) */
		int seen;		      /* touched in this step (for garbage collection) */
	} track[DEPLOY_TRACK_MAX];
	size_t n_assist;
	struct {
		char sha[PLATFORM_SHA_MAX];
		int64_t last_ms; /* when credit was last brought up to date */
		double credit;	 /* sessions that may be moved now (rate x time) */
		int seen;
	} assist[DEPLOY_ASSIST_MAX]; /* assisted drain: a token bucket per colour */
};

enum deploy_act_kind {
	DEPLOY_ACT_CREATE,	   /* sha, replicas */
	DEPLOY_ACT_SCALE,	   /* sha, replicas */
	DEPLOY_ACT_SELECT,	   /* sha */
	DEPLOY_ACT_META,	   /* sha, key, value (has_value 0: remove key) */
	DEPLOY_ACT_REMOVE,	   /* sha */
	DEPLOY_ACT_REMOVE_REPLICA, /* sha, name */
	DEPLOY_ACT_MOVE,	   /* sha, name, count: move that many sessions now */
};

/* Why an action is taken: what the driver reports to the operator. */
enum deploy_why {
	DEPLOY_WHY_NONE,
	DEPLOY_WHY_DRAINED,	 /* count read 0 for the settle period */
	DEPLOY_WHY_MAX_DRAIN,	 /* passed --max-drain, --on-max-drain shutdown */
	DEPLOY_WHY_FAILED,	 /* never became ready */
	DEPLOY_WHY_EXCESS_KEPT,	 /* more than --keep-drained kept colours */
	DEPLOY_WHY_SHRINK,	 /* one replica settled at 0 */
	DEPLOY_WHY_PRUNE_FAILED, /* prune: a kept failed colour */
	DEPLOY_WHY_ROLLBACK,	 /* scaling a kept colour back up */
	DEPLOY_WHY_ASSIST,	 /* assisted drain (--drain-assist) */
};

struct deploy_act {
	enum deploy_act_kind kind;
	enum deploy_why why;
	char sha[PLATFORM_SHA_MAX];
	char name[PLATFORM_NAME_MAX];
	int replicas;
	char key[PLATFORM_META_KEY_MAX];
	char value[PLATFORM_META_VAL_MAX];
	int has_value;
	int64_t drain_ms; /* DRAINED / MAX_DRAIN: draining-since to now */
	int count;	  /* MOVE: sessions to move */
};

enum deploy_phase {
	DEPLOY_PHASE_CREATE, /* target missing or scaled down */
	DEPLOY_PHASE_READY,  /* waiting until every replica is ready */
	DEPLOY_PHASE_SWITCH, /* ready, switching */
	DEPLOY_PHASE_DRAIN,  /* selected; old colours draining */
	DEPLOY_PHASE_DONE,
	DEPLOY_PHASE_FAILED,
	DEPLOY_PHASE_SCALE, /* the selected target scaled to the wanted replicas */
};

#define DEPLOY_ACT_MAX 64

/* Why a step ended in DEPLOY_PHASE_FAILED. */
enum deploy_failure {
	DEPLOY_FAIL_NONE,
	DEPLOY_FAIL_NOT_READY, /* the target's replicas were not ready by the ready timeout */
	DEPLOY_FAIL_NO_TARGET, /* rollback: the colour is missing or failed earlier */
};

struct deploy_result {
	enum deploy_phase phase;
	enum deploy_failure failure; /* FAILED: which kind */
	char msg[1024];		     /* FAILED: the reason; otherwise a short note */
	int draining;		     /* colours still draining (being waited for) */
	int assisting;		     /* of them, under assisted drain now */
	int ready, wanted;	     /* target readiness */
	size_t n_act;
	struct deploy_act act[DEPLOY_ACT_MAX];
};

void deploy_mem_init(struct deploy_mem *m);

/* Decides the next actions. Never fails: problems are phase FAILED + msg. */
void deploy_step(const struct deploy_cfg *cfg, const struct deploy_obs *obs, struct deploy_mem *mem,
		 struct deploy_result *res);

/*
 * Picks the colour rollback goes to when no SHA is given: the non-selected,
 * non-failed colour deselected most recently (running or kept). 0, or
 * -ENOENT with a message in err.
 */
int deploy_rollback_target(const struct deploy_obs *obs, char out[PLATFORM_SHA_MAX], char *err,
			   size_t errlen);

/* How a colour looks to `rainbow status`. */
enum deploy_state {
	DEPLOY_STATE_LIVE,     /* selected */
	DEPLOY_STATE_STARTING, /* never selected, not failed */
	DEPLOY_STATE_DRAINING, /* deselected, still has replicas */
	DEPLOY_STATE_KEPT,     /* drained and scaled to 0 for rollback */
	DEPLOY_STATE_FAILED,   /* never became ready (kept with --keep-failed) */
};
enum deploy_state deploy_colour_state(const struct deploy_colour_obs *c, const char *selected);
const char *deploy_state_name(enum deploy_state s);
const char *deploy_phase_name(enum deploy_phase p);
/* "drained", "max-drain"...: the words the record and the events use. */
const char *deploy_why_name(enum deploy_why w);
/* The colour of sha in o, or NULL. */
const struct deploy_colour_obs *deploy_obs_find(const struct deploy_obs *o, const char *sha);

/* Sum of the replicas' counts; -1 when one is unreadable. */
long deploy_colour_connections(const struct deploy_colour_obs *c);

/* Meta time helpers: "1796000000.250" <-> unix ms; 0 when absent/invalid. */
int64_t deploy_meta_time(const struct platform_colour *c, const char *key);
void deploy_format_time(char *buf, size_t len, int64_t ms);

#endif
