/*
 * A log-linear latency histogram in the manner of HdrHistogram: exact below
 * 128, above that 64 sub-buckets per power of two (relative error below
 * 1/64). Values are unsigned integers (chatload records microseconds);
 * anything at or above 2^41 lands in the last bucket. Histograms of several
 * processes merge by adding their buckets.
 */
#ifndef CHATLOAD_HIST_H
#define CHATLOAD_HIST_H

#include <stdint.h>

#define HIST_BUCKETS 2304

struct hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min; /* UINT64_MAX while empty */
	uint64_t max;
	uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
/* Adds count values in bucket idx (used when merging serialized buckets). */
void hist_add_bucket(struct hist *h, unsigned idx, uint64_t count);
/* The value at quantile q (0..1): the highest value of its bucket, clamped
 * to [min, max]. 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);
unsigned hist_index(uint64_t v);
/* Highest value that maps to bucket idx. */
uint64_t hist_bucket_high(unsigned idx);

#endif
