/*
 * libFuzzer target for the Kubernetes Deployment -> colour mapping
 * (deployer/kube_platform.c, kube_colour_from_deployment()), which reads
 * objects the API server returns and anyone with write access to them
 * shapes (labels, annotations).
 *
 * Input: a JSON document (the Deployment). Besides not crashing: the colour
 * is the Deployment's sha label when that is valid, it is selected exactly
 * when that sha is the selected one, counts are not negative, and every
 * rainbow.chat/ annotation that fits comes back through platform_meta_get()
 * unchanged, with no key twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../deployer/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "rainbow.chat/"
#define SELECTED "abcdef0"

static void check(json_t *d, const char *selected)
{
	struct platform_colour c;
	json_t *md = json_object_get(d, "metadata"), *ann, *v;
	const char *sha = json_string_value(
		json_object_get(json_object_get(md, "labels"), "rainbow.chat/sha"));
	const char *key;
	size_t fits = 0;

	kube_colour_from_deployment(&c, d, selected);
	if (strnlen(c.sha, sizeof(c.sha)) == sizeof(c.sha))
		abort();
	if (sha && platform_sha_valid(sha) && strcmp(sha, c.sha) != 0)
		abort();
	if (c.selected != (selected && *selected && strcmp(selected, c.sha) == 0))
		abort();
	if (c.replicas < 0 || c.ready < 0 || c.n_meta > PLATFORM_META_MAX)
		abort();
	for (size_t i = 0; i < c.n_meta; i++) {
		if (strnlen(c.meta[i].key, PLATFORM_META_KEY_MAX) == PLATFORM_META_KEY_MAX ||
		    strnlen(c.meta[i].value, PLATFORM_META_VAL_MAX) == PLATFORM_META_VAL_MAX)
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(c.meta[i].key, c.meta[j].key) == 0)
				abort();
	}
	ann = json_object_get(md, "annotations");
	json_object_foreach (ann, key, v) {
		if (strncmp(key, PREFIX, strlen(PREFIX)) == 0 && json_is_string(v) &&
		    strlen(key) - strlen(PREFIX) < PLATFORM_META_KEY_MAX &&
		    strlen(json_string_value(v)) < PLATFORM_META_VAL_MAX)
			fits++;
	}
	if (fits > PLATFORM_META_MAX)
		return;
	json_object_foreach (ann, key, v) {
		const char *got;

		if (strncmp(key, PREFIX, strlen(PREFIX)) != 0 || !json_is_string(v) ||
		    strlen(key) - strlen(PREFIX) >= PLATFORM_META_KEY_MAX ||
		    strlen(json_string_value(v)) >= PLATFORM_META_VAL_MAX)
			continue;
		got = platform_meta_get(&c, key + strlen(PREFIX));
		if (!got || strcmp(got, json_string_value(v)) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *d;

	if (size > 64 * 1024)
		return 0;
	d = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!d)
		return 0;
	check(d, SELECTED);
	check(d, NULL);
	json_decref(d);
	return 0;
}
