/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Google Cloud credentials for gs:// sources: the chain of gcs_auth.h, the tokens it yields
 * and their cache. A credential is resolved from the context's settings (read once by
 * wlift_ctx_create) and kept in a process-wide list keyed by what it is (the key file's
 * path, the metadata host), so that every load of the process shares one token per
 * credential and fetches it again only shortly before it expires. Token requests are
 * synchronous libcurl transfers on the calling thread (a fetch is rare: once an hour), with
 * the connect timeout of the context and an overall bound; a credential's mutex makes
 * concurrent callers wait for one fetch instead of each making its own.
 *
 * What the token endpoints answer is JSON: access_token and expires_in on success, and on
 * failure OAuth's error and error_description (RFC 6749 §5.2), which go into the message;
 * no other bytes of an answer are ever shown.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "source/awscreds.h" /* wlift__iso8601 */
#include "source/gcs_auth.h"
#include "source/http.h" /* wlift__curl_init */

/* Scope of the tokens a key file's JWT asks for: reading objects and listing buckets. */
#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_only"
#define GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define METADATA_DEFAULT_HOST "169.254.169.254"
/* Key files and token answers larger than this are not plausible. */
#define GCS_AUTH_MAX_BYTES (1u << 20)

struct wlift__gcs_cred {
	struct wlift__gcs_cred *next; /* the process-wide list */
	int kind;
	char *key;  /* identity in the list */
	char *what; /* for messages */
	/* service account (SERVICE): */
	char *pem, *kid, *email;
	/* authorized user (USER): */
	char *client_id, *client_secret, *refresh_token;
	/* external_account (EXTERNAL): the STS audience, the subject token's type and source
	 * (a file, or a URL with headers "Name: value\n"...; json_field: the member of a JSON
	 * answer, NULL for text), the optional impersonation URL. */
	char *audience, *st_type, *st_file, *st_url, *st_headers, *st_field, *imp_url;
	char *token_uri; /* SERVICE, USER, EXTERNAL (STS); the token URL for METADATA */
	char *ca_bundle;
	unsigned connect_s;
	pthread_mutex_t mu; /* guards token, expires */
	char *token;
	double expires; /* wlift__now() seconds */
};

static pthread_mutex_t creds_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wlift__gcs_cred *creds;

const char *wlift__gcs_cred_what(const struct wlift__gcs_cred *c)
{
	return c->what;
}

int wlift__gcs_cred_kind(const struct wlift__gcs_cred *c)
{
	return c->kind;
}

char *wlift__b64url(const void *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	int len;

	if (!out)
		return NULL;
	len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (int i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return out;
}

/* A JSON string with s's characters escaped (the key file's own values). malloc'd. */
static char *json_quote(const char *s)
{
	struct json_object *o = json_object_new_string(s);
	char *out = NULL;

	if (o) {
		const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								      JSON_C_TO_STRING_NOSLASHESCAPE);
		out = t ? strdup(t) : NULL;
		json_object_put(o);
	}
	return out;
}

