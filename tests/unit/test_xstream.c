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
#include "xmppns.h"
#include "xstream.h"

#define HDR                                                                                    \
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'" \
	" to='example.com' version='1.0' xml:lang='en'>"

/* Records every event as one line of text. */
struct rec {
	struct xbuf log;
	struct xstream *xs;
	int stop_on_open;      /* call xstream_stop() in on_open */
	const char *stop_name; /* call xstream_stop() after a stanza of this name */
	int stop_on_close;
	unsigned nstanzas;
};

static void rec_open(void *ud, const struct xnode *h, const char *default_ns)
{
	struct rec *r = ud;

	assert_string_equal(h->name, "stream");
	assert_string_equal(h->ns, NS_STREAM);
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
static int feed_split(struct xstream *xs, const char *data, size_t len, int mode, int compact,
		      unsigned *ncompact)
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
		     "<message to='a@b' id='1' type='chat'><body>hi &amp; &lt;bye&gt;</body>"
		     "</message>"
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
	/* UTF-8 declared in any case is fine (RFC 6120 11.6). */
	check_stream("<?xml version='1.0' encoding='utf-8'?>" HDR "<presence/>", XSTREAM_OK,
		     "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
		     "stanza <presence/>\n");
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

/* Text that expat delivers in thousands of pieces becomes one text node. */
static void grab_stanza(void *ud, struct xnode *st)
{
	struct xnode **out = ud;

	xnode_free(*out);
	*out = st;
}

static void test_text_pieces(void **state)
{
	struct xstream_cbs cbs = { NULL, grab_stanza, NULL };
	struct xnode *got = NULL, *body;
	struct xstream *xs = xstream_new(NULL, &cbs, &got);
	struct xbuf in;

	xbuf_init(&in);
	xbuf_puts(&in, HDR "<message><body>");
	for (int i = 0; i < 30000; i++)
		xbuf_puts(&in, "\n");
	xbuf_puts(&in, "&amp;x<![CDATA[y]]>z</body>tail</message>");
	assert_int_equal(xstream_feed(xs, in.data, in.len, NULL), XSTREAM_OK);
	assert_non_null(got);
	body = xnode_child(got, "body", "jabber:client");
	assert_int_equal(body->nchildren, 1);
	assert_int_equal(body->children[0]->textlen, 30004);
	assert_string_equal(body->children[0]->text + 30000, "&xyz");
	assert_int_equal(got->nchildren, 2);
	assert_string_equal(got->children[1]->text, "tail");
	xnode_free(got);
	xstream_free(xs);
	xbuf_free(&in);
}

struct err_case {
	const char *name;
	const char *in;
	int rc;
};

/* Inputs with NUL bytes. */
struct bin_case {
	const char *name;
	const char *in;
	size_t len;
	int rc;
};

static void check_error(const char *name, const char *in, size_t len, int want)
{
	for (int mode = 0; mode < SPLIT_NMODES; mode++) {
		struct rec r;
		int rc;

		rng_state = 99u;
		rec_init(&r, NULL);
		rc = feed_split(r.xs, in, len, mode, mode == SPLIT_RANDOM, NULL);
		if (rc != want)
			fail_msg("%s mode %d: got %d (%s), want %d", name, mode, rc,
				 xstream_strerror(rc), want);
		/* The stream stays dead with the same error. */
		assert_int_equal(xstream_feed(r.xs, "<a/>", 4, NULL), rc);
		rec_free(&r);
	}
}

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
		{ "comment in stanza", HDR "<message><!-- hi --></message>",
		  XSTREAM_ERR_RESTRICTED },
		{ "comment before header", "<!-- hi -->" HDR, XSTREAM_ERR_RESTRICTED },
		{ "comment between stanzas", HDR "<presence/><!-- x -->", XSTREAM_ERR_RESTRICTED },
		{ "pi", HDR "<message><?php echo 1; ?></message>", XSTREAM_ERR_RESTRICTED },
		{ "pi before header", "<?xml-stylesheet href='a'?>" HDR, XSTREAM_ERR_RESTRICTED },
		{ "undefined entity", HDR "<message>&nbsp;</message>",
		  XSTREAM_ERR_NOT_WELL_FORMED },
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
		{ "latin1 declared",
		  "<?xml version='1.0' encoding='ISO-8859-1'?>" HDR
		  "<message><body>\xe9</body></message>",
		  XSTREAM_ERR_ENCODING },
		{ "utf-16 declared", "<?xml version='1.0' encoding='UTF-16'?>" HDR,
		  XSTREAM_ERR_ENCODING },
		{ "control char ref", HDR "<message>&#1;</message>", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "utf-16 bom", "\xff\xfe<", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "utf-16be bom", "\xfe\xff<", XSTREAM_ERR_NOT_WELL_FORMED },
		{ "wrong root ns", "<stream:stream xmlns:stream='urn:wrong'>",
		  XSTREAM_ERR_INVALID_NS },
		{ "root without ns", "<stream>", XSTREAM_ERR_INVALID_NS },
		{ "wrong root name", "<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>",
		  XSTREAM_ERR_BAD_FORMAT },
		{ "text at depth 1", HDR "<presence/>hello<presence/>", XSTREAM_ERR_BAD_FORMAT },
		{ "header at depth 1, start tag only", HDR "<presence/>" HDR,
		  XSTREAM_ERR_NESTED_HEADER },
		{ "header at depth 1, other prefix",
		  HDR "<s:stream xmlns:s='http://etherx.jabber.org/streams' version='1.0'>",
		  XSTREAM_ERR_NESTED_HEADER },
		{ "header at depth 1, default ns",
		  HDR "<stream xmlns='http://etherx.jabber.org/streams'>",
		  XSTREAM_ERR_NESTED_HEADER },
		{ "data after close", HDR "</stream:stream><presence/>", XSTREAM_ERR_CLOSED },
		{ "text after close", HDR "</stream:stream> x", XSTREAM_ERR_CLOSED },
		{ "too many attrs",
		  HDR "<message a0='' a1='' a2='' a3='' a4='' a5='' a6='' a7='' "
		      "a8='' a9='' b0='' b1='' b2='' b3='' b4='' b5='' b6='' b7='' b8='' b9='' "
		      "c0='' c1='' c2='' c3='' c4='' c5='' c6='' c7='' c8='' c9='' "
		      "d0='' d1='' d2='' d3='' d4='' d5='' d6='' d7='' d8='' d9='' "
		      "e0='' e1='' e2='' e3='' e4='' e5='' e6='' e7='' e8='' e9='' "
		      "f0='' f1='' f2='' f3='' f4='' f5='' f6='' f7='' f8='' f9='' "
		      "g0='' g1='' g2='' g3='' g4='' g5=''/>",
		  XSTREAM_ERR_POLICY },
		{ "too many ns decls",
		  HDR
		  "<message xmlns:a0='u' xmlns:a1='u' xmlns:a2='u' "
		  "xmlns:a3='u' xmlns:a4='u' xmlns:a5='u' xmlns:a6='u' xmlns:a7='u' xmlns:a8='u' "
		  "xmlns:a9='u' xmlns:b0='u' xmlns:b1='u' xmlns:b2='u' xmlns:b3='u' xmlns:b4='u' "
		  "xmlns:b5='u' xmlns:b6='u' xmlns:b7='u' xmlns:b8='u' xmlns:b9='u' xmlns:c0='u' "
		  "xmlns:c1='u' xmlns:c2='u' xmlns:c3='u' xmlns:c4='u' xmlns:c5='u' xmlns:c6='u' "
		  "xmlns:c7='u' xmlns:c8='u' xmlns:c9='u' xmlns:d0='u' xmlns:d1='u' xmlns:d2='u' "
		  "xmlns:d3='u' xmlns:d4='u' xmlns:d5='u' xmlns:d6='u' xmlns:d7='u' xmlns:d8='u' "
		  "xmlns:d9='u' xmlns:e0='u' xmlns:e1='u' xmlns:e2='u' xmlns:e3='u' xmlns:e4='u' "
		  "xmlns:e5='u' xmlns:e6='u' xmlns:e7='u' xmlns:e8='u' xmlns:e9='u' xmlns:f0='u' "
		  "xmlns:f1='u' xmlns:f2='u' xmlns:f3='u' xmlns:f4='u' xmlns:f5='u' xmlns:f6='u' "
		  "xmlns:f7='u' xmlns:f8='u' xmlns:f9='u' xmlns:g0='u' xmlns:g1='u' xmlns:g2='u' "
		  "xmlns:g3='u' xmlns:g4='u' xmlns='v'/>",
		  XSTREAM_ERR_POLICY },
	};

	/* expat would take some of these for UTF-16 (found by fuzz_xstream). */
	static const struct bin_case bins[] = {
		{ "utf-16le guess", "O\0", 2, XSTREAM_ERR_NOT_WELL_FORMED },
		{ "utf-16le header", "<\0s\0", 4, XSTREAM_ERR_NOT_WELL_FORMED },
		{ "utf-16be header", "\0<\0s", 4, XSTREAM_ERR_NOT_WELL_FORMED },
		{ "nul in stanza", HDR "<message>\0</message>",
		  sizeof(HDR "<message>\0</message>") - 1, XSTREAM_ERR_NOT_WELL_FORMED },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rec r;

		check_error(cases[i].name, cases[i].in, strlen(cases[i].in), cases[i].rc);
		/* After a reset the same xstream reads a good stream. */
		rec_init(&r, NULL);
		xstream_feed(r.xs, cases[i].in, strlen(cases[i].in), NULL);
		assert_int_equal(xstream_reset(r.xs), 0);
		r.nstanzas = 0;
		assert_int_equal(xstream_feed(r.xs, HDR "<presence/>", strlen(HDR) + 11, NULL),
				 XSTREAM_OK);
		assert_int_equal(r.nstanzas, 1);
		rec_free(&r);
	}
	for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++)
		check_error(bins[i].name, bins[i].in, bins[i].len, bins[i].rc);
}

