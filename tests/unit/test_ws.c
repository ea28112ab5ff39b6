/*
 * The RFC 7395 output framer: chatd's stream output cut into one message
 * per top-level element, whole, byte by byte or in any split; the stream
 * header's declarations added where a message must parse by itself; the
 * stream end as <close/>.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/ws.h"

struct got {
	char msgs[16][512];
	int close[16];
	int n;
};

static void emit(void *ud, const char *msg, size_t len, int close)
{
	struct got *g = ud;

	assert_true(g->n < 16 && len < 512);
	memcpy(g->msgs[g->n], msg, len);
	g->msgs[g->n][len] = '\0';
	g->close[g->n++] = close;
}

static const char stream[] =
	"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='1' from='d' version='1.0'/>"
	"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
	"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
	"<message to='a@d' id='x&apos;/>y'><body>1 &lt; 2 &gt; 0</body></message>"
	"<iq type='result' id='b'/>"
	"<presence xmlns='jabber:client' from='a@d/r'/>"
	"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
	"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
	"</stream:stream>";

static const char *const want[] = {
	"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='1' from='d' version='1.0'/>",
	"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms "
	"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
	"</stream:features>",
	"<message xmlns='jabber:client' to='a@d' id='x&apos;/>y'><body>1 &lt; 2 &gt; "
	"0</body></message>",
	"<iq xmlns='jabber:client' type='result' id='b'/>",
	"<presence xmlns='jabber:client' from='a@d/r'/>",
	"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>",
	"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict "
	"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
	"<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" />",
};

static void check(const struct got *g)
{
	assert_int_equal(g->n, 8);
	for (int i = 0; i < 8; i++) {
		assert_string_equal(g->msgs[i], want[i]);
		assert_int_equal(g->close[i], i == 7);
	}
}

static void whole(void **state)
{
	struct ws_framer f;
	struct got g = { 0 };

	ws_framer_init(&f);
	assert_int_equal(ws_framer_feed(&f, stream, strlen(stream), emit, &g), 0);
	check(&g);
	ws_framer_free(&f);
}

static void byte_by_byte_and_random_splits(void **state)
{
	srand(7);
	for (int round = 0; round < 200; round++) {
		struct ws_framer f;
		struct got g = { 0 };
		size_t off = 0, len = strlen(stream);

		ws_framer_init(&f);
		while (off < len) {
			size_t n = round == 0 ? 1 : 1 + (size_t)rand() % 40;

			if (n > len - off)
				n = len - off;
			assert_int_equal(ws_framer_feed(&f, stream + off, n, emit, &g), 0);
			off += n;
		}
		check(&g);
		ws_framer_free(&f);
	}
}

static void declaration_and_whitespace_are_not_sent(void **state)
{
	static const char in[] = "<?xml version='1.0'?> \n<iq type='get' id='p'/> ";
	struct ws_framer f;
	struct got g = { 0 };

	ws_framer_init(&f);
	assert_int_equal(ws_framer_feed(&f, in, strlen(in), emit, &g), 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.msgs[0], "<iq xmlns='jabber:client' type='get' id='p'/>");
	ws_framer_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(whole),
		cmocka_unit_test(byte_by_byte_and_random_splits),
		cmocka_unit_test(declaration_and_whitespace_are_not_sent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
