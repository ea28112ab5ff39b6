/*
 * Structured one-line log records (logfmt) to stderr, with per-event rate
 * limiting and the log_suppressed reports of what it held back.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *log_prog = "rainbow";
static enum log_level log_level_cur = LOG_INFO;
static const char *const log_names[] = { "debug", "info", "warn", "error", "off" };

/*
 * Rate limit: per event name, at most LOG_RATE_BURST lines in one second of
 * the monotonic clock; the rest are counted, and the count is printed as
 * one event=log_suppressed line when that second is over (at the event's
 * next line, or at log_flush()). Events share LOG_RATE_SLOTS slots by a
 * hash of their name; a slot taken over by another event first prints what
 * it had suppressed. Debug lines are not limited: an operator who asks for
 * them wants them all. The slots are guarded by a mutex (libmicrohttpd logs
 * from its own thread).
 */
struct log_slot {
	char event[32];		       /* "" = free */
	enum log_level level;	       /* of the last line of the event */
	uint64_t second;	       /* the second the counts are for */
	unsigned printed;	       /* lines printed in that second */
	unsigned long long suppressed; /* lines not printed in that second */
};

static struct log_slot log_slots[LOG_RATE_SLOTS];
static int log_any_suppressed; /* some slot has a count (atomic access) */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t log_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static uint64_t (*log_clock)(void) = log_mono_s;

void log_set_clock(uint64_t (*now_s)(void))
{
	pthread_mutex_lock(&log_mu);
	log_clock = now_s ? now_s : log_mono_s;
	memset(log_slots, 0, sizeof(log_slots));
	pthread_mutex_unlock(&log_mu);
}

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level_cur = level;
}

enum log_level log_get_level(void)
{
	return log_level_cur;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOG_OFF; i++) {
		if (strcmp(name, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_quote(char *buf, size_t bufsize, const char *s)
{
	size_t n = 0;

	if (bufsize < 3) {
		if (bufsize)
			buf[0] = '\0';
		return buf;
	}
	buf[n++] = '"';
	for (; s && *s && n + 5 < bufsize; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(buf + n, bufsize - n, "\\x%02x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

static void log_write(enum log_level level, const char *event, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

__attribute__((format(printf, 3, 4))) static void
log_write_f(enum log_level level, const char *event, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(level, event, fmt, ap);
	va_end(ap);
}

/* Prints what slot s suppressed (caller holds log_mu). */
static void log_slot_report(struct log_slot *s)
{
	if (!s->suppressed)
		return;
	log_write_f(s->level, "log_suppressed", "of=%s count=%llu", s->event, s->suppressed);
	s->suppressed = 0;
}

static unsigned log_hash(const char *event)
{
	unsigned h = 2166136261u;

	for (; *event; event++)
		h = (h ^ (unsigned char)*event) * 16777619u;
	return h % LOG_RATE_SLOTS;
}

/* 1 when a line of event may be printed now. */
static int log_admit(enum log_level level, const char *event)
{
	struct log_slot *s = &log_slots[log_hash(event)];
	uint64_t now;
	int ok;

	pthread_mutex_lock(&log_mu);
	now = log_clock();
	if (strncmp(s->event, event, sizeof(s->event) - 1) != 0) {
		log_slot_report(s);
		snprintf(s->event, sizeof(s->event), "%s", event);
		s->second = now;
		s->printed = 0;
	} else if (s->second != now) {
		log_slot_report(s);
		s->second = now;
		s->printed = 0;
	}
	s->level = level;
	ok = s->printed < LOG_RATE_BURST;
	if (ok) {
		s->printed++;
	} else {
		s->suppressed++;
		__atomic_store_n(&log_any_suppressed, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&log_mu);
	return ok;
}

static void log_flush_if(int all)
{
	uint64_t now;

	int left = 0;

	pthread_mutex_lock(&log_mu);
	now = log_clock();
	for (int i = 0; i < LOG_RATE_SLOTS; i++) {
		if (all || log_slots[i].second != now)
			log_slot_report(&log_slots[i]);
		left |= log_slots[i].suppressed != 0;
	}
	__atomic_store_n(&log_any_suppressed, left, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&log_mu);
}

void log_flush(void)
{
	log_flush_if(0);
}

int log_pending(void)
{
	return __atomic_load_n(&log_any_suppressed, __ATOMIC_RELAXED);
}

void log_flush_all(void)
{
	log_flush_if(1);
}

void log_vmsg(enum log_level level, const char *event, const char *fmt, va_list ap)
{
	if (level < log_level_cur || level >= LOG_OFF)
		return;
	if (level > LOG_DEBUG && !log_admit(level, event))
		return;
	log_write(level, event, fmt, ap);
}

static void log_write(enum log_level level, const char *event, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03dZ level=%s prog=%s event=%s",
		     (int)(tv.tv_usec / 1000), log_names[level], log_prog, event);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (fmt && *fmt && n + 2 < sizeof(line)) {
		line[n++] = ' ';
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, event, fmt, ap);
	va_end(ap);
}
