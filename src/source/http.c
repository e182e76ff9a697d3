/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP(S) source: an object behind an http://, https:// or hf:// URI, read with ranged GETs
 * through libcurl's multi interface, driven from the engine's own workers (each worker's read
 * queue is one multi handle with its own connection cache; no thread of ours). Opening costs
 * one request: a ranged GET of the first WLIFT_HEADER_PROBE bytes gives the size (from
 * Content-Range), the identity (ETag, Last-Modified), the URL the redirects ended at, and
 * the bytes the header read then takes from memory. Every later read asks that URL for
 * exactly its range with If-Match (or If-Unmodified-Since) on the identity, and checks that
 * the answer is a 206 whose Content-Range is what was asked and whose body fills it: bytes
 * are written by curl's write callback straight into the engine's destination. Servers that
 * ignore Range (a 200 with the whole object) are refused, except when the whole object was
 * asked for. The multi handle of a finished queue is kept by the source that made it, so
 * that the next queue (the load after the open, the next get_slice) reuses its connections.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "source/http.h"
#include "source/retry.h"

int wlift__http_scheme(const char *uri)
{
	return strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0 ||
	       strncmp(uri, "hf://", 5) == 0;
}

/* ---- pieces that need no libcurl: the hf:// mapping, Content-Range ---------------------- */

static int bad_hf(const char *uri, const char *why, wlift_diag *d)
{
	return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.hf",
			       "%s: %s (the form is hf://[datasets/|spaces/]org/repo[@revision]/"
			       "path/in/repo)",
			       uri, why);
}

int wlift__hf_url(const char *endpoint, const char *uri, char **out, wlift_diag *d)
{
	const char *p = uri + 5, *kind = "", *org, *name, *at, *path, *seg;
	char *rev = NULL, *epath = NULL, *url = NULL;
	size_t elen, olen, nlen, rlen, need;
	int ret = 0;

	*out = NULL;
	if (strncmp(uri, "hf://", 5) != 0)
		return bad_hf(uri, "not an hf:// URI", d);
	if (!endpoint || !*endpoint)
		endpoint = WLIFT_HF_ENDPOINT;
	if (strncmp(p, "datasets/", 9) == 0 || strncmp(p, "spaces/", 7) == 0) {
		kind = p[0] == 'd' ? "datasets/" : "spaces/";
		p += strlen(kind);
	}
	/* org/name[@revision]/path: the revision is part of the second segment only. */
	org = p;
	name = strchr(org, '/');
	if (!name || name == org)
		return bad_hf(uri, "no organisation or user", d);
	olen = (size_t)(name - org);
	name++;
	path = strchr(name, '/');
	if (!path || path[1] == '\0')
		return bad_hf(uri, "no file named in the repository", d);
	nlen = (size_t)(path - name);
	path++;
	at = memchr(name, '@', nlen);
	rlen = at ? nlen - (size_t)(at + 1 - name) : 0;
	if (at)
		nlen = (size_t)(at - name);
	if (nlen == 0)
		return bad_hf(uri, "no repository name", d);
	if (at && rlen == 0)
		return bad_hf(uri, "empty revision", d);
	/* A pull request's revision, refs/pr/N, has slashes of its own (as in the hub client's
	 * hf:// file system). */
	if (at && rlen == 4 && strncmp(at + 1, "refs", 4) == 0 && strncmp(path, "pr/", 3) == 0 &&
	    path[3] >= '0' && path[3] <= '9') {
		const char *e = path + 3;
		while (*e >= '0' && *e <= '9')
			e++;
		if (*e == '/' && e[1]) {
			rlen = (size_t)(e - (at + 1));
			path = e + 1;
		}
	}
	for (size_t i = 0; i < olen + 1 + nlen; i++) {
		char c = i < olen ? org[i] : i == olen ? '-' : name[i - olen - 1];
		/* Hub repository ids: letters, digits, '-', '_', '.'. */
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return bad_hf(uri, "malformed repository id", d);
	}
	if ((olen <= 2 && org[0] == '.' && (olen == 1 || org[1] == '.')) ||
	    (nlen <= 2 && name[0] == '.' && (nlen == 1 || name[1] == '.')))
		return bad_hf(uri, "malformed repository id", d);
	/* No empty, "." or ".." segments: the path stays inside the repository. */
	for (seg = path; *seg;) {
		const char *e = strchr(seg, '/');
		size_t n = e ? (size_t)(e - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return bad_hf(uri, "empty, '.' or '..' path segment", d);
		seg += n;
		if (e && !*++seg)
			return bad_hf(uri, "the path ends with '/'", d);
	}
	/* A revision given percent-encoded (refs%2Fpr%2F1) is kept as it is. */
	rev = !at ? strdup("main")
	      : memchr(at + 1, '%', rlen) ? strndup(at + 1, rlen)
					   : wlift__uri_encode(at + 1, rlen, 0);
	epath = wlift__uri_encode(path, strlen(path), 1);
	if (!rev || !epath) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	elen = strlen(endpoint);
	while (elen && endpoint[elen - 1] == '/')
		elen--;
	need = elen + strlen(kind) + olen + nlen + strlen(rev) + strlen(epath) + 16;
	url = malloc(need);
	if (!url) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	snprintf(url, need, "%.*s/%s%.*s/%.*s/resolve/%s/%s", (int)elen, endpoint, kind, (int)olen,
		 org, (int)nlen, name, rev, epath);
	*out = url;
out:
	free(rev);
	free(epath);
	return ret;
}

static int parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++)
		if (wlift__mul_u64(x, 10, &x) || wlift__add_u64(x, (uint64_t)(*s - '0'), &x))
			return -EINVAL;
	*p = s;
	*v = x;
	return 0;
}

int wlift__http_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *total)
{
	const char *p = v;
	int unsat = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bytes", 5) != 0)
		return -EINVAL;
	p += 5;
	if (*p != ' ' && *p != '\t')
		return -EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '*') {
		unsat = 1;
		*first = *last = UINT64_MAX;
		p++;
	} else {
		if (parse_u64(&p, first) || *p++ != '-' || parse_u64(&p, last) || *last < *first)
			return -EINVAL;
	}
	if (*p++ != '/')
		return -EINVAL;
	if (*p == '*' && !unsat) {
		*total = UINT64_MAX;
		p++;
	} else if (parse_u64(&p, total) || (!unsat && *last >= *total)) {
		return -EINVAL;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return *p ? -EINVAL : unsat;
}

#ifdef WLIFT_HAVE_CURL

#include <curl/curl.h>

/* ---- the source ------------------------------------------------------------------------- */

