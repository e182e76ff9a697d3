/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A load's device memory. First choice, where the device reports virtual memory management
 * and the driver has its entry points: reserve one virtual range for the load and back it
 * with physical allocations of one unit each (the allocation granularity, or a multiple of
 * it so that a load makes at most WLIFT_CUDA_VMM_MAX_UNITS), each mapped at its place and
 * made read-write. The result counts its tensors per unit (hold) and, as tensors are dropped
 * (release), unmaps and releases each unit that only dropped tensors covered: device memory
 * follows the tensors the user keeps, as the host arena's pages do. Without VMM, one
 * cuMemAlloc, freed with the result. With a caller's allocator, its alloc and free, and its
 * own policy (PyTorch's caching allocator reuses the blocks).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sink/cuda_mem.h"

struct wlift__cuda_mem {
	const struct wlift__cuda *cu;
	CUdevice dev;
	int index;
	unsigned flags; /* WLIFT_CUDA_MEM_* */
	CUcontext ctx; /* our own primary-context reference */
	int kind;
	CUdeviceptr p;
	uint64_t bytes; /* asked for */
	/* VMM */
	size_t unit, va;
	size_t nunits;
	CUmemGenericAllocationHandle *h; /* 0: released (or never made) */
	unsigned char *mapped;
	uint32_t *holds;
	pthread_mutex_t mu;
	/* USER */
	wlift_device_allocator user;
};

static void ctx_push(const struct wlift__cuda_mem *m)
{
	m->cu->CtxPushCurrent(m->ctx);
}

static void ctx_pop(const struct wlift__cuda_mem *m)
{
	CUcontext old;

	m->cu->CtxPopCurrent(&old);
}

/* Unmap and release unit u (mu held, context current). */
static void unit_drop(struct wlift__cuda_mem *m, size_t u)
{
	if (m->mapped[u]) {
		m->cu->MemUnmap(m->p + u * m->unit, m->unit);
		m->mapped[u] = 0;
	}
	if (m->h[u]) {
		m->cu->MemRelease(m->h[u]);
		m->h[u] = 0;
	}
}

static void vmm_teardown(struct wlift__cuda_mem *m)
{
	for (size_t u = 0; m->h && u < m->nunits; u++)
		unit_drop(m, u);
	if (m->p)
		m->cu->MemAddressFree(m->p, m->va);
	m->p = 0;
}

static int has_vmm(const struct wlift__cuda *cu, CUdevice dev)
{
	int v = 0;

	if (!cu->MemGetAllocationGranularity || !cu->MemAddressReserve || !cu->MemAddressFree ||
	    !cu->MemCreate || !cu->MemRelease || !cu->MemMap || !cu->MemUnmap || !cu->MemSetAccess)
		return 0;
	if (cu->DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
				   dev) != CUDA_SUCCESS)
		return 0;
	return v != 0;
}

/* The VMM destination. CUDA_SUCCESS, or the failing call's result with *what naming it. */
static CUresult vmm_make(struct wlift__cuda_mem *m, const char **what)
{
	const struct wlift__cuda *cu = m->cu;
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	size_t g = 0, ng;
	CUresult r;

	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = m->index;
	if (m->flags & WLIFT_CUDA_MEM_RDMA) {
		/* cuMemCreate memory is reachable by third-party DMA (cuFile's, in true GDS
		 * mode) only when created with this flag, which the device must support. */
		int v = 0;
		if (cu->DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED,
					   m->dev) == CUDA_SUCCESS && v)
			prop.allocFlags.gpuDirectRDMACapable = 1;
	}
	*what = "cuMemGetAllocationGranularity";
	r = cu->MemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
	if (r != CUDA_SUCCESS || !g)
		r = cu->MemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	if (r != CUDA_SUCCESS)
		return r;
	if (!g || (g & (g - 1)) || m->bytes > SIZE_MAX - g)
		return CUDA_ERROR_NOT_SUPPORTED;
	ng = (size_t)((m->bytes + g - 1) / g);
	m->unit = g * ((ng + WLIFT_CUDA_VMM_MAX_UNITS - 1) / WLIFT_CUDA_VMM_MAX_UNITS);
	m->nunits = (size_t)((m->bytes + m->unit - 1) / m->unit);
	m->va = m->nunits * m->unit;
	m->h = calloc(m->nunits, sizeof(*m->h));
	m->mapped = calloc(m->nunits, 1);
	m->holds = calloc(m->nunits, sizeof(*m->holds));
	if (!m->h || !m->mapped || !m->holds)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*what = "cuMemAddressReserve";
	r = cu->MemAddressReserve(&m->p, m->va, g, 0, 0);
	if (r != CUDA_SUCCESS) {
		m->p = 0;
		return r;
	}
	for (size_t u = 0; u < m->nunits; u++) {
		*what = "cuMemCreate";
		r = cu->MemCreate(&m->h[u], m->unit, &prop, 0);
		if (r != CUDA_SUCCESS) {
			m->h[u] = 0;
			return r;
		}
		*what = "cuMemMap";
		r = cu->MemMap(m->p + u * m->unit, m->unit, 0, m->h[u], 0);
		if (r != CUDA_SUCCESS)
			return r;
		m->mapped[u] = 1;
	}
	memset(&acc, 0, sizeof(acc));
	acc.location = prop.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	*what = "cuMemSetAccess";
	return cu->MemSetAccess(m->p, m->va, &acc, 1);
}

