/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA driver, loaded at run time: dlopen of libcuda.so.1 (or the library that
 * WEIGHTLIFT_CUDA_LIBRARY names, such as the fake driver of the tests), every entry point of
 * cuda_api.h resolved, cuInit called. One build runs on machines with and without CUDA.
 */
#ifndef WLIFT_SINK_CUDA_DRV_H
#define WLIFT_SINK_CUDA_DRV_H

#include "common/common.h"
#include "sink/cuda_api.h"

/* The resolved driver: one per library path, loaded once per process and never unloaded
 * (a driver's own threads may outlive any one load). */
struct wlift__cuda {
#define WLIFT_CUDA_FN(field, sym, args) CUresult(*field) args;
	WLIFT_CUDA_ENTRY_POINTS(WLIFT_CUDA_FN)
	WLIFT_CUDA_OPTIONAL_ENTRY_POINTS(WLIFT_CUDA_FN)
#undef WLIFT_CUDA_FN
	const char *path; /* the library loaded */
	int version;	  /* cuDriverGetVersion, e.g. 12080 */
	int ndevices;
};

/* Load (once) and initialise the driver at path (NULL: "libcuda.so.1"). WLIFT_ENODEV with d
 * naming the library and the reason when it cannot be loaded, lacks an entry point, or has
 * no device; the driver stays loaded for the process. Thread-safe. */
int wlift__cuda_driver(const char *path, const struct wlift__cuda **out, wlift_diag *d);

/* "CUDA_ERROR_OUT_OF_MEMORY: out of memory" for diagnostics (static or into buf). */
const char *wlift__cuda_errtext(const struct wlift__cuda *cu, CUresult e, char *buf, size_t n);

#endif
