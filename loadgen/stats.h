/*
 * chatload's accounting: the fate of every connection, of every message,
 * connections per server version, latency histograms and the per-second
 * timeline. Each counter is updated in exactly one place (client.c or
 * msgtrack.c); this module only stores, serializes and merges.
 *
 * The JSON report is also the format in which --workers processes hand
 * their numbers to the parent: stats_merge_json() adds a report into a
 * struct stats, so the parent's final report is the merge of its workers'.
 */
#ifndef CHATLOAD_STATS_H
#define CHATLOAD_STATS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

struct load_opts;

#define STATS_MAX_VERSIONS 32	/* distinct server version labels */
#define STATS_MAX_INSTANCES 256 /* distinct server instances */
#define STATS_MAX_NAMES 32	/* distinct stream error conditions, reasons */
#define STATS_NAME_LEN 64

struct stats_named {
	char name[STATS_NAME_LEN];
	uint64_t count;
};

struct stats_names {
	unsigned n;
	struct stats_named e[STATS_MAX_NAMES]; /* the last one collects "other" */
};

struct stats_version {
	char label[STATS_NAME_LEN]; /* the server's XEP-0092 <version/> */
	uint32_t connected;	    /* established now */
	uint32_t peak;		    /* highest connected seen */
	uint32_t connected_end;	    /* connected when the run ended (stats_mark_end()) */
	uint64_t logins;	    /* established sessions, ever */
};

struct stats_instance {
	char name[STATS_NAME_LEN]; /* from <os>instance=NAME</os> */
	unsigned version;	   /* index into versions */
	uint32_t connected;
	uint32_t connected_end; /* connected when the run ended */
	uint64_t logins;
};

/* Messages by (sender's server version, receiver's server version). */
struct stats_pair {
	uint64_t sent, delivered, lost, bounced, duplicated;
};

/* One timeline sample: cumulative counters, current connections. */
struct stats_row {
	uint64_t logins, dropped, server_closed, sent, delivered, lost;
	uint32_t connected;
	uint32_t per_version[STATS_MAX_VERSIONS];
};

struct stats {
	/* Connections: each attempt ends in exactly one fate. */
	uint64_t connections;		/* TCP connects started */
	uint64_t logins;		/* reached established */
	uint64_t closed_by_client;	/* we asked for the end */
	uint64_t closes_unacknowledged; /* ... and the server did not close its stream */
	uint64_t closed_by_server;	/* stream closed by the server (by condition below) */
	uint64_t dropped;		/* EOF/reset/error without a stream close */
	uint64_t connect_failures;
	uint64_t login_failures;
	uint64_t ping_timeouts;
	/* --stream-management: the server moved the session (see-other-host)
	 * and the client came back (resumed or logged in again) within the
	 * login timeout; of those, resumed (XEP-0198) or refused (<failed/>). */
	uint64_t migrated;
	uint64_t resumed;
	uint64_t resume_failed;
	struct stats_names server_conditions;
	struct stats_names drop_reasons;
	struct stats_names login_failure_reasons;
	struct stats_names connect_failure_reasons;
	uint32_t connected; /* established now */
	uint32_t connected_peak;
	uint32_t connected_end; /* established when the run ended (before the logout) */
	uint32_t connecting;	/* between connect and established */
	/* Messages. */
	uint64_t messages_sent;
	uint64_t messages_delivered;
	uint64_t messages_lost;
	uint64_t messages_duplicated;
	uint64_t messages_bounced;
	uint64_t messages_late;		/* arrived after being counted lost */
	uint64_t messages_misdelivered; /* arrivals at a client it was not addressed to */
	uint64_t messages_offline;	/* of sent: addressed to users never online */
	uint64_t messages_foreign;	/* received but not sent by this run */
	/* Of the messages above, those whose sender and addressee were clients
	 * of different processes (--workers, --pods): the exchange happened. */
	struct {
		uint64_t sent, delivered, lost;
	} cross;
	uint64_t pings_sent, pongs, server_pings;
	struct hist latency_us;	      /* message send to receive */
	struct hist login_us;	      /* connect start to established */
	struct hist reconnect_gap_us; /* see-other-host to established again (migrated) */
	/* A server's close or a drop to the slot's next established session:
	 * what users see of a restart that does not move sessions. */
	struct hist reconnect_gap_other_us;
	/* SIGUSR1 opens and closes a measurement window (a single process):
	 * latency of the messages delivered within it. */
	bool window_open;
	uint64_t window_start_us, window_us; /* monotonic; length once closed */
	struct hist latency_window_us;
	unsigned nversions;
	struct stats_version versions[STATS_MAX_VERSIONS];
	unsigned ninstances;
	struct stats_instance instances[STATS_MAX_INSTANCES];
	struct stats_pair pairs[STATS_MAX_VERSIONS][STATS_MAX_VERSIONS];
	/* Timeline: row i is the state at i+1 seconds after the start. */
	struct stats_row *rows;
	size_t nrows, caprows;
	double ramp_s;	 /* seconds until all clients were first connected; <0 never */
	bool ramp_never; /* a merged worker never had all its clients connected */
	double elapsed_s;
	uint32_t workers_failed;	 /* parent: workers whose report is missing */
	uint64_t workers_failed_clients; /* ... and the client slots they had */
	uint32_t parts;			 /* chatload merge: reports merged */
	unsigned expect;		 /* merged reports' STATS_EXPECT_* */
};

