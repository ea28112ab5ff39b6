/*
 * `rainbow status -o json` and the dashboard's state: one observation
 * turned into per-colour JSON, with drain progress and forecast.
 */
#include "status.h"

#include <stdlib.h>

#include "deploy.h"
#include "forecast.h"
#include "platform.h"

int status_drained_pct(long drain_from, long connections, long lost)
{
	if (lost < 0)
		lost = 0;
	if (drain_from <= 0 || connections < 0 || connections + lost > drain_from)
		return -1;
	/* Whole percents rounded down: "100 %" must mean nothing is left. */
	return (int)((drain_from - connections - lost) * 100 / drain_from);
}

static json_t *colour_json(const struct forecast_model *model, const struct run_obs *obs,
			   const struct deploy_colour_obs *co)
{
	enum deploy_state st = deploy_colour_state(co, obs->obs.selected);
	int64_t ds = deploy_meta_time(&co->c, PLATFORM_META_DRAINING_SINCE);
	double age = co->c.created ? (double)(obs->obs.now_ms / 1000 - co->c.created) : -1;
	double draining = ds ? (double)(obs->obs.now_ms - ds) / 1000.0 : -1;
	long conns = deploy_colour_connections(co);
	const char *from = platform_meta_get(&co->c, PLATFORM_META_DRAIN_FROM);
	long drain_from = from ? atol(from) : 0;
	int ready = 0, restarts = 0, pct;
	long lost = 0;
	json_t *o, *meta, *reps;

	for (size_t k = 0; k < co->n_rep; k++) {
		ready += co->rep[k].ready;
		restarts += co->rep[k].restarts;
		lost += co->rep[k].lost > 0 ? co->rep[k].lost : 0;
	}
	o = json_pack("{s:s,s:s,s:i,s:i,s:I,s:f}", "sha", co->c.sha, "state", deploy_state_name(st),
		      "replicas", co->c.replicas, "ready", ready, "connections", (json_int_t)conns,
		      "age_s", age);
	if (!o)
		return NULL;
	meta = json_object();
	reps = json_array();
	for (size_t k = 0; k < co->c.n_meta; k++)
		json_object_set_new(meta, co->c.meta[k].key, json_string(co->c.meta[k].value));
	for (size_t k = 0; k < co->n_rep; k++)
		json_array_append_new(
			reps, json_pack("{s:s,s:b,s:I,s:i,s:I,s:b,s:s}", "name", co->rep[k].name,
					"ready", co->rep[k].ready, "connections",
					(json_int_t)co->rep[k].connections, "restarts",
					co->rep[k].restarts, "lost", (json_int_t)co->rep[k].lost,
					"failed", co->rep[k].failed, "fault", co->rep[k].fault));
	json_object_set_new(o, "restarts", json_integer(restarts));
	json_object_set_new(o, "lost", json_integer(lost));
	json_object_set_new(o, "selected", json_boolean(st == DEPLOY_STATE_LIVE));
	json_object_set_new(o, "draining_s",
			    draining >= 0 && st == DEPLOY_STATE_DRAINING ? json_real(draining)
									 : json_null());
	pct = st == DEPLOY_STATE_DRAINING ? status_drained_pct(drain_from, conns, lost) : -1;
	json_object_set_new(o, "drain_from",
			    drain_from > 0 ? json_integer(drain_from) : json_null());
	json_object_set_new(o, "drained_pct", pct >= 0 ? json_integer(pct) : json_null());
	/* Assisted drain (--drain-assist): since when, how fast; null when natural. */
	if (st == DEPLOY_STATE_DRAINING && platform_meta_get(&co->c, DEPLOY_META_ASSIST_SINCE)) {
		int64_t as = deploy_meta_time(&co->c, DEPLOY_META_ASSIST_SINCE);
		const char *rate = platform_meta_get(&co->c, DEPLOY_META_ASSIST_RATE);

		json_object_set_new(o, "assist",
				    json_pack("{s:f,s:f}", "since_s",
					      as ? (double)(obs->obs.now_ms - as) / 1000.0 : -1.0,
					      "rate", rate ? atof(rate) : 0.0));
	} else {
		json_object_set_new(o, "assist", json_null());
	}
	if (st == DEPLOY_STATE_DRAINING) {
		struct forecast fc = { 0 };
		json_t *f;

		forecast_colour(model, co, &fc);
		f = run_forecast_json(&fc, 0);
		json_object_set_new(o, "eta_s", json_incref(json_object_get(f, "eta_s")));
		json_object_set_new(o, "eta_p90_s", json_incref(json_object_get(f, "eta_p90_s")));
		json_object_set_new(o, "forecast", f);
	} else {
		json_object_set_new(o, "eta_s", json_null());
		json_object_set_new(o, "eta_p90_s", json_null());
	}
	json_object_set_new(o, "meta", meta);
	json_object_set_new(o, "replica_list", reps);
	return o;
}

json_t *status_json(const char *platform, const struct run_obs *obs)
{
	struct forecast_model model;
	json_t *arr = json_array(), *top;

	/* The lifetimes every replica has seen: the drain forecast's model. */
	forecast_model_from_obs(&model, &obs->obs);
	for (size_t i = 0; i < obs->n; i++)
		json_array_append_new(arr, colour_json(&model, obs, &obs->colours[i]));
	top = json_pack("{s:s,s:s,s:o}", "platform", platform, "selected", obs->obs.selected,
			"colours", arr);
	if (!top)
		return NULL;
	/* What the forecasts rest on: lifetimes seen by every replica. */
	json_object_set_new(top, "lifetimes",
			    json_pack("{s:f,s:f,s:i,s:i,s:f}", "ended", model.ended_total, "open",
				      model.open_total, "replicas", model.replicas, "skipped",
				      model.skipped, "window_s", model.window));
	return top;
}
