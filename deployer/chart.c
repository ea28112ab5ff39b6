/*
 * Timeline -> wide table -> gnuplot. The stack is drawn as filled curves of
 * cumulative sums, the topmost first, so each band's height is one colour's
 * connections.
 */
#include "chart.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "platform.h"
#include "report.h"
#include "unconst.h"

#define CHART_COLOURS_MAX 32
#define CHART_BINS_MAX 100000
#define CHART_MARKS_MAX 64

struct chart {
	size_t n_sha;
	char sha[CHART_COLOURS_MAX][64];
	double t0;
	size_t n_bins;
	long *val;	    /* n_bins * CHART_COLOURS_MAX, -1 = no row */
	unsigned char *has; /* bin has any row */
	size_t n_marks;	    /* switches: seconds from t0 and the colour selected */
	double mark_x[CHART_MARKS_MAX];
	char mark_sha[CHART_MARKS_MAX][PLATFORM_SHA_MAX];
	unsigned char mark_back[CHART_MARKS_MAX]; /* 1: a rollback (selected before) */
	size_t n_assist; /* assisted drains: the span of each colour's batches */
	double assist_from[CHART_MARKS_MAX], assist_to[CHART_MARKS_MAX];
	char assist_sha[CHART_MARKS_MAX][PLATFORM_SHA_MAX];
	const char *verdict; /* drawn on the image, or NULL */
};

static const char *const chart_palette[] = {
	"#e6194b", "#f58231", "#ffe119", "#3cb44b", "#42d4f4", "#4363d8",
	"#911eb4", "#f032e6", "#9a6324", "#808000", "#469990", "#000075",
};

#define CHART_PALETTE_N (sizeof(chart_palette) / sizeof(chart_palette[0]))

static int sha_index(struct chart *c, const char *sha)
{
	for (size_t i = 0; i < c->n_sha; i++)
		if (strcmp(c->sha[i], sha) == 0)
			return (int)i;
	if (c->n_sha >= CHART_COLOURS_MAX)
		return -1;
	snprintf(c->sha[c->n_sha], sizeof(c->sha[0]), "%s", sha);
	return (int)c->n_sha++;
}

int chart_timeline_row(const char *line, double *t, char sha[64], long *conns)
{
	char state[32];

	if (sscanf(line, "%lf,%63[^,],%ld,%31s", t, sha, conns, state) != 4)
		return 0;
	/* Unix seconds, as deploy_meta_time() takes them; a SHA goes into the script. */
	return *t > 0 && *t < 1e11 && platform_sha_valid(sha);
}

static int load(struct chart *c, const char *path, double bin_s, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[512], sha[64];
	double t, tmin = 0, tmax = 0, span;
	long conns;
	int first = 1;

	if (!f) {
		snprintf(err, errlen, "no timeline at %s (run a deploy or `rainbow watch` first)",
			 path);
		return -ENOENT;
	}
	/* Pass 1: time range. */
	while (fgets(line, sizeof(line), f)) {
		if (!chart_timeline_row(line, &t, sha, &conns))
			continue;
		if (first || t < tmin)
			tmin = t;
		if (first || t > tmax)
			tmax = t;
		first = 0;
	}
	if (first) {
		fclose(f);
		snprintf(err, errlen, "timeline %s has no rows", path);
		return -ENODATA;
	}
	c->t0 = tmin;
	/* Capped before the cast: a double beyond size_t does not convert. */
	span = (tmax - tmin) / bin_s;
	c->n_bins = span < CHART_BINS_MAX - 1 ? (size_t)span + 1 : CHART_BINS_MAX;
	c->val = malloc(c->n_bins * CHART_COLOURS_MAX * sizeof(*c->val));
	c->has = calloc(c->n_bins, 1);
	if (!c->val || !c->has) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_bins * CHART_COLOURS_MAX; i++)
		c->val[i] = -1;
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		size_t b;
		int k;

		if (!chart_timeline_row(line, &t, sha, &conns))
			continue;
		span = (t - tmin) / bin_s;
		b = span < (double)(c->n_bins - 1) ? (size_t)span : c->n_bins - 1;
		k = sha_index(c, sha);
		if (k < 0)
			continue;
		c->has[b] = 1;
		c->val[b * CHART_COLOURS_MAX + (size_t)k] = conns < 0 ? 0 : conns;
	}
	fclose(f);
	return 0;
}

