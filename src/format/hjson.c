/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The header JSON, parsed in one streaming pass straight into the tensor table: no tree.
 * A json-c tree of a 100 MB header with 4.1M tensors took 3.8 GB and 45 s (malloc churn and
 * hash-table cache misses); the reference's own peak on that file is 3.2 GB. This pass
 * allocates only the table (one string arena for every name and metadata string, one array
 * of dims, one array of entries), about 2.4x the header for that file.
 *
 * The grammar is RFC 8259 exactly as serde_json reads it into the reference's types:
 * NaN/Infinity are not literals; numbers such as "1." are syntax errors and 1e400 is
 * "number out of range" even where the value is ignored; raw control characters and unpaired
 * UTF-16 surrogate escapes in strings are errors; nesting is limited to serde_json's 127
 * containers; duplicate "__metadata__" keys and duplicate dtype/shape/data_offsets fields are
 * errors ("duplicate field"); "-0", fractions and integers above 2^64-1 are not usize. Keys
 * holding U+0000 are refused where they name something (names are C strings).
 *
 * Errors come in two tiers, as in the reference, which first reads the whole document
 * (serde's flatten buffers it) and only then gives it types: syntax errors stop the pass at
 * once; type errors (a missing field, a shape that is not an array, an unknown dtype) are
 * kept, the first in document order, and reported once the document is known to be
 * well-formed. Duplicate tensor names are allowed (the reference's HashMap keeps the last)
 * and every duplicate is type-checked, as serde does.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "format/header.h"

/* serde_json's recursion limit: 128 levels, of which a document can use 127 containers. */
#define MAX_DEPTH 127

struct hp {
	const uint8_t *s;
	size_t n, i;
	uint64_t base; /* absolute offset of s[0] in the file */
	const char *file;
	wlift_diag *d;
	struct wlift__header *h;
	size_t arena_len;         /* bytes used in h->names */
	size_t tcap, ndims, dcap; /* capacities of h->tensors, h->dims; dims used */
	size_t mcap;              /* capacity of h->meta in pairs */
	int soft;                 /* code of the first type error, 0 if none */
	wlift_diag softd;         /* its diagnostic */
};

static int fail(struct hp *p, const char *rule, const char *what)
{
	return wlift__diag_set(p->d, WLIFT_EJSON, p->file, NULL, (int64_t)(p->base + p->i), rule,
			       "%s: header JSON is invalid at byte %llu: %s", p->file,
			       (unsigned long long)(p->base + p->i), what);
}

static int nomem(struct hp *p)
{
	return wlift__diag_set(p->d, -ENOMEM, p->file, NULL, -1, NULL, NULL);
}

/* Record a type error (the first one wins); the pass goes on to check the syntax. */
static void __attribute__((format(printf, 6, 7)))
soft(struct hp *p, int code, const char *tensor, size_t at, const char *rule, const char *fmt,
     ...)
{
	va_list ap;

	if (p->soft)
		return;
	va_start(ap, fmt);
	p->soft = wlift__diag_vset(&p->softd, code, p->file, tensor, (int64_t)(p->base + at),
				   rule, fmt, ap);
	va_end(ap);
}

static void skip_ws(struct hp *p)
{
	/* JSON whitespace only: serde_json does not skip \v, \f or Unicode spaces. */
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
			       p->s[p->i] == '\r'))
		p->i++;
}

static int at_end(struct hp *p)
{
	return p->i >= p->n;
}

static int eof_value(struct hp *p)
{
	return fail(p, "json.syntax", "unexpected end of the header (EOF while parsing a value)");
}

/* Skip to the value that must come next; *at: where it starts. */
static int value_at(struct hp *p, size_t *at)
{
	skip_ws(p);
	*at = p->i;
	return at_end(p) ? eof_value(p) : 0;
}

