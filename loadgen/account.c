/*
 * The run's accountant: settles every message from the records the
 * workers (and other pods) send over their wires.
 */
#include "account.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "msgtrack.h"

/* Targets handed to a worker per sample. */
#define ACCOUNT_SAMPLE 64
/* Arrivals waiting for their send record, at most (beyond: foreign). */
#define ACCOUNT_MAX_EARLY 1000000

struct acct_client {
	char *jid;	  /* bound JID while established, else NULL */
	uint32_t est_pos; /* index in est while established */
	uint8_t version;  /* stats version index while established */
};

struct acct_worker {
	struct msgtrack mt;		  /* the messages it sent */
	uint8_t vmap[STATS_MAX_VERSIONS]; /* its version index -> ours */
	unsigned nv;			  /* versions it announced */
	uint64_t watermark;		  /* its last T */
	unsigned first, count;		  /* its client slots */
	uint32_t established;		  /* of its clients, established now */
	bool gone;			  /* finished or failed */
	bool drained;			  /* sent D (or gone) */
};

/* An arrival reported before the send record of its message. */
struct acct_early {
	uint64_t seq, t;
	uint32_t worker, by;
};

struct account {
	struct stats *st;
	unsigned nworkers, clients;
	struct acct_worker *w;
	struct acct_client *cl;
	uint32_t *est; /* established clients */
	uint32_t nest;
	struct acct_early *early;
	size_t nearly, capearly;
	size_t next_second;
	uint64_t rng;
};

struct account *account_new(const struct load_opts *o)
{
	struct account *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->nworkers = opts_total_workers(o);
	a->clients = o->clients;
	a->st = stats_new();
	a->w = calloc(a->nworkers, sizeof(*a->w));
	a->cl = calloc(a->clients, sizeof(*a->cl));
	a->est = calloc(a->clients, sizeof(*a->est));
	a->next_second = 1;
	if (a->st)
		a->st->ramp_s = 0; /* its report merges in: no ramp of its own */
	a->rng = ((uint64_t)o->seed << 20) ^ 0xD1B54A32D192ED03ULL;
	if (!a->rng)
		a->rng = 1;
	if (!a->st || !a->w || !a->cl || !a->est) {
		account_free(a);
		return NULL;
	}
	for (unsigned i = 0; i < a->nworkers; i++) {
		msgtrack_init(&a->w[i].mt, a->st, o->loss_timeout);
		opts_share(o, i, &a->w[i].first, &a->w[i].count);
	}
	return a;
}

void account_free(struct account *a)
{
	if (!a)
		return;
	if (a->w)
		for (unsigned i = 0; i < a->nworkers; i++)
			msgtrack_free(&a->w[i].mt);
	if (a->cl)
		for (unsigned i = 0; i < a->clients; i++)
			free(a->cl[i].jid);
	stats_free(a->st);
	free(a->w);
	free(a->cl);
	free(a->est);
	free(a->early);
	free(a);
}

struct stats *account_stats(struct account *a)
{
	return a->st;
}

