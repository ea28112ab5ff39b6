/* Unit tests for the delivery rules of server/router.c and the presence
 * rules of server/presence.c (RFC 6121 8.5 without rosters, docs/chatd.md
 * "Delivery rules"). Each session is a real struct conn whose socket is one
 * end of a socketpair; the test reads the other end to see what chatd
 * delivered where. No network, no stream parser: stanzas are built as trees
 * and handed to router_route() as session.c would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../server/config.h"
#include "../../server/conn.h"
#include "../../server/presence.h"
#include "../../server/router.h"
#include "../../server/session.h"
#include "../../server/srv.h"

#define D "example.test"

struct peer {
	struct conn *c;
	int fd;		/* the test's end of the socketpair */
	char buf[8192]; /* what was read so far */
	size_t len;
};

static struct srv srv; /* large (shared buffers): not on the stack */
static struct config cfg;
static uv_loop_t loop;

static int setup(void **state)
{
	(void)state;
	memset(&srv, 0, sizeof(srv));
	memset(&cfg, 0, sizeof(cfg));
	cfg.auth_any = 1;
	cfg.max_output = 1 << 20;
	assert_int_equal(uv_loop_init(&loop), 0);
	srv.loop = &loop;
	srv.cfg = &cfg;
	srv.domain = strdup(D);
	srv.router = router_new(&srv);
	if (srv.router)
		router_set_hooks(srv.router, &srv_router_hooks);
	assert_non_null(srv.router);
	assert_int_equal(uv_idle_init(&loop, &srv.pending_idle), 0);
	srv.pending_idle.data = &srv;
	return 0;
}

static void free_conn(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h; /* the handle is the first member */

	session_free(c);
	free(c);
}

