#!/usr/bin/env bash
# `glide migrate --verify` (issue 11): a digest of every page of guest RAM,
# taken on the source while the VM is stunned and on the destination before
# its vCPUs run, must match or the migration fails before GO and the source
# resumes. Checks: a dirtying A-B guest (2 vCPUs) verifies, the digest is in
# --json and the human summary, A-B is clean and the guest's own loop did
# not restart (same started_tsc, iterations grew); one byte changed on the
# destination (test fault) fails the migration naming the guest address,
# and the VM keeps running on the source, A-B clean; a bad "verify" value
# is refused.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "migrate --verify: /dev/kvm not accessible"; exit 0; }
AB="$GLIDE_BUILD/guests/ab.img"
[ -f "$AB" ] || { fail "migrate --verify: $AB missing (run make)"; exit 0; }
(umask 077; openssl rand -hex 32 >"$T/key")
PORT=$(port_base)
next_port() { PORT=$((PORT + 1)); }
jget() { json_get "$1" "$2" 2>/dev/null; }
pid_of() { eval "echo \$PID_$1"; }
stop_vm() { "$GLIDE" vm shutdown --api "$T/$1.sock" >/dev/null 2>&1; kill "$(pid_of "$1")" 2>/dev/null; }
# record FIELD SOCK VCPU: a field of the guest's own record (hbread --json)
record() {
	"$GLIDE" vm memsave --api "$2" --addr 0x8000 --size 4096 --to "$T/rec.$3.dump" >/dev/null 2>&1 &&
		"$GLIDE_BUILD/tools/hbread" "$T/rec.$3.dump" --json >"$T/rec.json" 2>/dev/null &&
		jget "$T/rec.json" "vcpus.$3.$1"
}

# 1. A dirtying A-B guest verifies.
next_port; p=$PORT
start_vm v1 --memory 256M --vcpus 2 --boot "$AB" || fail "start v1"
start_vm v1d --incoming "127.0.0.1:$p" --key-file "$T/key"
for _ in $(seq 50); do [ "$(record iterations "$T/v1.sock" 0)" -gt 0 ] 2>/dev/null && break; sleep 0.1; done
started0=$(record started_tsc "$T/v1.sock" 0)
iter0=$(record iterations "$T/v1.sock" 0)
"$GLIDE" migrate --api "$T/v1.sock" --to "127.0.0.1:$p" --key-file "$T/key" --verify --json >"$T/m1.json" 2>"$T/m1.err"
digest=$(jget "$T/m1.json" verify.digest)
if [ "$(jget "$T/m1.json" status)" = completed ] && [ "$(jget "$T/m1.json" verified)" = True ] &&
	[[ "$digest" =~ ^[0-9a-f]{32}$ ]] && grep -q "verify: RAM digest $digest .*equal to the source's" "$T/v1d.log"; then
	pass "a dirtying A-B guest migrates with --verify: verified, digest $digest (hashing $(jget "$T/m1.json" verify.source_ms) ms on the source, $(jget "$T/m1.json" verify.destination_ms) ms on the destination, $(jget "$T/m1.json" verify.chunks_read) of $(jget "$T/m1.json" verify.chunks) chunks read), stun $(jget "$T/m1.json" stun_ms) ms"
else
	fail "migrate --verify: status $(jget "$T/m1.json" status), verified $(jget "$T/m1.json" verified), digest '$digest': $(jget "$T/m1.json" error) $(tail -2 "$T/m1.err")"
fi
if ab_check "$T/v1d.sock" 2; then pass "after --verify: A-B clean on the destination"
else fail "after --verify: A-B check: $(tail -2 "$T/abcheck.out")"; fi
started1=$(record started_tsc "$T/v1d.sock" 0)
iter1=$(record iterations "$T/v1d.sock" 0)
if [ -n "$started0" ] && [ "$started0" = "$started1" ] && [ -n "$iter1" ] && [ "$iter1" -gt "$iter0" ]; then
	pass "the guest's own loop did not restart: same started_tsc $started1, iterations $iter0 -> $iter1"
else
	fail "guest loop after the migration: started_tsc $started0 -> $started1, iterations $iter0 -> $iter1"
fi
stop_vm v1d

# 2. One byte of the destination's RAM differs: the migration fails before
#    GO, naming where; the source keeps running, A-B clean.
next_port; p=$PORT
# (the source resumes 0.5 s late: its result must still say it resumed)
GLIDE_TEST_FAULT=slow-resume start_vm v2 --memory 256M --vcpus 2 --boot "$AB" || fail "start v2"
GLIDE_TEST_FAULT=corrupt-before-verify start_vm v2d --incoming "127.0.0.1:$p" --key-file "$T/key"
"$GLIDE" migrate --api "$T/v2.sock" --to "127.0.0.1:$p" --key-file "$T/key" --verify --json >"$T/m2.json" 2>"$T/m2.err"
err=$(jget "$T/m2.json" error)
if [ "$(jget "$T/m2.json" status)" = failed ] && [[ "$err" == *"memory verification failed: 1 of 128 chunks of 2 MiB differ from the source, the first at guest address 0x200000"* ]] &&
	[ "$(jget "$T/m2.json" source_resumed)" = True ] && [ "$(vm_state v2)" = running ] && ab_check "$T/v2.sock" 2; then
	pass "one byte changed on the destination: the migration fails before GO ($err); the source runs on, A-B clean"
else
	fail "one byte changed on the destination: status $(jget "$T/m2.json" status), source $(vm_state v2), source_resumed $(jget "$T/m2.json" source_resumed), error: $err; A-B: $(tail -3 "$T/abcheck.out" 2>/dev/null | tr "\n" " ")"
fi
if wait_for 10 bash -c "! kill -0 $PID_v2d 2>/dev/null"; then pass "the destination that failed verification discarded its VM (exited)"
else fail "the destination that failed verification is still running"; fi

# 3. "verify" must be a boolean.
out=$(curl -s -m 5 --unix-socket "$T/v2.sock" -X POST -H 'Content-Type: application/json' \
	--data "{\"to\":\"127.0.0.1:$p\",\"key_file\":\"$T/key\",\"verify\":\"yes\"}" -w '\n%{http_code}' http://vm/v1/migration)
if [ "${out##*$'\n'}" = 400 ] && [[ "$out" == *'verify\" must be true or false'* ]]; then
	pass "a non-boolean \"verify\" is refused with 400"
else
	fail "\"verify\": \"yes\" answered: $(echo "$out" | tr '\n' ' ')"
fi
stop_vm v2