/* The worker whose share holds client slot c. */
static unsigned acct_owner(const struct account *a, uint32_t c)
{
	unsigned lo = 0, hi = a->nworkers - 1;

	while (lo < hi) {
		unsigned mid = (lo + hi + 1) / 2;
		if (a->w[mid].first <= c)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static void acct_unestablish(struct account *a, uint32_t c)
{
	struct acct_client *cl = &a->cl[c];
	uint32_t last;

	if (!cl->jid)
		return;
	free(cl->jid);
	cl->jid = NULL;
	last = a->est[--a->nest];
	a->est[cl->est_pos] = last;
	a->cl[last].est_pos = cl->est_pos;
	a->w[acct_owner(a, c)].established--;
}

/* Strict unsigned decimal field; advances *p past it and one space. */
static bool acct_u64(char **p, uint64_t *out)
{
	char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (*s == ' ')
		s++;
	else if (*s != '\0')
		return false;
	*p = s;
	*out = v;
	return true;
}

static void acct_resolve_early(struct account *a, unsigned gw)
{
	struct msgtrack *mt = &a->w[gw].mt;
	size_t k = 0;

	for (size_t i = 0; i < a->nearly; i++) {
		struct acct_early *e = &a->early[i];
		if (e->worker == gw && e->seq < mt->next_seq)
			msgtrack_received(mt, e->seq, e->t, e->by);
		else
			a->early[k++] = *e;
	}
	a->nearly = k;
}

static int acct_send(struct account *a, unsigned gw, char *p)
{
	struct acct_worker *w = &a->w[gw];
	uint64_t seq, to, v, t;
	unsigned flags = 0, rver = MSGTRACK_NO_VERSION;

	if (!acct_u64(&p, &seq) || !acct_u64(&p, &to) || !acct_u64(&p, &v) || !acct_u64(&p, &t) ||
	    *p || seq != w->mt.next_seq || v >= w->nv || to > UINT32_MAX)
		return -EINVAL;
	if (to >= a->clients) {
		flags |= MSGTRACK_OFFLINE; /* a user never online */
	} else {
		if (acct_owner(a, (uint32_t)to) != gw)
			flags |= MSGTRACK_CROSS;
		if (a->cl[to].jid)
			rver = a->cl[to].version;
	}
	if (msgtrack_send_ex(&w->mt, t, w->vmap[v], rver, (uint32_t)to, flags) == 0)
		return -EINVAL;
	if (a->nearly)
		acct_resolve_early(a, gw);
	return 0;
}

static int acct_arrival(struct account *a, char *p)
{
	uint64_t from, seq, by, t;

	if (!acct_u64(&p, &from) || !acct_u64(&p, &seq) || !acct_u64(&p, &by) ||
	    !acct_u64(&p, &t) || *p || by > UINT32_MAX)
		return -EINVAL;
	if (from >= a->nworkers || seq == 0) {
		a->st->messages_foreign++;
		return 0;
	}
	if (seq >= a->w[from].mt.next_seq) {
		/* Its send record is still on the way (or it never was sent). */
		struct acct_early *e;
		if (a->nearly == ACCOUNT_MAX_EARLY) {
			a->st->messages_foreign++;
			return 0;
		}
		if (a->nearly == a->capearly) {
			size_t cap = a->capearly ? a->capearly * 2 : 64;
			e = realloc(a->early, cap * sizeof(*e));
			if (!e)
				return -EINVAL;
			a->early = e;
			a->capearly = cap;
		}
		e = &a->early[a->nearly++];
		e->worker = (uint32_t)from;
		e->seq = seq;
		e->by = (uint32_t)by;
		e->t = t;
		return 0;
	}
	msgtrack_received(&a->w[from].mt, seq, t, (uint32_t)by);
	return 0;
}

static int acct_established(struct account *a, unsigned gw, char *p)
{
	struct acct_worker *w = &a->w[gw];
	uint64_t c, v;
	struct acct_client *cl;

	if (!acct_u64(&p, &c) || !acct_u64(&p, &v) || !*p || c < w->first ||
	    c >= (uint64_t)w->first + w->count || v >= w->nv)
		return -EINVAL;
	cl = &a->cl[c];
	acct_unestablish(a, (uint32_t)c);
	cl->jid = strdup(p);
	if (!cl->jid)
		return -EINVAL;
	cl->version = w->vmap[v];
	cl->est_pos = a->nest;
	a->est[a->nest++] = (uint32_t)c;
	w->established++;
	return 0;
}

int account_record(struct account *a, unsigned gw, char *line)
{
	struct acct_worker *w = &a->w[gw];
	char *p = line + 1;
	uint64_t x;

	if (gw >= a->nworkers || w->gone || !line[0] || (line[1] != ' ' && line[1] != '\0'))
		return -EINVAL;
	if (*p == ' ')
		p++;
	switch (line[0]) {
	case 'S':
		return acct_send(a, gw, p);
	case 'R':
		return acct_arrival(a, p);
	case 'B':
		if (!acct_u64(&p, &x) || *p)
			return -EINVAL;
		if (x > 0 && x < w->mt.next_seq)
			msgtrack_bounced(&w->mt, x);
		return 0;
	case 'E':
		return acct_established(a, gw, p);
	case 'X':
		if (!acct_u64(&p, &x) || *p || x < w->first || x >= (uint64_t)w->first + w->count)
			return -EINVAL;
		acct_unestablish(a, (uint32_t)x);
		return 0;
	case 'V':
		if (!acct_u64(&p, &x) || x != w->nv || x >= STATS_MAX_VERSIONS || !*p)
			return -EINVAL;
		w->vmap[w->nv++] = (uint8_t)stats_version_index(a->st, p);
		return 0;
	case 'T':
		if (!acct_u64(&p, &x) || *p)
			return -EINVAL;
		if (x > w->watermark)
			w->watermark = x;
		return 0;
	case 'D':
		w->drained = true;
		return 0;
	default:
		return -EINVAL;
	}
}

void account_worker_gone(struct account *a, unsigned gw)
{
	struct acct_worker *w = &a->w[gw];

	if (w->gone)
		return;
	w->gone = true;
	w->drained = true;
	for (unsigned c = w->first; c < w->first + w->count; c++)
		acct_unestablish(a, c);
}

void account_expire(struct account *a)
{
	uint64_t mark = UINT64_MAX;

	for (unsigned i = 0; i < a->nworkers; i++)
		if (!a->w[i].gone && a->w[i].watermark < mark)
			mark = a->w[i].watermark;
	if (mark == UINT64_MAX)
		return; /* nobody left to report: account_finish() settles */
	for (unsigned i = 0; i < a->nworkers; i++)
		msgtrack_expire(&a->w[i].mt, mark);
}

void account_timeline(struct account *a, uint64_t t0_us, uint64_t now_us)
{
	while (now_us >= t0_us && (uint64_t)a->next_second * 1000000 <= now_us - t0_us) {
		stats_sample(a->st, a->next_second);
		a->next_second++;
	}
}

void account_finish(struct account *a)
{
	for (unsigned i = 0; i < a->nworkers; i++)
		msgtrack_expire_all(&a->w[i].mt);
	/* Arrivals whose send was never reported were not sent by this run. */
	a->st->messages_foreign += a->nearly;
	a->nearly = 0;
	stats_sample(a->st, a->next_second);
}

bool account_settled(const struct account *a)
{
	for (unsigned i = 0; i < a->nworkers; i++)
		if (!a->w[i].drained || a->w[i].mt.npending)
			return false;
	return true;
}

static uint32_t acct_rand(struct account *a, uint32_t n)
{
	a->rng ^= a->rng >> 12;
	a->rng ^= a->rng << 25;
	a->rng ^= a->rng >> 27;
	return (uint32_t)(((a->rng * 0x2545F4914F6CDD1DULL) >> 32) % n);
}

void account_sample(struct account *a, unsigned gw, struct wire *out)
{
	uint32_t others = a->nest - a->w[gw].established;
	uint32_t picks[ACCOUNT_SAMPLE];
	unsigned n = 0;

	for (unsigned tries = 0; others && n < ACCOUNT_SAMPLE && tries < 4 * ACCOUNT_SAMPLE;
	     tries++) {
		uint32_t c = a->est[acct_rand(a, a->nest)];
		if (acct_owner(a, c) != gw)
			picks[n++] = c;
	}
	wire_printf(out, "A %" PRIu32 " %u\n", others, n);
	for (unsigned i = 0; i < n; i++)
		wire_printf(out, "a %" PRIu32 " %s\n", picks[i], a->cl[picks[i]].jid);
}
