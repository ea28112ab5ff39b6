/*
 * For the C APIs that take a pointer they never write through but declare
 * without const (uv_buf_t's base, execv()'s argv, libmicrohttpd's response
 * buffer in a copying mode, jansson's iteration over a const object): the
 * one place where const is cast away, so that -Wcast-qual stays on
 * everywhere else.
 */
#ifndef COMMON_UNCONST_H
#define COMMON_UNCONST_H

#include <stdint.h>

static inline void *unconst(const void *p)
{
	return (void *)(uintptr_t)p;
}

#endif