struct http_source {
	struct wlift__source base;
	char *url;	    /* what the URI names (hf:// mapped) */
	char *data_url;	    /* where reads go: url after the open's redirects */
	char *auth;	    /* "Authorization: Bearer ..." for url's origin, or NULL */
	int auth_on_data;   /* data_url has url's origin: the token goes there too */
	const char *token_from; /* where the token came from (for auth errors), or NULL */
	char etag[128];	    /* identity at open ("" when the server sent none) */
	char last_modified[64];
	uint8_t *head;	    /* the object's first head_len bytes, from the open */
	size_t head_len;
	unsigned requests, connect_s, stall_s;
	struct wlift__source_counters n; /* atomic: the workers driving its reads add */
	char *ca_bundle;
	struct wlift__http_auth rauth; /* the scheme's request auth (ops NULL: none) */
	struct wlift__rate *rate; /* the context's bandwidth cap, or NULL */
	const wlift_ctx *ctx;	  /* for log lines (retries, hedges) */
	int full_ok;		  /* WEIGHTLIFT_HTTP_FULL_DOWNLOAD: a server without Range support
				     is read by whole-object GETs */
	int no_range;		  /* it is such a server: every read streams the object from its
				     start, keeping its range */
	unsigned retries, retry_base_ms, retry_max_ms, hedge;
	int adaptive;
	pthread_mutex_t mu; /* guards spare */
	CURLM *spare;	    /* a finished queue's multi handle, connections still open */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	/* Not thread-safe in curl 7.88, hence once for the whole library (gcs_auth.c too), and
	 * never cleaned up (other parts of the process may use curl too). */
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int wlift__curl_init(void)
{
	pthread_once(&curl_once, curl_init);
	return (int)curl_init_rc;
}

/* "scheme://host[:port]" of url without userinfo, path or query (URLs of redirect targets
 * may carry signatures in their query: never shown). malloc'd; NULL when url does not parse. */
static char *origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;

	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	out = malloc(strlen(scheme) + strlen(host) + strlen(port) + 5);
	if (out)
		sprintf(out, "%s://%s:%s", scheme, host, port);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

static int same_origin(const char *a, const char *b)
{
	char *x = origin_of(a), *y = origin_of(b);
	int same = x && y && strcasecmp(x, y) == 0;

	free(x);
	free(y);
	return same;
}

/* ---- one transfer ----------------------------------------------------------------------- */

/* Why the write callback stopped a transfer. */
enum {
	BAD_NONE = 0,
	BAD_STATUS,	 /* an error status: the body is the server's, not read */
	BAD_NO_RANGE,	 /* a 200 (whole object) to a ranged request */
	BAD_RANGE,	 /* Content-Range missing or not the range asked for */
	BAD_CHANGED,	 /* another size or ETag than at open */
	BAD_LONG,	 /* more bytes than asked for */
};

struct xfer {
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_source *s;
	struct wlift__read r;
	size_t got;
	int used;
	int probe;   /* the open's request: learns size and identity */
	int checked; /* the response was accepted (first body bytes) */
	int bad;     /* BAD_* */
	int paused;  /* by the bandwidth cap, until resume_at */
	double resume_at;
	int whole;	    /* a 200 with the whole object, cut to the range asked */
	uint64_t pos;	    /* whole: body bytes seen */
	uint64_t whole_size; /* whole, the probe: the object's size (Content-Length) */
	int enough;	    /* whole: the range is complete, the transfer was stopped */
	/* The read queue's bookkeeping (http_rq): a slot is a primary (one engine read, tried
	 * up to 1 + retries times) or the hedge of one (the same range again, into a buffer of
	 * its own). */
	int active;	    /* the handle is in the multi handle */
	int is_hedge;
	int held;	    /* a primary whose attempt failed while its hedge still runs */
	unsigned attempts;  /* attempts started */
	double start_at, progress_at; /* of the current attempt: start, last body bytes */
	double retry_at;    /* a primary not active: when its next attempt may start */
	double retry_after; /* the last answer's Retry-After in seconds, or -1 */
	struct xfer *hedge; /* a primary's hedge in flight, or NULL */
	struct xfer *of;    /* a hedge's primary */
	uint8_t *hbuf;	    /* a hedge's buffer (hcap bytes) */
	size_t hcap;
	int64_t fail_res;   /* a held primary's failure, decided when its hedge ends */
	wlift_diag fail_d;
	/* The last response's headers (a redirect or 100 starts a new one). */
	int has_cr, cr_unsat;
	uint64_t cr_first, cr_last, cr_total;
	char etag[128], last_modified[64], ctype[64];
	char errbuf[CURL_ERROR_SIZE];
	/* An error answer's first bytes, for the scheme's explain() (S3's XML error). */
	char *ebody;
	size_t elen;
};

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user)
{
	struct xfer *x = user;
	size_t n = size * nitems;
	char tmp[256];
	int r;

	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or an interim 1xx). */
		x->has_cr = x->cr_unsat = 0;
		x->etag[0] = x->last_modified[0] = x->ctype[0] = '\0';
		x->retry_after = -1;
		return n;
	}
	if (n > 14 && strncasecmp(buf, "content-range:", 14) == 0) {
		copy_value(tmp, sizeof(tmp), buf + 14, n - 14);
		r = wlift__http_content_range(tmp, &x->cr_first, &x->cr_last, &x->cr_total);
		x->has_cr = r >= 0;
		x->cr_unsat = r == 1;
	} else if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
		copy_value(x->etag, sizeof(x->etag), buf + 5, n - 5);
	} else if (n > 14 && strncasecmp(buf, "last-modified:", 14) == 0) {
		copy_value(x->last_modified, sizeof(x->last_modified), buf + 14, n - 14);
	} else if (n > 13 && strncasecmp(buf, "content-type:", 13) == 0) {
		copy_value(x->ctype, sizeof(x->ctype), buf + 13, n - 13);
	} else if (n > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
		copy_value(tmp, sizeof(tmp), buf + 12, n - 12);
		x->retry_after = wlift__retry_after(tmp);
	}
	return n;
}

static long status_of(const struct xfer *x)
{
	long st = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
	return st;
}

/* Whether the URL pins the object's version (the scheme's WLIFT_HTTP_AUTH_URL_IDENTITY). */
static int url_identity(const struct http_source *s)
{
	return s->rauth.ops && (s->rauth.ops->flags & WLIFT_HTTP_AUTH_URL_IDENTITY);
}

/* Whether reads of s carry If-Match with its ETag (for messages). */
static int if_match(const struct http_source *s)
{
	return s->etag[0] && !url_identity(s);
}

/* Whether the response about to deliver its body is one to keep (BAD_* otherwise). */
static int check_response(struct xfer *x)
{
	const struct http_source *s = x->s;
	long st = status_of(x);

	if (x->probe) {
		curl_off_t cl = -1;
		if (st == 206)
			return x->has_cr && !x->cr_unsat && x->cr_first == 0 ? BAD_NONE : BAD_RANGE;
		if (st != 200)
			return BAD_STATUS;
		/* The whole object: fine when it fits what the probe asked for (a body of
		 * unknown length is stopped by on_body once it does not). */
		curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		if (cl > (curl_off_t)x->r.len && s->full_ok) {
			/* Allowed to read whole objects: keep the first bytes, then stop. */
			x->whole = 1;
			x->whole_size = (uint64_t)cl;
			return BAD_NONE;
		}
		return cl > (curl_off_t)x->r.len ? BAD_NO_RANGE : BAD_NONE;
	}
	if (st == 200 && s->no_range) {
		curl_off_t cl = -1;
		curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		if ((cl >= 0 && (uint64_t)cl != s->base.size) ||
		    (s->etag[0] && x->etag[0] && strcmp(s->etag, x->etag) != 0))
			return BAD_CHANGED;
		x->whole = 1;
		return BAD_NONE;
	}
	if (st == 200)
		return x->r.off == 0 && x->r.len == s->base.size ? BAD_NONE : BAD_NO_RANGE;
	if (st != 206)
		return BAD_STATUS;
	if (!x->has_cr || x->cr_unsat)
		return BAD_RANGE;
	if (x->cr_total != s->base.size)
		return BAD_CHANGED;
	if (s->etag[0] && x->etag[0] && strcmp(s->etag, x->etag) != 0 && !url_identity(s))
		return BAD_CHANGED;
	if (x->cr_first != x->r.off || x->cr_last != x->r.off + x->r.len - 1)
		return BAD_RANGE;
	return BAD_NONE;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *user)
{
	struct xfer *x = user;
	size_t n = size * nmemb;

	if (x->bad == BAD_STATUS && x->ebody)
		goto error_body;
	if (!x->checked) {
		x->bad = check_response(x);
		if (x->bad == BAD_STATUS && x->s->rauth.ops && x->s->rauth.ops->explain) {
			x->ebody = malloc(WLIFT_HTTP_ERROR_BODY + 1);
			if (x->ebody)
				goto error_body;
		}
		if (x->bad)
			return 0; /* stops the transfer: CURLE_WRITE_ERROR */
		x->checked = 1;
	}
	if (x->s->rate) {
		/* The bandwidth cap: bytes are taken as they come; while the shared bucket is in
		 * debt the transfer pauses (curl keeps these bytes and gives them again when the
		 * reap loop resumes it). */
		double w = wlift__rate_take(x->s->rate, n);
		if (w > 0) {
			x->paused = 1;
			x->resume_at = wlift__now() + w;
			return CURL_WRITEFUNC_PAUSE;
		}
	}
	if (x->whole) {
		/* The whole object streams by: keep the part that is the range asked (in order,
		 * straight into the destination), stop once it is complete. */
		uint64_t p = x->pos, e = p + n, end = x->r.off + x->r.len;
		uint64_t a = p > x->r.off ? p : x->r.off, b = e < end ? e : end;
		x->pos = e;
		if (a < b) {
			memcpy((uint8_t *)x->r.dst + (a - x->r.off), buf + (a - p), (size_t)(b - a));
			x->got += (size_t)(b - a);
		}
		x->progress_at = wlift__now();
		if (x->got == x->r.len) {
			x->enough = 1;
			return 0; /* stops the transfer; finish() takes it as complete */
		}
		return n;
	}
	if (n > x->r.len - x->got) {
		x->bad = x->probe ? BAD_NO_RANGE : BAD_LONG;
		return 0;
	}
	memcpy((uint8_t *)x->r.dst + x->got, buf, n);
	x->got += n;
	x->progress_at = wlift__now();
	return n;
error_body:
	/* Kept for explain(), never for the message itself; the rest is not read. */
	if (n > WLIFT_HTTP_ERROR_BODY - x->elen)
		n = WLIFT_HTTP_ERROR_BODY - x->elen;
	memcpy(x->ebody + x->elen, buf, n);
	x->elen += n;
	x->ebody[x->elen] = '\0';
	return x->elen < WLIFT_HTTP_ERROR_BODY ? size * nmemb : 0;
}

