/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA sink: a staged sink whose destination is device memory on cuda:N. Readers fill a
 * bounded ring of pinned host buffers (acquire); each filled buffer is copied at once with
 * cuMemcpyHtoDAsync on one of a few non-blocking streams, followed by an event (commit), and
 * the buffer is reused only after its event has fired (poll): there is no stream synchronise
 * per chunk, so reading the next chunks overlaps the copies, and host memory stays at the
 * ring whatever the checkpoint's size. Bytes land in their final place in one device
 * allocation (identity layout, tensors 256-byte aligned by the plan), exported to the result
 * with its own free. Every driver call runs with the device's primary context pushed (so the
 * tensors interoperate with PyTorch and JAX, and the caller's current context is left as it
 * was). The ring is made when the load's size is known (alloc): no more buffers than the load
 * can use. The driver comes from cuda_drv.c (dlopen: no link dependency on CUDA).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/numa.h"
#include "sink/cuda.h"
#include "sink/cuda_drv.h"
#include "sink/cuda_kernels.h"
#include "sink/cuda_mem.h"

#define RING_SEGMENT (256u << 20) /* cuMemHostRegister at most this much per call */
#define STAGE_ALIGN 4096u	  /* O_DIRECT reads land in the ring */
#define DEST_ALIGN 256u		  /* every tensor starts 256-byte aligned on the device */
#define NSTREAMS 4		  /* copies spread over this many streams */
#define HUGE_SZ (2u << 20)

enum { SLOT_FREE, SLOT_ACQUIRED, SLOT_INFLIGHT, SLOT_REPORTING };

struct slot {
	uint8_t *p;
	CUevent ev;
	int state;
	uint64_t cookie, off;
	size_t len;
};

struct segment {
	uint8_t *p;
	size_t len;
	int hostalloc; /* 1: cuMemHostAlloc'd (fallback); 0: part of the registered mapping */
};

/* A remapped (gathered) destination range, sink.h's remap. */
struct remap {
	uint64_t off, len, outer, piece, stride, dst;
};

struct cuda_sink {
	struct wlift__sink base;
	wlift_ctx *wctx; /* keeps the ring between loads (wlift__ctx_keep) */
	int finished;	 /* finish() succeeded: the ring is fit to keep */
	int ring_reused; /* this load's ring was the context's kept one */
	const struct wlift__cuda *cu;
	char name[32]; /* "cuda:N", for messages */
	char pci[32];  /* its PCI address, "0000:3b:00.0" */
	int index;
	CUdevice dev;
	CUcontext ctx;
	int retained;
	CUstream streams[NSTREAMS], aux;
	unsigned next_stream; /* atomic */
	/* ring */
	size_t ring_bytes, slot_bytes;
	unsigned max_slots, nslots;
	uint64_t budget; /* max_device_bytes, 0: none */
	uint8_t *ring;	  /* the registered mapping (NULL with the cuMemHostAlloc fallback) */
	size_t ring_map;  /* its length */
	struct segment *segs;
	unsigned nsegs;
	struct slot *slots;
	/* destination */
	const wlift_device_allocator *user_alloc; /* the caller's, or NULL */
	struct wlift__cuda_mem *mem;		  /* until exported */
	CUdeviceptr dptr;
	uint64_t bytes;
	/* gathered ranges, sorted by off (registered before the first commit) */
	struct remap *remaps;
	size_t nremaps;
	/* device dtype conversion: the kernels, loaded at the first conversion */
	struct wlift__cuda_kernels *kern;
	int kern_err;		/* their load failed: this code, kern_diag the message */
	wlift_diag kern_diag;
	pthread_mutex_t kmu; /* kernels and aux-stream conversions */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a slot was given back */
};

static const char *etext(const struct cuda_sink *c, CUresult r)
{
	return wlift__cuda_errtext(c->cu, r, NULL, 0);
}

static int push(const struct cuda_sink *c)
{
	return c->cu->CtxPushCurrent(c->ctx) == CUDA_SUCCESS;
}

static void pop(const struct cuda_sink *c)
{
	CUcontext old;

	c->cu->CtxPopCurrent(&old);
}

/* ---- parsing ----------------------------------------------------------------------------- */

int wlift__cuda_parse_device(const char *device, int *index)
{
	const char *p = device;
	unsigned long v = 0;

	if (strcmp(device, "cuda") == 0) {
		*index = 0;
		return 0;
	}
	if (strncmp(device, "cuda:", 5) == 0)
		p += 5;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > WLIFT_MAX_DEVICE_INDEX)
			return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	*index = (int)v;
	return 0;
}

/* ---- memory ------------------------------------------------------------------------------ */

/* A ring's buffers, events and pinning: the sink's, or one a context keeps. */
struct ring {
	uint8_t *map;	  /* the registered mapping (NULL with the cuMemHostAlloc fallback) */
	size_t map_len;
	struct segment *segs;
	unsigned nsegs;
	struct slot *slots;
	unsigned nslots;
};

