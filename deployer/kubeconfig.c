/*
 * Kubernetes credentials: kubeconfig files (libyaml) and the in-cluster
 * service account, in kubectl's order of sources.
 */
#include "kubeconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "errmsg.h"

/* A kubeconfig or token larger than this is not a kubeconfig. */
#define KUBECONFIG_MAX_FILE (4u << 20)

static int read_file(const char *path, char **out, size_t *outlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!f)
		return -errno;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb;

			if (ncap > KUBECONFIG_MAX_FILE + 8192) {
				rc = -EFBIG;
				goto out_free;
			}
			nb = realloc(buf, ncap);
			if (!nb) {
				rc = -ENOMEM;
				goto out_free;
			}
			buf = nb;
			cap = ncap;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		rc = -EIO;
		goto out_free;
	}
	buf[n] = '\0';
	*out = buf;
	if (outlen)
		*outlen = n;
	fclose(f);
	return 0;
out_free:
	free(buf);
	fclose(f);
	return rc;
}

int kubeconfig_b64decode(const char *in, char **out, size_t *outlen)
{
	size_t inlen = strlen(in), n = 0;
	char *clean = malloc(inlen + 1), *buf = NULL;
	int total = 0, len = 0, rc = -EINVAL;
	EVP_ENCODE_CTX *ctx = NULL;

	if (!clean)
		return -ENOMEM;
	/* EVP_DecodeUpdate accepts newlines but not other whitespace. */
	for (size_t i = 0; i < inlen; i++)
		if (in[i] != ' ' && in[i] != '\t' && in[i] != '\r' && in[i] != '\n')
			clean[n++] = in[i];
	clean[n] = '\0';
	buf = malloc(n / 4 * 3 + 4);
	ctx = EVP_ENCODE_CTX_new();
	if (!buf || !ctx) {
		rc = -ENOMEM;
		goto out;
	}
	if (n == 0 || n % 4 != 0)
		goto out;
	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, (unsigned char *)buf, &len, (unsigned char *)clean, (int)n) < 0)
		goto out;
	total = len;
	if (EVP_DecodeFinal(ctx, (unsigned char *)buf + total, &len) < 0)
		goto out;
	total += len;
	buf[total] = '\0';
	*out = buf;
	*outlen = (size_t)total;
	buf = NULL;
	rc = 0;
out:
	EVP_ENCODE_CTX_free(ctx);
	free(buf);
	free(clean);
	return rc;
}

/* ---- YAML document navigation ---- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE &&
		    strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* The scalar value of map[key], or NULL when absent or not a scalar. */
static const char *map_str(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_t *v = map_get(doc, map, key);

	if (!v || v->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)v->data.scalar.value;
}

/* In a list of {name: N, <field>: {...}}, the <field> map of the entry named name. */
static yaml_node_t *named_entry(yaml_document_t *doc, yaml_node_t *root, const char *list,
				const char *field, const char *name)
{
	yaml_node_t *seq = map_get(doc, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top;
	     i++) {
		yaml_node_t *e = yaml_document_get_node(doc, *i);
		const char *n = map_str(doc, e, "name");

		if (n && strcmp(n, name) == 0) {
			yaml_node_t *f = map_get(doc, e, field);
			/* An entry with an empty body ("user: {}") is legal. */
			return f ? f : e;
		}
	}
	return NULL;
}

static int yaml_true(const char *s)
{
	return s && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") ||
		     !strcmp(s, "yes") || !strcmp(s, "on"));
}

/* path, made absolute against base_dir when relative. */
static char *resolve_path(const char *base_dir, const char *path)
{
	char *out;

	if (path[0] == '/' || !base_dir || !*base_dir)
		return strdup(path);
	if (asprintf(&out, "%s/%s", base_dir, path) < 0)
		return NULL;
	return out;
}

static char *dirname_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/*
 * Fills pem from <field> (a path) or <field>-data (base64); -data wins, as in
 * client-go. what names the field in error messages.
 */
static int load_pem(struct kubeconfig_pem *pem, yaml_document_t *doc, yaml_node_t *map,
		    const char *field, const char *base_dir, char *err, size_t errlen)
{
	char key[64];
	const char *data, *path;

	snprintf(key, sizeof(key), "%s-data", field);
	data = map_str(doc, map, key);
	path = map_str(doc, map, field);
	if (data && *data) {
		int rc = kubeconfig_b64decode(data, &pem->data, &pem->len);

		if (rc == -EINVAL)
			errmsg_set(err, errlen, "%s is not valid base64", key);
		return rc;
	}
	if (path && *path) {
		pem->path = resolve_path(base_dir, path);
		return pem->path ? 0 : -ENOMEM;
	}
	return 0;
}