static const char *reason(long st)
{
	switch (st) {
	case 200: return "OK";
	case 206: return "Partial Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 410: return "Gone";
	case 412: return "Precondition Failed";
	case 416: return "Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return st >= 500 ? "server error" : st >= 400 ? "client error" : "unexpected";
	}
}

/* " (redirected to scheme://host:port)" when the answer came from elsewhere; "" otherwise. */
static void where(const struct xfer *x, char *buf, size_t cap)
{
	const char *eff = NULL;
	char *o;

	buf[0] = '\0';
	curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
	if (!eff || same_origin(eff, x->probe ? x->s->url : x->s->data_url) ||
	    !(o = origin_of(eff)))
		return;
	snprintf(buf, cap, " (redirected to %s)", o);
	free(o);
}

/* The range a transfer asked for, for messages: "bytes A-B". */
static void range_text(const struct xfer *x, char *buf, size_t cap)
{
	snprintf(buf, cap, "bytes %llu-%llu", (unsigned long long)x->r.off,
		 (unsigned long long)(x->r.off + x->r.len - 1));
}

/* An error answer of a source with request auth: the scheme's explain() says what the server
 * said and where the credentials came from. */
static int explained_error(const struct xfer *x, long st, const char *page, const char *at,
			   const char *rg, wlift_diag *d)
{
	const struct http_source *s = x->s;
	const char *uri = s->base.uri, *rule = "http.status";
	char why[768];
	int code;

	why[0] = '\0';
	code = s->rauth.ops->explain(s->rauth.state, st, x->ctype, x->ebody ? x->ebody : "",
				    x->elen, why, sizeof(why));
	if (!code)
		code = st == 401 || st == 403 || st == 407 ? WLIFT_EAUTH
		       : st == 404 || st == 410	     ? -ENOENT
		       : st == 412 || st == 416	     ? WLIFT_ECHANGED
						     : WLIFT_EHTTP;
	if (code == WLIFT_EAUTH)
		rule = "http.auth";
	else if (code == WLIFT_ECHANGED)
		rule = "http.changed";
	if (code == WLIFT_ECHANGED)
		return wlift__diag_set(d, code, uri, NULL, (int64_t)x->r.off, rule,
				       "%s: the object changed while loading (HTTP %ld %s for %s%s%s)"
				       "%s%s",
				       uri, st, reason(st), rg, if_match(s) ? " with If-Match " : "",
				       if_match(s) ? s->etag : "", why[0] ? ": " : "", why);
	return wlift__diag_set(d, code, uri, NULL, code == -ENOENT ? -1 : (int64_t)x->r.off, rule,
			       "%s: HTTP %ld %s%s%s%s%s", uri, st, reason(st), why[0] ? "" : page,
			       at, why[0] ? ": " : "", why);
}

static int status_error(const struct xfer *x, long st, wlift_diag *d)
{
	const struct http_source *s = x->s;
	const char *uri = s->base.uri;
	char at[160], rg[64];
	const char *page = strncasecmp(x->ctype, "text/html", 9) == 0 ? " (an HTML page)"
			   : strncasecmp(x->ctype, "text/", 5) == 0   ? " (a text page)"
								      : "";
	int64_t off = (int64_t)x->r.off;

	where(x, at, sizeof(at));
	range_text(x, rg, sizeof(rg));
	if (s->rauth.ops && s->rauth.ops->explain)
		return explained_error(x, st, page, at, rg, d);
	if (st == 401 || st == 403 || st == 407)
		return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, off, "http.auth",
				       "%s: HTTP %ld %s%s%s: %s", uri, st, reason(st), page, at,
				       s->token_from ? s->token_from
						     : "no token was sent (set HF_TOKEN for the "
						       "Hugging Face hub, WEIGHTLIFT_HTTP_TOKEN "
						       "for any server)");
	if (st == 404 || st == 410)
		return wlift__diag_set(d, -ENOENT, uri, NULL, -1, "http.status",
				       "%s: HTTP %ld %s%s%s", uri, st, reason(st), page, at);
	if (st == 412 || st == 416)
		return wlift__diag_set(d, WLIFT_ECHANGED, uri, NULL, off, "http.changed",
				       "%s: the object changed while loading (HTTP %ld %s for %s%s%s)",
				       uri, st, reason(st), rg, if_match(s) ? " with If-Match " : "",
				       if_match(s) ? s->etag : "");
	return wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, off, "http.status",
			       "%s: HTTP %ld %s%s for %s%s", uri, st, reason(st), page, rg, at);
}

/* The outcome of a finished transfer: bytes read, or a negative code with d filled. */
static int64_t finish(struct xfer *x, CURLcode rc, wlift_diag *d)
{
	struct http_source *s = x->s;
	const char *uri = s->base.uri;
	long st = status_of(x);
	int64_t off = (int64_t)x->r.off;
	char rg[64], at[160];

	range_text(x, rg, sizeof(rg));
	at[0] = '\0';
	if (x->enough && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK; /* a whole-object answer stopped once the range was complete */
	/* The redirect target is named in errors only (parsing URLs costs). */
	if (x->bad || rc != CURLE_OK || (st != 200 && st != 206) || x->got != x->r.len)
		where(x, at, sizeof(at));
	switch (x->bad) {
	case BAD_STATUS:
		return status_error(x, st, d);
	case BAD_NO_RANGE:
		return wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, off, "http.range",
				       "%s: the server does not support range requests (it answered "
				       "a ranged GET for %s with HTTP %ld and the whole object%s); "
				       "weightlift reads remote objects by range unless allowed to "
				       "download whole objects (--allow-full-download, "
				       "WEIGHTLIFT_HTTP_FULL_DOWNLOAD=1)",
				       uri, rg, st, at);
	case BAD_RANGE:
		return wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, off, "http.range",
				       "%s: HTTP %ld for %s came with %s%s", uri, st, rg,
				       x->has_cr ? "another Content-Range" : "no valid Content-Range",
				       at);
	case BAD_CHANGED:
		return wlift__diag_set(d, WLIFT_ECHANGED, uri, NULL, off, "http.changed",
				       "%s: the object changed while loading (%s was %llu bytes, "
				       "ETag %s at open; now %llu bytes, ETag %s)",
				       uri, rg, (unsigned long long)s->base.size,
				       s->etag[0] ? s->etag : "none",
				       (unsigned long long)(x->has_cr ? x->cr_total : 0),
				       x->etag[0] ? x->etag : "none");
	case BAD_LONG:
		return wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, off, "http.long",
				       "%s: the body for %s is longer than the range%s", uri, rg, at);
	default:
		break;
	}
	if (rc != CURLE_OK) {
		const char *e = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
		int code = WLIFT_ENET;
		const char *rule = "http.net";
		if (rc == CURLE_TOO_MANY_REDIRECTS) {
			code = WLIFT_EHTTP;
			rule = "http.redirect";
		} else if (rc == CURLE_URL_MALFORMAT) {
			code = WLIFT_EURI;
			rule = "uri.http";
		} else if (rc == CURLE_PARTIAL_FILE) {
			rule = "http.short";
		} else if (rc == CURLE_OPERATION_TIMEDOUT) {
			rule = "http.timeout";
		}
		return wlift__diag_set(d, code, uri, NULL, off, rule, "%s: %s after %zu of %zu bytes "
				       "(%s): %s%s",
				       uri, x->probe ? "open" : "read", x->got, x->r.len, rg, e, at);
	}
	if (!x->checked && !(x->probe && st == 416 && x->has_cr && x->cr_unsat)) {
		/* No body came (an error status with an empty body, an empty answer): judge the
		 * response as on_body would have. A 416 "bytes * /N" to the probe is an empty
		 * object. */
		x->bad = check_response(x);
		if (x->bad)
			return finish(x, CURLE_OK, d);
	}
	if (x->probe) {
		/* The object's size and identity. */
		if (st == 206)
			s->base.size = x->cr_total;
		else if (st == 200 && x->whole)
			s->base.size = x->whole_size;
		else if (st == 200)
			s->base.size = x->got;
		else if (st == 416 && x->has_cr && x->cr_unsat)
			s->base.size = x->cr_total;
		else
			return status_error(x, st, d);
		if (s->base.size == UINT64_MAX)
			return wlift__diag_set(d, WLIFT_EHTTP, uri, NULL, -1, "http.size",
					       "%s: the server does not tell the object's size "
					       "(Content-Range: bytes 0-%llu/*)",
					       uri, (unsigned long long)x->cr_last);
		if (st == 206 && x->got != x->cr_last + 1)
			goto short_body;
		if (x->whole) {
			s->no_range = 1;
			wlift__log(s->ctx, WLIFT_LOG_WARN,
				   "%s: the server does not support range requests: every read "
				   "downloads the object from its start (WEIGHTLIFT_HTTP_FULL_DOWNLOAD)",
				   uri);
		}
		memcpy(s->etag, x->etag, sizeof(s->etag));
		memcpy(s->last_modified, x->last_modified, sizeof(s->last_modified));
		return (int64_t)x->got;
	}
	if (x->got != x->r.len)
		goto short_body;
	return (int64_t)x->got;
