/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pipeline: worker threads pull chunk indices from one atomic counter (chunks are in file
 * order, so the device sees mostly sequential reads spread over a few streams), read each
 * straight into the destination and account for the bytes landed per tensor. The calling
 * thread only waits, calling the progress callback at least every 100 ms; a cancel or the
 * first error raises a stop flag that every worker checks before its next read.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/pipeline.h"
#include "source/file.h"
#include "source/uring.h"

struct run {
	struct wlift__pipeline *pl;
	uint64_t *left;	    /* per tensor: bytes still to land (atomic) */
	size_t *range_left; /* per range: chunks still to land (atomic) */
	size_t next;	    /* next chunk to claim (atomic) */
	int stop;	    /* atomic */
	uint64_t done;	    /* tensor bytes landed (atomic) */
	uint64_t read;	    /* bytes read (atomic) */
	uint64_t fixups, fixup_bytes;
	int used_uring;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned running;
	int err;
	wlift_diag diag;
};

static void fail(struct run *r, int code, const wlift_diag *d)
{
	pthread_mutex_lock(&r->mu);
	if (!r->err) {
		r->err = code;
		if (d && d->code)
			r->diag = *d;
		else
			wlift__diag_set(&r->diag, code, NULL, NULL, -1, NULL, NULL);
	}
	pthread_mutex_unlock(&r->mu);
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
}

static int stopped(struct run *r)
{
	return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE);
}

static int fire(struct run *r, size_t k)
{
	int ret;

	if (!r->pl->tensor_done || stopped(r))
		return 0;
	ret = r->pl->tensor_done(r->pl->user, k);
	if (ret) {
		wlift_diag d;
		wlift_diag_clear(&d);
		wlift__diag_set(&d, ret, NULL, r->pl->tensors[k].name, -1, "load.canceled",
				"the load was canceled by the ready callback");
		fail(r, ret, &d);
	}
	return ret;
}

/* Account for chunk ci having landed: per-tensor counters, or the range's fix-up. */
static void complete(struct run *r, size_t ci)
{
	const struct wlift__plan *p = r->pl->plan;
	const struct wlift__plan_chunk *c = &p->chunks[ci];
	const struct wlift__plan_range *rg = &p->ranges[c->range];
	const wlift_tensor_info *t = r->pl->tensors;
	uint64_t lo = c->off > rg->off ? c->off : rg->off;
	uint64_t hi = c->off + c->len < rg->end ? c->off + c->len : rg->end;
	size_t a, b;

	__atomic_add_fetch(&r->read, c->len, __ATOMIC_RELAXED);
	if (hi > lo)
		__atomic_add_fetch(&r->done, hi - lo, __ATOMIC_RELAXED);
	if (rg->shift) {
		/* O_DIRECT placed this range off a 64-byte boundary: once all of it has landed,
		 * move it down in place (the slack before it is ours) and report its tensors. */
		if (__atomic_sub_fetch(&r->range_left[c->range], 1, __ATOMIC_ACQ_REL) != 0)
			return;
		if (r->pl->sink->ops->ptr(r->pl->sink, 0)) {
			uint8_t *base = r->pl->sink->ops->ptr(r->pl->sink, 0);
			uint64_t from = rg->dest + (rg->off - rg->rd_off);
			memmove(base + from - rg->shift, base + from, rg->end - rg->off);
		}
		__atomic_add_fetch(&r->fixups, rg->nt, __ATOMIC_RELAXED);
		__atomic_add_fetch(&r->fixup_bytes, rg->end - rg->off, __ATOMIC_RELAXED);
		for (size_t k = rg->t0; k < rg->t0 + rg->nt; k++)
			if (t[k].nbytes && fire(r, k))
				return;
		return;
	}
	if (hi <= lo)
		return;
	/* First tensor of the range ending after lo (binary search: tensors sorted). */
	a = rg->t0;
	b = rg->t0 + rg->nt;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (t[m].file_offset + t[m].nbytes <= lo)
			a = m + 1;
		else
			b = m;
	}
	for (size_t k = a; k < rg->t0 + rg->nt && t[k].file_offset < hi; k++) {
		uint64_t s = t[k].file_offset > lo ? t[k].file_offset : lo;
		uint64_t e =
		    t[k].file_offset + t[k].nbytes < hi ? t[k].file_offset + t[k].nbytes : hi;
		if (e <= s)
			continue;
		if (__atomic_sub_fetch(&r->left[k], e - s, __ATOMIC_ACQ_REL) == 0 && fire(r, k))
			return;
	}
}

