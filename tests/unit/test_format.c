/* SPDX-License-Identifier: Apache-2.0 */
/* The format layer: dtypes, the header length checks and recognition of foreign files, and
 * each validation rule with the diagnostic it produces. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/header.h"
#include "format/index.h"
#include "testutil.h"

START_TEST(dtype_names_and_bits)
{
	static const struct { const char *name; unsigned bits; } want[] = {
		{ "BOOL", 8 }, { "U8", 8 }, { "I8", 8 }, { "F8_E5M2", 8 }, { "F8_E4M3", 8 },
		{ "F8_E8M0", 8 }, { "F8_E4M3FNUZ", 8 }, { "F8_E5M2FNUZ", 8 }, { "I16", 16 },
		{ "U16", 16 }, { "F16", 16 }, { "BF16", 16 }, { "I32", 32 }, { "U32", 32 },
		{ "F32", 32 }, { "F64", 64 }, { "I64", 64 }, { "U64", 64 }, { "C64", 64 },
		{ "F4", 4 }, { "F6_E2M3", 6 }, { "F6_E3M2", 6 },
	};

	ck_assert_int_eq(WLIFT_ARRAY_SIZE(want), WLIFT_DTYPE_COUNT - 1);
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(want); i++) {
		int t = wlift_dtype_from_name(want[i].name);
		ck_assert_int_eq(t, (int)i + 1);
		ck_assert_str_eq(wlift_dtype_name((wlift_dtype)t), want[i].name);
		ck_assert_uint_eq(wlift_dtype_bits((wlift_dtype)t), want[i].bits);
	}
	ck_assert_ptr_null(wlift_dtype_name(WLIFT_DTYPE_NONE));
	ck_assert_ptr_null(wlift_dtype_name(WLIFT_DTYPE_COUNT));
	ck_assert_uint_eq(wlift_dtype_bits(WLIFT_DTYPE_COUNT), 0);
	ck_assert_int_eq(wlift_dtype_from_name("f32"), WLIFT_EDTYPE);
	ck_assert_int_eq(wlift_dtype_from_name(""), WLIFT_EDTYPE);
	ck_assert_int_eq(wlift_dtype_from_name(NULL), WLIFT_EDTYPE);
	/* the reference writer's order: U64 first, BOOL last */
	ck_assert_int_gt(wlift__dtype_rank(WLIFT_U64), wlift__dtype_rank(WLIFT_F64));
	ck_assert_int_gt(wlift__dtype_rank(WLIFT_F64), wlift__dtype_rank(WLIFT_C64));
	ck_assert_int_gt(wlift__dtype_rank(WLIFT_U8), wlift__dtype_rank(WLIFT_F6_E3M2));
	ck_assert_int_gt(wlift__dtype_rank(WLIFT_F4), wlift__dtype_rank(WLIFT_BOOL));
}
END_TEST

/* Open a memory image of json + datalen bytes; return the code, fill d. */
static int try_open(const char *json, size_t datalen, wlift_diag *d)
{
	uint8_t *data = calloc(1, datalen + 1);
	size_t len;
	uint8_t *img = wt_st_image(json, data, datalen, &len);
	wlift_ckpt *ck = NULL;
	int ret;

	wlift_diag_clear(d);
	ret = wlift_open_memory(NULL, img, len, "x.safetensors", &ck, d);
	if (ret == 0)
		wlift_ckpt_close(ck);
	else
		ck_assert_ptr_null(ck);
	free(img);
	free(data);
	return ret;
}

struct rule_case {
	const char *json;
	size_t datalen;
	int code;
	const char *rule;
	const char *tensor;
};

