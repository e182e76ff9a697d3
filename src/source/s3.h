/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3:// sources (s3.c): objects of S3 and S3-compatible stores, read through the HTTP source
 * with its request-auth hook (AWS Signature V4, sigv4.c; credentials from awscreds.c), and
 * prefixes listed with ListObjectsV2 for the locator.
 */
#ifndef WLIFT_SOURCE_S3_H
#define WLIFT_SOURCE_S3_H

#include "source/source.h"

/* Where an s3:// URI's requests go. */
struct wlift__s3_loc {
	char bucket[256];
	char *key;	    /* the key as the URI names it (not encoded); "" for the bucket */
	char region[64];
	const char *region_from; /* "the s3_region option", "AWS_REGION", ... */
	int region_auto;    /* 1: not named by the user (the default, or the bucket's own as
			       S3 answered it): a wrong-region answer may correct it */
	char base[512];	    /* scheme://host[:port] requests go to (the bucket's host when
			       virtual-hosted) */
	int path_style;	    /* 1: "/bucket/key" paths; 0: "/key" on the bucket's host */
	int custom;	    /* 1: AWS_ENDPOINT_URL(_S3) names the store */
};

/* Parse uri and resolve its endpoint, addressing and region (from the context and AWS's
 * variables; else the bucket's region learnt from an earlier wrong-region answer of this
 * process; else discovery asks S3 (an unsigned HEAD of the bucket) when the endpoint is
 * AWS's; else us-east-1). 0, or WLIFT_EURI / -ENOMEM / a network error, d filled. Free with
 * wlift__s3_loc_free. */
int wlift__s3_locate(wlift_ctx *ctx, const char *uri, struct wlift__s3_loc *loc, int discover,
		     wlift_diag *d);
void wlift__s3_loc_free(struct wlift__s3_loc *loc);
/* The object URL of loc's key (percent-encoded as S3 signs it); malloc'd, NULL on ENOMEM. */
char *wlift__s3_object_url(const struct wlift__s3_loc *loc);

/* The locator's scheme functions. stat: a key ending in '/' (or none) is a container, a key
 * ending in .safetensors or .json an object (no request); for other keys one listing of
 * "key/" tells. list: every object directly under the prefix (ListObjectsV2 with the '/'
 * delimiter, all pages). */
int wlift__s3_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
int wlift__s3_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n, wlift_diag *d);
int wlift__s3_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		   wlift_diag *d);

#endif