/* A client reading <success/> and the server's next header in one read. */
static void test_stop_consumed_refeed(void **state)
{
	const char *first = HDR "<stream:features/>";
	const char *succ = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
	const char *rest = "<?xml version='1.0'?>" HDR "<stream:features><bind/></stream:features>";
	struct xbuf in;
	struct rec r;
	size_t used = 0, off;
	int rc;

	xbuf_init(&in);
	xbuf_puts(&in, first);
	xbuf_puts(&in, succ);
	xbuf_puts(&in, rest);
	for (int mode = 0; mode < SPLIT_NMODES; mode++) {
		rng_state = 7u;
		rec_init(&r, NULL);
		r.stop_name = "success";
		off = 0;
		/* Feed pieces until the callback stops the parser. */
		for (;;) {
			size_t n = in.len - off;

			if (mode == SPLIT_BYTES)
				n = 1;
			else if (mode == SPLIT_RANDOM && n > 1)
				n = 1 + rng() % (n < 30 ? n : 30);
			rc = xstream_feed(r.xs, in.data + off, n, &used);
			off += used;
			if (rc != XSTREAM_OK)
				break;
			assert_int_equal(used, n);
			xstream_compact(r.xs);
		}
		assert_int_equal(rc, XSTREAM_STOPPED);
		/* Exactly up to the end of <success/>. */
		assert_int_equal(off, strlen(first) + strlen(succ));
		assert_int_equal(xstream_reset(r.xs), 0);
		assert_int_equal(xstream_depth(r.xs), 0);
		r.stop_name = NULL;
		assert_int_equal(feed_split(r.xs, in.data + off, in.len - off, mode, 1, NULL),
				 XSTREAM_OK);
		assert_string_equal(r.log.data,
				    "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
				    "stanza <features xmlns='http://etherx.jabber.org/streams'/>\n"
				    "stanza <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n"
				    "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
				    "stanza <features xmlns='http://etherx.jabber.org/streams'>"
				    "<bind xmlns='jabber:client'/></features>\n");
		rec_free(&r);
	}
	xbuf_free(&in);
}

