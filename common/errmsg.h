/*
 * The error message a function leaves in its caller's (err, errlen) buffer,
 * beside the negative errno it returns.
 */
#ifndef COMMON_ERRMSG_H
#define COMMON_ERRMSG_H

#include <stddef.h>

/* Formats into err; nothing when err is NULL or errlen 0 (the caller wants no message). */
__attribute__((format(printf, 3, 4))) void errmsg_set(char *err, size_t errlen, const char *fmt,
						      ...);

#endif
