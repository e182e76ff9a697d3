/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fake CUDA driver (libwlift_fakecuda.so) so that the whole GPU path runs in CI without a
 * GPU: the entry points of src/sink/cuda_api.h under libcuda's exported names. "Device"
 * memory is a MAP_SHARED mapping of a sparse memfd, so it is not RssAnon and the host side's
 * own memory can be measured apart from it; device pointers are addresses in that mapping.
 * Asynchronous copies are queued per stream and run by worker threads that pick any stream's
 * next operation at random, with random delays, so copies and events on different streams
 * complete out of order (within one stream, in order, as CUDA orders them). Misuse the real
 * driver would punish (a copy from pageable memory, a pointer outside any allocation, a call
 * without a current context) fails the call and is counted, for the tests to assert on.
 * Errors are injected through FAKECUDA_* environment variables (fake_cuda.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fake_cuda.h"
#include "kernels/convert_elem.h"
#include "sink/cuda_api.h"

#define API __attribute__((visibility("default")))
#define MAX_DEV 8
#define MAX_ALLOCS 16384
#define MAX_RESV 256
#define MAX_HOST 256
#define ALLOC_ALIGN (64u << 10) /* whole pages, so a free can punch the memfd */

struct CUctx_st {
	int dev;
	int refs;
};

struct CUstream_st {
	unsigned pending; /* operations queued or running */
	int running;
	CUresult err;	  /* sticky asynchronous error */
};

struct CUevent_st {
	uint64_t gen; /* bumped by each record */
	int done;
	CUresult status;
};

enum { OP_HTOD, OP_DTOD, OP_EVENT, OP_KERNEL, OP_2D };

struct CUfunc_st {
	int pair; /* WLIFT_K_* (kernels/convert_elem.h) */
	unsigned in, out;
};

/* A module: the image it was loaded from (the kernels it names are the ones found). */
struct CUmod_st {
	char *image;
	struct CUfunc_st fn[WLIFT_K_NPAIRS];
};

static const struct {
	const char *name;
	unsigned in, out;
} kernels[WLIFT_K_NPAIRS] = {
#define FAKE_K_ROW(id, name, i, o) [id] = { "wlift_cvt_" #name, i, o },
	WLIFT_K_PAIRS(FAKE_K_ROW)
#undef FAKE_K_ROW
};

struct op {
	int kind;
	CUstream s;
	void *dst;
	const void *src;
	size_t len;
	int pair;	      /* OP_KERNEL: the kernel; len is the element count */
	size_t spitch, dpitch, height; /* OP_2D: len bytes a row */
	CUevent ev;
	uint64_t gen, seq;
	int fail; /* injected asynchronous failure */
	struct op *next;
};

struct alloc {
	uint64_t off, len;
	int dev;
	uint64_t handle; /* cuMemCreate's handle; 0: a cuMemAlloc */
	unsigned maps;	 /* handle: mappings of it now */
	int released;	 /* handle: cuMemRelease called (freed once unmapped) */
};

/* A reserved virtual range (cuMemAddressReserve): PROT_NONE anonymous memory, so untouched
 * and not RssAnon; mapped parts are MAP_FIXED mappings of the memfd. */
struct resv {
	uint8_t *p;
	size_t len;
};

struct vmap {
	uint8_t *p;
	size_t len;
	uint64_t handle;
	int dev;
	int rw; /* cuMemSetAccess made it read-write */
};

struct host {
	uint8_t *p;
	size_t len;
	int hostalloc;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER; /* ops queued */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER; /* ops finished */
static int inited, workers_started;
static int ndev = 2, nworkers = 3;
static uint64_t mem_bytes = 16ull << 30, oom_at, fail_copy, fail_async;
static uint64_t fail_alloc; /* FAKECUDA_FAIL_ALLOC */
static int fail_allocs_all;
static int fail_register, fail_module;
static uint64_t fail_launch, launch_calls;
static unsigned delay_us = 300;
static int memfd = -1;
static uint8_t *devmem[MAX_DEV];
static struct CUctx_st ctxs[MAX_DEV];
static __thread CUcontext current;
static struct alloc allocs[MAX_ALLOCS];
static unsigned nallocs;
static uint64_t dev_live[MAX_DEV];
static struct resv resvs[MAX_RESV];
static unsigned nresv;
static struct vmap *vmaps;
static unsigned nvmaps, capvmaps;
static uint64_t next_handle, granule = 2u << 20;
static int vmm = 1;
static struct host hosts[MAX_HOST];
static unsigned nhosts;
static struct op *queue; /* in submission order */
static uint64_t seq, max_done_seq, htod_calls;
static unsigned pending;
static unsigned rng = 88172645u;
static struct fakecuda_stats st;

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long x;

	if (!v || !*v)
		return def;
	x = strtoull(v, &end, 0);
	if (*end == 'k' || *end == 'K')
		x <<= 10;
	else if (*end == 'm' || *end == 'M')
		x <<= 20;
	else if (*end == 'g' || *end == 'G')
		x <<= 30;
	return x;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Called with mu held. */
static void violation(const char *fmt, ...)
{
	va_list ap;

	if (!st.violations++) {
		va_start(ap, fmt);
		vsnprintf(st.violation, sizeof(st.violation), fmt, ap);
		va_end(ap);
	}
}

API void fakecuda_configure(void)
{
	pthread_mutex_lock(&mu);
	ndev = (int)env_u64("FAKECUDA_DEVICES", 2);
	if (ndev > MAX_DEV)
		ndev = MAX_DEV;
	oom_at = env_u64("FAKECUDA_OOM_AT", 0);
	fail_copy = env_u64("FAKECUDA_FAIL_COPY", 0);
	fail_async = env_u64("FAKECUDA_FAIL_ASYNC", 0);
	fail_register = (int)env_u64("FAKECUDA_FAIL_REGISTER", 0);
	delay_us = (unsigned)env_u64("FAKECUDA_DELAY_US", 300);
	vmm = (int)env_u64("FAKECUDA_VMM", 1);
	fail_launch = env_u64("FAKECUDA_FAIL_LAUNCH", 0);
	fail_alloc = env_u64("FAKECUDA_FAIL_ALLOC", 0);
	fail_allocs_all = (int)env_u64("FAKECUDA_FAIL_ALLOCS_ALL", 0);
	fail_module = (int)env_u64("FAKECUDA_FAIL_MODULE", 0);
	launch_calls = 0;
	granule = env_u64("FAKECUDA_GRANULE", 2u << 20);
	if (!granule || (granule & (granule - 1)) || granule % 4096)
		granule = 2u << 20;
	htod_calls = 0;
	pthread_mutex_unlock(&mu);
}

API void fakecuda_stats(struct fakecuda_stats *out)
{
	pthread_mutex_lock(&mu);
	*out = st;
	pthread_mutex_unlock(&mu);
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000L };

	nanosleep(&ts, NULL);
}

/* Called with mu held: the next operation a worker may run, chosen at random among the
 * streams whose head is waiting (their order within a stream is kept). */
static struct op *pick(void)
{
	struct op *cand[64];
	unsigned n = 0;

	for (struct op *o = queue; o && n < 64; o = o->next) {
		int head = !o->s->running;
		for (struct op *p = queue; p != o && head; p = p->next)
			head = p->s != o->s;
		if (head)
			cand[n++] = o;
	}
	if (!n)
		return NULL;
	rng = rng * 1103515245u + 12345u;
	return cand[(rng >> 8) % n];
}

static void unlink_op(struct op *o)
{
	struct op **pp = &queue;

	while (*pp != o)
		pp = &(*pp)->next;
	*pp = o->next;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		struct op *o = pick();
		unsigned d;

		if (!o) {
			pthread_cond_wait(&work_cv, &mu);
			continue;
		}
		o->s->running = 1;
		rng = rng * 1103515245u + 12345u;
		d = delay_us ? (rng >> 8) % (delay_us + 1) : 0;
		pthread_mutex_unlock(&mu);
		if (o->kind != OP_EVENT) {
			if (d)
				sleep_us(d);
			if (o->fail || o->s->err)
				;
			else if (o->kind == OP_KERNEL)
				for (uint64_t i = 0; i < o->len; i++)
					wlift_k_one(o->pair, o->src, o->dst, i);
			else if (o->kind == OP_2D)
				for (size_t y = 0; y < o->height; y++)
					memmove((uint8_t *)o->dst + y * o->dpitch,
						(const uint8_t *)o->src + y * o->spitch, o->len);
			else
				memmove(o->dst, o->src, o->len);
		}
		pthread_mutex_lock(&mu);
		unlink_op(o);
		o->s->running = 0;
		o->s->pending--;
		if (o->fail)
			o->s->err = CUDA_ERROR_ILLEGAL_ADDRESS;
		if (o->kind == OP_EVENT) {
			if (o->ev->gen == o->gen) {
				o->ev->done = 1;
				o->ev->status = o->s->err;
			}
		} else {
			pending--;
			if (o->seq < max_done_seq)
				st.out_of_order++;
			else
				max_done_seq = o->seq;
		}
		free(o);
		pthread_cond_broadcast(&done_cv);
		pthread_cond_broadcast(&work_cv);
	}
	return NULL;
}

