/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange of a load with a communicator (exchange.h). Every rank makes the same
 * selection, so the owners follow from it alone: the tensors read whole (not split by a
 * shard rule) are cut into contiguous runs in file order balanced by bytes (a tensor goes
 * to the rank whose share [r * total / W, (r + 1) * total / W) holds its midpoint: the rule
 * of weightlift.distributed and of the CLI's file mode), so over the ranks every byte is
 * read once. Two rounds of small broadcasts (each rank in turn sends a fixed-size message)
 * let every rank see every other's digest or error: before any read (agreement) and after
 * the reads (report); a failed rank takes part in the round it owes with its error, so the
 * others fail at once. Then the broadcasts, in file order, from each tensor's owner: one
 * per tensor, except that a run of small tensors of one owner goes packed in one. A host
 * block along dim > 0 whose pieces are under the piece threshold would be read as its
 * covering range on every rank (W times the tensor): its owner reads the tensor once,
 * broadcasts it whole, and every rank gathers (and converts) its block from that copy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "engine/ckpt.h"
#include "engine/exchange.h"
#include "sink/convert_cpu.h"

/* Small whole tensors (each at most XCHG_SMALL bytes) of one owner that follow each other
 * in file order go in one broadcast of at most XCHG_PACK bytes (host memory only). */
#define XCHG_SMALL (1u << 20)
#define XCHG_PACK (16u << 20)

struct msg {
	int32_t code;	/* 0 ok, else this rank's error */
	int32_t phase;	/* 1 agreement, 2 report */
	uint64_t digest;
	char text[240]; /* the error's message */
};

static uint64_t digest(const struct wlift_ckpt *ck, const struct wlift__load_cfg *c,
		       const struct wlift__selection *sel)
{
	uint64_t h = 0xcbf29ce484222325ull, v;

	v = c->world;
	wlift__fnv1a(&h, &v, sizeof(v));
	v = (uint64_t)c->dtype;
	wlift__fnv1a(&h, &v, sizeof(v));
	v = c->device_index >= 0;
	wlift__fnv1a(&h, &v, sizeof(v));
	v = c->shard_piece_min; /* decides which blocks are read whole by one rank */
	wlift__fnv1a(&h, &v, sizeof(v));
	v = ck->nfiles;
	wlift__fnv1a(&h, &v, sizeof(v));
	for (size_t f = 0; f < ck->nfiles; f++) {
		wlift__fnv1a(&h, &ck->files[f].info.size, sizeof(uint64_t));
		wlift__fnv1a(&h, &ck->files[f].info.ntensors, sizeof(uint64_t));
	}
	v = sel->n;
	wlift__fnv1a(&h, &v, sizeof(v));
	for (size_t i = 0; i < sel->n; i++) {
		const wlift_tensor_info *t = &ck->tensors[sel->idx[i]];
		int split = sel->split_dim ? sel->split_dim[i] : 0;

		wlift__fnv1a(&h, t->name, strlen(t->name) + 1);
		v = sel->idx[i];
		wlift__fnv1a(&h, &v, sizeof(v));
		wlift__fnv1a(&h, &split, sizeof(split));
		if (!split) { /* rows: the same part everywhere */
			wlift__fnv1a(&h, &sel->ti[i].file_offset, sizeof(uint64_t));
			wlift__fnv1a(&h, &sel->ti[i].nbytes, sizeof(uint64_t));
		}
	}
	return h;
}

/* Each rank in turn broadcasts its message; all[r] is rank r's. */
static int round_all(struct wlift__xchg *x, struct wlift_comm *comm, const struct msg *mine,
		     struct msg *all, wlift_diag *d)
{
	int world = wlift_comm_size(comm), rank = wlift_comm_rank(comm);

	for (int r = 0; r < world; r++) {
		int ret;
		if (r == rank)
			all[r] = *mine;
		ret = wlift_comm_broadcast(comm, &all[r], sizeof(all[r]), r, d);
		if (ret)
			return ret;
	}
	(void)x;
	return 0;
}

static void set_text(struct msg *m, int code, const wlift_diag *d)
{
	const char *t = d && d->code && d->message[0] ? d->message : wlift_strerror(code);

	size_t n = strnlen(t, sizeof(m->text) - 1);

	m->code = code;
	memcpy(m->text, t, n); /* cut to the message's room */
	m->text[n] = '\0';
}

/* Run round `phase` with this rank's message; on success, fail if another rank failed (or,
 * in the agreement, if a digest differs from rank 0's). */
static int round_check(struct wlift__xchg *x, struct wlift_comm *comm, int phase,
		       const struct msg *mine, wlift_diag *d)
{
	int world = wlift_comm_size(comm), ret;
	struct msg *all = calloc((size_t)world, sizeof(*all));

	if (!all)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = round_all(x, comm, mine, all, d);
	if (ret || mine->code)
		goto out;
	for (int r = 0; r < world; r++) {
		if (all[r].phase != phase) {
			ret = wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.exchange",
					      "rank %d of %d is at another step of the load (a "
					      "different call on that rank?)", r, world);
			goto out;
		}
		if (all[r].code) {
			all[r].text[sizeof(all[r].text) - 1] = '\0';
			ret = wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.exchange",
					      "%s failed on rank %d of %d: %s",
					      phase == 1 ? "opening the load" : "loading", r, world,
					      all[r].text);
			goto out;
		}
	}
	for (int r = 1; phase == 1 && r < world; r++)
		if (all[r].digest != all[0].digest) {
			ret = wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.mismatch",
					      "the ranks passed different checkpoints or specs "
					      "(rank %d of %d differs from rank 0: files, "
					      "selection, shard rules, dtype or device kind)",
					      r, world);
			goto out;
		}
