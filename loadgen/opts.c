/*
 * chatload's command line: option table, validation, defaults, --help.
 */
#include "opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "duration.h"
#include "version.h"

enum {
	OPT_SERVER = 256,
	OPT_DOMAIN,
	OPT_CLIENTS,
	OPT_RAMP,
	OPT_SOURCE_IPS,
	OPT_USER_PATTERN,
	OPT_PASSWORD,
	OPT_TLS,
	OPT_SM,
	OPT_AUTH,
	OPT_TARGET,
	OPT_MESSAGE_RATE,
	OPT_OFFLINE_SHARE,
	OPT_PING_INTERVAL,
	OPT_PING_TIMEOUT,
	OPT_LOGIN_TIMEOUT,
	OPT_LOSS_TIMEOUT,
	OPT_CLOSE_TIMEOUT,
	OPT_LIFETIME,
	OPT_DURATION,
	OPT_PROGRESS,
	OPT_REPORT,
	OPT_TIMELINE,
	OPT_EXPECT_DROPS,
	OPT_EXPECT_LOSS,
	OPT_EXPECT_NO_SERVER_CLOSE,
	OPT_WORKERS,
	OPT_PODS,
	OPT_POD_INDEX,
	OPT_COORDINATOR,
	OPT_COORDINATOR_LISTEN,
	OPT_SEED,
	OPT_QUIET,
	OPT_LOG_LEVEL,
	OPT_HELP,
	OPT_VERSION,
};

static const struct option opts_long[] = {
	{ "server", required_argument, NULL, OPT_SERVER },
	{ "domain", required_argument, NULL, OPT_DOMAIN },
	{ "clients", required_argument, NULL, OPT_CLIENTS },
	{ "ramp", required_argument, NULL, OPT_RAMP },
	{ "source-ips", required_argument, NULL, OPT_SOURCE_IPS },
	{ "user-pattern", required_argument, NULL, OPT_USER_PATTERN },
	{ "password", required_argument, NULL, OPT_PASSWORD },
	{ "tls", no_argument, NULL, OPT_TLS },
	{ "stream-management", no_argument, NULL, OPT_SM },
	{ "auth", required_argument, NULL, OPT_AUTH },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "message-rate", required_argument, NULL, OPT_MESSAGE_RATE },
	{ "offline-share", required_argument, NULL, OPT_OFFLINE_SHARE },
	{ "ping-interval", required_argument, NULL, OPT_PING_INTERVAL },
	{ "ping-timeout", required_argument, NULL, OPT_PING_TIMEOUT },
	{ "login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT },
	{ "loss-timeout", required_argument, NULL, OPT_LOSS_TIMEOUT },
	{ "close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT },
	{ "lifetime", required_argument, NULL, OPT_LIFETIME },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "progress-interval", required_argument, NULL, OPT_PROGRESS },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "timeline", required_argument, NULL, OPT_TIMELINE },
	{ "expect-zero-drops", no_argument, NULL, OPT_EXPECT_DROPS },
	{ "expect-zero-loss", no_argument, NULL, OPT_EXPECT_LOSS },
	{ "expect-no-server-close", no_argument, NULL, OPT_EXPECT_NO_SERVER_CLOSE },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "pods", required_argument, NULL, OPT_PODS },
	{ "pod-index", required_argument, NULL, OPT_POD_INDEX },
	{ "coordinator", required_argument, NULL, OPT_COORDINATOR },
	{ "coordinator-listen", required_argument, NULL, OPT_COORDINATOR_LISTEN },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

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
	if (opts_parse_duration(buf, &out->a) < 0) {
		*why = "bad duration (use e.g. 500ms, 60s, 2m, 1h)";
		return -EINVAL;
	}
	if (out->a <= 0) {
		*why = "the median must be positive";
		return -EINVAL;
	}
	if (out->a > OPTS_DURATION_MAX) {
		*why = "longer than 30 days";
		return -EINVAL;
	}
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
		if (opts_parse_duration(arg, &out->a) < 0) {
			*why = "bad duration (use e.g. 500ms, 60s, 2m, 1h)";
			return -EINVAL;
		}
		if (out->a <= 0) {
			*why = "the duration must be positive";
			return -EINVAL;
		}
		if (out->a > OPTS_DURATION_MAX) {
			*why = "longer than 30 days";
			return -EINVAL;
		}
		return 0;
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

