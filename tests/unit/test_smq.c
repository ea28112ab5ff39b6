/* Unit tests for server/smq.c: XEP-0198 counting and the queue of
 * unacknowledged stanzas. Every ack is checked against a plain model (the
 * list of sequence numbers still queued), with counters started near 2^32
 * so that h wraps in the middle; and the id table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/smq.h"

/* The queue holds exactly the stanzas numbered first..h_out, in order,
 * each carrying its own number as text, and its byte count adds up. */
static void check_queue(const struct smq *q, uint32_t first)
{
	uint32_t seq = first, n = 0;
	size_t bytes = 0;
	char want[16];

	for (const struct smq_item *it = q->head; it; it = it->next, seq++, n++) {
		snprintf(want, sizeof(want), "%u", seq);
		assert_int_equal(it->len, strlen(want));
		assert_memory_equal(it->data, want, it->len);
		bytes += smq_cost(it->len);
		if (!it->next)
			assert_ptr_equal(q->tail, it);
	}
	assert_int_equal(n, q->count);
	assert_int_equal(bytes, q->bytes);
	assert_int_equal(smq_acked(q), first - 1);
	if (!n)
		assert_null(q->tail);
}

static void push_seq(struct smq *q)
{
	char s[16];

	snprintf(s, sizeof(s), "%u", (uint32_t)(q->h_out + 1));
	assert_int_equal(smq_push(q, s, strlen(s), 0), 0);
}

static void counting_from(uint32_t start)
{
	struct smq q;
	uint32_t first;
	int i;

	smq_init(&q);
	q.h_out = start; /* as if `start` stanzas were sent and acknowledged */
	first = start + 1;
	srand(start ^ 0x5eed);
	for (i = 0; i < 5000; i++) {
		int k = rand() % 3;

		if (k < 2) {
			push_seq(&q);
		} else {
			/* acknowledge a random part of what is queued */
			uint32_t n = q.count ? (uint32_t)rand() % (q.count + 1) : 0;

			assert_int_equal(smq_ack(&q, first - 1 + n), (long)n);
			first += n;
		}
		check_queue(&q, first);
	}
	/* acknowledging everything empties it; the same h again drops nothing */
	assert_int_equal(smq_ack(&q, q.h_out), (long)(q.h_out - (first - 1)));
	check_queue(&q, q.h_out + 1);
	assert_int_equal(smq_ack(&q, q.h_out), 0);
	smq_clear(&q);
}

static void test_counting(void **state)
{
	counting_from(0);
}

static void test_counting_across_the_wrap(void **state)
{
	/* h_out passes 4294967295 -> 0 after a few pushes */
	counting_from(UINT32_MAX - 20);
	counting_from(UINT32_MAX);
}

static void test_wrap_exact(void **state)
{
	struct smq q;

	smq_init(&q);
	q.h_out = UINT32_MAX - 1;
	push_seq(&q); /* stanza 4294967295 */
	push_seq(&q); /* stanza 0 (2^32 mod 2^32) */
	push_seq(&q); /* stanza 1 */
	assert_int_equal(q.h_out, 1);
	assert_int_equal(q.count, 3);
	/* h=0: the client has seen 4294967295 and 0 */
	assert_int_equal(smq_ack(&q, 0), 2);
	assert_int_equal(q.count, 1);
	assert_memory_equal(q.head->data, "1", 1);
	assert_int_equal(smq_ack(&q, 1), 1);
	assert_int_equal(q.count, 0);
	smq_clear(&q);
}

static void test_handled_count_too_high(void **state)
{
	struct smq q;

	smq_init(&q);
	push_seq(&q);
	push_seq(&q);
	/* more than sent, and backwards (which is "more" modulo 2^32) */
	assert_int_equal(smq_ack(&q, 3), -ERANGE);
	assert_int_equal(smq_ack(&q, 1), 1);
	assert_int_equal(smq_ack(&q, 0), -ERANGE);
	assert_int_equal(smq_ack(&q, UINT32_MAX), -ERANGE);
	check_queue(&q, 2);
	smq_clear(&q);
}

static void test_bound(void **state)
{
	struct smq q;
	char big[1000];
	size_t max = 3 * smq_cost(sizeof(big));

	memset(big, 'x', sizeof(big));
	smq_init(&q);
	assert_int_equal(smq_push(&q, big, sizeof(big), max), 0);
	assert_int_equal(smq_push(&q, big, sizeof(big), max), 0);
	assert_int_equal(smq_push(&q, big, sizeof(big), max), 0);
	/* the fourth would pass the bound: refused, nothing counted */
	assert_int_equal(smq_push(&q, big, sizeof(big), max), -ENOBUFS);
	assert_int_equal(q.count, 3);
	assert_int_equal(q.h_out, 3);
	assert_int_equal(q.bytes, max);
	/* an ack makes room */
	assert_int_equal(smq_ack(&q, 1), 1);
	assert_int_equal(smq_push(&q, big, sizeof(big), max), 0);
	assert_int_equal(q.h_out, 4);
	smq_clear(&q);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(q.count, 0);
}

static void test_table(void **state)
{
	struct smq_table t;
	struct smq *q = calloc(300, sizeof(*q));
	int i;

	smq_table_init(&t);
	assert_null(smq_table_find(&t, "0123456789abcdef0123456789abcdef"));
	for (i = 0; i < 300; i++) {
		smq_init(&q[i]);
		snprintf(q[i].id, sizeof(q[i].id), "%032x", i * 7919);
		assert_int_equal(smq_table_add(&t, &q[i]), 0);
	}
	assert_int_equal(t.count, 300);
	for (i = 0; i < 300; i++)
		assert_ptr_equal(smq_table_find(&t, q[i].id), &q[i]);
	for (i = 0; i < 300; i += 2)
		smq_table_del(&t, &q[i]);
	smq_table_del(&t, &q[0]); /* twice: nothing */
	assert_int_equal(t.count, 150);
	for (i = 0; i < 300; i++)
		assert_ptr_equal(smq_table_find(&t, q[i].id), i % 2 ? &q[i] : NULL);
	/* malformed ids are never found */
	assert_null(smq_table_find(&t, ""));
	assert_null(smq_table_find(&t, "0000"));
	assert_false(smq_id_valid("0123456789ABCDEF0123456789abcdef"));
	assert_false(smq_id_valid("0123456789abcdef0123456789abcdef0"));
	assert_true(smq_id_valid("0123456789abcdef0123456789abcdef"));
	smq_table_free(&t);
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counting),   cmocka_unit_test(test_counting_across_the_wrap),
		cmocka_unit_test(test_wrap_exact), cmocka_unit_test(test_handled_count_too_high),
		cmocka_unit_test(test_bound),	   cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