out:
	free(all);
	return ret;
}

int wlift__xchg_begin(struct wlift__xchg *x, const struct wlift_ckpt *ck,
		      const struct wlift__load_cfg *c, const struct wlift__selection *sel,
		      wlift_diag *d)
{
	struct msg m = { 0 };
	long double total = 0, pos = 0;
	int ret = 0;

	if (!c->comm || c->world < 2)
		return 0;
	x->comm = c->comm;
	x->n = sel->n;
	x->rank = (int)c->rank;
	x->world = (int)c->world;
	if (c->comm->ops->device_buffers != (c->device_index >= 0)) {
		ret = wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "load.comm",
				      "device \"%s\": the %s communicator moves %s memory",
				      c->device ? c->device : "cpu", c->comm->ops->name,
				      c->comm->ops->device_buffers ? "device" : "host");
		goto out;
	}
	if (c->mmap == WLIFT_MMAP_ON) {
		ret = wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "load.comm",
				      "mapped mode does not combine with a communicator (the "
				      "tensors read by others need memory of their own)");
		goto out;
	}
	x->owner = calloc(sel->n ? sel->n : 1, sizeof(*x->owner));
	x->skip = calloc(sel->n ? sel->n : 1, 1);
	x->whole = calloc(sel->n ? sel->n : 1, 1);
	x->buf = calloc(sel->n ? sel->n : 1, sizeof(*x->buf));
	if (!x->owner || !x->skip || !x->whole || !x->buf) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < sel->n; i++)
		x->whole[i] = c->device_index < 0 && sel->split_dim && sel->split_dim[i] > 1 &&
			      sel->gather && sel->gather[i].outer >= 2 && !sel->gather[i].split;
	for (size_t i = 0; i < sel->n; i++)
		if (!sel->split_dim || !sel->split_dim[i] || x->whole[i])
			total += ck->tensors[sel->idx[i]].nbytes;
	for (size_t i = 0; i < sel->n; i++) {
		uint64_t nb = ck->tensors[sel->idx[i]].nbytes;
		long double mid;
		int o;

		if (sel->split_dim && sel->split_dim[i] && !x->whole[i]) {
			x->owner[i] = -1;
			continue;
		}
		mid = pos + (long double)nb / 2;
		o = total > 0 ? (int)(mid * x->world / total) : 0;
		x->owner[i] = o < x->world ? o : x->world - 1;
		x->skip[i] = x->whole[i] || x->owner[i] != x->rank;
		pos += nb;
	}
	m.phase = 1;
	m.digest = digest(ck, c, sel);
