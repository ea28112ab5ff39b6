/*
 * One-line structured log records (logfmt) to stderr:
 *
 *   ts=2026-11-27T03:50:00.123Z level=info prog=chatd event=listen addr=127.0.0.1:5222
 *
 * `event` is a short fixed word; the format string adds key=value pairs.
 * Values that may hold spaces or quotes go through log_quote().
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* prog is kept by pointer (a string literal or argv[0] basename). */
void log_init(const char *prog, enum log_level level);
enum log_level log_get_level(void);
/* "debug", "info", "warn", "error", "off": 0, or -EINVAL for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *event, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/*
 * Repeated lines are rate-limited: per event name at most LOG_RATE_BURST
 * lines a second (debug lines excepted); the rest are counted and reported
 * as one line `event=log_suppressed of=EVENT count=N` once that second is
 * over: at the event's next line, or at log_flush(), which a long-running
 * program calls about once a second (and before exit).
 */
#define LOG_RATE_BURST 20
#define LOG_RATE_SLOTS 64
void log_flush(void);
/* 1 when some count waits to be reported (cheap, any thread): a program
 * that sleeps long calls log_flush() about a second later. */
int log_pending(void);
/* Reports every count now, the current second's too (before exit). */
void log_flush_all(void);
/* For tests: the clock in whole seconds (NULL: the monotonic clock); also
 * forgets every count. */
void log_set_clock(uint64_t (*now_s)(void));

/*
 * Quotes s as a logfmt value into buf ("..." with \" and \\ escaped, control
 * bytes as \xNN), truncating to bufsize; returns buf.
 */
const char *log_quote(char *buf, size_t bufsize, const char *s);

#define log_debug(ev, ...)                                   \
	do {                                                 \
		if (log_get_level() <= LOG_DEBUG)            \
			log_msg(LOG_DEBUG, ev, __VA_ARGS__); \
	} while (0)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
