/*
 * The line channel between a worker and the accountant: buffered
 * non-blocking writes, reads cut into lines.
 */
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void wire_init(struct wire *w, int fd, size_t max_line)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->max_line = max_line;
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void wire_close(struct wire *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->in);
	free(w->out);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->failed = true;
}

static bool wire_reserve(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	char *p;

	if (need <= *cap)
		return true;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n);
	if (!p)
		return false;
	*buf = p;
	*cap = n;
	return true;
}

void wire_put(struct wire *w, const char *s, size_t n)
{
	if (w->failed)
		return;
	if (!wire_reserve(&w->out, &w->outcap, w->outlen + n)) {
		w->failed = true;
		return;
	}
	memcpy(w->out + w->outlen, s, n);
	w->outlen += n;
}

void wire_printf(struct wire *w, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		wire_put(w, small, (size_t)n);
		return;
	}
	if (w->failed || !wire_reserve(&w->out, &w->outcap, w->outlen + (size_t)n + 1)) {
		w->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(w->out + w->outlen, (size_t)n + 1, fmt, ap);
	va_end(ap);
	w->outlen += (size_t)n;
}

int wire_flush(struct wire *w, bool block)
{
	size_t done = 0;

	if (w->failed || w->fd < 0)
		return -EPIPE;
	while (done < w->outlen) {
		ssize_t n = write(w->fd, w->out + done, w->outlen - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = { .fd = w->fd, .events = POLLOUT };
			if (!block)
				break;
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				goto fail;
			continue;
		}
		goto fail;
	}
	memmove(w->out, w->out + done, w->outlen - done);
	w->outlen -= done;
	return 0;
fail:
	w->failed = true;
	w->outlen = 0;
	return -EPIPE;
}

int wire_read(struct wire *w, void (*line)(void *ud, char *text), void *ud)
{
	char buf[65536];

	/* A bounded amount per call, so that one busy peer cannot starve the
	 * others of a caller that serves many. */
	for (int round = 0; round < 16; round++) {
		ssize_t n = read(w->fd, buf, sizeof(buf));
		size_t start = 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (size_t i = 0; i < (size_t)n; i++) {
			if (buf[i] != '\n')
				continue;
			if (w->inlen + (i - start) > w->max_line)
				return -EMSGSIZE;
			if (!wire_reserve(&w->in, &w->incap, w->inlen + (i - start) + 1))
				return -EMSGSIZE;
			memcpy(w->in + w->inlen, buf + start, i - start);
			w->in[w->inlen + (i - start)] = '\0';
			w->inlen = 0;
			start = i + 1;
			line(ud, w->in);
			if (w->fd < 0)
				return 0; /* the callback closed us */
		}
		if (start < (size_t)n) {
			size_t rest = (size_t)n - start;
			if (w->inlen + rest > w->max_line)
				return -EMSGSIZE;
			if (!wire_reserve(&w->in, &w->incap, w->inlen + rest + 1))
				return -EMSGSIZE;
			memcpy(w->in + w->inlen, buf + start, rest);
			w->inlen += rest;
		}
	}
	return 1;
}