static int is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int hex4(struct hp *p, unsigned *out)
{
	unsigned v = 0;

	if (p->n - p->i < 4)
		return fail(p, "json.syntax", "truncated \\u escape");
	for (int k = 0; k < 4; k++) {
		uint8_t c = p->s[p->i + (size_t)k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(p, "json.syntax", "invalid \\u escape");
	}
	p->i += 4;
	*out = v;
	return 0;
}

struct str {
	char *out;     /* where to decode, or NULL */
	size_t cap;    /* bytes of out usable (the decoded text is cut there, len still counts) */
	size_t len;    /* decoded length */
	int has_nul;   /* decoded text holds U+0000 */
};

static void put(struct str *o, const uint8_t *b, size_t k)
{
	for (size_t j = 0; j < k; j++, o->len++)
		if (o->out && o->len < o->cap)
			o->out[o->len] = (char)b[j];
}

/* A string starting at '"', decoded into o (UTF-8; the header passed the UTF-8 check, so raw
 * bytes are copied as they are). A decoded string is never longer than its JSON form minus
 * one byte, which is what sizes the arena. */
static int string(struct hp *p, struct str *o)
{
	p->i++; /* opening quote */
	o->len = 0;
	o->has_nul = 0;
	for (;;) {
		size_t run = p->i;
		uint8_t c, b[4];
		unsigned cp;
		int ret;

		while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' && p->s[p->i] >= 0x20)
			p->i++;
		if (p->i > run) {
			size_t k = p->i - run;
			if (o->out && o->len < o->cap)
				memcpy(o->out + o->len, p->s + run,
				       k < o->cap - o->len ? k : o->cap - o->len);
			o->len += k;
		}
		if (at_end(p))
			return fail(p, "json.syntax", "unterminated string");
		c = p->s[p->i];
		if (c == '"') {
			p->i++;
			return 0;
		}
		if (c < 0x20)
			return fail(p, "json.control", "raw control character in a string (serde_json "
					"requires \\u escapes)");
		p->i++; /* backslash */
		if (at_end(p))
			return fail(p, "json.syntax", "unterminated escape");
		c = p->s[p->i++];
		switch (c) {
		case '"': case '\\': case '/': break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u':
			ret = hex4(p, &cp);
			if (ret)
				return ret;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return fail(p, "json.surrogate", "lone trailing UTF-16 surrogate escape");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				unsigned lo;
				if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
					return fail(p, "json.surrogate",
						    "lone leading UTF-16 surrogate escape");
				p->i += 2;
				ret = hex4(p, &lo);
				if (ret)
					return ret;
				if (lo < 0xDC00 || lo > 0xDFFF)
					return fail(p, "json.surrogate",
						    "lone leading UTF-16 surrogate escape");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			if (cp == 0)
				o->has_nul = 1;
			if (cp < 0x80) {
				b[0] = (uint8_t)cp;
				put(o, b, 1);
			} else if (cp < 0x800) {
				b[0] = (uint8_t)(0xC0 | (cp >> 6));
				b[1] = (uint8_t)(0x80 | (cp & 0x3F));
				put(o, b, 2);
			} else if (cp < 0x10000) {
				b[0] = (uint8_t)(0xE0 | (cp >> 12));
				b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
				b[2] = (uint8_t)(0x80 | (cp & 0x3F));
				put(o, b, 3);
			} else {
				b[0] = (uint8_t)(0xF0 | (cp >> 18));
				b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
				b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
				b[3] = (uint8_t)(0x80 | (cp & 0x3F));
				put(o, b, 4);
			}
			continue;
		default:
			p->i--;
			return fail(p, "json.syntax", "invalid escape in a string");
		}
		put(o, &c, 1);
	}
}

/* A string decoded into the arena, NUL-terminated; *out points at it. */
static int arena_string(struct hp *p, char **out, size_t *len, int *has_nul)
{
	struct str o = { .out = p->h->names + p->arena_len, .cap = SIZE_MAX };
	int ret = string(p, &o);

	if (ret)
		return ret;
	o.out[o.len] = '\0';
	*out = o.out;
	*len = o.len;
	*has_nul = o.has_nul;
	p->arena_len += o.len + 1;
	return 0;
}

/* A number. With usize, it must be one (serde reads "-0", fractions, exponents and integers
 * beyond u64 as floats or negatives, none of which is a usize) and *usize receives it. */
static int number(struct hp *p, uint64_t *usize)
{
	size_t start = p->i;
	int neg = 0, integer = 1;
	char buf[64];

	if (p->s[p->i] == '-') {
		neg = 1;
		p->i++;
	}
	if (at_end(p) || !is_digit(p->s[p->i]))
		return fail(p, "json.number", "invalid number");
	if (p->s[p->i] == '0') {
		p->i++;
		if (!at_end(p) && is_digit(p->s[p->i]))
			return fail(p, "json.number", "number with a leading zero");
	} else {
		while (!at_end(p) && is_digit(p->s[p->i]))
			p->i++;
	}
	if (!at_end(p) && p->s[p->i] == '.') {
		integer = 0;
		p->i++;
		if (at_end(p) || !is_digit(p->s[p->i]))
			return fail(p, "json.number", "invalid number (no digit after '.')");
		while (!at_end(p) && is_digit(p->s[p->i]))
			p->i++;
	}
	if (!at_end(p) && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		integer = 0;
		p->i++;
		if (!at_end(p) && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (at_end(p) || !is_digit(p->s[p->i]))
			return fail(p, "json.number", "invalid number (no digit in exponent)");
		while (!at_end(p) && is_digit(p->s[p->i]))
			p->i++;
	}
	if (usize) {
		uint64_t v = 0;
		if (neg || !integer) {
			p->i = start;
			return fail(p, "json.type", "shape and data_offsets elements must be "
					"non-negative integers");
		}
		for (size_t k = start; k < p->i; k++)
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, (uint64_t)(p->s[k] - '0'), &v)) {
				p->i = start;
				return fail(p, "json.type", "shape or data_offsets element above "
						"2^64-1");
			}
		*usize = v;
		return 0;
	}
	/* serde_json rejects numbers whose value does not fit a double ("number out of range"),
	 * even where the value is ignored. */
	if (!integer || p->i - start > 19) {
		size_t len = p->i - start;
		double v;
		char *big = NULL, *b = buf;
		if (len >= sizeof(buf)) {
			big = malloc(len + 1);
			if (!big)
				return nomem(p);
			b = big;
		}
		memcpy(b, p->s + start, len);
		b[len] = '\0';
		v = strtod(b, NULL);
		free(big);
		if (isinf(v)) {
			p->i = start;
			return fail(p, "json.number", "number out of range");
		}
	}
	return 0;
}

