/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Google Cloud credentials for gs:// sources (gcs_auth.c): where an OAuth 2.0 access token
 * comes from, fetched when first needed, cached process-wide and refreshed before it expires.
 * The order (the first that applies wins; docs/remote.md):
 *  1. WEIGHTLIFT_GCS_ANONYMOUS=1: no token;
 *  2. a token from the environment: WEIGHTLIFT_GCS_TOKEN, else GOOGLE_OAUTH_ACCESS_TOKEN;
 *  3. GOOGLE_APPLICATION_CREDENTIALS: a service account key file (a JWT signed RS256 with
 *     OpenSSL, exchanged at its token_uri: RFC 7523 jwt-bearer) or an authorized_user file
 *     (its refresh token exchanged at the token endpoint);
 *  4. the gcloud application default credentials file (the same two types), when no
 *     emulator is configured;
 *  5. the GCE metadata server (the default on GCE and GKE): GCE_METADATA_HOST (or
 *     GCE_METADATA_IP) when set, else 169.254.169.254 when the machine says it is a Google
 *     Compute Engine VM and no emulator is configured;
 *  6. anonymous (public buckets, emulators).
 * Builds without libcurl report WLIFT_EUNSUPPORTED for every source that fetches a token.
 */
#ifndef WLIFT_SOURCE_GCS_AUTH_H
#define WLIFT_SOURCE_GCS_AUTH_H

#include "common/common.h"

struct wlift__gcs_cred;

/* Credential kinds (wlift__gcs_cred_kind). */
enum {
	WLIFT_GCS_ANON = 0,
	WLIFT_GCS_STATIC,   /* a token from the environment */
	WLIFT_GCS_SERVICE,  /* a service account key: JWT */
	WLIFT_GCS_USER,	    /* an authorized_user refresh token */
	WLIFT_GCS_METADATA, /* the GCE metadata server */
	WLIFT_GCS_EXTERNAL, /* external_account: workload identity federation */
};

/* The credential ctx's settings select (the list above). Shared by every source and load of
 * the process that resolves to the same credential; never freed. Reading a key file happens
 * here (a missing or malformed file is WLIFT_EAUTH, naming it); no request is made. 0 or a
 * negative code with d filled (uri names the object it was for). */
int wlift__gcs_cred_get(const wlift_ctx *ctx, const char *uri, struct wlift__gcs_cred **out,
			wlift_diag *d);

/* The header line to send with a request: "Authorization: Bearer TOKEN" in a malloc'd *hdr,
 * or NULL for anonymous requests. A cached token is used until WLIFT_GCS_TOKEN_MARGIN_S
 * seconds before it expires, then fetched anew (one fetch at a time per credential; other
 * callers wait for it). Thread-safe. 0, or WLIFT_EAUTH (the token endpoint refused: its
 * error and description, the credential named), WLIFT_ENET (it could not be reached) or
 * -ENOMEM, with d filled. */
int wlift__gcs_auth_header(struct wlift__gcs_cred *c, const char *uri, char **hdr,
			   wlift_diag *d);

/* After an HTTP 401: drop the cached token so that the next request fetches a new one. */
void wlift__gcs_cred_invalidate(struct wlift__gcs_cred *c);

/* The credential, for error messages: "the service account key file PATH (client_email
 * E, from GOOGLE_APPLICATION_CREDENTIALS)", "no credentials (tried ...)", ... */
const char *wlift__gcs_cred_what(const struct wlift__gcs_cred *c);
int wlift__gcs_cred_kind(const struct wlift__gcs_cred *c);

/* base64url without padding (RFC 7515 §2) of n bytes; malloc'd, NULL on ENOMEM. */
char *wlift__b64url(const void *p, size_t n);

/* The JWT of a service account (RFC 7523): header {"alg":"RS256","typ":"JWT","kid":kid},
 * claims iss, scope, aud, iat = now, exp = now + 3600, signed with the PEM private key.
 * 0 and a malloc'd token, or a negative code (WLIFT_EAUTH for a key OpenSSL refuses) with
 * d filled (what names the key for the message). */
int wlift__gcs_jwt(const char *pem, const char *kid, const char *iss, const char *scope,
		   const char *aud, long long now, const char *what, char **out, wlift_diag *d);

#endif
