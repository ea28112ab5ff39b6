/*
 * Log-linear latency histograms (exact below 128, 64 sub-buckets per power
 * of two above).
 */
#include "hist.h"

#include <string.h>

#define HIST_EXACT 128 /* values below are their own bucket */
#define HIST_SUB 64    /* sub-buckets per power of two above */

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
	unsigned msb, shift, idx;

	if (v < HIST_EXACT)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - 6; /* v >> shift is in [64, 127] */
	idx = HIST_EXACT + (shift - 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

uint64_t hist_bucket_high(unsigned idx)
{
	unsigned shift;
	uint64_t sub;

	if (idx < HIST_EXACT)
		return idx;
	shift = (idx - HIST_EXACT) / HIST_SUB + 1;
	sub = (idx - HIST_EXACT) % HIST_SUB + HIST_SUB;
	return ((sub + 1) << shift) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
	h->buckets[hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_add_bucket(struct hist *h, unsigned idx, uint64_t count)
{
	if (idx < HIST_BUCKETS)
		h->buckets[idx] += count;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, v;

	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min;
	rank = (uint64_t)(q * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			v = hist_bucket_high(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}
