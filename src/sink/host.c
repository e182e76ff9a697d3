/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host sink: the destination of CPU loads is one anonymous mapping advised MADV_HUGEPAGE.
 * Fresh-page faults and zeroing dominate copies into new memory: with 4 KiB pages a copy into
 * fresh memory ran at 0.7-1.7 GB/s on the reference machine against ~8.5 GB/s with
 * transparent huge pages, so the arena is sized in 2 MiB steps and advised before first touch.
 * Pages are either faulted in by the reading threads themselves (each worker touches the pages
 * it reads into, so the faults run in parallel) or pre-faulted with MADV_POPULATE_WRITE from
 * several threads; bench/ measured both (see docs/ARCHITECTURE.md). For remote loads
 * (fault_ahead) one thread of the sink's own faults the arena in, in order, while the readers
 * fill it: the network leaves a core idle, and a reader that faults in curl's write callback
 * leaves its sockets unread meanwhile (measured across the emulated link: the transfer ran at
 * 86 % of the cap with the readers faulting, 90 % with the arena pre-faulted). The arena is exported
 * to the result with its own free function; release gives back the pages of tensors nobody
 * holds (MADV_DONTNEED on the whole pages inside the range).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sink/convert_cpu.h"
#include "sink/host.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_SZ (2u << 20)

struct host_sink {
	struct wlift__sink base;
	uint8_t *mem;
	size_t len;	/* bytes asked for */
	size_t maplen; /* bytes mapped (whole huge pages); 0: malloc'd (small) */
	void *raw;     /* small arenas: what malloc returned (mem is raw aligned up) */
	int exported;	/* the result owns the arena: destroy leaves it alone */
	int populate;
	int hugepage; /* advise large arenas MADV_HUGEPAGE (resolved at create) */
	unsigned threads;
	pthread_t ahead;    /* the fault-ahead thread, when ahead_on */
	int ahead_on;
	int ahead_stop;	    /* atomic */
};

/* Small arenas (a get_slice of a few rows, loaded once per call) come from malloc, whose
 * freed memory is reused without page faults: a fresh mapping per call cost a fault per page,
 * zeroing and an munmap (get_slice of 64 KiB rows: 111 us per call mapped, against 44 us for
 * the earlier pread into a reused Python buffer). Plain malloc, aligned by hand: in the Python
 * process posix_memalign of 1 MiB went to mmap every time (893 us per allocate+touch+free,
 * against 32 us for malloc). Larger arenas are fresh huge-page mappings. */
#define SMALL_ARENA (2u << 20)
#define SMALL_ALIGN 4096u /* the widest O_DIRECT alignment the plan places reads at */

static size_t arena_len(size_t len)
{
	if (len == 0)
		len = 1;
	return (len + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
}

static void arena_free(struct wlift__mem *m)
{
	if (!m->base)
		return;
	if (m->len <= SMALL_ARENA)
		free(m->priv);
	else
		munmap(m->base, arena_len(m->len));
}

static int arena_release(struct wlift__mem *m, uint64_t off, uint64_t len)
{
	if (m->len <= SMALL_ARENA) /* heap memory: not ours to give back page by page */
		return off > m->len || len > m->len - off ? -EINVAL : 0;
	return wlift__mem_release_pages(m, off, len);
}

struct populate_job {
	uint8_t *p;
	size_t len;
};

static void *populate_thread(void *arg)
{
	struct populate_job *j = arg;

	if (madvise(j->p, j->len, MADV_POPULATE_WRITE) < 0)
		memset(j->p, 0, j->len); /* kernels before 5.14: touch instead */
	return NULL;
}

/* Pre-fault the arena from several threads: zeroing huge pages is CPU bound per page. */
static void populate_parallel(uint8_t *p, size_t len, unsigned threads)
{
	pthread_t tid[64];
	struct populate_job jobs[64];
	int started[64] = {0};
	unsigned n = threads ? threads : 1;
	size_t per;

	if (n > 64)
		n = 64;
	per = (len / n + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
	for (unsigned i = 0; i < n; i++) {
		size_t off = per * i;
		if (off >= len)
			break;
		jobs[i].p = p + off;
		jobs[i].len = len - off < per ? len - off : per;
		if (i + 1 < n && pthread_create(&tid[i], NULL, populate_thread, &jobs[i]) == 0)
			started[i] = 1;
		else
			populate_thread(&jobs[i]);
	}
	for (unsigned i = 0; i < n; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
}

/* Populating is idempotent and leaves the bytes alone (MADV_POPULATE_WRITE faults pages in
 * writable without writing them), so it may run over pages the readers are writing. Steps of a
 * few huge pages, so that a stop waits for one step at most. Kernels before 5.14 lack it: the
 * thread then does nothing (touching would race with the readers' writes). */
#define AHEAD_STEP (8u * HUGE_SZ)

static void *ahead_main(void *arg)
{
	struct host_sink *h = arg;

	for (size_t off = 0; off < h->len && !__atomic_load_n(&h->ahead_stop, __ATOMIC_ACQUIRE);
	     off += AHEAD_STEP) {
		size_t n = h->len - off < AHEAD_STEP ? h->len - off : AHEAD_STEP;
		if (madvise(h->mem + off, n, MADV_POPULATE_WRITE) < 0)
			break;
	}
	return NULL;
}

static void host_quiesce(struct wlift__sink *s)
{
	struct host_sink *h = (struct host_sink *)s;

	if (!h || !h->ahead_on)
		return;
	__atomic_store_n(&h->ahead_stop, 1, __ATOMIC_RELEASE);
	pthread_join(h->ahead, NULL);
	h->ahead_on = 0;
}

static int host_alloc(struct wlift__sink *s, uint64_t bytes, wlift_diag *d)
{
	struct host_sink *h = (struct host_sink *)s;
	size_t len = arena_len((size_t)bytes);
	void *p;

	if (bytes > SIZE_MAX / 2)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, "sink.alloc",
				       "cannot allocate %llu bytes of host memory",
				       (unsigned long long)bytes);
	if (bytes <= SMALL_ARENA) {
		h->raw = malloc((size_t)bytes + SMALL_ALIGN);
		if (!h->raw)
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, "sink.alloc",
					       "cannot allocate %llu bytes of host memory",
					       (unsigned long long)bytes);
		p = (void *)(((uintptr_t)h->raw + SMALL_ALIGN - 1) / SMALL_ALIGN * SMALL_ALIGN);
		len = 0;
	} else {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, "sink.alloc",
					       "cannot allocate %llu bytes of host memory: %s",
					       (unsigned long long)bytes, strerror(errno));
		/* Best effort: THP may be disabled ("never"), then the arena uses small
		 * pages. */
		if (h->hugepage)
			madvise(p, len, MADV_HUGEPAGE);
	}
	h->mem = p;
	h->len = (size_t)bytes;
	h->maplen = len;
	if (h->populate == 1 && bytes)
		populate_parallel(h->mem, (size_t)bytes, h->threads);
	else if (s->fault_ahead && h->maplen && h->populate < 0)
		h->ahead_on = pthread_create(&h->ahead, NULL, ahead_main, h) == 0;
	return 0;
}

