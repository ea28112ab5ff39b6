/*
 * Options are accepted before or after the command; each option names the
 * commands it applies to, so a misplaced one is a usage error rather than
 * silently ignored.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "chart.h"
#include "choice.h"
#include "dashboard.h"
#include "deploy.h"
#include "duration.h"
#include "forecast.h"
#include "kube.h"
#include "local.h"
#include "log.h"
#include "lswitch.h"
#include "platform.h"
#include "report.h"
#include "run.h"
#include "status.h"
#include "version.h"

enum cmd {
	CMD_NONE = 0,
	CMD_DEPLOY = 1 << 0,
	CMD_STATUS = 1 << 1,
	CMD_ROLLBACK = 1 << 2,
	CMD_WATCH = 1 << 3,
	CMD_HISTORY = 1 << 4,
	CMD_PRUNE = 1 << 5,
	CMD_CHART = 1 << 6,
	CMD_LOCAL = 1 << 7,
	CMD_REPORT = 1 << 8,
	CMD_WAIT = 1 << 9,
	CMD_DASHBOARD = 1 << 10,
	CMD_ALL = 0xffff,
};

/* The arguments a command takes. */
enum cmd_args {
	ARGS_NONE,
	ARGS_SHA,     /* a SHA */
	ARGS_SHA_OPT, /* a SHA or nothing */
	ARGS_SUB,     /* its own subcommands (local) */
};

struct cli;

struct cmd_info {
	const char *name;
	enum cmd cmd;
	const char *usage;
	const char *what;
	enum cmd_args args;
	int (*run)(struct cli *c); /* its exit status */
};

static int cmd_deploy(struct cli *c);
static int cmd_status(struct cli *c);
static int cmd_rollback(struct cli *c);
static int cmd_watch(struct cli *c);
static int cmd_history(struct cli *c);
static int cmd_report(struct cli *c);
static int cmd_prune(struct cli *c);
static int cmd_chart(struct cli *c);
static int cmd_wait(struct cli *c);
static int cmd_dashboard(struct cli *c);
static int cmd_local(struct cli *c);

static const struct cmd_info cli_cmds[] = {
	{ "deploy", CMD_DEPLOY, "deploy SHA [options]",
	  "create colour chat-SHA unless it exists, wait until ready, switch new connections "
	  "to it, wait until older colours drained and delete them",
	  ARGS_SHA, cmd_deploy },
	{ "status", CMD_STATUS, "status [-o json]",
	  "every colour: state, replicas ready, connections, age, drain progress", ARGS_NONE,
	  cmd_status },
	{ "rollback", CMD_ROLLBACK, "rollback [SHA] [options]",
	  "switch back to a colour still running or kept (default: the one deselected last)",
	  ARGS_SHA_OPT, cmd_rollback },
	{ "watch", CMD_WATCH, "watch [--poll S] [--duration S] [--count N]",
	  "live per-colour connection counts (also recorded to the timeline)", ARGS_NONE,
	  cmd_watch },
	{ "history", CMD_HISTORY, "history [-o json]", "what rainbow did, from its record",
	  ARGS_NONE, cmd_history },
	{ "report", CMD_REPORT, "report [-o json|md]",
	  "drain times (t50..t100) against the forecast made at the switch, and deploy "
	  "overheads, from the state dir's history",
	  ARGS_NONE, cmd_report },
	{ "prune", CMD_PRUNE, "prune [--settle S]",
	  "delete draining colours whose count settled at 0, and failed colours", ARGS_NONE,
	  cmd_prune },
	{ "chart", CMD_CHART, "chart [--out PREFIX] [--bin S] [--drain SHA] [--report FILE]",
	  "draw the rainbow chart (PNG and SVG) from the timeline with gnuplot, switches "
	  "marked; or one colour's drain curve beside the forecast",
	  ARGS_NONE, cmd_chart },
	{ "wait", CMD_WAIT, "wait [SHA] [--for drained|live] [--timeout D]",
	  "wait until the draining colours (or SHA) have drained, or until SHA (default: the "
	  "selected colour) is live with every replica ready; reads only (deploy --no-wait's "
	  "companion)",
	  ARGS_SHA_OPT, cmd_wait },
	{ "dashboard", CMD_DASHBOARD, "dashboard [--listen ADDR:PORT] [--report FILE]",
	  "serve a live, read-only web page of the colours (rainbow chart, states, drain "
	  "progress, deploy timeline), updated every poll, and a web chat page (/chat)",
	  ARGS_NONE, cmd_dashboard },
	{ "local", CMD_LOCAL, "local up|down|status [options]",
	  "start, stop or show the local platform's switch", ARGS_SUB, cmd_local },
};
#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

enum opt_id {
	O_HELP,
	O_VERSION,
	O_PLATFORM,
	O_STATE_DIR,
	O_CHATD,
	O_NO_AUTH_ANY,
	O_CHATD_ARGS,
	O_KUBECONFIG,
	O_CONTEXT,
	O_NAMESPACE,
	O_PLATFORM_OPT,
	O_LOG_LEVEL,
	O_REPLICAS,
	O_READY_TIMEOUT,
	O_SETTLE,
	O_POLL,
	O_MAX_DRAIN,
	O_ON_MAX_DRAIN,
	O_DRAIN_ASSIST,
	O_DRAIN_ASSIST_AFTER,
	O_SHRINK,
	O_KEEP_DRAINED,
	O_KEEP_FAILED,
	O_NO_WAIT,
	O_OUTPUT,
	O_LISTEN,
	O_FORCE,
	O_KEEP_COLOURS,
	O_SWITCHES,
	O_FOLLOWER,
	O_DURATION,
	O_COUNT,
	O_OUT,
	O_BIN,
	O_DRAIN,
	O_QUIET,
	O_FOR,
	O_TIMEOUT,
	O_DRY_RUN,
	O_REPORT,
	O_MAX_VIEWERS,
	O_CHAT_WS,
	O_CHAT_DOMAIN,
	O_WEBSOCKET,
	O_NIDS
};

struct cli {
	const struct cmd_info *cmd;
	const char *argv0;
	const char *pos[4];
	int n_pos;
	unsigned char given[O_NIDS]; /* the options on the command line */
	const char *platform;
	const char *state_dir;
	char state_buf[4096];
	struct platform_opts popts;
	struct platform_kv extra[16];
	const char *log_level;
	int replicas;
	double ready_timeout, settle, poll, max_drain;
	int on_max;			  /* enum deploy_on_max */
	double assist_rate, assist_after; /* --drain-assist, --drain-assist-after (-1: not given) */
	int shrink, keep_drained, keep_failed, no_wait, quiet;
	int json;
	int dry_run;	/* deploy/rollback --dry-run */
	int wait_live;	/* wait --for live */
	double timeout; /* wait --timeout; 0: none */
	const char *listen;
	int force, keep_colours, switches, follower;
	double duration;
	int count;
	const char *out;
	double bin;
	const char *drain;
	const char *report;
	int max_viewers;
	const char *chat_ws, *chat_domain;
	const char *websocket;
};

/*
 * How an option's value is checked and stored: the kind, the field of
 * struct cli, bounds and a hint for the error. OPT_OTHER: apply_other()
 * knows.
 */
enum opt_kind {
	OPT_OTHER,
	OPT_STR,     /* const char *field = the value */
	OPT_SET,     /* int field = 1 */
	OPT_DUR,     /* double field: a duration in lo..hi (seconds) */
	OPT_DUR_POS, /* the same, above 0 */
	OPT_INT,     /* int field: an integer in lo..hi */
	OPT_CHOICE,  /* int field: the index of the value in arg ("a|b|c") */
};

struct opt {
	const char *name;
	char short_name;
	int has_arg;
	unsigned cmds;
	enum opt_id id;
	const char *arg;
	const char *help;
	enum opt_kind kind;
	size_t off;
	double lo, hi;
	const char *hint; /* what a good value is, for the error */
};

#define OTHER .kind = OPT_OTHER
#define FIELD(k, f) .kind = k, .off = offsetof(struct cli, f)
#define STR(f) FIELD(OPT_STR, f)
#define SET(f) FIELD(OPT_SET, f)
#define DUR(f, h) FIELD(OPT_DUR, f), .hi = CLI_DURATION_MAX_S, .hint = h
#define DUR_POS(f, h) FIELD(OPT_DUR_POS, f), .hi = CLI_DURATION_MAX_S, .hint = h
#define DUR_IN(f, l, u, h) FIELD(OPT_DUR, f), .lo = l, .hi = u, .hint = h
#define INT(f, l, u) FIELD(OPT_INT, f), .lo = l, .hi = u
#define CHOICE(f, h) FIELD(OPT_CHOICE, f), .hint = h

#define DRAIN_CMDS (CMD_DEPLOY | CMD_ROLLBACK | CMD_PRUNE)

