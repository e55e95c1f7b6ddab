#!/usr/bin/env bash
# A two-minute tour of glide on one machine: run a VM whose guest writes all
# over its memory, live-migrate it to a second VM monitor over loopback with
# an encrypted stream, and check page by page that no memory was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
GLIDE=build/glide
D=$(mktemp -d /tmp/glide-demo.XXXXXX)
cleanup() { pkill -f "$D/" 2>/dev/null || true; sleep 0.3; rm -rf "$D"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Start a VM: 256 MiB, 2 vCPUs, the A-B guest (increments a byte in every page of 128 MiB, forever)"
$GLIDE vm run --memory 256M --vcpus 2 --boot build/guests/ab.img --api "$D/source.sock" \
	--serial "$D/serial.txt" --log "$D/source.log" --name demo &
for i in $(seq 100); do $GLIDE vm status --api "$D/source.sock" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
$GLIDE vm status --api "$D/source.sock"
echo "guest serial says: $(cat "$D/serial.txt")"

step "Prepare a destination VM monitor (masked, waiting for the migration) with a one-time key"
(umask 077; openssl rand -hex 32 > "$D/key")
$GLIDE vm run --incoming 127.0.0.1:47001 --key-file "$D/key" --api "$D/dest.sock" --log "$D/dest.log" &
for i in $(seq 100); do $GLIDE vm status --api "$D/dest.sock" >/dev/null 2>&1 && break; sleep 0.1; done
$GLIDE vm status --api "$D/dest.sock" | head -1

step "Live-migrate it (glide migrate --streams auto --encrypt required)"
$GLIDE migrate --api "$D/source.sock" --to 127.0.0.1:47001 --key-file "$D/key" --streams auto --encrypt required

step "The VM now runs on the destination"
$GLIDE vm status --api "$D/dest.sock"

step "A-B check: pause, dump the 128 MiB the guest writes, check every page"
$GLIDE vm pause --api "$D/dest.sock" >/dev/null
$GLIDE vm memsave --api "$D/dest.sock" --addr 1M --size 128M --to "$D/ab.dump"
build/tools/abcheck "$D/ab.dump" --parts 2 --require-progress
$GLIDE vm shutdown --api "$D/dest.sock"
wait
step "Done. Run the tests with: make test"
