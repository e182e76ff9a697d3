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

/* json-c keeps the last of duplicate keys silently; a weight_map naming a tensor twice (two
 * shards for one name) must be an error. Scan the text once for the keys of the top-level
 * "weight_map" object (raw, escapes not decoded: a duplicate spelled differently is not
 * caught) and return the first key given twice, or NULL. The text has been parsed by json-c
 * already, so it is well-formed JSON. */
struct rawkey {
	const char *p;
	size_t n;
};

static int cmp_rawkey(const void *a, const void *b)
{
	const struct rawkey *x = a, *y = b;
	size_t n = x->n < y->n ? x->n : y->n;
	int c = memcmp(x->p, y->p, n);

	return c ? c : x->n < y->n ? -1 : x->n > y->n;
}

static char *duplicate_key(const char *t, size_t len, size_t nkeys)
{
	enum { MAXD = 64 };
	unsigned char isobj[MAXD] = { 0 }, keypos[MAXD] = { 0 };
	struct rawkey *keys = calloc(nkeys + 1, sizeof(*keys));
	size_t k = 0, depth = 0, wm_depth = 0;
	int pending_wm = 0;
	char *dup = NULL;

	if (!keys)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		if (c == '"') {
			size_t j = i + 1;
			while (j < len && t[j] != '"')
				j += t[j] == '\\' ? 2 : 1;
			if (depth && depth < MAXD && isobj[depth] && keypos[depth]) {
				if (depth == 1)
					pending_wm = j - i - 1 == 10 && memcmp(t + i + 1, "weight_map", 10) == 0;
				else if (wm_depth && depth == wm_depth && k <= nkeys)
					keys[k++] = (struct rawkey){ t + i + 1, j - i - 1 };
				keypos[depth] = 0;
			} else {
				pending_wm = 0;
			}
			i = j;
		} else if (c == '{' || c == '[') {
			depth++;
			if (depth < MAXD) {
				isobj[depth] = c == '{';
				keypos[depth] = c == '{';
			}
			if (c == '{' && pending_wm && depth == 2 && !wm_depth)
				wm_depth = 2;
			pending_wm = 0;
		} else if (c == '}' || c == ']') {
			if (wm_depth && depth == wm_depth)
				break; /* json-c uses the first weight_map's keys only if it is unique */
			if (depth)
				depth--;
		} else if (c == ',') {
			if (depth && depth < MAXD && isobj[depth])
				keypos[depth] = 1;
		} else if (c != ':' && c != ' ' && c != '\n' && c != '\r' && c != '\t') {
			pending_wm = 0; /* a number or literal value */
		}
	}
	if (k > 1) {
		qsort(keys, k, sizeof(*keys), cmp_rawkey);
		for (size_t i = 1; i < k; i++)
			if (cmp_rawkey(&keys[i - 1], &keys[i]) == 0) {
				dup = strndup(keys[i].p, keys[i].n);
				break;
			}
	}
	free(keys);
	return dup;
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
	{
		/* More keys in the text than in the object: some key came twice. */
		char *dup = duplicate_key(text, len, n);
		if (dup) {
			ret = wlift__diag_set(d, WLIFT_EINDEX, file, dup, -1, "index.duplicate",
					      "%s: weight_map names tensor \"%s\" more than once",
					      file, dup);
			free(dup);
			goto out;
		}
	}
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
