/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the URI and size parsers. Any string: wlift__uri_local_path, dirname, basename
 * and join stay inside the string and agree with each other; wlift__parse_size accepts only
 * what it can represent; the locator rejects non-local schemes other than http(s):// and hf://
 * cleanly without touching the file system for them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/locate.h"
#include "source/http.h"
#include "source/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	const char *p, *b;
	uint64_t v;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	p = wlift__uri_local_path(s);
	if (p && (p < s || p > s + strlen(s)))
		__builtin_trap();
	b = wlift__uri_basename(s);
	if (b < s || b > s + strlen(s) || strchr(b, '/'))
		__builtin_trap();
	{
		char *dir = wlift__uri_dirname(s), *j;
		if (!dir)
			goto out;
		j = wlift__uri_join(dir, b);
		/* (A name joined to an http(s) URL is percent-encoded.) */
		if (j && !strstr(j, b) && !wlift__http_scheme(dir))
			__builtin_trap();
		free(j);
		free(dir);
	}
	if (wlift__parse_size(s, &v) == 0 && (!*s || *s == '-'))
		__builtin_trap();
	if (!p && *s && !wlift__http_scheme(s)) {
		/* Not a local path nor an HTTP URL (which would make requests): the dispatcher
		 * says why, never opens anything. */
		struct wlift__located l;
		wlift_diag d;
		wlift_diag_clear(&d);
		if (wlift__locate(NULL, s, &l, &d) == 0 || d.message[0] == '\0')
			__builtin_trap();
	}
out:
	free(s);
	return 0;
}
