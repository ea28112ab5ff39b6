/*
 * Reading samples from chatd's /metrics (Prometheus text exposition format
 * 0.0.4): both platforms read chatd_connections from it to know when a
 * colour has drained, and the lifetime histogram and age buckets to
 * forecast when it will have.
 *
 * A sample line is NAME[{LABELS}] VALUE [TIMESTAMP]; lines starting with '#'
 * are comments. Label values are quoted strings with \\, \" and \n escapes,
 * so a '}' or a blank inside one ends nothing.
 */
#ifndef RAINBOW_PROMTEXT_H
#define RAINBOW_PROMTEXT_H

/* Largest count promtext_count() returns (well inside a long and a double). */
#define PROMTEXT_COUNT_MAX 1000000000000000L

/*
 * The value of the first sample of metric name (any labels) in text, as a
 * count rounded to the nearest integer; -1 when there is none, or when that
 * sample is malformed, negative, not finite or above PROMTEXT_COUNT_MAX.
 */
long promtext_count(const char *text, const char *name);

/*
 * The buckets of a cumulative histogram series name (e.g.
 * "chatd_connection_duration_seconds_bucket"): every sample of that name
 * with an le label, sorted by le. On success returns n, the number of finite
 * bounds (at most max), with le[0..n-1] strictly increasing finite bounds and
 * cum[0..n] their counts, cum[n] the le="+Inf" one; counts never decrease
 * with le. -1 (le and cum unspecified) when there is no such sample, when
 * +Inf is missing, when a sample is malformed (as promtext_count()), when an
 * le is not a number, repeated or non-positive, when counts decrease, or
 * when there are more than max finite bounds.
 */
int promtext_hist(const char *text, const char *name, double *le, double *cum, int max);

#endif
