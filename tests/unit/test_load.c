/* SPDX-License-Identifier: Apache-2.0 */
/* wlift_load end to end: every strategy, O_DIRECT on and off, mapped mode, memory images,
 * subsets, ready/progress callbacks and cancellation, truncation while loading, dtype
 * conversion, alignment, and a 1 GiB file. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "weightlift.h"

static uint8_t pat(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

/* A U8 checkpoint with n tensors "t<i>" of the given sizes, contiguous. Returns the data
 * area (malloc'd) and writes the file. */
static uint8_t *make_st(const char *path, size_t n, const uint64_t *sizes, uint64_t *total)
{
	size_t cap = 64 + n * 96, len = 0;
	char *json = malloc(cap);
	uint64_t off = 0;
	uint8_t *data;

	len += (size_t)snprintf(json + len, cap - len, "{");
	for (size_t i = 0; i < n; i++) {
		len +=
		    (size_t)snprintf(json + len, cap - len,
				     "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[%llu],"
				     "\"data_offsets\":[%llu,%llu]}",
				     i ? "," : "", i, (unsigned long long)sizes[i],
				     (unsigned long long)off, (unsigned long long)(off + sizes[i]));
		off += sizes[i];
	}
	len += (size_t)snprintf(json + len, cap - len, "}");
	/* pad the header to a multiple of 8 as writers do */
	while (len % 8) {
		json[len - 1] = ' ';
		json[len++] = '}';
		json[len] = 0;
	}
	data = malloc(off ? off : 1);
	for (uint64_t i = 0; i < off; i++)
		data[i] = pat(i);
	if (path)
		wt_write_st(path, json, data, (size_t)off);
	free(json);
	*total = off;
	return data;
}

static wlift_ctx *ctx_new(void)
{
	wlift_ctx *ctx;

	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	return ctx;
}

static void check_bytes(const wlift_result *r, wlift_ckpt *ck, const uint8_t *data, int aligned)
{
	for (size_t i = 0; i < wlift_result_count(r); i++) {
		wlift_tensor_view v;
		wlift_file_info fi;
		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		ck_assert_int_eq(wlift_ckpt_file(ck, v.info.file, &fi), 0);
		ck_assert_uint_eq(v.nbytes, v.info.nbytes);
		if (v.nbytes)
			ck_assert_msg(memcmp(v.data, data + v.info.data_begin, v.nbytes) == 0,
				      "tensor %s differs", v.info.name);
		if (aligned && v.nbytes)
			ck_assert_msg(((uintptr_t)v.data & 63) == 0, "tensor %s at %p not aligned",
				      v.info.name, v.data);
		ck_assert_ptr_eq(wlift_result_find(r, v.info.name), wlift_result_tensor(r, i));
	}
}

static const uint64_t sizes[] = {4096, 100, 3, 0, 1 << 20, 64, 128, 777, 5 << 20, 12, 65536};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static int odirect_ok(void)
{
	int fd;
	const char *p = wt_path("odirect_probe");

	wt_write_file(p, "x", 1);
	fd = open(p, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

struct counts {
	int n[64];
	int calls;
};

static int count_ready(const wlift_tensor *t, void *user)
{
	struct counts *c = user;
	wlift_tensor_view v;

	wlift_tensor_get(t, &v);
	__atomic_add_fetch(&c->n[atoi(v.info.name + 1)], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED);
	return 0;
}

static void load_mode(int strategy, int direct, int mmap_mode, unsigned threads, size_t chunk)
{
	const char *path = wt_path("m.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_stats st;
	wlift_diag d;
	struct counts c;

	memset(&c, 0, sizeof(c));
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, &d), 0);
	o.strategy = strategy;
	o.direct = direct;
	o.mmap = mmap_mode;
	o.threads = threads;
	o.chunk_bytes = chunk;
	ck_assert_msg(wlift_load(ck, &o, count_ready, &c, &r, &d) == 0, "%s", d.message);
	check_bytes(r, ck, data, !mmap_mode);
	ck_assert_int_eq(c.calls, (int)NSIZES);
	for (size_t i = 0; i < NSIZES; i++)
		ck_assert_int_eq(c.n[i], 1);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	ck_assert_uint_eq(st.bytes, total);
	ck_assert_uint_ge(st.bytes_read, total);
	if (mmap_mode)
		ck_assert_str_eq(st.strategy, "mmap");
	else if (direct == WLIFT_DIRECT_ON)
		ck_assert_int_eq(st.direct, 1);
	else if (direct == WLIFT_DIRECT_OFF)
		ck_assert_int_eq(st.direct, 0);
	/* ck may be closed before the result */
	wlift_ckpt_close(ck);
	check_bytes(r, ck, data, 0);
	if (!mmap_mode) {
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, 0), &v);
		memset(v.data, 0xAB, v.nbytes); /* writable */
	}
	wlift_result_free(r);
	wlift_ctx_destroy(ctx);
	free(data);
}

