/*
 * The fleet: every client of this process on one libuv loop, driven by one
 * timer (ramp, lifetimes, messages, pings, deadlines, progress, end of run).
 */
#include "fleet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "tlsbio.h"

uint64_t fleet_now_us(const struct fleet *fl)
{
	return uv_hrtime() / 1000 - fl->t0_us;
}

uint64_t fleet_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint32_t fleet_now_ms(const struct fleet *fl)
{
	return (uint32_t)(fleet_now_us(fl) / 1000);
}

double fleet_rand01(struct fleet *fl)
{
	/* xorshift64*: cheap, and reproducible under --seed. */
	fl->rng ^= fl->rng >> 12;
	fl->rng ^= fl->rng << 25;
	fl->rng ^= fl->rng >> 27;
	return (double)((fl->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

void fleet_print_progress(const char *line, bool tty, bool final)
{
	if (tty)
		fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
	else
		fprintf(stderr, "%s\n", line);
	fflush(stderr);
}

/* The worker's live numbers for the accountant's progress line (P record). */
static void fleet_status(struct fleet *fl)
{
	json_t *j = stats_status_json(fl->st);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (s) {
		wire_put(fl->link, "P ", 2);
		wire_put(fl->link, s, strlen(s));
		wire_put(fl->link, "\n", 1);
	}
	free(s);
	json_decref(j);
}

static void fleet_link_line(void *ud, char *line)
{
	struct fleet *fl = ud;
	char *end;

	switch (line[0]) {
	case 'A': {
		/* "A count n": a new sample of n targets follows. */
		unsigned long count = strtoul(line + 1, &end, 10);
		unsigned long n = strtoul(end, &end, 10);
		struct fleet_target *t;
		for (unsigned i = 0; i < fl->sample_fill; i++)
			free(fl->sample[i].jid);
		fl->nsample = fl->sample_fill = fl->sample_want = 0;
		if (n > 4096)
			return;
		t = realloc(fl->sample, (n ? n : 1) * sizeof(*t));
		if (!t)
			return;
		fl->sample = t;
		fl->sample_want = (unsigned)n;
		fl->remote_est = (uint32_t)count;
		return;
	}
	case 'a': {
		unsigned long c = strtoul(line + 1, &end, 10);
		if (fl->sample_fill >= fl->sample_want || *end != ' ' || !end[1])
			return;
		fl->sample[fl->sample_fill].client = (uint32_t)c;
		fl->sample[fl->sample_fill].jid = strdup(end + 1);
		if (!fl->sample[fl->sample_fill].jid)
			return;
		/* Targets are used once the whole sample is in. */
		if (++fl->sample_fill == fl->sample_want)
			fl->nsample = fl->sample_fill;
		return;
	}
	case 'Q':
		fl->settled = true;
		return;
	case 'K':
		/* The run is stopped ("K 1") or aborted ("K 2"): a signal to the
		 * accountant, passed on like ours. */
		fl->stop_requested = true;
		if (line[1] == ' ' && line[2] == '2')
			fl->abort_requested = true;
		return;
	default:
		return;
	}
}

static void fleet_on_link(uv_poll_t *h, int status, int events)
{
	struct fleet *fl = h->data;

	(void)events;
	if (status < 0 || wire_read(fl->link, fleet_link_line, fl) <= 0) {
		/* The accountant is gone: nobody settles messages any more. */
		log_warn("accountant_gone", "worker=%u", fl->worker);
		fl->link->failed = true;
		fl->stop_requested = fl->abort_requested = true;
		uv_poll_stop(h);
	}
}

static void fleet_go_line(void *ud, char *line)
{
	struct fleet *fl = ud;

	if (line[0] == 'G')
		fl->go = 1;
	else if (line[0] == 'X') {
		fprintf(stderr, "chatload: worker %u refused by the coordinator: %s\n", fl->worker,
			line[1] ? line + 2 : "");
		fl->go = -1;
	} else
		fleet_link_line(fl, line);
}

/* Blocks until the accountant's "G" (the run starts: every worker at once).
 * 0, or -1 when it refused us or went away. */
static int fleet_wait_go(struct fleet *fl)
{
	while (fl->go == 0) {
		struct pollfd p = { .fd = fl->link->fd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -ECANCELED;
		if (wire_read(fl->link, fleet_go_line, fl) <= 0 && fl->go == 0)
			return -ECANCELED;
	}
	return fl->go > 0 ? 0 : -ECANCELED;
}

static void fleet_second(struct fleet *fl, uint32_t now)
{
	double t = now / 1000.0;
	char line[512];

	while ((uint64_t)fl->next_second * 1000 <= now) {
		stats_sample(fl->st, fl->next_second);
		fl->next_second++;
	}
	if (fl->link) {
		if (t >= fl->next_progress) {
			fl->next_progress = t + 0.5;
			fleet_status(fl);
		}
		return;
	}
	if (fl->o->quiet || t < fl->next_progress)
		return;
	fl->next_progress = t + (fl->tty ? 0.5 : fl->o->progress_interval);
	stats_progress_line(fl->st, t, fl->nclients, line, sizeof(line));
	fleet_print_progress(line, fl->tty, false);
}

static void fleet_close_all_handles(struct fleet *fl)
{
	uv_timer_stop(&fl->tick);
	uv_close((uv_handle_t *)&fl->tick, NULL);
	client_run_failed(fl);
	uv_close((uv_handle_t *)&fl->fail_idle, NULL);
	uv_close((uv_handle_t *)&fl->sigint, NULL);
	uv_close((uv_handle_t *)&fl->sigterm, NULL);
	uv_close((uv_handle_t *)&fl->sigusr1, NULL);
	if (fl->link)
		uv_close((uv_handle_t *)&fl->link_poll, NULL);
}

static const char *const fleet_phase_names[] = {
	[FLEET_RUNNING] = "running",
	[FLEET_DRAINING] = "draining",
	[FLEET_CLOSING] = "closing",
	[FLEET_DONE] = "done",
};

static void fleet_enter(struct fleet *fl, enum fleet_phase p, uint32_t now)
{
	log_info("phase", "from=%s to=%s t_ms=%u pending=%llu", fleet_phase_names[fl->phase],
		 fleet_phase_names[p], now, (unsigned long long)fl->mt.npending);
	fl->phase = p;
	if (p == FLEET_DRAINING) {
		/* The run ends now: what is established is the report's
		 * connected_end (the final logout takes the gauges to 0). */
		stats_mark_end(fl->st);
		fl->phase_deadline_ms = now + (uint32_t)(fl->o->loss_timeout * 1000);
		if (fl->link) {
			/* The accountant settles; the deadline only guards against
			 * one that never says so (other workers' last messages to
			 * our clients may be sent a little after our own end). */
			wire_put(fl->link, "D\n", 2);
			wire_flush(fl->link, true);
			fl->phase_deadline_ms += FLEET_LINK_GRACE_MS;
		}
	} else if (p == FLEET_CLOSING) {
		for (uint32_t i = 0; i < fl->nclients; i++)
			client_stop(&fl->clients[i]);
		fl->phase_deadline_ms = now + (uint32_t)(fl->o->close_timeout * 1000) + 2000;
	}
}

static void fleet_on_tick(uv_timer_t *t)
{
	struct fleet *fl = t->data;
	uint32_t now = fleet_now_ms(fl);
	double dt = (now - fl->last_tick_ms) / 1000.0;
	uint32_t n = fl->nclients;

	fl->last_tick_ms = now;
	if (fl->phase == FLEET_RUNNING) {
		double cap = fl->ramp * 0.25 + 1;
		fl->tokens += fl->ramp * dt;
		if (fl->tokens > cap)
			fl->tokens = cap;
	}
	uint32_t cursor = fl->spawn_cursor;

	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (cursor + k) % n;
		struct client *c = &fl->clients[i];
		if (c->state == CLIENT_IDLE) {
			/* The ramp paces first logins; a slot that had a session
			 * replaces it at once (failures wait CLIENT_RETRY_MS). */
			if (fl->phase != FLEET_RUNNING || (int32_t)(now - c->respawn_ms) < 0)
				continue;
			if (c->gen == 0) {
				if (fl->tokens < 1)
					continue;
				fl->tokens -= 1;
				fl->spawn_cursor = (i + 1) % n;
			}
			client_start(c);
			continue;
		}
		client_tick(c, now);
	}
	msgtrack_expire(&fl->mt, fleet_now_us(fl));
	if (fl->compactions > 256 && now - fl->last_trim_ms >= 5000) {
		/* Parsers freed by compaction leave holes between long-lived small
		 * allocations; hand whole free pages back so RSS follows usage. */
		malloc_trim(0);
		fl->compactions = 0;
		fl->last_trim_ms = now;
	}
	fl->st->elapsed_s = now / 1000.0;
	fleet_second(fl, now);
	if (fl->link && !fl->link->failed) {
		/* Every record up to now is written: the accountant may judge
		 * messages sent a loss timeout before. */
		wire_printf(fl->link, "T %" PRIu64 "\n", fleet_wall_us());
		wire_flush(fl->link, true);
	}

	if (fl->phase == FLEET_RUNNING &&
	    (fl->stop_requested || (fl->o->duration > 0 && now >= fl->o->duration * 1000)))
		fleet_enter(fl, FLEET_DRAINING, now);
	if (fl->phase == FLEET_DRAINING &&
	    ((fl->link ? fl->settled : fl->mt.npending == 0) || fl->abort_requested ||
	     (int32_t)(now - fl->phase_deadline_ms) >= 0))
		fleet_enter(fl, FLEET_CLOSING, now);
	if (fl->phase == FLEET_CLOSING) {
		if (fl->abort_requested || (int32_t)(now - fl->phase_deadline_ms) >= 0) {
			/* Whatever still waits for the server's close: ours is sent. */
			for (uint32_t i = 0; i < n; i++) {
				struct client *c = &fl->clients[i];
				c->deadline_ms = now;
				client_tick(c, now);
			}
		}
		if (fl->open_handles == 0) {
			fl->phase = FLEET_DONE;
			msgtrack_expire_all(&fl->mt);
			stats_sample(fl->st, fl->next_second);
			fl->st->elapsed_s = (double)fleet_now_us(fl) / 1e6;
			fleet_close_all_handles(fl);
		}
	}
}

static void fleet_on_signal(uv_signal_t *s, int signum)
{
	struct fleet *fl = s->data;
	static uint32_t first_ms;
	uint32_t now = fleet_now_ms(fl);

	if (!fl->stop_requested) {
		fl->stop_requested = true;
		first_ms = now;
		log_info("signal", "signal=%d action=stop", signum);
	} else if (now - first_ms >= 1000) {
		fl->abort_requested = true;
		log_info("signal", "signal=%d action=abort", signum);
	}
}

/* SIGUSR1: the first opens the measurement window, the second closes it. */
static void fleet_on_window(uv_signal_t *s, int signum)
{
	struct fleet *fl = s->data;
	struct stats *st = fl->st;
	uint64_t now = fleet_now_us(fl);

	if (!st->window_open && !st->window_us) {
		st->window_open = true;
		st->window_start_us = now;
	} else if (st->window_open) {
		st->window_open = false;
		st->window_us = now - st->window_start_us ? now - st->window_start_us : 1;
	}
	log_info("window", "open=%d", st->window_open);
}

static int fleet_setup_sources(struct fleet *fl, const struct load_opts *o, unsigned worker)
{
	uint32_t count, first, per;
	unsigned nworkers = opts_total_workers(o);

	if (!o->src_first)
		return 0;
	count = o->src_last - o->src_first + 1;
	/* Each worker takes its own share of the range when it is large enough. */
	if (count >= nworkers) {
		per = count / nworkers;
		first = o->src_first + per * (o->worker_index < 0 ? 0 : worker);
	} else {
		per = count;
		first = o->src_first;
	}
	fl->src_ips = calloc(per, sizeof(*fl->src_ips));
	if (!fl->src_ips)
		return -EINVAL;
	for (uint32_t i = 0; i < per; i++)
		fl->src_ips[i] = htonl(first + i);
	fl->nsrc = per;
	return 0;
}

int fleet_run(const struct load_opts *o, struct stats *st, struct wire *link, unsigned worker)
{
	struct fleet *fl = calloc(1, sizeof(*fl));
	char err[256];
	int rc = -1;

	if (!fl)
		return -EINVAL;
	fl->loop = uv_default_loop();
	fl->o = o;
	fl->st = st;
	fl->worker = worker;
	fl->link = link;
	fl->nclients = o->worker_clients;
	fl->ramp = o->ramp / opts_total_workers(o);
	fl->tokens = 1;
	fl->next_second = 1;
	fl->tty = !link && isatty(STDERR_FILENO);
	fl->rng = ((uint64_t)o->seed << 16) ^ (0x9E3779B97F4A7C15ULL * (worker + 1));
	if (!fl->rng)
		fl->rng = 1;
	msgtrack_init(&fl->mt, st, o->loss_timeout);
	fl->clients = calloc(fl->nclients, sizeof(*fl->clients));
	fl->est = calloc(fl->nclients, sizeof(*fl->est));
	fl->rbuf = malloc(65536);
	fl->pbuf = malloc(65536);
	if (!fl->clients || !fl->est || !fl->rbuf || !fl->pbuf ||
	    fleet_setup_sources(fl, o, worker) < 0) {
		fprintf(stderr, "chatload: out of memory\n");
		goto out;
	}
	if (o->tls) {
		fl->tls_ctx = tlsbio_client_ctx_new(0, NULL, err, sizeof(err));
		if (!fl->tls_ctx) {
			fprintf(stderr, "chatload: TLS: %s\n", err);
			goto out;
		}
	}
	for (uint32_t i = 0; i < fl->nclients; i++) {
		fl->clients[i].fl = fl;
		fl->clients[i].slot = i;
	}
	if (link) {
		if (fleet_wait_go(fl) < 0)
			goto out;
		uv_poll_init(fl->loop, &fl->link_poll, link->fd);
		fl->link_poll.data = fl;
		uv_poll_start(&fl->link_poll, UV_READABLE, fleet_on_link);
	}
	fl->t0_us = uv_hrtime() / 1000;
	uv_timer_init(fl->loop, &fl->tick);
	fl->tick.data = fl;
	uv_idle_init(fl->loop, &fl->fail_idle);
	fl->fail_idle.data = fl;
	uv_signal_init(fl->loop, &fl->sigint);
	uv_signal_init(fl->loop, &fl->sigterm);
	fl->sigint.data = fl->sigterm.data = fl;
	uv_signal_start(&fl->sigint, fleet_on_signal, SIGINT);
	uv_signal_start(&fl->sigterm, fleet_on_signal, SIGTERM);
	uv_signal_init(fl->loop, &fl->sigusr1);
	fl->sigusr1.data = fl;
	uv_signal_start(&fl->sigusr1, fleet_on_window, SIGUSR1);
	uv_timer_start(&fl->tick, fleet_on_tick, 0, FLEET_TICK_MS);
	uv_run(fl->loop, UV_RUN_DEFAULT);
	if (!o->quiet && !link) {
		char line[512];
		stats_progress_line(st, st->elapsed_s, fl->nclients, line, sizeof(line));
		fleet_print_progress(line, fl->tty, true);
	}
	rc = 0;
out:
	uv_loop_close(fl->loop);
	if (fl->tls_ctx)
		SSL_CTX_free(fl->tls_ctx);
	msgtrack_free(&fl->mt);
	for (unsigned i = 0; i < fl->sample_fill; i++)
		free(fl->sample[i].jid);
	free(fl->sample);
	free(fl->clients);
	free(fl->est);
	free(fl->rbuf);
	free(fl->pbuf);
	free(fl->src_ips);
	free(fl);
	return rc;
}