static const struct opt cli_opts[] = {
	{ "help", 'h', 0, CMD_ALL, O_HELP, NULL, "this help", OTHER },
	{ "version", 0, 0, CMD_ALL, O_VERSION, NULL, "print the version", OTHER },
	{ "platform", 0, 1, CMD_ALL, O_PLATFORM, "NAME",
	  "local (default) or kubernetes (env RAINBOW_PLATFORM)", STR(platform) },
	{ "state-dir", 0, 1, CMD_ALL, O_STATE_DIR, "DIR",
	  "rainbow's files (env RAINBOW_STATE_DIR; default $XDG_STATE_HOME/rainbow "
	  "or ./.rainbow)",
	  STR(state_dir) },
	{ "chatd", 0, 1, CMD_ALL, O_CHATD, "PATH",
	  "local: the chatd binary (env RAINBOW_CHATD; default: chatd beside rainbow)",
	  STR(popts.chatd) },
	{ "no-auth-any", 0, 0, CMD_ALL, O_NO_AUTH_ANY, NULL,
	  "local: start chatd without --auth-any", OTHER },
	{ "chatd-args", 0, 1, CMD_ALL, O_CHATD_ARGS, "ARGS",
	  "local: extra chatd flags, space separated (env RAINBOW_CHATD_ARGS)",
	  STR(popts.chatd_args) },
	{ "kubeconfig", 0, 1, CMD_ALL, O_KUBECONFIG, "FILE", "kubernetes: kubeconfig file",
	  STR(popts.kubeconfig) },
	{ "context", 0, 1, CMD_ALL, O_CONTEXT, "NAME", "kubernetes: kubeconfig context",
	  STR(popts.context) },
	{ "namespace", 'n', 1, CMD_ALL, O_NAMESPACE, "NS", "kubernetes: namespace",
	  STR(popts.namespace) },
	{ "platform-opt", 'P', 1, CMD_ALL, O_PLATFORM_OPT, "KEY=VALUE",
	  "a platform-specific option (repeatable; see docs/rainbow.md)", OTHER },
	{ "log-level", 0, 1, CMD_ALL, O_LOG_LEVEL, "L", "debug, info, warn (default), error",
	  OTHER },
	{ "replicas", 'r', 1, CMD_DEPLOY, O_REPLICAS, "N", "replicas of the new colour (default 2)",
	  INT(replicas, 1, 32) },
	{ "ready-timeout", 0, 1, CMD_DEPLOY | CMD_ROLLBACK, O_READY_TIMEOUT, "S",
	  "abort when not every replica is ready after S (default 60s)",
	  DUR_POS(ready_timeout, "a duration like 60s") },
	{ "settle", 0, 1, DRAIN_CMDS | CMD_WAIT, O_SETTLE, "S",
	  "a colour is drained once its count read 0 for S (default 5s)",
	  DUR(settle, "a duration like 5s") },
	{ "poll", 0, 1, DRAIN_CMDS | CMD_WATCH | CMD_WAIT | CMD_DASHBOARD, O_POLL, "S",
	  "seconds between observations (default 1s)",
	  DUR_IN(poll, 0.01, 3600, "a duration from 10ms to 1h") },
	{ "max-drain", 0, 1, DRAIN_CMDS, O_MAX_DRAIN, "S",
	  "longest drain before --on-max-drain applies (default: none)",
	  DUR(max_drain, "a duration like 10m") },
	{ "on-max-drain", 0, 1, DRAIN_CMDS, O_ON_MAX_DRAIN, "keep|shutdown|assist",
	  "keep: stop waiting, leave it draining; shutdown: SIGTERM (system-shutdown); assist: "
	  "move its sessions at the --drain-assist rate",
	  CHOICE(on_max, "keep, shutdown or assist") },
	{ "drain-assist", 0, 1, DRAIN_CMDS, O_DRAIN_ASSIST, "RATE",
	  "assisted drain: move a draining colour's sessions to the new colour, RATE sessions/s "
	  "across the colour (e.g. 50/s; see-other-host, XEP-0198 resumption)",
	  OTHER },
	{ "drain-assist-after", 0, 1, DRAIN_CMDS, O_DRAIN_ASSIST_AFTER, "D",
	  "let the colour drain naturally for D first (default 0; with --on-max-drain assist: "
	  "--max-drain)",
	  DUR(assist_after, "a duration like 10m") },
	{ "shrink", 0, 0, DRAIN_CMDS, O_SHRINK, NULL,
	  "give back each replica of a draining colour once its count settled at 0", SET(shrink) },
	{ "keep-drained", 0, 1, DRAIN_CMDS, O_KEEP_DRAINED, "K",
	  "keep the last K drained colours scaled to 0 for rollback", INT(keep_drained, 0, 16) },
	{ "keep-failed", 0, 0, CMD_DEPLOY, O_KEEP_FAILED, NULL,
	  "keep a colour that never became ready (for inspection)", SET(keep_failed) },
	{ "dry-run", 0, 0, CMD_DEPLOY | CMD_ROLLBACK, O_DRY_RUN, NULL,
	  "print the changes it would send (kubernetes: each request), send nothing",
	  SET(dry_run) },
	{ "no-wait", 0, 0, CMD_DEPLOY | CMD_ROLLBACK, O_NO_WAIT, NULL,
	  "return after the switch; `rainbow prune` deletes drained colours later", SET(no_wait) },
	{ "output", 'o', 1,
	  CMD_STATUS | CMD_HISTORY | CMD_LOCAL | CMD_REPORT | DRAIN_CMDS | CMD_WAIT, O_OUTPUT,
	  "FORMAT",
	  "table (default) or json (deploy, rollback, prune, wait: the outcome as one object); "
	  "report: also md (Markdown)",
	  OTHER },
	{ "listen", 0, 1, CMD_LOCAL | CMD_DASHBOARD, O_LISTEN, "ADDR:PORT",
	  "local up: the switch's public address (default 127.0.0.1:5222); dashboard: its "
	  "HTTP address (default 127.0.0.1:8080)",
	  STR(listen) },
	{ "websocket", 0, 1, CMD_LOCAL, O_WEBSOCKET, "ADDR:PORT",
	  "local up: also carry XMPP over WebSocket here, to the selected colour's replicas "
	  "(default: none)",
	  STR(websocket) },
	{ "force", 'f', 0, CMD_LOCAL, O_FORCE, NULL,
	  "local down: do not ask, even with connections open", SET(force) },
	{ "switches", 0, 1, CMD_LOCAL, O_SWITCHES, "N",
	  "local up: switch processes sharing the public port (1-16; each carries ~9,700 "
	  "connections at 20,000 descriptors; default: as last time, else 1)",
	  INT(switches, 1, LSWITCH_SWITCHES_MAX) },
	{ "follower", 0, 0, CMD_LOCAL, O_FOLLOWER, NULL,
	  "local serve: run as a follower of a leader switch (started by the switch itself)",
	  SET(follower) },
	{ "keep-colours", 0, 0, CMD_LOCAL, O_KEEP_COLOURS, NULL,
	  "local down: stop only the switch, leave the chatd processes", SET(keep_colours) },
	{ "duration", 0, 1, CMD_WATCH | CMD_DASHBOARD, O_DURATION, "S",
	  "watch, dashboard: stop after S (default: Ctrl-C)", DUR(duration, NULL) },
	{ "count", 0, 1, CMD_WATCH, O_COUNT, "N", "watch: stop after N observations",
	  INT(count, 1, 100000000) },
	{ "out", 0, 1, CMD_CHART, O_OUT, "PREFIX",
	  "chart: write PREFIX.png/.svg (default STATE/chart)", STR(out) },
	{ "bin", 0, 1, CMD_CHART, O_BIN, "S", "chart: time bin (default 1s)", DUR_POS(bin, NULL) },
	{ "drain", 0, 1, CMD_CHART, O_DRAIN, "SHA",
	  "chart: colour SHA's drain curve and the forecast made at its switch instead "
	  "(default PREFIX STATE/drain-SHA)",
	  OTHER },
	{ "quiet", 'q', 0, DRAIN_CMDS | CMD_WATCH | CMD_WAIT, O_QUIET, NULL, "print only errors",
	  SET(quiet) },
	{ "for", 0, 1, CMD_WAIT, O_FOR, "drained|live",
	  "wait: until the draining colours (or SHA) drained (default), or SHA is live",
	  CHOICE(wait_live, "drained or live") },
	{ "timeout", 0, 1, CMD_WAIT, O_TIMEOUT, "D",
	  "wait: give up after D, exit 8 (default: no limit)",
	  DUR_POS(timeout, "a duration like 10m") },
	{ "report", 0, 1, CMD_DASHBOARD | CMD_CHART, O_REPORT, "FILE",
	  "dashboard, chart: show dropped connections and lost messages from this chatload "
	  "report (JSON) or timeline (CSV)",
	  STR(report) },
	{ "chat-ws", 0, 1, CMD_DASHBOARD, O_CHAT_WS, "URL",
	  "dashboard: the XMPP WebSocket URL of the chat page (default, local platform: the "
	  "switch's --websocket port on the page's host)",
	  OTHER },
	{ "chat-domain", 0, 1, CMD_DASHBOARD, O_CHAT_DOMAIN, "NAME",
	  "dashboard: the XMPP domain of the chat page (default localhost)", OTHER },
	{ "max-viewers", 0, 1, CMD_DASHBOARD, O_MAX_VIEWERS, "N",
	  "dashboard: simultaneous HTTP connections (default 256)", INT(max_viewers, 1, 10000) },
};
#define CLI_NOPTS (sizeof(cli_opts) / sizeof(cli_opts[0]))

