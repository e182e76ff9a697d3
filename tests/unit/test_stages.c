/* SPDX-License-Identifier: Apache-2.0 */
/* The stages of wlift_load on their own: resolve (precedence, ranges), select (dedup, rows),
 * partition (row ranges, errors), the locator (files, directories, indexes, schemes this build
 * lacks), the host sink's operations, and a NULL context everywhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/locate.h"
#include "engine/stages.h"
#include "sink/sink.h"
#include "source/source.h"
#include "testutil.h"

/* "a" U8 [4, 3] (12 bytes), "b" F32 [2] (8 bytes), "c" F4 [2, 3] (rows of 12 bits). */
static const char *JSON = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4,3],\"data_offsets\":[0,12]},"
			  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
			  "\"c\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[20,23]}}";

static wlift_ckpt *open_img(uint8_t **img)
{
	static const uint8_t data[23] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	size_t len;
	wlift_ckpt *ck;

	*img = wt_st_image(JSON, data, sizeof(data), &len);
	ck_assert_int_eq(wlift_open_memory(NULL, *img, len, "img", &ck, NULL), 0);
	return ck;
}

START_TEST(resolve_precedence_and_ranges)
{
	wlift_ctx *ctx;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct wlift__load_cfg c;
	wlift_diag d;

	setenv("WEIGHTLIFT_CHUNK_BYTES", "1M", 1);
	setenv("WEIGHTLIFT_THREADS", "3", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	unsetenv("WEIGHTLIFT_CHUNK_BYTES");
	unsetenv("WEIGHTLIFT_THREADS");
	/* env (read once into the context) > default */
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), 0);
	ck_assert_uint_eq(c.chunk_bytes, 1u << 20);
	ck_assert_uint_eq(c.threads, 3);
	ck_assert_int_eq(c.chunk_explicit, 0);
	/* explicit > env */
	o.chunk_bytes = 4096;
	o.threads = 2;
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), 0);
	ck_assert_uint_eq(c.chunk_bytes, 4096);
	ck_assert_uint_eq(c.threads, 2);
	ck_assert_int_eq(c.chunk_explicit, 1);
	ck_assert_uint_ge(c.max_inflight_bytes, c.chunk_bytes);
	/* out of range */
	o.chunk_bytes = SIZE_MAX;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "chunk_bytes"));
	o.chunk_bytes = 0;
	o.threads = 100000;
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), -EINVAL);
	o.threads = 0;
	o.mmap = 7;
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), -EINVAL);
	o.mmap = 0;
	o.size = 0;
	ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), -EINVAL);
	o.size = sizeof(o);
	{
		static const wlift_rows r = { 0, 1 };
		o.rows = &r;
		ck_assert_int_eq(wlift__load_resolve(ctx, &o, &c, NULL), -EINVAL); /* no names */
	}
	wlift_ctx_destroy(ctx);
	/* The context range-checks its knobs too, from the options and from the environment. */
	setenv("WEIGHTLIFT_CHUNK_BYTES", "18446744073709551615", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_str_eq(d.rule, "config.env");
	unsetenv("WEIGHTLIFT_CHUNK_BYTES");
	{
		wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
		co.threads = WLIFT_MAX_THREADS + 1;
		ck_assert_int_eq(wlift_ctx_create(&ctx, &co, NULL), -EINVAL);
		co.threads = 0;
		co.chunk_bytes = WLIFT_MAX_CHUNK_BYTES + 1;
		ck_assert_int_eq(wlift_ctx_create(&ctx, &co, NULL), -EINVAL);
		co.chunk_bytes = WLIFT_MAX_CHUNK_BYTES;
		ck_assert_int_eq(wlift_ctx_create(&ctx, &co, NULL), 0);
		wlift_ctx_destroy(ctx);
	}
}
END_TEST

