/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the unit tests. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

const char *wt_tmpdir(void)
{
	static char dir[4096];
	const char *base;

	if (dir[0])
		return dir;
	base = getenv("WLIFT_TEST_TMP");
	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(dir, sizeof(dir), "%s/wt-XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		abort();
	}
	return dir;
}

const char *wt_path(const char *name)
{
	static char bufs[8][8192];
	static int next;
	char *b = bufs[next++ & 7];

	snprintf(b, 8192, "%s/%s", wt_tmpdir(), name);
	return b;
}

void wt_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f != NULL, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

uint8_t *wt_st_image(const char *json, const void *data, size_t datalen, size_t *len)
{
	size_t n = strlen(json);
	uint8_t *img = malloc(8 + n + datalen + 1);

	ck_assert_ptr_nonnull(img);
	for (int i = 0; i < 8; i++)
		img[i] = (uint8_t)((uint64_t)n >> (8 * i));
	memcpy(img + 8, json, n);
	if (datalen)
		memcpy(img + 8 + n, data, datalen);
	*len = 8 + n + datalen;
	return img;
}

void wt_write_st(const char *path, const char *json, const void *data, size_t datalen)
{
	size_t len;
	uint8_t *img = wt_st_image(json, data, datalen, &len);

	wt_write_file(path, img, len);
	free(img);
}

int wt_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_tmpdir(void)
{
	nftw(wt_tmpdir(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void wt_cleanup_at_exit(void)
{
	atexit(rm_tmpdir);
}

uint64_t wt_rss_anon(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

static void *rss_main(void *arg)
{
	struct wt_rss *s = arg;
	struct timespec ts = {0, 5 * 1000000L};

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		uint64_t v = wt_rss_anon();
		if (v > s->peak)
			s->peak = v;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

void wt_rss_start(struct wt_rss *s)
{
	s->stop = 0;
	s->base = s->peak = wt_rss_anon();
	ck_assert_int_eq(pthread_create(&s->th, NULL, rss_main, s), 0);
}

uint64_t wt_rss_stop(struct wt_rss *s)
{
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	pthread_join(s->th, NULL);
	return s->peak > s->base ? s->peak - s->base : 0;
}

uint8_t wt_pat(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

void wt_make_u8_st(const char *path, size_t n, const uint64_t *sizes, uint64_t *total)
{
	size_t cap = 64 + n * 96, len = 0;
	char *json = malloc(cap);
	uint64_t off = 0;
	uint8_t buf[65536];
	FILE *f;
	uint8_t hl[8];

	ck_assert_ptr_nonnull(json);
	len += (size_t)snprintf(json + len, cap - len, "{");
	for (size_t i = 0; i < n; i++) {
		len += (size_t)snprintf(json + len, cap - len,
					"%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[%llu],"
					"\"data_offsets\":[%llu,%llu]}",
					i ? "," : "", i, (unsigned long long)sizes[i],
					(unsigned long long)off,
					(unsigned long long)(off + sizes[i]));
		off += sizes[i];
	}
	len += (size_t)snprintf(json + len, cap - len, "}");
	while (len % 8) {
		json[len - 1] = ' ';
		json[len++] = '}';
		json[len] = 0;
	}
	/* Written in pieces: a test of host memory must not hold the data itself. */
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 8; i++)
		hl[i] = (uint8_t)((uint64_t)len >> (8 * i));
	ck_assert_uint_eq(fwrite(hl, 1, 8, f), 8);
	ck_assert_uint_eq(fwrite(json, 1, len, f), len);
	for (uint64_t o = 0; o < off;) {
		size_t k = off - o < sizeof(buf) ? (size_t)(off - o) : sizeof(buf);
		for (size_t j = 0; j < k; j++)
			buf[j] = wt_pat(o + j);
		ck_assert_uint_eq(fwrite(buf, 1, k, f), k);
		o += k;
	}
	ck_assert_int_eq(fclose(f), 0);
	free(json);
	*total = off;
}
