/*
 * chatd's /metrics text: the counters of struct metrics in Prometheus
 * exposition format.
 */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const close_names[CLOSE_REASON_COUNT] = {
	[CLOSE_CLIENT] = "client",
	[CLOSE_RESET] = "reset",
	[CLOSE_TLS_ERROR] = "tls-error",
	[CLOSE_BAD_FORMAT] = "bad-format",
	[CLOSE_CONFLICT] = "conflict",
	[CLOSE_CONNECTION_TIMEOUT] = "connection-timeout",
	[CLOSE_HOST_UNKNOWN] = "host-unknown",
	[CLOSE_INVALID_FROM] = "invalid-from",
	[CLOSE_INVALID_NAMESPACE] = "invalid-namespace",
	[CLOSE_INVALID_XML] = "invalid-xml",
	[CLOSE_NOT_AUTHORIZED] = "not-authorized",
	[CLOSE_NOT_WELL_FORMED] = "not-well-formed",
	[CLOSE_POLICY_VIOLATION] = "policy-violation",
	[CLOSE_RESOURCE_CONSTRAINT] = "resource-constraint",
	[CLOSE_RESTRICTED_XML] = "restricted-xml",
	[CLOSE_SYSTEM_SHUTDOWN] = "system-shutdown",
	[CLOSE_UNSUPPORTED_STANZA_TYPE] = "unsupported-stanza-type",
	[CLOSE_UNSUPPORTED_VERSION] = "unsupported-version",
	[CLOSE_INTERNAL_SERVER_ERROR] = "internal-server-error",
	[CLOSE_SEE_OTHER_HOST] = "see-other-host",
	[CLOSE_UNDEFINED_CONDITION] = "undefined-condition",
};

static const char *const resume_fail_names[RESUME_FAIL_COUNT] = {
	[RESUME_FAIL_NOT_FOUND] = "not-found",
	[RESUME_FAIL_OTHER_USER] = "other-user",
	[RESUME_FAIL_BAD_REQUEST] = "bad-request",
	[RESUME_FAIL_HANDLED_COUNT] = "handled-count-too-high",
	[RESUME_FAIL_PEER] = "peer-unreachable",
};

const char *resume_fail_name(enum resume_fail r)
{
	return (unsigned)r < RESUME_FAIL_COUNT ? resume_fail_names[r] : "unknown";
}

const char *close_reason_name(enum close_reason r)
{
	return (unsigned)r < CLOSE_REASON_COUNT ? close_names[r] : "unknown";
}

enum close_reason close_reason_from_condition(const char *cond)
{
	for (int i = CLOSE_BAD_FORMAT; i < CLOSE_REASON_COUNT; i++)
		if (strcmp(close_names[i], cond) == 0)
			return (enum close_reason)i;
	return CLOSE_BAD_FORMAT;
}

struct out {
	char *buf;
	size_t cap, len;
	int overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
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

/* Prometheus label values escape backslash, double quote and newline. */
static void put_label(struct out *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			put(o, "\\%c", *s);
		else if (*s == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *s);
	}
}

static void put_metric(struct out *o, const char *name, const char *type, const char *help,
		       uint64_t v)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
	    (unsigned long long)v);
}