/* After XSTREAM_STOPPED, feeding the rest without a reset continues the stream. */
static void test_stop_continue(void **state)
{
	const char *in = HDR "<a/><stop/><b xmlns='urn:b'>x</b><stop/><c/></stream:stream>  ";
	size_t len = strlen(in), off = 0, used;
	unsigned stops = 0;
	struct rec r;
	int rc;

	rec_init(&r, NULL);
	r.stop_on_open = 1;
	r.stop_name = "stop";
	r.stop_on_close = 1;
	while (off < len) {
		rc = xstream_feed(r.xs, in + off, len - off, &used);
		off += used;
		if (rc == XSTREAM_STOPPED) {
			stops++;
			r.stop_on_open = 0;
			continue;
		}
		assert_int_equal(rc, XSTREAM_OK);
		assert_int_equal(off, len);
	}
	assert_int_equal(stops, 4);
	assert_string_equal(r.log.data,
			    "open ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
			    "stanza <a/>\nstanza <stop/>\nstanza <b xmlns='urn:b'>x</b>\n"
			    "stanza <stop/>\nstanza <c/>\nclose\n");
	/* Whitespace after the close is fine, anything else is not. */
	assert_int_equal(xstream_feed(r.xs, " \n", 2, &used), XSTREAM_OK);
	assert_int_equal(used, 2);
	assert_int_equal(xstream_feed(r.xs, "<a/>", 4, NULL), XSTREAM_ERR_CLOSED);
	rec_free(&r);
}

