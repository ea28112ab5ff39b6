/* A capped response body buffer for libcurl transfers (bodybuf.h). */
#include "bodybuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bodybuf_append(struct bodybuf *b, const char *p, size_t n)
{
	if (n > b->max || b->len > b->max - n) {
		b->overflow = 1;
		return -EFBIG;
	}
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 4096;
		char *nd;

		while (ncap < b->len + n + 1)
			ncap *= 2;
		nd = realloc(b->data, ncap);
		if (!nd)
			return -ENOMEM;
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

size_t bodybuf_curl_write(char *p, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;

	return bodybuf_append(ud, p, n) == 0 ? n : 0;
}

void bodybuf_reset(struct bodybuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->overflow = 0;
}
