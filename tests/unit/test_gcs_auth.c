/* SPDX-License-Identifier: Apache-2.0 */
/* The GCS credential chain without a server: base64url, the service account JWT (its RS256
 * signature verified here with the public half of a key made by the test), the order in which
 * the context's settings pick a credential, and the errors of missing or malformed key files.
 * (Token requests are tested against servers of the tests' own by tests/gcs/test_gcs.sh.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common/common.h"
#include "source/gcs_auth.h"
#include "testutil.h"

START_TEST(b64url)
{
	char *s = wlift__b64url("\xfb\xff\xfe", 3);
	ck_assert_str_eq(s, "-__-");
	free(s);
	s = wlift__b64url("ab", 2);
	ck_assert_str_eq(s, "YWI"); /* no padding */
	free(s);
	s = wlift__b64url("", 0);
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

static unsigned char *unb64url(const char *s, size_t n, size_t *out_len)
{
	char *t = malloc(n + 4);
	unsigned char *out = malloc(n + 4);
	size_t m = n;
	int len;

	memcpy(t, s, n);
	for (size_t i = 0; i < n; i++)
		t[i] = t[i] == '-' ? '+' : t[i] == '_' ? '/' : t[i];
	while (m % 4)
		t[m++] = '=';
	len = EVP_DecodeBlock(out, (unsigned char *)t, (int)m);
	ck_assert_int_ge(len, 0);
	len -= (int)(m - n); /* the padding decoded as zero bytes */
	free(t);
	*out_len = (size_t)len;
	return out;
}

START_TEST(jwt_rs256)
{
	EVP_PKEY *pk = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	char *pem, *jwt = NULL, *dot1, *dot2;
	unsigned char *sig, *claims;
	size_t siglen, clen;
	long pemlen;
	wlift_diag d;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct json_object *c, *v;

	ck_assert_ptr_nonnull(pk);
	ck_assert_int_eq(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
	pemlen = BIO_get_mem_data(b, &pem);
	pem = strndup(pem, (size_t)pemlen);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__gcs_jwt(pem, "kid\"1", "sa@p.iam.gserviceaccount.com", "scope-x",
					"http://127.0.0.1:1/token", 1700000000, "the key", &jwt, &d),
			 0);
	dot1 = strchr(jwt, '.');
	dot2 = strrchr(jwt, '.');
	ck_assert_ptr_nonnull(dot1);
	ck_assert_ptr_ne(dot1, dot2);
	/* The signature verifies with the public key over "header.claims". */
	sig = unb64url(dot2 + 1, strlen(dot2 + 1), &siglen);
	ck_assert_int_eq(siglen, 256);
	ck_assert_int_eq(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk), 1);
	ck_assert_int_eq(EVP_DigestVerify(md, sig, siglen, (unsigned char *)jwt,
					  (size_t)(dot2 - jwt)),
			 1);
	/* The claims, JSON-escaped where they need it. */
	claims = unb64url(dot1 + 1, (size_t)(dot2 - dot1 - 1), &clen);
	{
		char *t = strndup((char *)claims, clen);
		c = json_tokener_parse(t);
		free(t);
	}
	ck_assert_ptr_nonnull(c);
	ck_assert(json_object_object_get_ex(c, "iss", &v));
	ck_assert_str_eq(json_object_get_string(v), "sa@p.iam.gserviceaccount.com");
	ck_assert(json_object_object_get_ex(c, "aud", &v));
	ck_assert_str_eq(json_object_get_string(v), "http://127.0.0.1:1/token");
	ck_assert(json_object_object_get_ex(c, "exp", &v));
	ck_assert_int_eq(json_object_get_int64(v), 1700003600);
	json_object_put(c);
	free(claims);
	claims = unb64url(jwt, (size_t)(dot1 - jwt), &clen);
	ck_assert_ptr_nonnull(strstr((char *)claims, "\"kid\":\"kid\\\"1\""));
	ck_assert_ptr_nonnull(strstr((char *)claims, "\"alg\":\"RS256\""));
	free(claims);
	free(sig);
	free(jwt);
	/* Not a key: an auth error naming it, never the key's bytes. */
	jwt = NULL;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__gcs_jwt("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
					NULL, "a", "s", "u", 1, "the key file K", &jwt, &d),
			 WLIFT_EAUTH);
	ck_assert_ptr_null(jwt);
	ck_assert_ptr_nonnull(strstr(d.message, "the key file K"));
	ck_assert_ptr_null(strstr(d.message, "AAAA"));
	free(pem);
	EVP_MD_CTX_free(md);
	BIO_free(b);
	EVP_PKEY_free(pk);
}
END_TEST