/* Called with the ring's context current. */
static void ring_release(const struct wlift__cuda *cu, struct ring *r)
{
	for (unsigned i = 0; i < r->nslots; i++)
		if (r->slots[i].ev)
			cu->EventDestroy(r->slots[i].ev);
	for (unsigned i = 0; i < r->nsegs; i++) {
		if (r->segs[i].hostalloc)
			cu->MemFreeHost(r->segs[i].p);
		else if (r->segs[i].p)
			cu->MemHostUnregister(r->segs[i].p);
	}
	if (r->map)
		munmap(r->map, r->map_len);
	free(r->segs);
	free(r->slots);
	memset(r, 0, sizeof(*r));
}

static void ring_get(const struct cuda_sink *c, struct ring *r)
{
	r->map = c->ring;
	r->map_len = c->ring_map;
	r->segs = c->segs;
	r->nsegs = c->nsegs;
	r->slots = c->slots;
	r->nslots = c->nslots;
}

static void ring_put(struct cuda_sink *c, const struct ring *r)
{
	c->ring = r->map;
	c->ring_map = r->map_len;
	c->segs = r->segs;
	c->nsegs = r->nsegs;
	c->slots = r->slots;
	c->nslots = r->nslots;
}

static void ring_free(struct cuda_sink *c)
{
	struct ring r;

	ring_get(c, &r);
	ring_release(c->cu, &r);
	ring_put(c, &r);
}

/* A ring a context keeps for the next load of the device (WEIGHTLIFT_CUDA_RING_KEEP_S): it
 * holds its own primary-context reference (registrations and events belong to it). */
struct kept_ring {
	const struct wlift__cuda *cu;
	CUdevice dev;
	CUcontext ctx;
	int index;
	size_t slot_bytes;
	struct ring r;
};

static void kept_ring_free(void *p)
{
	struct kept_ring *k = p;
	CUcontext old;

	if (k->cu->CtxPushCurrent(k->ctx) == CUDA_SUCCESS) {
		ring_release(k->cu, &k->r);
		k->cu->CtxPopCurrent(&old);
	}
	k->cu->PrimaryCtxRelease(k->dev);
	free(k);
}

/* After a successful load (everything copied): hand the ring to the context. */
static void ring_keep(struct cuda_sink *c)
{
	struct kept_ring *k;

	if (!c->wctx || !c->wctx->ring_keep_s || !c->finished || !c->nslots)
		return;
	k = calloc(1, sizeof(*k));
	if (!k)
		return;
	if (c->cu->PrimaryCtxRetain(&k->ctx, c->dev) != CUDA_SUCCESS) {
		free(k);
		return;
	}
	k->cu = c->cu;
	k->dev = c->dev;
	k->index = c->index;
	k->slot_bytes = c->slot_bytes;
	ring_get(c, &k->r);
	c->ring = NULL;
	c->segs = NULL;
	c->slots = NULL;
	c->nsegs = c->nslots = 0;
	if (wlift__ctx_keep(c->wctx, k, kept_ring_free))
		kept_ring_free(k);
}

/* The context's kept ring, when it fits this load (same driver and device, same buffer
 * size, enough buffers): 1, the sink's ring from now on; else 0 (a kept ring that does not
 * fit is freed). */
static int ring_adopt(struct cuda_sink *c, unsigned nslots)
{
	struct kept_ring *k = c->wctx ? wlift__ctx_take_kept(c->wctx, kept_ring_free) : NULL;

	if (!k)
		return 0;
	if (k->cu != c->cu || k->index != c->index || k->slot_bytes != c->slot_bytes ||
	    k->r.nslots < nslots) {
		kept_ring_free(k);
		return 0;
	}
	ring_put(c, &k->r);
	for (unsigned i = 0; i < c->nslots; i++)
		c->slots[i].state = SLOT_FREE;
	c->cu->PrimaryCtxRelease(k->dev); /* the sink holds its own */
	free(k);
	c->ring_reused = 1;
	return 1;
}

/* The ring: nslots buffers of slot_bytes, pinned in segments of at most RING_SEGMENT (a
 * whole number of slots each). First choice: one huge-page-advised mapping registered with
 * cuMemHostRegister (page-locks memory we own, so the copies run at full link speed); where
 * the driver refuses (some containers, IOMMU setups), cuMemHostAlloc. Never pageable memory:
 * a copy from it would be staged by the driver through its own pinned buffer, synchronously.
 * Called with the context pushed. */
