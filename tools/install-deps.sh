#!/usr/bin/env bash
# Install what weightlift needs from Debian, only when missing.
#   tools/install-deps.sh build   compilers and -dev libraries
#   tools/install-deps.sh test    + test tools (Check, fio, valgrind, nginx, libfuse3 for the
#                                 fault injection test, Open MPI and iproute2 for the
#                                 distributed tests, python venv)
#   tools/install-deps.sh demo    + what `make demo` uses (fio; nginx and curl for streaming
#                                 from a loopback server through the local cache)
#   tools/install-deps.sh bench   + what bench/remote.sh uses (nginx, aria2c, curl, ping, ip/tc)
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config libjson-c-dev liburing-dev libssl-dev libcurl4-openssl-dev
      python3 python3-venv python3-dev)
case "$what" in
  test) pkgs+=(check clang libclang-rt-14-dev fio valgrind libfuse3-dev fuse3 nginx curl openmpi-bin
              libopenmpi-dev iproute2) ;;
  demo) pkgs+=(fio nginx curl) ;;
  bench) pkgs+=(nginx aria2 curl iputils-ping iproute2) ;;
  build) ;;
  *) echo "usage: $0 build|test|demo|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# Debian's maintainer scripts start the daemons they install (nginx on port 80): never here,
# the tests start their own on 127.0.0.1. policy-rc.d refuses (101) for the install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