static void mem_destroy(struct wlift__cuda_mem *m)
{
	if (!m)
		return;
	if (m->ctx) {
		ctx_push(m);
		if (m->kind == WLIFT_CUDA_MEM_VMM)
			vmm_teardown(m);
		else if (m->kind == WLIFT_CUDA_MEM_ALLOC && m->p)
			m->cu->MemFree(m->p);
		ctx_pop(m);
		m->cu->PrimaryCtxRelease(m->dev);
	}
	if (m->kind == WLIFT_CUDA_MEM_USER && m->p && m->user.free)
		m->user.free(m->user.user, m->index, (void *)(uintptr_t)m->p, (size_t)m->bytes);
	free(m->h);
	free(m->mapped);
	free(m->holds);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

int wlift__cuda_mem_create(const struct wlift__cuda *cu, CUdevice dev, int index,
			   const char *name, uint64_t bytes, unsigned flags,
			   const wlift_device_allocator *user, struct wlift__cuda_mem **out,
			   wlift_diag *d)
{
	struct wlift__cuda_mem *m = calloc(1, sizeof(*m));
	const char *what = "cuMemAlloc";
	CUresult r = CUDA_SUCCESS;
	int ret = 0;

	*out = NULL;
	if (!m)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	pthread_mutex_init(&m->mu, NULL);
	m->cu = cu;
	m->dev = dev;
	m->index = index;
	m->flags = flags;
	m->bytes = bytes ? bytes : 256;
	r = cu->PrimaryCtxRetain(&m->ctx, dev);
	if (r != CUDA_SUCCESS) {
		m->ctx = NULL;
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				      "%s: cuDevicePrimaryCtxRetain: %s", name,
				      wlift__cuda_errtext(cu, r, NULL, 0));
		goto out;
	}
	if (m->bytes > SIZE_MAX) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto fail;
	}
	if (user && user->alloc) {
		void *p = NULL;
		int e;

		m->kind = WLIFT_CUDA_MEM_USER;
		m->user = *user;
		e = user->alloc(user->user, index, (size_t)m->bytes, &p);
		if (e || !p || (uintptr_t)p % 256) {
			if (!e && p && user->free)
				user->free(user->user, index, p, (size_t)m->bytes);
			ret = wlift__diag_set(d, e == WLIFT_EDEVMEM || e == -ENOMEM || !e
						     ? WLIFT_EDEVMEM : WLIFT_ECUDA,
					      NULL, NULL, -1, "cuda.alloc",
					      "%s: the caller's device allocator, asked for %llu bytes "
					      "(%.1f MiB), %s",
					      name, (unsigned long long)m->bytes,
					      (double)m->bytes / 1048576.0,
					      e ? wlift_strerror(e)
					      : p ? "gave memory that is not 256-byte aligned"
						  : "gave NULL");
			goto out;
		}
		m->p = (CUdeviceptr)(uintptr_t)p;
		goto out;
	}
	if (has_vmm(cu, dev)) {
		m->kind = WLIFT_CUDA_MEM_VMM;
		r = vmm_make(m, &what);
		if (r == CUDA_SUCCESS)
			goto out;
		vmm_teardown(m);
		free(m->h);
		free(m->mapped);
		free(m->holds);
		m->h = NULL;
		m->mapped = NULL;
		m->holds = NULL;
		if (r == CUDA_ERROR_OUT_OF_MEMORY)
			goto fail;
		/* Anything else (a driver that refuses VMM here): the plain allocation. */
		what = "cuMemAlloc";
	}
	m->kind = WLIFT_CUDA_MEM_ALLOC;
	r = cu->MemAlloc(&m->p, (size_t)m->bytes);
	if (r == CUDA_SUCCESS)
		goto out;
	m->p = 0;