static const struct rule_case rules[] = {
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0, "", "" },
	{ "{\"a\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, WLIFT_EDTYPE,
	  "dtype.unknown", "a" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, WLIFT_EOFFSETS,
	  "offsets.gap", "a" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
	  "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, WLIFT_EOFFSETS,
	  "offsets.overlap", "b" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
	  "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,1]}}", 2, WLIFT_EOFFSETS,
	  "offsets.order", "b" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 3, WLIFT_EOFFSETS,
	  "data.trailing", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 1, WLIFT_ETRUNCATED,
	  "file.truncated", "a" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, WLIFT_ESHAPE,
	  "shape.nbytes", "a" },
	{ "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, WLIFT_ESHAPE,
	  "shape.bits", "a" },
	{ "{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]}}", 3, 0, "", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
	  0, WLIFT_ESHAPE, "shape.overflow", "a" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}",
	  0, WLIFT_ESHAPE, "shape.overflow", "a" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615,0],\"data_offsets\":[0,0]}}",
	  0, 0, "", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615,2,0],\"data_offsets\":[0,0]}}",
	  0, WLIFT_ESHAPE, "shape.overflow", "a" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616,0],\"data_offsets\":[0,0]}}",
	  0, WLIFT_EJSON, "json.type", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0, WLIFT_EJSON,
	  "json.type", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1, WLIFT_EJSON,
	  "json.type", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, WLIFT_EJSON,
	  "json.number", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, WLIFT_EJSON, "json.missing", "a" },
	{ "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
	  WLIFT_EJSON, "json.duplicate", "" },
	{ "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[1,{}]}}", 1, 0,
	  "", "" },
	{ "{\"__metadata__\":{\"k\":1}}", 0, WLIFT_EJSON, "json.metadata", "" },
	{ "{\"__metadata__\":{},\"__metadata__\":{}}", 0, WLIFT_EJSON, "json.duplicate", "" },
	{ "{\"__metadata__\":null}", 0, 0, "", "" },
	{ "{\"__metadata__\":{\"k\":\"\\ud800\"}}", 0, WLIFT_EJSON, "json.surrogate", "" },
	{ "{\"__metadata__\":{\"k\":\"\t\"}}", 0, WLIFT_EJSON, "json.control", "" },
	{ "{} \t\r\n", 0, 0, "", "" },
	{ " \n{}", 0, 0, "", "" },
	{ "{}\v", 0, WLIFT_EJSON, "json.trailing", "" },
	{ "{}x", 0, WLIFT_EJSON, "json.trailing", "" },
	{ "[]", 0, WLIFT_EJSON, "json.object", "" },
	{ "7", 0, WLIFT_EJSON, "json.object", "" },
	{ "{\"a\":1,}", 0, WLIFT_EJSON, "json.syntax", "" },
	{ "{\"a\":NaN}", 0, WLIFT_EJSON, "json.syntax", "" },
	{ "", 0, WLIFT_EJSON, "json.syntax", "" },
	{ "{\"a\":[\"U8\",[1],[0,1]]}", 1, 0, "", "" },
	{ "{\"a\":{\"dtype\":{\"U8\":null},\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0, "",
	  "" },
};

START_TEST(each_rule)
{
	const struct rule_case *c = &rules[_i];
	wlift_diag d;
	int ret = try_open(c->json, c->datalen, &d);

	ck_assert_msg(ret == c->code, "case %d (%s): got %s (%s: %s), want %s", _i, c->json,
		      wlift_errname(ret), d.rule, d.message, wlift_errname(c->code));
	if (ret) {
		ck_assert_str_eq(d.rule, c->rule);
		ck_assert_str_eq(d.tensor, c->tensor);
		ck_assert_str_eq(d.file, "x.safetensors");
		ck_assert_int_eq(d.code, ret);
		ck_assert_ptr_nonnull(strstr(d.message, "x.safetensors"));
	}
}
END_TEST

START_TEST(nesting_limit)
{
	char json[1024];
	wlift_diag d;

	for (int k = 124; k <= 127; k++) {
		int p = snprintf(json, sizeof(json), "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
				 "\"data_offsets\":[0,0],\"z\":");
		for (int i = 0; i < k; i++)
			json[p++] = '[';
		for (int i = 0; i < k; i++)
			json[p++] = ']';
		strcpy(json + p, "}}");
		ck_assert_int_eq(try_open(json, 0, &d), k <= 125 ? 0 : WLIFT_EJSON);
	}
	ck_assert_str_eq(d.rule, "json.depth");
}
END_TEST

