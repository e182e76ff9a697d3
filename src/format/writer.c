/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer: byte-identical to the reference's serialize/save_file for the same tensors and
 * metadata. The reference orders tensors by dtype rank descending (its Dtype enum order, which
 * it calls "alignment"), then by name bytewise; writes the header as compact serde_json
 * ({"__metadata__":{...} first when given, then each tensor as
 * {"dtype":..,"shape":[..],"data_offsets":[b,e]}}) with serde_json's string escapes; and pads
 * the header with spaces to a multiple of 8 bytes. The reference keeps metadata in a HashMap,
 * so its key order is unspecified (it varies from run to run); we write keys in the order
 * given, which matches it exactly whenever there is at most one key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "format/header.h"

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		char *np;
		while (nc < b->len + n)
			nc *= 2;
		np = realloc(b->p, nc);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	sb_str(b, tmp);
}

/* A JSON string exactly as serde_json writes it: \" \\ \b \f \n \r \t, other control
 * characters as \u00xx (lowercase hex), everything else (DEL, non-ASCII) as is. */
static void sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sb_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7] = { '\\', 'u', '0', '0', 0, 0, 0 };
		switch (c) {
		case '"': sb_put(b, "\\\"", 2); break;
		case '\\': sb_put(b, "\\\\", 2); break;
		case '\b': sb_put(b, "\\b", 2); break;
		case '\f': sb_put(b, "\\f", 2); break;
		case '\n': sb_put(b, "\\n", 2); break;
		case '\r': sb_put(b, "\\r", 2); break;
		case '\t': sb_put(b, "\\t", 2); break;
		default:
			if (c < 0x20) {
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				sb_put(b, esc, 6);
			} else {
				sb_put(b, s, 1);
			}
		}
	}
	sb_put(b, "\"", 1);
}

static int utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, k;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, cp = c & 0x07;
		else
			return 0;
		for (unsigned j = 1; j <= k; j++) {
			if ((p[j] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[j] & 0x3F);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		p += k + 1;
	}
	return 1;
}

static int cmp_order(const void *a, const void *b, void *ctx)
{
	const wlift_save_tensor *base = ctx;
	const wlift_save_tensor *x = &base[*(const size_t *)a];
	const wlift_save_tensor *y = &base[*(const size_t *)b];
	int rx = wlift__dtype_rank(x->dtype), ry = wlift__dtype_rank(y->dtype);

	if (rx != ry)
		return rx > ry ? -1 : 1;
	return strcmp(x->name, y->name); /* bytewise, as Rust's String ordering */
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
	const wlift_save_tensor *base = ctx;

	return strcmp(base[*(const size_t *)a].name, base[*(const size_t *)b].name);
}

