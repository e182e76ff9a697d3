/* SPDX-License-Identifier: Apache-2.0 */
/* Error codes, diagnostics and context knobs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "testutil.h"

START_TEST(strerror_known_and_errno)
{
	ck_assert_str_eq(wlift_errname(WLIFT_EFORMAT), "WLIFT_EFORMAT");
	ck_assert_str_eq(wlift_errname(-ENOENT), "ENOENT");
	ck_assert_str_eq(wlift_strerror(-ENOENT), strerror(ENOENT));
	ck_assert_str_eq(wlift_strerror(0), "success");
	ck_assert_str_eq(wlift_errname(-999999), "UNKNOWN");
}
END_TEST

START_TEST(diag_keeps_first_error)
{
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__diag_set(&d, WLIFT_EOFFSETS, "a.st", "w", 42, "offsets.gap",
					 "first %d", 1), WLIFT_EOFFSETS);
	ck_assert_int_eq(wlift__diag_set(&d, WLIFT_EJSON, "b.st", NULL, -1, NULL, "second"),
			 WLIFT_EJSON);
	ck_assert_int_eq(d.code, WLIFT_EOFFSETS);
	ck_assert_str_eq(d.file, "a.st");
	ck_assert_str_eq(d.tensor, "w");
	ck_assert_str_eq(d.rule, "offsets.gap");
	ck_assert_str_eq(d.message, "first 1");
	ck_assert_int_eq(d.has_offset, 1);
	ck_assert_uint_eq(d.offset, 42);
	/* NULL diag is allowed everywhere. */
	ck_assert_int_eq(wlift__diag_set(NULL, -EIO, NULL, NULL, -1, NULL, NULL), -EIO);
}
END_TEST

START_TEST(parse_sizes)
{
	uint64_t v;

	ck_assert_int_eq(wlift__parse_size("123", &v), 0);
	ck_assert_uint_eq(v, 123);
	ck_assert_int_eq(wlift__parse_size("8M", &v), 0);
	ck_assert_uint_eq(v, 8u << 20);
	ck_assert_int_eq(wlift__parse_size("4KiB", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(wlift__parse_size("1G", &v), 0);
	ck_assert_uint_eq(v, 1u << 30);
	ck_assert_int_eq(wlift__parse_size("", &v), -EINVAL);
	ck_assert_int_eq(wlift__parse_size("-1", &v), -EINVAL);
	ck_assert_int_eq(wlift__parse_size("12x", &v), -EINVAL);
	ck_assert_int_eq(wlift__parse_size("99999999999999999999G", &v), -EINVAL);
}
END_TEST

START_TEST(ctx_knob_precedence)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	wlift_ctx *ctx = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	setenv("WEIGHTLIFT_CHUNK_BYTES", "1M", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->chunk_bytes, 1u << 20);
	wlift_ctx_destroy(ctx);
	o.chunk_bytes = 4096;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->chunk_bytes, 4096);
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_CHUNK_BYTES", "bogus", 1);
	o.chunk_bytes = 0;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), -EINVAL);
	ck_assert_ptr_null(ctx);
	ck_assert_str_eq(d.rule, "config.env");
	unsetenv("WEIGHTLIFT_CHUNK_BYTES");
	o.size = 0;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, NULL), -EINVAL);
	wlift_ctx_destroy(NULL);
}
END_TEST

START_TEST(error_classes)
{
	/* Block edges and every pinned code land in their class, by macro and by function. */
	static const struct {
		int err;
		int cls;
	} cases[] = {
	    {0, WLIFT_ERRCLASS_NONE},
	    {7, WLIFT_ERRCLASS_NONE},
	    {-1, WLIFT_ERRCLASS_ERRNO},
	    {-ENOENT, WLIFT_ERRCLASS_ERRNO},
	    {-4095, WLIFT_ERRCLASS_ERRNO},
	    {-4096, WLIFT_ERRCLASS_UNKNOWN},
	    {-4999, WLIFT_ERRCLASS_UNKNOWN},
	    {WLIFT_EFORMAT, WLIFT_ERRCLASS_FORMAT},
	    {WLIFT_EURI, WLIFT_ERRCLASS_FORMAT},
	    {-5099, WLIFT_ERRCLASS_FORMAT},
	    {WLIFT_EHTTP, WLIFT_ERRCLASS_REMOTE},
	    {WLIFT_EAUTH, WLIFT_ERRCLASS_REMOTE},
	    {WLIFT_ECACHE, WLIFT_ERRCLASS_REMOTE},
	    {-5199, WLIFT_ERRCLASS_REMOTE},
	    {WLIFT_ECUDA, WLIFT_ERRCLASS_GPU},
	    {WLIFT_ECUFILE, WLIFT_ERRCLASS_GPU},
	    {-5299, WLIFT_ERRCLASS_GPU},
	    {WLIFT_ECOMM, WLIFT_ERRCLASS_COMM},
	    {-5399, WLIFT_ERRCLASS_COMM},
	    {-5400, WLIFT_ERRCLASS_UNKNOWN},
	    {INT32_MIN, WLIFT_ERRCLASS_UNKNOWN},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int e = cases[i].err, c = cases[i].cls;

		ck_assert_int_eq(wlift_errclass(e), c);
		ck_assert_int_eq(WLIFT_ERR_IS_ERRNO(e), c == WLIFT_ERRCLASS_ERRNO);
		ck_assert_int_eq(WLIFT_ERR_IS_FORMAT(e), c == WLIFT_ERRCLASS_FORMAT);
		ck_assert_int_eq(WLIFT_ERR_IS_REMOTE(e), c == WLIFT_ERRCLASS_REMOTE);
		ck_assert_int_eq(WLIFT_ERR_IS_GPU(e), c == WLIFT_ERRCLASS_GPU);
		ck_assert_int_eq(WLIFT_ERR_IS_COMM(e), c == WLIFT_ERRCLASS_COMM);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("common");

	tcase_add_test(tc, strerror_known_and_errno);
	tcase_add_test(tc, diag_keeps_first_error);
	tcase_add_test(tc, parse_sizes);
	tcase_add_test(tc, ctx_knob_precedence);
	tcase_add_test(tc, error_classes);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