static int prefix(const void *p, size_t n, uint64_t size, wlift_diag *d)
{
	uint64_t len;

	wlift_diag_clear(d);
	return wlift__header_check_prefix(p, n, size, "f", &len, d);
}

START_TEST(foreign_files)
{
	static const char lfs[] = "version https://git-lfs.github.com/spec/v1\n"
				  "oid sha256:abc\nsize 4242\n";
	static const char html[] = "\n<!doctype html><html><body>Forbidden</body></html>";
	static const char text[] = "Internal Server Error";
	static const char json[] = "{\"error\":\"Repository not found\"}";
	uint64_t len;
	uint8_t big[16] = { 0, 0, 0, 0, 0, 0, 1, 0, '{', '}' };
	uint8_t beyond[16] = { 100, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
	wlift_diag d;

	ck_assert_int_eq(prefix(lfs, strlen(lfs), strlen(lfs), &d), WLIFT_ELFS);
	ck_assert_str_eq(d.rule, "file.lfs");
	ck_assert_ptr_nonnull(strstr(d.message, "4242"));
	ck_assert_int_eq(prefix(html, strlen(html), strlen(html), &d), WLIFT_EHTML);
	ck_assert_str_eq(d.rule, "file.html");
	ck_assert_int_eq(prefix(text, strlen(text), strlen(text), &d), WLIFT_EHTML);
	ck_assert_str_eq(d.rule, "file.text");
	/* A local text file is named for what it is; the download remark (and the excerpt of
	 * the body) is for remote objects, whose bodies are servers' error messages. */
	ck_assert_str_eq(d.message, "f: this is a text file (21 bytes), not a safetensors file");
	ck_assert_int_eq(prefix(json, strlen(json), strlen(json), &d), WLIFT_EHTML);
	ck_assert_str_eq(d.rule, "file.text");
	ck_assert_str_eq(d.message,
			 "f: this looks like a JSON document (32 bytes), not a safetensors file");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__header_check_prefix((const uint8_t *)json, strlen(json),
						    strlen(json), "file:///m/x.safetensors", &len,
						    &d),
			 WLIFT_EHTML);
	ck_assert_ptr_null(strstr(d.message, "download"));
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__header_check_prefix((const uint8_t *)json, strlen(json),
						    strlen(json), "https://h/x.safetensors", &len,
						    &d),
			 WLIFT_EHTML);
	ck_assert_str_eq(d.rule, "file.text");
	ck_assert_ptr_nonnull(strstr(d.message, "the download probably returned an error"));
	ck_assert_ptr_null(strstr(d.message, "Repository not found")); /* never quoted */
	/* HTML pages keep the remark wherever they are. */
	ck_assert_int_eq(prefix(html, strlen(html), strlen(html), &d), WLIFT_EHTML);
	ck_assert_ptr_nonnull(strstr(d.message, "probably returned an error or login page"));
	ck_assert_int_eq(prefix(big, 10, 10, &d), WLIFT_EHEADER_LEN);
	ck_assert_str_eq(d.rule, "header.len");
	ck_assert_int_eq(prefix(beyond, 10, 10, &d), WLIFT_ETRUNCATED);
	ck_assert_ptr_nonnull(strstr(d.message, "98 bytes missing"));
	ck_assert_int_eq(prefix("", 0, 0, &d), WLIFT_ETRUNCATED);
	ck_assert_str_eq(d.rule, "file.empty");
	ck_assert_int_eq(prefix("ab", 2, 2, &d), WLIFT_ETRUNCATED);
	beyond[0] = 2;
	ck_assert_int_eq(prefix(beyond, 10, 10, &d), 0);
}
END_TEST

