/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The communicator (src/comm/): the NCCL backend against the fake libnccl
 * (WLIFT_FAKENCCL, fake/fake_nccl.c) over the fake CUDA driver (WLIFT_FAKECUDA), with real
 * processes as ranks: broadcasts of fake-device buffers larger than the fake's staging area
 * from every root at 2 and 4 ranks equal the root's bytes; a rank that exits and a broadcast
 * that fails make the other ranks fail with WLIFT_ECOMM within the timeout (never hang); a
 * missing library and bad arguments are clear errors. The exchange of wlift_load
 * (wlift_load_opts.comm) over it to cuda:0: file mode at 2 and 4 ranks and shard mode at 3
 * (every tensor's device bytes equal the file's, each byte read by one rank), and a host
 * destination refused on every rank.
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

/* ---- the exchange of wlift_load over NCCL (device memory, the fake driver) ---------------- */

#define XN 7 /* tensors t0 .. t6 */
static const uint64_t xsizes[XN] = {300001, 4096, 77, 1 << 20, 12345, 2000000, 513};
static char xpath[512], xstat[8][560];
static int xshard; /* 1: t0, t2, t4, t6 split along dim 0, the others replicated */

/* One rank: load the checkpoint to cuda:0 over the NCCL communicator; every tensor (or its
 * block) must hold the file's bytes; this rank's counts go to xstat[rank]. */
static int xload_main(const uint8_t *id, int rank, int n)
{
	static const wlift_shard_rule rule = {"t[0246]", 0};
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	const struct wlift__cuda *cu;
	wlift_ctx *ctx = NULL;
	wlift_comm *c = NULL;
	wlift_ckpt *ck = NULL;
	wlift_result *r = NULL;
	wlift_stats st;
	CUcontext cc, old;
	CUdevice dev;
	FILE *f;
	wlift_diag d;

	if (wlift_ctx_create(&ctx, NULL, &d) ||
	    wlift__cuda_driver(getenv("WLIFT_FAKECUDA"), &cu, &d))
		return 10;
	if (wlift_comm_nccl(ctx, id, rank, n, 0, &c, &d) || wlift_open(ctx, xpath, &ck, &d)) {
		fprintf(stderr, "rank %d: %s\n", rank, d.message);
		return 11;
	}
	o.device = "cuda:0";
	o.comm = c;
	if (xshard) {
		o.shard = &rule;
		o.nshard = 1;
	}
	if (wlift_load(ck, &o, NULL, NULL, &r, &d)) {
		fprintf(stderr, "rank %d: %s\n", rank, d.message);
		return 12;
	}
	if (wlift_result_count(r) != XN || cu->DeviceGet(&dev, 0) ||
	    cu->PrimaryCtxRetain(&cc, dev) || cu->CtxPushCurrent(cc))
		return 13;
	for (size_t i = 0; i < XN; i++) {
		wlift_tensor_view v;
		uint8_t *h;

		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		if (v.device != 0 || (v.nbytes && !(h = malloc(v.nbytes))))
			return 14;
		if (!v.nbytes)
			continue;
		if (cu->MemcpyDtoH(h, (CUdeviceptr)(uintptr_t)v.data, v.nbytes))
			return 15;
		for (uint64_t k = 0; k < v.nbytes; k++)
			if (h[k] != wt_pat(v.info.data_begin + k)) {
				fprintf(stderr, "rank %d: %s byte %llu differs\n", rank, v.info.name,
					(unsigned long long)k);
				return 16;
			}
		free(h);
	}
	cu->CtxPopCurrent(&old);
	wlift_result_stats(r, &st);
	f = fopen(xstat[rank], "w");
	if (!f)
		return 17;
	fprintf(f, "%llu %llu %llu\n", (unsigned long long)st.bytes_read,
		(unsigned long long)st.bytes_received, (unsigned long long)st.bytes);
	fclose(f);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_comm_destroy(c);
	wlift_ctx_destroy(ctx);
	return 0;
}

