#!/usr/bin/env bash
# The virtio conformance unit test (tests/unit/unit_virtio.c: reads,
# scattered and indirect requests, flush, discard, errors, reset, state
# round trips of the disks) again with each of virtio-blk's other I/O
# engines: the regular unit run uses the default (io_uring); here the
# thread pool and sync (src/devices/blk_io.h, UNIT_VIRTIO_AIO).
# run.sh timeout: 120
. "$(dirname "$0")/lib.sh"
U="$GLIDE_BUILD/tests/unit_virtio"
[ -x "$U" ] || { fail "virtio engines: $U missing (run make)"; exit 0; }
for e in threads sync; do
	UNIT_VIRTIO_AIO=$e "$U" >"$T/$e.out" 2>&1
	rc=$?
	n=$(grep -c '^PASS' "$T/$e.out") f=$(grep -c '^FAIL' "$T/$e.out") s=$(grep -c '^SKIP' "$T/$e.out")
	if [ $rc = 0 ] && [ "$f" = 0 ] && [ "$n" -gt 50 ]; then
		pass "unit_virtio with aio=$e: $n checks passed, $s skipped"
	else
		fail "unit_virtio with aio=$e (exit $rc): $(grep -m3 '^FAIL' "$T/$e.out" | tr '\n' ' ') $(tail -2 "$T/$e.out" | tr '\n' ' ')"
	fi
done
