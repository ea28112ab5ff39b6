/*
 * libFuzzer target for the Prometheus text reader both platforms use to read
 * chatd_connections from chatd's /metrics (deployer/promtext.c).
 *
 * Input: a /metrics body. Besides not crashing (values are range-checked
 * before conversion), the result must be -1 or a count within
 * PROMTEXT_COUNT_MAX, must not change when unrelated lines are put before
 * the body, and the first sample must win over one appended after it.
 */
#include <stddef.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *more;
	size_t len;
	long v, w;

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
