/*
 * Unit tests for server/session.c, the client stream state machine, driven
 * with bytes in over loopback TCP (chatd_fix.h) and chatd's output checked:
 * the stream header and its errors, the features before and after
 * authentication, what is refused before authentication and before
 * binding (with which stream error), the restart after SASL (also
 * pipelined and byte by byte), the stanza size limits, the failure limit,
 * STARTTLS without TLS, the client's own close, and 'from' checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "b64.h"
#include "chatd_fix.h"

#define SASL_NS "urn:ietf:params:xml:ns:xmpp-sasl"
#define STREAM_ERROR_END "</stream:error></stream:stream>"
#define OUR_HEADER_START                                             \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' id='"
#define OUR_HEADER_END "' from='" FIX_DOMAIN "' version='1.0' xml:lang='en'>"
#define PREAUTH_FEATURES                                                                        \
	"<stream:features><mechanisms xmlns='" SASL_NS "'><mechanism>SCRAM-SHA-256</mechanism>" \
	"<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>"           \
	"</stream:features>"
/* PLAIN for alice (any password with --auth-any): "\0alice\0pw". */
#define AUTH_ALICE "<auth xmlns='" SASL_NS "' mechanism='PLAIN'>AGFsaWNlAHB3</auth>"
#define BIND_R1                                                                  \
	"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" \
	"<resource>r1</resource></bind></iq>"
#define BIND_RESULT                        \
	"<iq type='result' id='b1'><bind " \
	"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@" FIX_DOMAIN "/r1</jid></bind></iq>"
#define SELF_MESSAGE \
	"<message to='alice@" FIX_DOMAIN "/r1' id='m1' type='chat'><body>hi</body></message>"

static const char *const auth_any[] = { "--auth-any", NULL };

