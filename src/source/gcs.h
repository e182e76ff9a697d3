/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Google Cloud Storage source (gcs.c): objects behind gs://bucket/key URIs, read through the
 * JSON API (media downloads with ranged GETs by the HTTP source, each request carrying the
 * credential's bearer token through the request-auth hook of http.h); listing a prefix
 * (objects.list, paginated) for the locator. The parts that need no server are separate
 * functions, for the unit tests.
 */
#ifndef WLIFT_SOURCE_GCS_H
#define WLIFT_SOURCE_GCS_H

#include "source/source.h"

/* 1 when uri is a gs:// URI. */
int wlift__gcs_scheme(const char *uri);

/* The locator's scheme functions. stat asks nothing of the server: gs://bucket, a URI
 * ending in '/' and one whose last segment is neither *.safetensors nor *.json name a prefix
 * (a container: gs://b/llama is the prefix llama/), anything else an object. */
int wlift__gcs_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
int wlift__gcs_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		    wlift_diag *d);
int wlift__gcs_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		    wlift_diag *d);

/* Split gs://bucket[/key] into a malloc'd bucket and key ("" when absent). Bucket names are
 * 3–222 characters of [a-z0-9._-] starting and ending with a letter or digit; keys at most
 * 1024 bytes without CR or LF. 0, or WLIFT_EURI (d filled) / -ENOMEM. */
int wlift__gcs_split(const char *uri, char **bucket, char **key, wlift_diag *d);

/* The JSON API's address: STORAGE_EMULATOR_HOST ("host:port" gets "http://") or
 * WLIFT_GCS_ENDPOINT, without a trailing '/'. malloc'd, NULL on ENOMEM. */
char *wlift__gcs_endpoint(const char *emulator);

/* s percent-encoded as one URL path segment or query value: everything but RFC 3986's
 * unreserved characters is encoded ('/' too). malloc'd, NULL on ENOMEM. */
char *wlift__gcs_escape(const char *s);

/* The URL of object key's metadata (media: its bytes, alt=media; generation non-NULL and
 * non-empty: ifGenerationMatch pins that generation). malloc'd, NULL on ENOMEM. */
char *wlift__gcs_object_url(const char *endpoint, const char *bucket, const char *key,
			    int media, const char *generation);
/* The URL of one objects.list page: the names directly under prefix (delimiter '/'), after
 * page_token (NULL: the first page). malloc'd, NULL on ENOMEM. */
char *wlift__gcs_list_url(const char *endpoint, const char *bucket, const char *prefix,
			  const char *page_token);

/* Parse one objects.list page: append the names of items directly under prefix (prefix
 * removed; the prefix's own placeholder object and deeper names skipped) to *names (*n of
 * them, *cap allocated) and set *next to the nextPageToken (malloc'd) or NULL. 0, -ENOMEM,
 * or WLIFT_EJSON when the page is not an objects.list answer. */
int wlift__gcs_list_parse(const char *body, size_t len, const char *prefix, char ***names,
			  size_t *n, size_t *cap, char **next);

/* The "message" of a JSON API error answer ({"error": {"message": ...}}) into buf, cut to
 * cap - 1 bytes; "" when the body is not one. Nothing else of the body is ever copied. */
void wlift__gcs_error_message(const char *body, size_t len, char *buf, size_t cap);

#endif
