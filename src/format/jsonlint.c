/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A lexical pass over the header JSON that rejects what the reference rejects but json-c
 * (which builds the tree we walk) accepts. The reference deserialises with serde_json into
 * typed structs, and json-c in strict mode still differs from that on: NaN/Infinity literals,
 * numbers such as "1." or 1e400 (serde: "number out of range"), raw control characters and
 * unpaired UTF-16 surrogate escapes in strings, nesting deeper than serde_json's recursion
 * limit, duplicate "__metadata__" keys and duplicate dtype/shape/data_offsets fields (serde:
 * "duplicate field"; json-c silently keeps the last), "-0" and integers above 2^64-1 in shapes
 * and offsets (serde reads them as floats and rejects them; json-c turns them into 0 and
 * 2^64-1). Nothing is allocated; the grammar is RFC 8259 exactly as serde_json reads it.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/header.h"

/* serde_json's recursion limit: 128 levels, of which a document can use 127 containers. */
#define LINT_MAX_DEPTH 127

enum role {
	ROLE_OTHER,   /* anything not interpreted */
	ROLE_TOP,     /* the top-level object */
	ROLE_TENSOR,  /* a tensor entry: object or [dtype, shape, data_offsets] */
	ROLE_DTYPE,   /* the value of dtype */
	ROLE_DIMS,    /* the value of shape: an array of usize */
	ROLE_OFFS,    /* the value of data_offsets: an array of exactly 2 usize */
	ROLE_DIM,     /* an element of a shape or data_offsets array */
	ROLE_META,    /* the value of __metadata__: null or an object of strings */
	ROLE_METAVAL, /* a value inside __metadata__ */
};

struct lint {
	const uint8_t *s;
	size_t n, i;
	uint64_t base;
	const char *file;
	wlift_diag *d;
	int nul_in_key; /* set by lint_string when the key decoded so far holds U+0000 */
	/* First type error (serde would reject the value's type). Kept aside rather than
	 * reported at once: json-c keeps only the last of duplicate keys, so these checks are
	 * what catches a bad earlier duplicate, while the tree walk gives better diagnostics
	 * (tensor names) for everything else. */
	const char *type_msg;
	size_t type_off;
};

static int fail(struct lint *l, const char *rule, const char *what)
{
	return wlift__diag_set(l->d, WLIFT_EJSON, l->file, NULL, (int64_t)(l->base + l->i), rule,
			       "%s: header JSON is invalid at byte %llu: %s", l->file,
			       (unsigned long long)(l->base + l->i), what);
}

static void soft(struct lint *l, size_t at, const char *what)
{
	if (!l->type_msg) {
		l->type_msg = what;
		l->type_off = at;
	}
}

static void skip_ws(struct lint *l)
{
	/* JSON whitespace only: serde_json does not skip \v, \f or Unicode spaces. */
	while (l->i < l->n && (l->s[l->i] == ' ' || l->s[l->i] == '\t' || l->s[l->i] == '\n' ||
			       l->s[l->i] == '\r'))
		l->i++;
}

static int hex4(struct lint *l, unsigned *out)
{
	unsigned v = 0;

	if (l->n - l->i < 4)
		return fail(l, "json.syntax", "truncated \\u escape");
	for (int k = 0; k < 4; k++) {
		uint8_t c = l->s[l->i + (size_t)k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(l, "json.syntax", "invalid \\u escape");
	}
	l->i += 4;
	*out = v;
	return 0;
}

/* Scan a string starting at '"'. Decodes up to cap-1 bytes of it into key (for comparing
 * member names; escapes such as "sh\u0061pe" are honoured as serde does); *klen is set to
 * the decoded length, or cap when it did not fit. */
static int lint_string(struct lint *l, char *key, size_t cap, size_t *klen)
{
	size_t k = 0;
	int ret;

	l->i++; /* opening quote */
	l->nul_in_key = 0;
	for (;;) {
		uint8_t c;
		unsigned cp;

		if (l->i >= l->n)
			return fail(l, "json.syntax", "unterminated string");
		c = l->s[l->i];
		if (c == '"') {
			l->i++;
			break;
		}
		if (c < 0x20)
			return fail(l, "json.control", "raw control character in a string (serde_json "
					"requires \\u escapes)");
		if (c != '\\') {
			if (k < cap)
				key[k] = (char)c;
			k++;
			l->i++;
			continue;
		}
		l->i++;
		if (l->i >= l->n)
			return fail(l, "json.syntax", "unterminated escape");
		c = l->s[l->i++];
		switch (c) {
		case '"': case '\\': case '/':
			break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u':
			ret = hex4(l, &cp);
			if (ret)
				return ret;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return fail(l, "json.surrogate", "lone trailing UTF-16 surrogate escape");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				unsigned lo;
				if (l->n - l->i < 2 || l->s[l->i] != '\\' || l->s[l->i + 1] != 'u')
					return fail(l, "json.surrogate",
						    "lone leading UTF-16 surrogate escape");
				l->i += 2;
				ret = hex4(l, &lo);
				if (ret)
					return ret;
				if (lo < 0xDC00 || lo > 0xDFFF)
					return fail(l, "json.surrogate",
						    "lone leading UTF-16 surrogate escape");
			}
			if (cp == 0)
				l->nul_in_key = 1;
			/* Only ASCII matters for comparing with the names we know. */
			c = cp < 0x80 ? (uint8_t)cp : 0xFF;
			break;
		default:
			l->i--;
			return fail(l, "json.syntax", "invalid escape in a string");
		}
		if (k < cap)
			key[k] = (char)c;
		k++;
	}
	*klen = k < cap ? k : cap;
	return 0;
}

