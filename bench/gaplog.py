"""The gap log of glide's ELF test guests (docs/guests.md, guests/virtio/guest_abi.h): the latest gaps of at
least min_gap_tsc between two loop iterations of vCPU 0, and how the benches find a migration's switchover
in it. Shared by bench/compare.py, bench/devices.py and bench/disk_migrate.py."""
import struct

GAPLOG_ADDR = 0x9100
GAPLOG_MAGIC, GAPLOG_ENTRIES = 0x314c474544494c47, 64


def parse_gap_log(d):
    """The guest's gap log (docs/guests.md): {"min": min_gap_tsc, "oldest_end": end TSC of the oldest entry
    kept (0: none lost), "gaps": [(start_tsc, end_tsc)] oldest first}, or None."""
    magic, min_gap, count, _ = struct.unpack_from("<4Q", d, 0)
    if magic != GAPLOG_MAGIC:
        return None
    first = max(0, count - GAPLOG_ENTRIES)
    gaps = []
    for n in range(first, count):
        gap, end = struct.unpack_from("<2Q", d, 32 + 16 * (n % GAPLOG_ENTRIES))
        gaps.append((end - gap, end))
    return {"min": min_gap, "oldest_end": gaps[0][1] if first and gaps else 0, "gaps": gaps}


def switchover_gap(log, tsc, slack=0):
    """The guest's gap that spans guest TSC tsc (a moment inside the stun; or, with slack, up to slack ticks
    before the gap's start), in TSC: (gap, exact). Not logged while the log still covers tsc: shorter than the
    log's minimum, (min, False); else None."""
    if not log or not tsc:
        return None
    for start, end in log["gaps"]:
        if start <= tsc + slack and tsc <= end:
            return end - start, True
    if log["oldest_end"] < tsc:
        return log["min"], False
    return None


def exact_stun(khz, res, dest, tsc, slack_ms=0):
    """The switchover's own gap from the guest's gap log, read on the destination: the logged gap that spans
    tsc, a guest TSC inside the stun (glide's stun_guest_tsc; for QEMU the stopped source's last loop turn,
    where the gap starts), khz the TSC rate. Replaces res["gstun"], the longest-gap rule's figure (which only
    bounds it when a longer stall came first), and records the gaps around it."""
    log = dest and dest.get("gap_log")
    g = switchover_gap(log, tsc, int(slack_ms * khz))
    if log and tsc:  # the gaps around the switchover, ms from tsc, for the record
        res["gaps_near_stun"] = [((s - tsc) / khz, (e - s) / khz) for s, e in log["gaps"]
                                 if abs(s - tsc) < khz * 1000][-8:]
    if g:
        res["gstun"], res["gstun_ub"], res["gstun_from_log"] = g[0] / khz, not g[1], True