int cli_parse_rate(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	v = strtod(s, &end);
	if (end == s || (*end && strcmp(end, "/s") != 0) || !(v >= 0.01 && v <= 100000))
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_duration(const char *s, double *out)
{
	/* Callers turn seconds into int64 ms and usleep() counts: keep them in range. */
	return duration_parse(s, CLI_DURATION_MAX_S, out);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static void usage_all(FILE *f)
{
	fprintf(f, "usage: rainbow [--platform local|kubernetes] [--state-dir DIR] COMMAND "
		   "[ARGS]\n\n"
		   "Rainbow deploys: one colour (chat-SHA) per git SHA; new connections go to\n"
		   "the newest colour, old colours drain naturally and are deleted at 0\n"
		   "connections.\n\ncommands:\n");
	for (size_t i = 0; i < CLI_NCMDS; i++)
		fprintf(f, "  %s\n      %s\n", cli_cmds[i].usage, cli_cmds[i].what);
	fprintf(f, "\n`rainbow COMMAND --help` lists the options of a command; docs/rainbow.md "
		   "has it all.\n");
}

/* The options of command cmd (global: those of every command). */
static void usage_opts(FILE *f, enum cmd cmd, int global)
{
	for (size_t i = 0; i < CLI_NOPTS; i++) {
		const struct opt *o = &cli_opts[i];
		char left[64];

		if (global ? o->cmds != CMD_ALL : !(o->cmds & cmd) || o->cmds == CMD_ALL)
			continue;
		snprintf(left, sizeof(left), "%c%c%s--%s%s%s", o->short_name ? '-' : ' ',
			 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
			 o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-30s %s\n", left, o->help);
	}
}

static void usage_cmd(FILE *f, const struct cmd_info *c)
{
	fprintf(f, "usage: rainbow %s\n\n%s.\n", c->usage, c->what);
	if (c->cmd == CMD_LOCAL)
		fprintf(f, "\n  local up      start the switch (daemon; survives rainbow)\n"
			   "  local down    stop every colour's chatd and the switch (asks while "
			   "connections are open)\n"
			   "  local status  the switch: selection and per-backend connections\n");
	fprintf(f, "\noptions:\n");
	usage_opts(f, c->cmd, 0);
	fprintf(f, "\nglobal options:\n");
	usage_opts(f, c->cmd, 1);
}

static int usage_error(const struct cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rainbow: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry `rainbow %s%s--help`\n", c->cmd ? c->cmd->name : "",
		c->cmd ? " " : "");
	return 2;
}

static const struct opt *find_opt(const char *arg, const char **value)
{
	*value = NULL;
	if (arg[1] == '-') {
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);

		for (size_t i = 0; i < CLI_NOPTS; i++)
			if (strlen(cli_opts[i].name) == len &&
			    strncmp(cli_opts[i].name, name, len) == 0) {
				if (eq)
					*value = eq + 1;
				return &cli_opts[i];
			}
		return NULL;
	}
	for (size_t i = 0; i < CLI_NOPTS; i++)
		if (cli_opts[i].short_name && arg[1] == cli_opts[i].short_name) {
			if (arg[2])
				*value = arg + 2;
			return &cli_opts[i];
		}
	return NULL;
}

/* "bad --NAME VALUE (what a good value is)": exit 2. */
static int bad_value(const struct cli *c, const struct opt *o, const char *v)
{
	if (o->hint)
		return usage_error(c, "bad --%s %s (%s)", o->name, v, o->hint);
	if (o->kind == OPT_INT)
		return usage_error(c, "bad --%s %s (%.0f..%.0f)", o->name, v, o->lo, o->hi);
	return usage_error(c, "bad --%s %s", o->name, v);
}

static int add_platform_opt(struct cli *c, const char *v)
{
	const char *eq = strchr(v, '=');
	struct platform_kv *kv;

	if (!eq || eq == v || c->popts.n_extra >= 16 || (size_t)(eq - v) >= sizeof(kv->key) ||
	    strlen(eq + 1) >= sizeof(kv->value))
		return usage_error(c, "bad --platform-opt %s (want KEY=VALUE)", v);
	kv = &c->extra[c->popts.n_extra++];
	snprintf(kv->key, sizeof(kv->key), "%.*s", (int)(eq - v), v);
	snprintf(kv->value, sizeof(kv->value), "%s", eq + 1);
	return 0;
}

/* -o table|json, and md for report. */
static int set_output(struct cli *c, const char *v)
{
	int report = c->cmd && c->cmd->cmd == CMD_REPORT;

	if (strcmp(v, "json") == 0)
		c->json = 1;
	else if (strcmp(v, "table") == 0)
		c->json = 0;
	else if (strcmp(v, "md") == 0 && report)
		c->json = 2;
	else
		return usage_error(c, "bad --output %s (table or json%s)", v,
				   report ? " or md" : "");
	return 0;
}

/* The options with checks of their own (OPT_OTHER). */
static int apply_other(struct cli *c, const struct opt *o, const char *v)
{
	enum log_level l;

	switch (o->id) {
	case O_HELP:
		if (c->cmd)
			usage_cmd(stdout, c->cmd);
		else
			usage_all(stdout);
		return 1;
	case O_VERSION:
		printf("rainbow %s\n", rainbow_version);
		return 1;
	case O_NO_AUTH_ANY:
		c->popts.auth_any = 0;
		return 0;
	case O_PLATFORM_OPT:
		return add_platform_opt(c, v);
	case O_OUTPUT:
		return set_output(c, v);
	case O_LOG_LEVEL:
		if (log_level_parse(v, &l) != 0)
			return usage_error(c, "bad --log-level %s", v);
		c->log_level = v;
		return 0;
	case O_DRAIN_ASSIST:
		if (cli_parse_rate(v, &c->assist_rate) != 0)
			return usage_error(c,
					   "bad --drain-assist %s (sessions per second, like 50/s; "
					   "0.01 to 100000)",
					   v);
		return 0;
	case O_CHAT_WS:
		if (strncmp(v, "ws://", 5) != 0 && strncmp(v, "wss://", 6) != 0)
			return usage_error(
				c, "bad --chat-ws %s (want ws://HOST:PORT/xmpp-websocket)", v);
		c->chat_ws = v;
		return 0;
	case O_CHAT_DOMAIN:
		if (!*v || strlen(v) > 255 || strpbrk(v, "@/ \"'<>&"))
			return usage_error(c, "bad --chat-domain %s", v);
		c->chat_domain = v;
		return 0;
	case O_DRAIN:
		if (!platform_sha_valid(v))
			return usage_error(c,
					   "invalid SHA '%s' for --drain (want 7-40 lower-case hex "
					   "digits)",
					   v);
		c->drain = v;
		return 0;
	default:
		return 0;
	}
}

/* What to do next: 0 go on, 1 exit 0 (--help or --version printed), 2 a
 * usage error was printed (exit 2). */
static int apply_opt(struct cli *c, const struct opt *o, const char *v)
{
	void *field = (char *)c + o->off;
	double d;
	long n;
	int i;

	c->given[o->id] = 1;
	switch (o->kind) {
	case OPT_STR:
		*(const char **)field = v;
		return 0;
	case OPT_SET:
		*(int *)field = 1;
		return 0;
	case OPT_DUR:
	case OPT_DUR_POS:
		if (cli_parse_duration(v, &d) != 0 || d < o->lo || d > o->hi ||
		    (o->kind == OPT_DUR_POS && d <= 0))
			return bad_value(c, o, v);
		*(double *)field = d;
		return 0;
	case OPT_INT:
		if (parse_int(v, (long)o->lo, (long)o->hi, &n) != 0)
			return bad_value(c, o, v);
		*(int *)field = (int)n;
		return 0;
	case OPT_CHOICE:
		i = choice_index(o->arg, v);
		if (i < 0)
			return bad_value(c, o, v);
		*(int *)field = i;
		return 0;
	case OPT_OTHER:
		break;
	}
	return apply_other(c, o, v);
}

static void cli_defaults(struct cli *c)
{
	memset(c, 0, sizeof(c[0]));
	c->popts.auth_any = 1;
	c->popts.extra = c->extra;
	c->replicas = 2;
	c->ready_timeout = 60;
	c->settle = 5;
	c->poll = 1;
	c->keep_drained = -1;
	c->assist_after = -1;
	c->bin = 1;
	c->listen = LOCAL_LISTEN_DEFAULT;
	c->max_viewers = 256;
}

/* Finds the command first (options may precede it), so that option errors
 * can name it: its index in argv, or -1 (none); 2 in *rc when it is unknown. */
static int find_cmd(struct cli *c, int argc, char **argv, int *rc)
{
	*rc = 0;
	for (int i = 1; i < argc; i++) {
		const struct opt *o;
		const char *v;

		if (argv[i][0] == '-' && argv[i][1]) {
			if (strcmp(argv[i], "--") == 0)
				break;
			o = find_opt(argv[i], &v);
			if (o && o->has_arg && !v)
				i++;
			continue;
		}
		for (size_t k = 0; k < CLI_NCMDS; k++)
			if (strcmp(argv[i], cli_cmds[k].name) == 0)
				c->cmd = &cli_cmds[k];
		if (!c->cmd) {
			fprintf(stderr, "rainbow: unknown command '%s'\n", argv[i]);
			usage_all(stderr);
			*rc = 2;
		}
		return i;
	}
	return -1;
}

/* What the environment says where the command line did not. */
static void env_defaults(struct cli *c)
{
	const char *env;

	if (!c->platform)
		c->platform = getenv("RAINBOW_PLATFORM");
	if (!c->platform || !*c->platform)
		c->platform = "local";
	if (!c->popts.chatd_args && (env = getenv("RAINBOW_CHATD_ARGS")))
		c->popts.chatd_args = env;
	if (!c->state_dir && (env = getenv("RAINBOW_STATE_DIR")) && *env)
		c->state_dir = env;
	if (!c->state_dir) {
		env = getenv("XDG_STATE_HOME");
		if (env && *env)
			snprintf(c->state_buf, sizeof(c->state_buf), "%s/rainbow", env);
		else
			snprintf(c->state_buf, sizeof(c->state_buf), ".rainbow");
		c->state_dir = c->state_buf;
	}
	c->popts.state_dir = c->state_dir;
}

/* The command line into c; what to do next as apply_opt() says. */
static int parse(struct cli *c, int argc, char **argv)
{
	int rc, cmd_idx;

	cli_defaults(c);
	cmd_idx = find_cmd(c, argc, argv, &rc);
	if (rc != 0)
		return rc;
	for (int i = 1; i < argc; i++) {
		const struct opt *o;
		const char *v;

		if (i == cmd_idx)
			continue;
		if (argv[i][0] != '-' || !argv[i][1]) {
			if (c->n_pos >= 4)
				return usage_error(c, "too many arguments (%s)", argv[i]);
			c->pos[c->n_pos++] = argv[i];
			continue;
		}
		o = find_opt(argv[i], &v);
		if (!o)
			return usage_error(c, "unknown option %s", argv[i]);
		if (c->cmd && !(o->cmds & c->cmd->cmd))
			return usage_error(c, "option %s does not apply to this command", argv[i]);
		if (!c->cmd && o->cmds != CMD_ALL)
			return usage_error(c, "option %s needs a command", argv[i]);
		if (o->has_arg && !v) {
			if (i + 1 >= argc)
				return usage_error(c, "option %s needs a value", argv[i]);
			v = argv[++i];
		} else if (!o->has_arg && v) {
			return usage_error(c, "option %s takes no value", argv[i]);
		}
		rc = apply_opt(c, o, v);
		if (rc != 0)
			return rc;
	}
	if (!c->cmd) {
		usage_all(stderr);
		return 2;
	}
	env_defaults(c);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static const struct platform_ops *pick_platform(const char *name)
{
	if (strcmp(name, "local") == 0)
		return local_platform_ops();
	if (strcmp(name, "kubernetes") == 0 || strcmp(name, "kube") == 0 ||
	    strcmp(name, "k8s") == 0)
		return kube_platform_ops();
	return NULL;
}

static void close_platform(struct platform *p)
{
	p->ops->close(p);
	json_decref(p->dry_run);
	p->dry_run = NULL;
}

static int open_platform(struct cli *c, struct platform *p)
{
	int rc;

	memset(p, 0, sizeof(*p));
	p->ops = pick_platform(c->platform);
	if (!p->ops) {
		fprintf(stderr, "rainbow: unknown platform '%s' (local or kubernetes)\n",
			c->platform);
		return 2;
	}
	rc = local_state_init(c->state_dir);
	if (rc < 0) {
		snprintf(p->err, sizeof(p->err), "state dir %s: %s", c->state_dir, strerror(-rc));
		fprintf(stderr, "rainbow: %s\n", p->err);
		return RUN_EXIT_FAILED;
	}
	/* --dry-run: the platform logs the changes it would make instead of making them. */
	if (c->dry_run && p->ops->can_dry_run)
		p->dry_run = json_array();
	rc = p->ops->open(p, &c->popts);
	if (rc < 0) {
		fprintf(stderr, "rainbow: %s platform: %s\n", p->ops->name, p->err);
		close_platform(p);
		return run_exit_for_error(rc);
	}
	return 0;
}

/* One mutating rainbow per state dir at a time; released by the kernel on any exit. */
static int take_lock(const char *state_dir)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/lock", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return -EBUSY;
	}
	return fd;
}

