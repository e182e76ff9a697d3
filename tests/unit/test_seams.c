/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine's seams, driven through stand-ins defined here: a source whose reads complete
 * asynchronously and out of order on helper threads (with short reads, injected errors, reads
 * past the end and O_DIRECT alignment on request), and a staged sink with no host pointer (a
 * few staging buffers copied into its own "device" memory by a copy thread, out of order).
 * Each load checks the delivered bytes against the image, the ready callback (once per
 * tensor, after its bytes landed), errors (EIO, truncation), cancellation and how promptly it
 * stops reads in flight, dtype conversion, O_DIRECT fix-ups, partial rows, two files sharing
 * a read queue, the bytes-in-flight budget, and that both stand-ins were used as their
 * contracts (src/source/source.h, src/sink/sink.h) say: nothing in flight after a load, no
 * staging buffer leaked or overcommitted, no overlapping commits, every commit reported.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/ckpt.h"
#include "engine/load.h"
#include "sink/convert_cpu.h"
#include "sink/sink.h"
#include "source/source.h"
#include "testutil.h"
#include "weightlift.h"

/* ---- time ------------------------------------------------------------------------------ */

static struct timespec deadline_us(unsigned us)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)(us % 1000000u) * 1000;
	ts.tv_sec += (time_t)(us / 1000000u);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_nsec -= 1000000000L;
		ts.tv_sec++;
	}
	return ts;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* ---- the test source -------------------------------------------------------------------- */

#define TS_HELPERS 2 /* helper threads per read queue */

struct ts_cfg {
	int short_reads;       /* 1: about half the reads return half their bytes */
	int64_t eio_off;       /* >= 0: every read covering this offset fails with -EIO */
	uint32_t dio_align;    /* > 0: direct reads possible, with this alignment */
	unsigned max_delay_us; /* each read waits min_delay_us..max_delay_us before its copy */
	unsigned seed;
	unsigned min_delay_us;
	int64_t trunc_at; /* > 0: the object now ends here (truncated after open) */
};

/* Everything below is guarded by testsrc.mu. */
struct ts_stats {
	unsigned long reads, direct_reads, short_reads, eio, canceled_reads, past_end, ebusy;
	unsigned long zero_len, cancels, queues, direct_calls, abandoned, probes;
	int inflight, max_inflight; /* submitted and neither reaped nor abandoned */
	int busy;		    /* helper threads performing a read */
	int threads;		    /* helper threads alive */
	int queues_alive;
	unsigned max_depth;
	uint64_t bytes, inflight_bytes, max_inflight_bytes;
	uint64_t lo, hi; /* bounds of every read's range since ts_reset_load */
	unsigned violations;
	char violation[256];
};

struct testsrc {
	struct wlift__source base;
	const uint8_t *img;
	struct ts_cfg cfg;
	int direct_on; /* ops->direct was called */
	pthread_mutex_t mu;
	struct ts_stats st;
};

struct tq_item {
	struct tq_item *next;
	struct testsrc *src;
	struct wlift__read r;
	int canceled;
	int64_t res;
	int64_t err_off;
	char msg[256];
};

struct testq;
struct tq_helper {
	struct testq *q;
	int idx;
	unsigned seed;
};

struct testq {
	struct wlift__rq base;
	struct testsrc *owner; /* the source that made it (referenced) */
	pthread_mutex_t mu;
	pthread_cond_t work; /* helpers: a read was queued, canceled or the queue stops */
	pthread_cond_t done; /* reaper: a read completed */
	struct tq_item *pend, **pend_tail;
	struct tq_item *run[TS_HELPERS];
	struct tq_item *fin; /* completed, not reaped: reaped in random order */
	unsigned nfin;
	int stop;
	unsigned seed;
	struct tq_helper h[TS_HELPERS];
	pthread_t th[TS_HELPERS];
	int nth;
	int inited;
};

static const struct wlift__source_ops ts_ops, ts_ops_direct, ts_ops_gds;
static const struct wlift__rq_ops tq_ops;

