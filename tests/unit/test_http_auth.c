/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP source's request-auth hook (struct wlift__http_auth_ops, used by s3:// and gs://)
 * and its small blocking requests, against a loopback server of this test's own (a thread on
 * 127.0.0.1, one request per connection) that serves one object only to requests carrying
 * the header "X-Test-Auth: good" and answers others with an S3-style XML 403. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "source/http.h"
#include "source/source.h"
#include "testutil.h"

#ifdef WLIFT_HAVE_CURL
#include <curl/curl.h>

#define OBJ_SIZE 300000u

static int lfd = -1, port;
static uint8_t obj[OBJ_SIZE];

static const char xml403[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
			     "AccessDenied</Code><Message>Access Denied</Message><RequestId>"
			     "R1</RequestId><Secret>body-bytes-never-shown</Secret></Error>";

static void reply(int fd, const char *status, const char *extra, const void *body, size_t len)
{
	char h[512];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%sConnection: "
				       "close\r\n\r\n", status, len, extra);
	if (write(fd, h, (size_t)n) < 0 || (len && write(fd, body, len) < 0))
		return;
}

static void serve_one(int fd)
{
	char req[8192], *end, *p;
	size_t got = 0;
	ssize_t r;
	unsigned long first, last, clen = 0;

	while (got < sizeof(req) - 1 && (r = read(fd, req + got, sizeof(req) - 1 - got)) > 0) {
		got += (size_t)r;
		req[got] = '\0';
		if ((end = strstr(req, "\r\n\r\n")))
			break;
	}
	req[got] = '\0';
	end = strstr(req, "\r\n\r\n");
	if (!end)
		return;
	if ((p = strcasestr(req, "\r\nContent-Length:")))
		clen = strtoul(p + 17, NULL, 10);
	if (strncmp(req, "POST /echo ", 11) == 0) {
		char body[256];
		size_t have = got - (size_t)(end + 4 - req);
		memcpy(body, end + 4, have);
		while (have < clen && have < sizeof(body) &&
		       (r = read(fd, body + have, sizeof(body) - have)) > 0)
			have += (size_t)r;
		reply(fd, "200 OK", "Content-Type: text/plain\r\nX-Meta: echoed\r\n", body, have);
		return;
	}
	if (!strstr(req, "\r\nX-Test-Auth: good\r\n")) {
		reply(fd, "403 Forbidden", "Content-Type: application/xml\r\n", xml403,
		      strlen(xml403));
		return;
	}
	if (strncmp(req, "GET /meta ", 10) == 0) {
		reply(fd, "200 OK", "Content-Type: text/plain\r\nX-Meta: v1\r\n", "hello", 5);
		return;
	}
	if (strncmp(req, "GET /obj ", 9) != 0) {
		reply(fd, "404 Not Found", "", NULL, 0);
		return;
	}
	p = strcasestr(req, "\r\nRange: bytes=");
	if (!p || sscanf(p + 15, "%lu-%lu", &first, &last) != 2 || first >= OBJ_SIZE) {
		reply(fd, "400 Bad Request", "", NULL, 0);
		return;
	}
	if (last >= OBJ_SIZE)
		last = OBJ_SIZE - 1;
	{
		char extra[128];
		snprintf(extra, sizeof(extra), "Content-Range: bytes %lu-%lu/%u\r\nETag: \"e1\"\r\n",
			 first, last, OBJ_SIZE);
		reply(fd, "206 Partial Content", extra, obj + first, last - first + 1);
	}
}

static void *server(void *arg)
{
	WLIFT_UNUSED(arg);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		serve_one(fd);
		close(fd);
	}
}

static void start_server(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	pthread_t t;

	for (size_t i = 0; i < OBJ_SIZE; i++)
		obj[i] = (uint8_t)(i * 7 + 3);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(lfd, 16), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&t, NULL, server, NULL), 0);
	pthread_detach(t);
}

