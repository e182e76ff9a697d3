/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the --names argument (cli_names_split) and what the library makes of the list
 * (the select and partition stages, wlift_load_opts.names and .rows) against a small fixed
 * checkpoint. Input: the argument up to the first NUL (a command line has none); the bytes
 * after it, when there are two per name, are each name's rows [begin, end).
 * Checks: the split gives the argument's non-empty comma-separated items, in order (joined
 * with commas they are the argument with empty items dropped); the selection is every named
 * tensor once, in file order, or a rejection with a message naming an absent tensor or bad
 * rows; each partial tensor is the asked rows' bytes inside the tensor.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/ckpt.h"
#include "engine/stages.h"

/* Names chosen to make the fuzzer work: prefixes of each other, a dot, a comma (not
 * selectable through --names), UTF-8, and shapes with no rows, zero rows, and rows that are
 * not whole bytes (F4 [4, 3]: 12 bits a row). */
static const char header[] =
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[4,3],\"data_offsets\":[0,12]},"
    "\"a.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
    "\"ab\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[20,20]},"
    "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[20,24]},"
    "\"x,y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[24,25]},"
    "\"\xc3\xbc\":{\"dtype\":\"BF16\",\"shape\":[3,1,2],\"data_offsets\":[25,37]},"
    "\"f4\":{\"dtype\":\"F4\",\"shape\":[4,3],\"data_offsets\":[37,43]}}";

static wlift_ckpt *open_fixture(void)
{
	static uint8_t file[8 + sizeof(header) + 64];
	static wlift_ckpt *ck;
	size_t hl = sizeof(header) - 1;
	wlift_diag d;

	if (ck)
		return ck;
	for (int i = 0; i < 8; i++)
		file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(file + 8, header, hl);
	wlift_diag_clear(&d);
	if (wlift_open_memory(NULL, file, 8 + hl + 43, "fixture", &ck, &d) != 0)
		__builtin_trap();
	return ck;
}

/* The argument with empty comma-separated items dropped, for comparison with the split. */
static void collapse(const char *s, char *out)
{
	size_t k = 0;

	for (const char *p = s; *p; p++) {
		if (*p == ',' && (k == 0 || out[k - 1] == ','))
			continue;
		out[k++] = *p;
	}
	if (k && out[k - 1] == ',')
		k--;
	out[k] = '\0';
}

static void check_selection(const wlift_ckpt *ck, const wlift_load_opts *lo,
			    const struct wlift__selection *s)
{
	size_t nt = wlift_ckpt_count(ck);

	for (size_t i = 0; i < s->n; i++) {
		size_t named = 0;
		if (s->idx[i] >= nt || (i && s->idx[i] <= s->idx[i - 1]))
			__builtin_trap(); /* file order, unique */
		for (size_t j = 0; j < lo->nnames; j++)
			named += wlift_ckpt_find(ck, lo->names[j]) == (int64_t)s->idx[i];
		if (!named)
			__builtin_trap();
	}
	for (size_t j = 0; j < lo->nnames; j++) {
		int64_t idx = wlift_ckpt_find(ck, lo->names[j]);
		size_t found = 0;
		for (size_t i = 0; i < s->n; i++)
			found += s->idx[i] == (size_t)idx;
		if (found != 1)
			__builtin_trap();
	}
}

static void check_partition(const wlift_ckpt *ck, const struct wlift__selection *s)
{
	for (size_t i = 0; i < s->n; i++) {
		wlift_tensor_info t;
		const wlift_tensor_info *p = &s->ti[i];
		const wlift_rows *r = s->rows[i];

		if (wlift_ckpt_info(ck, s->idx[i], &t) != 0)
			__builtin_trap();
		if (p->file_offset < t.file_offset ||
		    p->file_offset + p->nbytes > t.file_offset + t.nbytes ||
		    p->data_end - p->data_begin != p->nbytes)
			__builtin_trap();
		if (!r) {
			if (p->nbytes != t.nbytes || p->file_offset != t.file_offset)
				__builtin_trap();
			continue;
		}
		if (r->begin > r->end || r->end > t.shape[0] || p->shape[0] != r->end - r->begin)
			__builtin_trap();
		if (t.shape[0] && p->nbytes * t.shape[0] != t.nbytes * (r->end - r->begin))
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wlift_ckpt *ck = open_fixture();
	size_t len = strnlen((const char *)data, size), nnames = 0;
	char *arg = malloc(len + 1), *orig = malloc(len + 1), *joined = malloc(len + 1);
	const char **names = NULL;
	wlift_rows *rows = NULL;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	struct wlift__selection s;
	wlift_diag d;
	int ret;

	if (!arg || !orig || !joined)
		goto out;
	memcpy(arg, data, len);
	arg[len] = '\0';
	memcpy(orig, arg, len + 1);
	if (cli_names_split(arg, &names, &nnames) != 0)
		goto out;
	/* The split: non-empty items without commas, which joined give the argument without
	 * its empty items. */
	collapse(orig, joined);
	{
		size_t k = 0;
		for (size_t i = 0; i < nnames; i++) {
			size_t n = strlen(names[i]);
			if (!n || strchr(names[i], ',') || strncmp(joined + k, names[i], n) != 0)
				__builtin_trap();
			k += n;
			if (i + 1 < nnames && joined[k++] != ',')
				__builtin_trap();
		}
		if (joined[k] != '\0')
			__builtin_trap();
	}
	if (!nnames)
		goto out; /* the CLI rejects an argument without a name */
	if (size - len > 2 * nnames) {
		const uint8_t *b = data + len + 1;
		rows = calloc(nnames, sizeof(*rows));
		if (!rows)
			goto out;
		for (size_t i = 0; i < nnames; i++) {
			rows[i].begin = b[2 * i];
			rows[i].end = b[2 * i + 1];
		}
	}
	lo.names = names;
	lo.nnames = nnames;
	lo.rows = rows;
	wlift_diag_clear(&d);
	ret = wlift__load_select(ck, &lo, &s, &d);
	if (ret == 0) {
		check_selection(ck, &lo, &s);
		wlift_diag_clear(&d);
		ret = wlift__load_partition(ck, &lo, NULL, &s, &d);
		if (ret == 0)
			check_partition(ck, &s);
		else if (d.code == 0 || !d.message[0] || !rows ||
			 wlift_ckpt_find(ck, d.tensor) < 0)
			__builtin_trap(); /* only rows are refused here, naming their tensor */
		wlift__selection_free(&s);
	} else {
		/* An absent name (the first, in the order given) or rows that disagree. */
		if (d.code == 0 || !d.message[0])
			__builtin_trap();
		if (d.code == WLIFT_ENOTFOUND) {
			size_t j = 0;
			while (j < nnames && wlift_ckpt_find(ck, names[j]) >= 0)
				j++;
			if (j == nnames ||
			    strncmp(d.tensor, names[j], sizeof(d.tensor) - 1) != 0)
				__builtin_trap();
		} else if (!rows) {
			__builtin_trap();
		}
	}
out:
	free(rows);
	free(names);
	free(joined);
	free(orig);
	free(arg);
	return 0;
}
