/*
 * The bounded text buffer /metrics is formatted into (see promout.h).
 */
#include "promout.h"

#include <stdarg.h>
#include <stdio.h>

void promout_put(struct promout *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->overflow = 1;
		return;
	}
	o->len += (size_t)n;
}

void promout_label(struct promout *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			promout_put(o, "\\%c", *s);
		else if (*s == '\n')
			promout_put(o, "\\n");
		else
			promout_put(o, "%c", *s);
	}
}
