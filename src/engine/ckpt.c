/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening checkpoints: the locator (locate.c) turns the URI into objects (a single file, the
 * shards of an index.json, a directory's index or files), each is opened as a source, and the
 * headers are read through the sources only. Each file's header is read with one small
 * read of its first bytes (more only when the header is larger), so that remote sources cost
 * one round trip per file. The files of a remote checkpoint (an index's shards, a prefix's
 * objects) are opened several at once, each on a thread of its own (source open + header),
 * so that the open costs the round trips of one file rather than of all of them. The tensor
 * table is kept in file order with an open-addressing name index; the checkpoint is reference
 * counted so that loaded results can outlive it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ckpt.h"
#include "engine/locate.h"

static void ckpt_destroy(struct wlift_ckpt *ck)
{
	if (!ck)
		return;
	for (size_t i = 0; i < ck->nfiles; i++) {
		struct wlift__ckpt_file *f = &ck->files[i];
		free((char *)f->info.uri);
		wlift__source_unref(f->src);
		wlift__header_free(&f->hdr);
	}
	free(ck->files);
	free(ck->tensors);
	free(ck->slots);
	free(ck);
}

struct wlift_ckpt *wlift__ckpt_ref(struct wlift_ckpt *ck)
{
	if (ck)
		__atomic_add_fetch(&ck->refs, 1, __ATOMIC_RELAXED);
	return ck;
}

void wlift__ckpt_unref(struct wlift_ckpt *ck)
{
	if (ck && __atomic_sub_fetch(&ck->refs, 1, __ATOMIC_ACQ_REL) == 0)
		ckpt_destroy(ck);
}

void wlift_ckpt_close(wlift_ckpt *ck)
{
	wlift__ckpt_unref(ck);
}

static struct wlift_ckpt *ckpt_new(wlift_ctx *ctx, size_t nfiles)
{
	struct wlift_ckpt *ck = calloc(1, sizeof(*ck));

	if (!ck)
		return NULL;
	ck->ctx = wlift__ctx_or_default(ctx);
	ck->refs = 1;
	ck->files = calloc(nfiles ? nfiles : 1, sizeof(*ck->files));
	if (!ck->files) {
		free(ck);
		return NULL;
	}
	/* Every file is released by destroy, opened or not (a NULL source, no header). */
	for (size_t i = 0; i < nfiles; i++)
		ck->files[i].hdr.nmeta = -1;
	ck->nfiles = nfiles;
	return ck;
}

/* Read and validate the header of file i (its source already set). */
static int read_header(struct wlift_ckpt *ck, size_t i, wlift_diag *d)
{
	struct wlift__ckpt_file *f = &ck->files[i];
	struct wlift__source *s = f->src;
	uint8_t *buf = NULL;
	size_t got = s->size < WLIFT_HEADER_PROBE ? (size_t)s->size : WLIFT_HEADER_PROBE;
	uint64_t n;
	int ret;

	buf = malloc(got ? got : 1);
	if (!buf)
		return wlift__diag_set(d, -ENOMEM, s->uri, NULL, -1, NULL, NULL);
	ret = wlift__source_read(s, buf, got, 0, d);
	if (ret)
		goto out;
	ret = wlift__header_check_prefix(buf, got, s->size, s->uri, &n, d);
	if (ret)
		goto out;
	/* n has been checked against the file size and the limit: growing is justified. */
	if (8 + n > got) {
		uint8_t *nb = realloc(buf, (size_t)(8 + n));
		if (!nb) {
			ret = wlift__diag_set(d, -ENOMEM, s->uri, NULL, -1, NULL, NULL);
			goto out;
		}
		buf = nb;
		ret = wlift__source_read(s, buf + got, (size_t)(8 + n - got), got, d);
		if (ret)
			goto out;
	}
	ret = wlift__header_parse(buf + 8, n, s->size, s->uri, &f->hdr, d);
	if (ret)
		goto out;
	f->info.size = s->size;
	f->info.header_len = n;
	f->info.data_offset = 8 + n;
	f->info.ntensors = f->hdr.ntensors;
out:
	free(buf);
	return ret;
}

/* File i of ck: its source (src, or opened from uri), its name, its header. */
static int file_open(struct wlift_ckpt *ck, size_t i, const char *uri, struct wlift__source *src,
		     wlift_diag *d)
{
	struct wlift__ckpt_file *f = &ck->files[i];
	int ret;

	if (src) {
		f->src = wlift__source_ref(src);
	} else {
		ret = wlift__source_open(ck->ctx, uri, &f->src, d);
		if (ret)
			return ret;
	}
	f->info.uri = strdup(f->src->uri);
	if (!f->info.uri)
		return wlift__diag_set(d, -ENOMEM, f->src->uri, NULL, -1, NULL, NULL);
	return read_header(ck, i, d);
}

/* Files opened several at once: each thread (the caller's among them) claims the next file
 * and opens it; the first failure stops the claiming. */
struct opener {
	struct wlift_ckpt *ck;
	char *const *uris;
	size_t n;
	size_t next; /* atomic */
	int stop;    /* atomic */
	int *rets;
	wlift_diag *diags;
};

static void *opener_main(void *arg)
{
	struct opener *o = arg;

	while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE)) {
		size_t i = __atomic_fetch_add(&o->next, 1, __ATOMIC_RELAXED);
		if (i >= o->n)
			break;
		wlift_diag_clear(&o->diags[i]);
		o->rets[i] = file_open(o->ck, i, o->uris[i], NULL, &o->diags[i]);
		if (o->rets[i])
			__atomic_store_n(&o->stop, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Open every file of ck from uris. Remote objects are opened up to WLIFT_OPEN_PARALLEL at once
 * (their open is a request, its time the network's round trips); local files one after
 * another (an open is a few system calls). On failure, the failure of the lowest-numbered file
 * that failed is reported (files are claimed in order, so it is the first in file order among
 * those tried). */
static int open_files(struct wlift_ckpt *ck, char *const *uris, size_t n, wlift_diag *d)
{
	struct opener o = { ck, uris, n, 0, 0, NULL, NULL };
	pthread_t th[WLIFT_OPEN_PARALLEL];
	unsigned nth = 0, want = 0;
	int ret = 0;

	for (size_t i = 0; i < n && !want; i++)
		want = !wlift__uri_local_path(uris[i]);
	if (n < 2 || !want) {
		for (size_t i = 0; i < n; i++) {
			ret = file_open(ck, i, uris[i], NULL, d);
			if (ret)
				return ret;
		}
		return 0;
	}
	want = n < WLIFT_OPEN_PARALLEL ? (unsigned)n : WLIFT_OPEN_PARALLEL;
	o.rets = calloc(n, sizeof(*o.rets));
	o.diags = calloc(n, sizeof(*o.diags));
	if (!o.rets || !o.diags) {
		ret = wlift__diag_set(d, -ENOMEM, uris[0], NULL, -1, NULL, NULL);
		goto out;
	}
	/* The calling thread is one of the openers; fewer threads than asked still open
	 * everything. */
	for (; nth + 1 < want; nth++)
		if (pthread_create(&th[nth], NULL, opener_main, &o))
			break;
	opener_main(&o);
	for (unsigned t = 0; t < nth; t++)
		pthread_join(th[t], NULL);
	for (size_t i = 0; i < n; i++) {
		if (o.rets[i]) {
			ret = o.rets[i];
			if (d)
				*d = o.diags[i];
			break;
		}
	}
out:
	free(o.rets);
	free(o.diags);
	return ret;
}

/* Gather every file's tensors in file order and build the name index. Names must be unique
 * across files. */
static int build_table(struct wlift_ckpt *ck, wlift_diag *d)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < ck->nfiles; i++)
		n += ck->files[i].hdr.ntensors;
	if (n >= UINT32_MAX)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "ckpt.size",
				       "too many tensors (%zu)", n);
	ck->tensors = calloc(n ? n : 1, sizeof(*ck->tensors));
	ck->nslots = 16;
	while (ck->nslots < 2 * n)
		ck->nslots *= 2;
	ck->slots = calloc(ck->nslots, sizeof(*ck->slots));
	if (!ck->tensors || !ck->slots)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < ck->nfiles; i++) {
		const struct wlift__ckpt_file *f = &ck->files[i];
		for (size_t j = 0; j < f->hdr.ntensors; j++, k++) {
			const struct wlift__htensor *h = &f->hdr.tensors[j];
			wlift_tensor_info *t = &ck->tensors[k];
			size_t mask = ck->nslots - 1, s = (size_t)wlift__hash_str(h->name) & mask;

			t->name = h->name;
			t->dtype = h->dtype;
			t->ndim = h->ndim;
			t->shape = h->shape;
			t->nbytes = h->end - h->begin;
			t->file = (uint32_t)i;
			t->data_begin = h->begin;
			t->data_end = h->end;
			t->file_offset = f->info.data_offset + h->begin;
			for (; ck->slots[s]; s = (s + 1) & mask) {
				const wlift_tensor_info *o = &ck->tensors[ck->slots[s] - 1];
				if (strcmp(o->name, h->name) == 0)
					return wlift__diag_set(
						d, WLIFT_EDUPLICATE, f->info.uri, h->name, -1,
						"ckpt.duplicate",
						"tensor \"%s\" is stored in both %s and %s", h->name,
						ck->files[o->file].info.uri, f->info.uri);
			}
			ck->slots[s] = (uint32_t)(k + 1);
		}
	}
	/* The table now holds everything the entries did (names and shapes stay in the
	 * headers' arrays): with millions of tensors the entries are a third of the memory. */
	for (size_t i = 0; i < ck->nfiles; i++) {
		free(ck->files[i].hdr.tensors);
		ck->files[i].hdr.tensors = NULL;
	}
	ck->ntensors = n;
	return 0;
}