/* Validate the tensors and build the padded header. *order receives the write order. */
static int build_header(const wlift_save_tensor *t, size_t n, const char *const *meta,
			size_t nmeta, size_t **order, struct sbuf *hb, uint64_t *data_len,
			wlift_diag *d)
{
	size_t *ord = NULL;
	uint64_t off = 0;
	int ret = 0;

	*order = NULL;
	if ((n && !t) || (nmeta && !meta))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "save.args",
				       "tensors or metadata pointer is NULL");
	for (size_t i = 0; i < nmeta; i++) {
		if (!meta[2 * i] || !meta[2 * i + 1])
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "save.metadata",
					       "metadata entry %zu has a NULL key or value", i);
		if (!utf8_ok(meta[2 * i]) || !utf8_ok(meta[2 * i + 1]))
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "save.utf8",
					       "metadata entry %zu is not valid UTF-8", i);
		for (size_t k = 0; k < i; k++)
			if (strcmp(meta[2 * k], meta[2 * i]) == 0)
				return wlift__diag_set(d, WLIFT_EDUPLICATE, NULL, NULL, -1,
						       "save.duplicate", "metadata key \"%s\" "
						       "given twice", meta[2 * i]);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t nel = 1, nbits;
		unsigned bits = wlift_dtype_bits(t[i].dtype);

		if (!t[i].name)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "save.name",
					       "tensor %zu has no name", i);
		if (!utf8_ok(t[i].name))
			return wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "save.utf8",
					       "tensor name is not valid UTF-8");
		if (strcmp(t[i].name, "__metadata__") == 0)
			return wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "save.name",
					       "\"__metadata__\" is reserved and cannot name a "
					       "tensor");
		if (!bits)
			return wlift__diag_set(d, WLIFT_EDTYPE, NULL, t[i].name, -1,
					       "dtype.unknown", "tensor \"%s\": invalid dtype %d",
					       t[i].name, (int)t[i].dtype);
		if (t[i].ndim && !t[i].shape)
			return wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "save.shape",
					       "tensor \"%s\": shape is NULL", t[i].name);
		for (uint32_t k = 0; k < t[i].ndim; k++)
			if (wlift__mul_u64(nel, t[i].shape[k], &nel))
				return wlift__diag_set(d, WLIFT_ESHAPE, NULL, t[i].name, -1,
						       "shape.overflow", "tensor \"%s\": element "
						       "count overflows", t[i].name);
		if (wlift__mul_u64(nel, bits, &nbits))
			return wlift__diag_set(d, WLIFT_ESHAPE, NULL, t[i].name, -1,
					       "shape.overflow", "tensor \"%s\": size overflows",
					       t[i].name);
		if (nbits % 8)
			return wlift__diag_set(d, WLIFT_ESHAPE, NULL, t[i].name, -1, "shape.bits",
					       "tensor \"%s\": %llu bits is not a whole number of "
					       "bytes", t[i].name, (unsigned long long)nbits);
		if (nbits / 8 != t[i].nbytes)
			return wlift__diag_set(d, WLIFT_ESHAPE, NULL, t[i].name, -1,
					       "shape.nbytes", "tensor \"%s\": shape × %s is %llu "
					       "bytes but %llu bytes were given", t[i].name,
					       wlift_dtype_name(t[i].dtype),
					       (unsigned long long)(nbits / 8),
					       (unsigned long long)t[i].nbytes);
		if (t[i].nbytes && !t[i].data)
			return wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "save.data",
					       "tensor \"%s\": data is NULL", t[i].name);
	}
	ord = malloc((n ? n : 1) * sizeof(*ord));
	if (!ord)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		ord[i] = i;
	/* Duplicates first, with a name-only sort (equal names with different dtypes would not
	 * be neighbours in the write order). */
	qsort_r(ord, n, sizeof(*ord), cmp_name, (void *)t);
	for (size_t i = 1; i < n; i++)
		if (strcmp(t[ord[i - 1]].name, t[ord[i]].name) == 0) {
			ret = wlift__diag_set(d, WLIFT_EDUPLICATE, NULL, t[ord[i]].name, -1,
					      "save.duplicate", "tensor \"%s\" given twice",
					      t[ord[i]].name);
			goto out;
		}
	qsort_r(ord, n, sizeof(*ord), cmp_order, (void *)t);
	sb_put(hb, "{", 1);
	if (meta) {
		sb_str(hb, "\"__metadata__\":{");
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				sb_put(hb, ",", 1);
			sb_json_str(hb, meta[2 * i]);
			sb_put(hb, ":", 1);
			sb_json_str(hb, meta[2 * i + 1]);
		}
		sb_put(hb, "}", 1);
		if (n)
			sb_put(hb, ",", 1);
	}
	for (size_t i = 0; i < n; i++) {
		const wlift_save_tensor *x = &t[ord[i]];
		if (i)
			sb_put(hb, ",", 1);
		sb_json_str(hb, x->name);
		sb_str(hb, ":{\"dtype\":");
		sb_json_str(hb, wlift_dtype_name(x->dtype));
		sb_str(hb, ",\"shape\":[");
		for (uint32_t k = 0; k < x->ndim; k++) {
			if (k)
				sb_put(hb, ",", 1);
			sb_u64(hb, x->shape[k]);
		}
		sb_str(hb, "],\"data_offsets\":[");
		sb_u64(hb, off);
		sb_put(hb, ",", 1);
		if (wlift__add_u64(off, x->nbytes, &off)) {
			ret = wlift__diag_set(d, WLIFT_ESHAPE, NULL, x->name, -1, "shape.overflow",
					      "total size overflows");
			goto out;
		}
		sb_u64(hb, off);
		sb_str(hb, "]}");
	}
	sb_put(hb, "}", 1);
	while (hb->len % 8)
		sb_put(hb, " ", 1);
	if (hb->oom) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	*data_len = off;
	*order = ord;
	ord = NULL;