static int is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int lint_number(struct lint *l, enum role role)
{
	size_t start = l->i;
	int neg = 0, integer = 1;
	char buf[64];

	if (l->s[l->i] == '-') {
		neg = 1;
		l->i++;
	}
	if (l->i >= l->n || !is_digit(l->s[l->i]))
		return fail(l, "json.number", "invalid number");
	if (l->s[l->i] == '0') {
		l->i++;
		if (l->i < l->n && is_digit(l->s[l->i]))
			return fail(l, "json.number", "number with a leading zero");
	} else {
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	}
	if (l->i < l->n && l->s[l->i] == '.') {
		integer = 0;
		l->i++;
		if (l->i >= l->n || !is_digit(l->s[l->i]))
			return fail(l, "json.number", "invalid number (no digit after '.')");
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	}
	if (l->i < l->n && (l->s[l->i] == 'e' || l->s[l->i] == 'E')) {
		integer = 0;
		l->i++;
		if (l->i < l->n && (l->s[l->i] == '+' || l->s[l->i] == '-'))
			l->i++;
		if (l->i >= l->n || !is_digit(l->s[l->i]))
			return fail(l, "json.number", "invalid number (no digit in exponent)");
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	}
	if (role == ROLE_DIM) {
		/* serde reads "-0", fractions, exponents and integers beyond u64 as floats or
		 * negatives, none of which is a usize. */
		uint64_t v = 0;
		if (neg || !integer) {
			l->i = start;
			return fail(l, "json.type", "shape and data_offsets elements must be "
					"non-negative integers");
		}
		for (size_t k = start; k < l->i; k++)
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, (uint64_t)(l->s[k] - '0'), &v)) {
				l->i = start;
				return fail(l, "json.type", "shape or data_offsets element above "
						"2^64-1");
			}
		return 0;
	}
	/* serde_json rejects numbers whose value does not fit a double ("number out of range"),
	 * even where the value is ignored. */
	if (!integer || l->i - start > 19) {
		size_t len = l->i - start;
		double v;
		char *big = NULL, *p = buf;
		if (len >= sizeof(buf)) {
			big = malloc(len + 1);
			if (!big)
				return wlift__diag_set(l->d, -ENOMEM, l->file, NULL, -1, NULL, NULL);
			p = big;
		}
		memcpy(p, l->s + start, len);
		p[len] = '\0';
		v = strtod(p, NULL);
		free(big);
		if (isinf(v)) {
			l->i = start;
			return fail(l, "json.number", "number out of range");
		}
	}
	return 0;
}

static int lint_literal(struct lint *l, const char *lit)
{
	size_t len = strlen(lit);

	if (l->n - l->i < len || memcmp(l->s + l->i, lit, len) != 0)
		return fail(l, "json.syntax", "expected a value");
	l->i += len;
	return 0;
}

static int lint_value(struct lint *l, enum role role, int depth);

