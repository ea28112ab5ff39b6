/*
 * The bounded text buffer /metrics is formatted into (see promtext.h).
 */
#include "promtext.h"

#include <stdarg.h>
#include <stdio.h>

void promtext_put(struct promtext *o, const char *fmt, ...)
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

void promtext_label(struct promtext *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			promtext_put(o, "\\%c", *s);
		else if (*s == '\n')
			promtext_put(o, "\\n");
		else
			promtext_put(o, "%c", *s);
	}
}
