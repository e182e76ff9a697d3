/* SPDX-License-Identifier: Apache-2.0 */
/* Signature V4 (src/source/sigv4.c) against AWS's signing test suite (tests/s3/sigv4-vectors,
 * from awslabs/aws-c-auth): every request.txt is signed with its context.json and must give
 * the published canonical request, string to sign and signature. Plus S3's own rules: the
 * path as sent, UNSIGNED-PAYLOAD, AWS's URI encoding of keys. */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "source/sigv4.h"
#include "testutil.h"

#ifndef WLIFT_SIGV4_VECTORS
#error "WLIFT_SIGV4_VECTORS must name tests/s3/sigv4-vectors"
#endif

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[1024], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static void rstrip(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static int jbool(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* Sign the case in dir; 1 when all three parts match (mismatches printed). */
static int one_case(const char *dir)
{
	char *req = slurp(dir, "request.txt", NULL), *ctxt = slurp(dir, "context.json", NULL);
	char *want_canon = slurp(dir, "header-canonical-request.txt", NULL);
	char *want_sts = slurp(dir, "header-string-to-sign.txt", NULL);
	char *want_sig = slurp(dir, "header-signature.txt", NULL);
	struct wlift__sigv4_header h[32];
	struct wlift__sigv4_req r = { 0 };
	json_object *ctx = json_tokener_parse(ctxt), *creds = NULL;
	char *line, *save = NULL, *body = NULL, *canon = NULL, *sh = NULL, *sts = NULL;
	char *first, *sp, *http, date[17], hash[65], sig[65];
	const char *ts, *token;
	char *folded[8];
	size_t nh = 0, nfold = 0;
	int ok = 1;

	ck_assert_ptr_nonnull(ctx);
	ck_assert(json_object_object_get_ex(ctx, "credentials", &creds));
	/* The request line: METHOD PATH HTTP/1.1, the path possibly with spaces. */
	body = strstr(req, "\n\n");
	if (body) {
		*body = '\0';
		body += 2;
	}
	first = strtok_r(req, "\n", &save);
	sp = strchr(first, ' ');
	http = strstr(first, " HTTP/");
	ck_assert(sp && http && http > sp);
	*sp = *http = '\0';
	r.method = first;
	r.path = sp + 1;
	if ((sp = strchr(sp + 1, '?'))) {
		*sp = '\0';
		r.query = sp + 1;
	}
	while ((line = strtok_r(NULL, "\n", &save))) {
		if ((line[0] == ' ' || line[0] == '\t') && nh) {
			/* A folded value: joined to the previous header's (the signer collapses
			 * the white space). */
			size_t a = strlen(h[nh - 1].value), b = strlen(line);
			char *v = malloc(a + b + 2);
			snprintf(v, a + b + 2, "%s %s", h[nh - 1].value, line);
			ck_assert(v && nfold < 8);
			h[nh - 1].value = folded[nfold++] = v;
			continue;
		}
		char *c = strchr(line, ':');
		ck_assert_ptr_nonnull(c);
		*c = '\0';
		h[nh].name = line;
		h[nh++].value = c + 1;
	}
	ts = jstr(ctx, "timestamp"); /* 2015-08-30T12:36:00Z */
	snprintf(date, sizeof(date), "%.4s%.2s%.2sT%.2s%.2s%.2sZ", ts, ts + 5, ts + 8, ts + 11,
		 ts + 14, ts + 17);
	h[nh].name = "X-Amz-Date";
	h[nh++].value = date;
	token = jstr(creds, "token");
	if (token && !jbool(ctx, "omit_session_token")) {
		h[nh].name = "X-Amz-Security-Token";
		h[nh++].value = token;
	}
	wlift__sha256_hex(body ? body : "", body ? strlen(body) : 0, hash);
	if (jbool(ctx, "sign_body")) {
		h[nh].name = "X-Amz-Content-Sha256";
		h[nh++].value = hash;
	}
	r.headers = h;
	r.nheaders = nh;
	r.payload_hash = hash;
	r.region = jstr(ctx, "region");
	r.service = jstr(ctx, "service");
	r.amz_date = date;
	r.normalize = jbool(ctx, "normalize");
	ck_assert_int_eq(wlift__sigv4_canonical(&r, &canon, &sh), 0);
	ck_assert_int_eq(wlift__sigv4_string_to_sign(&r, canon, &sts), 0);
	ck_assert_int_eq(wlift__sigv4_signature(&r, jstr(creds, "secret_access_key"), sts, sig), 0);
	rstrip(want_canon);
	rstrip(want_sts);
	rstrip(want_sig);
	if (strcmp(canon, want_canon) != 0) {
		fprintf(stderr, "%s: canonical request\n--- got\n%s\n--- want\n%s\n", dir, canon,
			want_canon);
		ok = 0;
	}
	if (strcmp(sts, want_sts) != 0) {
		fprintf(stderr, "%s: string to sign\n--- got\n%s\n--- want\n%s\n", dir, sts, want_sts);
		ok = 0;
	}
	if (strcmp(sig, want_sig) != 0) {
		fprintf(stderr, "%s: signature %s, want %s\n", dir, sig, want_sig);
		ok = 0;
	}
	while (nfold)
		free(folded[--nfold]);
	free(canon);
	free(sh);
	free(sts);
	json_object_put(ctx);
	free(req);
	free(ctxt);
	free(want_canon);
	free(want_sts);
	free(want_sig);
	return ok;
}

START_TEST(aws_test_suite)
{
	DIR *dp = opendir(WLIFT_SIGV4_VECTORS);
	struct dirent *e;
	int n = 0, bad = 0;

	ck_assert_msg(dp != NULL, "%s: %s", WLIFT_SIGV4_VECTORS, strerror(errno));
	while ((e = readdir(dp))) {
		char dir[1024];
		if (e->d_name[0] == '.' || strchr(e->d_name, '.'))
			continue; /* README.md */
		snprintf(dir, sizeof(dir), "%s/%s", WLIFT_SIGV4_VECTORS, e->d_name);
		n++;
		bad += !one_case(dir);
	}
	closedir(dp);
	ck_assert_int_ge(n, 30);
	ck_assert_msg(bad == 0, "%d of %d cases differ", bad, n);
}
END_TEST

START_TEST(s3_get)
{
	/* The example of the S3 API reference ("Signature Calculations for the Authorization
	 * Header: Example GET Object"), with its published signature. */
	struct wlift__sigv4_header h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", WLIFT_SIGV4_EMPTY_SHA256 },
		{ "x-amz-date", "20130524T000000Z" },
	};
	struct wlift__sigv4_req r = { "GET", "/test.txt", NULL, h, 4, WLIFT_SIGV4_EMPTY_SHA256,
				      "us-east-1", "s3", "20130524T000000Z", 1, 0 };
	char *auth = NULL;

	ck_assert_int_eq(wlift__sigv4_authorization(&r, "AKIAIOSFODNN7EXAMPLE",
						    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
						    &auth),
			 0);
	ck_assert_str_eq(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
			       "s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;"
			       "x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(auth);
}
END_TEST

START_TEST(s3_path_as_sent)
{
	/* S3: no second encoding and no normalization ("a/../b" is a key of its own). */
	struct wlift__sigv4_header h[] = { { "host", "b.s3.amazonaws.com" },
					   { "x-amz-date", "20240101T000000Z" } };
	struct wlift__sigv4_req r = { "GET", "/dir/../my%20key%E2%82%AC", "list-type=2&prefix=a%2Fb",
				      h, 2, WLIFT_SIGV4_UNSIGNED, "eu-west-1", "s3",
				      "20240101T000000Z", 1, 0 };
	char *canon = NULL, *sh = NULL;

	ck_assert_int_eq(wlift__sigv4_canonical(&r, &canon, &sh), 0);
	ck_assert_str_eq(canon, "GET\n/dir/../my%20key%E2%82%AC\nlist-type=2&prefix=a%2Fb\n"
				"host:b.s3.amazonaws.com\nx-amz-date:20240101T000000Z\n\n"
				"host;x-amz-date\nUNSIGNED-PAYLOAD");
	ck_assert_str_eq(sh, "host;x-amz-date");
	free(canon);
	free(sh);
	r.amz_date = "2024-01-01";
	ck_assert_int_eq(wlift__sigv4_authorization(&r, "AK", "SK", &canon), -EINVAL);
	ck_assert_ptr_null(canon);
}
END_TEST

START_TEST(uri_encoding)
{
	char *e = wlift__aws_uri_encode("a b/c+d~e_é!*'()", strlen("a b/c+d~e_é!*'()"), 1);

	ck_assert_str_eq(e, "a%20b/c%2Bd~e_%C3%A9%21%2A%27%28%29");
	free(e);
	e = wlift__aws_uri_encode("a/b", 3, 0);
	ck_assert_str_eq(e, "a%2Fb");
	free(e);
}
END_TEST

/* The host header of the URLs s3.c and awscreds.c sign. */
START_TEST(url_host)
{
	char h[16];

	ck_assert_str_eq(wlift__sigv4_url_host("https://b.s3.amazonaws.com/k?x=1", h, sizeof(h)),
			 "/k?x=1");
	ck_assert_str_eq(h, "b.s3.amazonaws.");
	ck_assert_str_eq(wlift__sigv4_url_host("http://127.0.0.1:9000/bkt/a", h, sizeof(h)),
			 "/bkt/a");
	ck_assert_str_eq(h, "127.0.0.1:9000");
	ck_assert_ptr_null(wlift__sigv4_url_host("https://sts.amazonaws.com", h, sizeof(h)));
	ck_assert_str_eq(h, "sts.amazonaws.c");
	ck_assert_str_eq(wlift__sigv4_url_host("host:80/p", h, sizeof(h)), "/p");
	ck_assert_str_eq(h, "host:80");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sigv4");
	TCase *tc = tcase_create("sigv4");

	tcase_add_test(tc, aws_test_suite);
	tcase_add_test(tc, s3_get);
	tcase_add_test(tc, s3_path_as_sent);
	tcase_add_test(tc, uri_encoding);
	tcase_add_test(tc, url_host);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return wt_run(suite());
}
