/*
 * Knots of the survival curve: x[0] = 0 and x[i + 1] = le[i]. Bucket k
 * holds values in (x[k], x[k + 1]]; bucket n is beyond the last bound.
 * Between knots S has a constant hazard (seg_survival()).
 *
 * Where the data ends, S must end somehow. When the last bucket that holds
 * any connection (ended or open) holds an ended one and the replicas ran
 * long enough for longer lifetimes to have shown up (FORECAST_CLOSE_ROOM
 * times that bucket's bound), the connections still open there are taken
 * to end within it too (S reaches 0 at its bound: the longest lifetime seen
 * bounds the others, Efron's convention for Kaplan-Meier). When the data
 * may have been cut short by the replicas' age, S goes on past it with the
 * hazard of its last stretch (an exponential tail, as Brown, Hollander and
 * Korwar complete Kaplan-Meier). When that hazard is 0 (only open
 * connections at the end), S is unknown past it and so is any forecast
 * that needs it.
 */
#include "forecast.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void forecast_model_init(struct forecast_model *m)
{
	memset(m, 0, sizeof(*m));
}

static int same_bounds(const struct forecast_model *m, const struct platform_hist *h)
{
	if (h->n != m->n)
		return 0;
	for (int i = 0; i < h->n; i++)
		if (h->le[i] != m->le[i])
			return 0;
	return 1;
}

/* Non-cumulative counts of h added to per[] (n + 1 buckets). */
static void add_buckets(double *per, const struct platform_hist *h)
{
	for (int i = 0; i <= h->n; i++)
		per[i] += h->cum[i] - (i > 0 ? h->cum[i - 1] : 0);
}

int forecast_model_add(struct forecast_model *m, const struct platform_replica *r)
{
	const struct platform_hist *life = &r->lifetimes, *ages = &r->ages;

	if (life->n <= 0 || ages->n != life->n ||
	    memcmp(life->le, ages->le, sizeof(double) * (size_t)life->n) != 0) {
		m->skipped++;
		return -1;
	}
	if (m->replicas == 0) {
		m->n = life->n;
		memcpy(m->le, life->le, sizeof(double) * (size_t)life->n);
	} else if (!same_bounds(m, life)) {
		m->skipped++;
		return -1;
	}
	add_buckets(m->ended, life);
	add_buckets(m->open, ages);
	if (r->uptime_s > 0 && r->uptime_s > m->window)
		m->window = r->uptime_s;
	m->ended_total += life->cum[life->n];
	m->open_total += ages->cum[ages->n];
	m->replicas++;
	return 0;
}

static double knot(const struct forecast_model *m, int i)
{
	return i == 0 ? 0 : m->le[i - 1];
}

/*
 * S within segment i (between knots i and i + 1): a constant hazard (S
 * falls geometrically, exact for exponential lifetimes, and what keeps the
 * tail that decides a drain from being overstated), except where S falls to
 * 0, which a constant hazard never reaches: there linearly.
 */
static double seg_survival(const struct forecast_model *m, int i, double x)
{
	double x0 = knot(m, i), x1 = knot(m, i + 1), f = (x - x0) / (x1 - x0);

	if (m->s[i + 1] > 0 && m->s[i] > 0)
		return m->s[i] * pow(m->s[i + 1] / m->s[i], f);
	return m->s[i] + (m->s[i + 1] - m->s[i]) * f;
}

/* The integral of S from a to b, both within segment i (written so that
 * nothing large cancels: drains are decided far out in the tail). */
static double seg_integral(const struct forecast_model *m, int i, double a, double b)
{
	double x0 = knot(m, i), x1 = knot(m, i + 1), h, sa;

	if (!(b > a))
		return 0;
	sa = seg_survival(m, i, a);
	if (m->s[i + 1] > 0 && m->s[i] > 0) {
		h = log(m->s[i] / m->s[i + 1]) / (x1 - x0);
		if (h < 1e-12)
			return sa * (b - a);
		return sa * -expm1(-h * (b - a)) / h;
	}
	return (b - a) * (sa + seg_survival(m, i, b)) / 2;
}

/* The score (derivative of the log-likelihood) of one hazard h for the tail. */
static double tail_score(const struct forecast_model *m, int from, int to, double h)
{
	double score = 0, x0 = knot(m, from);

	for (int k = from; k <= to; k++) {
		double lo = knot(m, k) - x0;

		if (k == m->n) {
			/* beyond the last bound: all we know is that they got there */
			score -= (m->ended[k] + m->open[k]) * lo;
			continue;
		}
		double w = knot(m, k + 1) - knot(m, k);

		/* ended within (lo, lo + w]: log(e^-h lo - e^-h (lo + w)) */
		score += m->ended[k] * (w / expm1(h * w) - lo);
		/* open, aged about the middle of the bucket: log(e^-h age) */
		score -= m->open[k] * (lo + w / 2);
	}
	return score;
}

