/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wlift_load's stages, in order (each in its own file, each unit-testable):
 *   resolve options (config.c) -> select, partition (select.c) -> probe (probe.c) ->
 *   plan (plan.c) -> sink (sink/sink.c) -> run (pipeline.c, or mapped.c) -> finish (load.c).
 * load.c runs them; this header also gives tests the entry point with a sink of their own.
 */
#ifndef WLIFT_ENGINE_LOAD_H
#define WLIFT_ENGINE_LOAD_H

#include "engine/ckpt.h"
#include "sink/sink.h"

/* wlift_load with a sink made by the caller (tests: a staged sink with no host pointer), or
 * NULL to open the sink for opts->device. The load destroys the sink either way. */
int wlift__load(struct wlift_ckpt *ck, const wlift_load_opts *opts, struct wlift__sink *sink,
		wlift_ready_fn ready, void *ready_user, wlift_result **out, wlift_diag *d);

#endif
