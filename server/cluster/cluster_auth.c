/*
 * The link handshake: HELLO (a pseudonym only), AUTH (the HMAC proof of the
 * secret), IDENT (who each side is, once the other proved the secret).
 * docs/cluster.md "Handshake".
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* A peer whose HELLO hides its name (a pseudonym) sends IDENT after AUTH. */
int cluster__link_pseudonymous(const struct link *l)
{
	return l->hello_id && l->hello_id[0] == CLUSTER_PSEUDONYM_PREFIX;
}

/* Learns who the peer is (its HELLO for an older peer, its IDENT else). */
static int link_set_peer(struct link *l, const struct cluster_str *id, const struct cluster_str *v,
			 uint16_t port)
{
	free(l->peer_id);
	free(l->peer_version);
	l->peer_id = strndup(id->p, id->len);
	l->peer_version = strndup(v->p, v->len);
	if (!l->peer_id || !l->peer_version)
		return -ENOMEM;
	l->peer_port = port;
	if (l->target) {
		free(l->target->peer_id);
		l->target->peer_id = strdup(l->peer_id);
	}
	return 0;
}

void cluster__on_hello(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	uint8_t mac[CLUSTER_MAC_LEN];
	const char *did, *aid;
	const uint8_t *dn, *an;
	struct link *o;
	int rc;

	if (m->u.hello.proto != CLUSTER_PROTO_VERSION) {
		cluster__link_refuse(l, "protocol-version");
		return;
	}
	l->hello_id = strndup(m->u.hello.instance.p, m->u.hello.instance.len);
	if (!l->hello_id) {
		cluster__link_close(l, "out-of-memory");
		return;
	}
	memcpy(l->peer_nonce, m->u.hello.nonce, CLUSTER_NONCE_LEN);
	/* HELLO is not authenticated: the address is ours (never dialed again)
	 * only when the nonce is one of our other links', i.e. we are talking
	 * to ourselves; anyone else claiming our name or pseudonym is just
	 * refused. */
	for (o = cl->links; o; o = o->next)
		if (o != l && CRYPTO_memcmp(o->nonce, l->peer_nonce, CLUSTER_NONCE_LEN) == 0)
			break;
	if (o || strcmp(l->hello_id, cl->instance) == 0 ||
	    strcmp(l->hello_id, cl->pseudonym) == 0) {
		if (o && l->target) {
			l->target->self = 1;
			log_info("cluster_peer_self", "addr=%s", l->target->key);
		}
		cluster__link_close(l, "self");
		return;
	}
	if (!cluster__link_pseudonymous(l) &&
	    link_set_peer(l, &m->u.hello.instance, &m->u.hello.version, m->u.hello.port) < 0) {
		cluster__link_close(l, "out-of-memory");
		return;
	}
	did = l->dialer ? cl->pseudonym : l->hello_id;
	aid = l->dialer ? l->hello_id : cl->pseudonym;
	dn = l->dialer ? l->nonce : l->peer_nonce;
	an = l->dialer ? l->peer_nonce : l->nonce;
	rc = cluster_auth_mac(cl->secret, cl->secretlen,
			      l->dialer ? CLUSTER_ROLE_DIALER : CLUSTER_ROLE_ACCEPTOR, dn, an, did,
			      aid, mac);
	cluster_buf_reset(&cl->obuf);
	if (rc >= 0)
		rc = cluster_enc_auth(&cl->obuf, mac);
	OPENSSL_cleanse(mac, sizeof(mac));
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		cluster__link_close(l, "auth-encode");
		return;
	}
	l->state = LINK_AUTH;
	cluster__link_flush_obuf(l);
}

void cluster__on_auth(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	const char *did = l->dialer ? cl->pseudonym : l->hello_id;
	const char *aid = l->dialer ? l->hello_id : cl->pseudonym;
	const uint8_t *dn = l->dialer ? l->nonce : l->peer_nonce;
	const uint8_t *an = l->dialer ? l->peer_nonce : l->nonce;
	enum cluster_role prover = l->dialer ? CLUSTER_ROLE_ACCEPTOR : CLUSTER_ROLE_DIALER;

	if (!cluster_auth_verify(cl->secret, cl->secretlen, prover, dn, an, did, aid,
				 m->u.auth.mac)) {
		cluster__link_refuse(l, "bad-secret");
		return;
	}
	if (!cluster__link_pseudonymous(l)) {
		cluster__link_up(l); /* an older peer: it named itself in HELLO */
		return;
	}
	/* The peer knows the secret: now say who we are. */
	cluster_buf_reset(&cl->obuf);
	if (cluster_enc_ident(&cl->obuf, cl->instance, cl->version, cl->listen_port) < 0) {
		cluster_buf_reset(&cl->obuf);
		cluster__link_close(l, "ident-encode");
		return;
	}
	l->state = LINK_IDENT;
	cluster__link_flush_obuf(l);
}

void cluster__on_ident(struct link *l, const struct cluster_msg *m)
{
	if (link_set_peer(l, &m->u.ident.instance, &m->u.ident.version, m->u.ident.port) < 0) {
		cluster__link_close(l, "out-of-memory");
		return;
	}
	if (strcmp(l->peer_id, l->cl->instance) == 0) {
		/* another instance with our name, and the secret */
		log_warn("cluster_same_instance_id", "link=%llu addr=%s instance=%s",
			 (unsigned long long)l->id, l->addr, l->peer_id);
		cluster__link_close(l, "same-instance-id");
		return;
	}
	cluster__link_up(l);
}
