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

struct run_opts {
	const char *state_dir;
	double poll_s; /* seconds between observations */
	FILE *out;     /* progress lines */
	int quiet;
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

/* Appends one JSON object line to STATE/record.jsonl (takes ownership). */
void run_record(const char *state_dir, json_t *event);

/*
 * Runs cfg to the end. Returns the exit status: 0 done, 1 failed (the reason
 * printed to stderr).
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

/* Unix time in milliseconds. */
int64_t run_now_ms(void);

#endif