START_TEST(header_parse_direct)
{
	static const char js[] = "{\"__metadata__\":{\"b\":\"1\",\"a\":\"2\"},"
				 "\"y\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[1,2]},"
				 "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
	struct wlift__header h;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__header_parse((const uint8_t *)js, strlen(js),
					     8 + strlen(js) + 2, "f", &h, &d), 0);
	ck_assert_uint_eq(h.ntensors, 2);
	ck_assert_str_eq(h.tensors[0].name, "x");
	ck_assert_str_eq(h.tensors[1].name, "y");
	ck_assert_uint_eq(h.tensors[1].ndim, 0);
	ck_assert_ptr_null(h.tensors[1].shape);
	ck_assert_int_eq(h.nmeta, 2);
	ck_assert_str_eq(h.meta[0], "b");
	ck_assert_str_eq(h.meta[3], "2");
	wlift__header_free(&h);
	wlift__header_free(NULL);
	/* the data area must end exactly at the end of the file */
	ck_assert_int_eq(wlift__header_parse((const uint8_t *)js, strlen(js),
					     8 + strlen(js) + 3, "f", &h, &d), WLIFT_EOFFSETS);
	ck_assert_uint_eq(d.offset, 8 + strlen(js) + 2);
	ck_assert_int_eq(h.ntensors, 0);
}
END_TEST

/* The streaming parser (hjson.c): escapes decoded to UTF-8, duplicates resolved as the
 * reference's HashMaps do, type errors reported after the syntax is known good, first in
 * document order, naming the tensor and its offset. */
static int parse_js(const char *js, uint64_t data_len, struct wlift__header *h, wlift_diag *d)
{
	wlift_diag_clear(d);
	return wlift__header_parse((const uint8_t *)js, strlen(js), 8 + strlen(js) + data_len,
				   "f", h, d);
}

START_TEST(header_streaming_parser)
{
	struct wlift__header h;
	wlift_diag d;

	/* \u escapes (a surrogate pair is one 4-byte character), duplicates: the last value,
	 * at the first one's place for metadata */
	ck_assert_int_eq(parse_js("{\"a\\u00e9\\ud83d\\ude00\\/\":[\"U8\",[1],[0,1]],"
				  "\"__metadata__\":{\"k\":\"1\",\"j\":\"x\",\"k\":\"2\"},"
				  "\"d\":[\"U8\",[5],[0,5]],\"d\":[\"U8\",[1],[1,2]]}",
				  2, &h, &d), 0);
	ck_assert_uint_eq(h.ntensors, 2);
	ck_assert_str_eq(h.tensors[0].name, "a\xc3\xa9\xf0\x9f\x98\x80/");
	ck_assert_str_eq(h.tensors[1].name, "d");
	ck_assert_uint_eq(h.tensors[1].begin, 1);
	ck_assert_uint_eq(h.tensors[1].shape[0], 1);
	ck_assert_int_eq(h.nmeta, 2);
	ck_assert_str_eq(h.meta[0], "k");
	ck_assert_str_eq(h.meta[1], "2");
	ck_assert_str_eq(h.meta[2], "j");
	wlift__header_free(&h);

	/* a type error in an earlier duplicate still counts (serde checks every value) */
	ck_assert_int_eq(parse_js("{\"d\":[\"U8\",\"x\",[0,1]],\"d\":[\"U8\",[1],[0,1]]}", 1,
				  &h, &d), WLIFT_EJSON);
	ck_assert_str_eq(d.tensor, "d");
	ck_assert_str_eq(d.rule, "json.type");
	ck_assert_uint_eq(d.offset, 8 + 11); /* the "x" */
	/* the first type error in document order, with the tensor's name */
	ck_assert_int_eq(parse_js("{\"p\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]},"
				  "\"q\":{\"shape\":[1],\"data_offsets\":[1,2]}}", 2, &h, &d),
			 WLIFT_EDTYPE);
	ck_assert_str_eq(d.tensor, "p");
	ck_assert_ptr_nonnull(strstr(d.message, "unknown dtype \"Q9\""));
	ck_assert_int_eq(parse_js("{\"q\":{\"shape\":[1],\"data_offsets\":[1,2]},"
				  "\"p\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]}}", 2,
				  &h, &d), WLIFT_EJSON);
	ck_assert_str_eq(d.rule, "json.missing");
	ck_assert_str_eq(d.tensor, "q");
	/* a syntax error anywhere wins over a type error before it */
	ck_assert_int_eq(parse_js("{\"q\":{\"shape\":[1]},\"p\":[1,]}", 0, &h, &d), WLIFT_EJSON);
	ck_assert_str_eq(d.rule, "json.syntax");
	ck_assert_str_eq(d.tensor, "");
	/* the map form of a dtype, and what is not it */
	ck_assert_int_eq(parse_js("{\"a\":{\"dtype\":{\"U8\":null},\"shape\":[1],"
				  "\"data_offsets\":[0,1]}}", 1, &h, &d), 0);
	ck_assert_int_eq(h.tensors[0].dtype, WLIFT_U8);
	wlift__header_free(&h);
	ck_assert_int_eq(parse_js("{\"a\":{\"dtype\":{\"U8\":1},\"shape\":[1],"
				  "\"data_offsets\":[0,1]}}", 1, &h, &d), WLIFT_EJSON);
	ck_assert_int_eq(parse_js("{\"a\":{\"dtype\":{\"U8\":null,\"U8\":null},\"shape\":[1],"
				  "\"data_offsets\":[0,1]}}", 1, &h, &d), WLIFT_EJSON);
	/* other members of an entry are ignored; data_offsets needs exactly two */
	ck_assert_int_eq(parse_js("{\"a\":{\"x\":[{}],\"dtype\":\"U8\",\"shape\":[1],"
				  "\"data_offsets\":[0,1]}}", 1, &h, &d), 0);
	wlift__header_free(&h);
	ck_assert_int_eq(parse_js("{\"a\":[\"U8\",[1],[0,1,1]]}", 1, &h, &d), WLIFT_EJSON);
	ck_assert_int_eq(parse_js("{\"a\":[\"U8\",[1],[0,1],null]}", 1, &h, &d), WLIFT_EJSON);
	ck_assert_int_eq(parse_js("[]", 0, &h, &d), WLIFT_EJSON);
	ck_assert_str_eq(d.rule, "json.object");
	ck_assert_int_eq(parse_js("{}", 0, &h, &d), 0);
	ck_assert_uint_eq(h.ntensors, 0);
	ck_assert_int_eq(h.nmeta, -1);
	wlift__header_free(&h);
	ck_assert_int_eq(parse_js("{\"__metadata__\":{}}", 0, &h, &d), 0);
	ck_assert_int_eq(h.nmeta, 0);
	wlift__header_free(&h);
}
END_TEST

