/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3:// sources. An object is an HTTP source (http.c: ranged GETs, If-Match, every check of
 * Content-Range and ETag) whose requests are signed here through the request-auth hook with
 * AWS Signature V4 (UNSIGNED-PAYLOAD, as S3 allows for GETs; x-amz-security-token for
 * temporary credentials), or sent unsigned for public buckets. The bucket is addressed
 * virtual-hosted on AWS (bucket.s3.REGION.amazonaws.com) and path-style on custom endpoints
 * (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL: MinIO, Ceph, moto, an nginx serving /bucket/key),
 * as boto3 does. S3 answers errors with an XML body whose <Code> and <Message> go into the
 * diagnostic (no other byte of it). A prefix is listed with ListObjectsV2, following
 * continuation tokens.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "source/awscreds.h"
#include "source/http.h"
#include "source/s3.h"
#include "source/sigv4.h"
#include "source/xml.h"

#ifdef WLIFT_HAVE_CURL
#include <curl/curl.h>
#endif

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* ---- the URI and where its requests go ----------------------------------------------- */

void wlift__s3_loc_free(struct wlift__s3_loc *loc)
{
	if (loc) {
		free(loc->key);
		loc->key = NULL;
	}
}

/* Bucket names S3 accepts today, plus the upper case and '_' that older buckets and other
 * stores allow (path-style only). */
static int bucket_ok(const char *b, size_t n, int *dns)
{
	*dns = n >= 3 && n <= 63;
	if (n == 0 || n >= 256)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
			continue;
		if (c == '.') {
			*dns = 0; /* a dotted name does not match the wildcard certificate */
			continue;
		}
		if ((c >= 'A' && c <= 'Z') || c == '_') {
			*dns = 0;
			continue;
		}
		return 0;
	}
	if (b[0] == '-' || b[n - 1] == '-')
		*dns = 0;
	return 1;
}

/* Region cache of discovered buckets (process-wide; buckets do not move). */
static pthread_mutex_t region_mu = PTHREAD_MUTEX_INITIALIZER;
static struct region_entry {
	struct region_entry *next;
	char bucket[256], region[64];
} *regions;

static int region_cached(const char *bucket, char *out, size_t cap)
{
	int found = 0;

	pthread_mutex_lock(&region_mu);
	for (struct region_entry *e = regions; e && !found; e = e->next)
		if (strcmp(e->bucket, bucket) == 0) {
			snprintf(out, cap, "%s", e->region);
			found = 1;
		}
	pthread_mutex_unlock(&region_mu);
	return found;
}

static void region_remember(const char *bucket, const char *region)
{
	struct region_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return;
	snprintf(e->bucket, sizeof(e->bucket), "%s", bucket);
	snprintf(e->region, sizeof(e->region), "%s", region);
	pthread_mutex_lock(&region_mu);
	e->next = regions;
	regions = e;
	pthread_mutex_unlock(&region_mu);
}

/* Ask S3 where the bucket is: any answer to an unsigned HEAD of the bucket on the global
 * endpoint (200, 301, 403) carries x-amz-bucket-region. */
static void discover_region(wlift_ctx *ctx, const char *uri, struct wlift__s3_loc *loc)
{
	struct wlift__http_req req = { 0 };
	struct wlift__http_resp resp;
	char url[512];
	wlift_diag d;

	if (region_cached(loc->bucket, loc->region, sizeof(loc->region))) {
		loc->region_from = "the bucket's region (asked of S3)";
		return;
	}
	snprintf(url, sizeof(url), "https://s3.amazonaws.com/%s", loc->bucket);
	req.method = "HEAD";
	req.url = url;
	req.want_header = "x-amz-bucket-region";
	req.timeout_s = 10;
	wlift_diag_clear(&d);
	if (wlift__http_fetch(ctx, uri, NULL, &req, &resp, &d) == 0 && resp.header[0]) {
		snprintf(loc->region, sizeof(loc->region), "%.63s", resp.header);
		loc->region_from = "the bucket's region (asked of S3)";
		region_remember(loc->bucket, loc->region);
	} else {
		wlift__log(ctx, WLIFT_LOG_INFO,
			   "%s: the bucket's region could not be asked of S3 (%s); using %s", uri,
			   d.message[0] ? d.message : "no x-amz-bucket-region",
			   WLIFT_S3_DEFAULT_REGION);
	}
	wlift__http_resp_free(&resp);
}

