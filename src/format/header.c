/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Safetensors header parsing and validation, decision for decision as the reference
 * (huggingface/safetensors 0.8.0, whose Python package is the test oracle): the length
 * field and its 100,000,000-byte limit, UTF-8, JSON as serde_json reads it into the
 * reference's types (hjson.c: one streaming pass, no tree), each tensor's dtype, shape and
 * data_offsets, then the offsets sorted by (begin, end) must tile the data area from 0 to the
 * end of the file, and every tensor's shape × dtype bits must be a whole number of bytes equal
 * to its extent. Before that, files that are not safetensors at all are recognised by their
 * first bytes (Git LFS pointers, HTML or text error pages, truncated downloads) so that the
 * message says what happened instead of "header too large".
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format/header.h"

#define LFS_MAGIC "version https://git-lfs.github.com/spec/v1"

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Text as error pages are: printable ASCII and whitespace in the first 8 bytes (where a
 * real file has its binary length), no control bytes after that (UTF-8 allowed). */
static int is_texty(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
			continue;
		if (p[i] < 0x20 || p[i] == 0x7f || (i < 8 && p[i] >= 0x80))
			return 0;
	}
	return 1;
}

/* Case-insensitive search for needle in the first n bytes of p. */
static int has_ci(const uint8_t *p, size_t n, const char *needle)
{
	size_t m = strlen(needle);

	for (size_t i = 0; i + m <= n; i++) {
		size_t k = 0;
		while (k < m && (p[i + k] | 0x20) == (uint8_t)(needle[k] | 0x20))
			k++;
		if (k == m)
			return 1;
	}
	return 0;
}

/* Whether file names a remote object (a URI with a scheme other than file://): only then is a
 * text body likely to be a server's error message saved in place of the data. */
static int is_remote_name(const char *file)
{
	const char *sep = file ? strstr(file, "://") : NULL;

	if (!sep || sep == file)
		return 0;
	for (const char *c = file; c < sep; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (c > file &&
		       ((*c >= '0' && *c <= '9') || *c == '+' || *c == '-' || *c == '.'))))
			return 0;
	return !(sep - file == 4 && strncasecmp(file, "file", 4) == 0);
}

/* Called when the length field makes no sense (too large or beyond the file): say what the
 * file is instead when we can tell. Returns 0 when it looks like nothing in particular. */
static int recognise(const uint8_t *p, size_t plen, uint64_t file_size, const char *file,
		     wlift_diag *d)
{
	size_t look = plen < 1024 ? plen : 1024;

	if (plen >= strlen(LFS_MAGIC) && memcmp(p, LFS_MAGIC, strlen(LFS_MAGIC)) == 0) {
		const char *sz = NULL;
		char line[64] = "";
		for (size_t i = 0; i + 5 < look; i++)
			if ((i == 0 || p[i - 1] == '\n') && memcmp(p + i, "size ", 5) == 0) {
				size_t k = 0;
				while (i + 5 + k < look && k < sizeof(line) - 1 &&
				       p[i + 5 + k] >= '0' && p[i + 5 + k] <= '9') {
					line[k] = (char)p[i + 5 + k];
					k++;
				}
				line[k] = '\0';
				sz = line;
				break;
			}
		return wlift__diag_set(d, WLIFT_ELFS, file, NULL, 0, "file.lfs",
				       "%s: this is a Git LFS pointer file (%llu bytes), not the "
				       "safetensors data%s%s%s; fetch the real file with `git lfs pull` "
				       "or download it directly", file,
				       (unsigned long long)file_size, sz ? " (the real file is " : "",
				       sz ? sz : "", sz ? " bytes)" : "");
	}
	if (plen >= 8 && is_texty(p, look < 8 ? 8 : look)) {
		size_t i = 0;
		while (i < look && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
			i++;
		if ((i < look && p[i] == '<') || has_ci(p, look, "<html") ||
		    has_ci(p, look, "<!doctype"))
			return wlift__diag_set(d, WLIFT_EHTML, file, NULL, 0, "file.html",
					       "%s: this is an HTML page (%llu bytes), not a "
					       "safetensors file: the download probably returned an "
					       "error or login page", file,
					       (unsigned long long)file_size);
		/* Say what it looks like, never what it says: the file may be anything the
		 * user (or a hostile index) pointed at. */
		if (is_remote_name(file))
			return wlift__diag_set(d, WLIFT_EHTML, file, NULL, 0, "file.text",
					       "%s: this is a text file (%llu bytes), not a "
					       "safetensors file: the download probably returned an "
					       "error message", file, (unsigned long long)file_size);
		/* A local file: nothing about downloads (it may be a config.json or notes
		 * passed by mistake). */
		return wlift__diag_set(d, WLIFT_EHTML, file, NULL, 0, "file.text",
				       "%s: this %s (%llu bytes), not a safetensors file", file,
				       i < look && (p[i] == '{' || p[i] == '[')
					   ? "looks like a JSON document"
					   : "is a text file",
				       (unsigned long long)file_size);
	}
	return 0;
}

int wlift__header_check_prefix(const uint8_t *p, size_t plen, uint64_t file_size,
			       const char *file, uint64_t *n, wlift_diag *d)
{
	uint64_t len;

	*n = 0;
	if (file_size < 8) {
		if (recognise(p, plen, file_size, file, d))
			return d ? d->code : WLIFT_EHTML;
		return wlift__diag_set(d, WLIFT_ETRUNCATED, file, NULL, -1,
				       file_size ? "file.truncated" : "file.empty",
				       "%s: the file is %llu bytes, too short to hold the 8-byte "
				       "header length (empty or truncated download?)", file,
				       (unsigned long long)file_size);
	}
	len = le64(p);
	if (len > WLIFT_HEADER_MAX || len > file_size - 8) {
		int ret = recognise(p, plen, file_size, file, d);
		if (ret)
			return ret;
	}
	if (len > WLIFT_HEADER_MAX)
		return wlift__diag_set(d, WLIFT_EHEADER_LEN, file, NULL, 0, "header.len",
				       "%s: header length %llu exceeds the format's limit of "
				       "100000000 bytes: not a safetensors file, or corrupt", file,
				       (unsigned long long)len);
	if (len > file_size - 8)
		return wlift__diag_set(d, WLIFT_ETRUNCATED, file, NULL, 0, "file.truncated",
				       "%s: the header length field says %llu bytes but only %llu "
				       "follow it: %llu bytes missing (truncated download, or not a "
				       "safetensors file)", file, (unsigned long long)len,
				       (unsigned long long)(file_size - 8),
				       (unsigned long long)(len - (file_size - 8)));
	*n = len;
	return 0;
}

/* Strict UTF-8 as Rust's str::from_utf8: no overlong forms, no surrogates, <= U+10FFFF.
 * Returns the offset of the first bad byte, or n. */
static size_t utf8_check(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			k = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			k = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (n - i <= k)
			return i;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += k + 1;
	}
	return n;
}

