/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoint opening: single files, memory images, index.json sets, directories, lookups,
 * metadata, refcounting and a 5,000-tensor header. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/ckpt.h"
#include "testutil.h"

static const char *two_json =
	"{\"__metadata__\":{\"format\":\"pt\",\"b\":\"2\"},"
	"\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]},"
	"\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}";

static void write_two(const char *path)
{
	uint8_t data[24];

	for (int i = 0; i < 24; i++)
		data[i] = (uint8_t)i;
	wt_write_st(path, two_json, data, sizeof(data));
}

static void check_two(wlift_ckpt *ck, uint64_t data_off)
{
	wlift_tensor_info ti;
	const char *k, *v;

	ck_assert_uint_eq(wlift_ckpt_count(ck), 2);
	ck_assert_uint_eq(wlift_ckpt_nfiles(ck), 1);
	/* file order: b (offset 0) then w */
	ck_assert_int_eq(wlift_ckpt_info(ck, 0, &ti), 0);
	ck_assert_str_eq(ti.name, "b");
	ck_assert_int_eq(ti.dtype, WLIFT_U8);
	ck_assert_uint_eq(ti.ndim, 1);
	ck_assert_uint_eq(ti.shape[0], 8);
	ck_assert_uint_eq(ti.file_offset, data_off);
	ck_assert_int_eq(wlift_ckpt_info(ck, 1, &ti), 0);
	ck_assert_str_eq(ti.name, "w");
	ck_assert_int_eq(ti.dtype, WLIFT_F32);
	ck_assert_uint_eq(ti.ndim, 2);
	ck_assert_uint_eq(ti.nbytes, 16);
	ck_assert_uint_eq(ti.data_begin, 8);
	ck_assert_uint_eq(ti.data_end, 24);
	ck_assert_uint_eq(ti.file_offset, data_off + 8);
	ck_assert_int_eq(wlift_ckpt_info(ck, 2, &ti), -EINVAL);
	ck_assert_int_eq(wlift_ckpt_find(ck, "w"), 1);
	ck_assert_int_eq(wlift_ckpt_find(ck, "b"), 0);
	ck_assert_int_eq(wlift_ckpt_find(ck, "nope"), WLIFT_ENOTFOUND);
	ck_assert_int_eq(wlift_ckpt_metadata_count(ck, 0), 2);
	ck_assert_int_eq(wlift_ckpt_metadata(ck, 0, 0, &k, &v), 0);
	ck_assert_str_eq(k, "format");
	ck_assert_str_eq(v, "pt");
	ck_assert_int_eq(wlift_ckpt_metadata(ck, 0, 2, &k, &v), -EINVAL);
	ck_assert(wlift_ckpt_open_seconds(ck) >= 0);
}

START_TEST(single_file)
{
	wlift_ckpt *ck = NULL;
	wlift_file_info fi;
	wlift_diag d;
	char uri[8300];

	wlift_diag_clear(&d);
	write_two(wt_path("two.safetensors"));
	ck_assert_int_eq(wlift_open(NULL, wt_path("two.safetensors"), &ck, &d), 0);
	check_two(ck, 8 + strlen(two_json));
	ck_assert_int_eq(wlift_ckpt_file(ck, 0, &fi), 0);
	ck_assert_str_eq(fi.uri, wt_path("two.safetensors"));
	ck_assert_uint_eq(fi.header_len, strlen(two_json));
	ck_assert_uint_eq(fi.data_offset, 8 + strlen(two_json));
	ck_assert_uint_eq(fi.size, 8 + strlen(two_json) + 24);
	ck_assert_uint_eq(fi.ntensors, 2);
	wlift_ckpt_close(ck);
	snprintf(uri, sizeof(uri), "file://%s", wt_path("two.safetensors"));
	ck_assert_int_eq(wlift_open(NULL, uri, &ck, &d), 0);
	check_two(ck, 8 + strlen(two_json));
	wlift_ckpt_close(ck);
	wlift_ckpt_close(NULL);
}
END_TEST

START_TEST(memory_image)
{
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	uint8_t data[24] = { 0 };
	size_t len;
	uint8_t *img = wt_st_image(two_json, data, sizeof(data), &len);

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open_memory(NULL, img, len, "img", &ck, &d), 0);
	check_two(ck, 8 + strlen(two_json));
	/* a reference keeps it alive after close */
	ck_assert_ptr_eq(wlift__ckpt_ref(ck), ck);
	wlift_ckpt_close(ck);
	ck_assert_int_eq(wlift_ckpt_find(ck, "w"), 1);
	wlift__ckpt_unref(ck);
	free(img);
}
END_TEST