START_TEST(select_and_partition)
{
	uint8_t *img;
	wlift_ckpt *ck = open_img(&img);
	const char *names[] = { "b", "a", "b" };
	wlift_rows rows[] = { { 0, 2 }, { 1, 3 }, { 0, 2 } };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct wlift__selection s;
	wlift_diag d;

	o.names = names;
	o.nnames = 3;
	ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), 0);
	ck_assert_uint_eq(s.n, 2); /* deduplicated, file order */
	ck_assert_uint_eq(s.idx[0], 0);
	ck_assert_uint_eq(s.idx[1], 1);
	wlift__selection_free(&s);

	o.rows = rows;
	ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), 0);
	ck_assert_int_eq(wlift__load_partition(ck, &o, NULL, &s, NULL), 0);
	/* a: rows [1, 3) of [4, 3] U8 */
	ck_assert_uint_eq(s.ti[0].shape[0], 2);
	ck_assert_uint_eq(s.ti[0].shape[1], 3);
	ck_assert_uint_eq(s.ti[0].nbytes, 6);
	ck_assert_uint_eq(s.ti[0].data_begin, 3);
	ck_assert_uint_eq(s.ti[0].data_end, 9);
	ck_assert_uint_eq(s.ti[0].file_offset, ck->tensors[0].file_offset + 3);
	ck_assert_uint_eq(ck->tensors[0].shape[0], 4); /* the checkpoint is untouched */
	ck_assert_uint_eq(s.ti[1].nbytes, 8);
	wlift__selection_free(&s);

	/* the same name with other rows */
	rows[2].end = 1;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__load_select(ck, &o, &s, &d), -EINVAL);
	ck_assert_str_eq(d.rule, "load.rows");
	rows[2].end = 2;
	/* rows past the end */
	rows[1].end = 5;
	ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), 0);
	ck_assert_int_eq(wlift__load_partition(ck, &o, NULL, &s, NULL), -EINVAL);
	wlift__selection_free(&s);
	rows[1].end = 3;
	/* sub-byte rows: F4 rows of 3 elements are 12 bits */
	{
		const char *cn[] = { "c" };
		wlift_rows cr[] = { { 1, 2 } };
		o.names = cn;
		o.nnames = 1;
		o.rows = cr;
		ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), 0);
		ck_assert_int_eq(wlift__load_partition(ck, &o, NULL, &s, NULL), WLIFT_EUNSUPPORTED);
		wlift__selection_free(&s);
		cr[0].begin = 0;
		cr[0].end = 2; /* all rows: fine */
		ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), 0);
		ck_assert_int_eq(wlift__load_partition(ck, &o, NULL, &s, NULL), 0);
		ck_assert_uint_eq(s.ti[0].nbytes, 3);
		wlift__selection_free(&s);
	}
	/* unknown name */
	{
		const char *un[] = { "zz" };
		o.names = un;
		o.rows = NULL;
		ck_assert_int_eq(wlift__load_select(ck, &o, &s, NULL), WLIFT_ENOTFOUND);
	}
	wlift_ckpt_close(ck);
	free(img);
}
END_TEST

START_TEST(rows_load_end_to_end)
{
	uint8_t *img;
	wlift_ckpt *ck = open_img(&img);
	const char *names[] = { "a" };
	wlift_rows rows[] = { { 2, 4 } };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_result *r;
	wlift_tensor_view v;
	wlift_stats st;

	o.names = names;
	o.nnames = 1;
	o.rows = rows;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
	wlift_tensor_get(wlift_result_find(r, "a"), &v);
	ck_assert_uint_eq(v.info.shape[0], 2);
	ck_assert_uint_eq(v.nbytes, 6);
	for (int i = 0; i < 6; i++)
		ck_assert_uint_eq(((uint8_t *)v.data)[i], 6 + i);
	wlift_result_stats(r, &st);
	ck_assert_uint_eq(st.bytes, 6);
	ck_assert_str_eq(st.strategy, "memory");
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	free(img);
}
END_TEST

