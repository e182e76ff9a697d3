/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA sink (cuda.c): loads into the memory of one GPU through a bounded ring of pinned
 * staging buffers. The driver is loaded at run time (cuda_drv.c).
 */
#ifndef WLIFT_SINK_CUDA_H
#define WLIFT_SINK_CUDA_H

#include "sink/sink.h"

/* "cuda" (device 0), "cuda:N" or "N" -> N (0 .. WLIFT_MAX_DEVICE_INDEX); -EINVAL otherwise. */
int wlift__cuda_parse_device(const char *device, int *index);

/* Open the driver (cfg->cuda_library, or libcuda.so.1), the device's primary context and
 * its streams; ctx keeps the pinned ring between loads (NULL: never kept). WLIFT_ENODEV naming the device when there is no driver or no such device. */
int wlift__cuda_sink_create(wlift_ctx *ctx, const char *device,
			    const struct wlift__sink_cfg *cfg, struct wlift__sink **out,
			    wlift_diag *d);

#endif
