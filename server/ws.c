/*
 * XMPP over WebSocket (RFC 7395): the HTTP upgrade (http-parser), frames
 * (wslay), <open/>/<close/> mapped to the stream header and its end.
 */
#include "ws.h"

#include <errno.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>
#include <http_parser.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "b64.h"
#include "conn.h"
#include "session.h"
#include "srv.h"
#include "xmppns.h"
#include "xstream.h"

/* RFC 6455 4.2.2: the accept key is SHA-1(key + this GUID), base64. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* The header fields the upgrade looks at. */
enum ws_field { WSF_OTHER, WSF_UPGRADE, WSF_CONNECTION, WSF_KEY, WSF_VERSION, WSF_PROTOCOL };

struct ws {
	struct conn *c;
	wslay_event_context_ptr ctx; /* after the upgrade, else NULL */
	/* The upgrade request, while it is read. */
	http_parser hp;
	size_t req_bytes; /* bytes of the request so far (WS_MAX_REQUEST) */
	char key[64];	  /* Sec-WebSocket-Key */
	char path_ok, upgrade_ok, conn_ok, version_ok, proto_ok, headers_done;
	char field_buf[32]; /* the field name being read (split across reads) */
	size_t field_len;   /* its length; (size_t)-1 after a value: a new one starts */
	/* Input frames: the bytes wslay's recv callback takes from. */
	const char *in;
	size_t in_len;
	int http_replied;    /* an HTTP answer went out */
	int stream_open;     /* an <open/> was fed and no <close/> since */
	int close_pending;   /* <close/> queued: the WebSocket close follows it */
	struct ws_framer fr; /* session output -> messages */
};

/* ---- output: one message per top-level element ------------------------- */

enum { FS_TEXT, FS_LT, FS_TAG, FS_QUOTE, FS_PI, FS_PI_Q, FS_END };

void ws_framer_init(struct ws_framer *f)
{
	memset(f, 0, sizeof(*f));
	xbuf_init(&f->cur);
}

void ws_framer_free(struct ws_framer *f)
{
	xbuf_free(&f->cur);
}

/* Inserts ins after the element name of the start tag in buf. */
static int insert_after_name(struct xbuf *out, const char *el, size_t len, const char *ins)
{
	size_t n = 1;

	while (n < len && !isspace((unsigned char)el[n]) && el[n] != '/' && el[n] != '>')
		n++;
	return xbuf_append(out, el, n) || xbuf_puts(out, ins) || xbuf_append(out, el + n, len - n);
}

/* 1 when the start tag of el declares a default namespace (quote-aware). */
static int has_default_ns(const char *el, size_t len)
{
	char q = 0;

	for (size_t i = 1; i < len; i++) {
		char ch = el[i];

		if (q) {
			if (ch == q)
				q = 0;
			continue;
		}
		if (ch == '\'' || ch == '"')
			q = ch;
		else if (ch == '>')
			return 0;
		else if (isspace((unsigned char)ch) && len - i > 7 &&
			 strncmp(el + i + 1, "xmlns=", 6) == 0)
			return 1;
	}
	return 0;
}

/* Each message must parse by itself (RFC 7395 3.3.3): declare what the
 * stream header declared on a TCP stream. */
static int frame_element(const char *el, size_t len, ws_emit_fn emit, void *ud)
{
	struct xbuf out;
	int r = 0;

	if (len > 8 && strncmp(el, "<stream:", 8) == 0) {
		xbuf_init(&out);
		r = insert_after_name(&out, el, len, " xmlns:stream='" NS_STREAM "'");
	} else if (!has_default_ns(el, len) &&
		   ((len > 8 && strncmp(el, "<message", 8) == 0) ||
		    (len > 9 && strncmp(el, "<presence", 9) == 0) ||
		    (len > 3 && strncmp(el, "<iq", 3) == 0 &&
		     (isspace((unsigned char)el[3]) || el[3] == '>' || el[3] == '/')))) {
		xbuf_init(&out);
		r = insert_after_name(&out, el, len, " xmlns='" NS_CLIENT "'");
	} else {
		emit(ud, el, len, 0);
		return 0;
	}
	if (r == 0 && out.data)
		emit(ud, out.data, out.len, 0);
	else
		r = -ENOMEM;
	xbuf_free(&out);
	return r;
}

