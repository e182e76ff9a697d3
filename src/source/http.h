/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP(S) source (http.c): objects behind http://, https:// and hf:// URIs, read with ranged
 * GETs through libcurl's multi interface. Builds without libcurl keep the scheme functions,
 * which then report WLIFT_EUNSUPPORTED.
 */
#ifndef WLIFT_SOURCE_HTTP_H
#define WLIFT_SOURCE_HTTP_H

#include "source/source.h"

/* curl_global_init, once per process for the whole library (http.c, gcs_auth.c): its
 * CURLcode (0: ready; also 0 in builds without libcurl). wlift_ctx_create calls it, so that
 * its ~1 ms (OpenSSL's set-up: 0.8-1.3 ms measured here) is spent before a remote open and
 * not on the path of its first request (time to first tensor). */
int wlift__curl_init(void);

/* 1 when uri has a scheme this source serves (http://, https://, hf://). */
int wlift__http_scheme(const char *uri);

/* The locator's scheme functions for those URIs. stat asks nothing of the server: a URL
 * ending in '/' is a container (which cannot be listed), anything else an object, so that
 * the open (one ranged GET) is the only request per object. */
int wlift__http_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
int wlift__http_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		     wlift_diag *d);
int wlift__http_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		     wlift_diag *d);

/* ---- the request-auth hook: schemes served over HTTP(S) (s3://, gs://) ------------------ */

struct curl_slist;

/* How a scheme authenticates its requests. The scheme's own file (s3.c, gcs.c) maps its URI to
 * the object's URL, makes the state (credentials, region, ...) and hands both to
 * wlift__http_open_url; every request of that source (the open's probe and each ranged read,
 * from any worker at once) then calls headers() while it is being set up. */
struct wlift__http_auth_ops {
	const char *name; /* "s3", "gs": the credential kind, in messages */
	unsigned flags;	  /* WLIFT_HTTP_AUTH_* */
	/* Append to *hdrs (curl_slist_append) the header lines that authenticate one request:
	 * method ("GET", "HEAD"), the full URL as it will be sent (percent-encoded), and the
	 * Range header's value ("bytes=A-B", NULL when the whole object is asked for; the
	 * request sends exactly that Range). *hdrs already holds the request's other headers
	 * (If-Match, ...), which the signer may read. Thread-safe: called from several workers
	 * at once; it may block to fetch or refresh credentials (a token about to expire).
	 * 0, or a negative code with d filled (WLIFT_EAUTH naming the credential sources
	 * tried when there are none or they cannot be refreshed). NULL: no headers. */
	int (*headers)(void *state, const char *method, const char *url, const char *range,
		       struct curl_slist **hdrs, wlift_diag *d);
	/* Explain an error answer (status >= 400) for the diagnostic: write one line of text
	 * into buf (e.g. S3's "AccessDenied: Access Denied", from the XML <Code>/<Message>;
	 * never other bytes of the body) followed by where the credentials came from. body is
	 * the answer's first bytes (at most WLIFT_HTTP_ERROR_BODY, NUL-terminated, possibly
	 * cut). Returns the error code to report (WLIFT_EAUTH for an expired token answered
	 * with 400, -ENOENT for S3's NoSuchKey, ...), or 0 for the status's usual code
	 * (401/403: WLIFT_EAUTH, 404: -ENOENT, 412: WLIFT_ECHANGED, else WLIFT_EHTTP).
	 * Thread-safe. NULL: the status alone. */
	int (*explain)(void *state, long status, const char *ctype, const char *body, size_t len,
		       char *buf, size_t cap);
	/* Free the state (called once, when the source goes). */
	void (*destroy)(void *state);
	/* The CA bundle for this scheme's requests, overriding the context's (S3:
	 * AWS_CA_BUNDLE), or NULL for the context's. Copied by the open. NULL: the context's. */
	const char *(*ca_bundle)(void *state);
};

/* ops->flags */
#define WLIFT_HTTP_AUTH_NO_REDIRECT 1u /* a 3xx is an error (explained), never followed: a
					  signature is for one host */
