/*
 * The fate of every message this process sends (delivered, duplicated,
 * bounced, lost, late), from its send record to its first arrival.
 */
#include "msgtrack.h"

#include <stdlib.h>
#include <string.h>

#include "stats.h"

enum { MT_NONE = 0, MT_PENDING = 1, MT_DELIVERED = 2, MT_RESOLVED = 3 };

int msgtrack_init(struct msgtrack *mt, struct stats *st, double loss_timeout_s)
{
	memset(mt, 0, sizeof(*mt));
	mt->st = st;
	mt->loss_us = (uint64_t)(loss_timeout_s * 1e6);
	mt->next_seq = 1;
	mt->base = 1;
	return 0;
}

void msgtrack_free(struct msgtrack *mt)
{
	free(mt->state);
	free(mt->pend);
	memset(mt, 0, sizeof(*mt));
}

static unsigned mt_get(const struct msgtrack *mt, uint64_t seq)
{
	if (seq >= mt->state_cap)
		return MT_NONE;
	return (unsigned)(mt->state[seq / 4] >> ((seq % 4) * 2)) & 3u;
}

static void mt_set(struct msgtrack *mt, uint64_t seq, unsigned v)
{
	unsigned sh = (unsigned)(seq % 4) * 2;

	mt->state[seq / 4] = (uint8_t)((mt->state[seq / 4] & ~(3u << sh)) | (v << sh));
}

static struct msgtrack_pending *mt_pending(struct msgtrack *mt, uint64_t seq)
{
	if (seq < mt->base + mt->off || seq >= mt->base + mt->len)
		return NULL;
	return &mt->pend[seq - mt->base];
}

uint64_t msgtrack_send(struct msgtrack *mt, uint64_t now_us, unsigned sver, unsigned rver,
		       uint32_t to)
{
	return msgtrack_send_ex(mt, now_us, sver, rver, to,
				rver == MSGTRACK_NO_VERSION ? MSGTRACK_OFFLINE : 0);
}

uint64_t msgtrack_send_ex(struct msgtrack *mt, uint64_t now_us, unsigned sver, unsigned rver,
			  uint32_t to, unsigned flags)
{
	uint64_t seq = mt->next_seq;
	struct msgtrack_pending *p;

	if (seq >= mt->state_cap) {
		uint64_t cap = mt->state_cap ? mt->state_cap * 2 : 65536;
		uint8_t *n = realloc(mt->state, cap / 4);
		if (!n)
			return 0;
		memset(n + mt->state_cap / 4, 0, (cap - mt->state_cap) / 4);
		mt->state = n;
		mt->state_cap = cap;
	}
	if (mt->off > 0 && mt->off >= mt->len / 2) {
		/* Drop the resolved head so the array stays the size of the window. */
		memmove(mt->pend, mt->pend + mt->off, (mt->len - mt->off) * sizeof(*mt->pend));
		mt->base += mt->off;
		mt->len -= mt->off;
		mt->off = 0;
	}
	if (mt->len == mt->cap) {
		uint64_t cap = mt->cap ? mt->cap * 2 : 1024;
		struct msgtrack_pending *n = realloc(mt->pend, cap * sizeof(*n));
		if (!n)
			return 0;
		mt->pend = n;
		mt->cap = cap;
	}
	p = &mt->pend[mt->len++];
	p->sent_us = now_us;
	p->to = to;
	p->sver = (uint8_t)sver;
	p->rver = (uint8_t)rver;
	p->flags = (uint8_t)flags;
	mt_set(mt, seq, MT_PENDING);
	mt->next_seq++;
	mt->npending++;
	mt->st->messages_sent++;
	if (flags & MSGTRACK_OFFLINE)
		mt->st->messages_offline++;
	if (flags & MSGTRACK_CROSS)
		mt->st->cross.sent++;
	if (rver != MSGTRACK_NO_VERSION)
		mt->st->pairs[sver][rver].sent++;
	return seq;
}

static struct stats_pair *mt_pair(struct msgtrack *mt, const struct msgtrack_pending *p)
{
	if (!p || p->rver == MSGTRACK_NO_VERSION)
		return NULL;
	return &mt->st->pairs[p->sver][p->rver];
}

static void mt_lose(struct msgtrack *mt, uint64_t seq)
{
	struct msgtrack_pending *p = mt_pending(mt, seq);
	struct stats_pair *pair = mt_pair(mt, p);

	mt_set(mt, seq, MT_RESOLVED);
	mt->npending--;
	mt->st->messages_lost++;
	if (p && (p->flags & MSGTRACK_CROSS))
		mt->st->cross.lost++;
	if (pair)
		pair->lost++;
}

void msgtrack_received(struct msgtrack *mt, uint64_t seq, uint64_t now_us, uint32_t by)
{
	struct msgtrack_pending *p = mt_pending(mt, seq);
	struct stats_pair *pair;
	unsigned state = mt_get(mt, seq);

	if (state != MT_NONE && p && p->to != by) {
		/* Someone else's message: not a delivery, whatever it is. */
		mt->st->messages_misdelivered++;
		return;
	}
	if (state == MT_PENDING && p && now_us >= p->sent_us + mt->loss_us) {
		/* Past its loss timeout even if not expired yet: lost, and late. */
		mt_lose(mt, seq);
		state = MT_RESOLVED;
	}
	switch (state) {
	case MT_PENDING:
		pair = mt_pair(mt, p);
		mt_set(mt, seq, MT_DELIVERED);
		mt->npending--;
		mt->st->messages_delivered++;
		if (p && (p->flags & MSGTRACK_CROSS))
			mt->st->cross.delivered++;
		if (pair)
			pair->delivered++;
		if (p) {
			uint64_t lat = now_us > p->sent_us ? now_us - p->sent_us : 0;

			hist_record(&mt->st->latency_us, lat);
			if (mt->st->window_open)
				hist_record(&mt->st->latency_window_us, lat);
		}
		break;
	case MT_DELIVERED:
		mt->st->messages_duplicated++;
		pair = mt_pair(mt, p);
		if (pair)
			pair->duplicated++;
		break;
	case MT_RESOLVED:
		mt->st->messages_late++;
		break;
	default:
		mt->st->messages_foreign++;
		break;
	}
}

void msgtrack_bounced(struct msgtrack *mt, uint64_t seq)
{
	struct stats_pair *pair;

	if (mt_get(mt, seq) != MT_PENDING)
		return; /* a bounce after delivery or loss changes nothing */
	pair = mt_pair(mt, mt_pending(mt, seq));
	mt_set(mt, seq, MT_RESOLVED);
	mt->npending--;
	mt->st->messages_bounced++;
	if (pair)
		pair->bounced++;
}

void msgtrack_expire(struct msgtrack *mt, uint64_t now_us)
{
	/* Resolved records stay for the loss timeout too, so that a duplicate
	 * finds its version pair: the window is one loss timeout of sends. */
	while (mt->off < mt->len) {
		uint64_t seq = mt->base + mt->off;
		if (now_us < mt->pend[mt->off].sent_us + mt->loss_us)
			break;
		if (mt_get(mt, seq) == MT_PENDING)
			mt_lose(mt, seq);
		mt->off++;
	}
}

void msgtrack_expire_all(struct msgtrack *mt)
{
	for (; mt->off < mt->len; mt->off++) {
		uint64_t seq = mt->base + mt->off;
		if (mt_get(mt, seq) == MT_PENDING)
			mt_lose(mt, seq);
	}
}