out:
	if (ret)
		return wlift__xchg_fail(x, c->comm, ret, d);
	x->agreed = 1;
	ret = round_check(x, x->comm, 1, &m, d);
	if (ret)
		x->reported = 1; /* every rank fails here: no further round */
	return ret;
}

int wlift__xchg_fail(struct wlift__xchg *x, struct wlift_comm *comm, int ret, wlift_diag *d)
{
	struct msg m = { 0 };
	wlift_diag e;

	if (!comm || wlift_comm_size(comm) < 2 || comm->broken || x->reported)
		return ret;
	m.phase = x->agreed ? 2 : 1;
	set_text(&m, ret, d);
	x->agreed = 1;
	x->reported = 1;
	wlift_diag_clear(&e);
	(void)round_check(x, comm, m.phase, &m, &e); /* this rank's own error stands */
	return ret;
}

/* Tensor i's block from the whole tensor at buf (gathered in place, then converted or
 * copied into the view). */
static int gather_block(const struct wlift_ckpt *ck, const struct wlift__selection *sel,
			size_t i, struct wlift_tensor *t, uint8_t *buf, wlift_diag *d)
{
	const struct wlift__gather *g = &sel->gather[i];
	const wlift_tensor_info *w = &ck->tensors[sel->idx[i]];
	uint64_t start = sel->ti[i].data_begin - w->data_begin, n;

	for (uint64_t k = 0; k < g->outer; k++)
		memmove(buf + k * g->piece, buf + start + k * g->stride, g->piece);
	if (t->v.dtype == t->v.info.dtype) {
		memcpy(t->v.data, buf, t->v.nbytes);
		return 0;
	}
	n = t->v.info.nbytes * 8 / wlift_dtype_bits(t->v.info.dtype);
	if (wlift__convert_cpu(t->v.info.dtype, t->v.dtype, buf, t->v.data, (size_t)n))
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, t->v.info.name, -1,
				       "load.dtype", "tensor \"%s\": cannot convert %s to %s",
				       t->v.info.name, wlift_dtype_name(t->v.info.dtype),
				       wlift_dtype_name(t->v.dtype));
	return 0;
}

/* Broadcast tensor i from its owner (a block read whole: into a buffer of its own, then
 * every rank gathers its block from it). */
static int bcast_one(struct wlift__xchg *x, const struct wlift_ckpt *ck,
		     const struct wlift__selection *sel, struct wlift_result *res, size_t i,
		     wlift_diag *d)
{
	struct wlift_tensor *t = &res->t[i];
	const wlift_tensor_info *w = &ck->tensors[sel->idx[i]];
	void *buf = t->v.data;
	uint64_t len = t->v.nbytes;
	int ret;

	if (x->whole[i]) {
		if (!x->buf[i])
			x->buf[i] = malloc(w->nbytes ? w->nbytes : 1);
		if (!x->buf[i])
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		buf = x->buf[i];
		len = w->nbytes;
	}
	ret = wlift_comm_broadcast(x->comm, buf, len, x->owner[i], d);
	if (ret) {
		if (d && d->code) {
			wlift_diag e = *d;

			wlift__diag_set(d, ret, NULL, t->v.info.name, -1,
					e.rule[0] ? e.rule : NULL, "tensor \"%s\" from rank %d: %s",
					t->v.info.name, x->owner[i], e.message);
		}
		return ret;
	}
	if (x->whole[i]) {
		ret = gather_block(ck, sel, i, t, x->buf[i], d);
		free(x->buf[i]);
		x->buf[i] = NULL;
	}
	return ret;
}

/* Broadcast tensors [i, j) (host memory, one owner, sum bytes in all) as one message: the
 * owner packs them into *pack (XCHG_PACK bytes, allocated on first use), the others unpack. */
