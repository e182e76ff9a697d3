/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fault_check: the C API half of the I/O fault-injection test (tests/fault/test_fault.sh).
 *
 *     fault_check gen DIR
 *         writes DIR/model.safetensors and DIR/sharded/ (two shards and an index): tensors of
 *         odd sizes so that O_DIRECT reads need fix-up moves, deterministic bytes
 *     fault_check load REFDIR SPECDIR PATH EXPECT MODE...
 *         loads SPECDIR/PATH once per MODE and checks the outcome; SPECDIR is a faultfs spec
 *         directory (MOUNT/<spec>) mirroring REFDIR, whose files give the reference bytes
 *
 * MODE: pread | uring | direct-pread | direct-uring | mmap | all (the five). Every load uses
 * 2 threads, 256 KiB chunks and 2 MiB in flight, so io_uring keeps several reads in flight
 * per worker; the stats must show the path asked for (an io_uring mode on a kernel without
 * io_uring is skipped, not passed through pread).
 * EXPECT:
 *     ok         the load succeeds and every tensor byte equals REFDIR's file
 *     eio:N      it fails with -EIO, naming the file and an offset in (N - 1 MiB, size)
 *     eof:N      it fails with WLIFT_ECHANGED ("unexpected end of file"), naming the file and
 *                an offset in [N, size)
 *     trunc      it fails with WLIFT_ECHANGED or WLIFT_ETRUNCATED naming the file (the kernel
 *                took a short reply for the end of the file and shrank it)
 * An eio or eof failure in the load (not the open) must also name the tensor at its offset.
 * Whatever the expectation, a load that succeeds must have the right bytes (never silent
 * wrong data), and a failed one must leave *out NULL; ASan's leak check covers the rest.
 * Exit 0 when every mode met the expectation, 1 otherwise, 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weightlift.h"

#define MIB (1024 * 1024)

/* ---- gen -------------------------------------------------------------------------------- */

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

struct spec_t {
	const char *name;
	uint64_t n; /* U8 elements */
};

/* Odd sizes: tensors start off every alignment; one empty, one scalar-sized. */
static const struct spec_t tensors_a[] = {
    {"a.embed", 1000003}, {"a.empty", 0},   {"a.one", 1},     {"a.w1", 2 * MIB + 17},
    {"a.w2", 196613},	  {"a.w3", 777777}, {"a.tail", 4099},
};
static const struct spec_t tensors_b[] = {{"b.w1", 1500007}, {"b.w2", 333333}};

static int write_st(const char *path, const struct spec_t *sp, size_t n, uint64_t seed)
{
	wlift_save_tensor t[8];
	uint64_t shape[8];
	uint8_t *bufs[8] = {0};
	wlift_diag d;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		bufs[i] = malloc(sp[i].n ? sp[i].n : 1);
		if (!bufs[i]) {
			ret = -ENOMEM;
			goto out;
		}
		fill(bufs[i], sp[i].n, seed + i);
		shape[i] = sp[i].n;
		t[i] = (wlift_save_tensor){sp[i].name, WLIFT_U8, 1, &shape[i], bufs[i], sp[i].n};
	}
	ret = wlift_save(path, t, n, NULL, 0, &d);
	if (ret)
		fprintf(stderr, "fault_check: %s: %s\n", path, d.message);
out:
	for (size_t i = 0; i < n; i++)
		free(bufs[i]);
	return ret;
}