static void ts_violation(struct testsrc *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ts_violation(struct testsrc *s, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	if (!s->st.violations++) {
		va_start(ap, fmt);
		vsnprintf(s->st.violation, sizeof(s->st.violation), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&s->mu);
}

/* The read itself, on a helper thread, outside the queue's lock. */
static void tq_perform(struct tq_item *it, int canceled, unsigned *seed)
{
	struct testsrc *s = it->src;
	const struct wlift__read *r = &it->r;
	uint64_t size = s->cfg.trunc_at > 0 ? (uint64_t)s->cfg.trunc_at : s->base.size, avail;
	uint32_t a = s->cfg.dio_align;
	size_t n;
	int is_short = 0;

	if (canceled) {
		it->res = -ECANCELED;
		it->err_off = (int64_t)r->off;
		snprintf(it->msg, sizeof(it->msg),
			 "testsrc: read of %zu bytes at offset %llu canceled", r->len,
			 (unsigned long long)r->off);
		pthread_mutex_lock(&s->mu);
		s->st.canceled_reads++;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (r->flags & WLIFT__READ_DIRECT) {
		if (!a || !__atomic_load_n(&s->direct_on, __ATOMIC_ACQUIRE)) {
			ts_violation(s, "direct read at %llu without a successful ops->direct",
				     (unsigned long long)r->off);
			it->res = -EINVAL;
			it->err_off = (int64_t)r->off;
			snprintf(it->msg, sizeof(it->msg), "testsrc: direct read not enabled");
			return;
		}
		if ((uintptr_t)r->dst % a || r->off % a || r->len % a) {
			ts_violation(s, "unaligned direct read: dst %p off %llu len %zu (align %u)",
				     r->dst, (unsigned long long)r->off, r->len, a);
			it->res = -EINVAL;
			it->err_off = (int64_t)r->off;
			snprintf(it->msg, sizeof(it->msg), "testsrc: unaligned direct read");
			return;
		}
	}
	if (s->cfg.eio_off >= 0 && (uint64_t)s->cfg.eio_off >= r->off &&
	    (uint64_t)s->cfg.eio_off - r->off < r->len) {
		it->res = -EIO;
		it->err_off = s->cfg.eio_off;
		snprintf(it->msg, sizeof(it->msg), "testsrc: injected EIO at offset %lld (%s)",
			 (long long)s->cfg.eio_off, s->base.uri);
		pthread_mutex_lock(&s->mu);
		s->st.eio++;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	/* A read past the end returns what is there, as a file does. */
	avail = r->off < size ? size - r->off : 0;
	n = r->len < avail ? r->len : (size_t)avail;
	if (s->cfg.short_reads && n > 1 && rand_r(seed) % 2) {
		size_t m = n / 2;

		/* Direct reads come short by whole blocks, as O_DIRECT does. */
		if (r->flags & WLIFT__READ_DIRECT)
			m -= m % a;
		if (m) {
			n = m;
			is_short = 1;
		}
	}
	if (n)
		memcpy(r->dst, s->img + r->off, n);
	it->res = (int64_t)n;
	pthread_mutex_lock(&s->mu);
	s->st.short_reads += (unsigned long)is_short;
	s->st.bytes += n;
	pthread_mutex_unlock(&s->mu);
}

static void *tq_helper_main(void *arg)
{
	struct tq_helper *h = arg;
	struct testq *q = h->q;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		struct tq_item *it;
		int canceled;

		while (!q->pend && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		if (!q->pend)
			break; /* stopping, and every queued read is done */
		it = q->pend;
		q->pend = it->next;
		if (!q->pend)
			q->pend_tail = &q->pend;
		q->run[h->idx] = it;
		pthread_mutex_lock(&it->src->mu);
		it->src->st.busy++;
		pthread_mutex_unlock(&it->src->mu);
		if (!it->canceled && it->src->cfg.max_delay_us) {
			const struct ts_cfg *cf = &it->src->cfg;
			unsigned span = cf->max_delay_us > cf->min_delay_us
					    ? cf->max_delay_us - cf->min_delay_us
					    : 0;
			struct timespec dl =
			    deadline_us(cf->min_delay_us + (unsigned)rand_r(&h->seed) % (span + 1));
			/* Sleep on the condition so that a cancel cuts the wait short. */
			while (!it->canceled &&
			       pthread_cond_timedwait(&q->work, &q->mu, &dl) != ETIMEDOUT)
				;
		}
		canceled = it->canceled;
		pthread_mutex_unlock(&q->mu);
		tq_perform(it, canceled, &h->seed);
		pthread_mutex_lock(&q->mu);
		q->run[h->idx] = NULL;
		it->next = q->fin;
		q->fin = it;
		q->nfin++;
		pthread_mutex_lock(&it->src->mu);
		it->src->st.busy--;
		pthread_mutex_unlock(&it->src->mu);
		pthread_cond_broadcast(&q->done);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static int tq_submit(struct wlift__rq *rq, struct wlift__source *src, const struct wlift__read *r,
		     wlift_diag *d)
{
	struct testq *q = (struct testq *)rq;
	struct testsrc *s = (struct testsrc *)src;
	struct tq_item *it;

	if (src->ops != &ts_ops && src->ops != &ts_ops_direct && src->ops != &ts_ops_gds) {
		ts_violation(q->owner, "submit of a read of a foreign source (%s)", src->ops->kind);
		return wlift__diag_set(d, -EINVAL, src->uri, NULL, -1, "testsrc",
				       "testsrc: read of a source of another kind");
	}
	pthread_mutex_lock(&q->mu);
	if (rq->inflight >= rq->depth) {
		pthread_mutex_unlock(&q->mu);
		pthread_mutex_lock(&s->mu);
		s->st.ebusy++;
		pthread_mutex_unlock(&s->mu);
		return -EBUSY;
	}
	it = calloc(1, sizeof(*it));
	if (!it) {
		pthread_mutex_unlock(&q->mu);
		return wlift__diag_set(d, -ENOMEM, src->uri, NULL, -1, NULL, NULL);
	}
	it->src = s;
	it->r = *r;
	*q->pend_tail = it;
	q->pend_tail = &it->next;
	rq->inflight++;
	pthread_mutex_lock(&s->mu);
	s->st.reads++;
	s->st.direct_reads += (r->flags & WLIFT__READ_DIRECT) ? 1 : 0;
	s->st.zero_len += r->len ? 0 : 1;
	if (r->off > src->size || r->len > src->size - r->off)
		s->st.past_end++;
	if (++s->st.inflight > s->st.max_inflight)
		s->st.max_inflight = s->st.inflight;
	s->st.inflight_bytes += r->len;
	if (s->st.inflight_bytes > s->st.max_inflight_bytes)
		s->st.max_inflight_bytes = s->st.inflight_bytes;
	if (r->off < s->st.lo)
		s->st.lo = r->off;
	if (r->off + r->len > s->st.hi)
		s->st.hi = r->off + r->len;
	pthread_mutex_unlock(&s->mu);
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

/* Forget item it (reaped or abandoned) in its source's counters. */
static void tq_retire(struct tq_item *it, int abandoned)
{
	struct testsrc *s = it->src;

	pthread_mutex_lock(&s->mu);
	s->st.inflight--;
	s->st.inflight_bytes -= it->r.len;
	s->st.abandoned += (unsigned long)abandoned;
	pthread_mutex_unlock(&s->mu);
}

static int tq_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct testq *q = (struct testq *)rq;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		if (q->nfin) {
			unsigned k = (unsigned)rand_r(&q->seed) % q->nfin;
			struct tq_item **pp = &q->fin, *it;

			while (k--)
				pp = &(*pp)->next;
			it = *pp;
			*pp = it->next;
			q->nfin--;
			rq->inflight--;
			pthread_mutex_unlock(&q->mu);
			c->tag = it->r.tag;
			c->res = it->res;
			if (it->res < 0)
				wlift__diag_set(d, (int)it->res, it->src->base.uri, NULL,
						it->err_off, "testsrc", "%s", it->msg);
			tq_retire(it, 0);
			free(it);
			return 1;
		}
		if (!rq->inflight || !wait) {
			pthread_mutex_unlock(&q->mu);
			return 0;
		}
		pthread_cond_wait(&q->done, &q->mu);
	}
}

static void tq_cancel(struct wlift__rq *rq)
{
	struct testq *q = (struct testq *)rq;

	pthread_mutex_lock(&q->mu);
	for (struct tq_item *it = q->pend; it; it = it->next)
		it->canceled = 1;
	for (int i = 0; i < TS_HELPERS; i++)
		if (q->run[i])
			q->run[i]->canceled = 1;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->mu);
	pthread_mutex_lock(&q->owner->mu);
	q->owner->st.cancels++;
	pthread_mutex_unlock(&q->owner->mu);
}

static void tq_destroy(struct wlift__rq *rq)
{
	struct testq *q = (struct testq *)rq;
	struct testsrc *owner;

	if (!q)
		return;
	owner = q->owner;
	if (q->inited) {
		pthread_mutex_lock(&q->mu);
		q->stop = 1;
		pthread_cond_broadcast(&q->work);
		pthread_mutex_unlock(&q->mu);
	}
	for (int i = 0; i < q->nth; i++)
		pthread_join(q->th[i], NULL);
	/* Completed but never reaped: the engine gave up on them (an error path). */
	while (q->fin) {
		struct tq_item *it = q->fin;

		q->fin = it->next;
		tq_retire(it, 1);
		free(it);
	}
	if (owner) {
		pthread_mutex_lock(&owner->mu);
		owner->st.threads -= q->nth;
		owner->st.queues_alive--;
		pthread_mutex_unlock(&owner->mu);
	}
	if (q->inited) {
		pthread_cond_destroy(&q->work);
		pthread_cond_destroy(&q->done);
		pthread_mutex_destroy(&q->mu);
	}
	free(q);
	wlift__source_unref(owner ? &owner->base : NULL);
}

static const struct wlift__rq_ops tq_ops = {
    .name = "testsrc",
    .submit = tq_submit,
    .reap = tq_reap,
    .cancel = tq_cancel,
    .destroy = tq_destroy,
};

static int ts_queue(struct wlift__source *src, unsigned depth, unsigned flags,
		    struct wlift__rq **out, wlift_diag *d)
{
	struct testsrc *s = (struct testsrc *)src;
	struct testq *q;

	(void)flags;
	*out = NULL;
	if (depth < 1)
		ts_violation(s, "queue of depth %u", depth);
	q = calloc(1, sizeof(*q));
	if (!q)
		return wlift__diag_set(d, -ENOMEM, src->uri, NULL, -1, NULL, NULL);
	q->base.ops = &tq_ops;
	q->base.depth = depth ? depth : 1;
	q->owner = (struct testsrc *)wlift__source_ref(src);
	pthread_mutex_init(&q->mu, NULL);
	cond_init_mono(&q->work);
	cond_init_mono(&q->done);
	q->pend_tail = &q->pend;
	q->inited = 1;
	pthread_mutex_lock(&s->mu);
	q->seed = s->cfg.seed * 7919u + (unsigned)s->st.queues;
	s->st.queues++;
	s->st.queues_alive++;
	if (depth > s->st.max_depth)
		s->st.max_depth = depth;
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < TS_HELPERS; i++) {
		q->h[i].q = q;
		q->h[i].idx = i;
		q->h[i].seed = q->seed + 31u * (unsigned)i;
		if (pthread_create(&q->th[i], NULL, tq_helper_main, &q->h[i])) {
			tq_destroy(&q->base);
			return wlift__diag_set(d, -EAGAIN, src->uri, NULL, -1, NULL,
					       "testsrc: pthread_create failed");
		}
		q->nth++;
		pthread_mutex_lock(&s->mu);
		s->st.threads++;
		pthread_mutex_unlock(&s->mu);
	}
	*out = &q->base;
	return 0;
}

static int ts_probe(struct wlift__source *src, uint64_t off, uint64_t len, unsigned flags,
		    struct wlift__source_probe *p)
{
	struct testsrc *s = (struct testsrc *)src;

	(void)off;
	(void)len;
	memset(p, 0, sizeof(*p));
	p->size = src->size;
	p->in_memory = 0;
	p->can_map = 0;
	p->fs_kind = WLIFT_FS_NONE;
	p->resident = -1.0;
	p->chunk = 0;
	if (flags & WLIFT__PROBE_DIRECT)
		p->dio_align = s->cfg.dio_align;
	pthread_mutex_lock(&s->mu);
	s->st.probes++;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int ts_direct(struct wlift__source *src, wlift_diag *d)
{
	struct testsrc *s = (struct testsrc *)src;

	(void)d;
	pthread_mutex_lock(&s->mu);
	s->st.direct_calls++;
	pthread_mutex_unlock(&s->mu);
	__atomic_store_n(&s->direct_on, 1, __ATOMIC_RELEASE);
	return 0;
}

static int ts_validate(struct wlift__source *src, wlift_diag *d)
{
	(void)src;
	(void)d;
	return 0;
}

static void ts_destroy(struct wlift__source *src)
{
	struct testsrc *s = (struct testsrc *)src;

	pthread_mutex_destroy(&s->mu);
	free(src->uri);
	free(s);
}

static const struct wlift__source_ops ts_ops = {
    .kind = "testsrc",
    .probe = ts_probe,
    .queue = ts_queue,
    .direct = NULL,
    .validate = ts_validate,
    .map = NULL,
    .read_to_device = NULL,
    .destroy = ts_destroy,
};

/* GPU Direct Storage stand-in: reads straight into the sink's "device" memory, on the calling
 * worker, counted. */
static int g_gds_reads; /* atomic */

static int64_t ts_read_to_device(struct wlift__source *src, struct wlift__gds *g, uint64_t off,
				 size_t len, void *dev, size_t devoff, int device,
				 unsigned batch, wlift_diag *d)
{
	struct testsrc *s = (struct testsrc *)src;
	uint64_t avail = off < src->size ? src->size - off : 0;
	size_t n = len < avail ? len : (size_t)avail;

	(void)d;
	(void)batch;
	ck_assert_ptr_null(g); /* a sink without cuFile */
	ck_assert_int_eq(device, 7);
	__atomic_add_fetch(&g_gds_reads, 1, __ATOMIC_RELAXED);
	memcpy((uint8_t *)dev + devoff, s->img + off, n);
	return (int64_t)n;
}

static const struct wlift__source_ops ts_ops_gds = {
    .kind = "testsrc",
    .probe = ts_probe,
    .queue = ts_queue,
    .validate = ts_validate,
    .read_to_device = ts_read_to_device,
    .destroy = ts_destroy,
};

static const struct wlift__source_ops ts_ops_direct = {
    .kind = "testsrc",
    .probe = ts_probe,
    .queue = ts_queue,
    .direct = ts_direct,
    .validate = ts_validate,
    .map = NULL,
    .read_to_device = NULL,
    .destroy = ts_destroy,
};

static struct testsrc *ts_open(const uint8_t *img, size_t len, const struct ts_cfg *cfg)
{
	struct testsrc *s = calloc(1, sizeof(*s));

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(wlift__source_init(&s->base, cfg->dio_align ? &ts_ops_direct : &ts_ops,
					    "test://image", len),
			 0);
	s->img = img;
	s->cfg = *cfg;
	pthread_mutex_init(&s->mu, NULL);
	s->st.lo = UINT64_MAX;
	return s;
}

static struct ts_cfg ts_default(void)
{
	struct ts_cfg c = {0, -1, 0, 2000, 1, 0, 0};

	return c;
}

static struct ts_stats ts_stats_get(struct testsrc *s)
{
	struct ts_stats st;

	pthread_mutex_lock(&s->mu);
	st = s->st;
	pthread_mutex_unlock(&s->mu);
	return st;
}

/* Start a load's measurements: read bounds and most in flight. */
static void ts_reset_load(struct testsrc *s)
{
	pthread_mutex_lock(&s->mu);
	s->st.lo = UINT64_MAX;
	s->st.hi = 0;
	s->st.max_inflight = 0;
	s->st.max_inflight_bytes = 0;
	pthread_mutex_unlock(&s->mu);
}

/* After a load returned: no read in flight, no helper busy or alive, no contract broken. */
static void ts_assert_idle(struct testsrc *s, int ok)
{
	struct ts_stats st = ts_stats_get(s);

	ck_assert_msg(st.violations == 0, "%u source contract violations; first: %s", st.violations,
		      st.violation);
	ck_assert_int_eq(st.inflight, 0);
	ck_assert_uint_eq(st.inflight_bytes, 0);
	ck_assert_int_eq(st.busy, 0);
	ck_assert_int_eq(st.threads, 0);
	ck_assert_int_eq(st.queues_alive, 0);
	if (ok)
		ck_assert_uint_eq(st.abandoned, 0);
}

static wlift_ckpt *ts_ckpt(struct testsrc *s)
{
	struct wlift__source *srcs[1] = {&s->base};
	wlift_ckpt *ck = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_msg(wlift__ckpt_open_sources(NULL, srcs, 1, &ck, &d) == 0, "open: %s", d.message);
	ck_assert_ptr_nonnull(ck);
	ts_assert_idle(s, 1);
	return ck;
}

/* ---- the test sink ---------------------------------------------------------------------- */

#define SK_NSTAGE 3
#define SK_ALIGN 4096u

enum { SB_FREE, SB_ACQUIRED, SB_COMMITTED, SB_COPYING, SB_DONE, SB_REPORTING };

struct sk_buf {
	void *p;
	int state;
	uint64_t off;
	size_t len;
	uint64_t cookie;
};

/* Owned by the test (the load destroys the sink); written under the sink's lock. */
struct sk_stats {
	unsigned long allocs, acquires, eagain, unacquires, commits, reported, polls, finishes;
	unsigned long moves, converts, releases, exports, dests;
	uint64_t bytes, commit_bytes, move_bytes, release_bytes;
	size_t max_commit_len;
	int max_in_use;
	int leaked_acquired; /* acquired and neither committed nor given back at destroy */
	int unreported;	     /* completed commits never reported (at destroy) */
	int destroyed;
	unsigned violations;
	char violation[256];
};

struct testsink {
	struct wlift__sink base;
	struct sk_stats *st;
	uint8_t *mem;
	uint64_t bytes;
	int exported;
	unsigned max_delay_us;
	unsigned seed;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t events; /* completions and freed buffers */
	struct sk_buf b[SK_NSTAGE];
	int in_use;
	int stop;
	pthread_t th;
	int th_started;
};

static int g_mem_frees; /* exported memories freed (atomic) */

static void sk_violation(struct testsink *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Called with k->mu held. */
static void sk_violation(struct testsink *k, const char *fmt, ...)
{
	va_list ap;

	if (!k->st->violations++) {
		va_start(ap, fmt);
		vsnprintf(k->st->violation, sizeof(k->st->violation), fmt, ap);
		va_end(ap);
	}
}

/* A commit not yet landed overlapping [off, off+len)? (k->mu held) */
static int sk_overlaps_inflight(const struct testsink *k, uint64_t off, uint64_t len, int skip)
{
	for (int i = 0; i < SK_NSTAGE; i++) {
		const struct sk_buf *b = &k->b[i];

		if (i == skip || (b->state != SB_COMMITTED && b->state != SB_COPYING))
			continue;
		if (len && b->len && off < b->off + b->len && b->off < off + len)
			return 1;
	}
	return 0;
}

static int sk_in_range(const struct testsink *k, uint64_t off, uint64_t len)
{
	return k->mem && off <= k->bytes && len <= k->bytes - off;
}

/* Report finished commits through the done callback, from the calling thread (poll or
 * finish), without the lock: the engine may call move() and convert() from inside it. Called
 * and returns with k->mu held. */
static int sk_report(struct testsink *k)
{
	int n = 0;

	for (;;) {
		int i;
		uint64_t cookie;

		for (i = 0; i < SK_NSTAGE && k->b[i].state != SB_DONE; i++)
			;
		if (i == SK_NSTAGE)
			break;
		k->b[i].state = SB_REPORTING;
		cookie = k->b[i].cookie;
		pthread_mutex_unlock(&k->mu);
		k->base.done(k->base.done_user, cookie, 0, NULL);
		pthread_mutex_lock(&k->mu);
		k->b[i].state = SB_FREE;
		k->in_use--;
		k->st->reported++;
		k->events++;
		pthread_cond_broadcast(&k->cv);
		n++;
	}
	return n;
}

static void *sk_copy_main(void *arg)
{
	struct testsink *k = arg;

	pthread_mutex_lock(&k->mu);
	for (;;) {
		int cand[SK_NSTAGE], nc = 0, i;
		unsigned delay;

		for (i = 0; i < SK_NSTAGE; i++)
			if (k->b[i].state == SB_COMMITTED)
				cand[nc++] = i;
		if (!nc) {
			if (k->stop)
				break;
			pthread_cond_wait(&k->cv, &k->mu);
			continue;
		}
		/* Out of order: any committed buffer may land first. */
		i = cand[(unsigned)rand_r(&k->seed) % (unsigned)nc];
		k->b[i].state = SB_COPYING;
		delay = k->max_delay_us ? (unsigned)rand_r(&k->seed) % (k->max_delay_us + 1) : 0;
		pthread_mutex_unlock(&k->mu);
		if (delay)
			sleep_us(delay);
		memcpy(k->mem + k->b[i].off, k->b[i].p, k->b[i].len);
		pthread_mutex_lock(&k->mu);
		k->b[i].state = SB_DONE;
		k->events++;
		pthread_cond_broadcast(&k->cv);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

static int sk_alloc(struct wlift__sink *s, uint64_t bytes, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;
	size_t n = (size_t)((bytes ? bytes : 1) + SK_ALIGN - 1) / SK_ALIGN * SK_ALIGN;
	uint8_t *m = aligned_alloc(SK_ALIGN, n);

	if (!m)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	memset(m, 0xCD, n); /* bytes nobody delivers show */
	pthread_mutex_lock(&k->mu);
	k->st->allocs++;
	if (k->mem) {
		sk_violation(k, "alloc called twice");
		pthread_mutex_unlock(&k->mu);
		free(m);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "alloc called twice");
	}
	k->mem = m;
	k->bytes = bytes;
	k->st->bytes = bytes;
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static void *sk_dest(struct wlift__sink *s, uint64_t off)
{
	struct testsink *k = (struct testsink *)s;

	(void)off;
	__atomic_add_fetch(&k->st->dests, 1, __ATOMIC_RELAXED);
	return NULL;
}

static int sk_acquire(struct wlift__sink *s, size_t len, void **buf, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;
	int i;

	*buf = NULL;
	pthread_mutex_lock(&k->mu);
	if (len > s->stage_bytes) {
		sk_violation(k, "acquire of %zu bytes > stage_bytes %zu", len, s->stage_bytes);
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "acquire too large");
	}
	for (i = 0; i < SK_NSTAGE && k->b[i].state != SB_FREE; i++)
		;
	if (i == SK_NSTAGE) {
		k->st->eagain++;
		pthread_mutex_unlock(&k->mu);
		return -EAGAIN;
	}
	k->b[i].state = SB_ACQUIRED;
	k->b[i].len = 0;
	if (++k->in_use > k->st->max_in_use)
		k->st->max_in_use = k->in_use;
	k->st->acquires++;
	*buf = k->b[i].p;
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static int sk_find(const struct testsink *k, const void *buf)
{
	for (int i = 0; i < SK_NSTAGE; i++)
		if (k->b[i].p == buf)
			return i;
	return -1;
}

static void sk_unacquire(struct wlift__sink *s, void *buf)
{
	struct testsink *k = (struct testsink *)s;
	int i;

	pthread_mutex_lock(&k->mu);
	i = sk_find(k, buf);
	if (i < 0 || k->b[i].state != SB_ACQUIRED) {
		sk_violation(k, "unacquire of %p (state %d)", buf, i < 0 ? -1 : k->b[i].state);
	} else {
		k->b[i].state = SB_FREE;
		k->in_use--;
		k->st->unacquires++;
		k->events++;
		pthread_cond_broadcast(&k->cv);
	}
	pthread_mutex_unlock(&k->mu);
}

static int sk_commit(struct wlift__sink *s, void *buf, uint64_t off, size_t len, uint64_t cookie,
		     wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;
	int i;

	pthread_mutex_lock(&k->mu);
	i = sk_find(k, buf);
	if (i < 0 || k->b[i].state != SB_ACQUIRED) {
		sk_violation(k, "commit of %p (state %d) at %llu", buf, i < 0 ? -1 : k->b[i].state,
			     (unsigned long long)off);
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "commit of a bad buffer");
	}
	if (!s->done)
		sk_violation(k, "commit before the done callback was set");
	if (len > s->stage_bytes)
		sk_violation(k, "commit of %zu bytes > stage_bytes %zu", len, s->stage_bytes);
	if (!sk_in_range(k, off, len)) {
		sk_violation(k, "commit of [%llu, +%zu) outside the %llu-byte destination",
			     (unsigned long long)off, len, (unsigned long long)k->bytes);
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "commit out of range");
	}
	if (sk_overlaps_inflight(k, off, len, i))
		sk_violation(k, "commit of [%llu, +%zu) overlaps a commit in flight",
			     (unsigned long long)off, len);
	k->b[i].off = off;
	k->b[i].len = len;
	k->b[i].cookie = cookie;
	k->b[i].state = SB_COMMITTED;
	k->st->commits++;
	k->st->commit_bytes += len;
	if (len > k->st->max_commit_len)
		k->st->max_commit_len = len;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static int sk_poll(struct wlift__sink *s, int wait, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;
	int n;

	(void)d;
	pthread_mutex_lock(&k->mu);
	k->st->polls++;
	n = s->done ? sk_report(k) : 0;
	if (!n && wait) {
		uint64_t ev = k->events;
		struct timespec dl = deadline_us(10000);

		while (k->events == ev && pthread_cond_timedwait(&k->cv, &k->mu, &dl) != ETIMEDOUT)
			;
		n = s->done ? sk_report(k) : 0;
	}
	pthread_mutex_unlock(&k->mu);
	return n;
}

static int sk_move(struct wlift__sink *s, uint64_t to, uint64_t from, uint64_t len, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;

	pthread_mutex_lock(&k->mu);
	k->st->moves++;
	k->st->move_bytes += len;
	if (to > from || !sk_in_range(k, from, len)) {
		sk_violation(k, "move of %llu bytes from %llu to %llu (destination %llu bytes)",
			     (unsigned long long)len, (unsigned long long)from,
			     (unsigned long long)to, (unsigned long long)k->bytes);
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "bad move");
	}
	if (sk_overlaps_inflight(k, to, from + len - to, -1))
		sk_violation(k, "move of [%llu, +%llu) to %llu while a commit into it is in flight",
			     (unsigned long long)from, (unsigned long long)len,
			     (unsigned long long)to);
	pthread_mutex_unlock(&k->mu);
	if (len)
		memmove(k->mem + to, k->mem + from, (size_t)len);
	return 0;
}

static int sk_convert(struct wlift__sink *s, wlift_dtype from, wlift_dtype to, uint64_t src,
		      uint64_t dst, uint64_t nelem, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;
	uint64_t fb = (uint64_t)wlift_dtype_bits(from) * nelem / 8;
	uint64_t tb = (uint64_t)wlift_dtype_bits(to) * nelem / 8;
	int ret;

	pthread_mutex_lock(&k->mu);
	k->st->converts++;
	if (!wlift_dtype_bits(from) || !wlift_dtype_bits(to) || !sk_in_range(k, src, fb) ||
	    !sk_in_range(k, dst, tb)) {
		sk_violation(k, "convert %d->%d of %llu elements %llu->%llu out of range", from, to,
			     (unsigned long long)nelem, (unsigned long long)src,
			     (unsigned long long)dst);
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "bad convert");
	}
	if (src != dst && src < dst + tb && dst < src + fb)
		sk_violation(k,
			     "convert with overlapping source [%llu,+%llu) and destination "
			     "[%llu,+%llu)",
			     (unsigned long long)src, (unsigned long long)fb,
			     (unsigned long long)dst, (unsigned long long)tb);
	if (src == dst && tb > fb)
		sk_violation(k, "in-place widening convert at %llu", (unsigned long long)src);
	if (sk_overlaps_inflight(k, src, fb, -1) || sk_overlaps_inflight(k, dst, tb, -1))
		sk_violation(k, "convert at %llu while a commit into it is in flight",
			     (unsigned long long)src);
	pthread_mutex_unlock(&k->mu);
	ret = wlift__convert_cpu(from, to, k->mem + src, k->mem + dst, (size_t)nelem);
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, NULL, "testsink: convert failed");
	return 0;
}

static int sk_release(struct wlift__sink *s, uint64_t off, uint64_t len)
{
	struct testsink *k = (struct testsink *)s;

	pthread_mutex_lock(&k->mu);
	k->st->releases++;
	k->st->release_bytes += len;
	if (!sk_in_range(k, off, len)) {
		sk_violation(k, "release of [%llu, +%llu) out of range", (unsigned long long)off,
			     (unsigned long long)len);
		pthread_mutex_unlock(&k->mu);
		return -EINVAL;
	}
	if (sk_overlaps_inflight(k, off, len, -1))
		sk_violation(k, "release of [%llu, +%llu) with a commit into it in flight",
			     (unsigned long long)off, (unsigned long long)len);
	pthread_mutex_unlock(&k->mu);
	/* Released bytes become undefined: poison them so that a tensor released by mistake
	 * shows. */
	if (len)
		memset(k->mem + off, 0xEE, (size_t)len);
	return 0;
}

static void sk_mem_free(struct wlift__mem *m)
{
	free(m->base);
	__atomic_add_fetch(&g_mem_frees, 1, __ATOMIC_RELAXED);
}

static int sk_export(struct wlift__sink *s, struct wlift__mem *out, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;

	pthread_mutex_lock(&k->mu);
	k->st->exports++;
	if (!k->mem || k->exported) {
		sk_violation(k, "export_mem %s", k->mem ? "twice" : "before alloc");
		pthread_mutex_unlock(&k->mu);
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "bad export");
	}
	k->exported = 1;
	memset(out, 0, sizeof(*out));
	out->base = k->mem;
	out->len = (size_t)k->bytes;
	out->device = -1; /* host-readable, so that the test can look at the views */
	out->free = sk_mem_free;
	out->release = NULL;
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static int sk_finish(struct wlift__sink *s, wlift_diag *d)
{
	struct testsink *k = (struct testsink *)s;

	(void)d;
	pthread_mutex_lock(&k->mu);
	k->st->finishes++;
	for (;;) {
		int busy = 0;

		if (s->done)
			sk_report(k);
		for (int i = 0; i < SK_NSTAGE; i++)
			busy |= k->b[i].state == SB_COMMITTED || k->b[i].state == SB_COPYING ||
				k->b[i].state == SB_DONE || k->b[i].state == SB_REPORTING;
		if (!busy)
			break;
		pthread_cond_wait(&k->cv, &k->mu);
	}
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static void sk_destroy(struct wlift__sink *s)
{
	struct testsink *k = (struct testsink *)s;

	if (!k)
		return;
	pthread_mutex_lock(&k->mu);
	k->stop = 1;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	if (k->th_started)
		pthread_join(k->th, NULL);
	for (int i = 0; i < SK_NSTAGE; i++) {
		k->st->leaked_acquired += k->b[i].state == SB_ACQUIRED;
		k->st->unreported += k->b[i].state == SB_DONE;
		free(k->b[i].p);
	}
	k->st->destroyed++;
	if (!k->exported)
		free(k->mem);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

static const struct wlift__sink_ops sk_ops = {
    .kind = "testsink",
    .alloc = sk_alloc,
    .dest = sk_dest,
    .acquire = sk_acquire,
    .unacquire = sk_unacquire,
    .commit = sk_commit,
    .poll = sk_poll,
    .move = sk_move,
    .convert = sk_convert,
    .release = sk_release,
    .export_mem = sk_export,
    .finish = sk_finish,
    .destroy = sk_destroy,
};

/* The sink's memory as "device" memory (ordinal 7), for the GPU Direct Storage seam. */
static void *sk_device_ptr(struct wlift__sink *s, uint64_t off, int *device)
{
	struct testsink *k = (struct testsink *)s;

	*device = 7;
	return k->mem ? k->mem + off : NULL;
}

static const struct wlift__sink_ops sk_ops_gds = {
    .kind = "testsink-device",
    .alloc = sk_alloc,
    .dest = sk_dest,
    .device_ptr = sk_device_ptr,
    .acquire = sk_acquire,
    .unacquire = sk_unacquire,
    .commit = sk_commit,
    .poll = sk_poll,
    .move = sk_move,
    .convert = sk_convert,
    .release = sk_release,
    .export_mem = sk_export,
    .finish = sk_finish,
    .destroy = sk_destroy,
};

static struct wlift__sink *sk_open(struct sk_stats *st, size_t stage_bytes, unsigned max_delay_us)
{
	struct testsink *k = calloc(1, sizeof(*k));

	ck_assert_ptr_nonnull(k);
	memset(st, 0, sizeof(*st));
	k->base.ops = &sk_ops;
	k->base.stage_bytes = stage_bytes;
	k->base.stage_align = SK_ALIGN;
	k->st = st;
	k->max_delay_us = max_delay_us;
	k->seed = 12345;
	pthread_mutex_init(&k->mu, NULL);
	cond_init_mono(&k->cv);
	for (int i = 0; i < SK_NSTAGE; i++) {
		k->b[i].p =
		    aligned_alloc(SK_ALIGN, (stage_bytes + SK_ALIGN - 1) / SK_ALIGN * SK_ALIGN);
		ck_assert_ptr_nonnull(k->b[i].p);
	}
	ck_assert_int_eq(pthread_create(&k->th, NULL, sk_copy_main, k), 0);
	k->th_started = 1;
	return &k->base;
}

/* After a load returned (the sink is destroyed by then). */
static void sk_assert_ok(const struct sk_stats *st, size_t stage_bytes, int ok)
{
	ck_assert_msg(st->violations == 0, "%u sink contract violations; first: %s", st->violations,
		      st->violation);
	ck_assert_int_eq(st->destroyed, 1);
	ck_assert_int_le(st->max_in_use, SK_NSTAGE);
	ck_assert_uint_le(st->max_commit_len, stage_bytes);
	ck_assert_int_eq(st->leaked_acquired, 0);
	if (ok) {
		ck_assert_uint_eq(st->allocs, 1);
		ck_assert_uint_eq(st->exports, 1);
		ck_assert_uint_ge(st->finishes, 1);
		ck_assert_uint_gt(st->commits, 0);
		ck_assert_uint_eq(st->reported, st->commits);
		ck_assert_int_eq(st->unreported, 0);
	}
}

/* ---- images and checks ------------------------------------------------------------------ */

struct tdef {
	const char *name;
	wlift_dtype dtype;
	uint32_t ndim;
	uint64_t shape[3];
};

static uint64_t tdef_nbytes(const struct tdef *t)
{
	uint64_t n = 1;

	for (uint32_t i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n * wlift_dtype_bits(t->dtype) / 8;
}

/* A safetensors image of these tensors (wlift_save_memory): F32 tensors hold finite values
 * that need rounding to BF16, the others random bytes. */
static uint8_t *build_image(const struct tdef *t, size_t n, unsigned seed, size_t *len)
{
	wlift_save_tensor st[16];
	void *data[16];
	void *buf = NULL;
	wlift_diag d;

	ck_assert_uint_le(n, 16);
	for (size_t i = 0; i < n; i++) {
		uint64_t nb = tdef_nbytes(&t[i]);
		uint8_t *p = malloc(nb ? (size_t)nb : 1);

		ck_assert_ptr_nonnull(p);
		if (t[i].dtype == WLIFT_F32) {
			for (uint64_t j = 0; j < nb / 4; j++) {
				float f = ((float)(rand_r(&seed) % 200001) - 100000.0f) / 977.0f;
				memcpy(p + 4 * j, &f, 4);
			}
		} else {
			for (uint64_t j = 0; j < nb; j++)
				p[j] = (uint8_t)rand_r(&seed);
		}
		data[i] = p;
		st[i].name = t[i].name;
		st[i].dtype = t[i].dtype;
		st[i].ndim = t[i].ndim;
		st[i].shape = t[i].shape;
		st[i].data = p;
		st[i].nbytes = nb;
	}
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_save_memory(st, n, NULL, 0, &buf, len, &d) == 0, "%s", d.message);
	for (size_t i = 0; i < n; i++)
		free(data[i]);
	return buf;
}

static void expect_bytes(const char *what, const void *got, const void *want, uint64_t n)
{
	const uint8_t *g = got, *w = want;

	if (!n)
		return;
	ck_assert_msg(g != NULL, "%s: no data", what);
	if (memcmp(g, w, (size_t)n) != 0) {
		uint64_t i = 0;

		while (g[i] == w[i])
			i++;
		ck_assert_msg(0, "%s: byte %llu of %llu is 0x%02x, expected 0x%02x", what,
			      (unsigned long long)i, (unsigned long long)n, g[i], w[i]);
	}
}

/* F32 -> BF16, round to nearest even (inputs are finite). */
static uint16_t bf16_rne(const uint8_t *p)
{
	uint32_t u;

	memcpy(&u, p, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* 0 when view v holds what the image says it should (raw bytes, or F32 tensors converted to
 * BF16); else the offset of the first bad byte + 1. */
/* Images of the checkpoint's files after the first (whose image the checks are given). */
static const uint8_t *g_more_imgs[4];

static const uint8_t *file_image(const wlift_tensor_view *v, const uint8_t *img)
{
	return v->info.file ? g_more_imgs[v->info.file - 1] : img;
}

static uint64_t view_mismatch(const wlift_tensor_view *v, const uint8_t *img)
{
	const uint8_t *want = file_image(v, img) + v->info.file_offset;
	const uint8_t *got = v->data;

	if (v->dtype == v->info.dtype) {
		if (v->nbytes != v->info.nbytes)
			return UINT64_MAX;
		for (uint64_t i = 0; i < v->nbytes; i++)
			if (got[i] != want[i])
				return i + 1;
		return 0;
	}
	if (v->info.dtype != WLIFT_F32 || v->dtype != WLIFT_BF16 || v->nbytes * 2 != v->info.nbytes)
		return UINT64_MAX;
	for (uint64_t i = 0; i < v->nbytes / 2; i++) {
		uint16_t h;

		memcpy(&h, got + 2 * i, 2);
		if (h != bf16_rne(want + 4 * i))
			return 2 * i + 1;
	}
	return 0;
}

static void check_view(const wlift_tensor_view *v, const uint8_t *img)
{
	uint64_t bad;

	ck_assert_int_eq(v->device, -1);
	if (v->nbytes)
		ck_assert_ptr_nonnull(v->data);
	bad = view_mismatch(v, img);
	if (bad == UINT64_MAX)
		ck_assert_msg(0, "%s: %llu bytes of %s for %llu stored bytes of %s", v->info.name,
			      (unsigned long long)v->nbytes, wlift_dtype_name(v->dtype),
			      (unsigned long long)v->info.nbytes, wlift_dtype_name(v->info.dtype));
	if (bad && v->dtype == v->info.dtype)
		expect_bytes(v->info.name, v->data, file_image(v, img) + v->info.file_offset,
			     v->nbytes);
	ck_assert_msg(bad == 0, "%s: converted value at byte %llu differs", v->info.name,
		      (unsigned long long)(bad - 1));
}

/* Every loaded tensor equals the image at its offsets. */
static void check_result(const wlift_result *r, const uint8_t *img, size_t count)
{
	ck_assert_uint_eq(wlift_result_count(r), count);
	for (size_t i = 0; i < count; i++) {
		wlift_tensor_view v;

		ck_assert_ptr_nonnull(wlift_result_tensor(r, i));
		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		check_view(&v, img);
		ck_assert_ptr_eq(wlift_result_find(r, v.info.name), wlift_result_tensor(r, i));
	}
}

#define MAX_T 16
struct ready_ctx {
	const wlift_ckpt *ck;
	const uint8_t *img;
	int n[MAX_T];
	int calls;
	int cancel_after; /* > 0: return non-zero from the cancel_after'th non-empty tensor on */
	int nonempty;
	double cancel_t; /* when it first returned non-zero */
	int bad;	 /* tensors whose bytes had not all landed when ready fired */
	char bad_name[128];
};

static int on_ready(const wlift_tensor *t, void *user)
{
	struct ready_ctx *rc = user;
	wlift_tensor_view v;
	int64_t i;
	int calls;

	wlift_tensor_get(t, &v);
	i = wlift_ckpt_find(rc->ck, v.info.name);
	if (i >= 0 && i < MAX_T)
		__atomic_add_fetch(&rc->n[i], 1, __ATOMIC_RELAXED);
	calls = __atomic_add_fetch(&rc->calls, 1, __ATOMIC_RELAXED);
	if (rc->img && view_mismatch(&v, rc->img) &&
	    __atomic_add_fetch(&rc->bad, 1, __ATOMIC_RELAXED) == 1)
		snprintf(rc->bad_name, sizeof(rc->bad_name), "%s", v.info.name);
	(void)calls;
	if (v.info.nbytes &&
	    __atomic_add_fetch(&rc->nonempty, 1, __ATOMIC_RELAXED) == rc->cancel_after)
		rc->cancel_t = wlift__now(); /* once; read after the load's threads are joined */
	return rc->cancel_after > 0 &&
	       __atomic_load_n(&rc->nonempty, __ATOMIC_RELAXED) >= rc->cancel_after;
}

static void ready_init(struct ready_ctx *rc, const wlift_ckpt *ck, const uint8_t *img)
{
	memset(rc, 0, sizeof(*rc));
	rc->ck = ck;
	rc->img = img;
}

/* Ready fired exactly once for each loaded tensor, after its bytes landed. */
static void check_ready(const struct ready_ctx *rc, const wlift_result *r)
{
	ck_assert_msg(rc->bad == 0, "%d tensors were not complete when ready fired (first: %s)",
		      rc->bad, rc->bad_name);
	ck_assert_int_eq(rc->calls, (int)wlift_result_count(r));
	for (size_t i = 0; i < wlift_result_count(r); i++) {
		wlift_tensor_view v;
		int64_t k;

		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		k = wlift_ckpt_find(rc->ck, v.info.name);
		ck_assert_int_ge(k, 0);
		ck_assert_int_lt(k, MAX_T);
		ck_assert_msg(rc->n[k] == 1, "ready fired %d times for %s", rc->n[k], v.info.name);
	}
}

static uint64_t selected_bytes(const wlift_ckpt *ck)
{
	uint64_t total = 0;

	for (size_t i = 0; i < wlift_ckpt_count(ck); i++) {
		wlift_tensor_info ti;

		ck_assert_int_eq(wlift_ckpt_info(ck, i, &ti), 0);
		total += ti.nbytes;
	}
	return total;
}

/* The mixed image of tests 1-5: odd sizes and offsets, a 1 MiB + 7 tensor. */
static const struct tdef mixed[] = {
    {"a_one", WLIFT_U8, 1, {1}},	   {"b_three", WLIFT_U8, 1, {3}},
    {"c_f32_100k", WLIFT_F32, 1, {25600}}, {"d_big", WLIFT_U8, 1, {(1u << 20) + 7}},
    {"e_bf16", WLIFT_BF16, 2, {3, 5}},	   {"f_i64", WLIFT_I64, 1, {7}},
    {"g_empty", WLIFT_F32, 2, {0, 4}},	   {"h_f64", WLIFT_F64, 3, {2, 3, 4}},
    {"i_bool", WLIFT_BOOL, 1, {5}},	   {"j_f32_odd", WLIFT_F32, 2, {33, 17}},
};
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

static wlift_load_opts opts_for(unsigned threads, size_t chunk, size_t inflight)
{
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;

	o.threads = threads;
	o.chunk_bytes = chunk;
	o.max_inflight_bytes = inflight;
	o.direct = WLIFT_DIRECT_OFF;
	return o;
}

/* One successful load of the whole checkpoint through the test source (and sink, when
 * stage_bytes > 0), with every check. */
static void load_ok(struct testsrc *s, wlift_ckpt *ck, const uint8_t *img, const wlift_load_opts *o,
		    size_t stage_bytes, struct sk_stats *sst, wlift_stats *out_stats)
{
	struct ready_ctx rc;
	wlift_result *r = NULL;
	wlift_stats st;
	wlift_diag d;
	struct ts_stats tst;
	int frees0 = __atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED);
	struct wlift__sink *sink = stage_bytes ? sk_open(sst, stage_bytes, 2000) : NULL;

	ready_init(&rc, ck, img);
	if (s)
		ts_reset_load(s);
	wlift_diag_clear(&d);
	ck_assert_msg(wlift__load(ck, o, sink, on_ready, &rc, &r, &d) == 0, "load: %s (%s)",
		      d.message, wlift_errname(d.code));
	ck_assert_ptr_nonnull(r);
	if (s)
		ts_assert_idle(s, 1);
	check_result(r, img, wlift_ckpt_count(ck));
	check_ready(&rc, r);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	ck_assert_uint_eq(st.bytes, selected_bytes(ck));
	ck_assert_uint_ge(st.bytes_read, st.bytes);
	if (s) {
		tst = ts_stats_get(s);
		ck_assert_str_eq(st.strategy, "testsrc");
		ck_assert_uint_gt(tst.reads, 0);
		if (o->direct == WLIFT_DIRECT_ON && s->cfg.dio_align) {
			ck_assert_int_eq(st.direct, 1);
			ck_assert_uint_gt(tst.direct_calls, 0);
			ck_assert_uint_gt(tst.direct_reads, 0);
		} else {
			/* Bytes in flight stay under max_inflight_bytes (or one chunk, when that
			 * is larger). */
			uint64_t budget = o->max_inflight_bytes > st.chunk_bytes
					      ? o->max_inflight_bytes
					      : st.chunk_bytes;

			ck_assert_int_eq(st.direct, 0);
			ck_assert_uint_eq(tst.direct_reads, 0);
			ck_assert_msg(
			    tst.max_inflight_bytes <= budget,
			    "%llu bytes in flight (%d reads) with max_inflight_bytes %zu, "
			    "chunk %zu, %u threads, strategy %d",
			    (unsigned long long)tst.max_inflight_bytes, tst.max_inflight,
			    o->max_inflight_bytes, st.chunk_bytes, st.threads, o->strategy);
		}
	}
	if (sink)
		sk_assert_ok(sst, stage_bytes, 1);
	if (out_stats)
		*out_stats = st;
	wlift_result_free(r);
	if (sink)
		ck_assert_int_eq(__atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED), frees0 + 1);
}

/* ---- 1, 2: host sink through the asynchronous source ------------------------------------- */

static void host_sweep(int short_reads)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 7, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s;
	wlift_ckpt *ck;
	static const unsigned threads[] = {1, 2, 4};
	static const size_t chunks[] = {4096, 65536};
	/* AUTO: one read in flight per worker; URING: the engine gives the queue a depth of
	 * max_inflight_bytes / chunk / threads, so completions also come out of order within
	 * one queue. */
	static const int strategies[] = {WLIFT_STRATEGY_AUTO, WLIFT_STRATEGY_URING};
	struct ts_stats fin;

	cfg.short_reads = short_reads;
	s = ts_open(img, len, &cfg);
	ck = ts_ckpt(s);
	ck_assert_uint_eq(wlift_ckpt_count(ck), NMIXED);
	for (size_t t = 0; t < 3; t++)
		for (size_t c = 0; c < 2; c++)
			for (size_t g = 0; g < 2; g++) {
				wlift_load_opts o = opts_for(threads[t], chunks[c], 3 * chunks[c]);

				o.strategy = strategies[g];
				/* The largest chunk with the slowest reads would take a while: 1 ms
				 * per 4 KiB read is enough to reorder everything. */
				s->cfg.max_delay_us = chunks[c] == 4096 ? 1000 : 2000;
				load_ok(s, ck, img, &o, 0, NULL, NULL);
			}
	fin = ts_stats_get(s);
	if (short_reads)
		ck_assert_uint_gt(fin.short_reads, 0);
	fprintf(stderr, "host_sweep(short=%d): %lu reads, %lu short, max depth %u, %lu EBUSY\n",
		short_reads, fin.reads, fin.short_reads, fin.max_depth, fin.ebusy);
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);
	free(img);
}

START_TEST(async_host)
{
	host_sweep(0);
}
END_TEST

START_TEST(async_host_short_reads)
{
	host_sweep(1);
}
END_TEST

/* O_DIRECT placement and fix-ups in the host arena, through the test source. */
START_TEST(async_host_direct)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 8, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s;
	wlift_ckpt *ck;
	wlift_stats st;

	cfg.dio_align = 4096;
	cfg.short_reads = 1;
	s = ts_open(img, len, &cfg);
	ck = ts_ckpt(s);
	for (unsigned threads = 1; threads <= 3; threads += 2) {
		wlift_load_opts o = opts_for(threads, 65536, 4 * 65536);

		o.direct = WLIFT_DIRECT_ON;
		load_ok(s, ck, img, &o, 0, NULL, &st);
		ck_assert_uint_gt(st.fixups, 0);
	}
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* ---- 3: injected EIO -------------------------------------------------------------------- */

static void expect_eio(struct testsrc *s, wlift_ckpt *ck, const wlift_load_opts *o,
		       size_t stage_bytes, const char *msg)
{
	struct ready_ctx rc;
	struct sk_stats sst;
	struct wlift__sink *sink = stage_bytes ? sk_open(&sst, stage_bytes, 2000) : NULL;
	wlift_result *r = (wlift_result *)1;
	wlift_diag d;
	int frees0 = __atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED);

	ready_init(&rc, ck, s->img);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__load(ck, o, sink, on_ready, &rc, &r, &d), -EIO);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(d.code, -EIO);
	ck_assert_str_eq(d.file, "test://image");
	ck_assert_msg(strstr(d.message, msg) != NULL, "diag message \"%s\" lacks \"%s\"", d.message,
		      msg);
	ck_assert_int_eq(rc.bad, 0);
	ts_assert_idle(s, 0);
	if (sink) {
		sk_assert_ok(&sst, stage_bytes, 0);
		/* exported memory, if any, was freed with the failed result */
		ck_assert_int_eq(__atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED),
				 frees0 + (int)sst.exports);
	}
}

