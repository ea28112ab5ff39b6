/*
 * SASL for client streams (RFC 6120 6): the <mechanisms/> feature and the
 * exchange behind <auth/>, <response/> and <abort/>. Mechanisms:
 * SCRAM-SHA-256 and SCRAM-SHA-1 (common/scram.h), PLAIN (only with TLS
 * unless --allow-plaintext-auth or --auth-any), ANONYMOUS (with
 * --allow-anonymous). Accounts come from --users, or from --auth-any: any
 * user name; PLAIN accepts any password, SCRAM uses credentials synthesized
 * from the user name with the user name as password (SCRAM cannot accept an
 * unknown password), cached per user name so that logins do not each pay
 * 4096 PBKDF2 iterations.
 */
#ifndef CHATD_SASL_H
#define CHATD_SASL_H

#include "xml.h"

struct conn;
struct sasl;
struct sasl_cache;

enum sasl_result {
	SASL_CONTINUE = 0, /* <challenge/> sent, waiting for <response/> */
	SASL_SUCCESS,	   /* <success/> sent; c->user is set */
	SASL_FAILURE,	   /* <failure/> sent; the exchange is over */
	SASL_BLOCKED,	   /* too many failures (address or name): nothing sent, not
			      evaluated; the caller holds then closes the stream */
};

/* Appends <mechanisms .../> for this connection (none when TLS is
 * required and not active). */
void sasl_features(struct conn *c, struct xbuf *out);

/* <auth mechanism='...'>: starts an exchange (c->sasl may be created). */
enum sasl_result sasl_auth(struct conn *c, const struct xnode *auth);
/* <response>: the next step. */
enum sasl_result sasl_response(struct conn *c, const struct xnode *resp);
/* <abort/>: sends <failure><aborted/></failure>. */
void sasl_abort(struct conn *c);

void sasl_free(struct sasl *s);

struct sasl_cache *sasl_cache_new(void);
void sasl_cache_free(struct sasl_cache *cache);

#endif