static int ring_make(struct cuda_sink *c, unsigned nslots, wlift_diag *d)
{
	size_t per_seg = RING_SEGMENT / c->slot_bytes, total = (size_t)nslots * c->slot_bytes;
	unsigned nsegs = (unsigned)((nslots + per_seg - 1) / per_seg);
	CUresult r = CUDA_SUCCESS;
	int ret = 0;

	c->slots = calloc(nslots, sizeof(*c->slots));
	c->segs = calloc(nsegs, sizeof(*c->segs));
	if (!c->slots || !c->segs)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	c->nsegs = nsegs;
	c->ring_map = (total + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
	c->ring = mmap(NULL, c->ring_map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (c->ring == MAP_FAILED) {
		c->ring = NULL;
	} else {
		madvise(c->ring, c->ring_map, MADV_HUGEPAGE); /* best effort */
		/* On the GPU's NUMA node, before registration touches the pages. */
		wlift__numa_tonode(c->ring, c->ring_map, c->base.numa - 1);
		for (unsigned i = 0; i < nsegs && r == CUDA_SUCCESS; i++) {
			size_t off = (size_t)i * per_seg * c->slot_bytes;
			size_t len = total - off < per_seg * c->slot_bytes ? total - off
									  : per_seg * c->slot_bytes;
			r = c->cu->MemHostRegister(c->ring + off, len, CU_MEMHOSTREGISTER_PORTABLE);
			if (r == CUDA_SUCCESS) {
				c->segs[i].p = c->ring + off;
				c->segs[i].len = len;
			}
		}
		if (r != CUDA_SUCCESS) {
			for (unsigned i = 0; i < nsegs; i++)
				if (c->segs[i].p)
					c->cu->MemHostUnregister(c->segs[i].p);
			memset(c->segs, 0, nsegs * sizeof(*c->segs));
			munmap(c->ring, c->ring_map);
			c->ring = NULL;
		}
	}
	if (!c->ring) {
		for (unsigned i = 0; i < nsegs; i++) {
			size_t off = (size_t)i * per_seg * c->slot_bytes;
			size_t len = total - off < per_seg * c->slot_bytes ? total - off
									  : per_seg * c->slot_bytes;
			void *p = NULL;
			r = c->cu->MemHostAlloc(&p, len, CU_MEMHOSTALLOC_PORTABLE);
			if (r != CUDA_SUCCESS) {
				ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.pinned",
						      "%s: cannot pin %zu bytes of staging memory "
						      "(cuMemHostRegister and cuMemHostAlloc: %s); "
						      "lower WEIGHTLIFT_CUDA_RING_BYTES",
						      c->name, total, etext(c, r));
				goto out;
			}
			c->segs[i].p = p;
			c->segs[i].len = len;
			c->segs[i].hostalloc = 1;
		}
	}
	for (unsigned i = 0; i < nslots; i++) {
		struct slot *s = &c->slots[i];
		s->p = c->segs[i / per_seg].p + (size_t)(i % per_seg) * c->slot_bytes;
		r = c->cu->EventCreate(&s->ev, CU_EVENT_DISABLE_TIMING);
		if (r != CUDA_SUCCESS) {
			s->ev = NULL;
			c->nslots = i;
			ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.event",
					      "%s: cuEventCreate: %s", c->name, etext(c, r));
			goto out;
		}
	}
	c->nslots = nslots;
out:
	return ret;
}

static int cuda_alloc(struct wlift__sink *s, uint64_t bytes, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	uint64_t want = bytes ? bytes : DEST_ALIGN, nslots;
	int ret = 0;

	if (c->budget && want > c->budget)
		return wlift__diag_set(d, WLIFT_EDEVMEM, NULL, NULL, -1, "cuda.budget",
				       "%s: the load needs %llu bytes (%.1f MiB) of device memory, "
				       "more than max_device_bytes = %llu (WEIGHTLIFT_MAX_DEVICE_BYTES)",
				       c->name, (unsigned long long)want, (double)want / 1048576.0,
				       (unsigned long long)c->budget);
	if (!push(c))
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				       "%s: cannot make the device's context current", c->name);
	ret = wlift__cuda_mem_create(c->cu, c->dev, c->index, c->name, want,
				     c->base.gds_dest ? WLIFT_CUDA_MEM_RDMA : 0, c->user_alloc,
				     &c->mem, d);
	if (ret)
		goto out;
	c->dptr = wlift__cuda_mem_ptr(c->mem);
	c->bytes = bytes;
	/* No more staging buffers than the load can fill at once, and at least two so that
	 * reading overlaps copying. */
	nslots = (bytes + c->slot_bytes - 1) / c->slot_bytes;
	if (nslots < 2)
		nslots = 2;
	if (nslots > c->max_slots)
		nslots = c->max_slots;
	if (!ring_adopt(c, (unsigned)nslots))
		ret = ring_make(c, (unsigned)nslots, d);
out:
	pop(c);
	return ret;
}

/* The ring's segments (each one registered mapping or one cuMemHostAlloc block). */
static unsigned cuda_staging(struct wlift__sink *s, struct iovec *iov, unsigned max)
{
	const struct cuda_sink *c = (const struct cuda_sink *)s;
	unsigned n = 0;

	for (unsigned i = 0; i < c->nsegs && n < max; i++)
		if (c->segs[i].p) {
			iov[n].iov_base = c->segs[i].p;
			iov[n].iov_len = c->segs[i].len;
			n++;
		}
	return n;
}

