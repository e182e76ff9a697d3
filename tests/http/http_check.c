/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_check: the C API half of the HTTP source's test (tests/http/test_http.sh).
 *
 *     http_check same URI LOCAL
 *         opens URI (http(s):// or hf://) and the local file or index LOCAL, checks that they
 *         have the same tensors, then loads URI with chunk sizes smaller than its tensors and
 *         larger than the whole checkpoint, 1, 4 and 16 requests in flight, 1 and 3 threads,
 *         and leading rows of each tensor: every byte must equal LOCAL's load, and the stats
 *         must say "http"
 *     http_check fail URI CODE [open|load]
 *         expects the open (or, with load, the load) of URI to fail with the code named
 *         (WLIFT_EHTTP, ENOENT, ...), *out NULL, the diagnostic naming the URI; prints the
 *         message
 * Exit 0 when every check passed, 1 otherwise, 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weightlift.h"

static int nfail;

#define CHECK(cond, ...)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			nfail++;                                                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
			fprintf(stderr, __VA_ARGS__);                                          \
			fputc('\n', stderr);                                                   \
		}                                                                              \
	} while (0)

static wlift_ckpt *open_or_die(wlift_ctx *ctx, const char *uri)
{
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	int ret;

	wlift_diag_clear(&d);
	ret = wlift_open(ctx, uri, &ck, &d);
	if (ret) {
		fprintf(stderr, "FAIL: open %s: %s (%s)\n", uri, d.message, wlift_errname(ret));
		exit(1);
	}
	return ck;
}

/* Load ck with the given knobs (names/rows optional) and compare with ref's tensors. */
static void load_cmp(wlift_ctx *ctx, const char *what, wlift_ckpt *ck, const wlift_result *ref,
		     size_t chunk, unsigned threads, const char *const *names, size_t nnames,
		     const wlift_rows *rows)
{
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_result *res = NULL;
	wlift_stats st;
	wlift_diag d;
	int ret;

	(void)ctx;
	lo.chunk_bytes = chunk;
	lo.threads = threads;
	lo.names = names;
	lo.nnames = nnames;
	lo.rows = rows;
	wlift_diag_clear(&d);
	ret = wlift_load(ck, &lo, NULL, NULL, &res, &d);
	CHECK(ret == 0, "%s: load (chunk %zu, %u threads): %s (%s)", what, chunk, threads,
	      d.message, wlift_errname(ret));
	if (ret)
		return;
	wlift_result_stats(res, &st);
	CHECK(strcmp(st.strategy, "http") == 0, "%s: strategy %s", what, st.strategy);
	for (size_t i = 0; i < wlift_result_count(res); i++) {
		wlift_tensor_view v, w;
		const wlift_tensor *t = wlift_result_tensor(res, i);
		const wlift_tensor *u;
		uint64_t skip = 0;

		wlift_tensor_get(t, &v);
		u = wlift_result_find(ref, v.info.name);
		CHECK(u != NULL, "%s: %s not in the reference", what, v.info.name);
		if (!u)
			continue;
		wlift_tensor_get(u, &w);
		if (rows && w.info.ndim && w.info.shape[0])
			skip = w.nbytes / w.info.shape[0] * rows[i].begin;
		CHECK(skip + v.nbytes <= w.nbytes &&
			  (v.nbytes == 0 || memcmp(v.data, (const uint8_t *)w.data + skip, v.nbytes) == 0),
		      "%s: bytes of %s differ (chunk %zu, %u threads)", what, v.info.name, chunk,
		      threads);
	}
	wlift_result_free(res);
}

