/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host sink: the destination of CPU loads, one anonymous arena per load backed by
 * transparent huge pages; readers write into it in place.
 */
#ifndef WLIFT_SINK_HOST_H
#define WLIFT_SINK_HOST_H

#include "sink/sink.h"

int wlift__host_sink_create(const struct wlift__sink_cfg *cfg, struct wlift__sink **out,
			    wlift_diag *d);

#endif