/* The --expect-* a report was made with (its "expectations"). */
#define STATS_EXPECT_ZERO_DROPS 1u
#define STATS_EXPECT_ZERO_LOSS 2u
#define STATS_EXPECT_NO_SERVER_CLOSE 4u

struct stats *stats_new(void);
void stats_free(struct stats *s);

/* Counts one more under name (the last slot collects overflow as "other"). */
void stats_names_add(struct stats_names *n, const char *name, uint64_t count);

/* Index of a version label / instance, adding it; the last slot is shared
 * when the table is full. */
unsigned stats_version_index(struct stats *s, const char *label);
unsigned stats_instance_index(struct stats *s, unsigned version, const char *name);

/* Records the connection gauges as they are when the run ends (before the
 * final logout brings them to 0): the report's connected_end fields. */
void stats_mark_end(struct stats *s);

/* Appends the timeline sample for second `second` (1-based). */
int stats_sample(struct stats *s, size_t second);

/*
 * The report as JSON (new reference). o may be NULL (a worker's partial
 * report then omits the run's settings). ok is the verdict of the
 * expectations (see stats_expectations_ok()).
 */
json_t *stats_report_json(const struct stats *s, const struct load_opts *o);
/* Short JSON object for live progress from workers to the parent. */
json_t *stats_status_json(const struct stats *s);
/* Adds a report made by stats_report_json() into s. 0 or -EINVAL when malformed. */
int stats_merge_json(struct stats *s, const json_t *report);

/* Writes a JSON document to path (atomically: temp file and rename). 0 or a
 * negative errno. */
int stats_write_json(const json_t *r, const char *path);
/* Writes the report to path (atomically: temp file and rename). 0 or a
 * negative errno. */
int stats_write_report(const struct stats *s, const struct load_opts *o, const char *path);
/* Writes the timeline CSV. 0 or a negative errno. */
int stats_write_timeline(const struct stats *s, const char *path);

/*
 * The run's verdict as one human line, what `make demo` prints:
 * "0 dropped connections, 0 lost messages (500 connections, 1234 messages
 * delivered, 12 bounced, 0 closed by the server)". Dropped counts ping
 * timeouts too (as --expect-zero-drops does).
 */
void stats_verdict(const struct stats *s, char *buf, size_t len);
/* One progress line (no newline) into buf. */
void stats_progress_line(const struct stats *s, double t, unsigned clients, char *buf, size_t size);
/*
 * The run's verdict (the report's "ok"): every --expect-* holds, some
 * client logged in when connections were made, and no worker failed. Prints
 * each --expect-* violation to err (the caller explains the other two).
 */
bool stats_expectations_ok(const struct stats *s, const struct load_opts *o, FILE *err);
/* o's --expect-* as STATS_EXPECT_* flags. */
unsigned stats_expect_flags(const struct load_opts *o);

#endif