/* ---- init, devices, errors ------------------------------------------------------------- */

API CUresult cuInit(unsigned flags)
{
	CUresult r = CUDA_SUCCESS;

	(void)flags;
	fakecuda_configure();
	pthread_mutex_lock(&mu);
	nworkers = (int)env_u64("FAKECUDA_WORKERS", 3);
	mem_bytes = env_u64("FAKECUDA_MEM_BYTES", 16ull << 30);
	if (ndev <= 0) {
		r = CUDA_ERROR_NO_DEVICE;
		goto out;
	}
	if (inited)
		goto out;
	memfd = memfd_create("fakecuda-device-memory", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)(mem_bytes * (uint64_t)ndev)) < 0) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	for (int i = 0; i < ndev; i++) {
		void *p = mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			       memfd, (off_t)(mem_bytes * (uint64_t)i));
		if (p == MAP_FAILED) {
			r = CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		devmem[i] = p;
		ctxs[i].dev = i;
	}
	for (int i = 0; i < nworkers; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker, NULL) == 0) {
			pthread_detach(t);
			workers_started++;
		}
	}
	inited = workers_started > 0;
	if (!inited)
		r = CUDA_ERROR_UNKNOWN;
out:
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuDriverGetVersion(int *v)
{
	*v = 12080;
	return CUDA_SUCCESS;
}

