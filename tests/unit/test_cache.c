/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local cache decorator (src/source/cache.c) in front of a remote source of the test's
 * own, not HTTP: a "remote" whose read queue completes reads on a helper thread, out of order,
 * after random delays, some of them short (the engine resubmits the rest) and, when asked, one
 * failing. A cold load through the cache gives the image's bytes and leaves an entry equal to
 * the image; the next open asks the remote's open once and reads the entry through the local
 * file source; a changed identity drops the entry; a failed load leaves no entry and no
 * temporary file; a remote without identity is not cached. Also under TSan and ASan.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/ckpt.h"
#include "source/cache.h"
#include "testutil.h"

/* ---- the "remote" source ----------------------------------------------------------------- */

static const uint8_t *g_img;
static size_t g_len;
static char g_etag[64] = "\"v1\"";
static int g_fail_at = -1;   /* the read number that fails (-1: none) */
static int g_reads;	     /* atomic */
static int g_opens;	     /* atomic */

struct rsrc {
	struct wlift__source base;
};

struct ritem {
	struct wlift__read r;
	int64_t res;
	int state; /* 0 free, 1 queued, 2 done */
	unsigned delay_us;
};

struct rq {
	struct wlift__rq base;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ritem *it;
	pthread_t th;
	int stop, canceled;
	unsigned seed;
};