/* Sources to checkpoint: headers, table. On failure every source reference taken is
 * dropped with the checkpoint. */
int wlift__ckpt_open_sources(wlift_ctx *ctx, struct wlift__source *const *srcs, size_t n,
			     struct wlift_ckpt **out, wlift_diag *d)
{
	struct wlift_ckpt *ck;
	int ret = 0;

	*out = NULL;
	ck = ckpt_new(ctx, n);
	if (!ck)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	if (!ck->ctx) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = file_open(ck, i, NULL, srcs[i], d);
		if (ret)
			goto out;
	}
	ret = build_table(ck, d);
	if (ret)
		goto out;
	*out = ck;
	ck = NULL;
out:
	ckpt_destroy(ck);
	return ret;
}

/* Every mapped tensor must be in its shard; then equal counts mean that no shard holds a
 * tensor the map does not name (names are unique across shards, checked by build_table). */
static int check_index(const struct wlift_ckpt *ck, const struct wlift__index *ix,
		       const char *path, wlift_diag *d)
{
	uint8_t *named;

	for (size_t i = 0; i < ix->nentries; i++) {
		const char *name = ix->names[i], *want = ix->shards[ix->shard[i]];
		int64_t k = wlift_ckpt_find(ck, name);
		if (k < 0)
			return wlift__diag_set(d, WLIFT_EINDEX, path, name, -1, "index.missing",
					       "%s: tensor \"%s\" is mapped to %s but that shard "
					       "does not contain it",
					       path, name, want);
		if (ck->tensors[k].file != ix->shard[i])
			return wlift__diag_set(d, WLIFT_EINDEX, path, name, -1, "index.shard",
					       "%s: tensor \"%s\" is mapped to %s but is stored in "
					       "%s",
					       path, name, want, ix->shards[ck->tensors[k].file]);
	}
	if (ck->ntensors == ix->nentries)
		return 0;
	/* Find one the map lacks: mark what the map names, report the first other. */
	named = calloc(ck->ntensors, 1);
	if (!named)
		return wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < ix->nentries; i++)
		named[wlift_ckpt_find(ck, ix->names[i])] = 1;
	for (size_t i = 0; i < ck->ntensors; i++)
		if (!named[i]) {
			free(named);
			return wlift__diag_set(d, WLIFT_EINDEX, path, ck->tensors[i].name, -1,
					       "index.unmapped",
					       "%s: shard %s holds tensor \"%s\" which the index's "
					       "weight_map does not name",
					       path, ix->shards[ck->tensors[i].file],
					       ck->tensors[i].name);
		}
	free(named);
	return WLIFT_EINDEX; /* unreachable: counts differ only when a shard has more */
}