static void fmt_dur(char *buf, size_t len, double s)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s < 60)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
	else
		snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

static void fill_cfg(const struct cli *c, struct deploy_cfg *cfg, enum deploy_mode mode,
		     const char *sha)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = mode;
	snprintf(cfg->sha, sizeof(cfg->sha), "%s", sha ? sha : "");
	/* Without -r an existing colour keeps its count (meta), a new one gets 2. */
	cfg->replicas = mode == DEPLOY_MODE_DEPLOY && c->given[O_REPLICAS] ? c->replicas : 0;
	cfg->default_replicas = mode == DEPLOY_MODE_DEPLOY ? c->replicas : 1;
	cfg->ready_timeout_ms = (int64_t)(c->ready_timeout * 1000);
	cfg->settle_ms = (int64_t)(c->settle * 1000);
	cfg->max_drain_ms = (int64_t)(c->max_drain * 1000);
	cfg->on_max_drain = (enum deploy_on_max)c->on_max;
	cfg->assist_rate = c->assist_rate;
	/* --on-max-drain assist: the assist begins at --max-drain, unless asked earlier. */
	if (c->assist_after >= 0)
		cfg->assist_after_ms = (int64_t)(c->assist_after * 1000);
	else if (c->on_max == DEPLOY_ON_MAX_ASSIST)
		cfg->assist_after_ms = (int64_t)(c->max_drain * 1000);
	cfg->shrink = c->shrink;
	cfg->keep_drained = c->keep_drained;
	cfg->keep_failed = c->keep_failed;
	cfg->no_wait = c->no_wait;
	cfg->prune_window_ms = (int64_t)((c->settle + 2 * c->poll) * 1000);
}

/* The requests of one dry-run step, as text. */
static void print_requests(json_t *reqs)
{
	size_t i;
	json_t *r;

	json_array_foreach (reqs, i, r) {
		const char *ct = json_string_value(json_object_get(r, "content_type"));
		json_t *body = json_object_get(r, "body");

		printf("   %s %s%s%s%s\n", json_string_value(json_object_get(r, "method")),
		       json_string_value(json_object_get(r, "path")), ct && *ct ? " (" : "",
		       ct && *ct ? ct : "", ct && *ct ? ")" : "");
		if (body && !json_is_null(body)) {
			char *txt = json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			const char *l = txt;

			while (l && *l) {
				const char *nl = strchr(l, '\n');
				int len = nl ? (int)(nl - l) : (int)strlen(l);

				printf("     %.*s\n", len, l);
				l = nl ? nl + 1 : NULL;
			}
			free(txt);
		}
	}
}

static int json_outcome(const struct cli *c, json_t *report, int rc, const char *reason);

/* What is wrong with the drain flags together (exit 2), or NULL. */
static const char *drain_flags_error(const struct cli *c, const struct platform *p)
{
	static char err[160];

	if (c->given[O_ON_MAX_DRAIN] && c->max_drain <= 0)
		return "--on-max-drain needs --max-drain";
	if ((c->on_max == DEPLOY_ON_MAX_ASSIST || c->assist_after >= 0) && c->assist_rate <= 0)
		return "--on-max-drain assist and --drain-assist-after need --drain-assist RATE";
	if (p && c->assist_rate > 0 && !p->ops->move) {
		snprintf(err, sizeof(err), "the %s platform cannot move sessions (--drain-assist)",
			 p->ops->name);
		return err;
	}
	return NULL;
}

/* "rainbow: why" on stderr, and the outcome (-o json) with exit status code. */
static int run_fails(const struct cli *c, json_t *report, int code, const char *prefix,
		     const char *why)
{
	fprintf(stderr, "rainbow: %s%s\n", prefix, why);
	return json_outcome(c, report, code, why);
}

/* Takes the state dir's lock for a deploy into *fd: 0, or the exit status
 * after saying why. */