START_TEST(pread_buffered)
{
	load_mode(WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_OFF, 0, 4, 0);
}
END_TEST
START_TEST(pread_small_chunks)
{
	load_mode(WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_OFF, 0, 3, 4096);
}
END_TEST
START_TEST(uring_buffered)
{
	load_mode(WLIFT_STRATEGY_URING, WLIFT_DIRECT_OFF, 0, 2, 65536);
}
END_TEST
START_TEST(auto_mode)
{
	load_mode(WLIFT_STRATEGY_AUTO, WLIFT_DIRECT_AUTO, 0, 0, 0);
}
END_TEST
START_TEST(pread_direct)
{
	if (!odirect_ok())
		exit(77);
	load_mode(WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_ON, 0, 4, 65536);
}
END_TEST
START_TEST(uring_direct)
{
	if (!odirect_ok())
		exit(77);
	load_mode(WLIFT_STRATEGY_URING, WLIFT_DIRECT_ON, 0, 2, 8192);
}
END_TEST
START_TEST(mapped)
{
	load_mode(WLIFT_STRATEGY_AUTO, WLIFT_DIRECT_AUTO, 1, 2, 0);
}
END_TEST

/* WLIFT_MMAP_AUTO maps a file whose data is in the page cache and copies one that is not. */
START_TEST(mapped_auto)
{
	const char *path = wt_path("auto.safetensors");
	uint64_t sz[] = {3 << 20, 5 << 20};
	uint64_t total;
	uint8_t *data = make_st(path, 2, sz, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_stats st;
	wlift_diag d;
	int fd;

	wlift_diag_clear(&d);
	o.mmap = WLIFT_MMAP_AUTO;
	ck_assert_int_eq(wlift_open(ctx, path, &ck, &d), 0);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	ck_assert_str_eq(st.strategy, "mmap"); /* just written: cached */
	check_bytes(r, ck, data, 0);
	wlift_result_free(r);

	/* Evict the file's clean pages; if the kernel keeps them, the case cannot be made. */
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	if (strcmp(st.strategy, "mmap") != 0)
		check_bytes(r, ck, data, 1);
	else
		fprintf(stderr, "mapped_auto: page cache kept the file; cold branch not exercised\n");
	wlift_result_free(r);

	o.mmap = 3;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), -EINVAL);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

