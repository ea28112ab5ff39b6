/*
 * strophe_client: a scriptable XMPP client built on libstrophe, an XMPP
 * implementation nobody on this project wrote. The interop tests drive it to
 * check chatd against an independent client.
 *
 *   strophe_client --jid alice@example.test --password p --host 127.0.0.1
 *                  --port 5222 [--tls-mode require|disable|optional]
 *                  [--cafile F | --trust] [--mech M] [--resource R]
 *                  [--timeout S] [--no-pong] [--verbose] ACTION...
 *
 * A --jid without a localpart ("example.test") makes libstrophe use SASL
 * ANONYMOUS (the password is then unused).
 *
 * Actions run in order once the session is bound:
 *   send TO BODY        a chat message
 *   wait-messages N     until N chat/normal messages have arrived in total
 *   presence            initial (broadcast) presence
 *   presence-to TO      directed presence
 *   wait-presence FROM  until an available presence from FROM (bare or full)
 *   ping                XEP-0199 ping to the server, waits for the result
 *   ping-to JID         XEP-0199 ping to an entity
 *   version             XEP-0092 software version of the server
 *   roster              RFC 6121 roster get
 *   disco               XEP-0030 disco#info of the server
 *   sleep MS            keeps the session (and the event loop) running
 *   wait-disconnect     until the server closes the stream (not a failure)
 *
 * Every event is one JSON object per line on stdout ("event": "connected",
 * "message", "presence", "pong", "version", "roster", "disco", "iq-error",
 * "message-error", "stream-error", "disconnected", "error", "done").
 *
 * libstrophe has no switch to force a SASL mechanism: it picks the strongest
 * SCRAM variant the server offers and uses PLAIN only when nothing else is
 * offered. --mech therefore checks the mechanism that was used (read from
 * libstrophe's own debug log) and fails when it differs.
 *
 * Exit status: 0 when every action completed, 1 on any failure, 2 on usage.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>
#include <time.h>

#define SC_NS_PING "urn:xmpp:ping"
#define SC_NS_VERSION "jabber:iq:version"
#define SC_NS_ROSTER "jabber:iq:roster"
#define SC_NS_DISCO "http://jabber.org/protocol/disco#info"
#define SC_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define SC_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"

enum sc_act_kind {
	SC_SEND,
	SC_WAIT_MESSAGES,
	SC_PRESENCE,
	SC_PRESENCE_TO,
	SC_WAIT_PRESENCE,
	SC_PING,
	SC_PING_TO,
	SC_VERSION,
	SC_ROSTER,
	SC_DISCO,
	SC_SLEEP,
	SC_WAIT_DISCONNECT,
};

struct sc_act_def {
	const char *word;
	enum sc_act_kind kind;
	int nargs;
};

static const struct sc_act_def sc_act_defs[] = {
	{ "send", SC_SEND, 2 },
	{ "wait-messages", SC_WAIT_MESSAGES, 1 },
	{ "presence", SC_PRESENCE, 0 },
	{ "presence-to", SC_PRESENCE_TO, 1 },
	{ "wait-presence", SC_WAIT_PRESENCE, 1 },
	{ "ping", SC_PING, 0 },
	{ "ping-to", SC_PING_TO, 1 },
	{ "version", SC_VERSION, 0 },
	{ "roster", SC_ROSTER, 0 },
	{ "disco", SC_DISCO, 0 },
	{ "sleep", SC_SLEEP, 1 },
	{ "wait-disconnect", SC_WAIT_DISCONNECT, 0 },
};

struct sc_act {
	const struct sc_act_def *def;
	const char *arg[2];
};

/* The whole client state; one per process, passed to every callback. */
struct sc {
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;
	const char *domain;    /* domainpart of --jid, owned by argv copy */
	const char *want_mech; /* --mech, or NULL */
	char mech[64];	       /* mechanism libstrophe reported as successful */
	int verbose;
	int no_pong;

	struct sc_act *acts;
	size_t nacts;
	size_t next;		     /* index of the action to start next */
	int waiting;		     /* the current action has started and not finished */
	int iq_done;		     /* the awaited iq has been answered (1 ok, -1 error) */
	char iq_id[32];		     /* id of the awaited iq */
	double sleep_until;	     /* monotonic seconds, for SC_SLEEP */
	unsigned long msgs;	     /* chat/normal messages received so far */
	char presence_seen[16][256]; /* senders of available presence (ring) */
	unsigned npresence;
	unsigned iq_seq;