static int bcast_packed(struct wlift__xchg *x, struct wlift_result *res, size_t i, size_t j,
			uint64_t sum, uint8_t **pack, wlift_diag *d)
{
	int own = x->owner[i] == x->rank, ret;
	uint64_t off = 0;

	if (!*pack)
		*pack = malloc(XCHG_PACK);
	if (!*pack)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t k = i; own && k < j; off += res->t[k++].v.nbytes)
		memcpy(*pack + off, res->t[k].v.data, res->t[k].v.nbytes);
	ret = wlift_comm_broadcast(x->comm, *pack, sum, x->owner[i], d);
	if (ret) {
		if (d && d->code) {
			wlift_diag e = *d;

			wlift__diag_set(d, ret, NULL, res->t[i].v.info.name, -1,
					e.rule[0] ? e.rule : NULL,
					"tensors \"%s\" to \"%s\" (%zu, packed) from rank %d: %s",
					res->t[i].v.info.name, res->t[j - 1].v.info.name, j - i,
					x->owner[i], e.message);
		}
		return ret;
	}
	for (size_t k = i; !own && k < j; off += res->t[k++].v.nbytes)
		memcpy(res->t[k].v.data, *pack + off, res->t[k].v.nbytes);
	return 0;
}

int wlift__xchg_run(struct wlift__xchg *x, const struct wlift_ckpt *ck,
		    const struct wlift__selection *sel, struct wlift_result *res,
		    int (*done)(void *user, size_t i), void *user, uint64_t *read,
		    uint64_t *received, wlift_diag *d)
{
	struct msg m = { 0 };
	uint8_t *pack = NULL;
	int ret = 0;

	*received = 0;
	if (!x->comm)
		return 0;
	/* This rank's whole tensors, before the report round: a failed read is reported. */
	for (size_t i = 0; i < res->n && !ret; i++) {
		const wlift_tensor_info *w = &ck->tensors[sel->idx[i]];

		if (!x->whole[i] || x->owner[i] != x->rank)
			continue;
		x->buf[i] = malloc(w->nbytes ? w->nbytes : 1);
		if (!x->buf[i])
			ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		else
			ret = wlift__source_read(ck->files[w->file].src, x->buf[i], w->nbytes,
						 w->file_offset, d);
		*read += w->nbytes;
	}
	if (ret)
		return ret; /* wlift__load's failure path sends it in the report round */
	m.phase = 2;
	x->reported = 1;
	ret = round_check(x, x->comm, 2, &m, d);
	if (ret)
		return ret;
	for (size_t i = 0, j; i < res->n && !ret; i = j) {
		uint64_t sum = res->t[i].v.nbytes;

		j = i + 1;
		if (x->owner[i] < 0)
			continue;
		/* A run of small whole tensors of one owner goes in one broadcast (host memory:
		 * packed by the owner, unpacked by the others). */
		while (!x->comm->ops->device_buffers && !x->whole[i] &&
		       res->t[i].v.nbytes <= XCHG_SMALL && j < res->n &&
		       x->owner[j] == x->owner[i] && !x->whole[j] &&
		       res->t[j].v.nbytes <= XCHG_SMALL && sum + res->t[j].v.nbytes <= XCHG_PACK)
			sum += res->t[j++].v.nbytes;
		ret = j - i > 1 ? bcast_packed(x, res, i, j, sum, &pack, d)
				: bcast_one(x, ck, sel, res, i, d);
		for (size_t k = i; k < j && !ret; k++) {
			if (!x->skip[k])
				continue;
			if (!x->whole[k] || x->owner[k] != x->rank)
				*received += x->whole[k] ? ck->tensors[sel->idx[k]].nbytes
							 : res->t[k].v.nbytes;
			ret = done ? done(user, k) : 0;
		}
	}
	free(pack);
	return ret;
}

void wlift__xchg_free(struct wlift__xchg *x)
{
	for (size_t i = 0; x->buf && x->whole && i < x->n; i++)
		free(x->buf[i]);
	free(x->buf);
	free(x->whole);
	free(x->owner);
	free(x->skip);
	memset(x, 0, sizeof(*x));
}