static int lock_state(const struct cli *c, json_t *report, int *fd)
{
	char err[512];

	*fd = take_lock(c->state_dir);
	if (*fd >= 0)
		return 0;
	/* Only a lock held by another rainbow is "another rainbow". */
	if (*fd == -EBUSY)
		snprintf(err, sizeof(err), "another rainbow is deploying with state dir %s",
			 c->state_dir);
	else
		snprintf(err, sizeof(err), "cannot create %s/lock: %s", c->state_dir,
			 strerror(-*fd));
	return run_fails(c, report, *fd == -EBUSY ? RUN_EXIT_LOCKED : RUN_EXIT_FAILED, "", err);
}

/* rollback without a SHA: the colour to go back to, into target; 0 or the
 * exit status after saying why. */
static int rollback_target(const struct cli *c, struct platform *p, json_t *report, char *target)
{
	struct run_obs obs;
	char err[512];
	int rc = run_observe(p, &obs);

	if (rc < 0)
		return run_fails(c, report, run_exit_for_error(rc), "", p->err);
	rc = deploy_rollback_target(&obs.obs, target, err, sizeof(err));
	run_obs_free(&obs);
	if (rc < 0)
		return run_fails(c, report, RUN_EXIT_NO_TARGET, "rollback: ", err);
	if (report)
		json_object_set_new(report, "sha", json_string(target));
	return 0;
}

/*
 * deploy/rollback --dry-run: what the deploy would change, up to the drain,
 * with nothing changed (no lock taken, nothing recorded).
 */
static int dry_run(struct cli *c, struct platform *p, enum deploy_mode mode, const char *sha,
		   json_t *report)
{
	struct deploy_cfg cfg;
	json_t *r = report ? report : json_object(), *st, *col;
	char target[PLATFORM_SHA_MAX];
	size_t i;
	int rc;

	json_object_set_new(r, "dry_run", json_true());
	if (mode == DEPLOY_MODE_ROLLBACK && !sha) {
		rc = rollback_target(c, p, report, target);
		if (rc != 0) {
			close_platform(p);
			if (r != report)
				json_decref(r);
			return rc;
		}
		sha = target;
		json_object_set_new(r, "sha", json_string(sha));
	}
	fill_cfg(c, &cfg, mode, sha);
	rc = run_dry_run(p, &cfg, r);
	close_platform(p);
	if (report)
		return json_outcome(c, report, rc,
				    json_string_value(json_object_get(json_object_get(r, "failure"),
								      "reason")));
	printf("dry run: %s chat-%s on %s; nothing is sent%s\n",
	       mode == DEPLOY_MODE_ROLLBACK ? "rollback to" : "deploy", sha, p->ops->name,
	       p->ops->can_dry_run ? "" : " (this platform names its actions only)");
	printf("now: %s%s\n",
	       *json_string_value(json_object_get(r, "selected_before")) ? "chat-" : "",
	       *json_string_value(json_object_get(r, "selected_before"))
		       ? json_string_value(json_object_get(r, "selected_before"))
		       : "no colour selected");
	json_array_foreach (json_object_get(r, "colours"), i, col)
		printf("  chat-%s %s %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
		       " ready, %" JSON_INTEGER_FORMAT " connections\n",
		       json_string_value(json_object_get(col, "sha")),
		       json_string_value(json_object_get(col, "state")),
		       json_integer_value(json_object_get(col, "ready")),
		       json_integer_value(json_object_get(col, "replicas")),
		       json_integer_value(json_object_get(col, "connections")));
	json_array_foreach (json_object_get(r, "steps"), i, st) {
		const char *act = json_string_value(json_object_get(st, "action"));
		json_t *v = json_object_get(st, "value");

		printf("%zu. [%s] %s chat-%s", i + 1,
		       json_string_value(json_object_get(st, "phase")), act,
		       json_string_value(json_object_get(st, "sha")));
		if (json_object_get(st, "replicas"))
			printf(" replicas=%" JSON_INTEGER_FORMAT,
			       json_integer_value(json_object_get(st, "replicas")));
		if (json_object_get(st, "key"))
			printf(" %s=%s", json_string_value(json_object_get(st, "key")),
			       json_is_null(v) ? "(removed)" : json_string_value(v));
		if (json_object_get(st, "why"))
			printf(" (%s)", json_string_value(json_object_get(st, "why")));
		printf("\n");
		print_requests(json_object_get(st, "requests"));
	}
	json_array_foreach (json_object_get(r, "then_drain"), i, col)
		printf("then: wait until chat-%s (%" JSON_INTEGER_FORMAT
		       " connections now) reads 0 for %gs, then %s it\n",
		       json_string_value(json_object_get(col, "sha")),
		       json_integer_value(json_object_get(col, "connections")), c->settle,
		       c->keep_drained > 0 ? "scale to 0 and keep" : "delete");
	if (rc != RUN_EXIT_OK)
		fprintf(stderr, "rainbow: dry run: %s\n",
			json_string_value(
				json_object_get(json_object_get(r, "failure"), "reason")));
	json_decref(r);
	return rc;
}

/* -o json: prints the outcome of a command as one JSON object; returns rc. */
static int json_outcome(const struct cli *c, json_t *report, int rc, const char *reason)
{
	char *s;

	if (!report)
		return rc;
	if (rc != RUN_EXIT_OK)
		run_report_failure(report, rc, reason);
	json_object_set_new(report, "ok", json_boolean(rc == RUN_EXIT_OK));
	json_object_set_new(report, "exit_code", json_integer(rc));
	if (!json_object_get(report, "failure"))
		json_object_set_new(report, "failure", json_null());
	s = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(report);
	return rc;
}

static int do_run(struct cli *c, enum deploy_mode mode, const char *sha)
{
	static const char *const mode_names[] = { "deploy", "rollback", "prune" };
	struct platform p;
	struct deploy_cfg cfg;
	/* With -o json, stdout holds only the outcome: progress goes to stderr. */
	struct run_opts ro = { .state_dir = c->state_dir,
			       .poll_s = c->poll,
			       .out = c->json ? stderr : stdout,
			       .quiet = c->quiet };
	char target[PLATFORM_SHA_MAX];
	json_t *report = NULL;
	const char *why;
	int rc, lock;

	if (c->json) {
		report = json_pack("{s:s,s:s,s:s*}", "command", mode_names[mode], "platform",
				   c->platform, "sha", sha);
		ro.report = report;
	}
	why = drain_flags_error(c, NULL);
	if (why)
		return run_fails(c, report, RUN_EXIT_USAGE, "", why);
	rc = open_platform(c, &p);
	if (rc)
		return json_outcome(c, report, rc, p.err);
	why = drain_flags_error(c, &p);
	if (why) {
		close_platform(&p);
		return run_fails(c, report, RUN_EXIT_USAGE, "", why);
	}
	if (c->dry_run)
		return dry_run(c, &p, mode, sha, report);
	rc = lock_state(c, report, &lock);
	if (rc != 0) {
		close_platform(&p);
		return rc;
	}
	if (mode == DEPLOY_MODE_ROLLBACK && !sha) {
		rc = rollback_target(c, &p, report, target);
		if (rc != 0)
			goto out;
		sha = target;
	}
	fill_cfg(c, &cfg, mode, sha);
	if (!c->quiet) {
		if (mode == DEPLOY_MODE_DEPLOY)
			fprintf(ro.out, "deploy chat-%s on %s\n", sha, p.ops->name);
		else if (mode == DEPLOY_MODE_ROLLBACK)
			fprintf(ro.out, "rollback to chat-%s on %s\n", sha, p.ops->name);
		else
			fprintf(ro.out, "prune on %s\n", p.ops->name);
		fflush(ro.out);
	}
	rc = run_deploy(&p, &cfg, &ro);
	rc = json_outcome(c, report, rc, p.err);
out:
	close(lock);
	close_platform(&p);
	return rc;
}

static int cmd_deploy(struct cli *c)
{
	return do_run(c, DEPLOY_MODE_DEPLOY, c->pos[0]);
}

static int cmd_rollback(struct cli *c)
{
	return do_run(c, DEPLOY_MODE_ROLLBACK, c->n_pos ? c->pos[0] : NULL);
}

static int cmd_prune(struct cli *c)
{
	return do_run(c, DEPLOY_MODE_PRUNE, NULL);
}

static int need_sha(struct cli *c, int optional)
{
	if (c->n_pos == 0 && !optional)
		return usage_error(c, "%s needs a SHA", c->cmd->name);
	if (c->n_pos > 1)
		return usage_error(c, "too many arguments after %s", c->pos[0]);
	if (c->n_pos == 1 && !platform_sha_valid(c->pos[0]))
		return usage_error(c, "invalid SHA '%s' (want 7-40 lower-case hex digits)",
				   c->pos[0]);
	return 0;
}

/* ---- commands ----------------------------------------------------------- */

/* The DRAIN column of a draining colour: how long, how far, the forecast,
 * crashes, the assist. */