int wlift__s3_locate(wlift_ctx *ctx, const char *uri, struct wlift__s3_loc *loc, int discover,
		     wlift_diag *d)
{
	const char *p = uri + 5, *slash, *ep, *v;
	char cfg_region[64];
	size_t bn;
	int dns, virt;

	memset(loc, 0, sizeof(*loc));
	ctx = wlift__ctx_or_default(ctx);
	if (strncmp(uri, "s3://", 5) != 0)
		return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.s3",
				       "%s: not an s3:// URI", uri);
	slash = strchr(p, '/');
	bn = slash ? (size_t)(slash - p) : strlen(p);
	if (!bucket_ok(p, bn, &dns))
		return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.s3",
				       "%s: not a valid bucket name (the form is s3://bucket/key)",
				       uri);
	memcpy(loc->bucket, p, bn);
	loc->bucket[bn] = '\0';
	loc->key = strdup(slash ? slash + 1 : "");
	if (!loc->key)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	/* The region, in boto3's order, then the bucket's own when nothing names one. */
	cfg_region[0] = '\0';
	if (ctx->s3_region) {
		snprintf(loc->region, sizeof(loc->region), "%s", ctx->s3_region);
		loc->region_from = "the s3_region option (or WEIGHTLIFT_S3_REGION)";
	} else if ((v = env("AWS_REGION"))) {
		snprintf(loc->region, sizeof(loc->region), "%s", v);
		loc->region_from = "AWS_REGION";
	} else if ((v = env("AWS_DEFAULT_REGION"))) {
		snprintf(loc->region, sizeof(loc->region), "%s", v);
		loc->region_from = "AWS_DEFAULT_REGION";
	} else if (wlift__aws_profile_get("region", cfg_region, sizeof(cfg_region)) &&
		   cfg_region[0]) {
		snprintf(loc->region, sizeof(loc->region), "%s", cfg_region);
		loc->region_from = "the profile's region";
	}
	for (const char *c = loc->region; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
			wlift__s3_loc_free(loc);
			return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "s3.region",
					       "%s: %s is not a region name", uri, loc->region);
		}
	ep = env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3") : env("AWS_ENDPOINT_URL");
	loc->custom = ep != NULL;
	loc->region_auto = !loc->region[0];
	if (!loc->region[0] && region_cached(loc->bucket, loc->region, sizeof(loc->region)))
		loc->region_from = "the bucket's region (as S3 answered it)";
	if (!loc->region[0] && !loc->custom && discover)
		discover_region(ctx, uri, loc);
	if (!loc->region[0]) {
		snprintf(loc->region, sizeof(loc->region), "%s", WLIFT_S3_DEFAULT_REGION);
		loc->region_from = "the default";
	}
	/* Addressing: virtual-hosted on AWS when the name fits a host name, path-style on
	 * custom endpoints (unless asked otherwise). */
	virt = ctx->s3_addressing == 2 ? 1 : ctx->s3_addressing == 1 ? 0 : !loc->custom && dns;
	if (virt && !dns) {
		int code = wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "s3.addressing",
					   "%s: the bucket name %s cannot be a host name: "
					   "virtual-hosted addressing (WEIGHTLIFT_S3_ADDRESSING=virtual) "
					   "needs a DNS-compatible bucket without dots",
					   uri, loc->bucket);
		wlift__s3_loc_free(loc);
		return code;
	}
	loc->path_style = !virt;
	if (loc->custom) {
		const char *hs = strstr(ep, "://");
		size_t n;
		if (!hs || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
			wlift__s3_loc_free(loc);
			return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "s3.endpoint",
					       "%s: the endpoint %s (AWS_ENDPOINT_URL%s) is not an "
					       "http:// or https:// URL",
					       uri, ep, env("AWS_ENDPOINT_URL_S3") ? "_S3" : "");
		}
		hs += 3;
		n = strlen(ep);
		while (n && ep[n - 1] == '/')
			n--;
		if (virt)
			snprintf(loc->base, sizeof(loc->base), "%.*s%s.%.*s", (int)(hs - ep), ep,
				 loc->bucket, (int)(n - (size_t)(hs - ep)), hs);
		else
			snprintf(loc->base, sizeof(loc->base), "%.*s", (int)n, ep);
	} else if (virt) {
		snprintf(loc->base, sizeof(loc->base), "https://%s.s3.%s.amazonaws.com", loc->bucket,
			 loc->region);
	} else {
		snprintf(loc->base, sizeof(loc->base), "https://s3.%s.amazonaws.com", loc->region);
	}
	return 0;
}

