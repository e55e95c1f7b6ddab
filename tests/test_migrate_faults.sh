#!/usr/bin/env bash
# Fault injection at every step of a migration (issue 11). A dirtying A-B
# guest migrates through tests/fault_proxy.py, which injects one fault on
# one frame: kill the destination or the source, cut the link, hold it past
# the stall timeouts, corrupt a byte, drop, duplicate or reorder a frame.
# Each row of the table in docs/migration.md ("Faults and where the VM
# ends up") is one case here, with its expected outcome:
#   source       the migration fails with the expected reason, the source
#                VM runs on (A-B clean), the destination discarded its copy
#                (its process exited)
#   destination  the destination runs the VM (A-B clean), the source
#                monitor released it and exited
#   lost         the source process was killed before GO: the VM dies with
#                it (a host failure, HA's job), the destination discards
#   waiting      a fault in the handshake: the source runs on, the
#                destination created nothing and keeps waiting
# and "in doubt" rows, where GO went out and RUNNING did not come back:
# `glide migrate` exits 3 and `glide migrate resolve --destination-api`
# settles it from the destination's state. Every case also checks that the
# proxy saw the migration and really injected the fault, and that exactly
# one copy of the VM runs afterwards (zero only for "lost").
# run.sh timeout: 900
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "migration faults: /dev/kvm not accessible"; exit 0; }
AB="$GLIDE_BUILD/guests/ab.img"
[ -f "$AB" ] || { fail "migration faults: $AB missing (run make)"; exit 0; }
(umask 077; openssl rand -hex 32 >"$T/key")
PORT=$(port_base)
STALL=2
n=0
jget() { json_get "$1" "$2" 2>/dev/null; }
pid_of() { eval "echo \$PID_$1"; }
alive() { kill -0 "$(pid_of "$1")" 2>/dev/null; }
gone() { wait_for "${2:-15}" bash -c "! kill -0 $(pid_of "$1") 2>/dev/null"; }
stop_vm() {
	"$GLIDE" vm shutdown --api "$T/$1.sock" >/dev/null 2>&1
	gone "$1" 5 || kill -9 "$(pid_of "$1")" 2>/dev/null
}