START_TEST(locator)
{
	struct wlift__located l;
	wlift_diag d;
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/ck", wt_tmpdir());
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	wt_write_st(wt_path("ck/b.safetensors"), "{}", NULL, 0);
	wt_write_st(wt_path("ck/a.safetensors"), "{}", NULL, 0);
	wt_write_file(wt_path("ck/notes.txt"), "x", 1);
	ck_assert_int_eq(wlift__locate(NULL, dir, &l, NULL), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_ptr_nonnull(strstr(l.uris[0], "/ck/a.safetensors"));
	ck_assert_ptr_nonnull(strstr(l.uris[1], "/ck/b.safetensors"));
	ck_assert_ptr_null(l.index_uri);
	wlift__located_free(&l);

	/* an index wins, and what it leaves out is reported */
	wt_write_file(wt_path("ck/model.safetensors.index.json"),
		      "{\"weight_map\":{}}", strlen("{\"weight_map\":{}}"));
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, dir, &l, &d), WLIFT_EINDEX); /* empty weight_map */
	wt_write_file(wt_path("ck/model.safetensors.index.json"), "{\"weight_map\":{\"x\":\"b.safetensors\"}}",
		      strlen("{\"weight_map\":{\"x\":\"b.safetensors\"}}"));
	ck_assert_int_eq(wlift__locate(NULL, dir, &l, NULL), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_ptr_nonnull(l.index_uri);
	ck_assert_uint_eq(l.nignored, 1);
	ck_assert_str_eq(l.ignored[0], "a.safetensors");
	wlift__located_free(&l);

	/* an empty directory is bad input, not an I/O error */
	snprintf(dir, sizeof(dir), "%s/empty", wt_tmpdir());
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(wlift__locate(NULL, dir, &l, NULL), WLIFT_EEMPTY);

	/* remote schemes reach the source dispatcher: a bucket name S3 cannot have is bad
	 * input, before any request */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, "s3://Bad*Bucket/model/", &l, &d), WLIFT_EURI);
	ck_assert_ptr_nonnull(strstr(d.message, "not a valid bucket name"));
	/* http(s) and hf:// URLs of files are located without a request (the open makes it) */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, "https://host/m.safetensors", &l, &d), 0);
	ck_assert_uint_eq(l.n, 1);
	wlift__located_free(&l);
	ck_assert_int_eq(wlift__locate(NULL, "https://host/dir/", &l, &d), WLIFT_EUNSUPPORTED);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, "ftp://host/m.safetensors", &l, &d), WLIFT_EURI);
	{
		wlift_ckpt *ck;
		/* gs:// is served (tests/gcs); a malformed bucket name fails before any request */
		ck_assert_int_eq(wlift_open(NULL, "gs://Bad_Bucket/m.safetensors", &ck, NULL),
				 WLIFT_EURI);
	}
}
END_TEST

START_TEST(host_sink_ops)
{
	struct wlift__sink *s;
	struct wlift__sink_cfg cfg = { .threads = 1 };
	struct wlift__mem m;
	uint8_t *p;
	float f[4] = { 1.0f, -2.5f, 3.25f, 0.0f };

	ck_assert_int_eq(wlift__sink_open(NULL, "cpu", &cfg, &s, NULL), 0);
	ck_assert_int_eq(s->in_place, 1);
	ck_assert_int_eq(s->ops->alloc(s, 8 << 20, NULL), 0);
	p = s->ops->dest(s, 0);
	ck_assert_ptr_nonnull(p);
	memcpy(p + 100, "abcdef", 6);
	ck_assert_int_eq(s->ops->move(s, 64, 100, 6, NULL), 0);
	ck_assert_int_eq(memcmp(p + 64, "abcdef", 6), 0);
	memcpy(p + 4096, f, sizeof(f));
	ck_assert_int_eq(s->ops->convert(s, WLIFT_F32, WLIFT_BF16, 4096, 4096, 4, NULL), 0);
	ck_assert_uint_eq(((uint16_t *)(p + 4096))[1], 0xc020); /* -2.5 in bf16 */
	memset(p + (1 << 20), 7, 3 << 20);
	ck_assert_int_eq(s->ops->release(s, 1 << 20, 3 << 20), 0);
	ck_assert_uint_eq(p[(2 << 20)], 0); /* whole pages inside the range are given back */
	ck_assert_int_eq(s->ops->export_mem(s, &m, NULL), 0);
	ck_assert_ptr_eq(m.base, p);
	ck_assert_int_eq(m.device, -1);
	s->ops->destroy(s); /* exported: the memory stays */
	ck_assert_uint_eq(p[64], 'a');
	wlift__mem_free(&m);

	cfg.cuda_library = "/nonexistent/libcuda.so.1"; /* no driver, even on a GPU machine */
	ck_assert_int_eq(wlift__sink_open(NULL, "cuda:0", &cfg, &s, NULL), WLIFT_ENODEV);
	ck_assert_int_eq(wlift__sink_open(NULL, "tpu", &cfg, &s, NULL), -EINVAL);
}
END_TEST

/* A NULL ctx means the default context, in every call that takes one. */
START_TEST(null_ctx)
{
	uint8_t *img;
	wlift_ckpt *ck = open_img(&img);
	wlift_result *r;

	ck_assert_ptr_nonnull(ck->ctx);
	ck_assert_int_eq(wlift_load(ck, NULL, NULL, NULL, &r, NULL), 0);
	ck_assert_uint_eq(wlift_result_count(r), 3);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(NULL);
	free(img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stages");
	TCase *tc = tcase_create("stages");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_add_test(tc, resolve_precedence_and_ranges);
	tcase_add_test(tc, select_and_partition);
	tcase_add_test(tc, rows_load_end_to_end);
	tcase_add_test(tc, locator);
	tcase_add_test(tc, host_sink_ops);
	tcase_add_test(tc, null_ctx);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