/* n ranks: each ends with every tensor (file mode) or its blocks + the replicated ones
 * (shard mode); over the ranks each byte is read once. */
static void xload(int n, int shard)
{
	uint64_t total, rep = 0, read = 0, recv = 0, blocks = 0;
	int rc[8];

	snprintf(xpath, sizeof(xpath), "%s", wt_path("x.safetensors"));
	wt_make_u8_st(xpath, XN, xsizes, &total);
	for (int r = 0; r < n; r++)
		snprintf(xstat[r], sizeof(xstat[r]), "%s.%d", xpath, r);
	xshard = shard;
	setenv("WEIGHTLIFT_DIRECT", "off", 1); /* bytes_read exact (no O_DIRECT rounding) */
	run_ranks(n, xload_main, rc);
	for (int r = 0; r < n; r++)
		ck_assert_msg(rc[r] == 0, "rank %d exited %d", r, rc[r]);
	for (size_t i = 0; shard && i < XN; i++)
		if (i % 2)
			rep += xsizes[i];
	for (int r = 0; r < n; r++) {
		unsigned long long a, b, c;
		FILE *f = fopen(xstat[r], "r");
		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fscanf(f, "%llu %llu %llu", &a, &b, &c), 3);
		fclose(f);
		ck_assert_uint_eq(a + b, c); /* read + received = held */
		ck_assert_msg(n == 2 || a > 0, "rank %d read nothing", r);
		read += a;
		recv += b;
		blocks += c - rep;
	}
	if (!shard) {
		ck_assert_uint_eq(read, total);
		ck_assert_uint_eq(recv, (uint64_t)(n - 1) * total);
	} else {
		ck_assert_uint_eq(blocks, total - rep); /* the blocks cover the split tensors */
		ck_assert_uint_eq(read, total);		/* blocks + each replicated one once */
		ck_assert_uint_eq(recv, (uint64_t)(n - 1) * rep);
	}
}

START_TEST(load_exchange_2)
{
	xload(2, 0);
}
END_TEST

START_TEST(load_exchange_4)
{
	xload(4, 0);
}
END_TEST

START_TEST(load_exchange_shard_3)
{
	xload(3, 1);
}
END_TEST

/* The backend must move the destination's memory: NCCL with a host destination is refused
 * on every rank (each fails alike, after the agreement round). */
static int xhost_main(const uint8_t *id, int rank, int n)
{
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_comm *c = NULL;
	wlift_ckpt *ck = NULL;
	wlift_result *r = NULL;
	wlift_diag d;
	int ret;

	if (wlift_comm_nccl(NULL, id, rank, n, 0, &c, &d) || wlift_open(NULL, xpath, &ck, &d))
		return 11;
	o.comm = c;
	ret = wlift_load(ck, &o, NULL, NULL, &r, &d);
	if (rank == 0 && (ret != WLIFT_EUNSUPPORTED || !strstr(d.message, "moves device")))
		return 20;
	if (rank == 1 && (ret != WLIFT_ECOMM || !strstr(d.message, "failed on rank 0 of 2")))
		return 21;
	if (r)
		return 22;
	wlift_ckpt_close(ck);
	wlift_comm_destroy(c);
	return 0;
}

START_TEST(load_exchange_refused)
{
	uint64_t total;
	int rc[2];

	snprintf(xpath, sizeof(xpath), "%s", wt_path("x.safetensors"));
	wt_make_u8_st(xpath, XN, xsizes, &total);
	run_ranks(2, xhost_main, rc);
	/* Rank 1 also fails its own check; it reports rank 0's error or its own. */
	ck_assert_msg(rc[0] == 0, "rank 0 exited %d", rc[0]);
	ck_assert_msg(rc[1] == 0 || rc[1] == 21, "rank 1 exited %d", rc[1]);
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
	tcase_add_test(tc, load_exchange_2);
	tcase_add_test(tc, load_exchange_4);
	tcase_add_test(tc, load_exchange_shard_3);
	tcase_add_test(tc, load_exchange_refused);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
