/*
 * The drain forecast: when will a draining colour's connection count read
 * 0? Pure maths over what the platform observed (no I/O), so it is
 * unit-tested on synthetic lifetimes and ages.
 *
 * The model (docs/rainbow.md, "Drain forecast", says why):
 *   1. Lifetime distribution: a life-table (actuarial Kaplan-Meier)
 *      estimate of the survival function S(x) = P(lifetime > x) from every
 *      replica of every colour: ended connections are events (the
 *      chatd_connection_duration_seconds histogram), open ones are
 *      right-censored at their age (chatd_connection_age_seconds_bucket).
 *      Between bucket bounds the hazard is constant; the sparse tail (where
 *      fewer than FORECAST_TAIL_EVENTS ended) shares one hazard. Past the
 *      data S is 0 when the replicas ran long enough for longer lifetimes
 *      to show (FORECAST_CLOSE_ROOM), else it goes on with the last hazard
 *      (an exponential tail).
 *   2. A connection of age a lives on for more than t with probability
 *      S(a + t) / S(a). Its age is only known to a bucket (L, U]; within it
 *      ages are taken as distributed like S (arrivals at a steady rate), so
 *      P(R > t) = (G(U + t) - G(L + t)) / (G(U) - G(L)), G the integral of S.
 *   3. A colour has drained when the last of its connections has ended:
 *      P(drained by t) = product over its connections of P(R <= t).
 *      eta_s is the median of that, eta_p90_s its 90th percentile.
 *   4. The expected remaining fraction, mean of P(R > t) over its
 *      connections, gives the forecast drain curve and its t50/t90/t99.
 */
#ifndef RAINBOW_FORECAST_H
#define RAINBOW_FORECAST_H

#include <stddef.h>

#include "deploy.h"
#include "platform.h"

/* Fewer ended connections than this (all replicas together): no forecast. */
#define FORECAST_MIN_ENDED 100
/* The sparse tail: buckets after which fewer connections than this ended
 * share one hazard. */
#define FORECAST_TAIL_EVENTS 30
/* S closes (reaches 0 where the data ends) only when the oldest replica ran
 * this many times longer than the longest lifetime seen: longer ones had
 * the time to show up and none did. Otherwise the data is cut short by
 * the window, and S goes on with the last hazard seen. */
#define FORECAST_CLOSE_ROOM 1.5
/* Points of the forecast drain curve. */
#define FORECAST_CURVE_MAX 32

struct forecast_model {
	int n;				     /* finite bounds; 0: no replica had data */
	double le[PLATFORM_HIST_MAX];	     /* the bounds, seconds */
	double ended[PLATFORM_HIST_MAX + 1]; /* ended connections per bucket, [n] = +Inf */
	double open[PLATFORM_HIST_MAX + 1];  /* open connections per age bucket */
	double ended_total, open_total;	     /* sums of the two */
	int replicas;			     /* replicas whose data is in */
	int skipped;			     /* replicas left out: no data or other bounds */
	int fitted;			     /* forecast_model_fit() found data */
	double s[PLATFORM_HIST_MAX + 1];     /* S at the knots 0, le[0], .., le[n-1] */
	double g[PLATFORM_HIST_MAX + 1];     /* integral of S from 0 to each knot */
	int end;			     /* last knot where S is estimated */
	int closed;			     /* S is 0 from knot `end` on */
	double window;			     /* longest uptime of a replica; <= 0 unknown */
	double tail_h;			     /* hazard beyond knot `end` (not closed) */
};

struct forecast {
	int ok;			    /* eta_s is known */
	double connections;	    /* open connections forecast (from the age buckets) */
	double eta_s;		    /* median time until the last one ended; -1 unknown */
	double eta_p90_s;	    /* 90th percentile of it; -1 unknown */
	double t50_s, t90_s, t99_s; /* expected remaining fraction <= 50 %, 10 %, 1 %; -1 */
	char note[160];		    /* why not ok (or a caveat) */
	size_t n_curve;		    /* expected remaining fraction at curve_t[i] seconds */
	double curve_t[FORECAST_CURVE_MAX], curve_frac[FORECAST_CURVE_MAX];
};

void forecast_model_init(struct forecast_model *m);

/*
 * Adds one replica's lifetimes and ages. The first replica with both sets
 * the bounds; one with other bounds or without both histograms is skipped
 * (-1), else 0.
 */
int forecast_model_add(struct forecast_model *m, const struct platform_replica *r);

/* Estimates S from what was added. */
void forecast_model_fit(struct forecast_model *m);

/* S(x) and the residual survival of an age bucket, for tests: NaN when unknown. */
double forecast_survival(const struct forecast_model *m, double x);
double forecast_residual(const struct forecast_model *m, int bucket, double t);

/*
 * The forecast for open connections whose cumulative ages (bounds as the
 * model's) are `ages`.
 */
void forecast_ages(const struct forecast_model *m, const struct platform_hist *ages,
		   struct forecast *out);

/* The model over every replica of every colour observed, fitted. */
void forecast_model_from_obs(struct forecast_model *m, const struct deploy_obs *obs);

/* The forecast for one colour (its replicas' ages summed). */
void forecast_colour(const struct forecast_model *m, const struct deploy_colour_obs *c,
		     struct forecast *out);

#endif
