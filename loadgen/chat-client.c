/*
 * chat-client: a small interactive XMPP client for workshops, built on
 * libstrophe (an XMPP implementation nobody here wrote). It logs in, shows
 * the server version and instance it landed on (XEP-0092), prints incoming
 * messages and sends what you type:
 *
 *   /msg USER TEXT   send TEXT to USER (USER@DOMAIN when no '@' is given)
 *   /version         ask the server's version and instance again
 *   /quit            log out cleanly
 *
 * Any other line goes to the last user you wrote to or heard from.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>
#include <unistd.h>

#include "addr.h"
#include "xmppns.h"

struct cc {
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;
	const char *domain;
	char last_peer[512];
	int connected; /* 1 once the session is up */
	int done;      /* 1 when the connection ended */
	int exit_code;
	int password_defaulted; /* no --password nor CHAT_PASSWORD: the user name */
	int tcp_up;		/* the TCP connection was established once */
	char target[300];	/* HOST:PORT tried, for messages */
};

static volatile sig_atomic_t cc_interrupted;

static void cc_on_sigint(int sig)
{
	(void)sig;
	cc_interrupted = 1;
}

static void cc_usage(FILE *f)
{
	fputs("usage: chat-client --jid USER@DOMAIN [--password P] [--server HOST:PORT]\n"
	      "                   [--no-tls] [--verbose]\n"
	      "Interactive XMPP client. Commands: /msg USER TEXT, /version, /quit.\n"
	      "The password is read from CHAT_PASSWORD when --password is not given;\n"
	      "without either it is the user name (the demo convention of chatd --auth-any).\n",
	      f);
}

static void cc_send_version_query(struct cc *cc)
{
	xmpp_stanza_t *iq = xmpp_iq_new(cc->ctx, "get", "cc-version");
	xmpp_stanza_t *q = xmpp_stanza_new(cc->ctx);

	xmpp_stanza_set_to(iq, cc->domain);
	xmpp_stanza_set_name(q, "query");
	xmpp_stanza_set_ns(q, NS_VERSION);
	xmpp_stanza_add_child(iq, q);
	xmpp_stanza_release(q);
	xmpp_send(cc->conn, iq);
	xmpp_stanza_release(iq);
}

static char *cc_child_text(xmpp_stanza_t *parent, const char *name)
{
	xmpp_stanza_t *c = parent ? xmpp_stanza_get_child_by_name(parent, name) : NULL;

	return c ? xmpp_stanza_get_text(c) : NULL;
}

static int cc_on_version(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct cc *cc = ud;
	xmpp_stanza_t *q = xmpp_stanza_get_child_by_ns(st, NS_VERSION);
	char *name = cc_child_text(q, "name"), *ver = cc_child_text(q, "version");
	char *os = cc_child_text(q, "os");
	const char *inst = os ? strstr(os, "instance=") : NULL;

	(void)conn;
	if (!q || strcmp(xmpp_stanza_get_type(st) ? xmpp_stanza_get_type(st) : "", "result"))
		printf("* the server did not tell its version\n");
	else
		printf("* server %s version %s instance %s\n", name ? name : "?", ver ? ver : "?",
		       inst ? inst + 9 : (os ? os : "?"));
	fflush(stdout);
	xmpp_free(cc->ctx, name);
	xmpp_free(cc->ctx, ver);
	xmpp_free(cc->ctx, os);
	return 0; /* one-shot: remove */
}

static int cc_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct cc *cc = ud;
	const char *from = xmpp_stanza_get_from(st), *type = xmpp_stanza_get_type(st);
	char *body = cc_child_text(st, "body");

	(void)conn;
	if (type && strcmp(type, "error") == 0) {
		xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error");
		xmpp_stanza_t *cond = e ? xmpp_stanza_get_children(e) : NULL;
		printf("! message to %s bounced: %s\n", from ? from : "?",
		       cond && xmpp_stanza_get_name(cond) ? xmpp_stanza_get_name(cond) : "error");
	} else if (body) {
		char *bare = from ? xmpp_jid_bare(cc->ctx, from) : NULL;
		printf("<%s> %s\n", bare ? bare : "?", body);
		if (bare) {
			snprintf(cc->last_peer, sizeof(cc->last_peer), "%s", bare);
			xmpp_free(cc->ctx, bare);
		}
	}
	fflush(stdout);
	xmpp_free(cc->ctx, body);
	return 1;
}