/* The test scheme's state: what the hook saw. */
struct tstate {
	const char *value; /* X-Test-Auth value to send */
	int fail;	   /* headers() fails */
	int calls, explains, destroyed;
	char method[8], url[128], ranges[4][48];
};

static int t_headers(void *state, const char *method, const char *url, const char *range,
		     struct curl_slist **hdrs, wlift_diag *d)
{
	struct tstate *t = state;
	char line[64];
	struct curl_slist *h;

	if (t->fail)
		return wlift__diag_set(d, WLIFT_EAUTH, url, NULL, -1, "test.auth",
				       "no credentials (tried: the test)");
	snprintf(t->method, sizeof(t->method), "%s", method);
	snprintf(t->url, sizeof(t->url), "%s", url);
	if (t->calls < 4)
		snprintf(t->ranges[t->calls], sizeof(t->ranges[0]), "%s", range ? range : "-");
	t->calls++;
	snprintf(line, sizeof(line), "X-Test-Auth: %s", t->value);
	h = curl_slist_append(*hdrs, line);
	if (!h)
		return -ENOMEM;
	*hdrs = h;
	return 0;
}

static int t_explain(void *state, long status, const char *ctype, const char *body, size_t len,
		     char *buf, size_t cap)
{
	struct tstate *t = state;

	t->explains++;
	ck_assert_int_eq(status, 403);
	ck_assert_str_eq(ctype, "application/xml");
	ck_assert_uint_eq(len, strlen(xml403));
	ck_assert_ptr_nonnull(strstr(body, "<Code>AccessDenied</Code>"));
	snprintf(buf, cap, "AccessDenied: Access Denied (credentials from the test)");
	return 0;
}

static void t_destroy(void *state)
{
	((struct tstate *)state)->destroyed++;
}

static const struct wlift__http_auth_ops t_ops = {
	.name = "test",
	.flags = WLIFT_HTTP_AUTH_NO_REDIRECT,
	.headers = t_headers,
	.explain = t_explain,
	.destroy = t_destroy,
};

static void url_for(char *buf, size_t cap, const char *path)
{
	snprintf(buf, cap, "http://127.0.0.1:%d%s", port, path);
}

START_TEST(signed_reads)
{
	struct tstate t = { .value = "good" };
	struct wlift__http_auth a = { &t_ops, &t };
	struct wlift__source *s = NULL;
	char url[128], want[64];
	uint8_t buf[100];
	wlift_diag d;

	start_server();
	url_for(url, sizeof(url), "/obj");
	wlift_diag_clear(&d);
	ck_assert_msg(wlift__http_open_url(NULL, "test://bucket/obj", url, &a, &s, &d) == 0, "%s",
		      d.message);
	ck_assert_uint_eq(s->size, OBJ_SIZE);
	ck_assert_int_eq(t.calls, 1);
	ck_assert_str_eq(t.method, "GET");
	ck_assert_str_eq(t.url, url);
	snprintf(want, sizeof(want), "bytes=0-%u", WLIFT_HEADER_PROBE - 1);
	ck_assert_str_eq(t.ranges[0], want);
	/* A read past the open's bytes is a request of its own, authenticated too. */
	ck_assert_msg(wlift__source_read(s, buf, sizeof(buf), 200000, &d) == 0, "%s", d.message);
	ck_assert_int_eq(memcmp(buf, obj + 200000, sizeof(buf)), 0);
	ck_assert_int_eq(t.calls, 2);
	ck_assert_str_eq(t.ranges[1], "bytes=200000-200099");
	ck_assert_int_eq(t.destroyed, 0);
	wlift__source_unref(s);
	ck_assert_int_eq(t.destroyed, 1);
}
END_TEST

