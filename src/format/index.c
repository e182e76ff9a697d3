/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing a sharded checkpoint's index.json into the list of shards and the tensor → shard
 * map. Checking the map against the shards' headers is the checkpoint's job (engine/ckpt.c),
 * which has the headers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "format/index.h"

void wlift__index_free(struct wlift__index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->nshards; i++)
		free(ix->shards[i]);
	for (size_t i = 0; i < ix->nentries; i++)
		free(ix->names[i]);
	free(ix->shards);
	free(ix->names);
	free(ix->shard);
	memset(ix, 0, sizeof(*ix));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A relative path without ".." components or NUL bytes. */
static int shard_name_ok(const char *s, size_t len)
{
	if (strlen(s) != len || s[0] == '/')
		return 0;
	for (const char *c = s; *c;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return 0;
		c += n;
		while (*c == '/')
			c++;
	}
	return 1;
}

int wlift__index_parse(const char *text, size_t len, const char *file, struct wlift__index *ix,
		       wlift_diag *d)
{
	struct json_tokener *tok = NULL;
	struct json_object *root = NULL, *wm = NULL;
	size_t n, k = 0;
	int ret = 0;

	memset(ix, 0, sizeof(*ix));
	if (len > INT32_MAX)
		return wlift__diag_set(d, WLIFT_EINDEX, file, NULL, -1, "index.size",
				       "%s: too large for an index file", file);
	{
		size_t i = 0;
		while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' ||
				   text[i] == '\t'))
			i++;
		if (i == len)
			return wlift__diag_set(d, WLIFT_EINDEX, file, NULL, 0, "index.empty",
					       "%s: the index file is empty", file);
	}
	tok = json_tokener_new();
	if (!tok)
		return wlift__diag_set(d, -ENOMEM, file, NULL, -1, NULL, NULL);
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (!root && json_tokener_get_error(tok) == json_tokener_continue) {
		/* json-c's own word for this is "continue". */
		ret = wlift__diag_set(d, WLIFT_EINDEX, file, NULL, (int64_t)len, "index.truncated",
				      "%s: the index is truncated (its JSON ends at byte %zu, "
				      "before its last value is complete)",
				      file, len);
		goto out;
	}
	if (!root || !json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "weight_map", &wm) ||
	    !json_object_is_type(wm, json_type_object)) {
		ret = wlift__diag_set(d, WLIFT_EINDEX, file, NULL, -1, "index.json",
				      "%s: not a safetensors index (a JSON object with a "
				      "\"weight_map\" object is expected)%s%s", file,
				      root ? "" : ": ",
				      root ? "" : json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	n = (size_t)json_object_object_length(wm);
	if (n == 0) {
		ret = wlift__diag_set(d, WLIFT_EINDEX, file, NULL, -1, "index.empty",
				      "%s: the index's weight_map names no tensors", file);
		goto out;
	}
	ix->names = calloc(n, sizeof(char *));
	ix->shard = calloc(n, sizeof(uint32_t));
	ix->shards = calloc(n, sizeof(char *));
	if (!ix->names || !ix->shard || !ix->shards) {
		ret = wlift__diag_set(d, -ENOMEM, file, NULL, -1, NULL, NULL);
		goto out;
	}
	/* Distinct shard names first (sorted, so the checkpoint's file order is by name). */
	for (struct json_object_iterator it = json_object_iter_begin(wm),
	     end = json_object_iter_end(wm);
	     !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *name = json_object_iter_peek_name(&it);
		struct json_object *v = json_object_iter_peek_value(&it);
		const char *sn;

		if (!json_object_is_type(v, json_type_string) || !*(sn = json_object_get_string(v))) {
			ret = wlift__diag_set(d, WLIFT_EINDEX, file, name, -1, "index.json",
					      "%s: weight_map entry for \"%s\" must be a file name",
					      file, name);
			goto out;
		}
		/* The shard must lie inside the checkpoint's directory: a relative path with
		 * no ".." component and no NUL (which would cut the name short). Symlinks
		 * inside it are followed (the Hugging Face hub cache links every shard into
		 * ../../blobs/), so this checks the name, not where it resolves. */
		if (!shard_name_ok(sn, (size_t)json_object_get_string_len(v))) {
			ret = wlift__diag_set(d, WLIFT_EINDEX, file, name, -1, "index.path",
					      "%s: weight_map entry for \"%s\" must name a file "
					      "inside the checkpoint's directory (a relative path "
					      "without \"..\" or NUL)",
					      file, name);
			goto out;
		}
		ix->names[k] = strdup(name);
		if (!ix->names[k]) {
			ret = wlift__diag_set(d, -ENOMEM, file, NULL, -1, NULL, NULL);
			goto out;
		}
		ix->nentries = ++k;
		if (!bsearch(&sn, ix->shards, ix->nshards, sizeof(char *), cmp_str)) {
			char *copy = strdup(sn);
			size_t at = ix->nshards;
			if (!copy) {
				ret = wlift__diag_set(d, -ENOMEM, file, NULL, -1, NULL, NULL);
				goto out;
			}
			/* insertion keeps the array sorted; shard counts are small */
			while (at > 0 && strcmp(ix->shards[at - 1], copy) > 0) {
				ix->shards[at] = ix->shards[at - 1];
				at--;
			}
			ix->shards[at] = copy;
			ix->nshards++;
		}
	}
	for (size_t i = 0; i < ix->nentries; i++) {
		struct json_object *v = NULL;
		const char *sn;
		char **hit;

		json_object_object_get_ex(wm, ix->names[i], &v);
		sn = json_object_get_string(v);
		hit = bsearch(&sn, ix->shards, ix->nshards, sizeof(char *), cmp_str);
		ix->shard[i] = (uint32_t)(hit - ix->shards);
	}
out:
	json_object_put(root);
	json_tokener_free(tok);
	if (ret)
		wlift__index_free(ix);
	return ret;
}