static int cc_on_ping(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct cc *cc = ud;
	xmpp_stanza_t *res = xmpp_iq_new(cc->ctx, "result", xmpp_stanza_get_id(st));

	if (xmpp_stanza_get_from(st))
		xmpp_stanza_set_to(res, xmpp_stanza_get_from(st));
	xmpp_send(conn, res);
	xmpp_stanza_release(res);
	return 1;
}

static void cc_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
		       xmpp_stream_error_t *serr, void *ud)
{
	struct cc *cc = ud;

	if (ev == XMPP_CONN_CONNECT) {
		xmpp_stanza_t *pres = xmpp_presence_new(cc->ctx);
		cc->connected = 1;
		printf("* logged in as %s%s\n", xmpp_conn_get_bound_jid(conn),
		       xmpp_conn_is_secured(conn) ? " (TLS)" : "");
		xmpp_handler_add(conn, cc_on_message, NULL, "message", NULL, cc);
		xmpp_handler_add(conn, cc_on_ping, NS_PING, "iq", "get", cc);
		xmpp_id_handler_add(conn, cc_on_version, "cc-version", cc);
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
		cc_send_version_query(cc);
		fflush(stdout);
		return;
	}
	if (serr && serr->type != XMPP_SE_UNDEFINED_CONDITION)
		printf("* the server closed the stream: %s%s%s\n",
		       serr->stanza && xmpp_stanza_get_children(serr->stanza)
			       ? xmpp_stanza_get_name(xmpp_stanza_get_children(serr->stanza))
			       : "error",
		       serr->text ? ": " : "", serr->text ? serr->text : "");
	else if (ev == XMPP_CONN_FAIL || !cc->tcp_up)
		/* The TCP connection itself failed: nothing was asked of the
		 * server, so no word about passwords. */
		printf("* could not connect to %s: %s\n", cc->target,
		       error ? strerror(error) : "connection refused");
	else if (!cc->connected && error)
		printf("* could not log in: %s\n", strerror(error));
	else if (!cc->connected)
		printf("* could not log in: authentication failed (wrong user or password?%s)\n",
		       cc->password_defaulted
			       ? " without --password the password is the user name, "
				 "as chatd --auth-any expects"
			       : "");
	else
		printf("* disconnected%s%s\n", error ? ": " : "", error ? strerror(error) : "");
	fflush(stdout);
	if (!cc->connected || error)
		cc->exit_code = 1;
	cc->done = 1;
	xmpp_stop(cc->ctx);
}

static void cc_send_message(struct cc *cc, const char *to, const char *text)
{
	char jid[512];
	xmpp_stanza_t *m;

	if (strchr(to, '@'))
		snprintf(jid, sizeof(jid), "%s", to);
	else
		snprintf(jid, sizeof(jid), "%s@%s", to, cc->domain);
	m = xmpp_message_new(cc->ctx, "chat", jid, NULL);
	xmpp_message_set_body(m, text);
	xmpp_send(cc->conn, m);
	xmpp_stanza_release(m);
	snprintf(cc->last_peer, sizeof(cc->last_peer), "%s", jid);
}