START_TEST(no_metadata_vs_empty)
{
	wlift_ckpt *ck = NULL;
	size_t len;
	uint8_t *img = wt_st_image("{}", NULL, 0, &len);

	ck_assert_int_eq(wlift_open_memory(NULL, img, len, NULL, &ck, NULL), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 0);
	ck_assert_int_eq(wlift_ckpt_metadata_count(ck, 0), -ENOENT);
	wlift_ckpt_close(ck);
	free(img);
	img = wt_st_image("{\"__metadata__\":{}}", NULL, 0, &len);
	ck_assert_int_eq(wlift_open_memory(NULL, img, len, NULL, &ck, NULL), 0);
	ck_assert_int_eq(wlift_ckpt_metadata_count(ck, 0), 0);
	wlift_ckpt_close(ck);
	free(img);
}
END_TEST

START_TEST(bad_file_names_rule)
{
	wlift_ckpt *ck = (wlift_ckpt *)1;
	wlift_diag d;

	wlift_diag_clear(&d);
	wt_write_st(wt_path("bad.safetensors"),
		    "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd", 4);
	ck_assert_int_eq(wlift_open(NULL, wt_path("bad.safetensors"), &ck, &d), WLIFT_ESHAPE);
	ck_assert_ptr_null(ck);
	ck_assert_str_eq(d.file, wt_path("bad.safetensors"));
	ck_assert_str_eq(d.tensor, "w");
	ck_assert_str_eq(d.rule, "shape.nbytes");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("missing.safetensors"), &ck, &d), -ENOENT);
	ck_assert_int_eq(wlift_open(NULL, "s4://x/y", &ck, NULL), WLIFT_EURI);
}
END_TEST

static void shard(const char *name, const char *tensor_a, const char *tensor_b)
{
	char json[512];

	snprintf(json, sizeof(json),
		 "{\"%s\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
		 "\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
		 tensor_a, tensor_b);
	wt_write_st(wt_path(name), json, "xyz", 3);
}

static void index_file(const char *name, const char *map)
{
	char json[1024];

	snprintf(json, sizeof(json), "{\"metadata\":{\"total_size\":6},\"weight_map\":{%s}}", map);
	wt_write_file(wt_path(name), json, strlen(json));
}

static char logbuf[4096];
static void logfn(void *u, int level, const char *msg)
{
	(void)u;
	(void)level;
	strncat(logbuf, msg, sizeof(logbuf) - strlen(logbuf) - 2);
	strcat(logbuf, "\n");
}