#define BAD(...)                                        \
	do {                                            \
		fprintf(err, "chatload: " __VA_ARGS__); \
		fputc('\n', err);                       \
		goto bad;                               \
	} while (0)

int opts_parse(struct load_opts *o, int argc, char **argv, FILE *err)
{
	struct addr addr;
	int c;
	const char *why;
	double d;

	opts_defaults(o);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts_long, NULL)) != -1) {
		const char *a = optarg;
		switch (c) {
		case OPT_SERVER:
			if (o->nservers == OPTS_MAX_SERVERS)
				BAD("at most %d --server", OPTS_MAX_SERVERS);
			if (addr_parse(a, ADDR_RESOLVE, 0, &addr) < 0)
				BAD("--server %s: expected ADDR:PORT (e.g. 127.0.0.1:5222)", a);
			o->servers[o->nservers] = addr.sa;
			snprintf(o->server_names[o->nservers], sizeof(o->server_names[0]), "%s", a);
			o->nservers++;
			break;
		case OPT_DOMAIN:
			if (!*a || strlen(a) > 200)
				BAD("--domain: expected a domain name");
			o->domain = a;
			break;
		case OPT_CLIENTS:
			if (opts_parse_uint(a, 10000000, &o->clients) < 0 || o->clients == 0)
				BAD("--clients %s: expected a positive number", a);
			break;
		case OPT_RAMP:
			if (opts_parse_rate(a, &o->ramp) < 0)
				BAD("--ramp %s: expected a positive rate, e.g. 500/s", a);
			break;
		case OPT_SOURCE_IPS:
			if (opts_parse_ip_range(a, &o->src_first, &o->src_last) < 0)
				BAD("--source-ips %s: expected an IPv4 range A-B, e.g. "
				    "127.0.0.2-127.0.0.20",
				    a);
			break;
		case OPT_USER_PATTERN:
			if (opts_check_pattern(a) < 0 || strlen(a) > 200)
				BAD("--user-pattern %s: needs exactly one %%d (and %%%% for a "
				    "literal %%)",
				    a);
			o->user_pattern = a;
			break;
		case OPT_PASSWORD:
			o->password = a;
			break;
		case OPT_TLS:
			o->tls = true;
			break;
		case OPT_SM:
			o->stream_management = true;
			break;
		case OPT_AUTH:
			if (strcmp(a, "auto") == 0)
				o->auth = OPTS_AUTH_AUTO;
			else if (strcmp(a, "plain") == 0)
				o->auth = OPTS_AUTH_PLAIN;
			else if (strcmp(a, "scram") == 0)
				o->auth = OPTS_AUTH_SCRAM;
			else if (strcmp(a, "anonymous") == 0)
				o->auth = OPTS_AUTH_ANONYMOUS;
			else
				BAD("--auth %s: expected auto, plain, scram or anonymous", a);
			break;
		case OPT_TARGET:
			if (strcmp(a, "full") == 0)
				o->target = OPTS_TARGET_FULL;
			else if (strcmp(a, "bare") == 0)
				o->target = OPTS_TARGET_BARE;
			else
				BAD("--target %s: expected full or bare", a);
			break;
		case OPT_MESSAGE_RATE:
			if (opts_parse_double(a, &o->message_rate) < 0 || o->message_rate > 1000)
				BAD("--message-rate %s: expected 0..1000 messages/s per client", a);
			break;
		case OPT_OFFLINE_SHARE:
			if (opts_parse_double(a, &o->offline_share) < 0 || o->offline_share > 1)
				BAD("--offline-share %s: expected a fraction 0..1", a);
			break;
		case OPT_PING_INTERVAL:
		case OPT_PING_TIMEOUT:
		case OPT_LOGIN_TIMEOUT:
		case OPT_LOSS_TIMEOUT:
		case OPT_CLOSE_TIMEOUT:
		case OPT_DURATION:
		case OPT_PROGRESS:
			if (opts_parse_duration(a, &d) < 0)
				BAD("--%s %s: expected a duration (e.g. 500ms, 60s, 2m, 1h)",
				    opts_long[c - OPT_SERVER].name, a);
			if (d > OPTS_DURATION_MAX)
				BAD("--%s %s: longer than 30 days", opts_long[c - OPT_SERVER].name,
				    a);
			if (c == OPT_PING_INTERVAL)
				o->ping_interval = d;
			else if (c == OPT_DURATION)
				o->duration = d;
			else if (d <= 0)
				BAD("--%s %s: must be positive", opts_long[c - OPT_SERVER].name, a);
			else if (c == OPT_PING_TIMEOUT)
				o->ping_timeout = d;
			else if (c == OPT_LOGIN_TIMEOUT)
				o->login_timeout = d;
			else if (c == OPT_LOSS_TIMEOUT)
				o->loss_timeout = d;
			else if (c == OPT_CLOSE_TIMEOUT)
				o->close_timeout = d;
			else
				o->progress_interval = d;
			break;
		case OPT_LIFETIME:
			if (opts_parse_lifetime(a, &o->lifetime, &why) < 0)
				BAD("--lifetime %s: %s", a, why);
			break;
		case OPT_REPORT:
			o->report = a;
			break;
		case OPT_TIMELINE:
			o->timeline = a;
			break;
		case OPT_EXPECT_DROPS:
			o->expect_zero_drops = true;
			break;
		case OPT_EXPECT_LOSS:
			o->expect_zero_loss = true;
			break;
		case OPT_EXPECT_NO_SERVER_CLOSE:
			o->expect_no_server_close = true;
			break;
		case OPT_WORKERS:
			if (opts_parse_uint(a, 64, &o->workers) < 0)
				BAD("--workers %s: expected 0..64", a);
			break;
		case OPT_PODS:
			if (opts_parse_uint(a, OPTS_MAX_PODS, &o->pods) < 0 || o->pods == 0)
				BAD("--pods %s: expected 1..%d", a, OPTS_MAX_PODS);
			break;
		case OPT_POD_INDEX:
			if (opts_parse_uint(a, OPTS_MAX_PODS - 1, &o->pod_index) < 0)
				BAD("--pod-index %s: expected 0..%d", a, OPTS_MAX_PODS - 1);
			break;
		case OPT_COORDINATOR:
		case OPT_COORDINATOR_LISTEN:
			/* Not resolved here: the coordinator pod may not exist yet. */
			if (addr_parse(a, ADDR_NAME, 0, &addr) < 0)
				BAD("--%s %s: expected HOST:PORT", opts_long[c - OPT_SERVER].name,
				    a);
			if (c == OPT_COORDINATOR)
				o->coordinator = a;
			else
				o->coordinator_listen = a;
			break;
		case OPT_SEED:
			if (opts_parse_uint(a, 0xffffffffUL, &o->seed) < 0)
				BAD("--seed %s: expected a number", a);
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_LOG_LEVEL:
			if (strcmp(a, "debug") && strcmp(a, "info") && strcmp(a, "warn") &&
			    strcmp(a, "error") && strcmp(a, "off"))
				BAD("--log-level %s: expected debug, info, warn, error or off", a);
			o->log_level = a;
			break;
		case OPT_HELP:
			opts_usage(stdout);
			return 1;
		case OPT_VERSION:
			printf("chatload %s\n", rainbow_version);
			return 1;
		case ':':
			BAD("%s needs a value", argv[optind - 1]);
		default:
			BAD("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		BAD("unexpected argument %s", argv[optind]);
	if (o->nservers == 0) {
		addr_parse("127.0.0.1:5222", 0, 0, &addr);
		o->servers[0] = addr.sa;
		strcpy(o->server_names[0], "127.0.0.1:5222");
		o->nservers = 1;
	}
	if (o->pods > 1 || o->coordinator || o->coordinator_listen) {
		if (o->pods < 2)
			BAD("--coordinator and --coordinator-listen need --pods 2 or more");
		if (o->workers == 0)
			BAD("--pods needs --workers 1 or more (worker processes per pod)");
		if (!o->coordinator == !o->coordinator_listen)
			BAD("--pods needs exactly one of --coordinator (report to it) and "
			    "--coordinator-listen (be it)");
		if (o->coordinator && (o->report || o->timeline))
			BAD("--report and --timeline belong to the --coordinator-listen process");
	}
	if (o->pod_index >= (o->pods ? o->pods : 1))
		BAD("--pod-index %u: expected below --pods %u", o->pod_index,
		    o->pods ? o->pods : 1);
	if (opts_total_workers(o) > o->clients)
		BAD("%u worker processes is more than --clients %u", opts_total_workers(o),
		    o->clients);
	if (o->ping_interval > 0 && o->ping_timeout >= o->ping_interval)
		o->ping_timeout = o->ping_interval * 0.9;
	o->worker_first = 0;
	o->worker_clients = o->clients;
	return 0;
bad:
	fprintf(err, "Try 'chatload --help' for the list of options.\n");
	return 2;
}