# fault_case NAME EXPECT REASON [--verify] -- PROXY-ARGS...
#   EXPECT: source | destination | lost | waiting | doubt-source | doubt-destination
#   REASON: a substring of the migration's error (source, doubt-*), or "-"
fault_case() {
	local name="$1" expect="$2" reason="$3"; shift 3
	[[ -z "${GLIDE_FAULT_ONLY:-}" || "$name" == *"$GLIDE_FAULT_ONLY"* ]] || return 0 # a subset, for debugging
	local extra=()
	while [ "$1" != -- ]; do extra+=("$1"); shift; done
	shift
	n=$((n + 1))
	local s="s$n" d="d$n" dport=$((PORT + 2 * n)) pport=$((PORT + 2 * n + 1)) why=""
	start_vm "$s" --memory 256M --boot "$AB" || { fail "$name: source did not start"; return; }
	start_vm "$d" --incoming "127.0.0.1:$dport" --key-file "$T/key" --stall-timeout "$STALL" ||
		{ fail "$name: destination did not start"; stop_vm "$s"; return; }
	local pidarg=()
	case " $* " in *" --pid-of-source "*) pidarg=(--pid "$(pid_of "$s")") ;; *" --pid-of-destination "*) pidarg=(--pid "$(pid_of "$d")") ;; esac
	local args=()
	for a in "$@"; do [[ "$a" == --pid-of-* ]] || args+=("$a"); done
	python3 "$TESTS_DIR/fault_proxy.py" --listen "$pport" --to "$dport" --log "$T/$name.proxy" --hold-seconds 3 \
		--max-seconds 120 "${args[@]}" "${pidarg[@]}" 2>"$T/$name.proxy.err" &
	local proxy=$!
	PIDS+=("$proxy")
	wait_for 5 grep -q started "$T/$name.proxy" || why="proxy did not start: $(tail -1 "$T/$name.proxy.err")"
	timeout 90 "$GLIDE" migrate --api "$T/$s.sock" --to "127.0.0.1:$pport" --key-file "$T/key" --streams 1 \
		--stall-timeout "$STALL" "${extra[@]}" --json >"$T/$name.json" 2>"$T/$name.err"
	local rc=$? status err
	status=$(jget "$T/$name.json" status) err=$(jget "$T/$name.json" error)
	local final="$expect"
	# a killed source monitor cannot report: its CLI only loses contact
	[[ " $* " == *" --pid-of-source "* ]] && expect="$expect-killed"
	case "$expect" in
	*-killed) final=${expect%-killed} ;;
	doubt-*)
		if [ $rc -ne 3 ] || [ "$status" != in-doubt ]; then
			why="expected in doubt (exit 3), got exit $rc, status '$status': $err"
		else
			"$GLIDE" migrate resolve --api "$T/$s.sock" --destination-api "$T/$d.sock" --wait 20 \
				>"$T/$name.resolve" 2>&1 || why="resolve failed: $(tail -2 "$T/$name.resolve" | tr '\n' ' ')"
		fi
		final=${expect#doubt-} ;;
	source|lost|waiting)
		[ $rc -ne 0 ] && [ "$status" = failed ] || why="expected a failed migration, got exit $rc, status '$status'" ;;
	destination)
		[ $rc -eq 0 ] && [ "$status" = completed ] || why="expected completed, got exit $rc, status '$status': $err" ;;
	esac
	if [ -z "$why" ] && [ "$reason" != - ] && [[ "$err" != *"$reason"* ]]; then
		why="the reason does not say '$reason': $err"
	fi
	# the proxy saw the migration and injected the fault
	if [ -z "$why" ] && ! grep -q "^[0-9.]* injected" "$T/$name.proxy"; then
		why="the fault was never injected (proxy saw: $(grep -c -E ' (s2d|d2s) ' "$T/$name.proxy") units)"
	fi
	# exactly one copy runs
	if [ -z "$why" ]; then
		case "$final" in
		source)
			if ! gone "$d" 15; then why="the destination still runs after the failure"
			elif [ "$(vm_state "$s")" != running ]; then why="the source VM is '$(vm_state "$s")', not running"
			elif ! ab_check "$T/$s.sock" 1; then why="A-B check on the source: $(tail -1 "$T/abcheck.out")"; fi ;;
		destination)
			if ! gone "$s" 20; then why="the source monitor still runs after the destination took the VM"
			elif [ "$(vm_state "$d")" != running ]; then why="the destination VM is '$(vm_state "$d")', not running"
			elif ! ab_check "$T/$d.sock" 1; then why="A-B check on the destination: $(tail -1 "$T/abcheck.out")"; fi ;;
		lost)
			if alive "$s"; then why="the source process was to be killed, it runs"
			elif ! gone "$d" 15; then why="the destination still runs (it must discard without GO)"; fi ;;
		waiting)
			if [ "$(vm_state "$s")" != running ]; then why="the source VM is '$(vm_state "$s")'"
			elif [ "$(vm_state "$d")" != incoming ]; then why="the destination is '$(vm_state "$d")', not still waiting"; fi ;;
		esac
	fi
	if [ -z "$why" ]; then
		local via=""
		[[ "$expect" == doubt-* ]] && via=" after in doubt, resolved ($(head -1 "$T/$name.resolve"))"
		pass "fault: $name -> $final$via${err:+: ${err:0:150}}"
	else
		fail "fault: $name: $why (proxy: $(grep injected "$T/$name.proxy" | cut -d' ' -f2- | head -1); source log: $(tail -3 "$T/$s.log" | cut -c1-200 | paste -sd'|'); resolve: $(tail -1 "$T/$name.resolve" 2>/dev/null))"
	fi
	kill "$proxy" 2>/dev/null
	stop_vm "$s"; stop_vm "$d"
}

