/*
 * Unit tests for the Deployment -> colour mapping of the Kubernetes platform
 * (kube_colour_from_deployment()), with the inputs fuzz_kube_colour checks:
 * negative or huge counts, annotations too long for a meta entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "../../deployer/kube.h"

static json_t *load(const char *text)
{
	json_t *d = json_loads(text, 0, NULL);

	assert_non_null(d);
	return d;
}

static void test_colour_fields(void **state)
{
	struct platform_colour c;
	json_t *d = load("{\"metadata\":{\"generation\":3,"
			 "\"creationTimestamp\":\"2026-11-27T04:00:00Z\","
			 "\"labels\":{\"rainbow.chat/sha\":\"abcdef0\"},"
			 "\"annotations\":{\"rainbow.chat/selected-at\":\"1796000000.250\","
			 "\"other/x\":\"y\"}},\"spec\":{\"replicas\":3},"
			 "\"status\":{\"observedGeneration\":3,\"updatedReplicas\":3,"
			 "\"availableReplicas\":2}}");

	(void)state;
	kube_colour_from_deployment(&c, d, "abcdef0");
	assert_string_equal(c.sha, "abcdef0");
	assert_int_equal(c.replicas, 3);
	assert_int_equal(c.ready, 2);
	assert_int_equal(c.selected, 1);
	assert_int_equal(c.created, 1795752000);
	assert_int_equal(c.n_meta, 1);
	assert_string_equal(platform_meta_get(&c, "selected-at"), "1796000000.250");
	kube_colour_from_deployment(&c, d, NULL);
	assert_int_equal(c.selected, 0);
	json_decref(d);
}

static void test_colour_bad_counts(void **state)
{
	struct platform_colour c;
	json_t *d = load("{\"metadata\":{\"generation\":5},\"spec\":{\"replicas\":-2},"
			 "\"status\":{\"observedGeneration\":5,\"updatedReplicas\":-7,"
			 "\"availableReplicas\":-7}}");

	(void)state;
	kube_colour_from_deployment(&c, d, NULL);
	assert_int_equal(c.replicas, 0);
	assert_int_equal(c.ready, 0);
	json_decref(d);
	d = load("{\"spec\":{\"replicas\":2147483648}}");
	kube_colour_from_deployment(&c, d, NULL);
	assert_int_equal(c.replicas, INT_MAX);
	json_decref(d);
}

static void test_colour_long_annotations(void **state)
{
	struct platform_colour c;
	char long_value[300];
	json_t *d = load("{\"metadata\":{\"annotations\":{"
			 "\"rainbow.chat/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			 "aaaaaaaaaaaaaaaaaa1\":\"x\","
			 "\"rainbow.chat/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			 "aaaaaaaaaaaaaaaaaa2\":\"y\","
			 "\"rainbow.chat/k\":\"v\"}}}");

	(void)state;
	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	json_object_set_new(json_object_get(json_object_get(d, "metadata"), "annotations"),
			    "rainbow.chat/long", json_string(long_value));
	kube_colour_from_deployment(&c, d, NULL);
	/* Truncated, the two long keys were one key twice. */
	assert_int_equal(c.n_meta, 1);
	assert_string_equal(platform_meta_get(&c, "k"), "v");
	assert_null(platform_meta_get(&c, "long"));
	json_decref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_colour_fields),
		cmocka_unit_test(test_colour_bad_counts),
		cmocka_unit_test(test_colour_long_annotations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
