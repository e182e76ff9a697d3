/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host sink: the destination of CPU loads is one anonymous mapping advised MADV_HUGEPAGE.
 * Fresh-page faults and zeroing dominate copies into new memory: with 4 KiB pages a copy into
 * fresh memory ran at 0.7-1.7 GB/s on the reference machine against ~8.5 GB/s with
 * transparent huge pages, so the arena is sized in 2 MiB steps and advised before first touch.
 * Pages are either faulted in by the reading threads themselves (each worker touches the pages
 * it reads into, so the faults run in parallel) or pre-faulted with MADV_POPULATE_WRITE from
 * several threads; bench/ measured both (see docs/ARCHITECTURE.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sink/host.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_SZ (2u << 20)

struct host_sink {
	struct wlift__sink base;
	uint8_t *mem;
	size_t len;
	int owned; /* 0 after take(): destroy leaves the arena alone */
	int populate;
	unsigned threads;
};

void *wlift__host_arena_alloc(size_t len)
{
	void *p;

	if (len == 0)
		len = 1;
	len = (len + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Best effort: THP may be disabled ("never"), then the arena uses small pages. */
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

void wlift__host_arena_free(void *base, size_t len)
{
	if (!base)
		return;
	if (len == 0)
		len = 1;
	len = (len + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
	munmap(base, len);
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

static int host_alloc(struct wlift__sink *s, uint64_t bytes, wlift_diag *d)
{
	struct host_sink *h = (struct host_sink *)s;

	h->mem = wlift__host_arena_alloc((size_t)bytes);
	if (!h->mem)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, "sink.alloc",
				       "cannot allocate %llu bytes of host memory: %s",
				       (unsigned long long)bytes, strerror(errno));
	h->len = (size_t)bytes;
	h->owned = 1;
	if (h->populate && bytes)
		populate_parallel(h->mem, (size_t)bytes, h->threads);
	return 0;
}

static void *host_ptr(struct wlift__sink *s, uint64_t off)
{
	return ((struct host_sink *)s)->mem + off;
}

static int host_write(struct wlift__sink *s, uint64_t off, const void *buf, size_t len,
		      wlift_diag *d)
{
	WLIFT_UNUSED(d);
	memcpy(((struct host_sink *)s)->mem + off, buf, len);
	return 0;
}

static int host_finish(struct wlift__sink *s, wlift_diag *d)
{
	WLIFT_UNUSED(s);
	WLIFT_UNUSED(d);
	return 0;
}

static void host_destroy(struct wlift__sink *s)
{
	struct host_sink *h = (struct host_sink *)s;

	if (!h)
		return;
	if (h->owned)
		wlift__host_arena_free(h->mem, h->len);
	free(h);
}

static const struct wlift__sink_ops host_ops = {
    .kind = "host",
    .alloc = host_alloc,
    .ptr = host_ptr,
    .write = host_write,
    .finish = host_finish,
    .destroy = host_destroy,
};

int wlift__host_sink_create(int populate, unsigned threads, struct wlift__sink **out, wlift_diag *d)
{
	struct host_sink *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	h->base.ops = &host_ops;
	h->base.device = -1;
	h->populate = populate;
	h->threads = threads;
	*out = &h->base;
	return 0;
}

void wlift__host_sink_take(struct wlift__sink *s, void **base, size_t *len)
{
	struct host_sink *h = (struct host_sink *)s;

	*base = h->mem;
	*len = h->len;
	h->owned = 0;
}

void wlift__host_sink_lend(struct wlift__sink *s, void *base, size_t len)
{
	struct host_sink *h = (struct host_sink *)s;

	h->mem = base;
	h->len = len;
	h->owned = 0;
}