short_body:
	return wlift__diag_set(d, WLIFT_ENET, uri, NULL, (int64_t)(x->r.off + x->got), "http.short",
			       "%s: the body for %s ended after %zu bytes%s", uri, rg, x->got, at);
}

/* Configure x's handle for a GET of range [off, off+len) of s (at its data URL unless it is
 * the open's request). 0, or a negative code with d filled. */
static int setup(struct xfer *x, struct http_source *s, const struct wlift__read *r, int probe,
		 wlift_diag *d)
{
	const char *url = probe ? s->url : s->data_url;
	int with_auth = s->auth && (probe || s->auth_on_data);
	char range[48], cond[200], hrange[56];

	if (!x->easy && !(x->easy = curl_easy_init()))
		return -ENOMEM;
	curl_easy_reset(x->easy);
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	x->s = s;
	x->r = *r;
	x->got = 0;
	x->probe = probe;
	x->checked = x->bad = x->paused = 0;
	x->whole = x->enough = 0;
	x->pos = x->whole_size = 0;
	x->retry_after = -1;
	x->has_cr = x->cr_unsat = 0;
	x->etag[0] = x->last_modified[0] = x->ctype[0] = x->errbuf[0] = '\0';
	free(x->ebody);
	x->ebody = NULL;
	x->elen = 0;
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)r->off,
		 (unsigned long long)(r->off + r->len - 1));
	/* The identity of the object read at open, so that a server whose object changed
	 * answers 412 instead of other bytes. A weak ETag cannot match If-Match. */
	cond[0] = '\0';
	if (url_identity(s))
		; /* the URL itself asks for the version read at open */
	else if (!probe && s->etag[0] && strncmp(s->etag, "W/", 2) != 0)
		snprintf(cond, sizeof(cond), "If-Match: %s", s->etag);
	else if (!probe && s->last_modified[0])
		snprintf(cond, sizeof(cond), "If-Unmodified-Since: %s", s->last_modified);
	if (cond[0] && !(x->hdrs = curl_slist_append(x->hdrs, cond)))
		return wlift__diag_set(d, -ENOMEM, s->base.uri, NULL, -1, NULL, NULL);
	if (with_auth) {
		struct curl_slist *h = curl_slist_append(x->hdrs, s->auth);
		if (!h)
			return wlift__diag_set(d, -ENOMEM, s->base.uri, NULL, -1, NULL, NULL);
		x->hdrs = h;
	}
	/* The scheme's signature or token; redirects never leave the signed host for sources
	 * that forbid them, and curl drops custom headers on a redirect to another origin. */
	if (s->rauth.ops && s->rauth.ops->headers && (probe || s->auth_on_data)) {
		int ret;
		snprintf(hrange, sizeof(hrange), "bytes=%s", range);
		ret = s->rauth.ops->headers(s->rauth.state, "GET", url, hrange, &x->hdrs, d);
		if (ret)
			return ret;
	}
	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	/* A server known to ignore Range is asked for the whole object. */
	curl_easy_setopt(x->easy, CURLOPT_RANGE, s->no_range && !probe ? NULL : range);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	/* Threads of ours: no signals (timeouts would use SIGALRM otherwise). */
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* Redirects are followed; curl sends neither credentials nor a custom Authorization
	 * header to another host (or port, or scheme) than the one asked. */
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION,
			 s->rauth.ops && (s->rauth.ops->flags & WLIFT_HTTP_AUTH_NO_REDIRECT) ? 0L
											   : 1L);
	curl_easy_setopt(x->easy, CURLOPT_MAXREDIRS, WLIFT_HTTP_MAX_REDIRS);
	curl_easy_setopt(x->easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(x->easy, CURLOPT_BUFFERSIZE, WLIFT_HTTP_BUFFER);
	curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT, (long)s->connect_s);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, WLIFT_HTTP_STALL_RATE);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, (long)s->stall_s);
	if (s->ca_bundle)
		curl_easy_setopt(x->easy, CURLOPT_CAINFO, s->ca_bundle);
	/* A signed path is sent as it was signed: curl would otherwise squash "/../". */
	if (s->rauth.ops)
		curl_easy_setopt(x->easy, CURLOPT_PATH_AS_IS, 1L);
	return 0;
}

/* ---- the read queue --------------------------------------------------------------------- */

/* A queue's slots: x[0..depth) hold the engine's reads (primaries), x[depth + i] the hedge of
 * x[i]. A primary is active (its handle in the multi handle), waiting (for its first start
 * under the adaptive limit, or for a retry's backoff), or held (its attempt failed while its
 * hedge runs). Everything happens on the worker that drives the queue: curl's callbacks run
 * inside curl_multi_perform on that thread, so once a handle is removed nothing of it lands
 * in memory any more. */
struct http_rq {
	struct wlift__rq base;
	CURLM *multi;
	struct xfer *x;		  /* 2 * depth slots */
	struct http_source *home; /* keeps the multi handle when the queue goes */
	int canceled;		  /* atomic */
	/* Reads served from the open's bytes complete at the next reap. */
	uint64_t *mem_tag;
	int64_t *mem_res;
	unsigned nmem;
	unsigned nactive; /* primaries active */
	unsigned hedges;  /* hedges active */
	/* Adaptive concurrency: the context's gate (common/gate.c) keeps the primaries active
	 * over every queue of its loads under one limit, each holding a place; without it
	 * (WEIGHTLIFT_HTTP_ADAPTIVE=0) the queue's depth is the limit. */
	struct wlift__gate *gate;
	struct wlift__gate_member member;
	/* Durations of the latest completed reads, for the hedging threshold. */
	double lat[WLIFT_HTTP_LAT_SAMPLES];
	unsigned nlat, lat_next;
	uint64_t seed; /* backoff jitter */
};

static CURLM *multi_new(void)
{
	CURLM *m = curl_multi_init();

	if (m)
		curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	return m;
}

/* Take x's handle out of the multi handle (no callback of it runs after this). */
static void stop(struct http_rq *q, struct xfer *x)
{
	if (!x->active)
		return;
	curl_multi_remove_handle(q->multi, x->easy);
	x->active = 0;
	x->paused = 0;
	if (x->is_hedge) {
		q->hedges--;
	} else {
		q->nactive--;
		if (q->gate)
			wlift__gate_put(q->gate);
	}
}

static void drop_hedge(struct http_rq *q, struct xfer *p)
{
	struct xfer *h = p->hedge;

	if (!h)
		return;
	stop(q, h);
	h->used = 0;
	p->hedge = NULL;
}

static void rq_destroy(struct wlift__rq *rq)
{
	struct http_rq *q = (struct http_rq *)rq;

	if (!q)
		return;
	for (unsigned i = 0; q->x && i < 2 * rq->depth; i++) {
		struct xfer *x = &q->x[i];
		if (x->active)
			stop(q, x);
		if (x->easy)
			curl_easy_cleanup(x->easy);
		curl_slist_free_all(x->hdrs);
		free(x->ebody);
		free(x->hbuf);
	}
	if (q->gate)
		wlift__gate_leave(q->gate, &q->member); /* no wake of its multi handle after this */
	if (q->multi && q->home) {
		pthread_mutex_lock(&q->home->mu);
		if (!q->home->spare) {
			q->home->spare = q->multi;
			q->multi = NULL;
		}
		pthread_mutex_unlock(&q->home->mu);
	}
	if (q->multi)
		curl_multi_cleanup(q->multi);
	if (q->home)
		wlift__source_unref(&q->home->base);
	free(q->x);
	free(q->mem_tag);
	free(q->mem_res);
	free(q);
}

