/*
 * Command-line durations ("500ms", "2m", "1h") for chatload and rainbow.
 */
#include "duration.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int duration_parse(const char *s, double max_s, double *out)
{
	char *end;
	double v, mul;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || !(v >= 0))
		return -EINVAL;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1;
	else if (strcmp(end, "ms") == 0)
		mul = 0.001;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else
		return -EINVAL;
	/* "1e308h" is a finite number of hours but not of seconds. */
	v *= mul;
	if (!isfinite(v) || v > max_s)
		return -EINVAL;
	*out = v;
	return 0;
}
