/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening checkpoints: a single .safetensors file (path or file:// URI), a sharded set named
 * by a *.safetensors.index.json, a directory (its index if it has one, else every
 * *.safetensors in name order) or a memory image. Each file's header is read with one small
 * read of its first bytes (more only when the header is larger), so that remote sources cost
 * one round trip per file. The tensor table is kept in file order with an open-addressing
 * name index; the checkpoint is reference counted so that loaded results can outlive it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/ckpt.h"
#include "format/index.h"

/* Index files larger than this are not plausible (real ones are well under 1 MiB). */
#define INDEX_MAX_BYTES (256u << 20)

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 1099511628211ull;
	}
	return h;
}

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
	free(ck->names_blob);
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
	ck->ctx = ctx;
	ck->refs = 1;
	ck->files = calloc(nfiles ? nfiles : 1, sizeof(*ck->files));
	if (!ck->files) {
		free(ck);
		return NULL;
	}
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
	ret = wlift__source_pread(s, buf, got, 0, d);
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
		ret = wlift__source_pread(s, buf + got, (size_t)(8 + n - got), got, d);
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
	f->meta = f->hdr.meta;
	f->nmeta = f->hdr.nmeta;
out:
	free(buf);
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
			size_t mask = ck->nslots - 1, s = (size_t)hash_name(h->name) & mask;

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
	ck->ntensors = n;
	return 0;
}

static int open_file_at(struct wlift_ckpt *ck, size_t i, const char *uri, wlift_diag *d)
{
	int ret;

	ck->files[i].info.uri = strdup(uri);
	if (!ck->files[i].info.uri)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	ck->nfiles = i + 1; /* so that destroy releases it */
	ck->files[i].nmeta = -1;
	ck->files[i].hdr.nmeta = -1;
	ret = wlift__source_open(ck->ctx, uri, &ck->files[i].src, d);
	if (ret)
		return ret;
	return read_header(ck, i, d);
}

static int open_files(wlift_ctx *ctx, char *const *uris, size_t n, struct wlift_ckpt **out,
		      wlift_diag *d)
{
	struct wlift_ckpt *ck = ckpt_new(ctx, n);
	int ret = 0;

	if (!ck)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < n && !ret; i++)
		ret = open_file_at(ck, i, uris[i], d);
	if (!ret)
		ret = build_table(ck, d);
	if (ret) {
		ckpt_destroy(ck);
		return ret;
	}
	*out = ck;
	return 0;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