static int gen(const char *dir)
{
	char p[4096];
	FILE *f;
	int ret;

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	ret = write_st(p, tensors_a, sizeof(tensors_a) / sizeof(tensors_a[0]), 1);
	snprintf(p, sizeof(p), "%s/sharded", dir);
	if (!ret && mkdir(p, 0755) < 0 && errno != EEXIST)
		ret = -errno;
	snprintf(p, sizeof(p), "%s/sharded/model-00001-of-00002.safetensors", dir);
	if (!ret)
		ret = write_st(p, tensors_a, 3, 1);
	snprintf(p, sizeof(p), "%s/sharded/model-00002-of-00002.safetensors", dir);
	if (!ret)
		ret = write_st(p, tensors_b, 2, 100);
	snprintf(p, sizeof(p), "%s/sharded/model.safetensors.index.json", dir);
	if (!ret) {
		f = fopen(p, "w");
		if (!f)
			return 1;
		fputs("{\"metadata\":{},\"weight_map\":{", f);
		for (int i = 0; i < 3; i++)
			fprintf(f, "\"%s\":\"model-00001-of-00002.safetensors\",",
				tensors_a[i].name);
		fprintf(f, "\"%s\":\"model-00002-of-00002.safetensors\",", tensors_b[0].name);
		fprintf(f, "\"%s\":\"model-00002-of-00002.safetensors\"}}\n", tensors_b[1].name);
		if (fclose(f) != 0)
			ret = -EIO;
	}
	return ret ? 1 : 0;
}

/* ---- load ------------------------------------------------------------------------------- */

struct mode {
	const char *name;
	int strategy, direct, mmap;
	const char *want_strategy;
};

static const struct mode modes[] = {
    {"pread", WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_OFF, WLIFT_MMAP_OFF, "pread"},
    {"uring", WLIFT_STRATEGY_URING, WLIFT_DIRECT_OFF, WLIFT_MMAP_OFF, "uring"},
    {"direct-pread", WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_ON, WLIFT_MMAP_OFF, "pread"},
    {"direct-uring", WLIFT_STRATEGY_URING, WLIFT_DIRECT_ON, WLIFT_MMAP_OFF, "uring"},
    {"mmap", WLIFT_STRATEGY_AUTO, WLIFT_DIRECT_AUTO, WLIFT_MMAP_ON, "mmap"},
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

enum { EXP_OK, EXP_EIO, EXP_EOF, EXP_TRUNC };

struct expect {
	int kind;
	uint64_t n;
};

/* The reference bytes of the file named uri: REFDIR/<uri's path below the spec dir>. */
static uint8_t *ref_of(const char *refdir, const char *uri, const char *base, size_t *len)
{
	char p[4096];
	struct stat st;
	uint8_t *buf = NULL;
	size_t blen = strlen(base);
	int fd;

	if (strncmp(uri, base, blen) != 0)
		return NULL;
	snprintf(p, sizeof(p), "%s%s", refdir, uri + blen);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1))) {
		size_t done = 0;
		while (done < (size_t)st.st_size) {
			ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
			if (n <= 0)
				break;
			done += (size_t)n;
		}
		*len = done;
	}
	close(fd);
	return buf;
}

/* Every loaded tensor's bytes against the reference files. Returns the number of tensors
 * that differ (each reported), or -1 when a reference cannot be read. */
static int compare(const wlift_ckpt *ck, const wlift_result *res, const char *refdir,
		   const char *base)
{
	size_t nf = 0;
	int bad = 0;
	uint8_t *refs[16] = {0};
	size_t lens[16] = {0};
	wlift_file_info fi;

	while (nf < 16 && wlift_ckpt_file(ck, nf, &fi) == 0) {
		refs[nf] = ref_of(refdir, fi.uri, base, &lens[nf]);
		if (!refs[nf]) {
			fprintf(stderr, "  cannot read the reference of %s\n", fi.uri);
			bad = -1;
			goto out;
		}
		nf++;
	}
	for (size_t i = 0; i < wlift_result_count(res); i++) {
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(res, i), &v);
		if (v.info.file >= nf || v.info.file_offset + v.nbytes > lens[v.info.file] ||
		    (v.nbytes && memcmp(v.data, refs[v.info.file] + v.info.file_offset,
					(size_t)v.nbytes) != 0)) {
			size_t k = 0;
			while (k < v.nbytes && v.info.file < nf &&
			       ((const uint8_t *)v.data)[k] ==
				   refs[v.info.file][v.info.file_offset + k])
				k++;
			fprintf(stderr, "  WRONG DATA: tensor %s differs from byte %zu on\n",
				v.info.name, k);
			bad++;
		}
	}