static void *cuda_dest(struct wlift__sink *s, uint64_t off)
{
	WLIFT_UNUSED(s);
	WLIFT_UNUSED(off);
	return NULL;
}

/* GPU Direct Storage writes the destination directly: its address at off. Not in a load
 * with remapped (gathered) ranges: their bytes only the sink may place, and a chunk may
 * span the edge of one. */
static void *cuda_device_ptr(struct wlift__sink *s, uint64_t off, int *device)
{
	struct cuda_sink *c = (struct cuda_sink *)s;

	*device = c->index;
	if (!c->dptr || off > c->bytes || c->nremaps)
		return NULL;
	return (void *)(uintptr_t)(c->dptr + off);
}

static int cuda_device_enter(struct wlift__sink *s, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;

	if (!push(c))
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				       "%s: cannot make the device's context current", c->name);
	return 0;
}

static void cuda_device_leave(struct wlift__sink *s)
{
	pop((struct cuda_sink *)s);
}

/* ---- staging: acquire, commit, poll ------------------------------------------------------ */

static int cuda_acquire(struct wlift__sink *s, size_t len, void **buf, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;

	*buf = NULL;
	if (len > c->slot_bytes)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "cuda.ring",
				       "%s: a staging buffer of %zu bytes was asked for (slots are "
				       "%zu bytes)",
				       c->name, len, c->slot_bytes);
	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < c->nslots; i++) {
		if (c->slots[i].state == SLOT_FREE) {
			c->slots[i].state = SLOT_ACQUIRED;
			*buf = c->slots[i].p;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return *buf ? 0 : -EAGAIN;
}

static struct slot *slot_of(struct cuda_sink *c, const void *buf)
{
	for (unsigned i = 0; i < c->nslots; i++)
		if (c->slots[i].p == buf)
			return &c->slots[i];
	return NULL;
}

static void give_back(struct cuda_sink *c, struct slot *sl)
{
	pthread_mutex_lock(&c->mu);
	sl->state = SLOT_FREE;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void cuda_unacquire(struct wlift__sink *s, void *buf)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	struct slot *sl = slot_of(c, buf);

	if (sl)
		give_back(c, sl);
}

/* The rows of remapped range m that the staged bytes p (range offsets [a, b)) hold, each
 * to its gathered place: whole rows in one cuMemcpy2DAsync (source pitch stride, destination
 * pitch piece), partial rows at either end one copy each; the bytes between rows (other
 * ranks' columns) are not copied. */
static CUresult deliver_rows(struct cuda_sink *c, const uint8_t *p, const struct remap *m,
			     uint64_t a, uint64_t b, CUstream st, const char **what)
{
	uint64_t k = a / m->stride;
	CUresult r = CUDA_SUCCESS;

	while (a < b && k < m->outer && r == CUDA_SUCCESS) {
		uint64_t rs = k * m->stride, re = rs + m->piece, e;

		if (a >= re) { /* between row k and the next */
			k++;
			continue;
		}
		if (a < rs) {
			p += rs - a;
			a = rs;
			continue;
		}
		if (a == rs && re <= b) {
			uint64_t n = (b - rs - m->piece) / m->stride + 1;
			if (n > m->outer - k)
				n = m->outer - k;
			if (n > 1 && c->cu->Memcpy2DAsync) {
				CUDA_MEMCPY2D cp;
				memset(&cp, 0, sizeof(cp));
				cp.srcMemoryType = CU_MEMORYTYPE_HOST;
				cp.srcHost = p;
				cp.srcPitch = (size_t)m->stride;
				cp.dstMemoryType = CU_MEMORYTYPE_DEVICE;
				cp.dstDevice = c->dptr + m->dst + k * m->piece;
				cp.dstPitch = (size_t)m->piece;
				cp.WidthInBytes = (size_t)m->piece;
				cp.Height = (size_t)n;
				*what = "cuMemcpy2DAsync";
				r = c->cu->Memcpy2DAsync(&cp, st);
				if (r != CUDA_ERROR_INVALID_VALUE) { /* e.g. a pitch over the limit */
					e = rs + (n - 1) * m->stride + m->piece;
					p += e - a;
					a = e;
					k += n;
					continue;
				}
			}
		}
		/* One row, or its part in [a, b). */
		e = re < b ? re : b;
		*what = "cuMemcpyHtoDAsync";
		r = c->cu->MemcpyHtoDAsync(c->dptr + m->dst + k * m->piece + (a - rs), p,
					   (size_t)(e - a), st);
		p += e - a;
		a = e;
	}
	return r;
}

/* Copy the staged bytes buf (destination offsets [off, off+len)) to the device: as they are,
 * except inside remapped ranges, which are gathered. */
static CUresult deliver(struct cuda_sink *c, const uint8_t *buf, uint64_t off, size_t len,
			CUstream st, const char **what)
{
	uint64_t pos = off, end = off + len;
	size_t lo = 0, hi = c->nremaps;
	CUresult r = CUDA_SUCCESS;

	while (lo < hi) { /* the first remapped range ending after off */
		size_t mid = lo + (hi - lo) / 2;
		if (c->remaps[mid].off + c->remaps[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (pos < end && r == CUDA_SUCCESS) {
		const struct remap *m = lo < c->nremaps ? &c->remaps[lo] : NULL;
		uint64_t e;

		if (m && m->off <= pos) {
			e = m->off + m->len < end ? m->off + m->len : end;
			r = deliver_rows(c, buf + (pos - off), m, pos - m->off, e - m->off, st, what);
			lo++;
		} else {
			e = m && m->off < end ? m->off : end;
			*what = "cuMemcpyHtoDAsync";
			r = c->cu->MemcpyHtoDAsync(c->dptr + pos, buf + (pos - off), (size_t)(e - pos),
						   st);
		}
		pos = e;
	}
	return r;
}

static int cuda_remap(struct wlift__sink *s, uint64_t off, uint64_t len, uint64_t outer,
		      uint64_t piece, uint64_t stride, uint64_t dst)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	struct remap *n;
	size_t i;

	if (!outer || !piece || stride < piece || len < piece || off > c->bytes ||
	    len > c->bytes - off || (outer - 1) > (len - piece) / stride || dst > c->bytes ||
	    outer > (c->bytes - dst) / piece)
		return -EINVAL;
	if (!c->cu->Memcpy2DAsync && outer > 1)
		return -ENOTSUP; /* the engine's device moves instead */
	for (i = c->nremaps; i > 0 && c->remaps[i - 1].off >= off; i--)
		;
	if ((i > 0 && c->remaps[i - 1].off + c->remaps[i - 1].len > off) ||
	    (i < c->nremaps && c->remaps[i].off < off + len))
		return -EINVAL; /* overlaps another */
	n = realloc(c->remaps, (c->nremaps + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->remaps = n;
	memmove(&n[i + 1], &n[i], (c->nremaps - i) * sizeof(*n));
	n[i].off = off;
	n[i].len = len;
	n[i].outer = outer;
	n[i].piece = piece;
	n[i].stride = stride;
	n[i].dst = dst;
	c->nremaps++;
	return 0;
}

static int cuda_commit(struct wlift__sink *s, void *buf, uint64_t off, size_t len,
		       uint64_t cookie, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	struct slot *sl = slot_of(c, buf);
	unsigned si = __atomic_fetch_add(&c->next_stream, 1, __ATOMIC_RELAXED) % NSTREAMS;
	CUstream st = c->streams[si];
	const char *what = "cuMemcpyHtoDAsync";
	CUresult r;

	if (!sl || sl->state != SLOT_ACQUIRED || off > c->bytes || len > c->bytes - off) {
		if (sl)
			give_back(c, sl);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "cuda.commit",
				       "%s: internal error: commit of %zu bytes at device offset "
				       "%llu (destination %llu bytes)",
				       c->name, len, (unsigned long long)off,
				       (unsigned long long)c->bytes);
	}
	sl->off = off;
	sl->len = len;
	sl->cookie = cookie;
	if (!push(c)) {
		give_back(c, sl);
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				       "%s: cannot make the device's context current", c->name);
	}
	r = deliver(c, buf, off, len, st, &what);
	if (r != CUDA_SUCCESS) {
		/* Copies of this buffer already queued read it: it is reused once they ran. */
		c->cu->StreamSynchronize(st);
		pop(c);
		give_back(c, sl);
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.copy",
				       "%s: %s of %zu bytes to device offset %llu failed: %s",
				       c->name, what, len, (unsigned long long)off, etext(c, r));
	}
	r = c->cu->EventRecord(sl->ev, st);
	if (r != CUDA_SUCCESS) {
		/* The copy is queued and reads the buffer: it may be reused only once it ran. */
		c->cu->StreamSynchronize(st);
		pop(c);
		give_back(c, sl);
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.event",
				       "%s: cuEventRecord: %s", c->name, etext(c, r));
	}
	pop(c);
	pthread_mutex_lock(&c->mu);
	sl->state = SLOT_INFLIGHT;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

#define MAX_REPORT 64

struct report {
	struct slot *sl;
	CUresult r;
};

/* Claim every slot whose copy has finished (or failed). Called with mu held. */
static unsigned claim_done(struct cuda_sink *c, struct report *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nslots && n < MAX_REPORT; i++) {
		struct slot *sl = &c->slots[i];
		CUresult r;

		if (sl->state != SLOT_INFLIGHT)
			continue;
		r = c->cu->EventQuery(sl->ev);
		if (r == CUDA_ERROR_NOT_READY)
			continue;
		sl->state = SLOT_REPORTING;
		out[n].sl = sl;
		out[n].r = r;
		n++;
	}
	return n;
}

/* Report claimed slots through the done callback, without the lock (the engine may move,
 * convert or run the user's callback from there), then free them. */
static void report(struct cuda_sink *c, struct report *rp, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct slot *sl = rp[i].sl;

		if (rp[i].r == CUDA_SUCCESS) {
			if (c->base.done)
				c->base.done(c->base.done_user, sl->cookie, 0, NULL);
		} else {
			wlift_diag e;
			wlift_diag_clear(&e);
			wlift__diag_set(&e, WLIFT_ECUDA, NULL, NULL, -1, "cuda.copy",
					"%s: the copy of %zu bytes to device offset %llu failed: %s",
					c->name, sl->len, (unsigned long long)sl->off,
					etext(c, rp[i].r));
			if (c->base.done)
				c->base.done(c->base.done_user, sl->cookie, e.code, &e);
		}
		give_back(c, sl);
	}
}