static int teardown(void **state)
{
	(void)state;
	uv_close((uv_handle_t *)&srv.pending_idle, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	router_free(srv.router);
	free(srv.domain);
	return 0;
}

/* A bound session node@D/res; prio < -128 means "never sent presence". */
static struct peer *session(const char *node, const char *res, int prio)
{
	struct peer *p = calloc(1, sizeof(*p));
	struct conn *old;
	int sv[2];

	assert_non_null(p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	p->fd = sv[1];
	p->c = calloc(1, sizeof(*p->c));
	assert_non_null(p->c);
	assert_int_equal(uv_tcp_init(&loop, &p->c->tcp), 0);
	assert_int_equal(uv_tcp_open(&p->c->tcp, sv[0]), 0);
	p->c->srv = &srv;
	p->c->state = ST_ESTABLISHED;
	assert_int_equal(jid_set(&p->c->jid, node, D, res), 0);
	assert_int_equal(router_add(srv.router, p->c, &old), 0);
	assert_null(old);
	if (prio >= -128) {
		p->c->available = 1;
		p->c->priority = (int8_t)prio;
	}
	return p;
}

static void end_session(struct peer *p)
{
	router_remove(srv.router, p->c);
	uv_close((uv_handle_t *)&p->c->tcp, free_conn);
	close(p->fd);
	free(p);
}

/* Everything delivered to p since the last call, as a string. */
static const char *got(struct peer *p)
{
	ssize_t n;

	p->len = 0;
	while (p->len + 1 < sizeof(p->buf) &&
	       (n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len, MSG_DONTWAIT)) > 0)
		p->len += (size_t)n;
	p->buf[p->len] = '\0';
	return p->buf;
}

/* Routes a stanza from `from` as an established session would: 'from' is
 * stamped with its full JID. */
static void send_stanza(struct peer *from, const char *name, const char *to, const char *type,
			const char *id)
{
	struct xnode *st = xnode_new(name, NS_CLIENT);
	char full[256];

	assert_non_null(st);
	jid_format_full(&from->c->jid, full, sizeof(full));
	assert_int_equal(xnode_set_attr(st, "from", full), 0);
	if (to)
		assert_int_equal(xnode_set_attr(st, "to", to), 0);
	if (type)
		assert_int_equal(xnode_set_attr(st, "type", type), 0);
	if (id)
		assert_int_equal(xnode_set_attr(st, "id", id), 0);
	if (strcmp(name, "iq") == 0)
		assert_non_null(xnode_add_child(st, "ping", "urn:xmpp:ping"));
	else if (strcmp(name, "message") == 0)
		assert_non_null(xnode_add_text(xnode_add_child(st, "body", NULL), "hi", 2));
	router_route(&srv, from->c, st);
}

static int has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

static void test_bare_message_highest_priority(void **state)
{
	struct peer *a = session("alice", "a", 0);
	struct peer *b1 = session("bob", "low", 1);
	struct peer *b2 = session("bob", "high", 5);
	struct peer *b3 = session("bob", "quiet", -129); /* bound, no presence */

	(void)state;
	send_stanza(a, "message", "bob@" D, "chat", "m1");
	assert_true(has(got(b2), "id='m1'"));
	assert_string_equal(got(b1), "");
	assert_string_equal(got(b3), "");
	assert_string_equal(got(a), "");
	/* a tie: every resource of the highest priority */
	b1->c->priority = 5;
	send_stanza(a, "message", "bob@" D, NULL, "m2");
	assert_true(has(got(b1), "id='m2'"));
	assert_true(has(got(b2), "id='m2'"));
	/* headline: every available resource with a non-negative priority */
	b1->c->priority = 0;
	send_stanza(a, "message", "bob@" D, "headline", "m3");
	assert_true(has(got(b1), "id='m3'"));
	assert_true(has(got(b2), "id='m3'"));
	assert_string_equal(got(b3), "");
	/* groupchat to a user bounces */
	send_stanza(a, "message", "bob@" D, "groupchat", "m4");
	assert_true(has(got(a), "<service-unavailable"));
	assert_string_equal(got(b2), "");
	end_session(a);
	end_session(b1);
	end_session(b2);
	end_session(b3);
}

static void test_bare_message_nobody_available(void **state)
{
	struct peer *a = session("alice", "a", 0);
	struct peer *neg = session("bob", "neg", -1);

	(void)state;
	/* only a negative priority: bounced, not delivered (no offline store) */
	send_stanza(a, "message", "bob@" D, "chat", "n1");
	assert_string_equal(got(neg), "");
	const char *r = got(a);
	assert_true(has(r, "type='error'"));
	assert_true(has(r, "id='n1'"));
	assert_true(has(r, "<service-unavailable"));
	assert_true(has(r, "from='bob@" D "'"));
	/* headline and error to nobody: silently dropped */
	send_stanza(a, "message", "carol@" D, "headline", "n2");
	send_stanza(a, "message", "carol@" D, "error", "n3");
	assert_string_equal(got(a), "");
	/* a user who never logged in (with --auth-any every name exists) */
	send_stanza(a, "message", "carol@" D, "chat", "n4");
	assert_true(has(got(a), "<service-unavailable"));
	end_session(a);
	end_session(neg);
}

static void test_full_jid_rules(void **state)
{
	struct peer *a = session("alice", "a", 0);
	struct peer *b = session("bob", "b", 0);
	struct peer *q = session("bob", "quiet", -129);

	(void)state;
	/* a bound full JID gets everything, presence or not */
	send_stanza(a, "message", "bob@" D "/quiet", "chat", "f1");
	assert_true(has(got(q), "id='f1'"));
	send_stanza(a, "iq", "bob@" D "/quiet", "get", "f2");
	assert_true(has(got(q), "id='f2'"));
	/* no such resource: chat falls back to the bare JID rules */
	send_stanza(a, "message", "bob@" D "/gone", "chat", "f3");
	assert_true(has(got(b), "id='f3'"));
	assert_string_equal(got(q), "");
	/* groupchat bounces, headline is dropped, iq is service-unavailable */
	send_stanza(a, "message", "bob@" D "/gone", "groupchat", "f4");
	assert_true(has(got(a), "<service-unavailable"));
	send_stanza(a, "message", "bob@" D "/gone", "headline", "f5");
	assert_string_equal(got(a), "");
	assert_string_equal(got(b), "");
	send_stanza(a, "iq", "bob@" D "/gone", "get", "f6");
	const char *r = got(a);
	assert_true(has(r, "id='f6'"));
	assert_true(has(r, "<service-unavailable"));
	end_session(a);
	end_session(b);
	end_session(q);
}

static void test_domains_and_malformed(void **state)
{
	struct peer *a = session("alice", "a", 0);

	(void)state;
	send_stanza(a, "message", "bob@elsewhere.test", "chat", "d1");
	assert_true(has(got(a), "<remote-server-not-found"));
	send_stanza(a, "message", D, "chat", "d2");
	assert_true(has(got(a), "<service-unavailable"));
	send_stanza(a, "iq", D, "get", "d3");
	const char *r = got(a);
	assert_true(has(r, "type='result'"));
	assert_true(has(r, "id='d3'"));
	send_stanza(a, "message", "a@b@" D, "chat", "d4");
	assert_true(has(got(a), "<jid-malformed"));
	/* presence is never answered with an error */
	send_stanza(a, "presence", "bob@elsewhere.test", NULL, NULL);
	send_stanza(a, "presence", "@" D, NULL, NULL);
	assert_string_equal(got(a), "");
	end_session(a);
}

/* An iq result or error is never answered with an error (RFC 6120 8.2.3),
 * wherever it was addressed: it is dropped. */
static void test_iq_responses_never_answered(void **state)
{
	static const char *const to[] = { "bob@elsewhere.test", "a@b@" D, D "/res",
					  "bob@" D "/gone" };
	struct peer *a = session("alice", "a", 0);

	(void)state;
	for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
		send_stanza(a, "iq", to[i], "result", "r1");
		send_stanza(a, "iq", to[i], "error", "r2");
		assert_string_equal(got(a), "");
		/* a request to the same place is answered */
		send_stanza(a, "iq", to[i], "get", "r3");
		assert_true(has(got(a), "type='error'"));
	}
	end_session(a);
}

