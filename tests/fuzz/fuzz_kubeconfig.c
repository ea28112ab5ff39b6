/*
 * libFuzzer target for the kubeconfig parser (deployer/kubeconfig.c, over
 * libyaml), through its in-memory entry point kubeconfig_load_string().
 *
 * Input: the kubeconfig file's content; no --context (current-context
 * decides). Relative paths resolve against a directory that does not exist,
 * so nothing is read but an absolute tokenFile.
 *
 * Besides not crashing: a failure says why; a success has an http(s)://
 * server with a host, PEM data whose length matches, a key exactly when a
 * certificate. And it is stable: the credentials kept, written back as a
 * minimal kubeconfig (JSON, which YAML reads), parse to the same credentials.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "b64.h"
#include "../../deployer/kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE "/nonexistent-rb-fuzz"

static int printable(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_pem(const struct kubeconfig_pem *a, const struct kubeconfig_pem *b)
{
	return same_str(a->path, b->path) && a->len == b->len && (!a->data) == (!b->data) &&
	       (!a->data || memcmp(a->data, b->data, a->len) == 0);
}

static void check_pem(const struct kubeconfig_pem *p)
{
	if (p->data && (p->path || p->data[p->len] != '\0'))
		abort();
	if (p->path && p->path[0] != '/')
		abort();
}

/* field or field-data of pem into o; 0, or -1 when it cannot be written back. */
static int put_pem(json_t *o, const char *field, const struct kubeconfig_pem *p)
{
	char key[64];

	if (p->data) {
		char *b = b64_encode_alloc(p->data, p->len);

		if (!b || p->len == 0) {
			free(b);
			return -1;
		}
		snprintf(key, sizeof(key), "%s-data", field);
		json_object_set_new(o, key, json_string(b));
		free(b);
	} else if (p->path) {
		if (!printable(p->path))
			return -1;
		json_object_set_new(o, field, json_string(p->path));
	}
	return 0;
}

/* The credentials of kc as a kubeconfig document; NULL when not representable. */
static char *write_back(const struct kubeconfig *kc)
{
	json_t *doc = json_object(), *cl = json_object(), *us = json_object(), *cx = json_object();
	char *out = NULL;

	if (!printable(kc->server) || !printable(kc->namespace) ||
	    !printable(kc->tls_server_name) || !printable(kc->token))
		goto out;
	json_object_set_new(cl, "server", json_string(kc->server));
	if (kc->tls_server_name)
		json_object_set_new(cl, "tls-server-name", json_string(kc->tls_server_name));
	if (kc->insecure)
		json_object_set_new(cl, "insecure-skip-tls-verify", json_true());
	if (put_pem(cl, "certificate-authority", &kc->ca) ||
	    put_pem(us, "client-certificate", &kc->cert) || put_pem(us, "client-key", &kc->key))
		goto out;
	if (kc->token)
		json_object_set_new(us, "token", json_string(kc->token));
	json_object_set_new(cx, "cluster", json_string("k"));
	json_object_set_new(cx, "user", json_string("u"));
	if (kc->namespace)
		json_object_set_new(cx, "namespace", json_string(kc->namespace));
	json_object_set_new(doc, "current-context", json_string("c"));
	json_object_set_new(doc, "clusters", json_pack("[{s:s, s:O}]", "name", "k", "cluster", cl));
	json_object_set_new(doc, "users", json_pack("[{s:s, s:O}]", "name", "u", "user", us));
	json_object_set_new(doc, "contexts", json_pack("[{s:s, s:O}]", "name", "c", "context", cx));
	out = json_dumps(doc, JSON_COMPACT);
out:
	json_decref(doc);
	json_decref(cl);
	json_decref(us);
	json_decref(cx);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kubeconfig kc, again;
	char err[512], *text;
	const char *host;
	int rc;

	if (size > 64 * 1024)
		return 0;
	err[0] = '\0';
	rc = kubeconfig_load_string(&kc, (const char *)data, size, BASE, NULL, "fuzz", err,
				    sizeof(err));
	if (rc != 0) {
		if (rc > 0 || !err[0] || kc.server || kc.source)
			abort();
		return 0;
	}
	if (!kc.server || !kc.context || !kc.source)
		abort();
	host = strncmp(kc.server, "https://", 8) == 0  ? kc.server + 8
	       : strncmp(kc.server, "http://", 7) == 0 ? kc.server + 7
						       : NULL;
	if (!host || !*host || kc.server[strlen(kc.server) - 1] == '/')
		abort();
	check_pem(&kc.ca);
	check_pem(&kc.cert);
	check_pem(&kc.key);
	if ((kc.cert.path || kc.cert.data) != (kc.key.path || kc.key.data))
		abort();
	/* A token file's content is not the document's: nothing to write back. */
	if (kc.token_file) {
		kubeconfig_free(&kc);
		return 0;
	}
	text = write_back(&kc);
	if (text) {
		if (kubeconfig_load_string(&again, text, strlen(text), BASE, NULL, "again", err,
					   sizeof(err)) != 0)
			abort();
		if (strcmp(kc.server, again.server) || !same_str(kc.namespace, again.namespace) ||
		    !same_str(kc.tls_server_name, again.tls_server_name) ||
		    kc.insecure != again.insecure || !same_str(kc.token, again.token) ||
		    !same_pem(&kc.ca, &again.ca) || !same_pem(&kc.cert, &again.cert) ||
		    !same_pem(&kc.key, &again.key))
			abort();
		kubeconfig_free(&again);
		free(text);
	}
	kubeconfig_free(&kc);
	return 0;
}