static int write_dat(const struct chart *c, const char *path, double bin_s)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "# seconds");
	for (size_t k = 0; k < c->n_sha; k++)
		fprintf(f, " cum_%s", c->sha[k]);
	fprintf(f, "\n");
	for (size_t b = 0; b < c->n_bins; b++) {
		long cum = 0;

		if (!c->has[b])
			continue;
		fprintf(f, "%.1f", (double)b * bin_s);
		for (size_t k = 0; k < c->n_sha; k++) {
			long v = c->val[b * CHART_COLOURS_MAX + k];

			cum += v > 0 ? v : 0;
			fprintf(f, " %ld", cum);
		}
		fprintf(f, "\n");
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

/* s as a gnuplot single-quoted string, where '' stands for one quote. */
static void gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* Selects terminal term[0] with output to prefix.term[1] (no newline after). */
static void gp_terminal(FILE *f, const char *const term[2], const char *prefix)
{
	char out[4200];

	fprintf(f, "%sset terminal %s\n", strcmp(term[1], "png") == 0 ? "# PNG\n" : "# SVG\n",
		term[0]);
	snprintf(out, sizeof(out), "%s.%s", prefix, term[1]);
	fprintf(f, "set output ");
	gp_string(f, out);
}

/* A vertical line at x, dashed dt, and "label x s" beside it at height y. */
static void gp_vline(FILE *f, double x, const char *rgb, int dt, const char *label, double y)
{
	fprintf(f,
		"set arrow from %.3f, graph 0 to %.3f, graph 1 nohead lc rgb '%s' dt %d\n"
		"set label '%s %.1fs' at %.3f, graph %.2f left offset 0.5,0 tc rgb '%s'\n",
		x, x, rgb, dt, label, x, x, y, rgb);
}

/* Every switch in the record within the timeline's span (SHAs checked: they go into the script). */
static void load_marks(struct chart *c, const char *state_dir, double bin_s)
{
	json_t *rep = NULL, *s;
	char err[256];
	size_t i;

	if (report_build(state_dir, &rep, err, sizeof(err)) < 0)
		return;
	json_array_foreach (json_object_get(rep, "switches"), i, s) {
		const char *sha = json_string_value(json_object_get(s, "sha"));
		double x = json_number_value(json_object_get(s, "selected_at")) - c->t0;

		if (c->n_marks >= CHART_MARKS_MAX || !platform_sha_valid(sha) || !(x >= 0) ||
		    x > (double)c->n_bins * bin_s)
			continue;
		c->mark_x[c->n_marks] = x;
		snprintf(c->mark_sha[c->n_marks], sizeof(c->mark_sha[0]), "%s", sha);
		/* Switching to a colour that was selected before is a rollback. */
		for (size_t k = 0; k < c->n_marks; k++)
			if (strcmp(c->mark_sha[k], sha) == 0)
				c->mark_back[c->n_marks] = 1;
		c->n_marks++;
	}
	json_decref(rep);
}

/* The assisted drains in the record ("assist" batches): per colour, from
 * the first batch to the last, within the timeline's span. */
static void load_assists(struct chart *c, const char *state_dir, double bin_s)
{
	char path[4200], line[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/record.jsonl", state_dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		json_t *e = strstr(line, "\"assist\"") ? json_loads(line, 0, NULL) : NULL;
		const char *ev = json_string_value(json_object_get(e, "event"));
		const char *sha = json_string_value(json_object_get(e, "sha"));
		double x = json_number_value(json_object_get(e, "t")) - c->t0;
		size_t k;

		if (!ev || strcmp(ev, "assist") != 0 || !platform_sha_valid(sha) || !(x >= 0) ||
		    x > (double)c->n_bins * bin_s) {
			json_decref(e);
			continue;
		}
		for (k = 0; k < c->n_assist; k++)
			if (strcmp(c->assist_sha[k], sha) == 0)
				break;
		if (k == c->n_assist) {
			if (c->n_assist >= CHART_MARKS_MAX) {
				json_decref(e);
				continue;
			}
			snprintf(c->assist_sha[k], sizeof(c->assist_sha[0]), "%s", sha);
			c->assist_from[k] = x;
			c->n_assist++;
		}
		c->assist_to[k] = x;
		json_decref(e);
	}
	fclose(f);
}