	int connected;	  /* session established (bound) */
	int disconnected; /* libstrophe reported disconnect or failure */
	int failed;	  /* some check failed: exit 1 */
	int done;	  /* all actions completed */
};

static double sc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints one event as a JSON line; takes ownership of obj. */
static void sc_emit(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		free(s);
	}
	json_decref(obj);
}

static json_t *sc_event(const char *name)
{
	return json_pack("{s:s}", "event", name);
}

static void sc_set_str(json_t *obj, const char *key, const char *val)
{
	if (val)
		json_object_set_new(obj, key, json_string(val));
	else
		json_object_set_new(obj, key, json_null());
}

static void sc_fail(struct sc *sc, const char *what, const char *detail)
{
	json_t *ev = sc_event("error");

	sc_set_str(ev, "what", what);
	if (detail)
		sc_set_str(ev, "detail", detail);
	sc_emit(ev);
	sc->failed = 1;
}

/* Name of the first child in namespace ns (the defined condition of an
 * error element), or NULL. */
static const char *sc_condition(xmpp_stanza_t *err, const char *ns)
{
	xmpp_stanza_t *c;

	for (c = err ? xmpp_stanza_get_children(err) : NULL; c; c = xmpp_stanza_get_next(c)) {
		const char *cns = xmpp_stanza_get_ns(c);
		const char *name = xmpp_stanza_get_name(c);

		if (name && cns && strcmp(cns, ns) == 0 && strcmp(name, "text") != 0)
			return name;
	}
	return NULL;
}

/* Text of a child element, malloc'ed by libstrophe (xmpp_free it), or NULL. */
static char *sc_child_text(xmpp_stanza_t *parent, const char *name)
{
	xmpp_stanza_t *c = xmpp_stanza_get_child_by_name(parent, name);

	return c ? xmpp_stanza_get_text(c) : NULL;
}

static void sc_log(void *ud, xmpp_log_level_t level, const char *area, const char *msg)
{
	struct sc *sc = ud;
	char mech[64];

	/* libstrophe logs "SASL <mech> auth successful" once SASL succeeded;
	 * that is the only place the chosen mechanism is visible. */
	if (sscanf(msg, "SASL %63s auth successful", mech) == 1)
		snprintf(sc->mech, sizeof(sc->mech), "%s", mech);
	if (sc->verbose || level >= XMPP_LEVEL_ERROR)
		fprintf(stderr, "strophe %s %s\n", area, msg);
}

static int sc_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct sc *sc = ud;
	const char *type = xmpp_stanza_get_type(st);
	json_t *ev;
	char *body;

	if (type && strcmp(type, "error") == 0) {
		ev = sc_event("message-error");
		sc_set_str(ev, "from", xmpp_stanza_get_from(st));
		sc_set_str(ev, "id", xmpp_stanza_get_id(st));
		sc_set_str(ev, "condition",
			   sc_condition(xmpp_stanza_get_child_by_name(st, "error"), SC_NS_STANZAS));
		sc_emit(ev);
		return 1;
	}
	body = xmpp_message_get_body(st);
	ev = sc_event("message");
	sc_set_str(ev, "from", xmpp_stanza_get_from(st));
	sc_set_str(ev, "to", xmpp_stanza_get_to(st));
	sc_set_str(ev, "type", type ? type : "normal");
	sc_set_str(ev, "id", xmpp_stanza_get_id(st));
	sc_set_str(ev, "body", body);
	sc_emit(ev);
	if (body)
		xmpp_free(sc->ctx, body);
	sc->msgs++;
	return 1;
}

static int sc_on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct sc *sc = ud;
	const char *type = xmpp_stanza_get_type(st);
	const char *from = xmpp_stanza_get_from(st);
	json_t *ev = sc_event("presence");

	sc_set_str(ev, "from", from);
	sc_set_str(ev, "type", type ? type : "available");
	sc_emit(ev);
	if (!type && from) {
		snprintf(sc->presence_seen[sc->npresence % 16], sizeof(sc->presence_seen[0]), "%s",
			 from);
		sc->npresence++;
	}
	return 1;
}