/* Check the bytes a read returned: a short read is fine only past the tensors' end (O_DIRECT
 * widening at the end of the file). */
static int check_got(struct run *r, size_t ci, size_t got, wlift_diag *d)
{
	const struct wlift__plan *p = r->pl->plan;
	const struct wlift__plan_chunk *c = &p->chunks[ci];
	const struct wlift__plan_range *rg = &p->ranges[c->range];
	struct wlift__source *s = r->pl->files[c->file].src;

	if (got == c->len || c->off + got >= rg->end)
		return 0;
	return wlift__diag_set(
	    d, WLIFT_ECHANGED, s->uri, NULL, (int64_t)(c->off + got), "file.changed",
	    "%s: unexpected end of file at offset %llu (the file was %llu "
	    "bytes when opened; was it truncated while loading?)",
	    s->uri, (unsigned long long)(c->off + got), (unsigned long long)s->size);
}

static int read_error(struct run *r, size_t ci, uint64_t at, int err, wlift_diag *d)
{
	const struct wlift__plan_chunk *c = &r->pl->plan->chunks[ci];
	struct wlift__source *s = r->pl->files[c->file].src;

	return wlift__diag_set(d, err, s->uri, NULL, (int64_t)at, "io.read",
			       "%s: read of %llu bytes at offset %llu failed: %s%s", s->uri,
			       (unsigned long long)c->len, (unsigned long long)at, strerror(-err),
			       c->direct ? " (O_DIRECT)" : "");
}

/* Synchronous read of chunk ci (or of its remainder from byte `from` on) into dst. */
static int read_sync(struct run *r, size_t ci, uint8_t *dst, size_t from, wlift_diag *d)
{
	const struct wlift__plan_chunk *c = &r->pl->plan->chunks[ci];
	struct wlift__pipe_file *f = &r->pl->files[c->file];
	size_t got = 0;
	int ret;

	if (f->fd < 0) /* memory image: memcpy through the source */
		return wlift__source_pread(f->src, dst + from, c->len - from, c->off + from, d);
	ret = wlift__pread_full(c->direct ? f->dfd : f->fd, dst + from, c->len - from,
				c->off + from, &got);
	if (ret < 0)
		return read_error(r, ci, c->off + from + got, ret, d);
	return check_got(r, ci, from + got, d);
}

struct worker {
	struct run *r;
	uint8_t *bounce; /* sinks without host pointers */
	size_t bounce_len;
};

static uint8_t *dest_of(struct worker *w, size_t ci)
{
	const struct wlift__plan_chunk *c = &w->r->pl->plan->chunks[ci];
	struct wlift__sink *s = w->r->pl->sink;
	void *p = s->ops->ptr(s, c->dest);

	return p ? p : w->bounce;
}

static int deliver(struct worker *w, size_t ci, wlift_diag *d)
{
	const struct wlift__plan_chunk *c = &w->r->pl->plan->chunks[ci];
	struct wlift__sink *s = w->r->pl->sink;

	if (s->ops->ptr(s, c->dest))
		return 0;
	return s->ops->write(s, c->dest, w->bounce, (size_t)c->len, d);
}

static void run_pread(struct worker *w)
{
	struct run *r = w->r;
	const struct wlift__plan *p = r->pl->plan;

	while (!stopped(r)) {
		size_t ci = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
		wlift_diag d;
		int ret;

		if (ci >= p->nchunks)
			break;
		wlift_diag_clear(&d);
		ret = read_sync(r, ci, dest_of(w, ci), 0, &d);
		if (!ret)
			ret = deliver(w, ci, &d);
		if (ret) {
			fail(r, ret, &d);
			break;
		}
		complete(r, ci);
	}
}