int wlift__gcs_jwt(const char *pem, const char *kid, const char *iss, const char *scope,
		   const char *aud, long long now, const char *what, char **out, wlift_diag *d)
{
	char *qkid = NULL, *qiss = NULL, *qscope = NULL, *qaud = NULL, *hdr = NULL, *cl = NULL;
	char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *jwt = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0, n;
	BIO *bio = NULL;
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *md = NULL;
	int ret = -ENOMEM;

	*out = NULL;
	qkid = json_quote(kid ? kid : "");
	qiss = json_quote(iss);
	qscope = json_quote(scope);
	qaud = json_quote(aud);
	if (!qkid || !qiss || !qscope || !qaud)
		goto nomem;
	n = strlen(qkid) + 64;
	hdr = malloc(n);
	if (!hdr)
		goto nomem;
	if (kid && *kid)
		snprintf(hdr, n, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":%s}", qkid);
	else
		snprintf(hdr, n, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
	n = strlen(qiss) + strlen(qscope) + strlen(qaud) + 96;
	cl = malloc(n);
	if (!cl)
		goto nomem;
	snprintf(cl, n, "{\"iss\":%s,\"scope\":%s,\"aud\":%s,\"iat\":%lld,\"exp\":%lld}", qiss,
		 qscope, qaud, now, now + 3600);
	h64 = wlift__b64url(hdr, strlen(hdr));
	c64 = wlift__b64url(cl, strlen(cl));
	if (!h64 || !c64)
		goto nomem;
	n = strlen(h64) + strlen(c64) + 2;
	input = malloc(n);
	if (!input)
		goto nomem;
	snprintf(input, n, "%s.%s", h64, c64);
	bio = BIO_new_mem_buf(pem, -1);
	if (!bio)
		goto nomem;
	pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (!pk || EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) {
		ret = wlift__diag_set(d, WLIFT_EAUTH, NULL, NULL, -1, "gcs.key",
				      "%s: the private_key is not a PEM RSA private key", what);
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (!md)
		goto nomem;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1 ||
	    !(sig = malloc(siglen)) ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1) {
		ret = wlift__diag_set(d, WLIFT_EAUTH, NULL, NULL, -1, "gcs.key",
				      "%s: signing the JWT with the private_key failed", what);
		goto out;
	}
	s64 = wlift__b64url(sig, siglen);
	if (!s64)
		goto nomem;
	n = strlen(input) + strlen(s64) + 2;
	jwt = malloc(n);
	if (!jwt)
		goto nomem;
	snprintf(jwt, n, "%s.%s", input, s64);
	*out = jwt;
	jwt = NULL;
	ret = 0;
	goto out;
nomem:
	ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	free(sig);
	free(jwt);
	free(input);
	free(s64);
	free(c64);
	free(h64);
	free(cl);
	free(hdr);
	free(qaud);
	free(qscope);
	free(qiss);
	free(qkid);
	return ret;
}

/* ---- resolving the chain ---------------------------------------------------------------- */

static void cred_free(struct wlift__gcs_cred *c)
{
	if (!c)
		return;
	free(c->key);
	free(c->what);
	free(c->pem);
	free(c->kid);
	free(c->email);
	free(c->client_id);
	free(c->client_secret);
	free(c->refresh_token);
	free(c->audience);
	free(c->st_type);
	free(c->st_file);
	free(c->st_url);
	free(c->st_headers);
	free(c->st_field);
	free(c->imp_url);
	free(c->token_uri);
	free(c->ca_bundle);
	free(c->token);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static struct wlift__gcs_cred *cred_new(int kind)
{
	struct wlift__gcs_cred *c = calloc(1, sizeof(*c));

	if (c) {
		c->kind = kind;
		pthread_mutex_init(&c->mu, NULL);
	}
	return c;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* A string member of o, or NULL. */
static const char *jstr(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int dup_member(struct json_object *o, const char *name, char **out)
{
	const char *v = jstr(o, name);

	*out = v ? strdup(v) : NULL;
	return v && !*out ? -ENOMEM : 0;
}

/* Read a key file (service_account or authorized_user) into c. from: the variable or place
 * that named it, for messages. */
/* An external_account file (workload identity federation, google-auth's
 * identity_pool credentials): audience, subject_token_type, token_url (STS),
 * credential_source {file | url, headers, format {type text|json,
 * subject_token_field_name}}, optional service_account_impersonation_url. Executable and AWS
 * sources are refused, naming the file. */
static int load_external(struct wlift__gcs_cred *c, struct json_object *root, const char *path,
			 const char *from, const char *uri, wlift_diag *d)
{
	struct json_object *src, *fmt, *hs;
	const char *ftype = NULL;

	c->kind = WLIFT_GCS_EXTERNAL;
	if (dup_member(root, "audience", &c->audience) ||
	    dup_member(root, "subject_token_type", &c->st_type) ||
	    dup_member(root, "token_url", &c->token_uri) ||
	    dup_member(root, "service_account_impersonation_url", &c->imp_url))
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	if (!c->audience || !c->st_type ||
	    !json_object_object_get_ex(root, "credential_source", &src) ||
	    !json_object_is_type(src, json_type_object))
		return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				       "%s: the external_account file %s (from %s) lacks audience, "
				       "subject_token_type or credential_source",
				       uri, path, from);
	if (dup_member(src, "file", &c->st_file) || dup_member(src, "url", &c->st_url))
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	if (!c->st_file && !c->st_url)
		return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				       "%s: the external_account file %s (from %s): only file and url "
				       "credential sources are supported (not executable or AWS)",
				       uri, path, from);
	if (json_object_object_get_ex(src, "format", &fmt) &&
	    json_object_is_type(fmt, json_type_object)) {
		ftype = jstr(fmt, "type");
		if (ftype && strcmp(ftype, "json") == 0 &&
		    dup_member(fmt, "subject_token_field_name", &c->st_field))
			return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		if ((ftype && strcmp(ftype, "json") != 0 && strcmp(ftype, "text") != 0) ||
		    (ftype && strcmp(ftype, "json") == 0 && !c->st_field))
			return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					       "%s: the external_account file %s (from %s): "
					       "credential_source.format must be text, or json with "
					       "subject_token_field_name",
					       uri, path, from);
	}
	if (c->st_url && json_object_object_get_ex(src, "headers", &hs) &&
	    json_object_is_type(hs, json_type_object)) {
		size_t n = 1, o = 0;
		json_object_object_foreach(hs, k0, v0)
			n += strlen(k0) + strlen(json_object_get_string(v0)) + 3;
		if (!(c->st_headers = malloc(n)))
			return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		c->st_headers[0] = '\0';
		json_object_object_foreach(hs, k, v)
			o += (size_t)snprintf(c->st_headers + o, n - o, "%s: %s\n", k,
					      json_object_get_string(v));
	}
	if (!c->token_uri && !(c->token_uri = strdup("https://sts.googleapis.com/v1/token")))
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	c->what = dup_printf("the external account in %s (audience %.200s, subject token from "
			     "%.300s%s, from %s)", path, c->audience,
			     c->st_file ? c->st_file : c->st_url,
			     c->imp_url ? ", impersonating a service account" : "", from);
	return 0;
}

static int load_key_file(struct wlift__gcs_cred *c, const char *path, const char *from,
			 const char *uri, wlift_diag *d)
{
	FILE *f = NULL;
	char *text = NULL;
	struct json_object *root = NULL;
	const char *type;
	size_t len = 0;
	long sz;
	int ret = 0;

	f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				       "%s: the credentials file %s (from %s) cannot be read: %s", uri,
				       path, from, strerror(e));
	}
	if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
	    (size_t)sz > GCS_AUTH_MAX_BYTES) {
		ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				      "%s: the credentials file %s (from %s) is not a key file "
				      "(unreadable or larger than %u bytes)",
				      uri, path, from, GCS_AUTH_MAX_BYTES);
		goto out;
	}
	text = malloc((size_t)sz + 1);
	if (!text) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	len = fread(text, 1, (size_t)sz, f);
	text[len] = '\0';
	root = json_tokener_parse(text);
	type = root && json_object_is_type(root, json_type_object) ? jstr(root, "type") : NULL;
	if (!type) {
		ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				      "%s: the credentials file %s (from %s) is not a JSON key file "
				      "with a \"type\"",
				      uri, path, from);
		goto out;
	}
	if (strcmp(type, "service_account") == 0) {
		c->kind = WLIFT_GCS_SERVICE;
		if (dup_member(root, "private_key", &c->pem) ||
		    dup_member(root, "private_key_id", &c->kid) ||
		    dup_member(root, "client_email", &c->email) ||
		    dup_member(root, "token_uri", &c->token_uri))
			goto nomem;
		if (!c->pem || !c->email) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the service account key file %s (from %s) lacks "
					      "%s",
					      uri, path, from, !c->pem ? "private_key" : "client_email");
			goto out;
		}
		c->what = dup_printf("the service account key file %s (%s, from %s)", path,
				     c->email, from);
	} else if (strcmp(type, "authorized_user") == 0) {
		c->kind = WLIFT_GCS_USER;
		if (dup_member(root, "client_id", &c->client_id) ||
		    dup_member(root, "client_secret", &c->client_secret) ||
		    dup_member(root, "refresh_token", &c->refresh_token) ||
		    dup_member(root, "token_uri", &c->token_uri))
			goto nomem;
		if (!c->client_id || !c->client_secret || !c->refresh_token) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the authorized_user credentials file %s (from %s) "
					      "lacks client_id, client_secret or refresh_token",
					      uri, path, from);
			goto out;
		}
		c->what = dup_printf("the user credentials (refresh token) in %s (from %s)", path,
				     from);
	} else if (strcmp(type, "external_account") == 0) {
		ret = load_external(c, root, path, from, uri, d);
		if (ret)
			goto out;
	} else {
		/* impersonated_service_account, external_account_authorized_user, ...: not
		 * implemented; say so rather than send requests anonymously. */
		ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
				      "%s: the credentials file %s (from %s) has type \"%.40s\": "
				      "weightlift reads service_account, authorized_user and "
				      "external_account files",
				      uri, path, from, type);
		goto out;
	}
	if (!c->token_uri && !(c->token_uri = strdup(GOOGLE_TOKEN_URI)))
		goto nomem;
	if (!c->what)
		goto nomem;
	goto out;
