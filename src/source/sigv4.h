/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS Signature Version 4 (sigv4.c): pure functions over one request's parts (no clock, no
 * network, no credentials lookup), with OpenSSL's SHA-256 and HMAC. Checked against AWS's
 * published signing test suite (tests/s3/sigv4-vectors) and botocore's signer.
 */
#ifndef WLIFT_SOURCE_SIGV4_H
#define WLIFT_SOURCE_SIGV4_H

#include <stddef.h>

/* The payload hash S3 accepts for requests whose body is not hashed (every GET of ours). */
#define WLIFT_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"
/* SHA-256 of the empty string (bodyless requests of other services). */
#define WLIFT_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct wlift__sigv4_header {
	const char *name; /* any case; lower-cased in the canonical request */
	const char *value; /* trimmed, runs of white space collapsed to one space */
};

struct wlift__sigv4_req {
	const char *method;   /* "GET" */
	const char *path;     /* the path as sent on the request line, e.g. "/bucket/a%20b" */
	const char *query;    /* the query as sent, without '?'; NULL or "" for none */
	/* The headers to sign: host and x-amz-date always, x-amz-content-sha256 and
	 * x-amz-security-token when sent. Repeated names are joined with ',' in order. */
	const struct wlift__sigv4_header *headers;
	size_t nheaders;
	const char *payload_hash; /* hex SHA-256 of the body, or WLIFT_SIGV4_UNSIGNED */
	const char *region;	  /* "us-east-1" */
	const char *service;	  /* "s3", "sts" */
	const char *amz_date;	  /* "20150830T123600Z" (UTC) */
	/* 1 (S3): the path is already encoded as S3 wants it and used as it is; 0 (other
	 * services): it is percent-encoded once more, after removing "." and ".." segments and
	 * empty ones when normalize is set. */
	int s3;
	int normalize;
};

/* AWS's URI encoding: every byte but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash) as %XX
 * (upper-case hex). malloc'd, NULL on ENOMEM. What S3 keys become in URLs and in the
 * canonical request. */
char *wlift__aws_uri_encode(const char *s, size_t n, int keep_slash);

/* The host header of a request to url ("scheme://host[:port]/path?query", the scheme
 * optional): host[:port] into host (cut to cap - 1 bytes). Returns where the path begins in
 * url, NULL when it has none. */
const char *wlift__sigv4_url_host(const char *url, char *host, size_t cap);

/* Lower-case hex SHA-256 of n bytes. */
void wlift__sha256_hex(const void *p, size_t n, char hex[65]);

/* The canonical request (method, URI, query, headers, signed headers, payload hash, joined by
 * '\n') and the signed-headers list ("host;x-amz-date"). 0, -EINVAL (a part missing or a
 * malformed amz_date) or -ENOMEM; both malloc'd. */
int wlift__sigv4_canonical(const struct wlift__sigv4_req *r, char **canon, char **signed_hdrs);

/* "AWS4-HMAC-SHA256\n<amz_date>\n<date>/<region>/<service>/aws4_request\n<hex sha256(canon)>".
 * 0 or -ENOMEM. */
int wlift__sigv4_string_to_sign(const struct wlift__sigv4_req *r, const char *canon,
				char **out);

/* Hex HMAC signature of the string to sign with the key derived from secret, the date (the
 * first 8 characters of r->amz_date), region and service. 0 or -EINVAL. */
int wlift__sigv4_signature(const struct wlift__sigv4_req *r, const char *secret,
			   const char *sts, char hex[65]);

/* The Authorization header's value: "AWS4-HMAC-SHA256 Credential=<akid>/<scope>,
 * SignedHeaders=<list>, Signature=<hex>". malloc'd in *out. 0, -EINVAL or -ENOMEM. */
int wlift__sigv4_authorization(const struct wlift__sigv4_req *r, const char *akid,
			       const char *secret, char **out);

#endif
