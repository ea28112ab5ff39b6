/* Unit tests for server/sm_state.c: a stream-managed session's state as it
 * crosses a cluster link. Encoded and decoded back field by field; every
 * truncation, a changed count, a bad id, a version from the future and a
 * queued stanza that is not well-formed are refused (and leak nothing). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/conn.h"
#include "../../server/presence.h"
#include "../../server/sm_state.h"
#include "../../server/smq.h"

static const struct xstream_limits LIM = { 65536, 32 };

static const char *const ITEMS[] = {
	"<message to='a@d/r' from='b@d/s' type='chat'><body>one</body></message>",
	"<iq type='get' id='ping-1' from='d' to='a@d/r'><ping xmlns='urn:xmpp:ping'/></iq>",
	"<message to='a@d/r' from='b@d/s'><body>&lt;three&gt; &amp; more</body></message>",
};

/* A session: counters near the wrap, three unacknowledged stanzas, a
 * stored presence, two directed-presence targets. */
static void make_conn(struct conn *c, struct smq *q)
{
	struct presence_dir *d1, *d2;
	struct xnode *st;

	memset(c, 0, sizeof(*c));
	smq_init(q);
	snprintf(q->id, sizeof(q->id), "%s", "00112233445566778899aabbccddeeff");
	q->h_in = 41;
	q->h_out = UINT32_MAX - 1;
	q->window_s = 120;
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(smq_push(q, ITEMS[i], strlen(ITEMS[i]), 0), 0);
	c->sm = q;
	c->priority = -5;
	c->available = 1;
	c->presence = xnode_new("presence", "jabber:client");
	st = xnode_add_child(c->presence, "status", "jabber:client");
	assert_non_null(xnode_add_text(st, "away & <back>", 13));
	d1 = malloc(sizeof(*d1) + 8);
	d2 = malloc(sizeof(*d2) + 8);
	strcpy(d1->jid, "e@d/x");
	strcpy(d2->jid, "f@d");
	d1->next = d2;
	d2->next = NULL;
	c->directed = d1;
}

static void free_conn(struct conn *c)
{
	struct presence_dir *d;

	xnode_free(c->presence);
	while ((d = c->directed)) {
		c->directed = d->next;
		free(d);
	}
	smq_clear(c->sm);
}

static void test_roundtrip(void **state)
{
	struct conn c;
	struct smq q;
	struct xbuf b;
	struct sm_state st;
	struct xbuf pres;
	size_t i;
	const struct smq_item *it;

	make_conn(&c, &q);
	xbuf_init(&b);
	assert_int_equal(sm_state_encode(&c, &b), 0);
	assert_int_equal(sm_state_decode((const uint8_t *)b.data, b.len, &LIM, &st), 0);
	assert_string_equal(st.id, q.id);
	assert_string_equal(st.q.id, q.id);
	assert_int_equal(st.q.h_in, 41);
	assert_int_equal(st.q.h_out, 1); /* wrapped with the third push */
	assert_int_equal(smq_acked(&st.q), UINT32_MAX - 1);
	assert_int_equal(st.window_s, 120);
	assert_int_equal(st.q.window_s, 120);
	assert_int_equal(st.priority, -5);
	assert_int_equal(st.available, 1);
	assert_int_equal(st.ndirected, 2);
	assert_string_equal(st.directed->jid, "e@d/x");
	assert_string_equal(st.directed->next->jid, "f@d");
	xbuf_init(&pres);
	assert_int_equal(xnode_serialize(st.presence, "jabber:client", &pres), 0);
	assert_non_null(strstr(pres.data, "away &amp; &lt;back&gt;"));
	xbuf_free(&pres);
	assert_int_equal(st.q.count, 3);
	for (i = 0, it = st.q.head; it; it = it->next, i++) {
		assert_int_equal(it->len, strlen(ITEMS[i]));
		assert_memory_equal(it->data, ITEMS[i], it->len);
	}
	/* the decoded queue goes on: an ack trims it */
	assert_int_equal(smq_ack(&st.q, 0), 2);
	sm_state_free(&st);
	xbuf_free(&b);
	free_conn(&c);
}

static void test_no_presence_no_queue(void **state)
{
	struct conn c;
	struct smq q;
	struct xbuf b;
	struct sm_state st;

	memset(&c, 0, sizeof(c));
	smq_init(&q);
	snprintf(q.id, sizeof(q.id), "%s", "ffeeddccbbaa99887766554433221100");
	c.sm = &q;
	xbuf_init(&b);
	assert_int_equal(sm_state_encode(&c, &b), 0);
	assert_int_equal(sm_state_decode((const uint8_t *)b.data, b.len, &LIM, &st), 0);
	assert_null(st.presence);
	assert_null(st.directed);
	assert_int_equal(st.q.count, 0);
	assert_int_equal(st.available, 0);
	sm_state_free(&st);
	xbuf_free(&b);
}

static void test_malformed(void **state)
{
	struct conn c;
	struct smq q;
	struct xbuf b;
	struct sm_state st;
	uint8_t *p;
	size_t i, off;

	make_conn(&c, &q);
	xbuf_init(&b);
	assert_int_equal(sm_state_encode(&c, &b), 0);
	/* every truncation, and a trailing byte */
	for (i = 0; i < b.len; i++)
		assert_int_equal(sm_state_decode((const uint8_t *)b.data, i, &LIM, &st), -EINVAL);
	p = malloc(b.len + 1);
	memcpy(p, b.data, b.len);
	p[b.len] = 0;
	assert_int_equal(sm_state_decode(p, b.len + 1, &LIM, &st), -EINVAL);
	/* a version from the future */
	p[0] = 2;
	assert_int_equal(sm_state_decode(p, b.len, &LIM, &st), -EINVAL);
	p[0] = 1;
	/* an id that is not 32 hex digits */
	p[16] = 'G';
	assert_int_equal(sm_state_decode(p, b.len, &LIM, &st), -EINVAL);
	p[16] = (uint8_t)b.data[16];
	/* flags other than available */
	p[14] = 2;
	assert_int_equal(sm_state_decode(p, b.len, &LIM, &st), -EINVAL);
	p[14] = 1;
	assert_int_equal(sm_state_decode(p, b.len, &LIM, &st), 0);
	sm_state_free(&st);
	/* a queued stanza that is not one well-formed element: the last
	 * item's closing '>' becomes '<' */
	off = b.len - 1;
	p[off] = '<';
	assert_int_equal(sm_state_decode(p, b.len, &LIM, &st), -EINVAL);
	free(p);
	xbuf_free(&b);
	free_conn(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_no_presence_no_queue),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
