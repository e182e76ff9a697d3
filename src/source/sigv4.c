/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS Signature Version 4, header form (the AWS General Reference, "Create a signed AWS API
 * request"): canonical request → string to sign → HMAC chain over date, region, service and
 * "aws4_request" → signature. Pure functions of their arguments; the caller supplies the time
 * (x-amz-date) and the credentials. S3 differs from other services in two ways that matter
 * here: its canonical URI is the path as sent (encoded once, never normalized) and GETs may
 * sign "UNSIGNED-PAYLOAD" instead of a body hash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "source/sigv4.h"

static const char hexu[] = "0123456789ABCDEF";

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

char *wlift__aws_uri_encode(const char *s, size_t n, int keep_slash)
{
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c) || (c == '/' && keep_slash)) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hexu[c >> 4];
			*o++ = hexu[c & 15];
		}
	}
	*o = '\0';
	return out;
}

const char *wlift__sigv4_url_host(const char *url, char *host, size_t cap)
{
	const char *hs = strstr(url, "://"), *path;
	size_t n;

	hs = hs ? hs + 3 : url;
	path = strchr(hs, '/');
	n = path ? (size_t)(path - hs) : strlen(hs);
	snprintf(host, cap, "%.*s", (int)(n < cap ? n : cap - 1), hs);
	return path;
}

static void to_hex(const unsigned char *p, size_t n, char *hex)
{
	static const char h[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = h[p[i] >> 4];
		hex[2 * i + 1] = h[p[i] & 15];
	}
	hex[2 * n] = '\0';
}

void wlift__sha256_hex(const void *p, size_t n, char hex[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(p, n, md);
	to_hex(md, sizeof(md), hex);
}

/* A growing string. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *q;
		while (cap < b->len + n + 1)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* A query key or value as the canonical form wants it: percent-decoded, then encoded with
 * AWS's rules (so that "%E1%88%B4" and the raw UTF-8 bytes give the same text). */
static char *query_part(const char *s, size_t n)
{
	char *dec = malloc(n + 1), *out;
	size_t m = 0;

	if (!dec)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int a, b;
		if (s[i] == '%' && i + 2 < n && (a = hexval(s[i + 1])) >= 0 &&
		    (b = hexval(s[i + 2])) >= 0) {
			dec[m++] = (char)(a * 16 + b);
			i += 2;
		} else {
			dec[m++] = s[i];
		}
	}
	out = wlift__aws_uri_encode(dec, m, 0);
	free(dec);
	return out;
}

struct qparam {
	char *k, *v;
};

static int qcmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->k, y->k);

	return c ? c : strcmp(x->v, y->v);
}

static int canonical_query(const char *q, struct buf *b)
{
	struct qparam *ps = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	while (q && *q) {
		const char *amp = strchr(q, '&'), *eq;
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len) {
			eq = memchr(q, '=', len);
			if (n == cap) {
				struct qparam *np;
				cap = cap ? 2 * cap : 8;
				np = realloc(ps, cap * sizeof(*ps));
				if (!np) {
					ret = -ENOMEM;
					goto out;
				}
				ps = np;
			}
			ps[n].k = query_part(q, eq ? (size_t)(eq - q) : len);
			ps[n].v = eq ? query_part(eq + 1, len - (size_t)(eq + 1 - q)) : strdup("");
			n++;
			if (!ps[n - 1].k || !ps[n - 1].v) {
				ret = -ENOMEM;
				goto out;
			}
		}
		q += len;
		if (*q == '&')
			q++;
	}
	if (n)
		qsort(ps, n, sizeof(*ps), qcmp);
	for (size_t i = 0; i < n; i++) {
		if (i)
			put(b, "&", 1);
		puts_(b, ps[i].k);
		put(b, "=", 1);
		puts_(b, ps[i].v);
	}
out:
	for (size_t i = 0; i < n; i++) {
		free(ps[i].k);
		free(ps[i].v);
	}
	free(ps);
	return ret;
}

/* RFC 3986 section 5.2.4 dot-segment removal plus dropping empty segments (what the test
 * suite's "normalized" cases expect); a trailing '/' stays. malloc'd. */
static char *normalize_path(const char *p)
{
	size_t n = strlen(p), m = 0;
	char *out = malloc(n + 2);
	size_t *starts = malloc((n + 1) * sizeof(size_t)), depth = 0;
	int trailing = n > 0 && p[n - 1] == '/';

	if (!out || !starts) {
		free(out);
		free(starts);
		return NULL;
	}
	while (*p) {
		const char *e;
		size_t len;
		while (*p == '/')
			p++;
		if (!*p)
			break;
		e = strchr(p, '/');
		len = e ? (size_t)(e - p) : strlen(p);
		if (len == 1 && p[0] == '.') {
			trailing |= !e; /* "/a/." names the container "/a/" */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (depth)
				m = starts[--depth];
			trailing |= !e;
		} else {
			starts[depth++] = m;
			out[m++] = '/';
			memcpy(out + m, p, len);
			m += len;
		}
		p += len;
	}
	if (m == 0 || trailing)
		out[m++] = '/';
	out[m] = '\0';
	free(starts);
	return out;
}

struct hdr {
	char *name;	  /* lower case */
	const char *value;
	size_t order;
};

static int hcmp(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

/* value trimmed, white space runs (also line breaks of folded values) as one space. */
static void put_value(struct buf *b, const char *v)
{
	int space = 0, any = 0;

	for (; *v; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
			space = any;
			continue;
		}
		if (space)
			put(b, " ", 1);
		space = 0;
		any = 1;
		put(b, v, 1);
	}
}