START_TEST(uring_fallback)
{
	const char *path = wt_path("f.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_stats st;

	/* The context reads the environment once, when it is created. */
	setenv("WEIGHTLIFT_DISABLE_URING", "1", 1);
	ctx = ctx_new();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.strategy = WLIFT_STRATEGY_URING;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
	wlift_result_stats(r, &st);
	ck_assert_str_eq(st.strategy, "pread");
	check_bytes(r, ck, data, 1);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

/* 1: the mapping that holds address p is advised MADV_HUGEPAGE ("hg" in its smaps VmFlags),
 * 0: it is not; -1: no such mapping. */
static int advised_huge(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, ret = -1;
	uintptr_t a = (uintptr_t)p;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = a >= lo && a < hi;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			ret = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* WEIGHTLIFT_HUGEPAGE (read once, at context creation): 1 (the default) advises a load's host
 * arena MADV_HUGEPAGE, 0 does not; the bytes are the same either way; other values fail the
 * context with a message naming the variable. */
START_TEST(hugepage_knob)
{
	const char *path = wt_path("hp.safetensors");
	static const char *vals[] = { NULL, "1", "0" };
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx;
	wlift_diag d;

	for (int i = 0; i < 3; i++) {
		wlift_ckpt *ck;
		wlift_result *r;
		wlift_tensor_view v;
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;

		if (vals[i])
			setenv("WEIGHTLIFT_HUGEPAGE", vals[i], 1);
		else
			unsetenv("WEIGHTLIFT_HUGEPAGE");
		ctx = ctx_new();
		ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
		o.mmap = WLIFT_MMAP_OFF;
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
		check_bytes(r, ck, data, 1);
		for (size_t t = 0; t < wlift_result_count(r); t++) {
			wlift_tensor_get(wlift_result_tensor(r, t), &v);
			if (v.nbytes == 5u << 20) /* in the arena's huge-page span */
				ck_assert_int_eq(advised_huge(v.data), i < 2);
		}
		wlift_result_free(r);
		wlift_ckpt_close(ck);
		wlift_ctx_destroy(ctx);
	}
	setenv("WEIGHTLIFT_HUGEPAGE", "auto", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_HUGEPAGE must be 0 or 1"), "%s", d.message);
	unsetenv("WEIGHTLIFT_HUGEPAGE");
	free(data);
}
END_TEST

START_TEST(memory_image)
{
	uint64_t total;
	uint8_t *data = make_st(NULL, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_stats st;
	size_t len;
	uint8_t *img;
	const char *path = wt_path("img.safetensors");
	FILE *f;

	/* build the same image as the file writer would, then read it back into memory */
	free(make_st(path, NSIZES, sizes, &total));
	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	img = malloc(len);
	ck_assert_uint_eq(fread(img, 1, len, f), len);
	fclose(f);
	ck_assert_int_eq(wlift_open_memory(ctx, img, len, "img", &ck, NULL), 0);
	ck_assert_int_eq(wlift_load(ck, NULL, NULL, NULL, &r, NULL), 0);
	wlift_result_stats(r, &st);
	ck_assert_str_eq(st.strategy, "memory");
	check_bytes(r, ck, data, 1);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(img);
	free(data);
}
END_TEST

START_TEST(subset)
{
	const char *path = wt_path("s.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	const char *names[] = {"t8", "t1", "t8", "t3"};
	const char *bad[] = {"t1", "nope"};
	wlift_stats st;
	wlift_diag d;

	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.names = names;
	o.nnames = 4;
	o.direct = WLIFT_DIRECT_OFF;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
	ck_assert_uint_eq(wlift_result_count(r), 3);
	check_bytes(r, ck, data, 1);
	ck_assert_ptr_null(wlift_result_find(r, "t0"));
	wlift_result_stats(r, &st);
	ck_assert_uint_eq(st.bytes, sizes[8] + sizes[1] + sizes[3]);
	ck_assert_uint_eq(st.bytes_read, st.bytes);
	wlift_result_free(r);
	o.names = bad;
	o.nnames = 2;
	wlift_diag_clear(&d);
	r = (wlift_result *)1;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ENOTFOUND);
	ck_assert_ptr_null(r);
	ck_assert_str_eq(d.tensor, "nope");
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

static int cancel_ready(const wlift_tensor *t, void *user)
{
	(void)t;
	return __atomic_add_fetch((int *)user, 1, __ATOMIC_RELAXED) >= 2;
}

static int cancel_progress(uint64_t done, uint64_t total, void *user)
{
	(void)done;
	(void)total;
	(*(int *)user)++;
	return 1;
}

START_TEST(cancel)
{
	const char *path = wt_path("c.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;
	int calls = 0;

	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (int mm = 0; mm < 2; mm++) {
		calls = 0;
		o.mmap = mm;
		o.chunk_bytes = 4096;
		wlift_diag_clear(&d);
		ck_assert_int_eq(wlift_load(ck, &o, cancel_ready, &calls, &r, &d), WLIFT_ECANCELED);
		ck_assert_ptr_null(r);
		ck_assert_int_eq(d.code, WLIFT_ECANCELED);
	}
	o.mmap = 0;
	calls = 0;
	o.progress = cancel_progress;
	o.progress_user = &calls;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ECANCELED);
	ck_assert_ptr_null(r);
	ck_assert_int_ge(calls, 1);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

struct trunc {
	const char *path;
	int done;
};

static int truncate_ready(const wlift_tensor *t, void *user)
{
	struct trunc *tr = user;

	(void)t;
	if (!__atomic_exchange_n(&tr->done, 1, __ATOMIC_RELAXED))
		ck_assert_int_eq(truncate(tr->path, 100), 0);
	return 0;
}

START_TEST(truncated_while_loading)
{
	const char *path = wt_path("t.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;
	struct trunc tr = {path, 0};

	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.threads = 1;
	o.chunk_bytes = 4096;
	o.direct = WLIFT_DIRECT_OFF;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, truncate_ready, &tr, &r, &d), WLIFT_ECHANGED);
	ck_assert_ptr_null(r);
	ck_assert_ptr_nonnull(strstr(d.file, "t.safetensors"));
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

struct prog {
	pthread_t self;
	int calls, wrong_thread;
	uint64_t last_done, total;
};

static int slow_ready(const wlift_tensor *t, void *user)
{
	(void)t;
	(void)user;
	usleep(30000);
	return 0;
}

static int record_progress(uint64_t done, uint64_t total, void *user)
{
	struct prog *p = user;

	p->calls++;
	p->wrong_thread |= !pthread_equal(pthread_self(), p->self);
	p->last_done = done;
	p->total = total;
	return 0;
}

/* Progress runs on the calling thread at least every 100 ms and once at the end. */
START_TEST(progress_periodic)
{
	const char *path = wt_path("p.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct prog pr = {pthread_self(), 0, 0, 0, 0};

	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.threads = 1;
	o.progress = record_progress;
	o.progress_user = &pr;
	/* about 10 x 30 ms of ready callbacks on one worker */
	ck_assert_int_eq(wlift_load(ck, &o, slow_ready, NULL, &r, NULL), 0);
	ck_assert_int_ge(pr.calls, 2);
	ck_assert_int_eq(pr.wrong_thread, 0);
	ck_assert_uint_eq(pr.last_done, total);
	ck_assert_uint_eq(pr.total, total);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

struct order {
	pthread_t self;
	int calls, wrong_thread, out_of_order, cancel_at;
	uint64_t last_off;
	const uint8_t *data;
	int bad_bytes;
};

static int order_ready(const wlift_tensor *t, void *user)
{
	struct order *o = user;
	wlift_tensor_view v;

	wlift_tensor_get(t, &v);
	o->wrong_thread |= !pthread_equal(pthread_self(), o->self);
	o->out_of_order |= o->calls && v.info.file_offset < o->last_off;
	o->last_off = v.info.file_offset;
	/* Its pages are in when it is handed out: the bytes are the file's. */
	if (v.nbytes && (((const uint8_t *)v.data)[0] != o->data[v.info.data_begin] ||
			 ((const uint8_t *)v.data)[v.nbytes - 1] != o->data[v.info.data_end - 1]))
		o->bad_bytes++;
	return ++o->calls == o->cancel_at;
}

static int cancel_at_end(uint64_t done, uint64_t total, void *user)
{
	(void)user;
	return done == total;
}

/* Mapped mode over more than WLIFT_POPULATE_MIN_PARALLEL: pages populated in pieces by the
 * threads, each tensor handed out in file order on the calling thread once its pages are in;
 * a ready callback or the progress callback cancels it. */
START_TEST(mapped_progressive)
{
	const char *path = wt_path("mp.safetensors");
	uint64_t sz[12], total;
	uint8_t *data;
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;
	struct order ord;

	for (size_t i = 0; i < 12; i++)
		sz[i] = (i % 3 == 1) ? 4096 + i : (7u << 20) + 4099 * i; /* 8 MiB pieces straddled */
	data = make_st(path, 12, sz, &total);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.mmap = WLIFT_MMAP_ON;
	o.threads = 4;
	memset(&ord, 0, sizeof(ord));
	ord.self = pthread_self();
	ord.data = data;
	ck_assert_int_eq(wlift_load(ck, &o, order_ready, &ord, &r, NULL), 0);
	ck_assert_int_eq(ord.calls, 12);
	ck_assert_int_eq(ord.wrong_thread, 0);
	ck_assert_int_eq(ord.out_of_order, 0);
	ck_assert_int_eq(ord.bad_bytes, 0);
	check_bytes(r, ck, data, 0);
	wlift_result_free(r);

	/* The ready callback cancels at the third tensor: nothing more is handed out. */
	memset(&ord, 0, sizeof(ord));
	ord.self = pthread_self();
	ord.data = data;
	ord.cancel_at = 3;
	wlift_diag_clear(&d);
	r = (wlift_result *)1;
	ck_assert_int_eq(wlift_load(ck, &o, order_ready, &ord, &r, &d), WLIFT_ECANCELED);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(ord.calls, 3);
	ck_assert_str_eq(d.tensor, "t2");

	/* The progress callback is called in mapped mode too, and cancels. */
	o.progress = cancel_at_end;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ECANCELED);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(d.code, WLIFT_ECANCELED);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
	unlink(path);
}
END_TEST

START_TEST(bad_args)
{
	const char *path = wt_path("b.safetensors");
	uint64_t total;
	uint8_t *data = make_st(path, NSIZES, sizes, &total);
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;

	/* No driver, even on a machine with a GPU (tests/unit/test_cuda.c has the GPU path). */
	setenv("WEIGHTLIFT_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
	ctx = ctx_new();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:1";
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ENODEV);
	ck_assert_ptr_nonnull(strstr(d.message, "cannot load the CUDA driver"));
	o.device = "cuda";
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), WLIFT_ENODEV);
	o.device = "tpu";
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), -EINVAL);
	o.device = "cpu";
	o.size = 0;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), -EINVAL);
	ck_assert_int_eq(wlift_load(NULL, NULL, NULL, NULL, &r, NULL), -EINVAL);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

/* Copy of a tensor's bytes at an aligned address: mapped-mode tensors sit wherever the file
 * puts them (this header is deliberately not padded). */
static void *aln(const wlift_tensor_view *v)
{
	static _Alignas(16) uint8_t buf[64];

	memcpy(buf, v->data, v->nbytes);
	return buf;
}

START_TEST(convert)
{
	const char *path = wt_path("cv.safetensors");
	const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
			   "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]},"
			   "\"c\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[20,24]},"
			   "\"d\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}";
	float a[4] = {1.0f, -2.5f, 3.140625f, 65504.0f};
	uint16_t b[2] = {0x3f80, 0xc000}; /* 1.0, -2.0 */
	int32_t c = 7;
	uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7c00}; /* 1, -2, 2^-24, inf */
	uint8_t buf[32];
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_tensor_view v;

	memcpy(buf, a, 16);
	memcpy(buf + 16, b, 4);
	memcpy(buf + 20, &c, 4);
	memcpy(buf + 24, h, 8);
	wt_write_st(path, json, buf, sizeof(buf));
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (int mm = 0; mm < 2; mm++) {
		o.mmap = mm;
		o.dtype = WLIFT_F32;
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
		wlift_tensor_get(wlift_result_find(r, "b"), &v);
		ck_assert_int_eq(v.dtype, WLIFT_F32);
		ck_assert_uint_eq(v.nbytes, 8);
		ck_assert(((float *)aln(&v))[0] == 1.0f && ((float *)aln(&v))[1] == -2.0f);
		wlift_tensor_get(wlift_result_find(r, "d"), &v);
		ck_assert(((float *)aln(&v))[0] == 1.0f && ((float *)aln(&v))[1] == -2.0f);
		ck_assert(((float *)aln(&v))[2] == 5.9604644775390625e-8f);
		ck_assert_uint_eq(((uint32_t *)aln(&v))[3], 0x7f800000u);
		wlift_tensor_get(wlift_result_find(r, "c"), &v);
		ck_assert_int_eq(v.dtype, WLIFT_I32);
		ck_assert_int_eq(*(int32_t *)aln(&v), 7);
		wlift_result_free(r);

		o.dtype = WLIFT_BF16;
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
		wlift_tensor_get(wlift_result_find(r, "a"), &v);
		ck_assert_int_eq(v.dtype, WLIFT_BF16);
		ck_assert_uint_eq(v.nbytes, 8);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[0], 0x3f80);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[1], 0xc020);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[2], 0x4049);
		wlift_result_free(r);

		o.dtype = WLIFT_F16;
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
		wlift_tensor_get(wlift_result_find(r, "a"), &v);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[0], 0x3c00);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[1], 0xc100);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[3], 0x7bff);
		wlift_tensor_get(wlift_result_find(r, "b"), &v);
		ck_assert_uint_eq(((uint16_t *)aln(&v))[1], 0xc000);
		wlift_result_free(r);
	}
	o.mmap = 0;
	o.dtype = WLIFT_F64;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), WLIFT_EUNSUPPORTED);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
}
END_TEST

