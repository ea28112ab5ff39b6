/*
 * YAML (or JSON) manifests to jansson values, with libyaml: rainbow reads
 * the pod template the user controls (k8s/pod-template.yaml) and sends it
 * to the API server as JSON.
 *
 * Plain scalars are typed as YAML 1.2's core schema does (null, ~, true,
 * false, integers, floats); quoted and block scalars stay strings. Anchors
 * and aliases are refused (a template has no use for them), as are
 * multi-document files.
 */
#ifndef RAINBOW_KUBEYAML_H
#define RAINBOW_KUBEYAML_H

#include <stddef.h>

#include <jansson.h>

/* The document in text, or NULL with one sentence in err. */
json_t *kubeyaml_parse(const char *text, size_t len, char *err, size_t errlen);
json_t *kubeyaml_load_file(const char *path, char *err, size_t errlen);

#endif
