/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The communicator (src/comm/): the NCCL backend against the fake libnccl
 * (WLIFT_FAKENCCL, fake/fake_nccl.c) over the fake CUDA driver (WLIFT_FAKECUDA), with real
 * processes as ranks: broadcasts of fake-device buffers larger than the fake's staging area
 * from every root at 2 and 4 ranks equal the root's bytes; a rank that exits and a broadcast
 * that fails make the other ranks fail with WLIFT_ECOMM within the timeout (never hang); a
 * missing library and bad arguments are clear errors.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weightlift.h"
#include "sink/cuda_drv.h"
#include "testutil.h"

#define LEN ((9u << 20) + 12345u) /* over two of the fake's 4 MiB stages, and a tail */

/* Each test runs in a fork of main, which has set WEIGHTLIFT_{CUDA,NCCL}_LIBRARY. */
static void env_fakes(void)
{
}

static uint8_t pat(size_t i, int root)
{
	return (uint8_t)(i * 131 + (i >> 13) + (unsigned)root * 7);
}

/* One rank: join, then for each root broadcast a device buffer and check it. Exit 0 on
 * success, 10 + step on a failure (reported by the parent). */
static int rank_main(const uint8_t *id, int rank, int n)
{
	const struct wlift__cuda *cu;
	wlift_ctx *ctx = NULL;
	wlift_comm *c = NULL;
	CUcontext cc, old;
	CUdevice dev;
	CUdeviceptr dp;
	CUstream st;
	void *hp = NULL;
	uint8_t *host;
	wlift_diag d;

	if (wlift_ctx_create(&ctx, NULL, &d) || wlift__cuda_driver(getenv("WLIFT_FAKECUDA"), &cu, &d))
		return 10;
	if (wlift_comm_nccl(ctx, id, rank, n, 0, &c, &d)) {
		fprintf(stderr, "rank %d: %s\n", rank, d.message);
		return 11;
	}
	if (wlift_comm_rank(c) != rank || wlift_comm_size(c) != n)
		return 12;
	/* The host side is pinned: the fake driver, like the real one, wants that for async
	 * copies. */
	if (cu->DeviceGet(&dev, 0) || cu->PrimaryCtxRetain(&cc, dev) || cu->CtxPushCurrent(cc) ||
	    cu->MemAlloc(&dp, LEN) || cu->MemHostAlloc(&hp, LEN, 0) ||
	    cu->StreamCreate(&st, CU_STREAM_NON_BLOCKING))
		return 13;
	host = hp;
	for (int root = 0; root < n; root++) {
		for (size_t i = 0; i < LEN; i++)
			host[i] = rank == root ? pat(i, root) : 0xEE;
		if (cu->MemcpyHtoDAsync(dp, host, LEN, st) || cu->StreamSynchronize(st))
			return 14;
		if (wlift_comm_broadcast(c, (void *)(uintptr_t)dp, LEN, root, &d)) {
			fprintf(stderr, "rank %d: %s\n", rank, d.message);
			return 15;
		}
		memset(host, 0, LEN);
		if (cu->MemcpyDtoH(host, dp, LEN))
			return 16;
		for (size_t i = 0; i < LEN; i++)
			if (host[i] != pat(i, root)) {
				fprintf(stderr, "rank %d root %d: byte %zu differs\n", rank, root, i);
				return 17;
			}
	}
	cu->StreamDestroy(st);
	cu->MemFree(dp);
	cu->MemFreeHost(hp);
	cu->CtxPopCurrent(&old);
	wlift_comm_destroy(c);
	wlift_ctx_destroy(ctx);
	return 0;
}

