/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public communicator functions: argument checks and dispatch through the backend's ops
 * (comm.h). A communicator whose collective failed stays broken, so that a later call cannot
 * hang on peers that have already given up.
 */
#include <errno.h>
#include <stdlib.h>

#include "comm/comm.h"

int wlift_comm_rank(const wlift_comm *c)
{
	return c ? c->rank : -EINVAL;
}

int wlift_comm_size(const wlift_comm *c)
{
	return c ? c->size : -EINVAL;
}

int wlift_comm_broadcast(wlift_comm *c, void *buf, uint64_t len, int root, wlift_diag *d)
{
	int ret;

	wlift_diag_clear(d);
	if (!c || (!buf && len) || root < 0 || root >= c->size)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "comm.args",
				       "wlift_comm_broadcast: %s", !c ? "comm is NULL"
				       : root < 0 || root >= c->size ? "root is outside the ranks"
								      : "buf is NULL");
	if (c->broken)
		return wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.broken",
				       "%s communicator (rank %d of %d) failed earlier: destroy it",
				       c->ops->name, c->rank, c->size);
	if (c->size == 1 || len == 0)
		return 0;
	ret = c->ops->broadcast(c, buf, len, root, d);
	if (ret)
		c->broken = 1;
	return ret;
}

void wlift_comm_abort(wlift_comm *c, int code)
{
	if (!c)
		return;
	if (!c->aborted)
		c->ops->abort(c, code);
	c->aborted = 1;
	c->broken = 1;
}

void wlift_comm_destroy(wlift_comm *c)
{
	if (!c)
		return;
	c->ops->destroy(c);
	free(c);
}
