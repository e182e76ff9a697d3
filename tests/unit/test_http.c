/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP source's parts that need no server: hf:// mapping, Content-Range parsing, URL
 * joins for index shards, the locator's view of URLs, URL checks and the knobs. (Requests
 * are tested against nginx by tests/http/test_http.sh.) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/locate.h"
#include "source/http.h"
#include "source/source.h"
#include "testutil.h"

static void hf_ok(const char *ep, const char *uri, const char *want)
{
	char *url = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_msg(wlift__hf_url(ep, uri, &url, &d) == 0, "%s: %s", uri, d.message);
	ck_assert_str_eq(url, want);
	free(url);
}

static void hf_bad(const char *uri)
{
	char *url = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_msg(wlift__hf_url(NULL, uri, &url, &d) == WLIFT_EURI, "%s accepted", uri);
	ck_assert_ptr_null(url);
	ck_assert_str_eq(d.rule, "uri.hf");
	ck_assert_ptr_nonnull(strstr(d.message, uri));
}

START_TEST(hf_mapping)
{
	hf_ok(NULL, "hf://org/model/model.safetensors",
	      "https://huggingface.co/org/model/resolve/main/model.safetensors");
	hf_ok(NULL, "hf://org/model@v1.0/sub/dir/model.safetensors",
	      "https://huggingface.co/org/model/resolve/v1.0/sub/dir/model.safetensors");
	/* A revision with '/' (refs/pr/N) is one path segment, encoded. */
	hf_ok(NULL, "hf://org/model@refs/pr/1/model.safetensors",
	      "https://huggingface.co/org/model/resolve/refs%2Fpr%2F1/model.safetensors");
	hf_ok(NULL, "hf://org/model@refs%2Fpr%2F1/model.safetensors",
	      "https://huggingface.co/org/model/resolve/refs%2Fpr%2F1/model.safetensors");
	hf_ok(NULL, "hf://org/model@refs/x.safetensors",
	      "https://huggingface.co/org/model/resolve/refs/x.safetensors");
	hf_ok("http://127.0.0.1:8080/mirror/", "hf://org/model/a b/ü.safetensors",
	      "http://127.0.0.1:8080/mirror/org/model/resolve/main/a%20b/%C3%BC.safetensors");
	hf_ok("", "hf://datasets/org/data/x.safetensors",
	      "https://huggingface.co/datasets/org/data/resolve/main/x.safetensors");
	hf_ok(NULL, "hf://spaces/org/app/x.safetensors",
	      "https://huggingface.co/spaces/org/app/resolve/main/x.safetensors");
	hf_ok(NULL, "hf://o/m/100%.safetensors",
	      "https://huggingface.co/o/m/resolve/main/100%25.safetensors");
	hf_bad("hf://org");
	hf_bad("hf://org/model");
	hf_bad("hf://org/model/");
	hf_bad("hf:///model/x.safetensors");
	hf_bad("hf://org/@rev/x.safetensors");
	hf_bad("hf://org/model@/x.safetensors");
	hf_bad("hf://org/model/../x.safetensors");
	hf_bad("hf://org/model/a/./x.safetensors");
	hf_bad("hf://org/model/a//x.safetensors");
	hf_bad("hf://org/model/dir/");
	hf_bad("hf://or g/model/x.safetensors");
	hf_bad("hf://org/mo?del/x.safetensors");
	hf_bad("hf://../model/x.safetensors");
}
END_TEST