static int teardown(void **state)
{
	fix_stop();
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* s starts with our stream header (a 16 hex digit id); returns what follows. */
static const char *after_header(const char *s)
{
	size_t n = strlen(OUR_HEADER_START);

	assert_memory_equal(s, OUR_HEADER_START, n);
	for (int i = 0; i < 16; i++)
		assert_non_null(strchr("0123456789abcdef", s[n + (size_t)i]));
	s += n + 16;
	assert_memory_equal(s, OUR_HEADER_END, strlen(OUR_HEADER_END));
	return s + strlen(OUR_HEADER_END);
}

/* The stream error that closes a stream: element, then <text/> if any. */
static void expect_stream_error(struct cli *cl, const char *cond, const char *text)
{
	char want[512];

	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	if (text)
		snprintf(want, sizeof(want),
			 "<stream:error><%s xmlns='" NS_STREAMS "'/><text xmlns='" NS_STREAMS
			 "'>%s</text>" STREAM_ERROR_END,
			 cond, text);
	else
		snprintf(want, sizeof(want), "<stream:error><%s xmlns='" NS_STREAMS "'/>", cond);
	const char *got = cli_take(cl);
	if (!strstr(got, want) || count_of(got, "<stream:error>") != 1 ||
	    !ends_with(got, STREAM_ERROR_END))
		fail_msg("want %s in %s", want, got);
}

/* Opens a stream and reads its features. */
static struct cli *negotiating(void)
{
	struct cli *cl = cli_open();

	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	cli_take(cl);
	return cl;
}

/* Authenticated and restarted: binding is next. */
static struct cli *binding(void)
{
	struct cli *cl = negotiating();

	cli_send(cl, AUTH_ALICE);
	assert_true(cli_wait(cl, "</success>"));
	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	cli_take(cl);
	assert_int_equal(cl->c->state, ST_BIND);
	return cl;
}

/* Bound as alice@example.test/r1. */
static struct cli *established(void)
{
	struct cli *cl = binding();

	cli_send(cl, BIND_R1);
	assert_true(cli_wait(cl, "</iq>"));
	assert_string_equal(cli_take(cl), BIND_RESULT);
	assert_int_equal(cl->c->state, ST_ESTABLISHED);
	return cl;
}

static void test_session_header_and_features(void **state)
{
	const char *const users_only[] = { "--allow-anonymous", NULL };
	struct cli *cl;

	fix_start(auth_any);
	cl = cli_open();
	assert_int_equal(cl->c->state, ST_HEADER);
	/* the header in pieces: nothing is answered before it is whole */
	cli_send(cl, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' ");
	fix_step(cl, 1);
	assert_int_equal(cl->len, 0);
	cli_send(
		cl,
		"xmlns:stream='http://etherx.jabber.org/streams' version='1.5' to='EXAMPLE.test'>");
	assert_true(cli_wait(cl, "</stream:features>"));
	/* 1.5 is answered with 1.0 (RFC 6120 4.7.5); the domain is compared prepared */
	assert_string_equal(after_header(cli_take(cl)), PREAUTH_FEATURES);
	assert_int_equal(cl->c->state, ST_NEGOTIATE);
	assert_true(cl->c->header_sent);
	cli_close(cl);
	fix_stop();

	/* only ANONYMOUS: no SCRAM or PLAIN without accounts */
	fix_start(users_only);
	cl = cli_open();
	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	assert_string_equal(after_header(cli_take(cl)),
			    "<stream:features><mechanisms xmlns='" SASL_NS
			    "'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>");
	cli_close(cl);
}

struct bad_header {
	const char *in;
	const char *cond;
	enum close_reason reason;
};

static void test_session_header_errors(void **state)
{
	static const struct bad_header cases[] = {
		{ "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
		  "streams' version='1.0'>",
		  "invalid-namespace", CLOSE_INVALID_NAMESPACE },
		{ "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
		  "invalid-namespace", CLOSE_INVALID_NAMESPACE },
		{ "<stream:stream xmlns='jabber:client' xmlns:stream='urn:not-streams' "
		  "version='1.0'>",
		  "invalid-namespace", CLOSE_INVALID_NAMESPACE },
		{ "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
		  "streams' to='other.test' version='1.0'>",
		  "host-unknown", CLOSE_HOST_UNKNOWN },
		{ "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
		  "streams'>",
		  "unsupported-version", CLOSE_UNSUPPORTED_VERSION },
		{ "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
		  "streams' version='2.0'>",
		  "unsupported-version", CLOSE_UNSUPPORTED_VERSION },
		{ "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
		  "streams' version='1.'>",
		  "unsupported-version", CLOSE_UNSUPPORTED_VERSION },
		{ "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns='jabber:client' "
		  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
		  "unsupported-encoding", CLOSE_BAD_FORMAT },
		{ "<!DOCTYPE stream><stream:stream xmlns='jabber:client' "
		  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
		  "restricted-xml", CLOSE_RESTRICTED_XML },
		{ "GET / HTTP/1.1\r\n\r\n", "not-well-formed", CLOSE_NOT_WELL_FORMED },
	};

	fix_start(auth_any);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli *cl = cli_open();
		uint64_t before = fix.srv.metrics.closed_total[cases[i].reason];

		cli_send(cl, cases[i].in);
		assert_true(cli_wait_eof(cl));
		/* our header first (the client must be able to parse the error) */
		const char *rest = after_header(cl->buf);
		char want[256];
		snprintf(want, sizeof(want), "<stream:error><%s xmlns='" NS_STREAMS "'/>",
			 cases[i].cond);
		if (strncmp(rest, want, strlen(want)) != 0)
			fail_msg("case %zu: want %s, got %s", i, want, rest);
		assert_true(ends_with(rest, STREAM_ERROR_END));
		assert_null(strstr(rest, "<stream:features>"));
		assert_int_equal(fix.srv.metrics.closed_total[cases[i].reason], before + 1);
		cli_close(cl);
	}
	assert_int_equal(fix_closed_total(), sizeof(cases) / sizeof(cases[0]));
}

struct bad_element {
	const char *in;
	const char *cond;
	const char *text;
};

/* Before authentication only negotiation is legal: stanzas are
 * not-authorized, anything else unsupported-stanza-type. */
static void test_session_preauth_refused(void **state)
{
	static const struct bad_element cases[] = {
		{ "<message to='bob@" FIX_DOMAIN "'><body>hi</body></message>", "not-authorized",
		  "authenticate first" },
		{ "<presence/>", "not-authorized", "authenticate first" },
		{ BIND_R1, "not-authorized", "authenticate first" },
		{ "<foo xmlns='urn:example'/>", "unsupported-stanza-type", "unexpected element" },
		/* the right names in the wrong namespaces */
		{ "<auth xmlns='jabber:client' mechanism='PLAIN'>AGFsaWNlAHB3</auth>",
		  "unsupported-stanza-type", "unexpected element" },
		{ "<message xmlns='jabber:server' to='bob@" FIX_DOMAIN "'/>",
		  "unsupported-stanza-type", "unexpected element" },
		{ "<starttls xmlns='" SASL_NS "'/>", "unsupported-stanza-type",
		  "unexpected element" },
		{ "<stream:stream xmlns='jabber:client' "
		  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
		  "unsupported-stanza-type", NULL },
		{ "hello", "bad-format", NULL },
	};

	fix_start(auth_any);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli *cl = negotiating();

		cli_send(cl, cases[i].in);
		expect_stream_error(cl, cases[i].cond, cases[i].text);
		assert_int_equal(fix.srv.metrics.stanzas_total, 0);
		assert_int_equal(fix.srv.metrics.logins_total, 0);
		cli_close(cl);
	}
}

