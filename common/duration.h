/*
 * Durations on command lines: a non-negative decimal number with an
 * optional unit, "500ms", "30", "30s", "2m", "1h" (no unit = seconds), as
 * chatload and rainbow take them.
 */
#ifndef COMMON_DURATION_H
#define COMMON_DURATION_H

/*
 * Parses s into seconds. Returns 0, or -EINVAL when s is not a duration or is
 * longer than max_s seconds (callers turn seconds into integer
 * milliseconds: the bound keeps that conversion defined). *out is set only
 * on success.
 */
int duration_parse(const char *s, double max_s, double *out);

#endif