static void clear_env(void)
{
	static const char *const v[] = { "WEIGHTLIFT_GCS_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN",
					 "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST",
					 "GCE_METADATA_HOST", "GCE_METADATA_IP",
					 "WEIGHTLIFT_GCS_ANONYMOUS", "CLOUDSDK_CONFIG" };
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(v); i++)
		unsetenv(v[i]);
	setenv("HOME", wt_tmpdir(), 1); /* no gcloud ADC file there */
}

/* The credential a fresh context resolves to; its kind, *what set. */
static int cred_kind(const char **what, int *err, wlift_diag *d)
{
	wlift_ctx *ctx = NULL;
	struct wlift__gcs_cred *c = NULL;

	wlift_diag_clear(d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, d), 0);
	*err = wlift__gcs_cred_get(ctx, "gs://b/k", &c, d);
	wlift_ctx_destroy(ctx);
	if (*err)
		return -1;
	*what = wlift__gcs_cred_what(c);
	return wlift__gcs_cred_kind(c);
}

static void write_text(const char *path, const char *text)
{
	wt_write_file(path, text, strlen(text));
}

START_TEST(chain_order)
{
	const char *what = NULL;
	int err;
	wlift_diag d;
	char *hdr = NULL;
	wlift_ctx *ctx = NULL;
	struct wlift__gcs_cred *c = NULL;

	clear_env();
	/* Nothing set, not a GCE VM (the test machine is not; else the metadata server). */
	if (cred_kind(&what, &err, &d) == WLIFT_GCS_METADATA)
		return;
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_ANON);
	ck_assert_ptr_nonnull(strstr(what, "GOOGLE_APPLICATION_CREDENTIALS"));
	/* The gcloud ADC file in ~/.config/gcloud (an authorized_user). */
	{
		char dir[4096];
		snprintf(dir, sizeof(dir), "mkdir -p '%s/.config/gcloud'", wt_tmpdir());
		ck_assert_int_eq(system(dir), 0);
		snprintf(dir, sizeof(dir), "%s/.config/gcloud/application_default_credentials.json",
			 wt_tmpdir());
		write_text(dir, "{\"type\": \"authorized_user\", \"client_id\": \"c\", "
				"\"client_secret\": \"s\", \"refresh_token\": \"r\"}");
		ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_USER);
		ck_assert_ptr_nonnull(strstr(what, dir));
		/* ... but not with an emulator (its requests go anonymous). */
		setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
		ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_ANON);
		unsetenv("STORAGE_EMULATOR_HOST");
	}
	/* GCE_METADATA_HOST wins over nothing, and is used with an emulator too. */
	setenv("HOME", "/nonexistent", 1);
	setenv("GCE_METADATA_HOST", "127.0.0.1:9", 1);
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_METADATA);
	ck_assert_ptr_nonnull(strstr(what, "127.0.0.1:9"));
	/* A key file wins over the metadata server. */
	write_text(wt_path("sa.json"), "{\"type\": \"service_account\", \"private_key\": \"x\", "
				       "\"client_email\": \"me@p.iam.gserviceaccount.com\"}");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", wt_path("sa.json"), 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_SERVICE);
	ck_assert_ptr_nonnull(strstr(what, "me@p.iam.gserviceaccount.com"));
	ck_assert_ptr_nonnull(strstr(what, "GOOGLE_APPLICATION_CREDENTIALS"));
	/* An environment token wins over the key file; either name. */
	setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "tok-g", 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_STATIC);
	ck_assert_str_eq(what, "the token from GOOGLE_OAUTH_ACCESS_TOKEN");
	setenv("WEIGHTLIFT_GCS_TOKEN", "tok-w", 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_STATIC);
	ck_assert_str_eq(what, "the token from WEIGHTLIFT_GCS_TOKEN");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_int_eq(wlift__gcs_cred_get(ctx, "gs://b/k", &c, &d), 0);
	ck_assert_int_eq(wlift__gcs_auth_header(c, "gs://b/k", &hdr, &d), 0);
	ck_assert_str_eq(hdr, "Authorization: Bearer tok-w");
	free(hdr);
	wlift_ctx_destroy(ctx);
	/* Anonymous wins over everything. */
	setenv("WEIGHTLIFT_GCS_ANONYMOUS", "1", 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_ANON);
	ck_assert_ptr_nonnull(strstr(what, "WEIGHTLIFT_GCS_ANONYMOUS"));
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_int_eq(wlift__gcs_cred_get(ctx, "gs://b/k", &c, &d), 0);
	hdr = (char *)"x";
	ck_assert_int_eq(wlift__gcs_auth_header(c, "gs://b/k", &hdr, &d), 0);
	ck_assert_ptr_null(hdr);
	wlift_ctx_destroy(ctx);
}
END_TEST

