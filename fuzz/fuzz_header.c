/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: any byte string opened as an in-memory safetensors file must give a checkpoint
 * or a clean error, never a crash, hang or out-of-bounds access. */
#include <stdint.h>
#include <stddef.h>

#include "weightlift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wlift_ckpt *ck = NULL;
	wlift_diag d;

	wlift_diag_clear(&d);
	if (wlift_open_memory(NULL, data, size, "fuzz", &ck, &d) == 0)
		wlift_ckpt_close(ck);
	return 0;
}