START_TEST(big_header_needs_second_read)
{
	/* A header larger than the first read (64 KiB) from a file source. */
	size_t n = 100000, pos = 0;
	char *js = malloc(n + 64);
	wlift_ckpt *ck = NULL;
	wlift_diag d;
	const char *k, *v;

	pos += (size_t)sprintf(js, "{\"__metadata__\":{\"pad\":\"");
	while (pos < n)
		js[pos++] = 'p';
	strcpy(js + pos, "\"}}");
	wt_write_st(wt_path("big.safetensors"), js, NULL, 0);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_open(NULL, wt_path("big.safetensors"), &ck, &d), 0);
	ck_assert_int_eq(wlift_ckpt_metadata(ck, 0, 0, &k, &v), 0);
	ck_assert_uint_eq(strlen(v), n - 24);
	wlift_ckpt_close(ck);
	free(js);
}
END_TEST

/* weight_map values must stay inside the checkpoint's directory. */
START_TEST(index_paths)
{
	static const char *bad[] = {
		"{\"weight_map\":{\"x\":\"/etc/shadow\"}}",
		"{\"weight_map\":{\"x\":\"../outside.safetensors\"}}",
		"{\"weight_map\":{\"x\":\"a/../../b.safetensors\"}}",
		"{\"weight_map\":{\"x\":\"a/..\"}}",
		"{\"weight_map\":{\"x\":\"..\"}}",
		"{\"weight_map\":{\"x\":\"ok.safetensors\\u0000/../../etc/passwd\"}}",
	};
	static const char *good[] = {
		"{\"weight_map\":{\"x\":\"sub/dir/m.safetensors\"}}",
		"{\"weight_map\":{\"x\":\"..m.safetensors\"}}",
		"{\"weight_map\":{\"x\":\"./m..safetensors\"}}",
	};
	struct wlift__index ix;
	wlift_diag d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wlift_diag_clear(&d);
		ck_assert_msg(wlift__index_parse(bad[i], strlen(bad[i]), "i.json", &ix, &d) ==
				  WLIFT_EINDEX, "accepted %s", bad[i]);
		ck_assert_str_eq(d.rule, "index.path");
		ck_assert_str_eq(d.tensor, "x");
		ck_assert_ptr_null(strstr(d.message, "etc"));
	}
	/* a tensor named twice (json-c would keep the last silently) */
	{
		static const char dupj[] = "{\"metadata\":{\"a\":1,\"a\":2},\"weight_map\":{\"w\":"
					   "\"a.safetensors\",\"v\":[1],\"w\":\"b.safetensors\"}}";
		static const char okj[] = "{\"weight_map\":{\"w\":\"a.safetensors\",\"x\":"
					  "\"a.safetensors\"},\"w\":{\"w\":1}}";
		wlift_diag_clear(&d);
		ck_assert_int_eq(wlift__index_parse(dupj, strlen(dupj), "i.json", &ix, &d),
				 WLIFT_EINDEX);
		ck_assert_str_eq(d.rule, "index.duplicate");
		ck_assert_str_eq(d.tensor, "w");
		ck_assert_int_eq(wlift__index_parse(okj, strlen(okj), "i.json", &ix, NULL), 0);
		wlift__index_free(&ix);
	}
	/* empty and truncated indexes say so (json-c alone says "continue") */
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__index_parse(" \n", 2, "i.json", &ix, &d), WLIFT_EINDEX);
	ck_assert_str_eq(d.rule, "index.empty");
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__index_parse("{\"weight_map\": {\"a\": \"x.s", 24, "i.json", &ix, &d),
			 WLIFT_EINDEX);
	ck_assert_str_eq(d.rule, "index.truncated");
	ck_assert_uint_eq(d.offset, 24);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(wlift__index_parse(good[i], strlen(good[i]), "i.json", &ix, NULL) == 0,
			      "rejected %s", good[i]);
		wlift__index_free(&ix);
	}
}
END_TEST

