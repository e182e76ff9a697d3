/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS credentials (awscreds.c): the chain boto3 and the AWS CLI follow, in their order —
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), web identity
 * (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, or the profile's web_identity_token_file and
 * role_arn, exchanged with STS AssumeRoleWithWebIdentity), the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials), the config file (AWS_CONFIG_FILE,
 * ~/.aws/config), the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI,
 * with AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]) and the instance metadata service (IMDSv2;
 * AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED); the profile is AWS_PROFILE
 * (else "default"); profiles may also name a role to assume (role_arn + source_profile or
 * credential_source), a credential_process or an SSO login. Credentials found are cached
 * process-wide per configuration and
 * refreshed before they expire.
 */
#ifndef WLIFT_SOURCE_AWSCREDS_H
#define WLIFT_SOURCE_AWSCREDS_H

#include <stdint.h>

#include "common/common.h"

/* Temporary credentials are refreshed this long before they expire (botocore's mandatory
 * refresh is 10 minutes; the metadata services hand out new ones 5 minutes early). */
#define WLIFT_AWS_REFRESH_S 300

struct wlift__aws_creds {
	char akid[128];
	char secret[128];
	char token[4096];  /* session token, "" for long-term keys */
	int64_t expires;   /* Unix seconds; 0: never */
	char from[192];    /* where they came from, for messages ("the environment
			      (AWS_ACCESS_KEY_ID)", "instance metadata (role r)") */
};

struct wlift__aws_provider;

/* The process-wide provider for the current environment (profile, files, endpoints). Never
 * freed (providers live as long as the process, as curl's global state does). 0 or -ENOMEM;
 * WLIFT_EAUTH (d filled, naming uri) when AWS_PROFILE names a profile no file has. */
int wlift__aws_provider(wlift_ctx *ctx, const char *uri, struct wlift__aws_provider **out,
			wlift_diag *d);

/* Current credentials (fetched on first use, refreshed within WLIFT_AWS_REFRESH_S of their
 * expiry). Thread-safe; may block on the network (STS, container endpoint, IMDS). 0, or
 * WLIFT_EAUTH with d naming uri and every source tried when none gives credentials. */
int wlift__aws_creds_get(struct wlift__aws_provider *p, wlift_ctx *ctx, const char *uri,
			 struct wlift__aws_creds *out, wlift_diag *d);

/* The profile's setting key from the config file (AWS_CONFIG_FILE, ~/.aws/config; section
 * [default] or [profile NAME]) into buf; 1 when set, 0 when not. For "region". */
int wlift__aws_profile_get(const char *key, char *buf, size_t cap);

/* The value of key in section of an INI file (the AWS CLI's format: "[section]" lines,
 * "key = value" lines, '#' and ';' comments) into buf: 1 found, 0 not, -errno when the file
 * cannot be read (-ENOENT when absent). Exposed for the unit test. */
int wlift__ini_get(const char *path, const char *section, const char *key, char *buf,
		   size_t cap);
/* 1 when the INI file has that section, 0 when not, -errno when it cannot be read. */
int wlift__ini_has(const char *path, const char *section);

/* An ISO 8601 UTC time ("2026-12-02T03:00:00Z", fractional seconds allowed) as Unix seconds;
 * -1 when malformed. */
int64_t wlift__iso8601(const char *s);

#endif