/* Start an attempt of x (set up again from x->r: a retry re-signs through the scheme's
 * hook and writes from the start of its destination again, so no byte is counted twice).
 * 0, or a negative code with d filled. */
static int start(struct http_rq *q, struct xfer *x, wlift_diag *d)
{
	struct wlift__read r = x->r;
	CURLMcode mc;
	int ret;

	ret = setup(x, x->s, &r, x->probe, d);
	if (ret)
		goto fail;
	if (x->is_hedge)
		/* Another connection than the one that stalls (on HTTP/2 the same connection
		 * would carry both). */
		curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);
	mc = curl_multi_add_handle(q->multi, x->easy);
	if (mc != CURLM_OK) {
		ret = wlift__diag_set(d, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO,
				      x->s->base.uri, NULL, (int64_t)r.off, "http.curl",
				      "%s: curl: %s", x->s->base.uri, curl_multi_strerror(mc));
		goto fail;
	}
	x->active = 1;
	x->attempts++;
	x->start_at = x->progress_at = wlift__now();
	if (x->is_hedge)
		q->hedges++;
	else
		q->nactive++;
	return 0;
fail:
	if (!x->is_hedge && q->gate)
		wlift__gate_put(q->gate); /* the place taken for it */
	return ret;
}

/* Whether another primary may start now: a place under the adaptive limit (taken; start()
 * gives it back if the start fails, stop() when the transfer leaves), or a free slot of the
 * queue's depth without it. */
static int may_start(struct http_rq *q)
{
	if (!q->gate)
		return q->nactive < q->base.depth;
	return wlift__gate_take(q->gate, &q->member);
}

static void wake(void *arg)
{
	curl_multi_wakeup(((struct http_rq *)arg)->multi);
}

static int submit_x(struct http_rq *q, struct http_source *s, const struct wlift__read *r,
		    int probe, wlift_diag *d)
{
	struct wlift__rq *rq = &q->base;
	struct xfer *x;
	unsigned i;
	int ret;

	if (rq->inflight >= rq->depth)
		return -EBUSY;
	if (!probe && r->off + r->len <= s->head_len) {
		/* The open read these bytes already (the header, a small index). */
		memcpy(r->dst, s->head + r->off, r->len);
		q->mem_tag[q->nmem] = r->tag;
		q->mem_res[q->nmem++] = (int64_t)r->len;
		rq->inflight++;
		return 0;
	}
	for (i = 0; i < rq->depth && q->x[i].used; i++)
		;
	if (i == rq->depth)
		return -EBUSY;
	x = &q->x[i];
	x->s = s;
	x->r = *r;
	x->probe = probe;
	x->attempts = 0;
	x->held = 0;
	x->hedge = NULL;
	x->retry_at = 0;
	if (may_start(q)) {
		ret = start(q, x, d);
		if (ret)
			return ret;
	}
	/* Otherwise it waits for a free place under the adaptive limit (reap starts it). */
	x->used = 1;
	rq->inflight++;
	return 0;
}

static int rq_submit(struct wlift__rq *rq, struct wlift__source *s, const struct wlift__read *r,
		     wlift_diag *d)
{
	return submit_x((struct http_rq *)rq, (struct http_source *)s, r, 0, d);
}

/* Whether a failed attempt of x (finish() just judged it) is worth another: timeouts and
 * stalls, resets, connections that close early (short bodies), 408, 429, 500, 502, 503, 504,
 * and answers for another range or longer than it (a misbehaving cache or proxy on the way
 * gives those too). Never: auth failures, 404, the object changing, a server without Range
 * support, TLS and URL errors; a refused connection only after the open reached the server. */
static int transient(const struct xfer *x, CURLcode rc, const wlift_diag *td)
{
	long st = status_of(x);

	switch (x->bad) {
	case BAD_STATUS:
		return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
	case BAD_RANGE:
	case BAD_LONG:
		return 1;
	case BAD_NONE:
		break;
	default:
		return 0;
	}
	switch (rc) {
	case CURLE_OK:
		return strcmp(td->rule, "http.short") == 0;
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	case CURLE_COULDNT_CONNECT:
		return !x->probe;
	default:
		return 0;
	}
}

static void lat_add(struct http_rq *q, double dt)
{
	q->lat[q->lat_next] = dt;
	q->lat_next = (q->lat_next + 1) % WLIFT_HTTP_LAT_SAMPLES;
	if (q->nlat < WLIFT_HTTP_LAT_SAMPLES)
		q->nlat++;
}

/* Adaptive concurrency: a read of n bytes completed. */
static void adapt_done(struct http_rq *q, uint64_t n, double now)
{
	unsigned limit, max, peak;
	double tput = 0;

	if (!q->gate || !wlift__gate_done(q->gate, n, now, &tput))
		return;
	wlift__gate_state(q->gate, &limit, &max, &peak);
	wlift__log(q->home->ctx, WLIFT_LOG_DEBUG,
		   "http: %.1f MB/s: %u requests active of %u (adaptive)", tput / 1e6, limit, max);
}

/* The server said "slow down" (429, 503): half as many requests over the whole load, growing
 * again from there. */
static void adapt_slow(struct http_rq *q, double now)
{
	unsigned limit, max, peak;

	if (!q->gate || !wlift__gate_slow(q->gate, now))
		return;
	wlift__gate_state(q->gate, &limit, &max, &peak);
	wlift__log(q->home->ctx, WLIFT_LOG_DEBUG,
		   "http: the server asks to slow down: %u requests active of %u (adaptive)",
		   limit, max);
}

/* Report primary x's outcome into *c. */
static int report(struct http_rq *q, struct xfer *x, int64_t res, struct wlift__rdone *c)
{
	x->used = 0;
	x->held = 0;
	q->base.inflight--;
	c->tag = x->r.tag;
	c->res = res;
	return 1;
}

/* Primary x's attempt failed with res (td: the message). Schedules another attempt and
 * returns 0, or reports the failure into *c and d and returns 1. */
static int failed(struct http_rq *q, struct xfer *x, int64_t res, int again,
		  const wlift_diag *td, struct wlift__rdone *c, wlift_diag *d)
{
	struct http_source *s = x->s;
	double now = wlift__now();

	if (x->hedge && again) {
		/* The hedge may still bring the range: decide when it ends. */
		x->held = 1;
		x->fail_res = res;
		x->fail_d = *td;
		return 0;
	}
	drop_hedge(q, x);
	if (again && x->attempts <= s->retries) {
		long st = x->bad == BAD_STATUS ? status_of(x) : 0;
		double wait;
		if (st == 429 || st == 503)
			adapt_slow(q, now);
		wait = wlift__retry_backoff(x->attempts, s->retry_base_ms, s->retry_max_ms,
					    st == 429 || st == 503 ? x->retry_after : -1, &q->seed);
		x->retry_at = now + wait;
		__atomic_add_fetch(&s->n.retries, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->n.bytes_rerequested, x->r.len, __ATOMIC_RELAXED);
		wlift__log(s->ctx, WLIFT_LOG_INFO, "%s (attempt %u of %u; again in %.2f s)",
			   td->message, x->attempts, 1 + s->retries, wait);
		return 0;
	}
	if (d) {
		*d = *td;
		if (x->attempts > 1) {
			size_t n = strlen(d->message);
			snprintf(d->message + n, sizeof(d->message) - n, " (gave up after %u attempts)",
				 x->attempts);
		}
	}
	return report(q, x, res, c);
}