static void test_presence_rules(void **state)
{
	struct peer *a = session("alice", "a", 0);
	struct peer *b1 = session("bob", "one", 0);
	struct peer *b2 = session("bob", "two", -129);

	(void)state;
	/* presence to a bare JID: every available resource; probes: nothing */
	send_stanza(a, "presence", "bob@" D, NULL, NULL);
	assert_true(has(got(b1), "<presence"));
	assert_string_equal(got(b2), "");
	send_stanza(a, "presence", "bob@" D, "probe", NULL);
	assert_string_equal(got(b1), "");
	/* broadcast: b2 becomes available; b1 hears it, b2 hears itself and
	 * learns about b1 */
	send_stanza(b2, "presence", NULL, NULL, NULL);
	const char *r1 = got(b1);
	assert_true(has(r1, "from='bob@" D "/two'"));
	const char *r2 = got(b2);
	assert_true(has(r2, "from='bob@" D "/two'"));
	assert_true(has(r2, "from='bob@" D "/one'"));
	assert_string_equal(got(a), "");
	/* directed presence is remembered; when b1's session ends, alice and
	 * b2 get unavailable presence from it */
	send_stanza(b1, "presence", "alice@" D "/a", NULL, NULL);
	assert_true(has(got(a), "from='bob@" D "/one'"));
	presence_gone(b1->c);
	const char *ra = got(a);
	assert_true(has(ra, "type='unavailable'"));
	assert_true(has(ra, "from='bob@" D "/one'"));
	assert_true(has(got(b2), "type='unavailable'"));
	end_session(a);
	end_session(b1);
	end_session(b2);
}

/* Directed presence is remembered by the prepared JID: "Alice" and "alice"
 * are one target, and one unavailable presence ends it. */
static void test_directed_presence_prepared(void **state)
{
	struct peer *a = session("alice", "a", 0);
	struct peer *b = session("bob", "b", 0);

	(void)state;
	send_stanza(b, "presence", "Alice@" D "/a", NULL, NULL);
	send_stanza(b, "presence", "alice@" D "/a", NULL, NULL);
	assert_true(has(got(a), "from='bob@" D "/b'"));
	send_stanza(b, "presence", "alice@" D "/a", "unavailable", NULL);
	assert_true(has(got(a), "type='unavailable'"));
	presence_gone(b->c);
	assert_string_equal(got(a), "");
	end_session(a);
	end_session(b);
}

static void test_no_to(void **state)
{
	struct peer *a1 = session("alice", "one", 0);
	struct peer *a2 = session("alice", "two", 3);

	(void)state;
	/* a message without 'to' goes to the sender's own bare JID */
	send_stanza(a1, "message", NULL, "chat", "s1");
	assert_true(has(got(a2), "id='s1'"));
	assert_string_equal(got(a1), "");
	/* an iq without 'to' is the server's, on behalf of the account */
	send_stanza(a1, "iq", NULL, "get", "s2");
	assert_true(has(got(a1), "type='result'"));
	end_session(a1);
	end_session(a2);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_bare_message_highest_priority),
		T(test_bare_message_nobody_available),
		T(test_full_jid_rules),
		T(test_domains_and_malformed),
		T(test_iq_responses_never_answered),
		T(test_presence_rules),
		T(test_no_to),
		T(test_directed_presence_prepared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