START_TEST(injected_eio)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 9, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s;
	wlift_ckpt *ck;
	wlift_tensor_info ti;
	char msg[128];
	wlift_diag d;
	struct wlift__source *srcs[1];

	s = ts_open(img, len, &cfg);
	ck = ts_ckpt(s);
	ck_assert_int_ge(wlift_ckpt_find(ck, "d_big"), 0);
	ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)wlift_ckpt_find(ck, "d_big"), &ti), 0);
	s->cfg.eio_off = (int64_t)(ti.file_offset + 500001);
	snprintf(msg, sizeof(msg), "testsrc: injected EIO at offset %lld",
		 (long long)s->cfg.eio_off);
	for (unsigned threads = 1; threads <= 4; threads *= 2) {
		wlift_load_opts o = opts_for(threads, 4096, 3 * 4096);

		expect_eio(s, ck, &o, 0, msg);
		s->cfg.short_reads = 1;
		expect_eio(s, ck, &o, 0, msg);
		expect_eio(s, ck, &o, 65536, msg);
		s->cfg.short_reads = 0;
	}
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 0);

	/* An error in the header read fails the open, with the source's message. */
	s->cfg.eio_off = 3;
	srcs[0] = &s->base;
	ck = (wlift_ckpt *)1;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__ckpt_open_sources(NULL, srcs, 1, &ck, &d), -EIO);
	ck_assert_ptr_null(ck);
	ck_assert_ptr_nonnull(strstr(d.message, "testsrc: injected EIO at offset 3"));
	ts_assert_idle(s, 0);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* The object shrinks after open: reads past the new end come back short, as from a truncated
 * file, and the load fails with WLIFT_ECHANGED naming the source. */