static int cuda_poll(struct wlift__sink *s, int wait, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	struct report rp[MAX_REPORT];
	unsigned n;

	WLIFT_UNUSED(d);
	pthread_mutex_lock(&c->mu);
	n = claim_done(c, rp);
	if (!n && wait) {
		CUevent ev = NULL;
		for (unsigned i = 0; i < c->nslots && !ev; i++)
			if (c->slots[i].state == SLOT_INFLIGHT)
				ev = c->slots[i].ev;
		if (ev) {
			/* Block on one copy in flight (any: they finish in any order). */
			pthread_mutex_unlock(&c->mu);
			c->cu->EventSynchronize(ev);
			pthread_mutex_lock(&c->mu);
		} else {
			/* Every buffer is being read into by other workers: wait for one. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		n = claim_done(c, rp);
	}
	pthread_mutex_unlock(&c->mu);
	report(c, rp, n);
	return (int)n;
}

static int busy(struct cuda_sink *c)
{
	int b = 0;

	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < c->nslots; i++)
		b |= c->slots[i].state == SLOT_INFLIGHT || c->slots[i].state == SLOT_REPORTING;
	pthread_mutex_unlock(&c->mu);
	return b;
}

static int cuda_finish(struct wlift__sink *s, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	int ret = 0;

	while (busy(c))
		if (cuda_poll(s, 1, d) < 0)
			break;
	/* The memory is handed over complete: nothing of ours may still run on the device. */
	if (push(c)) {
		for (unsigned i = 0; i < NSTREAMS && !ret; i++) {
			CUresult r = c->cu->StreamSynchronize(c->streams[i]);
			if (r != CUDA_SUCCESS)
				ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.sync",
						      "%s: cuStreamSynchronize: %s", c->name,
						      etext(c, r));
		}
		pop(c);
	}
	c->finished = ret == 0;
	return ret;
}

/* ---- fix-ups, release, export ------------------------------------------------------------ */

/* An O_DIRECT fix-up: the range moves down by a few bytes, so source and destination
 * overlap and one device copy cannot do it (cuMemcpy's ranges must not overlap): copy through
 * a scratch allocation, or in non-overlapping pieces when the shift is large. */
static int cuda_move(struct wlift__sink *s, uint64_t to, uint64_t from, uint64_t len,
		     wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	CUdeviceptr tmp = 0;
	CUresult r = CUDA_SUCCESS;
	const char *what = "cuMemcpyDtoDAsync";

	if (!len || to == from)
		return 0;
	if (!push(c))
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				       "%s: cannot make the device's context current", c->name);
	if (from - to >= len) {
		r = c->cu->MemcpyDtoDAsync(c->dptr + to, c->dptr + from, (size_t)len, c->aux);
	} else {
		r = c->cu->MemAlloc(&tmp, (size_t)len);
		if (r != CUDA_SUCCESS) {
			tmp = 0;
			what = "cuMemAlloc (fix-up scratch)";
		}
		if (r == CUDA_SUCCESS)
			r = c->cu->MemcpyDtoDAsync(tmp, c->dptr + from, (size_t)len, c->aux);
		if (r == CUDA_SUCCESS)
			r = c->cu->MemcpyDtoDAsync(c->dptr + to, tmp, (size_t)len, c->aux);
	}
	{
		CUresult r2 = c->cu->StreamSynchronize(c->aux);
		if (r == CUDA_SUCCESS && r2 != CUDA_SUCCESS) {
			r = r2;
			what = "cuStreamSynchronize";
		}
	}
	if (tmp)
		c->cu->MemFree(tmp);
	pop(c);
	if (r != CUDA_SUCCESS) /* out of memory for the scratch: WLIFT_EDEVMEM, as for the load */
		return wlift__diag_set(d, r == CUDA_ERROR_OUT_OF_MEMORY ? WLIFT_EDEVMEM : WLIFT_ECUDA,
				       NULL, NULL, -1, "cuda.move",
				       "%s: moving %llu bytes on the device (O_DIRECT alignment "
				       "fix-up): %s: %s",
				       c->name, (unsigned long long)len, what, etext(c, r));
	return 0;
}

