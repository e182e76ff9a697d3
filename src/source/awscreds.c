/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The AWS credential chain (see awscreds.h for the order, which is botocore's). Each source
 * either gives credentials, says why it has none (kept for the error that lists every source
 * tried), or fails outright when it is configured but broken (a web identity STS refused, a
 * container endpoint that does not answer): boto3 stops there too rather than falling
 * through to another identity. Providers are cached process-wide, keyed by the environment
 * that configures them, so that the shards of one checkpoint (and the next load) share one
 * STS or metadata round trip; temporary credentials are refreshed under the provider's lock
 * shortly before they expire, while the workers that sign requests wait.
 */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>

#include <openssl/evp.h>

#include "source/awscreds.h"
#include "source/http.h"
#include "source/sigv4.h"
#include "source/xml.h"

struct wlift__aws_provider {
	struct wlift__aws_provider *next;
	char *key; /* the environment it was made for */
	pthread_mutex_t mu;
	int have;
	struct wlift__aws_creds c;
};

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wlift__aws_provider *list;

/* The variables that choose where credentials come from. */
static const char *const config_env[] = {
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL",
	"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SSO", "AWS_METADATA_SERVICE_TIMEOUT",
	"AWS_REGION", "AWS_DEFAULT_REGION", "HOME",
};

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static const char *profile_name(void)
{
	const char *p = env("AWS_PROFILE");

	return p ? p : env("AWS_DEFAULT_PROFILE") ? env("AWS_DEFAULT_PROFILE") : "default";
}

/* path of AWS_<var> or ~/.aws/<name> into buf ("~/" expanded). */
static void aws_file(const char *var, const char *name, char *buf, size_t cap)
{
	const char *v = env(var), *home = env("HOME");

	if (v && strncmp(v, "~/", 2) == 0)
		snprintf(buf, cap, "%s/%s", home ? home : "", v + 2);
	else if (v)
		snprintf(buf, cap, "%s", v);
	else
		snprintf(buf, cap, "%s/.aws/%s", home ? home : "", name);
}

/* ---- INI files ---------------------------------------------------------------------- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* Walk path: key NULL asks whether section exists. */
static int ini_walk(const char *path, const char *section, const char *key, char *buf,
		    size_t cap)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	int in = 0, found = 0;

	if (!f)
		return -errno;
	while (!found && fgets(line, sizeof(line), f)) {
		char *l = trim(line), *eq;
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *e = strchr(l, ']');
			if (!e)
				continue;
			*e = '\0';
			in = strcmp(trim(l + 1), section) == 0;
			if (in && !key)
				found = 1;
			continue;
		}
		if (!in || !key || !(eq = strchr(l, '=')))
			continue;
		*eq = '\0';
		if (strcmp(trim(l), key) == 0) {
			snprintf(buf, cap, "%s", trim(eq + 1));
			found = 1;
		}
	}
	fclose(f);
	return found;
}

int wlift__ini_get(const char *path, const char *section, const char *key, char *buf,
		   size_t cap)
{
	if (cap)
		buf[0] = '\0';
	return ini_walk(path, section, key, buf, cap);
}

int wlift__ini_has(const char *path, const char *section)
{
	return ini_walk(path, section, NULL, NULL, 0);
}

/* The config file names profiles "[profile NAME]", except "[default]". */
static void config_section(const char *profile, char *buf, size_t cap)
{
	if (strcmp(profile, "default") == 0)
		snprintf(buf, cap, "default");
	else
		snprintf(buf, cap, "profile %s", profile);
}

int wlift__aws_profile_get(const char *key, char *buf, size_t cap)
{
	char path[1024], sec[256];

	aws_file("AWS_CONFIG_FILE", "config", path, sizeof(path));
	config_section(profile_name(), sec, sizeof(sec));
	return wlift__ini_get(path, sec, key, buf, cap) == 1;
}