void wlift__header_free(struct wlift__header *h)
{
	if (!h)
		return;
	free(h->tensors);
	free(h->names);
	free(h->dims);
	free(h->meta);
	memset(h, 0, sizeof(*h));
	h->nmeta = -1;
}

struct walk {
	const char *file;
	uint64_t base; /* absolute offset of the JSON */
	wlift_diag *d;
};

/* Keep the last of entries with equal keys, at the first one's place (the reference reads
 * both tensors and metadata into HashMaps, which keep the last value). Entries are size
 * bytes, their key the string at offset key_at; *n shrinks to what is left. */
static int dedupe(void *base, size_t *n, size_t size, size_t key_at)
{
	size_t nslots = 16, k = 0;
	uint32_t *slots;
	char *a = base;

	if (*n < 2)
		return 0;
	while (nslots < 2 * *n)
		nslots *= 2;
	slots = calloc(nslots, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++) {
		const char *key = *(char *const *)(a + i * size + key_at);
		size_t s = (size_t)wlift__hash_str(key) & (nslots - 1);
		for (; slots[s]; s = (s + 1) & (nslots - 1))
			if (strcmp(*(char *const *)(a + (slots[s] - 1) * size + key_at), key) == 0)
				break;
		if (slots[s]) {
			memmove(a + (slots[s] - 1) * size, a + i * size, size);
		} else {
			slots[s] = (uint32_t)(k + 1);
			if (k != i)
				memmove(a + k * size, a + i * size, size);
			k++;
		}
	}
	free(slots);
	*n = k;
	return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
	const struct wlift__htensor *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The reference's Metadata::validate, in its order, plus the end-of-file check. */
static int validate(struct walk *w, struct wlift__header *h, uint64_t file_size)
{
	uint64_t start = 0, data = w->base + h->len;

	if (h->ntensors > 1)
		qsort(h->tensors, h->ntensors, sizeof(*h->tensors), cmp_tensor);
	for (size_t i = 0; i < h->ntensors; i++) {
		struct wlift__htensor *t = &h->tensors[i];
		uint64_t nel = 1, nbits;
		unsigned bits = wlift_dtype_bits(t->dtype);

		if (t->begin != start || t->end < t->begin) {
			const char *rule = t->end < t->begin ? "offsets.order"
					   : t->begin > start ? "offsets.gap" : "offsets.overlap";
			const char *what = t->end < t->begin ? "ends before it begins"
					   : t->begin > start ? "leaves a gap before it (it should "
							       "begin where the previous tensor ends)"
					   : "overlaps the previous tensor";
			return wlift__diag_set(w->d, WLIFT_EOFFSETS, w->file, t->name,
					       (int64_t)(data + (t->begin < UINT64_MAX - data ?
								  t->begin : 0)),
					       rule, "%s: tensor \"%s\": data_offsets [%llu, %llu] %s "
					       "(expected begin %llu)", w->file, t->name,
					       (unsigned long long)t->begin,
					       (unsigned long long)t->end, what,
					       (unsigned long long)start);
		}
		start = t->end;
		/* Fold left with overflow checks exactly as the reference does: [2^64-1, 0] is
		 * fine, [2^64-1, 2, 0] overflows before the 0 is reached. */
		for (uint32_t k = 0; k < t->ndim; k++)
			if (wlift__mul_u64(nel, t->shape[k], &nel))
				return wlift__diag_set(w->d, WLIFT_ESHAPE, w->file, t->name, -1,
						       "shape.overflow", "%s: tensor \"%s\": the "
						       "element count of its shape overflows 64 bits",
						       w->file, t->name);
		if (wlift__mul_u64(nel, bits, &nbits))
			return wlift__diag_set(w->d, WLIFT_ESHAPE, w->file, t->name, -1,
					       "shape.overflow", "%s: tensor \"%s\": %llu elements of "
					       "%s overflow 64 bits when counted in bits", w->file,
					       t->name, (unsigned long long)nel,
					       wlift_dtype_name(t->dtype));
		if (nbits % 8)
			return wlift__diag_set(w->d, WLIFT_ESHAPE, w->file, t->name, -1,
					       "shape.bits", "%s: tensor \"%s\": %llu elements of %s "
					       "are %llu bits, not a whole number of bytes", w->file,
					       t->name, (unsigned long long)nel,
					       wlift_dtype_name(t->dtype), (unsigned long long)nbits);
		if (t->end - t->begin != nbits / 8)
			return wlift__diag_set(w->d, WLIFT_ESHAPE, w->file, t->name,
					       (int64_t)(data + t->begin), "shape.nbytes",
					       "%s: tensor \"%s\": shape × %s is %llu bytes but "
					       "data_offsets [%llu, %llu] span %llu", w->file, t->name,
					       wlift_dtype_name(t->dtype),
					       (unsigned long long)(nbits / 8),
					       (unsigned long long)t->begin,
					       (unsigned long long)t->end,
					       (unsigned long long)(t->end - t->begin));
	}
	if (start > file_size - data) {
		/* data_offsets point beyond the file: almost always an interrupted download. */
		return wlift__diag_set(w->d, WLIFT_ETRUNCATED, w->file,
				       h->ntensors ? h->tensors[h->ntensors - 1].name : NULL,
				       (int64_t)file_size, "file.truncated",
				       "%s: the data area should be %llu bytes but the file holds "
				       "only %llu: %llu bytes missing (truncated download?)", w->file,
				       (unsigned long long)start,
				       (unsigned long long)(file_size - data),
				       (unsigned long long)(start - (file_size - data)));
	}
	if (start < file_size - data)
		return wlift__diag_set(w->d, WLIFT_EOFFSETS, w->file, NULL,
				       (int64_t)(data + start), "data.trailing",
				       "%s: %llu bytes after the last tensor (at offset %llu) are not "
				       "covered by any tensor", w->file,
				       (unsigned long long)(file_size - data - start),
				       (unsigned long long)(data + start));
	return 0;
}

int wlift__header_parse(const uint8_t *json, uint64_t n, uint64_t file_size, const char *file,
			struct wlift__header *h, wlift_diag *d)
{
	struct walk w = { .file = file, .base = 8, .d = d };
	size_t bad, nmeta;
	int ret;

	memset(h, 0, sizeof(*h));
	h->nmeta = -1;
	h->len = n;
	if (n > WLIFT_HEADER_MAX || file_size < 8 || n > file_size - 8)
		return wlift__diag_set(d, WLIFT_EHEADER_LEN, file, NULL, 0, "header.len",
				       "%s: invalid header length %llu", file,
				       (unsigned long long)n);
	bad = utf8_check(json, (size_t)n);
	if (bad != n)
		return wlift__diag_set(d, WLIFT_EJSON, file, NULL, (int64_t)(8 + bad), "json.utf8",
				       "%s: the header is not valid UTF-8 (byte %llu)", file,
				       (unsigned long long)(8 + bad));
	ret = wlift__header_json(json, (size_t)n, 8, file, h, d);
	if (ret)
		goto out;
	nmeta = h->nmeta > 0 ? (size_t)h->nmeta : 0;
	if (dedupe(h->tensors, &h->ntensors, sizeof(*h->tensors),
		   offsetof(struct wlift__htensor, name)) ||
	    dedupe(h->meta, &nmeta, 2 * sizeof(*h->meta), 0)) {
		ret = wlift__diag_set(d, -ENOMEM, file, NULL, -1, NULL, NULL);
		goto out;
	}
	if (h->nmeta > 0)
		h->nmeta = (int)nmeta;
	ret = validate(&w, h, file_size);
out:
	if (ret)
		wlift__header_free(h);
	return ret;
}