/* A stop requested from on_open reports the end of the header as consumed. */
static void test_stop_on_open(void **state)
{
	const char *in = HDR "<presence/>";
	struct rec r;
	size_t used;

	rec_init(&r, NULL);
	r.stop_on_open = 1;
	assert_int_equal(xstream_feed(r.xs, in, strlen(in), &used), XSTREAM_STOPPED);
	assert_int_equal(used, strlen(HDR));
	/* STARTTLS style: discard the rest, start over. */
	xstream_reset(r.xs);
	r.stop_on_open = 0;
	assert_int_equal(xstream_feed(r.xs, in, strlen(in), &used), XSTREAM_OK);
	assert_int_equal(used, strlen(in));
	assert_int_equal(r.nstanzas, 1);
	rec_free(&r);

	/* An empty root still reports its end when on_open stops. */
	const char *empty = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/> ";

	rec_init(&r, NULL);
	r.stop_on_open = 1;
	assert_int_equal(xstream_feed(r.xs, empty, strlen(empty), &used), XSTREAM_STOPPED);
	assert_int_equal(used, strlen(empty) - 1);
	assert_string_equal(r.log.data, "open ns=(none)\nclose\n");
	assert_int_equal(xstream_feed(r.xs, " ", 1, &used), XSTREAM_OK);
	assert_int_equal(xstream_feed(r.xs, "<a/>", 4, &used), XSTREAM_ERR_CLOSED);
	rec_free(&r);
}

/* Limits hold to the byte, whitespace between stanzas is not counted. */
static void test_stanza_size_exact(void **state)
{
	struct xstream_limits lim = { .max_stanza = 200, .max_depth = 4 };
	char stanza[201];
	struct xbuf in;
	struct rec r;

	/* "<m>" + text + "</m>" of exactly 200 bytes. */
	memset(stanza, 'x', sizeof(stanza));
	memcpy(stanza, "<m>", 3);
	memcpy(stanza + 196, "</m>", 4);
	stanza[200] = '\0';
	for (int mode = 0; mode < SPLIT_NMODES; mode++) {
		rng_state = 3u;
		xbuf_init(&in);
		xbuf_puts(&in, HDR);
		for (int i = 0; i < 5; i++) {
			xbuf_puts(&in, stanza);
			xbuf_puts(&in, "                                                  ");
			xbuf_puts(&in, "                                                  \n");
		}
		rec_init(&r, &lim);
		assert_int_equal(feed_split(r.xs, in.data, in.len, mode, 1, NULL), XSTREAM_OK);
		assert_int_equal(r.nstanzas, 5);
		/* One byte more is refused. */
		xbuf_puts(&in, "<mm>");
		xbuf_append(&in, stanza + 3, 193);
		xbuf_puts(&in, "</mm>");
		xstream_reset(r.xs);
		assert_int_equal(feed_split(r.xs, in.data, in.len, mode, 1, NULL),
				 XSTREAM_ERR_POLICY);
		assert_int_equal(r.nstanzas, 10);
		rec_free(&r);
		xbuf_free(&in);
	}
}