/* Handle the end of transfer x; 1 when a read's outcome went into *c. */
static int done(struct http_rq *q, struct xfer *x, CURLcode rc, struct wlift__rdone *c,
		wlift_diag *d)
{
	double now = wlift__now();
	wlift_diag td;
	int64_t res;
	int again;

	if (!x->active)
		return 0; /* a message of a handle taken out already */
	stop(q, x);
	wlift_diag_clear(&td);
	res = finish(x, rc, &td);
	again = res < 0 && transient(x, rc, &td);
	if (x->is_hedge) {
		struct xfer *p = x->of;
		x->used = 0;
		p->hedge = NULL;
		if (res == (int64_t)p->r.len) {
			/* The hedge won: the primary goes (its bytes stop here), then the
			 * hedge's bytes replace whatever the primary had written. */
			stop(q, p);
			memcpy(p->r.dst, x->r.dst, (size_t)res);
			lat_add(q, now - x->start_at);
			__atomic_add_fetch(&x->s->n.hedges_won, 1, __ATOMIC_RELAXED);
			wlift__log(x->s->ctx, WLIFT_LOG_INFO,
				   "%s: the hedged request for bytes %llu-%llu won", x->s->base.uri,
				   (unsigned long long)p->r.off,
				   (unsigned long long)(p->r.off + p->r.len - 1));
			return report(q, p, res, c);
		}
		if (p->held) {
			p->held = 0;
			return failed(q, p, p->fail_res, 1, &p->fail_d, c, d);
		}
		return 0;
	}
	if (res >= 0) {
		drop_hedge(q, x);
		lat_add(q, now - x->start_at);
		adapt_done(q, (uint64_t)res, now);
		return report(q, x, res, c);
	}
	return failed(q, x, res, again, &td, c, d);
}

/* Before each round of transfers: resume what the bandwidth cap paused, start waiting reads
 * that are due (within the adaptive limit), hedge reads without progress. Returns 1 when a
 * read's outcome went into *c (a start that failed), else 0 with *next_ms lowered to the
 * milliseconds until something here is due. */
static int tick(struct http_rq *q, int *next_ms, struct wlift__rdone *c, wlift_diag *d)
{
	struct http_source *s = q->home;
	double now = wlift__now(), next = (double)*next_ms / 1000, after = -1;
	unsigned depth = q->base.depth;

	if (s->hedge && q->hedges < WLIFT_HTTP_MAX_HEDGES && q->nlat) {
		double tmp[WLIFT_HTTP_LAT_SAMPLES];
		memcpy(tmp, q->lat, q->nlat * sizeof(*tmp));
		after = wlift__hedge_after(tmp, q->nlat, s->hedge, WLIFT_HTTP_HEDGE_MIN_S);
	}
	for (unsigned i = 0; i < 2 * depth; i++) {
		struct xfer *x = &q->x[i];
		if (!x->used)
			continue;
		if (x->active && x->paused) {
			if (x->resume_at <= now) {
				/* Resuming delivers the kept bytes at once (the callback may
				 * pause it again). */
				x->paused = 0;
				curl_easy_pause(x->easy, CURLPAUSE_CONT);
				now = wlift__now();
			}
			if (x->paused && x->resume_at - now < next)
				next = x->resume_at - now;
			continue;
		}
		if (x->is_hedge)
			continue;
		if (!x->active && !x->held) {
			if (x->retry_at > now) {
				if (x->retry_at - now < next)
					next = x->retry_at - now;
				continue;
			}
			if (!may_start(q))
				continue;
			wlift_diag td;
			wlift_diag_clear(&td);
			int ret = start(q, x, &td);
			if (ret) {
				if (d)
					*d = td;
				return report(q, x, ret, c);
			}
			continue;
		}
		if (x->active && !x->hedge && after >= 0 && q->hedges < WLIFT_HTTP_MAX_HEDGES &&
		    !x->s->no_range) {
			double idle = now - x->progress_at;
			if (idle < after) {
				if (after - idle < next)
					next = after - idle;
				continue;
			}
			/* No progress for much longer than its peers take: ask again on another
			 * connection, into a buffer of its own. */
			struct xfer *h = &q->x[depth + i];
			wlift_diag td;
			if (h->hcap < x->r.len) {
				uint8_t *b = realloc(h->hbuf, x->r.len);
				if (!b)
					continue; /* no hedge then */
				h->hbuf = b;
				h->hcap = x->r.len;
			}
			h->s = x->s;
			h->r = x->r;
			h->r.dst = h->hbuf;
			h->probe = 0;
			h->is_hedge = 1;
			h->of = x;
			h->attempts = 0;
			wlift_diag_clear(&td);
			if (start(q, h, &td))
				continue;
			h->used = 1;
			x->hedge = h;
			__atomic_add_fetch(&x->s->n.hedges, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&x->s->n.bytes_rerequested, x->r.len, __ATOMIC_RELAXED);
			wlift__log(s->ctx, WLIFT_LOG_INFO,
				   "%s: bytes %llu-%llu: no progress for %.2f s, hedged with a "
				   "second request",
				   x->s->base.uri, (unsigned long long)x->r.off,
				   (unsigned long long)(x->r.off + x->r.len - 1), idle);
		}
	}
	if (next < 0)
		next = 0;
	*next_ms = next * 1000 < 1 && next > 0 ? 1 : (int)(next * 1000);
	return 0;
}

static int rq_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct http_rq *q = (struct http_rq *)rq;
	int performed = 0;

	for (;;) {
		CURLMsg *m;
		int left, running, next_ms = 1000;
		CURLMcode mc;

		if (q->nmem) {
			q->nmem--;
			c->tag = q->mem_tag[q->nmem];
			c->res = q->mem_res[q->nmem];
			rq->inflight--;
			return 1;
		}
		while ((m = curl_multi_info_read(q->multi, &left))) {
			char *priv = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			if (done(q, (struct xfer *)priv, m->data.result, c, d))
				return 1;
		}
		if (!rq->inflight)
			return 0;
		if (__atomic_load_n(&q->canceled, __ATOMIC_ACQUIRE)) {
			for (unsigned i = 0; i < rq->depth; i++) {
				struct xfer *x = &q->x[i];
				if (!x->used)
					continue;
				drop_hedge(q, x);
				stop(q, x);
				wlift__diag_set(d, WLIFT_ECANCELED, x->s->base.uri, NULL,
						(int64_t)x->r.off, "load.canceled", "%s: read canceled",
						x->s->base.uri);
				return report(q, x, WLIFT_ECANCELED, c);
			}
			return 0;
		}
		if (tick(q, &next_ms, c, d))
			return 1;
		if (performed && !wait)
			return 0;
		if (performed) {
			mc = curl_multi_poll(q->multi, NULL, 0, next_ms, NULL);
			if (mc != CURLM_OK)
				return wlift__diag_set(d, -EIO, NULL, NULL, -1, "http.curl",
						       "curl_multi_poll: %s", curl_multi_strerror(mc));
			next_ms = 0;
			if (tick(q, &next_ms, c, d))
				return 1;
		}
		mc = curl_multi_perform(q->multi, &running);
		if (mc != CURLM_OK)
			return wlift__diag_set(d, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO, NULL,
					       NULL, -1, "http.curl", "curl_multi_perform: %s",
					       curl_multi_strerror(mc));
		performed = 1;
	}
}

static void rq_cancel(struct wlift__rq *rq)
{
	struct http_rq *q = (struct http_rq *)rq;

	__atomic_store_n(&q->canceled, 1, __ATOMIC_RELEASE);
	curl_multi_wakeup(q->multi); /* thread-safe: ends a reap's poll */
}

static const struct wlift__rq_ops http_rq_ops = {
	.name = "http",
	.submit = rq_submit,
	.reap = rq_reap,
	.cancel = rq_cancel,
	.destroy = rq_destroy,
};

static int rq_new(struct http_source *s, unsigned depth, struct http_rq **out, wlift_diag *d)
{
	struct http_rq *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (depth < 1)
		depth = 1;
	if (!q)
		return wlift__diag_set(d, -ENOMEM, s->base.uri, NULL, -1, NULL, NULL);
	q->base.ops = &http_rq_ops;
	q->base.depth = depth;
	q->home = (struct http_source *)wlift__source_ref(&s->base);
	q->x = calloc(2 * (size_t)depth, sizeof(*q->x));
	q->seed = (uint64_t)(uintptr_t)q ^ (uint64_t)(wlift__now() * 1e9);
	q->mem_tag = calloc(depth, sizeof(*q->mem_tag));
	q->mem_res = calloc(depth, sizeof(*q->mem_res));
	pthread_mutex_lock(&s->mu);
	q->multi = s->spare;
	s->spare = NULL;
	pthread_mutex_unlock(&s->mu);
	if (!q->multi)
		q->multi = multi_new();
	if (!q->x || !q->mem_tag || !q->mem_res || !q->multi) {
		rq_destroy(&q->base);
		return wlift__diag_set(d, -ENOMEM, s->base.uri, NULL, -1, NULL, NULL);
	}
	if (s->adaptive && s->ctx->gate) {
		q->gate = s->ctx->gate;
		wlift__gate_join(q->gate, &q->member, depth, wake, q);
	}
	*out = q;
	return 0;
}

