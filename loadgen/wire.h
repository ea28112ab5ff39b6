/*
 * The line channel between a chatload worker and the run's accountant (the
 * parent process, or the coordinator pod): a socketpair or a TCP
 * connection carrying one record per '\n'-terminated line of text
 * (docs/chatload.md, "Workers and pods"). Output is buffered and written
 * with wire_flush(); input is read without blocking and cut into lines.
 * The fd is non-blocking; a wire owns it.
 */
#ifndef CHATLOAD_WIRE_H
#define CHATLOAD_WIRE_H

#include <stdbool.h>
#include <stddef.h>

struct wire {
	int fd;		     /* -1 once closed */
	char *in;	     /* unread input: a partial line */
	size_t inlen, incap; /* bytes in `in`, allocated */
	size_t max_line;     /* longest line accepted (bytes) */
	char *out;	     /* output not yet written */
	size_t outlen, outcap;
	bool failed; /* the peer is gone, or out of memory: nothing more is written */
};

/* Takes fd (made non-blocking). max_line bounds one input line. */
void wire_init(struct wire *w, int fd, size_t max_line);
/* Closes the fd and frees the buffers. */
void wire_close(struct wire *w);

/* Appends to the output buffer (not written yet). */
void wire_put(struct wire *w, const char *s, size_t n);
void wire_printf(struct wire *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Writes the buffered output. block: wait until all of it is written (a
 * worker; the accountant is always reading); else write what the peer takes
 * now and keep the rest. 0, or -EPIPE when the peer is gone (w->failed).
 */
int wire_flush(struct wire *w, bool block);

/*
 * Reads what is there now and calls line(ud, text) for each complete line
 * (NUL-terminated, without its '\n'; the callback may modify it). Returns 1
 * while the channel is open, 0 at end of input (after the complete lines),
 * a negative errno on an error (-EMSGSIZE: a line longer than max_line).
 */
int wire_read(struct wire *w, void (*line)(void *ud, char *text), void *ud);

#endif
