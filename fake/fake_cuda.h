/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fake CUDA driver's own interface, for tests: counters of what the driver holds and saw,
 * and a re-read of its FAKECUDA_* environment knobs. The driver API itself is the subset of
 * libcuda declared in src/sink/cuda_api.h. Look these up with dlsym on the library that
 * WEIGHTLIFT_CUDA_LIBRARY names.
 *
 * Knobs (read at cuInit and by fakecuda_configure):
 *   FAKECUDA_DEVICES=N        devices (default 2; 0: cuInit fails with CUDA_ERROR_NO_DEVICE)
 *   FAKECUDA_MEM_BYTES=N      device memory per device (default 16 GiB, sparse memfd)
 *   FAKECUDA_OOM_AT=N         cuMemAlloc fails once a device would hold more than N bytes
 *   FAKECUDA_FAIL_COPY=N      the Nth cuMemcpyHtoDAsync fails at the call (1-based)
 *   FAKECUDA_FAIL_ASYNC=N     the Nth cuMemcpyHtoDAsync fails when it runs: the events
 *                             recorded after it on its stream report CUDA_ERROR_ILLEGAL_ADDRESS
 *   FAKECUDA_FAIL_REGISTER=1  cuMemHostRegister fails (CUDA_ERROR_NOT_SUPPORTED)
 *   FAKECUDA_DELAY_US=N       each copy waits up to N us (random; default 300)
 *   FAKECUDA_WORKERS=N        copy threads (default 3)
 *   FAKECUDA_VMM=0            no virtual memory management (the device attribute says 0,
 *                             cuMemCreate etc. fail with CUDA_ERROR_NOT_SUPPORTED)
 *   FAKECUDA_GRANULE=N        allocation granularity (default 2 MiB; a power of two >= 4 KiB)
 *   FAKECUDA_FAIL_MODULE=1    cuModuleLoadData fails (CUDA_ERROR_INVALID_PTX)
 *   FAKECUDA_FAIL_LAUNCH=N    the Nth cuLaunchKernel fails at the call (CUDA_ERROR_LAUNCH_FAILED)
 *   FAKECUDA_FAIL_ALLOC=N     the Nth device allocation (cuMemAlloc or cuMemCreate, 1-based,
 *                             counted over the process) fails with CUDA_ERROR_OUT_OF_MEMORY, and
 *                             with FAKECUDA_FAIL_ALLOCS_ALL=1 every one from there on
 */
#ifndef WLIFT_FAKE_CUDA_H
#define WLIFT_FAKE_CUDA_H

#include <stddef.h>
#include <stdint.h>

struct fakecuda_stats {
	uint64_t live_bytes;	   /* device bytes allocated now (all devices) */
	uint64_t peak_bytes;	   /* most device bytes allocated at once */
	unsigned live_allocs;	   /* cuMemAlloc not yet freed */
	unsigned registered;	   /* host ranges registered (cuMemHostRegister) now */
	uint64_t registered_bytes; /* their bytes */
	unsigned hostallocs;	   /* cuMemHostAlloc buffers now */
	unsigned streams;	   /* streams alive */
	unsigned events;	   /* events alive */
	int ctx_refs;		   /* primary context references held (all devices) */
	uint64_t htod_copies, htod_bytes, dtod_copies;
	uint64_t out_of_order;	   /* copies that finished after a copy submitted later */
	unsigned max_pending;	   /* most copies queued or running at once */
	unsigned violations;	   /* misuse: pageable source, bad pointer, no context, ... */
	char violation[256];	   /* the first */
	/* Virtual memory management (cuMemCreate/cuMemMap): live_bytes above counts the
	 * physical memory of both kinds (what the device physically holds now). */
	unsigned vmm_handles;	   /* cuMemCreate handles not yet released */
	uint64_t vmm_bytes;	   /* physical bytes of cuMemCreate allocations still held */
	uint64_t mapped_bytes;	   /* bytes mapped now (cuMemMap not yet unmapped) */
	unsigned reservations;	   /* cuMemAddressReserve ranges not yet freed */
	uint64_t reserved_bytes;
	/* Kernels (the conversions of kernels/convert_elem.h, run by the copy workers). */
	unsigned modules;	   /* cuModuleLoadData not yet unloaded */
	uint64_t launches, launch_elems; /* cuLaunchKernel calls queued, their elements */
	uint64_t copies_2d;	   /* cuMemcpy2DAsync (host to device) calls queued */
	uint64_t register_calls;   /* cuMemHostRegister calls that succeeded, ever */
	uint64_t rdma_creates;	   /* cuMemCreate calls with allocFlags.gpuDirectRDMACapable */
	uint64_t alloc_calls;	   /* device allocation calls (cuMemAlloc, cuMemCreate), ever */
	uint64_t alloc_failed;	   /* of them, failed by FAKECUDA_FAIL_ALLOC */
};

typedef void (*fakecuda_stats_fn)(struct fakecuda_stats *out);
/* fakecuda_device_range(p, len): the current context's device when [p, p+len) is device
 * memory it may write, else -1 (a violation): what the fake cuFile checks before a read. */
typedef int (*fakecuda_device_range_fn)(uintptr_t p, size_t len);
typedef void (*fakecuda_configure_fn)(void);

#endif