out:
	for (size_t i = 0; i < 16; i++)
		free(refs[i]);
	return bad;
}

/* A load's read error names the tensor it cost: the one holding the offset, or the next one
 * when the offset lies in the few bytes an O_DIRECT read was widened by before it. */
static int tensor_fits(const wlift_ckpt *ck, const wlift_diag *d)
{
	wlift_tensor_info ti;
	int64_t k = wlift_ckpt_find(ck, d->tensor);

	if (!d->tensor[0] || k < 0 || wlift_ckpt_info(ck, (size_t)k, &ti) != 0)
		return 0;
	return ti.file_offset + ti.nbytes > d->offset && ti.file_offset <= d->offset + 4096;
}

/* The error must name a file below base (in d->file and in the message) and, for eio and eof,
 * an offset in that file that is right for the fault: any read covering a byte >= N fails, so
 * with several reads in flight the first failure reported may lie anywhere after N, or up to
 * one read request (at most 1 MiB) before it; an eof read is empty at N and anywhere past it. */
static int check_error(const struct expect *e, int ret, const wlift_diag *d, const wlift_ckpt *ck,
		       const char *refdir, const char *base)
{
	size_t blen = strlen(base);
	char off[32], ref[4096];
	struct stat st;
	uint64_t size = 0, lo = 0;
	int ok = 1;

	snprintf(off, sizeof(off), "%" PRIu64, d->offset);
	if (strncmp(d->file, base, blen) != 0 || d->file[blen] != '/' ||
	    strstr(d->message, d->file) == NULL) {
		fprintf(stderr, "  the error does not name a file of %s (file \"%s\")\n", base,
			d->file);
		return 0;
	}
	snprintf(ref, sizeof(ref), "%s%s", refdir, d->file + blen);
	if (stat(ref, &st) == 0)
		size = (uint64_t)st.st_size;
	switch (e->kind) {
	case EXP_OK:
		fprintf(stderr, "  expected success\n");
		return 0;
	case EXP_EIO:
		if (ret != -EIO) {
			fprintf(stderr, "  expected -EIO, got %s\n", wlift_errname(ret));
			ok = 0;
		}
		lo = e->n > MIB ? e->n - MIB + 1 : 0;
		break;
	case EXP_EOF:
	case EXP_TRUNC:
		/* The kernel may already have shrunk the file for an earlier load: then the open
		 * says the data is short (ETRUNCATED). */
		if (ret != WLIFT_ECHANGED && (e->kind == EXP_EOF || ret != WLIFT_ETRUNCATED)) {
			fprintf(stderr, "  expected WLIFT_ECHANGED, got %s\n", wlift_errname(ret));
			ok = 0;
		}
		lo = e->n;
		break;
	}
	if (e->kind != EXP_TRUNC &&
	    (!d->has_offset || d->offset < lo || d->offset >= size || !strstr(d->message, off))) {
		fprintf(stderr,
			"  expected an offset in [%" PRIu64 ", %" PRIu64 "), in the message "
			"too\n",
			lo, size);
		ok = 0;
	}
	if (ck && e->kind != EXP_TRUNC && !tensor_fits(ck, d)) {
		fprintf(stderr,
			"  a load error must name the tensor at its offset (tensor \"%s\")\n",
			d->tensor);
		ok = 0;
	}
	return ok;
}