/* Each step of a login, and the state after it. */
static void test_session_login_steps(void **state)
{
	struct cli *cl;

	fix_start(auth_any);
	cl = negotiating();
	assert_false(cl->c->authenticated);
	cli_send(cl, AUTH_ALICE);
	assert_true(cli_wait(cl, "</success>"));
	assert_string_equal(cli_take(cl), "<success xmlns='" SASL_NS "'></success>");
	assert_int_equal(cl->c->state, ST_RESTART);
	assert_true(cl->c->authenticated);
	assert_int_equal(fix.srv.metrics.logins_total, 1);
	/* the restart: a new header, answered with a new id and the bind features */
	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	assert_string_equal(after_header(cli_take(cl)),
			    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
			    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/>"
			    "</session><sm xmlns='urn:xmpp:sm:3'/></stream:features>");
	assert_int_equal(cl->c->state, ST_BIND);
	cli_send(cl, BIND_R1);
	assert_true(cli_wait(cl, "</iq>"));
	assert_string_equal(cli_take(cl), BIND_RESULT);
	assert_int_equal(cl->c->state, ST_ESTABLISHED);
	assert_int_equal(fix.srv.metrics.sessions, 1);
	/* established: stanzas are stamped with the full JID and routed */
	cli_send(cl, SELF_MESSAGE);
	assert_true(cli_wait(cl, "</message>"));
	assert_non_null(strstr(cli_take(cl), "from='alice@" FIX_DOMAIN "/r1'"));
	cli_send(cl,
		 "<iq type='get' id='p1' to='" FIX_DOMAIN "'><ping xmlns='urn:xmpp:ping'/></iq>");
	assert_true(cli_wait(cl, "id='p1'"));
	assert_non_null(strstr(cli_take(cl), "type='result'"));
	assert_int_equal(fix.srv.metrics.stanzas_total, 2);
	/* the client's </stream:stream> is answered in kind */
	cli_send(cl, "</stream:stream>");
	assert_true(cli_wait_eof(cl));
	assert_true(ends_with(cli_take(cl), "</stream:stream>"));
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CLIENT], 1);
	assert_int_equal(fix.srv.metrics.sessions, 0);
	cli_close(cl);
}

/* The whole login in one write (everything after <auth/> waits for the
 * parser's reset at the restart), and byte by byte: the same answers. */