static int literal(struct hp *p, const char *lit)
{
	size_t len = strlen(lit);

	if (p->n - p->i < len || memcmp(p->s + p->i, lit, len) != 0)
		return fail(p, "json.syntax", "expected a value");
	p->i += len;
	return 0;
}

static int enter(struct hp *p, int depth)
{
	if (depth + 1 > MAX_DEPTH)
		return fail(p, "json.depth", "nesting deeper than the reference's recursion limit "
				"(127 levels)");
	return 0;
}

/* After an element of an object or array: 1 for another element, 0 at the close, <0. */
static int next(struct hp *p, uint8_t close)
{
	skip_ws(p);
	if (!at_end(p) && p->s[p->i] == ',') {
		p->i++;
		return 1;
	}
	if (!at_end(p) && p->s[p->i] == close) {
		p->i++;
		return 0;
	}
	return fail(p, "json.syntax", close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* After the opening brace of an object: 1 if it has members, 0 if it is empty ({}). */
static int open_obj(struct hp *p, uint8_t close)
{
	p->i++;
	skip_ws(p);
	if (!at_end(p) && p->s[p->i] == close) {
		p->i++;
		return 0;
	}
	return 1;
}

/* A member key (at '"'), decoded into o, then the ':' after it. */
static int key(struct hp *p, struct str *o)
{
	int ret;

	skip_ws(p);
	if (at_end(p) || p->s[p->i] != '"')
		return fail(p, "json.syntax", "expected a string key");
	ret = string(p, o);
	if (ret)
		return ret;
	skip_ws(p);
	if (at_end(p) || p->s[p->i] != ':')
		return fail(p, "json.syntax", "expected ':'");
	p->i++;
	return 0;
}

/* A value nobody interprets: checked, not stored. */
static int skip(struct hp *p, int depth)
{
	struct str o = { 0 };
	int ret;

	skip_ws(p);
	if (at_end(p))
		return eof_value(p);
	switch (p->s[p->i]) {
	case '{':
		ret = enter(p, depth);
		if (ret || !(ret = open_obj(p, '}')))
			return ret;
		do {
			ret = key(p, &o);
			if (!ret)
				ret = skip(p, depth + 1);
			if (!ret)
				ret = next(p, '}');
		} while (ret > 0);
		return ret;
	case '[':
		ret = enter(p, depth);
		if (ret || !(ret = open_obj(p, ']')))
			return ret;
		do {
			ret = skip(p, depth + 1);
			if (!ret)
				ret = next(p, ']');
		} while (ret > 0);
		return ret;
	case '"':
		return string(p, &o);
	case 't':
		return literal(p, "true");
	case 'f':
		return literal(p, "false");
	case 'n':
		return literal(p, "null");
	default:
		if (p->s[p->i] == '-' || is_digit(p->s[p->i]))
			return number(p, NULL);
		return fail(p, "json.syntax", "expected a value");
	}
}

static int refuse_nul(struct hp *p, size_t kpos)
{
	/* A name cut at U+0000 could shadow another ("dtype\u0000x" would read as "dtype"). */
	p->i = kpos;
	return fail(p, "json.nul_name", "a key contains U+0000 (not supported: names are C "
			"strings)");
}

/* A member key that names something (a tensor, a metadata entry), decoded into the arena,
 * then the ':' after it. *kpos: where the key starts. */
static int arena_key(struct hp *p, char **k, size_t *len, size_t *kpos)
{
	int nul, ret;

	skip_ws(p);
	*kpos = p->i;
	if (at_end(p) || p->s[p->i] != '"')
		return fail(p, "json.syntax", "expected a string key");
	ret = arena_string(p, k, len, &nul);
	if (ret)
		return ret;
	if (nul)
		return refuse_nul(p, *kpos);
	skip_ws(p);
	if (at_end(p) || p->s[p->i] != ':')
		return fail(p, "json.syntax", "expected ':'");
	p->i++;
	return 0;
}

/* dtype: a known name as a string, or {"NAME": null} (serde's map form of a unit variant). */
static int dtype(struct hp *p, struct wlift__htensor *t, int depth)
{
	char name[65];
	struct str o = { .out = name, .cap = sizeof(name) - 1 };
	size_t at, save;
	int ret, dt;

	ret = value_at(p, &at);
	if (ret)
		return ret;
	if (p->s[p->i] == '"') {
		ret = string(p, &o);
		if (ret)
			return ret;
	} else if (p->s[p->i] == '{') {
		/* Check it as any object, then look at its one member again. */
		ret = skip(p, depth);
		if (ret)
			return ret;
		save = p->i;
		p->i = at + 1;
		skip_ws(p);
		ret = p->s[p->i] == '"' ? string(p, &o) : -1;
		if (!ret) {
			skip_ws(p);
			p->i++; /* ':' */
			skip_ws(p);
			ret = p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0 ? 0 : -1;
			if (!ret) {
				p->i += 4;
				skip_ws(p);
				if (at_end(p) || p->s[p->i] != '}')
					ret = -1;
			}
		}
		p->i = save;
		if (ret) {
			soft(p, WLIFT_EJSON, t->name, at, "json.type",
			     "%s: tensor \"%s\": dtype must be a string", p->file, t->name);
			return 0;
		}
	} else {
		soft(p, WLIFT_EJSON, t->name, at, "json.type",
		     "%s: tensor \"%s\": dtype must be a string", p->file, t->name);
		return skip(p, depth);
	}
	dt = o.len < sizeof(name) - 1 ? wlift__dtype_from_name_n(name, o.len) : -1;
	if (dt < 0) {
		name[o.len < sizeof(name) - 1 ? o.len : sizeof(name) - 1] = '\0';
		soft(p, WLIFT_EDTYPE, t->name, at, "dtype.unknown",
		     "%s: tensor \"%s\": unknown dtype \"%s%s\"", p->file, t->name, name,
		     o.len < sizeof(name) - 1 ? "" : "...");
		return 0;
	}
	t->dtype = (wlift_dtype)dt;
	return 0;
}

static int grow(void **a, size_t *cap, size_t need, size_t size)
{
	size_t nc = *cap ? *cap : 64;
	void *na;

	if (need <= *cap)
		return 0;
	while (nc < need)
		nc *= 2;
	na = realloc(*a, nc * size);
	if (!na)
		return -ENOMEM;
	*a = na;
	*cap = nc;
	return 0;
}

/* shape (offs == NULL: appended to h->dims) or data_offsets (offs[2]): an array of usize. */
static int dims(struct hp *p, struct wlift__htensor *t, int depth, uint64_t *offs)
{
	const char *field = offs ? "data_offsets" : "shape";
	size_t at, k = 0;
	int ret;

	ret = value_at(p, &at);
	if (ret)
		return ret;
	if (p->s[p->i] != '[') {
		soft(p, WLIFT_EJSON, t->name, at, "json.type",
		     "%s: tensor \"%s\": %s must be an array", p->file, t->name, field);
		return skip(p, depth);
	}
	ret = enter(p, depth);
	if (ret)
		return ret;
	if (!offs)
		t->shape_at = p->ndims;
	if ((ret = open_obj(p, ']')) > 0) {
		do {
			uint64_t v;
			skip_ws(p);
			if (at_end(p))
				return eof_value(p);
			if (p->s[p->i] != '-' && !is_digit(p->s[p->i])) {
				soft(p, WLIFT_EJSON, t->name, p->i, "json.type",
				     "%s: tensor \"%s\": every element of %s must be a non-negative "
				     "integer", p->file, t->name, field);
				ret = skip(p, depth + 1);
			} else {
				ret = number(p, &v);
				if (!ret && offs) {
					if (k < 2)
						offs[k] = v;
				} else if (!ret) {
					if (grow((void **)&p->h->dims, &p->dcap, p->ndims + 1,
						 sizeof(*p->h->dims)))
						return nomem(p);
					p->h->dims[p->ndims++] = v;
				}
			}
			k++;
			if (!ret)
				ret = next(p, ']');
		} while (ret > 0);
	}
	if (ret)
		return ret;
	if (offs && k != 2)
		soft(p, WLIFT_EJSON, t->name, at, "json.type",
		     "%s: tensor \"%s\": data_offsets must be [begin, end]", p->file, t->name);
	if (!offs)
		t->ndim = (uint32_t)(p->ndims - t->shape_at);
	return 0;
}

/* A tensor entry: {dtype, shape, data_offsets} (other members ignored, as serde does) or
 * [dtype, shape, data_offsets] (serde reads a struct from a sequence of its fields). */
static int tensor(struct hp *p, struct wlift__htensor *t, int depth)
{
	static const char *const fields[3] = { "dtype", "shape", "data_offsets" };
	uint64_t offs[2] = { 0, 0 };
	unsigned seen = 0;
	size_t at;
	int ret;

	ret = value_at(p, &at);
	if (ret)
		return ret;
	if (p->s[p->i] != '{' && p->s[p->i] != '[') {
		soft(p, WLIFT_EJSON, t->name, at, "json.type", "%s: tensor \"%s\": the entry must "
		     "be an object {dtype, shape, data_offsets}", p->file, t->name);
		return skip(p, depth);
	}
	ret = enter(p, depth);
	if (ret)
		return ret;
	if (p->s[p->i] == '[') {
		size_t k = 0;
		if ((ret = open_obj(p, ']')) > 0) {
			do {
				ret = k == 0 ? dtype(p, t, depth + 1)
				      : k == 1 ? dims(p, t, depth + 1, NULL)
				      : k == 2 ? dims(p, t, depth + 1, offs)
						 : skip(p, depth + 1);
				k++;
				if (!ret)
					ret = next(p, ']');
			} while (ret > 0);
		}
		if (ret)
			return ret;
		if (k != 3)
			soft(p, WLIFT_EJSON, t->name, at, "json.type", "%s: tensor \"%s\": an array "
			     "entry must be [dtype, shape, data_offsets]", p->file, t->name);
		seen = 7;
	} else if ((ret = open_obj(p, '}')) > 0) {
		do {
			char k[16];
			struct str o = { .out = k, .cap = sizeof(k) };
			size_t kpos;
			unsigned bit = 0;
			skip_ws(p);
			kpos = p->i;
			ret = key(p, &o);
			if (ret)
				return ret;
			if (o.has_nul)
				return refuse_nul(p, kpos);
			for (unsigned f = 0; f < 3; f++)
				if (o.len == strlen(fields[f]) && memcmp(k, fields[f], o.len) == 0)
					bit = 1u << f;
			if (bit & seen) {
				p->i = kpos;
				return fail(p, "json.duplicate", "duplicate tensor field");
			}
			seen |= bit;
			ret = bit == 1 ? dtype(p, t, depth + 1)
			      : bit == 2 ? dims(p, t, depth + 1, NULL)
			      : bit == 4 ? dims(p, t, depth + 1, offs)
					 : skip(p, depth + 1);
			if (!ret)
				ret = next(p, '}');
		} while (ret > 0);
	}
	if (ret)
		return ret;
	for (unsigned f = 0; f < 3; f++)
		if (!(seen & (1u << f))) {
			soft(p, WLIFT_EJSON, t->name, at, "json.missing",
			     "%s: tensor \"%s\": missing field \"%s\"", p->file, t->name, fields[f]);
			break;
		}
	t->begin = offs[0];
	t->end = offs[1];
	return 0;
}

/* __metadata__: null (Option::None) or an object of strings, stored in header order. */
static int metadata(struct hp *p, int depth)
{
	struct wlift__header *h = p->h;
	size_t at;
	int ret;

	ret = value_at(p, &at);
	if (ret)
		return ret;
	if (p->s[p->i] == 'n')
		return literal(p, "null");
	if (p->s[p->i] != '{') {
		soft(p, WLIFT_EJSON, NULL, at, "json.metadata",
		     "%s: __metadata__ must be an object of strings", p->file);
		return skip(p, depth);
	}
	ret = enter(p, depth);
	if (ret)
		return ret;
	h->nmeta = 0;
	if (grow((void **)&h->meta, &p->mcap, 1, 2 * sizeof(*h->meta)))
		return nomem(p);
	if ((ret = open_obj(p, '}')) <= 0)
		return ret;
	do {
		char *k, *v;
		size_t kpos, klen, vlen;
		int nul;
		ret = arena_key(p, &k, &klen, &kpos);
		if (ret)
			return ret;
		skip_ws(p);
		if (at_end(p))
			return eof_value(p);
		if (p->s[p->i] != '"') {
			soft(p, WLIFT_EJSON, NULL, p->i, "json.metadata",
			     "%s: __metadata__ value of \"%s\" must be a string", p->file, k);
			ret = skip(p, depth + 1);
		} else {
			ret = arena_string(p, &v, &vlen, &nul);
			if (!ret) {
				if (grow((void **)&h->meta, &p->mcap, (size_t)h->nmeta + 1,
					 2 * sizeof(*h->meta)))
					return nomem(p);
				h->meta[2 * h->nmeta] = k;
				h->meta[2 * h->nmeta + 1] = v;
				h->nmeta++;
			}
		}
		if (!ret)
			ret = next(p, '}');
	} while (ret > 0);
	return ret;
}

/* The top-level object: tensors by name, and __metadata__. */
static int top(struct hp *p)
{
	struct wlift__header *h = p->h;
	int seen_meta = 0, ret;

	if ((ret = open_obj(p, '}')) <= 0)
		return ret;
	do {
		struct wlift__htensor t = { 0 };
		size_t kpos, len;
		ret = arena_key(p, &t.name, &len, &kpos);
		if (ret)
			return ret;
		if (len == 12 && memcmp(t.name, "__metadata__", 12) == 0) {
			p->arena_len -= len + 1; /* not a tensor name */
			if (seen_meta++) {
				p->i = kpos;
				return fail(p, "json.duplicate", "duplicate field \"__metadata__\"");
			}
			ret = metadata(p, 1);
		} else {
			t.name_len = len;
			ret = tensor(p, &t, 1);
			if (!ret && !p->soft) {
				if (grow((void **)&h->tensors, &p->tcap, h->ntensors + 1,
					 sizeof(*h->tensors)))
					return nomem(p);
				h->tensors[h->ntensors++] = t;
			}
		}
		if (!ret)
			ret = next(p, '}');
	} while (ret > 0);
	return ret;
}

int wlift__header_json(const uint8_t *s, size_t n, uint64_t base, const char *file,
		       struct wlift__header *h, wlift_diag *d)
{
	struct hp p = { .s = s, .n = n, .base = base, .file = file, .d = d, .h = h };
	int ret;

	/* Every decoded string fits in n + 1 bytes (see string()). */
	h->names = malloc(n + 1);
	if (!h->names)
		return nomem(&p);
	skip_ws(&p);
	if (at_end(&p))
		return eof_value(&p);
	if (s[p.i] != '{') {
		/* The reference reads the header into a struct: any other value is a type error
		 * there, once it is known to be valid JSON. */
		size_t at = p.i;
		ret = s[p.i] == '[' || s[p.i] == '"' ? skip(&p, 0) : 0;
		if (ret)
			return ret;
		p.i = at;
		return fail(&p, s[at] == '[' || s[at] == '"' || s[at] == 't' || s[at] == 'f' ||
				    s[at] == 'n' || s[at] == '-' || is_digit(s[at])
				? "json.object" : "json.syntax",
			    "the header must be a JSON object");
	}
	ret = top(&p);
	if (ret)
		return ret;
	skip_ws(&p);
	if (p.i != p.n)
		return fail(&p, "json.trailing", "trailing characters after the JSON object (only "
				"spaces, tabs and newlines may pad the header)");
	if (p.soft) {
		if (d && !d->code)
			*d = p.softd;
		return p.soft;
	}
	for (size_t i = 0; i < h->ntensors; i++)
		h->tensors[i].shape = h->tensors[i].ndim ? h->dims + h->tensors[i].shape_at : NULL;
	return 0;
}