/* Load uri in mode m; returns 1 if the outcome met e, 0 if not, -1 for a skipped mode. */
static int run_mode(const struct mode *m, const char *refdir, const char *base, const char *uri,
		    const struct expect *e)
{
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_result *res = (wlift_result *)&lo; /* must come back NULL on failure */
	wlift_ckpt *ck = NULL;
	wlift_stats st;
	wlift_diag d;
	int ret, ok;

	wlift_diag_clear(&d);
	ret = wlift_open(NULL, uri, &ck, &d);
	if (ret == 0) {
		lo.strategy = m->strategy;
		lo.direct = m->direct;
		lo.mmap = m->mmap;
		lo.threads = 2;
		lo.chunk_bytes = 256 * 1024;
		lo.max_inflight_bytes = 2 * MIB;
		ret = wlift_load(ck, &lo, NULL, NULL, &res, &d);
	} else {
		res = NULL;
	}
	if (ret == 0) {
		int bad;
		wlift_result_stats(res, &st);
		if (strcmp(st.strategy, m->want_strategy) != 0 &&
		    strcmp(m->want_strategy, "uring") == 0) {
			printf("%-13s SKIP (strategy %s: no io_uring here)\n", m->name,
			       st.strategy);
			wlift_result_free(res);
			wlift_ckpt_close(ck);
			return -1;
		}
		bad = compare(ck, res, refdir, base);
		ok = bad == 0 && strcmp(st.strategy, m->want_strategy) == 0 &&
		     st.direct == (m->direct == WLIFT_DIRECT_ON);
		printf("%-13s loaded %" PRIu64 " bytes (strategy %s, direct %d, fixups %" PRIu64
		       ")%s\n",
		       m->name, st.bytes, st.strategy, st.direct, st.fixups,
		       bad ? ": WRONG DATA" : "");
		if (!ok && !bad)
			fprintf(stderr, "  expected strategy %s, direct %d\n", m->want_strategy,
				m->direct == WLIFT_DIRECT_ON);
		if (ok && e->kind != EXP_OK)
			fprintf(stderr, "  expected an error, the load succeeded (the bytes are "
					"right)\n");
		ok = ok && e->kind == EXP_OK;
		wlift_result_free(res);
	} else {
		printf("%-13s %s: %s\n", m->name, wlift_errname(ret), d.message);
		ok = res == NULL;
		if (!ok)
			fprintf(stderr, "  a failed load left *out set\n");
		ok = check_error(e, ret, &d, ck, refdir, base) && ok;
	}
	wlift_ckpt_close(ck);
	return ok;
}

static int parse_expect(const char *s, struct expect *e)
{
	char *end;

	e->n = 0;
	if (strcmp(s, "ok") == 0)
		e->kind = EXP_OK;
	else if (strcmp(s, "trunc") == 0)
		e->kind = EXP_TRUNC;
	else if (strncmp(s, "eio:", 4) == 0 || strncmp(s, "eof:", 4) == 0) {
		e->kind = s[1] == 'i' ? EXP_EIO : EXP_EOF;
		e->n = strtoull(s + 4, &end, 10);
		if (end == s + 4 || *end)
			return -1;
	} else
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	char uri[4096];
	struct expect e;
	int fails = 0;

	if (argc == 3 && strcmp(argv[1], "gen") == 0)
		return gen(argv[2]);
	if (argc < 7 || strcmp(argv[1], "load") != 0 || parse_expect(argv[5], &e) < 0) {
		fprintf(stderr,
			"usage: fault_check gen DIR | load REFDIR SPECDIR PATH EXPECT MODE...\n");
		return 2;
	}
	snprintf(uri, sizeof(uri), "%s/%s", argv[3], argv[4]);
	printf("%s (expect %s)\n", uri, argv[5]);
	for (int i = 6; i < argc; i++) {
		int any = 0;
		for (size_t k = 0; k < NMODES; k++) {
			if (strcmp(argv[i], "all") && strcmp(argv[i], modes[k].name))
				continue;
			any = 1;
			if (run_mode(&modes[k], argv[2], argv[3], uri, &e) == 0)
				fails++;
		}
		if (!any) {
			fprintf(stderr, "fault_check: unknown mode %s\n", argv[i]);
			return 2;
		}
	}
	return fails ? 1 : 0;
}