static void *helper(void *arg)
{
	struct rq *q = arg;

	pthread_mutex_lock(&q->mu);
	while (!q->stop) {
		struct ritem *pick = NULL;
		unsigned n = 0;
		for (unsigned i = 0; i < q->base.depth; i++)
			if (q->it[i].state == 1 && rand_r(&q->seed) % ++n == 0)
				pick = &q->it[i]; /* a random queued read: out of order */
		if (!pick) {
			pthread_cond_wait(&q->cv, &q->mu);
			continue;
		}
		pthread_mutex_unlock(&q->mu);
		usleep(pick->delay_us);
		{
			int k = __atomic_fetch_add(&g_reads, 1, __ATOMIC_RELAXED);
			size_t n2 = pick->r.len;
			if (pick->r.off >= g_len)
				n2 = 0;
			else if (n2 > g_len - pick->r.off)
				n2 = g_len - pick->r.off;
			if (n2 > 4096 && k % 3 == 1)
				n2 /= 2; /* a short read in the middle */
			memcpy(pick->r.dst, g_img + pick->r.off, n2);
			pick->res = k == g_fail_at ? -EIO : (int64_t)n2;
		}
		pthread_mutex_lock(&q->mu);
		pick->state = 2;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static int rq_submit(struct wlift__rq *rq, struct wlift__source *s, const struct wlift__read *r,
		     wlift_diag *d)
{
	struct rq *q = (struct rq *)rq;

	(void)s;
	(void)d;
	pthread_mutex_lock(&q->mu);
	for (unsigned i = 0; i < rq->depth; i++) {
		if (q->it[i].state == 0) {
			q->it[i].r = *r;
			q->it[i].state = 1;
			q->it[i].delay_us = (unsigned)(rand_r(&q->seed) % 2000);
			rq->inflight++;
			pthread_cond_broadcast(&q->cv);
			pthread_mutex_unlock(&q->mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return -EBUSY;
}

static int rq_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct rq *q = (struct rq *)rq;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		for (unsigned i = 0; i < rq->depth; i++) {
			if (q->it[i].state == 2) {
				c->tag = q->it[i].r.tag;
				c->res = q->it[i].res;
				q->it[i].state = 0;
				rq->inflight--;
				pthread_mutex_unlock(&q->mu);
				if (c->res < 0)
					wlift__diag_set(d, (int)c->res, "remote", NULL,
							(int64_t)q->it[i].r.off, "test.fail",
							"remote: injected failure");
				return 1;
			}
		}
		if (!rq->inflight || !wait) {
			pthread_mutex_unlock(&q->mu);
			return 0;
		}
		pthread_cond_wait(&q->cv, &q->mu);
	}
}

static void rq_cancel(struct wlift__rq *rq)
{
	struct rq *q = (struct rq *)rq;

	pthread_mutex_lock(&q->mu);
	q->canceled = 1;
	pthread_mutex_unlock(&q->mu);
}

static void rq_destroy(struct wlift__rq *rq)
{
	struct rq *q = (struct rq *)rq;
	struct wlift__rdone c;

	while (rq->inflight && rq_reap(rq, 1, &c, NULL) == 1)
		;
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->th, NULL);
	free(q->it);
	free(q);
}

static const struct wlift__rq_ops r_rq_ops = {
	.name = "remote-test",
	.submit = rq_submit,
	.reap = rq_reap,
	.cancel = rq_cancel,
	.destroy = rq_destroy,
};

static int r_queue(struct wlift__source *s, unsigned depth, unsigned flags, struct wlift__rq **out,
		   wlift_diag *d)
{
	struct rq *q = calloc(1, sizeof(*q));

	(void)s;
	(void)flags;
	(void)d;
	ck_assert_ptr_nonnull(q);
	q->it = calloc(depth, sizeof(*q->it));
	ck_assert_ptr_nonnull(q->it);
	q->base.ops = &r_rq_ops;
	q->base.depth = depth;
	q->seed = 1234u + depth;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	ck_assert_int_eq(pthread_create(&q->th, NULL, helper, q), 0);
	*out = &q->base;
	return 0;
}

static int r_probe(struct wlift__source *s, uint64_t off, uint64_t len, unsigned flags,
		   struct wlift__source_probe *p)
{
	(void)off;
	(void)len;
	(void)flags;
	memset(p, 0, sizeof(*p));
	p->size = s->size;
	snprintf(p->etag, sizeof(p->etag), "%s", g_etag);
	p->fs_kind = WLIFT_FS_NONE;
	p->resident = -1;
	p->chunk = 64 << 10; /* many reads */
	p->requests = 8;
	return 0;
}

static int r_validate(struct wlift__source *s, wlift_diag *d)
{
	(void)s;
	(void)d;
	return 0;
}

static void r_destroy(struct wlift__source *s)
{
	free(s->uri);
	free(s);
}

static const struct wlift__source_ops r_ops = {
	.kind = "remote-test",
	.probe = r_probe,
	.queue = r_queue,
	.validate = r_validate,
	.destroy = r_destroy,
};

static int r_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out, wlift_diag *d)
{
	struct rsrc *s = calloc(1, sizeof(*s));

	(void)ctx;
	(void)d;
	__atomic_fetch_add(&g_opens, 1, __ATOMIC_RELAXED);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(wlift__source_init(&s->base, &r_ops, uri, g_len), 0);
	*out = &s->base;
	return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

#define NT 24
#define TN (3000u * 4u) /* bytes per tensor: F32 x 3000 */

static uint8_t *make_image(size_t *len)
{
	wlift_save_tensor t[NT];
	static char names[NT][16];
	static uint64_t shape[1] = { TN / 4 };
	uint8_t *data = malloc((size_t)NT * TN);
	void *buf = NULL;

	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < (size_t)NT * TN; i++)
		data[i] = (uint8_t)(i * 131u + (i >> 9));
	for (int i = 0; i < NT; i++) {
		snprintf(names[i], sizeof(names[i]), "t%02d", i);
		t[i] = (wlift_save_tensor){ names[i], WLIFT_F32, 1, shape, data + (size_t)i * TN, TN };
	}
	ck_assert_int_eq(wlift_save_memory(t, NT, NULL, 0, &buf, len, NULL), 0);
	free(data);
	return buf;
}

static wlift_ctx *cache_ctx(const char *dir)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	wlift_ctx *ctx = NULL;

	o.cache_dir = dir;
	o.threads = 3;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, NULL), 0);
	return ctx;
}

/* Open uri through the cache and load everything; the load's return code. */
static int load_through(wlift_ctx *ctx, const char *uri, const char **kind)
{
	struct wlift__source *src = NULL;
	wlift_ckpt *ck = NULL;
	wlift_result *res = NULL;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;
	int ret;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__cache_open(ctx, uri, r_open, &src, &d), 0);
	*kind = src->ops->kind;
	ret = wlift__ckpt_open_sources(ctx, &src, 1, &ck, &d);
	wlift__source_unref(src);
	if (ret)
		return ret;
	lo.chunk_bytes = 64 << 10;
	ret = wlift_load(ck, &lo, NULL, NULL, &res, &d);
	if (!ret) {
		for (size_t i = 0; i < wlift_result_count(res); i++) {
			wlift_tensor_view v;
			wlift_tensor_get(wlift_result_tensor(res, i), &v);
			ck_assert_int_eq(memcmp(v.data, g_img + v.info.file_offset, v.nbytes), 0);
		}
	}
	wlift_result_free(res);
	wlift_ckpt_close(ck);
	return ret;
}

