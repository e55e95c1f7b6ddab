#!/usr/bin/env python3
"""Judges a migration's reported stun against the guest's own heartbeat.

Usage: hbstun.py NAME PRE.json POST.json RESULT.json [GAPLOG.bin]
  PRE.json, POST.json: `hbread --json --tsc-khz KHZ` of the source before the
  migration and of the destination after it; RESULT.json: `glide migrate
  --json` (needs stun_ms and stun_guest_tsc); GAPLOG.bin: the destination's
  gap log (guest-physical 0x9100, docs/guests.md) of a guest that keeps one
  (the virtio guests, the touch and the abgap guest).

Each heartbeat record keeps only its largest gap and the TSC at its end
(docs/guests.md). The migration reports stun_guest_tsc, vCPU 0's TSC read
while the VM was stunned, so the largest gap is the switchover's exactly when
it spans that point. Then |gap - stun| must stay within the bound of
docs/migration.md ("The stun as the guest sees it"): STUN_SLACK_MS plus the
largest gap the vCPU had before the migration (how long this machine keeps
a vCPU off a CPU right now). Otherwise another, larger stall hides the
switchover's gap: SKIP with the figures, unless the reported stun is longer
than every gap the guest saw (FAIL).

With a gap log, vCPU 0's switchover gap is found even under a larger
stall: the logged gap that spans stun_guest_tsc; or, when the log still
covers that point and no logged gap spans it, the gap was shorter than the
log's minimum (about 0.4 ms), and the reported stun must be within the
bound of that.

Prints one line: PASS/FAIL/SKIP NAME: why.
"""
import json
import struct
import sys

GAPLOG_MAGIC = 0x314C474544494C47  # "GLIDEGL1"
GAPLOG_ENTRIES = 64


def gap_at(path, x):
    """From a gap log: (start_tsc, end_tsc) of the logged gap that spans TSC x; (None, min_gap_tsc) when the log
    covers x and no gap of at least min_gap_tsc spans it; None when the log cannot tell (no log, or x is older
    than its oldest entry)."""
    try:
        d = open(path, "rb").read()
        magic, min_gap, count, _ = struct.unpack_from("<4Q", d, 0)
    except (OSError, struct.error):
        return None
    if magic != GAPLOG_MAGIC:
        return None
    first = max(0, count - GAPLOG_ENTRIES)
    oldest_end = 0
    for n in range(first, count):
        gap, end = struct.unpack_from("<2Q", d, 32 + 16 * (n % GAPLOG_ENTRIES))
        if n == first:
            oldest_end = end
        if end - gap <= x <= end:
            return end - gap, end
    if first and oldest_end >= x:
        return None  # entries that might span x were overwritten
    return None, min_gap

STUN_SLACK_MS = 5.0


def main():
    name, pre_path, post_path, res_path = sys.argv[1:5]
    pre = json.load(open(pre_path))
    post = json.load(open(post_path))
    res = json.load(open(res_path))
    khz = float(post["tsc_khz"])
    stun = float(res["stun_ms"])
    x = res.get("stun_guest_tsc")
    if not x:
        print(f"FAIL {name}: the migration result has no stun_guest_tsc")
        return
    verdicts = []
    logged = gap_at(sys.argv[5], x) if len(sys.argv) > 5 else None
    for i, v in enumerate(post["vcpus"]):
        before = pre["vcpus"][i]
        gap = v["max_gap_tsc"] / khz
        start, end = v["max_gap_end_tsc"] - v["max_gap_tsc"], v["max_gap_end_tsc"]
        noise = before["max_gap_tsc"] / khz
        bound = STUN_SLACK_MS + noise
        if i == 0 and logged and not start <= x <= end:  # the record's largest gap is elsewhere: ask the log
            if logged[0] is None:
                gap = logged[1] / khz
                if stun <= gap + bound:
                    verdicts.append(("PASS", f"vCPU 0: the gap log has no gap of {gap:.2f} ms or more at the "
                                             f"switchover, and the reported stun {stun:.2f} ms is within {bound:.1f} ms "
                                             f"of that"))
                else:
                    verdicts.append(("FAIL", f"vCPU 0: reported stun {stun:.2f} ms, but the guest's gap log has no gap "
                                             f"of {gap:.2f} ms or more at the switchover"))
                continue
            start, end = logged
            gap = (end - start) / khz
        where = f"it ran from {(start - x) / khz:+.2f} to {(end - x) / khz:+.2f} ms around the stun's TSC"
        if start <= x <= end:
            if abs(gap - stun) <= bound:
                verdicts.append(("PASS", f"vCPU {i}: the gap at the switchover, {gap:.2f} ms ({where}), "
                                         f"matches the reported stun {stun:.2f} ms within {bound:.1f} ms "
                                         f"({STUN_SLACK_MS:.0f} ms + the {noise:.1f} ms largest gap before the migration)"))
            else:
                verdicts.append(("FAIL", f"vCPU {i}: the gap at the switchover is {gap:.2f} ms ({where}), "
                                         f"the reported stun {stun:.2f} ms: off by more than {bound:.1f} ms"))
        elif stun > gap + bound:
            verdicts.append(("FAIL", f"vCPU {i}: reported stun {stun:.2f} ms, but the guest's largest gap is "
                                     f"{gap:.2f} ms ({where}): it never stopped that long"))
        else:
            verdicts.append(("SKIP", f"vCPU {i}: a larger stall hides the switchover's gap (the record keeps only "
                                     f"the largest: {gap:.2f} ms, {where}; before the migration {noise:.2f} ms); "
                                     f"reported stun {stun:.2f} ms"))
    for kind in ("FAIL", "SKIP", "PASS"):
        lines = [text for k, text in verdicts if k == kind]
        if lines:
            print(f"{kind} {name}: " + "; ".join(lines))
            return


if __name__ == "__main__":
    main()
