/*
 * Unit tests for common/xstream.c: framing, namespaces, every error code,
 * stop/restart, hibernation. Each stream is fed whole, byte by byte and in
 * random splits (fixed seed), with and without xstream_compact() between
 * pieces, and must produce the same events every time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xml.h"
#include "xstream.h"

#define HDR "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'" \
	    " to='example.com' version='1.0' xml:lang='en'>"

/* Records every event as one line of text. */
struct rec {
	struct xbuf log;
	struct xstream *xs;
	int stop_on_open;     /* call xstream_stop() in on_open */
	const char *stop_name; /* call xstream_stop() after a stanza of this name */
	int stop_on_close;
	unsigned nstanzas;
};

static void rec_open(void *ud, const struct xnode *h, const char *default_ns)
{
	struct rec *r = ud;

	assert_string_equal(h->name, "stream");
	assert_string_equal(h->ns, XSTREAM_NS);
	xbuf_printf(&r->log, "open ns=%s", default_ns ? default_ns : "(none)");
	for (size_t i = 0; i < h->nattrs; i++)
		xbuf_printf(&r->log, " %s=%s", h->attrs[i].name, h->attrs[i].value);
	xbuf_puts(&r->log, "\n");
	assert_int_equal(xstream_depth(r->xs), 1);
	if (r->stop_on_open)
		xstream_stop(r->xs);
}

static void rec_stanza(void *ud, struct xnode *st)
{
	struct rec *r = ud;

	assert_null(st->parent);
	xbuf_puts(&r->log, "stanza ");
	assert_int_equal(xnode_serialize(st, "jabber:client", &r->log), 0);
	xbuf_puts(&r->log, "\n");
	r->nstanzas++;
	if (r->stop_name && strcmp(st->name, r->stop_name) == 0)
		xstream_stop(r->xs);
	xnode_free(st);
}

static void rec_close(void *ud)
{
	struct rec *r = ud;

	xbuf_puts(&r->log, "close\n");
	if (r->stop_on_close)
		xstream_stop(r->xs);
}

static const struct xstream_cbs rec_cbs = { rec_open, rec_stanza, rec_close };

static void rec_init(struct rec *r, const struct xstream_limits *lim)
{
	memset(r, 0, sizeof(*r));
	xbuf_init(&r->log);
	xbuf_puts(&r->log, "");
	r->xs = xstream_new(lim, &rec_cbs, r);
	assert_non_null(r->xs);
}

static void rec_free(struct rec *r)
{
	xstream_free(r->xs);
	xbuf_free(&r->log);
}

static uint32_t rng_state;

static uint32_t rng(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM, SPLIT_NMODES };

/*
 * Feeds data in pieces; stops at the first result other than XSTREAM_OK and
 * returns it. With compact, calls xstream_compact() after every piece.
 * *ncompact counts the compactions that freed a parser.
 */
static int feed_split(struct xstream *xs, const char *data, size_t len, enum split mode,
		      int compact, unsigned *ncompact)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off, used = 0;
		int rc;

		if (mode == SPLIT_BYTES)
			n = 1;
		else if (mode == SPLIT_RANDOM && n > 1)
			n = 1 + rng() % (n < 40 ? n : 40);
		rc = xstream_feed(xs, data + off, n, &used);
		if (rc != XSTREAM_OK)
			return rc;
		assert_int_equal(used, n);
		off += n;
		if (compact && xstream_mem(xs) > 2048 && xstream_compact(xs) == 1 && ncompact)
			(*ncompact)++;
	}
	return XSTREAM_OK;
}

/* Runs one stream through every split mode, with and without compaction. */
static void check_stream(const char *in, int want_rc, const char *want_log)
{
	for (int mode = 0; mode < SPLIT_NMODES; mode++) {
		for (int compact = 0; compact < 2; compact++) {
			struct rec r;
			unsigned ncompact = 0;
			int rc;

			rng_state = 12345u + (unsigned)mode;
			rec_init(&r, NULL);
			rc = feed_split(r.xs, in, strlen(in), mode, compact, &ncompact);
			if (rc != want_rc || strcmp(r.log.data, want_log) != 0)
				fail_msg("mode %d compact %d: rc %d (want %d)\nlog:\n%s\nwant:\n%s",
					 mode, compact, rc, want_rc, r.log.data, want_log);
			/* Split feeds of a stream with stanzas pass idle boundaries. */
			if (compact && mode != SPLIT_WHOLE && r.nstanzas > 1)
				assert_true(ncompact > 0);
			rec_free(&r);
		}
	}
}