int ws_framer_feed(struct ws_framer *f, const char *data, size_t len, ws_emit_fn emit, void *ud)
{
	/* Written the way Strophe.js (1.2) compares it, character for
	 * character, to know the stream ended. */
	static const char close_msg[] = "<close xmlns=\"" NS_FRAMING "\" />";

	for (size_t i = 0; i < len; i++) {
		char ch = data[i];

		switch (f->st) {
		case FS_TEXT:
			if (ch == '<') {
				f->st = FS_LT;
				continue;
			}
			/* Whitespace between elements is not sent (no keepalive
			 * spaces: WebSocket pings do that). */
			if (f->depth == 0)
				continue;
			break;
		case FS_LT:
			if (ch == '?') {
				f->st = FS_PI; /* the XML declaration: not framed */
				continue;
			}
			f->closing = ch == '/';
			f->st = FS_TAG;
			f->last = 0;
			if (f->closing && f->depth == 0) {
				/* </stream:stream>: the end of the stream. */
				f->st = FS_END;
				continue;
			}
			if (xbuf_append(&f->cur, "<", 1) != 0)
				return -ENOMEM;
			break;
		case FS_TAG:
			if (ch == '\'' || ch == '"') {
				f->quote = (unsigned char)ch;
				f->st = FS_QUOTE;
			} else if (ch == '>') {
				f->st = FS_TEXT;
				if (f->closing)
					f->depth--;
				else if (f->last != '/')
					f->depth++;
				if (xbuf_append(&f->cur, ">", 1) != 0)
					return -ENOMEM;
				if (f->depth == 0) {
					int r = f->cur.data ? frame_element(f->cur.data, f->cur.len,
									    emit, ud)
							    : -ENOMEM;

					if (f->cur.cap > 4096) {
						xbuf_free(&f->cur);
						xbuf_init(&f->cur);
					}
					f->cur.len = 0;
					if (r != 0)
						return -ENOMEM;
				}
				continue;
			}
			if (!isspace((unsigned char)ch))
				f->last = (unsigned char)ch;
			break;
		case FS_QUOTE:
			if ((unsigned char)ch == f->quote)
				f->st = FS_TAG;
			break;
		case FS_PI:
			if (ch == '?')
				f->st = FS_PI_Q;
			continue;
		case FS_PI_Q:
			f->st = ch == '>' ? FS_TEXT : ch == '?' ? FS_PI_Q : FS_PI;
			continue;
		case FS_END: /* inside </stream:stream> */
			if (ch == '>') {
				f->st = FS_TEXT;
				emit(ud, close_msg, sizeof(close_msg) - 1, 1);
			}
			continue;
		default:
			continue;
		}
		if (xbuf_append(&f->cur, &ch, 1) != 0)
			return -ENOMEM;
	}
	return 0;
}

void ws_open_header(struct xbuf *b, const char *id, const char *domain)
{
	xbuf_puts(b, "<open xmlns='" NS_FRAMING "' id='");
	xbuf_puts(b, id);
	xbuf_puts(b, "' from='");
	xbuf_escape(b, domain, strlen(domain));
	xbuf_puts(b, "' version='1.0' xml:lang='en'/>");
}

/* ---- WebSocket (wslay) ------------------------------------------------- */

static void ws_flush(struct ws *ws)
{
	if (!ws->ctx)
		return;
	if (wslay_event_send(ws->ctx) != 0) {
		conn_fail(ws->c, CLOSE_RESET);
		return;
	}
	/* wslay sends control frames before queued messages: the close goes
	 * in only once the <close/> message is out. */
	if (ws->close_pending) {
		ws->close_pending = 0;
		if (wslay_event_queue_close(ws->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0) == 0 &&
		    wslay_event_send(ws->ctx) != 0)
			conn_fail(ws->c, CLOSE_RESET);
	}
}

