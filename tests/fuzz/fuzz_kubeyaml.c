/*
 * libFuzzer target for the manifest reader (deployer/kubeyaml.c: YAML over
 * libyaml to jansson values), which reads the pod template the user
 * controls.
 *
 * Input: the YAML text. Besides not crashing: a failure says why, and a
 * success is stable: the JSON it produced, being YAML too, reads back to an
 * equal value (JSON strings are quoted, so they stay strings; numbers and
 * literals keep their types).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../deployer/kubeyaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* YAML reads back every string JSON writes with ensure-ascii, but for \u
 * surrogate pairs (non-BMP characters) and a raw DEL. */
static int yaml_safe_str(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0xf0 || s[i] == 0x7f)
			return 0;
	return 1;
}

static int yaml_safe(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return yaml_safe_str(json_string_value(v), json_string_length(v));
	case JSON_ARRAY:
		json_array_foreach (v, i, x)
			if (!yaml_safe(x))
				return 0;
		return 1;
	case JSON_OBJECT:
		json_object_foreach (v, k, x)
			if (!yaml_safe_str(k, strlen(k)) || !yaml_safe(x))
				return 0;
		return 1;
	default:
		return 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	json_t *v, *w;
	char *text;

	if (size > 64 * 1024)
		return 0;
	err[0] = '\0';
	v = kubeyaml_parse((const char *)data, size, err, sizeof(err));
	if (!v) {
		if (!err[0])
			abort();
		return 0;
	}
	if (yaml_safe(v)) {
		text = json_dumps(v, JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_COMPACT);
		if (!text)
			abort();
		w = kubeyaml_parse(text, strlen(text), err, sizeof(err));
		if (!w || !json_equal(v, w))
			abort();
		json_decref(w);
		free(text);
	}
	json_decref(v);
	return 0;
}
