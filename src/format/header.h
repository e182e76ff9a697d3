/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The safetensors header: the 8-byte little-endian length N, then N bytes of UTF-8 JSON
 * mapping tensor names to {dtype, shape, data_offsets} plus an optional "__metadata__"
 * string→string map, then the data area. Parsing and validation follow the reference
 * implementation (huggingface/safetensors 0.8.0) decision for decision: what it accepts we
 * accept, what it rejects we reject, with a diagnostic naming the file, tensor, offset and rule.
 */
#ifndef WLIFT_FORMAT_HEADER_H
#define WLIFT_FORMAT_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* The reference's limit on N (MAX_HEADER_SIZE). */
#define WLIFT_HEADER_MAX 100000000ull

struct wlift__htensor {
	char *name;          /* NUL-terminated, in the header's names array */
	size_t name_len;
	wlift_dtype dtype;
	uint32_t ndim;
	uint64_t *shape;     /* ndim entries in the header's dims array; NULL when ndim == 0 */
	size_t shape_at;     /* index of shape[0] in dims (used while parsing) */
	uint64_t begin, end; /* data_offsets */
};

struct wlift__header {
	uint64_t len;                   /* N */
	size_t ntensors;
	struct wlift__htensor *tensors; /* sorted by (begin, end, name): file order */
	char *names;                    /* every name and metadata string, NUL-separated */
	uint64_t *dims;                 /* every shape, concatenated */
	int nmeta;                      /* -1: no (or null) __metadata__ */
	char **meta;                    /* 2*nmeta strings in names: key, value, header order */
};

/* Check the first plen bytes p of a file of file_size bytes (plen >= min(8, file_size)):
 * the length field, the limit, N against the file size, and recognise files that are not
 * safetensors at all (Git LFS pointers, HTML or text pages). Sets *n on success. */
int wlift__header_check_prefix(const uint8_t *p, size_t plen, uint64_t file_size,
			       const char *file, uint64_t *n, wlift_diag *d);

/* Parse and validate the N header bytes json (the bytes after the length field) of a file of
 * file_size bytes. On success h is filled (free with wlift__header_free); on failure h is
 * left empty. */
int wlift__header_parse(const uint8_t *json, uint64_t n, uint64_t file_size, const char *file,
			struct wlift__header *h, wlift_diag *d);
void wlift__header_free(struct wlift__header *h);

/* hjson.c: parse the n header JSON bytes s (UTF-8 checked; base: their offset in the file) in
 * one streaming pass into h's tensors (in header order, duplicate names kept), names and
 * metadata (pointers into h->names), shapes (h->dims). Returns 0, or the first syntax error,
 * or else the first type error, with d filled; h then holds what was built so far (free it). */
int wlift__header_json(const uint8_t *s, size_t n, uint64_t base, const char *file,
		       struct wlift__header *h, wlift_diag *d);

/* dtype.c */
int wlift__dtype_from_name_n(const char *name, size_t len);
/* Position of t in the reference's Dtype enum: its writer orders tensors by it, descending. */
int wlift__dtype_rank(wlift_dtype t);

#endif
