/*
 * libFuzzer target for a whole XMPP over WebSocket (RFC 7395) client
 * connection of chatd: the input is what one client sends on --websocket's
 * port, the HTTP upgrade request and then WebSocket frames (masked or not,
 * fragmented, control frames, <open/>, SASL, bind, stanzas, <close/>), fed
 * through the real ws (http-parser, wslay, the output framer)/conn/session/
 * sasl/iq/router/presence code on a socketpair inside a libuv loop. A
 * second, already bound session (witness@example.test/w, available, plain
 * TCP) receives what the fuzzed client routes to it, so the output framer
 * also sees stanzas routed to a WebSocket client when the witness answers.
 *
 * The first input byte picks how the rest is cut into reads (0: one read,
 * n: reads of n bytes): a request line, a frame header or a message may
 * straddle reads. Every allocation is freed by the end of the run
 * (LeakSanitizer checks). Seeds: tests/fuzz/corpus/fuzz_ws (whole logins).
 */
#include <errno.h>

#include "client_harness.h"
#include "../../server/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	harness_init("fuzz_ws");
	return 0;
}

/* The fresh connection as a WebSocket client (counted as one, as chatd's accept does). */
static int ws_setup(struct conn *c)
{
	srv.metrics.ws_connections++;
	c->ws = ws_new(c);
	return c->ws ? session_init(c) : -ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return harness_run(data, size, ws_setup, ws_input);
}