START_TEST(index_parse)
{
	static const char js[] = "{\"metadata\":{\"total_size\":10},\"weight_map\":{"
				 "\"w2\":\"b.safetensors\",\"w1\":\"a.safetensors\","
				 "\"w3\":\"b.safetensors\"}}";
	struct wlift__index ix;
	wlift_diag d;

	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__index_parse(js, strlen(js), "i.json", &ix, &d), 0);
	ck_assert_uint_eq(ix.nshards, 2);
	ck_assert_str_eq(ix.shards[0], "a.safetensors");
	ck_assert_str_eq(ix.shards[1], "b.safetensors");
	ck_assert_uint_eq(ix.nentries, 3);
	ck_assert_str_eq(ix.names[0], "w2");
	ck_assert_uint_eq(ix.shard[0], 1);
	ck_assert_uint_eq(ix.shard[1], 0);
	wlift__index_free(&ix);
	wlift__index_free(NULL);
	ck_assert_int_eq(wlift__index_parse("{\"weight_map\":{}}", 17, "i", &ix, &d),
			 WLIFT_EINDEX);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift__index_parse("{\"weight_map\":{\"a\":1}}", 22, "i", &ix, &d),
			 WLIFT_EINDEX);
	ck_assert_str_eq(d.tensor, "a");
	ck_assert_int_eq(wlift__index_parse("[", 1, "i", &ix, NULL), WLIFT_EINDEX);
	ck_assert_int_eq(wlift__index_parse("{}", 2, "i", &ix, NULL), WLIFT_EINDEX);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("format");
	TCase *tc = tcase_create("format");

	tcase_add_test(tc, dtype_names_and_bits);
	tcase_add_loop_test(tc, each_rule, 0, (int)WLIFT_ARRAY_SIZE(rules));
	tcase_add_test(tc, nesting_limit);
	tcase_add_test(tc, header_streaming_parser);
	tcase_add_test(tc, foreign_files);
	tcase_add_test(tc, header_parse_direct);
	tcase_add_test(tc, big_header_needs_second_read);
	tcase_add_test(tc, index_parse);
	tcase_add_test(tc, index_paths);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
