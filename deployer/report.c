/*
 * The history is whatever rainbow processes appended (several may have, at
 * once) and a person may have edited: lines that do not parse, SHAs that
 * are not SHAs and times that are not times are skipped, never trusted.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"

#define REPORT_LINE_MAX (256 * 1024)

struct row {
	double t;
	char sha[PLATFORM_SHA_MAX];
	long conns;
};

struct history {
	json_t *events; /* array, sorted by t */
	struct row *rows;
	size_t n_rows;
};

static double num(const json_t *o, const char *key, double dflt)
{
	const json_t *v = json_object_get(o, key);

	return json_is_number(v) && isfinite(json_number_value(v)) ? json_number_value(v) : dflt;
}

/* The event's SHA-valued key, or NULL when absent or not a SHA. */
static const char *sha_of(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && platform_sha_valid(s) ? s : NULL;
}

static int ev_cmp(const void *a, const void *b)
{
	double x = num(*(json_t *const *)a, "t", 0), y = num(*(json_t *const *)b, "t", 0);

	return x < y ? -1 : x > y;
}

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

static int load_events(const char *state_dir, struct history *h, char *err, size_t errlen)
{
	char path[4200], *line = malloc(REPORT_LINE_MAX);
	json_t **v = NULL;
	size_t n = 0, cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/record.jsonl", state_dir);
	if (!line) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f = fopen(path, "r");
	if (!f) {
		free(line);
		snprintf(err, errlen,
			 "no history at %s (rainbow has not deployed with this state dir)", path);
		return -ENOENT;
	}
	while (fgets(line, REPORT_LINE_MAX, f)) {
		json_t *o = json_loads(line, 0, NULL);
		double t;

		t = o ? num(o, "t", -1) : -1;
		if (!json_is_object(o) || !(t > 0 && t < 1e11) ||
		    !json_is_string(json_object_get(o, "event"))) {
			json_decref(o);
			continue;
		}
		if (n == cap) {
			json_t **nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));

			if (!nv) {
				json_decref(o);
				break;
			}
			v = nv;
		}
		v[n++] = o;
	}
	fclose(f);
	free(line);
	/* Stable enough: events of one process are in order, and equal times
	 * come from one step. */
	if (n)
		qsort(v, n, sizeof(*v), ev_cmp);
	h->events = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(h->events, v[i]);
	free(v);
	return 0;
}

static void load_rows(const char *state_dir, struct history *h)
{
	char path[4200], line[512], sha[64];
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/timeline.csv", state_dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		struct row r;
		char state[32];

		if (sscanf(line, "%lf,%63[^,],%ld,%31s", &r.t, sha, &r.conns, state) != 4 ||
		    !(r.t > 0 && r.t < 1e11) || !platform_sha_valid(sha) || r.conns < 0)
			continue;
		snprintf(r.sha, sizeof(r.sha), "%.40s", sha);
		if (h->n_rows == cap) {
			struct row *nr =
				realloc(h->rows, (cap = cap ? 2 * cap : 1024) * sizeof(*nr));

			if (!nr)
				break;
			h->rows = nr;
		}
		h->rows[h->n_rows++] = r;
	}
	fclose(f);
	if (h->n_rows)
		qsort(h->rows, h->n_rows, sizeof(*h->rows), row_cmp);
}

static json_t *secs_or_null(double v)
{
	return v >= 0 && isfinite(v) ? json_real(round(v * 1000) / 1000) : json_null();
}

/* The count of sha last observed at or before t, or -1. */
static long count_before(const struct history *h, const char *sha, double t)
{
	long c = -1;

	for (size_t i = 0; i < h->n_rows && h->rows[i].t <= t; i++)
		if (strcmp(h->rows[i].sha, sha) == 0)
			c = h->rows[i].conns;
	return c;
}

/* When sha is selected again after t0 (a rollback ends its drain), or +inf. */
static double reselected(const struct history *h, const char *sha, double t0)
{
	size_t i;
	json_t *e;

	json_array_foreach (h->events, i, e) {
		const char *s = sha_of(e, "sha");

		if (num(e, "t", 0) > t0 && s && strcmp(s, sha) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "event")), "select") == 0)
			return num(e, "t", 0);
	}
	return INFINITY;
}