/* Fork n ranks running fn; their exit codes into rc[]. Bounded: a hang fails the test. */
static void run_ranks(int n, int (*fn)(const uint8_t *, int, int), int *rc)
{
	uint8_t id[WLIFT_COMM_ID_BYTES];
	pid_t pid[8];
	wlift_diag d;
	time_t t0 = time(NULL);

	ck_assert_msg(wlift_comm_nccl_id(NULL, id, &d) == 0, "%s", d.message);
	for (int r = 0; r < n; r++) {
		pid[r] = fork();
		ck_assert_int_ge(pid[r], 0);
		if (pid[r] == 0)
			_exit(fn(id, r, n));
	}
	for (int r = 0; r < n; r++) {
		int st = 0;
		while (waitpid(pid[r], &st, WNOHANG) == 0) {
			if (time(NULL) - t0 > 60) {
				for (int k = 0; k < n; k++)
					kill(pid[k], SIGKILL);
				ck_abort_msg("rank %d did not finish within 60 s (hang)", r);
			}
			usleep(10000);
		}
		rc[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

static void ranks_ok(int n)
{
	int rc[8];

	env_fakes();
	run_ranks(n, rank_main, rc);
	for (int r = 0; r < n; r++)
		ck_assert_msg(rc[r] == 0, "rank %d exited %d", r, rc[r]);
}

START_TEST(broadcast_2)
{
	ranks_ok(2);
}
END_TEST

START_TEST(broadcast_4)
{
	ranks_ok(4);
}
END_TEST

/* Rank 1 joins and exits; rank 0's broadcast fails with WLIFT_ECOMM naming it, in time. */
static int dies_main(const uint8_t *id, int rank, int n)
{
	wlift_comm *c = NULL;
	wlift_diag d;
	uint8_t buf[64] = {0};
	time_t t0;
	int ret;

	if (wlift_comm_nccl(NULL, id, rank, n, 0, &c, &d))
		return 11;
	if (rank == 1)
		_exit(3);
	t0 = time(NULL);
	ret = wlift_comm_broadcast(c, buf, sizeof(buf), 1, &d);
	if (ret != WLIFT_ECOMM || !strstr(d.message, "rank 0 of 2"))
		return 20;
	if (time(NULL) - t0 > 20)
		return 21;
	/* broken from now on: no second wait */
	if (wlift_comm_broadcast(c, buf, sizeof(buf), 1, &d) != WLIFT_ECOMM ||
	    !strstr(d.message, "failed earlier"))
		return 22;
	wlift_comm_destroy(c);
	return 0;
}

START_TEST(peer_exits)
{
	int rc[2];

	env_fakes();
	setenv("FAKENCCL_TIMEOUT_MS", "1500", 1);
	run_ranks(2, dies_main, rc);
	ck_assert_int_eq(rc[1], 3);
	ck_assert_msg(rc[0] == 0, "rank 0 exited %d", rc[0]);
}
END_TEST

/* Rank 0's broadcast fails in NCCL: it reports NCCL's text; rank 1 is left waiting and
 * fails too (the fake's timeout, or ours). */
static int fails_main(const uint8_t *id, int rank, int n)
{
	wlift_comm *c = NULL;
	wlift_diag d;
	uint8_t buf[64] = {0};

	if (rank == 0)
		setenv("FAKENCCL_FAIL_BCAST", "1", 1);
	if (wlift_comm_nccl(NULL, id, rank, n, 0, &c, &d))
		return 11;
	if (wlift_comm_broadcast(c, buf, sizeof(buf), 0, &d) != WLIFT_ECOMM)
		return 20;
	if (rank == 0 && !strstr(d.message, "injected broadcast failure"))
		return 21;
	wlift_comm_destroy(c);
	return 0;
}

START_TEST(broadcast_fails)
{
	int rc[2];

	env_fakes();
	setenv("FAKENCCL_TIMEOUT_MS", "1500", 1);
	run_ranks(2, fails_main, rc);
	ck_assert_msg(rc[0] == 0 && rc[1] == 0, "exits %d %d", rc[0], rc[1]);
}
END_TEST

START_TEST(errors)
{
	uint8_t id[WLIFT_COMM_ID_BYTES] = {0};
	wlift_comm *c = (wlift_comm *)1;
	wlift_ctx *ctx;
	wlift_diag d;

	setenv("WEIGHTLIFT_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
	unsetenv("WEIGHTLIFT_COMM_TIMEOUT");
	unsetenv("WEIGHTLIFT_DIST_TIMEOUT");
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_int_eq(wlift_comm_nccl_id(ctx, id, &d), WLIFT_ENODEV);
	ck_assert_ptr_nonnull(strstr(d.message, "cannot load NCCL"));
	ck_assert_int_eq(wlift_comm_nccl(ctx, id, 2, 2, 0, &c, &d), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(wlift_comm_broadcast(NULL, id, 1, 0, &d), -EINVAL);
	ck_assert_int_eq(wlift_comm_rank(NULL), -EINVAL);
	wlift_comm_destroy(NULL);
	ck_assert_uint_eq(wlift_ctx_comm_timeout(ctx), 300);
	wlift_ctx_destroy(ctx);
	/* The earlier name counts when WEIGHTLIFT_COMM_TIMEOUT is not set, range-checked the
	 * same way and named in the error. */
	unsetenv("WEIGHTLIFT_COMM_TIMEOUT");
	setenv("WEIGHTLIFT_DIST_TIMEOUT", "7", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_uint_eq(wlift_ctx_comm_timeout(ctx), 7);
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_DIST_TIMEOUT", "90000", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_DIST_TIMEOUT"), "%s", d.message);
	setenv("WEIGHTLIFT_COMM_TIMEOUT", "86400", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_uint_eq(wlift_ctx_comm_timeout(ctx), 86400);
	wlift_ctx_destroy(ctx);
	unsetenv("WEIGHTLIFT_DIST_TIMEOUT");
	setenv("WEIGHTLIFT_COMM_TIMEOUT", "86401", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_COMM_TIMEOUT"), "%s", d.message);
	setenv("WEIGHTLIFT_COMM_TIMEOUT", "ten", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_COMM_TIMEOUT"), "%s", d.message);
	unsetenv("WEIGHTLIFT_COMM_TIMEOUT");
}
END_TEST

int main(void)
{
	const char *cu = getenv("WLIFT_FAKECUDA"), *nc = getenv("WLIFT_FAKENCCL");
	Suite *s;

	if (!cu || !nc) {
		fprintf(stderr, "SKIP: WLIFT_FAKECUDA / WLIFT_FAKENCCL not set\n");
		return 77;
	}
	setenv("WEIGHTLIFT_CUDA_LIBRARY", cu, 1);
	setenv("WEIGHTLIFT_NCCL_LIBRARY", nc, 1);
	s = suite_create("comm");
	TCase *tc = tcase_create("nccl");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, broadcast_2);
	tcase_add_test(tc, broadcast_4);
	tcase_add_test(tc, peer_exits);
	tcase_add_test(tc, broadcast_fails);
	tcase_add_test(tc, errors);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
