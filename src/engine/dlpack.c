/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DLPack export: zero-copy views of loaded tensors. Each export holds a reference on the
 * result, released by its deleter, so tensors outlive wlift_result_free while exported.
 * Strides are NULL (compact row-major); shapes are the int64 copies kept by each tensor.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine/result.h"

/* DLPack type code and bits for our dtype; 0 when it has none. */
static int dl_type(wlift_dtype t, wlift_dl_dtype *out)
{
	uint8_t code;

	switch (t) {
	case WLIFT_BOOL:
		code = WLIFT_DL_BOOL;
		break;
	case WLIFT_U8:
	case WLIFT_U16:
	case WLIFT_U32:
	case WLIFT_U64:
		code = WLIFT_DL_UINT;
		break;
	case WLIFT_I8:
	case WLIFT_I16:
	case WLIFT_I32:
	case WLIFT_I64:
		code = WLIFT_DL_INT;
		break;
	case WLIFT_F16:
	case WLIFT_F32:
	case WLIFT_F64:
		code = WLIFT_DL_FLOAT;
		break;
	case WLIFT_BF16:
		code = WLIFT_DL_BFLOAT;
		break;
	case WLIFT_C64:
		code = WLIFT_DL_COMPLEX;
		break;
	case WLIFT_F8_E4M3:
		code = WLIFT_DL_FLOAT8_E4M3FN;
		break;
	case WLIFT_F8_E5M2:
		code = WLIFT_DL_FLOAT8_E5M2;
		break;
	case WLIFT_F8_E4M3FNUZ:
		code = WLIFT_DL_FLOAT8_E4M3FNUZ;
		break;
	case WLIFT_F8_E5M2FNUZ:
		code = WLIFT_DL_FLOAT8_E5M2FNUZ;
		break;
	case WLIFT_F8_E8M0:
		code = WLIFT_DL_FLOAT8_E8M0FNU;
		break;
	case WLIFT_F4:
		code = WLIFT_DL_FLOAT4_E2M1FN;
		break;
	case WLIFT_F6_E2M3:
		code = WLIFT_DL_FLOAT6_E2M3FN;
		break;
	case WLIFT_F6_E3M2:
		code = WLIFT_DL_FLOAT6_E3M2FN;
		break;
	default:
		return 0;
	}
	out->code = code;
	out->bits = (uint8_t)wlift_dtype_bits(t);
	out->lanes = 1;
	return 1;
}

struct dl_ctx {
	struct wlift_tensor *t; /* its reference keeps the tensor\'s memory */
	struct wlift_result *res;
	int64_t bytes_shape; /* shape of a WLIFT_DLPACK_BYTES export */
};

static int fill(const wlift_tensor *t, unsigned flags, wlift_dl_tensor *dl, struct dl_ctx *c,
		wlift_diag *d)
{
	const wlift_tensor_view *v = &t->v;

	dl->data = v->data;
	dl->device.device_type = v->device < 0 ? WLIFT_DL_CPU : WLIFT_DL_CUDA;
	dl->device.device_id = v->device < 0 ? 0 : v->device;
	dl->strides = NULL;
	dl->byte_offset = 0;
	if (flags & WLIFT_DLPACK_BYTES) {
		c->bytes_shape = (int64_t)v->nbytes;
		dl->ndim = 1;
		dl->shape = &c->bytes_shape;
		dl->dtype.code = WLIFT_DL_UINT;
		dl->dtype.bits = 8;
		dl->dtype.lanes = 1;
		return 0;
	}
	if (!dl_type(v->dtype, &dl->dtype))
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, v->info.name, -1,
				       "dlpack.dtype", "%s: dtype %s has no DLPack code",
				       v->info.name, wlift_dtype_name(v->dtype));
	dl->ndim = (int32_t)v->info.ndim;
	dl->shape = t->shape64;
	return 0;
}

static void del_legacy(wlift_dl_managed *m)
{
	struct dl_ctx *c;

	if (!m)
		return;
	c = m->manager_ctx;
	wlift__tensor_unref(c->t);
	wlift__result_unref(c->res);
	free(c);
	free(m);
}

static void del_versioned(wlift_dl_managed_versioned *m)
{
	struct dl_ctx *c;

	if (!m)
		return;
	c = m->manager_ctx;
	wlift__tensor_unref(c->t);
	wlift__result_unref(c->res);
	free(c);
	free(m);
}

/* What both export flavours share: argument checks, the manager context (which holds a
 * reference on the result and, for byte views, the shape) and the DLTensor itself. */
static int export_ctx(const wlift_tensor *t, unsigned flags, wlift_dl_tensor *dl,
		      struct dl_ctx **out, wlift_diag *d)
{
	struct dl_ctx *c = calloc(1, sizeof(*c));
	int ret;

	*out = NULL;
	if (!c)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = fill(t, flags, dl, c, d);
	if (ret) {
		free(c);
		return ret;
	}
	c->res = wlift__result_ref(t->res);
	c->t = wlift__tensor_ref((struct wlift_tensor *)t);
	*out = c;
	return 0;
}

int wlift_tensor_dlpack(const wlift_tensor *t, unsigned flags, wlift_dl_managed **out,
			wlift_diag *d)
{
	wlift_dl_managed *m;
	struct dl_ctx *c;
	int ret;

	if (!t || !out)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args", "NULL argument");
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = export_ctx(t, flags, &m->dl_tensor, &c, d);
	if (ret) {
		free(m);
		return ret;
	}
	m->manager_ctx = c;
	m->deleter = del_legacy;
	*out = m;
	return 0;
}

int wlift_tensor_dlpack_versioned(const wlift_tensor *t, unsigned flags,
				  wlift_dl_managed_versioned **out, wlift_diag *d)
{
	wlift_dl_managed_versioned *m;
	struct dl_ctx *c;
	int ret;

	if (!t || !out)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args", "NULL argument");
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = export_ctx(t, flags, &m->dl_tensor, &c, d);
	if (ret) {
		free(m);
		return ret;
	}
	m->version.major = 1;
	m->version.minor = 1;
	/* Host arenas and copy-on-write mappings are both writable and never shared with the
	 * file, so neither READ_ONLY nor IS_COPIED applies. */
	m->flags = t->v.readonly ? WLIFT_DL_FLAG_READ_ONLY : 0;
	m->manager_ctx = c;
	m->deleter = del_versioned;
	*out = m;
	return 0;
}