static void drain_times(const struct history *h, const char *sha, double t0, double end, long from,
			json_t *d)
{
	static const struct {
		const char *key;
		double frac;
	} th[] = { { "drain_t50_s", 0.5 },
		   { "drain_t90_s", 0.1 },
		   { "drain_t99_s", 0.01 },
		   { "drain_t100_s", 0 } };
	double got[4] = { -1, -1, -1, -1 };

	for (size_t i = 0; i < h->n_rows; i++) {
		const struct row *r = &h->rows[i];

		if (r->t < t0 || r->t >= end || strcmp(r->sha, sha) != 0 || from < 0)
			continue;
		for (int k = 0; k < 4; k++)
			if (got[k] < 0 && (double)r->conns <= th[k].frac * (double)from)
				got[k] = r->t - t0;
	}
	for (int k = 0; k < 4; k++)
		json_object_set_new(d, th[k].key, secs_or_null(got[k]));
}

/* The first forecast for sha made within the window after t0 (before end). */
static const json_t *forecast_at_switch(const struct history *h, const char *sha, double t0,
					double end)
{
	size_t i;
	json_t *e;

	json_array_foreach (h->events, i, e) {
		const char *s = sha_of(e, "sha");
		double t = num(e, "t", 0), since = num(e, "since_deselect_s", t - t0);

		if (!s || strcmp(s, sha) != 0 ||
		    strcmp(json_string_value(json_object_get(e, "event")), "forecast") != 0)
			continue;
		if (t < t0 - 1 || t >= end)
			continue;
		return since >= 0 && since <= REPORT_SWITCH_WINDOW_S ? e : NULL;
	}
	return NULL;
}

/* The forecast's curve from the deselection on, as a fraction of drain_from. */
static json_t *forecast_curve(const json_t *fe, double since, long from)
{
	json_t *out = json_array(), *pt;
	double conns = num(fe, "connections", -1);
	size_t i;

	if (from <= 0 || conns < 0)
		return out;
	json_array_foreach (json_object_get(fe, "curve"), i, pt) {
		double t = json_number_value(json_array_get(pt, 0));
		double f = json_number_value(json_array_get(pt, 1));

		if (!json_is_number(json_array_get(pt, 0)) ||
		    !json_is_number(json_array_get(pt, 1)) || !isfinite(t) || !isfinite(f) ||
		    t < 0 || f < 0 || f > 1)
			break;
		json_array_append_new(out, json_pack("[f,f]", round((since + t) * 1000) / 1000,
						     round(f * conns / (double)from * 1e5) / 1e5));
	}
	return out;
}

static void forecast_fields(const json_t *fe, double t0, json_t *d)
{
	double since, eta, p90, t99, t100 = num(d, "drain_t100_s", -1),
				     a99 = num(d, "drain_t99_s", -1);

	if (!fe) {
		json_object_set_new(d, "forecast_at_switch_s", json_null());
		json_object_set_new(d, "forecast_p90_at_switch_s", json_null());
		json_object_set_new(d, "forecast_t99_at_switch_s", json_null());
		json_object_set_new(d, "forecast_made_s", json_null());
		json_object_set_new(d, "forecast_note",
				    json_string("no forecast recorded in the first "
						"seconds after the switch"));
		json_object_set_new(d, "forecast_error_s", json_null());
		json_object_set_new(d, "forecast_error_pct", json_null());
		json_object_set_new(d, "forecast_t99_error_pct", json_null());
		json_object_set_new(d, "forecast_curve", json_array());
		return;
	}
	since = num(fe, "since_deselect_s", num(fe, "t", t0) - t0);
	eta = num(fe, "eta_s", -1);
	p90 = num(fe, "eta_p90_s", -1);
	t99 = num(fe, "t99_s", -1);
	json_object_set_new(d, "forecast_made_s", secs_or_null(since));
	json_object_set_new(d, "forecast_at_switch_s", secs_or_null(eta >= 0 ? since + eta : -1));
	json_object_set_new(d, "forecast_p90_at_switch_s",
			    secs_or_null(p90 >= 0 ? since + p90 : -1));
	json_object_set_new(d, "forecast_t99_at_switch_s",
			    secs_or_null(t99 >= 0 ? since + t99 : -1));
	json_object_set_new(d, "forecast_note",
			    json_incref(json_object_get(fe, "note")) ?: json_null());
	if (eta >= 0 && t100 >= 0) {
		json_object_set_new(d, "forecast_error_s",
				    json_real(round((since + eta - t100) * 1000) / 1000));
		json_object_set_new(
			d, "forecast_error_pct",
			t100 > 0 ? json_real(round((since + eta - t100) / t100 * 1000) / 10)
				 : json_null());
	} else {
		json_object_set_new(d, "forecast_error_s", json_null());
		json_object_set_new(d, "forecast_error_pct", json_null());
	}
	json_object_set_new(d, "forecast_t99_error_pct",
			    t99 >= 0 && a99 > 0
				    ? json_real(round((since + t99 - a99) / a99 * 1000) / 10)
				    : json_null());
	json_object_set_new(d, "forecast_curve",
			    forecast_curve(fe, since, (long)num(d, "drain_from", -1)));
}