# handshake
fault_case "cut the source hello (handshake)" waiting "-" -- --fault cut --dir s2d --frame HELLO_S
fault_case "corrupt the destination's proof (handshake)" source "could not prove" -- --fault corrupt --dir d2s --frame AUTH_D
# prepare
fault_case "corrupt CONFIG" source "authentication" -- --fault corrupt --dir s2d --frame CONFIG
fault_case "kill the destination at CONFIG" source "-" -- --fault kill --dir s2d --frame CONFIG --pid-of-destination
fault_case "cut the link at CONFIG_OK" source "-" -- --fault cut --dir d2s --frame CONFIG_OK
# pre-copy, phase -1
fault_case "corrupt the first LIVE frame" source "authentication" -- --fault corrupt --dir s2d --frame LIVE --nth 1
fault_case "drop a LIVE frame" source "sequence" -- --fault drop --dir s2d --frame LIVE --nth 2
fault_case "duplicate a LIVE frame" source "sequence" -- --fault duplicate --dir s2d --frame LIVE --nth 2
fault_case "reorder two LIVE frames" source "sequence" -- --fault reorder --dir s2d --frame LIVE --nth 2
fault_case "hold the link past the stall timeout in phase -1" source "stalled" -- --fault hold --dir s2d --frame LIVE --nth 2
fault_case "kill the destination in phase -1" source "-" -- --fault kill --dir s2d --frame LIVE --nth 2 --pid-of-destination
fault_case "kill the source in phase -1" lost "-" -- --fault kill --dir s2d --frame LIVE --nth 2 --pid-of-source
fault_case "cut the link at SYNC" source "-" -- --fault cut --dir s2d --frame SYNC
fault_case "corrupt SYNC_ACK" source "authentication" -- --fault corrupt --dir d2s --frame SYNC_ACK
# phase 0.. and the final pass (LIVE after the first SYNC_ACK)
fault_case "corrupt a LIVE frame after phase -1" source "authentication" -- --fault corrupt --dir s2d --frame LIVE --after SYNC_ACK
# checkpoint
fault_case "drop FINAL" source "-" -- --fault drop --dir s2d --frame FINAL
fault_case "corrupt STATE" source "authentication" -- --fault corrupt --dir s2d --frame STATE
fault_case "kill the destination at STATE" source "-" -- --fault kill --dir s2d --frame STATE --pid-of-destination
fault_case "corrupt VERIFY (--verify)" source "authentication" --verify -- --fault corrupt --dir s2d --frame VERIFY
# switchover, before GO
fault_case "corrupt RESTORED" source "authentication" -- --fault corrupt --dir d2s --frame RESTORED
fault_case "hold the link at RESTORED" source "stalled" -- --fault hold --dir d2s --frame RESTORED
fault_case "kill the source at RESTORED (before GO)" lost "-" -- --fault kill --dir d2s --frame RESTORED --pid-of-source
# the commit point: GO
fault_case "corrupt GO" source "the destination discarded the VM after GO" -- --fault corrupt --dir s2d --frame GO
fault_case "cut the link at GO" doubt-source "in doubt after GO" -- --fault cut --dir s2d --frame GO
fault_case "kill the destination at GO" doubt-source "in doubt after GO" -- --fault kill --dir s2d --frame GO --pid-of-destination
fault_case "hold the link at GO" doubt-source "in doubt after GO" -- --fault hold --dir s2d --frame GO
fault_case "duplicate GO" destination "-" -- --fault duplicate --dir s2d --frame GO
# after GO
fault_case "corrupt RUNNING" doubt-destination "in doubt after GO" -- --fault corrupt --dir d2s --frame RUNNING
fault_case "cut the link at RUNNING" doubt-destination "in doubt after GO" -- --fault cut --dir d2s --frame RUNNING
fault_case "kill the source at RUNNING" destination "-" -- --fault kill --dir d2s --frame RUNNING --pid-of-source

# The resolver's rule against every state a destination can report: only a
# destination whose VM runs or is parked (it got a valid GO) takes it; one
# still waiting for GO or discarding its copy ("incoming", "masked", as a
# failed destination reported for a moment while it shut down) must not.
for st in masked incoming shutdown running paused; do
	[[ -z "${GLIDE_FAULT_ONLY:-}" || "resolver $st" == *"$GLIDE_FAULT_ONLY"* ]] || continue
	python3 "$TESTS_DIR/fake_monitor_api.py" --socket "$T/fake-$st.sock" --state "$st" --max-seconds 20 &
	fake=$!
	PIDS+=("$fake")
	wait_for 5 test -S "$T/fake-$st.sock"
	out=$("$GLIDE" migrate resolve --api "$T/no-source.sock" --destination-api "$T/fake-$st.sock" --wait 1 2>&1)
	case "$st" in
	running|paused) want="keeping the VM there" ;;
	*) want="not resolved" ;;
	esac
	if [[ "$out" == *"$want"* ]]; then pass "resolver: a destination reporting '$st' -> ${want} ($(echo "$out" | head -1 | cut -c1-120))"
	else fail "resolver: a destination reporting '$st': expected '$want', got: $(echo "$out" | tr '\n' ' ' | cut -c1-200)"; fi
	kill "$fake" 2>/dev/null
done