/* base + "/bucket" (path-style) + "/" + encoded key (+ "?" query). */
static char *url_with(const struct wlift__s3_loc *loc, const char *key, const char *query)
{
	char *ek = wlift__aws_uri_encode(key, strlen(key), 1), *url;
	size_t n;

	if (!ek)
		return NULL;
	n = strlen(loc->base) + strlen(loc->bucket) + strlen(ek) + (query ? strlen(query) : 0) + 8;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%s%s%s/%s%s%s", loc->base, loc->path_style ? "/" : "",
			 loc->path_style ? loc->bucket : "", ek, query ? "?" : "",
			 query ? query : "");
	free(ek);
	return url;
}

char *wlift__s3_object_url(const struct wlift__s3_loc *loc)
{
	return url_with(loc, loc->key, NULL);
}

#ifdef WLIFT_HAVE_CURL

/* ---- signing: the request-auth hook ---------------------------------------------------- */

struct s3_auth {
	struct wlift__aws_provider *prov; /* NULL: unsigned requests */
	char *uri;
	char region[64];
	char bucket[256];
	int region_auto; /* the region was not the user's: learn the bucket's from errors */
	char ca[1024];
	pthread_mutex_t mu; /* guards from */
	char from[192];	    /* where the last credentials came from */
};

static int s3_headers(void *state, const char *method, const char *url, const char *range,
		      struct curl_slist **hdrs, wlift_diag *d)
{
	struct s3_auth *a = state;
	struct wlift__aws_creds *c = NULL;
	struct wlift__sigv4_header h[5];
	struct wlift__sigv4_req r = { 0 };
	const char *path, *q;
	char host[512], date[17], *pathbuf = NULL, *authz = NULL, *line = NULL;
	struct tm tm;
	time_t now;
	size_t nh = 0, n;
	int ret;

