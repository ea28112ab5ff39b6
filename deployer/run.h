/*
 * The driver around the pure deploy logic: observe the platform, call
 * deploy_step(), perform its actions, print each step with its duration,
 * append the timeline (STATE/timeline.csv) and the record of what was done
 * (STATE/record.jsonl), repeat every poll interval.
 *
 *   timeline.csv  unix_time,sha,connections,state   one row per colour per poll
 *   record.jsonl  {"t":unix_time,"event":"create|scale|select|remove|
 *                  remove-replica|failed|done","sha":..,"why":..,
 *                  "connections":count observed when decided,
 *                  "zero_for_ms":how long it had read 0,"drain_ms":..}
 *                 a select that deselects a colour also has "deselected"
 *                 (its sha), "deselected_at" (unix time of the observation
 *                 that decided it: the colour's draining-since) and
 *                 "deselected_connections";
 *                 {"event":"forecast","sha":..,"since_deselect_s":..,
 *                  "connections":..,"eta_s":..,"eta_p90_s":..,"t50_s":..,
 *                  "t90_s":..,"t99_s":.. (null when unknown),"note":..,
 *                  "curve":[[s,fraction],..]} for a draining colour: at its
 *                  first observation, when a forecast first exists, then
 *                  once a minute.
 *
 * Every decision applied on a colour is also told to the platform as an
 * event (platform.h, the optional op event; kube: a Kubernetes Event on the
 * colour's Deployment). A platform that cannot record one never fails the
 * deploy: the first failure is printed as one warning line on stderr, later
 * ones only at the 10th, 100th, 1000th... failure.
 */
#ifndef RAINBOW_RUN_H
#define RAINBOW_RUN_H

#include <stdio.h>

#include <jansson.h>

#include "deploy.h"
#include "platform.h"

/*
 * Exit statuses of rainbow's commands, one per failure class, so that a
 * pipeline can branch on them (docs/rainbow.md, "Exit status").
 */
enum run_exit {
	RUN_EXIT_OK = 0,
	RUN_EXIT_FAILED = 1,	/* anything not below (state dir unusable, out of memory) */
	RUN_EXIT_USAGE = 2,	/* bad command line */
	RUN_EXIT_PLATFORM = 3,	/* platform unreachable or not there: API server, kubeconfig,
				 * namespace, Service; local switch not up */
	RUN_EXIT_DENIED = 4,	/* credentials rejected (401) or RBAC (403) */
	RUN_EXIT_NOT_READY = 5, /* the colour's replicas were not ready by --ready-timeout */
	RUN_EXIT_GAVE_UP = 6,	/* platform errors went on: gave up after repeated failed steps */
	RUN_EXIT_LOCKED = 7,	/* another rainbow is deploying with this state dir */
	RUN_EXIT_TIMEOUT = 8,	/* wait: --timeout passed first */
	RUN_EXIT_NO_TARGET = 9, /* rollback: no colour to go back to, or it failed earlier */
};

/* The class name of an exit status ("platform", "denied"...), as -o json prints it. */
const char *run_exit_class(int code);
/* The exit status for a platform error code (-EACCES: denied; others: platform). */
int run_exit_for_error(int rc);

struct run_opts {
	const char *state_dir;
	double poll_s; /* seconds between observations */
	FILE *out;     /* progress lines */
	int quiet;
	/*
	 * NULL, or an object run_deploy() fills for `-o json`: "actions" (each
	 * thing done, as in the record), "phases" (seconds per phase),
	 * "selected_before", "selected", "colours" (the last observation),
	 * "seconds", and "failure" ({"class", "reason"}) when it fails.
	 */
	json_t *report;
};

/* One observation of every colour; free with run_obs_free(). 0 or -errno (p->err). */
struct run_obs {
	struct deploy_obs obs;
	struct deploy_colour_obs *colours;
	struct platform_replica **reps;
	size_t n;
};
int run_observe(struct platform *p, struct run_obs *ro);
void run_obs_free(struct run_obs *ro);

/* Appends one timeline row per colour of ro. */
void run_timeline(const char *state_dir, const struct run_obs *ro);

/* Sets report's "failure" to {"class", "reason"} (report may be NULL). */
void run_report_failure(json_t *report, int code, const char *reason);

/* The colours of ro as JSON: sha, state, replicas, ready, connections. */
json_t *run_colours_json(const struct run_obs *ro);

/* Appends one JSON object line to STATE/record.jsonl (takes ownership). */
void run_record(const char *state_dir, json_t *event);

/*
 * Runs cfg to the end. Returns the exit status (enum run_exit): 0 done,
 * otherwise the class of the failure (the reason printed to stderr).
 */
int run_deploy(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o);

/* The forecast as JSON: eta_s, eta_p90_s, t50_s, t90_s, t99_s (null when
 * unknown), note (null when none), curve when with_curve. */
struct forecast;
json_t *run_forecast_json(const struct forecast *f, int with_curve);

/* "~2m10s left" or "? left" (the forecast's eta_s) into buf. */
const char *run_forecast_text(const struct forecast *f, char *buf, size_t len);

/* At most this many events tell one action. */
#define RUN_EVENTS_MAX 2

/*
 * The events telling that action a was applied (pure: what
 * run_deploy() hands to the platform's event op). obs is the observation
 * the action was decided from; waited_ms is how long this run waited for the
 * target to become ready (-1: it did not wait, then a switch has no Ready
 * event). Returns how many of ev were filled (0: the action tells nothing
 * by itself, e.g. clearing a meta key).
 */
size_t run_action_events(const struct deploy_cfg *cfg, const struct deploy_obs *obs,
			 const struct deploy_act *a, int64_t waited_ms,
			 struct platform_event ev[RUN_EVENTS_MAX]);

/*
 * deploy/rollback --dry-run: observes for real, then plays cfg's steps on a
 * simulated platform (every new replica ready at once, connections as they
 * are now) up to the drain, performing nothing. Each step's actions go to
 * report "steps" ({"phase", "action", "sha", ... "requests"}); where the
 * platform can describe its changes (ops->can_dry_run, p->dry_run set) the
 * requests it would send are in "requests", else only the action. Colours
 * the deploy would then wait for go to "then_drain". Returns an exit status.
 */
int run_dry_run(struct platform *p, const struct deploy_cfg *cfg, json_t *report);

/* Unix time in milliseconds. */
int64_t run_now_ms(void);

/*
 * How long to wait before retrying after `errors` failures in a row: 100 ms
 * doubled each time, at most 5 s, and never less than planned_ms.
 */
int64_t run_backoff_ms(int errors, int64_t planned_ms);

#endif
