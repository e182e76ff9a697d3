/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsers of user-given text that the commands share with the fuzz targets (fuzz/fuzz_names.c,
 * fuzz/fuzz_expect.c): the --names list, the --expect file and the --shard-spec file. They print nothing and touch
 * no file: a rejection is a message in the caller's buffer, so that a target can check that
 * every rejection is explained, and the message never quotes the input's bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_names_split(char *s, const char ***names, size_t *n)
{
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		const char **nv = realloc(*names, (*n + 1) * sizeof(**names));

		if (!nv)
			return -ENOMEM;
		*names = nv;
		nv[(*n)++] = tok;
	}
	return 0;
}

static bool is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	return true;
}

static int fail(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, cap, fmt, ap);
	va_end(ap);
	return -1;
}

/* The JSON document text[0..len), nothing after it; NULL with *errtxt (json-c's word for the
 * problem) when it is not one. */
static json_object *parse_json(const char *text, size_t len, const char **errtxt)
{
	struct json_tokener *tok = json_tokener_new();
	enum json_tokener_error jerr = json_tokener_error_parse_eof;
	json_object *root = NULL;

	if (tok && len <= INT32_MAX) {
		root = json_tokener_parse_ex(tok, text, (int)len);
		jerr = json_tokener_get_error(tok);
		if (root && tok->char_offset < (int)len) {
			json_object_put(root); /* trailing garbage */
			root = NULL;
		}
	}
	json_tokener_free(tok);
	if (!root && jerr == json_tokener_continue)
		jerr = json_tokener_error_parse_eof;
	*errtxt = root ? NULL : json_tokener_error_desc(jerr);
	return root;
}

void cli_expect_free(struct cli_expect *e)
{
	json_object_put(e->map);
	json_object_put(e->root);
	memset(e, 0, sizeof(*e));
}

int cli_expect_parse(const char *text, size_t len, struct cli_expect *e, char *msg, size_t cap)
{
	json_object *tensors;
	const char *errtxt;

	memset(e, 0, sizeof(*e));
	e->root = parse_json(text, len, &errtxt);
	if (!e->root || !json_object_is_type(e->root, json_type_object)) {
		cli_expect_free(e);
		return fail(msg, cap, "not a JSON object (%s) [expect.json]",
			    errtxt ? errtxt : "wrong type");
	}
	e->map = json_object_new_object();
	/* A "tensors" array makes a verify --json output; a "tensors" string is a tensor of
	 * that name in a map (and so is a "schema" string: only a number is the schema). */
	if (json_object_object_get_ex(e->root, "tensors", &tensors) &&
	    !json_object_is_type(tensors, json_type_string)) {
		size_t n;

		if (!json_object_is_type(tensors, json_type_array))
			goto bad;
		e->full = true;
		n = json_object_array_length(tensors);
		for (size_t i = 0; i < n; i++) {
			json_object *t = json_object_array_get_idx(tensors, i), *name, *sha;

			if (!json_object_object_get_ex(t, "name", &name) ||
			    !json_object_is_type(name, json_type_string) ||
			    !json_object_object_get_ex(t, "sha256", &sha) ||
			    !is_hex64(json_object_get_string(sha)))
				goto bad;
			json_object_object_add(e->map, json_object_get_string(name),
					       json_object_get(sha));
		}
		return 0;
	}
	json_object_object_foreach(e->root, key, val)
	{
		if (strcmp(key, "schema") == 0 && !json_object_is_type(val, json_type_string))
			continue;
		if (!json_object_is_type(val, json_type_string) ||
		    !is_hex64(json_object_get_string(val)))
			goto bad;
		json_object_object_add(e->map, key, json_object_get(val));
	}
	return 0;
bad:
	cli_expect_free(e);
	return fail(msg, cap,
		    "expected a 'verify --json' output or a {name: sha256} object [expect.format]");
}

void cli_shard_free(struct cli_shard *sh)
{
	free(sh->rules);
	json_object_put(sh->root);
	memset(sh, 0, sizeof(*sh));
}

int cli_shard_parse(const char *text, size_t len, struct cli_shard *sh, char *msg, size_t cap)
{
	const char *errtxt;
	size_t n = 0;

	memset(sh, 0, sizeof(*sh));
	sh->root = parse_json(text, len, &errtxt);
	if (!sh->root || !json_object_is_type(sh->root, json_type_object)) {
		cli_shard_free(sh);
		return fail(msg, cap, "not a JSON object (%s) [shard.json]",
			    errtxt ? errtxt : "wrong type");
	}
	sh->rules = calloc((size_t)json_object_object_length(sh->root) + 1, sizeof(*sh->rules));
	if (!sh->rules) {
		cli_shard_free(sh);
		return fail(msg, cap, "%s [shard.memory]", strerror(ENOMEM));
	}
	json_object_object_foreach(sh->root, key, val)
	{
		int64_t dim = -1;

		if (val && !json_object_is_type(val, json_type_null)) {
			if (!json_object_is_type(val, json_type_int) ||
			    (dim = json_object_get_int64(val)) < 0 || dim > INT32_MAX) {
				cli_shard_free(sh);
				return fail(msg, cap, "entry %zu: the value must be a dimension "
					    "(an integer >= 0) or null to replicate [shard.format]",
					    n + 1);
			}
		}
		if (!key[0]) {
			cli_shard_free(sh);
			return fail(msg, cap, "entry %zu: an empty tensor name or pattern "
				    "[shard.format]", n + 1);
		}
		sh->rules[n].pattern = key;
		sh->rules[n].dim = (int)dim;
		n++;
	}
	sh->n = n;
	return 0;
}

int cli_experts_parse(const char *s, wlift_expert_filter *f, char *msg, size_t cap)
{
	static const struct {
		const char *name;
		int placement;
	} kinds[] = {{"block", WLIFT_EXPERTS_BLOCK}, {"round-robin", WLIFT_EXPERTS_ROUND_ROBIN}};
	const char *colon = strchr(s, ':');
	size_t len = colon ? (size_t)(colon - s) : strlen(s);

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		unsigned long long n = 0;
		char *end = NULL;

		if (strlen(kinds[i].name) != len || strncmp(s, kinds[i].name, len) != 0)
			continue;
		if (colon) {
			if (colon[1] < '0' || colon[1] > '9')
				return fail(msg, cap, "the expert count after ':' must be a number "
						      "[experts.count]");
			errno = 0;
			n = strtoull(colon + 1, &end, 10);
			if (errno || *end || n == 0 || n > UINT32_MAX)
				return fail(msg, cap, "the expert count must be 1 .. 4294967295 "
						      "[experts.count]");
		}
		f->placement = kinds[i].placement;
		f->nexperts = (unsigned)n;
		return 0;
	}
	return fail(msg, cap, "placement must be block or round-robin, optionally :N "
			      "[experts.placement]");
}