/*
 * The sparse tail: from the first bucket after which fewer than
 * FORECAST_TAIL_EVENTS connections ended, one constant hazard for all of it
 * (its maximum-likelihood value, ended ones known to a bucket, open ones
 * censored), instead of one per bucket from one or two events each, which
 * a single long outlier would dominate.
 */
static double tail_hazard(const struct forecast_model *m, int from, int to)
{
	double events = 0, lo = -25, hi = 10; /* log h */

	for (int k = from; k <= to; k++)
		events += m->ended[k];
	if (events <= 0)
		return 0;
	/* The score falls as h grows: bisect on log h. */
	if (tail_score(m, from, to, exp(hi)) >= 0)
		return exp(hi);
	for (int i = 0; i < 200; i++) {
		double mid = (lo + hi) / 2;

		if (tail_score(m, from, to, exp(mid)) > 0)
			lo = mid;
		else
			hi = mid;
	}
	return exp((lo + hi) / 2);
}

void forecast_model_fit(struct forecast_model *m)
{
	double at_risk = 0, suffix = 0, h = 0;
	int last = -1, tail;

	m->fitted = 0;
	m->closed = 0;
	m->end = 0;
	m->tail_h = 0;
	if (m->n <= 0)
		return;
	for (int k = 0; k <= m->n; k++)
		if (m->ended[k] + m->open[k] > 0)
			last = k;
	if (last < 0)
		return;
	for (int k = 0; k <= m->n; k++)
		at_risk += m->ended[k] + m->open[k];
	/* The first bucket of the sparse tail (none when the last bucket alone is rich). */
	tail = last + 1;
	for (int k = last; k >= 0; k--) {
		suffix += m->ended[k];
		if (suffix >= FORECAST_TAIL_EVENTS)
			break;
		tail = k;
	}
	m->s[0] = 1;
	/* Buckets up to the last one with data, and never past the last bound. */
	for (int k = 0; k < m->n && k <= last; k++) {
		double eff = at_risk - m->open[k] / 2, q;

		if (k == tail)
			h = tail_hazard(m, tail, last);
		if (k >= tail) {
			q = -expm1(-h * (knot(m, k + 1) - knot(m, k)));
		} else {
			q = eff > 0 ? m->ended[k] / eff : 0;
			if (q > 1)
				q = 1;
		}
		if (k == last && m->ended[k] > 0 &&
		    !(m->window > 0 && m->window < FORECAST_CLOSE_ROOM * knot(m, k + 1)))
			q = 1; /* the end of the data: see the top of this file */
		if (k == last && q < 1)
			m->tail_h = k >= tail ? h : -log1p(-q) / (knot(m, k + 1) - knot(m, k));
		m->s[k + 1] = m->s[k] * (1 - q);
		m->g[k] = seg_integral(m, k, knot(m, k), knot(m, k + 1));
		at_risk -= m->ended[k] + m->open[k];
		m->end = k + 1;
	}
	m->closed = m->s[m->end] <= 0;
	m->fitted = 1;
}

