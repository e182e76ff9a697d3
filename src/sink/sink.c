/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sink dispatch by device name. "cpu" (or none) is the host arena; the GPU sink plugs in
 * here when it exists.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sink/host.h"
#include "sink/sink.h"

int wlift__sink_open(wlift_ctx *ctx, const char *device, const struct wlift__sink_cfg *cfg,
		     struct wlift__sink **out, wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*out = NULL;
	if (!device || !*device || strcmp(device, "cpu") == 0)
		return wlift__host_sink_create(cfg, out, d);
	if (strcmp(device, "cuda") == 0 || strncmp(device, "cuda:", 5) == 0)
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "load.device",
				       "device \"%s\": the GPU path is not built yet (only \"cpu\" "
				       "is supported by this version)",
				       device);
	return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.device",
			       "device \"%s\" not understood (use \"cpu\", \"cuda\" or \"cuda:N\")",
			       device);
}
