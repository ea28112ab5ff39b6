/* Unit tests for server/dlheap.c: the deadline heap behind chatd's one
 * timer. Random sets, moves and removals are checked against a plain array
 * after every step; due times are taken near the 32-bit wrap, where they
 * must still order by srv_due() rather than by value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/dlheap.h"

#define N 300

static int earlier(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* The heap's top is an entry with the earliest due of the queued ones, every
 * entry's pos points at itself, and the count matches. */
static void check(const struct dlheap *h, struct dlentry *e, const int *queued)
{
	uint32_t n = 0, i;
	struct dlentry *top = dlheap_top(h);

	for (i = 0; i < N; i++) {
		if (!queued[i]) {
			assert_int_equal(e[i].pos, 0);
			continue;
		}
		n++;
		assert_true(e[i].pos >= 1 && e[i].pos <= h->n);
		assert_ptr_equal(h->v[e[i].pos - 1], &e[i]);
		assert_non_null(top);
		assert_false(earlier(e[i].due, top->due));
	}
	assert_int_equal(n, h->n);
	if (!n)
		assert_null(top);
}

static void random_ops(uint32_t base)
{
	struct dlheap h = { 0 };
	struct dlentry e[N];
	int queued[N] = { 0 };
	int step;

	memset(e, 0, sizeof(e));
	srand(7);
	for (step = 0; step < 20000; step++) {
		int i = rand() % N, op = rand() % 4;

		if (op < 3) {
			/* within +-1,000,000 ms of base: across the wrap when base is */
			uint32_t due = base + (uint32_t)(rand() % 2000000) - 1000000u;

			assert_int_equal(dlheap_set(&h, &e[i], due), 0);
			assert_int_equal(e[i].due, due);
			queued[i] = 1;
		} else {
			dlheap_remove(&h, &e[i]);
			queued[i] = 0;
		}
		check(&h, e, queued);
	}
	/* Popping yields the due times in order. */
	{
		struct dlentry *t, *prev = NULL;
		uint32_t prev_due = 0;

		while ((t = dlheap_top(&h))) {
			if (prev)
				assert_false(earlier(t->due, prev_due));
			prev = t;
			prev_due = t->due;
			dlheap_remove(&h, t);
			assert_int_equal(t->pos, 0);
		}
	}
	dlheap_free(&h);
}

static void test_random(void **state)
{
	(void)state;
	random_ops(5000000u);
}

static void test_random_across_the_wrap(void **state)
{
	(void)state;
	random_ops(0u); /* half the due times are just below 2^32 */
}

static void test_remove_unqueued_and_same_due(void **state)
{
	struct dlheap h = { 0 };
	struct dlentry a = { 0 }, b = { 0 };

	(void)state;
	dlheap_remove(&h, &a); /* not queued: nothing */
	assert_int_equal(dlheap_set(&h, &a, 100), 0);
	assert_int_equal(dlheap_set(&h, &b, 100), 0);
	assert_int_equal(h.n, 2);
	assert_int_equal(dlheap_set(&h, &b, 50), 0); /* moved earlier */
	assert_ptr_equal(dlheap_top(&h), &b);
	assert_int_equal(dlheap_set(&h, &b, 150), 0); /* moved later */
	assert_ptr_equal(dlheap_top(&h), &a);
	assert_int_equal(h.n, 2);
	dlheap_remove(&h, &a);
	dlheap_remove(&h, &a);
	assert_ptr_equal(dlheap_top(&h), &b);
	dlheap_remove(&h, &b);
	assert_null(dlheap_top(&h));
	dlheap_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_random_across_the_wrap),
		cmocka_unit_test(test_remove_unqueued_and_same_due),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