/* Answers XEP-0199 pings (from the server's idle check) and refuses every
 * other request addressed to us, as RFC 6120 8.4 asks. */
static int sc_on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct sc *sc = ud;
	const char *type = xmpp_stanza_get_type(st);
	xmpp_stanza_t *reply;
	json_t *ev;

	if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
		return 1;
	if (xmpp_stanza_get_child_by_name_and_ns(st, "ping", SC_NS_PING)) {
		ev = sc_event("ping-received");
		sc_set_str(ev, "from", xmpp_stanza_get_from(st));
		sc_emit(ev);
		if (sc->no_pong)
			return 1;
		reply = xmpp_stanza_reply(st);
		if (!reply)
			return 1;
		xmpp_stanza_set_type(reply, "result");
		xmpp_send(conn, reply);
		xmpp_stanza_release(reply);
		return 1;
	}
	reply = xmpp_stanza_reply_error(st, "cancel", "service-unavailable", NULL);
	if (reply) {
		xmpp_send(conn, reply);
		xmpp_stanza_release(reply);
	}
	return 1;
}

/* Result or error of the iq the current action waits for. */
static int sc_on_iq_reply(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct sc *sc = ud;
	const char *type = xmpp_stanza_get_type(st);
	enum sc_act_kind kind = sc->acts[sc->next - 1].def->kind;
	xmpp_stanza_t *q, *c;
	json_t *ev, *arr;

	if (!type || strcmp(type, "result") != 0) {
		ev = sc_event("iq-error");
		sc_set_str(ev, "id", xmpp_stanza_get_id(st));
		sc_set_str(ev, "from", xmpp_stanza_get_from(st));
		sc_set_str(ev, "condition",
			   sc_condition(xmpp_stanza_get_child_by_name(st, "error"), SC_NS_STANZAS));
		sc_emit(ev);
		sc->iq_done = -1;
		return 0;
	}
	switch (kind) {
	case SC_PING:
	case SC_PING_TO:
		ev = sc_event("pong");
		sc_set_str(ev, "from", xmpp_stanza_get_from(st));
		sc_emit(ev);
		break;
	case SC_VERSION: {
		char *name, *ver, *os;

		q = xmpp_stanza_get_child_by_ns(st, SC_NS_VERSION);
		name = q ? sc_child_text(q, "name") : NULL;
		ver = q ? sc_child_text(q, "version") : NULL;
		os = q ? sc_child_text(q, "os") : NULL;
		ev = sc_event("version");
		sc_set_str(ev, "name", name);
		sc_set_str(ev, "version", ver);
		sc_set_str(ev, "os", os);
		sc_emit(ev);
		if (name)
			xmpp_free(sc->ctx, name);
		if (ver)
			xmpp_free(sc->ctx, ver);
		if (os)
			xmpp_free(sc->ctx, os);
		if (!q) {
			sc->iq_done = -1;
			return 0;
		}
		break;
	}
	case SC_ROSTER: {
		int n = 0;

		q = xmpp_stanza_get_child_by_ns(st, SC_NS_ROSTER);
		for (c = q ? xmpp_stanza_get_children(q) : NULL; c; c = xmpp_stanza_get_next(c))
			if (xmpp_stanza_is_tag(c))
				n++;
		ev = sc_event("roster");
		json_object_set_new(ev, "query", json_boolean(q != NULL));
		json_object_set_new(ev, "items", json_integer(n));
		sc_emit(ev);
		if (!q) {
			sc->iq_done = -1;
			return 0;
		}
		break;
	}
	case SC_DISCO:
		q = xmpp_stanza_get_child_by_ns(st, SC_NS_DISCO);
		arr = json_array();
		for (c = q ? xmpp_stanza_get_children(q) : NULL; c; c = xmpp_stanza_get_next(c)) {
			const char *name = xmpp_stanza_get_name(c);
			const char *var = xmpp_stanza_get_attribute(c, "var");

			if (name && var && strcmp(name, "feature") == 0)
				json_array_append_new(arr, json_string(var));
		}
		ev = sc_event("disco");
		json_object_set_new(ev, "features", arr);
		sc_emit(ev);
		if (!q) {
			sc->iq_done = -1;
			return 0;
		}
		break;
	default:
		break;
	}
	sc->iq_done = 1;
	return 0;
}

