/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pipeline: worker threads pull chunk indices from one atomic counter (chunks are in file
 * order, so the device sees mostly sequential reads spread over a few streams) and keep up to
 * qd reads in flight each, through the read queue of each chunk's source (created on first
 * use, one per worker and source kind). A read lands straight in the destination when the
 * sink has host memory there; otherwise in a staging buffer from the sink, committed when the
 * read completes (the sink reports the commit's completion later, from whichever thread polls
 * it). A short read is resubmitted for its remainder unless it ended past the tensors (O_DIRECT
 * widening at the end of the file). The calling thread only waits, calling the progress
 * callback at least every WLIFT_PROGRESS_MS; a cancel or the first error raises a stop flag
 * that every worker checks before its next submission, and every read in flight is reaped
 * (and every staging buffer given back) before the workers exit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/numa.h"
#include "engine/pipeline.h"
#include "source/gds.h"

#define NO_CHUNK SIZE_MAX
#define MAX_KINDS 4 /* source kinds one load reads from (file, memory, ...) */

struct worker;

struct run {
	struct wlift__pipeline *pl;
	struct worker *ws; /* every worker, so that a stop can cancel their reads (under mu) */
	unsigned nws;
	int staged;	    /* the sink has no host destination: every chunk is staged */
	uint64_t *left;	    /* per tensor: bytes still to land (atomic) */
	size_t *range_left; /* per range: chunks still to land (atomic) */
	uint64_t *got;	    /* per chunk: bytes read so far (owned by the worker reading it) */
	void **stage;	    /* per chunk: its staging buffer while staged */
	size_t next;	    /* next chunk to claim (atomic) */
	int stop;	    /* atomic */
	uint64_t done;	    /* tensor bytes landed (atomic) */
	uint64_t read;	    /* bytes read (atomic) */
	uint64_t fixups, fixup_bytes;
	int used_uring;	     /* atomic */
	int gds_off;	     /* atomic: no more cuFile reads in this load (auto, after a failure) */
	int gds_mode;	     /* atomic: the cuFile state of the reads made */
	int gds_reg;	     /* atomic, set under mu: 0 the destination not yet registered, 1
				registered, 2 tried and refused (reads go on, through cuFile's
				bounce buffers) */
	void *gds_base;	     /* the registered device range */
	uint64_t gds_bytes, gds_fallbacks; /* atomic */
	uint64_t fixed_reads; /* atomic */
	int fixed_err;	      /* atomic: the first refused registration */
	const char *first_q; /* name of the first read queue made (atomic) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned running;
	int err;
	wlift_diag diag;
};

static void cancel_all(struct run *r);
static void name_tensor(const struct run *r, size_t ci, uint64_t at, wlift_diag *d);

/* Record the first error, stop every worker and cancel every read in flight, so that a
 * slow read (a stalled network request) does not hold up the return. */
static void fail(struct run *r, int code, const wlift_diag *d)
{
	int first;

	pthread_mutex_lock(&r->mu);
	first = !r->err;
	if (first) {
		r->err = code;
		if (d && d->code)
			r->diag = *d;
		else
			wlift__diag_set(&r->diag, code, NULL, NULL, -1, NULL, NULL);
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	if (first)
		cancel_all(r);
	pthread_mutex_unlock(&r->mu);
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
		if (ret == WLIFT_ECANCELED)
			wlift__diag_set(&d, ret, NULL, r->pl->tensors[k].name, -1, "load.canceled",
					"the load was canceled by the ready callback");
		else
			wlift__diag_set(&d, ret, NULL, r->pl->tensors[k].name, -1, "load.finish",
					"tensor \"%s\": finishing it in the destination (placement "
					"fix-up or dtype conversion) failed: %s",
					r->pl->tensors[k].name, wlift_strerror(ret));
		fail(r, ret, &d);
	}
	return ret;
}

/* Account for chunk ci having landed in its destination: per-tensor counters, or the range's
 * fix-up once all of the range has landed. */
static void complete(struct run *r, size_t ci)
{
	const struct wlift__plan *p = r->pl->plan;
	const struct wlift__plan_chunk *c = &p->chunks[ci];
	const struct wlift__plan_range *rg = &p->ranges[c->range];
	const wlift_tensor_info *t = r->pl->tensors;
	uint64_t lo = c->off > rg->off ? c->off : rg->off;
	uint64_t hi = c->off + c->len < rg->end ? c->off + c->len : rg->end;
	size_t a, b;

	if (hi > lo)
		__atomic_add_fetch(&r->done, hi - lo, __ATOMIC_RELAXED);
	if (rg->shift) {
		/* O_DIRECT placed this range off a 64-byte boundary: once all of it has landed,
		 * move it down in place (the slack before it is ours) and report its tensors. */
		uint64_t from = rg->dest + (rg->off - rg->rd_off);
		wlift_diag d;
		int ret;

		if (__atomic_sub_fetch(&r->range_left[c->range], 1, __ATOMIC_ACQ_REL) != 0)
			return;
		if (stopped(r))
			return;
		wlift_diag_clear(&d);
		ret = r->pl->sink->ops->move(r->pl->sink, from - rg->shift, from, rg->end - rg->off,
					     &d);
		if (ret) {
			fail(r, ret, &d);
			return;
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

/* The sink's report that the commit of chunk `cookie` has landed. */
static void commit_done(void *user, uint64_t cookie, int err, const wlift_diag *d)
{
	struct run *r = user;

	if (err) {
		fail(r, err, d);
		return;
	}
	if (!stopped(r))
		complete(r, (size_t)cookie);
}

struct wq {
	const struct wlift__source_ops *kind;
	struct wlift__rq *q;
};

struct worker {
	struct run *r;
	struct wq qs[MAX_KINDS];
	unsigned nq;	   /* changed under r->mu (a stop cancels the queues from any thread) */
	unsigned inflight; /* over all of this worker's queues */
	unsigned rr;	   /* next queue to reap (round robin) */
	size_t held;	   /* claimed, not yet submitted */
};

/* Called with r->mu held. */
static void cancel_all(struct run *r)
{
	for (unsigned i = 0; i < r->nws; i++)
		for (unsigned k = 0; k < r->ws[i].nq; k++)
			r->ws[i].qs[k].q->ops->cancel(r->ws[i].qs[k].q);
}

static struct wlift__rq *queue_for(struct worker *w, struct wlift__source *s, wlift_diag *d)
{
	struct run *r = w->r;
	struct wlift__rq *q;
	const char *name;

	for (unsigned i = 0; i < w->nq; i++)
		if (w->qs[i].kind == s->ops)
			return w->qs[i].q;
	if (w->nq == MAX_KINDS) {
		wlift__diag_set(d, -ENOSPC, s->uri, NULL, -1, "load.sources",
				"more than %d kinds of source in one load", MAX_KINDS);
		return NULL;
	}
	if (s->ops->queue(s, r->pl->qd, r->pl->queue_flags, &q, d))
		return NULL;
	if (r->pl->nstaging && q->ops->register_buffers) {
		/* Refused (RLIMIT_MEMLOCK, an old kernel): the queue reads as before. */
		int err = q->ops->register_buffers(q, r->pl->staging, r->pl->nstaging), none = 0;
		if (err)
			__atomic_compare_exchange_n(&r->fixed_err, &none, err, 0, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
	}
	name = wlift__rq_name(q);
	if (strcmp(name, "uring") == 0)
		__atomic_store_n(&r->used_uring, 1, __ATOMIC_RELAXED);
	{
		const char *none = NULL;
		__atomic_compare_exchange_n(&r->first_q, &none, name, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(&r->mu);
	w->qs[w->nq].kind = s->ops;
	w->qs[w->nq].q = q;
	w->nq++;
	if (stopped(r))
		q->ops->cancel(q); /* a stop that came before this queue existed */
	pthread_mutex_unlock(&r->mu);
	return q;
}

static void drop_stage(struct run *r, size_t ci)
{
	if (r->stage[ci]) {
		r->pl->sink->ops->unacquire(r->pl->sink, r->stage[ci]);
		r->stage[ci] = NULL;
	}
}

static uint8_t *dest_of(struct run *r, size_t ci)
{
	const struct wlift__plan_chunk *c = &r->pl->plan->chunks[ci];

	if (r->stage[ci])
		return r->stage[ci];
	return r->pl->sink->ops->dest(r->pl->sink, c->dest);
}

/* Submit the rest of chunk ci (from byte got[ci] on). */
static int submit(struct worker *w, struct wlift__rq *q, size_t ci, wlift_diag *d)
{
	struct run *r = w->r;
	const struct wlift__plan_chunk *c = &r->pl->plan->chunks[ci];
	struct wlift__source *s = r->pl->srcs[c->file];
	uint64_t g = r->got[ci];
	struct wlift__read rd = { dest_of(r, ci) + g, c->off + g, (size_t)(c->len - g), ci,
				  c->direct ? WLIFT__READ_DIRECT : 0 };
	int ret = q->ops->submit(q, s, &rd, d);

	if (ret == 0) {
		w->inflight++;
		/* A stop between fill()'s check and this submit canceled the queue before this read
		 * was in it: cancel again so that it does not run its full course (a 0.8 s read
		 * held a canceled load up in a loaded clean-clone run of unit/test_seams). */
		if (stopped(r))
			q->ops->cancel(q);
	}
	return ret;
}

/* Register the load's device destination with cuFile once (the first cuFile read of the
 * load; the device's context is current). A refusal is not an error: cuFile reads into
 * unregistered memory through its own bounce buffers. */
static void gds_register(struct run *r)
{
	struct wlift__sink *sk = r->pl->sink;
	int dev = -1;
	void *base;
	wlift_diag d;

	pthread_mutex_lock(&r->mu);
	if (!r->gds_reg) {
		base = sk->ops->device_ptr(sk, 0, &dev);
		wlift_diag_clear(&d);
		if (base && r->pl->plan->arena_bytes &&
		    wlift__gds_buf_register(r->pl->gds, base, (size_t)r->pl->plan->arena_bytes,
					    &d) == 0) {
			r->gds_base = base;
			__atomic_store_n(&r->gds_reg, 1, __ATOMIC_RELEASE);
		} else {
			__atomic_store_n(&r->gds_reg, 2, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&r->mu);
}

/* A cuFile failure in auto mode: this chunk and the rest of the load go through staging. */
static int gds_fall_back(struct run *r, size_t ci)
{
	__atomic_store_n(&r->gds_off, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&r->gds_fallbacks, 1, __ATOMIC_RELAXED);
	r->got[ci] = 0; /* staged from its first byte: the staging buffer is committed whole */
	return 0;
}

/* GPU Direct Storage: the source reads chunk ci straight into the device destination (on this
 * worker, synchronously). Returns 1 when it did (or failed: the run is then stopped), 0 when
 * this chunk goes through the read queue. */
static int read_direct_to_device(struct worker *w, size_t ci)
{
	struct run *r = w->r;
	const struct wlift__pipeline *pl = r->pl;
	const struct wlift__plan_chunk *c = &pl->plan->chunks[ci];
	const struct wlift__plan_range *rg = &pl->plan->ranges[c->range];
	struct wlift__source *s = pl->srcs[c->file];
	struct wlift__sink *sk = pl->sink;
	uint8_t *dp;
	int dev = -1, state = WLIFT__GDS_TRUE;
	wlift_diag d;

	if (!pl->gds_file || !pl->gds_file[c->file] || !s->ops->read_to_device ||
	    !sk->ops->device_ptr || __atomic_load_n(&r->gds_off, __ATOMIC_ACQUIRE))
		return 0;
	wlift_diag_clear(&d);
	if (pl->gds) {
		state = wlift__gds_state(pl->gds, 0, &d);
		if (state == WLIFT__GDS_OPENING)
			return 0; /* the pinned ring meanwhile */
		if (state < 0 || (state == WLIFT__GDS_COMPAT && !pl->gds_required)) {
			if (pl->gds_required) {
				fail(r, state < 0 ? state : WLIFT_ECUFILE, &d);
				return 1;
			}
			__atomic_store_n(&r->gds_off, 1, __ATOMIC_RELEASE);
			return 0;
		}
	}
	dp = sk->ops->device_ptr(sk, c->dest, &dev);
	if (!dp)
		return 0;
	if (sk->ops->device_enter && sk->ops->device_enter(sk, &d)) {
		if (!pl->gds_required)
			return gds_fall_back(r, ci);
		fail(r, d.code ? d.code : WLIFT_ECUDA, &d);
		return 1;
	}
	if (pl->gds && !__atomic_load_n(&r->gds_reg, __ATOMIC_ACQUIRE))
		gds_register(r);
	/* Into the registered range as its base and an offset (cuFile wants the base it
	 * registered), else the destination itself. Short only at the end of the file (O_DIRECT
	 * widening reads past it). */
	while (r->got[ci] < c->len && c->off + r->got[ci] < s->size && !stopped(r)) {
		uint8_t *base = __atomic_load_n(&r->gds_reg, __ATOMIC_ACQUIRE) == 1
				    ? (uint8_t *)r->gds_base
				    : dp + r->got[ci];
		int64_t n = s->ops->read_to_device(s, pl->gds, c->off + r->got[ci],
						   (size_t)(c->len - r->got[ci]), base,
						   (size_t)(dp + r->got[ci] - base), dev,
						   pl->gds_batch, &d);
		if (n < 0) {
			if (sk->ops->device_leave)
				sk->ops->device_leave(sk);
			if (!pl->gds_required)
				return gds_fall_back(r, ci);
			name_tensor(r, ci, d.has_offset ? (uint64_t)d.offset : c->off + r->got[ci],
				    &d);
			fail(r, (int)n, &d);
			return 1;
		}
		__atomic_add_fetch(&r->read, (uint64_t)n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&r->gds_bytes, (uint64_t)n, __ATOMIC_RELAXED);
		r->got[ci] += (uint64_t)n;
		if (n == 0)
			break;
	}
	if (sk->ops->device_leave)
		sk->ops->device_leave(sk);
	__atomic_store_n(&r->gds_mode, state, __ATOMIC_RELAXED);
	if (stopped(r))
		return 1;
	if (r->got[ci] < c->len && c->off + r->got[ci] < rg->end) {
		wlift__diag_set(&d, WLIFT_ECHANGED, s->uri, NULL, (int64_t)(c->off + r->got[ci]),
				"file.changed",
				"%s: unexpected end of file at offset %llu (the file was %llu bytes "
				"when opened; was it truncated while loading?)",
				s->uri, (unsigned long long)(c->off + r->got[ci]),
				(unsigned long long)s->size);
		fail(r, WLIFT_ECHANGED, &d);
		return 1;
	}
	complete(r, ci);
	return 1;
}

/* Claim and submit chunks until this worker has qd reads in flight, the plan is done, or
 * the sink has no staging buffer free. */
static void fill(struct worker *w)
{
	struct run *r = w->r;
	const struct wlift__plan *p = r->pl->plan;

	while (!stopped(r) && w->inflight < r->pl->qd) {
		const struct wlift__plan_chunk *c;
		struct wlift__rq *q;
		wlift_diag d;
		int ret;

		if (w->held == NO_CHUNK) {
			size_t ci = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
			if (ci >= p->nchunks)
				return;
			w->held = ci;
		}
		c = &p->chunks[w->held];
		if (read_direct_to_device(w, w->held)) {
			w->held = NO_CHUNK;
			continue;
		}
		wlift_diag_clear(&d);
		q = queue_for(w, r->pl->srcs[c->file], &d);
		if (!q) {
			fail(r, d.code ? d.code : -ENOMEM, &d);
			return;
		}
		if (q->inflight >= q->depth)
			return;
		if (r->staged && !r->stage[w->held]) {
			ret = r->pl->sink->ops->acquire(r->pl->sink, (size_t)c->len,
							&r->stage[w->held], &d);
			if (ret == -EAGAIN)
				return; /* reap, or wait for the sink (run_worker) */
			if (ret) {
				fail(r, ret, &d);
				return;
			}
		}
		ret = submit(w, q, w->held, &d);
		if (ret == -EBUSY)
			return;
		if (ret) {
			drop_stage(r, w->held);
			fail(r, ret, &d);
			return;
		}
		w->held = NO_CHUNK;
	}
}

/* Name in d the tensor that a read of chunk ci failing at file offset `at` costs: the first
 * tensor of the chunk's range that ends after it (O_DIRECT slack before a tensor counts as
 * that tensor's), unless the source named one. The error path only: a linear scan. */
static void name_tensor(const struct run *r, size_t ci, uint64_t at, wlift_diag *d)
{
	const struct wlift__plan *p = r->pl->plan;
	const struct wlift__plan_range *rg = &p->ranges[p->chunks[ci].range];
	const wlift_tensor_info *t = r->pl->tensors;

	if (d->tensor[0])
		return;
	for (size_t k = rg->t0; k < rg->t0 + rg->nt; k++) {
		if (t[k].nbytes && t[k].file_offset + t[k].nbytes > at) {
			snprintf(d->tensor, sizeof(d->tensor), "%s", t[k].name);
			return;
		}
	}
}

/* Handle the completion of one read of chunk ci. */
static void landed(struct worker *w, struct wlift__rq *q, const struct wlift__rdone *c,
		   const wlift_diag *rd)
{
	struct run *r = w->r;
	size_t ci = (size_t)c->tag;
	const struct wlift__plan_chunk *ch = &r->pl->plan->chunks[ci];
	const struct wlift__plan_range *rg = &r->pl->plan->ranges[ch->range];
	struct wlift__source *s = r->pl->srcs[ch->file];
	wlift_diag d;
	int ret;

	if (c->res < 0) {
		drop_stage(r, ci);
		d = *rd;
		name_tensor(r, ci, d.has_offset ? d.offset : ch->off + r->got[ci], &d);
		fail(r, (int)c->res, &d);
		return;
	}
	__atomic_add_fetch(&r->read, (uint64_t)c->res, __ATOMIC_RELAXED);
	if (stopped(r)) {
		drop_stage(r, ci);
		return;
	}
	r->got[ci] += (uint64_t)c->res;
	wlift_diag_clear(&d);
	if (r->got[ci] < ch->len && ch->off + r->got[ci] < rg->end) {
		if (c->res == 0) {
			/* The end of the file came before the tensors' end. */
			drop_stage(r, ci);
			wlift__diag_set(&d, WLIFT_ECHANGED, s->uri, NULL,
					(int64_t)(ch->off + r->got[ci]), "file.changed",
					"%s: unexpected end of file at offset %llu (the file was "
					"%llu bytes when opened; was it truncated while loading?)",
					s->uri, (unsigned long long)(ch->off + r->got[ci]),
					(unsigned long long)s->size);
			name_tensor(r, ci, ch->off + r->got[ci], &d);
			fail(r, WLIFT_ECHANGED, &d);
			return;
		}
		/* A short read before the end: ask for the rest (the slot just freed). */
		ret = submit(w, q, ci, &d);
		if (ret) {
			drop_stage(r, ci);
			fail(r, ret == -EBUSY ? -EIO : ret, &d);
		}
		return;
	}
	if (r->stage[ci]) {
		void *buf = r->stage[ci];
		r->stage[ci] = NULL;
		ret = r->pl->sink->ops->commit(r->pl->sink, buf, ch->dest, (size_t)r->got[ci], ci,
					       &d);
		if (ret)
			fail(r, ret, &d);
		return;
	}
	complete(r, ci);
}

/* Reap one completion from one of this worker's queues (round robin among those with reads
 * in flight). */
static void reap_one(struct worker *w)
{
	struct run *r = w->r;

	for (unsigned k = 0; k < w->nq; k++) {
		unsigned i = (w->rr + k) % w->nq;
		struct wlift__rq *q = w->qs[i].q;
		struct wlift__rdone c;
		wlift_diag d;
		int ret;

		if (!q->inflight)
			continue;
		w->rr = i + 1;
		wlift_diag_clear(&d);
		ret = q->ops->reap(q, 1, &c, &d);
		if (ret < 0) {
			/* The queue itself failed: its reads are lost. Stop; destroy waits. */
			fail(r, ret, &d);
			w->inflight = w->inflight > q->inflight ? w->inflight - q->inflight : 0;
			return;
		}
		if (ret == 0)
			continue;
		w->inflight--;
		landed(w, q, &c, &d);
		return;
	}
	w->inflight = 0; /* nothing was in flight after all */
}

static void run_worker(struct worker *w)
{
	struct run *r = w->r;
	struct wlift__sink *s = r->pl->sink;

	w->held = NO_CHUNK;
	for (;;) {
		fill(w);
		if (r->staged) {
			wlift_diag d;
			int ret;
			wlift_diag_clear(&d);
			/* Nothing of ours to reap but chunks left: wait for a staging buffer. */
			ret = s->ops->poll(s, !w->inflight && w->held != NO_CHUNK && !stopped(r),
					   &d);
			if (ret < 0)
				fail(r, ret, &d);
		}
		if (w->inflight) {
			reap_one(w);
			continue;
		}
		if (stopped(r) || w->held == NO_CHUNK)
			break;
	}
	/* Stopped (the queues were canceled): reap every read still in flight so that its
	 * staging buffer goes back, then destroy the queues. */
	for (unsigned i = 0; i < w->nq; i++) {
		struct wlift__rq *q = w->qs[i].q;
		while (q->inflight) {
			struct wlift__rdone c;
			wlift_diag d;
			wlift_diag_clear(&d);
			if (q->ops->reap(q, 1, &c, &d) <= 0)
				break;
			drop_stage(r, (size_t)c.tag);
		}
	}
	if (w->held != NO_CHUNK)
		drop_stage(r, w->held);
	{
		struct wq qs[MAX_KINDS];
		unsigned nq;
		pthread_mutex_lock(&r->mu);
		nq = w->nq;
		memcpy(qs, w->qs, sizeof(qs));
		w->nq = 0;
		pthread_mutex_unlock(&r->mu);
		for (unsigned i = 0; i < nq; i++) {
			__atomic_add_fetch(&r->fixed_reads, qs[i].q->fixed_reads,
					   __ATOMIC_RELAXED);
			qs[i].q->ops->destroy(qs[i].q);
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;

	if (r->pl->numa)
		wlift__numa_run_on_node(r->pl->numa - 1); /* best effort; a no-op on one node */
	run_worker(w);
	pthread_mutex_lock(&r->mu);
	r->running--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void progress_cancel(struct run *r)
{
	wlift_diag cd;

	wlift_diag_clear(&cd);
	wlift__diag_set(&cd, WLIFT_ECANCELED, NULL, NULL, -1, "load.canceled",
			"the load was canceled by the progress callback");
	fail(r, WLIFT_ECANCELED, &cd);
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
	if (!pl->qd)
		pl->qd = 1;
	r.staged = !pl->sink->in_place;
	if (nthreads > p->nchunks)
		nthreads = p->nchunks ? (unsigned)p->nchunks : 1;
	r.left = calloc(p->ntensors ? p->ntensors : 1, sizeof(*r.left));
	r.range_left = calloc(p->nranges ? p->nranges : 1, sizeof(*r.range_left));
	r.got = calloc(p->nchunks ? p->nchunks : 1, sizeof(*r.got));
	r.stage = calloc(p->nchunks ? p->nchunks : 1, sizeof(*r.stage));
	tid = calloc(nthreads, sizeof(*tid));
	ws = calloc(nthreads, sizeof(*ws));
	if (!r.left || !r.range_left || !r.got || !r.stage || !tid || !ws) {
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
	pl->sink->done = commit_done;
	pl->sink->done_user = &r;
	for (size_t k = 0; k < p->ntensors; k++)
		r.left[k] = pl->tensors[k].nbytes;
	for (size_t i = 0; i < p->nranges; i++)
		r.range_left[i] = p->ranges[i].nc;
	/* Zero-byte tensors have nothing to wait for: report them first. */
	for (size_t k = 0; k < p->ntensors; k++)
		if (!pl->tensors[k].nbytes && fire(&r, k))
			break;
	for (unsigned i = 0; i < nthreads; i++)
		ws[i].r = &r;
	r.ws = ws;
	r.nws = nthreads;

	if (!stopped(&r) && p->nchunks == 1) {
		/* One read: a thread would cost more than it (a get_slice of a few rows). */
		r.running = 1;
		worker_main(&ws[0]);
	} else if (!stopped(&r) && p->nchunks) {
		pthread_mutex_lock(&r.mu);
		for (unsigned i = 0; i < nthreads; i++) {
			if (pthread_create(&tid[i], NULL, worker_main, &ws[i]) != 0)
				break;
			started++;
			r.running++;
		}
		pthread_mutex_unlock(&r.mu);
		if (!started) {
			/* No thread could start: run the work on this thread. */
			r.running = 1;
			worker_main(&ws[0]);
		}
	}
	/* Wait, calling progress at least every WLIFT_PROGRESS_MS. */
	pthread_mutex_lock(&r.mu);
	while (r.running) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WLIFT_PROGRESS_MS * 1000000L;
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
			if (c)
				progress_cancel(&r);
			pthread_mutex_lock(&r.mu);
		}
	}
	pthread_mutex_unlock(&r.mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (r.staged) {
		/* Every commit must have landed (or failed) before the memory can be used or
		 * freed, whatever happened. */
		wlift_diag fd;
		int f;
		wlift_diag_clear(&fd);
		f = pl->sink->ops->finish(pl->sink, &fd);
		if (f)
			fail(&r, f, &fd);
	}
	if (!r.err && r.done != p->tensor_bytes) {
		/* Never hand out memory that was not read as data. */
		wlift_diag id;
		wlift_diag_clear(&id);
		wlift__diag_set(&id, -EIO, NULL, NULL, -1, "load.cover",
				"internal error: %llu of %llu tensor bytes landed",
				(unsigned long long)r.done, (unsigned long long)p->tensor_bytes);
		fail(&r, -EIO, &id);
	}
	if (!r.err && pl->progress && pl->progress(r.done, p->tensor_bytes, pl->progress_user))
		progress_cancel(&r);
	if (r.gds_reg == 1) {
		/* Every cuFile read has returned (the workers are joined). */
		wlift_diag gd;
		wlift_diag_clear(&gd);
		if (!pl->sink->ops->device_enter || pl->sink->ops->device_enter(pl->sink, &gd) == 0) {
			wlift__gds_buf_deregister(pl->gds, r.gds_base);
			if (pl->sink->ops->device_leave)
				pl->sink->ops->device_leave(pl->sink);
		}
	}
	pl->gds_bytes = r.gds_bytes;
	pl->gds_fallbacks = r.gds_fallbacks;
	pl->gds_mode = r.gds_bytes ? r.gds_mode : 0;
	pl->bytes_read = r.read;
	pl->fixed_reads = r.fixed_reads;
	pl->fixed_err = r.fixed_err;
	pl->fixups = r.fixups;
	pl->fixup_bytes = r.fixup_bytes;
	pl->strategy = r.used_uring ? "uring" : r.first_q;
	if (r.err) {
		ret = r.err;
		if (d && !d->code)
			*d = r.diag;
	}
out:
	if (mu_ok || cv_ok) {
		pl->sink->done = NULL;
		pl->sink->done_user = NULL;
	}
	free(ws);
	free(tid);
	free(r.left);
	free(r.range_left);
	free(r.got);
	free(r.stage);
	if (cv_ok)
		pthread_cond_destroy(&r.cv);
	if (mu_ok)
		pthread_mutex_destroy(&r.mu);
	return ret;
}