static void emit_msg(void *ud, const char *msg, size_t len, int close)
{
	struct ws *ws = ud;
	struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)msg, len };

	if (wslay_event_queue_msg(ws->ctx, &m) != 0)
		return; /* a close went out already: nothing more is said */
	if (close)
		ws->close_pending = 1;
}

void ws_send(struct conn *c, const char *data, size_t len)
{
	struct ws *ws = c->ws;

	if (!ws->ctx) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
					   "Content-Length: 0\r\nConnection: close\r\n\r\n";

		/* The session closing before the upgrade (too many connections,
		 * shutdown): say so in HTTP, once. */
		if (c->closing && !ws->http_replied) {
			ws->http_replied = 1;
			conn_write_raw(c, busy, sizeof(busy) - 1);
		}
		return;
	}
	if (len && ws_framer_feed(&ws->fr, data, len, emit_msg, ws) != 0) {
		conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
		return;
	}
	ws_flush(ws);
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
			  void *ud)
{
	struct ws *ws = ud;

	/* conn_write_raw takes it all (what the kernel refuses is queued
	 * under --max-output). */
	conn_write_raw(ws->c, (const char *)data, len);
	return (ssize_t)len;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			  void *ud)
{
	struct ws *ws = ud;
	size_t n = ws->in_len < len ? ws->in_len : len;

	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(buf, ws->in, n);
	ws->in += n;
	ws->in_len -= n;
	return (ssize_t)n;
}

/* <open/> and <close/>: their attributes, checked with expat. */
struct framing_el {
	int depth, is_open, is_close, bad;
	char to[1024], version[16], lang[64];
};

static void fr_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct framing_el *e = ud;

	if (e->depth++ > 0) {
		e->bad = 1; /* children: not a framing element */
		return;
	}
	e->is_open = strcmp(name, NS_FRAMING "|open") == 0;
	e->is_close = strcmp(name, NS_FRAMING "|close") == 0;
	for (size_t i = 0; attrs[i]; i += 2) {
		const char *v = attrs[i + 1];

		if (strcmp(attrs[i], "to") == 0)
			snprintf(e->to, sizeof(e->to), "%s", v);
		else if (strcmp(attrs[i], "version") == 0)
			snprintf(e->version, sizeof(e->version), "%s", v);
		else if (strcmp(attrs[i], "http://www.w3.org/XML/1998/namespace|lang") == 0)
			snprintf(e->lang, sizeof(e->lang), "%s", v);
	}
}

static void fr_end(void *ud, const XML_Char *name)
{
	((struct framing_el *)ud)->depth--;
}

static void fr_doctype(void *ud, const XML_Char *n, const XML_Char *s, const XML_Char *p,
		       int internal)
{
	((struct framing_el *)ud)->bad = 1;
}

static int is_framing(const char *msg, size_t len, const char *name)
{
	size_t n = strlen(name);

	while (len && isspace((unsigned char)*msg)) {
		msg++;
		len--;
	}
	return len > n + 1 && msg[0] == '<' && strncmp(msg + 1, name, n) == 0 &&
	       (isspace((unsigned char)msg[n + 1]) || msg[n + 1] == '/' || msg[n + 1] == '>');
}

/* 0 and e filled, or -EINVAL when msg is not one framing element (expat,
 * no DTD), -ENOMEM. */
static int parse_framing(const char *msg, size_t len, struct framing_el *e)
{
	XML_Parser p = XML_ParserCreateNS("UTF-8", '|');
	int ok;

	memset(e, 0, sizeof(*e));
	if (!p)
		return -ENOMEM;
	XML_SetUserData(p, e);
	XML_SetElementHandler(p, fr_start, fr_end);
	XML_SetStartDoctypeDeclHandler(p, fr_doctype);
	ok = XML_Parse(p, msg, (int)len, 1) == XML_STATUS_OK && !e->bad &&
	     (e->is_open || e->is_close);
	XML_ParserFree(p);
	return ok ? 0 : -EINVAL;
}

