/*
 * chatload's command line: option table, validation, defaults, --help.
 */
#include "opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "choice.h"
#include "duration.h"
#include "version.h"

void opts_usage(FILE *f)
{
	fputs("usage: chatload [options]\n"
	      "       chatload merge [--report FILE] PART.json...   (chatload merge --help)\n"
	      "Keeps XMPP clients connected and talking; accounts for every connection and "
	      "message.\n"
	      "\n"
	      "  --server ADDR:PORT        server to connect to (repeatable; clients spread\n"
	      "                            round-robin); default 127.0.0.1:5222\n"
	      "  --domain NAME             XMPP domain (default localhost)\n"
	      "  --clients N               concurrent clients (default 10)\n"
	      "  --ramp N/s                first logins per second (default 200/s); a client\n"
	      "                            that logged out is replaced at once\n"
	      "  --source-ips A-B          IPv4 source address range, e.g. 127.0.0.2-127.0.0.20\n"
	      "  --user-pattern P          user names, one %d for the client number (default "
	      "user%d)\n"
	      "  --password S              password (default secret)\n"
	      "  --auth M                  auto|plain|scram|anonymous (default auto: PLAIN when\n"
	      "                            offered, else SCRAM-SHA-256)\n"
	      "  --tls                     STARTTLS before authenticating (certificate not "
	      "checked)\n"
	      "  --stream-management       XEP-0198: enable resumable stream management, ack,\n"
	      "                            follow see-other-host and resume the session there\n"
	      "                            (fate migrated; report: migrated, resumed,\n"
	      "                            resume_failed, reconnect_gap_ms)\n"
	      "  --message-rate R          messages per second per client (default 0)\n"
	      "  --target full|bare        address messages to full JIDs (default) or bare JIDs\n"
	      "  --offline-share F         share 0..1 of messages sent to users never online\n"
	      "                            (they must bounce; default 0)\n"
	      "  --ping-interval DUR       our XEP-0199 ping period, 0 = off (default 30s)\n"
	      "  --ping-timeout DUR        pong deadline (default 15s)\n"
	      "  --login-timeout DUR       connect to established deadline (default 30s)\n"
	      "  --loss-timeout DUR        a message not delivered by then is lost (default 10s)\n"
	      "  --close-timeout DUR       wait for the server's stream close (default 5s)\n"
	      "  --lifetime SPEC           none | fixed:60s | exp:60s | uniform:30s-90s |\n"
	      "                            lognormal:MEDIAN,SIGMA (heavy tail, e.g. 10s,1.5): a\n"
	      "                            client logs out after it and a new one logs in\n"
	      "                            (default none)\n"
	      "  --duration DUR            run length, 0 = until SIGINT (default 0)\n"
	      "  --progress-interval DUR   period of progress lines (default 1s)\n"
	      "  --report FILE.json        write the JSON report there\n"
	      "  --timeline FILE.csv       write the per-second timeline there\n"
	      "  --expect-zero-drops       exit 1 if a connection dropped or timed out\n"
	      "  --expect-zero-loss        exit 1 if a message was lost or misdelivered\n"
	      "  --expect-no-server-close  exit 1 if the server closed a stream\n"
	      "  --workers N               fork N worker processes (default 0: this process);\n"
	      "                            their clients message each other\n"
	      "  --pods K --pod-index I    run share I of a run split over K processes\n"
	      "                            (pods): one --coordinator-listen ADDR:PORT, the\n"
	      "                            others --coordinator HOST:PORT (docs/chatload.md)\n"
	      "  --seed N                  random seed (default: time)\n"
	      "  --quiet                   no progress output\n"
	      "  --log-level L             debug|info|warn|error|off (default warn)\n"
	      "  --help, --version\n"
	      "\n"
	      "Exit status: 0; 1 when an --expect-* was violated or no client ever logged in;\n"
	      "2 for bad usage.\n",
	      f);
}

int opts_parse_duration(const char *s, double *out)
{
	return duration_parse(s, HUGE_VAL, out);
}