static void sc_conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
			    xmpp_stream_error_t *serr, void *ud)
{
	struct sc *sc = ud;
	json_t *ev;

	if (event == XMPP_CONN_CONNECT) {
		sc->connected = 1;
		ev = sc_event("connected");
		sc_set_str(ev, "jid", xmpp_conn_get_bound_jid(conn));
		json_object_set_new(ev, "secured", json_boolean(xmpp_conn_is_secured(conn)));
		sc_set_str(ev, "mech", sc->mech[0] ? sc->mech : NULL);
		sc_emit(ev);
		xmpp_handler_add(conn, sc_on_message, NULL, "message", NULL, sc);
		xmpp_handler_add(conn, sc_on_presence, NULL, "presence", NULL, sc);
		xmpp_handler_add(conn, sc_on_iq, NULL, "iq", NULL, sc);
		if (sc->want_mech && strcmp(sc->want_mech, sc->mech) != 0)
			sc_fail(sc, "mechanism", sc->mech[0] ? sc->mech : "unknown");
		return;
	}
	if (serr && serr->stanza) {
		ev = sc_event("stream-error");
		sc_set_str(ev, "condition", sc_condition(serr->stanza, SC_NS_STREAMS));
		sc_set_str(ev, "text", serr->text);
		sc_emit(ev);
	}
	ev = sc_event("disconnected");
	json_object_set_new(ev, "error", json_integer(error));
	json_object_set_new(ev, "was_connected", json_boolean(sc->connected));
	sc_emit(ev);
	sc->disconnected = 1;
}

static void sc_send_iq(struct sc *sc, const char *to, const char *child, const char *ns)
{
	xmpp_stanza_t *iq, *q;

	snprintf(sc->iq_id, sizeof(sc->iq_id), "sc%u", ++sc->iq_seq);
	iq = xmpp_iq_new(sc->ctx, "get", sc->iq_id);
	q = xmpp_stanza_new(sc->ctx);
	xmpp_stanza_set_name(q, child);
	xmpp_stanza_set_ns(q, ns);
	xmpp_stanza_add_child(iq, q);
	xmpp_stanza_release(q);
	if (to)
		xmpp_stanza_set_to(iq, to);
	sc->iq_done = 0;
	xmpp_id_handler_add(sc->conn, sc_on_iq_reply, sc->iq_id, sc);
	xmpp_send(sc->conn, iq);
	xmpp_stanza_release(iq);
}

static void sc_send_presence(struct sc *sc, const char *to)
{
	xmpp_stanza_t *p = xmpp_presence_new(sc->ctx);

	if (to)
		xmpp_stanza_set_to(p, to);
	xmpp_send(sc->conn, p);
	xmpp_stanza_release(p);
}

/* Does an available presence from `from` (bare: any resource) exist? */
static int sc_presence_from(struct sc *sc, const char *from)
{
	size_t n = strlen(from);
	unsigned i, lim = sc->npresence < 16 ? sc->npresence : 16;

	for (i = 0; i < lim; i++) {
		const char *p = sc->presence_seen[i];

		if (strncmp(p, from, n) == 0 && (p[n] == '\0' || p[n] == '/'))
			return 1;
	}
	return 0;
}

