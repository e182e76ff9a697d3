/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Source plumbing: the scheme dispatcher (stat, list, open by URI), reference counting, the
 * synchronous read helper built on a source's own read queue, URI helpers and the
 * memory-image source (whose queue copies inside reap, on the worker that reaps).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source/cache.h"
#include "source/file.h"
#include "source/gcs.h"
#include "source/http.h"
#include "source/s3.h"
#include "source/source.h"

/* ---- URIs and schemes ------------------------------------------------------------------- */

const char *wlift__uri_local_path(const char *uri)
{
	/* RFC 8089: file:///p and file://localhost/p are the local /p; file://host/p names
	 * another machine (not a local path: the dispatcher rejects it). */
	if (strncmp(uri, "file://", 7) == 0) {
		if (uri[7] == '/')
			return uri + 7;
		if (strncmp(uri + 7, "localhost/", 10) == 0)
			return uri + 16;
		return NULL;
	}
	if (strstr(uri, "://"))
		return NULL;
	return uri;
}

/* Remote schemes: the URI prefix and the locator's three functions. A scheme served over
 * HTTP(S) with its own request auth (s3://, gs://) keeps its URI mapping, listing and
 * credentials in its own file and opens objects with wlift__http_open_url. */
struct scheme {
	const char *prefix;
	int (*stat)(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
	int (*list)(wlift_ctx *ctx, const char *uri, char ***names, size_t *n, wlift_diag *d);
	int (*open)(wlift_ctx *ctx, const char *uri, struct wlift__source **out, wlift_diag *d);
};

static const struct scheme schemes[] = {
	{ "http://", wlift__http_stat, wlift__http_list, wlift__http_open },
	{ "https://", wlift__http_stat, wlift__http_list, wlift__http_open },
	{ "hf://", wlift__http_stat, wlift__http_list, wlift__http_open },
	{ "gs://", wlift__gcs_stat, wlift__gcs_list, wlift__gcs_open },
	{ "s3://", wlift__s3_stat, wlift__s3_list, wlift__s3_open },
};

static const struct scheme *scheme_of(const char *uri)
{
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(schemes); i++)
		if (strncmp(uri, schemes[i].prefix, strlen(schemes[i].prefix)) == 0)
			return &schemes[i];
	return NULL;
}

static int no_scheme(const char *uri, wlift_diag *d)
{
	if (strncmp(uri, "file://", 7) == 0)
		return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.file",
				       "%s: a file:// URI names a local file: its host must be empty "
				       "or localhost",
				       uri);
	return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.scheme",
			       "%s: URI scheme not understood (use a path, file://, http(s)://, "
			       "s3:// or gs://)",
			       uri);
}

int wlift__source_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d)
{
	const char *path = wlift__uri_local_path(uri);
	const struct scheme *sc = scheme_of(uri);

	if (sc)
		return sc->stat(wlift__ctx_or_default(ctx), uri, kind, d);
	if (!path)
		return no_scheme(uri, d);
	return wlift__file_stat(path, uri, kind, d);
}

int wlift__source_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		       wlift_diag *d)
{
	const char *path = wlift__uri_local_path(uri);
	const struct scheme *sc = scheme_of(uri);

	*names = NULL;
	*n = 0;
	if (sc)
		return sc->list(wlift__ctx_or_default(ctx), uri, names, n, d);
	if (!path)
		return no_scheme(uri, d);
	return wlift__file_list(path, uri, names, n, d);
}

int wlift__source_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		       wlift_diag *d)
{
	const char *path = wlift__uri_local_path(uri);
	const struct scheme *sc = scheme_of(uri);

	*out = NULL;
	/* Remote objects go through the local cache (which opens them itself when the context
	 * has none). */
	if (sc)
		return wlift__cache_open(wlift__ctx_or_default(ctx), uri, sc->open, out, d);
	if (!path)
		return no_scheme(uri, d);
	return wlift__file_open(wlift__ctx_or_default(ctx), path, uri, out, d);
}

int wlift__source_read_all(wlift_ctx *ctx, const char *uri, size_t max, char **buf,
			   size_t *len, wlift_diag *d)
{
	struct wlift__source *s = NULL;
	char *b = NULL;
	int ret;

	*buf = NULL;
	*len = 0;
	ret = wlift__source_open(ctx, uri, &s, d);
	if (ret)
		return ret;
	if (s->size > max) {
		ret = wlift__diag_set(d, -EFBIG, uri, NULL, -1, "source.size",
				      "%s: %llu bytes is more than the %zu expected here", uri,
				      (unsigned long long)s->size, max);
		goto out;
	}
	b = malloc((size_t)s->size + 1);
	if (!b) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = wlift__source_read(s, b, (size_t)s->size, 0, d);
	if (ret)
		goto out;
	b[s->size] = '\0';
	*len = (size_t)s->size;
	*buf = b;
	b = NULL;
out:
	free(b);
	wlift__source_unref(s);
	return ret;
}