	if (!a->prov)
		return 0;
	c = malloc(sizeof(*c));
	if (!c)
		return wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
	ret = wlift__aws_creds_get(a->prov, NULL, a->uri, c, d);
	if (ret)
		goto out;
	pthread_mutex_lock(&a->mu);
	memcpy(a->from, c->from, sizeof(a->from));
	pthread_mutex_unlock(&a->mu);
	/* The URL is ours (wlift__s3_object_url or a listing): scheme://host[:port]/path?q. */
	path = wlift__sigv4_url_host(url, host, sizeof(host));
	q = path ? strchr(path, '?') : NULL;
	pathbuf = path ? strndup(path, q ? (size_t)(q - path) : strlen(path)) : strdup("/");
	if (!pathbuf) {
		ret = wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
		goto out;
	}
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	h[nh++] = (struct wlift__sigv4_header){ "host", host };
	if (range)
		h[nh++] = (struct wlift__sigv4_header){ "range", range };
	h[nh++] = (struct wlift__sigv4_header){ "x-amz-content-sha256", WLIFT_SIGV4_UNSIGNED };
	h[nh++] = (struct wlift__sigv4_header){ "x-amz-date", date };
	if (c->token[0])
		h[nh++] = (struct wlift__sigv4_header){ "x-amz-security-token", c->token };
	r.method = method;
	r.path = pathbuf;
	r.query = q ? q + 1 : NULL;
	r.headers = h;
	r.nheaders = nh;
	r.payload_hash = WLIFT_SIGV4_UNSIGNED;
	r.region = a->region;
	r.service = "s3";
	r.amz_date = date;
	r.s3 = 1;
	ret = wlift__sigv4_authorization(&r, c->akid, c->secret, &authz);
	if (ret) {
		ret = wlift__diag_set(d, ret, a->uri, NULL, -1, "s3.sign", "%s: signing failed: %s",
				      a->uri, strerror(-ret));
		goto out;
	}
	n = strlen(authz) + strlen(c->token) + 64;
	line = malloc(n);
	if (!line) {
		ret = wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
		goto out;
	}
	{
		const char *lines[4];
		char l0[64], l1[64];
		size_t nl = 0;
		snprintf(l0, sizeof(l0), "x-amz-date: %s", date);
		snprintf(l1, sizeof(l1), "x-amz-content-sha256: %s", WLIFT_SIGV4_UNSIGNED);
		lines[nl++] = l0;
		lines[nl++] = l1;
		snprintf(line, n, "Authorization: %s", authz);
		lines[nl++] = line;
		for (size_t i = 0; i < nl; i++) {
			struct curl_slist *s = curl_slist_append(*hdrs, lines[i]);
			if (!s) {
				ret = wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
				goto out;
			}
			*hdrs = s;
		}
		if (c->token[0]) {
			struct curl_slist *s;
			snprintf(line, n, "x-amz-security-token: %s", c->token);
			s = curl_slist_append(*hdrs, line);
			if (!s) {
				ret = wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
				goto out;
			}
			*hdrs = s;
		}
	}
out:
	if (c) {
		memset(c, 0, sizeof(*c));
		free(c);
	}
	free(pathbuf);
	free(authz);
	free(line);
	return ret;
}

