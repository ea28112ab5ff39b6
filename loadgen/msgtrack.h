/*
 * Fate of every message this process sends. Message n carries the id
 * "w<worker>-<n>" (n counts from 1 in each process); the sender records its
 * send time here, and whoever sees the message again (the receiving client,
 * or the sender getting an error bounce) resolves it:
 *   delivered   first arrival within the loss timeout (latency recorded)
 *   duplicated  a further arrival after delivery
 *   bounced     an error stanza with that id came back to the sender
 *   lost        neither within the loss timeout
 *   late        arrived after it had been counted lost (stays lost)
 * and, apart from these fates, every arrival at a client other than the one
 * it was addressed to counts as misdelivered (the message stays pending for
 * its addressee).
 * The records of the last loss timeout are kept in send order (expiry only
 * looks at the oldest ones; a duplicate within that time finds its version
 * pair); every id ever sent keeps a 2-bit state, so duplicates are
 * recognised for the whole run.
 */
#ifndef CHATLOAD_MSGTRACK_H
#define CHATLOAD_MSGTRACK_H

#include <stdint.h>

struct stats;

#define MSGTRACK_NO_VERSION 0xffu /* receiver not online: no version pair */

struct msgtrack_pending {
	uint64_t sent_us; /* monotonic send time */
	uint32_t to;	  /* global client number it is addressed to */
	uint8_t sver;	  /* sender's server version index */
	uint8_t rver;	  /* receiver's server version index, or MSGTRACK_NO_VERSION */
	uint8_t flags;	  /* MSGTRACK_CROSS */
};

/* msgtrack_send_ex() flags */
#define MSGTRACK_OFFLINE 1u /* addressed to a user never online: messages_offline */
#define MSGTRACK_CROSS 2u   /* sender and addressee in different processes */

struct msgtrack {
	struct stats *st;	       /* counters updated here (not owned) */
	uint64_t loss_us;	       /* loss timeout */
	uint64_t next_seq;	       /* next id to hand out (from 1) */
	uint8_t *state;		       /* 2 bits per id ever sent */
	uint64_t state_cap;	       /* ids the state array holds */
	struct msgtrack_pending *pend; /* pend[i] is id base + i */
	uint64_t base;
	uint64_t off; /* pend[0..off) are resolved and dropped */
	uint64_t len, cap;
	uint64_t npending; /* ids still pending */
};

int msgtrack_init(struct msgtrack *mt, struct stats *st, double loss_timeout_s);
void msgtrack_free(struct msgtrack *mt);

/* Records a send to global client number `to`; returns its id number, or 0
 * when out of memory. rver MSGTRACK_NO_VERSION counts it in messages_offline. */
uint64_t msgtrack_send(struct msgtrack *mt, uint64_t now_us, unsigned sver, unsigned rver,
		       uint32_t to);
/* The same with explicit flags: rver MSGTRACK_NO_VERSION only leaves the
 * message out of the version pairs (the addressee was not online when it
 * was sent); MSGTRACK_OFFLINE counts it in messages_offline; MSGTRACK_CROSS
 * in messages_cross_worker. */
uint64_t msgtrack_send_ex(struct msgtrack *mt, uint64_t now_us, unsigned sver, unsigned rver,
			  uint32_t to, unsigned flags);
/* A message with id seq arrived at global client number `by`. */
void msgtrack_received(struct msgtrack *mt, uint64_t seq, uint64_t now_us, uint32_t by);
/* An error bounce for id seq came back. */
void msgtrack_bounced(struct msgtrack *mt, uint64_t seq);
/* Counts as lost every message pending for longer than the loss timeout
 * (sent at or before now_us - loss timeout; now_us may be below send times). */
void msgtrack_expire(struct msgtrack *mt, uint64_t now_us);
/* Counts every pending message as lost now (end of run). */
void msgtrack_expire_all(struct msgtrack *mt);

#endif