/* dtype conversion on the device, once the tensor's bytes have landed: the kernel for the
 * pair on the fix-up stream, then a synchronise (the tensor is reported ready right after). */
static int cuda_convert(struct wlift__sink *s, wlift_dtype from, wlift_dtype to, uint64_t src,
			uint64_t dst, uint64_t nelem, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	unsigned in = 0, out = 0;
	int pair = wlift__cuda_kernel_pair(from, to, &in, &out), ret = 0;
	CUresult r;

	if (pair < 0)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "cuda.convert",
				       "%s: converting %s to %s on the device is not supported",
				       c->name, wlift_dtype_name(from), wlift_dtype_name(to));
	if (!nelem)
		return 0;
	if (nelem > c->bytes / in || src > c->bytes - nelem * in || nelem > c->bytes / out ||
	    dst > c->bytes - nelem * out ||
	    (src != dst && src < dst + nelem * out && dst < src + nelem * in))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "cuda.convert",
				       "%s: internal error: converting %llu elements from device "
				       "offset %llu to %llu (destination %llu bytes)",
				       c->name, (unsigned long long)nelem, (unsigned long long)src,
				       (unsigned long long)dst, (unsigned long long)c->bytes);
	if (!push(c))
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				       "%s: cannot make the device's context current", c->name);
	pthread_mutex_lock(&c->kmu);
	if (!c->kern && !c->kern_err) {
		wlift_diag_clear(&c->kern_diag);
		c->kern_err = wlift__cuda_kernels_load(c->cu, c->name, &c->kern, &c->kern_diag);
	}
	if (c->kern_err) {
		ret = c->kern_err;
		if (d)
			*d = c->kern_diag; /* every conversion of the load says why */
	}
	if (!ret) {
		r = wlift__cuda_convert(c->kern, pair, c->dptr + src, c->dptr + dst, nelem, c->aux);
		if (r == CUDA_SUCCESS)
			r = c->cu->StreamSynchronize(c->aux);
		if (r != CUDA_SUCCESS)
			ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.convert",
					      "%s: converting %llu elements %s to %s at device "
					      "offset %llu: %s",
					      c->name, (unsigned long long)nelem,
					      wlift_dtype_name(from), wlift_dtype_name(to),
					      (unsigned long long)src, etext(c, r));
	}
	pthread_mutex_unlock(&c->kmu);
	pop(c);
	return ret;
}