/* The header is bounded by max_stanza too. */
static void test_header_size(void **state)
{
	struct xstream_limits lim = { .max_stanza = 200, .max_depth = 4 };
	struct xbuf in;
	struct rec r;

	xbuf_init(&in);
	xbuf_puts(&in, "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='");
	for (int i = 0; i < 200; i++)
		xbuf_puts(&in, "y");
	xbuf_puts(&in, "'>");
	rec_init(&r, &lim);
	assert_int_equal(feed_split(r.xs, in.data, in.len, SPLIT_WHOLE, 0, NULL),
			 XSTREAM_ERR_POLICY);
	assert_string_equal(r.log.data, "");
	rec_free(&r);
	xbuf_free(&in);
}

/* A 10 MB start tag with no '>' is refused without buffering 10 MB. */
static void test_huge_partial_token(void **state)
{
	static char chunk[65536];
	struct xstream_limits lim = { .max_stanza = 65536, .max_depth = 32 };
	size_t total = 0, peak = 0;
	struct rec r;
	int rc = XSTREAM_OK;

	memset(chunk, 'a', sizeof(chunk));
	rec_init(&r, &lim);
	assert_int_equal(xstream_feed(r.xs, HDR "<message to='", strlen(HDR) + 13, NULL),
			 XSTREAM_OK);
	while (total < 10 * 1024 * 1024) {
		rc = xstream_feed(r.xs, chunk, sizeof(chunk), NULL);
		total += sizeof(chunk);
		if (xstream_mem(r.xs) > peak)
			peak = xstream_mem(r.xs);
		if (rc != XSTREAM_OK)
			break;
	}
	assert_int_equal(rc, XSTREAM_ERR_POLICY);
	assert_true(total <= 2 * sizeof(chunk));
	/* expat's buffer grows by doubling: at most ~2 x (limit + slice). */
	assert_true(peak < 4 * 65536);
	rec_free(&r);

	/* The same in one call of 10 MB. */
	char *big = malloc(10 * 1024 * 1024);

	assert_non_null(big);
	memset(big, ' ', 10 * 1024 * 1024);
	memcpy(big, HDR "<message>", strlen(HDR) + 9);
	rec_init(&r, &lim);
	size_t used = 0;

	assert_int_equal(xstream_feed(r.xs, big, 10 * 1024 * 1024, &used), XSTREAM_ERR_POLICY);
	assert_true(used < 2 * 65536);
	rec_free(&r);
	free(big);
}

static void test_deep_nesting(void **state)
{
	struct xbuf in;
	struct rec r;

	xbuf_init(&in);
	xbuf_puts(&in, HDR);
	for (int i = 0; i < 10000; i++)
		xbuf_puts(&in, "<a>");
	for (int mode = 0; mode < SPLIT_NMODES; mode++) {
		rng_state = 5u;
		rec_init(&r, NULL);
		assert_int_equal(feed_split(r.xs, in.data, in.len, mode, 0, NULL),
				 XSTREAM_ERR_POLICY);
		rec_free(&r);
	}
	xbuf_free(&in);

	/* Exactly max_depth levels pass, one more does not. */
	struct xstream_limits lim = { .max_stanza = 65536, .max_depth = 3 };

	rec_init(&r, &lim);
	assert_int_equal(
		feed_split(r.xs, HDR "<a><b><c/></b></a>", strlen(HDR) + 18, SPLIT_WHOLE, 0, NULL),
		XSTREAM_OK);
	assert_int_equal(r.nstanzas, 1);
	assert_int_equal(feed_split(r.xs, "<a><b><c><d/></c></b></a>", 25, SPLIT_WHOLE, 0, NULL),
			 XSTREAM_ERR_POLICY);
	rec_free(&r);
}

