/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The locator: turns a URI into the list of objects that make up the checkpoint (a single
 * file, the shards an index.json names, or a directory's index or *.safetensors files; later
 * a bucket prefix), through the source layer's scheme functions only (stat, list, read a small
 * object): it never touches the file system itself.
 */
#ifndef WLIFT_ENGINE_LOCATE_H
#define WLIFT_ENGINE_LOCATE_H

#include "common/common.h"
#include "format/index.h"

struct wlift__located {
	char **uris;	  /* the objects, in checkpoint file order */
	size_t n;
	char *index_uri;  /* the index the list came from, or NULL */
	struct wlift__index ix; /* its parsed contents (ix.shards[i] is uris[i]) when index_uri */
	char *dir_uri;	  /* the container that was listed, or NULL */
	char **ignored;	  /* *.safetensors files of the container that the index leaves out */
	size_t nignored;
};

int wlift__locate(wlift_ctx *ctx, const char *uri, struct wlift__located *out, wlift_diag *d);
void wlift__located_free(struct wlift__located *l);

#endif
