/*
 * libFuzzer target for the session state that crosses a cluster link when a
 * stream-managed session is resumed at another instance
 * (server/sm_state.c). Besides not crashing or leaking: a state that
 * decodes is consistent (its queue holds exactly the stanzas its counters
 * say, each one well-formed element) and encodes back to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/conn.h"
#include "../../server/sm_state.h"
#include "../../server/smq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct xstream_limits lim = { 65536, 32 };
	struct sm_state st;
	struct conn c;
	struct xbuf b;
	uint32_t n = 0;

	if (sm_state_decode(data, size, &lim, &st) != 0)
		return 0;
	for (const struct smq_item *it = st.q.head; it; it = it->next)
		n++;
	if (n != st.q.count || !smq_id_valid(st.q.id))
		abort();
	/* the same bytes again (presence re-serialized: only when none) */
	memset(&c, 0, sizeof(c));
	c.sm = &st.q;
	c.priority = (int8_t)st.priority;
	c.available = (unsigned)st.available;
	c.directed = st.directed;
	xbuf_init(&b);
	if (!st.presence) {
		if (sm_state_encode(&c, &b) != 0)
			abort();
		if (b.len != size || memcmp(b.data, data, size) != 0)
			abort();
	}
	xbuf_free(&b);
	sm_state_free(&st);
	return 0;
}