static const struct {
	CUresult e;
	const char *name, *text;
} errs[] = {
	{ CUDA_SUCCESS, "CUDA_SUCCESS", "no error" },
	{ CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument" },
	{ CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory" },
	{ CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error" },
	{ CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected" },
	{ CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal" },
	{ CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context" },
	{ CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle" },
	{ CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready" },
	{ CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found" },
	{ CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX",
	  "a PTX JIT compilation failed" },
	{ CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
	  "an illegal memory access was encountered" },
	{ CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
	  "pointer does not correspond to a registered memory region" },
	{ CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure" },
	{ CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported" },
	{ CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error" },
};

API CUresult cuGetErrorName(CUresult e, const char **s)
{
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (errs[i].e == e) {
			*s = errs[i].name;
			return CUDA_SUCCESS;
		}
	*s = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuGetErrorString(CUresult e, const char **s)
{
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (errs[i].e == e) {
			*s = errs[i].text;
			return CUDA_SUCCESS;
		}
	*s = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuDeviceGetCount(int *n)
{
	if (!inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	*n = ndev;
	return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
	if (!inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (ordinal < 0 || ordinal >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	*dev = ordinal;
	return CUDA_SUCCESS;
}

API CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	snprintf(name, (size_t)len, "weightlift fake CUDA device %d", dev);
	return CUDA_SUCCESS;
}

API CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice dev)
{
	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	*v = attr == CU_DEVICE_ATTRIBUTE_PCI_BUS_ID			? dev + 1
	     : attr == CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED ? vmm
	     : attr == CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED ? vmm
										 : 0;
	return CUDA_SUCCESS;
}

API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	*bytes = (size_t)(oom_at ? oom_at : mem_bytes);
	return CUDA_SUCCESS;
}

/* ---- contexts ---------------------------------------------------------------------------- */

API CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	if (!inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&mu);
	ctxs[dev].refs++;
	st.ctx_refs++;
	pthread_mutex_unlock(&mu);
	*ctx = &ctxs[dev];
	return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
	CUresult r = CUDA_SUCCESS;

	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&mu);
	if (ctxs[dev].refs <= 0) {
		violation("cuDevicePrimaryCtxRelease(%d) without a retain", dev);
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else {
		ctxs[dev].refs--;
		st.ctx_refs--;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuCtxSetCurrent(CUcontext ctx)
{
	current = ctx;
	return CUDA_SUCCESS;
}

/* The thread's context stack: current is its top. */
static __thread CUcontext stack[16];
static __thread int depth;

API CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
	if (!ctx)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (depth == 16) {
		pthread_mutex_lock(&mu);
		violation("cuCtxPushCurrent: more than 16 contexts pushed (a missing pop?)");
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	stack[depth++] = current;
	current = ctx;
	return CUDA_SUCCESS;
}

API CUresult cuCtxPopCurrent_v2(CUcontext *ctx)
{
	if (ctx)
		*ctx = current;
	if (!depth) {
		current = NULL;
		return CUDA_SUCCESS;
	}
	current = stack[--depth];
	return CUDA_SUCCESS;
}

/* Called with mu held. The device of the current context, or -1 (counted as misuse). */
static int cur_dev(const char *fn)
{
	if (!current || current->refs <= 0) {
		violation("%s without a current (retained) context", fn);
		return -1;
	}
	return current->dev;
}

/* Lock mu for a call that needs a current context: its device, or -1 with mu released
 * again (the caller returns CUDA_ERROR_INVALID_CONTEXT). */
static int lock_dev(const char *fn)
{
	int dev;

	pthread_mutex_lock(&mu);
	dev = cur_dev(fn);
	if (dev < 0)
		pthread_mutex_unlock(&mu);
	return dev;
}

/* ---- device memory ----------------------------------------------------------------------- */

API CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total)
{
	int dev;
	uint64_t cap;

	dev = lock_dev("cuMemGetInfo");
	if (dev < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	cap = oom_at ? oom_at : mem_bytes;
	*total = (size_t)cap;
	*free_b = (size_t)(cap > dev_live[dev] ? cap - dev_live[dev] : 0);
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

/* Called with mu held: len bytes (a multiple of ALLOC_ALIGN) of dev's part of the memfd,
 * first fit (allocs sorted by device, offset); the index in allocs, or -1 when out of
 * memory. */
static int phys_alloc(int dev, uint64_t len, uint64_t handle)
{
	uint64_t off = 0;
	unsigned i;

	st.alloc_calls++;
	if (fail_alloc && (st.alloc_calls == fail_alloc ||
			   (fail_allocs_all && st.alloc_calls > fail_alloc))) {
		st.alloc_failed++;
		return -1;
	}
	if ((oom_at && dev_live[dev] + len > oom_at) || nallocs == MAX_ALLOCS)
		return -1;
	for (i = 0; i < nallocs; i++) {
		if (allocs[i].dev < dev)
			continue;
		if (allocs[i].dev > dev || allocs[i].off >= off + len)
			break;
		off = allocs[i].off + allocs[i].len;
	}
	if (off + len > mem_bytes)
		return -1;
	memmove(&allocs[i + 1], &allocs[i], (nallocs - i) * sizeof(allocs[0]));
	memset(&allocs[i], 0, sizeof(allocs[i]));
	allocs[i].off = off;
	allocs[i].len = len;
	allocs[i].dev = dev;
	allocs[i].handle = handle;
	nallocs++;
	dev_live[dev] += len;
	st.live_bytes += len;
	if (handle) {
		st.vmm_handles++;
		st.vmm_bytes += len;
	} else {
		st.live_allocs++;
	}
	if (st.live_bytes > st.peak_bytes)
		st.peak_bytes = st.live_bytes;
	return (int)i;
}

/* Called with mu held: give allocs[i]'s pages back to the memfd (so a freed "device" costs
 * no memory) and forget it. */
static void phys_free(unsigned i)
{
	fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)(mem_bytes * (uint64_t)allocs[i].dev + allocs[i].off),
		  (off_t)allocs[i].len);
	dev_live[allocs[i].dev] -= allocs[i].len;
	st.live_bytes -= allocs[i].len;
	if (allocs[i].handle) {
		st.vmm_bytes -= allocs[i].len;
		if (!allocs[i].released)
			st.vmm_handles--;
	} else {
		st.live_allocs--;
	}
	nallocs--;
	memmove(&allocs[i], &allocs[i + 1], (nallocs - i) * sizeof(allocs[0]));
}

API CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes)
{
	uint64_t len = (bytes + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
	int dev, i;

	*p = 0;
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	dev = lock_dev("cuMemAlloc");
	if (dev < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	i = phys_alloc(dev, len, 0);
	if (i >= 0)
		*p = (CUdeviceptr)(uintptr_t)(devmem[dev] + allocs[i].off);
	pthread_mutex_unlock(&mu);
	return i < 0 ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
}

/* Called with mu held: the cuMemAlloc allocation holding [p, p+len), or -1. */
static int find_alloc(CUdeviceptr p, size_t len)
{
	for (unsigned i = 0; i < nallocs; i++) {
		uintptr_t b = (uintptr_t)(devmem[allocs[i].dev] + allocs[i].off);
		if (allocs[i].handle)
			continue;
		if (p >= b && p + (len ? len : 1) <= b + allocs[i].len && p + len >= p)
			return (int)i;
	}
	return -1;
}

/* Called with mu held: may the device touch [p, p+len)? Inside one cuMemAlloc allocation,
 * or covered by read-write mappings of physical allocations (cuMemMap + cuMemSetAccess). */
static int dev_ok(CUdeviceptr p, size_t len)
{
	uintptr_t at = (uintptr_t)p, end = (uintptr_t)p + (len ? len : 1);

	if (end < at)
		return 0;
	if (find_alloc(p, len) >= 0)
		return 1;
	while (at < end) {
		unsigned k;
		for (k = 0; k < nvmaps; k++)
			if (at >= (uintptr_t)vmaps[k].p && at < (uintptr_t)vmaps[k].p + vmaps[k].len)
				break;
		if (k == nvmaps || !vmaps[k].rw)
			return 0;
		at = (uintptr_t)vmaps[k].p + vmaps[k].len;
	}
	return 1;
}

/* For the fake cuFile (fake_cufile.c), which writes device memory itself: the device of the
 * calling thread's current context when [p, p+len) is device memory that device may write,
 * else -1 (counted as misuse, as a copy there would be). */
API int fakecuda_device_range(uintptr_t p, size_t len)
{
	int dev = lock_dev("cuFileRead");

	if (dev < 0)
		return -1;
	if (!dev_ok((CUdeviceptr)p, len)) {
		violation("cuFileRead of %zu bytes to %#llx: outside any allocation", len,
			  (unsigned long long)p);
		dev = -1;
	}
	pthread_mutex_unlock(&mu);
	return dev;
}

API CUresult cuMemFree_v2(CUdeviceptr p)
{
	int i;

	if (lock_dev("cuMemFree") < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	i = find_alloc(p, 0);
	if (i < 0 || (uintptr_t)(devmem[allocs[i].dev] + allocs[i].off) != p) {
		violation("cuMemFree(%#llx): not an allocation", p);
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	phys_free((unsigned)i);
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

/* ---- virtual memory management ----------------------------------------------------------- */

API CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
					   int option)
{
	(void)option;
	if (!g || !prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop->location.id < 0 ||
	    prop->location.id >= ndev)
		return CUDA_ERROR_INVALID_VALUE;
	if (!vmm)
		return CUDA_ERROR_NOT_SUPPORTED;
	*g = (size_t)granule;
	return CUDA_SUCCESS;
}

API CUresult cuMemAddressReserve(CUdeviceptr *p, size_t bytes, size_t align, CUdeviceptr addr,
				 unsigned long long flags)
{
	size_t a = align > granule ? align : (size_t)granule, span;
	uint8_t *m, *q;
	CUresult r = CUDA_SUCCESS;

	(void)addr;
	(void)flags;
	*p = 0;
	if (!vmm)
		return CUDA_ERROR_NOT_SUPPORTED;
	if (!bytes || bytes % granule || (a & (a - 1)))
		return CUDA_ERROR_INVALID_VALUE;
	/* Over-reserve and trim to the alignment. */
	span = bytes + a;
	m = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	q = (uint8_t *)(((uintptr_t)m + a - 1) / a * a);
	if (q > m)
		munmap(m, (size_t)(q - m));
	if (m + span > q + bytes)
		munmap(q + bytes, (size_t)(m + span - (q + bytes)));
	pthread_mutex_lock(&mu);
	if (nresv == MAX_RESV) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
	} else {
		resvs[nresv].p = q;
		resvs[nresv].len = bytes;
		nresv++;
		st.reservations++;
		st.reserved_bytes += bytes;
	}
	pthread_mutex_unlock(&mu);
	if (r) {
		munmap(q, bytes);
		return r;
	}
	*p = (CUdeviceptr)(uintptr_t)q;
	return CUDA_SUCCESS;
}

API CUresult cuMemAddressFree(CUdeviceptr p, size_t bytes)
{
	uint8_t *q = (uint8_t *)(uintptr_t)p;
	unsigned i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < nresv; i++)
		if (resvs[i].p == q && resvs[i].len == bytes)
			break;
	if (i == nresv) {
		violation("cuMemAddressFree(%#llx, %zu): not a reservation", p, bytes);
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	for (unsigned k = 0; k < nvmaps; k++)
		if (vmaps[k].p >= q && vmaps[k].p < q + bytes) {
			violation("cuMemAddressFree of a range still mapped (cuMemUnmap first)");
			pthread_mutex_unlock(&mu);
			return CUDA_ERROR_INVALID_VALUE;
		}
	resvs[i] = resvs[--nresv];
	st.reservations--;
	st.reserved_bytes -= bytes;
	pthread_mutex_unlock(&mu);
	munmap(q, bytes);
	return CUDA_SUCCESS;
}

API CUresult cuMemCreate(CUmemGenericAllocationHandle *h, size_t bytes,
			 const CUmemAllocationProp *prop, unsigned long long flags)
{
	CUresult r = CUDA_SUCCESS;
	int dev, i;

	(void)flags;
	*h = 0;
	if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (!vmm)
		return CUDA_ERROR_NOT_SUPPORTED;
	dev = prop->location.id;
	if (dev < 0 || dev >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	if (!bytes || bytes % granule)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&mu);
	if (cur_dev("cuMemCreate") < 0) {
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else {
		i = phys_alloc(dev, bytes, ++next_handle);
		if (i < 0) {
			r = CUDA_ERROR_OUT_OF_MEMORY;
		} else {
			*h = allocs[i].handle;
			st.rdma_creates += prop->allocFlags.gpuDirectRDMACapable != 0;
		}
	}
	pthread_mutex_unlock(&mu);
	return r;
}

/* Called with mu held: the physical allocation of handle h, or -1. */
static int find_handle(uint64_t h)
{
	for (unsigned i = 0; h && i < nallocs; i++)
		if (allocs[i].handle == h)
			return (int)i;
	return -1;
}

API CUresult cuMemRelease(CUmemGenericAllocationHandle h)
{
	int i;

	pthread_mutex_lock(&mu);
	i = find_handle(h);
	if (i < 0 || allocs[i].released) {
		violation("cuMemRelease(%llu): not a live handle", h);
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	allocs[i].released = 1;
	st.vmm_handles--;
	/* As CUDA: the memory goes once the last mapping of it is gone. */
	if (!allocs[i].maps)
		phys_free((unsigned)i);
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

/* Called with mu held: is [q, q+len) inside one reservation? */
static int reserved(const uint8_t *q, size_t len)
{
	for (unsigned i = 0; i < nresv; i++)
		if (q >= resvs[i].p && q + len <= resvs[i].p + resvs[i].len && q + len >= q)
			return 1;
	return 0;
}

API CUresult cuMemMap(CUdeviceptr p, size_t bytes, size_t offset, CUmemGenericAllocationHandle h,
		      unsigned long long flags)
{
	uint8_t *q = (uint8_t *)(uintptr_t)p;
	CUresult r = CUDA_SUCCESS;
	int i;

	(void)flags;
	pthread_mutex_lock(&mu);
	i = find_handle(h);
	if (i < 0 || allocs[i].released) {
		violation("cuMemMap of handle %llu: not a live handle", h);
		r = CUDA_ERROR_INVALID_HANDLE;
	} else if (!bytes || bytes % granule || offset % granule ||
		   offset + bytes > allocs[i].len) {
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (!reserved(q, bytes) || (uintptr_t)q % granule) {
		violation("cuMemMap at %#llx (%zu bytes): outside a reservation", p, bytes);
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		for (unsigned k = 0; k < nvmaps && !r; k++)
			if (vmaps[k].p < q + bytes && q < vmaps[k].p + vmaps[k].len) {
				violation("cuMemMap at %#llx: already mapped", p);
				r = CUDA_ERROR_INVALID_VALUE;
			}
	}
	if (!r && nvmaps == capvmaps) {
		unsigned nc = capvmaps ? 2 * capvmaps : 256;
		struct vmap *e = realloc(vmaps, nc * sizeof(*e));
		if (!e) {
			r = CUDA_ERROR_OUT_OF_MEMORY;
		} else {
			vmaps = e;
			capvmaps = nc;
		}
	}
	if (!r && mmap(q, bytes, PROT_NONE, MAP_SHARED | MAP_FIXED, memfd,
		       (off_t)(mem_bytes * (uint64_t)allocs[i].dev + allocs[i].off + offset)) ==
		      MAP_FAILED)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (!r) {
		vmaps[nvmaps].p = q;
		vmaps[nvmaps].len = bytes;
		vmaps[nvmaps].handle = h;
		vmaps[nvmaps].dev = allocs[i].dev;
		vmaps[nvmaps].rw = 0;
		nvmaps++;
		allocs[i].maps++;
		st.mapped_bytes += bytes;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemSetAccess(CUdeviceptr p, size_t bytes, const CUmemAccessDesc *desc,
			    size_t count)
{
	uint8_t *q = (uint8_t *)(uintptr_t)p, *at = q;
	CUresult r = CUDA_SUCCESS;

	if (!desc || count != 1 || desc->flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE ||
	    desc->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&mu);
	/* Every byte of the range must be mapped. */
	while (at < q + bytes && !r) {
		unsigned k;
		for (k = 0; k < nvmaps; k++)
			if (at >= vmaps[k].p && at < vmaps[k].p + vmaps[k].len)
				break;
		if (k == nvmaps) {
			violation("cuMemSetAccess at %#llx: %p is not mapped", p, (void *)at);
			r = CUDA_ERROR_INVALID_VALUE;
		} else {
			at = vmaps[k].p + vmaps[k].len;
		}
	}
	if (!r && mprotect(q, bytes, PROT_READ | PROT_WRITE) < 0)
		r = CUDA_ERROR_INVALID_VALUE;
	for (unsigned k = 0; k < nvmaps && !r; k++)
		if (vmaps[k].p >= q && vmaps[k].p < q + bytes)
			vmaps[k].rw = 1;
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemUnmap(CUdeviceptr p, size_t bytes)
{
	uint8_t *q = (uint8_t *)(uintptr_t)p;
	CUresult r = CUDA_SUCCESS;
	size_t covered = 0;

	pthread_mutex_lock(&mu);
	/* CUDA unmaps whole mappings only. */
	for (unsigned k = 0; k < nvmaps; k++) {
		if (vmaps[k].p >= q + bytes || vmaps[k].p + vmaps[k].len <= q)
			continue;
		if (vmaps[k].p < q || vmaps[k].p + vmaps[k].len > q + bytes) {
			violation("cuMemUnmap at %#llx (%zu bytes): cuts a mapping", p, bytes);
			r = CUDA_ERROR_INVALID_VALUE;
			break;
		}
		covered += vmaps[k].len;
	}
	if (!r && covered != bytes) {
		violation("cuMemUnmap at %#llx (%zu bytes): not all mapped", p, bytes);
		r = CUDA_ERROR_INVALID_VALUE;
	}
	for (unsigned k = 0; !r && k < nvmaps;) {
		int i;
		if (vmaps[k].p >= q + bytes || vmaps[k].p + vmaps[k].len <= q) {
			k++;
			continue;
		}
		st.mapped_bytes -= vmaps[k].len;
		i = find_handle(vmaps[k].handle);
		vmaps[k] = vmaps[--nvmaps];
		if (i >= 0 && !--allocs[i].maps && allocs[i].released)
			phys_free((unsigned)i);
	}
	/* Back to reserved, inaccessible address space. */
	if (!r && mmap(q, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
		       -1, 0) == MAP_FAILED)
		r = CUDA_ERROR_UNKNOWN;
	pthread_mutex_unlock(&mu);
	return r;
}

/* ---- pinned host memory ------------------------------------------------------------------ */

/* Called with mu held: is [p, p+len) inside one pinned range? */
static int pinned(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (unsigned i = 0; i < nhosts; i++)
		if (b >= hosts[i].p && b + len <= hosts[i].p + hosts[i].len)
			return 1;
	return 0;
}

static CUresult add_host(void *p, size_t len, int hostalloc)
{
	if (nhosts == MAX_HOST)
		return CUDA_ERROR_OUT_OF_MEMORY;
	for (unsigned i = 0; i < nhosts; i++)
		if ((uint8_t *)p < hosts[i].p + hosts[i].len && hosts[i].p < (uint8_t *)p + len)
			return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	hosts[nhosts].p = p;
	hosts[nhosts].len = len;
	hosts[nhosts].hostalloc = hostalloc;
	nhosts++;
	if (hostalloc) {
		st.hostallocs++;
	} else {
		st.registered++;
		st.registered_bytes += len;
	}
	return CUDA_SUCCESS;
}

static CUresult del_host(void *p, int hostalloc)
{
	for (unsigned i = 0; i < nhosts; i++) {
		if (hosts[i].p != p || hosts[i].hostalloc != hostalloc)
			continue;
		if (hostalloc) {
			st.hostallocs--;
		} else {
			st.registered--;
			st.registered_bytes -= hosts[i].len;
		}
		hosts[i] = hosts[--nhosts];
		return CUDA_SUCCESS;
	}
	return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
}

API CUresult cuMemHostRegister_v2(void *p, size_t bytes, unsigned flags)
{
	CUresult r;

	(void)flags;
	pthread_mutex_lock(&mu);
	if (cur_dev("cuMemHostRegister") < 0)
		r = CUDA_ERROR_INVALID_CONTEXT;
	else if (fail_register)
		r = CUDA_ERROR_NOT_SUPPORTED;
	else if (!p || !bytes)
		r = CUDA_ERROR_INVALID_VALUE;
	else
		r = add_host(p, bytes, 0);
	if (!r)
		st.register_calls++;
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemHostUnregister(void *p)
{
	CUresult r;

	pthread_mutex_lock(&mu);
	r = del_host(p, 0);
	if (r)
		violation("cuMemHostUnregister(%p): not registered", p);
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemHostAlloc(void **pp, size_t bytes, unsigned flags)
{
	void *p;
	CUresult r;

	(void)flags;
	*pp = NULL;
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_lock(&mu);
	r = cur_dev("cuMemHostAlloc") < 0 ? CUDA_ERROR_INVALID_CONTEXT : add_host(p, bytes, 1);
	pthread_mutex_unlock(&mu);
	if (r) {
		munmap(p, bytes);
		return r;
	}
	*pp = p;
	return CUDA_SUCCESS;
}

API CUresult cuMemFreeHost(void *p)
{
	size_t len = 0;
	CUresult r = CUDA_ERROR_INVALID_VALUE;

	pthread_mutex_lock(&mu);
	for (unsigned i = 0; i < nhosts; i++)
		if (hosts[i].p == p && hosts[i].hostalloc)
			len = hosts[i].len;
	if (len)
		r = del_host(p, 1);
	else
		violation("cuMemFreeHost(%p): not from cuMemHostAlloc", p);
	pthread_mutex_unlock(&mu);
	if (!r)
		munmap(p, len);
	return r;
}

/* ---- streams, copies, events ------------------------------------------------------------- */

API CUresult cuStreamCreate(CUstream *s, unsigned flags)
{
	(void)flags;
	if (lock_dev("cuStreamCreate") < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	*s = calloc(1, sizeof(**s));
	if (*s)
		st.streams++;
	pthread_mutex_unlock(&mu);
	return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

API CUresult cuStreamSynchronize(CUstream s)
{
	CUresult r;

	if (!s)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	while (s->pending)
		pthread_cond_wait(&done_cv, &mu);
	r = s->err;
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuStreamDestroy_v2(CUstream s)
{
	if (!s)
		return CUDA_ERROR_INVALID_HANDLE;
	/* CUDA lets work queued on a destroyed stream finish; the sink never does that, so the
	 * fake waits and counts it. */
	pthread_mutex_lock(&mu);
	if (s->pending)
		violation("cuStreamDestroy with %u operations pending", s->pending);
	while (s->pending)
		pthread_cond_wait(&done_cv, &mu);
	st.streams--;
	pthread_mutex_unlock(&mu);
	free(s);
	return CUDA_SUCCESS;
}

/* Called with mu held. */
static CUresult enqueue_op(struct op *o, int kind, CUstream s, void *dst, const void *src,
			   size_t len, CUevent ev, int fail)
{
	struct op **pp = &queue;

	if (!o)
		return CUDA_ERROR_OUT_OF_MEMORY;
	o->kind = kind;
	o->s = s;
	o->dst = dst;
	o->src = src;
	o->len = len;
	o->ev = ev;
	o->gen = ev ? ev->gen : 0;
	o->seq = ++seq;
	o->fail = fail;
	while (*pp)
		pp = &(*pp)->next;
	*pp = o;
	s->pending++;
	if (kind != OP_EVENT && ++pending > st.max_pending)
		st.max_pending = pending;
	pthread_cond_broadcast(&work_cv);
	return CUDA_SUCCESS;
}

static CUresult enqueue(int kind, CUstream s, void *dst, const void *src, size_t len, CUevent ev,
			int fail)
{
	return enqueue_op(calloc(1, sizeof(struct op)), kind, s, dst, src, len, ev, fail);
}

API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream s)
{
	CUresult r;
	uint64_t n;

	if (!s) {
		/* The legacy default stream would synchronise with everything: never wanted. */
		pthread_mutex_lock(&mu);
		violation("cuMemcpyHtoDAsync on the default stream");
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_HANDLE;
	}
	pthread_mutex_lock(&mu);
	n = ++htod_calls;
	if (cur_dev("cuMemcpyHtoDAsync") < 0) {
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else if (!pinned(src, bytes)) {
		violation("cuMemcpyHtoDAsync of %zu bytes from pageable memory %p", bytes, src);
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (!dev_ok(dst, bytes)) {
		violation("cuMemcpyHtoDAsync of %zu bytes to %#llx: outside any allocation", bytes,
			  dst);
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (fail_copy && n == fail_copy) {
		r = CUDA_ERROR_LAUNCH_FAILED;
	} else {
		r = enqueue(OP_HTOD, s, (void *)(uintptr_t)dst, src, bytes, NULL,
			    fail_async && n == fail_async);
		if (!r) {
			st.htod_copies++;
			st.htod_bytes += bytes;
		}
	}
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s)
{
	CUresult r;

	if (!s)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	if (cur_dev("cuMemcpyDtoDAsync") < 0) {
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else if (!dev_ok(dst, bytes) || !dev_ok(src, bytes)) {
		violation("cuMemcpyDtoDAsync of %zu bytes %#llx -> %#llx: outside an allocation",
			  bytes, src, dst);
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (dst < src + bytes && src < dst + bytes && dst != src) {
		violation("cuMemcpyDtoDAsync of %zu bytes with overlapping ranges", bytes);
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		r = enqueue(OP_DTOD, s, (void *)(uintptr_t)dst, (const void *)(uintptr_t)src,
			    bytes, NULL, 0);
		if (!r)
			st.dtod_copies++;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
	if (lock_dev("cuMemcpyDtoH") < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!dev_ok(src, bytes)) {
		violation("cuMemcpyDtoH of %zu bytes from %#llx: outside any allocation", bytes,
			  src);
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_INVALID_VALUE;
	}
	/* Synchronous with respect to the host; the sink's copies are done by the time a test
	 * reads (the load synchronised), which is what a real cuMemcpyDtoH would also need. */
	pthread_mutex_unlock(&mu);
	memcpy(dst, (const void *)(uintptr_t)src, bytes);
	return CUDA_SUCCESS;
}

API CUresult cuEventCreate(CUevent *e, unsigned flags)
{
	(void)flags;
	*e = calloc(1, sizeof(**e));
	if (!*e)
		return CUDA_ERROR_OUT_OF_MEMORY;
	(*e)->done = 1;
	pthread_mutex_lock(&mu);
	st.events++;
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

API CUresult cuEventRecord(CUevent e, CUstream s)
{
	CUresult r;

	if (!e || !s)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	e->gen++;
	e->done = 0;
	e->status = CUDA_SUCCESS;
	r = enqueue(OP_EVENT, s, NULL, NULL, 0, e, 0);
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuEventQuery(CUevent e)
{
	CUresult r;

	if (!e)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	r = e->done ? e->status : CUDA_ERROR_NOT_READY;
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuEventSynchronize(CUevent e)
{
	CUresult r;

	if (!e)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	while (!e->done)
		pthread_cond_wait(&done_cv, &mu);
	r = e->status;
	pthread_mutex_unlock(&mu);
	return r;
}

API CUresult cuEventDestroy_v2(CUevent e)
{
	if (!e)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	if (!e->done)
		violation("cuEventDestroy of a pending event");
	while (!e->done)
		pthread_cond_wait(&done_cv, &mu);
	st.events--;
	pthread_mutex_unlock(&mu);
	free(e);
	return CUDA_SUCCESS;
}

/* ---- modules and kernels ------------------------------------------------------------------ */

API CUresult cuModuleLoadData(CUmodule *m, const void *image)
{
	const char *img = image;

	*m = NULL;
	if (!img)
		return CUDA_ERROR_INVALID_VALUE;
	if (lock_dev("cuModuleLoadData") < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	pthread_mutex_unlock(&mu);
	/* A PTX image: text with a .version and .target (a real driver JIT-compiles it). */
	if (fail_module || !strstr(img, ".version ") || !strstr(img, ".target "))
		return CUDA_ERROR_INVALID_PTX;
	*m = calloc(1, sizeof(**m));
	if (*m)
		(*m)->image = strdup(img);
	if (!*m || !(*m)->image) {
		free(*m);
		*m = NULL;
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	pthread_mutex_lock(&mu);
	st.modules++;
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

API CUresult cuModuleUnload(CUmodule m)
{
	if (!m)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	st.modules--;
	pthread_mutex_unlock(&mu);
	free(m->image);
	free(m);
	return CUDA_SUCCESS;
}

/* The kernel named, when the image defines it (".entry NAME(") and the fake implements it:
 * the C code of kernels/convert_elem.h, which is what convert.cu compiles. */
API CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name)
{
	char want[96];

	*f = NULL;
	if (!m || !name)
		return CUDA_ERROR_INVALID_HANDLE;
	snprintf(want, sizeof(want), ".entry %s(", name);
	if (!strstr(m->image, want))
		return CUDA_ERROR_NOT_FOUND;
	for (int p = 0; p < WLIFT_K_NPAIRS; p++) {
		if (strcmp(kernels[p].name, name) != 0)
			continue;
		*f = &m->fn[p]; /* lives as long as the module, as CUDA's */
		(*f)->pair = p;
		(*f)->in = kernels[p].in;
		(*f)->out = kernels[p].out;
		return CUDA_SUCCESS;
	}
	return CUDA_ERROR_NOT_FOUND;
}

API CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
			    unsigned by, unsigned bz, unsigned shared, CUstream s, void **params,
			    void **extra)
{
	const uint8_t *src;
	uint8_t *dst;
	uint64_t n;
	CUresult r = CUDA_SUCCESS;

	if (!f || !params)
		return CUDA_ERROR_INVALID_HANDLE;
	/* The kernels' parameters: (const uint8_t *src, uint8_t *dst, uint64_t n), copied at
	 * the launch, as CUDA does. */
	memcpy(&src, params[0], sizeof(src));
	memcpy(&dst, params[1], sizeof(dst));
	memcpy(&n, params[2], sizeof(n));
	pthread_mutex_lock(&mu);
	launch_calls++;
	if (!s) {
		violation("cuLaunchKernel on the default stream");
		r = CUDA_ERROR_INVALID_HANDLE;
	} else if (cur_dev("cuLaunchKernel") < 0) {
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else if (!gx || gy != 1 || gz != 1 || !bx || bx > 1024 || by != 1 || bz != 1 ||
		   shared || extra) {
		violation("cuLaunchKernel: grid %u x %u x %u, block %u x %u x %u", gx, gy, gz, bx,
			  by, bz);
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (!n || !dev_ok((CUdeviceptr)(uintptr_t)src, n * f->in) ||
		   !dev_ok((CUdeviceptr)(uintptr_t)dst, n * f->out)) {
		violation("cuLaunchKernel %s of %llu elements %p -> %p: outside device memory",
			  kernels[f->pair].name, (unsigned long long)n, (const void *)src,
			  (void *)dst);
		r = CUDA_ERROR_ILLEGAL_ADDRESS;
	} else if (fail_launch && launch_calls == fail_launch) {
		r = CUDA_ERROR_LAUNCH_FAILED;
	} else {
		struct op *o = calloc(1, sizeof(*o));
		if (o)
			o->pair = f->pair;
		r = enqueue_op(o, OP_KERNEL, s, dst, src, (size_t)n, NULL, 0);
		if (!r) {
			st.launches++;
			st.launch_elems += n;
		}
	}
	pthread_mutex_unlock(&mu);
	return r;
}

/* ---- 2D copies ---------------------------------------------------------------------------- */

API CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *p, CUstream s)
{
	const uint8_t *src;
	uint8_t *dst;
	size_t span_s, span_d;
	CUresult r = CUDA_SUCCESS;

	if (!p || !s)
		return CUDA_ERROR_INVALID_HANDLE;
	if (p->srcMemoryType != CU_MEMORYTYPE_HOST || p->dstMemoryType != CU_MEMORYTYPE_DEVICE ||
	    !p->Height || !p->WidthInBytes || p->srcPitch < p->WidthInBytes ||
	    p->dstPitch < p->WidthInBytes)
		return CUDA_ERROR_INVALID_VALUE;
	src = (const uint8_t *)p->srcHost + p->srcY * p->srcPitch + p->srcXInBytes;
	dst = (uint8_t *)(uintptr_t)p->dstDevice + p->dstY * p->dstPitch + p->dstXInBytes;
	span_s = (p->Height - 1) * p->srcPitch + p->WidthInBytes;
	span_d = (p->Height - 1) * p->dstPitch + p->WidthInBytes;
	pthread_mutex_lock(&mu);
	if (cur_dev("cuMemcpy2DAsync") < 0) {
		r = CUDA_ERROR_INVALID_CONTEXT;
	} else if (!pinned(src, span_s)) {
		violation("cuMemcpy2DAsync of %zu x %zu bytes from pageable memory", p->Height,
			  p->WidthInBytes);
		r = CUDA_ERROR_INVALID_VALUE;
	} else if (!dev_ok((CUdeviceptr)(uintptr_t)dst, span_d)) {
		violation("cuMemcpy2DAsync of %zu x %zu bytes to %p: outside device memory",
			  p->Height, p->WidthInBytes, (void *)dst);
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		struct op *o = calloc(1, sizeof(*o));
		if (o) {
			o->spitch = p->srcPitch;
			o->dpitch = p->dstPitch;
			o->height = p->Height;
		}
		r = enqueue_op(o, OP_2D, s, dst, src, p->WidthInBytes, NULL, 0);
		if (!r) {
			st.copies_2d++;
			st.htod_bytes += p->Height * p->WidthInBytes;
		}
	}
	pthread_mutex_unlock(&mu);
	return r;
}