/* The highest total of any bin, and whether colour k ever held a connection. */
static long chart_top(const struct chart *c, unsigned char held[CHART_COLOURS_MAX])
{
	long top = 0;

	memset(held, 0, CHART_COLOURS_MAX);
	for (size_t b = 0; b < c->n_bins; b++) {
		long sum = 0;

		for (size_t k = 0; k < c->n_sha; k++) {
			long v = c->val[b * CHART_COLOURS_MAX + k];

			if (v > 0) {
				sum += v;
				held[k] = 1;
			}
		}
		if (sum > top)
			top = sum;
	}
	return top;
}

static int write_gp(const struct chart *c, const char *gp, const char *dat, const char *prefix)
{
	FILE *f = fopen(gp, "w");
	const char *terms[][2] = { { "pngcairo size 1200,600", "png" },
				   { "svg size 1200,600 dynamic", "svg" } };
	unsigned char held[CHART_COLOURS_MAX];
	long top = chart_top(c, held);

	if (!f)
		return -errno;
	for (size_t t = 0; t < 2; t++) {
		gp_terminal(f, terms[t], prefix);
		fprintf(f, "\n");
		fprintf(f, "set title 'rainbow deploy: live connections per colour'\n");
		fprintf(f, "set xlabel 'seconds'\nset ylabel 'connections'\n");
		/* Headroom above the total, so its top edge is not the frame. */
		fprintf(f, "set key outside right top\nset grid\nset yrange [0:%ld]\n",
			top > 0 ? top + top / 6 + 1 : 1);
		fprintf(f, "set style fill solid 0.85 noborder\n");
		/* Each switch: a dashed line and the SHA it selected; a rollback in red. */
		for (size_t m = 0; m < c->n_marks; m++)
			fprintf(f,
				"set arrow from %.3f, graph 0 to %.3f, graph 1 nohead front "
				"lc rgb '%s' dt 2\n"
				"set label '%schat-%s' at %.3f, graph 0.02 rotate by 90 left front "
				"offset -0.8,0 font ',9' tc rgb '%s'\n",
				c->mark_x[m], c->mark_x[m], c->mark_back[m] ? "#c00000" : "#222222",
				c->mark_back[m] ? "rollback to " : "", c->mark_sha[m], c->mark_x[m],
				c->mark_back[m] ? "#c00000" : "#222222");
		/* Each assisted drain: a shaded band from its first batch to its last. */
		for (size_t m = 0; m < c->n_assist; m++)
			fprintf(f,
				"set object %zu rect from %.3f, graph 0 to %.3f, graph 1 behind "
				"fc rgb '#4363d8' fs transparent solid 0.12 noborder\n"
				"set label 'assisted drain of chat-%s' at %.3f, graph 0.98 left "
				"front font ',9' tc rgb '#4363d8'\n",
				m + 1, c->assist_from[m],
				c->assist_to[m] > c->assist_from[m] + 0.5 ? c->assist_to[m]
									  : c->assist_from[m] + 0.5,
				c->assist_sha[m], c->assist_from[m]);
		if (c->verdict) {
			fprintf(f, "set label ");
			gp_string(f, c->verdict);
			fprintf(f, " at graph 0.01, graph 0.95 left front font ',14' "
				   "tc rgb '#111111'\n");
		}
		fprintf(f, "plot ");
		/* Topmost cumulative band first; each lower one paints over it. */
		for (size_t k = c->n_sha; k-- > 0;) {
			gp_string(f, dat);
			/* No legend entry for a colour that never held a connection. */
			fprintf(f, " using 1:%zu with filledcurves x1 lc rgb '%s' ", k + 2,
				chart_palette[k % CHART_PALETTE_N]);
			if (held[k])
				fprintf(f, "title 'chat-%s'", c->sha[k]);
			else
				fprintf(f, "notitle");
			fprintf(f, "%s", k ? ", \\\n     " : "\n");
		}
		fprintf(f, "unset arrow\nunset label\nunset object\nunset output\n");
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

static int run_gnuplot(const char *gp, char *err, size_t errlen)
{
	char *argv[] = { "gnuplot", unconst(gp), NULL };
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(err, errlen, "gnuplot not found (Debian: apt-get install gnuplot-nox)");
		return -ENOENT;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "gnuplot failed on %s", gp);
		return -EIO;
	}
	return 0;
}

