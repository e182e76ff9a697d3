/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Transitional: while the format and engine parts of the library are being written, the
 * shared library does not define every function of the public header yet. Declaring the
 * missing ones weak lets the tool link (an undefined weak reference resolves to NULL) and
 * report "not implemented" instead of failing the whole build. Delete this file and its
 * uses (cli.h, the cli_pending_check calls) once libweightlift defines all of them.
 */
#ifndef WLIFT_CLI_PENDING_H
#define WLIFT_CLI_PENDING_H

#include <stdbool.h>
#include <stdio.h>

#include "weightlift.h"

#pragma weak wlift_open
#pragma weak wlift_ckpt_count
#pragma weak wlift_ckpt_info
#pragma weak wlift_ckpt_find
#pragma weak wlift_ckpt_nfiles
#pragma weak wlift_ckpt_file
#pragma weak wlift_ckpt_metadata_count
#pragma weak wlift_ckpt_metadata
#pragma weak wlift_dtype_name
#pragma weak wlift_dtype_from_name
#pragma weak wlift_load
#pragma weak wlift_result_free
#pragma weak wlift_result_count
#pragma weak wlift_result_tensor
#pragma weak wlift_result_stats
#pragma weak wlift_tensor_get

/* The name of the first public function the loaded library lacks, or NULL: the functions
 * of open and the checkpoint accessors, plus those of loading when need_load. */
static inline const char *cli_pending_missing(bool need_load)
{
#define CLI_NEED(fn)                                                                               \
	do {                                                                                       \
		if (!(fn))                                                                         \
			return #fn;                                                                \
	} while (0)
	CLI_NEED(wlift_open);
	CLI_NEED(wlift_ckpt_count);
	CLI_NEED(wlift_ckpt_info);
	CLI_NEED(wlift_ckpt_find);
	CLI_NEED(wlift_ckpt_nfiles);
	CLI_NEED(wlift_ckpt_file);
	CLI_NEED(wlift_ckpt_metadata_count);
	CLI_NEED(wlift_ckpt_metadata);
	CLI_NEED(wlift_dtype_name);
	CLI_NEED(wlift_dtype_from_name);
	if (!need_load)
		return NULL;
	CLI_NEED(wlift_load);
	CLI_NEED(wlift_result_free);
	CLI_NEED(wlift_result_count);
	CLI_NEED(wlift_result_tensor);
	CLI_NEED(wlift_result_stats);
	CLI_NEED(wlift_tensor_get);
#undef CLI_NEED
	return NULL;
}

/* Called by each command after its options are parsed: 0, or the exit code after saying
 * which function is missing. */
static inline int cli_pending_check(const char *cmd, bool need_load)
{
	const char *fn = cli_pending_missing(need_load);

	if (!fn)
		return 0;
	fprintf(stderr,
		"weightlift: %s: not implemented in this build of libweightlift "
		"(the library is incomplete: no %s)\n",
		cmd, fn);
	return 1;
}

#endif