/* A lifetime's duration: above 0 (else why is nonpositive), at most 30 days. */
static int lifetime_duration(const char *s, const char *nonpositive, double *out, const char **why)
{
	if (opts_parse_duration(s, out) < 0) {
		*why = "bad duration (use e.g. 500ms, 60s, 2m, 1h)";
		return -EINVAL;
	}
	if (*out <= 0) {
		*why = nonpositive;
		return -EINVAL;
	}
	if (*out > OPTS_DURATION_MAX) {
		*why = "longer than 30 days";
		return -EINVAL;
	}
	return 0;
}

/* "MEDIAN,SIGMA" after "lognormal:". */
static int parse_lognormal(const char *arg, struct lifetime *out, const char **why)
{
	char buf[64], *comma, *end;

	out->kind = LIFETIME_LOGNORMAL;
	snprintf(buf, sizeof(buf), "%s", arg);
	comma = strchr(buf, ',');
	if (!comma) {
		*why = "lognormal needs MEDIAN,SIGMA, e.g. lognormal:10s,1.5";
		return -EINVAL;
	}
	*comma = '\0';
	if (lifetime_duration(buf, "the median must be positive", &out->a, why) < 0)
		return -EINVAL;
	errno = 0;
	out->b = strtod(comma + 1, &end);
	if (errno || end == comma + 1 || *end || !(out->b > 0) ||
	    out->b > OPTS_LOGNORMAL_SIGMA_MAX) {
		*why = "lognormal SIGMA must be a number above 0, at most 10";
		return -EINVAL;
	}
	return 0;
}

/*
 * The standard normal quantile: Acklam's rational approximation (relative
 * error 1.2e-9), then one Halley step on erfc, good to a few ulps.
 */