static char *join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static int push_str(char ***v, size_t *n, size_t *cap, char *s)
{
	if (!s)
		return -ENOMEM;
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 16;
		char **nv = realloc(*v, nc * sizeof(char *));
		if (!nv) {
			free(s);
			return -ENOMEM;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = s;
	return 0;
}

static int read_small_file(const char *path, char **out, size_t *len, wlift_diag *d)
{
	struct wlift__source *s = NULL;
	char *buf = NULL;
	int ret;

	*out = NULL;
	ret = wlift__source_open(NULL, path, &s, d);
	if (ret)
		return ret;
	if (s->size > INDEX_MAX_BYTES) {
		ret = wlift__diag_set(d, WLIFT_EINDEX, path, NULL, -1, "index.size",
				      "%s: %llu bytes is too large for an index file", path,
				      (unsigned long long)s->size);
		goto out;
	}
	buf = malloc((size_t)s->size + 1);
	if (!buf) {
		ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = wlift__source_pread(s, buf, (size_t)s->size, 0, d);
	if (ret)
		goto out;
	buf[s->size] = '\0';
	*len = (size_t)s->size;
	*out = buf;
	buf = NULL;
out:
	free(buf);
	wlift__source_unref(s);
	return ret;
}

/* Sharded checkpoint: open every shard the index names (relative to the index's directory),
 * then check that weight_map and the shards agree exactly. */
static int open_index(wlift_ctx *ctx, const char *path, struct wlift_ckpt **out, wlift_diag *d)
{
	char *text = NULL, *dir = NULL, **uris = NULL;
	size_t len = 0;
	struct wlift__index ix = { 0 };
	struct wlift_ckpt *ck = NULL;
	const char *slash;
	int ret;

	ret = read_small_file(path, &text, &len, d);
	if (ret)
		goto out;
	ret = wlift__index_parse(text, len, path, &ix, d);
	if (ret)
		goto out;
	slash = strrchr(path, '/');
	dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	uris = calloc(ix.nshards, sizeof(char *));
	if (!dir || !uris) {
		ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < ix.nshards; i++) {
		struct stat st;
		uris[i] = ix.shards[i][0] == '/' ? strdup(ix.shards[i]) : join(dir, ix.shards[i]);
		if (!uris[i]) {
			ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
			goto out;
		}
		if (stat(uris[i], &st) != 0) {
			ret = wlift__diag_set(d, -errno, uris[i], NULL, -1, "index.shard",
					      "%s: shard %s named by the index: %s", path, uris[i],
					      strerror(errno));
			goto out;
		}
	}
	ret = open_files(ctx, uris, ix.nshards, &ck, d);
	if (ret)
		goto out;
	/* Every mapped tensor must be in its shard; then equal counts mean that no shard holds
	 * a tensor the map does not name (names are unique across shards, checked above). */
	for (size_t i = 0; i < ix.nentries; i++) {
		const char *name = ix.names[i], *want = ix.shards[ix.shard[i]];
		int64_t k = wlift_ckpt_find(ck, name);
		if (k < 0) {
			ret = wlift__diag_set(d, WLIFT_EINDEX, path, name, -1, "index.missing",
					      "%s: tensor \"%s\" is mapped to %s but that shard does "
					      "not contain it", path, name, want);
			goto out;
		}
		if (ck->tensors[k].file != ix.shard[i]) {
			ret = wlift__diag_set(d, WLIFT_EINDEX, path, name, -1, "index.shard",
					      "%s: tensor \"%s\" is mapped to %s but is stored in %s",
					      path, name, want, ix.shards[ck->tensors[k].file]);
			goto out;
		}
	}
	if (ck->ntensors != ix.nentries) {
		/* Find one the map lacks: mark what the map names, report the first other. */
		uint8_t *named = calloc(ck->ntensors, 1);
		if (!named) {
			ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
			goto out;
		}
		for (size_t i = 0; i < ix.nentries; i++)
			named[wlift_ckpt_find(ck, ix.names[i])] = 1;
		for (size_t i = 0; i < ck->ntensors; i++)
			if (!named[i]) {
				ret = wlift__diag_set(d, WLIFT_EINDEX, path, ck->tensors[i].name, -1,
						      "index.unmapped",
						      "%s: shard %s holds tensor \"%s\" which the "
						      "index's weight_map does not name", path,
						      ix.shards[ck->tensors[i].file],
						      ck->tensors[i].name);
				break;
			}
		free(named);
		if (!ret) /* unreachable: counts differ only when a shard has more */
			ret = WLIFT_EINDEX;
		goto out;
	}
	*out = ck;
	ck = NULL;
out:
	ckpt_destroy(ck);
	for (size_t i = 0; uris && i < ix.nshards; i++)
		free(uris[i]);
	free(uris);
	wlift__index_free(&ix);
	free(dir);
	free(text);
	return ret;
}

static int open_dir(wlift_ctx *ctx, const char *path, struct wlift_ckpt **out, wlift_diag *d)
{
	DIR *dh = NULL;
	struct dirent *e;
	char **files = NULL, **indexes = NULL;
	size_t nf = 0, capf = 0, ni = 0, capi = 0;
	const char *index = NULL;
	char *ipath = NULL;
	int ret = 0;

	dh = opendir(path);
	if (!dh)
		return wlift__diag_set(d, -errno, path, NULL, -1, "io.open", "%s: cannot open "
				       "directory: %s", path, strerror(errno));
	while ((e = readdir(dh))) {
		if (e->d_name[0] == '.')
			continue;
		if (has_suffix(e->d_name, ".safetensors.index.json"))
			ret = push_str(&indexes, &ni, &capi, strdup(e->d_name));
		else if (has_suffix(e->d_name, ".safetensors"))
			ret = push_str(&files, &nf, &capf, strdup(e->d_name));
		if (ret) {
			ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
			goto out;
		}
	}
	if (nf)
		qsort(files, nf, sizeof(char *), cmp_str);
	if (ni)
		qsort(indexes, ni, sizeof(char *), cmp_str);
	for (size_t i = 0; i < ni; i++)
		if (strcmp(indexes[i], "model.safetensors.index.json") == 0)
			index = indexes[i];
	if (!index && ni == 1)
		index = indexes[0];
	if (!index && ni > 1) {
		ret = wlift__diag_set(d, WLIFT_EINDEX, path, NULL, -1, "index.ambiguous",
				      "%s: %zu *.safetensors.index.json files and none is "
				      "model.safetensors.index.json: open one of them explicitly",
				      path, ni);
		goto out;
	}
	if (index) {
		ipath = join(path, index);
		if (!ipath) {
			ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
			goto out;
		}
		ret = open_index(ctx, ipath, out, d);
		if (ret)
			goto out;
		/* Tell the user about files the index leaves out: stale shards or a merged
		 * copy are common and easy to mistake for part of the checkpoint. */
		for (size_t i = 0; i < nf; i++) {
			int used = 0;
			for (size_t k = 0; k < (*out)->nfiles && !used; k++) {
				const char *u = (*out)->files[k].info.uri, *b = strrchr(u, '/');
				used = strcmp(b ? b + 1 : u, files[i]) == 0;
			}
			if (!used)
				wlift__log(ctx, WLIFT_LOG_INFO, "%s: ignoring %s, which %s does not "
					   "name", path, files[i], index);
		}
		for (size_t i = 0; i < ni; i++)
			if (indexes[i] != index)
				wlift__log(ctx, WLIFT_LOG_INFO, "%s: ignoring %s (using %s)", path,
					   indexes[i], index);
		goto out;
	}
	if (nf == 0) {
		ret = wlift__diag_set(d, -ENOENT, path, NULL, -1, "ckpt.empty",
				      "%s: no *.safetensors files or index in this directory", path);
		goto out;
	}
	for (size_t i = 0; i < nf; i++) {
		char *full = join(path, files[i]);
		if (!full) {
			ret = wlift__diag_set(d, -ENOMEM, path, NULL, -1, NULL, NULL);
			goto out;
		}
		free(files[i]);
		files[i] = full;
	}
	ret = open_files(ctx, files, nf, out, d);
out:
	if (dh)
		closedir(dh);
	free(ipath);
	free_strs(files, nf);
	free_strs(indexes, ni);
	return ret;
}

int wlift_open(wlift_ctx *ctx, const char *uri, wlift_ckpt **out, wlift_diag *d)
{
	double t0 = wlift__now();
	const char *path;
	struct stat st;
	int ret;

	if (!out)
		return wlift__diag_set(d, -EINVAL, uri, NULL, -1, NULL, "out is NULL");
	*out = NULL;
	if (!uri || !*uri)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, NULL, "empty URI");
	path = wlift__uri_local_path(uri);
	if (!path)
		return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.scheme",
				       "%s: URI scheme not supported by this build", uri);
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		ret = open_dir(ctx, path, out, d);
	} else if (has_suffix(path, ".index.json")) {
		ret = open_index(ctx, path, out, d);
	} else {
		char *one = (char *)uri;
		ret = open_files(ctx, &one, 1, out, d);
	}
	if (ret == 0)
		(*out)->open_s = wlift__now() - t0;
	return ret;
}