START_TEST(content_range)
{
	uint64_t a, b, t;

	ck_assert_int_eq(wlift__http_content_range("bytes 0-99/1000", &a, &b, &t), 0);
	ck_assert_uint_eq(a, 0);
	ck_assert_uint_eq(b, 99);
	ck_assert_uint_eq(t, 1000);
	ck_assert_int_eq(wlift__http_content_range("  Bytes 5-5/6\r\n", &a, &b, &t), 0);
	ck_assert_uint_eq(a, 5);
	ck_assert_int_eq(wlift__http_content_range("bytes 0-99/*", &a, &b, &t), 0);
	ck_assert_uint_eq(t, UINT64_MAX);
	ck_assert_int_eq(wlift__http_content_range("bytes */1000", &a, &b, &t), 1);
	ck_assert_uint_eq(t, 1000);
	ck_assert_int_eq(wlift__http_content_range("bytes */0", &a, &b, &t), 1);
	ck_assert_uint_eq(t, 0);
	ck_assert_int_eq(wlift__http_content_range("bytes 9-3/10", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("bytes 0-10/10", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("bytes 0-9", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("items 0-9/10", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("bytes -1-9/10", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("bytes 0-9/10x", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("bytes */*", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(
	    wlift__http_content_range("bytes 0-1/99999999999999999999999", &a, &b, &t), -EINVAL);
	ck_assert_int_eq(wlift__http_content_range("", &a, &b, &t), -EINVAL);
}
END_TEST

START_TEST(url_joins)
{
	char *j;

	/* Shard names of an index are percent-encoded into http(s) URLs, kept for hf://
	 * (encoded when mapped) and local paths. */
	j = wlift__uri_join("https://h/a/b", "model 1#?.safetensors");
	ck_assert_str_eq(j, "https://h/a/b/model%201%23%3F.safetensors");
	free(j);
	j = wlift__uri_join("http://h/a/", "sub/m-00001.safetensors");
	ck_assert_str_eq(j, "http://h/a/sub/m-00001.safetensors");
	free(j);
	j = wlift__uri_join("hf://org/m@v1", "a b.safetensors");
	ck_assert_str_eq(j, "hf://org/m@v1/a b.safetensors");
	free(j);
	j = wlift__uri_join("/tmp/x", "a b.safetensors");
	ck_assert_str_eq(j, "/tmp/x/a b.safetensors");
	free(j);
	j = wlift__uri_dirname("https://h/a/b/model.safetensors.index.json");
	ck_assert_str_eq(j, "https://h/a/b");
	free(j);
}
END_TEST

START_TEST(locator_and_checks)
{
	struct wlift__located l;
	struct wlift__source *s = NULL;
	wlift_diag d;
	int kind = 0;

	ck_assert(wlift__http_scheme("http://h/x"));
	ck_assert(wlift__http_scheme("https://h/x"));
	ck_assert(wlift__http_scheme("hf://o/m/x"));
	ck_assert(!wlift__http_scheme("s3://b/x"));
	ck_assert(!wlift__http_scheme("/http://x"));
	/* stat makes no request: files are objects, a trailing '/' a container (not listable) */
	ck_assert_int_eq(wlift__source_stat(NULL, "http://nowhere.invalid/m.safetensors", &kind,
					    NULL), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_OBJECT);
	ck_assert_int_eq(wlift__source_stat(NULL, "http://nowhere.invalid/d/", &kind, NULL), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_CONTAINER);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, "hf://org/model/", &l, &d), WLIFT_EURI);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__locate(NULL, "http://nowhere.invalid/d/", &l, &d),
			 WLIFT_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(d.message, "cannot be listed"));
	/* URLs with credentials, or that do not parse, fail before any request */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__source_open(NULL, "http://u:p@nowhere.invalid/x.safetensors", &s,
					    &d),
			 WLIFT_EURI);
	ck_assert_ptr_null(s);
	ck_assert_str_eq(d.rule, "uri.userinfo");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__source_open(NULL, "http://", &s, &d), WLIFT_EURI);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__source_open(NULL, "hf://org/model/../x", &s, &d), WLIFT_EURI);
}
END_TEST

START_TEST(knobs)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	wlift_ctx *ctx = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	unsetenv("WEIGHTLIFT_HTTP_REQUESTS");
	unsetenv("WEIGHTLIFT_HTTP_TOKEN");
	setenv("HF_TOKEN", "hf_x", 1);
	setenv("HF_ENDPOINT", "http://127.0.0.1:1", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->http_requests, WLIFT_HTTP_DEFAULT_REQUESTS);
	ck_assert_ptr_null(ctx->http_token);
	ck_assert_str_eq(ctx->hf_token, "hf_x");
	ck_assert_str_eq(ctx->hf_endpoint, "http://127.0.0.1:1");
	wlift_ctx_destroy(ctx);
	o.http_requests = 3;
	o.http_token = "tok";
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_uint_eq(ctx->http_requests, 3);
	ck_assert_str_eq(ctx->http_token, "tok");
	wlift_ctx_destroy(ctx);
	/* out of range: explicit and from the environment */
	o.http_requests = WLIFT_MAX_HTTP_REQUESTS + 1;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "http_requests"));
	o.http_requests = 0;
	setenv("WEIGHTLIFT_HTTP_REQUESTS", "5000", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "WEIGHTLIFT_HTTP_REQUESTS"));
	unsetenv("WEIGHTLIFT_HTTP_REQUESTS");
	setenv("WEIGHTLIFT_HTTP_STALL_TIMEOUT", "x", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), -EINVAL);
	unsetenv("WEIGHTLIFT_HTTP_STALL_TIMEOUT");
	/* an older caller's smaller options struct: the new fields are not read */
	o.size = offsetof(wlift_ctx_opts, http_token);
	o.http_requests = WLIFT_MAX_HTTP_REQUESTS + 1;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, &d), 0);
	ck_assert_ptr_null(ctx->http_token);
	wlift_ctx_destroy(ctx);
	unsetenv("HF_TOKEN");
	unsetenv("HF_ENDPOINT");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("http");

	tcase_add_test(tc, hf_mapping);
	tcase_add_test(tc, content_range);
	tcase_add_test(tc, url_joins);
	tcase_add_test(tc, locator_and_checks);
	tcase_add_test(tc, knobs);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