static void test_session_login_pipelined_and_byte_by_byte(void **state)
{
	static const char login[] = FIX_HEADER AUTH_ALICE FIX_HEADER BIND_R1 SELF_MESSAGE;
	const char *got;
	struct cli *cl;

	fix_start(auth_any);
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		cl = cli_open();
		if (bytewise) {
			for (size_t i = 0; i < sizeof(login) - 1; i++) {
				cli_send_n(cl, login + i, 1);
				fix_step(cl, 0);
			}
		} else {
			cli_send(cl, login);
		}
		assert_true(cli_wait(cl, "</message>"));
		got = after_header(cli_take(cl));
		assert_memory_equal(
			got, PREAUTH_FEATURES "<success xmlns='" SASL_NS "'></success>",
			strlen(PREAUTH_FEATURES "<success xmlns='" SASL_NS "'></success>"));
		got = strstr(got, "</success>") + strlen("</success>");
		got = after_header(got);
		got = strstr(got, "</stream:features>");
		assert_non_null(got);
		got += strlen("</stream:features>");
		assert_memory_equal(got, BIND_RESULT, strlen(BIND_RESULT));
		got += strlen(BIND_RESULT);
		assert_non_null(strstr(got, "<body>hi</body>"));
		assert_int_equal(cl->c->state, ST_ESTABLISHED);
		cli_close(cl);
	}
	assert_int_equal(fix.srv.metrics.logins_total, 2);
	assert_int_equal(fix_closed_total(), 2);
}

/* Authenticated, not bound: only binding (and XEP-0198's resume). */
static void test_session_bind_required(void **state)
{
	static const struct bad_element cases[] = {
		{ SELF_MESSAGE, "not-authorized", "bind a resource first" },
		{ "<iq type='get' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
		  "not-authorized", "bind a resource first" },
		{ "<foo xmlns='urn:example'/>", "unsupported-stanza-type", "unexpected element" },
		{ AUTH_ALICE, "unsupported-stanza-type", "unexpected element" },
	};

	fix_start(auth_any);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli *cl = binding();

		cli_send(cl, cases[i].in);
		expect_stream_error(cl, cases[i].cond, cases[i].text);
		assert_int_equal(fix.srv.metrics.sessions, 0);
		cli_close(cl);
	}
	assert_int_equal(fix.srv.metrics.stanzas_total, 0);
}

/* An established session may name itself in 'from' (bare or full), nobody
 * else; a non-stanza is refused. */
static void test_session_established_checks(void **state)
{
	static const struct bad_element cases[] = {
		{ "<message from='bob@" FIX_DOMAIN "' to='alice@" FIX_DOMAIN
		  "/r1'><body>x</body></message>",
		  "invalid-from", "from does not match the session" },
		{ "<message from='alice@" FIX_DOMAIN "/r2' to='alice@" FIX_DOMAIN
		  "/r1'><body>x</body></message>",
		  "invalid-from", "from does not match the session" },
		{ "<foo xmlns='urn:example'/>", "unsupported-stanza-type", "not a stanza" },
		{ "<message xmlns='jabber:server' to='alice@" FIX_DOMAIN "/r1'/>",
		  "unsupported-stanza-type", "not a stanza" },
	};
	struct cli *cl;

	fix_start(auth_any);
	cl = established();
	cli_send(cl, "<message from='alice@" FIX_DOMAIN "' to='alice@" FIX_DOMAIN
		     "/r1' id='own'><body>x</body></message>");
	assert_true(cli_wait(cl, "</message>"));
	assert_non_null(strstr(cli_take(cl), "from='alice@" FIX_DOMAIN "/r1'"));
	cli_close(cl);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cl = established();
		cli_send(cl, cases[i].in);
		expect_stream_error(cl, cases[i].cond, cases[i].text);
		cli_close(cl);
	}
}

static char big[24576];

/* A stanza of n bytes: <message ...><body>xxx</body></message>. */
static const char *message_of(size_t n)
{
	static const char head[] = "<message to='alice@" FIX_DOMAIN "/r1'><body>";
	static const char tail[] = "</body></message>";

	assert_true(n < sizeof(big) && n > sizeof(head) + sizeof(tail));
	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, 'x', n - (sizeof(head) - 1) - (sizeof(tail) - 1));
	memcpy(big + n - (sizeof(tail) - 1), tail, sizeof(tail));
	assert_int_equal(strlen(big), n);
	return big;
}

/* 8 KiB before authentication whatever --max-stanza says, --max-stanza
 * after. */
