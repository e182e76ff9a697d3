# SPDX-License-Identifier: Apache-2.0
"""Build the weightlift._native extension: the library's C sources compiled straight into the
module (static, hidden symbols), so a wheel carries the library and needs no install step.
Needs json-c (and liburing when present) from the system, found with pkg-config
(WLIFT_STATIC_DEPS=1: their static archives)."""
import glob
import os
import shutil
import subprocess

from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def pkg(flag, name):
    if not shutil.which("pkg-config"):
        return None
    try:
        out = subprocess.run(["pkg-config", flag, name], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError:
        return None
    return out.stdout.split()


json_cflags = pkg("--cflags", "json-c") or ["-I/usr/include/json-c"]
json_libs = pkg("--libs", "json-c") or ["-ljson-c"]
uring_libs = pkg("--libs", "liburing")
# WLIFT_STATIC_DEPS=1: json-c and liburing linked from their static archives (libjson-c.a,
# liburing.a), for a module carried to a machine whose image may lack them (the lent GPU
# machine: tools/gpu-bundle.sh), as CMake's WLIFT_STATIC_DEPS does for the library.
if os.environ.get("WLIFT_STATIC_DEPS", "") not in ("", "0"):
    json_libs = ["-l:libjson-c.a"]
    if uring_libs is not None:
        uring_libs = ["-l:liburing.a"]
curl_libs = pkg("--libs", "libcurl")  # HTTP(S) sources; without it they say "not supported"
crypto_libs = pkg("--libs", "libcrypto") or ["-lcrypto"]  # S3's Signature V4 (src/source/sigv4.c)
defines = [("_GNU_SOURCE", None), ("WLIFT_BUILDING", None)]
if uring_libs is not None:
    defines.append(("WLIFT_HAVE_URING", "1"))
if curl_libs is not None:
    defines.append(("WLIFT_HAVE_CURL", "1"))

sources = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True))
headers = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "src", "**", "*.h"), recursive=True))

ext = Extension(
    "weightlift._native",
    sources=["python/weightlift/_native.c"] + sources,
    include_dirs=["include", "src"],
    define_macros=defines,
    extra_compile_args=["-std=gnu11", "-O2", "-fvisibility=hidden", "-Wno-unused-parameter"] + json_cflags,
    extra_link_args=json_libs + (uring_libs or []) + (curl_libs or []) + crypto_libs + ["-lpthread", "-ldl"],
    depends=headers + ["include/weightlift.h"],
)

setup(ext_modules=[ext], options={"build": {"build_base": "build-py"}})