/* S3's error codes that mean the credentials (or their absence) are the problem. */
static int auth_code(const char *code)
{
	static const char *const codes[] = { "AccessDenied", "InvalidAccessKeyId",
					     "SignatureDoesNotMatch", "ExpiredToken",
					     "InvalidToken", "TokenRefreshRequired",
					     "InvalidSecurity", "AllAccessDisabled",
					     "AccountProblem", "RequestTimeTooSkewed" };

	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(codes); i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

/* The bucket's region in a wrong-region answer: <Region> (AuthorizationHeaderMalformed),
 * else the regional host of <Endpoint> (PermanentRedirect: "bucket.s3.REGION.amazonaws.com",
 * "s3.REGION.amazonaws.com", "s3-REGION.amazonaws.com", "s3.dualstack.REGION..."); "" when
 * neither says, or when it is not a region name. */
static void answer_region(const char *body, size_t len, char *out, size_t cap)
{
	char ep[256];
	const char *p;
	size_t n;

	out[0] = '\0';
	if (wlift__xml_text(body, len, "Region", out, cap) <= 0 || !out[0]) {
		out[0] = '\0';
		wlift__xml_text(body, len, "Endpoint", ep, sizeof(ep));
		p = strstr(ep, "s3.dualstack.");
		p = p ? p + 13 : (p = strstr(ep, "s3.")) ? p + 3 : (p = strstr(ep, "s3-")) ? p + 3 : NULL;
		if (!p || strncmp(p, "amazonaws.com", 13) == 0)
			return;
		n = strcspn(p, ".");
		if (n == 0 || n >= cap || strncmp(p + n, ".amazonaws.com", 14) != 0)
			return;
		memcpy(out, p, n);
		out[n] = '\0';
	}
	for (p = out; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
			out[0] = '\0';
			return;
		}
}

static int s3_explain(void *state, long status, const char *ctype, const char *body, size_t len,
		      char *buf, size_t cap)
{
	struct s3_auth *a = state;
	char code[96], msg[320], extra[256], from[sizeof(a->from)];
	int ret = 0, is_auth;

	WLIFT_UNUSED(ctype);
	wlift__xml_text(body, len, "Code", code, sizeof(code));
	wlift__xml_text(body, len, "Message", msg, sizeof(msg));
	extra[0] = '\0';
	if (strcmp(code, "PermanentRedirect") == 0 || strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
	    strcmp(code, "IllegalLocationConstraintException") == 0) {
		char region[64];
		answer_region(body, len, region, sizeof(region));
		snprintf(extra, sizeof(extra), " (signed for %s; %s%s%s)", a->region,
			 region[0] ? "the bucket is in " : "the bucket is in another region: set "
							   "AWS_REGION",
			 region, region[0] ? ": set AWS_REGION to it" : "");
		/* The user named no region: remember the bucket's, for the retry of the open
		 * (s3_open, s3_list) and every later URI of the bucket. */
		if (a->region_auto && region[0] && strcmp(region, a->region) != 0)
			region_remember(a->bucket, region);
		ret = WLIFT_EHTTP;
	} else if (strcmp(code, "NoSuchKey") == 0 || strcmp(code, "NoSuchBucket") == 0) {
		ret = -ENOENT;
	}
	is_auth = auth_code(code) || (!code[0] && (status == 401 || status == 403));
	if (is_auth && !ret)
		ret = WLIFT_EAUTH;
	pthread_mutex_lock(&a->mu);
	memcpy(from, a->from, sizeof(from));
	pthread_mutex_unlock(&a->mu);
	snprintf(buf, cap, "%s%s%s%s%s%s%s", code, code[0] && msg[0] ? ": " : "", msg, extra,
		 is_auth ? (a->prov ? " (credentials from " : " (the request was not signed: ") : "",
		 is_auth ? (a->prov ? from : "WEIGHTLIFT_S3_UNSIGNED is set") : "",
		 is_auth ? ")" : "");
	return ret;
}

static void s3_destroy(void *state)
{
	struct s3_auth *a = state;

	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a->uri);
	free(a);
}

static const char *s3_ca(void *state)
{
	const struct s3_auth *a = state;

	return a->ca[0] ? a->ca : NULL;
}

static const struct wlift__http_auth_ops s3_ops = {
	.name = "s3",
	.flags = WLIFT_HTTP_AUTH_NO_REDIRECT,
	.headers = s3_headers,
	.explain = s3_explain,
	.destroy = s3_destroy,
	.ca_bundle = s3_ca,
};

/* The auth for loc's requests (unsigned when asked). */
static int auth_new(wlift_ctx *ctx, const char *uri, const struct wlift__s3_loc *loc,
		    struct wlift__http_auth *out, wlift_diag *d)
{
	struct s3_auth *a = calloc(1, sizeof(*a));
	const char *ca = env("AWS_CA_BUNDLE");
	int ret;