nomem:
	ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
out:
	json_object_put(root);
	free(text);
	fclose(f);
	return ret;
}

/* Whether this machine is a GCE VM (also GKE's nodes): the DMI product name, as Google's own
 * auth libraries check before asking the metadata server (a request to 169.254.169.254 from
 * elsewhere would wait for a timeout). */
static int on_gce(void)
{
	char buf[64] = "";
	FILE *f = fopen("/sys/class/dmi/id/product_name", "r");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strncmp(buf, "Google", 6) == 0;
}

static int file_exists(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The cached credential with this key, or c itself after adding it (c freed when one was
 * there already). */
static struct wlift__gcs_cred *intern(struct wlift__gcs_cred *c)
{
	struct wlift__gcs_cred *e;

	pthread_mutex_lock(&creds_mu);
	for (e = creds; e; e = e->next)
		if (e->kind == c->kind && strcmp(e->key, c->key) == 0)
			break;
	if (!e) {
		c->next = creds;
		creds = c;
		e = c;
		c = NULL;
	}
	pthread_mutex_unlock(&creds_mu);
	cred_free(c);
	return e;
}

int wlift__gcs_cred_get(const wlift_ctx *ctx, const char *uri, struct wlift__gcs_cred **out,
			wlift_diag *d)
{
	struct wlift__gcs_cred *c = NULL;
	const char *adc = ctx->gcs_adc_file;
	int ret = 0;

	*out = NULL;
	if (ctx->gcs_anonymous) {
		c = cred_new(WLIFT_GCS_ANON);
		if (!c || !(c->key = strdup("anon:set")) ||
		    !(c->what = strdup("anonymous requests (WEIGHTLIFT_GCS_ANONYMOUS=1)")))
			goto nomem;
	} else if (ctx->gcs_token) {
		c = cred_new(WLIFT_GCS_STATIC);
		if (!c || !(c->key = dup_printf("token:%s", ctx->gcs_token)) ||
		    !(c->token = strdup(ctx->gcs_token)) ||
		    !(c->what = dup_printf("the token from %s", ctx->gcs_token_env)))
			goto nomem;
		c->expires = -1; /* never refreshed */
	} else if (ctx->gcs_credentials ||
		   (!ctx->gcs_emulator && file_exists(adc))) {
		const char *path = ctx->gcs_credentials ? ctx->gcs_credentials : adc;
		c = cred_new(WLIFT_GCS_SERVICE);
		if (!c || !(c->key = strdup(path)))
			goto nomem;
		ret = load_key_file(c, path,
				    ctx->gcs_credentials ? "GOOGLE_APPLICATION_CREDENTIALS"
							 : "gcloud's application default credentials",
				    uri, d);
		if (ret)
			goto out;
	} else if (ctx->gcs_metadata_host || (!ctx->gcs_emulator && on_gce())) {
		const char *host = ctx->gcs_metadata_host ? ctx->gcs_metadata_host
							  : METADATA_DEFAULT_HOST;
		c = cred_new(WLIFT_GCS_METADATA);
		if (!c || !(c->key = strdup(host)) ||
		    !(c->token_uri = dup_printf("http://%s%s", host, METADATA_TOKEN_PATH)) ||
		    !(c->what = dup_printf("the GCE metadata server at %s%s", host,
					   ctx->gcs_metadata_host ? " (GCE_METADATA_HOST)" : "")))
			goto nomem;
	} else {
		c = cred_new(WLIFT_GCS_ANON);
		if (!c || !(c->key = strdup("anon:none")) ||
		    !(c->what = dup_printf(
			      "no credentials (sent anonymously: none of WEIGHTLIFT_GCS_TOKEN, "
			      "GOOGLE_OAUTH_ACCESS_TOKEN, GOOGLE_APPLICATION_CREDENTIALS%s%s is set%s)",
			      ctx->gcs_emulator ? "" : ", ",
			      ctx->gcs_emulator ? "" : (adc ? adc : "the gcloud ADC file"),
			      ctx->gcs_emulator ? "" : " and this is not a GCE VM")))
			goto nomem;
	}
	c->connect_s = ctx->http_connect_s ? ctx->http_connect_s : WLIFT_HTTP_CONNECT_S;
	if (ctx->ca_bundle && !(c->ca_bundle = strdup(ctx->ca_bundle)))
		goto nomem;
	*out = intern(c);
	return 0;
nomem:
	ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
out:
	cred_free(c);
	return ret;
}

void wlift__gcs_cred_invalidate(struct wlift__gcs_cred *c)
{
	if (!c || c->kind == WLIFT_GCS_ANON || c->kind == WLIFT_GCS_STATIC)
		return;
	pthread_mutex_lock(&c->mu);
	free(c->token);
	c->token = NULL;
	pthread_mutex_unlock(&c->mu);
}

#ifdef WLIFT_HAVE_CURL

#include <curl/curl.h>

struct body {
	char *p;
	size_t n;
	int over;
};

static size_t on_body(char *buf, size_t size, size_t nmemb, void *user)
{
	struct body *b = user;
	size_t n = size * nmemb;
	char *np;

	if (b->n + n > GCS_AUTH_MAX_BYTES) {
		b->over = 1;
		return 0;
	}
	np = realloc(b->p, b->n + n + 1);
	if (!np)
		return 0;
	memcpy(np + b->n, buf, n);
	b->p = np;
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* The form-encoded value of s. malloc'd. */
static char *form(CURL *e, const char *s)
{
	char *t = curl_easy_escape(e, s, 0), *out;

	if (!t)
		return NULL;
	out = strdup(t);
	curl_free(t);
	return out;
}

/* One token request: POST the form fields (NULL: a GET with the metadata header). Fills
 * c->token and c->expires. Called with c->mu held. */
static int fetch(struct wlift__gcs_cred *c, const char *post, const char *uri, wlift_diag *d)
{
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL;
	struct body b = { 0 };
	struct json_object *root = NULL, *v;
	char errbuf[CURL_ERROR_SIZE] = "";
	const char *tok, *err, *desc;
	long st = 0;
	double ttl = 3600;
	CURLcode rc;
	int ret = 0;

	if (!e)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	curl_easy_setopt(e, CURLOPT_URL, c->token_uri);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)c->connect_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)WLIFT_GCS_TOKEN_TIMEOUT_S);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	/* The metadata server answers plain HTTP on a link-local address: no proxy there. */
	if (c->kind == WLIFT_GCS_METADATA) {
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
		if (!(h = curl_slist_append(h, "Metadata-Flavor: Google")))
			goto nomem;
	} else {
		if (c->ca_bundle)
			curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_bundle);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, post);
		if (!(h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded")))
			goto nomem;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	rc = curl_easy_perform(e);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && b.over)) {
		ret = wlift__diag_set(d, rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : WLIFT_ENET, uri, NULL,
				      -1, "gcs.token",
				      "%s: getting an access token from %s: the token endpoint "
				      "cannot be reached: %s",
				      uri, c->what, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
	root = b.p && !b.over ? json_tokener_parse(b.p) : NULL;
	if (root && !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		root = NULL;
	}
	tok = root ? jstr(root, "access_token") : NULL;
	if (st != 200 || !tok || !*tok) {
		/* OAuth's error answer (RFC 6749 §5.2): its code and description are the
		 * server's message; any other body is not shown. */
		err = root ? jstr(root, "error") : NULL;
		desc = root ? jstr(root, "error_description") : NULL;
		ret = wlift__diag_set(d, st >= 500 ? WLIFT_EHTTP : WLIFT_EAUTH, uri, NULL, -1,
				      "gcs.token",
				      "%s: getting an access token from %s: HTTP %ld%s%.200s%s%.300s%s",
				      uri, c->what, st, err ? ": " : st == 200 ? " without an access_token" : "",
				      err ? err : "", desc ? " (" : "", desc ? desc : "",
				      desc ? ")" : "");
		goto out;
	}
	if (json_object_object_get_ex(root, "expires_in", &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		ttl = json_object_get_double(v);
	free(c->token);
	c->token = strdup(tok);
	if (!c->token)
		goto nomem;
	c->expires = wlift__now() + ttl;
	goto out;
nomem:
	ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
out:
	json_object_put(root);
	free(b.p);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return ret;
}

/* One plain request of the external account's flow (the subject token's URL, the
 * impersonation): GET (post NULL) or POST post as JSON, with extra header lines hdrs
 * ("Name: value\n"...). 0 with *st and *body (malloc'd, NUL-terminated) or WLIFT_ENET/-ENOMEM
 * naming what. */
static int easy(const struct wlift__gcs_cred *c, const char *url, const char *hdrs,
		const char *post, const char *what, const char *uri, long *st, char **body,
		wlift_diag *d)
{
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL;
	struct body b = { 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	int ret = 0;

	*body = NULL;
	*st = 0;
	if (!e)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	for (const char *p = hdrs; p && *p;) {
		size_t n = strcspn(p, "\n");
		char *line = strndup(p, n);
		struct curl_slist *nh = line ? curl_slist_append(h, line) : NULL;
		free(line);
		if (!nh) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		h = nh;
		p += n + (p[n] == '\n');
	}
	if (post) {
		struct curl_slist *nh = curl_slist_append(h, "Content-Type: application/json");
		if (!nh) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		h = nh;
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, post);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)c->connect_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)WLIFT_GCS_TOKEN_TIMEOUT_S);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (c->ca_bundle)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_bundle);
	rc = curl_easy_perform(e);
	if (rc != CURLE_OK) {
		ret = wlift__diag_set(d, rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : WLIFT_ENET, uri, NULL,
				      -1, "gcs.token", "%s: %s for %s: %s cannot be reached: %s", uri,
				      what, c->what, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, st);
	*body = b.p ? b.p : strdup("");
	b.p = NULL;
	if (!*body)
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
out:
	free(b.p);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return ret;
}

/* The external account's subject token (from its file or URL; a JSON member when the format
 * says so). malloc'd into *out. */
static int subject_token(const struct wlift__gcs_cred *c, const char *uri, char **out,
			 wlift_diag *d)
{
	const char *src = c->st_file ? c->st_file : c->st_url;
	char *raw = NULL;
	long st = 200;
	int ret = 0;

	*out = NULL;
	if (c->st_file) {
		FILE *f = fopen(c->st_file, "re");
		size_t n = 0;
		raw = malloc(GCS_AUTH_MAX_BYTES + 1);
		if (!raw) {
			if (f)
				fclose(f);
			return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		}
		if (!f) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the subject token file %s of %s cannot be read: %s",
					      uri, c->st_file, c->what, strerror(errno));
			goto out;
		}
		n = fread(raw, 1, GCS_AUTH_MAX_BYTES, f);
		fclose(f);
		raw[n] = '\0';
	} else {
		ret = easy(c, c->st_url, c->st_headers, NULL, "getting the subject token", uri, &st,
			   &raw, d);
		if (ret)
			goto out;
		if (st != 200) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the subject token URL %s of %s: HTTP %ld", uri,
					      c->st_url, c->what, st);
			goto out;
		}
	}
	if (c->st_field) {
		struct json_object *root = json_tokener_parse(raw);
		const char *v = root && json_object_is_type(root, json_type_object)
					? jstr(root, c->st_field) : NULL;
		int found = v && *v;
		if (found)
			*out = strdup(v);
		json_object_put(root); /* v was root's */
		if (!found) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the subject token from %s of %s is not JSON with "
					      "a string %.80s",
					      uri, src, c->what, c->st_field);
			goto out;
		}
	} else {
		size_t n = strlen(raw);
		while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r' || raw[n - 1] == ' '))
			raw[--n] = '\0';
		if (!n) {
			ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "gcs.credentials",
					      "%s: the subject token from %s of %s is empty", uri, src,
					      c->what);
			goto out;
		}
		*out = strdup(raw);
	}
	if (!*out)
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
out:
	free(raw);
	return ret;
}

