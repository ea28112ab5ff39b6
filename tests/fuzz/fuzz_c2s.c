/*
 * libFuzzer target for a whole client connection of chatd: the input is
 * what one client sends on a plaintext c2s stream (header, STARTTLS, SASL,
 * bind, stanzas, in any order), fed through the real conn/session/sasl/iq/
 * router/presence code on a socketpair inside a libuv loop. A second,
 * already bound session (witness@example.test/w, available) receives what
 * the fuzzed client routes to it. TLS is left out (no certificate: STARTTLS
 * gets <failure/>).
 *
 * The first input byte picks how the rest is cut into reads (0: one read,
 * n: reads of n bytes), since a stream restart or a stanza may straddle
 * reads. The loop runs between reads, so deferred closes and write
 * completions happen as they would in chatd. Every allocation is freed by
 * the end of the run (LeakSanitizer checks).
 *
 * Stream management (XEP-0198) is on with resumption: a session that ends
 * without </stream:stream> detaches and is ended at the end of the run.
 *
 * Demo-mode credentials (--auth-any, --allow-anonymous) make every login
 * path reachable: PLAIN with any password, SCRAM with the user name as
 * password, ANONYMOUS; failed-login throttling is on with tiny limits (3
 * failures per address, 1 per name), so blocked logins and held streams are
 * reached too.
 */
#include "client_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	harness_init("fuzz_c2s");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return harness_run(data, size, session_init, session_input);
}