	memset(out, 0, sizeof(*out));
	if (!a || !(a->uri = strdup(uri))) {
		free(a);
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	pthread_mutex_init(&a->mu, NULL);
	snprintf(a->region, sizeof(a->region), "%s", loc->region);
	snprintf(a->bucket, sizeof(a->bucket), "%s", loc->bucket);
	a->region_auto = loc->region_auto;
	if (!ctx->s3_unsigned) {
		ret = wlift__aws_provider(ctx, uri, &a->prov, d);
		if (ret) {
			s3_destroy(a);
			return ret;
		}
	}
	out->ops = &s3_ops;
	out->state = a;
	if (ca)
		snprintf(a->ca, sizeof(a->ca), "%s", ca);
	return 0;
}

/* ---- listing ------------------------------------------------------------------------- */

struct names {
	char **v;
	size_t n, cap;
};

static int names_add(struct names *ns, const char *s)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 64;
		char **v = realloc(ns->v, cap * sizeof(char *));
		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n] = strdup(s);
	if (!ns->v[ns->n])
		return -ENOMEM;
	ns->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A listing answer that is not a 200: the server's Code/Message (through explain). */
static int list_error(const char *uri, struct wlift__http_auth *auth,
		      const struct wlift__http_resp *resp, wlift_diag *d)
{
	char why[768];
	int code = s3_explain(auth->state, resp->status, resp->ctype, resp->body, resp->len, why,
			      sizeof(why));
	long st = resp->status;

	if (!code)
		code = st == 401 || st == 403 ? WLIFT_EAUTH : st == 404 ? -ENOENT : WLIFT_EHTTP;
	return wlift__diag_set(d, code, uri, NULL, -1, code == WLIFT_EAUTH ? "http.auth" : "http.status",
			       "%s: listing (ListObjectsV2): HTTP %ld%s%s", uri, st,
			       why[0] ? ": " : "", why);
}

/* ListObjectsV2 of prefix with the '/' delimiter: keys directly under it, every page; at
 * most `limit` keys (stat asks for one). */