static void drain_note(char *d, size_t size, const struct deploy_colour_obs *co,
		       const struct forecast_model *model, int64_t now_ms, long conns, long lost)
{
	int64_t ds = deploy_meta_time(&co->c, PLATFORM_META_DRAINING_SINCE);
	int64_t as = deploy_meta_time(&co->c, DEPLOY_META_ASSIST_SINCE);
	const char *from = platform_meta_get(&co->c, PLATFORM_META_DRAIN_FROM);
	const char *rate = platform_meta_get(&co->c, DEPLOY_META_ASSIST_RATE);
	long f = from ? atol(from) : 0;
	/* Connections lost in crashes are not drained: progress leaves them out. */
	int pct = status_drained_pct(f, conns, lost);
	struct forecast fc = { 0 };
	char t[32], eta[48];
	size_t dl;

	forecast_colour(model, co, &fc);
	fmt_dur(t, sizeof(t), ds ? (double)(now_ms - ds) / 1000.0 : -1);
	run_forecast_text(&fc, eta, sizeof(eta));
	if (pct >= 0)
		snprintf(d, size, "draining for %s, %ld of %ld left (%d%% drained), %s", t, conns,
			 f, pct, eta);
	else
		snprintf(d, size, "draining for %s, %ld left, %s", t, conns, eta);
	dl = strlen(d);
	if (lost > 0)
		snprintf(d + dl, size - dl, ", %ld lost in crashes", lost);
	if (!platform_meta_get(&co->c, DEPLOY_META_ASSIST_SINCE))
		return;
	/* Assisted drain: sessions moved to the live colour. */
	dl = strlen(d);
	fmt_dur(t, sizeof(t), as ? (double)(now_ms - as) / 1000.0 : -1);
	snprintf(d + dl, size - dl, "; assisted for %s at %s/s (sessions moved to the live colour)",
		 t, rate ? rate : "?");
}

/* One colour's line of the status table. */
static void print_colour(const struct deploy_colour_obs *co, const struct run_obs *obs,
			 const struct forecast_model *model)
{
	enum deploy_state st = deploy_colour_state(co, obs->obs.selected);
	double age = co->c.created ? (double)(obs->obs.now_ms / 1000 - co->c.created) : -1;
	long conns = deploy_colour_connections(co), lost = 0;
	int ready = 0, restarts = 0;
	char a[32], d[512] = "", name[64];

	for (size_t k = 0; k < co->n_rep; k++) {
		ready += co->rep[k].ready;
		restarts += co->rep[k].restarts;
		lost += co->rep[k].lost > 0 ? co->rep[k].lost : 0;
	}
	fmt_dur(a, sizeof(a), age);
	if (st == DEPLOY_STATE_DRAINING)
		drain_note(d, sizeof(d), co, model, obs->obs.now_ms, conns, lost);
	else if (st == DEPLOY_STATE_KEPT)
		snprintf(d, sizeof(d), "drained, kept for rollback");
	else if (st == DEPLOY_STATE_FAILED)
		snprintf(d, sizeof(d), "%s", platform_meta_get(&co->c, PLATFORM_META_FAILED));
	snprintf(name, sizeof(name), "chat-%s", co->c.sha);
	for (size_t k = 0; k < co->n_rep && !d[0]; k++)
		if (co->rep[k].failed)
			snprintf(d, sizeof(d), "%.60s failed: %.400s", co->rep[k].name,
				 co->rep[k].fault);
	printf("%-20s %-9s %d/%-5d %-8d %-7ld %-8s %s\n", name, deploy_state_name(st), ready,
	       co->c.replicas, restarts, conns, a, d);
}

static int cmd_status(struct cli *c)
{
	struct forecast_model model;
	struct platform p;
	struct run_obs obs;
	int rc = open_platform(c, &p);

	if (rc)
		return rc;
	rc = run_observe(&p, &obs);
	if (rc < 0) {
		fprintf(stderr, "rainbow: %s\n", p.err);
		p.ops->close(&p);
		return run_exit_for_error(rc); /* 3 platform, 4 denied (docs/rainbow.md) */
	}
	if (c->json) {
		json_t *top = status_json(p.ops->name, &obs);
		char *s = top ? json_dumps(top, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) : NULL;

		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(top);
	} else {
		/* The lifetimes every replica has seen: the drain forecast's model. */
		forecast_model_from_obs(&model, &obs.obs);
		printf("%-20s %-9s %-7s %-8s %-7s %-8s %s\n", "COLOUR", "STATE", "READY",
		       "RESTARTS", "CONNS", "AGE", "DRAIN");
		for (size_t i = 0; i < obs.n; i++)
			print_colour(&obs.colours[i], &obs, &model);
		if (obs.n == 0)
			printf("(no colours)\n");
	}
	run_obs_free(&obs);
	p.ops->close(&p);
	return 0;
}

static volatile sig_atomic_t cli_stop;

static void on_stop(int sig)
{
	cli_stop = 1;
}

static int cmd_watch(struct cli *c)
{
	struct platform p;
	struct sigaction sa;
	double start;
	long n = 0;
	int errors = 0;
	int rc = open_platform(c, &p);

	if (rc)
		return rc;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	start = (double)run_now_ms() / 1000.0;
	while (!cli_stop) {
		struct run_obs obs;
		time_t t = time(NULL);
		struct tm tm;
		char ts[16];

		rc = run_observe(&p, &obs);
		if (rc < 0) {
			/* Gone for good (the switch is not there): say so and stop. */
			if (rc == -ENOENT || rc == -EACCES || rc == -EPERM) {
				fprintf(stderr, "rainbow: %s\n", p.err);
				rc = run_exit_for_error(rc);
				break;
			}
			/* Anything else may pass (a busy switch, no descriptor here): retry. */
			errors++;
			fprintf(stderr, "rainbow: watch: observing failed (%s); retrying\n", p.err);
			if (c->duration > 0 && (double)run_now_ms() / 1000.0 - start >= c->duration)
				break;
			usleep((useconds_t)run_backoff_ms(errors, (int64_t)(c->poll * 1000)) *
			       1000);
			rc = 0;
			continue;
		}
		errors = 0;
		run_timeline(c->state_dir, &obs);
		if (!c->quiet) {
			localtime_r(&t, &tm);
			strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
			printf("%s", ts);
			for (size_t i = 0; i < obs.n; i++) {
				const struct deploy_colour_obs *co = &obs.colours[i];

				printf("  chat-%s %s=%ld", co->c.sha,
				       deploy_state_name(deploy_colour_state(co, obs.obs.selected)),
				       deploy_colour_connections(co));
			}
			printf("%s\n", obs.n ? "" : "  (no colours)");
			fflush(stdout);
		}
		run_obs_free(&obs);
		n++;
		if ((c->count && n >= c->count) ||
		    (c->duration > 0 && (double)run_now_ms() / 1000.0 - start >= c->duration))
			break;
		usleep((useconds_t)(c->poll * 1e6));
	}
	close_platform(&p);
	return rc;
}

/* wait --for drained: when each colour waited for first read 0 connections. */
struct wait_zero {
	char sha[PLATFORM_SHA_MAX];
	int64_t since_ms;
};

/*
 * One look at obs for `rainbow wait`: 1 when the condition holds; what is
 * still awaited goes to left.
 */
static int wait_check(const struct cli *c, const char *sha, const struct run_obs *ro,
		      struct wait_zero *zeros, size_t *n_zero, char *left, size_t len)
{
	int64_t now = ro->obs.now_ms, settle_ms = (int64_t)(c->settle * 1000);
	size_t off = 0;
	int ok = 1;

	left[0] = '\0';
	if (c->wait_live) {
		const char *want = sha ? sha : ro->obs.selected;

		for (size_t i = 0; *want && i < ro->n; i++) {
			const struct deploy_colour_obs *co = &ro->colours[i];
			int ready = 0;

			if (strcmp(co->c.sha, want) != 0)
				continue;
			for (size_t k = 0; k < co->n_rep; k++)
				ready += co->rep[k].ready != 0;
			if (strcmp(ro->obs.selected, want) == 0 && co->c.replicas > 0 &&
			    ready >= co->c.replicas)
				return 1;
			snprintf(left, len, "chat-%s %s, %d/%d ready", want,
				 strcmp(ro->obs.selected, want) ? "not selected" : "selected",
				 ready, co->c.replicas);
			return 0;
		}
		snprintf(left, len, *want ? "chat-%s does not exist" : "no colour is selected",
			 want);
		return 0;
	}
	for (size_t i = 0; i < ro->n; i++) {
		const struct deploy_colour_obs *co = &ro->colours[i];
		enum deploy_state st = deploy_colour_state(co, ro->obs.selected);
		long conns = deploy_colour_connections(co);
		struct wait_zero *z = NULL;

		if (sha ? strcmp(co->c.sha, sha) != 0 : st != DEPLOY_STATE_DRAINING)
			continue;
		if (st == DEPLOY_STATE_KEPT)
			continue; /* scaled to 0: nothing left on it */
		for (size_t k = 0; k < *n_zero; k++)
			if (strcmp(zeros[k].sha, co->c.sha) == 0)
				z = &zeros[k];
		if (!z && *n_zero < 64) {
			z = &zeros[(*n_zero)++];
			snprintf(z->sha, sizeof(z->sha), "%s", co->c.sha);
			z->since_ms = 0;
		}
		if (conns != 0 || !z) {
			if (z)
				z->since_ms = 0;
		} else if (!z->since_ms) {
			z->since_ms = now;
		}
		if (z && z->since_ms && now - z->since_ms >= settle_ms)
			continue;
		ok = 0;
		if (off < len)
			off += (size_t)snprintf(left + off, len - off, "%schat-%s %s=%ld",
						off ? ", " : "", co->c.sha, deploy_state_name(st),
						conns);
	}
	return ok;
}

