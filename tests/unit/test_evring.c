/*
 * The dashboard's event ring: readers get every event while they keep up,
 * skip to the newest when they fall behind, and memory stays bounded by the
 * ring's size plus one event per reader, however slow a reader is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "../../deployer/evring.h"

static void publish_n(struct evring *r, int n)
{
	char buf[64];

	for (int i = 0; i < n; i++) {
		int len = snprintf(buf, sizeof(buf), "event %llu", (unsigned long long)r->last + 1);
		assert_int_equal(evring_publish(r, buf, (size_t)len), 0);
	}
}

static void in_order_while_keeping_up(void **state)
{
	struct evring r;
	struct evring_ev *ev;

	assert_int_equal(evring_init(&r, 8), 0);
	publish_n(&r, 5);
	for (uint64_t want = 1; want <= 5; want++) {
		assert_int_equal(evring_get(&r, want, 0, &ev), 1);
		assert_int_equal(ev->seq, want);
		char expect[32];
		snprintf(expect, sizeof(expect), "event %llu", (unsigned long long)want);
		assert_string_equal(ev->data, expect);
		evring_put(&r, ev);
	}
	assert_int_equal(r.skipped, 0);
	/* Nothing newer yet: a timeout, not an old event. */
	assert_int_equal(evring_get(&r, 6, 10, &ev), 0);
	assert_null(ev);
	evring_destroy(&r);
}

static void slow_reader_skips_and_memory_is_bounded(void **state)
{
	struct evring r;
	struct evring_ev *held, *ev;

	assert_int_equal(evring_init(&r, 8), 0);
	publish_n(&r, 1);
	/* A reader that took event 1 and never reads on. */
	assert_int_equal(evring_get(&r, 1, 0, &held), 1);
	publish_n(&r, 10000);
	/* The ring's 8 plus the one event the slow reader holds, whatever it missed. */
	assert_int_equal(r.live, 9);
	/* It comes back wanting event 2: long gone, it gets the newest. */
	assert_int_equal(evring_get(&r, 2, 0, &ev), 1);
	assert_int_equal(ev->seq, 10001);
	assert_int_equal(r.skipped, 10001 - 2);
	evring_put(&r, ev);
	evring_put(&r, held);
	assert_int_equal(r.live, 8);
	/* A reader inside the window still gets the exact event. */
	assert_int_equal(evring_get(&r, 9995, 0, &ev), 1);
	assert_int_equal(ev->seq, 9995);
	evring_put(&r, ev);
	/* want 0: the newest. */
	assert_int_equal(evring_get(&r, 0, 0, &ev), 1);
	assert_int_equal(ev->seq, 10001);
	evring_put(&r, ev);
	evring_destroy(&r);
}

struct waiter {
	struct evring *r;
	int rc;
	uint64_t seq;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	struct evring_ev *ev;

	w->rc = evring_get(w->r, 1, 10000, &ev);
	if (w->rc == 1) {
		w->seq = ev->seq;
		evring_put(w->r, ev);
	}
	return NULL;
}

static void waiting_reader_is_woken(void **state)
{
	struct evring r;
	struct waiter w = { &r, 0, 0 }, w2 = { &r, 0, 0 };
	pthread_t t, t2;

	assert_int_equal(evring_init(&r, 4), 0);
	pthread_create(&t, NULL, wait_thread, &w);
	publish_n(&r, 1);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 1);
	assert_int_equal(w.seq, 1);
	/* Close wakes a reader waiting for what never comes. */
	w2.r = &r;
	publish_n(&r, 0);
	pthread_create(&t2, NULL, wait_thread, &w2);
	evring_close(&r);
	pthread_join(t2, NULL);
	assert_true(w2.rc == -1 || (w2.rc == 1 && w2.seq == 1));
	struct evring_ev *ev;
	assert_int_equal(evring_get(&r, 2, 1000, &ev), -1);
	evring_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(in_order_while_keeping_up),
		cmocka_unit_test(slow_reader_skips_and_memory_is_bounded),
		cmocka_unit_test(waiting_reader_is_woken),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
