# SPDX-License-Identifier: Apache-2.0
"""Conformance cases: raw safetensors images, valid and invalid, covering every rule of the
format and the places where JSON parsers disagree (numbers, whitespace, duplicate keys,
escapes, nesting). The expected decision is not written here: the tests ask the reference
package for it. Run as a script to write the cases as files into a directory:
    python tests/conformance/cases.py OUTDIR
"""
import json
import os
import struct
import sys

U64MAX = 2**64 - 1

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
        "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
        "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64,
        "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def image(header, data=b""):
    """8-byte LE length + header (str or bytes, used verbatim) + data."""
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def pattern(n, seed=1):
    return bytes((i * 31 + seed * 7) & 0xFF for i in range(n))


def entry(dtype, shape, b, e):
    return '{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}' % (
        dtype, json.dumps(shape, separators=(",", ":")), b, e)


def one(dtype, shape, nbytes, extra_json="", data=None):
    """A one-tensor file named "t"."""
    hdr = '{"t":%s%s}' % (entry(dtype, shape, 0, nbytes), extra_json)
    return image(hdr, pattern(nbytes) if data is None else data)


T2 = '"a":' + entry("U8", [2], 0, 2)


def cases():
    c = []

    def add(name, blob):
        c.append((name, blob))

    # --- every dtype, valid, with a non-trivial shape and as a scalar ---------------------
    for dt, bits in BITS.items():
        n = 3 * 4 * bits // 8
        add("dtype_%s_3x4" % dt, one(dt, [3, 4], n))
        if bits % 8 == 0:
            add("dtype_%s_scalar" % dt, one(dt, [], bits // 8))
        else:
            add("dtype_%s_scalar_partial_byte" % dt, one(dt, [], (bits + 7) // 8))
    # sub-byte totals that are / are not whole bytes
    add("f4_2_ok", one("F4", [2], 1))
    add("f4_3_partial", one("F4", [3], 2))
    add("f4_1_partial", one("F4", [1], 1))
    add("f4_0_ok", one("F4", [0], 0))
    add("f6_4_ok", one("F6_E2M3", [4], 3))
    add("f6_2_partial", one("F6_E3M2", [2], 2))
    add("f6_3_partial", one("F6_E2M3", [3], 3))
    add("f6_8x3_ok", one("F6_E3M2", [8, 3], 18))
    add("wrong_nbytes", one("F32", [2], 4))
    add("wrong_nbytes_f16", one("F16", [3], 8))
    add("dtype_unknown", one("F128", [1], 16))
    add("dtype_lowercase", one("f32", [1], 4))
    add("dtype_map_form", image('{"t":{"dtype":{"U8":null},"shape":[2],"data_offsets":[0,2]}}',
                                b"xy"))
    add("dtype_map_form_value", image(
        '{"t":{"dtype":{"U8":1},"shape":[2],"data_offsets":[0,2]}}', b"xy"))
    add("dtype_int", image('{"t":{"dtype":1,"shape":[2],"data_offsets":[0,2]}}', b"xy"))

    # --- multi-tensor layouts ---------------------------------------------------------------
    add("two_sorted", image('{"a":%s,"b":%s}' % (entry("F32", [2], 0, 8), entry("U8", [3], 8, 11)),
                            pattern(11)))
    add("two_reverse_in_header", image('{"b":%s,"a":%s}' % (entry("U8", [3], 8, 11),
                                                            entry("F32", [2], 0, 8)), pattern(11)))
    add("zero_sizes_same_offset", image('{"a":%s,"b":%s,"c":%s}' % (
        entry("U8", [0], 0, 0), entry("F32", [2, 0], 0, 0), entry("U8", [2], 0, 2)), b"xy"))
    add("zero_size_at_end", image('{"a":%s,"z":%s}' % (entry("U8", [2], 0, 2),
                                                      entry("U8", [0], 2, 2)), b"xy"))
    add("gap", image('{"a":%s}' % entry("U8", [1], 1, 2), b"xy"))
    add("gap_between", image('{"a":%s,"b":%s}' % (entry("U8", [1], 0, 1),
                                                  entry("U8", [1], 2, 3)), b"xyz"))
    add("overlap", image('{"a":%s,"b":%s}' % (entry("U8", [2], 0, 2),
                                              entry("U8", [1], 1, 2)), b"xy"))
    add("same_range_twice", image('{"a":%s,"b":%s}' % (entry("U8", [2], 0, 2),
                                                       entry("U8", [2], 0, 2)), b"xy"))
    add("end_before_begin", image('{"a":%s,"b":%s}' % (entry("U8", [0], 0, 0),
                                                       entry("U8", [0], 2, 1)), b"xy"))
    add("trailing_data", image("{%s}" % T2, b"xyz"))
    add("truncated_data", image("{%s}" % T2, b"x"))
    add("truncated_data_big", image('{"a":%s}' % entry("F32", [1000], 0, 4000), pattern(100)))
    add("offsets_beyond_u64_sum", image('{"a":%s}' % entry("U8", [0], U64MAX, U64MAX)))
    add("empty_object", image("{}"))
    add("empty_object_padded", image("{}      "))
    add("empty_header", image(""))
    add("whitespace_only_header", image("        "))

    # --- shapes and numbers -----------------------------------------------------------------
    add("huge_dim_then_zero", one("U8", [U64MAX, 0], 0))
    add("zero_then_two_huge", one("U8", [0, U64MAX, U64MAX], 0))
    add("huge_dim_overflow_before_zero", one("U8", [U64MAX, 2, 0], 0))
    add("shape_overflow", one("U8", [2**32, 2**32], 0))
    add("shape_bits_overflow_f32", one("F32", [2**61], 0))
    add("shape_bits_overflow_u8", one("U8", [2**62], 0))
    add("dim_2_64", image('{"t":{"dtype":"U8","shape":[18446744073709551616,0],"data_offsets":[0,0]}}'))
    add("dim_float_1_0", image('{"t":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}}', b"xy"))
    add("dim_exp", image('{"t":{"dtype":"U8","shape":[2e0],"data_offsets":[0,2]}}', b"xy"))
    add("dim_minus_zero", image('{"t":{"dtype":"U8","shape":[2,-0],"data_offsets":[0,0]}}'))
    add("dim_negative", image('{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'))
    add("dim_leading_zero", image('{"t":{"dtype":"U8","shape":[02],"data_offsets":[0,2]}}', b"xy"))
    add("dim_bool", image('{"t":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}', b"x"))
    add("dim_string", image('{"t":{"dtype":"U8","shape":["2"],"data_offsets":[0,2]}}', b"xy"))
    add("shape_null", image('{"t":{"dtype":"U8","shape":null,"data_offsets":[0,0]}}'))
    add("shape_nested", image('{"t":{"dtype":"U8","shape":[[2]],"data_offsets":[0,2]}}', b"xy"))
    add("offsets_float", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2.0]}}', b"xy"))
    add("offsets_minus_zero", image('{"t":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}}'))
    add("offsets_len1", image('{"t":{"dtype":"U8","shape":[0],"data_offsets":[0]}}'))
    add("offsets_len3", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2,2]}}', b"xy"))
    add("offsets_object", image('{"t":{"dtype":"U8","shape":[0],"data_offsets":{"0":0,"1":0}}}'))
    add("unknown_minus_zero", one("U8", [2], 2, ',"x":{"z":-0}'))
    add("unknown_field_float", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":1.5e10}}', b"xy"))
    add("unknown_field_nan", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":NaN}}', b"xy"))
    add("unknown_field_infinity", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":Infinity}}', b"xy"))
    add("unknown_field_1dot", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":1.}}', b"xy"))
    add("unknown_field_1e400", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":1e400}}', b"xy"))
    add("unknown_field_bigint", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":%s}}' % ("9" * 400), b"xy"))
    add("unknown_field_bigint_ok", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":%s}}' % ("9" * 30), b"xy"))
    add("unknown_field_minus_zero", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":-0}}', b"xy"))

    # values in an ignored field: only serde's grammar and number range matter
    for i, v in enumerate(["1E5", "1e+5", "-1.5E-3", "-0.0", "1.7976931348623157e308",
                           "1.8e308", "4.9e-324", "1e-400", "-123456789012345678901234",
                           '"\\/"', '"\\uDBFF\\uDFFF"', '"\\u00"', "--1", "1.5.5", "0x10",
                           "+1", ".5", "1e", "tru", '"\\U0041"', '"\u2028"', "[[],{}]"]):
        add("ignored_value_%02d" % i, image(
            '{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":%s}}' % v, b"xy"))

    # --- tensor entries -----------------------------------------------------------------------
    add("unknown_field", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"zz":{"q":[1,"x",null]}}}', b"xy"))
    add("missing_dtype", image('{"t":{"shape":[2],"data_offsets":[0,2]}}', b"xy"))
    add("missing_shape", image('{"t":{"dtype":"U8","data_offsets":[0,2]}}', b"xy"))
    add("missing_offsets", image('{"t":{"dtype":"U8","shape":[2]}}', b"xy"))
    add("dup_field_dtype", image('{"t":{"dtype":"U8","dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"xy"))
    add("dup_field_shape", image('{"t":{"dtype":"U8","shape":[2],"shape":[2],"data_offsets":[0,2]}}', b"xy"))
    add("dup_field_escaped", image('{"t":{"dtype":"U8","shape":[2],"sh\\u0061pe":[2],"data_offsets":[0,2]}}', b"xy"))
    add("dup_unknown_field", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":1,"z":2}}', b"xy"))
    add("escaped_field_name", image('{"t":{"dtype":"U8","sh\\u0061pe":[2],"data_offsets":[0,2]}}', b"xy"))
    add("seq_entry", image('{"t":["U8",[2],[0,2]]}', b"xy"))
    add("seq_entry_4", image('{"t":["U8",[2],[0,2],1]}', b"xy"))
    add("seq_entry_2", image('{"t":["U8",[2]]}', b"xy"))
    add("entry_int", image('{"t":1}'))
    add("entry_null", image('{"t":null}'))
    add("entry_string", image('{"t":"U8"}'))
    add("dup_tensor_last_wins", image('{"a":%s,"a":%s}' % (entry("U8", [1], 0, 1),
                                                           entry("U8", [2], 0, 2)), b"xy"))
    add("dup_tensor_first_would_win", image('{"a":%s,"a":%s}' % (entry("U8", [2], 0, 2),
                                                                 entry("U8", [1], 0, 1)), b"xy"))
    good = entry("U8", [2], 0, 2)
    for label, bad in (("int", "1"), ("null", "null"), ("unknown_dtype", entry("Q8", [2], 0, 2)),
                       ("missing_field", '{"dtype":"U8","shape":[2]}'),
                       ("float_dim", '{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}'),
                       ("offsets_len3", '{"dtype":"U8","shape":[2],"data_offsets":[0,1,2]}'),
                       ("bad_seq", '["U8",[2]]'), ("ok_seq", '["U8",[1],[0,1]]'),
                       ("ok_map_dtype", '{"dtype":{"I8":null},"shape":[1],"data_offsets":[0,1]}'),
                       ("bad_map_dtype", '{"dtype":{"I8":0},"shape":[1],"data_offsets":[0,1]}'),
                       ("gap_ok_types", entry("U8", [1], 5, 6))):
        add("dup_earlier_" + label, image('{"a":%s,"a":%s}' % (bad, good), b"xy"))
    add("dup_meta_key_earlier_int", image('{"__metadata__":{"k":1,"k":"v"},%s}' % T2, b"xy"))
    add("dup_meta_key_earlier_ok", image('{"__metadata__":{"k":"x","k":"v"},%s}' % T2, b"xy"))
    add("name_nul", image('{"a\\u0000b":%s}' % entry("U8", [2], 0, 2), b"xy"))
    add("field_nul_shadow", image('{"a":{"dtype":"U8","dtype\\u0000x":"F32","shape":[2],'
                                  '"data_offsets":[0,2]}}', b"xy"))
    add("meta_key_nul", image('{"__metadata__":{"k\\u0000":"v"},%s}' % T2, b"xy"))
    add("name_empty", image('{"":%s}' % entry("U8", [2], 0, 2), b"xy"))
    add("name_unicode", image('{"日本語.weight":%s,"emoji😀":%s}' % (
        entry("U8", [1], 0, 1), entry("U8", [1], 1, 2)), b"xy"))
    add("name_escapes", image('{"a\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00":%s}' % entry("U8", [2], 0, 2), b"xy"))
    add("name_dotted_long", image('{"%s":%s}' % ("x." * 200 + "w", entry("U8", [2], 0, 2)), b"xy"))

    # --- metadata -----------------------------------------------------------------------------
    add("meta_basic", image('{"__metadata__":{"format":"pt","k":"v"},%s}' % T2, b"xy"))
    add("meta_empty", image('{"__metadata__":{},%s}' % T2, b"xy"))
    add("meta_null", image('{"__metadata__":null,%s}' % T2, b"xy"))
    add("meta_last", image('{%s,"__metadata__":{"format":"pt"}}' % T2, b"xy"))
    add("meta_only", image('{"__metadata__":{"a":"b"}}'))
    add("meta_int_value", image('{"__metadata__":{"k":1},%s}' % T2, b"xy"))
    add("meta_null_value", image('{"__metadata__":{"k":null},%s}' % T2, b"xy"))
    add("meta_nested", image('{"__metadata__":{"k":{}},%s}' % T2, b"xy"))
    add("meta_array", image('{"__metadata__":[],%s}' % T2, b"xy"))
    add("meta_string", image('{"__metadata__":"x",%s}' % T2, b"xy"))
    add("meta_dup", image('{"__metadata__":{"x":"1"},"__metadata__":{"y":"2"},%s}' % T2, b"xy"))
    add("meta_dup_key", image('{"__metadata__":{"x":"1","x":"2"},%s}' % T2, b"xy"))
    add("meta_escaped_name", image('{"__metad\\u0061ta__":{"k":"v"},%s}' % T2, b"xy"))
    add("meta_unicode", image('{"__metadata__":{"ключ":"значение ✓","e":"\\u00e9\\n"},%s}' % T2, b"xy"))
    add("meta_nul_escape", image('{"__metadata__":{"k":"a\\u0000b"},%s}' % T2, b"xy"))

    # --- JSON syntax, whitespace, encoding ----------------------------------------------------
    add("ws_before", image(" {%s}" % T2, b"xy"))
    add("newline_before", image("\n{%s}" % T2, b"xy"))
    add("tab_cr_after", image("{%s}\t\r\n" % T2, b"xy"))
    add("spaces_after", image("{%s}       " % T2, b"xy"))
    add("vt_after", image("{%s}\x0b" % T2, b"xy"))
    add("ff_before", image("\x0c{%s}" % T2, b"xy"))
    add("nbsp_after", image("{%s}\u00a0" % T2, b"xy"))
    add("nul_padding", image(("{%s}" % T2).encode() + b"\0\0\0", b"xy"))
    add("garbage_after", image("{%s}x" % T2, b"xy"))
    add("second_object_after", image("{%s}{}" % T2, b"xy"))
    add("bom", image(b"\xef\xbb\xbf" + ("{%s}" % T2).encode(), b"xy"))
    add("bad_utf8_in_meta", image(b'{"__metadata__":{"k":"\xff"},' + T2.encode() + b"}", b"xy"))
    add("bad_utf8_in_padding", image(("{%s}" % T2).encode() + b" \xc3", b"xy"))
    add("overlong_utf8", image(b'{"__metadata__":{"k":"\xc0\xaf"},' + T2.encode() + b"}", b"xy"))
    add("utf8_surrogate_bytes", image(b'{"__metadata__":{"k":"\xed\xa0\x80"},' + T2.encode() + b"}", b"xy"))
    add("raw_tab_in_string", image('{"__metadata__":{"k":"a\tb"},%s}' % T2, b"xy"))
    add("raw_nul_in_string", image(b'{"__metadata__":{"k":"a\x00b"},' + T2.encode() + b"}", b"xy"))
    add("raw_del_in_string", image('{"__metadata__":{"k":"a\x7fb"},%s}' % T2, b"xy"))
    add("lone_high_surrogate", image('{"__metadata__":{"k":"\\ud800"},%s}' % T2, b"xy"))
    add("lone_low_surrogate", image('{"__metadata__":{"k":"\\udc00"},%s}' % T2, b"xy"))
    add("high_then_letter", image('{"__metadata__":{"k":"\\ud800\\u0041"},%s}' % T2, b"xy"))
    add("bad_escape", image('{"__metadata__":{"k":"\\x41"},%s}' % T2, b"xy"))
    add("comment", image("{/*c*/%s}" % T2, b"xy"))
    add("trailing_comma", image("{%s,}" % T2, b"xy"))
    add("single_quotes", image("{'a':{'dtype':'U8','shape':[2],'data_offsets':[0,2]}}", b"xy"))
    add("top_array", image("[]"))
    add("top_string", image('"x"'))
    add("top_number", image("1"))
    add("top_null", image("null"))
    add("unclosed", image('{"a":%s' % entry("U8", [2], 0, 2), b"xy"))
    for k in (120, 125, 126, 200):
        add("nesting_%d" % k, image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":%s%s}}'
                                    % ("[" * k, "]" * k), b"xy"))
    add("nesting_objects", image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"z":%s1%s}}'
                                 % ('{"a":' * 40, "}" * 40), b"xy"))

    # --- length field and foreign files --------------------------------------------------------
    add("len_too_small_file", b"\x02\x00\x00")
    add("len_only", struct.pack("<Q", 0))
    add("len_beyond_file", struct.pack("<Q", 1000) + b"{}")
    add("len_over_limit", struct.pack("<Q", 100_000_001) + b"{}")
    add("len_huge", struct.pack("<Q", U64MAX) + b"{}")
    add("len_at_limit_beyond_file", struct.pack("<Q", 100_000_000) + b"{}")
    add("git_lfs_pointer", b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        b"size 12345\n")
    add("html_page", b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
        b"<body><h1>Not Found</h1></body></html>\n")
    add("json_error_page", b'{"error":"Repository not found"}')
    add("text_error", b"Access denied. You must be logged in to download this file.\n")
    return c


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, blob in cases():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print(len(cases()), "cases written to", out)