/* Starts the next action or checks whether the current one has finished. */
static void sc_step(struct sc *sc)
{
	struct sc_act *a;
	xmpp_stanza_t *msg;

	while (!sc->failed && !sc->disconnected) {
		if (sc->waiting) {
			a = &sc->acts[sc->next - 1];
			switch (a->def->kind) {
			case SC_WAIT_MESSAGES:
				if (sc->msgs < strtoul(a->arg[0], NULL, 10))
					return;
				break;
			case SC_WAIT_PRESENCE:
				if (!sc_presence_from(sc, a->arg[0]))
					return;
				break;
			case SC_SLEEP:
				if (sc_now() < sc->sleep_until)
					return;
				break;
			case SC_WAIT_DISCONNECT:
				return;
			default:
				if (sc->iq_done == 0)
					return;
				if (sc->iq_done < 0) {
					sc_fail(sc, "iq", a->def->word);
					return;
				}
				break;
			}
			sc->waiting = 0;
		}
		if (sc->next == sc->nacts) {
			sc->done = 1;
			return;
		}
		a = &sc->acts[sc->next++];
		switch (a->def->kind) {
		case SC_SEND:
			msg = xmpp_message_new(sc->ctx, "chat", a->arg[0], NULL);
			xmpp_message_set_body(msg, a->arg[1]);
			xmpp_send(sc->conn, msg);
			xmpp_stanza_release(msg);
			break;
		case SC_PRESENCE:
			sc_send_presence(sc, NULL);
			break;
		case SC_PRESENCE_TO:
			sc_send_presence(sc, a->arg[0]);
			break;
		case SC_PING:
			sc_send_iq(sc, sc->domain, "ping", SC_NS_PING);
			sc->waiting = 1;
			break;
		case SC_PING_TO:
			sc_send_iq(sc, a->arg[0], "ping", SC_NS_PING);
			sc->waiting = 1;
			break;
		case SC_VERSION:
			sc_send_iq(sc, sc->domain, "query", SC_NS_VERSION);
			sc->waiting = 1;
			break;
		case SC_ROSTER:
			sc_send_iq(sc, NULL, "query", SC_NS_ROSTER);
			sc->waiting = 1;
			break;
		case SC_DISCO:
			sc_send_iq(sc, sc->domain, "query", SC_NS_DISCO);
			sc->waiting = 1;
			break;
		case SC_SLEEP:
			sc->sleep_until = sc_now() + strtod(a->arg[0], NULL) / 1000.0;
			sc->waiting = 1;
			break;
		case SC_WAIT_MESSAGES:
		case SC_WAIT_PRESENCE:
		case SC_WAIT_DISCONNECT:
			sc->waiting = 1;
			break;
		}
	}
}

static void sc_usage(void)
{
	fprintf(stderr, "usage: strophe_client --jid JID --password P --host H --port N\n"
			"       [--tls-mode require|disable|optional] [--cafile F | --trust]\n"
			"       [--mech M] [--resource R] [--timeout S] [--no-pong] [--verbose]\n"
			"       ACTION...\n"
			"actions: send TO BODY | wait-messages N | presence | presence-to TO |\n"
			"         wait-presence FROM | ping | ping-to JID | version | roster |\n"
			"         disco | sleep MS | wait-disconnect\n");
}

