/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Google Cloud Storage source: gs://bucket/key through the JSON API, which both the real
 * service and gcp-storage-emulator serve under the same paths (the XML API has no listing
 * in the emulator). Opening an object costs two requests: its metadata (objects.get: the
 * generation and size; a missing object is a clean 404 with the service's message) and the
 * HTTP source's probe, a ranged GET of the media download URL with ifGenerationMatch=G, the
 * URL every read of the load then uses. The generation pins the object: if it is replaced
 * while loading, every later request is answered 412 and the load fails as changed, whatever
 * the ETag does (the JSON API's ETag also changes with metadata-only updates). Each request
 * carries the credential's bearer token (gcs_auth.c) through the HTTP source's request-auth
 * hook; error answers are explained by the JSON error's "message" and, for 401 and 403, the
 * credential that was used. Listing a prefix is objects.list with delimiter '/', page after
 * page (pageToken) until the last.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "source/gcs.h"
#include "source/gcs_auth.h"
#include "source/http.h"
#include "source/retry.h"

/* objects.list pages: the service's maximum page size; a listing of more pages than this is
 * not a checkpoint directory. */
#define GCS_LIST_PAGE 1000
#define GCS_LIST_MAX_PAGES 10000
/* Metadata and listing answers larger than this are refused. */
#define GCS_MAX_JSON (16u << 20)

int wlift__gcs_scheme(const char *uri)
{
	return strncmp(uri, "gs://", 5) == 0;
}

static int bad_uri(const char *uri, const char *why, wlift_diag *d)
{
	return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.gs",
			       "%s: %s (the form is gs://bucket/object or gs://bucket/prefix/)", uri,
			       why);
}

int wlift__gcs_split(const char *uri, char **bucket, char **key, wlift_diag *d)
{
	const char *b = uri + 5, *slash;
	size_t blen;

	*bucket = *key = NULL;
	if (!wlift__gcs_scheme(uri))
		return bad_uri(uri, "not a gs:// URI", d);
	slash = strchr(b, '/');
	blen = slash ? (size_t)(slash - b) : strlen(b);
	if (blen < 3 || blen > 222)
		return bad_uri(uri, "a bucket name has 3 to 222 characters", d);
	for (size_t i = 0; i < blen; i++) {
		char c = b[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && c != '-' && c != '_' && c != '.')
			return bad_uri(uri, "a bucket name has only lowercase letters, digits, "
					    "'-', '_' and '.'",
				       d);
		if (!alnum && (i == 0 || i == blen - 1))
			return bad_uri(uri, "a bucket name starts and ends with a letter or digit",
				       d);
	}
	if (slash && (strlen(slash + 1) > 1024 || strpbrk(slash + 1, "\r\n")))
		return bad_uri(uri, "an object name has at most 1024 bytes and no CR or LF", d);
	*bucket = strndup(b, blen);
	*key = strdup(slash ? slash + 1 : "");
	if (!*bucket || !*key) {
		free(*bucket);
		free(*key);
		*bucket = *key = NULL;
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	return 0;
}

char *wlift__gcs_endpoint(const char *emulator)
{
	const char *e = emulator && *emulator ? emulator : WLIFT_GCS_ENDPOINT;
	size_t n = strlen(e);
	int scheme = strstr(e, "://") != NULL;
	char *out;

	while (n && e[n - 1] == '/')
		n--;
	/* Google's client libraries accept "host:port" and prepend http://. */
	out = malloc(n + 8);
	if (out)
		snprintf(out, n + 8, "%s%.*s", scheme ? "" : "http://", (int)n, e);
	return out;
}

char *wlift__gcs_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *wlift__gcs_object_url(const char *endpoint, const char *bucket, const char *key,
			    int media, const char *generation)
{
	char *eb = wlift__gcs_escape(bucket), *ek = wlift__gcs_escape(key), *url = NULL;
	char *eg = generation && *generation ? wlift__gcs_escape(generation) : NULL;

	if (eb && ek && (eg || !generation || !*generation)) {
		/* The metadata request asks only for what the open uses. */
		if (asprintf(&url, "%s/storage/v1/b/%s/o/%s?%s%s%s", endpoint, eb, ek,
			     media ? "alt=media" : "fields=name%2Csize%2Cgeneration",
			     eg ? "&ifGenerationMatch=" : "", eg ? eg : "") < 0)
			url = NULL;
	}
	free(eg);
	free(ek);
	free(eb);
	return url;
}

char *wlift__gcs_list_url(const char *endpoint, const char *bucket, const char *prefix,
			  const char *page_token)
{
	char *eb = wlift__gcs_escape(bucket), *ep = wlift__gcs_escape(prefix), *url = NULL;
	char *et = page_token ? wlift__gcs_escape(page_token) : NULL;

	if (eb && ep && (et || !page_token)) {
		if (asprintf(&url,
			     "%s/storage/v1/b/%s/o?prefix=%s&delimiter=%%2F&maxResults=%d&fields="
			     "items%%28name%%29%%2CnextPageToken%s%s",
			     endpoint, eb, ep, GCS_LIST_PAGE, et ? "&pageToken=" : "",
			     et ? et : "") < 0)
			url = NULL;
	}
	free(et);
	free(ep);
	free(eb);
	return url;
}

static struct json_object *parse_json(const char *body, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;

	if (!tok)
		return NULL;
	if (len <= (size_t)0x7fffffff)
		o = json_tokener_parse_ex(tok, body, (int)len);
	if (o && (json_tokener_get_error(tok) != json_tokener_success ||
		  !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

int wlift__gcs_list_parse(const char *body, size_t len, const char *prefix, char ***names,
			  size_t *n, size_t *cap, char **next)
{
	struct json_object *root = parse_json(body, len), *items = NULL, *v;
	size_t plen = strlen(prefix);
	int ret = 0;

	*next = NULL;
	if (!root)
		return WLIFT_EJSON;
	if (json_object_object_get_ex(root, "items", &items) &&
	    !json_object_is_type(items, json_type_array)) {
		ret = WLIFT_EJSON;
		goto out;
	}
	for (size_t i = 0; items && i < json_object_array_length(items); i++) {
		struct json_object *it = json_object_array_get_idx(items, i), *nm;
		const char *name;
		if (!json_object_is_type(it, json_type_object) ||
		    !json_object_object_get_ex(it, "name", &nm) ||
		    !json_object_is_type(nm, json_type_string)) {
			ret = WLIFT_EJSON;
			goto out;
		}
		name = json_object_get_string(nm);
		/* Only names directly under the prefix: not the placeholder "dir/" object, not
		 * deeper ones (the delimiter already leaves those out on a real service). */
		if (strncmp(name, prefix, plen) != 0 || !name[plen] || strchr(name + plen, '/'))
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? 2 * *cap : 64;
			char **nn = realloc(*names, nc * sizeof(char *));
			if (!nn) {
				ret = -ENOMEM;
				goto out;
			}
			*names = nn;
			*cap = nc;
		}
		if (!((*names)[*n] = strdup(name + plen))) {
			ret = -ENOMEM;
			goto out;
		}
		(*n)++;
	}
	if (json_object_object_get_ex(root, "nextPageToken", &v) &&
	    json_object_is_type(v, json_type_string) && *json_object_get_string(v) &&
	    !(*next = strdup(json_object_get_string(v))))
		ret = -ENOMEM;
out:
	json_object_put(root);
	return ret;
}

void wlift__gcs_error_message(const char *body, size_t len, char *buf, size_t cap)
{
	struct json_object *root = body ? parse_json(body, len) : NULL, *e, *m;

	buf[0] = '\0';
	if (root && json_object_object_get_ex(root, "error", &e) &&
	    json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "message", &m) &&
	    json_object_is_type(m, json_type_string)) {
		/* One line: the service's message may hold newlines. */
		snprintf(buf, cap, "%s", json_object_get_string(m));
		for (char *p = buf; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
	}
	json_object_put(root);
}

/* ---- the request-auth hook -------------------------------------------------------------- */

struct gcs_auth {
	struct wlift__gcs_cred *cred; /* process-wide, never freed */
	char *uri;
};

static int gcs_headers(void *state, const char *method, const char *url, const char *range,
		       struct curl_slist **hdrs, wlift_diag *d);

/* Explain an error answer: the JSON error's message, and the credential for 401/403. */
static int gcs_explain(void *state, long status, const char *ctype, const char *body,
		       size_t len, char *buf, size_t cap)
{
	struct gcs_auth *a = state;
	char msg[320];

	WLIFT_UNUSED(ctype);
	wlift__gcs_error_message(body, len, msg, sizeof(msg));
	if (status == 401)
		wlift__gcs_cred_invalidate(a->cred); /* a later request fetches a new token */
	if (status == 401 || status == 403)
		snprintf(buf, cap, "%s%s%s", msg, msg[0] ? "; credentials: " : "credentials: ",
			 wlift__gcs_cred_what(a->cred));
	else
		snprintf(buf, cap, "%s", msg);
	return 0;
}

static void gcs_auth_destroy(void *state)
{
	struct gcs_auth *a = state;

	if (a)
		free(a->uri);
	free(a);
}

static const struct wlift__http_auth_ops gcs_auth_ops = {
	.name = "gs",
	/* The generation in the URL pins the object (ifGenerationMatch); the JSON API's ETag
	 * also changes with metadata-only updates, so it is no identity here. */
	.flags = WLIFT_HTTP_AUTH_URL_IDENTITY,
	.headers = gcs_headers,
	.explain = gcs_explain,
	.destroy = gcs_auth_destroy,
};

#ifdef WLIFT_HAVE_CURL

#include <curl/curl.h>

static int gcs_headers(void *state, const char *method, const char *url, const char *range,
		       struct curl_slist **hdrs, wlift_diag *d)
{
	struct gcs_auth *a = state;
	struct curl_slist *h;
	char *line = NULL;
	int ret;

	WLIFT_UNUSED(method);
	WLIFT_UNUSED(url);
	WLIFT_UNUSED(range);
	ret = wlift__gcs_auth_header(a->cred, a->uri, &line, d);
	if (ret || !line)
		return ret;
	h = curl_slist_append(*hdrs, line);
	free(line);
	if (!h)
		return wlift__diag_set(d, -ENOMEM, a->uri, NULL, -1, NULL, NULL);
	*hdrs = h;
	return 0;
}

#else

static int gcs_headers(void *state, const char *method, const char *url, const char *range,
		       struct curl_slist **hdrs, wlift_diag *d)
{
	struct gcs_auth *a = state;

	WLIFT_UNUSED(method);
	WLIFT_UNUSED(url);
	WLIFT_UNUSED(range);
	WLIFT_UNUSED(hdrs);
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, a->uri, NULL, -1, "uri.scheme",
			       "%s: gs:// sources are not supported by this build (built without "
			       "libcurl)",
			       a->uri);
}

#endif

/* The hook's state for uri: its credential. */
static int auth_new(wlift_ctx *ctx, const char *uri, struct wlift__http_auth *out,
		    wlift_diag *d)
{
	struct gcs_auth *a = calloc(1, sizeof(*a));
	int ret;

	out->ops = NULL;
	out->state = NULL;
	if (!a || !(a->uri = strdup(uri))) {
		free(a);
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	ret = wlift__gcs_cred_get(ctx, uri, &a->cred, d);
	if (ret) {
		gcs_auth_destroy(a);
		return ret;
	}
	out->ops = &gcs_auth_ops;
	out->state = a;
	return 0;
}

static const char *reason(long st)
{
	switch (st) {
	case 400: return " Bad Request";
	case 401: return " Unauthorized";
	case 403: return " Forbidden";
	case 404: return " Not Found";
	case 412: return " Precondition Failed";
	case 429: return " Too Many Requests";
	case 500: return " Internal Server Error";
	case 503: return " Service Unavailable";
	default: return "";
	}
}

/* The error for a metadata or listing answer with status >= 300. */
static int answer_error(struct wlift__http_auth *auth, const char *uri,
			const struct wlift__http_resp *r, const char *what, wlift_diag *d)
{
	char why[768];
	long st = r->status;
	int code = st == 401 || st == 403 ? WLIFT_EAUTH
		   : st == 404 || st == 410 ? -ENOENT
		   : st == 412		    ? WLIFT_ECHANGED
					    : WLIFT_EHTTP;

	gcs_explain(auth->state, st, r->ctype, r->body, r->len, why, sizeof(why));
	return wlift__diag_set(d, code, uri, NULL, -1,
			       code == WLIFT_EAUTH ? "http.auth" : "http.status",
			       "%s: HTTP %ld%s (%s)%s%s%s", uri, st, reason(st), what,
			       why[0] ? ": " : "", why,
			       !why[0] && strncasecmp(r->ctype, "text/html", 9) == 0
				       ? " (an HTML page)"
				       : "");
}

static int transient(long st)
{
	return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

/* GET url with auth into *r (status 2xx) or an error. 408, 429 and 5xx answers are retried
 * as object reads are (the context's http_retries, backoff with jitter, Retry-After is not
 * read here); connection failures are not (the reads after it retry theirs). */
static int get_json(wlift_ctx *ctx, const char *uri, struct wlift__http_auth *auth,
		    const char *url, const char *what, struct wlift__http_resp *r, wlift_diag *d)
{
	struct wlift__http_req req = { 0 };
	unsigned base = ctx->http_retry_base_ms ? ctx->http_retry_base_ms : WLIFT_HTTP_RETRY_BASE_MS;
	unsigned max = ctx->http_retry_max_ms ? ctx->http_retry_max_ms : WLIFT_HTTP_RETRY_MAX_MS;
	uint64_t seed = (uint64_t)(uintptr_t)r ^ (uint64_t)(wlift__now() * 1e9) ^ 1;
	int ret;

	req.url = url;
	req.max_body = GCS_MAX_JSON;
	for (unsigned attempt = 1;; attempt++) {
		ret = wlift__http_fetch(ctx, uri, auth, &req, r, d);
		if (ret)
			return ret;
		if (r->status >= 200 && r->status < 300)
			return 0;
		if (!transient(r->status) || attempt > ctx->http_retries)
			break;
		{
			double w = wlift__retry_backoff(attempt, base, max, -1, &seed);
			struct timespec ts = { (time_t)w, (long)((w - (double)(time_t)w) * 1e9) };
			wlift__log(ctx, WLIFT_LOG_INFO, "%s: HTTP %ld (%s), attempt %u of %u, again in %.2f s",
				   uri, r->status, what, attempt, 1 + ctx->http_retries, w);
			wlift__http_resp_free(r);
			nanosleep(&ts, NULL);
		}
	}
	ret = answer_error(auth, uri, r, what, d);
	wlift__http_resp_free(r);
	return ret;
}

/* ---- the locator's functions ------------------------------------------------------------ */

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Whether key names a prefix: empty, ending in '/', or (object stores have no directories,
 * and gs://bucket/llama is how people name a checkpoint directory) a last segment that is
 * neither *.safetensors nor *.json. */
static int is_prefix(const char *key)
{
	return !*key || has_suffix(key, "/") ||
	       !(has_suffix(key, ".safetensors") || has_suffix(key, ".json"));
}

int wlift__gcs_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	char *bucket = NULL, *key = NULL;
	int ret;

	WLIFT_UNUSED(ctx);
	ret = wlift__gcs_split(uri, &bucket, &key, d);
	if (ret)
		return ret;
	*kind = is_prefix(key) ? WLIFT_STAT_CONTAINER : WLIFT_STAT_OBJECT;
	free(bucket);
	free(key);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int wlift__gcs_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		    wlift_diag *d)
{
	struct wlift__http_auth auth = { 0 };
	struct wlift__http_resp r = { 0 };
	char *bucket = NULL, *key = NULL, *ep = NULL, *url = NULL, *tok = NULL, *next = NULL;
	char **v = NULL;
	size_t nv = 0, cap = 0;
	unsigned pages = 0;
	int ret;

	*names = NULL;
	*n = 0;
	ret = wlift__gcs_split(uri, &bucket, &key, d);
	if (ret)
		return ret;
	if (*key && key[strlen(key) - 1] != '/') {
		/* gs://b/dir names the prefix "dir/". */
		char *k = NULL;
		if (asprintf(&k, "%s/", key) < 0) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		free(key);
		key = k;
	}
	ep = wlift__gcs_endpoint(ctx->gcs_emulator);
	if (!ep) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = auth_new(ctx, uri, &auth, d);
	if (ret)
		goto out;
	do {
		free(url);
		url = wlift__gcs_list_url(ep, bucket, key, tok);
		if (!url) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		ret = get_json(ctx, uri, &auth, url, "listing the prefix", &r, d);
		if (ret)
			goto out;
		ret = wlift__gcs_list_parse(r.body, r.len, key, &v, &nv, &cap, &next);
		wlift__http_resp_free(&r);
		if (ret) {
			ret = wlift__diag_set(d, ret, uri, NULL, -1,
					      ret == -ENOMEM ? NULL : "gcs.list",
					      ret == -ENOMEM ? NULL
							     : "%s: the listing's page %u is not an "
							       "objects.list answer",
					      uri, pages + 1);
			goto out;
		}
		/* A token that repeats would list forever. */
		if (next && tok && strcmp(next, tok) == 0) {
			ret = wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "gcs.list",
					      "%s: the listing's page %u gives its own page token "
					      "again",
					      uri, pages + 1);
			goto out;
		}
		free(tok);
		tok = next;
		next = NULL;
		if (++pages >= GCS_LIST_MAX_PAGES && tok) {
			ret = wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "gcs.list",
					      "%s: more than %u pages of names under the prefix",
					      uri, GCS_LIST_MAX_PAGES);
			goto out;
		}
	} while (tok);
	if (nv)
		qsort(v, nv, sizeof(char *), cmp_str);
	*names = v;
	*n = nv;
	v = NULL;
	nv = 0;
	ret = 0;
out:
	wlift__strv_free(v, nv);
	if (auth.ops)
		auth.ops->destroy(auth.state);
	free(next);
	free(tok);
	free(url);
	free(ep);
	free(key);
	free(bucket);
	return ret;
}

int wlift__gcs_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		    wlift_diag *d)
{
	struct wlift__http_auth auth = { 0 };
	struct wlift__http_resp r = { 0 };
	struct json_object *meta = NULL, *v;
	char *bucket = NULL, *key = NULL, *ep = NULL, *url = NULL, *gen = NULL;
	unsigned long long size = 0;
	int have_size = 0, ret;

	*out = NULL;
	ret = wlift__gcs_split(uri, &bucket, &key, d);
	if (ret)
		return ret;
	if (!*key) {
		ret = bad_uri(uri, "no object named", d);
		goto out;
	}
	ep = wlift__gcs_endpoint(ctx->gcs_emulator);
	url = ep ? wlift__gcs_object_url(ep, bucket, key, 0, NULL) : NULL;
	if (!url) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = auth_new(ctx, uri, &auth, d);
	if (ret)
		goto out;
	/* The object's generation and size. */
	ret = get_json(ctx, uri, &auth, url, "object metadata", &r, d);
	if (ret)
		goto out;
	meta = parse_json(r.body, r.len);
	if (meta && json_object_object_get_ex(meta, "generation", &v) &&
	    json_object_is_type(v, json_type_string) &&
	    strspn(json_object_get_string(v), "0123456789") == strlen(json_object_get_string(v)))
		gen = strdup(json_object_get_string(v));
	if (meta && json_object_object_get_ex(meta, "size", &v) &&
	    json_object_is_type(v, json_type_string)) {
		char *end = NULL;
		errno = 0;
		size = strtoull(json_object_get_string(v), &end, 10);
		have_size = !errno && end && !*end && end != json_object_get_string(v);
	}
	if (!meta || !have_size) {
		ret = wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "gcs.metadata",
				      "%s: the object metadata answer is not a JSON object with a "
				      "size",
				      uri);
		goto out;
	}
	free(url);
	url = wlift__gcs_object_url(ep, bucket, key, 1, gen);
	if (!url) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = wlift__http_open_url(ctx, uri, url, &auth, out, d);
	auth.ops = NULL; /* the source owns it now (or freed it) */
	if (ret)
		goto out;
	/* The generation is the object's identity (the local cache keys on it). */
	if (gen)
		wlift__http_set_identity(*out, gen);
	if ((*out)->size != size) {
		ret = wlift__diag_set(d, WLIFT_ECHANGED, uri, NULL, -1, "http.changed",
				      "%s: the object changed while opening (%llu bytes in its "
				      "metadata, %llu in its download)",
				      uri, size, (unsigned long long)(*out)->size);
		wlift__source_unref(*out);
		*out = NULL;
	}
out:
	if (auth.ops)
		auth.ops->destroy(auth.state);
	json_object_put(meta);
	wlift__http_resp_free(&r);
	free(gen);
	free(url);
	free(ep);
	free(key);
	free(bucket);
	return ret;
}
