/*
 * One table drives --help, getopt_long and the environment, so a flag cannot
 * exist in one place and be missing in another.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "duration.h"
#include "version.h"

/* OPT_SECS: whole seconds, as a duration ("90", "90s", "2m", "1h"), like
 * rainbow's and chatload's flags. */
enum opt_kind { OPT_STR, OPT_BOOL, OPT_UINT, OPT_SECS, OPT_SIZE, OPT_LEVEL };

struct opt {
	const char *name; /* long flag without "--" */
	enum opt_kind kind;
	size_t off;	 /* offset into struct config */
	size_t size;	 /* for OPT_STR: buffer size */
	const char *arg; /* metavariable for --help */
	const char *help;
};

#define FIELD_SIZE(f) sizeof(((struct config *)0)->f)
#define STR(f, a, h)                                                         \
	{                                                                    \
#f, OPT_STR, offsetof(struct config, f), FIELD_SIZE(f), a, h \
	}
#define STRN(n, f, a, h)                                                    \
	{                                                                   \
		n, OPT_STR, offsetof(struct config, f), FIELD_SIZE(f), a, h \
	}
#define CFG(n, k, f, a, h)                                \
	{                                                 \
		n, k, offsetof(struct config, f), 0, a, h \
	}

static const struct opt config_opts[] = {
	STR(listen, "ADDR:PORT", "client listener (default 0.0.0.0:5222)"),
	STR(websocket, "ADDR:PORT",
	    "XMPP over WebSocket (RFC 7395) listener, path /xmpp-websocket, subprotocol xmpp "
	    "(default: none)"),
	STR(http, "ADDR:PORT",
	    "HTTP /metrics /healthz /readyz (default 0.0.0.0:5280; \"\" disables)"),
	STR(domain, "NAME", "XMPP domain served (default localhost)"),
	STRN("version-label", version_label, "STR",
	     "version reported to clients and in metrics (default: build SHA; "
	     "env also CHATD_VERSION)"),
	STR(instance, "NAME", "instance name (default: hostname; env also POD_NAME)"),
	CFG("auth-any", OPT_BOOL, auth_any, NULL,
	    "demo mode: accept any user name and password (PLAIN); SCRAM password = user name"),
	STR(users, "FILE", "users file with SCRAM credentials (see `chatd passwd`)"),
	CFG("allow-anonymous", OPT_BOOL, allow_anonymous, NULL, "offer SASL ANONYMOUS"),
	CFG("allow-plaintext-auth", OPT_BOOL, allow_plaintext_auth, NULL,
	    "offer PLAIN on connections without TLS"),
	STRN("tls-cert", tls_cert, "FILE", "PEM certificate chain (enables STARTTLS)"),
	STRN("tls-key", tls_key, "FILE", "PEM private key"),
	CFG("require-tls", OPT_BOOL, require_tls, NULL, "refuse SASL before STARTTLS"),
	STRN("tls-ciphers", tls_ciphers, "STR",
	     "OpenSSL cipher string for TLS 1.2 (default: ECDHE with AES-GCM or "
	     "ChaCha20-Poly1305 only)"),
	STRN("tls-min-version", tls_min_version, "V",
	     "lowest TLS version, 1.2 or 1.3 (default 1.2)"),
	CFG("ping-interval", OPT_SECS, ping_interval, "S",
	    "ping a client silent for S seconds (default 60; 0 disables)"),
	CFG("ping-timeout", OPT_SECS, ping_timeout, "S",
	    "close a client that does not answer a ping within S seconds (default 30)"),
	CFG("auth-timeout", OPT_SECS, auth_timeout, "S",
	    "close a connection not bound to a session within S seconds (default 30)"),
	CFG("max-connections", OPT_UINT, max_connections, "N",
	    "client connections held at once (default: open-files limit - 100)"),
	CFG("max-stanza", OPT_SIZE, max_stanza, "BYTES",
	    "largest stanza after authentication (default 65536)"),
	CFG("max-depth", OPT_UINT, max_depth, "N",
	    "deepest element nesting in a stanza (default 32)"),
	CFG("max-output", OPT_SIZE, max_output, "BYTES",
	    "output queued for one client before it is closed as too slow (default 262144)"),
	CFG("drain-timeout", OPT_SECS, drain_timeout, "S",
	    "after SIGTERM, keep connections up to S seconds (default 300)"),
	CFG("rate-limit", OPT_UINT, rate_limit, "BYTES",
	    "input bytes/s per authenticated connection; reads pause above it (default 65536; "
	    "0: no limit)"),
	CFG("rate-burst", OPT_UINT, rate_burst, "BYTES",
	    "input an authenticated connection may send at once (default 262144)"),
	CFG("preauth-rate-limit", OPT_UINT, preauth_rate_limit, "BYTES",
	    "input bytes/s per connection before authentication (default 8192; 0: no limit)"),
	CFG("preauth-rate-burst", OPT_UINT, preauth_rate_burst, "BYTES",
	    "input a connection may send at once before authentication (default 32768)"),
	CFG("auth-fail-ip-max", OPT_UINT, auth_fail_ip_max, "N",
	    "failed logins from one address (halving each minute) after which its logins are "
	    "refused (default 100; 0: no limit)"),
	CFG("auth-fail-user-max", OPT_UINT, auth_fail_user_max, "N",
	    "failed logins for one user name after which its logins are refused (default 5; "
	    "0: no limit)"),
	CFG("http-max-connections", OPT_UINT, http_max_connections, "N",
	    "HTTP connections held at once; more are closed at accept (default 1024)"),
	CFG("http-max-per-ip", OPT_UINT, http_max_per_ip, "N",
	    "HTTP connections from one address (default 64; 0: no limit)"),
	CFG("http-timeout", OPT_SECS, http_timeout, "S",
	    "close an HTTP connection silent for S seconds (default 10)"),
	CFG("resume-timeout", OPT_UINT, resume_timeout, "S",
	    "keep a stream-managed session (XEP-0198) whose connection broke for S seconds, "
	    "for resumption (default 300; 0: no resumption)"),
	CFG("sm-max-queue", OPT_SIZE, sm_max_queue, "BYTES",
	    "unacknowledged stanzas held per stream-managed session (default 262144)"),
	STRN("service-address", service_address, "HOST[:PORT]",
	     "where moved clients reconnect (see-other-host): the service's address, never the "
	     "instance's (default: the domain)"),
	STRN("control-token-file", control_token_file, "FILE",
	     "token (16..4096 bytes) that POST /control/move on the HTTP endpoint must carry in "
	     "X-Chatd-Control-Token; without it the endpoint is off"),
	CFG("insecure-permissions", OPT_BOOL, insecure_permissions, NULL,
	    "accept a --users or --cluster-secret-file that others can read"),
	CFG("log-level", OPT_LEVEL, log_level, "L", "debug, info, warn, error, off (default info)"),
	STRN("ports-file", ports_file, "FILE",
	     "once listening, write the bound addresses there (listen=, websocket=, http=, "
	     "cluster= lines, "
	     "atomically): with port 0 the kernel picks free ports, with no race"),
	/* cluster routing (docs/cluster.md) */
	STRN("cluster-listen", cluster_listen, "ADDR:PORT",
	     "listen for cluster links from other chatd instances (enables cluster mode)"),
	STRN("cluster-secret-file", cluster_secret_file, "FILE",
	     "shared secret of the cluster links (16..4096 bytes; required in cluster mode)"),
	STR(peers, "HOST:PORT,...", "cluster peers to link to"),
	STRN("peers-file", peers_file, "FILE",
	     "cluster peers, one HOST:PORT per line; re-read when it changes"),
	STRN("peers-dns", peers_dns, "NAME[:PORT]",
	     "cluster peers from a name's A/AAAA records (re-resolved every 10 s)"),
	CFG("cluster-keepalive", OPT_SECS, cluster_keepalive, "S",
	    "a silent cluster link is dead after S seconds (default 10)"),
};
#define CONFIG_NOPTS (sizeof(config_opts) / sizeof(config_opts[0]))

