/* SPDX-License-Identifier: Apache-2.0 */
/* The s3:// pieces that need no server: URI parsing, the URLs of virtual-hosted and
 * path-style addressing, the region's order, the XML element reader, the INI reader of the
 * AWS files and ISO 8601 times. (Requests are tested against moto by tests/s3/test_s3.sh.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "source/awscreds.h"
#include "source/s3.h"
#include "source/xml.h"
#include "testutil.h"

static void clean_env(void)
{
	static const char *const vars[] = { "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
					    "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE",
					    "WEIGHTLIFT_S3_ADDRESSING", "WEIGHTLIFT_S3_REGION" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("HOME", wt_tmpdir(), 1);
}

/* The object URL of uri under a fresh context (so that WEIGHTLIFT_* are read now). */
static char *url_of(const char *uri, char *region, size_t cap)
{
	struct wlift__s3_loc loc;
	wlift_ctx *ctx = NULL;
	wlift_diag d;
	char *url;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_msg(wlift__s3_locate(ctx, uri, &loc, 0, &d) == 0, "%s", d.message);
	url = wlift__s3_object_url(&loc);
	if (region)
		snprintf(region, cap, "%s", loc.region);
	wlift__s3_loc_free(&loc);
	wlift_ctx_destroy(ctx);
	return url;
}

static void url_is(const char *uri, const char *want)
{
	char *url = url_of(uri, NULL, 0);

	ck_assert_str_eq(url, want);
	free(url);
}

START_TEST(addressing)
{
	clean_env();
	setenv("AWS_REGION", "eu-west-1", 1);
	/* AWS: virtual-hosted, keys encoded as S3 signs them. */
	url_is("s3://my-bucket/dir/my model é+1.safetensors",
	       "https://my-bucket.s3.eu-west-1.amazonaws.com/dir/my%20model%20%C3%A9%2B1.safetensors");
	/* Names that cannot be host names: path-style. */
	url_is("s3://my.dotted.bucket/k", "https://s3.eu-west-1.amazonaws.com/my.dotted.bucket/k");
	setenv("WEIGHTLIFT_S3_ADDRESSING", "path", 1);
	url_is("s3://my-bucket/k", "https://s3.eu-west-1.amazonaws.com/my-bucket/k");
	unsetenv("WEIGHTLIFT_S3_ADDRESSING");
	/* A custom endpoint: path-style, its scheme, host and port; virtual when asked. */
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
	url_is("s3://b/x/y.safetensors", "http://127.0.0.1:9000/b/x/y.safetensors");
	setenv("AWS_ENDPOINT_URL_S3", "http://localhost:9001", 1);
	url_is("s3://b/y", "http://localhost:9001/b/y");
	setenv("WEIGHTLIFT_S3_ADDRESSING", "virtual", 1);
	url_is("s3://bkt/y", "http://bkt.localhost:9001/y");
}
END_TEST

START_TEST(bad_uris)
{
	struct wlift__s3_loc loc;
	wlift_ctx *ctx = NULL;
	wlift_diag d;

	clean_env();
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__s3_locate(ctx, "s3://Bad*Bucket/k", &loc, 0, &d), WLIFT_EURI);
	ck_assert_ptr_nonnull(strstr(d.message, "not a valid bucket name"));
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__s3_locate(ctx, "s3:///k", &loc, 0, &d), WLIFT_EURI);
	setenv("AWS_REGION", "eu west", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__s3_locate(ctx, "s3://b/k", &loc, 0, &d), WLIFT_EURI);
	ck_assert_ptr_nonnull(strstr(d.message, "is not a region name"));
	unsetenv("AWS_REGION");
	setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__s3_locate(ctx, "s3://b/k", &loc, 0, &d), WLIFT_EURI);
	ck_assert_ptr_nonnull(strstr(d.message, "AWS_ENDPOINT_URL"));
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_S3_ADDRESSING", "sideways", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_ptr_nonnull(strstr(d.message, "WEIGHTLIFT_S3_ADDRESSING"));
}
END_TEST