START_TEST(index_and_dir)
{
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	wlift_tensor_info ti;
	wlift_ctx *ctx = NULL;
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;

	mkdir(wt_path("sh"), 0755);
	shard("sh/m-00002.safetensors", "c", "d");
	shard("sh/m-00001.safetensors", "a", "b");
	index_file("sh/model.safetensors.index.json",
		   "\"a\":\"m-00001.safetensors\",\"b\":\"m-00001.safetensors\","
		   "\"d\":\"m-00002.safetensors\",\"c\":\"m-00002.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("sh/model.safetensors.index.json"), &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_nfiles(ck), 2);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 4);
	ck_assert_int_eq(wlift_ckpt_info(ck, 2, &ti), 0);
	ck_assert_str_eq(ti.name, "c");
	ck_assert_uint_eq(ti.file, 1);
	wlift_ckpt_close(ck);
	/* directory with an index and an extra file the index ignores */
	shard("sh/zz-merged.safetensors", "x", "y");
	o.log = logfn;
	o.log_level = WLIFT_LOG_DEBUG;
	ck_assert_int_eq(wlift_ctx_create(&ctx, &o, NULL), 0);
	ck_assert_int_eq(wlift_open(ctx, wt_path("sh"), &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 4);
	ck_assert_ptr_nonnull(strstr(logbuf, "zz-merged.safetensors"));
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	/* directory without index: every file in name order */
	mkdir(wt_path("plain"), 0755);
	shard("plain/b.safetensors", "c", "d");
	shard("plain/a.safetensors", "a", "b");
	ck_assert_int_eq(wlift_open(NULL, wt_path("plain"), &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 4);
	ck_assert_int_eq(wlift_ckpt_find(ck, "d"), 3);
	wlift_ckpt_close(ck);
	/* duplicate names across files */
	shard("plain/c.safetensors", "a", "z");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("plain"), &ck, &d), WLIFT_EDUPLICATE);
	ck_assert_str_eq(d.tensor, "a");
	ck_assert_ptr_nonnull(strstr(d.message, "a.safetensors"));
	ck_assert_ptr_nonnull(strstr(d.message, "c.safetensors"));
}
END_TEST

START_TEST(index_errors)
{
	wlift_ckpt *ck = NULL;
	wlift_diag d;

	mkdir(wt_path("ix"), 0755);
	shard("ix/s1.safetensors", "a", "b");
	shard("ix/s2.safetensors", "c", "d");
	/* d missing from the map */
	index_file("ix/i1.safetensors.index.json",
		   "\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i1.safetensors.index.json"), &ck, &d),
			 WLIFT_EINDEX);
	ck_assert_str_eq(d.tensor, "d");
	ck_assert_str_eq(d.rule, "index.unmapped");
	/* mapped to the wrong shard */
	index_file("ix/i2.safetensors.index.json",
		   "\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2.safetensors\","
		   "\"d\":\"s2.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i2.safetensors.index.json"), &ck, &d),
			 WLIFT_EINDEX);
	ck_assert_str_eq(d.tensor, "b");
	ck_assert_ptr_nonnull(strstr(d.message, "s1.safetensors"));
	/* mapped tensor that no shard has */
	index_file("ix/i3.safetensors.index.json",
		   "\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\","
		   "\"d\":\"s2.safetensors\",\"e\":\"s2.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i3.safetensors.index.json"), &ck, &d),
			 WLIFT_EINDEX);
	ck_assert_str_eq(d.tensor, "e");
	ck_assert_str_eq(d.rule, "index.missing");
	/* missing shard file */
	index_file("ix/i4.safetensors.index.json", "\"a\":\"nope.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i4.safetensors.index.json"), &ck, &d),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(d.file, "nope.safetensors"));
	/* the same tensor in two shards */
	shard("ix/s3.safetensors", "d", "e");
	index_file("ix/i6.safetensors.index.json",
		   "\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\","
		   "\"d\":\"s2.safetensors\",\"e\":\"s3.safetensors\"");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i6.safetensors.index.json"), &ck, &d),
			 WLIFT_EDUPLICATE);
	ck_assert_str_eq(d.tensor, "d");
	ck_assert_ptr_nonnull(strstr(d.message, "s2.safetensors"));
	ck_assert_ptr_nonnull(strstr(d.message, "s3.safetensors"));
	/* not an index */
	wt_write_file(wt_path("ix/i5.safetensors.index.json"), "[1]", 3);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix/i5.safetensors.index.json"), &ck, &d),
			 WLIFT_EINDEX);
	/* a directory with several indexes and no model.safetensors.index.json */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("ix"), &ck, &d), WLIFT_EINDEX);
	ck_assert_str_eq(d.rule, "index.ambiguous");
	/* an empty directory */
	mkdir(wt_path("empty"), 0755);
	ck_assert_int_eq(wlift_open(NULL, wt_path("empty"), &ck, NULL), WLIFT_EEMPTY);
}
END_TEST

START_TEST(many_tensors)
{
	enum { N = 5000 };
	size_t cap = (size_t)N * 100 + 16, pos = 0;
	char *json = malloc(cap);
	uint8_t *data = calloc(N, 4);
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	char name[64];
	wlift_tensor_info ti;

	pos += (size_t)snprintf(json + pos, cap - pos, "{");
	for (int i = N - 1; i >= 0; i--) /* reverse order in the header */
		pos += (size_t)snprintf(json + pos, cap - pos,
					"%s\"layers.%d.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
					"\"data_offsets\":[%d,%d]}", i == N - 1 ? "" : ",", i,
					4 * i, 4 * i + 4);
	snprintf(json + pos, cap - pos, "}");
	wt_write_st(wt_path("many.safetensors"), json, data, (size_t)N * 4);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("many.safetensors"), &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), N);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "layers.%d.weight", i);
		ck_assert_int_eq(wlift_ckpt_find(ck, name), i);
		ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)i, &ti), 0);
		ck_assert_str_eq(ti.name, name);
	}
	wlift_ckpt_close(ck);
	free(json);
	free(data);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ckpt");
	TCase *tc = tcase_create("ckpt");

	tcase_add_test(tc, single_file);
	tcase_add_test(tc, memory_image);
	tcase_add_test(tc, no_metadata_vs_empty);
	tcase_add_test(tc, bad_file_names_rule);
	tcase_add_test(tc, index_and_dir);
	tcase_add_test(tc, index_errors);
	tcase_add_test(tc, many_tensors);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
