/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A streaming JSON writer for the --json reports: values are written as they are produced,
 * so the report of a checkpoint with millions of tensors costs no memory beyond the
 * checkpoint's own table. (A json-c tree of the report of a 4.1M-tensor header took 4 GB
 * above the open checkpoint.) Output as json-c's: one line for pipes and files, indented
 * for a terminal; '/' is not escaped; UTF-8 passes through (names were checked at open).
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_jw_init(struct cli_jw *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->pretty = isatty(fileno(f));
	w->first = true;
}

static void indent(struct cli_jw *w)
{
	fputc('\n', w->f);
	for (int i = 0; i < w->depth; i++)
		fputs("  ", w->f);
}

/* Before a value or a key: the separator from the previous element. */
static void prefix(struct cli_jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (!w->first)
		fputc(',', w->f);
	if (w->pretty && w->depth > 0)
		indent(w);
	w->first = false;
}

void cli_jw_open(struct cli_jw *w, char c)
{
	prefix(w);
	fputc(c, w->f);
	w->depth++;
	w->first = true;
}

void cli_jw_close(struct cli_jw *w, char c)
{
	w->depth--;
	if (w->pretty && !w->first)
		indent(w);
	fputc(c, w->f);
	w->first = false;
}

static void put_string(struct cli_jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	FILE *f = w->f;

	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				fputs("\\u00", f);
				fputc(hex[*p >> 4], f);
				fputc(hex[*p & 15], f);
			} else {
				fputc(*p, f);
			}
		}
	}
	fputc('"', f);
}

void cli_jw_key(struct cli_jw *w, const char *k)
{
	prefix(w);
	put_string(w, k);
	fputs(w->pretty ? ": " : ":", w->f);
	w->after_key = true;
}

void cli_jw_str(struct cli_jw *w, const char *s)
{
	if (!s) {
		cli_jw_null(w);
		return;
	}
	prefix(w);
	put_string(w, s);
}

void cli_jw_str_or_null(struct cli_jw *w, const char *s)
{
	cli_jw_str(w, s && s[0] ? s : NULL);
}

void cli_jw_u64(struct cli_jw *w, uint64_t v)
{
	char buf[24], *p = buf + sizeof(buf);

	prefix(w);
	*--p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	fputs(p, w->f);
}

void cli_jw_i64(struct cli_jw *w, int64_t v)
{
	prefix(w);
	fprintf(w->f, "%" PRId64, v);
}

void cli_jw_bool(struct cli_jw *w, bool v)
{
	prefix(w);
	fputs(v ? "true" : "false", w->f);
}

void cli_jw_null(struct cli_jw *w)
{
	prefix(w);
	fputs("null", w->f);
}

void cli_jw_error(struct cli_jw *w, const char *uri, int err, const wlift_diag *d)
{
	bool have = d && d->code;

	cli_jw_open(w, '{');
	cli_jw_key(w, "code");
	cli_jw_str(w, wlift_errname(err));
	cli_jw_key(w, "value");
	cli_jw_i64(w, err);
	cli_jw_key(w, "message");
	cli_jw_str(w, have && d->message[0] ? d->message : wlift_strerror(err));
	cli_jw_key(w, "file");
	cli_jw_str_or_null(w, have && d->file[0] ? d->file : uri);
	cli_jw_key(w, "tensor");
	cli_jw_str_or_null(w, have ? d->tensor : NULL);
	cli_jw_key(w, "offset");
	if (have && d->has_offset)
		cli_jw_u64(w, d->offset);
	else
		cli_jw_null(w);
	cli_jw_key(w, "rule");
	cli_jw_str_or_null(w, have ? d->rule : NULL);
	cli_jw_close(w, '}');
}

int cli_jw_end(struct cli_jw *w)
{
	fputc('\n', w->f);
	return fflush(w->f) || ferror(w->f) ? -1 : 0;
}