/* A bad GOOGLE_APPLICATION_CREDENTIALS is an auth error naming the file and the variable. */
static void bad_file(const char *text, const char *want)
{
	const char *what;
	int err;
	wlift_diag d;

	clear_env();
	if (text)
		write_text(wt_path("key.json"), text);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", wt_path(text ? "key.json" : "missing.json"), 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), -1);
	ck_assert_int_eq(err, WLIFT_EAUTH);
	ck_assert_str_eq(d.rule, "gcs.credentials");
	ck_assert_msg(strstr(d.message, want) && strstr(d.message, "GOOGLE_APPLICATION_CREDENTIALS") &&
			      strstr(d.message, "gs://b/k"),
		      "%s", d.message);
	ck_assert_ptr_null(strstr(d.message, "SECRETVALUE"));
}

START_TEST(key_file_errors)
{
	bad_file(NULL, "missing.json");
	bad_file("not json SECRETVALUE", "not a JSON key file");
	bad_file("{\"type\": \"external_account\", \"x\": \"SECRETVALUE\"}", "lacks audience");
	bad_file("{\"type\": \"external_account\", \"audience\": \"SECRETVALUE\", "
		 "\"subject_token_type\": \"t\", \"credential_source\": {\"executable\": {}}}",
		 "only file and url credential sources");
	bad_file("{\"type\": \"external_account\", \"audience\": \"a\", \"subject_token_type\": "
		 "\"t\", \"credential_source\": {\"file\": \"f\", \"format\": {\"type\": \"xml\"}}}",
		 "format must be text, or json");
	bad_file("{\"type\": \"impersonated_service_account\", \"x\": \"SECRETVALUE\"}",
		 "impersonated_service_account");
	bad_file("{\"type\": \"service_account\", \"private_key\": \"SECRETVALUE\"}", "client_email");
	bad_file("{\"type\": \"authorized_user\", \"client_id\": \"SECRETVALUE\"}", "refresh_token");
}
END_TEST

START_TEST(token_endpoint_unreachable)
{
	const char *what;
	int err;
	wlift_diag d;
	wlift_ctx *ctx = NULL;
	struct wlift__gcs_cred *c = NULL;
	char *hdr = NULL;

	clear_env();
	/* Port 1 on loopback: refused at once. */
	setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
	ck_assert_int_eq(cred_kind(&what, &err, &d), WLIFT_GCS_METADATA);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), 0);
	ck_assert_int_eq(wlift__gcs_cred_get(ctx, "gs://b/k", &c, &d), 0);
	err = wlift__gcs_auth_header(c, "gs://b/k", &hdr, &d);
#ifdef WLIFT_HAVE_CURL
	ck_assert_int_eq(err, WLIFT_ENET);
	ck_assert_ptr_nonnull(strstr(d.message, "the GCE metadata server at 127.0.0.1:1"));
#else
	ck_assert_int_eq(err, WLIFT_EUNSUPPORTED);
#endif
	ck_assert_ptr_null(hdr);
	wlift_ctx_destroy(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gcs_auth");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, NULL, wt_cleanup_at_exit);
	tcase_add_test(tc, b64url);
	tcase_add_test(tc, jwt_rs256);
	tcase_add_test(tc, chain_order);
	tcase_add_test(tc, key_file_errors);
	tcase_add_test(tc, token_endpoint_unreachable);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