START_TEST(region_order)
{
	char region[64], cfg[1024];
	char *url;

	clean_env();
	/* The default when nothing names one (discovery is off in this call). */
	url = url_of("s3://b/k", region, sizeof(region));
	ck_assert_str_eq(region, "us-east-1");
	free(url);
	snprintf(cfg, sizeof(cfg), "%s/config", wt_tmpdir());
	wt_write_file(cfg, "[default]\nregion = ap-south-1\n[profile p]\nregion=eu-north-1\n",
		      strlen("[default]\nregion = ap-south-1\n[profile p]\nregion=eu-north-1\n"));
	setenv("AWS_CONFIG_FILE", cfg, 1);
	free(url_of("s3://b/k", region, sizeof(region)));
	ck_assert_str_eq(region, "ap-south-1");
	setenv("AWS_PROFILE", "p", 1);
	free(url_of("s3://b/k", region, sizeof(region)));
	ck_assert_str_eq(region, "eu-north-1");
	setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
	free(url_of("s3://b/k", region, sizeof(region)));
	ck_assert_str_eq(region, "us-west-1");
	setenv("AWS_REGION", "us-west-2", 1);
	free(url_of("s3://b/k", region, sizeof(region)));
	ck_assert_str_eq(region, "us-west-2");
	setenv("WEIGHTLIFT_S3_REGION", "sa-east-1", 1);
	url = url_of("s3://bkt/k", region, sizeof(region));
	ck_assert_str_eq(region, "sa-east-1");
	ck_assert_str_eq(url, "https://bkt.s3.sa-east-1.amazonaws.com/k");
	free(url);
}
END_TEST

START_TEST(xml_text)
{
	static const char body[] = "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>a &amp; "
				   "b&#233;.safetensors</Key></Contents><Contents><Key>c&lt;d"
				   "</Key></Contents><IsTruncated>true</IsTruncated></ListBucketResult>";
	char buf[64];
	long off;

	off = wlift__xml_text(body, strlen(body), "Key", buf, sizeof(buf));
	ck_assert_int_gt(off, 0);
	ck_assert_str_eq(buf, "a & b\xC3\xA9.safetensors");
	ck_assert_int_gt(wlift__xml_text(body + off, strlen(body) - (size_t)off, "Key", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "c<d");
	ck_assert_int_gt(wlift__xml_text(body, strlen(body), "IsTruncated", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "true");
	ck_assert_int_eq(wlift__xml_text(body, strlen(body), "Code", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(wlift__xml_text(body, strlen(body), "Key", buf, 4), -ENOSPC);
	/* An unterminated element is absent, never read past the body. */
	ck_assert_int_eq(wlift__xml_text("<Code>Acc", 9, "Code", buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(ini_and_times)
{
	char path[1024], v[128];
	static const char text[] = "# comment\n[default]\naws_access_key_id = AK1\n"
				   "  aws_secret_access_key=SK1  \n\n[other]\n; c\naws_access_key_id=AK2\n";

	snprintf(path, sizeof(path), "%s/creds", wt_tmpdir());
	wt_write_file(path, text, strlen(text));
	ck_assert_int_eq(wlift__ini_get(path, "default", "aws_secret_access_key", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "SK1");
	ck_assert_int_eq(wlift__ini_get(path, "other", "aws_access_key_id", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "AK2");
	ck_assert_int_eq(wlift__ini_get(path, "other", "aws_secret_access_key", v, sizeof(v)), 0);
	ck_assert_int_eq(wlift__ini_has(path, "other"), 1);
	ck_assert_int_eq(wlift__ini_has(path, "nope"), 0);
	ck_assert_int_eq(wlift__ini_get("/nonexistent/x", "default", "k", v, sizeof(v)), -ENOENT);
	ck_assert_int_eq(wlift__iso8601("2026-12-02T03:00:00Z"), 1796180400);
	ck_assert_int_eq(wlift__iso8601("2026-12-02T03:00:00.123Z"), 1796180400);
	ck_assert_int_eq(wlift__iso8601("2026-12-02 03:00"), -1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("s3");
	TCase *tc = tcase_create("s3");

	tcase_add_checked_fixture(tc, NULL, wt_cleanup_at_exit);
	tcase_add_test(tc, addressing);
	tcase_add_test(tc, bad_uris);
	tcase_add_test(tc, region_order);
	tcase_add_test(tc, xml_text);
	tcase_add_test(tc, ini_and_times);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return wt_run(suite());
}
