/* SPDX-License-Identifier: Apache-2.0 */
/* The GCS source's parts that need no server: gs:// URIs, the JSON API's URLs (percent-encoding
 * of object names with spaces, Unicode, '/', '%', '?', '#'), objects.list pages and JSON error
 * messages. (Requests are tested against gcp-storage-emulator by tests/gcs/test_gcs.sh.) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/locate.h"
#include "source/gcs.h"
#include "source/source.h"
#include "testutil.h"

static void split_ok(const char *uri, const char *b, const char *k)
{
	char *bucket = NULL, *key = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_msg(wlift__gcs_split(uri, &bucket, &key, &d) == 0, "%s: %s", uri, d.message);
	ck_assert_str_eq(bucket, b);
	ck_assert_str_eq(key, k);
	free(bucket);
	free(key);
}

static void split_bad(const char *uri, const char *why)
{
	char *bucket = NULL, *key = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_msg(wlift__gcs_split(uri, &bucket, &key, &d) == WLIFT_EURI, "%s accepted", uri);
	ck_assert_ptr_null(bucket);
	ck_assert_str_eq(d.rule, "uri.gs");
	ck_assert_msg(strstr(d.message, why), "%s: %s", uri, d.message);
}

START_TEST(uris)
{
	char long_key[1100];

	split_ok("gs://bucket/model.safetensors", "bucket", "model.safetensors");
	split_ok("gs://my-bucket.example_1/dir/sub/", "my-bucket.example_1", "dir/sub/");
	split_ok("gs://abc", "abc", "");
	split_ok("gs://abc/", "abc", "");
	split_ok("gs://abc/a b/ü?#%.safetensors", "abc", "a b/ü?#%.safetensors");
	split_bad("gs://ab/x", "3 to 222");
	split_bad("gs:///x", "3 to 222");
	split_bad("gs://Bucket/x", "lowercase");
	split_bad("gs://user@bucket/x", "lowercase");
	split_bad("gs://-bucket/x", "starts and ends");
	split_bad("gs://bucket./x", "starts and ends");
	split_bad("gs://bucket/a\nb", "CR or LF");
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	memcpy(long_key, "gs://bkt/", 9);
	split_bad(long_key, "gs://bkt/kkk"); /* the message is cut; the code and rule say it */
}
END_TEST

START_TEST(urls)
{
	char *s;

	s = wlift__gcs_endpoint(NULL);
	ck_assert_str_eq(s, "https://storage.googleapis.com");
	free(s);
	s = wlift__gcs_endpoint("127.0.0.1:9023");
	ck_assert_str_eq(s, "http://127.0.0.1:9023");
	free(s);
	s = wlift__gcs_endpoint("https://gcs.example:8443//");
	ck_assert_str_eq(s, "https://gcs.example:8443");
	free(s);
	s = wlift__gcs_escape("a b/ü~-._%?#&=+");
	ck_assert_str_eq(s, "a%20b%2F%C3%BC~-._%25%3F%23%26%3D%2B");
	free(s);
	s = wlift__gcs_object_url("http://h:1", "bkt", "dir/a b.safetensors", 1, "1700000000123");
	ck_assert_str_eq(s, "http://h:1/storage/v1/b/bkt/o/dir%2Fa%20b.safetensors?alt=media&"
			    "ifGenerationMatch=1700000000123");
	free(s);
	s = wlift__gcs_object_url("http://h:1", "bkt", "m.safetensors", 1, NULL);
	ck_assert_str_eq(s, "http://h:1/storage/v1/b/bkt/o/m.safetensors?alt=media");
	free(s);
	s = wlift__gcs_object_url("http://h:1", "bkt", "m.safetensors", 0, NULL);
	ck_assert_str_eq(s, "http://h:1/storage/v1/b/bkt/o/m.safetensors?fields=name%2Csize%2C"
			    "generation");
	free(s);
	s = wlift__gcs_list_url("http://h:1", "bkt", "dir/ü/", NULL);
	ck_assert_str_eq(s, "http://h:1/storage/v1/b/bkt/o?prefix=dir%2F%C3%BC%2F&delimiter=%2F&"
			    "maxResults=1000&fields=items%28name%29%2CnextPageToken");
	free(s);
	s = wlift__gcs_list_url("http://h:1", "bkt", "", "Cg+x/y=");
	ck_assert_ptr_nonnull(strstr(s, "?prefix=&"));
	ck_assert_ptr_nonnull(strstr(s, "&pageToken=Cg%2Bx%2Fy%3D"));
	free(s);
}
END_TEST

