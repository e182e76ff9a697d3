/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoint open (stub until the format layer lands). */
#include <errno.h>

#include "engine/ckpt.h"

int wlift_open_memory(wlift_ctx *ctx, const void *buf, size_t len, const char *name,
		      wlift_ckpt **out, wlift_diag *d)
{
	WLIFT_UNUSED(ctx); WLIFT_UNUSED(buf); WLIFT_UNUSED(len);
	*out = NULL;
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, name, NULL, -1, NULL, "not implemented");
}

void wlift_ckpt_close(wlift_ckpt *ck)
{
	WLIFT_UNUSED(ck);
}