static double normal_quantile(double p)
{
	static const double a[] = { -3.969683028665376e+01, 2.209460984245205e+02,
				    -2.759285104469687e+02, 1.383577518672690e+02,
				    -3.066479806614716e+01, 2.506628277459239e+00 };
	static const double b[] = { -5.447609879822406e+01, 1.615858368580409e+02,
				    -1.556989798598866e+02, 6.680131188771972e+01,
				    -1.328068155288572e+01 };
	static const double c[] = { -7.784894002430293e-03, -3.223964580411365e-01,
				    -2.400758277161838e+00, -2.549732539343734e+00,
				    4.374664141464968e+00,  2.938163982698783e+00 };
	static const double d[] = { 7.784695709041462e-03, 3.224671290700398e-01,
				    2.445134137142996e+00, 3.754408661907416e+00 };
	double q, r, x, e, u;

	if (p <= 0)
		return -INFINITY;
	if (p >= 1)
		return INFINITY;
	if (p < 0.02425) {
		q = sqrt(-2 * log(p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	} else if (p > 1 - 0.02425) {
		q = sqrt(-2 * log(1 - p));
		x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	} else {
		q = p - 0.5;
		r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
	}
	e = 0.5 * erfc(-x / sqrt(2)) - p;
	u = e * sqrt(2 * M_PI) * exp(x * x / 2);
	return x - u / (1 + x * u / 2);
}

int opts_parse_lifetime(const char *s, struct lifetime *out, const char **why)
{
	const char *arg;
	char buf[64];
	char *dash;

	memset(out, 0, sizeof(*out));
	*why = "expected none, fixed:DUR, exp:DUR, uniform:DUR-DUR or lognormal:DUR,SIGMA";
	if (strcmp(s, "none") == 0)
		return 0;
	arg = strchr(s, ':');
	if (!arg || strlen(arg + 1) >= sizeof(buf))
		return -EINVAL;
	arg++;
	if (strncmp(s, "lognormal:", 10) == 0)
		return parse_lognormal(arg, out, why);
	if (strncmp(s, "fixed:", 6) == 0 || strncmp(s, "exp:", 4) == 0) {
		out->kind = s[0] == 'f' ? LIFETIME_FIXED : LIFETIME_EXP;
		return lifetime_duration(arg, "the duration must be positive", &out->a, why);
	}
	if (strncmp(s, "uniform:", 8) != 0)
		return -EINVAL;
	out->kind = LIFETIME_UNIFORM;
	strcpy(buf, arg);
	/* LOW ends where its number and unit end: "1e-3s-2s" has a '-' inside LOW. */
	(void)strtod(buf, &dash);
	dash += strspn(dash, "msh");
	if (*dash != '-')
		dash = strchr(buf, '-');
	if (!dash) {
		*why = "uniform needs LOW-HIGH, e.g. uniform:30s-90s";
		return -EINVAL;
	}
	*dash = '\0';
	if (opts_parse_duration(buf, &out->a) < 0 || opts_parse_duration(dash + 1, &out->b) < 0) {
		*why = "bad duration (use e.g. 500ms, 60s, 2m, 1h)";
		return -EINVAL;
	}
	if (out->a <= 0 || out->b < out->a) {
		*why = "uniform needs 0 < LOW <= HIGH";
		return -EINVAL;
	}
	if (out->b > OPTS_DURATION_MAX) {
		*why = "longer than 30 days";
		return -EINVAL;
	}
	return 0;
}

double opts_lifetime_draw(const struct lifetime *l, double r01)
{
	switch (l->kind) {
	case LIFETIME_FIXED:
		return l->a;
	case LIFETIME_EXP: {
		double v = -l->a * log(1.0 - r01);

		return v < OPTS_DURATION_MAX ? v : OPTS_DURATION_MAX;
	}
	case LIFETIME_UNIFORM:
		return l->a + (l->b - l->a) * r01;
	case LIFETIME_LOGNORMAL: {
		/* median * e^(sigma z): the tail is cut at the 30-day bound */
		double z = normal_quantile(r01);
		double v = isfinite(z) ? l->a * exp(l->b * z) : z > 0 ? INFINITY : 0;

		return v < OPTS_DURATION_MAX ? v : OPTS_DURATION_MAX;
	}
	case LIFETIME_NONE:
		break;
	}
	return -1;
}

unsigned opts_total_workers(const struct load_opts *o)
{
	unsigned w = o->workers ? o->workers : 1;

	return w * (o->pods ? o->pods : 1);
}

void opts_share(const struct load_opts *o, unsigned gw, unsigned *first, unsigned *count)
{
	unsigned n = opts_total_workers(o);
	unsigned per = o->clients / n, extra = o->clients % n;

	*first = gw * per + (gw < extra ? gw : extra);
	*count = per + (gw < extra ? 1 : 0);
}

void opts_user_name(const struct load_opts *o, unsigned n, char *buf, size_t size)
{
	size_t len = 0;

	/* The pattern was validated: exactly one %d, other '%' only as "%%". */
	for (const char *p = o->user_pattern; *p && len + 1 < size; p++) {
		if (p[0] == '%' && p[1] == 'd') {
			int w = snprintf(buf + len, size - len, "%u", n);
			len += w > 0 ? (size_t)w : 0;
			if (len >= size)
				len = size - 1;
			p++;
		} else if (p[0] == '%' && p[1] == '%') {
			buf[len++] = '%';
			p++;
		} else {
			buf[len++] = *p;
		}
	}
	buf[len] = '\0';
}

static int opts_check_pattern(const char *p)
{
	int conversions = 0;

	for (; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == 'd')
			conversions++;
		else if (p[1] != '%')
			return -EINVAL;
		p++;
	}
	return conversions == 1 ? 0 : -EINVAL;
}

int opts_parse_ip_range(const char *s, uint32_t *first, uint32_t *last)
{
	char buf[64];
	char *dash;
	struct in_addr a, b;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	if (dash) {
		if (inet_pton(AF_INET, dash + 1, &b) != 1)
			return -EINVAL;
	} else {
		b = a;
	}
	*first = ntohl(a.s_addr);
	*last = ntohl(b.s_addr);
	return *first <= *last && *last - *first < 65536 ? 0 : -EINVAL;
}

static int opts_parse_uint(const char *s, unsigned long max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (end == s || *end || errno || v > max || s[0] == '-')
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int opts_parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return end == s || *end || errno || !isfinite(*out) || *out < 0 ? -EINVAL : 0;
}

int opts_parse_rate(const char *s, double *out)
{
	char buf[32];
	size_t n = strlen(s);
	double v;

	if (n >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	if (n > 2 && strcmp(buf + n - 2, "/s") == 0)
		buf[n - 2] = '\0';
	if (opts_parse_double(buf, &v) < 0 || v <= 0)
		return -EINVAL;
	*out = v;
	return 0;
}

static void opts_defaults(struct load_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->domain = "localhost";
	o->clients = 10;
	o->ramp = 200;
	o->user_pattern = "user%d";
	o->password = "secret";
	o->ping_interval = 30;
	o->ping_timeout = 15;
	o->login_timeout = 30;
	o->loss_timeout = 10;
	o->close_timeout = 5;
	o->progress_interval = 1;
	o->log_level = "warn";
	o->worker_index = -1;
}

static int bad(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "chatload: what is wrong" and the pointer to --help; exit status 2. */
static int bad(FILE *err, const char *fmt, ...)
{
	va_list ap;

	fputs("chatload: ", err);
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fputs("\nTry 'chatload --help' for the list of options.\n", err);
	return 2;
}

/* How a flag's value is checked and stored into struct load_opts. */
enum opt_kind {
	OPT_STR,     /* const char *: the value as it is */
	OPT_SET,     /* bool: true; no value */
	OPT_UINT,    /* unsigned in lo..hi */
	OPT_REAL,    /* double in 0..hi */
	OPT_DUR,     /* double: a duration of at most 30 days */
	OPT_DUR_POS, /* the same, above 0 */
	OPT_CHOICE,  /* an enum: the index of the value in choices ("a|b|c") */
	OPT_FUNC,    /* set() checks and stores it */
};

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off; /* of the field in struct load_opts */
	double lo, hi;
	const char *expect; /* the error's "expected ..." (NULL: "lo..hi") */
	const char *choices;
	int (*set)(struct load_opts *o, const struct opt *d, const char *a, FILE *err);
};

static int set_server(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	struct addr addr;

	if (o->nservers == OPTS_MAX_SERVERS)
		return bad(err, "at most %d --server", OPTS_MAX_SERVERS);
	if (addr_parse(a, ADDR_RESOLVE, 0, &addr) < 0)
		return bad(err, "--server %s: expected ADDR:PORT (e.g. 127.0.0.1:5222)", a);
	o->servers[o->nservers] = addr.sa;
	snprintf(o->server_names[o->nservers], sizeof(o->server_names[0]), "%s", a);
	o->nservers++;
	return 0;
}

static int set_domain(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	if (!*a || strlen(a) > 200)
		return bad(err, "--domain: expected a domain name");
	o->domain = a;
	return 0;
}

static int set_ramp(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	if (opts_parse_rate(a, &o->ramp) < 0)
		return bad(err, "--ramp %s: expected a positive rate, e.g. 500/s", a);
	return 0;
}

static int set_source_ips(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	if (opts_parse_ip_range(a, &o->src_first, &o->src_last) < 0)
		return bad(err,
			   "--source-ips %s: expected an IPv4 range A-B, e.g. 127.0.0.2-127.0.0.20",
			   a);
	return 0;
}

static int set_user_pattern(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	if (opts_check_pattern(a) < 0 || strlen(a) > 200)
		return bad(err,
			   "--user-pattern %s: needs exactly one %%d (and %%%% for a literal %%)",
			   a);
	o->user_pattern = a;
	return 0;
}

static int set_lifetime(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	const char *why;

	if (opts_parse_lifetime(a, &o->lifetime, &why) < 0)
		return bad(err, "--lifetime %s: %s", a, why);
	return 0;
}

/* --coordinator, --coordinator-listen: not resolved here, the coordinator
 * pod may not exist yet. */
static int set_hostport(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	struct addr addr;

	if (addr_parse(a, ADDR_NAME, 0, &addr) < 0)
		return bad(err, "--%s %s: expected HOST:PORT", d->name, a);
	*(const char **)(void *)((char *)o + d->off) = a;
	return 0;
}

static int set_log_level(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	if (strcmp(a, "debug") && strcmp(a, "info") && strcmp(a, "warn") && strcmp(a, "error") &&
	    strcmp(a, "off"))
		return bad(err, "--log-level %s: expected debug, info, warn, error or off", a);
	o->log_level = a;
	return 0;
}

#define FIELD(k, f) .kind = k, .off = offsetof(struct load_opts, f)
#define STR(f) FIELD(OPT_STR, f)
#define SET(f) FIELD(OPT_SET, f)
#define DUR(f) FIELD(OPT_DUR, f)
#define DUR_POS(f) FIELD(OPT_DUR_POS, f)
#define UINT(f, l, u, e) FIELD(OPT_UINT, f), .lo = l, .hi = u, .expect = e
#define REAL(f, u, e) FIELD(OPT_REAL, f), .hi = u, .expect = e
#define CHOICE(f, c, e) FIELD(OPT_CHOICE, f), .choices = c, .expect = e
#define FUNC(fn) .kind = OPT_FUNC, .set = fn
#define FUNC_AT(f, fn) FIELD(OPT_FUNC, f), .set = fn

static const struct opt opts_table[] = {
	{ "server", FUNC(set_server) },
	{ "domain", FUNC(set_domain) },
	{ "clients", UINT(clients, 1, 10000000, "a positive number") },
	{ "ramp", FUNC(set_ramp) },
	{ "source-ips", FUNC(set_source_ips) },
	{ "user-pattern", FUNC(set_user_pattern) },
	{ "password", STR(password) },
	{ "tls", SET(tls) },
	{ "stream-management", SET(stream_management) },
	{ "auth", CHOICE(auth, "auto|plain|scram|anonymous", "auto, plain, scram or anonymous") },
	{ "target", CHOICE(target, "full|bare", "full or bare") },
	{ "message-rate", REAL(message_rate, 1000, "0..1000 messages/s per client") },
	{ "offline-share", REAL(offline_share, 1, "a fraction 0..1") },
	{ "ping-interval", DUR(ping_interval) },
	{ "ping-timeout", DUR_POS(ping_timeout) },
	{ "login-timeout", DUR_POS(login_timeout) },
	{ "loss-timeout", DUR_POS(loss_timeout) },
	{ "close-timeout", DUR_POS(close_timeout) },
	{ "lifetime", FUNC(set_lifetime) },
	{ "duration", DUR(duration) },
	{ "progress-interval", DUR_POS(progress_interval) },
	{ "report", STR(report) },
	{ "timeline", STR(timeline) },
	{ "expect-zero-drops", SET(expect_zero_drops) },
	{ "expect-zero-loss", SET(expect_zero_loss) },
	{ "expect-no-server-close", SET(expect_no_server_close) },
	{ "workers", UINT(workers, 0, 64, NULL) },
	{ "pods", UINT(pods, 1, OPTS_MAX_PODS, NULL) },
	{ "pod-index", UINT(pod_index, 0, OPTS_MAX_PODS - 1, NULL) },
	{ "coordinator", FUNC_AT(coordinator, set_hostport) },
	{ "coordinator-listen", FUNC_AT(coordinator_listen, set_hostport) },
	{ "seed", UINT(seed, 0, 0xffffffffUL, "a number") },
	{ "quiet", SET(quiet) },
	{ "log-level", FUNC(set_log_level) },
};
#define OPTS_NOPTS (sizeof(opts_table) / sizeof(opts_table[0]))
/* getopt_long's answers: OPT_BASE + the index in opts_table, or these. */
#define OPT_BASE 1000
#define OPT_HELP 'h'
#define OPT_VERSION 'V'

static int set_duration(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	double v;

	if (opts_parse_duration(a, &v) < 0)
		return bad(err, "--%s %s: expected a duration (e.g. 500ms, 60s, 2m, 1h)", d->name,
			   a);
	if (v > OPTS_DURATION_MAX)
		return bad(err, "--%s %s: longer than 30 days", d->name, a);
	if (d->kind == OPT_DUR_POS && v <= 0)
		return bad(err, "--%s %s: must be positive", d->name, a);
	*(double *)(void *)((char *)o + d->off) = v;
	return 0;
}

_Static_assert(sizeof(enum opts_auth) == sizeof(unsigned) &&
		       sizeof(enum opts_target) == sizeof(unsigned),
	       "OPT_CHOICE stores an enum as unsigned");

/* Checks and stores one flag's value; 0 or 2 (the error printed). */
static int opt_set(struct load_opts *o, const struct opt *d, const char *a, FILE *err)
{
	void *field = (char *)o + d->off;
	unsigned u;
	double v;
	int i;

	switch (d->kind) {
	case OPT_STR:
		*(const char **)field = a;
		return 0;
	case OPT_SET:
		*(bool *)field = true;
		return 0;
	case OPT_UINT:
		if (opts_parse_uint(a, (unsigned long)d->hi, &u) < 0 || u < d->lo)
			break;
		*(unsigned *)field = u;
		return 0;
	case OPT_REAL:
		if (opts_parse_double(a, &v) < 0 || v > d->hi)
			break;
		*(double *)field = v;
		return 0;
	case OPT_DUR:
	case OPT_DUR_POS:
		return set_duration(o, d, a, err);
	case OPT_CHOICE:
		i = choice_index(d->choices, a);
		if (i < 0)
			break;
		*(unsigned *)field = (unsigned)i; /* an enum without negative values */
		return 0;
	case OPT_FUNC:
		return d->set(o, d, a, err);
	}
	if (d->expect)
		return bad(err, "--%s %s: expected %s", d->name, a, d->expect);
	return bad(err, "--%s %s: expected %.0f..%.0f", d->name, a, d->lo, d->hi);
}

/* getopt_long's table from opts_table, with --help and --version. */
static void opts_getopt_table(struct option *lo)
{
	for (size_t i = 0; i < OPTS_NOPTS; i++)
		lo[i] = (struct option){ opts_table[i].name,
					 opts_table[i].kind == OPT_SET ? no_argument
								       : required_argument,
					 NULL, OPT_BASE + (int)i };
	lo[OPTS_NOPTS] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	lo[OPTS_NOPTS + 1] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	lo[OPTS_NOPTS + 2] = (struct option){ NULL, 0, NULL, 0 };
}

/* What the flags say together; 0 or 2 (the error printed). */
static int opts_check(struct load_opts *o, FILE *err)
{
	struct addr addr;

	if (o->nservers == 0) {
		addr_parse("127.0.0.1:5222", 0, 0, &addr);
		o->servers[0] = addr.sa;
		strcpy(o->server_names[0], "127.0.0.1:5222");
		o->nservers = 1;
	}
	if (o->pods > 1 || o->coordinator || o->coordinator_listen) {
		if (o->pods < 2)
			return bad(err,
				   "--coordinator and --coordinator-listen need --pods 2 or more");
		if (o->workers == 0)
			return bad(err,
				   "--pods needs --workers 1 or more (worker processes per pod)");
		if (!o->coordinator == !o->coordinator_listen)
			return bad(err,
				   "--pods needs exactly one of --coordinator (report to it) and "
				   "--coordinator-listen (be it)");
		if (o->coordinator && (o->report || o->timeline))
			return bad(err,
				   "--report and --timeline belong to the --coordinator-listen "
				   "process");
	}
	if (o->pod_index >= (o->pods ? o->pods : 1))
		return bad(err, "--pod-index %u: expected below --pods %u", o->pod_index,
			   o->pods ? o->pods : 1);
	if (opts_total_workers(o) > o->clients)
		return bad(err, "%u worker processes is more than --clients %u",
			   opts_total_workers(o), o->clients);
	if (o->ping_interval > 0 && o->ping_timeout >= o->ping_interval)
		o->ping_timeout = o->ping_interval * 0.9;
	o->worker_first = 0;
	o->worker_clients = o->clients;
	return 0;
}

int opts_parse(struct load_opts *o, int argc, char **argv, FILE *err)
{
	struct option lo[OPTS_NOPTS + 3];
	int c, rc;

	opts_defaults(o);
	opts_getopt_table(lo);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (c == OPT_HELP) {
			opts_usage(stdout);
			return 1;
		}
		if (c == OPT_VERSION) {
			printf("chatload %s\n", rainbow_version);
			return 1;
		}
		if (c == ':')
			return bad(err, "%s needs a value", argv[optind - 1]);
		if (c < OPT_BASE || c >= OPT_BASE + (int)OPTS_NOPTS)
			return bad(err, "unknown option %s", argv[optind - 1]);
		rc = opt_set(o, &opts_table[c - OPT_BASE], optarg, err);
		if (rc != 0)
			return rc;
	}
	if (optind < argc)
		return bad(err, "unexpected argument %s", argv[optind]);
	return opts_check(o, err);
}
