/*
 * YAML manifests to jansson values (libyaml events, YAML 1.2 core schema).
 */
#include "kubeyaml.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* A manifest larger than this is not a pod template. */
#define KUBEYAML_MAX_FILE (1u << 20)
#define KUBEYAML_MAX_DEPTH 64

static json_t *plain_scalar(const char *s)
{
	char *end;

	if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	    !strcmp(s, "NULL"))
		return json_null();
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		return json_true();
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		return json_false();
	if ((s[0] >= '0' && s[0] <= '9') || ((s[0] == '-' || s[0] == '+') && s[1])) {
		long long v;
		double d;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (!*end && !errno)
			return json_integer(v);
		d = strtod(s, &end);
		/* JSON has no inf or NaN ("1e400", "-inf", "+nan"): those stay strings. */
		if (!*end && strchr(s, 'x') == NULL && strchr(s, 'X') == NULL && isfinite(d))
			return json_real(d);
	}
	return json_string(s);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *n, int depth, char *err, size_t errlen)
{
	json_t *out;

	if (!n || depth > KUBEYAML_MAX_DEPTH) {
		snprintf(err, errlen, "YAML nested too deeply");
		return NULL;
	}
	switch (n->type) {
	case YAML_SCALAR_NODE: {
		const char *v = (const char *)n->data.scalar.value;

		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			return plain_scalar(v);
		return json_stringn(v, n->data.scalar.length);
	}
	case YAML_SEQUENCE_NODE:
		out = json_array();
		for (yaml_node_item_t *i = n->data.sequence.items.start;
		     out && i < n->data.sequence.items.top; i++) {
			json_t *v = convert(doc, yaml_document_get_node(doc, *i), depth + 1, err,
					    errlen);

			if (!v || json_array_append_new(out, v)) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	case YAML_MAPPING_NODE:
		out = json_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     out && p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			json_t *v;

			if (!k || k->type != YAML_SCALAR_NODE) {
				snprintf(err, errlen,
					 "YAML line %zu: a mapping key is not a scalar",
					 k ? k->start_mark.line + 1 : 0);
				json_decref(out);
				return NULL;
			}
			v = convert(doc, yaml_document_get_node(doc, p->value), depth + 1, err,
				    errlen);
			if (!v || json_object_set_new(out, (const char *)k->data.scalar.value, v)) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	default:
		snprintf(err, errlen, "YAML: empty document");
		return NULL;
	}
}

/* Aliases would let a small file expand into a huge template: refuse them. */
static int has_alias(const char *text, size_t len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int found = 0, done = 0;

	if (!yaml_parser_initialize(&p))
		return 1;
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done && !found) {
		if (!yaml_parser_parse(&p, &ev))
			break;
		found = ev.type == YAML_ALIAS_EVENT;
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return found;
}

json_t *kubeyaml_parse(const char *text, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	json_t *out = NULL;

	if (has_alias(text, len)) {
		snprintf(err, errlen, "YAML aliases are not supported in manifests");
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "YAML error at line %zu: %s", parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "unknown");
		yaml_parser_delete(&parser);
		return NULL;
	}
	out = convert(&doc, yaml_document_get_root_node(&doc), 0, err, errlen);
	yaml_document_delete(&doc);
	if (out && yaml_parser_load(&parser, &extra)) {
		if (yaml_document_get_root_node(&extra)) {
			snprintf(err, errlen, "more than one YAML document: give one pod template");
			json_decref(out);
			out = NULL;
		}
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	return out;
}

json_t *kubeyaml_load_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;
	json_t *out;

	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(KUBEYAML_MAX_FILE + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	n = fread(buf, 1, KUBEYAML_MAX_FILE + 1, f);
	fclose(f);
	if (n > KUBEYAML_MAX_FILE) {
		snprintf(err, errlen, "%s: larger than %u bytes", path, KUBEYAML_MAX_FILE);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	out = kubeyaml_parse(buf, n, err, errlen);
	if (!out) {
		size_t l = strlen(err);

		snprintf(err + l, errlen > l ? errlen - l : 0, " (in %s)", path);
	}
	free(buf);
	return out;
}
