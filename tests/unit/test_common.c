/* SPDX-License-Identifier: Apache-2.0 */
/* Error codes, diagnostics, context knobs and the shared adaptive concurrency limit. */
#include <errno.h>
#include <pthread.h>
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

static int wakes;
static void count_wake(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&wakes, 1, __ATOMIC_RELAXED);
}

/* The gate: one limit over every member, starting at one place per member, grown by the
 * total throughput of a round, halved once per burst of "slow down", fresh for each load. */
START_TEST(gate_one_limit)
{
	struct wlift__gate *g;
	struct wlift__gate_member a, b;
	unsigned limit, max, peak;
	double tput = 0, t = wlift__now();

	ck_assert_int_eq(wlift__gate_create(1, 1.1, &g), 0);
	wlift__gate_join(g, &a, 4, count_wake, NULL);
	wlift__gate_join(g, &b, 4, count_wake, NULL);
	wlift__gate_state(g, &limit, &max, &peak);
	ck_assert_uint_eq(limit, 2);
	ck_assert_uint_eq(max, 8);
	/* Two places over both members, whichever asks. */
	ck_assert_int_eq(wlift__gate_take(g, &a), 1);
	ck_assert_int_eq(wlift__gate_take(g, &a), 1);
	ck_assert_int_eq(wlift__gate_take(g, &b), 0);
	ck_assert_int_eq(wlift__gate_take(g, &a), 0);
	wakes = 0;
	wlift__gate_put(g);
	ck_assert_int_eq(wakes, 2); /* both wanted one */
	ck_assert_int_eq(wlift__gate_take(g, &b), 1);
	wlift__gate_put(g);
	wlift__gate_put(g);
	/* A round is `limit` completions from any member: the first one always grows (slow
	 * start doubles), a round no faster than the best stops the doubling. */
	ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 1, &tput), 0);
	ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 1, &tput), 4);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 1, &tput), 0);
	ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 1, &tput), 0); /* same rate: no */
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 0.25, &tput), 0);
	ck_assert_uint_eq(wlift__gate_done(g, 1000, t += 0.25, &tput), 5); /* faster: +1 */
	ck_assert(tput > 3000);
	/* A burst of "slow down": one halving until a read completes. */
	ck_assert_uint_eq(wlift__gate_slow(g, t), 2);
	ck_assert_uint_eq(wlift__gate_slow(g, t), 0);
	wlift__gate_done(g, 1000, t += 1, &tput);
	ck_assert_uint_eq(wlift__gate_slow(g, t), 1);
	wlift__gate_done(g, 1000, t += 1, &tput);
	ck_assert_uint_eq(wlift__gate_slow(g, t), 1); /* never below one */
	/* Never above the members' depths; a member leaving lowers that. */
	wlift__gate_leave(g, &b);
	wlift__gate_state(g, &limit, &max, &peak);
	ck_assert_uint_eq(max, 4);
	ck_assert_uint_le(limit, 4);
	ck_assert_uint_eq(peak, 2);
	/* The last one out: the next load starts over. */
	wlift__gate_leave(g, &a);
	wlift__gate_join(g, &a, 3, count_wake, NULL);
	wlift__gate_state(g, &limit, &max, &peak);
	ck_assert_uint_eq(limit, 1);
	ck_assert_uint_eq(max, 3);
	ck_assert_uint_eq(peak, 0);
	wlift__gate_leave(g, &a);
	wlift__gate_destroy(g);
}
END_TEST

/* Threads taking and giving back places: never more taken at once than the limit. */
static struct wlift__gate *tg;
static int holders, most;
static void *taker(void *arg)
{
	struct wlift__gate_member *m = arg;

	for (int i = 0; i < 20000; i++) {
		if (!wlift__gate_take(tg, m))
			continue;
		int h = __atomic_add_fetch(&holders, 1, __ATOMIC_SEQ_CST);
		int seen = __atomic_load_n(&most, __ATOMIC_SEQ_CST);
		while (h > seen &&
		       !__atomic_compare_exchange_n(&most, &seen, h, 0, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST))
			;
		__atomic_sub_fetch(&holders, 1, __ATOMIC_SEQ_CST);
		wlift__gate_put(tg);
	}
	return NULL;
}

START_TEST(gate_threads_within_limit)
{
	struct wlift__gate_member m[4];
	pthread_t th[4];
	unsigned limit, max, peak;

	ck_assert_int_eq(wlift__gate_create(1, 1.1, &tg), 0);
	for (int i = 0; i < 4; i++)
		wlift__gate_join(tg, &m[i], 4, count_wake, NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, taker, &m[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	wlift__gate_state(tg, &limit, &max, &peak);
	ck_assert_uint_eq(limit, 4);
	ck_assert_uint_eq(max, 16);
	ck_assert_int_le(most, 4);
	ck_assert_uint_le(peak, 4);
	for (int i = 0; i < 4; i++)
		wlift__gate_leave(tg, &m[i]);
	wlift__gate_destroy(tg);
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
	tcase_add_test(tc, gate_one_limit);
	tcase_add_test(tc, gate_threads_within_limit);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
