/*
 * chatload's command line: every flag, its validation and its defaults.
 * Durations accept "500ms", "60s", "2m", "1h" or a bare number of seconds.
 * Lifetime specs: "none", "fixed:60s", "exp:60s" (exponential with that
 * mean), "uniform:30s-90s", "lognormal:10s,1.5" (lognormal with that
 * median and that standard deviation of the log: heavy-tailed).
 */
#ifndef CHATLOAD_OPTS_H
#define CHATLOAD_OPTS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define OPTS_MAX_SERVERS 16
#define OPTS_MAX_PODS 1024

enum lifetime_kind {
	LIFETIME_NONE = 0,
	LIFETIME_FIXED,
	LIFETIME_EXP,
	LIFETIME_UNIFORM,
	LIFETIME_LOGNORMAL
};

/* Largest sigma a lognormal lifetime takes (e^(6 sigma) spans 26 decades). */
#define OPTS_LOGNORMAL_SIGMA_MAX 10.0

struct lifetime {
	enum lifetime_kind kind;
	double a; /* seconds: fixed value, exponential mean, uniform low bound, lognormal median */
	double b; /* seconds: uniform high bound; lognormal: sigma (of the log, no unit) */
};

enum opts_auth { OPTS_AUTH_AUTO = 0, OPTS_AUTH_PLAIN, OPTS_AUTH_SCRAM, OPTS_AUTH_ANONYMOUS };
enum opts_target { OPTS_TARGET_FULL = 0, OPTS_TARGET_BARE };

struct load_opts {
	struct sockaddr_storage servers[OPTS_MAX_SERVERS];
	char server_names[OPTS_MAX_SERVERS][64]; /* as given, for the report */
	unsigned nservers;
	const char *domain;
	unsigned clients;   /* concurrent client slots (all workers) */
	double ramp;	    /* new connections per second (all workers) */
	uint32_t src_first; /* source IPv4 range, host order; 0 = none */
	uint32_t src_last;
	const char *user_pattern; /* one %d: the client slot number */
	const char *password;
	bool tls;
	bool stream_management; /* XEP-0198: enable, ack, follow see-other-host, resume */
	enum opts_auth auth;
	enum opts_target target;
	double message_rate;  /* messages/s per established client */
	double offline_share; /* 0..1: share of messages to a user never online */
	double ping_interval; /* s; 0 = we never ping */
	double ping_timeout;  /* s */
	double login_timeout; /* s, connect to established */
	double loss_timeout;  /* s */
	double close_timeout; /* s to wait for the server's </stream:stream> */
	struct lifetime lifetime;
	double duration;	  /* s; 0 = until SIGINT */
	double progress_interval; /* s between plain progress lines */
	const char *report;
	const char *timeline;
	bool expect_zero_drops;
	bool expect_zero_loss;
	bool expect_no_server_close;
	unsigned workers;	 /* 0 = run in this process; with --pods: per pod */
	unsigned pods;		 /* --pods K: the run is split over K processes (pods); 0 = 1 */
	unsigned pod_index;	 /* --pod-index: this one's share, 0..pods-1 */
	const char *coordinator; /* --coordinator HOST:PORT: report there */
	const char *coordinator_listen; /* --coordinator-listen ADDR:PORT: be the accountant */
	unsigned seed;
	bool quiet;
	const char *log_level;
	/* Set by the parent for a forked worker. */
	int worker_index;	 /* -1 in the parent or a single process */
	unsigned worker_first;	 /* first client slot of this worker */
	unsigned worker_clients; /* slots of this worker */
};

/*
 * Parses argv into o (defaults first). Returns 0 to run, 1 when --help or
 * --version was printed (exit 0), 2 on bad usage after printing a clear
 * message to err (exit 2).
 */
int opts_parse(struct load_opts *o, int argc, char **argv, FILE *err);
void opts_usage(FILE *f);

/* Longest duration any flag (and any lifetime drawn) may be: 30 days, in s. */
#define OPTS_DURATION_MAX (30 * 86400.0)

/* Parses a duration ("500ms", "60s", "2m", "1h", "60"); 0 or -EINVAL. *out is
 * finite. */
int opts_parse_duration(const char *s, double *out);
/* Parses a lifetime spec; 0 or -EINVAL with a reason in why (static string). */
int opts_parse_lifetime(const char *s, struct lifetime *out, const char **why);
/*
 * Draws one lifetime in seconds; r01 is uniform in [0,1). <0 means forever;
 * otherwise at most OPTS_DURATION_MAX (the exponential's tail is cut there),
 * so callers can count it in uint32 milliseconds.
 */
double opts_lifetime_draw(const struct lifetime *l, double r01);
/* --source-ips "A" or "A-B" (IPv4, at most 65536 addresses), host order; 0 or
 * -EINVAL. */
int opts_parse_ip_range(const char *s, uint32_t *first, uint32_t *last);
/* --ramp "N" or "N/s", a positive rate; 0 or -EINVAL. */
int opts_parse_rate(const char *s, double *out);
/* Worker processes of the whole run: pods x workers (1 for a single process). */
unsigned opts_total_workers(const struct load_opts *o);
/* The client slots of worker gw (0..opts_total_workers()-1): first, count. */
void opts_share(const struct load_opts *o, unsigned gw, unsigned *first, unsigned *count);
/* Formats the user name of slot n per the pattern into buf. */
void opts_user_name(const struct load_opts *o, unsigned n, char *buf, size_t size);

#endif