int wlift_open(wlift_ctx *ctx, const char *uri, wlift_ckpt **out, wlift_diag *d)
{
	double t0 = wlift__now();
	struct wlift__located loc;
	struct wlift_ckpt *ck = NULL;
	int ret;

	if (!out)
		return wlift__diag_set(d, -EINVAL, uri, NULL, -1, NULL, "out is NULL");
	*out = NULL;
	if (!uri || !*uri)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "empty URI");
	ctx = wlift__ctx_or_default(ctx);
	ret = wlift__locate(ctx, uri, &loc, d);
	if (ret)
		return ret;
	ck = ckpt_new(ctx, loc.n);
	if (!ck || !ck->ctx) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = open_files(ck, loc.uris, loc.n, d);
	if (ret)
		goto out;
	ret = build_table(ck, d);
	if (ret)
		goto out;
	if (loc.index_uri) {
		ret = check_index(ck, &loc.ix, loc.index_uri, d);
		if (ret)
			goto out;
	}
	for (size_t i = 0; i < loc.nignored; i++)
		wlift__log(ctx, WLIFT_LOG_INFO, "%s: ignoring %s, which %s does not name",
			   loc.dir_uri, loc.ignored[i], wlift__uri_basename(loc.index_uri));
	ck->open_s = wlift__now() - t0;
	*out = ck;
	ck = NULL;
