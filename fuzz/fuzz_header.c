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
	if (wlift_open_memory(NULL, data, size, "fuzz", &ck, &d) == 0) {
		/* Every accessor on what was accepted: the tensor table must be consistent
		 * (each name found at its own index, every extent inside the buffer). */
		for (size_t i = 0; i < wlift_ckpt_count(ck); i++) {
			wlift_tensor_info ti;
			if (wlift_ckpt_info(ck, i, &ti) != 0 ||
			    wlift_ckpt_find(ck, ti.name) != (int64_t)i ||
			    ti.file_offset > size || ti.nbytes > size - ti.file_offset)
				__builtin_trap();
		}
		for (int i = 0; i < wlift_ckpt_metadata_count(ck, 0); i++) {
			const char *k, *v;
			if (wlift_ckpt_metadata(ck, 0, (size_t)i, &k, &v) != 0 || !k || !v)
				__builtin_trap();
		}
		wlift_ckpt_close(ck);
	} else if (d.code == 0 || d.message[0] == '\0') {
		__builtin_trap(); /* every rejection is explained */
	}
	return 0;
}