static void config_defaults(struct config *cfg)
{
	struct rlimit rl;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->listen, sizeof(cfg->listen), "0.0.0.0:5222");
	snprintf(cfg->http, sizeof(cfg->http), "0.0.0.0:5280");
	snprintf(cfg->domain, sizeof(cfg->domain), "localhost");
	snprintf(cfg->version_label, sizeof(cfg->version_label), "%s", rainbow_version);
	if (gethostname(cfg->instance, sizeof(cfg->instance)) != 0)
		snprintf(cfg->instance, sizeof(cfg->instance), "chatd");
	cfg->instance[sizeof(cfg->instance) - 1] = '\0';
	cfg->ping_interval = 60;
	cfg->ping_timeout = 30;
	cfg->auth_timeout = 30;
	cfg->max_connections = 10000;
	/* Leave room for the listener, HTTP clients, the users file and logs. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		if (rl.rlim_cur > 1000100)
			cfg->max_connections = 1000000;
		else if (rl.rlim_cur > 200)
			cfg->max_connections = (unsigned)(rl.rlim_cur - 100);
		else
			cfg->max_connections = (unsigned)(rl.rlim_cur / 2 + 1);
	}
	snprintf(cfg->tls_min_version, sizeof(cfg->tls_min_version), "1.2");
	cfg->max_stanza = 65536;
	cfg->max_depth = 32;
	cfg->max_output = 262144;
	cfg->drain_timeout = 300;
	cfg->rate_limit = 65536;
	cfg->rate_burst = 262144;
	cfg->preauth_rate_limit = 8192;
	cfg->preauth_rate_burst = 32768;
	cfg->auth_fail_ip_max = 100;
	cfg->auth_fail_user_max = 5;
	cfg->http_max_connections = 1024;
	cfg->http_max_per_ip = 64;
	cfg->http_timeout = 10;
	cfg->resume_timeout = 300;
	cfg->sm_max_queue = 262144;
	cfg->cluster_keepalive = 10;
	cfg->log_level = LOG_INFO;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on", "" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(v, yes[i]) == 0)
			return *out = 1, 0;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcasecmp(v, no[i]) == 0)
			return *out = 0, 0;
	return -EINVAL;
}

static int parse_ull(const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;

	if (!*v || !isdigit((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno || *end || *out > max)
		return -EINVAL;
	return 0;
}

/* Stores value v for option o; from names where it came from, for errors. */
static int opt_set(struct config *cfg, const struct opt *o, const char *v, const char *from)
{
	char *field = (char *)cfg + o->off;
	unsigned long long n;
	int b;

	switch (o->kind) {
	case OPT_STR:
		if (strlen(v) >= o->size)
			goto bad;
		memcpy(field, v, strlen(v) + 1);
		return 0;
	case OPT_BOOL:
		if (parse_bool(v, &b) != 0)
			goto bad;
		*(int *)field = b;
		return 0;
	case OPT_UINT:
		if (parse_ull(v, UINT_MAX, &n) != 0)
			goto bad;
		*(unsigned *)field = (unsigned)n;
		return 0;
	case OPT_SECS: {
		double d;

		/* A bare number is seconds; a fraction of a second is refused
		 * rather than silently rounded. */
		if (duration_parse(v, (double)UINT_MAX, &d) != 0 || d != (double)(unsigned)d)
			goto bad;
		*(unsigned *)field = (unsigned)d;
		return 0;
	}
	case OPT_SIZE:
		if (parse_ull(v, (unsigned long long)1 << 40, &n) != 0)
			goto bad;
		*(size_t *)field = (size_t)n;
		return 0;
	case OPT_LEVEL:
		if (log_level_parse(v, (enum log_level *)field) != 0)
			goto bad;
		return 0;
	}
bad:
	fprintf(stderr, "chatd: bad value for --%s (from %s): \"%s\"\n", o->name, from, v);
	return -EINVAL;
}

