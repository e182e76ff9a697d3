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
#include <time.h>
#include <unistd.h>

#include "engine/mapped.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* One span being populated by `threads` workers in pieces of WLIFT_POPULATE_PIECE, claimed
 * in file order from one counter, so that the pieces populated form a growing prefix and the
 * calling thread can hand out each tensor as soon as its pages are in (a consumer of the first
 * tensors need not wait for the whole file, and a cancel stops the rest). */
struct pop {
	uint8_t *p;
	size_t len;
	size_t npieces;
	size_t next;	  /* next piece to claim (atomic) */
	uint8_t *landed;  /* per piece: populated (under mu) */
	size_t prefix;	  /* pieces populated from the start (under mu) */
	int stop;	  /* atomic: no more claims */
	int err;	  /* first populate error (under mu) */
	unsigned running; /* workers still running (under mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* Populate [p, p + len) for reading: 0 or -errno (EFAULT: a page past the end of a file that
 * shrank under the mapping). */
static int populate_span(uint8_t *p, size_t len)
{
	if (madvise(p, len, MADV_POPULATE_READ) == 0)
		return 0;
	if (errno == EINVAL) {
		/* Kernels before 5.14: read one byte per page instead. */
		long pg = sysconf(_SC_PAGESIZE);
		volatile uint8_t sink = 0;
		for (size_t o = 0; o < len; o += (size_t)pg)
			sink ^= p[o];
		(void)sink;
		return 0;
	}
	return -errno;
}

static void *pop_thread(void *arg)
{
	struct pop *s = arg;

	for (;;) {
		size_t i, off, l;
		int err;

		if (__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
			break;
		i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
		if (i >= s->npieces)
			break;
		off = i * (size_t)WLIFT_POPULATE_PIECE;
		l = s->len - off < WLIFT_POPULATE_PIECE ? s->len - off : WLIFT_POPULATE_PIECE;
		err = populate_span(s->p + off, l);
		pthread_mutex_lock(&s->mu);
		if (err) {
			if (!s->err)
				s->err = err;
			__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
		} else {
			s->landed[i] = 1;
			while (s->prefix < s->npieces && s->landed[s->prefix])
				s->prefix++;
		}
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_lock(&s->mu);
	s->running--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* The calling thread's side of a load: what to hand out as pages land, and the progress
 * callback polled at least every WLIFT_PROGRESS_MS (non-zero cancels). */
struct pop_out {
	const wlift_tensor_info *t; /* the span's tensors, in file order */
	size_t n;
	uint64_t base_off; /* file offset of the span's first byte */
	int (*done)(void *user, size_t i);
	void *user;
	size_t first; /* result position of t[0] */
	size_t fired; /* tensors handed out so far */
	uint64_t *total_done, total;
	wlift_progress_fn progress;
	void *progress_user;
};

/* Hand out the tensors that end at or before `upto` (a file offset), in file order. A
 * non-zero done() is returned (a cancel by the ready callback). */
static int fire_upto(struct pop_out *o, uint64_t upto)
{
	while (o->fired < o->n) {
		const wlift_tensor_info *ti = &o->t[o->fired];
		int ret;

		if (ti->nbytes && ti->file_offset + ti->nbytes > upto)
			break;
		ret = o->done(o->user, o->first + o->fired);
		o->fired++;
		*o->total_done += ti->nbytes;
		if (ret)
			return ret;
	}
	return 0;
}

/* Populate [p, p + len) (p at file offset o->base_off) with up to `threads` workers, handing
 * out each tensor of o as its pages land. Returns 0, the populate error (-errno, nothing more
 * handed out), WLIFT_ECANCELED from the progress callback, or done()'s non-zero result
 * (*cb_ret set). */
static int populate(uint8_t *p, size_t len, unsigned threads, struct pop_out *o, int *cb_ret)
{
	struct pop s;
	pthread_t tid[64];
	unsigned nt = threads ? threads : 1, started = 0;
	int ret = 0, canceled = 0;
	double next_progress = wlift__now() + WLIFT_PROGRESS_MS / 1000.0;

	*cb_ret = 0;
	if (len < WLIFT_POPULATE_MIN_PARALLEL || nt == 1) {
		/* Small: one span from this thread (thread start-up would dominate). */
		ret = populate_span(p, len);
		if (!ret)
			*cb_ret = fire_upto(o, UINT64_MAX);
		return ret;
	}
	if (nt > 64)
		nt = 64;
	memset(&s, 0, sizeof(s));
	s.p = p;
	s.len = len;
	s.npieces = (len + WLIFT_POPULATE_PIECE - 1) / WLIFT_POPULATE_PIECE;
	if (nt > s.npieces)
		nt = (unsigned)s.npieces;
	s.landed = calloc(s.npieces, 1);
	if (!s.landed)
		return -ENOMEM;
	if (pthread_mutex_init(&s.mu, NULL)) {
		free(s.landed);
		return -ENOMEM;
	}
	if (pthread_cond_init(&s.cv, NULL)) {
		pthread_mutex_destroy(&s.mu);
		free(s.landed);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s.mu);
	for (unsigned i = 0; i < nt; i++) {
		if (pthread_create(&tid[i], NULL, pop_thread, &s) != 0)
			break;
		started++;
		s.running++;
	}
	pthread_mutex_unlock(&s.mu);
	if (!started) {
		/* No thread could start: populate from this thread. */
		s.running = 1;
		pop_thread(&s);
	}
	pthread_mutex_lock(&s.mu);
	for (;;) {
		uint64_t upto = s.prefix == s.npieces ? UINT64_MAX
						      : o->base_off + s.prefix * (uint64_t)WLIFT_POPULATE_PIECE;
		int stopped = __atomic_load_n(&s.stop, __ATOMIC_ACQUIRE);
		int all = !s.running;

		if (!stopped && o->fired < o->n &&
		    (!o->t[o->fired].nbytes ||
		     o->t[o->fired].file_offset + o->t[o->fired].nbytes <= upto)) {
			int r;
			/* The ready callbacks run without the lock: workers keep landing pieces. */
			pthread_mutex_unlock(&s.mu);
			r = fire_upto(o, upto);
			pthread_mutex_lock(&s.mu);
			if (r) {
				*cb_ret = r;
				__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
			}
			continue;
		}
		if (all)
			break;
		if (!stopped && o->progress && wlift__now() >= next_progress) {
			int c;
			pthread_mutex_unlock(&s.mu);
			c = o->progress(*o->total_done, o->total, o->progress_user);
			pthread_mutex_lock(&s.mu);
			next_progress = wlift__now() + WLIFT_PROGRESS_MS / 1000.0;
			if (c) {
				canceled = 1;
				__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
			}
			continue;
		}
		{
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += WLIFT_PROGRESS_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s.cv, &s.mu, &ts);
		}
	}
	ret = s.err;
	pthread_mutex_unlock(&s.mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (!ret && canceled)
		ret = WLIFT_ECANCELED;
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
	free(s.landed);
	return ret;
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
		       void *user, wlift_progress_fn progress, void *progress_user, wlift_diag *d)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t i = 0;
	uint64_t total = 0, total_done = 0;
	int ret = 0;

	for (size_t k = 0; k < n; k++)
		total += t[k].nbytes;

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
		{
			struct pop_out o = {t + i, j - i, 0, done, user, i, 0, &total_done,
					    total, progress, progress_user};
			uint64_t a = hi > lo ? lo / (uint64_t)pg * (uint64_t)pg : 0;
			int cb = 0;

			o.base_off = a;
			if (hi > lo)
				ret = populate(base + a, (size_t)(hi - a), threads, &o, &cb);
			else
				cb = fire_upto(&o, UINT64_MAX);
			if (cb)
				return wlift__diag_set(d, cb, NULL, t[i + o.fired - 1].name, -1,
						       "load.canceled",
						       "the load was canceled by the ready "
						       "callback");
			if (ret == WLIFT_ECANCELED)
				return wlift__diag_set(d, ret, NULL, NULL, -1, "load.canceled",
						       "the load was canceled by the progress "
						       "callback");
			if (ret == -ENOMEM)
				return wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
			if (ret)
				return populate_error(src, base, a, hi, t + i, j - i, ret, d);
		}
		i = j;
	}
	if (progress && progress(total_done, total, progress_user))
		return wlift__diag_set(d, WLIFT_ECANCELED, NULL, NULL, -1, "load.canceled",
				       "the load was canceled by the progress callback");
	return 0;
}