#define WLIFT_HTTP_AUTH_URL_IDENTITY 2u /* the URL pins the object's version (GCS's
					   ifGenerationMatch: a replaced object answers 412): reads
					   send no If-Match / If-Unmodified-Since and an answer's
					   ETag is not compared with the open's */

/* The most error-body bytes given to explain(). */
#define WLIFT_HTTP_ERROR_BODY 4096

struct wlift__http_auth {
	const struct wlift__http_auth_ops *ops;
	void *state;
};

/* Open the object uri (as the user named it: in every message) whose bytes are at url
 * (http:// or https://, percent-encoded), each request authenticated by *auth (NULL, or
 * auth->ops NULL: none). The source owns auth->state from here on, also when the open fails
 * (then destroyed here). Same reads, checks and errors as an http:// URI. */
int wlift__http_open_url(wlift_ctx *ctx, const char *uri, const char *url,
			 const struct wlift__http_auth *auth, struct wlift__source **out,
			 wlift_diag *d);

/* For a source opened with WLIFT_HTTP_AUTH_URL_IDENTITY: the identity that probe reports in
 * place of the download's ETag (GCS: the generation its URL pins), which the local cache keys
 * on. Call right after the open, before the source is shared. No-op for other sources. */
void wlift__http_set_identity(struct wlift__source *src, const char *identity);

/* One small blocking request (a listing page, a token, a metadata endpoint): not for
 * object data. */
struct wlift__http_req {
	const char *method;	       /* "GET" (NULL), "PUT", "POST", "HEAD" */
	const char *url;
	const char *const *headers;    /* extra "Name: value" lines, NULL-terminated, or NULL */
	const char *body;	       /* request body (POST/PUT), or NULL */
	size_t body_len;
	size_t max_body;	       /* answers longer than this fail (-EFBIG); 0: 16 MiB */
	unsigned timeout_s;	       /* whole request; 0: the context's connect + stall time */
	const char *want_header;       /* a response header to return in resp->header, or NULL */
	int follow;		       /* follow redirects (same rules as object reads) */
};

struct wlift__http_resp {
	long status;	 /* HTTP status, 0 when no answer came */
	char *body;	 /* malloc'd, NUL-terminated (len bytes before the NUL) */
	size_t len;
	char ctype[64];	 /* Content-Type ("" when none) */
	char header[256]; /* the value of req->want_header ("" when absent) */
};

/* Perform req (authenticated by auth when auth and auth->ops, as object reads are; the
 * range passed to headers() is NULL). 0 when an answer came, whatever its status (resp
 * filled; free resp->body), or a negative code with d filled naming uri (WLIFT_ENET for
 * connection failures and timeouts, with curl's text; -EFBIG; -ENOMEM; an error of
 * auth->ops->headers). Never follows redirects unless req->follow. Thread-safe. */
int wlift__http_fetch(wlift_ctx *ctx, const char *uri, const struct wlift__http_auth *auth,
		      const struct wlift__http_req *req, struct wlift__http_resp *resp,
		      wlift_diag *d);
void wlift__http_resp_free(struct wlift__http_resp *resp);

/* hf://[datasets/|spaces/]org/repo[@revision]/path → endpoint/[datasets/|spaces/]org/repo/
 * resolve/<revision>/path (revision "main" when absent; revision and path percent-encoded,
 * the revision's '/' too; "@refs/pr/N/" is the pull request's revision). endpoint NULL: WLIFT_HF_ENDPOINT. 0 and a
 * malloc'd URL in *out, or WLIFT_EURI (d filled) / -ENOMEM. Needs no libcurl. */
int wlift__hf_url(const char *endpoint, const char *uri, char **out, wlift_diag *d);

/* Parse a Content-Range value: "bytes FIRST-LAST/TOTAL" (TOTAL may be '*': UINT64_MAX) → 0;
 * "bytes * /TOTAL" (the form of a 416) → 1 with *first = *last = UINT64_MAX; else -EINVAL. */
int wlift__http_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *total);

#endif
