#!/usr/bin/env bash
# Installs glide's build and test dependencies from Debian packages, builds
# everything, and (unless --no-demo) runs a short demo VM.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t PACKAGES < scripts/packages.txt    # the Debian packages glide builds, tests and benchmarks with
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
