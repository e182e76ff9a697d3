/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A load's device memory (cuda_mem.c), one of:
 *  - VMM: a reserved virtual range (cuMemAddressReserve) backed by physical allocations of
 *    one unit each (a multiple of the allocation granularity, cuMemCreate + cuMemMap, read-
 *    write with cuMemSetAccess), so that a unit that only tensors nobody holds cover is
 *    unmapped and released while the rest of the result lives;
 *  - ALLOC: one cuMemAlloc (devices or drivers without virtual memory management);
 *  - USER: the caller's allocator (wlift_device_allocator), which owns the memory.
 * Exported as a struct wlift__mem whose hold/release count tensors per unit.
 */
#ifndef WLIFT_SINK_CUDA_MEM_H
#define WLIFT_SINK_CUDA_MEM_H

#include "common/mem.h"
#include "sink/cuda_drv.h"
#include "weightlift.h"

/* Physical allocations per load at most: the unit grows past the granularity for larger
 * loads (cuMemCreate + cuMemMap cost microseconds each on a real driver). */
#define WLIFT_CUDA_VMM_MAX_UNITS 1024u

enum { WLIFT_CUDA_MEM_ALLOC, WLIFT_CUDA_MEM_VMM, WLIFT_CUDA_MEM_USER };

struct wlift__cuda_mem;

/* Device memory of at least bytes on dev (ordinal index) for a load, named name in
 * messages. user: the caller's allocator, or NULL (VMM where the device and driver support
 * it, else cuMemAlloc). Takes its own reference on the device's primary context. Called
 * with that context current. 0, WLIFT_EDEVMEM (out of memory, naming the bytes and what the
 * device has free), WLIFT_ECUDA. */
#define WLIFT_CUDA_MEM_RDMA 1u /* VMM units made GPUDirect RDMA capable where the device
				   supports it, so cuFile can DMA into them (GPU Direct Storage) */
int wlift__cuda_mem_create(const struct wlift__cuda *cu, CUdevice dev, int index,
			   const char *name, uint64_t bytes, unsigned flags,
			   const wlift_device_allocator *user, struct wlift__cuda_mem **out,
			   wlift_diag *d);

CUdeviceptr wlift__cuda_mem_ptr(const struct wlift__cuda_mem *m);
int wlift__cuda_mem_kind(const struct wlift__cuda_mem *m);

/* Hand m to out (its free, hold and release); m belongs to out from here on. */
void wlift__cuda_mem_export(struct wlift__cuda_mem *m, struct wlift__mem *out);

/* Free m (not exported). Any thread; pushes the context itself. */
void wlift__cuda_mem_free(struct wlift__cuda_mem *m);

#endif
