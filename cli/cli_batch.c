/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading a checkpoint in batches of bounded size, for the commands that consume tensors and
 * drop them (verify hashes them, cp writes them to a file): host memory stays at one batch
 * whatever the checkpoint's size, where a single wlift_load would hold every tensor at once.
 */
#include <errno.h>
#include <stdlib.h>

#include "cli.h"

static int load_one(wlift_ckpt *ck, const wlift_load_opts *base, const char *const *names,
		    size_t n, const struct cli_batch_ops *ops, wlift_diag *d)
{
	wlift_load_opts lo = *base;
	wlift_result *res = NULL;
	int ret;

	lo.names = names;
	lo.nnames = names ? n : 0;
	ret = wlift_load(ck, &lo, ops->ready, ops->user, &res, d);
	if (ret >= 0 && ops->done)
		ret = ops->done(res, ops->user);
	wlift_result_free(res);
	return ret;
}

int cli_load_batches(wlift_ckpt *ck, const wlift_load_opts *lo, size_t file,
		     uint64_t batch_bytes, const struct cli_batch_ops *ops, wlift_diag *d)
{
	size_t n = wlift_ckpt_count(ck), nb = 0, nsel = 0;
	const char **names = NULL;
	uint64_t total = 0, acc = 0;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		wlift_tensor_info ti;

		if (wlift_ckpt_info(ck, i, &ti) == 0 && (file == CLI_ALL_FILES || ti.file == file)) {
			total += ti.nbytes;
			nsel++;
		}
	}
	if (nsel == 0)
		return 0;
	/* Everything in one go needs no name list (and none of its lookups). */
	if (file == CLI_ALL_FILES && total <= batch_bytes)
		return load_one(ck, lo, NULL, 0, ops, d);

	names = malloc(nsel * sizeof(*names));
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < n && ret >= 0; i++) {
		wlift_tensor_info ti;

		ret = wlift_ckpt_info(ck, i, &ti);
		if (ret < 0)
			break;
		if (file != CLI_ALL_FILES && ti.file != file)
			continue;
		if (nb && acc + ti.nbytes > batch_bytes) {
			ret = load_one(ck, lo, names, nb, ops, d);
			nb = 0;
			acc = 0;
		}
		names[nb++] = ti.name;
		acc += ti.nbytes;
	}
	if (ret >= 0 && nb)
		ret = load_one(ck, lo, names, nb, ops, d);
	free(names);
	return ret;
}