int wlift_open_memory(wlift_ctx *ctx, const void *buf, size_t len, const char *name,
		      wlift_ckpt **out, wlift_diag *d)
{
	double t0 = wlift__now();
	struct wlift_ckpt *ck;
	int ret;

	if (!out)
		return wlift__diag_set(d, -EINVAL, name, NULL, -1, NULL, "out is NULL");
	*out = NULL;
	if (!buf && len)
		return wlift__diag_set(d, -EINVAL, name, NULL, -1, NULL, "buf is NULL");
	if (!name)
		name = "<memory>";
	ck = ckpt_new(ctx, 1);
	if (!ck)
		return wlift__diag_set(d, -ENOMEM, name, NULL, -1, NULL, NULL);
	ck->nfiles = 1;
	ck->files[0].nmeta = -1;
	ck->files[0].hdr.nmeta = -1;
	ck->files[0].info.uri = strdup(name);
	if (!ck->files[0].info.uri) {
		ret = wlift__diag_set(d, -ENOMEM, name, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = wlift__source_open_memory(buf ? buf : "", len, name, &ck->files[0].src, d);
	if (ret)
		goto out;
	ret = read_header(ck, 0, d);
	if (ret)
		goto out;
	ret = build_table(ck, d);
	if (ret)
		goto out;
	ck->open_s = wlift__now() - t0;
	*out = ck;
	ck = NULL;
out:
	ckpt_destroy(ck);
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
	for (s = (size_t)hash_name(name) & mask; ck->slots[s]; s = (s + 1) & mask)
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
	return ck->files[file].nmeta < 0 ? -ENOENT : ck->files[file].nmeta;
}

int wlift_ckpt_metadata(const wlift_ckpt *ck, size_t file, size_t i, const char **key,
			const char **value)
{
	const struct wlift__ckpt_file *f;

	if (!ck || file >= ck->nfiles)
		return -EINVAL;
	f = &ck->files[file];
	if (f->nmeta < 0 || i >= (size_t)f->nmeta)
		return -EINVAL;
	if (key)
		*key = f->meta[2 * i];
	if (value)
		*value = f->meta[2 * i + 1];
	return 0;
}

double wlift_ckpt_open_seconds(const wlift_ckpt *ck)
{
	return ck ? ck->open_s : 0;
}
