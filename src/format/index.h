/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index of a sharded checkpoint (model.safetensors.index.json): a JSON object whose
 * "weight_map" maps each tensor name to the shard file holding it. Other keys ("metadata"
 * with total_size, ...) are ignored.
 */
#ifndef WLIFT_FORMAT_INDEX_H
#define WLIFT_FORMAT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct wlift__index {
	size_t nshards;
	char **shards;     /* distinct shard file names as written, sorted bytewise */
	size_t nentries;
	char **names;      /* weight_map keys, in file order */
	uint32_t *shard;   /* nentries: index into shards for each name */
};

/* Parse len bytes of text (the index file `file`, for diagnostics). Every weight_map value
 * must be a non-empty string; an empty weight_map is an error (WLIFT_EINDEX). */
int wlift__index_parse(const char *text, size_t len, const char *file, struct wlift__index *ix,
		       wlift_diag *d);
void wlift__index_free(struct wlift__index *ix);

#endif
