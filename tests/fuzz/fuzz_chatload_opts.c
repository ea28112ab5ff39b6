/*
 * libFuzzer target for chatload's option value parsers (loadgen/opts.c):
 * durations, lifetime specs, --source-ips ranges and --ramp rates; getopt
 * itself is not fuzzed.
 *
 * Input: one byte choosing the parser, then the option's value. Besides not
 * crashing, an accepted value must be in the range the rest of chatload
 * relies on (finite, positive where required, a lifetime drawn fits uint32
 * milliseconds, a range of at most 65536 addresses) and be stable: the
 * value formatted canonically parses to the same value.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../loadgen/opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_duration(const char *s)
{
	char buf[64];
	double d, e;

	if (opts_parse_duration(s, &d) != 0)
		return;
	if (!isfinite(d) || d < 0)
		abort();
	snprintf(buf, sizeof(buf), "%.17gs", d);
	if (opts_parse_duration(buf, &e) != 0 || e != d)
		abort();
}

static void check_draws(const struct lifetime *l)
{
	static const double rs[] = { 0, 1e-9, 0.25, 0.5, 0.999, 0.999999999, 1 - 0x1p-53 };

	for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
		double v = opts_lifetime_draw(l, rs[i]);

		if (l->kind == LIFETIME_NONE) {
			if (!(v < 0))
				abort();
			continue;
		}
		/* client.c counts a lifetime in uint32 milliseconds. */
		if (!isfinite(v) || v < 0 || v > OPTS_DURATION_MAX || v * 1000 >= 4294967296.0)
			abort();
		if (l->kind == LIFETIME_UNIFORM && (v < l->a || v > l->b))
			abort();
	}
}

static void check_lifetime(const char *s)
{
	struct lifetime l, m;
	const char *why = NULL;
	char buf[128];

	if (opts_parse_lifetime(s, &l, &why) != 0) {
		if (!why || !*why)
			abort();
		return;
	}
	switch (l.kind) {
	case LIFETIME_NONE:
		if (l.a != 0 || l.b != 0)
			abort();
		snprintf(buf, sizeof(buf), "none");
		break;
	case LIFETIME_FIXED:
	case LIFETIME_EXP:
		if (!(l.a > 0) || !isfinite(l.a))
			abort();
		snprintf(buf, sizeof(buf), "%s:%.17gs", l.kind == LIFETIME_FIXED ? "fixed" : "exp",
			 l.a);
		break;
	case LIFETIME_UNIFORM:
		if (!(l.a > 0) || !(l.b >= l.a) || !isfinite(l.b))
			abort();
		snprintf(buf, sizeof(buf), "uniform:%.17gs-%.17gs", l.a, l.b);
		break;
	case LIFETIME_LOGNORMAL:
		if (!(l.a > 0) || !(l.a <= OPTS_DURATION_MAX) || !(l.b > 0) ||
		    !(l.b <= OPTS_LOGNORMAL_SIGMA_MAX))
			abort();
		snprintf(buf, sizeof(buf), "lognormal:%.17gs,%.17g", l.a, l.b);
		break;
	default:
		abort();
	}
	check_draws(&l);
	if (opts_parse_lifetime(buf, &m, &why) != 0 || m.kind != l.kind || m.a != l.a || m.b != l.b)
		abort();
}

static void check_ip_range(const char *s)
{
	uint32_t first, last, f2, l2;
	char buf[64];

	if (opts_parse_ip_range(s, &first, &last) != 0)
		return;
	if (first > last || last - first >= 65536)
		abort();
	snprintf(buf, sizeof(buf), "%u.%u.%u.%u-%u.%u.%u.%u", first >> 24, (first >> 16) & 255,
		 (first >> 8) & 255, first & 255, last >> 24, (last >> 16) & 255, (last >> 8) & 255,
		 last & 255);
	if (opts_parse_ip_range(buf, &f2, &l2) != 0 || f2 != first || l2 != last)
		abort();
}

static void check_rate(const char *s)
{
	char buf[64];
	double r, q;

	if (opts_parse_rate(s, &r) != 0)
		return;
	if (!isfinite(r) || !(r > 0))
		abort();
	snprintf(buf, sizeof(buf), "%.17g/s", r);
	if (opts_parse_rate(buf, &q) != 0 || q != r)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[256];

	if (size < 1 || size > sizeof(s) || memchr(data + 1, '\0', size - 1))
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] & 3) {
	case 0:
		check_duration(s);
		break;
	case 1:
		check_lifetime(s);
		break;
	case 2:
		check_ip_range(s);
		break;
	default:
		check_rate(s);
		break;
	}
	return 0;
}
