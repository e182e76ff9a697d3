/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: any bytes as a `load --shard-spec` file (cli_shard_parse), then its rules
 * applied by the select and partition stages to a fixed checkpoint for every rank of a world
 * of 3. An accepted spec has a non-empty pattern and a dim >= -1 in every rule; a partition
 * either fails with an explained error naming the tensor, or gives each tensor a block inside
 * its own bytes whose view shape and size agree. A rejected spec ends in its rule and never
 * quotes the input. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/stages.h"

/* a F32 [4,6]; b U8 [5]; c F16 [2,3,4]; s F32 [] */
static const char json[] =
	"{\"a\":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
	"\"b\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[96,101]},"
	"\"c\":{\"dtype\":\"F16\",\"shape\":[2,3,4],\"data_offsets\":[101,149]},"
	"\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[149,153]}}";

static wlift_ckpt *ckpt(void)
{
	static uint8_t img[8 + sizeof(json) - 1 + 153];
	static wlift_ckpt *ck;
	uint64_t n = sizeof(json) - 1;

	if (ck)
		return ck;
	for (int i = 0; i < 8; i++)
		img[i] = (uint8_t)(n >> (8 * i));
	memcpy(img + 8, json, n);
	if (wlift_open_memory(NULL, img, sizeof(img), "fuzz", &ck, NULL) != 0)
		__builtin_trap();
	return ck;
}

static void check_partition(const wlift_ckpt *ck, const struct wlift__selection *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const wlift_tensor_info *t = &ck->tensors[s->idx[i]], *p = &s->ti[i];
		if (p->file_offset < t->file_offset ||
		    p->file_offset + p->nbytes > t->file_offset + t->nbytes || p->ndim != t->ndim)
			__builtin_trap();
		for (uint32_t k = 0; k < p->ndim; k++)
			if (p->shape[k] > t->shape[k])
				__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cli_shard sh;
	char msg[256] = "";
	size_t len;

	if (cli_shard_parse((const char *)data, size, &sh, msg, sizeof(msg)) != 0) {
		len = strlen(msg);
		if (!len || msg[len - 1] != ']' || !strstr(msg, "[shard."))
			__builtin_trap();
		return 0;
	}
	for (size_t i = 0; i < sh.n; i++)
		if (!sh.rules[i].pattern || !sh.rules[i].pattern[0] || sh.rules[i].dim < -1)
			__builtin_trap();
	for (int r = 0; r < 3; r++) {
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
		struct wlift__load_cfg c = { .rank = (unsigned)r, .world = 3 };
		struct wlift__selection s;
		wlift_diag d;
		int ret;

		o.rank = r;
		o.world_size = 3;
		o.shard = sh.rules;
		o.nshard = sh.n;
		wlift_diag_clear(&d);
		if (wlift__load_select(ckpt(), &o, &s, &d) != 0)
			__builtin_trap();
		ret = wlift__load_partition(ckpt(), &o, &c, &s, &d);
		if (ret == 0)
			check_partition(ckpt(), &s);
		else if (!d.code || !d.message[0] || !d.tensor[0])
			__builtin_trap();
		wlift__selection_free(&s);
	}
	cli_shard_free(&sh);
	return 0;
}
