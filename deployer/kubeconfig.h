/*
 * Where the Kubernetes API server is and how to authenticate to it: a
 * kubeconfig file (parsed with libyaml) or the in-cluster service account.
 *
 * Sources, in the order kubeconfig_auto() tries them (the order kubectl and
 * client-go use):
 *   1. an explicit path (--kubeconfig);
 *   2. $KUBECONFIG; a colon-separated list is NOT merged as kubectl does:
 *      only its first file is read (said in the error when it lacks the
 *      context asked for);
 *   3. the in-cluster service account when $KUBERNETES_SERVICE_HOST is set
 *      and the token file exists;
 *   4. ~/.kube/config.
 *
 * Credentials kept: server URL, CA (file path or PEM bytes from
 * certificate-authority-data), insecure-skip-tls-verify, client certificate
 * and key (path or PEM bytes from the *-data fields), a static token, or a
 * token file that is re-read when it changes (projected service-account
 * tokens rotate about hourly).
 *
 * Every function returns 0 or a negative errno-style code and, on error,
 * writes one human-readable sentence into err.
 */
#ifndef RAINBOW_KUBECONFIG_H
#define RAINBOW_KUBECONFIG_H

#include <stddef.h>
#include <time.h>

/* Default directory of the mounted service-account secret. */
#define KUBECONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* A token file is re-read at least this often even if its mtime is unchanged. */
#define KUBECONFIG_TOKEN_REREAD_S 60

/* A PEM object kept either as a file path or as bytes (from *-data). */
struct kubeconfig_pem {
	char *path; /* absolute or relative to the cwd; NULL when unset */
	char *data; /* decoded PEM bytes (NUL-terminated); NULL when unset */
	size_t len; /* bytes in data, without the terminating NUL */
};

struct kubeconfig {
	char *source;	       /* file read, or "in-cluster" */
	char *context;	       /* context used (NULL in-cluster) */
	char *server;	       /* "https://host:port", no trailing slash */
	char *namespace;       /* context namespace or the SA namespace; NULL if unset */
	char *tls_server_name; /* overrides SNI/verification name; NULL if unset */
	struct kubeconfig_pem ca;
	struct kubeconfig_pem cert;
	struct kubeconfig_pem key;
	int insecure;		  /* insecure-skip-tls-verify: true */
	char *token;		  /* static token, or the cached contents of token_file */
	char *token_file;	  /* re-read when it changes; NULL when the token is static */
	long long token_mtime_ns; /* mtime of token_file at the last read, in ns */
	time_t token_read_at;	  /* wall time of the last read */
};

/*
 * Parses the kubeconfig file at path and resolves context (NULL: the file's
 * current-context). Relative file paths in it are resolved against the
 * file's directory, as kubectl does.
 */
int kubeconfig_load_file(struct kubeconfig *kc, const char *path, const char *context, char *err,
			 size_t errlen);

/* Same as kubeconfig_load_file() from YAML text; base_dir resolves relative paths. */
int kubeconfig_load_string(struct kubeconfig *kc, const char *yaml, size_t len,
			   const char *base_dir, const char *context, const char *source, char *err,
			   size_t errlen);

/*
 * In-cluster config: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * sa_dir/token (re-read on rotation), sa_dir/ca.crt, sa_dir/namespace.
 * sa_dir NULL means $RAINBOW_SA_DIR or KUBECONFIG_SA_DIR (tests set the
 * variable). IPv6 hosts are bracketed.
 */
int kubeconfig_in_cluster(struct kubeconfig *kc, const char *sa_dir, char *err, size_t errlen);

/* The source order described at the top; explicit_path and context may be NULL. */
int kubeconfig_auto(struct kubeconfig *kc, const char *explicit_path, const char *context,
		    char *err, size_t errlen);

/*
 * The bearer token to send now, or NULL when this config has none (client
 * certificates). A token file is re-read when its mtime changed or
 * KUBECONFIG_TOKEN_REREAD_S passed; if a re-read fails, the last token is
 * kept. The pointer is valid until the next call or kubeconfig_free().
 */
const char *kubeconfig_token(struct kubeconfig *kc);

void kubeconfig_free(struct kubeconfig *kc);

/*
 * Decodes base64 (newlines and other whitespace allowed) into a new
 * NUL-terminated buffer; 0, -EINVAL on bad input, -ENOMEM.
 */
int kubeconfig_b64decode(const char *in, char **out, size_t *outlen);

#endif
