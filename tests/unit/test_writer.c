/* SPDX-License-Identifier: Apache-2.0 */
/* The writer: known-answer bytes from the reference writer (safetensors 0.8.0), ordering,
 * padding, metadata, rejections, round trips through wlift_open_memory, and wlift_save's
 * atomic replace. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include "format/header.h"
#include "testutil.h"

static const float six[6] = { 0, 1, 2, 3, 4, 5 };

START_TEST(known_answer_f32)
{
	/* safetensors.serialize({"attn.0": F32 [1,2,3]}): 64-byte header, no padding. */
	static const char hdr[] =
		"{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
	uint64_t shape[] = { 1, 2, 3 };
	wlift_save_tensor t = { "attn.0", WLIFT_F32, 3, shape, six, 24 };
	void *buf = NULL;
	size_t len = 0;
	uint8_t *p;

	ck_assert_int_eq(wlift_save_memory(&t, 1, NULL, 0, &buf, &len, NULL), 0);
	p = buf;
	ck_assert_uint_eq(len, 8 + 64 + 24);
	ck_assert_uint_eq(p[0], 64);
	ck_assert_int_eq(memcmp(p + 8, hdr, 64), 0);
	ck_assert_int_eq(memcmp(p + 72, six, 24), 0);
	free(buf);
}
END_TEST

START_TEST(known_answer_padding_and_meta)
{
	/* "attn0" [1,1,2,3]: 65 bytes of JSON padded with 7 spaces to 72. */
	static const char hdr[] = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],"
				  "\"data_offsets\":[0,24]}}       ";
	/* no tensors, {"framework":"pt"}: 35 bytes padded to 40 */
	static const char meta_hdr[] = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
	static const char *const meta[] = { "framework", "pt" };
	uint64_t shape[] = { 1, 1, 2, 3 };
	wlift_save_tensor t = { "attn0", WLIFT_F32, 4, shape, six, 24 };
	void *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(wlift_save_memory(&t, 1, NULL, 0, &buf, &len, NULL), 0);
	ck_assert_uint_eq(len, 8 + 72 + 24);
	ck_assert_int_eq(memcmp((uint8_t *)buf + 8, hdr, 72), 0);
	free(buf);
	ck_assert_int_eq(wlift_save_memory(NULL, 0, meta, 1, &buf, &len, NULL), 0);
	ck_assert_uint_eq(len, 8 + 40);
	ck_assert_int_eq(memcmp((uint8_t *)buf + 8, meta_hdr, 40), 0);
	free(buf);
	/* nothing at all: "{}" + 6 spaces */
	ck_assert_int_eq(wlift_save_memory(NULL, 0, NULL, 0, &buf, &len, NULL), 0);
	ck_assert_uint_eq(len, 16);
	ck_assert_int_eq(memcmp((uint8_t *)buf + 8, "{}      ", 8), 0);
	free(buf);
}
END_TEST

START_TEST(order_escape_roundtrip)
{
	/* reference order: dtype rank descending (F64 > U8 > F4), then name bytewise */
	static const char want[] =
		"{\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
		"\"B\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]},"
		"\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9,10]},"
		"\"q\\\"\\\\\\n\\u0001\\u001f\x7f\xc3\xa9/\":{\"dtype\":\"U8\",\"shape\":[],"
		"\"data_offsets\":[10,11]},"
		"\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[11,12]}}";
	uint64_t one = 1, two = 2;
	double c = 1.5;
	wlift_save_tensor t[] = {
		{ "b", WLIFT_U8, 1, &one, "b", 1 },
		{ "a", WLIFT_F4, 1, &two, "a", 1 },
		{ "c", WLIFT_F64, 1, &one, &c, 8 },
		{ "B", WLIFT_U8, 1, &one, "B", 1 },
		{ "q\"\\\n\x01\x1f\x7f\xc3\xa9/", WLIFT_U8, 0, NULL, "q", 1 },
	};
	void *buf = NULL;
	size_t len = 0, n = strlen(want);
	wlift_ckpt *ck = NULL;
	wlift_tensor_info ti;
	wlift_diag d;
	uint64_t hl;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_save_memory(t, 5, NULL, 0, &buf, &len, &d), 0);
	memcpy(&hl, buf, 8);
	ck_assert_uint_eq(hl, (n + 7) / 8 * 8);
	ck_assert_int_eq(memcmp((uint8_t *)buf + 8, want, n), 0);
	for (size_t i = n; i < hl; i++)
		ck_assert_int_eq(((uint8_t *)buf)[8 + i], ' ');
	ck_assert_int_eq(wlift_open_memory(NULL, buf, len, "rt", &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 5);
	ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)wlift_ckpt_find(ck, "c"), &ti), 0);
	ck_assert_int_eq(memcmp((uint8_t *)buf + ti.file_offset, &c, 8), 0);
	ck_assert_int_eq(wlift_ckpt_info(ck, (size_t)wlift_ckpt_find(ck, t[4].name), &ti), 0);
	ck_assert_uint_eq(ti.ndim, 0);
	ck_assert_int_eq(wlift_ckpt_metadata_count(ck, 0), -ENOENT);
	wlift_ckpt_close(ck);
	free(buf);
}
END_TEST