out:
	free(ord);
	return ret;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int wlift_save_memory(const wlift_save_tensor *t, size_t n, const char *const *meta,
		      size_t nmeta, void **buf, size_t *len, wlift_diag *d)
{
	struct sbuf hb = { 0 };
	size_t *ord = NULL;
	uint64_t dlen = 0, total;
	uint8_t *out = NULL, *p;
	int ret;

	if (!buf || !len)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "buf or len is NULL");
	*buf = NULL;
	*len = 0;
	ret = build_header(t, n, meta, nmeta, &ord, &hb, &dlen, d);
	if (ret)
		goto out;
	if (wlift__add_u64(8 + hb.len, dlen, &total) || total > SIZE_MAX) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, "image too large");
		goto out;
	}
	out = malloc((size_t)total);
	if (!out) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	put_le64(out, hb.len);
	memcpy(out + 8, hb.p, hb.len);
	p = out + 8 + hb.len;
	for (size_t i = 0; i < n; i++) {
		if (t[ord[i]].nbytes)
			memcpy(p, t[ord[i]].data, (size_t)t[ord[i]].nbytes);
		p += t[ord[i]].nbytes;
	}
	*buf = out;
	*len = (size_t)total;
out:
	free(hb.p);
	free(ord);
	return ret;
}

static int write_all(int fd, const void *buf, uint64_t len)
{
	const uint8_t *p = buf;

	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t w = write(fd, p, chunk);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (uint64_t)w;
	}
	return 0;
}

/* Make the rename durable. Best effort: some file systems refuse fsync on directories. */
static void sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
	int fd;

	if (!dir)
		return;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
}

int wlift_save(const char *path, const wlift_save_tensor *t, size_t n, const char *const *meta,
	       size_t nmeta, wlift_diag *d)
{
	static unsigned counter;
	struct sbuf hb = { 0 };
	size_t *ord = NULL;
	uint64_t dlen = 0;
	uint8_t lenbuf[8];
	char *tmp = NULL;
	int fd = -1, ret;

	if (!path || !*path)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "path is empty");
	ret = build_header(t, n, meta, nmeta, &ord, &hb, &dlen, d);
	if (ret)
		goto out;
	tmp = malloc(strlen(path) + 64);
	if (!tmp) {
		ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
		goto out;
	}
	/* A temporary in the same directory, so that the final rename is atomic and a reader
	 * of the old file is never disturbed; created like the reference's File::create would
	 * (0666 less the umask). */
	for (int tries = 0; fd < 0; tries++) {
		sprintf(tmp, "%s.wlift-tmp.%ld.%u.%lx", path, (long)getpid(),
			__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED),
			(unsigned long)time(NULL) ^ (unsigned long)(uintptr_t)&hb);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && (errno != EEXIST || tries > 100)) {
			ret = wlift__diag_set(d, -errno, path, NULL, -1, "io.create",
					      "%s: cannot create a temporary file next to it: %s",
					      path, strerror(errno));
			free(tmp);
			tmp = NULL;
			goto out;
		}
	}
	put_le64(lenbuf, hb.len);
	ret = write_all(fd, lenbuf, 8);
	if (!ret)
		ret = write_all(fd, hb.p, hb.len);
	for (size_t i = 0; i < n && !ret; i++)
		ret = write_all(fd, t[ord[i]].data, t[ord[i]].nbytes);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (!ret && close(fd) < 0)
		ret = -errno;
	else if (ret)
		close(fd);
	fd = -1;
	if (ret) {
		ret = wlift__diag_set(d, ret, path, NULL, -1, "io.write", "%s: write failed: %s",
				      path, strerror(-ret));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		ret = wlift__diag_set(d, -errno, path, NULL, -1, "io.rename",
				      "%s: cannot rename the temporary file into place: %s", path,
				      strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	sync_dir(path);
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(hb.p);
	free(ord);
	return ret;
}