/* The one file of dir with suffix suf (NULL when none; more than one fails). */
static char *only(const char *dir, const char *suf)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *found = NULL;

	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name), m = strlen(suf);
		if (n > m && strcmp(e->d_name + n - m, suf) == 0) {
			ck_assert_msg(!found, "two %s files in %s", suf, dir);
			found = malloc(strlen(dir) + n + 2);
			sprintf(found, "%s/%s", dir, e->d_name);
		}
	}
	closedir(d);
	return found;
}

static void assert_entry_is_image(const char *dir)
{
	char *p = only(dir, ".data");
	struct stat st;
	FILE *f;
	uint8_t *buf;

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, g_len);
	buf = malloc(g_len);
	f = fopen(p, "rb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(buf, 1, g_len, f), g_len);
	fclose(f);
	ck_assert_int_eq(memcmp(buf, g_img, g_len), 0);
	free(buf);
	free(p);
}

static void setup(void)
{
	g_img = make_image(&g_len);
	snprintf(g_etag, sizeof(g_etag), "\"v1\"");
	g_fail_at = -1;
	g_reads = g_opens = 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(cold_then_warm)
{
	const char *dir = wt_path("c");
	wlift_ctx *ctx = cache_ctx(dir);
	const char *kind;

	setup();
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), 0);
	ck_assert_str_eq(kind, "cache");
	assert_entry_is_image(dir);
	ck_assert_ptr_null(only(dir, ".part"));
	/* Warm: the remote is opened (the validation) and the file source reads the entry. */
	g_reads = 0;
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), 0);
	ck_assert_str_eq(kind, "file");
	ck_assert_int_eq(g_reads, 0);
	ck_assert_int_eq(g_opens, 2);
	/* A new identity drops the entry; the load streams and fills a new one. */
	snprintf(g_etag, sizeof(g_etag), "\"v2\"");
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), 0);
	ck_assert_str_eq(kind, "cache");
	assert_entry_is_image(dir);
	wlift_ctx_destroy(ctx);
	free((void *)g_img);
}
END_TEST

START_TEST(failed_load_leaves_nothing)
{
	const char *dir = wt_path("c");
	wlift_ctx *ctx = cache_ctx(dir);
	const char *kind;

	setup();
	g_fail_at = 7;
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), -EIO);
	ck_assert_ptr_null(only(dir, ".data"));
	ck_assert_ptr_null(only(dir, ".json"));
	ck_assert_ptr_null(only(dir, ".part"));
	/* The next load fills it. */
	g_fail_at = -1;
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), 0);
	assert_entry_is_image(dir);
	wlift_ctx_destroy(ctx);
	free((void *)g_img);
}
END_TEST

START_TEST(no_identity_not_cached)
{
	const char *dir = wt_path("c");
	wlift_ctx *ctx = cache_ctx(dir);
	const char *kind;

	setup();
	g_etag[0] = '\0';
	ck_assert_int_eq(load_through(ctx, "rt://bucket/m.safetensors", &kind), 0);
	ck_assert_str_eq(kind, "remote-test");
	ck_assert_ptr_null(only(dir, ".data"));
	wlift_ctx_destroy(ctx);
	free((void *)g_img);
}
END_TEST

START_TEST(offline_without_entry)
{
	const char *dir = wt_path("c");
	wlift_ctx *ctx = cache_ctx(dir);
	struct wlift__source *src = NULL;
	wlift_diag d;

	setup();
	wlift_ctx_set_offline(ctx, 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__cache_open(ctx, "rt://bucket/m.safetensors", r_open, &src, &d),
			 WLIFT_ECACHE);
	ck_assert_ptr_null(src);
	ck_assert_int_eq(g_opens, 0);
	ck_assert_ptr_nonnull(strstr(d.message, "not in the cache"));
	wlift_ctx_destroy(ctx);
	free((void *)g_img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("cache");

	tcase_add_checked_fixture(tc, NULL, wt_cleanup_at_exit);
	tcase_add_test(tc, cold_then_warm);
	tcase_add_test(tc, failed_load_leaves_nothing);
	tcase_add_test(tc, no_identity_not_cached);
	tcase_add_test(tc, offline_without_entry);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