static int cmd_same(const char *uri, const char *local, unsigned requests)
{
	static const size_t chunks[] = { 65536 + 3, 1u << 20, 256u << 20 };
	static const unsigned threads[] = { 1, 3 };
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_ctx *ctx = NULL;
	wlift_ckpt *ck, *lk;
	wlift_result *ref = NULL;
	wlift_diag d;
	size_t n;
	int ret;

	co.http_requests = requests;
	wlift_diag_clear(&d);
	if (wlift_ctx_create(&ctx, &co, &d)) {
		fprintf(stderr, "FAIL: context: %s\n", d.message);
		return 1;
	}
	ck = open_or_die(ctx, uri);
	lk = open_or_die(ctx, local);
	n = wlift_ckpt_count(ck);
	CHECK(n == wlift_ckpt_count(lk), "%zu tensors, the local copy has %zu", n,
	      wlift_ckpt_count(lk));
	for (size_t i = 0; i < n && i < wlift_ckpt_count(lk); i++) {
		wlift_tensor_info a, b;
		wlift_ckpt_info(ck, i, &a);
		wlift_ckpt_info(lk, i, &b);
		CHECK(strcmp(a.name, b.name) == 0 && a.file_offset == b.file_offset &&
			  a.nbytes == b.nbytes,
		      "tensor %zu: %s at %" PRIu64 " vs %s at %" PRIu64, i, a.name, a.file_offset,
		      b.name, b.file_offset);
	}
	wlift_diag_clear(&d);
	ret = wlift_load(lk, &lo, NULL, NULL, &ref, &d);
	if (ret) {
		fprintf(stderr, "FAIL: local load: %s\n", d.message);
		return 1;
	}
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
		for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++)
			load_cmp(ctx, uri, ck, ref, chunks[c], threads[t], NULL, 0, NULL);
	/* Leading rows of every tensor with rows: ranges that start and end inside tensors. */
	{
		const char **names = calloc(n ? n : 1, sizeof(*names));
		wlift_rows *rows = calloc(n ? n : 1, sizeof(*rows));
		size_t k = 0;
		for (size_t i = 0; names && rows && i < n; i++) {
			wlift_tensor_info a;
			wlift_ckpt_info(ck, i, &a);
			if (a.ndim == 0 || a.shape[0] < 3 || a.nbytes % a.shape[0])
				continue;
			names[k] = a.name;
			rows[k].begin = 1;
			rows[k].end = a.shape[0] - 1;
			k++;
		}
		if (k)
			load_cmp(ctx, "rows", ck, ref, 65536 + 5, 2, names, k, rows);
		free(names);
		free(rows);
	}
	wlift_result_free(ref);
	wlift_ckpt_close(ck);
	wlift_ckpt_close(lk);
	wlift_ctx_destroy(ctx);
	return nfail ? 1 : 0;
}

static int code_of(const char *name)
{
	static const int codes[] = { WLIFT_EHTTP,  WLIFT_EAUTH,	 WLIFT_ENET,	WLIFT_ECHANGED,
				     WLIFT_EURI,   WLIFT_EUNSUPPORTED, WLIFT_ETRUNCATED, WLIFT_EHTML,
				     -ENOENT,	   -EIO };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(wlift_errname(codes[i]), name) == 0)
			return codes[i];
	return 0;
}

static int cmd_fail(const char *uri, const char *code_name, int in_load)
{
	int want = code_of(code_name), ret;
	wlift_ckpt *ck = NULL;
	wlift_result *res = NULL;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;

	if (!want) {
		fprintf(stderr, "unknown code %s\n", code_name);
		return 2;
	}
	wlift_diag_clear(&d);
	ret = wlift_open(NULL, uri, &ck, &d);
	if (in_load) {
		if (ret) {
			fprintf(stderr, "FAIL: open %s: %s\n", uri, d.message);
			return 1;
		}
		lo.chunk_bytes = 65536;
		ret = wlift_load(ck, &lo, NULL, NULL, &res, &d);
		CHECK(res == NULL, "a failed load left a result");
	} else {
		CHECK(ck == NULL, "a failed open left a checkpoint");
	}
	printf("%s: %s [%s]\n", wlift_errname(ret), d.message, d.rule);
	CHECK(ret == want, "%s: got %s, want %s", uri, wlift_errname(ret), code_name);
	CHECK(d.code == ret, "diag code %d, returned %d", d.code, ret);
	CHECK(strstr(d.message, uri) != NULL, "the message does not name %s: %s", uri, d.message);
	wlift_result_free(res);
	wlift_ckpt_close(ck);
	return nfail ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "same") == 0)
		return cmd_same(argv[2], argv[3], argc > 4 ? (unsigned)atoi(argv[4]) : 0);
	if (argc >= 4 && strcmp(argv[1], "fail") == 0)
		return cmd_fail(argv[2], argv[3], argc > 4 && strcmp(argv[4], "load") == 0);
	fprintf(stderr, "usage: http_check same URI LOCAL [REQUESTS] | fail URI CODE [open|load]\n");
	return 2;
}