/* Many tiny elements cannot turn a small stanza into a big tree. */
static void test_tree_amplification(void **state)
{
	struct xstream_limits lim = { .max_stanza = 1 << 20, .max_depth = 8 };
	struct xbuf in;
	struct rec r;

	xbuf_init(&in);
	xbuf_puts(&in, HDR "<message>");
	for (int i = 0; i < 200000; i++)
		xbuf_puts(&in, "<a/>");
	xbuf_puts(&in, "</message>");
	rec_init(&r, &lim);
	assert_int_equal(xstream_feed(r.xs, in.data, in.len, NULL), XSTREAM_ERR_POLICY);
	rec_free(&r);
	xbuf_free(&in);

	/* Larger limits after authentication allow more. */
	struct xstream_limits small = { .max_stanza = 150, .max_depth = 8 };
	const char *s = "<message><body>0123456789012345678901234567890123456789"
			"0123456789012345678901234567890123456789"
			"0123456789012345678901234567890123456789</body></message>";

	rec_init(&r, &small);
	assert_int_equal(xstream_feed(r.xs, HDR, strlen(HDR), NULL), XSTREAM_OK);
	xstream_set_limits(r.xs, NULL);
	assert_int_equal(xstream_feed(r.xs, s, strlen(s), NULL), XSTREAM_OK);
	assert_int_equal(r.nstanzas, 1);
	xstream_set_limits(r.xs, &small);
	assert_int_equal(xstream_feed(r.xs, s, strlen(s), NULL), XSTREAM_ERR_POLICY);
	rec_free(&r);
}

/* Zero limits select the defaults; huge limits do not overflow. */
static void test_limit_values(void **state)
{
	struct xstream_limits zero = { 0, 0 }, huge = { SIZE_MAX, 100000 };
	size_t n = XSTREAM_DEFAULT_MAX_STANZA + 1;
	char *big = malloc(n);
	struct rec r;

	assert_non_null(big);
	memset(big, 'z', n);
	memcpy(big, "<m>", 3);
	memcpy(big + n - 4, "</m>", 4);
	rec_init(&r, &zero);
	assert_int_equal(xstream_feed(r.xs, HDR, strlen(HDR), NULL), XSTREAM_OK);
	assert_int_equal(xstream_feed(r.xs, big, n, NULL), XSTREAM_ERR_POLICY);
	xstream_reset(r.xs);
	xstream_set_limits(r.xs, &huge);
	assert_int_equal(xstream_feed(r.xs, HDR, strlen(HDR), NULL), XSTREAM_OK);
	assert_int_equal(xstream_feed(r.xs, big, n, NULL), XSTREAM_OK);
	assert_int_equal(r.nstanzas, 1);
	rec_free(&r);
	free(big);

	/* Default depth: 32 levels pass, 33 do not. */
	struct xbuf in;

	for (int depth = 32; depth <= 33; depth++) {
		xbuf_init(&in);
		xbuf_puts(&in, HDR);
		for (int i = 0; i < depth; i++)
			xbuf_puts(&in, "<d>");
		for (int i = 0; i < depth; i++)
			xbuf_puts(&in, "</d>");
		rec_init(&r, NULL);
		assert_int_equal(xstream_feed(r.xs, in.data, in.len, NULL),
				 depth == 32 ? XSTREAM_OK : XSTREAM_ERR_POLICY);
		rec_free(&r);
		xbuf_free(&in);
	}
}

/* A generated stream with many stanza shapes, fed in random splits with
 * compaction, must give the same events as one whole feed. */
