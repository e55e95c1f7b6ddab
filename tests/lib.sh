# Shared helpers for glide's shell tests: result lines, temp dirs, starting
# VM monitors and waiting for them, with every wait bounded.
set -u
TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GLIDE="${GLIDE:-$TESTS_DIR/../build/glide}"
GLIDE_BUILD="${GLIDE_BUILD:-$(dirname "$GLIDE")}"
T=$(mktemp -d "${GLIDE_TEST_TMP:-/tmp}/t.XXXXXX")
PIDS=()

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
skip() { echo "SKIP $*"; }
check() { # check NAME CMD...: PASS if CMD succeeds
	local name="$1"; shift
	if "$@" >"$T/check.out" 2>&1; then pass "$name"; else fail "$name: $(tail -3 "$T/check.out" | tr '\n' ' ')"; fi
}

exited() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -z "$st" ] || [ "${st#Z}" != "$st" ]; } # PID: gone or a zombie
cleanup() {
	local p end
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
	# Give a stopping monitor time to exit: 2 s, or 10 s in sanitizer builds
	# (GLIDE_SANITIZER=1), where LeakSanitizer runs at exit and SIGKILL
	# would lose its report.
	end=$((SECONDS + 2)); [ -n "${GLIDE_SANITIZER:-}" ] && end=$((SECONDS + 10))
	for p in "${PIDS[@]:-}"; do
		while [ -n "$p" ] && ! exited "$p" && [ $SECONDS -lt $end ]; do sleep 0.05; done
	done
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
	if [ -n "${GLIDE_TEST_KEEP:-}" ]; then echo "kept $T (GLIDE_TEST_KEEP)" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

have_kvm() { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }
# port_base: a random first port for a test's servers (it may use up to 100
# after it), from 20000 up to below the kernel's ephemeral range, where
# client connections and their TIME_WAIT take local ports: a listener there
# could find its port taken (an agent that "did not start" in a CI run).
port_base() {
	local lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	[ "$lo" -gt 21200 ] 2>/dev/null || lo=21200
	echo $((20000 + RANDOM % (lo - 20100)))
}

# wait_for SECONDS CMD...: polls CMD every 0.05 s
wait_for() {
	local limit="$1"; shift
	local end=$((SECONDS + limit))
	while [ $SECONDS -lt $end ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# start_vm NAME ARGS...: starts `glide vm run --api $T/NAME.sock ARGS` in the background
# (VM_NETNS=NS: inside that network namespace, which the test made; its API socket is a file here)
start_vm() {
	local name="$1"; shift
	${VM_NETNS:+ip netns exec $VM_NETNS} "$GLIDE" vm run --api "$T/$name.sock" --log "$T/$name.log" "$@" >"$T/$name.out" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	eval "PID_$name=$pid"
	wait_for 20 "$GLIDE" vm status --api "$T/$name.sock"
}

# Heartbeat records (docs/guests.md): every test guest keeps one per vCPU at
# guest-physical 0x8000; its u64 iteration counter (page writes, or loop
# iterations) cannot wrap, unlike the A-B bytes, which wrap at 256 passes.
hb_dump() { "$GLIDE" vm memsave --api "$1" --addr 0x8000 --size 4096 --to "$2" >/dev/null 2>&1; } # SOCK FILE
hb_json() { # SOCK [TSC_KHZ]: hbread --json of the records now; fails unless every record is valid
	local f="$T/hb.$BASHPID.dump" rc
	hb_dump "$1" "$f" || return 1
	"$GLIDE_BUILD/tools/hbread" "$f" --json --tsc-khz "${2:-1}" 2>/dev/null
	rc=$?
	rm -f "$f"
	return $rc
}
hb_iterations() { # SOCK: every vCPU's iteration counter, space separated
	local j
	j=$(hb_json "$1") || return 1
	python3 -c 'import json,sys; print(" ".join(str(v["iterations"]) for v in json.loads(sys.argv[1])["vcpus"]))' "$j"
}
guest_started() { hb_iterations "$1" >/dev/null; } # SOCK: every vCPU is in its loop
guest_iterations_at_least() { # SOCK N: every vCPU has done at least N iterations
	local i
	for i in $(hb_iterations "$1") x; do [ "$i" = x ] && return 0; [ "$i" -ge "$2" ] || return 1; done
}
# guest_progresses SOCK [SECONDS]: every vCPU's counter grows within SECONDS
# (default 5: a loaded machine may keep a vCPU off the CPU for a while)
guest_progresses() {
	local -a a b
	local end=$((SECONDS + ${2:-5})) i grew
	a=($(hb_iterations "$1")) || return 1
	[ ${#a[@]} -gt 0 ] || return 1
	while :; do
		sleep 0.05
		b=($(hb_iterations "$1")) || return 1
		grew=1
		for i in "${!a[@]}"; do [ "${b[i]:-0}" -gt "${a[i]}" ] || grew=0; done
		[ $grew = 1 ] && return 0
		[ $SECONDS -lt $end ] || return 1
	done
}
# precopy_sent SOCK BYTES: the monitor's migration is in pre-copy and has sent BYTES
precopy_sent() {
	curl -s -m 5 --unix-socket "$1" http://vm/v1/migration 2>/dev/null | python3 -c 'import json,sys
d = json.load(sys.stdin); sys.exit(0 if d.get("stage") == "precopy" and d.get("bytes_sent", 0) >= int(sys.argv[1]) else 1)' "$2" 2>/dev/null
}

vm_state() { "$GLIDE" vm status --api "$T/$1.sock" --json 2>/dev/null | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p'; }
json_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); 
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print(d)' "$@"; }

# ab_check SOCK VCPUS: pause, dump the A-B range, check it, resume
AB_START=${AB_START:-0x100000}
AB_SIZE=${AB_SIZE:-128M}
ab_check() {
	local sock="$1" parts="${2:-1}" dump="$T/ab.$RANDOM.dump"
	"$GLIDE" vm pause --api "$sock" >/dev/null 2>"$T/abcheck.out" || { echo "pause failed: $(cat "$T/abcheck.out")" >"$T/abcheck.out"; return 1; }
	"$GLIDE" vm memsave --api "$sock" --addr "$AB_START" --size "$AB_SIZE" --to "$dump" >/dev/null 2>"$T/abcheck.out" ||
		{ echo "memsave failed: $(cat "$T/abcheck.out")" >"$T/abcheck.out"; "$GLIDE" vm resume --api "$sock" >/dev/null 2>&1; return 1; }
	"$GLIDE_BUILD/tools/abcheck" "$dump" --parts "$parts" --require-progress >"$T/abcheck.out" 2>&1
	local rc=$?
	rm -f "$dump"
	"$GLIDE" vm resume --api "$sock" >/dev/null 2>&1
	[ $rc -eq 0 ] || { cat "$T/abcheck.out" >&2; return 1; }
}

# diskab (docs/guests.md), the virtio-blk A-B guest:
# diskab_stat SOCK FIELD: a counter of its stats record (-1: not there yet)
diskab_stat() {
	"$GLIDE" vm memsave --api "$1" --addr 0x9000 --size 128 --to "$T/diskab-stats.bin" >/dev/null 2>&1 &&
		python3 "$TESTS_DIR/virtio_stats.py" "$T/diskab-stats.bin" |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]] if d["valid"] else -1)' "$2"
}
# diskab_writes_beyond SOCK N: it has completed more than N writes
diskab_writes_beyond() { local w; w=$(diskab_stat "$1" writes); [ "${w:-0}" -gt "$2" ]; }
# abcheck_disk_paused SOCK DISK LABEL: pause the VM, check DISK with abcheck --disk, resume; PASS or FAIL
abcheck_disk_paused() {
	"$GLIDE" vm pause --api "$1" >/dev/null 2>&1
	"$GLIDE_BUILD/tools/abcheck" --disk "$2" --require-progress >"$T/abcheck-disk.out" 2>&1
	local rc=$?
	"$GLIDE" vm resume --api "$1" >/dev/null 2>&1
	if [ $rc = 0 ]; then pass "$3: disk A-B clean ($(grep '^abcheck' "$T/abcheck-disk.out"))"
	else fail "$3: $(tail -3 "$T/abcheck-disk.out" | tr '\n' ' ')"; fi
}
