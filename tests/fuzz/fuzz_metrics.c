/*
 * libFuzzer target for the Prometheus text reader both platforms use to read
 * chatd_connections and the lifetime histograms from chatd's /metrics
 * (deployer/promtext.c).
 *
 * Input: a /metrics body. Besides not crashing (values are range-checked
 * before conversion), the count must be -1 or within PROMTEXT_COUNT_MAX,
 * must not change when unrelated lines are put before the body, and the
 * first sample must win over one appended after it. A histogram read must be
 * -1 or well formed (bounds finite, positive, strictly increasing; counts in
 * range and never decreasing, +Inf last), and unrelated lines before the body
 * change nothing either.
 */
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../deployer/promtext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "chatd_connections"
#define PREFIX                                                                             \
	"# HELP " NAME " open connections\n# TYPE " NAME " gauge\n" NAME "_total 9\n" NAME \
	"x 8\nchatd_sessions 7\n"
#define SUFFIX "\n" NAME " 4242\n"
#define HIST "chatd_connection_duration_seconds_bucket"
#define HMAX 8

/* -1, or n with a well-formed histogram in le/cum. */
static int check_hist(const char *text, double *le, double *cum)
{
	int n = promtext_hist(text, HIST, le, cum, HMAX);

	if (n < -1 || n > HMAX)
		abort();
	for (int i = 0; i < n; i++) {
		if (!(le[i] > 0) || !isfinite(le[i]) || (i > 0 && !(le[i] > le[i - 1])))
			abort();
		if (!(cum[i] >= 0) || cum[i] > (double)PROMTEXT_COUNT_MAX || cum[i + 1] < cum[i])
			abort();
	}
	if (n >= 0 && (!(cum[n] >= 0) || cum[n] > (double)PROMTEXT_COUNT_MAX))
		abort();
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *more;
	size_t len;
	long v, w;
	double le[HMAX], cum[HMAX + 1], le2[HMAX], cum2[HMAX + 1];
	int h, h2;

	if (size > 64 * 1024)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	len = strlen(text);
	v = promtext_count(text, NAME);
	if (v < -1 || v > PROMTEXT_COUNT_MAX)
		abort();
	more = malloc(sizeof(PREFIX) + len + sizeof(SUFFIX));
	if (!more)
		abort();
	/* Unrelated lines first: the same answer. */
	memcpy(more, PREFIX, sizeof(PREFIX) - 1);
	memcpy(more + sizeof(PREFIX) - 1, text, len + 1);
	w = promtext_count(more, NAME);
	if (w != v)
		abort();
	h = check_hist(text, le, cum);
	h2 = check_hist(more, le2, cum2);
	if (h2 != h || (h > 0 && (memcmp(le, le2, sizeof(double) * (size_t)h) != 0 ||
				  memcmp(cum, cum2, sizeof(double) * ((size_t)h + 1)) != 0)))
		abort();
	/* A good sample appended: it only counts when the body had no sample. */
	memcpy(more, text, len);
	memcpy(more + len, SUFFIX, sizeof(SUFFIX));
	w = promtext_count(more, NAME);
	if (w != (v >= 0 ? v : 4242) && !(v == -1 && w == -1))
		abort();
	free(more);
	free(text);
	return 0;
}