static json_t *drains(const struct history *h)
{
	json_t *out = json_array(), *e;
	const char *prev = NULL;
	size_t i;

	json_array_foreach (h->events, i, e) {
		const char *sha = sha_of(e, "sha"), *old;
		double t0, end;
		long from;
		json_t *d;

		if (!sha || strcmp(json_string_value(json_object_get(e, "event")), "select") != 0)
			continue;
		old = sha_of(e, "deselected");
		if (!old && prev && strcmp(prev, sha) != 0)
			old = prev; /* a record from before selects named what they replaced */
		prev = sha;
		if (!old || strcmp(old, sha) == 0)
			continue;
		t0 = num(e, "deselected_at", num(e, "t", 0) - num(e, "since_obs_ms", 0) / 1000);
		from = (long)num(e, "deselected_connections", -1);
		if (from < 0)
			from = count_before(h, old, t0);
		end = reselected(h, old, t0);
		d = json_pack("{s:s,s:s,s:f,s:I}", "sha", old, "replaced_by", sha, "deselected_at",
			      t0, "drain_from", (json_int_t)from);
		if (from < 0)
			json_object_set_new(d, "drain_from", json_null());
		drain_times(h, old, t0, end, from, d);
		forecast_fields(forecast_at_switch(h, old, t0, end), t0, d);
		json_object_set_new(d, "outcome",
				    json_string(json_is_number(json_object_get(d, "drain_t100_s"))
							? "drained"
						: isfinite(end) ? "rolled-back"
								: "draining"));
		json_array_append_new(out, d);
	}
	return out;
}

static json_t *switches(const struct history *h)
{
	json_t *out = json_array(), *e;
	size_t i, last_select = 0;
	int any_select = 0;

	json_array_foreach (h->events, i, e) {
		const char *sha = sha_of(e, "sha");
		const json_t *start = NULL;
		double ready, since;
		json_t *s;

		if (!sha || strcmp(json_string_value(json_object_get(e, "event")), "select") != 0)
			continue;
		/* The create (or scale-up, for a rollback) of this colour since the last switch. */
		for (size_t k = any_select ? last_select + 1 : 0; k < i; k++) {
			const json_t *c = json_array_get(h->events, k);
			const char *ev = json_string_value(json_object_get(c, "event"));
			const char *cs = sha_of(c, "sha");

			if (cs && strcmp(cs, sha) == 0 &&
			    (strcmp(ev, "create") == 0 ||
			     (strcmp(ev, "scale") == 0 && num(c, "replicas", 0) > 0)))
				start = c;
		}
		last_select = i;
		any_select = 1;
		since = num(e, "since_obs_ms", -1) / 1000;
		ready = num(e, "t", 0) - (since >= 0 ? since : 0);
		s = json_pack("{s:s,s:f}", "sha", sha, "selected_at", num(e, "t", 0));
		json_object_set_new(s, "replaced",
				    sha_of(e, "deselected") ? json_string(sha_of(e, "deselected"))
							    : json_null());
		json_object_set_new(s, "create_to_ready_s",
				    secs_or_null(start ? ready - (num(start, "t", 0) -
								  num(start, "op_ms", 0) / 1000)
						       : -1));
		json_object_set_new(s, "ready_to_switch_s", secs_or_null(since));
		json_array_append_new(out, s);
	}
	return out;
}

int report_build(const char *state_dir, json_t **out, char *err, size_t errlen)
{
	struct history h = { 0 };
	int rc = load_events(state_dir, &h, err, errlen);

	*out = NULL;
	if (rc < 0)
		return rc;
	load_rows(state_dir, &h);
	*out = json_pack("{s:o,s:o}", "drains", drains(&h), "switches", switches(&h));
	json_decref(h.events);
	free(h.rows);
	return *out ? 0 : -ENOMEM;
}

/* Seconds for a person: "12.3 s" (digits: 1, or 2 or 3 with ms 1 or 2), or
 * the dash of "not known". */
static const char *fsec(char *buf, size_t len, const json_t *o, const char *key, int ms)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		snprintf(buf, len, "–");
	else
		snprintf(buf, len,
			 ms == 2 ? "%.3f s"
			 : ms	 ? "%.2f s"
				 : "%.1f s",
			 json_number_value(v));
	return buf;
}

static const char *fpct(char *buf, size_t len, const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		snprintf(buf, len, "–");
	else
		snprintf(buf, len, "%+.0f %%", json_number_value(v));
	return buf;
}

