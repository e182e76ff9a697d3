/* SPDX-License-Identifier: Apache-2.0 */
/* The remote reads' retry and hedging policy without a server (source/retry.c): backoff
 * growth, jitter bounds, the cap, Retry-After; the hedging threshold; and the knobs that set
 * them (WEIGHTLIFT_HTTP_RETRIES, _RETRY_BASE_MS, _RETRY_MAX_MS, _HEDGE, _ADAPTIVE,
 * WEIGHTLIFT_MAX_RATE / max_rate), range-checked. The rules in action are tested through the
 * fault proxy by tests/http/test_faults.sh. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "source/retry.h"
#include "testutil.h"

START_TEST(backoff)
{
	uint64_t seed = 42;

	for (int k = 0; k < 200; k++) {
		/* base 100 ms: attempt n waits within [b/2, b], b = 100 ms * 2^(n-1) */
		for (unsigned n = 1; n <= 5; n++) {
			double b = 0.1 * (double)(1u << (n - 1));
			double w = wlift__retry_backoff(n, 100, 10000, -1, &seed);
			ck_assert_msg(w >= b / 2 - 1e-9 && w <= b + 1e-9, "attempt %u: %f", n, w);
		}
		/* the cap holds for late attempts and for Retry-After */
		ck_assert(wlift__retry_backoff(40, 100, 2000, -1, &seed) <= 2.0);
		ck_assert(wlift__retry_backoff(40, 100, 2000, -1, &seed) >= 1.0);
		ck_assert(wlift__retry_backoff(1, 100, 2000, 3600, &seed) == 2.0);
		/* Retry-After raises a shorter backoff */
		ck_assert(wlift__retry_backoff(1, 100, 10000, 3, &seed) == 3.0);
	}
	/* the jitter spreads (not one value) */
	{
		double a = wlift__retry_backoff(3, 100, 10000, -1, &seed);
		int differ = 0;
		for (int k = 0; k < 20; k++)
			differ |= wlift__retry_backoff(3, 100, 10000, -1, &seed) != a;
		ck_assert(differ);
	}
}
END_TEST

START_TEST(retry_after)
{
	ck_assert(wlift__retry_after("120") == 120);
	ck_assert(wlift__retry_after(" 0 ") == 0);
	ck_assert(wlift__retry_after("1\r\n") == 1);
	ck_assert(wlift__retry_after("Fri, 31 Dec 1999 23:59:59 GMT") < 0);
	ck_assert(wlift__retry_after("") < 0);
	ck_assert(wlift__retry_after("-1") < 0);
	ck_assert(wlift__retry_after("5s") < 0);
}
END_TEST

START_TEST(hedge_threshold)
{
	double lat[5] = { 0.5, 0.1, 0.2, 9.0, 0.3 };
	double two[2] = { 0.1, 0.1 };

	/* factor 4 times the median (0.3 s) */
	ck_assert(wlift__hedge_after(lat, 5, 4, 0.25) > 1.19 && wlift__hedge_after(lat, 5, 4, 0.25) < 1.21);
	/* at least the minimum; off with factor 0; not before enough samples */
	ck_assert(wlift__hedge_after(lat, 5, 1, 0.5) == 0.5);
	ck_assert(wlift__hedge_after(lat, 5, 0, 0.25) < 0);
	ck_assert(wlift__hedge_after(two, 2, 4, 0.25) < 0);
}
END_TEST

START_TEST(knobs)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	wlift_ctx *ctx = NULL;
	wlift_diag d;
	static const char *const vars[] = { "WEIGHTLIFT_HTTP_RETRIES", "WEIGHTLIFT_HTTP_RETRY_BASE_MS",
					    "WEIGHTLIFT_HTTP_RETRY_MAX_MS", "WEIGHTLIFT_HTTP_HEDGE",
					    "WEIGHTLIFT_HTTP_ADAPTIVE", "WEIGHTLIFT_MAX_RATE" };

	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->http_retries, WLIFT_HTTP_RETRIES);
	ck_assert_uint_eq(ctx->http_retry_base_ms, WLIFT_HTTP_RETRY_BASE_MS);
	ck_assert_uint_eq(ctx->http_retry_max_ms, WLIFT_HTTP_RETRY_MAX_MS);
	ck_assert_uint_eq(ctx->http_hedge, WLIFT_HTTP_HEDGE);
	ck_assert_int_eq(ctx->http_adaptive, 1);
	ck_assert_uint_eq(ctx->max_rate, 0);
	ck_assert_ptr_null(ctx->rate);
	wlift_ctx_destroy(ctx);
	/* 0 is a value of its own: no retries, no hedging, fixed concurrency */
	setenv("WEIGHTLIFT_HTTP_RETRIES", "0", 1);
	setenv("WEIGHTLIFT_HTTP_HEDGE", "0", 1);
	setenv("WEIGHTLIFT_HTTP_ADAPTIVE", "0", 1);
	setenv("WEIGHTLIFT_MAX_RATE", "10M", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->http_retries, 0);
	ck_assert_uint_eq(ctx->http_hedge, 0);
	ck_assert_int_eq(ctx->http_adaptive, 0);
	ck_assert_uint_eq(ctx->max_rate, 10u << 20);
	ck_assert_ptr_nonnull(ctx->rate);
	wlift_ctx_destroy(ctx);
	/* the explicit option wins over the environment */
	o.max_rate = 1u << 20;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->max_rate, 1u << 20);
	wlift_ctx_destroy(ctx);
	o.max_rate = 1000; /* under WLIFT_MIN_RATE */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "max_rate"));
	o.max_rate = 0;
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
	/* out of range or malformed: each named */
	{
		static const char *const bad[][2] = {
			{ "WEIGHTLIFT_HTTP_RETRIES", "101" },	  { "WEIGHTLIFT_HTTP_RETRIES", "-1" },
			{ "WEIGHTLIFT_HTTP_RETRY_BASE_MS", "0" }, { "WEIGHTLIFT_HTTP_RETRY_MAX_MS", "x" },
			{ "WEIGHTLIFT_HTTP_HEDGE", "1000" },	  { "WEIGHTLIFT_MAX_RATE", "1k" },
			{ "WEIGHTLIFT_MAX_RATE", "fast" },
		};
		for (size_t i = 0; i < WLIFT_ARRAY_SIZE(bad); i++) {
			setenv(bad[i][0], bad[i][1], 1);
			wlift_diag_clear(&d);
			ck_assert_msg(wlift_ctx_create(&ctx, &o, &d) == -EINVAL, "%s=%s accepted",
				      bad[i][0], bad[i][1]);
			ck_assert_msg(strstr(d.message, bad[i][0]) != NULL, "%s", d.message);
			unsetenv(bad[i][0]);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("retry");
	TCase *tc = tcase_create("retry");

	tcase_add_test(tc, backoff);
	tcase_add_test(tc, retry_after);
	tcase_add_test(tc, hedge_threshold);
	tcase_add_test(tc, knobs);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