static void test_basic_stream(void **state)
{
	check_stream("<?xml version='1.0'?>\n" HDR
		     "<message to='a@b' id='1' type='chat'><body>hi &amp; &lt;bye&gt;</body></message>"
		     " \n\t "
		     "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
		     "<presence/>"
		     "</stream:stream>",
		     XSTREAM_OK,
		     "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
		     "stanza <message to='a@b' id='1' type='chat'><body>hi &amp; &lt;bye&gt;</body>"
		     "</message>\n"
		     "stanza <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\n"
		     "stanza <presence/>\n"
		     "close\n");
}

static void test_namespaces(void **state)
{
	/* Prefixed stanzas, prefixes declared on the header and used later
	 * (must survive hibernation), namespaced attributes, xml:lang. */
	check_stream("<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' "
		     "xmlns:c='jabber:client' xmlns:x='urn:x'>"
		     "<c:message xml:lang='de' x:attr='1'><c:body>a</c:body>"
		     "<x:ext><inner xmlns='urn:y'><deep/></inner><x:k/></x:ext></c:message>"
		     "<x:foo/>"
		     "<message xmlns=''><body/></message>"
		     "</s:stream>",
		     XSTREAM_OK,
		     "open ns=jabber:client\n"
		     "stanza <message xml:lang='de' xmlns:a0='urn:x' a0:attr='1'><body>a</body>"
		     "<ext xmlns='urn:x'><inner xmlns='urn:y'><deep/></inner><k/></ext></message>\n"
		     "stanza <foo xmlns='urn:x'/>\n"
		     "stanza <message xmlns=''><body/></message>\n"
		     "close\n");
	/* A header with no default namespace. */
	check_stream("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x'>"
		     "<message/></stream:stream>",
		     XSTREAM_OK,
		     "open ns=(none) id=x\n"
		     "stanza <message xmlns=''/>\n"
		     "close\n");
	/* Streams namespace as the default namespace of the header. */
	check_stream("<stream xmlns='http://etherx.jabber.org/streams'>"
		     "<features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></features>"
		     "</stream>",
		     XSTREAM_OK,
		     "open ns=http://etherx.jabber.org/streams\n"
		     "stanza <features xmlns='http://etherx.jabber.org/streams'>"
		     "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></features>\n"
		     "close\n");
}

static void test_text_and_cdata(void **state)
{
	check_stream(HDR "<message><body>a<![CDATA[<b>&]]>c\r\nd &#x263A; &#65;</body></message>",
		     XSTREAM_OK,
		     "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
		     "stanza <message><body>a&lt;b&gt;&amp;c\nd \xe2\x98\xba A</body></message>\n");
}

struct err_case {
	const char *name;
	const char *in;
	int rc;
};

