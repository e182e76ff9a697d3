/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CPU dtype conversion between BF16, F16 and F32, and from the F8 formats to those three
 * (plain C loops the compiler vectorises; F8 through 256-entry tables): the host sink's
 * convert operation, also used by mapped mode.
 */
#ifndef WLIFT_CONVERT_CPU_H
#define WLIFT_CONVERT_CPU_H

#include <stddef.h>

#include "common/common.h"

/* 1 for the floating dtypes that dtype= conversion applies to. */
int wlift__dtype_is_float(wlift_dtype t);
/* 1 when from -> to is implemented (from == to included). */
int wlift__convert_supported(wlift_dtype from, wlift_dtype to);
/* Convert n elements. dst may equal src when to is not wider than from (processed front to
 * back). Returns 0 or WLIFT_EUNSUPPORTED. */
int wlift__convert_cpu(wlift_dtype from, wlift_dtype to, const void *src, void *dst, size_t n);

#endif