START_TEST(truncated_source)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 18, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);
	wlift_tensor_info ti;

	ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)wlift_ckpt_find(ck, "d_big"), &ti), 0);
	s->cfg.trunc_at = (int64_t)(ti.file_offset + 300000);
	for (int staged = 0; staged < 2; staged++)
		for (int g = 0; g < 2; g++) {
			wlift_load_opts o = opts_for(2, 65536, 4 * 65536);
			struct sk_stats sst;
			struct wlift__sink *sink = staged ? sk_open(&sst, 65536, 2000) : NULL;
			wlift_result *r = (wlift_result *)1;
			struct ready_ctx rc;
			wlift_diag d;

			o.strategy = g ? WLIFT_STRATEGY_URING : WLIFT_STRATEGY_AUTO;
			ready_init(&rc, ck, img);
			wlift_diag_clear(&d);
			ck_assert_int_eq(wlift__load(ck, &o, sink, on_ready, &rc, &r, &d),
					 WLIFT_ECHANGED);
			ck_assert_ptr_null(r);
			ck_assert_int_eq(d.code, WLIFT_ECHANGED);
			ck_assert_ptr_nonnull(strstr(d.file, "test://image"));
			ck_assert_int_eq(rc.bad, 0);
			ts_assert_idle(s, 0);
			if (staged)
				sk_assert_ok(&sst, 65536, 0);
		}
	wlift_ckpt_close(ck);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* ---- 4: cancellation -------------------------------------------------------------------- */