static int cuda_release(struct wlift__sink *s, uint64_t off, uint64_t len)
{
	struct cuda_sink *c = (struct cuda_sink *)s;

	/* Nothing goes back during the load: the result's tensors release device memory
	 * (the VMM units of cuda_mem.c) as they are dropped. */
	return off > c->bytes || len > c->bytes - off ? -EINVAL : 0;
}

static int cuda_export(struct wlift__sink *s, struct wlift__mem *out, wlift_diag *d)
{
	struct cuda_sink *c = (struct cuda_sink *)s;

	memset(out, 0, sizeof(*out));
	if (!c->mem)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "cuda.export",
				       "%s: internal error: no device memory to export", c->name);
	/* The memory holds its own primary-context reference for as long as it lives. */
	wlift__cuda_mem_export(c->mem, out);
	c->mem = NULL;
	return 0;
}

static void cuda_destroy(struct wlift__sink *s)
{
	struct cuda_sink *c = (struct cuda_sink *)s;
	int pushed;

	if (!c)
		return;
	pushed = c->retained && push(c);
	/* A failed load may leave copies in flight: they read the ring and write the
	 * destination, so both live until the copies are done. */
	for (unsigned i = 0; i < c->nslots; i++)
		if (c->slots[i].state == SLOT_INFLIGHT)
			c->cu->EventSynchronize(c->slots[i].ev);
	for (unsigned i = 0; i < NSTREAMS; i++)
		if (c->streams[i]) {
			c->cu->StreamSynchronize(c->streams[i]);
			c->cu->StreamDestroy(c->streams[i]);
		}
	if (c->aux) {
		c->cu->StreamSynchronize(c->aux);
		c->cu->StreamDestroy(c->aux);
	}
	ring_keep(c); /* a successful load's ring goes to the context (if it keeps rings) */
	ring_free(c);
	wlift__cuda_kernels_free(c->kern);
	free(c->remaps);
	wlift__cuda_mem_free(c->mem); /* not exported: a failed load */
	if (pushed)
		pop(c);
	if (c->retained)
		c->cu->PrimaryCtxRelease(c->dev);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->kmu);
	free(c);
}

static const struct wlift__sink_ops cuda_ops = {
	.kind = "cuda",
	.alloc = cuda_alloc,
	.dest = cuda_dest,
	.device_ptr = cuda_device_ptr,
	.device_enter = cuda_device_enter,
	.device_leave = cuda_device_leave,
	.acquire = cuda_acquire,
	.staging = cuda_staging,
	.unacquire = cuda_unacquire,
	.commit = cuda_commit,
	.poll = cuda_poll,
	.move = cuda_move,
	.convert = cuda_convert,
	.remap = cuda_remap,
	.release = cuda_release,
	.export_mem = cuda_export,
	.finish = cuda_finish,
	.destroy = cuda_destroy,
};

