/* SPDX-License-Identifier: Apache-2.0 */
/* Tensor-parallel shards (wlift_load_opts.shard): each rank's block of each tensor, along dim 0
 * (contiguous: only its bytes are read) and later dims (strided: the covering range is read
 * and gathered), against the block sliced out of the whole tensor, for every rank of several
 * world sizes including uneven splits with short and empty trailing blocks. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "weightlift.h"

/* w F32 [6,10]; b U8 [7]; x F16 [3,5,4]; s F32 []; e BF16 [2,3]; z U8 [0,4] */
#define JSON                                                                              \
	"{\"w\":{\"dtype\":\"F32\",\"shape\":[6,10],\"data_offsets\":[0,240]},"           \
	"\"b\":{\"dtype\":\"U8\",\"shape\":[7],\"data_offsets\":[240,247]},"              \
	"\"x\":{\"dtype\":\"F16\",\"shape\":[3,5,4],\"data_offsets\":[247,367]},"         \
	"\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[367,371]},"              \
	"\"e\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[371,383]},"          \
	"\"z\":{\"dtype\":\"U8\",\"shape\":[0,4],\"data_offsets\":[383,383]}}"
#define DATA_LEN 383

static uint8_t data[DATA_LEN];

static const char *make(void)
{
	const char *p = wt_path("shard.safetensors");

	for (size_t i = 0; i < DATA_LEN; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	wt_write_st(p, JSON, data, DATA_LEN);
	return p;
}

static const wlift_tensor_view *find(wlift_result *res, const char *name, wlift_tensor_view *v)
{
	for (size_t i = 0; i < wlift_result_count(res); i++) {
		wlift_tensor_get(wlift_result_tensor(res, i), v);
		if (strcmp(v->info.name, name) == 0)
			return v;
	}
	return NULL;
}

/* The block [b, e) along dim of a tensor (shape, es bytes per element, bytes at src) into
 * out; returns its size. */
static size_t slice(const uint8_t *src, const uint64_t *shape, unsigned ndim, unsigned es,
		    unsigned dim, uint64_t b, uint64_t e, uint8_t *out)
{
	uint64_t outer = 1, inner = es;
	size_t k = 0;

	for (unsigned i = 0; i < dim; i++)
		outer *= shape[i];
	for (unsigned i = dim + 1; i < ndim; i++)
		inner *= shape[i];
	for (uint64_t o = 0; o < outer; o++)
		for (uint64_t j = b; j < e; j++, k += inner)
			memcpy(out + k, src + (o * shape[dim] + j) * inner, inner);
	return k;
}

static void block(uint64_t n, unsigned r, unsigned w, uint64_t *b, uint64_t *e)
{
	uint64_t blk = (n + w - 1) / w;

	*b = r * blk < n ? r * blk : n;
	*e = *b + blk < n ? *b + blk : n;
}

static void check_one(wlift_result *res, const char *name, uint64_t off, const uint64_t *shape,
		      unsigned ndim, unsigned es, int dim, unsigned r, unsigned w)
{
	uint8_t want[400];
	wlift_tensor_view v;
	uint64_t b = 0, e = 0;
	size_t n;

	ck_assert_ptr_nonnull(find(res, name, &v));
	if (dim < 0) {
		n = es;
		for (unsigned i = 0; i < ndim; i++)
			n *= shape[i];
		memcpy(want, data + off, n);
	} else {
		block(shape[dim], r, w, &b, &e);
		n = slice(data + off, shape, ndim, es, (unsigned)dim, b, e, want);
		ck_assert_uint_eq(v.info.shape[dim], e - b);
	}
	ck_assert_uint_eq(v.nbytes, n);
	ck_assert_uint_eq(v.info.nbytes, n);
	if (n)
		ck_assert_int_eq(memcmp(v.data, want, n), 0);
}

START_TEST(every_rank_gets_its_block)
{
	static const uint64_t sw[] = { 6, 10 }, sb[] = { 7 }, sx[] = { 3, 5, 4 }, se[] = { 2, 3 };
	const wlift_shard_rule rules[] = { { "w", 1 }, { "b", 0 }, { "x*", 2 }, { "s", -1 },
					   { "z", 0 } };
	const char *p = make();
	int mmaps[] = { WLIFT_MMAP_OFF, WLIFT_MMAP_AUTO };

	for (unsigned w = 2; w <= 5; w++)
		for (unsigned r = 0; r < w; r++)
			for (int m = 0; m < 2; m++) {
				wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
				wlift_result *res = NULL;
				wlift_ckpt *ck = NULL;
				wlift_diag d;
				wlift_stats st;
				uint64_t b0, e0;

				o.rank = (int)r;
				o.world_size = (int)w;
				o.shard = rules;
				o.nshard = sizeof(rules) / sizeof(rules[0]);
				o.mmap = mmaps[m];
				o.threads = 2;
				wlift_diag_clear(&d);
				ck_assert_int_eq(wlift_open(NULL, p, &ck, &d), 0);
				ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &res, &d) == 0, "%s",
					      d.message);
				check_one(res, "w", 0, sw, 2, 4, 1, r, w);
				check_one(res, "b", 240, sb, 1, 1, 0, r, w);
				check_one(res, "x", 247, sx, 3, 2, 2, r, w);
				check_one(res, "s", 367, NULL, 0, 4, -1, r, w);
				check_one(res, "e", 371, se, 2, 2, -1, r, w); /* no rule */
				/* stats: the delivered bytes are the blocks */
				ck_assert_int_eq(wlift_result_stats(res, &st), 0);
				block(7, r, w, &b0, &e0);
				ck_assert_uint_ge(st.bytes_read, e0 - b0);
				wlift_result_free(res);
				wlift_ckpt_close(ck);
			}
}
END_TEST

