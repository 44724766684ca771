#!/usr/bin/env bash
# Installs the Debian packages the network tests need when they are
# missing: libucx0 (libucp.so.0, loaded at run time by ucx-sys),
# ucx-utils (ucx_perftest, for scripts/bench-ucx.sh) and iproute2 (`ip`,
# for the network-namespace test of ipc-demo/tests/ucx.rs). Building needs
# none of them. As root it runs `apt-get update` and `apt-get install -y`;
# otherwise it says what to install and fails.
# Usage: scripts/deps-apt.sh
set -euo pipefail

missing=()
dpkg-query -W -f='${Status}' libucx0 2>/dev/null | grep -q "install ok installed" || missing+=(libucx0)
command -v ucx_perftest >/dev/null 2>&1 || missing+=(ucx-utils)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps-apt: libucx0, ucx-utils and iproute2 are installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps-apt: missing Debian packages: ${missing[*]}" >&2
    echo "deps-apt: run as root, or: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps-apt: missing ${missing[*]}, and this is not a Debian-like system (no apt-get): install UCX >= 1.13 and iproute2 by hand" >&2
    exit 1
fi
echo "deps-apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