/*
 * rainbow wait: reads only (no lock, no timeline), so it can run beside a
 * deploy (or an in-cluster Job) that does the work.
 */
static int cmd_wait(struct cli *c)
{
	const char *sha = c->n_pos ? c->pos[0] : NULL;
	struct platform p;
	struct wait_zero zeros[64];
	size_t n_zero = 0;
	json_t *report = NULL, *colours = NULL;
	FILE *out = c->json ? stderr : stdout;
	char left[1024], shown[1024] = "";
	int64_t start = run_now_ms();
	int rc, errors = 0;

	if (c->json)
		report = json_pack("{s:s,s:s,s:s,s:s*}", "command", "wait", "platform", c->platform,
				   "for", c->wait_live ? "live" : "drained", "sha", sha);
	rc = open_platform(c, &p);
	if (rc)
		return json_outcome(c, report, rc, p.err);
	for (;;) {
		struct run_obs ro;
		int done;

		rc = run_observe(&p, &ro);
		if (rc < 0) {
			fprintf(stderr, "rainbow: observing the platform failed: %s\n", p.err);
			if (rc == -EACCES || ++errors >= 20) {
				rc = rc == -EACCES ? RUN_EXIT_DENIED : RUN_EXIT_GAVE_UP;
				snprintf(left, sizeof(left), "%s", p.err);
				break;
			}
		} else {
			errors = 0;
			done = wait_check(c, sha, &ro, zeros, &n_zero, left, sizeof(left));
			json_decref(colours);
			colours = run_colours_json(&ro);
			run_obs_free(&ro);
			if (done) {
				if (!c->quiet)
					fprintf(out, "%s after %.1fs\n",
						c->wait_live ? "live" : "drained",
						(double)(run_now_ms() - start) / 1000.0);
				rc = RUN_EXIT_OK;
				break;
			}
			if (!c->quiet && strcmp(left, shown) != 0) {
				fprintf(out, "waiting: %s\n", left);
				fflush(out);
				snprintf(shown, sizeof(shown), "%s", left);
			}
		}
		if (c->timeout > 0 && run_now_ms() - start >= (int64_t)(c->timeout * 1000)) {
			char what[sizeof(left)];

			snprintf(what, sizeof(what), "%s", left);
			snprintf(left, sizeof(left), "not %s after %.0fs: %.900s",
				 c->wait_live ? "live" : "drained", c->timeout, what);
			fprintf(stderr, "rainbow: wait: %s\n", left);
			rc = RUN_EXIT_TIMEOUT;
			break;
		}
		usleep((useconds_t)(c->poll * 1e6));
	}
	close_platform(&p);
	if (report) {
		json_object_set_new(report, "waited_s",
				    json_real((double)(run_now_ms() - start) / 1000.0));
		json_object_set_new(report, "colours", colours ? colours : json_array());
		colours = NULL;
	}
	json_decref(colours);
	return json_outcome(c, report, rc, left);
}

static int cmd_history(struct cli *c)
{
	char path[4200], line[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/record.jsonl", c->state_dir);
	f = fopen(path, "r");
	if (!f) {
		if (c->json)
			return 0;
		printf("(no history in %s)\n", c->state_dir);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		json_t *o;
		time_t t;
		struct tm tm;
		char ts[32];
		const char *why;

		if (c->json) {
			fputs(line, stdout);
			continue;
		}
		o = json_loads(line, 0, NULL);
		if (!o)
			continue;
		t = (time_t)json_number_value(json_object_get(o, "t"));
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		why = json_string_value(json_object_get(o, "why"));
		printf("%s  %-14s chat-%-12s", ts,
		       json_string_value(json_object_get(o, "event")) ?: "?",
		       json_string_value(json_object_get(o, "sha")) ?: "");
		if (why && *why)
			printf(" why=%s", why);
		if (json_object_get(o, "connections"))
			printf(" connections=%" JSON_INTEGER_FORMAT,
			       json_integer_value(json_object_get(o, "connections")));
		if (json_object_get(o, "drain_ms"))
			printf(" drain=%.1fs",
			       (double)json_integer_value(json_object_get(o, "drain_ms")) / 1000.0);
		if (json_object_get(o, "replica"))
			printf(" replica=%s", json_string_value(json_object_get(o, "replica")));
		if (json_object_get(o, "restarts"))
			printf(" restarts=%" JSON_INTEGER_FORMAT,
			       json_integer_value(json_object_get(o, "restarts")));
		if (json_object_get(o, "lost"))
			printf(" lost=%" JSON_INTEGER_FORMAT,
			       json_integer_value(json_object_get(o, "lost")));
		if (json_object_get(o, "exit"))
			printf(" exit=\"%s\"", json_string_value(json_object_get(o, "exit")));
		if (json_object_get(o, "reason"))
			printf(" reason=\"%s\"", json_string_value(json_object_get(o, "reason")));
		printf("\n");
		json_decref(o);
	}
	fclose(f);
	return 0;
}

static int cmd_report(struct cli *c)
{
	char err[512];
	json_t *rep;
	int rc = report_build(c->state_dir, &rep, err, sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "rainbow: report: %s\n", err);
		return 1;
	}
	if (c->json == 1) {
		char *s = json_dumps(rep, JSON_INDENT(2) | JSON_REAL_PRECISION(15));

		printf("%s\n", s ? s : "{}");
		free(s);
	} else if (c->json == 2) {
		report_print_md(stdout, rep);
	} else {
		report_print_table(stdout, rep);
	}
	json_decref(rep);
	return 0;
}

static int cmd_chart(struct cli *c)
{
	char err[512], pre[4200];
	char verdict[160] = "";
	int rc;

	if (c->report) {
		/* The witness's verdict, drawn on the chart. */
		json_t *r = dashboard_report(c->report);

		if (!json_is_integer(json_object_get(r, "dropped"))) {
			fprintf(stderr, "rainbow: chart: --report %s: %s\n", c->report,
				json_string_value(json_object_get(r, "note")));
			json_decref(r);
			return 1;
		}
		snprintf(verdict, sizeof(verdict),
			 "%" JSON_INTEGER_FORMAT " dropped connections, %" JSON_INTEGER_FORMAT
			 " lost messages",
			 json_integer_value(json_object_get(r, "dropped")),
			 json_integer_value(json_object_get(r, "lost")));
		json_decref(r);
	}
	rc = c->drain ? chart_render_drain(c->state_dir, c->out, c->drain, err, sizeof(err))
		      : chart_render(c->state_dir, c->out, c->bin, verdict[0] ? verdict : NULL, err,
				     sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "rainbow: chart: %s\n", err);
		return 1;
	}
	snprintf(pre, sizeof(pre), "%s", c->out ? c->out : "");
	if (!c->out)
		snprintf(pre, sizeof(pre), c->drain ? "%s/drain-%s" : "%s/chart", c->state_dir,
			 c->drain);
	printf("%s.png\n%s.svg\n", pre, pre);
	return 0;
}

/* Where Debian's libjs-strophe puts Strophe.js (scripts/deps.sh installs it). */
#define STROPHE_JS "/usr/share/javascript/strophe/strophe.min.js"

static int cmd_dashboard(struct cli *c)
{
	struct dashboard_opts o = {
		.listen = c->given[O_LISTEN] ? c->listen : "127.0.0.1:8080",
		.state_dir = c->state_dir,
		.report = c->report,
		.chat_ws = c->chat_ws,
		.chat_domain = c->chat_domain ? c->chat_domain : "localhost",
		.strophe = getenv("RAINBOW_STROPHE_JS") ? getenv("RAINBOW_STROPHE_JS") : STROPHE_JS,
		.poll_s = c->poll,
		.max_viewers = (unsigned)c->max_viewers,
		.history = 3600,
		.duration = c->duration,
	};
	struct platform p;
	int rc;

	if (!dashboard_listen_valid(o.listen))
		return usage_error(c, "bad --listen %s (want IP:PORT, port 0 for any)", o.listen);
	rc = open_platform(c, &p);
	if (rc)
		return rc;
	rc = dashboard_run(&p, &o);
	p.ops->close(&p);
	return rc;
}

/* This program's path, for the processes it starts (argv0 when /proc says nothing). */
static void self_exe(char *exe, size_t size, const char *argv0)
{
	ssize_t n = readlink("/proc/self/exe", exe, size - 1);

	if (n <= 0)
		snprintf(exe, size, "%s", argv0);
	else
		exe[n] = '\0';
}