static void test_session_stanza_size_limits(void **state)
{
	const char *const flags[] = { "--auth-any", "--max-stanza", "16384", NULL };
	struct cli *cl;

	fix_start(flags);
	cl = negotiating();
	snprintf(big, sizeof(big), "<auth xmlns='" SASL_NS "' mechanism='PLAIN'>");
	memset(big + strlen(big), 'A', 9000);
	cli_send(cl, big);
	expect_stream_error(cl, "policy-violation", NULL);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 1);
	cli_close(cl);

	cl = established();
	cli_send(cl, message_of(12000));
	assert_true(cli_wait(cl, "</message>"));
	const char *body = strstr(cli_take(cl), "<body>");
	assert_non_null(body);
	assert_int_equal(strspn(body + 6, "x"), strspn(strstr(big, "<body>") + 6, "x"));
	cli_send(cl, message_of(17000));
	expect_stream_error(cl, "policy-violation", NULL);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 2);
	cli_close(cl);
}

/* Three failed exchanges on one stream close it. */
static void test_session_auth_failure_limit(void **state)
{
	struct cli *cl;

	fix_start(auth_any);
	cl = negotiating();
	cli_send(cl, "<auth xmlns='" SASL_NS "' mechanism='PLAIN'>!!!!</auth>");
	assert_true(cli_wait(cl, "</failure>"));
	assert_string_equal(cli_take(cl),
			    "<failure xmlns='" SASL_NS "'><incorrect-encoding/></failure>");
	assert_int_equal(cl->c->state, ST_NEGOTIATE);
	cli_send(cl, "<auth xmlns='" SASL_NS "' mechanism='X-NONE'/>");
	assert_true(cli_wait(cl, "</failure>"));
	assert_string_equal(cli_take(cl),
			    "<failure xmlns='" SASL_NS "'><invalid-mechanism/></failure>");
	/* an exchange left open, then aborted: the third failure */
	cli_send(cl, "<auth xmlns='" SASL_NS "' mechanism='PLAIN'/>");
	assert_true(cli_wait(cl, "</challenge>"));
	assert_int_equal(cl->c->state, ST_SASL);
	cli_take(cl);
	cli_send(cl, "<abort xmlns='" SASL_NS "'/>");
	assert_true(cli_wait_eof(cl));
	const char *got = cli_take(cl);
	assert_non_null(strstr(got, "<failure xmlns='" SASL_NS "'><aborted/></failure>"
				    "<stream:error><policy-violation xmlns='" NS_STREAMS
				    "'/><text xmlns='" NS_STREAMS
				    "'>too many authentication failures</text>" STREAM_ERROR_END));
	assert_int_equal(fix.srv.metrics.auth_failures_total, 3);
	assert_int_equal(fix.srv.metrics.logins_total, 0);
	cli_close(cl);
}

/* STARTTLS where there is no TLS: the failure ends the stream, no stream
 * error and no second header. */
