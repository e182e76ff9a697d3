/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sink dispatch by device name: "cpu" (or none) is the host arena, "cuda[:N]" the GPU's
 * pinned-ring sink.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sink/cuda.h"
#include "sink/host.h"
#include "sink/sink.h"

int wlift__device_parse(const char *device, int *index)
{
	if (!device || !*device || strcmp(device, "cpu") == 0) {
		*index = -1;
		return 0;
	}
	return wlift__cuda_parse_device(device, index);
}

int wlift__sink_open(wlift_ctx *ctx, const char *device, const struct wlift__sink_cfg *cfg,
		     struct wlift__sink **out, wlift_diag *d)
{
	int index;

	*out = NULL;
	if (wlift__device_parse(device, &index))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.device",
				       "device \"%s\" not understood (use \"cpu\", \"cuda\" or "
				       "\"cuda:N\")",
				       device);
	if (index < 0)
		return wlift__host_sink_create(cfg, out, d);
	return wlift__cuda_sink_create(wlift__ctx_or_default(ctx), device, cfg, out, d);
}