/* One line typed by the user. Returns 1 on /quit. */
static int cc_command(struct cc *cc, char *line)
{
	line[strcspn(line, "\r\n")] = '\0';
	if (!*line)
		return 0;
	if (strcmp(line, "/quit") == 0)
		return 1;
	if (strcmp(line, "/version") == 0) {
		xmpp_id_handler_add(cc->conn, cc_on_version, "cc-version", cc);
		cc_send_version_query(cc);
		return 0;
	}
	if (strncmp(line, "/msg ", 5) == 0) {
		char *to = line + 5, *text = strchr(to, ' ');
		if (!text || !text[1]) {
			printf("* usage: /msg USER TEXT\n");
			return 0;
		}
		*text++ = '\0';
		cc_send_message(cc, to, text);
		return 0;
	}
	if (line[0] == '/') {
		printf("* commands: /msg USER TEXT, /version, /quit\n");
		return 0;
	}
	if (!cc->last_peer[0]) {
		printf("* nobody to talk to yet: /msg USER TEXT\n");
		return 0;
	}
	cc_send_message(cc, cc->last_peer, line);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "jid", required_argument, NULL, 'j' },
		{ "password", required_argument, NULL, 'p' },
		{ "server", required_argument, NULL, 's' },
		{ "no-tls", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cc cc;
	const char *jid = NULL, *password = getenv("CHAT_PASSWORD"), *server = NULL;
	char user[256];
	char host[256] = "";
	unsigned short port = 0;
	long flags = XMPP_CONN_FLAG_TRUST_TLS;
	int verbose = 0, c, stdin_open = 1;
	xmpp_log_t *log;
	char *at;

	memset(&cc, 0, sizeof(cc));
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			jid = optarg;
			break;
		case 'p':
			password = optarg;
			break;
		case 's':
			server = optarg;
			break;
		case 'n':
			flags = XMPP_CONN_FLAG_DISABLE_TLS;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			cc_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "chat-client: unknown option %s\n", argv[optind - 1]);
			cc_usage(stderr);
			return 2;
		}
	}
	if (!jid || !(at = strchr(jid, '@')) || at == jid || !at[1]) {
		fprintf(stderr, "chat-client: --jid USER@DOMAIN is required\n");
		return 2;
	}
	if (server) {
		struct addr a;

		if (addr_parse(server, ADDR_NAME, 0, &a) < 0 || strlen(a.host) >= sizeof(host)) {
			fprintf(stderr, "chat-client: --server %s: expected HOST:PORT\n", server);
			return 2;
		}
		snprintf(host, sizeof(host), "%s", a.host);
		port = (unsigned short)a.port;
	}
	cc.domain = at + 1;
	signal(SIGINT, cc_on_sigint);
	signal(SIGPIPE, SIG_IGN);
	/* poll() sees the descriptor, not stdio's buffer: unbuffered, a line
	 * read never leaves the next one hidden in the buffer. */
	setvbuf(stdin, NULL, _IONBF, 0);
	xmpp_initialize();
	log = verbose ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL;
	cc.ctx = xmpp_ctx_new(NULL, log);
	cc.conn = xmpp_conn_new(cc.ctx);
	xmpp_conn_set_flags(cc.conn, flags);
	xmpp_conn_set_jid(cc.conn, jid);
	if (!password) {
		/* The demo convention (chatd --auth-any): a SCRAM login's
		 * password is the user name. */
		snprintf(user, sizeof(user), "%.*s", (int)(at - jid), jid);
		password = user;
		cc.password_defaulted = 1;
	}
	xmpp_conn_set_pass(cc.conn, password);
	snprintf(cc.target, sizeof(cc.target), "%s:%u", host[0] ? host : cc.domain,
		 port ? port : 5222);
	if (xmpp_connect_client(cc.conn, host[0] ? host : NULL, port, cc_on_conn, &cc) !=
	    XMPP_EOK) {
		fprintf(stderr, "chat-client: cannot start connecting\n");
		cc.exit_code = 1;
		goto out;
	}
	printf("* connecting as %s\n", jid);
	fflush(stdout);
	while (!cc.done) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		if (cc_interrupted) {
			cc_interrupted = 0;
			xmpp_disconnect(cc.conn);
		}
		xmpp_run_once(cc.ctx, 50);
		/* libstrophe tells a refused connection apart from a refused
		 * login by nothing but this state, seen between two steps. */
		if (!cc.done && xmpp_conn_is_connected(cc.conn))
			cc.tcp_up = 1;
		if (!stdin_open || !cc.connected)
			continue;
		if (poll(&p, 1, 0) > 0) {
			char line[2048];
			if (!fgets(line, sizeof(line), stdin)) {
				/* End of input: leave the way /quit does. */
				stdin_open = 0;
				xmpp_disconnect(cc.conn);
				continue;
			}
			if (cc_command(&cc, line))
				xmpp_disconnect(cc.conn);
			fflush(stdout);
		}
	}
out:
	xmpp_conn_release(cc.conn);
	xmpp_ctx_free(cc.ctx);
	xmpp_shutdown();
	return cc.exit_code;
}