/* ---- source operations ------------------------------------------------------------------ */

static int http_queue(struct wlift__source *src, unsigned depth, unsigned flags,
		      struct wlift__rq **out, wlift_diag *d)
{
	struct http_rq *q;
	int ret;

	WLIFT_UNUSED(flags);
	*out = NULL;
	ret = rq_new((struct http_source *)src, depth, &q, d);
	if (ret)
		return ret;
	*out = &q->base;
	return 0;
}

static int http_probe(struct wlift__source *src, uint64_t off, uint64_t len, unsigned flags,
		      struct wlift__source_probe *p)
{
	const struct http_source *s = (const struct http_source *)src;

	WLIFT_UNUSED(off);
	WLIFT_UNUSED(len);
	WLIFT_UNUSED(flags);
	memset(p, 0, sizeof(*p));
	p->size = src->size;
	snprintf(p->etag, sizeof(p->etag), "%s", s->etag);
	p->fs_kind = WLIFT_FS_NONE;
	/* A server without Range support: one read per range of the plan (each one streams the
	 * object from its start), one at a time. */
	p->chunk = s->no_range ? (src->size > SIZE_MAX ? SIZE_MAX : (size_t)src->size)
				: WLIFT_HTTP_CHUNK;
	p->resident = -1.0;
	p->requests = s->no_range ? 1 : s->requests;
	return 0;
}

static int http_validate(struct wlift__source *src, wlift_diag *d)
{
	/* Every read checked the size and ETag of its answer (and asked with If-Match): a
	 * change already failed the read that saw it. */
	WLIFT_UNUSED(src);
	WLIFT_UNUSED(d);
	return 0;
}

static void http_destroy(struct wlift__source *src)
{
	struct http_source *s = (struct http_source *)src;

	if (s->spare)
		curl_multi_cleanup(s->spare);
	pthread_mutex_destroy(&s->mu);
	free(s->url);
	free(s->data_url);
	free(s->auth);
	free(s->ca_bundle);
	free(s->head);
	if (s->rauth.ops && s->rauth.ops->destroy)
		s->rauth.ops->destroy(s->rauth.state);
	free(src->uri);
	free(s);
}

static void http_counters(struct wlift__source *bs, struct wlift__source_counters *c)
{
	struct http_source *s = (struct http_source *)bs;

	c->retries += __atomic_load_n(&s->n.retries, __ATOMIC_RELAXED);
	c->hedges += __atomic_load_n(&s->n.hedges, __ATOMIC_RELAXED);
	c->hedges_won += __atomic_load_n(&s->n.hedges_won, __ATOMIC_RELAXED);
	c->bytes_rerequested += __atomic_load_n(&s->n.bytes_rerequested, __ATOMIC_RELAXED);
}

static const struct wlift__source_ops http_ops = {
	.kind = "http",
	.probe = http_probe,
	.queue = http_queue,
	.validate = http_validate,
	.destroy = http_destroy,
	.counters = http_counters,
};

/* Check uri's syntax: a URL curl can parse, no credentials in it. */
static int check_url(const char *uri, const char *url, wlift_diag *d)
{
	CURLU *u = curl_url();
	char *user = NULL, *host = NULL;
	CURLUcode uc;
	int ret = 0;

	if (!u)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		ret = wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.http", "%s: not a valid URL: %s",
				      uri, uc != CURLUE_OK ? curl_url_strerror(uc) : "no host");
	} else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		ret = wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.userinfo",
				      "%s: credentials in a URL are not accepted (they end up in "
				      "logs and error messages): use WEIGHTLIFT_HTTP_TOKEN",
				      uri);
	}
	curl_free(user);
	curl_free(host);
	curl_url_cleanup(u);
	return ret;
}

/* The request URL for uri (hf:// mapped), malloc'd. */
static int url_of(const wlift_ctx *ctx, const char *uri, char **out, wlift_diag *d)
{
	int ret;

	*out = NULL;
	if (strncmp(uri, "hf://", 5) == 0)
		ret = wlift__hf_url(ctx ? ctx->hf_endpoint : NULL, uri, out, d);
	else if (!(*out = strdup(uri)))
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	else
		ret = 0;
	if (!ret)
		ret = check_url(uri, *out, d);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	return ret;
}

int wlift__http_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	char *url = NULL;
	size_t n = strlen(uri);
	int ret = url_of(wlift__ctx_or_default(ctx), uri, &url, d);

	free(url);
	if (ret)
		return ret;
	*kind = n && uri[n - 1] == '/' ? WLIFT_STAT_CONTAINER : WLIFT_STAT_OBJECT;
	return 0;
}

int wlift__http_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		     wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*names = NULL;
	*n = 0;
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, uri, NULL, -1, "uri.list",
			       "%s: an HTTP server cannot be listed: name a .safetensors file or "
			       "a model.safetensors.index.json",
			       uri);
}

/* The bearer token for this source and where it came from. An explicit token goes to every
 * server; HF_TOKEN only to the Hugging Face endpoint. */
static int choose_token(const wlift_ctx *ctx, struct http_source *s, const char *uri)
{
	const char *tok = NULL;
	size_t n;

	if (ctx->http_token) {
		tok = ctx->http_token;
		s->token_from = "the token from WEIGHTLIFT_HTTP_TOKEN (or the http_token option) "
				"was refused";
	} else if (ctx->hf_token) {
		const char *ep = ctx->hf_endpoint ? ctx->hf_endpoint : WLIFT_HF_ENDPOINT;
		if (strncmp(uri, "hf://", 5) == 0 || same_origin(s->url, ep)) {
			tok = ctx->hf_token;
			s->token_from = "the token from HF_TOKEN was refused";
		}
	}
	if (!tok)
		return 0;
	n = strlen(tok) + 32;
	s->auth = malloc(n);
	if (!s->auth)
		return -ENOMEM;
	snprintf(s->auth, n, "Authorization: Bearer %s", tok);
	return 0;
}

static void auth_drop(const struct wlift__http_auth *auth)
{
	if (auth && auth->ops && auth->ops->destroy)
		auth->ops->destroy(auth->state);
}

static int curl_ready(const char *uri, wlift_diag *d)
{
	if (wlift__curl_init() != CURLE_OK)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, "http.curl",
				       "%s: curl_global_init: %s", uri,
				       curl_easy_strerror(curl_init_rc));
	return 0;
}