long metrics_format(struct metrics *m, uint64_t now_ms, const char *version, const char *instance,
		    char *buf, size_t cap)
{
	struct out o = { buf, cap, 0, 0 };
	long n;

	put_metric(&o, "chatd_connections", "gauge", "Open client connections (TCP and WebSocket).",
		   m->connections);
	put(&o,
	    "# HELP chatd_connections_by_transport Open client connections, by transport.\n"
	    "# TYPE chatd_connections_by_transport gauge\n"
	    "chatd_connections_by_transport{transport=\"tcp\"} %llu\n"
	    "chatd_connections_by_transport{transport=\"websocket\"} %llu\n",
	    (unsigned long long)(m->connections - m->ws_connections),
	    (unsigned long long)m->ws_connections);
	put_metric(&o, "chatd_sessions", "gauge", "Authenticated and bound client sessions.",
		   m->sessions);
	put_metric(&o, "chatd_connections_accepted_total", "counter",
		   "Client connections accepted.", m->accepted_total);
	put(&o,
	    "# HELP chatd_connections_accepted_by_transport_total Client connections "
	    "accepted, by transport.\n"
	    "# TYPE chatd_connections_accepted_by_transport_total counter\n"
	    "chatd_connections_accepted_by_transport_total{transport=\"tcp\"} %llu\n"
	    "chatd_connections_accepted_by_transport_total{transport=\"websocket\"} %llu\n",
	    (unsigned long long)(m->accepted_total - m->ws_accepted_total),
	    (unsigned long long)m->ws_accepted_total);
	put(&o, "# HELP chatd_connections_closed_total Client connections closed, by reason.\n"
		"# TYPE chatd_connections_closed_total counter\n");
	for (int i = 0; i < CLOSE_REASON_COUNT; i++)
		put(&o, "chatd_connections_closed_total{reason=\"%s\"} %llu\n", close_names[i],
		    (unsigned long long)m->closed_total[i]);
	put_metric(&o, "chatd_stanzas_total", "counter",
		   "Stanzas (message, presence, iq) received from clients.", m->stanzas_total);
	put_metric(&o, "chatd_logins_total", "counter", "Successful SASL authentications.",
		   m->logins_total);
	put_metric(&o, "chatd_auth_failures_total", "counter", "Failed SASL authentications.",
		   m->auth_failures_total);
	put_metric(&o, "chatd_pings_sent_total", "counter", "XEP-0199 pings sent to idle clients.",
		   m->pings_sent_total);
	put_metric(&o, "chatd_stanza_errors_total", "counter",
		   "Stanza errors generated by the server.", m->stanza_errors_total);
	put_metric(&o, "chatd_bytes_in_total", "counter", "Bytes read from client sockets.",
		   m->bytes_in_total);
	put_metric(&o, "chatd_bytes_out_total", "counter", "Bytes written to client sockets.",
		   m->bytes_out_total);
	put_metric(&o, "chatd_auth_blocked_total", "counter",
		   "Logins refused unevaluated after too many failures (address or user name).",
		   m->auth_blocked_total);
	put_metric(&o, "chatd_input_paused_total", "counter",
		   "Times a client's reads were paused by the input rate limit.",
		   m->input_paused_total);
	put_metric(
		&o, "chatd_sessions_detached", "gauge",
		"Stream-managed sessions whose connection ended, held for resumption (XEP-0198).",
		m->sessions_detached);
	put(&o,
	    "# HELP chatd_sessions_resumed_total Sessions resumed (XEP-0198), by where the "
	    "session was: on this instance or on a peer.\n"
	    "# TYPE chatd_sessions_resumed_total counter\n"
	    "chatd_sessions_resumed_total{from=\"local\"} %llu\n"
	    "chatd_sessions_resumed_total{from=\"peer\"} %llu\n",
	    (unsigned long long)m->sessions_resumed_total[0],
	    (unsigned long long)m->sessions_resumed_total[1]);
	put(&o, "# HELP chatd_resume_failed_total Resumptions refused with <failed/>, by reason.\n"
		"# TYPE chatd_resume_failed_total counter\n");
	for (int i = 0; i < RESUME_FAIL_COUNT; i++)
		put(&o, "chatd_resume_failed_total{reason=\"%s\"} %llu\n", resume_fail_names[i],
		    (unsigned long long)m->resume_failed_total[i]);
	put_metric(&o, "chatd_sessions_moved_total", "counter",
		   "Sessions asked to reconnect elsewhere (see-other-host).",
		   m->sessions_moved_total);
	put(&o, "# HELP chatd_build_info Build and instance.\n# TYPE chatd_build_info gauge\n"
		"chatd_build_info{version=\"");
	put_label(&o, version);
	put(&o, "\",instance=\"");
	put_label(&o, instance);
	put(&o, "\"} 1\n");
	put_metric(&o, "chatd_draining", "gauge", "1 after SIGTERM while connections drain.",
		   (uint64_t)m->draining);
	put_metric(&o, "chatd_ready", "gauge", "1 while accepting new connections.",
		   (uint64_t)m->ready);
	{
		uint64_t up = now_ms > m->start_ms ? now_ms - m->start_ms : 0;

		/* How long lifetimes could have been observed for (the drain forecast's window). */
		put(&o,
		    "# HELP chatd_uptime_seconds Seconds since this chatd started.\n"
		    "# TYPE chatd_uptime_seconds gauge\nchatd_uptime_seconds %llu.%03u\n",
		    (unsigned long long)(up / 1000), (unsigned)(up % 1000));
	}
	if (o.overflow)
		return -ENOSPC;
	n = connlife_format(&m->life, now_ms, o.buf + o.len, o.cap - o.len);
	return n < 0 ? n : (long)o.len + n;
}
