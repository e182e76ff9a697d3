/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: any bytes as a `verify --expect` file (cli_expect_parse). An accepted file is a
 * map of names to 64-digit hex digests that survives a round trip: written back as a
 * {name: sha256} object and parsed again, it gives the same map. A rejection is one of the
 * parser's fixed messages (never the file's bytes), ending in its rule. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void check_digest(json_object *v)
{
	const char *s = json_object_get_string(v);

	if (!json_object_is_type(v, json_type_string) || !s || strlen(s) != 64 ||
	    strspn(s, "0123456789abcdefABCDEF") != 64)
		__builtin_trap();
}

/* The messages a rejection may carry: json-c's description of the parse error, or the
 * format rule. */
static int known_message(const char *msg)
{
	char want[256];

	if (strcmp(msg, "expected a 'verify --json' output or a {name: sha256} object "
			"[expect.format]") == 0 ||
	    strcmp(msg, "not a JSON object (wrong type) [expect.json]") == 0)
		return 1;
	for (int i = 0; i < 32; i++) {
		snprintf(want, sizeof(want), "not a JSON object (%s) [expect.json]",
			 json_tokener_error_desc((enum json_tokener_error)i));
		if (strcmp(msg, want) == 0)
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cli_expect e, again;
	char msg[256];
	const char *text;

	memset(msg, 0, sizeof(msg));
	if (cli_expect_parse((const char *)data, size, &e, msg, sizeof(msg)) < 0) {
		if (e.root || e.map || !known_message(msg))
			__builtin_trap();
		return 0;
	}
	if (!e.root || !json_object_is_type(e.map, json_type_object))
		__builtin_trap();
	for (struct lh_entry *en = json_object_get_object(e.map)->head; en; en = en->next)
		check_digest((json_object *)lh_entry_v(en));
	/* Round trip through the {name: sha256} form. */
	text = json_object_to_json_string_ext(e.map, JSON_C_TO_STRING_PLAIN);
	if (!text || cli_expect_parse(text, strlen(text), &again, msg, sizeof(msg)) < 0)
		__builtin_trap();
	if (again.full || json_object_object_length(again.map) != json_object_object_length(e.map))
		__builtin_trap();
	for (struct lh_entry *en = json_object_get_object(e.map)->head; en; en = en->next) {
		json_object *v;
		if (!json_object_object_get_ex(again.map, (const char *)lh_entry_k(en), &v) ||
		    strcmp(json_object_get_string(v),
			   json_object_get_string((json_object *)lh_entry_v(en))) != 0)
			__builtin_trap();
	}
	cli_expect_free(&again);
	cli_expect_free(&e);
	return 0;
}