static void ws_stream_error(struct conn *c, const char *cond, const char *text)
{
	conn_close(c, close_reason_from_condition(cond), cond, text);
}

/* One text message from the client. */
static void ws_message(struct ws *ws, const char *msg, size_t len)
{
	struct conn *c = ws->c;
	struct framing_el e;

	if (is_framing(msg, len, "open")) {
		struct xbuf h;

		/* Small and rare: bounded like a stream header. */
		if (len > 4096 || parse_framing(msg, len, &e) != 0 || !e.is_open) {
			ws_stream_error(c, "bad-format", "an <open/> in the framing namespace");
			return;
		}
		xbuf_init(&h);
		xbuf_puts(&h, XMPP_STREAM_OPEN);
		if (e.to[0]) {
			xbuf_puts(&h, " to='");
			xbuf_escape(&h, e.to, strlen(e.to));
			xbuf_puts(&h, "'");
		}
		if (e.version[0]) {
			xbuf_puts(&h, " version='");
			xbuf_escape(&h, e.version, strlen(e.version));
			xbuf_puts(&h, "'");
		}
		xbuf_puts(&h, ">");
		if (!h.data) {
			xbuf_free(&h);
			ws_stream_error(c, "resource-constraint", NULL);
			return;
		}
		ws->stream_open = 1;
		session_input(c, h.data, h.len);
		xbuf_free(&h);
		return;
	}
	if (is_framing(msg, len, "close")) {
		if (len > 4096 || parse_framing(msg, len, &e) != 0 || !e.is_close) {
			ws_stream_error(c, "bad-format", "a <close/> in the framing namespace");
			return;
		}
		ws->stream_open = 0;
		session_input(c, "</stream:stream>", 16);
		return;
	}
	if (!ws->stream_open || xstream_depth(c->xs) != 1) {
		ws_stream_error(c, "bad-format", "<open/> first");
		return;
	}
	session_input(c, msg, len);
	/* RFC 7395 3.3.3: every message is whole elements (depth 0: the
	 * stream restarts after SASL, the next message is an <open/>). */
	if (!c->closing && xstream_depth(c->xs) > 0 && !xstream_at_boundary(c->xs))
		ws_stream_error(c, "bad-format", "a WebSocket message must hold whole elements");
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		      void *ud)
{
	struct ws *ws = ud;
	struct conn *c = ws->c;

	if (c->closing)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME)
		ws_message(ws, (const char *)arg->msg, arg->msg_length);
	else if (arg->opcode == WSLAY_BINARY_FRAME)
		ws_stream_error(c, "bad-format", "XMPP travels in text messages (RFC 7395)");
	/* close: wslay answers it; ping: wslay pongs; the caller sees the close */
}

static const struct wslay_event_callbacks ws_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_msg_cb,
};

static void ws_frames(struct ws *ws, const char *data, size_t len)
{
	struct conn *c = ws->c;
	int r;

	ws->in = data;
	ws->in_len = len;
	r = wslay_event_recv(ws->ctx);
	ws->in = NULL;
	ws->in_len = 0;
	ws_flush(ws);
	if (c->closing)
		return;
	if (r != 0) {
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, NULL, NULL);
	} else if (!wslay_event_get_read_enabled(ws->ctx)) {
		/* The client's WebSocket close (answered by wslay), or a frame
		 * wslay refused (it sent 1002/1009): the stream is over. */
		int theirs = wslay_event_get_close_received(ws->ctx);

		conn_log(c, LOG_DEBUG, "ws_close", "received=%d status=%u", theirs,
			 (unsigned)wslay_event_get_status_code_received(ws->ctx));
		if (theirs)
			conn_close(c, CLOSE_CLIENT, NULL, NULL);
		else
			conn_close(c, CLOSE_POLICY_VIOLATION, NULL, NULL);
	}
}

