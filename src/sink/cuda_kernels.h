/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device conversion kernels (src/kernels/convert.cu) on one context: the embedded PTX
 * loaded with cuModuleLoadData, one function per dtype pair (cuModuleGetFunction), launched
 * with cuLaunchKernel (cuda_kernels.c).
 */
#ifndef WLIFT_SINK_CUDA_KERNELS_H
#define WLIFT_SINK_CUDA_KERNELS_H

#include "common/common.h"
#include "sink/cuda_drv.h"

struct wlift__cuda_kernels;

/* The kernel for from -> to (a WLIFT_K_* pair of kernels/convert_elem.h), or -1; in and out
 * get the element sizes. */
int wlift__cuda_kernel_pair(wlift_dtype from, wlift_dtype to, unsigned *in, unsigned *out);

/* Load the module on the current context. WLIFT_EUNSUPPORTED when the driver lacks the
 * module entry points, WLIFT_ECUDA naming the call that failed; name is the device. */
int wlift__cuda_kernels_load(const struct wlift__cuda *cu, const char *name,
			     struct wlift__cuda_kernels **out, wlift_diag *d);

/* Convert n elements of pair at src to dst on stream s (asynchronous). src == dst is in
 * place: for a narrowing pair the elements go in launches over [a, 2a) (each launch writes
 * only bytes that earlier launches have read). CUDA_SUCCESS or the launch's result. */
CUresult wlift__cuda_convert(const struct wlift__cuda_kernels *k, int pair, CUdeviceptr src,
			     CUdeviceptr dst, uint64_t n, CUstream s);

/* Unload (current context). */
void wlift__cuda_kernels_free(struct wlift__cuda_kernels *k);

#endif