/* Only dim-0 blocks: exactly their bytes are read, and over the ranks they add up to the
 * checkpoint once. */
START_TEST(dim0_reads_only_the_block)
{
	const wlift_shard_rule rules[] = { { "*", 0 } };
	const char *names[] = { "w", "b", "x", "e" };
	const char *p = make();
	uint64_t total = 0;

	for (unsigned r = 0; r < 4; r++) {
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
		wlift_result *res = NULL;
		wlift_ckpt *ck = NULL;
		wlift_stats st;

		o.rank = (int)r;
		o.world_size = 4;
		o.shard = rules;
		o.nshard = 1;
		o.names = names;
		o.nnames = 4;
		o.direct = WLIFT_DIRECT_OFF;
		ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), 0);
		ck_assert_int_eq(wlift_result_stats(res, &st), 0);
		ck_assert_uint_eq(st.bytes_read, st.bytes);
		total += st.bytes_read;
		wlift_result_free(res);
		wlift_ckpt_close(ck);
	}
	ck_assert_uint_eq(total, 240 + 7 + 120 + 12);
}
END_TEST

/* A gathered block converted afterwards (F16 -> F32): conversion sees the gathered bytes. */
START_TEST(gather_then_convert)
{
	const wlift_shard_rule rules[] = { { "x", 1 } };
	const char *names[] = { "x" };
	const char *p = make();
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_result *res = NULL;
	wlift_ckpt *ck = NULL;
	wlift_tensor_view v;

	o.rank = 1;
	o.world_size = 2;
	o.shard = rules;
	o.nshard = 1;
	o.names = names;
	o.nnames = 1;
	o.dtype = WLIFT_F32;
	ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), 0);
	ck_assert_ptr_nonnull(find(res, "x", &v));
	ck_assert_int_eq(v.dtype, WLIFT_F32);
	ck_assert_uint_eq(v.info.shape[1], 2); /* rows [3, 5) of 5 */
	ck_assert_uint_eq(v.nbytes, 3 * 2 * 4 * 4);
	wlift_result_free(res);
	wlift_ckpt_close(ck);
}
END_TEST

/* Pieces of at least WLIFT_SHARD_PIECE_MIN are read each on its own: over the ranks every
 * byte is read once, and each rank's block equals the slice (a U8 [3, 300001] tensor between
 * two others, for worlds 2..4, so blocks are uneven). */