static void test_session_starttls_without_tls(void **state)
{
	struct cli *cl;

	fix_start(auth_any);
	cl = negotiating();
	cli_send(cl, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
	assert_true(cli_wait_eof(cl));
	assert_string_equal(cli_take(cl),
			    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_TLS_ERROR], 1);
	assert_int_equal(fix_closed_total(), 1);
	cli_close(cl);
	/* once SASL has begun, STARTTLS is out of place */
	cl = negotiating();
	cli_send(cl, "<auth xmlns='" SASL_NS "' mechanism='PLAIN'/>");
	assert_true(cli_wait(cl, "</challenge>"));
	cli_take(cl);
	assert_int_equal(cl->c->state, ST_SASL);
	cli_send(cl, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
	expect_stream_error(cl, "unsupported-stanza-type", "unexpected element");
	cli_close(cl);
}

/* After <success/> the old stream is over: a stanza instead of the new
 * header is not taken as part of it. */
static void test_session_restart_requires_header(void **state)
{
	struct cli *cl;

	fix_start(auth_any);
	cl = negotiating();
	cli_send(cl, AUTH_ALICE SELF_MESSAGE);
	assert_true(cli_wait_eof(cl));
	const char *got = cli_take(cl);
	assert_non_null(strstr(got, "<success xmlns='" SASL_NS "'></success>"));
	/* a second header of ours, then the error about the root element */
	got = after_header(strstr(got, "</success>") + strlen("</success>"));
	assert_string_equal(got,
			    "<stream:error><invalid-namespace xmlns='" NS_STREAMS
			    "'/><text xmlns='" NS_STREAMS
			    "'>stream root not in the streams namespace</text>" STREAM_ERROR_END);
	assert_null(strstr(got, "<body>"));
	assert_int_equal(fix.srv.metrics.stanzas_total, 0);
	assert_int_equal(fix.srv.metrics.sessions, 0);
	cli_close(cl);
}

/* Blocked by failed-login throttling: no answer, nothing behind it
 * evaluated, reads held, then policy-violation. */
static void test_session_blocked_login_held(void **state)
{
	const char *const flags[] = { "--auth-any", "--auth-fail-user-max",
				      "1",	    "--auth-fail-ip-max",
				      "0",	    NULL };
	struct cli *cl;

	fix_start(flags);
	cl = negotiating();
	/* "bob@example.test\0alice\0pw": alice may not act as bob */
	cli_send(cl,
		 "<auth xmlns='" SASL_NS "' mechanism='PLAIN'>Ym9iQGV4YW1wbGUudGVzdABhbGljZQBwdw=="
		 "</auth>");
	assert_true(cli_wait(cl, "</failure>"));
	assert_string_equal(cli_take(cl),
			    "<failure xmlns='" SASL_NS "'><invalid-authzid/></failure>");
	cli_send(cl, AUTH_ALICE "<auth xmlns='" SASL_NS "' mechanism='PLAIN'>AGJvYgBwdw==</auth>");
	assert_true(cli_wait_eof(cl));
	assert_string_equal(cli_take(cl),
			    "<stream:error><policy-violation xmlns='" NS_STREAMS
			    "'/><text xmlns='" NS_STREAMS
			    "'>too many failed logins; try again later</text>" STREAM_ERROR_END);
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 1);
	assert_int_equal(fix.srv.metrics.auth_failures_total, 1);
	assert_int_equal(fix.srv.metrics.logins_total, 0);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 1);
	cli_close(cl);
}

/* A stream not bound in --auth-timeout is closed, wherever it stopped. */
static void test_session_auth_timeout(void **state)
{
	const char *const flags[] = { "--auth-any", "--auth-timeout", "1", NULL };
	struct cli *a, *b;

	fix_start(flags);
	a = negotiating();
	b = binding();
	assert_true(cli_wait_eof(a));
	assert_string_equal(cli_take(a),
			    "<stream:error><connection-timeout xmlns='" NS_STREAMS
			    "'/><text xmlns='" NS_STREAMS
			    "'>no session established in time</text>" STREAM_ERROR_END);
	assert_true(cli_wait_eof(b));
	assert_non_null(strstr(cli_take(b), "<connection-timeout "));
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CONNECTION_TIMEOUT], 2);
	cli_close(a);
	cli_close(b);
}

/* ------------------------------------------------------------ STARTTLS */

#define TLS_NS "urn:ietf:params:xml:ns:xmpp-tls"

/* With --require-tls: only STARTTLS is offered, SASL is refused; after
 * <proceed/> the plaintext that followed <starttls/> is discarded (RFC 6120
 * 5.4.3.3), and the stream restarted over TLS offers SASL and no STARTTLS. */