fail: {
	size_t fb = 0, tb = 0;
	if (cu->MemGetInfo(&fb, &tb) != CUDA_SUCCESS)
		fb = tb = 0;
	ret = wlift__diag_set(d, r == CUDA_ERROR_OUT_OF_MEMORY ? WLIFT_EDEVMEM : WLIFT_ECUDA,
			      NULL, NULL, -1, "cuda.alloc",
			      "%s: cannot allocate %llu bytes (%.1f MiB) of device memory for the "
			      "load: %s: %s (the device has %zu of %zu bytes free)",
			      name, (unsigned long long)m->bytes, (double)m->bytes / 1048576.0,
			      what, wlift__cuda_errtext(cu, r, NULL, 0), fb, tb);
}
out:
	if (ret) {
		if (m->kind == WLIFT_CUDA_MEM_USER)
			m->p = 0; /* nothing to give back */
		mem_destroy(m);
		return ret;
	}
	*out = m;
	return 0;
}

CUdeviceptr wlift__cuda_mem_ptr(const struct wlift__cuda_mem *m)
{
	return m->p;
}

int wlift__cuda_mem_kind(const struct wlift__cuda_mem *m)
{
	return m->kind;
}

void wlift__cuda_mem_free(struct wlift__cuda_mem *m)
{
	mem_destroy(m);
}

/* ---- the exported memory ------------------------------------------------------------------ */

static void exp_free(struct wlift__mem *wm)
{
	mem_destroy(wm->priv);
	wm->priv = NULL;
}

/* The units [off, off+len) touches; 0 when none. */
static int units(const struct wlift__cuda_mem *m, uint64_t off, uint64_t len, size_t *lo,
		 size_t *hi)
{
	if (!len || off >= m->va || len > m->va - off)
		return 0;
	*lo = (size_t)(off / m->unit);
	*hi = (size_t)((off + len - 1) / m->unit);
	return 1;
}

static void exp_hold(struct wlift__mem *wm, uint64_t off, uint64_t len)
{
	struct wlift__cuda_mem *m = wm->priv;
	size_t lo, hi;

	if (!units(m, off, len, &lo, &hi))
		return;
	pthread_mutex_lock(&m->mu);
	for (size_t u = lo; u <= hi; u++)
		m->holds[u]++;
	pthread_mutex_unlock(&m->mu);
}

static int exp_release(struct wlift__mem *wm, uint64_t off, uint64_t len)
{
	struct wlift__cuda_mem *m = wm->priv;
	size_t lo, hi;
	int pushed = 0;

	if (off > wm->len || len > wm->len - off)
		return -EINVAL;
	if (!units(m, off, len, &lo, &hi))
		return 0;
	pthread_mutex_lock(&m->mu);
	for (size_t u = lo; u <= hi; u++) {
		if (!m->holds[u] || --m->holds[u])
			continue;
		if (!pushed) {
			ctx_push(m);
			pushed = 1;
		}
		unit_drop(m, u);
	}
	if (pushed)
		ctx_pop(m);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

void wlift__cuda_mem_export(struct wlift__cuda_mem *m, struct wlift__mem *out)
{
	memset(out, 0, sizeof(*out));
	out->base = (void *)(uintptr_t)m->p;
	out->len = (size_t)m->bytes;
	out->device = m->index;
	out->free = exp_free;
	out->priv = m;
	if (m->kind == WLIFT_CUDA_MEM_VMM) {
		out->hold = exp_hold;
		out->release = exp_release;
	}
}