static void *host_dest(struct wlift__sink *s, uint64_t off)
{
	return ((struct host_sink *)s)->mem + off;
}

static int host_move(struct wlift__sink *s, uint64_t to, uint64_t from, uint64_t len,
		     wlift_diag *d)
{
	uint8_t *m = ((struct host_sink *)s)->mem;

	WLIFT_UNUSED(d);
	memmove(m + to, m + from, (size_t)len);
	return 0;
}

static int host_convert(struct wlift__sink *s, wlift_dtype from, wlift_dtype to, uint64_t src,
			uint64_t dst, uint64_t nelem, wlift_diag *d)
{
	uint8_t *m = ((struct host_sink *)s)->mem;
	int ret = wlift__convert_cpu(from, to, m + src, m + dst, (size_t)nelem);

	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, "load.dtype",
				       "converting %s to %s is not supported on the CPU",
				       wlift_dtype_name(from), wlift_dtype_name(to));
	return 0;
}

static int host_release(struct wlift__sink *s, uint64_t off, uint64_t len)
{
	struct host_sink *h = (struct host_sink *)s;
	struct wlift__mem m = { h->mem, h->len, -1, NULL, NULL, NULL, NULL };

	return arena_release(&m, off, len);
}

static int host_export(struct wlift__sink *s, struct wlift__mem *out, wlift_diag *d)
{
	struct host_sink *h = (struct host_sink *)s;

	WLIFT_UNUSED(d);
	memset(out, 0, sizeof(*out));
	out->base = h->mem;
	out->len = h->len;
	out->device = -1;
	out->free = arena_free;
	out->release = arena_release;
	out->priv = h->raw;
	h->exported = 1;
	return 0;
}

static void host_destroy(struct wlift__sink *s)
{
	struct host_sink *h = (struct host_sink *)s;

	if (!h)
		return;
	host_quiesce(s);
	if (!h->exported && h->mem) {
		if (h->maplen)
			munmap(h->mem, h->maplen);
		else
			free(h->raw);
	}
	free(h);
}

static const struct wlift__sink_ops host_ops = {
	.kind = "host",
	.alloc = host_alloc,
	.dest = host_dest,
	.move = host_move,
	.convert = host_convert,
	.release = host_release,
	.export_mem = host_export,
	.quiesce = host_quiesce,
	.destroy = host_destroy,
};

int wlift__host_sink_create(const struct wlift__sink_cfg *cfg, struct wlift__sink **out,
			    wlift_diag *d)
{
	struct host_sink *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	h->base.ops = &host_ops;
	h->base.in_place = 1;
	h->populate = cfg ? cfg->populate : 0;
	h->hugepage = cfg ? cfg->hugepage != 0 : 1;
	h->threads = cfg ? cfg->threads : 1;
	*out = &h->base;
	return 0;
}