static void test_errors(void **state)
{
	static const struct err_case cases[] = {
		{ "doctype", "<?xml version='1.0'?><!DOCTYPE stream>" HDR, XSTREAM_ERR_RESTRICTED },
		{ "billion laughs",
		  "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
		  "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
		  "<lolz>&lol2;</lolz>",
		  XSTREAM_ERR_RESTRICTED },
		{ "external entity",
		  "<!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>" HDR
		  "<message><body>&xxe;</body></message>",
		  XSTREAM_ERR_RESTRICTED },
		{ "comment in stanza", HDR "<message><!-- hi --></message>", XSTREAM_ERR_RESTRICTED },
		{ "comment before header", "<!-- hi -->" HDR, XSTREAM_ERR_RESTRICTED },
		{ "comment between stanzas", HDR "<presence/><!-- x -->", XSTREAM_ERR_RESTRICTED },
		{ "pi", HDR "<message><?php echo 1; ?></message>", XSTREAM_ERR_RESTRICTED },
		{ "pi before header", "<?xml-stylesheet href='a'?>" HDR, XSTREAM_ERR_RESTRICTED },
		{ "undefined entity", HDR "<message>&nbsp;</message>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "mismatched tag", HDR "<message></presence>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "bad attribute", HDR "<message to=a/>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "duplicate attribute", HDR "<message to='a' to='b'/>",
		  XSTREAM_ERR_NOT_WELL_FORMED },
		{ "unbound prefix", HDR "<foo:message/>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "invalid utf-8", HDR "<message><body>\xc3\x28</body></message>",
		  XSTREAM_ERR_NOT_WELL_FORMED },
		{ "overlong utf-8", HDR "<message><body>\xc0\xaf</body></message>",
		  XSTREAM_ERR_NOT_WELL_FORMED },
		{ "surrogate utf-8", HDR "<message><body>\xed\xa0\x80</body></message>",
		  XSTREAM_ERR_NOT_WELL_FORMED },
		{ "0xff byte", HDR "<message a='\xff'/>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "latin1 declared", "<?xml version='1.0' encoding='ISO-8859-1'?>" HDR
		  "<message><body>\xe9</body></message>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "control char ref", HDR "<message>&#1;</message>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "wrong root ns", "<stream:stream xmlns:stream='urn:wrong'>",
		  XSTREAM_ERR_INVALID_NS },
		{ "root without ns", "<stream>", XSTREAM_ERR_INVALID_NS },
		{ "wrong root name",
		  "<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>",
		  XSTREAM_ERR_BAD_FORMAT },
		{ "text at depth 1", HDR "<presence/>hello<presence/>", XSTREAM_ERR_BAD_FORMAT },
		{ "data after close", HDR "</stream:stream><presence/>", XSTREAM_ERR_CLOSED },
		{ "text after close", HDR "</stream:stream> x", XSTREAM_ERR_CLOSED },
		{ "too many attrs", HDR "<message a0='' a1='' a2='' a3='' a4='' a5='' a6='' a7='' "
		  "a8='' a9='' b0='' b1='' b2='' b3='' b4='' b5='' b6='' b7='' b8='' b9='' "
		  "c0='' c1='' c2='' c3='' c4='' c5='' c6='' c7='' c8='' c9='' "
		  "d0='' d1='' d2='' d3='' d4='' d5='' d6='' d7='' d8='' d9='' "
		  "e0='' e1='' e2='' e3='' e4='' e5='' e6='' e7='' e8='' e9='' "
		  "f0='' f1='' f2='' f3='' f4='' f5='' f6='' f7='' f8='' f9='' "
		  "g0='' g1='' g2='' g3='' g4='' g5=''/>",
		  XSTREAM_ERR_POLICY },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int mode = 0; mode < SPLIT_NMODES; mode++) {
			struct rec r;
			int rc;

			rng_state = 99u;
			rec_init(&r, NULL);
			rc = feed_split(r.xs, cases[i].in, strlen(cases[i].in), mode, mode == 2,
					NULL);
			if (rc != cases[i].rc)
				fail_msg("%s mode %d: got %d (%s), want %d", cases[i].name, mode, rc,
					 xstream_strerror(rc), cases[i].rc);
			/* The stream stays dead with the same error. */
			assert_int_equal(xstream_feed(r.xs, "<a/>", 4, NULL), rc);
			rec_free(&r);
		}
	}
}

static void test_conditions(void **state)
{
	assert_string_equal(xstream_condition(XSTREAM_ERR_NOT_WELL_FORMED), "not-well-formed");
	assert_string_equal(xstream_condition(XSTREAM_ERR_RESTRICTED), "restricted-xml");
	assert_string_equal(xstream_condition(XSTREAM_ERR_POLICY), "policy-violation");
	assert_string_equal(xstream_condition(XSTREAM_ERR_INVALID_NS), "invalid-namespace");
	assert_string_equal(xstream_condition(XSTREAM_ERR_BAD_FORMAT), "bad-format");
	assert_string_equal(xstream_condition(XSTREAM_ERR_NOMEM), "resource-constraint");
	for (int e = XSTREAM_ERR_CLOSED; e <= XSTREAM_STOPPED; e++)
		assert_non_null(xstream_strerror(e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_stream),
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_text_and_cdata),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_conditions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