int wlift__sigv4_canonical(const struct wlift__sigv4_req *r, char **canon, char **signed_hdrs)
{
	struct buf b = { 0 }, sh = { 0 };
	struct hdr *h = NULL;
	char *path = NULL;
	int ret = 0;

	*canon = *signed_hdrs = NULL;
	if (!r->method || !r->path || !r->payload_hash || !r->nheaders)
		return -EINVAL;
	h = calloc(r->nheaders, sizeof(*h));
	if (!h)
		return -ENOMEM;
	puts_(&b, r->method);
	put(&b, "\n", 1);
	if (r->s3) {
		puts_(&b, r->path);
	} else {
		char *norm = r->normalize ? normalize_path(r->path) : strdup(r->path);
		if (!norm) {
			ret = -ENOMEM;
			goto out;
		}
		path = wlift__aws_uri_encode(norm, strlen(norm), 1);
		free(norm);
		if (!path) {
			ret = -ENOMEM;
			goto out;
		}
		puts_(&b, path);
	}
	put(&b, "\n", 1);
	ret = canonical_query(r->query, &b);
	if (ret)
		goto out;
	put(&b, "\n", 1);
	for (size_t i = 0; i < r->nheaders; i++) {
		h[i].name = strdup(r->headers[i].name);
		if (!h[i].name) {
			ret = -ENOMEM;
			goto out;
		}
		for (char *c = h[i].name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		h[i].value = r->headers[i].value ? r->headers[i].value : "";
		h[i].order = i;
	}
	qsort(h, r->nheaders, sizeof(*h), hcmp);
	for (size_t i = 0; i < r->nheaders; i++) {
		int same = i && strcmp(h[i].name, h[i - 1].name) == 0;
		if (same) {
			put(&b, ",", 1);
		} else {
			if (i) {
				put(&b, "\n", 1);
				put(&sh, ";", 1);
			}
			puts_(&b, h[i].name);
			put(&b, ":", 1);
			puts_(&sh, h[i].name);
		}
		put_value(&b, h[i].value);
	}
	put(&b, "\n\n", 2);
	puts_(&b, sh.p ? sh.p : "");
	put(&b, "\n", 1);
	puts_(&b, r->payload_hash);
	if (b.oom || sh.oom) {
		ret = -ENOMEM;
		goto out;
	}
	*canon = b.p;
	*signed_hdrs = sh.p;
	b.p = sh.p = NULL;
out:
	for (size_t i = 0; h && i < r->nheaders; i++)
		free(h[i].name);
	free(h);
	free(path);
	free(b.p);
	free(sh.p);
	return ret;
}

static int check_date(const char *d)
{
	if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return -EINVAL;
	return 0;
}

int wlift__sigv4_string_to_sign(const struct wlift__sigv4_req *r, const char *canon,
				char **out)
{
	char hash[65];
	size_t n;

	*out = NULL;
	if (check_date(r->amz_date) || !r->region || !r->service)
		return -EINVAL;
	wlift__sha256_hex(canon, strlen(canon), hash);
	n = 64 + strlen(r->amz_date) + strlen(r->region) + strlen(r->service) + 128;
	*out = malloc(n);
	if (!*out)
		return -ENOMEM;
	snprintf(*out, n, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", r->amz_date,
		 r->amz_date, r->region, r->service, hash);
	return 0;
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int olen = 32;

	return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out,
		    &olen)
		       ? 0
		       : -EINVAL;
}

int wlift__sigv4_signature(const struct wlift__sigv4_req *r, const char *secret,
			   const char *sts, char hex[65])
{
	unsigned char k[32], k2[32];
	char date[9], *ks;
	size_t n;
	int ret;

	hex[0] = '\0';
	if (check_date(r->amz_date) || !secret || !r->region || !r->service)
		return -EINVAL;
	memcpy(date, r->amz_date, 8);
	date[8] = '\0';
	n = strlen(secret) + 5;
	ks = malloc(n);
	if (!ks)
		return -ENOMEM;
	snprintf(ks, n, "AWS4%s", secret);
	ret = hmac(ks, strlen(ks), date, k);
	OPENSSL_cleanse(ks, n);
	free(ks);
	if (ret || hmac(k, 32, r->region, k2) || hmac(k2, 32, r->service, k) ||
	    hmac(k, 32, "aws4_request", k2) || hmac(k2, 32, sts, k))
		ret = -EINVAL;
	else
		to_hex(k, 32, hex);
	OPENSSL_cleanse(k2, sizeof(k2));
	OPENSSL_cleanse(k, sizeof(k));
	return ret;
}

int wlift__sigv4_authorization(const struct wlift__sigv4_req *r, const char *akid,
			       const char *secret, char **out)
{
	char *canon = NULL, *sh = NULL, *sts = NULL, sig[65];
	size_t n;
	int ret;

	*out = NULL;
	if (!akid)
		return -EINVAL;
	ret = wlift__sigv4_canonical(r, &canon, &sh);
	if (!ret)
		ret = wlift__sigv4_string_to_sign(r, canon, &sts);
	if (!ret)
		ret = wlift__sigv4_signature(r, secret, sts, sig);
	if (ret)
		goto out;
	n = strlen(akid) + strlen(r->region) + strlen(r->service) + strlen(sh) + 200;
	*out = malloc(n);
	if (!*out) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(*out, n,
		 "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
		 "Signature=%s",
		 akid, r->amz_date, r->region, r->service, sh, sig);
out:
	free(canon);
	free(sh);
	free(sts);
	return ret;
}
