#!/usr/bin/env bash
# Installs glide's build and test dependencies from Debian packages, builds
# everything, and (unless --no-demo) runs a short demo VM.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(build-essential nasm pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev
	libssl-dev zlib1g-dev liblz4-dev libsqlite3-dev sqlite3 iproute2 python3 procps psmisc
	qemu-system-x86 gnuplot-nox curl clang libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
make -j"$(nproc)"
if [ "${1:-}" != "--no-demo" ]; then
	exec ./scripts/demo.sh
fi