START_TEST(list_pages)
{
	char **names = NULL, *next = NULL;
	size_t n = 0, cap = 0;
	const char *p1 = "{\"kind\": \"storage#objects\", \"nextPageToken\": \"tok2\", \"items\": ["
			 "{\"name\": \"dir/\"}, {\"name\": \"dir/a.safetensors\"},"
			 "{\"name\": \"dir/sub/deep.safetensors\"}, {\"name\": \"other/x\"},"
			 "{\"name\": \"dir/\\u00fc b.safetensors\"}]}";
	const char *p2 = "{\"items\": [{\"name\": \"dir/model.safetensors.index.json\"}]}";

	ck_assert_int_eq(wlift__gcs_list_parse(p1, strlen(p1), "dir/", &names, &n, &cap, &next), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(names[0], "a.safetensors");
	ck_assert_str_eq(names[1], "\xc3\xbc b.safetensors");
	ck_assert_str_eq(next, "tok2");
	free(next);
	ck_assert_int_eq(wlift__gcs_list_parse(p2, strlen(p2), "dir/", &names, &n, &cap, &next), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_ptr_null(next);
	/* An empty page (an empty prefix) has no items at all. */
	ck_assert_int_eq(wlift__gcs_list_parse("{}", 2, "", &names, &n, &cap, &next), 0);
	ck_assert_uint_eq(n, 3);
	/* Not a listing. */
	ck_assert_int_eq(wlift__gcs_list_parse("<html>", 6, "", &names, &n, &cap, &next),
			 WLIFT_EJSON);
	ck_assert_int_eq(wlift__gcs_list_parse("{\"items\": 3}", 12, "", &names, &n, &cap, &next),
			 WLIFT_EJSON);
	ck_assert_int_eq(wlift__gcs_list_parse("{\"items\": [{\"x\": 1}]}", 21, "", &names, &n,
					       &cap, &next),
			 WLIFT_EJSON);
	wlift__strv_free(names, n);
}
END_TEST

START_TEST(error_messages)
{
	char buf[64];
	const char *e = "{\"error\": {\"code\": 403, \"message\": \"a@b.iam does not have\\n"
			"storage.objects.get access\", \"errors\": [{\"reason\": \"forbidden\"}]}}";

	wlift__gcs_error_message(e, strlen(e), buf, sizeof(buf));
	ck_assert_str_eq(buf, "a@b.iam does not have storage.objects.get access");
	wlift__gcs_error_message(e, strlen(e), buf, 10);
	ck_assert_str_eq(buf, "a@b.iam d");
	/* Nothing of other bodies. */
	wlift__gcs_error_message("<html>secret</html>", 19, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	wlift__gcs_error_message("{\"error\": \"invalid\"}", 20, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	wlift__gcs_error_message(NULL, 0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(locator_view)
{
	int kind = 0;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://bkt/m.safetensors", &kind, &d), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_OBJECT);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://bkt/dir/", &kind, &d), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_CONTAINER);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://bkt", &kind, &d), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_CONTAINER);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://bkt/models/llama", &kind, &d), 0);
	ck_assert_int_eq(kind, WLIFT_STAT_CONTAINER);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://bkt/m.safetensors.index.json", &kind, &d),
			 0);
	ck_assert_int_eq(kind, WLIFT_STAT_OBJECT);
	ck_assert_int_eq(wlift__source_stat(NULL, "gs://B/x", &kind, &d), WLIFT_EURI);
	/* Index shards are joined under the index's prefix, names kept as they are. */
	{
		char *j = wlift__uri_join("gs://bkt/dir", "a b.safetensors");
		ck_assert_str_eq(j, "gs://bkt/dir/a b.safetensors");
		free(j);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gcs");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, uris);
	tcase_add_test(tc, urls);
	tcase_add_test(tc, list_pages);
	tcase_add_test(tc, error_messages);
	tcase_add_test(tc, locator_view);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
