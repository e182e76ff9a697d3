/* SPDX-License-Identifier: Apache-2.0 */
/* DLPack export: dtype codes, shapes, raw-bytes views, versioned flags, lifetime. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "testutil.h"
#include "weightlift.h"

START_TEST(export)
{
	const char *path = wt_path("d.safetensors");
	const char *json = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
			   "\"b\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[12,16]},"
			   "\"c\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[16,17]},"
			   "\"d\":{\"dtype\":\"F4\",\"shape\":[2,4],\"data_offsets\":[17,21]},"
			   "\"e\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[21,21]}}";
	uint8_t data[21];
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_dl_managed *m, *mb;
	wlift_dl_managed_versioned *mv;

	for (int i = 0; i < 21; i++)
		data[i] = (uint8_t)i;
	wt_write_st(path, json, data, sizeof(data));
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (int mm = 0; mm < 2; mm++) {
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
		o.mmap = mm;
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
		ck_assert_int_eq(wlift_tensor_dlpack(wlift_result_find(r, "a"), 0, &m, NULL), 0);
		ck_assert_int_eq(m->dl_tensor.dtype.code, WLIFT_DL_BFLOAT);
		ck_assert_int_eq(m->dl_tensor.dtype.bits, 16);
		ck_assert_int_eq(m->dl_tensor.ndim, 2);
		ck_assert_int_eq(m->dl_tensor.shape[0], 2);
		ck_assert_int_eq(m->dl_tensor.shape[1], 3);
		ck_assert_ptr_null(m->dl_tensor.strides);
		ck_assert_int_eq(m->dl_tensor.device.device_type, WLIFT_DL_CPU);
		ck_assert_int_eq(
		    wlift_tensor_dlpack(wlift_result_find(r, "b"), WLIFT_DLPACK_BYTES, &mb, NULL),
		    0);
		ck_assert_int_eq(mb->dl_tensor.dtype.code, WLIFT_DL_UINT);
		ck_assert_int_eq(mb->dl_tensor.ndim, 1);
		ck_assert_int_eq(mb->dl_tensor.shape[0], 4);
		ck_assert_int_eq(((uint8_t *)mb->dl_tensor.data)[0], 12);
		ck_assert_int_eq(
		    wlift_tensor_dlpack_versioned(wlift_result_find(r, "d"), 0, &mv, NULL), 0);
		ck_assert_int_eq(mv->version.major, 1);
		ck_assert_int_eq(mv->version.minor, 1);
		ck_assert_uint_eq(mv->flags, 0);
		ck_assert_int_eq(mv->dl_tensor.dtype.code, WLIFT_DL_FLOAT4_E2M1FN);
		ck_assert_int_eq(mv->dl_tensor.dtype.bits, 4);
		/* the exports outlive the caller's reference */
		wlift_result_free(r);
		ck_assert_int_eq(((uint8_t *)m->dl_tensor.data)[11], 11);
		m->deleter(m);
		mv->deleter(mv);
		ck_assert_int_eq(((uint8_t *)mb->dl_tensor.data)[3], 15);
		mb->deleter(mb);
	}
	{
		wlift_dl_managed_versioned *x;
		ck_assert_int_eq(wlift_load(ck, NULL, NULL, NULL, &r, NULL), 0);
		ck_assert_int_eq(
		    wlift_tensor_dlpack_versioned(wlift_result_find(r, "b"), 0, &x, NULL), 0);
		ck_assert_int_eq(x->dl_tensor.dtype.code, WLIFT_DL_FLOAT8_E4M3FN);
		x->deleter(x);
		ck_assert_int_eq(
		    wlift_tensor_dlpack_versioned(wlift_result_find(r, "c"), 0, &x, NULL), 0);
		ck_assert_int_eq(x->dl_tensor.dtype.code, WLIFT_DL_BOOL);
		ck_assert_int_eq(x->dl_tensor.dtype.bits, 8);
		ck_assert_int_eq(x->dl_tensor.ndim, 0);
		x->deleter(x);
		ck_assert_int_eq(
		    wlift_tensor_dlpack_versioned(wlift_result_find(r, "e"), 0, &x, NULL), 0);
		ck_assert_int_eq(x->dl_tensor.dtype.code, WLIFT_DL_INT);
		ck_assert_int_eq(x->dl_tensor.shape[0], 0);
		x->deleter(x);
		wlift_result_free(r);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dlpack");
	TCase *tc = tcase_create("dlpack");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_add_test(tc, export);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
