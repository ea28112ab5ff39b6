/*
 * libFuzzer target for JID parsing and preparation (common/jid.c).
 *
 * Besides not crashing, a prepared JID must be stable: formatting it and
 * parsing the result again gives the same JID. chatd relies on that when it
 * re-parses JIDs it formatted itself (routing keys, cluster messages).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jid j, k;
	char *s, full[JID_BUF_SIZE], bare[JID_BUF_SIZE];

	if (size > 4000)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (jid_parse(s, &j) == 0) {
		if (!j.domain || (j.node && !*j.node) || (j.resource && !*j.resource) ||
		    strlen(j.domain) > JID_PART_MAX)
			abort();
		if (jid_format_full(&j, full, sizeof(full)) < 0 ||
		    jid_format_bare(&j, bare, sizeof(bare)) < 0)
			abort();
		if (jid_parse(full, &k) != 0 || !jid_equal(&j, &k))
			abort();
		jid_clear(&k);
		if (jid_parse(bare, &k) != 0 || !jid_bare_equal(&j, &k) || k.resource)
			abort();
		jid_clear(&k);
		jid_clear(&j);
	}
	free(s);
	return 0;
}
