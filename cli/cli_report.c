/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What inspect and verify show about an opened checkpoint: the --json report (files,
 * metadata, tensors, errors; the shape is fixed by the CLI contract, README.md "The
 * `weightlift` command") and the human-readable table. Both read the checkpoint through the
 * public accessors only.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_report_init(struct cli_report *r)
{
	memset(r, 0, sizeof(*r));
	r->root = json_object_new_object();
	r->uris = json_object_new_array();
	r->files = json_object_new_array();
	r->tensors = json_object_new_array();
	r->errors = json_object_new_array();
	json_object_object_add(r->root, "schema", json_object_new_int(CLI_JSON_SCHEMA));
	json_object_object_add(r->root, "uris", r->uris);
	json_object_object_add(r->root, "files", r->files);
	/* null until a file with __metadata__ is seen: "no metadata" differs from "{}" */
	json_object_object_add(r->root, "metadata", NULL);
	json_object_object_add(r->root, "tensors", r->tensors);
	json_object_object_add(r->root, "errors", r->errors);
}

void cli_report_free(struct cli_report *r)
{
	json_object_put(r->root);
	memset(r, 0, sizeof(*r));
}

static json_object *file_metadata(const wlift_ckpt *ck, size_t f)
{
	int n = wlift_ckpt_metadata_count(ck, f);
	json_object *m;

	if (n < 0)
		return NULL;
	m = json_object_new_object();
	for (int i = 0; i < n; i++) {
		const char *k = NULL, *v = NULL;

		if (wlift_ckpt_metadata(ck, f, (size_t)i, &k, &v) < 0 || !k)
			continue;
		json_object_object_add(m, k, json_object_new_string(v ? v : ""));
	}
	return m;
}

static json_object *u64_array(const uint64_t *v, size_t n)
{
	json_object *a = json_object_new_array_ext((int)n);

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_uint64(v[i]));
	return a;
}

void cli_report_add_ckpt(struct cli_report *r, const wlift_ckpt *ck, size_t *first)
{
	size_t nfiles = wlift_ckpt_nfiles(ck), n = wlift_ckpt_count(ck);
	const char **paths = calloc(nfiles ? nfiles : 1, sizeof(*paths));

	*first = json_object_array_length(r->tensors);
	for (size_t f = 0; f < nfiles; f++) {
		wlift_file_info fi;
		json_object *o, *meta;

		memset(&fi, 0, sizeof(fi));
		if (wlift_ckpt_file(ck, f, &fi) < 0)
			continue;
		if (paths)
			paths[f] = fi.uri;
		meta = file_metadata(ck, f);
		o = json_object_new_object();
		json_object_object_add(o, "path", json_object_new_string(fi.uri ? fi.uri : ""));
		json_object_object_add(o, "size", json_object_new_uint64(fi.size));
		json_object_object_add(o, "header_len", json_object_new_uint64(fi.header_len));
		json_object_object_add(o, "data_offset", json_object_new_uint64(fi.data_offset));
		json_object_object_add(o, "ntensors", json_object_new_uint64(fi.ntensors));
		json_object_object_add(o, "metadata", meta ? json_object_get(meta) : NULL);
		json_object_array_add(r->files, o);
		if (meta && !r->have_metadata) {
			json_object_object_add(r->root, "metadata", json_object_get(meta));
			r->have_metadata = true;
		}
		json_object_put(meta);
	}
	for (size_t i = 0; i < n; i++) {
		wlift_tensor_info ti;
		json_object *o, *off;
		const char *dt;

		memset(&ti, 0, sizeof(ti));
		o = json_object_new_object();
		if (wlift_ckpt_info(ck, i, &ti) < 0) {
			/* keep the index mapping: tensor i is always r->tensors[first + i] */
			json_object_array_add(r->tensors, o);
			continue;
		}
		dt = wlift_dtype_name(ti.dtype);
		off = json_object_new_array_ext(2);
		json_object_array_add(off, json_object_new_uint64(ti.data_begin));
		json_object_array_add(off, json_object_new_uint64(ti.data_end));
		json_object_object_add(o, "name", json_object_new_string(ti.name ? ti.name : ""));
		json_object_object_add(o, "dtype", json_object_new_string(dt ? dt : "?"));
		json_object_object_add(o, "shape", u64_array(ti.shape, ti.ndim));
		json_object_object_add(
		    o, "file",
		    json_object_new_string(
			paths && ti.file < nfiles && paths[ti.file] ? paths[ti.file] : ""));
		json_object_object_add(o, "data_offsets", off);
		json_object_object_add(o, "nbytes", json_object_new_uint64(ti.nbytes));
		json_object_array_add(r->tensors, o);
	}
	free(paths);
}

void cli_report_add_error(struct cli_report *r, const char *uri, int err, const wlift_diag *d)
{
	json_object_array_add(r->errors, cli_json_error(uri, err, d));
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