static void env_name(const struct opt *o, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "CHATD_");

	for (const char *p = o->name; *p && n + 1 < size; p++)
		buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	buf[n] = '\0';
}

static const struct opt *opt_find(const char *name)
{
	for (size_t i = 0; i < CONFIG_NOPTS; i++)
		if (strcmp(config_opts[i].name, name) == 0)
			return &config_opts[i];
	return NULL;
}

static int config_env(struct config *cfg)
{
	const char *v;
	char name[64];

	/* The Kubernetes downward API and the image build give these two. */
	v = getenv("POD_NAME");
	if (v && *v && opt_set(cfg, opt_find("instance"), v, "POD_NAME") != 0)
		return -EINVAL;
	v = getenv("CHATD_VERSION");
	if (v && *v && opt_set(cfg, opt_find("version-label"), v, "CHATD_VERSION") != 0)
		return -EINVAL;
	for (size_t i = 0; i < CONFIG_NOPTS; i++) {
		env_name(&config_opts[i], name, sizeof(name));
		v = getenv(name);
		if (v && opt_set(cfg, &config_opts[i], v, name) != 0)
			return -EINVAL;
	}
	return 0;
}

int config_check_private(const char *path, const char *flag, char *err, size_t errlen)
{
	struct stat st;
	mode_t bad = S_IRWXO | S_IWGRP;

	if (stat(path, &st) != 0) {
		int e = errno;

		snprintf(err, errlen, "%s %s: %s", flag, path, strerror(e));
		return -e;
	}
	if (st.st_uid != 0)
		bad |= S_IRGRP;
	if (!(st.st_mode & bad))
		return 0;
	snprintf(err, errlen,
		 "%s %s is %s by %s (mode %04o, owner uid %u): chmod 600 it (0440 is fine when "
		 "root owns it), or start with --insecure-permissions",
		 flag, path, st.st_mode & (S_IWOTH | S_IWGRP) ? "writable" : "readable",
		 st.st_mode & S_IRWXO ? "others" : "its group", (unsigned)(st.st_mode & 07777),
		 (unsigned)st.st_uid);
	return -EACCES;
}

