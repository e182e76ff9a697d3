/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Element text lookup in object stores' XML answers (see xml.h). The bytes copied out are
 * the named element's only, so an error message built from them never quotes other parts of
 * a body.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source/xml.h"

static const char *find(const char *p, const char *end, const char *s, size_t n)
{
	for (; p + n <= end; p++)
		if (*p == *s && memcmp(p, s, n) == 0)
			return p;
	return NULL;
}

/* Put the code point cp as UTF-8; bytes written (0 when it does not fit or is invalid). */
static size_t utf8(unsigned long cp, char *o, size_t room)
{
	if (cp < 0x20 && cp != '\t')
		return 0;
	if (cp < 0x80 && room >= 1) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800 && room >= 2) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000 && room >= 3) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	if (cp < 0x110000 && room >= 4) {
		o[0] = (char)(0xF0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[3] = (char)(0x80 | (cp & 0x3F));
		return 4;
	}
	return 0;
}

long wlift__xml_text(const char *body, size_t len, const char *tag, char *buf, size_t cap)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = { { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' },
		     { "&apos;", '\'' } };
	const char *end = body + len, *p = body, *s, *e;
	size_t tl = strlen(tag), o = 0;
	char open[80], close[82];
	int cut = 0;

	if (cap)
		buf[0] = '\0';
	if (tl == 0 || tl > sizeof(open) - 3 || cap == 0)
		return 0;
	open[0] = '<';
	memcpy(open + 1, tag, tl);
	open[tl + 1] = '>';
	close[0] = '<';
	close[1] = '/';
	memcpy(close + 2, tag, tl);
	close[tl + 2] = '>';
	s = find(p, end, open, tl + 2);
	if (!s)
		return 0;
	s += tl + 2;
	e = find(s, end, close, tl + 3);
	if (!e)
		return 0;
	for (p = s; p < e;) {
		unsigned char c = (unsigned char)*p;
		char tmp[4];
		size_t n = 0;
		if (c == '&') {
			const char *semi = memchr(p, ';', (size_t)(e - p));
			size_t k;
			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++)
				if (semi && (size_t)(semi - p + 1) == strlen(ents[k].ent) &&
				    memcmp(p, ents[k].ent, strlen(ents[k].ent)) == 0)
					break;
			if (k < sizeof(ents) / sizeof(ents[0])) {
				tmp[0] = ents[k].c;
				n = 1;
				p = semi + 1;
			} else if (semi && semi - p > 2 && p[1] == '#') {
				int hex = p[2] == 'x' || p[2] == 'X';
				unsigned long cp = strtoul(p + (hex ? 3 : 2), NULL, hex ? 16 : 10);
				n = utf8(cp, tmp, sizeof(tmp));
				p = semi + 1;
			} else {
				tmp[0] = '&';
				n = 1;
				p++;
			}
		} else {
			p++;
			if (c < 0x20 && c != '\t')
				continue;
			tmp[0] = (char)c;
			n = 1;
		}
		if (o + n >= cap) {
			cut = 1;
			break;
		}
		memcpy(buf + o, tmp, n);
		o += n;
	}
	buf[o] = '\0';
	if (cut)
		return -ENOSPC;
	return (long)(e + tl + 3 - body);
}
