/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locating a checkpoint's objects. A container (a directory) holding an index loads what the
 * index names; other *.safetensors files there are reported (logged by wlift_open: stale
 * shards or a merged copy are common and easy to mistake for part of the checkpoint). Without
 * an index, every *.safetensors in name order. An index's shards are relative to the index's
 * container.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/locate.h"
#include "source/source.h"

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

void wlift__located_free(struct wlift__located *l)
{
	if (!l)
		return;
	wlift__strv_free(l->uris, l->n);
	wlift__strv_free(l->ignored, l->nignored);
	wlift__index_free(&l->ix);
	free(l->index_uri);
	free(l->dir_uri);
	memset(l, 0, sizeof(*l));
}

static int one(const char *uri, struct wlift__located *l, wlift_diag *d)
{
	l->uris = calloc(1, sizeof(char *));
	if (!l->uris || !(l->uris[0] = strdup(uri)))
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	l->n = 1;
	return 0;
}

static int from_index(wlift_ctx *ctx, const char *uri, struct wlift__located *l, wlift_diag *d)
{
	char *text = NULL, *dir = NULL;
	size_t len = 0;
	int ret;

	ret = wlift__source_read_all(ctx, uri, WLIFT_INDEX_MAX_BYTES, &text, &len, d);
	if (ret == -EFBIG) {
		wlift_diag_clear(d);
		ret = wlift__diag_set(d, WLIFT_EINDEX, uri, NULL, -1, "index.size",
				      "%s: too large for an index file", uri);
	}
	if (ret)
		goto out;
	ret = wlift__index_parse(text, len, uri, &l->ix, d);
	if (ret)
		goto out;
	l->index_uri = strdup(uri);
	dir = wlift__uri_dirname(uri);
	l->uris = calloc(l->ix.nshards ? l->ix.nshards : 1, sizeof(char *));
	if (!l->index_uri || !dir || !l->uris) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < l->ix.nshards; i++) {
		const char *sh = l->ix.shards[i];
		int kind;
		l->uris[i] = wlift__uri_join(dir, sh); /* relative, checked by the index parser */
		if (!l->uris[i]) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		l->n = i + 1;
		ret = wlift__source_stat(ctx, l->uris[i], &kind, NULL);
		if (ret) {
			ret = wlift__diag_set(d, ret, l->uris[i], NULL, -1, "index.shard",
					      "%s: shard %s named by the index: %s", uri,
					      l->uris[i], strerror(-ret));
			goto out;
		}
	}
out:
	free(dir);
	free(text);
	return ret;
}

static int from_container(wlift_ctx *ctx, const char *uri, struct wlift__located *l,
			  wlift_diag *d)
{
	char **names = NULL, **files = NULL;
	size_t n = 0, nf = 0, ni = 0;
	const char *index = NULL;
	char *iuri = NULL;
	int ret;

	ret = wlift__source_list(ctx, uri, &names, &n, d);
	if (ret)
		return ret;
	files = calloc(n ? n : 1, sizeof(char *));
	l->dir_uri = strdup(uri);
	if (!files || !l->dir_uri) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	/* names are sorted, so the files are in name order. */
	for (size_t i = 0; i < n; i++) {
		if (has_suffix(names[i], ".safetensors.index.json")) {
			ni++;
			if (!index || strcmp(names[i], "model.safetensors.index.json") == 0)
				index = names[i];
		} else if (has_suffix(names[i], ".safetensors")) {
			files[nf++] = names[i];
		}
	}
	if (ni > 1 && strcmp(index, "model.safetensors.index.json") != 0) {
		ret = wlift__diag_set(d, WLIFT_EINDEX, uri, NULL, -1, "index.ambiguous",
				      "%s: %zu *.safetensors.index.json files and none is "
				      "model.safetensors.index.json: open one of them explicitly",
				      uri, ni);
		goto out;
	}
	if (index) {
		iuri = wlift__uri_join(uri, index);
		if (!iuri) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		ret = from_index(ctx, iuri, l, d);
		if (ret)
			goto out;
		/* What the container holds that the index does not name. */
		l->ignored = calloc(n, sizeof(char *));
		if (!l->ignored) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			int used = names[i] == index;
			int cand = has_suffix(names[i], ".safetensors") ||
				   has_suffix(names[i], ".safetensors.index.json");
			for (size_t k = 0; k < l->n && !used && cand; k++)
				used = strcmp(wlift__uri_basename(l->uris[k]), names[i]) == 0;
			if (cand && !used) {
				l->ignored[l->nignored++] = names[i];
				names[i] = NULL;
			}
		}
		goto out;
	}
	if (nf == 0) {
		/* Bad input, not an I/O failure: the directory is there but holds no checkpoint. */
		ret = wlift__diag_set(d, WLIFT_EEMPTY, uri, NULL, -1, "ckpt.empty",
				      "%s: no *.safetensors files or index in this directory", uri);
		goto out;
	}
	l->uris = calloc(nf, sizeof(char *));
	if (!l->uris) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < nf; i++) {
		l->uris[i] = wlift__uri_join(uri, files[i]);
		if (!l->uris[i]) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		l->n = i + 1;
	}
out:
	free(iuri);
	free(files);
	wlift__strv_free(names, n);
	return ret;
}

int wlift__locate(wlift_ctx *ctx, const char *uri, struct wlift__located *out, wlift_diag *d)
{
	int kind = 0, ret;

	memset(out, 0, sizeof(*out));
	out->ix.nshards = 0;
	ret = wlift__source_stat(ctx, uri, &kind, d);
	if (ret < 0 && !WLIFT_ERR_IS_ERRNO(ret))
		return ret; /* a scheme this build lacks, or a URI it does not understand */
	if (ret < 0) {
		/* Let the open report it (with the file named as an object). */
		wlift_diag_clear(d);
		kind = WLIFT_STAT_OBJECT;
	}
	if (kind == WLIFT_STAT_CONTAINER)
		ret = from_container(ctx, uri, out, d);
	else if (has_suffix(uri, ".index.json"))
		ret = from_index(ctx, uri, out, d);
	else
		ret = one(uri, out, d);
	if (ret)
		wlift__located_free(out);
	return ret;
}