static int dup_opt(char **dst, const char *src)
{
	if (!src || !*src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* http(s)://HOST...: a host must be left once trailing slashes are stripped. */
static int server_ok(const char *s)
{
	const char *host = !strncmp(s, "https://", 8)  ? s + 8
			   : !strncmp(s, "http://", 7) ? s + 7
						       : NULL;

	return host && *host && *host != '/';
}

static void strip_trailing_slashes(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

int kubeconfig_load_string(struct kubeconfig *kc, const char *yaml, size_t len,
			   const char *base_dir, const char *context, const char *source, char *err,
			   size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *ctx, *cluster, *user;
	const char *ctx_name, *cluster_name, *user_name, *server, *v;
	int rc = -EINVAL;

	memset(kc, 0, sizeof(*kc));
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		errmsg_set(err, errlen, "%s: YAML error at line %zu: %s", source,
			   parser.problem_mark.line + 1,
			   parser.problem ? parser.problem : "unknown");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root || root->type != YAML_MAPPING_NODE) {
		errmsg_set(err, errlen, "%s: not a kubeconfig (top level is not a mapping)",
			   source);
		goto out;
	}
	ctx_name = context && *context ? context : map_str(&doc, root, "current-context");
	if (!ctx_name || !*ctx_name) {
		errmsg_set(err, errlen, "%s: no current-context set and no --context given",
			   source);
		goto out;
	}
	ctx = named_entry(&doc, root, "contexts", "context", ctx_name);
	if (!ctx) {
		errmsg_set(err, errlen, "%s: context \"%s\" not found%s", source, ctx_name,
			   getenv("KUBECONFIG") && strchr(getenv("KUBECONFIG"), ':')
				   ? " (only the first file of $KUBECONFIG is read)"
				   : "");
		goto out;
	}
	cluster_name = map_str(&doc, ctx, "cluster");
	user_name = map_str(&doc, ctx, "user");
	cluster =
		cluster_name ? named_entry(&doc, root, "clusters", "cluster", cluster_name) : NULL;
	if (!cluster) {
		errmsg_set(err, errlen,
			   "%s: context \"%s\" names cluster \"%s\", which is not defined", source,
			   ctx_name, cluster_name ? cluster_name : "");
		goto out;
	}
	user = user_name ? named_entry(&doc, root, "users", "user", user_name) : NULL;
	if (user_name && *user_name && !user) {
		errmsg_set(err, errlen,
			   "%s: context \"%s\" names user \"%s\", which is not defined", source,
			   ctx_name, user_name);
		goto out;
	}
	server = map_str(&doc, cluster, "server");
	if (!server || !server_ok(server)) {
		errmsg_set(err, errlen, "%s: cluster \"%s\" has no http(s):// server", source,
			   cluster_name);
		goto out;
	}
	rc = -ENOMEM;
	if (!(kc->source = strdup(source)) || !(kc->context = strdup(ctx_name)) ||
	    !(kc->server = strdup(server)))
		goto out;
	strip_trailing_slashes(kc->server);
	if (dup_opt(&kc->namespace, map_str(&doc, ctx, "namespace")) ||
	    dup_opt(&kc->tls_server_name, map_str(&doc, cluster, "tls-server-name")))
		goto out;
	kc->insecure = yaml_true(map_str(&doc, cluster, "insecure-skip-tls-verify"));
	rc = load_pem(&kc->ca, &doc, cluster, "certificate-authority", base_dir, err, errlen);
	if (rc)
		goto out;
	if (user) {
		rc = load_pem(&kc->cert, &doc, user, "client-certificate", base_dir, err, errlen);
		if (!rc)
			rc = load_pem(&kc->key, &doc, user, "client-key", base_dir, err, errlen);
		if (rc)
			goto out;
		if ((kc->cert.path || kc->cert.data) != (kc->key.path || kc->key.data)) {
			errmsg_set(err, errlen,
				   "%s: user \"%s\" has a client certificate without a key "
				   "or a key without a certificate",
				   source, user_name);
			rc = -EINVAL;
			goto out;
		}
		rc = -ENOMEM;
		if (dup_opt(&kc->token, map_str(&doc, user, "token")))
			goto out;
		v = map_str(&doc, user, "tokenFile");
		if (!kc->token && v && *v && !(kc->token_file = resolve_path(base_dir, v)))
			goto out;
		if (map_get(&doc, user, "exec") || map_get(&doc, user, "auth-provider")) {
			if (!kc->token && !kc->token_file && !kc->cert.path && !kc->cert.data) {
				errmsg_set(
					err, errlen,
					"%s: user \"%s\" authenticates with an exec or "
					"auth-provider plugin, which rainbow does not run; use a "
					"token, a client certificate or a service account",
					source, user_name);
				rc = -ENOTSUP;
				goto out;
			}
		}
	}
	if (kc->token_file && !kubeconfig_token(kc)) {
		errmsg_set(err, errlen, "%s: cannot read tokenFile %s", source, kc->token_file);
		rc = -ENOENT;
		goto out;
	}
	rc = 0;
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc)
		kubeconfig_free(kc);
	return rc;
}

int kubeconfig_load_file(struct kubeconfig *kc, const char *path, const char *context, char *err,
			 size_t errlen)
{
	char *text = NULL, *dir = NULL;
	size_t len = 0;
	int rc;

	memset(kc, 0, sizeof(*kc));
	rc = read_file(path, &text, &len);
	if (rc) {
		errmsg_set(err, errlen, "cannot read kubeconfig %s: %s", path, strerror(-rc));
		return rc;
	}
	dir = dirname_of(path);
	if (!dir) {
		free(text);
		return -ENOMEM;
	}
	rc = kubeconfig_load_string(kc, text, len, dir, context, path, err, errlen);
	free(dir);
	free(text);
	return rc;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 &&
	       (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

int kubeconfig_in_cluster(struct kubeconfig *kc, const char *sa_dir, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *ns = NULL;
	int rc = -ENOMEM;

	memset(kc, 0, sizeof(*kc));
	if (!sa_dir)
		sa_dir = getenv("RAINBOW_SA_DIR");
	if (!sa_dir || !*sa_dir)
		sa_dir = KUBECONFIG_SA_DIR;
	if (!host || !*host) {
		errmsg_set(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST is not set");
		return -ENOENT;
	}
	if (!port || !*port)
		port = "443";
	if (asprintf(&kc->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port) < 0) {
		kc->server = NULL;
		goto out;
	}
	if (!(kc->source = strdup("in-cluster")))
		goto out;
	if (asprintf(&kc->token_file, "%s/token", sa_dir) < 0) {
		kc->token_file = NULL;
		goto out;
	}
	if (asprintf(&kc->ca.path, "%s/ca.crt", sa_dir) < 0) {
		kc->ca.path = NULL;
		goto out;
	}
	if (access(kc->ca.path, R_OK) != 0) {
		errmsg_set(err, errlen, "in-cluster: cannot read %s: %s", kc->ca.path,
			   strerror(errno));
		rc = -ENOENT;
		goto out;
	}
	if (!kubeconfig_token(kc)) {
		errmsg_set(err, errlen, "in-cluster: cannot read service-account token %s",
			   kc->token_file);
		rc = -ENOENT;
		goto out;
	}
	{
		char *nspath = NULL;

		if (asprintf(&nspath, "%s/namespace", sa_dir) < 0)
			goto out;
		/* The namespace file is optional: --namespace may name one. */
		if (read_file(nspath, &ns, NULL) == 0) {
			chomp(ns);
			if (*ns)
				kc->namespace = ns;
			else
				free(ns);
		}
		free(nspath);
	}
	rc = 0;
out:
	if (rc)
		kubeconfig_free(kc);
	return rc;
}

int kubeconfig_auto(struct kubeconfig *kc, const char *explicit_path, const char *context,
		    char *err, size_t errlen)
{
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	char *first = NULL, *home_cfg = NULL;
	int rc;

	if (explicit_path && *explicit_path)
		return kubeconfig_load_file(kc, explicit_path, context, err, errlen);
	if (env && *env) {
		first = strndup(env, strcspn(env, ":"));
		if (!first)
			return -ENOMEM;
		if (*first) {
			rc = kubeconfig_load_file(kc, first, context, err, errlen);
			free(first);
			return rc;
		}
		free(first);
	}
	if (getenv("KUBERNETES_SERVICE_HOST") && !context) {
		rc = kubeconfig_in_cluster(kc, NULL, err, errlen);
		if (rc != -ENOENT)
			return rc;
	}
	if (!home || !*home) {
		errmsg_set(err, errlen,
			   "no kubeconfig: --kubeconfig, $KUBECONFIG and $HOME are unset "
			   "and this is not a pod with a service account");
		return -ENOENT;
	}
	if (asprintf(&home_cfg, "%s/.kube/config", home) < 0)
		return -ENOMEM;
	rc = kubeconfig_load_file(kc, home_cfg, context, err, errlen);
	free(home_cfg);
	return rc;
}

const char *kubeconfig_token(struct kubeconfig *kc)
{
	struct stat st;
	time_t now = time(NULL);
	long long mtime_ns;
	char *tok = NULL;

	if (!kc->token_file)
		return kc->token;
	if (stat(kc->token_file, &st) != 0)
		return kc->token;
	mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	if (kc->token && mtime_ns == kc->token_mtime_ns &&
	    now - kc->token_read_at < KUBECONFIG_TOKEN_REREAD_S)
		return kc->token;
	if (read_file(kc->token_file, &tok, NULL) != 0)
		return kc->token;
	chomp(tok);
	if (!*tok) {
		/* Mid-rotation the file can be empty for an instant: keep the old token. */
		free(tok);
		return kc->token;
	}
	free(kc->token);
	kc->token = tok;
	kc->token_mtime_ns = mtime_ns;
	kc->token_read_at = now;
	return kc->token;
}

static void pem_free(struct kubeconfig_pem *p)
{
	free(p->path);
	if (p->data)
		OPENSSL_cleanse(p->data, p->len);
	free(p->data);
}

void kubeconfig_free(struct kubeconfig *kc)
{
	free(kc->source);
	free(kc->context);
	free(kc->server);
	free(kc->namespace);
	free(kc->tls_server_name);
	pem_free(&kc->ca);
	pem_free(&kc->cert);
	pem_free(&kc->key);
	if (kc->token)
		OPENSSL_cleanse(kc->token, strlen(kc->token));
	free(kc->token);
	free(kc->token_file);
	memset(kc, 0, sizeof(*kc));
}