/* ---- the upgrade request (http-parser) ---------------------------------- */

static struct ws *hp_ws(http_parser *hp)
{
	return hp->data;
}

/* 1 when the comma-separated list v holds token t (case-insensitive). */
static int has_token(const char *v, size_t len, const char *t)
{
	size_t tl = strlen(t), i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len && (v[i] == ',' || isspace((unsigned char)v[i])))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		e = i;
		while (e > s && isspace((unsigned char)v[e - 1]))
			e--;
		if (e - s == tl && strncasecmp(v + s, t, tl) == 0)
			return 1;
	}
	return 0;
}

static int hp_url(http_parser *hp, const char *at, size_t len)
{
	struct http_parser_url u;
	struct ws *ws = hp_ws(hp);

	http_parser_url_init(&u);
	if (http_parser_parse_url(at, len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
		return 0;
	ws->path_ok = u.field_data[UF_PATH].len == strlen(WS_PATH) &&
		      strncmp(at + u.field_data[UF_PATH].off, WS_PATH, strlen(WS_PATH)) == 0;
	return 0;
}

static int hp_field(http_parser *hp, const char *at, size_t len)
{
	struct ws *ws = hp_ws(hp);

	/* A field name may arrive in pieces: collect it (longer ones are others). */
	if (ws->field_len == (size_t)-1)
		ws->field_len = 0;
	if (ws->field_len + len >= sizeof(ws->field_buf)) {
		ws->field_len = sizeof(ws->field_buf); /* too long to be ours */
	} else {
		memcpy(ws->field_buf + ws->field_len, at, len);
		ws->field_len += len;
	}
	return 0;
}

static enum ws_field field_kind(const struct ws *ws)
{
	static const struct {
		const char *name;
		enum ws_field f;
	} names[] = { { "upgrade", WSF_UPGRADE },
		      { "connection", WSF_CONNECTION },
		      { "sec-websocket-key", WSF_KEY },
		      { "sec-websocket-version", WSF_VERSION },
		      { "sec-websocket-protocol", WSF_PROTOCOL } };

	if (ws->field_len >= sizeof(ws->field_buf))
		return WSF_OTHER;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == ws->field_len &&
		    strncasecmp(ws->field_buf, names[i].name, ws->field_len) == 0)
			return names[i].f;
	return WSF_OTHER;
}

static int hp_value(http_parser *hp, const char *at, size_t len)
{
	struct ws *ws = hp_ws(hp);
	enum ws_field f = field_kind(ws);

	/* The next field name starts afresh. */
	ws->field_len = (size_t)-1;
	switch (f) {
	case WSF_UPGRADE:
		if (has_token(at, len, "websocket"))
			ws->upgrade_ok = 1;
		break;
	case WSF_CONNECTION:
		if (has_token(at, len, "upgrade"))
			ws->conn_ok = 1;
		break;
	case WSF_KEY:
		if (len < sizeof(ws->key)) {
			memcpy(ws->key, at, len);
			ws->key[len] = '\0';
		}
		break;
	case WSF_VERSION:
		ws->version_ok = len == 2 && memcmp(at, "13", 2) == 0;
		break;
	case WSF_PROTOCOL:
		if (has_token(at, len, WS_PROTOCOL))
			ws->proto_ok = 1;
		break;
	default:
		break;
	}
	return 0;
}

static int hp_headers_done(http_parser *hp)
{
	hp_ws(hp)->headers_done = 1;
	return 0;
}

static const http_parser_settings hp_settings = {
	.on_url = hp_url,
	.on_header_field = hp_field,
	.on_header_value = hp_value,
	.on_headers_complete = hp_headers_done,
};

static void http_refuse(struct ws *ws, const char *status, const char *extra, const char *why)
{
	struct conn *c = ws->c;
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n%s\r\n%s\n",
			 status, strlen(why) + 1, extra, why);

	ws->http_replied = 1;
	conn_write_raw(c, buf, (size_t)n);
	conn_log(c, LOG_INFO, "ws_refused", "status=\"%s\" why=\"%s\"", status, why);
	conn_close(c, CLOSE_BAD_FORMAT, NULL, NULL);
}

