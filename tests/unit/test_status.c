/*
 * rainbow status's drain progress: whole percents rounded down, so that
 * "100 %" is only ever shown for a colour with nothing left (1 of 499 left
 * printed "100% done" when the percentage was rounded to nearest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../deployer/status.h"

static void hundred_only_when_drained(void **state)
{
	assert_int_equal(status_drained_pct(499, 1, 0), 99);
	assert_int_equal(status_drained_pct(499, 0, 0), 100);
	assert_int_equal(status_drained_pct(100000, 1, 0), 99);
	assert_int_equal(status_drained_pct(2, 1, 0), 50);
	assert_int_equal(status_drained_pct(3, 3, 0), 0);
	assert_int_equal(status_drained_pct(1, 0, 0), 100);
}

/* Lost in a crash is not drained: 10 deselected, 2 lost, 0 left = 80 %. */
static void lost_is_not_drained(void **state)
{
	assert_int_equal(status_drained_pct(10, 0, 2), 80);
	assert_int_equal(status_drained_pct(10, 1, 2), 70);
	assert_int_equal(status_drained_pct(10, 9, 2), -1);
}

static void unknown(void **state)
{
	assert_int_equal(status_drained_pct(0, 0, 0), -1);   /* no drain_from */
	assert_int_equal(status_drained_pct(10, 11, 0), -1); /* more than when deselected */
	assert_int_equal(status_drained_pct(10, -1, 0), -1); /* unreadable count */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hundred_only_when_drained),
		cmocka_unit_test(lost_is_not_drained),
		cmocka_unit_test(unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