START_TEST(rejections)
{
	uint64_t two = 2, three = 3;
	static const char *const dupmeta[] = { "k", "1", "k", "2" };
	wlift_save_tensor ok = { "a", WLIFT_U8, 1, &two, "ab", 2 };
	wlift_save_tensor dup[] = { { "a", WLIFT_U8, 1, &two, "ab", 2 },
				    { "a", WLIFT_I16, 1, &two, "abcd", 4 } };
	wlift_save_tensor badsize = { "a", WLIFT_F32, 1, &two, "abcd", 4 };
	wlift_save_tensor partial = { "a", WLIFT_F4, 1, &three, "ab", 2 };
	wlift_save_tensor baddt = { "a", WLIFT_DTYPE_COUNT, 1, &two, "ab", 2 };
	wlift_save_tensor reserved = { "__metadata__", WLIFT_U8, 1, &two, "ab", 2 };
	wlift_save_tensor badutf = { "\xff", WLIFT_U8, 1, &two, "ab", 2 };
	void *buf = (void *)1;
	size_t len = 1;
	wlift_diag d;

#define REJ(t, n, m, nm, code, r)                                                            \
	do {                                                                                 \
		wlift_diag_clear(&d);                                                        \
		ck_assert_int_eq(wlift_save_memory(t, n, m, nm, &buf, &len, &d), code);      \
		ck_assert_ptr_null(buf);                                                     \
		ck_assert_str_eq(d.rule, r);                                                 \
	} while (0)
	REJ(dup, 2, NULL, 0, WLIFT_EDUPLICATE, "save.duplicate");
	ck_assert_str_eq(d.tensor, "a");
	REJ(&badsize, 1, NULL, 0, WLIFT_ESHAPE, "shape.nbytes");
	REJ(&partial, 1, NULL, 0, WLIFT_ESHAPE, "shape.bits");
	REJ(&baddt, 1, NULL, 0, WLIFT_EDTYPE, "dtype.unknown");
	REJ(&reserved, 1, NULL, 0, -EINVAL, "save.name");
	REJ(&badutf, 1, NULL, 0, -EINVAL, "save.utf8");
	REJ(&ok, 1, dupmeta, 2, WLIFT_EDUPLICATE, "save.duplicate");
	ck_assert_int_eq(wlift_save_memory(&ok, 1, NULL, 0, NULL, &len, NULL), -EINVAL);
}
END_TEST

static int count_entries(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(dh);
	while ((e = readdir(dh)))
		n += e->d_name[0] != '.';
	closedir(dh);
	return n;
}

START_TEST(save_atomic)
{
	uint64_t two = 2;
	wlift_save_tensor t = { "w", WLIFT_U8, 1, &two, "hi", 2 };
	wlift_save_tensor bad = { "w", WLIFT_F32, 1, &two, "hi", 2 };
	const char *path = wt_path("out.safetensors");
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	FILE *f;
	char old[4] = { 0 };

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_save(path, &t, 1, NULL, 0, &d), 0);
	ck_assert_int_eq(wlift_open(NULL, path, &ck, &d), 0);
	ck_assert_uint_eq(wlift_ckpt_count(ck), 1);
	wlift_ckpt_close(ck);
	ck_assert_int_eq(count_entries(wt_tmpdir()), 1);
	/* a failed save leaves the old file as it was and no temporary behind */
	ck_assert_int_eq(wlift_save(path, &bad, 1, NULL, 0, &d), WLIFT_ESHAPE);
	ck_assert_int_eq(count_entries(wt_tmpdir()), 1);
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(old, 1, 1, f), 1);
	fclose(f);
	ck_assert_int_eq(old[0], 56);
	/* directory that does not exist */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_save(wt_path("nodir/x.safetensors"), &t, 1, NULL, 0, &d), -ENOENT);
	ck_assert_str_eq(d.rule, "io.create");
	ck_assert_int_eq(wlift_save("", &t, 1, NULL, 0, NULL), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("writer");
	TCase *tc = tcase_create("writer");

	tcase_add_test(tc, known_answer_f32);
	tcase_add_test(tc, known_answer_padding_and_meta);
	tcase_add_test(tc, order_escape_roundtrip);
	tcase_add_test(tc, rejections);
	tcase_add_test(tc, save_atomic);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