static int ws_upgrade(struct ws *ws)
{
	struct conn *c = ws->c;
	unsigned char digest[SHA_DIGEST_LENGTH];
	char cat[128], accept[64], resp[512];
	int n;

	if (ws->hp.method != HTTP_GET) {
		http_refuse(ws, "405 Method Not Allowed", "Allow: GET\r\n", "GET only");
		return -EINVAL;
	}
	if (!ws->path_ok) {
		http_refuse(ws, "404 Not Found", "", "XMPP over WebSocket is at " WS_PATH);
		return -EINVAL;
	}
	if (!ws->upgrade_ok || !ws->conn_ok || !ws->version_ok) {
		http_refuse(ws, "426 Upgrade Required",
			    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
			    "a WebSocket upgrade (RFC 6455, version 13) is required");
		return -EINVAL;
	}
	if (strlen(ws->key) != 24) {
		http_refuse(ws, "400 Bad Request", "", "Sec-WebSocket-Key is missing or malformed");
		return -EINVAL;
	}
	if (!ws->proto_ok) {
		http_refuse(ws, "400 Bad Request", "",
			    "the WebSocket subprotocol 'xmpp' is required (RFC 7395)");
		return -EINVAL;
	}
	snprintf(cat, sizeof(cat), "%s" WS_GUID, ws->key);
	SHA1((const unsigned char *)cat, strlen(cat), digest);
	if (b64_encode(digest, sizeof(digest), accept, sizeof(accept)) < 0 ||
	    wslay_event_context_server_init(&ws->ctx, &ws_callbacks, ws) != 0) {
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, NULL, NULL);
		return -ENOMEM;
	}
	/* A message holds at most one stanza; the session's limits do the rest. */
	wslay_event_config_set_max_recv_msg_length(ws->ctx, c->srv->cfg->max_stanza + 4096);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
		     "Sec-WebSocket-Protocol: " WS_PROTOCOL "\r\n\r\n",
		     accept);
	ws->http_replied = 1;
	conn_write_raw(c, resp, (size_t)n);
	conn_log(c, LOG_DEBUG, "ws_upgrade", "%s", "");
	return 0;
}

void ws_input(struct conn *c, const char *data, size_t len)
{
	struct ws *ws = c->ws;
	size_t used;

	if (ws->ctx) {
		ws_frames(ws, data, len);
		return;
	}
	used = http_parser_execute(&ws->hp, &hp_settings, data, len);
	ws->req_bytes += used;
	if (HTTP_PARSER_ERRNO(&ws->hp) != HPE_OK && !ws->headers_done) {
		http_refuse(ws, "400 Bad Request", "",
			    http_errno_description(HTTP_PARSER_ERRNO(&ws->hp)));
		return;
	}
	if (!ws->headers_done) {
		if (ws->req_bytes > WS_MAX_REQUEST)
			http_refuse(ws, "431 Request Header Fields Too Large", "",
				    "the upgrade request is too large");
		return;
	}
	if (ws->req_bytes > WS_MAX_REQUEST) {
		http_refuse(ws, "431 Request Header Fields Too Large", "",
			    "the upgrade request is too large");
		return;
	}
	if (ws_upgrade(ws) != 0)
		return;
	/* Frames the client sent right behind its request. */
	if (used < len && !c->closing)
		ws_frames(ws, data + used, len - used);
}

struct ws *ws_new(struct conn *c)
{
	struct ws *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return NULL;
	ws->c = c;
	http_parser_init(&ws->hp, HTTP_REQUEST);
	ws->hp.data = ws;
	ws->field_len = (size_t)-1;
	ws_framer_init(&ws->fr);
	return ws;
}

void ws_free(struct ws *ws)
{
	if (!ws)
		return;
	if (ws->ctx)
		wslay_event_context_free(ws->ctx);
	ws_framer_free(&ws->fr);
	free(ws);
}
