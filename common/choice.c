/*
 * A value among a few words, for option tables.
 */
#include "choice.h"

#include <string.h>

int choice_index(const char *list, const char *v)
{
	size_t len = strlen(v);
	int i = 0;

	for (const char *p = list; p; p = strchr(p, '|'), p = p ? p + 1 : NULL, i++)
		if (strncmp(p, v, len) == 0 && (p[len] == '|' || p[len] == '\0'))
			return i;
	return -1;
}
