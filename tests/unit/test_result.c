/* SPDX-License-Identifier: Apache-2.0 */
/* Results: memory follows the tensors the user keeps. Dropping the result while one tensor
 * is exported returns every other tensor's pages (RssAnon for copies, RssFile for mappings);
 * the last export returns the rest; a widening conversion does not keep the stored bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weightlift.h"

#define NT 8
#define TB (8u << 20) /* 8 MiB per tensor */

/* kB of the "key:" line of /proc/self/status. */
static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	ck_assert_int_ge(v, 0);
	return v;
}

static const char *make_file(wlift_dtype dt)
{
	const char *p = wt_path("r.safetensors");
	wlift_save_tensor t[NT];
	char names[NT][8];
	uint64_t shape[NT];
	uint8_t *data = malloc((size_t)TB * NT);

	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < (size_t)TB * NT; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	for (int i = 0; i < NT; i++) {
		snprintf(names[i], sizeof(names[i]), "t%d", i);
		shape[i] = TB / (wlift_dtype_bits(dt) / 8);
		t[i] = (wlift_save_tensor){ names[i], dt, 1, &shape[i], data + (size_t)i * TB, TB };
	}
	ck_assert_int_eq(wlift_save(p, t, NT, NULL, 0, NULL), 0);
	free(data);
	return p;
}

static uint64_t touch(const wlift_result *r)
{
	uint64_t x = 0;

	for (size_t i = 0; i < wlift_result_count(r); i++) {
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		for (uint64_t k = 0; k < v.nbytes; k += 4096)
			x += ((volatile uint8_t *)v.data)[k];
	}
	return x;
}

static void run(int mmap, wlift_dtype to, const char *key)
{
	const char *p = make_file(to == WLIFT_F32 ? WLIFT_BF16 : WLIFT_U8);
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_dl_managed *m;
	long base, full, kept, after;
	uint64_t tb = to == WLIFT_F32 ? 2 * (uint64_t)TB : TB; /* bytes per loaded tensor */

	o.mmap = mmap;
	o.dtype = to;
	o.threads = 2;
	ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
	base = status_kb(key);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), 0);
	touch(r);
	full = status_kb(key);
	/* With a widening conversion the stored bytes were given back as each tensor landed. */
	ck_assert_int_ge(full - base, (long)(NT * tb / 1024) - 4096);
	ck_assert_int_le(full - base, (long)(NT * tb / 1024) + 8192);
	ck_assert_int_eq(wlift_tensor_dlpack(wlift_result_find(r, "t3"), 0, &m, NULL), 0);
	wlift_result_free(r);
	kept = status_kb(key);
	/* t3 plus at most a huge page at each end */
	ck_assert_msg(kept - base <= (long)(tb / 1024) + 4096, "kept %ld kB over base with one "
		      "%llu kB tensor (full load %ld kB)", kept - base,
		      (unsigned long long)(tb / 1024), full - base);
	ck_assert_int_ge(kept - base, (long)(tb / 1024) - 4096);
	ck_assert_uint_eq(((uint8_t *)m->dl_tensor.data)[5], ((uint8_t *)m->dl_tensor.data)[5]);
	m->deleter(m);
	after = status_kb(key);
	ck_assert_int_le(after - base, 4096);
	wlift_ckpt_close(ck);
}

START_TEST(copy_follows_tensors)
{
	run(WLIFT_MMAP_OFF, WLIFT_DTYPE_NONE, "RssAnon:");
}
END_TEST

START_TEST(mapped_follows_tensors)
{
	run(WLIFT_MMAP_ON, WLIFT_DTYPE_NONE, "RssFile:");
}
END_TEST

START_TEST(widened_keeps_one_copy)
{
	run(WLIFT_MMAP_OFF, WLIFT_F32, "RssAnon:");
}
END_TEST

/* Exports taken in the ready callback, while the load runs, keep their tensors when the
 * caller then frees the result (the prefetching safe_open of the Python package does this). */
struct kept {
	wlift_dl_managed *m[NT];
	int n;
};

static int keep_cb(const wlift_tensor *t, void *user)
{
	struct kept *k = user;

	ck_assert_int_eq(wlift_tensor_dlpack(t, 0, &k->m[__atomic_fetch_add(&k->n, 1,
								      __ATOMIC_RELAXED)],
					     NULL),
			 0);
	return 0;
}

static void run_kept(int mmap)
{
	const char *p = make_file(WLIFT_U8);
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct kept k = { .n = 0 };
	wlift_ckpt *ck;
	wlift_result *r;

	o.mmap = mmap;
	o.threads = 2;
	ck_assert_int_eq(wlift_open(NULL, p, &ck, NULL), 0);
	ck_assert_int_eq(wlift_load(ck, &o, keep_cb, &k, &r, NULL), 0);
	ck_assert_int_eq(k.n, NT);
	wlift_result_free(r);
	for (int i = 0; i < NT; i++) {
		const uint8_t *b = k.m[i]->dl_tensor.data;
		uint64_t base = 0;

		/* Which tensor: its first byte is (i * TB * 7 + 1) mod 256 for some i. */
		for (int j = 0; j < NT; j++)
			if (b[0] == (uint8_t)((uint64_t)j * TB * 7 + 1) &&
			    b[1] == (uint8_t)(((uint64_t)j * TB + 1) * 7 + 1))
				base = (uint64_t)j * TB;
		for (uint64_t off = 0; off < TB; off += 4093)
			ck_assert_uint_eq(b[off], (uint8_t)((base + off) * 7 + 1));
		ck_assert_uint_eq(b[TB - 1], (uint8_t)((base + TB - 1) * 7 + 1));
		k.m[i]->deleter(k.m[i]);
	}
	wlift_ckpt_close(ck);
}

START_TEST(copy_exported_in_callback_kept)
{
	run_kept(WLIFT_MMAP_OFF);
}
END_TEST

START_TEST(mapped_exported_in_callback_kept)
{
	run_kept(WLIFT_MMAP_ON);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("result");
	TCase *tc = tcase_create("result");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_add_test(tc, copy_follows_tensors);
	tcase_add_test(tc, mapped_follows_tensors);
	tcase_add_test(tc, widened_keeps_one_copy);
	tcase_add_test(tc, copy_exported_in_callback_kept);
	tcase_add_test(tc, mapped_exported_in_callback_kept);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