int64_t wlift__iso8601(const char *s)
{
	struct tm tm;
	const char *p;

	memset(&tm, 0, sizeof(tm));
	if (!s || !(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return -1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p != 'Z' && strcmp(p, "+00:00") != 0)
		return -1;
	return (int64_t)timegm(&tm);
}

/* ---- the chain ---------------------------------------------------------------------- */

/* What was tried, for the error when nothing gives credentials. */
struct tried {
	char text[1536];
	size_t len;
};

static void note(struct tried *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct tried *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= sizeof(t->text) - 1)
		return;
	if (t->len)
		t->len += (size_t)snprintf(t->text + t->len, sizeof(t->text) - t->len, "; ");
	if (t->len >= sizeof(t->text) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
	if (t->len > sizeof(t->text) - 1)
		t->len = sizeof(t->text) - 1;
}

static int from_env(struct wlift__aws_creds *c, struct tried *t)
{
	const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
	const char *tok = env("AWS_SESSION_TOKEN");

	if (!ak && !sk) {
		note(t, "the environment (AWS_ACCESS_KEY_ID unset)");
		return 0;
	}
	if (!ak || !sk) {
		note(t, "the environment (%s is set but not %s)", ak ? "AWS_ACCESS_KEY_ID" :
			"AWS_SECRET_ACCESS_KEY", ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -1;
	}
	snprintf(c->akid, sizeof(c->akid), "%s", ak);
	snprintf(c->secret, sizeof(c->secret), "%s", sk);
	snprintf(c->token, sizeof(c->token), "%s", tok ? tok : "");
	snprintf(c->from, sizeof(c->from), "the environment (AWS_ACCESS_KEY_ID%s)",
		 tok ? ", AWS_SESSION_TOKEN" : "");
	return 1;
}

/* Static keys of an INI section. */
static int from_file(const char *path, const char *section, const char *what,
		     struct wlift__aws_creds *c, struct tried *t)
{
	char ak[128], sk[128];
	int r = wlift__ini_get(path, section, "aws_access_key_id", ak, sizeof(ak));

	if (r < 0) {
		note(t, "%s %s (%s)", what, path, r == -ENOENT ? "no such file" : strerror(-r));
		return 0;
	}
	if (r == 0) {
		note(t, "%s %s (no aws_access_key_id in [%s])", what, path, section);
		return 0;
	}
	if (wlift__ini_get(path, section, "aws_secret_access_key", sk, sizeof(sk)) != 1) {
		note(t, "%s %s ([%s] has aws_access_key_id but no aws_secret_access_key)", what,
		     path, section);
		return -1;
	}
	snprintf(c->akid, sizeof(c->akid), "%s", ak);
	snprintf(c->secret, sizeof(c->secret), "%s", sk);
	wlift__ini_get(path, section, "aws_session_token", c->token, sizeof(c->token));
	snprintf(c->from, sizeof(c->from), "%s %s [%s]", what, path, section);
	return 1;
}

/* The credentials of an STS answer or of a metadata endpoint's JSON. */
static int take_json(const char *body, const char *what, struct wlift__aws_creds *c,
		     struct tried *t)
{
	json_object *o = json_tokener_parse(body), *v;
	const char *ak = NULL, *sk = NULL, *tok = NULL, *exp = NULL;
	int ret = -1;

	if (o && json_object_is_type(o, json_type_object)) {
		if (json_object_object_get_ex(o, "AccessKeyId", &v))
			ak = json_object_get_string(v);
		if (json_object_object_get_ex(o, "SecretAccessKey", &v))
			sk = json_object_get_string(v);
		/* "Token" (the metadata services), "SessionToken" (credential_process). */
		if (json_object_object_get_ex(o, "Token", &v) ||
		    json_object_object_get_ex(o, "SessionToken", &v))
			tok = json_object_get_string(v);
		if (json_object_object_get_ex(o, "Expiration", &v))
			exp = json_object_get_string(v);
	}
	if (!ak || !sk || !*ak || !*sk) {
		note(t, "%s (the answer has no AccessKeyId/SecretAccessKey)", what);
	} else if (exp && wlift__iso8601(exp) < 0) {
		note(t, "%s (the answer's Expiration is not an ISO 8601 time)", what);
	} else {
		snprintf(c->akid, sizeof(c->akid), "%s", ak);
		snprintf(c->secret, sizeof(c->secret), "%s", sk);
		snprintf(c->token, sizeof(c->token), "%s", tok ? tok : "");
		c->expires = exp ? wlift__iso8601(exp) : 0;
		snprintf(c->from, sizeof(c->from), "%s", what);
		ret = 1;
	}
	json_object_put(o);
	return ret;
}

static char *read_small_file(const char *path, size_t max)
{
	FILE *f = fopen(path, "re");
	char *b;
	size_t n;

	if (!f)
		return NULL;
	b = malloc(max + 1);
	if (!b) {
		fclose(f);
		return NULL;
	}
	n = fread(b, 1, max, f);
	fclose(f);
	b[n] = '\0';
	while (n && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
		b[--n] = '\0';
	return b;
}

/* The region of STS requests (AWS_REGION, AWS_DEFAULT_REGION, the profile's) into region
 * ("" when none), and STS's URL ending in '/': AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, the
 * regional endpoint, else the global one. */
static void sts_url(char *region, size_t rcap, char *url, size_t ucap)
{
	const char *v, *ep;
	size_t n;

	region[0] = '\0';
	if ((v = env("AWS_REGION")) || (v = env("AWS_DEFAULT_REGION")))
		snprintf(region, rcap, "%s", v);
	else
		wlift__aws_profile_get("region", region, rcap);
	ep = env("AWS_ENDPOINT_URL_STS") ? env("AWS_ENDPOINT_URL_STS") : env("AWS_ENDPOINT_URL");
	if (ep)
		snprintf(url, ucap, "%s", ep);
	else if (region[0])
		snprintf(url, ucap, "https://sts.%s.amazonaws.com", region);
	else
		snprintf(url, ucap, "https://sts.amazonaws.com");
	n = strlen(url);
	while (n && url[n - 1] == '/')
		url[--n] = '\0';
	snprintf(url + n, ucap - n, "/");
}

/* The <Credentials> of an STS answer (AssumeRole, AssumeRoleWithWebIdentity) into c (not
 * c->from): 0, or -1 when they are missing. */
static int sts_take(const struct wlift__http_resp *resp, struct wlift__aws_creds *c)
{
	char ak[128], exp[64];

	wlift__xml_text(resp->body, resp->len, "AccessKeyId", ak, sizeof(ak));
	wlift__xml_text(resp->body, resp->len, "SecretAccessKey", c->secret, sizeof(c->secret));
	if (wlift__xml_text(resp->body, resp->len, "SessionToken", c->token, sizeof(c->token)) < 0 ||
	    !ak[0] || !c->secret[0])
		return -1;
	snprintf(c->akid, sizeof(c->akid), "%s", ak);
	wlift__xml_text(resp->body, resp->len, "Expiration", exp, sizeof(exp));
	c->expires = exp[0] ? wlift__iso8601(exp) : 0;
	if (c->expires < 0)
		c->expires = 0;
	return 0;
}

/* POST a form body to STS at url with the header lines hdrs; its answer in *resp. */
static int sts_post(wlift_ctx *ctx, const char *uri, const char *url, const char *const *hdrs,
		    const char *body, struct wlift__http_resp *resp, wlift_diag *d)
{
	struct wlift__http_req req = { 0 };

	req.method = "POST";
	req.url = url;
	req.headers = hdrs;
	req.body = body;
	req.body_len = strlen(body);
	req.max_body = 256 << 10;
	return wlift__http_fetch(ctx, uri, NULL, &req, resp, d);
}

/* An STS error answer's Code and Message for a note: " Code: Message", each part only when
 * STS gave it. */
static void sts_error(const struct wlift__http_resp *resp, char *out, size_t cap)
{
	char code[128], msg[256];

	wlift__xml_text(resp->body, resp->len, "Code", code, sizeof(code));
	wlift__xml_text(resp->body, resp->len, "Message", msg, sizeof(msg));
	snprintf(out, cap, "%s%s%s%s", code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
}

/* STS AssumeRoleWithWebIdentity: an unsigned POST (the token is the proof). */
static int web_identity(wlift_ctx *ctx, const char *uri, struct wlift__aws_creds *c,
			struct tried *t, wlift_diag *d)
{
	char cfg[1024], sec[256], tokfile[1024], role[512], sess[128], region[64], url[512];
	char *token = NULL, *body = NULL, *etok = NULL, *erole = NULL, *esess = NULL;
	const char *v;
	static const char *const hdrs[] = { "Accept: application/xml", NULL };
	struct wlift__http_resp resp = { 0 };
	int from_profile = 0, ret = 0;
	size_t n;

	aws_file("AWS_CONFIG_FILE", "config", cfg, sizeof(cfg));
	config_section(profile_name(), sec, sizeof(sec));
	tokfile[0] = role[0] = sess[0] = '\0';
	if ((v = env("AWS_WEB_IDENTITY_TOKEN_FILE")))
		snprintf(tokfile, sizeof(tokfile), "%s", v);
	if ((v = env("AWS_ROLE_ARN")))
		snprintf(role, sizeof(role), "%s", v);
	if (!tokfile[0] &&
	    wlift__ini_get(cfg, sec, "web_identity_token_file", tokfile, sizeof(tokfile)) == 1) {
		from_profile = 1;
		wlift__ini_get(cfg, sec, "role_arn", role, sizeof(role));
		wlift__ini_get(cfg, sec, "role_session_name", sess, sizeof(sess));
	}
	if (!tokfile[0]) {
		note(t, "web identity (AWS_WEB_IDENTITY_TOKEN_FILE unset)");
		return 0;
	}
	if (!role[0]) {
		note(t, "web identity (%s set but no role ARN: set AWS_ROLE_ARN)",
		     from_profile ? "web_identity_token_file" : "AWS_WEB_IDENTITY_TOKEN_FILE");
		return -1;
	}
	if ((v = env("AWS_ROLE_SESSION_NAME")))
		snprintf(sess, sizeof(sess), "%s", v);
	if (!sess[0])
		snprintf(sess, sizeof(sess), "weightlift-%lld", (long long)time(NULL));
	token = read_small_file(tokfile, 64 << 10);
	if (!token || !*token) {
		note(t, "web identity (token file %s %s)", tokfile, token ? "is empty" :
		     "cannot be read");
		ret = -1;
		goto out;
	}
	sts_url(region, sizeof(region), url, sizeof(url));
	etok = wlift__aws_uri_encode(token, strlen(token), 0);
	erole = wlift__aws_uri_encode(role, strlen(role), 0);
	esess = wlift__aws_uri_encode(sess, strlen(sess), 0);
	n = (etok ? strlen(etok) : 0) + (erole ? strlen(erole) : 0) + 256;
	body = malloc(n);
	if (!etok || !erole || !esess || !body) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	snprintf(body, n,
		 "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s&"
		 "RoleSessionName=%s&WebIdentityToken=%s",
		 erole, esess, etok);
	ret = sts_post(ctx, uri, url, hdrs, body, &resp, d);
	if (ret) {
		note(t, "web identity (STS at %s: %s)", url, d ? d->message : "failed");
		wlift_diag_clear(d);
		ret = -1;
		goto out;
	}
	if (resp.status != 200) {
		char why[400];

		sts_error(&resp, why, sizeof(why));
		note(t, "web identity (STS AssumeRoleWithWebIdentity for %s at %s: HTTP %ld%s)",
		     role, url, resp.status, why);
		ret = -1;
		goto out;
	}
	if (sts_take(&resp, c) < 0) {
		note(t, "web identity (STS at %s answered without credentials)", url);
		ret = -1;
		goto out;
	}
	snprintf(c->from, sizeof(c->from), "web identity (role %.120s via STS)", role);
	ret = 1;
out:
	wlift__http_resp_free(&resp);
	free(token);
	free(body);
	free(etok);
	free(erole);
	free(esess);
	return ret;
}

/* http:// is allowed only to the container agents' and loopback addresses (as botocore). */
static int container_host_ok(const char *url)
{
	static const char *const ok[] = { "http://127.", "http://localhost", "http://[::1]",
					  "http://169.254.170.2", "http://169.254.170.23",
					  "http://[fd00:ec2::23]" };

	if (strncmp(url, "https://", 8) == 0)
		return 1;
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(ok); i++)
		if (strncmp(url, ok[i], strlen(ok[i])) == 0)
			return 1;
	return 0;
}

static int container(wlift_ctx *ctx, const char *uri, struct wlift__aws_creds *c,
		     struct tried *t, wlift_diag *d)
{
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *tokfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *tokv = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	char url[1024], *tok = NULL, *hdr = NULL, what[1100];
	const char *hdrs[3] = { "Accept: application/json", NULL, NULL };
	struct wlift__http_req req = { 0 };
	struct wlift__http_resp resp = { 0 };
	int ret;

	if (!full && !rel) {
		note(t, "the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI and "
			"_RELATIVE_URI unset)");
		return 0;
	}
	if (rel)
		snprintf(url, sizeof(url), "http://169.254.170.2%s%s", rel[0] == '/' ? "" : "/",
			 rel);
	else
		snprintf(url, sizeof(url), "%s", full);
	snprintf(what, sizeof(what), "the container endpoint %s", url);
	if (!rel && !container_host_ok(url)) {
		note(t, "%s (plain http:// only to loopback or the container agent)", what);
		return -1;
	}
	if (tokfile) {
		tok = read_small_file(tokfile, 16 << 10);
		if (!tok) {
			note(t, "%s (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s cannot be read)", what,
			     tokfile);
			return -1;
		}
	} else if (tokv && !(tok = strdup(tokv))) {
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	if (tok) {
		size_t n = strlen(tok) + 32;
		if (!(hdr = malloc(n))) {
			free(tok);
			return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		}
		snprintf(hdr, n, "Authorization: %s", tok);
		hdrs[1] = hdr;
	}
	req.url = url;
	req.headers = hdrs;
	req.max_body = 64 << 10;
	req.timeout_s = 5;
	ret = wlift__http_fetch(ctx, uri, NULL, &req, &resp, d);
	if (ret) {
		note(t, "%s (%s)", what, d ? d->message : "failed");
		wlift_diag_clear(d);
		ret = -1;
	} else if (resp.status != 200) {
		note(t, "%s (HTTP %ld)", what, resp.status);
		ret = -1;
	} else {
		ret = take_json(resp.body, what, c, t);
	}
	wlift__http_resp_free(&resp);
	free(tok);
	free(hdr);
	return ret;
}

static int imds(wlift_ctx *ctx, const char *uri, struct wlift__aws_creds *c, struct tried *t,
		wlift_diag *d)
{
	const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT"), *dis =
		env("AWS_EC2_METADATA_DISABLED");
	const char *to = env("AWS_METADATA_SERVICE_TIMEOUT");
	char base[512], url[1024], tokh[512], role[256], what[900];
	const char *hdrs[2] = { NULL, NULL };
	static const char *const ttl[] = { "X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL };
	struct wlift__http_req req = { 0 };
	struct wlift__http_resp resp = { 0 };
	unsigned timeout = 1;
	size_t n;
	int ret = -1;

	if (to) {
		char *end;
		unsigned long x;
		errno = 0;
		x = strtoul(to, &end, 10);
		if (errno || end == to || *end || *to == '-' || x < 1 || x > 60) {
			note(t, "instance metadata (AWS_METADATA_SERVICE_TIMEOUT = '%.32s' is out of "
				"range (1 .. 60 seconds))", to);
			return -1;
		}
		timeout = (unsigned)x;
	}

	snprintf(base, sizeof(base), "%s", ep ? ep : "http://169.254.169.254");
	n = strlen(base);
	while (n && base[n - 1] == '/')
		base[--n] = '\0';
	if (dis && strcasecmp(dis, "true") == 0) {
		note(t, "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)");
		return 0;
	}
	/* IMDSv2: a session token first (a PUT, which a forwarded request cannot make). */
	snprintf(url, sizeof(url), "%s/latest/api/token", base);
	req.method = "PUT";
	req.url = url;
	req.headers = ttl;
	req.max_body = 4096;
	req.timeout_s = timeout;
	if (wlift__http_fetch(ctx, uri, NULL, &req, &resp, d)) {
		note(t, "instance metadata at %s (%s)", base, d ? d->message : "failed");
		wlift_diag_clear(d);
		return 0; /* not on EC2: the usual end of the chain */
	}
	if (resp.status != 200 || !resp.len || resp.len > 400) {
		note(t, "instance metadata at %s (token request: HTTP %ld)", base, resp.status);
		goto out;
	}
	snprintf(tokh, sizeof(tokh), "X-aws-ec2-metadata-token: %s", resp.body);
	wlift__http_resp_free(&resp);
	hdrs[0] = tokh;
	req.method = NULL;
	req.headers = hdrs;
	req.max_body = 64 << 10;
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
	if (wlift__http_fetch(ctx, uri, NULL, &req, &resp, d)) {
		note(t, "instance metadata at %s (%s)", base, d ? d->message : "failed");
		wlift_diag_clear(d);
		goto out;
	}
	if (resp.status == 404) {
		note(t, "instance metadata at %s (no IAM role attached to the instance)", base);
		ret = 0;
		goto out;
	}
	if (resp.status != 200 || !resp.len) {
		note(t, "instance metadata at %s (role lookup: HTTP %ld)", base, resp.status);
		goto out;
	}
	n = strcspn(resp.body, "\r\n");
	snprintf(role, sizeof(role), "%.*s", (int)(n < sizeof(role) ? n : sizeof(role) - 1),
		 resp.body);
	wlift__http_resp_free(&resp);
	{
		char *er = wlift__aws_uri_encode(role, strlen(role), 0);
		if (!er) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
			goto out;
		}
		snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base,
			 er);
		free(er);
	}
	snprintf(what, sizeof(what), "instance metadata at %s (role %s)", base, role);
	if (wlift__http_fetch(ctx, uri, NULL, &req, &resp, d)) {
		note(t, "%s: %s", what, d ? d->message : "failed");
		wlift_diag_clear(d);
		goto out;
	}
	if (resp.status != 200) {
		note(t, "%s: HTTP %ld", what, resp.status);
		goto out;
	}
	ret = take_json(resp.body, what, c, t);
out:
	wlift__http_resp_free(&resp);
	return ret;
}

/* ---- profiles: assumed roles, credential_process, SSO ---------------------------------- */

/* A profile's setting: the config file's [profile NAME] ([default]) first, then the shared
 * credentials file's [NAME] (botocore merges both). 1 when set (buf filled), else 0. */
static int prof_get(const char *profile, const char *key, char *buf, size_t cap)
{
	char path[1024], sec[256];

	buf[0] = '\0';
	aws_file("AWS_CONFIG_FILE", "config", path, sizeof(path));
	config_section(profile, sec, sizeof(sec));
	if (wlift__ini_get(path, sec, key, buf, cap) == 1 && buf[0])
		return 1;
	aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", path, sizeof(path));
	return wlift__ini_get(path, profile, key, buf, cap) == 1 && buf[0];
}

/* A profile's static keys: the shared credentials file's [NAME], then the config file's. */
static int prof_static(const char *profile, struct wlift__aws_creds *c, struct tried *t)
{
	char path[1024], sec[256];
	int r;

	aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", path, sizeof(path));
	r = from_file(path, profile, "the shared credentials file", c, t);
	if (r)
		return r;
	aws_file("AWS_CONFIG_FILE", "config", path, sizeof(path));
	config_section(profile, sec, sizeof(sec));
	return from_file(path, sec, "the config file", c, t);
}

/* credential_process: the profile's command, run by /bin/sh -c (stdin from /dev/null, stderr
 * the caller's), prints the JSON of the AWS CLI's process contract ({"Version": 1,
 * "AccessKeyId", "SecretAccessKey", optional "SessionToken" and "Expiration"}). An
 * Expiration is honoured as for the metadata services (refreshed by running it again). */
static int from_process(const char *uri, const char *profile, struct wlift__aws_creds *c,
			struct tried *t, wlift_diag *d)
{
	char cmd[2048], what[2200], *out = NULL, *full;
	size_t n = 0, cap = 64 << 10;
	FILE *f;
	int st, ret = -1;

	if (!prof_get(profile, "credential_process", cmd, sizeof(cmd))) {
		note(t, "credential_process (none in profile %s)", profile);
		return 0;
	}
	snprintf(what, sizeof(what), "the credential process of profile %s (%.160s)", profile,
		 cmd);
	out = malloc(cap + 1);
	full = malloc(strlen(cmd) + 16);
	if (!out || !full) {
		free(out);
		free(full);
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	}
	sprintf(full, "%s </dev/null", cmd);
	f = popen(full, "re");
	if (!f) {
		note(t, "%s (cannot be started: %s)", what, strerror(errno));
		goto out;
	}
	while (n < cap) {
		size_t r = fread(out + n, 1, cap - n, f);
		if (!r)
			break;
		n += r;
	}
	out[n] = '\0';
	st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (st != -1 && WIFEXITED(st))
			note(t, "%s (exited with status %d)", what, WEXITSTATUS(st));
		else
			note(t, "%s (did not exit normally)", what);
		goto out;
	}
	{
		json_object *o = json_tokener_parse(out), *v;
		int ver = -1;
		if (o && json_object_object_get_ex(o, "Version", &v))
			ver = json_object_get_int(v);
		json_object_put(o);
		if (ver != 1) {
			note(t, "%s (its output is not JSON with \"Version\": 1)", what);
			goto out;
		}
	}
	ret = take_json(out, what, c, t);
	if (ret == 1 && c->expires && c->expires <= (int64_t)time(NULL)) {
		note(t, "%s (its credentials have already expired)", what);
		ret = -1;
	}
out:
	if (out)
		memset(out, 0, cap + 1);
	free(out);
	free(full);
	return ret;
}

/* The lower-case hex SHA-1 of s: the name of an SSO token's cache file. */
static void sha1_hex(const char *s, char hex[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	hex[0] = '\0';
	if (!EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL))
		return;
	for (unsigned int i = 0; i < n && i < 20; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

/* IAM Identity Center (SSO): the profile's sso_session (a [sso-session NAME] section with
 * sso_start_url and sso_region) or legacy sso_start_url/sso_region, with sso_account_id and
 * sso_role_name; the access token `aws sso login` cached in ~/.aws/sso/cache/<sha1>.json
 * (of the session name, or of the start URL) is traded at the portal's GetRoleCredentials
 * (AWS_ENDPOINT_URL_SSO, AWS_ENDPOINT_URL, else portal.sso.REGION.amazonaws.com). An expired
 * token is not refreshed here: the error says to log in again. */
static int from_sso(wlift_ctx *ctx, const char *uri, const char *profile,
		    struct wlift__aws_creds *c, struct tried *t, wlift_diag *d)
{
	char session[256], start[512], region[64], account[64], role[256], cfg[1024], sec[300];
	char cache[1200], hex[41], url[1200], hdr[4200], what[400], *body = NULL;
	const char *ep, *home = env("HOME"), *hdrs[3] = { "Accept: application/json", NULL, NULL };
	char *tok = NULL, *erole = NULL, *eacct = NULL;
	struct wlift__http_req req = { 0 };
	struct wlift__http_resp resp = { 0 };
	json_object *o = NULL, *v, *rc;
	int ret = -1;

	session[0] = start[0] = region[0] = '\0';
	if (prof_get(profile, "sso_session", session, sizeof(session))) {
		aws_file("AWS_CONFIG_FILE", "config", cfg, sizeof(cfg));
		snprintf(sec, sizeof(sec), "sso-session %s", session);
		wlift__ini_get(cfg, sec, "sso_start_url", start, sizeof(start));
		wlift__ini_get(cfg, sec, "sso_region", region, sizeof(region));
		snprintf(what, sizeof(what), "SSO (profile %s, sso-session %s)", profile, session);
		if (!start[0] || !region[0]) {
			note(t, "%s (the [sso-session %s] section of %s lacks sso_start_url or "
				"sso_region)", what, session, cfg);
			return -1;
		}
	} else if (prof_get(profile, "sso_start_url", start, sizeof(start))) {
		prof_get(profile, "sso_region", region, sizeof(region));
		snprintf(what, sizeof(what), "SSO (profile %s, %.200s)", profile, start);
		if (!region[0]) {
			note(t, "%s (no sso_region)", what);
			return -1;
		}
	} else {
		note(t, "SSO (no sso_session or sso_start_url in profile %s)", profile);
		return 0;
	}
	if (!prof_get(profile, "sso_account_id", account, sizeof(account)) ||
	    !prof_get(profile, "sso_role_name", role, sizeof(role))) {
		note(t, "%s (the profile lacks sso_account_id or sso_role_name)", what);
		return -1;
	}
	sha1_hex(session[0] ? session : start, hex);
	snprintf(cache, sizeof(cache), "%s/.aws/sso/cache/%s.json", home ? home : "", hex);
	body = read_small_file(cache, 256 << 10);
	if (!body) {
		note(t, "%s (no cached token %s: run aws sso login --profile %s)", what, cache,
		     profile);
		goto out;
	}
	o = json_tokener_parse(body);
	{
		const char *at = NULL, *exp = NULL;
		int64_t e;
		if (o && json_object_object_get_ex(o, "accessToken", &v))
			at = json_object_get_string(v);
		if (o && json_object_object_get_ex(o, "expiresAt", &v))
			exp = json_object_get_string(v);
		if (!at || !*at || !exp) {
			note(t, "%s (the cached token %s has no accessToken or expiresAt)", what,
			     cache);
			goto out;
		}
		e = wlift__iso8601(exp);
		if (e < 0 || e <= (int64_t)time(NULL)) {
			note(t, "%s (the cached token %s %s: run aws sso login --profile %s)", what,
			     cache, e < 0 ? "has a malformed expiresAt" : "has expired", profile);
			goto out;
		}
		tok = strdup(at);
	}
	erole = wlift__aws_uri_encode(role, strlen(role), 0);
	eacct = wlift__aws_uri_encode(account, strlen(account), 0);
	if (!tok || !erole || !eacct) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ep = env("AWS_ENDPOINT_URL_SSO") ? env("AWS_ENDPOINT_URL_SSO") : env("AWS_ENDPOINT_URL");
	if (ep) {
		size_t n = strlen(ep);
		while (n && ep[n - 1] == '/')
			n--;
		snprintf(url, sizeof(url), "%.*s", (int)n, ep);
	} else {
		snprintf(url, sizeof(url), "https://portal.sso.%s.amazonaws.com", region);
	}
	{
		size_t n = strlen(url);
		snprintf(url + n, sizeof(url) - n, "/federation/credentials?role_name=%s&account_id=%s",
			 erole, eacct);
	}
	snprintf(hdr, sizeof(hdr), "x-amz-sso_bearer_token: %s", tok);
	hdrs[1] = hdr;
	req.url = url;
	req.headers = hdrs;
	req.max_body = 64 << 10;
	req.timeout_s = 30;
	if (wlift__http_fetch(ctx, uri, NULL, &req, &resp, d)) {
		note(t, "%s (the portal GetRoleCredentials: %s)", what, d ? d->message : "failed");
		wlift_diag_clear(d);
		goto out;
	}
	if (resp.status != 200) {
		note(t, "%s (the portal's GetRoleCredentials for role %s in account %s: HTTP %ld%s)",
		     what, role, account, resp.status,
		     resp.status == 401 || resp.status == 403
			     ? "; the cached token is not valid: run aws sso login" : "");
		goto out;
	}
	json_object_put(o);
	o = json_tokener_parse(resp.body);
	if (o && json_object_object_get_ex(o, "roleCredentials", &rc) &&
	    json_object_is_type(rc, json_type_object)) {
		const char *ak = NULL, *sk = NULL, *st = NULL;
		int64_t ms = 0;
		if (json_object_object_get_ex(rc, "accessKeyId", &v))
			ak = json_object_get_string(v);
		if (json_object_object_get_ex(rc, "secretAccessKey", &v))
			sk = json_object_get_string(v);
		if (json_object_object_get_ex(rc, "sessionToken", &v))
			st = json_object_get_string(v);
		if (json_object_object_get_ex(rc, "expiration", &v))
			ms = json_object_get_int64(v);
		if (ak && sk && *ak && *sk) {
			snprintf(c->akid, sizeof(c->akid), "%s", ak);
			snprintf(c->secret, sizeof(c->secret), "%s", sk);
			snprintf(c->token, sizeof(c->token), "%s", st ? st : "");
			c->expires = ms > 0 ? ms / 1000 : 0; /* milliseconds since the epoch */
			snprintf(c->from, sizeof(c->from), "SSO (role %.60s in account %.20s, profile %.60s)",
				 role, account, profile);
			ret = 1;
			goto out;
		}
	}
	note(t, "%s (the portal answered without roleCredentials)", what);
out:
	json_object_put(o);
	wlift__http_resp_free(&resp);
	if (body)
		memset(body, 0, strlen(body));
	free(body);
	if (tok)
		memset(tok, 0, strlen(tok));
	free(tok);
	free(erole);
	free(eacct);
	memset(hdr, 0, sizeof(hdr));
	return ret;
}

static int profile_creds(wlift_ctx *ctx, const char *uri, const char *profile, int depth,
			 struct wlift__aws_creds *c, struct tried *t, wlift_diag *d);

/* STS AssumeRole, signed with the source credentials src. */
static int sts_assume(wlift_ctx *ctx, const char *uri, const char *profile, const char *role,
		      const struct wlift__aws_creds *src, struct wlift__aws_creds *c,
		      struct tried *t, wlift_diag *d)
{
	char sess[128], ext[256], dur[16], region[64], url[512], host[512], date[17], hash[65];
	char *erole = NULL, *esess = NULL, *eext = NULL, *body = NULL, *authz = NULL;
	char *hauth = NULL, *htok = NULL, hdate[64];
	const char *hdrs[6], *p;
	struct wlift__sigv4_header h[5];
	struct wlift__sigv4_req r = { 0 };
	struct wlift__http_resp resp = { 0 };
	size_t nh = 0, n;
	struct tm tm;
	time_t now;
	int ret = -1;

	if (!prof_get(profile, "role_session_name", sess, sizeof(sess)))
		snprintf(sess, sizeof(sess), "weightlift-%lld", (long long)time(NULL));
	prof_get(profile, "external_id", ext, sizeof(ext));
	prof_get(profile, "duration_seconds", dur, sizeof(dur));
	for (const char *q = dur; *q; q++)
		if (*q < '0' || *q > '9') {
			note(t, "the role %s of profile %s (duration_seconds = %s is not a number)",
			     role, profile, dur);
			return -1;
		}
	sts_url(region, sizeof(region), url, sizeof(url));
	if (!region[0])
		snprintf(region, sizeof(region), "us-east-1"); /* the global endpoint's scope */
	erole = wlift__aws_uri_encode(role, strlen(role), 0);
	esess = wlift__aws_uri_encode(sess, strlen(sess), 0);
	eext = wlift__aws_uri_encode(ext, strlen(ext), 0);
	n = (erole ? strlen(erole) : 0) + (eext ? strlen(eext) : 0) + 256;
	body = malloc(n);
	if (!erole || !esess || !eext || !body) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	snprintf(body, n, "Action=AssumeRole&Version=2011-06-15&RoleArn=%s&RoleSessionName=%s%s%s%s%s",
		 erole, esess, ext[0] ? "&ExternalId=" : "", eext, dur[0] ? "&DurationSeconds=" : "",
		 dur);
	p = wlift__sigv4_url_host(url, host, sizeof(host));
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	wlift__sha256_hex(body, strlen(body), hash);
	h[nh++] = (struct wlift__sigv4_header){ "content-type",
						"application/x-www-form-urlencoded; charset=utf-8" };
	h[nh++] = (struct wlift__sigv4_header){ "host", host };
	h[nh++] = (struct wlift__sigv4_header){ "x-amz-date", date };
	if (src->token[0])
		h[nh++] = (struct wlift__sigv4_header){ "x-amz-security-token", src->token };
	r.method = "POST";
	r.path = p ? p : "/";
	r.headers = h;
	r.nheaders = nh;
	r.payload_hash = hash;
	r.region = region;
	r.service = "sts";
	r.amz_date = date;
	if (wlift__sigv4_authorization(&r, src->akid, src->secret, &authz)) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	n = strlen(authz) + 32;
	hauth = malloc(n);
	htok = malloc(strlen(src->token) + 32);
	if (!hauth || !htok) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	snprintf(hauth, n, "Authorization: %s", authz);
	snprintf(htok, strlen(src->token) + 32, "X-Amz-Security-Token: %s", src->token);
	snprintf(hdate, sizeof(hdate), "X-Amz-Date: %s", date);
	nh = 0;
	hdrs[nh++] = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
	hdrs[nh++] = "Accept: application/xml";
	hdrs[nh++] = hdate;
	hdrs[nh++] = hauth;
	if (src->token[0])
		hdrs[nh++] = htok;
	hdrs[nh] = NULL;
	if (sts_post(ctx, uri, url, hdrs, body, &resp, d)) {
		note(t, "the role %s of profile %s (STS AssumeRole at %s: %s)", role, profile, url,
		     d ? d->message : "failed");
		wlift_diag_clear(d);
		goto out;
	}
	if (resp.status != 200) {
		char why[400];

		sts_error(&resp, why, sizeof(why));
		note(t, "the role %s of profile %s (STS AssumeRole at %s with %s: HTTP %ld%s)",
		     role, profile, url, src->from, resp.status, why);
		goto out;
	}
	if (sts_take(&resp, c) < 0) {
		note(t, "the role %s of profile %s (STS at %s answered without credentials)", role,
		     profile, url);
		goto out;
	}
	snprintf(c->from, sizeof(c->from), "the role %.100s (AssumeRole, profile %.50s)", role,
		 profile);
	ret = 1;
out:
	wlift__http_resp_free(&resp);
	free(erole);
	free(esess);
	free(eext);
	free(body);
	free(authz);
	free(hauth);
	if (htok)
		memset(htok, 0, strlen(htok));
	free(htok);
	return ret;
}

/* A profile with role_arn: the source credentials (source_profile, itself any kind of
 * profile, or credential_source = Environment, Ec2InstanceMetadata, EcsContainer), then STS
 * AssumeRole with them. 0 when the profile has no role_arn (or has it for web identity). */
static int assume_role(wlift_ctx *ctx, const char *uri, const char *profile, int depth,
		       struct wlift__aws_creds *c, struct tried *t, wlift_diag *d)
{
	char role[512], srcp[256], csrc[64], tmp[1024];
	struct wlift__aws_creds *src = NULL;
	int r;

	if (!prof_get(profile, "role_arn", role, sizeof(role))) {
		note(t, "AssumeRole (no role_arn in profile %s)", profile);
		return 0;
	}
	prof_get(profile, "source_profile", srcp, sizeof(srcp));
	prof_get(profile, "credential_source", csrc, sizeof(csrc));
	if (!srcp[0] && !csrc[0]) {
		if (prof_get(profile, "web_identity_token_file", tmp, sizeof(tmp)))
			return 0; /* the web identity provider's */
		note(t, "the role %s of profile %s (role_arn needs source_profile or "
			"credential_source)", role, profile);
		return -1;
	}
	if (srcp[0] && csrc[0]) {
		note(t, "the role %s of profile %s (both source_profile and credential_source)",
		     role, profile);
		return -1;
	}
	if (prof_get(profile, "mfa_serial", tmp, sizeof(tmp))) {
		note(t, "the role %s of profile %s (mfa_serial: an MFA code cannot be asked for)",
		     role, profile);
		return -1;
	}
	if (depth >= 5) {
		note(t, "the role %s of profile %s (source_profile chain longer than 5)", role,
		     profile);
		return -1;
	}
	src = calloc(1, sizeof(*src));
	if (!src)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	if (srcp[0]) {
		r = strcmp(srcp, profile) == 0 ? prof_static(profile, src, t)
					       : profile_creds(ctx, uri, srcp, depth + 1, src, t, d);
		if (r == 0) {
			note(t, "the role %s of profile %s (its source_profile %s has no credentials)",
			     role, profile, srcp);
			r = -1;
		}
	} else if (strcmp(csrc, "Environment") == 0) {
		r = from_env(src, t);
	} else if (strcmp(csrc, "Ec2InstanceMetadata") == 0) {
		r = imds(ctx, uri, src, t, d);
	} else if (strcmp(csrc, "EcsContainer") == 0) {
		r = container(ctx, uri, src, t, d);
	} else {
		note(t, "the role %s of profile %s (credential_source = %s is not Environment, "
			"Ec2InstanceMetadata or EcsContainer)", role, profile, csrc);
		r = -1;
	}
	if (r == 0) {
		note(t, "the role %s of profile %s (credential_source %s has no credentials)", role,
		     profile, csrc);
		r = -1;
	}
	if (r == 1)
		r = sts_assume(ctx, uri, profile, role, src, c, t, d);
	memset(src, 0, sizeof(*src));
	free(src);
	return r;
}

/* Every way a named profile gives credentials (a source_profile's), in botocore's order. */
static int profile_creds(wlift_ctx *ctx, const char *uri, const char *profile, int depth,
			 struct wlift__aws_creds *c, struct tried *t, wlift_diag *d)
{
	int r = assume_role(ctx, uri, profile, depth, c, t, d);

	if (!r)
		r = from_sso(ctx, uri, profile, c, t, d);
	if (!r)
		r = prof_static(profile, c, t);
	if (!r)
		r = from_process(uri, profile, c, t, d);
	return r;
}

/* Run the chain: 0 and *c filled, or WLIFT_EAUTH / -ENOMEM with d filled. */
static int resolve(wlift_ctx *ctx, const char *uri, struct wlift__aws_creds *c, wlift_diag *d)
{
	struct tried t = { .len = 0 };
	char creds_path[1024], cfg_path[1024], sec[256];
	const char *profile = profile_name();
	int explicit_profile = env("AWS_PROFILE") || env("AWS_DEFAULT_PROFILE");
	int r;

	t.text[0] = '\0';
	memset(c, 0, sizeof(*c));
	aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", creds_path, sizeof(creds_path));
	aws_file("AWS_CONFIG_FILE", "config", cfg_path, sizeof(cfg_path));
	config_section(profile, sec, sizeof(sec));
	if (explicit_profile && wlift__ini_has(creds_path, profile) != 1 &&
	    wlift__ini_has(cfg_path, sec) != 1)
		return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "s3.credentials",
				       "%s: the AWS profile %s (AWS_PROFILE) is in neither %s nor "
				       "%s",
				       uri, profile, creds_path, cfg_path);
	r = from_env(c, &t);
	if (!r)
		r = assume_role(ctx, uri, profile, 0, c, &t, d);
	if (!r)
		r = web_identity(ctx, uri, c, &t, d);
	if (!r)
		r = from_sso(ctx, uri, profile, c, &t, d);
	if (!r)
		r = from_file(creds_path, profile, "the shared credentials file", c, &t);
	if (!r)
		r = from_process(uri, profile, c, &t, d);
	if (!r)
		r = from_file(cfg_path, sec, "the config file", c, &t);
	if (!r)
		r = container(ctx, uri, c, &t, d);
	if (!r)
		r = imds(ctx, uri, c, &t, d);
	if (r == 1)
		return 0;
	if (r < -1)
		return r; /* -ENOMEM, d filled */
	return wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1, "s3.credentials",
			       "%s: %s AWS credentials (tried %s); for a public bucket set "
			       "WEIGHTLIFT_S3_UNSIGNED=1",
			       uri, r < 0 ? "cannot get" : "no", t.text);
}

int wlift__aws_provider(wlift_ctx *ctx, const char *uri, struct wlift__aws_provider **out,
			wlift_diag *d)
{
	struct wlift__aws_provider *p;
	size_t n = 1;
	char *key;

	WLIFT_UNUSED(ctx);
	*out = NULL;
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(config_env); i++)
		n += strlen(config_env[i]) + 2 + (env(config_env[i]) ? strlen(env(config_env[i])) : 0);
	key = malloc(n);
	if (!key)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	key[0] = '\0';
	for (size_t i = 0, o = 0; i < WLIFT_ARRAY_SIZE(config_env); i++) {
		const char *v = env(config_env[i]);
		o += (size_t)snprintf(key + o, n - o, "%s=%s\n", config_env[i], v ? v : "");
	}
	pthread_mutex_lock(&list_mu);
	for (p = list; p && strcmp(p->key, key) != 0; p = p->next)
		;
	if (!p && (p = calloc(1, sizeof(*p)))) {
		p->key = key;
		key = NULL;
		pthread_mutex_init(&p->mu, NULL);
		p->next = list;
		list = p;
	}
	pthread_mutex_unlock(&list_mu);
	free(key);
	if (!p)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	*out = p;
	return 0;
}

int wlift__aws_creds_get(struct wlift__aws_provider *p, wlift_ctx *ctx, const char *uri,
			 struct wlift__aws_creds *out, wlift_diag *d)
{
	int64_t now = (int64_t)time(NULL);
	int ret = 0;

	pthread_mutex_lock(&p->mu);
	if (!p->have || (p->c.expires && now + WLIFT_AWS_REFRESH_S >= p->c.expires)) {
		struct wlift__aws_creds *fresh = malloc(sizeof(*fresh));
		if (!fresh) {
			ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		} else {
			ret = resolve(ctx, uri, fresh, d);
			if (!ret) {
				p->c = *fresh;
				p->have = 1;
			} else if (p->have && p->c.expires > now) {
				/* Not expired yet: keep signing with them; the next request
				 * tries again. */
				wlift__log(ctx, WLIFT_LOG_WARN, "%s: refreshing AWS credentials "
					   "from %s failed (%s); the current ones expire in %llds",
					   uri, p->c.from, d ? d->message : "",
					   (long long)(p->c.expires - now));
				wlift_diag_clear(d);
				ret = 0;
			} else if (p->have) {
				char was[sizeof(p->c.from)];
				snprintf(was, sizeof(was), "%s", p->c.from);
				wlift_diag_clear(d);
				ret = wlift__diag_set(d, WLIFT_EAUTH, uri, NULL, -1,
						      "s3.credentials",
						      "%s: the AWS credentials from %s expired and "
						      "cannot be refreshed", uri, was);
			}
			memset(fresh, 0, sizeof(*fresh));
			free(fresh);
		}
	}
	if (!ret)
		*out = p->c;
	pthread_mutex_unlock(&p->mu);
	return ret;
}
