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

#include "platform.h"

#define CHART_COLOURS_MAX 32
#define CHART_BINS_MAX 100000

struct chart {
	size_t n_sha;
	char sha[CHART_COLOURS_MAX][64];
	double t0;
	size_t n_bins;
	long *val;	    /* n_bins * CHART_COLOURS_MAX, -1 = no row */
	unsigned char *has; /* bin has any row */
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

/* One timeline row; 0 when it is not one rainbow could have written (edited, truncated). */
static int parse_row(const char *line, double *t, char sha[64], long *conns)
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
		if (!parse_row(line, &t, sha, &conns))
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

		if (!parse_row(line, &t, sha, &conns))
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

static int write_gp(const struct chart *c, const char *gp, const char *dat, const char *prefix)
{
	FILE *f = fopen(gp, "w");
	const char *terms[][2] = { { "pngcairo size 1200,600", "png" },
				   { "svg size 1200,600 dynamic", "svg" } };

	if (!f)
		return -errno;
	for (size_t t = 0; t < 2; t++) {
		char out[4200];

		fprintf(f, "%sset terminal %s\n", t == 0 ? "# PNG\n" : "# SVG\n", terms[t][0]);
		snprintf(out, sizeof(out), "%s.%s", prefix, terms[t][1]);
		fprintf(f, "set output ");
		gp_string(f, out);
		fprintf(f, "\n");
		fprintf(f, "set title 'rainbow deploy: live connections per colour'\n");
		fprintf(f, "set xlabel 'seconds'\nset ylabel 'connections'\n");
		fprintf(f, "set key outside right top\nset grid\nset yrange [0:*]\n");
		fprintf(f, "set style fill solid 0.85 noborder\n");
		fprintf(f, "plot ");
		/* Topmost cumulative band first; each lower one paints over it. */
		for (size_t k = c->n_sha; k-- > 0;) {
			gp_string(f, dat);
			fprintf(f,
				" using 1:%zu with filledcurves x1 lc rgb '%s' "
				"title 'chat-%s'%s",
				k + 2, chart_palette[k % CHART_PALETTE_N], c->sha[k],
				k ? ", \\\n     " : "\n");
		}
		fprintf(f, "unset output\n");
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

static int run_gnuplot(const char *gp, char *err, size_t errlen)
{
	char *argv[] = { "gnuplot", (char *)gp, NULL };
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

int chart_render(const char *state_dir, const char *prefix, double bin_s, char *err, size_t errlen)
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