int wlift__cuda_sink_create(wlift_ctx *ctx, const char *device, const struct wlift__sink_cfg *cfg,
			    struct wlift__sink **out, wlift_diag *d)
{
	struct cuda_sink *c = NULL;
	const struct wlift__cuda *cu = NULL;
	wlift_diag dd;
	size_t ring = cfg && cfg->ring_bytes ? cfg->ring_bytes : WLIFT_DEFAULT_RING_BYTES;
	unsigned slots = cfg && cfg->ring_slots ? cfg->ring_slots : WLIFT_DEFAULT_RING_SLOTS;
	int index, ret;
	CUresult r;

	*out = NULL;
	if (wlift__cuda_parse_device(device, &index))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.device",
				       "device \"%s\" not understood (use \"cpu\", \"cuda\" or "
				       "\"cuda:N\")",
				       device);
	wlift_diag_clear(&dd);
	ret = wlift__cuda_driver(cfg ? cfg->cuda_library : NULL, &cu, &dd);
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, dd.rule[0] ? dd.rule : NULL,
				       "device \"%s\": %s (no GPU here? load to \"cpu\", or set "
				       "WEIGHTLIFT_CUDA_LIBRARY to the CUDA driver library)",
				       device, dd.message);
	if (index >= cu->ndevices && cu->ndevices == 1)
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "cuda.device",
				       "device \"%s\": no such device (1 CUDA device: cuda:0)",
				       device);
	if (index >= cu->ndevices)
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "cuda.device",
				       "device \"%s\": no such device (%d CUDA devices: cuda:0 .. "
				       "cuda:%d)",
				       device, cu->ndevices, cu->ndevices - 1);
	c = calloc(1, sizeof(*c));
	if (!c)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->kmu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->base.ops = &cuda_ops;
	c->base.in_place = 0;
	c->base.cufile = 1;
	c->wctx = ctx;
	c->cu = cu;
	c->index = index;
	snprintf(c->name, sizeof(c->name), "cuda:%d", index);
	/* Slots: the ring split evenly, in 64 KiB units (a multiple of any O_DIRECT
	 * alignment, so a chunk rounded up to one still fits). */
	c->slot_bytes = ring / slots / (64u << 10) * (64u << 10);
	if (c->slot_bytes < (64u << 10))
		c->slot_bytes = 64u << 10;
	if (c->slot_bytes > RING_SEGMENT)
		c->slot_bytes = RING_SEGMENT;
	c->max_slots = slots;
	c->budget = cfg ? cfg->max_device_bytes : 0;
	c->user_alloc = cfg && cfg->device_allocator && cfg->device_allocator->alloc
				? cfg->device_allocator
				: NULL;
	c->ring_bytes = c->slot_bytes * slots;
	c->base.stage_bytes = c->slot_bytes;
	c->base.stage_align = STAGE_ALIGN;
	c->base.dest_align = DEST_ALIGN;
	r = cu->DeviceGet(&c->dev, index);
	if (r == CUDA_SUCCESS) {
		r = cu->PrimaryCtxRetain(&c->ctx, c->dev);
		c->retained = r == CUDA_SUCCESS;
	}
	if (r != CUDA_SUCCESS) {
		ret = wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "cuda.device",
				      "device \"%s\": cannot open its primary context: %s", device,
				      wlift__cuda_errtext(cu, r, NULL, 0));
		goto out;
	}
	{
		/* The device's NUMA node, from its PCI address. */
		int dom = 0, bus = 0, slot = 0, node;
		char busid[32];
		if (cu->DeviceGetAttribute(&dom, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, c->dev) ||
		    cu->DeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, c->dev) ||
		    cu->DeviceGetAttribute(&slot, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, c->dev))
			dom = bus = slot = -1;
		snprintf(busid, sizeof(busid), "%04x:%02x:%02x.0", (unsigned)dom & 0xffff,
			 (unsigned)bus & 0xff, (unsigned)slot & 0x1f);
		node = dom < 0 ? -1 : wlift__numa_node_of_pci(ctx ? ctx->sysfs_root : NULL, busid);
		c->base.numa = node + 1;
		snprintf(c->pci, sizeof(c->pci), "%s", busid);
	}
	if (!push(c)) {
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.context",
				      "%s: cannot make the device's context current", c->name);
		goto out;
	}
	for (unsigned i = 0; i <= NSTREAMS && r == CUDA_SUCCESS; i++) {
		CUstream *sp = i < NSTREAMS ? &c->streams[i] : &c->aux;
		r = cu->StreamCreate(sp, CU_STREAM_NON_BLOCKING);
		if (r != CUDA_SUCCESS)
			*sp = NULL;
	}
	pop(c);
	if (r != CUDA_SUCCESS) {
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.stream",
				      "%s: cuStreamCreate: %s", c->name, etext(c, r));
		goto out;
	}
	*out = &c->base;
	c = NULL;
	ret = 0;
out:
	cuda_destroy(c ? &c->base : NULL);
	return ret;
}
