/*
 * chatd configuration: defaults, then the environment (CHATD_<FLAG>, plus
 * POD_NAME for --instance and CHATD_VERSION for --version-label), then the
 * command line. Every flag has an environment variable; docs/chatd.md lists
 * them all and `chatd --help` prints them.
 */
#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stddef.h>

#include "log.h"

struct config {
	char listen[256];	       /* ADDR:PORT of the client listener */
	char websocket[256];	       /* ADDR:PORT of the WebSocket listener, or "" */
	char http[256];		       /* ADDR:PORT of the HTTP endpoint; "" = off */
	char domain[256];	       /* the XMPP domain served (nameprep'ed) */
	char version_label[128];       /* reported by XEP-0092 and chatd_build_info */
	char instance[128];	       /* instance (pod) name, same places */
	int auth_any;		       /* demo mode: any user name and password */
	char users[1024];	       /* users file ("" = none) */
	int allow_anonymous;	       /* offer SASL ANONYMOUS */
	int allow_plaintext_auth;      /* offer PLAIN without TLS */
	char tls_cert[1024];	       /* PEM certificate chain ("" = no TLS) */
	char tls_key[1024];	       /* PEM private key */
	int require_tls;	       /* no SASL before STARTTLS */
	char tls_ciphers[1024];	       /* TLS 1.2 cipher string ("" = TLSBIO_CIPHERS) */
	char tls_min_version[8];       /* "1.2" or "1.3" */
	unsigned ping_interval;	       /* s of client silence before we ping it */
	unsigned ping_timeout;	       /* s to answer our ping */
	unsigned auth_timeout;	       /* s from accept to a bound session */
	unsigned max_connections;      /* client connections held at once */
	size_t max_stanza;	       /* bytes per stanza after authentication */
	unsigned max_depth;	       /* element nesting inside a stanza */
	size_t max_output;	       /* bytes queued for one slow reader */
	unsigned drain_timeout;	       /* s established connections may stay after SIGTERM */
	unsigned rate_limit;	       /* bytes/s of input after authentication (0: none) */
	unsigned rate_burst;	       /* bytes the authenticated bucket holds */
	unsigned preauth_rate_limit;   /* bytes/s before authentication (0: none) */
	unsigned preauth_rate_burst;   /* bytes the pre-auth bucket holds */
	unsigned auth_fail_ip_max;     /* failed logins from one address that block it */
	unsigned auth_fail_user_max;   /* failed logins for one user name that block it */
	unsigned http_max_connections; /* HTTP connections held at once */
	unsigned http_max_per_ip;      /* HTTP connections from one address (0: no limit) */
	unsigned http_timeout;	       /* s an HTTP connection may stay silent */
	unsigned resume_timeout;       /* s a detached XEP-0198 session is kept (0: no
					  resumption) */
	size_t sm_max_queue;	       /* bytes of unacknowledged stanzas per session */
	char service_address[256];     /* HOST[:PORT] clients are moved to ("" = domain) */
	char control_token_file[1024]; /* token of POST /control/move ("" = no control) */
	/* cluster routing (server/cluster/, docs/cluster.md) */
	char cluster_listen[256];	/* ADDR:PORT for links to peers; "" = single instance */
	char cluster_secret_file[1024]; /* shared secret of the cluster links */
	char peers[4096];		/* HOST:PORT,... of peers */
	char peers_file[1024];		/* file of HOST:PORT lines, re-read on change */
	char peers_dns[256];		/* NAME[:PORT] whose A/AAAA records are the peers */
	unsigned cluster_keepalive;	/* s without a frame before a link is dead */
	int insecure_permissions;	/* accept --users / secret files others can read */
	char ports_file[1024];		/* "" or where to write the bound addresses */
	enum log_level log_level;
};

/* Stanza limit before authentication: small, since only negotiation
 * elements (starttls, auth, response) are legal there. */
#define CONFIG_PREAUTH_STANZA 8192
/* Longest timeout in seconds: deadlines are compared on a 32-bit
 * millisecond clock (srv_due()), which reads more than 2^31 ms ahead as
 * already past. */
#define CONFIG_TIMEOUT_MAX 2000000u

/*
 * Fills cfg from defaults, environment and argv. Returns 0 to run, 1 when
 * --help was printed (exit 0), 2 for a usage error (already printed to
 * stderr; exit 2).
 */
int config_load(struct config *cfg, int argc, char **argv);

/*
 * Checks that a file of secrets (--users, --cluster-secret-file) is private:
 * not readable or writable by others, not writable by its group, and
 * readable by its group only when root owns it (the shape of a Kubernetes
 * Secret volume with defaultMode 0440 and an fsGroup). 0, or -EACCES (or
 * the errno of stat) with a message naming the file, its mode and the fix
 * in err. flag names the option, for the message.
 */
int config_check_private(const char *path, const char *flag, char *err, size_t errlen);

/* Prints the usage text to stdout. */
void config_usage(const char *prog);

#endif