static int cancel_progress(uint64_t done, uint64_t total, void *user)
{
	(void)done;
	(void)total;
	(*(int *)user)++;
	return 1;
}

static void expect_canceled(struct testsrc *s, wlift_ckpt *ck, const wlift_load_opts *o,
			    size_t stage_bytes, int cancel_after)
{
	struct ready_ctx rc;
	struct sk_stats sst;
	struct wlift__sink *sink = stage_bytes ? sk_open(&sst, stage_bytes, 2000) : NULL;
	wlift_result *r = (wlift_result *)1;
	wlift_diag d;
	int frees0 = __atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED);

	ready_init(&rc, ck, s->img);
	rc.cancel_after = cancel_after;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__load(ck, o, sink, on_ready, &rc, &r, &d), WLIFT_ECANCELED);
	ck_assert_ptr_null(r);
	ck_assert_msg(d.code == WLIFT_ECANCELED, "diag code %d (%s): %s", d.code,
		      wlift_errname(d.code), d.message);
	if (cancel_after)
		ck_assert_int_ge(rc.nonempty, cancel_after);
	ck_assert_int_eq(rc.bad, 0);
	ts_assert_idle(s, 0);
	if (sink) {
		sk_assert_ok(&sst, stage_bytes, 0);
		ck_assert_int_eq(__atomic_load_n(&g_mem_frees, __ATOMIC_RELAXED),
				 frees0 + (int)sst.exports);
	}
}