static void print_rows(FILE *f, const json_t *rep, int md)
{
	static const char *const dh[] = { "colour", "replaced by", "from",	   "t50",
					  "t90",    "t99",	   "t100",	   "forecast",
					  "(p90)",  "error",	   "forecast t99", "error",
					  "outcome" };
	static const char *const sh[] = { "colour", "create → ready", "ready → switch confirmed" };
	const json_t *d;
	size_t i;

	if (md) {
		fprintf(f, "|");
		for (size_t k = 0; k < sizeof(dh) / sizeof(dh[0]); k++)
			fprintf(f, " %s |", dh[k]);
		fprintf(f, "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
	} else {
		fprintf(f, "%-14s %-14s %6s %8s %8s %8s %8s %9s %9s %7s %9s %7s %s\n", "COLOUR",
			"REPLACED BY", "FROM", "T50", "T90", "T99", "T100", "FORECAST", "(P90)",
			"ERROR", "FC T99", "ERROR", "OUTCOME");
	}
	json_array_foreach (json_object_get(rep, "drains"), i, d) {
		char c[8][32], p1[16], p2[16], from[24], a[64], b[64];
		const json_t *fv = json_object_get(d, "drain_from");

		snprintf(a, sizeof(a), "chat-%s", json_string_value(json_object_get(d, "sha")));
		snprintf(b, sizeof(b), "chat-%s",
			 json_string_value(json_object_get(d, "replaced_by")));
		if (json_is_integer(fv))
			snprintf(from, sizeof(from), "%" JSON_INTEGER_FORMAT,
				 json_integer_value(fv));
		else
			snprintf(from, sizeof(from), "–");
		fsec(c[0], sizeof(c[0]), d, "drain_t50_s", 0);
		fsec(c[1], sizeof(c[1]), d, "drain_t90_s", 0);
		fsec(c[2], sizeof(c[2]), d, "drain_t99_s", 0);
		fsec(c[3], sizeof(c[3]), d, "drain_t100_s", 0);
		fsec(c[4], sizeof(c[4]), d, "forecast_at_switch_s", 0);
		fsec(c[5], sizeof(c[5]), d, "forecast_p90_at_switch_s", 0);
		fsec(c[6], sizeof(c[6]), d, "forecast_t99_at_switch_s", 0);
		fpct(p1, sizeof(p1), d, "forecast_error_pct");
		fpct(p2, sizeof(p2), d, "forecast_t99_error_pct");
		if (md)
			fprintf(f,
				"| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
				"|\n",
				a, b, from, c[0], c[1], c[2], c[3], c[4], c[5], p1, c[6], p2,
				json_string_value(json_object_get(d, "outcome")));
		else
			fprintf(f, "%-14s %-14s %6s %8s %8s %8s %8s %9s %9s %7s %9s %7s %s\n", a, b,
				from, c[0], c[1], c[2], c[3], c[4], c[5], p1, c[6], p2,
				json_string_value(json_object_get(d, "outcome")));
	}
	fprintf(f, md ? "\n### Switches\n\n" : "\n");
	if (md)
		fprintf(f, "| %s | %s | %s |\n|---|---:|---:|\n", sh[0], sh[1], sh[2]);
	else
		fprintf(f, "%-14s %16s %26s\n", "SWITCH TO", "CREATE->READY",
			"READY->SWITCH CONFIRMED");
	json_array_foreach (json_object_get(rep, "switches"), i, d) {
		char a[64], x[32], y[32];

		snprintf(a, sizeof(a), "chat-%s", json_string_value(json_object_get(d, "sha")));
		fsec(x, sizeof(x), d, "create_to_ready_s", 1);
		fsec(y, sizeof(y), d, "ready_to_switch_s", 2);
		if (md)
			fprintf(f, "| %s | %s | %s |\n", a, x, y);
		else
			fprintf(f, "%-14s %16s %26s\n", a, x, y);
	}
}

void report_print_md(FILE *f, const json_t *rep)
{
	fprintf(f, "### Drains\n\n");
	fprintf(f, "Seconds from deselection until the count first read at most 50 %%, 10 %%, "
		   "1 %% and 0 of `from` (its count when deselected); the forecast is the one "
		   "rainbow made in the first seconds after the switch (median and 90th "
		   "percentile of when it would read 0, and when 1 %% would be left), the error "
		   "is against t100 and t99.\n\n");
	print_rows(f, rep, 1);
}

void report_print_table(FILE *f, const json_t *rep)
{
	print_rows(f, rep, 0);
}
