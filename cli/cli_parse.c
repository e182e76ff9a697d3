/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsers of user-given text that the commands share with the fuzz targets (fuzz/fuzz_names.c,
 * fuzz/fuzz_expect.c): the --names list and the --expect file. They print nothing and touch
 * no file: a rejection is a message in the caller's buffer, so that a target can check that
 * every rejection is explained, and the message never quotes the input's bytes.
 */
#include <errno.h>
#include <stdarg.h>
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
	{
		struct json_tokener *tok = json_tokener_new();
		enum json_tokener_error jerr = json_tokener_error_parse_eof;
		if (tok && len <= INT32_MAX) {
			e->root = json_tokener_parse_ex(tok, text, (int)len);
			jerr = json_tokener_get_error(tok);
			if (e->root && tok->char_offset < (int)len) {
				json_object_put(e->root); /* trailing garbage */
				e->root = NULL;
			}
		}
		json_tokener_free(tok);
		if (!e->root && jerr == json_tokener_continue)
			jerr = json_tokener_error_parse_eof;
		errtxt = e->root ? NULL : json_tokener_error_desc(jerr);
	}
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