START_TEST(cancel_from_ready)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 10, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);

	for (unsigned threads = 1; threads <= 4; threads *= 2) {
		wlift_load_opts o = opts_for(threads, 4096, 4 * 4096);

		expect_canceled(s, ck, &o, 0, 1);
		expect_canceled(s, ck, &o, 65536, 1);
	}
	fprintf(stderr, "cancel_from_ready: %lu queue cancels, %lu canceled reads\n",
		ts_stats_get(s).cancels, ts_stats_get(s).canceled_reads);
	wlift_ckpt_close(ck);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

START_TEST(cancel_from_progress)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 11, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);
	int calls = 0;

	for (int staged = 0; staged < 2; staged++) {
		wlift_load_opts o = opts_for(2, 4096, 4 * 4096);

		calls = 0;
		o.progress = cancel_progress;
		o.progress_user = &calls;
		expect_canceled(s, ck, &o, staged ? 65536 : 0, 0);
		ck_assert_int_ge(calls, 1);
	}
	wlift_ckpt_close(ck);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* A stop (cancel or error) asks the reads in flight to stop (rq cancel) rather than waiting
 * them out: with reads that take 0.8 s each, the load returns well before the reads in
 * flight at the cancel would have completed. */
START_TEST(cancel_is_prompt)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 17, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);

	s->cfg.min_delay_us = s->cfg.max_delay_us = 800000;
	for (int staged = 0; staged < 2; staged++) {
		/* two workers with four reads in flight each */
		wlift_load_opts o = opts_for(2, 65536, 8 * 65536);
		struct ready_ctx rc;
		struct sk_stats sst;
		struct wlift__sink *sink = staged ? sk_open(&sst, 65536, 0) : NULL;
		wlift_result *r = (wlift_result *)1;
		wlift_diag d;
		struct ts_stats tst;
		double elapsed;

		o.strategy = WLIFT_STRATEGY_URING;
		ready_init(&rc, ck, img);
		rc.cancel_after = 1;
		wlift_diag_clear(&d);
		ck_assert_int_eq(wlift__load(ck, &o, sink, on_ready, &rc, &r, &d), WLIFT_ECANCELED);
		elapsed = wlift__now() - rc.cancel_t;
		ck_assert_ptr_null(r);
		ts_assert_idle(s, 0);
		tst = ts_stats_get(s);
		fprintf(stderr,
			"cancel_is_prompt(staged=%d): returned %.3f s after the cancel; %lu queue "
			"cancels, %lu canceled reads\n",
			staged, elapsed, tst.cancels, tst.canceled_reads);
		ck_assert_msg(
		    elapsed < 0.4,
		    "the load returned %.3f s after the ready callback canceled it (reads "
		    "take 0.8 s; %lu queue cancels)",
		    elapsed, tst.cancels);
		if (staged)
			sk_assert_ok(&sst, 65536, 0);
	}
	wlift_ckpt_close(ck);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* ---- 5: the staged sink ----------------------------------------------------------------- */

