/* Unit tests for common/xml.c: tree building, lookup, copy and serialization. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xml.h"
#include "xstream.h"

static char *ser(const struct xnode *n, const char *parent_ns)
{
	struct xbuf b;

	xbuf_init(&b);
	assert_int_equal(xnode_serialize(n, parent_ns, &b), 0);
	return b.data;
}

static void test_xbuf(void **state)
{
	struct xbuf b;

	xbuf_init(&b);
	assert_int_equal(xbuf_puts(&b, "ab"), 0);
	assert_int_equal(xbuf_append(&b, "cdef", 2), 0);
	assert_int_equal(xbuf_printf(&b, "-%d-%s", 42, "x"), 0);
	assert_string_equal(b.data, "abcd-42-x");
	assert_int_equal(b.len, 9);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(xbuf_puts(&b, "0123456789"), 0);
	assert_int_equal(b.len, 10009);
	assert_int_equal(b.data[b.len], '\0');
	xbuf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	xbuf_init(&b);
	assert_int_equal(xbuf_escape(&b, "a<b>&\"c'\r\n\t\x01z", 13), 0);
	assert_string_equal(b.data, "a&lt;b&gt;&amp;&quot;c&apos;&#13;\n\tz");
	xbuf_free(&b);
}

/* A failed append poisons the buffer: later appends fail too and data is
 * NULL, so callers that check only at the end never send half a message. */
static void test_xbuf_failure_is_sticky(void **state)
{
	struct xbuf b;

	xbuf_init(&b);
	assert_int_equal(xbuf_puts(&b, "<stream:error>"), 0);
	assert_int_equal(xbuf_append(&b, "x", SIZE_MAX), -ENOMEM);
	assert_int_equal(xbuf_puts(&b, "</stream:stream>"), -ENOMEM);
	assert_int_equal(xbuf_printf(&b, "%d", 1), -ENOMEM);
	assert_int_equal(xbuf_escape(&b, "a", 1), -ENOMEM);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	xbuf_free(&b);
	/* freeing makes it usable again */
	assert_int_equal(xbuf_puts(&b, "ok"), 0);
	assert_string_equal(b.data, "ok");
	xbuf_free(&b);
}

static void test_build_and_serialize(void **state)
{
	struct xnode *m = xnode_new("message", "jabber:client");
	struct xnode *body, *x, *t;
	char *s;

	assert_non_null(m);
	assert_int_equal(xnode_set_attr(m, "to", "juliet@example.com"), 0);
	assert_int_equal(xnode_set_attr(m, "type", "chat"), 0);
	assert_int_equal(xnode_set_attr(m, "xml:lang", "en"), 0);
	body = xnode_add_child(m, "body", NULL);
	assert_non_null(body);
	assert_string_equal(body->ns, "jabber:client");
	t = xnode_add_text(body, "a < b & 'c'", 11);
	assert_non_null(t);
	assert_null(t->name);
	x = xnode_add_child(m, "delay", "urn:xmpp:delay");
	assert_int_equal(xnode_set_attr(x, "stamp", "2026-11-27T04:00:00Z"), 0);

	s = ser(m, "jabber:client");
	assert_string_equal(s, "<message to='juliet@example.com' type='chat' xml:lang='en'>"
			       "<body>a &lt; b &amp; &apos;c&apos;</body>"
			       "<delay xmlns='urn:xmpp:delay' stamp='2026-11-27T04:00:00Z'/>"
			       "</message>");
	free(s);
	s = ser(m, NULL);
	assert_true(strncmp(s, "<message xmlns='jabber:client' to=", 34) == 0);
	free(s);
	s = ser(m, "jabber:server");
	assert_true(strncmp(s, "<message xmlns='jabber:client' to=", 34) == 0);
	assert_non_null(strstr(s, "<body>a &lt;"));
	free(s);

	/* Lookups. */
	assert_ptr_equal(xnode_child(m, "body", NULL), body);
	assert_ptr_equal(xnode_child(m, "body", "jabber:client"), body);
	assert_null(xnode_child(m, "body", "urn:other"));
	assert_ptr_equal(xnode_child(m, "delay", "urn:xmpp:delay"), x);
	assert_string_equal(xnode_attr(m, "type"), "chat");
	assert_null(xnode_attr(m, "id"));
	s = xnode_text(body);
	assert_string_equal(s, "a < b & 'c'");
	free(s);
	s = xnode_text(m);
	assert_string_equal(s, "");
	free(s);
	assert_string_equal(xnode_ns(body), "jabber:client");

	/* Replace and remove attributes. */
	assert_int_equal(xnode_set_attr(m, "type", "normal"), 0);
	assert_string_equal(xnode_attr(m, "type"), "normal");
	assert_int_equal(xnode_set_attr(m, "to", NULL), 0);
	assert_null(xnode_attr(m, "to"));
	assert_int_equal(m->nattrs, 2);
	assert_int_equal(xnode_set_attr(m, "absent", NULL), 0);
	assert_int_equal(m->nattrs, 2);

	xnode_free(m);
}

static void test_inherit_and_empty_ns(void **state)
{
	struct xnode *iq = xnode_new("iq", NULL);
	struct xnode *q, *k;
	char *s;

	q = xnode_add_child(iq, "query", "jabber:iq:roster");
	k = xnode_new("item", NULL);
	assert_int_equal(xnode_append(q, k), 0);
	assert_string_equal(xnode_ns(k), "jabber:iq:roster");
	s = ser(iq, "jabber:client");
	assert_string_equal(s, "<iq><query xmlns='jabber:iq:roster'><item/></query></iq>");
	free(s);

	/* An element in no namespace inside a namespaced one needs xmlns=''. */
	k = xnode_new("plain", "");
	assert_int_equal(xnode_append(iq, k), 0);
	s = ser(iq, "jabber:client");
	assert_string_equal(s, "<iq><query xmlns='jabber:iq:roster'><item/></query>"
			       "<plain xmlns=''/></iq>");
	free(s);
	xnode_free(iq);
}

