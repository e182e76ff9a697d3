/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mapped mode (opts->mmap = 1): the run stage for CPU loads that map instead of reading.
 * Each file is mapped (by its source: ops->map) MAP_PRIVATE with PROT_READ|PROT_WRITE, so
 * tensors are writable and a write never reaches the file (the kernel copies the page on the
 * first write). The pages of the selected tensors are then populated with
 * madvise(MADV_POPULATE_READ), which maps the page-cache pages read-only into the process
 * without copying them. MAP_POPULATE must NOT be used here: on a writable private mapping it
 * pre-faults for writing and so copies every page (measured 0.6-1.8 GB/s against 29-32 GB/s
 * for populate-read from a hot page cache).
 *
 * Trade-offs (also in docs/ARCHITECTURE.md): the tensors share the page cache instead of
 * owning anonymous memory, so they cost no RssAnon until written, and loading is nearly free
 * when the file is cached; but if the file is truncated while the result is alive, touching a
 * page beyond the new end raises SIGBUS in the process, and if it is modified in place, pages
 * not yet written by the process may show the new contents (MAP_PRIVATE only isolates pages
 * that have been copied). Users who cannot rule that out should use the copy mode.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/mapped.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

struct pop_job {
	uint8_t *p;
	size_t len;
	int err;
};

static void *pop_thread(void *arg)
{
	struct pop_job *j = arg;

	if (madvise(j->p, j->len, MADV_POPULATE_READ) < 0) {
		if (errno == EINVAL) {
			/* Kernels before 5.14: read one byte per page instead. */
			long pg = sysconf(_SC_PAGESIZE);
			volatile uint8_t sink = 0;
			for (size_t o = 0; o < j->len; o += (size_t)pg)
				sink ^= j->p[o];
			(void)sink;
		} else {
			/* EFAULT: the file shrank under the mapping (the pages are gone). */
			j->err = -errno;
		}
	}
	return NULL;
}

static int populate(uint8_t *p, size_t len, unsigned threads)
{
	struct pop_job jobs[64];
	pthread_t tid[64];
	int started[64] = {0};
	unsigned nt = threads ? threads : 1;
	size_t per, step = 2u << 20;
	int err = 0;

	if (nt > 64)
		nt = 64;
	if (len < WLIFT_POPULATE_MIN_PARALLEL)
		nt = 1;
	per = (len / nt + step - 1) / step * step;
	memset(jobs, 0, sizeof(jobs));
	for (unsigned i = 0; i < nt; i++) {
		size_t off = per * i;
		if (off >= len)
			break;
		jobs[i].p = p + off;
		jobs[i].len = len - off < per ? len - off : per;
		if (i + 1 < nt && pthread_create(&tid[i], NULL, pop_thread, &jobs[i]) == 0)
			started[i] = 1;
		else
			pop_thread(&jobs[i]);
	}
	for (unsigned i = 0; i < nt; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		if (!err && jobs[i].err)
			err = jobs[i].err;
	}
	return err;
}

/* Offset (from p) of the first page of [p, p + len) that cannot be populated, or len: the
 * failed populate is repeated in 2 MiB steps, then page by page within the failing step (only
 * on the error path; populating pages already mapped is a page-table walk). */
static size_t first_bad_page(uint8_t *p, size_t len, size_t pg)
{
	size_t step = 2u << 20, o = 0;

	while (o < len) {
		size_t l = len - o < step ? len - o : step;
		if (madvise(p + o, l, MADV_POPULATE_READ) == 0) {
			o += l;
			continue;
		}
		if (errno != EFAULT && errno != EIO)
			return len;
		if (step == pg)
			return o;
		step = pg;
	}
	return len;
}

/* A populate failed with err: a page could not be read (EFAULT: the fault would have raised
 * SIGBUS). The file shrank (validate says so) or the read failed (an I/O error: the page of
 * a file still of its size could not be read). Either way, name the offset. */
static int populate_error(struct wlift__source *src, uint8_t *base, uint64_t a, uint64_t hi,
			  const wlift_tensor_info *t, size_t n, int err, wlift_diag *d)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t at = a + first_bad_page(base + a, (size_t)(hi - a), pg);
	const char *name = NULL;
	wlift_diag vd;

	/* The tensor holding the page (the first one ending after its start). */
	for (size_t k = 0; k < n && !name; k++)
		if (t[k].nbytes && t[k].file_offset + t[k].nbytes > at)
			name = t[k].name;
	wlift_diag_clear(&vd);
	if (at < hi && err == -EFAULT && src->ops->validate && src->ops->validate(src, &vd) == 0)
		return wlift__diag_set(d, -EIO, src->uri, name, (int64_t)at, "io.read",
				       "%s: read of the mapping failed at offset %llu: %s",
				       src->uri, (unsigned long long)at, strerror(EIO));
	if (at < hi)
		return wlift__diag_set(d, WLIFT_ECHANGED, src->uri, name, (int64_t)at,
				       "file.changed",
				       "%s: cannot populate the mapping at offset %llu (%s): was "
				       "the file truncated?",
				       src->uri, (unsigned long long)at, strerror(-err));
	return wlift__diag_set(d, WLIFT_ECHANGED, src->uri, NULL, -1, "file.changed",
			       "%s: cannot populate the mapping (%s): was the file truncated?",
			       src->uri, strerror(-err));
}

int wlift__mapped_load(struct wlift_ckpt *ck, struct wlift_result *res, const wlift_tensor_info *t,
		       size_t n, unsigned threads, void **raw, int (*done)(void *user, size_t i),
		       void *user, wlift_diag *d)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t i = 0;
	int ret = 0;

	while (i < n) {
		uint32_t f = t[i].file;
		struct wlift__source *src = ck->files[f].src;
		uint64_t lo = UINT64_MAX, hi = 0;
		size_t j = i;
		struct wlift__mem m;
		uint8_t *base;

		for (; j < n && t[j].file == f; j++) {
			if (!t[j].nbytes)
				continue;
			if (t[j].file_offset < lo)
				lo = t[j].file_offset;
			if (t[j].file_offset + t[j].nbytes > hi)
				hi = t[j].file_offset + t[j].nbytes;
		}
		if (!src->ops->map)
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, src->uri, NULL, -1,
					       "load.mmap", "%s: mapped mode needs a local file",
					       src->uri);
		ret = src->ops->map(src, &m, d);
		if (ret)
			return ret;
		base = m.base;
		ret = wlift__result_own(res, &m);
		if (ret)
			return wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
		for (size_t k = i; k < j; k++)
			raw[k] = base + t[k].file_offset;
		if (hi > lo) {
			uint64_t a = lo / (uint64_t)pg * (uint64_t)pg;
			ret = populate(base + a, (size_t)(hi - a), threads);
			if (ret)
				return populate_error(src, base, a, hi, t + i, j - i, ret, d);
		}
		for (size_t k = i; k < j; k++) {
			ret = done(user, k);
			if (ret)
				return wlift__diag_set(d, ret, NULL, t[k].name, -1, "load.canceled",
						       "the load was canceled by the ready "
						       "callback");
		}
		i = j;
	}
	return 0;
}