START_TEST(staged_sink)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 12, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);
	struct sk_stats sst;
	wlift_diag d;
	/* chunk == stage; chunk larger than the stage (the stage caps it); short reads */
	static const struct {
		unsigned threads;
		size_t chunk, stage;
		int short_reads;
	} cases[] = {
	    {1, 65536, 65536, 0}, {3, 65536, 65536, 0},	    {2, 1 << 20, 65536, 0},
	    {2, 65536, 65536, 1}, {4, 1 << 20, 1 << 20, 1},
	};
	static const int strategies[] = {WLIFT_STRATEGY_AUTO, WLIFT_STRATEGY_URING};

	for (size_t j = 0; j < 2 * sizeof(cases) / sizeof(cases[0]); j++) {
		size_t i = j / 2;
		wlift_load_opts o = opts_for(cases[i].threads, cases[i].chunk, 4 * cases[i].chunk);

		o.strategy = strategies[j % 2];
		s->cfg.short_reads = cases[i].short_reads;
		load_ok(s, ck, img, &o, cases[i].stage, &sst, NULL);
		fprintf(stderr, "staged_sink case %zu: %lu commits, %lu EAGAIN, max %d in use\n", i,
			sst.commits, sst.eagain, sst.max_in_use);
	}
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);

	/* The library's memory source with the staged sink. */
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_open_memory(NULL, img, len, "img", &ck, &d) == 0, "%s", d.message);
	for (unsigned threads = 1; threads <= 3; threads += 2) {
		wlift_load_opts o = opts_for(threads, 65536, 4 * 65536);

		load_ok(NULL, ck, img, &o, 65536, &sst, NULL);
	}
	wlift_ckpt_close(ck);
	free(img);
}
END_TEST

/* A source that can read into device memory and a sink whose destination is device memory:
 * the engine reads through read_to_device, never staging; a source without it is staged. */
START_TEST(gds_seam)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 21, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck;
	struct sk_stats sst;
	struct wlift__sink *k;
	wlift_load_opts o = opts_for(2, 65536, 4 * 65536);
	wlift_result *r = NULL;
	wlift_diag d;

	s->base.ops = &ts_ops_gds;
	ck = ts_ckpt(s);
	k = sk_open(&sst, 65536, 500);
	k->ops = &sk_ops_gds;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift__load(ck, &o, k, NULL, NULL, &r, &d) == 0, "%s", d.message);
	check_result(r, img, NMIXED);
	ck_assert_int_gt(__atomic_load_n(&g_gds_reads, __ATOMIC_RELAXED), 0);
	ck_assert_uint_eq(sst.commits, 0); /* nothing was staged */
	ck_assert_uint_eq(sst.acquires, 0);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

static const struct tdef floats[] = {
    {"f_a", WLIFT_F32, 1, {1}},	      {"f_b", WLIFT_F32, 2, {129, 257}},
    {"f_c", WLIFT_F32, 1, {3}},	      {"g_bf16", WLIFT_BF16, 1, {11}},
    {"h_u8", WLIFT_U8, 1, {77}},      {"i_i32", WLIFT_I32, 1, {9}},
    {"j_f32", WLIFT_F32, 1, {40000}},
};
#define NFLOATS (sizeof(floats) / sizeof(floats[0]))

