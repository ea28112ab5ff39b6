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

/* The value of the sample line at s, or -1 (see promtext_count()). */
static long sample_value(const char *s)
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
	return lround(v);
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