int chart_render(const char *state_dir, const char *prefix, double bin_s, const char *verdict,
		 char *err, size_t errlen)
{
	struct chart c;
	char csv[4096], pre[4096], dat[4200], gp[4200];
	int rc;

	memset(&c, 0, sizeof(c));
	if (!(bin_s > 0) || isinf(bin_s))
		bin_s = 1.0;
	snprintf(csv, sizeof(csv), "%s/timeline.csv", state_dir);
	snprintf(pre, sizeof(pre), "%s", prefix ? prefix : "");
	if (!prefix)
		snprintf(pre, sizeof(pre), "%s/chart", state_dir);
	snprintf(dat, sizeof(dat), "%s.dat", pre);
	snprintf(gp, sizeof(gp), "%s.gp", pre);
	rc = load(&c, csv, bin_s, err, errlen);
	if (rc < 0)
		goto out;
	c.verdict = verdict;
	load_marks(&c, state_dir, bin_s);
	load_assists(&c, state_dir, bin_s);
	rc = write_dat(&c, dat, bin_s);
	if (rc == 0)
		rc = write_gp(&c, gp, dat, pre);
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", gp, strerror(-rc));
		goto out;
	}
	rc = run_gnuplot(gp, err, errlen);
out:
	free(c.val);
	free(c.has);
	return rc;
}

/* ---- one colour's drain curve ------------------------------------------- */

/* The last drain of sha in the report, or NULL. */
static const json_t *find_drain(const json_t *rep, const char *sha)
{
	const json_t *d, *found = NULL;
	size_t i;

	json_array_foreach (json_object_get(rep, "drains"), i, d)
		if (strcmp(json_string_value(json_object_get(d, "sha")), sha) == 0)
			found = d;
	return found;
}

/* Block 0: the count as a fraction of drain_from since deselection; block 1: the forecast. */
static int write_drain_dat(const char *path, const char *csv, const json_t *d, const char *sha)
{
	double t0 = json_number_value(json_object_get(d, "deselected_at"));
	double from = (double)json_integer_value(json_object_get(d, "drain_from"));
	const json_t *t100 = json_object_get(d, "drain_t100_s"), *pt;
	FILE *f = fopen(path, "w"), *in = fopen(csv, "r");
	char line[512], rsha[64];
	size_t i;

	if (!f) {
		if (in)
			fclose(in);
		return -errno;
	}
	fprintf(f, "# seconds since deselection, remaining fraction of %.0f (chat-%s)\n", from,
		sha);
	while (in && fgets(line, sizeof(line), in)) {
		double t;
		long conns;

		if (!chart_timeline_row(line, &t, rsha, &conns) || strcmp(rsha, sha) != 0 ||
		    t < t0 || conns < 0)
			continue;
		/* Up to the first 0 (and a little of it): the rest is the settle period. */
		if (json_is_number(t100) && t - t0 > json_number_value(t100) + 1)
			continue;
		fprintf(f, "%.3f %.5f\n", t - t0, (double)conns / from);
	}
	if (in)
		fclose(in);
	fprintf(f, "\n\n# forecast made at the switch\n");
	json_array_foreach (json_object_get(d, "forecast_curve"), i, pt)
		fprintf(f, "%.3f %.5f\n", json_number_value(json_array_get(pt, 0)),
			json_number_value(json_array_get(pt, 1)));
	return fclose(f) == 0 ? 0 : -EIO;
}