static int list_prefix(wlift_ctx *ctx, const char *uri, const struct wlift__s3_loc *loc,
		       const char *prefix, size_t limit, struct names *ns, wlift_diag *d)
{
	struct wlift__http_auth auth;
	struct wlift__http_req req = { 0 };
	struct wlift__http_resp resp = { 0 };
	char *token = NULL, *eprefix = NULL, *q = NULL, *url = NULL;
	char *key = NULL;
	size_t plen = strlen(prefix), pages = 0;
	int ret;

	ret = auth_new(ctx, uri, loc, &auth, d);
	if (ret)
		return ret;
	key = malloc(4096);
	eprefix = wlift__aws_uri_encode(prefix, plen, 0);
	if (!key || !eprefix) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	for (;;) {
		char *etok = token ? wlift__aws_uri_encode(token, strlen(token), 0) : NULL;
		size_t qn = strlen(eprefix) + (etok ? strlen(etok) : 0) + 128;
		unsigned max = ctx->s3_list_max ? ctx->s3_list_max : WLIFT_S3_LIST_MAX_KEYS;
		long off;
		char trunc[16];

		if (limit < max)
			max = (unsigned)limit;
		free(q);
		free(url);
		url = NULL;
		q = malloc(qn);
		if (!q || (token && !etok)) {
			free(etok);
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		snprintf(q, qn, "list-type=2&delimiter=%%2F&max-keys=%u&prefix=%s%s%s", max, eprefix,
			 etok ? "&continuation-token=" : "", etok ? etok : "");
		free(etok);
		url = url_with(loc, "", q);
		if (!url) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		req.url = url;
		req.max_body = 64u << 20;
		wlift__http_resp_free(&resp);
		ret = wlift__http_fetch(ctx, uri, &auth, &req, &resp, d);
		if (ret)
			goto out;
		if (resp.status != 200) {
			ret = list_error(uri, &auth, &resp, d);
			goto out;
		}
		pages++;
		/* <Contents><Key>...</Key>...</Contents>, in order. */
		for (size_t pos = 0; pos < resp.len;) {
			long r = wlift__xml_text(resp.body + pos, resp.len - pos, "Key", key, 4096);
			if (r == 0)
				break;
			if (r < 0) {
				ret = wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "s3.list",
						      "%s: a key in the listing is longer than 4 KiB",
						      uri);
				goto out;
			}
			pos += (size_t)r;
			if (strncmp(key, prefix, plen) != 0 || !key[plen] || strchr(key + plen, '/'))
				continue; /* the prefix itself (a folder marker) or deeper */
			if (ns->n >= WLIFT_S3_LIST_LIMIT) {
				ret = wlift__diag_set(d, -E2BIG, uri, NULL, -1, "s3.list",
						      "%s: more than %u keys under the prefix", uri,
						      WLIFT_S3_LIST_LIMIT);
				goto out;
			}
			if (names_add(ns, key + plen)) {
				ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		wlift__xml_text(resp.body, resp.len, "IsTruncated", trunc, sizeof(trunc));
		if (strcmp(trunc, "true") != 0 || ns->n >= limit)
			break;
		free(token);
		token = malloc(4096);
		if (!token) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		off = wlift__xml_text(resp.body, resp.len, "NextContinuationToken", token, 4096);
		if (off <= 0 || !token[0]) {
			ret = wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "s3.list",
					      "%s: a truncated listing without a continuation token "
					      "(page %zu)",
					      uri, pages);
			goto out;
		}
	}
	wlift__log(ctx, WLIFT_LOG_DEBUG, "%s: %zu keys in %zu listing pages", uri, ns->n, pages);
	ret = 0;
out:
	wlift__http_resp_free(&resp);
	s3_destroy(auth.state);
	free(token);
	free(eprefix);
	free(q);
	free(url);
	free(key);
	return ret;
}

/* ---- scheme functions ------------------------------------------------------------------ */

/* After a failed request of loc (code ret): whether the answer taught this process the
 * bucket's region (s3_explain) and loc's was not the user's, so that the request is worth
 * making once more with loc located again. Logs why. */
static int region_corrected(wlift_ctx *ctx, const char *uri, const struct wlift__s3_loc *loc,
			    int ret)
{
	char r[64];

	if (ret != WLIFT_EHTTP || !loc->region_auto ||
	    !region_cached(loc->bucket, r, sizeof(r)) || strcmp(r, loc->region) == 0)
		return 0;
	wlift__log(ctx, WLIFT_LOG_INFO, "%s: the bucket %s is in %s, not %s (%s): asking again",
		   uri, loc->bucket, r, loc->region, loc->region_from);
	return 1;
}

/* list_prefix of loc, and once more with loc located again when its answer taught this
 * process the bucket's region (region_corrected); ns holds only the last try's names. */
static int list_located(wlift_ctx *ctx, const char *uri, struct wlift__s3_loc *loc,
			const char *prefix, size_t max, struct names *ns, wlift_diag *d)
{
	int ret = list_prefix(ctx, uri, loc, prefix, max, ns, d);

	if (!region_corrected(ctx, uri, loc, ret))
		return ret;
	wlift__strv_free(ns->v, ns->n);
	memset(ns, 0, sizeof(*ns));
	wlift__s3_loc_free(loc);
	wlift_diag_clear(d);
	ret = wlift__s3_locate(ctx, uri, loc, 1, d);
	return ret ? ret : list_prefix(ctx, uri, loc, prefix, max, ns, d);
}

/* The object at loc opened over HTTP with loc's auth (which goes with the open). */
static int open_object(wlift_ctx *ctx, const char *uri, const struct wlift__s3_loc *loc,
		       struct wlift__source **out, wlift_diag *d)
{
	struct wlift__http_auth auth;
	char *url = wlift__s3_object_url(loc);
	int ret;

	if (!url)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	ret = auth_new(ctx, uri, loc, &auth, d);
	if (!ret)
		ret = wlift__http_open_url(ctx, uri, url, &auth, out, d);
	free(url);
	return ret;
}

int wlift__s3_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	struct wlift__s3_loc loc;
	struct names ns = { 0 };
	char *prefix = NULL;
	int ret;

	ctx = wlift__ctx_or_default(ctx);
	ret = wlift__s3_locate(ctx, uri, &loc, 0, d);
	if (ret)
		return ret;
	if (!loc.key[0] || has_suffix(loc.key, "/")) {
		*kind = WLIFT_STAT_CONTAINER;
		goto out;
	}
	*kind = WLIFT_STAT_OBJECT;
	if (has_suffix(loc.key, ".safetensors") || has_suffix(loc.key, ".json"))
		goto out;
	/* s3://bucket/dir without the '/': a directory when anything is under "dir/". */
	wlift__s3_loc_free(&loc);
	ret = wlift__s3_locate(ctx, uri, &loc, 1, d);
	if (ret)
		return ret;
	prefix = malloc(strlen(loc.key) + 2);
	if (!prefix) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	sprintf(prefix, "%s/", loc.key);
	ret = list_located(ctx, uri, &loc, prefix, 1, &ns, d);
	if (ret)
		goto out;
	if (ns.n)
		*kind = WLIFT_STAT_CONTAINER;
out:
	wlift__strv_free(ns.v, ns.n);
	free(prefix);
	wlift__s3_loc_free(&loc);
	return ret;
}