static void test_session_starttls(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[128], cert[160], key[160];
	struct tcli tc = { 0 };

	snprintf(dir, sizeof(dir), "%s/test_session-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	assert_int_equal(fix_make_cert(cert, key), 0);
	const char *const flags[] = { "--auth-any", "--tls-cert",    cert, "--tls-key",
				      key,	    "--require-tls", NULL };
	fix_start(flags);
	unlink(cert);
	unlink(key);
	rmdir(dir);

	tc.cl = cli_open();
	cli_send(tc.cl, FIX_HEADER);
	assert_true(cli_wait(tc.cl, "</stream:features>"));
	assert_string_equal(after_header(cli_take(tc.cl)),
			    "<stream:features><starttls xmlns='" TLS_NS
			    "'><required/></starttls></stream:features>");
	cli_send(tc.cl, AUTH_ALICE);
	assert_true(cli_wait(tc.cl, "</failure>"));
	assert_string_equal(cli_take(tc.cl),
			    "<failure xmlns='" SASL_NS "'><encryption-required/></failure>");
	/* plaintext injected behind <starttls/>: must not survive the swap */
	cli_send(tc.cl, "<starttls xmlns='" TLS_NS "'/>" AUTH_ALICE);
	assert_true(cli_wait(tc.cl, "<proceed xmlns='" TLS_NS "'/>"));
	assert_string_equal(cli_take(tc.cl), "<proceed xmlns='" TLS_NS "'/>");
	assert_non_null(tc.cl->c->tls);
	assert_int_equal(tc.cl->c->state, ST_HEADER);
	assert_false(tc.cl->c->authenticated);

	tcli_start(&tc);
	assert_int_equal(tc.len, 0);
	assert_false(tc.cl->c->authenticated);
	assert_int_equal(fix.srv.metrics.logins_total, 0);

	tls_send(&tc, FIX_HEADER);
	assert_true(tls_wait(&tc, "</stream:features>"));
	assert_string_equal(after_header(tls_take(&tc)), PREAUTH_FEATURES);
	assert_true(tc.cl->c->tls_up);
	assert_int_equal(tc.cl->c->state, ST_NEGOTIATE);
	tls_send(&tc, AUTH_ALICE);
	assert_true(tls_wait(&tc, "</success>"));
	assert_string_equal(tls_take(&tc), "<success xmlns='" SASL_NS "'></success>");
	tls_send(&tc, FIX_HEADER BIND_R1 SELF_MESSAGE);
	assert_true(tls_wait(&tc, "</message>"));
	const char *got = after_header(tls_take(&tc));
	assert_non_null(strstr(got, BIND_RESULT));
	assert_non_null(strstr(got, "<body>hi</body>"));
	assert_int_equal(fix.srv.metrics.logins_total, 1);
	tls_send(&tc, "</stream:stream>");
	assert_true(tls_wait(&tc, "</stream:stream>"));
	tlsbio_free(tc.t);
	cli_close(tc.cl);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CLIENT], 1);
}

/* The client's stream error ends the stream: chatd closes its side with
 * its closing tag and no error of its own, in every state after the header. */
static void test_session_client_stream_error(void **state)
{
	static const char err[] =
		"<stream:error><not-well-formed xmlns='" NS_STREAMS "'/></stream:error>";
	struct cli *cl;

	fix_start(auth_any);
	for (int step = 0; step < 3; step++) {
		cl = step == 0 ? negotiating() : step == 1 ? binding() : established();
		cli_send(cl, err);
		assert_true(cli_wait_eof(cl));
		assert_false(cl->reset);
		const char *got = cli_take(cl);
		if (strcmp(got, "</stream:stream>") != 0)
			fail_msg("step %d: want only the closing tag, got %s", step, got);
		cli_close(cl);
	}
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CLIENT], 3);
	assert_int_equal(fix.srv.metrics.sessions, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_session_header_and_features, teardown),
		cmocka_unit_test_teardown(test_session_header_errors, teardown),
		cmocka_unit_test_teardown(test_session_preauth_refused, teardown),
		cmocka_unit_test_teardown(test_session_login_steps, teardown),
		cmocka_unit_test_teardown(test_session_login_pipelined_and_byte_by_byte, teardown),
		cmocka_unit_test_teardown(test_session_bind_required, teardown),
		cmocka_unit_test_teardown(test_session_established_checks, teardown),
		cmocka_unit_test_teardown(test_session_stanza_size_limits, teardown),
		cmocka_unit_test_teardown(test_session_auth_failure_limit, teardown),
		cmocka_unit_test_teardown(test_session_starttls_without_tls, teardown),
		cmocka_unit_test_teardown(test_session_restart_requires_header, teardown),
		cmocka_unit_test_teardown(test_session_blocked_login_held, teardown),
		cmocka_unit_test_teardown(test_session_auth_timeout, teardown),
		cmocka_unit_test_teardown(test_session_starttls, teardown),
		cmocka_unit_test_teardown(test_session_client_stream_error, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
