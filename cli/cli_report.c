/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What inspect and verify show about an opened checkpoint: the --json report (files,
 * metadata, tensors, errors; the shape is fixed by the CLI contract, README.md "The
 * `weightlift` command") and the human-readable table. Both read the checkpoint through the
 * public accessors only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_report_init(struct cli_report *r, char *const *uris, size_t nuris)
{
	memset(r, 0, sizeof(*r));
	r->uris = uris;
	r->nuris = nuris;
}

void cli_report_free(struct cli_report *r)
{
	for (size_t i = 0; i < r->nckpts; i++) {
		wlift_ckpt_close(r->ckpts[i].ck);
		free(r->ckpts[i].md);
		free(r->ckpts[i].done);
	}
	free(r->ckpts);
	free(r->errors);
	memset(r, 0, sizeof(*r));
}

int cli_report_keep(struct cli_report *r, wlift_ckpt *ck, uint8_t (*md)[32], uint8_t *done)
{
	struct cli_report_ckpt *nc = realloc(r->ckpts, (r->nckpts + 1) * sizeof(*nc));

	if (!nc) {
		wlift_ckpt_close(ck);
		free(md);
		free(done);
		return -ENOMEM;
	}
	r->ckpts = nc;
	nc[r->nckpts++] = (struct cli_report_ckpt){ .ck = ck, .md = md, .done = done };
	return 0;
}

void cli_report_add_error(struct cli_report *r, const char *uri, int err, const wlift_diag *d)
{
	struct cli_report_error *ne = realloc(r->errors, (r->nerrors + 1) * sizeof(*ne));

	if (!ne)
		return; /* the exit status still says it failed */
	r->errors = ne;
	ne[r->nerrors].uri = uri;
	ne[r->nerrors].err = err;
	if (d)
		ne[r->nerrors].d = *d;
	else
		wlift_diag_clear(&ne[r->nerrors].d);
	r->nerrors++;
}

/* The metadata object of file f of ck, or null. */
static void file_metadata(struct cli_jw *w, const wlift_ckpt *ck, size_t f)
{
	int n = wlift_ckpt_metadata_count(ck, f);

	if (n < 0) {
		cli_jw_null(w);
		return;
	}
	cli_jw_open(w, '{');
	for (int i = 0; i < n; i++) {
		const char *k = NULL, *v = NULL;

		if (wlift_ckpt_metadata(ck, f, (size_t)i, &k, &v) < 0 || !k)
			continue;
		cli_jw_key(w, k);
		cli_jw_str(w, v ? v : "");
	}
	cli_jw_close(w, '}');
}

static void tensors(struct cli_jw *w, const struct cli_report_ckpt *c)
{
	size_t nfiles = wlift_ckpt_nfiles(c->ck), n = wlift_ckpt_count(c->ck);

	for (size_t i = 0; i < n; i++) {
		wlift_tensor_info ti;
		wlift_file_info fi;
		const char *dt;

		memset(&ti, 0, sizeof(ti));
		cli_jw_open(w, '{');
		if (wlift_ckpt_info(c->ck, i, &ti) < 0) {
			cli_jw_close(w, '}');
			continue;
		}
		memset(&fi, 0, sizeof(fi));
		if (ti.file >= nfiles || wlift_ckpt_file(c->ck, ti.file, &fi) < 0)
			fi.uri = NULL;
		dt = wlift_dtype_name(ti.dtype);
		cli_jw_key(w, "name");
		cli_jw_str(w, ti.name ? ti.name : "");
		cli_jw_key(w, "dtype");
		cli_jw_str(w, dt ? dt : "?");
		cli_jw_key(w, "shape");
		cli_jw_open(w, '[');
		for (uint32_t k = 0; k < ti.ndim; k++)
			cli_jw_u64(w, ti.shape[k]);
		cli_jw_close(w, ']');
		cli_jw_key(w, "file");
		cli_jw_str(w, fi.uri ? fi.uri : "");
		cli_jw_key(w, "data_offsets");
		cli_jw_open(w, '[');
		cli_jw_u64(w, ti.data_begin);
		cli_jw_u64(w, ti.data_end);
		cli_jw_close(w, ']');
		cli_jw_key(w, "nbytes");
		cli_jw_u64(w, ti.nbytes);
		if (c->md) {
			char hex[65];
			cli_jw_key(w, "sha256");
			if (c->done[i]) {
				cli_hex32(c->md[i], hex);
				cli_jw_str(w, hex);
			} else {
				cli_jw_null(w);
			}
		}
		cli_jw_close(w, '}');
	}
}

int cli_report_print(const struct cli_report *r, cli_report_tail_fn tail, void *user)
{
	struct cli_jw w;
	bool have_meta = false;

	cli_jw_init(&w, stdout);
	cli_jw_open(&w, '{');
	cli_jw_key(&w, "schema");
	cli_jw_i64(&w, CLI_JSON_SCHEMA);
	cli_jw_key(&w, "uris");
	cli_jw_open(&w, '[');
	for (size_t i = 0; i < r->nuris; i++)
		cli_jw_str(&w, r->uris[i]);
	cli_jw_close(&w, ']');
	cli_jw_key(&w, "files");
	cli_jw_open(&w, '[');
	for (size_t i = 0; i < r->nckpts; i++)
		for (size_t f = 0; f < wlift_ckpt_nfiles(r->ckpts[i].ck); f++) {
			wlift_file_info fi;

			memset(&fi, 0, sizeof(fi));
			if (wlift_ckpt_file(r->ckpts[i].ck, f, &fi) < 0)
				continue;
			cli_jw_open(&w, '{');
			cli_jw_key(&w, "path");
			cli_jw_str(&w, fi.uri ? fi.uri : "");
			cli_jw_key(&w, "size");
			cli_jw_u64(&w, fi.size);
			cli_jw_key(&w, "header_len");
			cli_jw_u64(&w, fi.header_len);
			cli_jw_key(&w, "data_offset");
			cli_jw_u64(&w, fi.data_offset);
			cli_jw_key(&w, "ntensors");
			cli_jw_u64(&w, fi.ntensors);
			cli_jw_key(&w, "metadata");
			file_metadata(&w, r->ckpts[i].ck, f);
			cli_jw_close(&w, '}');
		}
	cli_jw_close(&w, ']');
	/* The first file that has __metadata__: null when none has ("no metadata" differs
	 * from "{}"). */
	cli_jw_key(&w, "metadata");
	for (size_t i = 0; i < r->nckpts && !have_meta; i++)
		for (size_t f = 0; f < wlift_ckpt_nfiles(r->ckpts[i].ck) && !have_meta; f++)
			if (wlift_ckpt_metadata_count(r->ckpts[i].ck, f) >= 0) {
				file_metadata(&w, r->ckpts[i].ck, f);
				have_meta = true;
			}
	if (!have_meta)
		cli_jw_null(&w);
	cli_jw_key(&w, "tensors");
	cli_jw_open(&w, '[');
	for (size_t i = 0; i < r->nckpts; i++)
		tensors(&w, &r->ckpts[i]);
	cli_jw_close(&w, ']');
	cli_jw_key(&w, "errors");
	cli_jw_open(&w, '[');
	for (size_t i = 0; i < r->nerrors; i++)
		cli_jw_error(&w, r->errors[i].uri, r->errors[i].err, &r->errors[i].d);
	cli_jw_close(&w, ']');
	if (tail)
		tail(&w, user);
	cli_jw_close(&w, '}');
	return cli_jw_end(&w);
}

/* ---- human-readable table ---------------------------------------------------------- */

static void fmt_shape(const wlift_tensor_info *ti, char *buf, size_t cap)
{
	size_t len = 0;

	len += (size_t)snprintf(buf, cap, "[");
	for (uint32_t k = 0; k < ti->ndim && len < cap; k++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%" PRIu64, k ? ", " : "",
					ti->shape[k]);
	if (len < cap)
		snprintf(buf + len, cap - len, "]");
}

static int max_int(int a, int b)
{
	return a > b ? a : b;
}

void cli_print_ckpt(FILE *out, const char *uri, const wlift_ckpt *ck, char *const *sha256)
{
	size_t nfiles = wlift_ckpt_nfiles(ck), n = wlift_ckpt_count(ck);
	int wname = 4, wdtype = 5, wshape = 5, wbytes = 5, woffs = 12;
	uint64_t total = 0;
	char b1[64], b2[64];

	fprintf(out, "%s\n", uri);
	for (size_t f = 0; f < nfiles; f++) {
		wlift_file_info fi;
		int nm;

		memset(&fi, 0, sizeof(fi));
		if (wlift_ckpt_file(ck, f, &fi) < 0)
			continue;
		fprintf(out,
			"file %zu: %s  size %" PRIu64 " (%s)  header %" PRIu64
			" B  data at %" PRIu64 "  tensors %" PRIu64 "\n",
			f, fi.uri ? fi.uri : "", fi.size, cli_fmt_bytes(fi.size, b1, sizeof(b1)),
			fi.header_len, fi.data_offset, fi.ntensors);
		nm = wlift_ckpt_metadata_count(ck, f);
		if (nm < 0) {
			fprintf(out, "  metadata: none\n");
			continue;
		}
		fprintf(out, "  metadata: %d entr%s\n", nm, nm == 1 ? "y" : "ies");
		for (int i = 0; i < nm; i++) {
			const char *k = NULL, *v = NULL;

			if (wlift_ckpt_metadata(ck, f, (size_t)i, &k, &v) == 0 && k)
				fprintf(out, "    %s = %s\n", k, v ? v : "");
		}
	}

	/* Column widths from the content so that long names and shapes stay aligned. */
	for (size_t i = 0; i < n; i++) {
		wlift_tensor_info ti;
		char shape[256];
		const char *dt;

		if (wlift_ckpt_info(ck, i, &ti) < 0)
			continue;
		dt = wlift_dtype_name(ti.dtype);
		fmt_shape(&ti, shape, sizeof(shape));
		wname = max_int(wname, (int)strlen(ti.name ? ti.name : ""));
		wdtype = max_int(wdtype, (int)strlen(dt ? dt : "?"));
		wshape = max_int(wshape, (int)strlen(shape));
		wbytes = max_int(wbytes, snprintf(b1, sizeof(b1), "%" PRIu64, ti.nbytes));
		woffs = max_int(woffs, snprintf(b1, sizeof(b1), "[%" PRIu64 ", %" PRIu64 "]",
						ti.data_begin, ti.data_end));
	}
	fprintf(out, "%-*s  %-*s  %-*s  %*s  %-*s%s%s\n", wname, "NAME", wdtype, "DTYPE", wshape,
		"SHAPE", wbytes, "BYTES", (nfiles > 1 || sha256) ? woffs : 0, "DATA_OFFSETS",
		nfiles > 1 ? "  FILE" : "", sha256 ? "  SHA256" : "");
	for (size_t i = 0; i < n; i++) {
		wlift_tensor_info ti;
		char shape[256], offs[64];
		const char *dt;

		if (wlift_ckpt_info(ck, i, &ti) < 0)
			continue;
		dt = wlift_dtype_name(ti.dtype);
		fmt_shape(&ti, shape, sizeof(shape));
		snprintf(offs, sizeof(offs), "[%" PRIu64 ", %" PRIu64 "]", ti.data_begin,
			 ti.data_end);
		fprintf(out, "%-*s  %-*s  %-*s  %*" PRIu64 "  %-*s", wname, ti.name ? ti.name : "",
			wdtype, dt ? dt : "?", wshape, shape, wbytes, ti.nbytes,
			(nfiles > 1 || sha256) ? woffs : 0, offs);
		if (nfiles > 1)
			fprintf(out, "  %u", (unsigned)ti.file);
		if (sha256)
			fprintf(out, "  %s", sha256[i] ? sha256[i] : "-");
		fputc('\n', out);
		total += ti.nbytes;
	}
	fprintf(out, "%zu tensor%s, %" PRIu64 " bytes (%s) in %zu file%s\n", n, n == 1 ? "" : "s",
		total, cli_fmt_bytes(total, b2, sizeof(b2)), nfiles, nfiles == 1 ? "" : "s");
}