/* The segment of x: i with knot(i) <= x <= knot(i + 1), i < m->end; -1 past the end. */
static int segment(const struct forecast_model *m, double x)
{
	int lo = 0, hi = m->end - 1;

	if (x > knot(m, m->end))
		return -1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;

		if (knot(m, mid) <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* S past the data (x > the last knot): 0, the exponential tail, or NaN. */
static double past_end(const struct forecast_model *m, double x)
{
	if (m->closed)
		return 0;
	if (!(m->tail_h > 0))
		return NAN;
	return m->s[m->end] * exp(-m->tail_h * (x - knot(m, m->end)));
}

double forecast_survival(const struct forecast_model *m, double x)
{
	int i;

	if (!m->fitted)
		return NAN;
	if (x <= 0)
		return 1;
	i = segment(m, x);
	if (i < 0)
		return past_end(m, x);
	return seg_survival(m, i, x);
}

/* The integral of S from a to b (a <= b); NaN past the data unless S is 0 there. */
static double integral(const struct forecast_model *m, double a, double b)
{
	double end = knot(m, m->end), sum = 0;
	int i, j;

	if (a < 0)
		a = 0;
	if (b > end) {
		double h = m->tail_h, lo = a > end ? a : end;

		if (m->closed)
			return a < end ? integral(m, a, end) : 0;
		if (!(h > 0))
			return NAN;
		/* the exponential tail from lo to b, written to keep precision far out */
		sum = past_end(m, lo) * -expm1(-h * (b - lo)) / h;
		return a < end ? integral(m, a, end) + sum : sum;
	}
	if (!(b > a))
		return 0;
	i = segment(m, a);
	j = segment(m, b);
	if (i == j)
		return seg_integral(m, i, a, b);
	sum = seg_integral(m, i, a, knot(m, i + 1));
	for (int k = i + 1; k < j; k++)
		sum += m->g[k];
	return sum + seg_integral(m, j, knot(m, j), b);
}

double forecast_residual(const struct forecast_model *m, int bucket, double t)
{
	double lo, hi, den;

	if (!m->fitted || bucket < 0 || bucket >= m->n)
		return NAN; /* older than the last bound: nothing is known */
	lo = knot(m, bucket);
	hi = knot(m, bucket + 1);
	den = integral(m, lo, hi);
	if (isnan(den) || !(den > 0))
		return NAN;
	return integral(m, lo + t, hi + t) / den;
}

struct colour_ages {
	int n;
	double per[PLATFORM_HIST_MAX + 1]; /* open connections per age bucket */
	double total;
};

/*
 * Over the age buckets holding connections at t: drained, P(every
 * connection ended by t); else the expected number still open. NaN when
 * a bucket's residual is unknown.
 */
static double bucket_sum(const struct forecast_model *m, const struct colour_ages *a, double t,
			 int drained)
{
	double acc = 0;

	for (int k = 0; k <= a->n; k++) {
		double r;

		if (a->per[k] <= 0)
			continue;
		r = forecast_residual(m, k, t);
		if (isnan(r))
			return NAN;
		if (drained && r >= 1)
			return 0;
		acc += a->per[k] * (drained ? log1p(-r) : r);
	}
	return drained ? exp(acc) : acc;
}

/* P(every connection ended by t); NaN when unknown. */
static double p_drained(const struct forecast_model *m, const struct colour_ages *a, double t)
{
	return bucket_sum(m, a, t, 1);
}

/* Expected fraction of the connections still open after t; NaN when unknown. */
static double remaining(const struct forecast_model *m, const struct colour_ages *a, double t)
{
	if (a->total <= 0)
		return 0;
	return bucket_sum(m, a, t, 0) / a->total;
}

/*
 * Bisects (0, hi], where target is reached at hi, down to the smallest t
 * (within 1 ms) where it is: drained, p_drained() >= target; else
 * remaining() <= target.
 */
static double bisect(const struct forecast_model *m, const struct colour_ages *a, int drained,
		     double target, double hi)
{
	double lo = 0;

	for (int i = 0; i < 100 && hi - lo > 1e-3; i++) {
		double mid = (lo + hi) / 2;
		double v = drained ? p_drained(m, a, mid) : remaining(m, a, mid);

		if (!isnan(v) && (drained ? v >= target : v <= target))
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* Smallest t in [0, hi] with P(drained by t) >= q; -1 when not reached. */
static double p_quantile(const struct forecast_model *m, const struct colour_ages *a, double q,
			 double hi)
{
	double v = p_drained(m, a, hi);

	if (isnan(v) || v < q)
		return -1;
	if (p_drained(m, a, 0) >= q)
		return 0;
	return bisect(m, a, 1, q, hi);
}

/* Smallest t in [0, hi] with expected remaining fraction <= f; -1 when not reached. */
static double frac_time(const struct forecast_model *m, const struct colour_ages *a, double f,
			double hi)
{
	double v = remaining(m, a, hi);

	if (isnan(v) || v > f)
		return -1;
	return bisect(m, a, 0, f, hi);
}

static void unknown(struct forecast *out)
{
	out->ok = 0;
	out->eta_s = out->eta_p90_s = -1;
	out->t50_s = out->t90_s = out->t99_s = -1;
	out->n_curve = 0;
}

static void forecast_per(const struct forecast_model *m, const struct colour_ages *a,
			 struct forecast *out)
{
	double hi, span;
	int oldest = -1;

	unknown(out);
	out->connections = a->total;
	out->note[0] = '\0';
	if (a->total <= 0) {
		out->ok = 1;
		out->eta_s = out->eta_p90_s = 0;
		out->t50_s = out->t90_s = out->t99_s = 0;
		return;
	}
	if (!m->fitted || m->ended_total < FORECAST_MIN_ENDED) {
		snprintf(out->note, sizeof(out->note),
			 "%.0f connections ended so far, a forecast needs %d", m->ended_total,
			 FORECAST_MIN_ENDED);
		return;
	}
	for (int k = 0; k <= a->n; k++)
		if (a->per[k] > 0)
			oldest = k;
	/* How far ahead S is known for every connection of this colour. */
	if (m->closed && oldest < m->end)
		hi = knot(m, m->end);
	else if (m->tail_h > 0 && oldest < m->n)
		hi = fmin(knot(m, m->end) + 50 / m->tail_h, 1e8); /* e^-50: nothing is left */
	else
		hi = oldest < m->n ? knot(m, m->end) - knot(m, oldest + 1) : -1;
	if (hi <= 0) {
		snprintf(out->note, sizeof(out->note),
			 "connections older than %.0fs: no lifetime that long has ended yet",
			 knot(m, m->end));
		return;
	}
	out->eta_s = p_quantile(m, a, 0.5, hi);
	out->eta_p90_s = p_quantile(m, a, 0.9, hi);
	out->t50_s = frac_time(m, a, 0.5, hi);
	out->t90_s = frac_time(m, a, 0.1, hi);
	out->t99_s = frac_time(m, a, 0.01, hi);
	out->ok = out->eta_s >= 0;
	if (!out->ok)
		snprintf(out->note, sizeof(out->note),
			 "the lifetimes seen so far do not say when the last one ends");
	else if (out->eta_p90_s < 0)
		snprintf(out->note, sizeof(out->note),
			 "the lifetimes seen so far give no 90th percentile");
	/* The curve up to past the 90th percentile (or as far as it is known). */
	span = out->eta_p90_s > 0 ? out->eta_p90_s * 1.25 : out->eta_s > 0 ? out->eta_s * 1.5 : hi;
	if (span > hi)
		span = hi;
	if (!(span > 0))
		return;
	for (size_t i = 0; i < FORECAST_CURVE_MAX; i++) {
		double t = span * (double)i / (FORECAST_CURVE_MAX - 1), f = remaining(m, a, t);

		if (isnan(f))
			break;
		out->curve_t[i] = t;
		out->curve_frac[i] = f;
		out->n_curve = i + 1;
	}
}

void forecast_ages(const struct forecast_model *m, const struct platform_hist *ages,
		   struct forecast *out)
{
	struct colour_ages a;

	memset(&a, 0, sizeof(a));
	if (ages->n != m->n || !same_bounds(m, ages)) {
		unknown(out);
		out->connections = ages->n >= 0 ? ages->cum[ages->n] : -1;
		snprintf(out->note, sizeof(out->note),
			 "no connection ages with the model's bounds");
		return;
	}
	a.n = ages->n;
	add_buckets(a.per, ages);
	a.total = ages->cum[ages->n];
	forecast_per(m, &a, out);
}

void forecast_model_from_obs(struct forecast_model *m, const struct deploy_obs *obs)
{
	forecast_model_init(m);
	for (size_t i = 0; i < obs->n; i++)
		for (size_t k = 0; k < obs->colours[i].n_rep; k++)
			forecast_model_add(m, &obs->colours[i].rep[k]);
	forecast_model_fit(m);
}

void forecast_colour(const struct forecast_model *m, const struct deploy_colour_obs *c,
		     struct forecast *out)
{
	struct colour_ages a;

	memset(&a, 0, sizeof(a));
	a.n = m->n;
	if (!m->fitted || m->ended_total < FORECAST_MIN_ENDED) {
		/* Not enough data whatever the ages: say so (or 0 when empty). */
		for (size_t k = 0; k < c->n_rep; k++)
			a.total += c->rep[k].connections > 0 ? (double)c->rep[k].connections : 0;
		forecast_per(m, &a, out);
		return;
	}
	for (size_t k = 0; k < c->n_rep; k++) {
		const struct platform_replica *r = &c->rep[k];

		/* A replica that holds nothing (stopped, dead) has nothing to forecast. */
		if (r->connections == 0 && r->ages.n <= 0)
			continue;
		if (r->connections < 0 || r->ages.n <= 0 || !same_bounds(m, &r->ages)) {
			unknown(out);
			out->connections = -1;
			snprintf(out->note, sizeof(out->note),
				 r->connections < 0 ? "replica %s: metrics unreadable"
						    : "replica %s exports no connection ages",
				 r->name);
			return;
		}
		add_buckets(a.per, &r->ages);
		a.total += r->ages.cum[r->ages.n];
	}
	forecast_per(m, &a, out);
}