START_TEST(refused_explained)
{
	struct tstate t = { .value = "bad" };
	struct wlift__http_auth a = { &t_ops, &t };
	struct wlift__source *s = NULL;
	char url[128];
	wlift_diag d;

	start_server();
	url_for(url, sizeof(url), "/obj");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__http_open_url(NULL, "test://bucket/obj", url, &a, &s, &d),
			 WLIFT_EAUTH);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(t.explains, 1);
	ck_assert_int_eq(t.destroyed, 1);
	ck_assert_str_eq(d.rule, "http.auth");
	ck_assert_ptr_nonnull(strstr(d.message, "test://bucket/obj: HTTP 403 Forbidden"));
	ck_assert_ptr_nonnull(strstr(d.message, "AccessDenied: Access Denied (credentials from"));
	ck_assert_ptr_null(strstr(d.message, "body-bytes-never-shown"));
}
END_TEST

START_TEST(headers_fail)
{
	struct tstate t = { .value = "good", .fail = 1 };
	struct wlift__http_auth a = { &t_ops, &t };
	struct wlift__source *s = NULL;
	char url[128];
	wlift_diag d;

	start_server();
	url_for(url, sizeof(url), "/obj");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__http_open_url(NULL, "test://bucket/obj", url, &a, &s, &d),
			 WLIFT_EAUTH);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(t.destroyed, 1);
	ck_assert_ptr_nonnull(strstr(d.message, "tried: the test"));
}
END_TEST

START_TEST(fetch_small)
{
	struct tstate t = { .value = "good" };
	struct wlift__http_auth a = { &t_ops, &t };
	struct wlift__http_req rq = { 0 };
	struct wlift__http_resp r;
	static const char *const extra[] = { "X-Other: 1", NULL };
	char url[128];
	wlift_diag d;

	start_server();
	wlift_diag_clear(&d);
	url_for(url, sizeof(url), "/meta");
	rq.url = url;
	rq.headers = extra;
	rq.want_header = "x-meta";
	ck_assert_msg(wlift__http_fetch(NULL, "test://meta", &a, &rq, &r, &d) == 0, "%s",
		      d.message);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "hello");
	ck_assert_uint_eq(r.len, 5);
	ck_assert_str_eq(r.header, "v1");
	ck_assert_str_eq(r.ctype, "text/plain");
	ck_assert_str_eq(t.ranges[0], "-");
	wlift__http_resp_free(&r);
	/* Unauthenticated: the server's 403 is an answer, not an error. */
	ck_assert_int_eq(wlift__http_fetch(NULL, "test://meta", NULL, &rq, &r, &d), 0);
	ck_assert_int_eq(r.status, 403);
	wlift__http_resp_free(&r);
	/* A POST with a body; a too-small max_body is -EFBIG. */
	url_for(url, sizeof(url), "/echo");
	rq.method = "POST";
	rq.body = "a=1&b=2";
	rq.body_len = 7;
	ck_assert_int_eq(wlift__http_fetch(NULL, "test://echo", NULL, &rq, &r, &d), 0);
	ck_assert_str_eq(r.body, "a=1&b=2");
	ck_assert_str_eq(r.header, "echoed");
	wlift__http_resp_free(&r);
	rq.max_body = 3;
	ck_assert_int_eq(wlift__http_fetch(NULL, "test://echo", NULL, &rq, &r, &d), -EFBIG);
	ck_assert_ptr_null(r.body);
	/* Nothing listening: a network error naming the URI. */
	shutdown(lfd, SHUT_RDWR); /* wakes the accept */
	close(lfd);
	rq.max_body = 0;
	ck_assert_int_eq(wlift__http_fetch(NULL, "test://echo", NULL, &rq, &r, &d), WLIFT_ENET);
	ck_assert_ptr_nonnull(strstr(d.message, "test://echo"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("http_auth");
	TCase *tc = tcase_create("hook");

	tcase_add_test(tc, signed_reads);
	tcase_add_test(tc, refused_explained);
	tcase_add_test(tc, headers_fail);
	tcase_add_test(tc, fetch_small);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return wt_run(suite());
}

#else

int main(void)
{
	return 77; /* built without libcurl */
}

#endif