int wlift__s3_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n, wlift_diag *d)
{
	struct wlift__s3_loc loc;
	struct names ns = { 0 };
	char *prefix = NULL;
	int ret;

	*names = NULL;
	*n = 0;
	ctx = wlift__ctx_or_default(ctx);
	ret = wlift__s3_locate(ctx, uri, &loc, 1, d);
	if (ret)
		return ret;
	prefix = malloc(strlen(loc.key) + 2);
	if (!prefix) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	sprintf(prefix, "%s%s", loc.key, loc.key[0] && !has_suffix(loc.key, "/") ? "/" : "");
	ret = list_located(ctx, uri, &loc, prefix, SIZE_MAX, &ns, d);
	if (ret)
		goto out;
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(char *), cmp_str);
	*names = ns.v;
	*n = ns.n;
	ns.v = NULL;
	ns.n = 0;
out:
	wlift__strv_free(ns.v, ns.n);
	free(prefix);
	wlift__s3_loc_free(&loc);
	return ret;
}

int wlift__s3_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out, wlift_diag *d)
{
	struct wlift__s3_loc loc;
	int ret;

	*out = NULL;
	ctx = wlift__ctx_or_default(ctx);
	ret = wlift__s3_locate(ctx, uri, &loc, 1, d);
	if (ret)
		return ret;
	if (!loc.key[0] || has_suffix(loc.key, "/")) {
		ret = wlift__diag_set(d, -EISDIR, uri, NULL, -1, "uri.s3",
				      "%s: names a prefix, not an object", uri);
		goto out;
	}
	ret = open_object(ctx, uri, &loc, out, d);
	if (region_corrected(ctx, uri, &loc, ret)) {
		/* Once: the region S3 named, its endpoint on AWS; the auth went with the open. */
		wlift__s3_loc_free(&loc);
		wlift_diag_clear(d);
		ret = wlift__s3_locate(ctx, uri, &loc, 1, d);
		if (!ret)
			ret = open_object(ctx, uri, &loc, out, d);
	}
out:
	wlift__s3_loc_free(&loc);
	return ret;
}

#else /* !WLIFT_HAVE_CURL */

static int no_curl(const char *uri, wlift_diag *d)
{
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, uri, NULL, -1, "uri.scheme",
			       "%s: s3 sources are not supported by this build (built without "
			       "libcurl)",
			       uri);
}

int wlift__s3_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	WLIFT_UNUSED(kind);
	return no_curl(uri, d);
}

int wlift__s3_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n, wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*names = NULL;
	*n = 0;
	return no_curl(uri, d);
}

int wlift__s3_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out, wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*out = NULL;
	return no_curl(uri, d);
}

#endif