/* local serve: be the switch (started by local up, or by the leader switch). */
static int local_serve(struct cli *c)
{
	char exe[4096];
	struct lswitch_opts so = { .listen = c->listen,
				   .websocket = c->websocket,
				   .state_dir = c->state_dir,
				   .exe = exe,
				   .switches = c->switches,
				   .follower = c->follower };
	int rc;

	self_exe(exe, sizeof(exe), c->argv0);
	log_init(c->follower ? "rainbow-switch-follower" : "rainbow-switch", LOG_INFO);
	rc = local_state_init(c->state_dir);
	if (rc == 0)
		rc = lswitch_run(&so);
	return rc == 0 ? 0 : 1;
}

/* The switch before this one died without `local down`: say what the crash
 * cost, once, and keep it in the history. beat: its last heartbeat. */
static void tell_switch_died(const struct cli *c, json_t *beat)
{
	json_int_t pid = json_integer_value(json_object_get(beat, "pid"));
	json_int_t conns = json_integer_value(json_object_get(beat, "connections"));

	printf("the previous switch (pid %" JSON_INTEGER_FORMAT
	       ") had died without `local down`: the %" JSON_INTEGER_FORMAT
	       " connections it carried (at its last heartbeat) were dropped; "
	       "the new one adopts the replicas that still run\n",
	       pid, conns);
	run_record(c->state_dir,
		   json_pack("{s:s,s:I,s:I,s:f}", "event", "switch-died", "pid", pid, "connections",
			     conns, "last_seen", json_number_value(json_object_get(beat, "t"))));
}

static int local_cmd_up(struct cli *c)
{
	char err[512], exe[4096], died[1024];
	json_t *beat = NULL, *st;
	int rc, already, was_dead;

	self_exe(exe, sizeof(exe), c->argv0);
	was_dead = local_switch_died(c->state_dir, died, sizeof(died), &beat);
	rc = local_up(exe, c->state_dir, c->listen, c->websocket, c->switches, &already, err,
		      sizeof(err));
	if (rc < 0) {
		json_decref(beat);
		fprintf(stderr, "rainbow: local up: %s\n", err);
		return 1;
	}
	if (was_dead && !already)
		tell_switch_died(c, beat);
	json_decref(beat);
	if (lswitch_status(c->state_dir, &st) == 0) {
		const char *ws = json_string_value(json_object_get(st, "websocket"));

		printf("local platform %s: switch on %s%s%s (pid %" JSON_INTEGER_FORMAT
		       ", state dir %s)\n",
		       already ? "already up" : "up",
		       json_string_value(json_object_get(st, "listen")),
		       ws ? ", WebSocket on " : "", ws ? ws : "",
		       json_integer_value(json_object_get(st, "pid")), c->state_dir);
		json_decref(st);
	}
	return 0;
}

static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The switch's status as a table: itself, its backends, the replicas. */
static void print_switch_status(json_t *st)
{
	const char *sel = jstr(st, "selected");
	json_t *b, *col, *r;
	size_t i, k;

	printf("switch %s pid %" JSON_INTEGER_FORMAT
	       " selected %s%s connections %" JSON_INTEGER_FORMAT " (max %" JSON_INTEGER_FORMAT
	       ") accepted %" JSON_INTEGER_FORMAT " refused %" JSON_INTEGER_FORMAT
	       " (%" JSON_INTEGER_FORMAT " at the descriptor limit)\n",
	       jstr(st, "listen"), jint(st, "pid"), sel && *sel ? "chat-" : "",
	       sel && *sel ? sel : "(nothing)", jint(st, "connections"),
	       jint(st, "max_connections"), jint(st, "accepted"),
	       jint(st, "refused") + jint(st, "refused_limit"), jint(st, "refused_limit"));
	json_array_foreach (json_object_get(st, "per_backend"), i, b)
		printf("  chat-%-12s %-21s active %-6" JSON_INTEGER_FORMAT
		       " total %-8" JSON_INTEGER_FORMAT "%s%s\n",
		       jstr(b, "sha"), jstr(b, "addr"), jint(b, "active"), jint(b, "total"),
		       json_is_true(json_object_get(b, "selected")) ? " selected" : "",
		       json_is_true(json_object_get(b, "routed")) ? " routed" : "");
	json_array_foreach (json_object_get(st, "colours"), i, col)
		json_array_foreach (json_object_get(col, "replicas"), k, r)
			printf("  %-22s %-11s pid %-7" JSON_INTEGER_FORMAT
			       " restarts %" JSON_INTEGER_FORMAT "%s%s\n",
			       jstr(r, "name"), jstr(r, "state"), jint(r, "pid"),
			       jint(r, "restarts"), *jstr(r, "fault") ? "  " : "",
			       jstr(r, "fault"));
}

static int local_cmd_status(struct cli *c)
{
	char died[1024];
	json_t *st;

	if (lswitch_status(c->state_dir, &st) != 0) {
		if (local_switch_died(c->state_dir, died, sizeof(died), NULL))
			fprintf(stderr, "rainbow: %s\n", died);
		else
			fprintf(stderr, "rainbow: the local platform is not up (state dir %s)\n",
				c->state_dir);
		return 1;
	}
	if (c->json) {
		char *s = json_dumps(st, JSON_INDENT(2));

		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		print_switch_status(st);
	}
	json_decref(st);
	return 0;
}

/* Stopping the switch cuts open_conns connections: 0 when --force, or the
 * terminal said yes. */
static int confirm_down(const struct cli *c, json_int_t open_conns)
{
	char ans[16] = "";

	if (open_conns <= 0 || c->force)
		return 0;
	if (!isatty(0)) {
		fprintf(stderr,
			"rainbow: %" JSON_INTEGER_FORMAT " connections are "
			"open through the switch; stopping it cuts them. "
			"Use --force.\n",
			open_conns);
		return -ECANCELED;
	}
	printf("%" JSON_INTEGER_FORMAT " connections are open through the switch; "
	       "stopping it cuts them. Stop anyway? [y/N] ",
	       open_conns);
	fflush(stdout);
	if (!fgets(ans, sizeof(ans), stdin) || (ans[0] != 'y' && ans[0] != 'Y')) {
		fprintf(stderr, "rainbow: not stopped\n");
		return -ECANCELED;
	}
	return 0;
}

static int local_cmd_down(struct cli *c)
{
	char err[512];
	json_int_t open_conns;
	json_t *st;

	if (lswitch_status(c->state_dir, &st) != 0) {
		/* No switch (it died?): still stop the colours it left behind. */
		if (!c->keep_colours)
			local_down(c->state_dir, 0, err, sizeof(err));
		fprintf(stderr, "rainbow: the local platform is not up (state dir %s)\n",
			c->state_dir);
		return 1;
	}
	open_conns = json_integer_value(json_object_get(st, "connections"));
	json_decref(st);
	if (confirm_down(c, open_conns) != 0)
		return 1;
	if (local_down(c->state_dir, c->keep_colours, err, sizeof(err)) < 0) {
		fprintf(stderr, "rainbow: local down: %s\n", err);
		return 1;
	}
	printf("local platform down (state dir %s)\n", c->state_dir);
	return 0;
}

static int cmd_local(struct cli *c)
{
	const char *sub = c->n_pos ? c->pos[0] : NULL;

	if (!sub)
		return usage_error(c, "local needs up, down or status%s", "");
	if (strcmp(sub, "serve") == 0)
		return local_serve(c);
	if (c->n_pos > 1)
		return usage_error(c, "too many arguments after local %s", sub);
	if (strcmp(sub, "up") == 0)
		return local_cmd_up(c);
	if (strcmp(sub, "status") == 0)
		return local_cmd_status(c);
	if (strcmp(sub, "down") == 0)
		return local_cmd_down(c);
	return usage_error(c, "unknown local command '%s' (up, down, status)", sub);
}

/* The positional arguments against what the command takes; 0 or exit 2. */
static int check_args(struct cli *c)
{
	switch (c->cmd->args) {
	case ARGS_NONE:
		if (c->n_pos)
			return usage_error(c, "%s takes no argument (%s)", c->cmd->name, c->pos[0]);
		return 0;
	case ARGS_SHA:
	case ARGS_SHA_OPT:
		return need_sha(c, c->cmd->args == ARGS_SHA_OPT);
	case ARGS_SUB:
		break;
	}
	return 0;
}

int cli_main(int argc, char **argv)
{
	struct cli c;
	enum log_level lvl = LOG_WARN;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	/* Progress lines must reach a log file or a pipe as they happen. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = parse(&c, argc, argv);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (c.log_level)
		log_level_parse(c.log_level, &lvl);
	log_init("rainbow", lvl);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c.argv0 = argv[0];
	rc = check_args(&c);
	if (rc == 0)
		rc = c.cmd->run(&c);
	curl_global_cleanup();
	return rc;
}
