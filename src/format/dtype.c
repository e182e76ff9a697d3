/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data types: the header names of every dtype the reference safetensors format knows, their
 * sizes in bits (sub-byte F4 and F6 included), and the reference's "alignment rank", the order
 * of the reference's Dtype enum, which its writer uses to lay tensors out (largest first).
 */
#include <string.h>

#include "format/header.h"

struct dtype_entry {
	const char *name;
	unsigned bits;
	int rank; /* position in the reference's Dtype enum (declaration order) */
};

/* Indexed by wlift_dtype. Ranks follow the reference enum: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8,
 * F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64,
 * F64, I64, U64 (as listed by its "unknown variant" error message in 0.8.0). */
static const struct dtype_entry dtypes[WLIFT_DTYPE_COUNT] = {
	[WLIFT_BOOL] = { "BOOL", 8, 0 },
	[WLIFT_U8] = { "U8", 8, 4 },
	[WLIFT_I8] = { "I8", 8, 5 },
	[WLIFT_F8_E5M2] = { "F8_E5M2", 8, 6 },
	[WLIFT_F8_E4M3] = { "F8_E4M3", 8, 7 },
	[WLIFT_F8_E8M0] = { "F8_E8M0", 8, 8 },
	[WLIFT_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8, 9 },
	[WLIFT_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8, 10 },
	[WLIFT_I16] = { "I16", 16, 11 },
	[WLIFT_U16] = { "U16", 16, 12 },
	[WLIFT_F16] = { "F16", 16, 13 },
	[WLIFT_BF16] = { "BF16", 16, 14 },
	[WLIFT_I32] = { "I32", 32, 15 },
	[WLIFT_U32] = { "U32", 32, 16 },
	[WLIFT_F32] = { "F32", 32, 17 },
	[WLIFT_F64] = { "F64", 64, 19 },
	[WLIFT_I64] = { "I64", 64, 20 },
	[WLIFT_U64] = { "U64", 64, 21 },
	[WLIFT_C64] = { "C64", 64, 18 },
	[WLIFT_F4] = { "F4", 4, 1 },
	[WLIFT_F6_E2M3] = { "F6_E2M3", 6, 2 },
	[WLIFT_F6_E3M2] = { "F6_E3M2", 6, 3 },
};

static int valid(wlift_dtype t)
{
	return (int)t > 0 && (int)t < WLIFT_DTYPE_COUNT;
}

const char *wlift_dtype_name(wlift_dtype t)
{
	return valid(t) ? dtypes[t].name : NULL;
}

int wlift__dtype_from_name_n(const char *name, size_t len)
{
	for (int i = 1; i < WLIFT_DTYPE_COUNT; i++)
		if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0)
			return i;
	return WLIFT_EDTYPE;
}

int wlift_dtype_from_name(const char *name)
{
	if (!name)
		return WLIFT_EDTYPE;
	return wlift__dtype_from_name_n(name, strlen(name));
}

unsigned wlift_dtype_bits(wlift_dtype t)
{
	return valid(t) ? dtypes[t].bits : 0;
}

int wlift__dtype_rank(wlift_dtype t)
{
	return valid(t) ? dtypes[t].rank : -1;
}