START_TEST(large_pieces_read_once)
{
	static const uint64_t shape[] = { 3, 300001 };
	const wlift_shard_rule rules[] = { { "m", 1 } };
	const char *p = wt_path("pieces.safetensors");
	size_t nd = 16 + 3 * 300001 + 16;
	uint8_t *buf = malloc(nd), *want = malloc(nd);
	char js[512];

	for (size_t i = 0; i < nd; i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	snprintf(js, sizeof(js),
		 "{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
		 "\"m\":{\"dtype\":\"U8\",\"shape\":[3,300001],\"data_offsets\":[16,%zu]},"
		 "\"z\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[%zu,%zu]}}",
		 nd - 16, nd - 16, nd);
	wt_write_st(p, js, buf, nd);
	for (unsigned w = 2; w <= 4; w++) {
		uint64_t total = 0;
		for (unsigned r = 0; r < w; r++) {
			const char *names[] = { "m" };
			wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
			wlift_result *res = NULL;
			wlift_ckpt *ck = NULL;
			wlift_tensor_view v;
			wlift_stats st;
			uint64_t b, e;
			size_t n;

			o.rank = (int)r;
			o.world_size = (int)w;
			o.shard = rules;
			o.nshard = 1;
			o.names = names;
			o.nnames = 1;
			o.direct = WLIFT_DIRECT_OFF;
			o.threads = 3;
			o.chunk_bytes = 64 << 10; /* pieces span chunks */
			ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
			ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), 0);
			ck_assert_ptr_nonnull(find(res, "m", &v));
			block(300001, r, w, &b, &e);
			n = slice(buf + 16, shape, 2, 1, 1, b, e, want);
			ck_assert_uint_eq(v.nbytes, n);
			ck_assert_int_eq(memcmp(v.data, want, n), 0);
			ck_assert_int_eq(wlift_result_stats(res, &st), 0);
			ck_assert_uint_eq(st.bytes_read, n);
			total += st.bytes_read;
			wlift_result_free(res);
			wlift_ckpt_close(ck);
		}
		ck_assert_uint_eq(total, 3 * 300001);
	}
	free(buf);
	free(want);
}
END_TEST

START_TEST(bad_shards)
{
	const char *p = make();
	wlift_shard_rule rules[] = { { "s", 0 } };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_result *res = NULL;
	wlift_ckpt *ck = NULL;
	wlift_diag d;

	ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
	o.shard = rules;
	o.nshard = 1;
	o.world_size = 2;
	/* a scalar has no dim 0 */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, &d), -EINVAL);
	ck_assert_str_eq(d.rule, "load.shard");
	ck_assert_str_eq(d.tensor, "s");
	/* rank out of range; negative world; dim below -1; NULL pattern */
	rules[0].pattern = "w";
	o.rank = 2;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "rank"));
	o.rank = 0;
	o.world_size = -1;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), -EINVAL);
	o.world_size = 2;
	rules[0].dim = -2;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), -EINVAL);
	rules[0].dim = 1;
	rules[0].pattern = NULL;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), -EINVAL);
	rules[0].pattern = "w";
	/* mapped views cannot be strided blocks */
	o.mmap = WLIFT_MMAP_ON;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, &d), WLIFT_EUNSUPPORTED);
	ck_assert_str_eq(d.tensor, "w");
	/* a dim-0 block can be a view */
	rules[0].dim = 0;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &res, NULL), 0);
	wlift_result_free(res);
	wlift_ckpt_close(ck);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shard");
	TCase *tc = tcase_create("shard");

	tcase_add_checked_fixture(tc, NULL, wt_cleanup_at_exit);
	tcase_add_test(tc, every_rank_gets_its_block);
	tcase_add_test(tc, dim0_reads_only_the_block);
	tcase_add_test(tc, gather_then_convert);
	tcase_add_test(tc, large_pieces_read_once);
	tcase_add_test(tc, bad_shards);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