void config_usage(const char *prog)
{
	char name[64], left[96];

	printf("usage: %s [flags]\n"
	       "       %s passwd --users FILE USER   (password read from stdin)\n\n"
	       "An XMPP (RFC 6120/6121) chat server. Every flag can also be set from the\n"
	       "environment variable shown (booleans: 1/0, true/false); flags win.\n\n",
	       prog, prog);
	for (size_t i = 0; i < CONFIG_NOPTS; i++) {
		const struct opt *o = &config_opts[i];

		env_name(o, name, sizeof(name));
		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		printf("  %-28s %s\n  %-28s [env %s]\n", left, o->help, "", name);
	}
	printf("  %-28s %s\n", "--help", "this text");
	printf("  %-28s %s\n", "--version", "print the build's version and exit");
	printf("\nSignals: SIGTERM/SIGINT drain (not ready, listener closed, connections kept\n"
	       "until they close or --drain-timeout); a second one shuts down at once.\n");
}

int config_load(struct config *cfg, int argc, char **argv)
{
	struct option lopts[CONFIG_NOPTS + 3];
	int idx, c;

	config_defaults(cfg);
	if (config_env(cfg) != 0)
		return 2;
	for (size_t i = 0; i < CONFIG_NOPTS; i++) {
		lopts[i].name = config_opts[i].name;
		/* A boolean flag takes an optional =VALUE (--auth-any=0). */
		lopts[i].has_arg =
			config_opts[i].kind == OPT_BOOL ? optional_argument : required_argument;
		lopts[i].flag = NULL;
		lopts[i].val = 1000 + (int)i;
	}
	lopts[CONFIG_NOPTS] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[CONFIG_NOPTS + 1] = (struct option){ "version", no_argument, NULL, 'V' };
	lopts[CONFIG_NOPTS + 2] = (struct option){ NULL, 0, NULL, 0 };
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", lopts, &idx)) != -1) {
		if (c == 'h') {
			config_usage(argv[0]);
			return 1;
		}
		if (c == 'V') {
			printf("chatd %s\n", rainbow_version);
			return 1;
		}
		if (c < 1000 || c >= 1000 + (int)CONFIG_NOPTS) {
			fprintf(stderr, "Try '%s --help'.\n", argv[0]);
			return 2;
		}
		const struct opt *o = &config_opts[c - 1000];
		if (opt_set(cfg, o, optarg ? optarg : "1", "command line") != 0)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "chatd: unexpected argument \"%s\"\nTry '%s --help'.\n",
			argv[optind], argv[0]);
		return 2;
	}
	if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0')) {
		fprintf(stderr, "chatd: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (strcmp(cfg->tls_min_version, "1.2") != 0 && strcmp(cfg->tls_min_version, "1.3") != 0) {
		fprintf(stderr, "chatd: --tls-min-version must be 1.2 or 1.3\n");
		return 2;
	}
	if (cfg->require_tls && !cfg->tls_cert[0]) {
		fprintf(stderr, "chatd: --require-tls needs --tls-cert and --tls-key\n");
		return 2;
	}
	if (cfg->auth_any && cfg->users[0]) {
		fprintf(stderr, "chatd: --auth-any and --users exclude each other\n");
		return 2;
	}
	/* cluster routing: no cluster without a secret */
	if (cfg->cluster_listen[0] && !cfg->cluster_secret_file[0]) {
		fprintf(stderr, "chatd: --cluster-listen needs --cluster-secret-file "
				"(or CHATD_CLUSTER_SECRET_FILE)\n");
		return 2;
	}
	if (!cfg->cluster_listen[0] && (cfg->peers[0] || cfg->peers_file[0] || cfg->peers_dns[0])) {
		fprintf(stderr, "chatd: --peers, --peers-file and --peers-dns need "
				"--cluster-listen\n");
		return 2;
	}
	if (cfg->cluster_listen[0] && cfg->cluster_keepalive < 1) {
		fprintf(stderr, "chatd: --cluster-keepalive must be >= 1\n");
		return 2;
	}
	if ((cfg->rate_limit && cfg->rate_burst < 4096) ||
	    (cfg->preauth_rate_limit && cfg->preauth_rate_burst < 4096)) {
		fprintf(stderr, "chatd: --rate-burst and --preauth-rate-burst must be >= 4096 "
				"when their rate limit is on\n");
		return 2;
	}
	if (cfg->ping_interval > CONFIG_TIMEOUT_MAX || cfg->ping_timeout > CONFIG_TIMEOUT_MAX ||
	    cfg->auth_timeout > CONFIG_TIMEOUT_MAX || cfg->drain_timeout > CONFIG_TIMEOUT_MAX ||
	    cfg->http_timeout > CONFIG_TIMEOUT_MAX || cfg->resume_timeout > CONFIG_TIMEOUT_MAX) {
		fprintf(stderr,
			"chatd: a timeout is too large (ping-interval, ping-timeout, "
			"auth-timeout, drain-timeout, http-timeout and resume-timeout <= %u s)\n",
			CONFIG_TIMEOUT_MAX);
		return 2;
	}
	if (cfg->max_stanza < 1024 || cfg->max_depth < 2 || cfg->max_output < 4096 ||
	    cfg->max_connections < 1 || cfg->ping_timeout < 1 || cfg->auth_timeout < 1 ||
	    cfg->http_max_connections < 1 || cfg->http_timeout < 1) {
		fprintf(stderr, "chatd: a limit is too small (max-stanza >= 1024, max-depth >= 2, "
				"max-output >= 4096, max-connections, ping-timeout, "
				"auth-timeout, http-max-connections and http-timeout >= 1)\n");
		return 2;
	}
	if (cfg->sm_max_queue < cfg->max_stanza + 8192 || cfg->sm_max_queue > 524288) {
		fprintf(stderr,
			"chatd: --sm-max-queue must hold one stanza of --max-stanza and "
			"its stamps (>= max-stanza + 8192) and fit a cluster frame when the "
			"session moves (<= 524288)\n");
		return 2;
	}
	return 0;
}