START_TEST(staged_convert)
{
	size_t len;
	uint8_t *img = build_image(floats, NFLOATS, 13, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s = ts_open(img, len, &cfg);
	wlift_ckpt *ck = ts_ckpt(s);
	struct sk_stats sst;

	for (int staged = 0; staged < 2; staged++)
		for (unsigned threads = 1; threads <= 3; threads += 2) {
			wlift_load_opts o = opts_for(threads, 65536, 3 * 65536);

			o.dtype = WLIFT_BF16;
			/* check_view compares F32 tensors with their BF16 rounding */
			load_ok(s, ck, img, &o, staged ? 65536 : 0, &sst, NULL);
			if (staged)
				ck_assert_uint_gt(sst.converts, 0);
		}
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

START_TEST(staged_direct)
{
	size_t len;
	uint8_t *img = build_image(mixed, NMIXED, 14, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s;
	wlift_ckpt *ck;
	struct sk_stats sst;
	wlift_stats st;
	int unaligned = 0;

	cfg.dio_align = 4096;
	s = ts_open(img, len, &cfg);
	ck = ts_ckpt(s);
	for (size_t i = 0; i < wlift_ckpt_count(ck); i++) {
		wlift_tensor_info ti;

		wlift_ckpt_info(ck, i, &ti);
		unaligned += ti.nbytes && ti.file_offset % 64 != 0;
	}
	ck_assert_int_gt(unaligned, 0); /* the case needs tensors off 64-byte file offsets */
	for (int sr = 0; sr < 2; sr++)
		for (unsigned threads = 1; threads <= 3; threads += 2) {
			wlift_load_opts o = opts_for(threads, 65536, 4 * 65536);

			s->cfg.short_reads = sr;
			o.direct = WLIFT_DIRECT_ON;
			load_ok(s, ck, img, &o, 65536, &sst, &st);
			ck_assert_uint_gt(sst.moves, 0);
			ck_assert_uint_gt(st.fixups, 0);
			ck_assert_uint_gt(st.fixup_bytes, 0);
		}
	fprintf(stderr, "staged_direct: %lu reads (%lu direct), %lu past the end, %lu moves\n",
		ts_stats_get(s).reads, ts_stats_get(s).direct_reads, ts_stats_get(s).past_end,
		sst.moves);
	wlift_ckpt_close(ck);
	ts_assert_idle(s, 1);
	wlift__source_unref(&s->base);
	free(img);
}
END_TEST

/* Two files, each its own test source of the same kind: one read queue per worker serves
 * both (reads carry their source). */
START_TEST(two_sources)
{
	static const struct tdef second[] = {
	    {"x_big", WLIFT_U8, 1, {200001}},
	    {"y_f32", WLIFT_F32, 2, {7, 9}},
	    {"z_one", WLIFT_I8, 1, {1}},
	};
	size_t len0, len1;
	uint8_t *img0 = build_image(mixed, NMIXED, 19, &len0);
	uint8_t *img1 = build_image(second, 3, 20, &len1);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s0 = ts_open(img0, len0, &cfg), *s1;
	struct wlift__source *srcs[2];
	wlift_ckpt *ck = NULL;
	struct sk_stats sst;
	wlift_diag d;

	cfg.seed = 2;
	cfg.short_reads = 1;
	s1 = ts_open(img1, len1, &cfg);
	srcs[0] = &s0->base;
	srcs[1] = &s1->base;
	g_more_imgs[0] = img1;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift__ckpt_open_sources(NULL, srcs, 2, &ck, &d) == 0, "%s", d.message);
	ck_assert_uint_eq(wlift_ckpt_nfiles(ck), 2);
	ck_assert_uint_eq(wlift_ckpt_count(ck), NMIXED + 3);
	for (int staged = 0; staged < 2; staged++)
		for (int g = 0; g < 2; g++) {
			wlift_load_opts o = opts_for(3, 65536, 6 * 65536);

			o.strategy = g ? WLIFT_STRATEGY_URING : WLIFT_STRATEGY_AUTO;
			load_ok(s0, ck, img0, &o, staged ? 65536 : 0, &sst, NULL);
			ts_assert_idle(s1, 1);
			ck_assert_uint_gt(ts_stats_get(s1).reads, 0);
		}
	wlift_ckpt_close(ck);
	wlift__source_unref(&s0->base);
	wlift__source_unref(&s1->base);
	free(img0);
	free(img1);
}
END_TEST

/* ---- 6: rows ---------------------------------------------------------------------------- */

static const struct tdef rowsimg[] = {
    {"a", WLIFT_U8, 1, {5}},
    {"t", WLIFT_F32, 2, {64, 37}},
    {"z", WLIFT_F64, 1, {3}},
};

struct rows_case {
	uint64_t begin, end;
	size_t stage_bytes; /* 0: host sink */
	int direct;
	int bf16; /* convert to BF16 */
};

static void load_rows(struct testsrc *s, wlift_ckpt *ck, const uint8_t *img,
		      const struct rows_case *c)
{
	static const char *const names[] = {"t"};
	const wlift_rows rows[] = {{c->begin, c->end}};
	const uint64_t rowb = 37 * 4, nrows = c->end - c->begin;
	wlift_load_opts o = opts_for(2, 4096, 3 * 4096);
	struct sk_stats sst;
	struct wlift__sink *sink = c->stage_bytes ? sk_open(&sst, c->stage_bytes, 2000) : NULL;
	struct ready_ctx rc;
	wlift_result *r = NULL;
	wlift_tensor_info ti;
	wlift_tensor_view v;
	wlift_diag d;
	struct ts_stats tst;

	ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)wlift_ckpt_find(ck, "t"), &ti), 0);
	o.names = names;
	o.nnames = 1;
	o.rows = rows;
	o.direct = c->direct ? WLIFT_DIRECT_ON : WLIFT_DIRECT_OFF;
	o.dtype = c->bf16 ? WLIFT_BF16 : WLIFT_DTYPE_NONE;
	ts_reset_load(s);
	ready_init(&rc, ck, img);
	wlift_diag_clear(&d);
	ck_assert_msg(wlift__load(ck, &o, sink, on_ready, &rc, &r, &d) == 0, "load: %s", d.message);
	ts_assert_idle(s, 1);
	ck_assert_uint_eq(wlift_result_count(r), 1);
	ck_assert_ptr_nonnull(wlift_result_find(r, "t"));
	wlift_tensor_get(wlift_result_find(r, "t"), &v);
	ck_assert_uint_eq(v.info.ndim, 2);
	ck_assert_uint_eq(v.info.shape[0], nrows);
	ck_assert_uint_eq(v.info.shape[1], 37);
	ck_assert_uint_eq(v.info.nbytes, nrows * rowb);
	ck_assert_uint_eq(v.nbytes, c->bf16 ? nrows * rowb / 2 : nrows * rowb);
	ck_assert_uint_eq(v.info.file_offset, ti.file_offset + c->begin * rowb);
	ck_assert_uint_eq(v.info.data_begin, ti.data_begin + c->begin * rowb);
	ck_assert_uint_eq(v.info.data_end, ti.data_begin + c->end * rowb);
	if (!c->bf16)
		expect_bytes("t[rows]", v.data, img + ti.file_offset + c->begin * rowb,
			     nrows * rowb);
	check_view(&v, img); /* with BF16: the rows' values rounded */
	check_ready(&rc, r);
	tst = ts_stats_get(s);
	if (!c->direct && nrows) {
		/* only those rows' bytes were read */
		ck_assert_uint_ge(tst.lo, ti.file_offset + c->begin * rowb);
		ck_assert_uint_le(tst.hi, ti.file_offset + c->end * rowb);
	}
	if (sink)
		sk_assert_ok(&sst, c->stage_bytes, nrows != 0);
	wlift_result_free(r);
}

static void rows_cases(int staged, unsigned seed)
{
	size_t len;
	uint8_t *img = build_image(rowsimg, 3, seed, &len);
	struct ts_cfg cfg = ts_default();
	struct testsrc *s;
	wlift_ckpt *ck;
	const size_t sb = staged ? 65536 : 0;
	/* a few rows (one chunk); rows over several 4 KiB chunks; then the same with short
	 * reads, O_DIRECT placement, and BF16 conversion */
	const struct rows_case cases[] = {
	    {2, 5, sb, 0, 0},	{5, 50, sb, 0, 0}, {0, 64, sb, 0, 0}, {2, 5, sb, 1, 0},
	    {5, 50, sb, 1, 0},	{2, 5, sb, 0, 1},  {5, 50, sb, 0, 1}, {5, 50, sb, 1, 1},
	    {63, 64, sb, 0, 0}, {3, 3, sb, 0, 0},
	};

	cfg.dio_align = 4096;
	s = ts_open(img, len, &cfg);
	ck = ts_ckpt(s);
	for (int sr = 0; sr < 2; sr++) {
		s->cfg.short_reads = sr;
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			load_rows(s, ck, img, &cases[i]);
	}
	wlift_ckpt_close(ck);
	wlift__source_unref(&s->base);
	free(img);
}

START_TEST(rows_host)
{
	rows_cases(0, 15);
}
END_TEST

START_TEST(rows_staged)
{
	rows_cases(1, 16);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("seams");
	TCase *tc = tcase_create("seams");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, async_host);
	tcase_add_test(tc, async_host_short_reads);
	tcase_add_test(tc, async_host_direct);
	tcase_add_test(tc, injected_eio);
	tcase_add_test(tc, truncated_source);
	tcase_add_test(tc, cancel_from_ready);
	tcase_add_test(tc, cancel_from_progress);
	tcase_add_test(tc, cancel_is_prompt);
	tcase_add_test(tc, staged_sink);
	tcase_add_test(tc, gds_seam);
	tcase_add_test(tc, staged_convert);
	tcase_add_test(tc, staged_direct);
	tcase_add_test(tc, two_sources);
	tcase_add_test(tc, rows_host);
	tcase_add_test(tc, rows_staged);
	suite_add_tcase(su, tc);
	return wt_run(su);
}
