/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error codes: text and symbolic names for our pinned codes and for -errno, their classes
 * (which block a code is in), and the first-error-wins diagnostic record.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

struct err_entry {
	int code;
	const char *name;
	const char *text;
};

static const struct err_entry errs[] = {
	{ WLIFT_EFORMAT, "WLIFT_EFORMAT", "malformed safetensors file" },
	{ WLIFT_EHEADER_LEN, "WLIFT_EHEADER_LEN", "invalid safetensors header length" },
	{ WLIFT_EJSON, "WLIFT_EJSON", "invalid safetensors header JSON" },
	{ WLIFT_EDTYPE, "WLIFT_EDTYPE", "unknown dtype" },
	{ WLIFT_ESHAPE, "WLIFT_ESHAPE", "tensor shape does not match its byte size" },
	{ WLIFT_EOFFSETS, "WLIFT_EOFFSETS", "invalid tensor data offsets" },
	{ WLIFT_ETRUNCATED, "WLIFT_ETRUNCATED", "file is truncated" },
	{ WLIFT_EINDEX, "WLIFT_EINDEX", "inconsistent checkpoint index" },
	{ WLIFT_ENOTFOUND, "WLIFT_ENOTFOUND", "tensor not found" },
	{ WLIFT_ECANCELED, "WLIFT_ECANCELED", "operation canceled" },
	{ WLIFT_ECHANGED, "WLIFT_ECHANGED", "file changed while loading" },
	{ WLIFT_EUNSUPPORTED, "WLIFT_EUNSUPPORTED", "not supported" },
	{ WLIFT_EDUPLICATE, "WLIFT_EDUPLICATE", "duplicate tensor name" },
	{ WLIFT_ELFS, "WLIFT_ELFS", "file is a Git LFS pointer, not safetensors data" },
	{ WLIFT_EHTML, "WLIFT_EHTML", "file is an HTML or text page, not safetensors data" },
	{ WLIFT_EURI, "WLIFT_EURI", "unsupported or malformed URI" },
	{ WLIFT_EEMPTY, "WLIFT_EEMPTY", "no checkpoint files found" },
	{ WLIFT_EHTTP, "WLIFT_EHTTP", "HTTP error" },
	{ WLIFT_EAUTH, "WLIFT_EAUTH", "authentication failed" },
	{ WLIFT_ENET, "WLIFT_ENET", "network error" },
	{ WLIFT_ECACHE, "WLIFT_ECACHE", "local cache error" },
	{ WLIFT_ECUDA, "WLIFT_ECUDA", "CUDA error" },
	{ WLIFT_ENODEV, "WLIFT_ENODEV", "no such device" },
	{ WLIFT_ECUFILE, "WLIFT_ECUFILE", "cuFile error" },
	{ WLIFT_EDEVMEM, "WLIFT_EDEVMEM", "out of device memory" },
	{ WLIFT_ECOMM, "WLIFT_ECOMM", "communication error" },
};

static const struct err_entry *find_err(int code)
{
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(errs); i++)
		if (errs[i].code == code)
			return &errs[i];
	return NULL;
}

const char *wlift_strerror(int err)
{
	const struct err_entry *e;

	if (err == 0)
		return "success";
	e = find_err(err);
	if (e)
		return e->text;
	if (WLIFT_ERR_IS_ERRNO(err))
		return strerror(-err);
	return "unknown error";
}

const char *wlift_errname(int err)
{
	const struct err_entry *e;

	if (err == 0)
		return "OK";
	e = find_err(err);
	if (e)
		return e->name;
	if (WLIFT_ERR_IS_ERRNO(err)) {
		const char *n = strerrorname_np(-err);
		if (n)
			return n;
	}
	return "UNKNOWN";
}

int wlift_errclass(int err)
{
	if (err >= 0)
		return WLIFT_ERRCLASS_NONE;
	if (WLIFT_ERR_IS_ERRNO(err))
		return WLIFT_ERRCLASS_ERRNO;
	if (WLIFT_ERR_IS_FORMAT(err))
		return WLIFT_ERRCLASS_FORMAT;
	if (WLIFT_ERR_IS_REMOTE(err))
		return WLIFT_ERRCLASS_REMOTE;
	if (WLIFT_ERR_IS_GPU(err))
		return WLIFT_ERRCLASS_GPU;
	if (WLIFT_ERR_IS_COMM(err))
		return WLIFT_ERRCLASS_COMM;
	return WLIFT_ERRCLASS_UNKNOWN;
}

void wlift_diag_clear(wlift_diag *d)
{
	if (d)
		memset(d, 0, sizeof(*d));
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n;

	if (!src) {
		dst[0] = '\0';
		return;
	}
	n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int wlift__diag_vset(wlift_diag *d, int code, const char *file, const char *tensor,
		     int64_t offset, const char *rule, const char *fmt, va_list ap)
{
	if (!d || d->code != 0)
		return code;
	d->code = code;
	copy_str(d->file, sizeof(d->file), file);
	copy_str(d->tensor, sizeof(d->tensor), tensor);
	copy_str(d->rule, sizeof(d->rule), rule);
	d->has_offset = offset >= 0;
	d->offset = offset >= 0 ? (uint64_t)offset : 0;
	if (fmt)
		vsnprintf(d->message, sizeof(d->message), fmt, ap);
	else
		copy_str(d->message, sizeof(d->message), wlift_strerror(code));
	return code;
}

int wlift__diag_set(wlift_diag *d, int code, const char *file, const char *tensor,
		    int64_t offset, const char *rule, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = wlift__diag_vset(d, code, file, tensor, offset, rule, fmt, ap);
	va_end(ap);
	return ret;
}
