/*
 * A sample line is parsed completely before its value is trusted: a line
 * that only starts like the metric (a longer name, an unterminated label
 * block) must not be read as it, and a value is range-checked before it is
 * converted (a double out of a long's range is undefined behaviour).
 */
#include "promtext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Past the label block starting at s ('{'), or NULL if it does not end on this line. */
static const char *skip_labels(const char *s)
{
	int quoted = 0;

	for (s++; *s && *s != '\n'; s++) {
		if (quoted) {
			if (*s == '\\') {
				if (s[1] == '\0' || s[1] == '\n')
					return NULL;
				s++;
			} else if (*s == '"') {
				quoted = 0;
			}
		} else if (*s == '"') {
			quoted = 1;
		} else if (*s == '}') {
			return s + 1;
		}
	}
	return NULL;
}

/* The value of the sample line at s as a double, or -1 (see promtext_count()). */
static double sample_double(const char *s)
{
	char buf[64], *end;
	size_t n;
	double v;

	if (*s != ' ' && *s != '\t')
		return -1;
	s += strspn(s, " \t");
	n = strcspn(s, " \t\r\n");
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	v = strtod(buf, &end);
	if (*end || !isfinite(v) || v < 0 || v > (double)PROMTEXT_COUNT_MAX)
		return -1;
	return v;
}

static long sample_value(const char *s)
{
	double v = sample_double(s);

	return v < 0 ? -1 : lround(v);
}

long promtext_count(const char *text, const char *name)
{
	size_t nlen = strlen(name);
	const char *s = text;

	while (s && *s) {
		if (strncmp(s, name, nlen) == 0 &&
		    (s[nlen] == ' ' || s[nlen] == '\t' || s[nlen] == '{')) {
			const char *v = s + nlen;

			if (*v == '{')
				v = skip_labels(v);
			/* The first sample decides, even a bad one: the metric is that line. */
			return v ? sample_value(v) : -1;
		}
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	return -1;
}

/*
 * The value of label `name` in the label block [s, end) (s at '{', end past
 * '}'), unescaped into out; 0, or -1 when absent or too long.
 */
static int label_value(const char *s, const char *end, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);

	s++;
	while (s < end) {
		const char *key;
		size_t klen, o = 0;

		s += strspn(s, " \t,");
		key = s;
		klen = strcspn(s, "=} \t");
		s += klen;
		s += strspn(s, " \t");
		if (*s != '=')
			return -1;
		s++;
		s += strspn(s, " \t");
		if (*s != '"')
			return -1;
		for (s++; s < end && *s != '"'; s++) {
			char ch = *s;

			if (ch == '\\') {
				s++;
				ch = *s == 'n' ? '\n' : *s;
			}
			if (o + 1 < cap)
				out[o] = ch;
			o++;
		}
		if (s >= end)
			return -1;
		s++; /* the closing quote */
		if (klen == nlen && strncmp(key, name, nlen) == 0) {
			if (o >= cap)
				return -1;
			out[o] = '\0';
			return 0;
		}
		s += strspn(s, " \t,");
		if (*s == '}')
			return -1;
	}
	return -1;
}

struct hist_pt {
	double le, v;
};

static int pt_cmp(const void *a, const void *b)
{
	double x = ((const struct hist_pt *)a)->le, y = ((const struct hist_pt *)b)->le;

	return x < y ? -1 : x > y;
}

int promtext_hist(const char *text, const char *name, double *le, double *cum, int max)
{
	size_t nlen = strlen(name);
	const char *s = text;
	struct hist_pt *pt;
	int n = 0, rc = -1, inf = -1;

	if (max < 0)
		return -1;
	pt = malloc(sizeof(*pt) * ((size_t)max + 1));
	if (!pt)
		return -1;
	for (; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL) {
		const char *lab, *v;
		char buf[64], *end;
		double x, val;

		if (strncmp(s, name, nlen) != 0 || s[nlen] != '{')
			continue;
		lab = s + nlen;
		v = skip_labels(lab);
		if (!v || label_value(lab, v, "le", buf, sizeof(buf)) != 0)
			goto out;
		val = sample_double(v);
		if (val < 0)
			goto out;
		if (strcmp(buf, "+Inf") == 0) {
			if (inf >= 0)
				goto out;
			inf = 1;
			pt[max].v = val; /* kept aside while the finite ones are sorted */
			continue;
		}
		x = strtod(buf, &end);
		if (*end || end == buf || !isfinite(x) || !(x > 0) || n >= max)
			goto out;
		pt[n].le = x;
		pt[n].v = val;
		n++;
	}
	if (inf < 0)
		goto out;
	qsort(pt, (size_t)n, sizeof(*pt), pt_cmp);
	for (int i = 0; i < n; i++) {
		if (i > 0 && (pt[i].le == pt[i - 1].le || pt[i].v < pt[i - 1].v))
			goto out;
		le[i] = pt[i].le;
		cum[i] = pt[i].v;
	}
	if (n > 0 && pt[max].v < pt[n - 1].v)
		goto out;
	cum[n] = pt[max].v;
	rc = n;
out:
	free(pt);
	return rc;
}