/* 1 GiB across a few tensors, compared by sampling and a full checksum. */
START_TEST(one_gib)
{
	const char *path = wt_path("big.safetensors");
	const uint64_t big[] = {1ull << 29, (1ull << 29) - 4096, 4096};
	const char *json_fmt =
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
	    "\"b\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]},"
	    "\"c\":{\"dtype\":\"U8\",\"shape\":[4096],\"data_offsets\":[%llu,%llu]}}";
	char json[512];
	uint64_t total = big[0] + big[1] + big[2], hlen;
	uint8_t hdr[8], *chunk;
	FILE *f;
	wlift_ctx *ctx = ctx_new();
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	int direct_ok = odirect_ok();

	snprintf(json, sizeof(json), json_fmt, (unsigned long long)big[0],
		 (unsigned long long)big[0], (unsigned long long)big[1], (unsigned long long)big[0],
		 (unsigned long long)(big[0] + big[1]), (unsigned long long)(big[0] + big[1]),
		 (unsigned long long)total);
	while (strlen(json) % 8)
		strcat(json, " ");
	hlen = strlen(json);
	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(hlen >> (8 * i));
	f = fopen(path, "wb");
	fwrite(hdr, 1, 8, f);
	fwrite(json, 1, hlen, f);
	chunk = malloc(1 << 20);
	for (uint64_t o2 = 0; o2 < total; o2 += 1 << 20) {
		for (uint64_t i = 0; i < 1 << 20; i++)
			chunk[i] = pat(o2 + i);
		fwrite(chunk, 1, 1 << 20, f);
	}
	fclose(f);
	free(chunk);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (int mode = 0; mode < 3; mode++) {
		wlift_diag d;
		wlift_diag_clear(&d);
		o.direct = mode == 1 && direct_ok ? WLIFT_DIRECT_ON : WLIFT_DIRECT_OFF;
		o.mmap = mode == 2;
		ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
		for (size_t t = 0; t < 3; t++) {
			wlift_tensor_view v;
			const uint8_t *p;
			wlift_tensor_get(wlift_result_tensor(r, t), &v);
			p = v.data;
			for (uint64_t i = 0; i < v.nbytes; i += 4093)
				ck_assert_uint_eq(p[i], pat(v.info.data_begin + i));
			ck_assert_uint_eq(p[v.nbytes - 1], pat(v.info.data_end - 1));
		}
		wlift_result_free(r);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("load");
	TCase *tc = tcase_create("load");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, pread_buffered);
	tcase_add_test(tc, pread_small_chunks);
	tcase_add_test(tc, uring_buffered);
	tcase_add_test(tc, auto_mode);
	tcase_add_test(tc, pread_direct);
	tcase_add_test(tc, uring_direct);
	tcase_add_test(tc, mapped);
	tcase_add_test(tc, mapped_auto);
	tcase_add_test(tc, mapped_progressive);
	tcase_add_test(tc, uring_fallback);
	tcase_add_test(tc, hugepage_knob);
	tcase_add_test(tc, memory_image);
	tcase_add_test(tc, subset);
	tcase_add_test(tc, cancel);
	tcase_add_test(tc, truncated_while_loading);
	tcase_add_test(tc, progress_periodic);
	tcase_add_test(tc, bad_args);
	tcase_add_test(tc, convert);
	if (!getenv("WLIFT_SKIP_BIG"))
		tcase_add_test(tc, one_gib);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