static int lint_object(struct lint *l, enum role role, int depth)
{
	int seen_meta = 0;
	unsigned seen = 0; /* tensor fields: 1 dtype, 2 shape, 4 data_offsets */
	size_t start = l->i;
	int ret;

	l->i++;
	skip_ws(l);
	if (l->i < l->n && l->s[l->i] == '}') {
		l->i++;
		if (role == ROLE_TENSOR)
			soft(l, start, "tensor entry without dtype, shape or data_offsets");
		return 0;
	}
	for (;;) {
		char key[16];
		size_t klen, kpos;
		enum role sub = ROLE_OTHER;

		skip_ws(l);
		if (l->i >= l->n || l->s[l->i] != '"')
			return fail(l, "json.syntax", "expected a string key");
		kpos = l->i;
		ret = lint_string(l, key, sizeof(key), &klen);
		if (ret)
			return ret;
		if ((role == ROLE_TOP || role == ROLE_TENSOR || role == ROLE_META) &&
		    l->nul_in_key) {
			/* json-c cuts keys at U+0000, which could make one key shadow another
			 * ("dtype\u0000x" would replace "dtype"): refuse rather than misread. */
			l->i = kpos;
			return fail(l, "json.nul_name", "a key contains U+0000 (not supported: "
					"names are C strings)");
		}
		if (role == ROLE_META) {
			sub = ROLE_METAVAL;
		} else if (role == ROLE_TOP) {
			if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
				if (seen_meta++) {
					l->i = kpos;
					return fail(l, "json.duplicate", "duplicate field "
							"\"__metadata__\"");
				}
				sub = ROLE_META;
			} else {
				sub = ROLE_TENSOR;
			}
		} else if (role == ROLE_TENSOR) {
			unsigned bit = 0;
			if (klen == 5 && memcmp(key, "dtype", 5) == 0)
				bit = 1;
			else if (klen == 5 && memcmp(key, "shape", 5) == 0)
				bit = 2;
			else if (klen == 12 && memcmp(key, "data_offsets", 12) == 0)
				bit = 4;
			if (bit & seen) {
				l->i = kpos;
				return fail(l, "json.duplicate", "duplicate tensor field");
			}
			seen |= bit;
			sub = bit == 1 ? ROLE_DTYPE : bit == 2 ? ROLE_DIMS : bit == 4 ? ROLE_OFFS
										: ROLE_OTHER;
		}
		skip_ws(l);
		if (l->i >= l->n || l->s[l->i] != ':')
			return fail(l, "json.syntax", "expected ':'");
		l->i++;
		ret = lint_value(l, sub, depth);
		if (ret)
			return ret;
		skip_ws(l);
		if (l->i < l->n && l->s[l->i] == ',') {
			l->i++;
			continue;
		}
		if (l->i < l->n && l->s[l->i] == '}') {
			l->i++;
			if (role == ROLE_TENSOR && seen != 7)
				soft(l, start, "tensor entry without dtype, shape or data_offsets");
			return 0;
		}
		return fail(l, "json.syntax", "expected ',' or '}'");
	}
}

static void check_count(struct lint *l, enum role role, size_t start, size_t k)
{
	if (role == ROLE_TENSOR && k != 3)
		soft(l, start, "a tensor entry array must be [dtype, shape, data_offsets]");
	if (role == ROLE_OFFS && k != 2)
		soft(l, start, "data_offsets must have exactly 2 elements");
}

static int lint_array(struct lint *l, enum role role, int depth)
{
	static const enum role in_tensor[3] = { ROLE_DTYPE, ROLE_DIMS, ROLE_OFFS };
	size_t k = 0, start = l->i;
	int ret;

	l->i++;
	skip_ws(l);
	if (l->i < l->n && l->s[l->i] == ']') {
		l->i++;
		check_count(l, role, start, 0);
		return 0;
	}
	for (;; k++) {
		enum role sub = ROLE_OTHER;

		if (role == ROLE_DIMS || role == ROLE_OFFS)
			sub = ROLE_DIM;
		else if (role == ROLE_TENSOR && k < 3)
			sub = in_tensor[k]; /* [dtype, shape, data_offsets]: serde accepts it */
		ret = lint_value(l, sub, depth);
		if (ret)
			return ret;
		skip_ws(l);
		if (l->i < l->n && l->s[l->i] == ',') {
			l->i++;
			continue;
		}
		if (l->i < l->n && l->s[l->i] == ']') {
			l->i++;
			check_count(l, role, start, k + 1);
			return 0;
		}
		return fail(l, "json.syntax", "expected ',' or ']'");
	}
}

/* The types serde expects where a value is interpreted; see struct lint. */
static void check_type(struct lint *l, enum role role, size_t start)
{
	uint8_t c = l->s[start];

	switch (role) {
	case ROLE_TENSOR:
		if (c != '{' && c != '[')
			soft(l, start, "a tensor entry must be an object");
		break;
	case ROLE_DIMS:
	case ROLE_OFFS:
		if (c != '[')
			soft(l, start, "shape and data_offsets must be arrays");
		break;
	case ROLE_DIM:
		if (c != '-' && !is_digit(c))
			soft(l, start, "shape and data_offsets elements must be integers");
		break;
	case ROLE_META:
		if (c != '{' && c != 'n')
			soft(l, start, "__metadata__ must be an object of strings");
		break;
	case ROLE_METAVAL:
		if (c != '"')
			soft(l, start, "__metadata__ values must be strings");
		break;
	default:
		break;
	}
}