/* Service account impersonation (IAM Credentials generateAccessToken) with the STS token in
 * c->token: replaces it with the service account's, and its expiry. */
static int impersonate(struct wlift__gcs_cred *c, const char *uri, wlift_diag *d)
{
	char *hdr = dup_printf("Authorization: Bearer %s\n", c->token), *body = NULL;
	struct json_object *root = NULL;
	const char *tok, *exp;
	long st = 0;
	int64_t t;
	int ret;

	if (!hdr)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	ret = easy(c, c->imp_url, hdr, "{\"scope\": [\"" GCS_SCOPE "\"], \"lifetime\": \"3600s\"}",
		   "impersonating the service account", uri, &st, &body, d);
	if (ret)
		goto out;
	root = json_tokener_parse(body);
	if (root && !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		root = NULL;
	}
	tok = root ? jstr(root, "accessToken") : NULL;
	exp = root ? jstr(root, "expireTime") : NULL;
	if (st != 200 || !tok || !*tok) {
		struct json_object *err = NULL;
		const char *msg = NULL;
		if (root && json_object_object_get_ex(root, "error", &err) &&
		    json_object_is_type(err, json_type_object))
			msg = jstr(err, "message");
		ret = wlift__diag_set(d, st >= 500 ? WLIFT_EHTTP : WLIFT_EAUTH, uri, NULL, -1,
				      "gcs.token",
				      "%s: impersonating the service account of %s at %s: HTTP %ld%s%.300s",
				      uri, c->what, c->imp_url, st, msg ? ": " : "", msg ? msg : "");
		goto out;
	}
	free(c->token);
	if (!(c->token = strdup(tok))) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	t = exp ? wlift__iso8601(exp) : -1;
	c->expires = wlift__now() + (t > 0 ? (double)(t - (int64_t)time(NULL)) : 3600.0);
out:
	json_object_put(root);
	free(body);
	free(hdr);
	return ret;
}