void wlift__strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

char *wlift__uri_encode(const char *s, size_t n, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		/* RFC 3986 unreserved characters and the sub-delimiters allowed in a path
		 * segment pass; everything else (space, '%', '?', '#', non-ASCII) is encoded. */
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (c && strchr("-._~!$&'()*+,;=:@", c)) || (c == '/' && keep_slash)) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *wlift__uri_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b;
	char *enc = NULL, *p;

	/* A name inside an http(s) URL is percent-encoded (hf:// paths are the repository's
	 * own names, encoded when mapped to a URL). */
	if (strncmp(dir, "http://", 7) == 0 || strncmp(dir, "https://", 8) == 0) {
		enc = wlift__uri_encode(name, strlen(name), 1);
		if (!enc)
			return NULL;
		name = enc;
	}
	b = strlen(name);
	while (a > 1 && dir[a - 1] == '/')
		a--;
	p = malloc(a + b + 2);
	if (p) {
		memcpy(p, dir, a);
		p[a] = '/';
		memcpy(p + a + 1, name, b + 1);
	}
	free(enc);
	return p;
}

char *wlift__uri_dirname(const char *uri)
{
	const char *slash = strrchr(uri, '/');

	if (!slash)
		return strdup(".");
	if (slash == uri)
		return strdup("/");
	return strndup(uri, (size_t)(slash - uri));
}

const char *wlift__uri_basename(const char *uri)
{
	const char *slash = strrchr(uri, '/');

	return slash ? slash + 1 : uri;
}

/* ---- common part, references, synchronous reads ----------------------------------------- */

int wlift__source_init(struct wlift__source *s, const struct wlift__source_ops *ops,
		       const char *uri, uint64_t size)
{
	s->ops = ops;
	s->size = size;
	s->refs = 1;
	s->uri = strdup(uri ? uri : "<source>");
	return s->uri ? 0 : -ENOMEM;
}

struct wlift__source *wlift__source_ref(struct wlift__source *s)
{
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void wlift__source_unref(struct wlift__source *s)
{
	if (!s)
		return;
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		s->ops->destroy(s);
}

int wlift__source_read(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		       wlift_diag *d)
{
	struct wlift__rq *q = NULL;
	size_t done = 0;
	int ret;

	if (off > s->size || len > s->size - off)
		return wlift__diag_set(d, WLIFT_ETRUNCATED, s->uri, NULL, (int64_t)off,
				       "file.truncated",
				       "%s: read of %zu bytes at offset %llu is beyond the end "
				       "(%llu bytes)",
				       s->uri, len, (unsigned long long)off,
				       (unsigned long long)s->size);
	if (!len)
		return 0;
	ret = s->ops->queue(s, 1, 0, &q, d);
	if (ret)
		return ret;
	while (done < len) {
		struct wlift__read r = { (uint8_t *)buf + done, off + done, len - done, 0, 0 };
		struct wlift__rdone c;

		ret = q->ops->submit(q, s, &r, d);
		if (ret)
			break;
		ret = q->ops->reap(q, 1, &c, d);
		if (ret == 0)
			ret = wlift__diag_set(d, -EIO, s->uri, NULL, (int64_t)(off + done),
					      "io.read", "%s: a read was lost", s->uri);
		if (ret < 0)
			break;
		ret = 0;
		if (c.res < 0) {
			ret = (int)c.res;
			break;
		}
		if (c.res == 0) {
			ret = wlift__diag_set(d, WLIFT_ECHANGED, s->uri, NULL,
					      (int64_t)(off + done), "file.changed",
					      "%s: unexpected end of file at offset %llu (the file "
					      "was %llu bytes when opened; was it truncated?)",
					      s->uri, (unsigned long long)(off + done),
					      (unsigned long long)s->size);
			break;
		}
		done += (size_t)c.res;
	}
	q->ops->destroy(q);
	return ret;
}

/* ---- synchronous read queues ------------------------------------------------------------ */

struct sync_rq {
	struct wlift__rq base;
	const char *name;
	int64_t (*do_read)(struct wlift__source *s, const struct wlift__read *r, wlift_diag *d);
	struct wlift__read *q; /* ring of depth entries */
	struct wlift__source **src;
	unsigned head;
};

static int sync_submit(struct wlift__rq *rq, struct wlift__source *s, const struct wlift__read *r,
		       wlift_diag *d)
{
	struct sync_rq *q = (struct sync_rq *)rq;
	unsigned slot;

	WLIFT_UNUSED(d);
	if (rq->inflight >= rq->depth)
		return -EBUSY;
	slot = (q->head + rq->inflight) % rq->depth;
	q->q[slot] = *r;
	q->src[slot] = s;
	rq->inflight++;
	return 0;
}

static int sync_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct sync_rq *q = (struct sync_rq *)rq;
	struct wlift__read r;
	struct wlift__source *s;