static void test_detach_copy(void **state)
{
	struct xnode *a = xnode_new("a", "urn:a");
	struct xnode *b = xnode_add_child(a, "b", NULL);
	struct xnode *c = xnode_add_child(a, "c", "urn:c");
	struct xnode *cp;
	char *s1, *s2;

	xnode_add_text(b, "hello", 5);
	xnode_set_attr(c, "{urn:attr}k", "v&");
	cp = xnode_copy(a);
	assert_non_null(cp);
	assert_null(cp->parent);
	s1 = ser(a, NULL);
	s2 = ser(cp, NULL);
	assert_string_equal(s1, s2);
	assert_string_equal(s1, "<a xmlns='urn:a'><b>hello</b><c xmlns='urn:c' "
				"xmlns:a0='urn:attr' a0:k='v&amp;'/></a>");
	free(s1);
	free(s2);

	xnode_detach(b);
	assert_null(b->parent);
	assert_int_equal(a->nchildren, 1);
	assert_ptr_equal(a->children[0], c);
	/* A detached node keeps its own namespace. */
	s1 = ser(b, "jabber:client");
	assert_string_equal(s1, "<b xmlns='urn:a'>hello</b>");
	free(s1);
	xnode_free(b);
	/* Freeing an attached child detaches it first. */
	xnode_free(c);
	assert_int_equal(a->nchildren, 0);
	xnode_free(a);
	xnode_free(cp);
	xnode_free(NULL);
}

static void test_text_merge_and_attr_escape(void **state)
{
	struct xnode *e = xnode_new("x", "urn:x");
	char *s;

	xnode_add_text(e, "one ", 4);
	xnode_add_child(e, "br", NULL);
	xnode_add_text(e, "two", 3);
	xnode_set_attr(e, "v", "a\tb\nc\"d'e<f>&");
	s = xnode_text(e);
	assert_string_equal(s, "one two");
	free(s);
	s = ser(e, "urn:x");
	assert_string_equal(s, "<x v='a&#9;b&#10;c&quot;d&apos;e&lt;f&gt;&amp;'>one <br/>two</x>");
	free(s);
	xnode_free(e);
}

/* Text with embedded NUL bytes keeps its length. */
static void test_text_len(void **state)
{
	struct xnode *e = xnode_new("x", NULL);
	struct xnode *t = xnode_add_text(e, "a\0b", 3);

	assert_int_equal(t->textlen, 3);
	assert_memory_equal(t->text, "a\0b", 4);
	xnode_free(e);
}

/* Round trip through the stream parser: what is serialized parses back equal. */
struct rt {
	struct xnode *got;
};

static void rt_stanza(void *ud, struct xnode *st)
{
	struct rt *r = ud;

	xnode_free(r->got);
	r->got = st;
}

static void test_parse_round_trip(void **state)
{
	static const char *const texts[] = {
		"plain",
		"<&>\"'",
		"line1\nline2\ttab",
		"cr\rlf",
		"unicode \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
		"]]>",
		"  spaced  ",
	};
	struct xstream_cbs cbs = { .on_stanza = rt_stanza };
	struct rt r = { NULL };

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct xstream *xs = xstream_new(NULL, &cbs, &r);
		struct xnode *m = xnode_new("message", "jabber:client");
		struct xbuf b;
		char *a, *c;

		xnode_set_attr(m, "id", texts[i]);
		xnode_set_attr(m, "xml:lang", "fr");
		xnode_set_attr(m, "{urn:foo}bar", texts[i]);
		xnode_set_attr(m, "{urn:}}x}baz", "1"); /* '}' in a URI (fuzz_xstream) */
		xnode_add_text(xnode_add_child(m, "body", NULL), texts[i], strlen(texts[i]));
		xbuf_init(&b);
		xbuf_puts(&b, "<stream:stream xmlns='jabber:client' "
			      "xmlns:stream='http://etherx.jabber.org/streams'>");
		assert_int_equal(xnode_serialize(m, "jabber:client", &b), 0);
		assert_int_equal(xstream_feed(xs, b.data, b.len, NULL), XSTREAM_OK);
		assert_non_null(r.got);
		assert_string_equal(xnode_attr(r.got, "id"), texts[i]);
		assert_string_equal(xnode_attr(r.got, "xml:lang"), "fr");
		assert_string_equal(xnode_attr(r.got, "{urn:foo}bar"), texts[i]);
		assert_string_equal(xnode_attr(r.got, "{urn:}}x}baz"), "1");
		a = xnode_text(xnode_child(r.got, "body", "jabber:client"));
		assert_string_equal(a, texts[i]);
		free(a);
		a = ser(m, "jabber:client");
		c = ser(r.got, "jabber:client");
		assert_string_equal(a, c);
		free(a);
		free(c);
		xbuf_free(&b);
		xnode_free(m);
		xnode_free(r.got);
		r.got = NULL;
		xstream_free(xs);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xbuf),
		cmocka_unit_test(test_xbuf_failure_is_sticky),
		cmocka_unit_test(test_build_and_serialize),
		cmocka_unit_test(test_inherit_and_empty_ns),
		cmocka_unit_test(test_detach_copy),
		cmocka_unit_test(test_text_merge_and_attr_escape),
		cmocka_unit_test(test_text_len),
		cmocka_unit_test(test_parse_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