/* One ring per worker: keep up to qd chunk reads in flight, claim more as they complete.
 * Short reads (rare: signals, EOF) finish synchronously. */
static int run_uring(struct worker *w)
{
	struct run *r = w->r;
	const struct wlift__plan *p = r->pl->plan;
	struct wlift__uring *u = NULL;
	int ret = wlift__uring_create(r->pl->qd, &u);

	if (ret < 0)
		return ret;
	__atomic_store_n(&r->used_uring, 1, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t tag;
		int res;
		wlift_diag d;

		wlift_diag_clear(&d);
		while (!stopped(r) && wlift__uring_inflight(u) < r->pl->qd) {
			size_t ci = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
			const struct wlift__plan_chunk *c;
			struct wlift__pipe_file *f;
			if (ci >= p->nchunks)
				break;
			c = &p->chunks[ci];
			f = &r->pl->files[c->file];
			if (f->fd < 0 || c->len > (1u << 30)) {
				ret = read_sync(r, ci, dest_of(w, ci), 0, &d);
				if (ret) {
					fail(r, ret, &d);
					break;
				}
				complete(r, ci);
				continue;
			}
			if (wlift__uring_read(u, c->direct ? f->dfd : f->fd, dest_of(w, ci),
					      (size_t)c->len, c->off, ci) < 0) {
				/* No submission slot (cannot happen while qd bounds the reads in
				 * flight): read it here rather than lose the chunk. */
				ret = read_sync(r, ci, dest_of(w, ci), 0, &d);
				if (ret) {
					fail(r, ret, &d);
					break;
				}
				complete(r, ci);
			}
		}
		if (!wlift__uring_inflight(u))
			break;
		ret = wlift__uring_wait(u, &tag, &res);
		if (ret < 0) {
			wlift__diag_set(&d, ret, NULL, NULL, -1, "io.uring",
					"io_uring wait failed");
			fail(r, ret, &d);
			break;
		}
		if (stopped(r))
			continue;
		if (res < 0) {
			read_error(r, (size_t)tag, p->chunks[tag].off, res, &d);
			fail(r, res, &d);
			continue;
		}
		if ((uint64_t)res < p->chunks[tag].len) {
			if (res == 0)
				ret = check_got(r, (size_t)tag, 0, &d);
			else
				ret = read_sync(r, (size_t)tag, dest_of(w, (size_t)tag),
						(size_t)res, &d);
			if (ret) {
				fail(r, ret, &d);
				continue;
			}
		}
		complete(r, (size_t)tag);
	}
	wlift__uring_destroy(u); /* reaps anything still in flight */
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;

	/* io_uring keeps several reads in flight per worker, which needs in-place destinations
	 * (a bounce-buffer sink gets one read at a time). */
	if (!r->pl->uring || !r->pl->sink->ops->ptr(r->pl->sink, 0) || run_uring(w) < 0)
		run_pread(w);
	pthread_mutex_lock(&r->mu);
	r->running--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int wlift__pipeline_run(struct wlift__pipeline *pl, wlift_diag *d)
{
	const struct wlift__plan *p = pl->plan;
	struct run r;
	unsigned nthreads = pl->threads ? pl->threads : 1, started = 0;
	pthread_t *tid = NULL;
	struct worker *ws = NULL;
	int ret = 0;
	int mu_ok = 0, cv_ok = 0;

	memset(&r, 0, sizeof(r));
	r.pl = pl;
	if (nthreads > p->nchunks)
		nthreads = p->nchunks ? (unsigned)p->nchunks : 1;
	r.left = calloc(p->ntensors ? p->ntensors : 1, sizeof(*r.left));
	r.range_left = calloc(p->nranges ? p->nranges : 1, sizeof(*r.range_left));
	tid = calloc(nthreads, sizeof(*tid));
	ws = calloc(nthreads, sizeof(*ws));
	if (!r.left || !r.range_left || !tid || !ws) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	if (pthread_mutex_init(&r.mu, NULL)) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	mu_ok = 1;
	if (pthread_cond_init(&r.cv, NULL)) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	cv_ok = 1;
	for (size_t k = 0; k < p->ntensors; k++)
		r.left[k] = pl->tensors[k].nbytes;
	for (size_t i = 0; i < p->nranges; i++)
		r.range_left[i] = p->ranges[i].nc;
	/* Zero-byte tensors have nothing to wait for: report them first. */
	for (size_t k = 0; k < p->ntensors; k++)
		if (!pl->tensors[k].nbytes && fire(&r, k))
			break;

	if (!stopped(&r)) {
		size_t blen = 0;
		struct wlift__sink *s = pl->sink;
		for (size_t i = 0; i < p->nchunks; i++)
			if (p->chunks[i].len > blen)
				blen = (size_t)p->chunks[i].len;
		for (unsigned i = 0; i < nthreads; i++) {
			ws[i].r = &r;
			if (p->nchunks && !s->ops->ptr(s, 0)) {
				/* Bounce buffers, aligned for O_DIRECT. */
				if (posix_memalign((void **)&ws[i].bounce, 4096, blen)) {
					fail(&r, -ENOMEM, NULL);
					break;
				}
				ws[i].bounce_len = blen;
			}
		}
	}
	if (!stopped(&r)) {
		pthread_mutex_lock(&r.mu);
		for (unsigned i = 0; i < nthreads; i++) {
			if (pthread_create(&tid[i], NULL, worker_main, &ws[i]) != 0)
				break;
			started++;
			r.running++;
		}
		pthread_mutex_unlock(&r.mu);
		if (!started && p->nchunks) {
			/* No thread could start: run the work on this thread. */
			ws[0].r = &r;
			r.running = 1;
			worker_main(&ws[0]);
		}
	}
	/* Wait, calling progress at least every 100 ms. */
	pthread_mutex_lock(&r.mu);
	while (r.running) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r.cv, &r.mu, &ts);
		if (r.running && pl->progress) {
			uint64_t done = __atomic_load_n(&r.done, __ATOMIC_RELAXED);
			int c;
			pthread_mutex_unlock(&r.mu);
			c = pl->progress(done, p->tensor_bytes, pl->progress_user);
			if (c) {
				wlift_diag cd;
				wlift_diag_clear(&cd);
				wlift__diag_set(&cd, WLIFT_ECANCELED, NULL, NULL, -1,
						"load.canceled",
						"the load was canceled by the progress callback");
				fail(&r, WLIFT_ECANCELED, &cd);
			}
			pthread_mutex_lock(&r.mu);
		}
	}
	pthread_mutex_unlock(&r.mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (!r.err && pl->sink->ops->finish) {
		wlift_diag fd;
		wlift_diag_clear(&fd);
		int f = pl->sink->ops->finish(pl->sink, &fd);
		if (f)
			fail(&r, f, &fd);
	}
	if (!r.err && pl->progress && pl->progress(r.done, p->tensor_bytes, pl->progress_user)) {
		wlift_diag cd;
		wlift_diag_clear(&cd);
		wlift__diag_set(&cd, WLIFT_ECANCELED, NULL, NULL, -1, "load.canceled",
				"the load was canceled by the progress callback");
		fail(&r, WLIFT_ECANCELED, &cd);
	}
	pl->bytes_read = r.read;
	pl->fixups = r.fixups;
	pl->fixup_bytes = r.fixup_bytes;
	pl->used_uring = r.used_uring;
	if (r.err) {
		ret = r.err;
		if (d && !d->code)
			*d = r.diag;
	}
out:
	if (ws)
		for (unsigned i = 0; i < nthreads; i++)
			free(ws[i].bounce);
	free(ws);
	free(tid);
	free(r.left);
	free(r.range_left);
	if (cv_ok)
		pthread_cond_destroy(&r.cv);
	if (mu_ok)
		pthread_mutex_destroy(&r.mu);
	return ret;
}
