/*
 * IQs the server answers itself (to the domain, to the user's own bare JID
 * or without 'to'): XEP-0199 ping, XEP-0030 disco#info and disco#items,
 * XEP-0092 software version (name "chatd", the version label, os
 * "instance=<instance>"), the roster (RFC 6121 2: always empty, nothing is
 * stored; a roster set is refused), the RFC 3921 session, and
 * resource binding (RFC 6120 7) before the session is established.
 */
#ifndef CHATD_IQ_H
#define CHATD_IQ_H

#include "conn.h"
#include "router.h"
#include "xml.h"
#include "xmppns.h"

/* Answers an iq get/set addressed to the server or a bare JID (the
 * router's hook, struct router_hooks). Takes ownership of iq. */
void iq_handle(struct conn *c, struct xnode *iq, enum router_to target);

/* <iq type='set'><bind/></iq> in ST_BIND; binds and moves to established,
 * or answers an error. Takes ownership of iq. */
void iq_bind(struct conn *c, struct xnode *iq);

/* A result/error iq addressed to the server: our ping's answer, or dropped. */
void iq_result_to_server(struct conn *c, struct xnode *iq);

/* Builds <iq type='result' id=... to=... from=.../> answering iq. */
struct xnode *iq_result(const struct xnode *iq);

#endif