/* dtype: a known name as a string, or {"NAME": null} (serde's map form of a unit variant). */
static int lint_dtype(struct lint *l, int depth)
{
	size_t start = l->i, klen;
	char key[16];
	int ret;

	if (l->s[l->i] == '"') {
		ret = lint_string(l, key, sizeof(key), &klen);
		if (!ret && (klen >= sizeof(key) || wlift__dtype_from_name_n(key, klen) < 0))
			soft(l, start, "unknown dtype");
		return ret;
	}
	if (l->s[l->i] == '{') {
		size_t save;
		if (depth + 1 > LINT_MAX_DEPTH)
			return fail(l, "json.depth", "nesting deeper than the reference's "
					"recursion limit (127 levels)");
		/* Validate generically first, then look at the shape of it again. */
		save = l->i;
		ret = lint_object(l, ROLE_OTHER, depth + 1);
		if (ret)
			return ret;
		l->i = save + 1;
		skip_ws(l);
		if (l->s[l->i] != '"' || lint_string(l, key, sizeof(key), &klen) ||
		    klen >= sizeof(key) || wlift__dtype_from_name_n(key, klen) < 0) {
			soft(l, start, "unknown dtype");
		} else {
			skip_ws(l);
			l->i++; /* ':' */
			skip_ws(l);
			if (l->n - l->i < 4 || memcmp(l->s + l->i, "null", 4) != 0)
				soft(l, start, "dtype must be a string");
			else {
				l->i += 4;
				skip_ws(l);
				if (l->s[l->i] != '}')
					soft(l, start, "dtype must be a string");
			}
		}
		/* back to the end of the object */
		l->i = save;
		return lint_object(l, ROLE_OTHER, depth + 1);
	}
	soft(l, start, "dtype must be a string");
	return 0;
}

static int lint_value(struct lint *l, enum role role, int depth)
{
	char key[1];
	size_t klen;

	skip_ws(l);
	if (l->i >= l->n)
		return fail(l, "json.syntax", "unexpected end of the header (EOF while parsing a "
				"value)");
	check_type(l, role, l->i);
	if (role == ROLE_DTYPE && (l->s[l->i] == '"' || l->s[l->i] == '{'))
		return lint_dtype(l, depth);
	switch (l->s[l->i]) {
	case '{':
	case '[':
		if (depth + 1 > LINT_MAX_DEPTH)
			return fail(l, "json.depth", "nesting deeper than the reference's recursion "
					"limit (127 levels)");
		return l->s[l->i] == '{' ? lint_object(l, role, depth + 1)
					 : lint_array(l, role, depth + 1);
	case '"':
		return lint_string(l, key, 0, &klen);
	case 't':
		return lint_literal(l, "true");
	case 'f':
		return lint_literal(l, "false");
	case 'n':
		return lint_literal(l, "null");
	default:
		if (l->s[l->i] == '-' || is_digit(l->s[l->i]))
			return lint_number(l, role);
		return fail(l, "json.syntax", "expected a value");
	}
}

int wlift__json_lint(const uint8_t *s, size_t n, uint64_t base, const char *file,
		     size_t *type_off, const char **type_msg, wlift_diag *d)
{
	struct lint l = { .s = s, .n = n, .base = base, .file = file, .d = d };
	int ret;

	/* The reference reads the header into a struct: any other top-level value is a type
	 * error there (leading JSON whitespace is allowed, it does not require '{' first). */
	skip_ws(&l);
	if (l.i < l.n && l.s[l.i] != '{' && l.s[l.i] != '[' && l.s[l.i] != '"')
		return fail(&l, l.s[l.i] == 't' || l.s[l.i] == 'f' || l.s[l.i] == 'n' ||
				l.s[l.i] == '-' || is_digit(l.s[l.i]) ? "json.object" : "json.syntax",
			    "the header must be a JSON object");
	ret = lint_value(&l, ROLE_TOP, 0);
	if (ret)
		return ret;
	skip_ws(&l);
	if (l.i != l.n)
		return fail(&l, "json.trailing", "trailing characters after the JSON object (only "
				"spaces, tabs and newlines may pad the header)");
	*type_msg = l.type_msg;
	*type_off = l.type_off;
	return 0;
}