/* Open uri, whose bytes are at url (NULL: url_of(uri)), with auth (owned from here on). */
static int open_common(wlift_ctx *ctx, const char *uri, const char *url,
		       const struct wlift__http_auth *auth, struct wlift__source **out,
		       wlift_diag *d)
{
	struct http_source *s;
	struct http_rq *q = NULL;
	struct wlift__rdone c;
	const char *eff = NULL;
	int ret;

	*out = NULL;
	ret = curl_ready(uri, d);
	if (ret) {
		auth_drop(auth);
		return ret;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		auth_drop(auth);
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	pthread_mutex_init(&s->mu, NULL);
	if (auth && auth->ops)
		s->rauth = *auth;
	if (wlift__source_init(&s->base, &http_ops, uri, 0)) {
		auth_drop(auth);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	if (url) {
		s->url = strdup(url);
		ret = s->url ? check_url(uri, url, d)
			     : wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	} else {
		ret = url_of(ctx, uri, &s->url, d);
	}
	if (ret)
		goto out;
	s->requests = ctx->http_requests ? ctx->http_requests : WLIFT_HTTP_DEFAULT_REQUESTS;
	s->connect_s = ctx->http_connect_s ? ctx->http_connect_s : WLIFT_HTTP_CONNECT_S;
	s->stall_s = ctx->http_stall_s ? ctx->http_stall_s : WLIFT_HTTP_STALL_S;
	s->rate = ctx->rate;
	s->ctx = ctx;
	s->retries = ctx->http_retries;
	s->retry_base_ms = ctx->http_retry_base_ms ? ctx->http_retry_base_ms : WLIFT_HTTP_RETRY_BASE_MS;
	s->retry_max_ms = ctx->http_retry_max_ms ? ctx->http_retry_max_ms : WLIFT_HTTP_RETRY_MAX_MS;
	s->hedge = ctx->http_hedge;
	s->adaptive = ctx->http_adaptive;
	s->full_ok = ctx->http_full_download;
	s->head = malloc(WLIFT_HEADER_PROBE);
	{
		const char *ca = auth && auth->ops && auth->ops->ca_bundle
					 ? auth->ops->ca_bundle(auth->state)
					 : NULL;
		if (!ca)
			ca = ctx->ca_bundle;
		if (ca && !(s->ca_bundle = strdup(ca))) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
	}
	if (!s->head ||
	    (!s->rauth.ops && choose_token(ctx, s, uri))) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	/* The probe: the first bytes, the size, the identity, where the redirects end. */
	ret = rq_new(s, 1, &q, d);
	if (ret)
		goto out;
	{
		struct wlift__read r = { s->head, 0, WLIFT_HEADER_PROBE, 0, 0 };
		ret = submit_x(q, s, &r, 1, d);
	}
	if (ret)
		goto out;
	ret = rq_reap(&q->base, 1, &c, d);
	if (ret == 0)
		ret = wlift__diag_set(d, -EIO, uri, NULL, -1, "http.curl", "%s: the request was lost",
				      uri);
	if (ret < 0)
		goto out;
	if (c.res < 0) {
		ret = (int)c.res;
		goto out;
	}
	s->head_len = (size_t)c.res;
	curl_easy_getinfo(q->x[0].easy, CURLINFO_EFFECTIVE_URL, &eff);
	s->data_url = strdup(eff ? eff : s->url);
	if (!s->data_url) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	s->auth_on_data = same_origin(s->url, s->data_url);
	ret = 0;
out:
	if (q)
		rq_destroy(&q->base); /* keeps its connection in s->spare */
	if (ret) {
		wlift__source_unref(&s->base);
		return ret;
	}
	*out = &s->base;
	return 0;
}

int wlift__http_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		     wlift_diag *d)
{
	return open_common(ctx, uri, NULL, NULL, out, d);
}

int wlift__http_open_url(wlift_ctx *ctx, const char *uri, const char *url,
			 const struct wlift__http_auth *auth, struct wlift__source **out,
			 wlift_diag *d)
{
	return open_common(wlift__ctx_or_default(ctx), uri, url, auth, out, d);
}

void wlift__http_set_identity(struct wlift__source *src, const char *identity)
{
	struct http_source *s = (struct http_source *)src;

	if (src->ops == &http_ops && url_identity(s))
		snprintf(s->etag, sizeof(s->etag), "%s", identity);
}

/* ---- small blocking requests ------------------------------------------------------------ */

struct fetch_state {
	const struct wlift__http_req *req;
	struct wlift__http_resp *resp;
	size_t cap, max;
	int too_long;
};

static size_t fetch_body(char *buf, size_t size, size_t nmemb, void *user)
{
	struct fetch_state *f = user;
	struct wlift__http_resp *r = f->resp;
	size_t n = size * nmemb;

	if (n > f->max - r->len) {
		f->too_long = 1;
		return 0;
	}
	if (r->len + n + 1 > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		char *b;
		while (cap < r->len + n + 1)
			cap *= 2;
		b = realloc(r->body, cap);
		if (!b)
			return 0;
		r->body = b;
		f->cap = cap;
	}
	memcpy(r->body + r->len, buf, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static size_t fetch_header(char *buf, size_t size, size_t nitems, void *user)
{
	struct fetch_state *f = user;
	size_t n = size * nitems, w;

	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		f->resp->ctype[0] = f->resp->header[0] = '\0';
	} else if (n > 13 && strncasecmp(buf, "content-type:", 13) == 0) {
		copy_value(f->resp->ctype, sizeof(f->resp->ctype), buf + 13, n - 13);
	} else if (f->req->want_header && (w = strlen(f->req->want_header)) + 1 < n &&
		   strncasecmp(buf, f->req->want_header, w) == 0 && buf[w] == ':') {
		copy_value(f->resp->header, sizeof(f->resp->header), buf + w + 1, n - w - 1);
	}
	return n;
}

void wlift__http_resp_free(struct wlift__http_resp *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

int wlift__http_fetch(wlift_ctx *ctx, const char *uri, const struct wlift__http_auth *auth,
		      const struct wlift__http_req *req, struct wlift__http_resp *resp,
		      wlift_diag *d)
{
	const char *method = req->method ? req->method : "GET";
	struct fetch_state f = { req, resp, 0, req->max_body ? req->max_body : 16u << 20, 0 };
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE];
	CURL *e = NULL;
	CURLcode rc;
	unsigned timeout;
	int ret;

	memset(resp, 0, sizeof(*resp));
	ctx = wlift__ctx_or_default(ctx);
	ret = curl_ready(uri, d);
	if (ret)
		return ret;
	e = curl_easy_init();
	if (!e) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		struct curl_slist *h = curl_slist_append(hdrs, req->headers[i]);
		if (!h) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		hdrs = h;
	}
	if (auth && auth->ops && auth->ops->headers) {
		ret = auth->ops->headers(auth->state, method, req->url, NULL, &hdrs, d);
		if (ret)
			goto out;
	}
	errbuf[0] = '\0';
	timeout = req->timeout_s ? req->timeout_s
				 : (ctx->http_connect_s ? ctx->http_connect_s : WLIFT_HTTP_CONNECT_S) +
					   (ctx->http_stall_s ? ctx->http_stall_s : WLIFT_HTTP_STALL_S);
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fetch_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &f);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, req->follow ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, WLIFT_HTTP_MAX_REDIRS);
	curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT,
			 (long)(ctx->http_connect_s ? ctx->http_connect_s : WLIFT_HTTP_CONNECT_S));
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)timeout);
	if (auth && auth->ops)
		curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	if (auth && auth->ops && auth->ops->ca_bundle && auth->ops->ca_bundle(auth->state))
		curl_easy_setopt(e, CURLOPT_CAINFO, auth->ops->ca_bundle(auth->state));
	else if (ctx->ca_bundle)
		curl_easy_setopt(e, CURLOPT_CAINFO, ctx->ca_bundle);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(req->body ? req->body_len : 0));
	}
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
	if (f.too_long) {
		ret = wlift__diag_set(d, -EFBIG, uri, NULL, -1, "http.size",
				      "%s: the answer is longer than %zu bytes", uri, f.max);
		goto out;
	}
	if (rc != CURLE_OK) {
		ret = wlift__diag_set(d, rc == CURLE_OUT_OF_MEMORY || rc == CURLE_WRITE_ERROR
					     ? -ENOMEM : WLIFT_ENET,
				      uri, NULL, -1, "http.net", "%s: %s", uri,
				      errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	if (!resp->body && !(resp->body = calloc(1, 1))) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = 0;
out:
	if (ret)
		wlift__http_resp_free(resp);
	curl_slist_free_all(hdrs);
	if (e)
		curl_easy_cleanup(e);
	return ret;
}

#else /* !WLIFT_HAVE_CURL */

int wlift__curl_init(void)
{
	return 0;
}

static int no_curl(const char *uri, wlift_diag *d)
{
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, uri, NULL, -1, "uri.scheme",
			       "%s: HTTP sources are not supported by this build (built without "
			       "libcurl)",
			       uri);
}

int wlift__http_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	WLIFT_UNUSED(kind);
	return no_curl(uri, d);
}

int wlift__http_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		     wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*names = NULL;
	*n = 0;
	return no_curl(uri, d);
}

int wlift__http_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		     wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	*out = NULL;
	return no_curl(uri, d);
}

int wlift__http_open_url(wlift_ctx *ctx, const char *uri, const char *url,
			 const struct wlift__http_auth *auth, struct wlift__source **out,
			 wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	WLIFT_UNUSED(url);
	*out = NULL;
	if (auth && auth->ops && auth->ops->destroy)
		auth->ops->destroy(auth->state);
	return no_curl(uri, d);
}

void wlift__http_set_identity(struct wlift__source *src, const char *identity)
{
	WLIFT_UNUSED(src);
	WLIFT_UNUSED(identity);
}

int wlift__http_fetch(wlift_ctx *ctx, const char *uri, const struct wlift__http_auth *auth,
		      const struct wlift__http_req *req, struct wlift__http_resp *resp,
		      wlift_diag *d)
{
	WLIFT_UNUSED(ctx);
	WLIFT_UNUSED(auth);
	WLIFT_UNUSED(req);
	memset(resp, 0, sizeof(*resp));
	return no_curl(uri, d);
}

void wlift__http_resp_free(struct wlift__http_resp *resp)
{
	if (resp) {
		free(resp->body);
		resp->body = NULL;
		resp->len = 0;
	}
}

#endif