	WLIFT_UNUSED(wait);
	if (!rq->inflight)
		return 0;
	r = q->q[q->head];
	s = q->src[q->head];
	q->head = (q->head + 1) % rq->depth;
	rq->inflight--;
	c->tag = r.tag;
	c->res = q->do_read(s, &r, d);
	return 1;
}

static void sync_cancel(struct wlift__rq *rq)
{
	WLIFT_UNUSED(rq); /* reads happen in reap: nothing runs on its own */
}

static void sync_destroy(struct wlift__rq *rq)
{
	struct sync_rq *q = (struct sync_rq *)rq;

	if (!q)
		return;
	free(q->q);
	free(q->src);
	free(q);
}

static const struct wlift__rq_ops sync_rq_ops = {
	.name = "sync",
	.submit = sync_submit,
	.reap = sync_reap,
	.cancel = sync_cancel,
	.destroy = sync_destroy,
};

int wlift__syncq_create(unsigned depth, const char *name,
			int64_t (*do_read)(struct wlift__source *s, const struct wlift__read *r,
					   wlift_diag *d),
			struct wlift__rq **out)
{
	struct sync_rq *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (depth < 1)
		depth = 1;
	if (q) {
		q->q = calloc(depth, sizeof(*q->q));
		q->src = calloc(depth, sizeof(*q->src));
	}
	if (!q || !q->q || !q->src) {
		sync_destroy(q ? &q->base : NULL);
		return -ENOMEM;
	}
	/* One ops table serves every synchronous queue; the name (the strategy it reports) is
	 * kept per queue. */
	q->name = name;
	q->do_read = do_read;
	q->base.ops = &sync_rq_ops;
	q->base.depth = depth;
	*out = &q->base;
	return 0;
}

const char *wlift__rq_name(const struct wlift__rq *q)
{
	return q->ops == &sync_rq_ops ? ((const struct sync_rq *)q)->name : q->ops->name;
}

/* ---- memory images ---------------------------------------------------------------------- */

struct mem_source {
	struct wlift__source base;
	const uint8_t *mem;
};

/* A copy done in reap, on the worker that reaps. */
static int64_t mem_read(struct wlift__source *s, const struct wlift__read *r, wlift_diag *d)
{
	const struct mem_source *m = (const struct mem_source *)s;
	uint64_t avail = r->off < s->size ? s->size - r->off : 0;
	size_t n = r->len < avail ? r->len : (size_t)avail;

	WLIFT_UNUSED(d);
	if (n)
		memcpy(r->dst, m->mem + r->off, n);
	return (int64_t)n;
}

static int mem_queue(struct wlift__source *s, unsigned depth, unsigned flags,
		     struct wlift__rq **out, wlift_diag *d)
{
	WLIFT_UNUSED(flags);
	if (wlift__syncq_create(depth, "memory", mem_read, out))
		return wlift__diag_set(d, -ENOMEM, s->uri, NULL, -1, NULL, NULL);
	return 0;
}

static int mem_probe(struct wlift__source *s, uint64_t off, uint64_t len, unsigned flags,
		     struct wlift__source_probe *p)
{
	WLIFT_UNUSED(off);
	WLIFT_UNUSED(len);
	WLIFT_UNUSED(flags);
	memset(p, 0, sizeof(*p));
	p->size = s->size;
	p->in_memory = 1;
	p->fs_kind = WLIFT_FS_NONE;
	p->resident = -1.0;
	return 0;
}

static int mem_validate(struct wlift__source *s, wlift_diag *d)
{
	WLIFT_UNUSED(s);
	WLIFT_UNUSED(d);
	return 0;
}

static void mem_destroy(struct wlift__source *s)
{
	free(s->uri);
	free(s);
}

static const struct wlift__source_ops mem_ops = {
	.kind = "memory",
	.probe = mem_probe,
	.queue = mem_queue,
	.validate = mem_validate,
	.destroy = mem_destroy,
};

int wlift__source_open_memory(const void *buf, size_t len, const char *name,
			      struct wlift__source **out, wlift_diag *d)
{
	struct mem_source *m;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m || wlift__source_init(&m->base, &mem_ops, name ? name : "<memory>", len)) {
		free(m);
		return wlift__diag_set(d, -ENOMEM, name, NULL, -1, NULL, NULL);
	}
	m->mem = buf;
	*out = &m->base;
	return 0;
}
