/*
 * Reading one sample from chatd's /metrics (Prometheus text exposition
 * format 0.0.4): both platforms read chatd_connections from it to know when
 * a colour has drained.
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

#endif