static void test_compact_random(void **state)
{
	struct xbuf in;
	struct rec ref;
	unsigned ncompact = 0;

	xbuf_init(&in);
	xbuf_puts(&in, "<stream:stream xmlns='jabber:client' xmlns:x='urn:x' "
		       "xmlns:stream='http://etherx.jabber.org/streams'>");
	rng_state = 42u;
	for (int i = 0; i < 300; i++) {
		switch (rng() % 6) {
		case 0:
			xbuf_printf(&in,
				    "<message to='u%d@example.com' id='m%d' type='chat'>"
				    "<body>hello %d &amp; more</body><x:thread>t</x:thread>"
				    "</message>",
				    i, i, i);
			break;
		case 1:
			xbuf_printf(&in,
				    "<iq type='result' id='i%d'>"
				    "<query xmlns='jabber:iq:version'><name>n%d</name>"
				    "<version>%d</version></query></iq>",
				    i, i, i);
			break;
		case 2:
			xbuf_printf(&in,
				    "<presence xml:lang='en' from='a%d'><status>s%d</status>"
				    "<c xmlns='urn:c' v='%d'/></presence>",
				    i, i, i);
			break;
		case 3:
			xbuf_printf(&in, "<r xmlns='urn:xmpp:sm:3' h='%d'/>", i);
			break;
		case 4:
			xbuf_puts(&in, " ");
			break;
		default:
			xbuf_puts(&in, "\n\n");
			break;
		}
	}
	xbuf_puts(&in, "</stream:stream>");
	rec_init(&ref, NULL);
	assert_int_equal(xstream_feed(ref.xs, in.data, in.len, NULL), XSTREAM_OK);
	assert_true(ref.nstanzas > 150);
	for (int round = 0; round < 4; round++) {
		struct rec r;

		rng_state = 1000u + (unsigned)round;
		rec_init(&r, NULL);
		assert_int_equal(feed_split(r.xs, in.data, in.len, SPLIT_RANDOM, 1, &ncompact),
				 XSTREAM_OK);
		assert_string_equal(r.log.data, ref.log.data);
		rec_free(&r);
	}
	print_message("compactions: %u\n", ncompact);
	assert_true(ncompact > 20);
	rec_free(&ref);
	xbuf_free(&in);
}