/* Workload identity federation: the subject token exchanged at STS (RFC 8693), then
 * optionally the service account impersonated. */
static int refresh_external(struct wlift__gcs_cred *c, CURL *e, const char *uri, wlift_diag *d)
{
	char *sub = NULL, *fs = NULL, *fa = NULL, *ft = NULL, *post = NULL;
	int ret = subject_token(c, uri, &sub, d);

	if (ret)
		return ret;
	fs = form(e, sub);
	fa = form(e, c->audience);
	ft = form(e, c->st_type);
	if (fs && fa && ft)
		post = dup_printf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3A"
				  "token-exchange&audience=%s&scope=%s&requested_token_type=urn%%3A"
				  "ietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Aaccess_token&"
				  "subject_token_type=%s&subject_token=%s",
				  fa,
				  c->imp_url ? "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform"
					     : "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdevstorage."
					       "read_only",
				  ft, fs);
	if (!post) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = fetch(c, post, uri, d);
	if (!ret && c->imp_url)
		ret = impersonate(c, uri, d);
out:
	if (sub)
		memset(sub, 0, strlen(sub));
	free(sub);
	free(fs);
	free(fa);
	free(ft);
	free(post);
	return ret;
}

static int refresh(struct wlift__gcs_cred *c, const char *uri, wlift_diag *d)
{
	CURL *e = NULL;
	char *jwt = NULL, *post = NULL, *a = NULL, *b = NULL, *x = NULL;
	int ret;

	if (wlift__curl_init() != CURLE_OK)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, "gcs.token",
				       "%s: curl_global_init failed", uri);
	if (c->kind == WLIFT_GCS_METADATA)
		return fetch(c, NULL, uri, d);
	e = curl_easy_init();
	if (!e)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	if (c->kind == WLIFT_GCS_EXTERNAL) {
		ret = refresh_external(c, e, uri, d);
		goto out;
	}
	if (c->kind == WLIFT_GCS_SERVICE) {
		ret = wlift__gcs_jwt(c->pem, c->kid, c->email, GCS_SCOPE, c->token_uri,
				     (long long)time(NULL), c->what, &jwt, d);
		if (ret)
			goto out;
		post = dup_printf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-"
				  "bearer&assertion=%s",
				  jwt);
	} else {
		a = form(e, c->client_id);
		b = form(e, c->client_secret);
		x = form(e, c->refresh_token);
		if (a && b && x)
			post = dup_printf("grant_type=refresh_token&client_id=%s&client_secret=%s&"
					  "refresh_token=%s",
					  a, b, x);
	}
	if (!post) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = fetch(c, post, uri, d);
out:
	free(post);
	free(jwt);
	free(a);
	free(b);
	free(x);
	curl_easy_cleanup(e);
	return ret;
}

#else /* !WLIFT_HAVE_CURL */

static int refresh(struct wlift__gcs_cred *c, const char *uri, wlift_diag *d)
{
	return wlift__diag_set(d, WLIFT_EUNSUPPORTED, uri, NULL, -1, "gcs.token",
			       "%s: getting an access token from %s is not supported by this build "
			       "(built without libcurl)",
			       uri, c->what);
}

#endif

int wlift__gcs_auth_header(struct wlift__gcs_cred *c, const char *uri, char **hdr,
			   wlift_diag *d)
{
	int ret = 0;

	*hdr = NULL;
	if (c->kind == WLIFT_GCS_ANON)
		return 0;
	pthread_mutex_lock(&c->mu);
	if (c->kind != WLIFT_GCS_STATIC &&
	    (!c->token || wlift__now() > c->expires - WLIFT_GCS_TOKEN_MARGIN_S))
		ret = refresh(c, uri, d);
	if (!ret && !(*hdr = dup_printf("Authorization: Bearer %s", c->token)))
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	pthread_mutex_unlock(&c->mu);
	return ret;
}
