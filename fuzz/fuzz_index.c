/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: any byte string parsed as a model.safetensors.index.json gives an index whose
 * every shard name stays inside the checkpoint (relative, no "..", no NUL), or a clean error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wlift__index ix;
	wlift_diag d;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	wlift_diag_clear(&d);
	if (wlift__index_parse(text, size, "fuzz.json", &ix, &d) == 0) {
		if (!ix.nentries || !ix.nshards)
			__builtin_trap();
		for (size_t i = 0; i < ix.nshards; i++) {
			const char *s = ix.shards[i];
			if (!*s || s[0] == '/' || strcmp(s, "..") == 0 || strncmp(s, "../", 3) == 0 ||
			    strstr(s, "/../") ||
			    (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0))
				__builtin_trap();
		}
		for (size_t i = 0; i < ix.nentries; i++)
			if (ix.shard[i] >= ix.nshards)
				__builtin_trap();
		wlift__index_free(&ix);
	} else if (d.code == 0 || d.message[0] == '\0') {
		__builtin_trap(); /* every rejection is explained */
	}
	free(text);
	return 0;
}