/* Compaction only happens at a boundary; whitespace keepalives are one. */
static void test_compact_boundaries(void **state)
{
	struct rec r;

	rec_init(&r, NULL);
	assert_int_equal(xstream_compact(r.xs), 1); /* nothing allocated yet */
	assert_int_equal(xstream_feed(r.xs, HDR, 20, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 0); /* half a header */
	assert_int_equal(xstream_feed(r.xs, &HDR[20], strlen(HDR) - 20, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_feed(r.xs, "<message><bo", 12, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 0);
	assert_int_equal(xstream_feed(r.xs, "dy>x</body></message>", 21, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_feed(r.xs, " ", 1, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_feed(r.xs, "\n\t \n", 4, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_feed(r.xs, "<presence/>", 11, NULL), XSTREAM_OK);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_depth(r.xs), 1);
	assert_int_equal(r.nstanzas, 2);
	/* Errors are still detected after waking up. */
	assert_int_equal(xstream_feed(r.xs, "</a>", 4, NULL), XSTREAM_ERR_NOT_WELL_FORMED);
	rec_free(&r);
}

/* Reset or free in any state leaks nothing (checked by LeakSanitizer). */
static void test_reset_anywhere(void **state)
{
	const char *in = "<?xml version='1.0'?>" HDR "<message><body>abc</body><x xmlns='urn:x'/>"
			 "</message></stream:stream>";
	size_t len = strlen(in);

	for (size_t cut = 0; cut <= len; cut++) {
		struct rec r;

		rec_init(&r, NULL);
		xstream_feed(r.xs, in, cut, NULL);
		xstream_reset(r.xs);
		assert_int_equal(xstream_feed(r.xs, in, len, NULL), XSTREAM_OK);
		xstream_feed(r.xs, in, cut, NULL);
		rec_free(&r);
	}
}

/*
 * expat running out of memory at every possible allocation, including while
 * waking from hibernation: XSTREAM_ERR_NOMEM or success, never a crash or a
 * leak, and the stream works again after a reset.
 */
static void test_out_of_memory(void **state)
{
	const char *in = HDR "<message><body>hello</body></message><presence/>";
	int seen_nomem = 0, seen_ok = 0;

	for (long n = 0; n < 200 && !seen_ok; n++) {
		for (int compact = 0; compact < 2; compact++) {
			struct rec r;
			int rc;

			rng_state = 11u;
			rec_init(&r, NULL);
			xstream_test_fail_alloc(n);
			rc = feed_split(r.xs, in, strlen(in), compact ? SPLIT_RANDOM : SPLIT_WHOLE,
					compact, NULL);
			xstream_test_fail_alloc(-1);
			if (rc == XSTREAM_ERR_NOMEM) {
				seen_nomem++;
				assert_string_equal(xstream_condition(rc), "resource-constraint");
				assert_int_equal(xstream_reset(r.xs), 0);
				assert_int_equal(xstream_feed(r.xs, in, strlen(in), NULL),
						 XSTREAM_OK);
			} else {
				assert_int_equal(rc, XSTREAM_OK);
				if (!compact)
					seen_ok = 1;
			}
			rec_free(&r);
		}
	}
	assert_true(seen_nomem > 3);
	assert_true(seen_ok);
}

/* Heap held by one idle session's xstream, with and without hibernation. */
static void test_idle_memory(void **state)
{
	const char *in = "<?xml version='1.0'?>" HDR
			 "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
			 "<resource>r</resource></bind></iq><presence/>";
	struct rec r;
	size_t awake, asleep;

	rec_init(&r, NULL);
	assert_int_equal(xstream_feed(r.xs, in, strlen(in), NULL), XSTREAM_OK);
	awake = xstream_mem(r.xs);
	assert_int_equal(xstream_compact(r.xs), 1);
	asleep = xstream_mem(r.xs);
	print_message("idle xstream: %zu bytes with its parser, %zu bytes compacted\n", awake,
		      asleep);
	assert_true(asleep < 512);
	assert_true(awake > asleep + 1024);
	/* Waking up costs a parser again, and compacting returns to the same size. */
	assert_int_equal(xstream_feed(r.xs, "<presence/>", 11, NULL), XSTREAM_OK);
	assert_true(xstream_mem(r.xs) > asleep);
	assert_int_equal(xstream_compact(r.xs), 1);
	assert_int_equal(xstream_mem(r.xs), asleep);
	rec_free(&r);
}

static void test_conditions(void **state)
{
	assert_string_equal(xstream_condition(XSTREAM_ERR_NOT_WELL_FORMED), "not-well-formed");
	assert_string_equal(xstream_condition(XSTREAM_ERR_RESTRICTED), "restricted-xml");
	assert_string_equal(xstream_condition(XSTREAM_ERR_POLICY), "policy-violation");
	assert_string_equal(xstream_condition(XSTREAM_ERR_INVALID_NS), "invalid-namespace");
	assert_string_equal(xstream_condition(XSTREAM_ERR_BAD_FORMAT), "bad-format");
	assert_string_equal(xstream_condition(XSTREAM_ERR_NOMEM), "resource-constraint");
	assert_string_equal(xstream_condition(XSTREAM_ERR_ENCODING), "unsupported-encoding");
	assert_string_equal(xstream_condition(XSTREAM_ERR_NESTED_HEADER),
			    "unsupported-stanza-type");
	for (int e = XSTREAM_ERR_NESTED_HEADER; e <= XSTREAM_STOPPED; e++)
		assert_non_null(xstream_strerror(e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_stream),
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_text_and_cdata),
		cmocka_unit_test(test_text_pieces),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_stop_consumed_refeed),
		cmocka_unit_test(test_stop_continue),
		cmocka_unit_test(test_stop_on_open),
		cmocka_unit_test(test_stanza_size_exact),
		cmocka_unit_test(test_header_size),
		cmocka_unit_test(test_huge_partial_token),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_tree_amplification),
		cmocka_unit_test(test_limit_values),
		cmocka_unit_test(test_compact_random),
		cmocka_unit_test(test_compact_boundaries),
		cmocka_unit_test(test_reset_anywhere),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_idle_memory),
		cmocka_unit_test(test_conditions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
