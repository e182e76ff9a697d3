/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP(S) source (http.c): objects behind http://, https:// and hf:// URIs, read with ranged
 * GETs through libcurl's multi interface. Builds without libcurl keep the scheme functions,
 * which then report WLIFT_EUNSUPPORTED.
 */
#ifndef WLIFT_SOURCE_HTTP_H
#define WLIFT_SOURCE_HTTP_H

#include "source/source.h"

/* 1 when uri has a scheme this source serves (http://, https://, hf://). */
int wlift__http_scheme(const char *uri);

/* The locator's scheme functions for those URIs. stat asks nothing of the server: a URL
 * ending in '/' is a container (which cannot be listed), anything else an object, so that
 * the open (one ranged GET) is the only request per object. */
int wlift__http_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
int wlift__http_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		     wlift_diag *d);
int wlift__http_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		     wlift_diag *d);

/* hf://[datasets/|spaces/]org/repo[@revision]/path → endpoint/[datasets/|spaces/]org/repo/
 * resolve/<revision>/path (revision "main" when absent; revision and path percent-encoded,
 * the revision's '/' too; "@refs/pr/N/" is the pull request's revision). endpoint NULL: WLIFT_HF_ENDPOINT. 0 and a
 * malloc'd URL in *out, or WLIFT_EURI (d filled) / -ENOMEM. Needs no libcurl. */
int wlift__hf_url(const char *endpoint, const char *uri, char **out, wlift_diag *d);

/* Parse a Content-Range value: "bytes FIRST-LAST/TOTAL" (TOTAL may be '*': UINT64_MAX) → 0;
 * "bytes * /TOTAL" (the form of a 416) → 1 with *first = *last = UINT64_MAX; else -EINVAL. */
int wlift__http_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *total);

#endif