out:
	ckpt_destroy(ck);
	wlift__located_free(&loc);
	return ret;
}

int wlift_open_memory(wlift_ctx *ctx, const void *buf, size_t len, const char *name,
		      wlift_ckpt **out, wlift_diag *d)
{
	double t0 = wlift__now();
	struct wlift__source *src = NULL;
	int ret;

	if (!out)
		return wlift__diag_set(d, -EINVAL, name, NULL, -1, NULL, "out is NULL");
	*out = NULL;
	if (!buf && len)
		return wlift__diag_set(d, -EINVAL, name, NULL, -1, NULL, "buf is NULL");
	ret = wlift__source_open_memory(buf ? buf : "", len, name ? name : "<memory>", &src, d);
	if (ret)
		return ret;
	ret = wlift__ckpt_open_sources(ctx, &src, 1, out, d);
	wlift__source_unref(src);
	if (ret == 0)
		(*out)->open_s = wlift__now() - t0;
	return ret;
}

size_t wlift_ckpt_count(const wlift_ckpt *ck)
{
	return ck ? ck->ntensors : 0;
}

int wlift_ckpt_info(const wlift_ckpt *ck, size_t i, wlift_tensor_info *info)
{
	if (!ck || !info || i >= ck->ntensors)
		return -EINVAL;
	*info = ck->tensors[i];
	return 0;
}

int64_t wlift_ckpt_find(const wlift_ckpt *ck, const char *name)
{
	size_t mask, s;

	if (!ck || !name || !ck->slots)
		return WLIFT_ENOTFOUND;
	mask = ck->nslots - 1;
	for (s = (size_t)wlift__hash_str(name) & mask; ck->slots[s]; s = (s + 1) & mask)
		if (strcmp(ck->tensors[ck->slots[s] - 1].name, name) == 0)
			return (int64_t)ck->slots[s] - 1;
	return WLIFT_ENOTFOUND;
}

size_t wlift_ckpt_nfiles(const wlift_ckpt *ck)
{
	return ck ? ck->nfiles : 0;
}

int wlift_ckpt_file(const wlift_ckpt *ck, size_t i, wlift_file_info *info)
{
	if (!ck || !info || i >= ck->nfiles)
		return -EINVAL;
	*info = ck->files[i].info;
	return 0;
}

int wlift_ckpt_metadata_count(const wlift_ckpt *ck, size_t file)
{
	if (!ck || file >= ck->nfiles)
		return -EINVAL;
	return ck->files[file].hdr.nmeta < 0 ? -ENOENT : ck->files[file].hdr.nmeta;
}

int wlift_ckpt_metadata(const wlift_ckpt *ck, size_t file, size_t i, const char **key,
			const char **value)
{
	const struct wlift__ckpt_file *f;

	if (!ck || file >= ck->nfiles)
		return -EINVAL;
	f = &ck->files[file];
	if (f->hdr.nmeta < 0 || i >= (size_t)f->hdr.nmeta)
		return -EINVAL;
	if (key)
		*key = f->hdr.meta[2 * i];
	if (value)
		*value = f->hdr.meta[2 * i + 1];
	return 0;
}

double wlift_ckpt_open_seconds(const wlift_ckpt *ck)
{
	return ck ? ck->open_s : 0;
}

int wlift_ckpt_read(const wlift_ckpt *ck, size_t file, uint64_t off, void *buf, size_t len,
		    wlift_diag *d)
{
	if (!ck || file >= ck->nfiles || (!buf && len))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args",
				       "wlift_ckpt_read: no such file %zu or no buffer", file);
	return wlift__source_read(ck->files[file].src, buf, len, off, d);
}

int wlift_read_object(wlift_ctx *ctx, const char *uri, size_t max, char **buf, size_t *len,
		      wlift_diag *d)
{
	if (!uri || !buf || !len)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args",
				       "wlift_read_object: uri, buf or len is NULL");
	return wlift__source_read_all(ctx, uri, max, buf, len, d);
}