static int write_drain_gp(const char *gp, const char *dat, const char *prefix, const json_t *d,
			  const char *sha)
{
	const char *terms[][2] = { { "pngcairo size 900,500", "png" },
				   { "svg size 900,500 dynamic", "svg" } };
	const json_t *eta = json_object_get(d, "forecast_at_switch_s");
	const json_t *p90 = json_object_get(d, "forecast_p90_at_switch_s");
	const json_t *t100 = json_object_get(d, "drain_t100_s");
	int has_fc = json_array_size(json_object_get(d, "forecast_curve")) > 0;
	FILE *f = fopen(gp, "w");

	if (!f)
		return -errno;
	for (size_t t = 0; t < 2; t++) {
		gp_terminal(f, terms[t], prefix);
		fprintf(f,
			"\nset title 'chat-%s drain: %" JSON_INTEGER_FORMAT
			" connections at deselection'\n",
			sha, json_integer_value(json_object_get(d, "drain_from")));
		fprintf(f,
			"set xlabel 'seconds since deselection'\nset ylabel 'remaining fraction'\n"
			"set key outside right top\nset grid\nset yrange [0:1.05]\n"
			"set xrange [0:*]\n");
		if (json_is_number(eta))
			gp_vline(f, json_number_value(eta), "#4363d8", 2, "forecast", 0.95);
		if (json_is_number(p90))
			gp_vline(f, json_number_value(p90), "#4363d8", 3, "p90", 0.88);
		if (json_is_number(t100))
			gp_vline(f, json_number_value(t100), "#e6194b", 1, "drained", 0.81);
		fprintf(f, "plot ");
		gp_string(f, dat);
		fprintf(f, " index 0 using 1:2 with steps lw 2 lc rgb '#e6194b' title 'chat-%s'",
			sha);
		if (has_fc) {
			fprintf(f, ", \\\n     ");
			gp_string(f, dat);
			fprintf(f, " index 1 using 1:2 with lines lw 2 dt 2 lc rgb '#4363d8' "
				   "title 'forecast at the switch'");
		}
		fprintf(f, "\nunset arrow\nunset label\nunset output\n");
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

int chart_render_drain(const char *state_dir, const char *prefix, const char *sha, char *err,
		       size_t errlen)
{
	char csv[4096], pre[4096], dat[4200], gp[4200];
	const json_t *d;
	json_t *rep = NULL;
	int rc;

	if (!platform_sha_valid(sha)) {
		snprintf(err, errlen, "invalid SHA '%s'", sha);
		return -EINVAL;
	}
	rc = report_build(state_dir, &rep, err, errlen);
	if (rc < 0)
		return rc;
	d = find_drain(rep, sha);
	if (!d) {
		snprintf(err, errlen, "no drain of chat-%s in the history of %s", sha, state_dir);
		rc = -ENOENT;
		goto out;
	}
	if (!(json_integer_value(json_object_get(d, "drain_from")) > 0)) {
		snprintf(err, errlen,
			 "chat-%s held no connection when deselected (or its count "
			 "is unknown): no drain curve",
			 sha);
		rc = -ENODATA;
		goto out;
	}
	snprintf(csv, sizeof(csv), "%s/timeline.csv", state_dir);
	if (prefix)
		snprintf(pre, sizeof(pre), "%s", prefix);
	else
		snprintf(pre, sizeof(pre), "%s/drain-%s", state_dir, sha);
	snprintf(dat, sizeof(dat), "%s.dat", pre);
	snprintf(gp, sizeof(gp), "%s.gp", pre);
	rc = write_drain_dat(dat, csv, d, sha);
	if (rc == 0)
		rc = write_drain_gp(gp, dat, pre, d, sha);
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", gp, strerror(-rc));
		goto out;
	}
	rc = run_gnuplot(gp, err, errlen);
out:
	json_decref(rep);
	return rc;
}
