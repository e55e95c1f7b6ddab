#!/usr/bin/env python3
"""Judges a migration's reported stun against the guest's own heartbeat.

Usage: hbstun.py NAME PRE.json POST.json RESULT.json
  PRE.json, POST.json: `hbread --json --tsc-khz KHZ` of the source before the
  migration and of the destination after it; RESULT.json: `glide migrate
  --json` (needs stun_ms and stun_guest_tsc).

Each heartbeat record keeps only its largest gap and the TSC at its end
(docs/guests.md). The migration reports stun_guest_tsc, vCPU 0's TSC read
while the VM was stunned, so the largest gap is the switchover's exactly when
it spans that point. Then |gap - stun| must stay within the bound of
docs/migration.md ("The stun as the guest sees it"): STUN_SLACK_MS plus the
largest gap the vCPU had before the migration (how long this machine keeps
a vCPU off a CPU right now). Otherwise another, larger stall hides the
switchover's gap: SKIP with the figures, unless the reported stun is longer
than every gap the guest saw (FAIL).

Prints one line: PASS/FAIL/SKIP NAME: why.
"""
import json
import sys

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
    for i, v in enumerate(post["vcpus"]):
        before = pre["vcpus"][i]
        gap = v["max_gap_tsc"] / khz
        start, end = v["max_gap_end_tsc"] - v["max_gap_tsc"], v["max_gap_end_tsc"]
        noise = before["max_gap_tsc"] / khz
        bound = STUN_SLACK_MS + noise
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