static int sc_parse_actions(struct sc *sc, int argc, char **argv)
{
	size_t i, j;
	int k = 0;

	sc->acts = calloc((size_t)argc + 1, sizeof(*sc->acts));
	if (!sc->acts)
		return -1;
	while (k < argc) {
		const struct sc_act_def *def = NULL;

		for (j = 0; j < sizeof(sc_act_defs) / sizeof(sc_act_defs[0]); j++)
			if (strcmp(argv[k], sc_act_defs[j].word) == 0)
				def = &sc_act_defs[j];
		if (!def) {
			fprintf(stderr, "strophe_client: unknown action %s\n", argv[k]);
			return -1;
		}
		if (k + def->nargs > argc - 1) {
			fprintf(stderr, "strophe_client: %s needs %d argument(s)\n", def->word,
				def->nargs);
			return -1;
		}
		i = sc->nacts++;
		sc->acts[i].def = def;
		for (j = 0; j < (size_t)def->nargs; j++)
			sc->acts[i].arg[j] = argv[k + 1 + (int)j];
		k += 1 + def->nargs;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sc sc = { 0 };
	const char *jid = NULL, *password = NULL, *host = "127.0.0.1", *cafile = NULL;
	const char *tls_mode = "require", *resource = NULL;
	unsigned long port = 5222;
	double timeout = 20.0, deadline, quit_deadline;
	char *fulljid = NULL, *domain = NULL, *at;
	long flags = 0;
	int trust = 0, i, rc = 1;
	xmpp_log_t log;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--trust") == 0) {
			trust = 1;
			continue;
		}
		if (strcmp(o, "--verbose") == 0) {
			sc.verbose = 1;
			continue;
		}
		if (strcmp(o, "--no-pong") == 0) {
			sc.no_pong = 1;
			continue;
		}
		if (!v) {
			sc_usage();
			return 2;
		}
		i++;
		if (strcmp(o, "--jid") == 0)
			jid = v;
		else if (strcmp(o, "--password") == 0)
			password = v;
		else if (strcmp(o, "--host") == 0)
			host = v;
		else if (strcmp(o, "--port") == 0)
			port = strtoul(v, NULL, 10);
		else if (strcmp(o, "--tls-mode") == 0)
			tls_mode = v;
		else if (strcmp(o, "--cafile") == 0)
			cafile = v;
		else if (strcmp(o, "--mech") == 0)
			sc.want_mech = v;
		else if (strcmp(o, "--resource") == 0)
			resource = v;
		else if (strcmp(o, "--timeout") == 0)
			timeout = strtod(v, NULL);
		else {
			sc_usage();
			return 2;
		}
	}
	if (!jid || !password || port == 0 || port > 65535) {
		sc_usage();
		return 2;
	}
	if (strcmp(tls_mode, "require") == 0)
		flags |= (long)XMPP_CONN_FLAG_MANDATORY_TLS;
	else if (strcmp(tls_mode, "disable") == 0)
		flags |= (long)XMPP_CONN_FLAG_DISABLE_TLS;
	else if (strcmp(tls_mode, "optional") != 0) {
		sc_usage();
		return 2;
	}
	if (trust)
		flags |= (long)XMPP_CONN_FLAG_TRUST_TLS;
	if (sc_parse_actions(&sc, argc - i, argv + i) < 0) {
		sc_usage();
		free(sc.acts);
		return 2;
	}
	/* "user@domain" or, for SASL ANONYMOUS, just "domain" */
	at = strchr(jid, '@');
	domain = strdup(at ? at + 1 : jid);
	if (!domain)
		goto out;
	if (strchr(domain, '/'))
		*strchr(domain, '/') = '\0';
	sc.domain = domain;
	if (resource) {
		size_t n = strlen(jid) + strlen(resource) + 2;

		fulljid = malloc(n);
		if (!fulljid)
			goto out;
		snprintf(fulljid, n, "%s/%s", jid, resource);
	}

	xmpp_initialize();
	log.handler = sc_log;
	log.userdata = &sc;
	sc.ctx = xmpp_ctx_new(NULL, &log);
	if (!sc.ctx)
		goto out_shutdown;
	sc.conn = xmpp_conn_new(sc.ctx);
	if (!sc.conn)
		goto out_ctx;
	xmpp_conn_set_flags(sc.conn, flags);
	xmpp_conn_set_jid(sc.conn, fulljid ? fulljid : jid);
	xmpp_conn_set_pass(sc.conn, password);
	if (cafile)
		xmpp_conn_set_cafile(sc.conn, cafile);
	if (xmpp_connect_client(sc.conn, host, (unsigned short)port, sc_conn_handler, &sc) !=
	    XMPP_EOK) {
		sc_fail(&sc, "connect", strerror(errno));
		goto out_conn;
	}

	deadline = sc_now() + timeout;
	while (!sc.done && !sc.failed && !sc.disconnected) {
		if (sc_now() > deadline) {
			sc_fail(&sc, "timeout",
				sc.connected && sc.next > 0 ? sc.acts[sc.next - 1].def->word
							    : "session");
			break;
		}
		xmpp_run_once(sc.ctx, 50);
		if (sc.connected)
			sc_step(&sc);
	}
	if (sc.disconnected) {
		int expected = sc.connected && sc.next > 0 && sc.waiting &&
			       sc.acts[sc.next - 1].def->kind == SC_WAIT_DISCONNECT;

		if (expected && sc.next == sc.nacts)
			sc.done = 1;
		else if (!sc.failed)
			sc_fail(&sc, "disconnected",
				sc.connected ? "during actions" : "before session");
	} else {
		/* A clean close: </stream:stream>, then wait (bounded) for the
		 * server's closing tag and the disconnect callback. */
		xmpp_disconnect(sc.conn);
		quit_deadline = sc_now() + 5.0;
		while (!sc.disconnected && sc_now() < quit_deadline)
			xmpp_run_once(sc.ctx, 50);
	}
	if (sc.done && !sc.failed) {
		sc_emit(sc_event("done"));
		rc = 0;
	}

out_conn:
	xmpp_conn_release(sc.conn);
out_ctx:
	xmpp_ctx_free(sc.ctx);
out_shutdown:
	xmpp_shutdown();
out:
	free(domain);
	free(fulljid);
	free(sc.acts);
	return rc;
}
