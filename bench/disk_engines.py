#!/usr/bin/env python3
"""virtio-blk I/O engines against each other: which one a disk gets by default.

  bench/disk_engines.py [--build DIR] [--reps N] [--seconds S] [--engines sync,threads,io_uring]
                        [--depths 1,16] [--modes cache,direct] [--flush-every N] [--disk-dir DIR]
                        [--disk-mib M] [--json FILE]

For every engine (--disk PATH,aio=ENGINE), queue depth (diskab keeping 1 or
16 writes in flight: guestcfg --queue-depth) and mode (through the page
cache, or O_DIRECT: --disk ...,direct), N runs (default 3) in turn: the
diskab guest (build/guests/diskab.elf, 1 vCPU, 64 MiB) writes the A-B
pattern on a zero-filled raw file in --disk-dir (default /tmp), a flush
every --flush-every writes (default 256; 0: none). After 1 s of warm-up,
S seconds (default 5) are measured:

  writes/s         the guest's completed writes (its stats record, read with
                   `glide vm memsave`) over wall time;
  VMM us/write     CPU of the monitor outside its vCPU thread (every thread
                   but the busiest, which is the polling vCPU; io_uring's
                   kernel workers are threads of the process too) per write.

Every image is checked with `abcheck --disk` afterwards (a run whose disk is
not A-B clean is reported as failed). Prints a Markdown table of medians
(min-max) and writes every run to --json. Starts one monitor at a time and
stops it; needs /dev/kvm and `make` done. About 2.5 minutes with the
defaults (3 engines x 2 depths x 2 modes x 3 runs x ~7 s).
"""
import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def thread_cpu(pid):
    """CPU seconds per thread of pid: {tid: seconds}."""
    out = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[tid] = (int(fields[11]) + int(fields[12])) / TICK
            except OSError:
                pass
    except OSError:
        pass
    return out


def guest_writes(glide, sock, tmp):
    dump = os.path.join(tmp, "stats.bin")
    r = run([glide, "vm", "memsave", "--api", sock, "--addr", "0x9000", "--size", "128", "--to", dump])
    if r.returncode:
        raise RuntimeError("memsave: " + r.stdout.strip())
    d = open(dump, "rb").read()
    magic, guest = struct.unpack_from("<QI", d, 0)
    if magic != 0x3153564544494c47 or guest != 2:
        return None
    writes, = struct.unpack_from("<Q", d, 0x20)
    errors, = struct.unpack_from("<Q", d, 0x58)
    if errors:
        raise RuntimeError("the guest saw %d failed requests" % errors)
    return writes


def make_disk(path, mib):
    with open(path, "wb") as f:
        chunk = bytes(1 << 20)
        for _ in range(mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def one_run(a, tmp, engine, depth, mode):
    elf = os.path.join(tmp, "diskab-%d.elf" % depth)
    if not os.path.exists(elf):
        r = run([os.path.join(a.build, "tools", "guestcfg"), os.path.join(a.build, "guests", "diskab.elf"), elf,
                 "--queue-depth", str(depth), "--flush-every", str(a.flush_every)])
        if r.returncode:
            raise RuntimeError("guestcfg: " + r.stdout.strip())
    disk = os.path.join(a.disk_dir, "glide-bench-engines.%d.img" % os.getpid())
    make_disk(disk, a.disk_mib)
    sock = os.path.join(tmp, "vm.sock")
    spec = disk + ",aio=" + engine + (",direct" if mode == "direct" else "")
    res = {"engine": engine, "depth": depth, "mode": mode, "status": "failed"}
    proc = subprocess.Popen([a.glide, "vm", "run", "--memory", "64M", "--elf", elf, "--disk", spec, "--api", sock,
                             "--log", os.path.join(tmp, "vm.log")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 20
        w = None
        while time.monotonic() < end:
            try:
                w = guest_writes(a.glide, sock, tmp)
            except RuntimeError:
                w = None
            if w:
                break
            time.sleep(0.1)
        if not w:
            raise RuntimeError("the guest wrote nothing: " + open(os.path.join(tmp, "vm.log")).read()[-300:])
        time.sleep(1.0)
        w0, c0, t0 = guest_writes(a.glide, sock, tmp), thread_cpu(proc.pid), time.monotonic()
        time.sleep(a.seconds)
        w1, c1, t1 = guest_writes(a.glide, sock, tmp), thread_cpu(proc.pid), time.monotonic()
        per = {tid: c1[tid] - c0.get(tid, 0.0) for tid in c1}
        busiest = max(per, key=per.get)
        outside = sum(v for tid, v in per.items() if tid != busiest)
        st = json.loads(run([a.glide, "vm", "status", "--api", sock, "--json"]).stdout)["disks"][0]
        writes = w1 - w0
        res.update(status="completed", writes_per_s=writes / (t1 - t0), vmm_us_per_write=1e6 * outside / writes,
                   vcpu_pct=100 * per[busiest] / (t1 - t0), in_flight_max=st["in_flight_max"], aio_used=st["aio"])
    except Exception as e:  # reported, the benchmark goes on
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        run([a.glide, "vm", "shutdown", "--api", sock])
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        ab = run([os.path.join(a.build, "tools", "abcheck"), "--disk", disk, "--json"], timeout=60)
        try:
            res["abcheck_ok"] = bool(json.loads(ab.stdout).get("ok"))
        except ValueError:
            res["abcheck_ok"] = False
        if res["status"] == "completed" and not res["abcheck_ok"]:
            res["status"] = "failed"
            res["error"] = "the disk is not A-B clean: " + ab.stdout[-200:]
        os.unlink(disk)
    return res


def fmt(vals, digits=0):
    if not vals:
        return "-"
    m = statistics.median(vals)
    lo, hi = min(vals), max(vals)
    f = "%%.%df" % digits
    return (f % m) + ("" if len(vals) == 1 else " (%s-%s)" % (f % lo, f % hi))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--engines", default="sync,threads,io_uring")
    ap.add_argument("--depths", default="1,16")
    ap.add_argument("--modes", default="cache,direct")
    ap.add_argument("--flush-every", type=int, default=256)
    ap.add_argument("--disk-dir", default="/tmp")
    ap.add_argument("--disk-mib", type=int, default=64)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if not 1 <= a.reps <= 10 or not 1 <= a.seconds <= 60:
        sys.exit("--reps 1-10, --seconds 1-60")
    a.glide = os.path.abspath(os.path.join(a.build, "glide"))
    a.build = os.path.abspath(a.build)
    combos = [(e, int(d), m) for m in a.modes.split(",") for d in a.depths.split(",") for e in a.engines.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="glide-engines.") as tmp:
        for rep in range(a.reps):
            for engine, depth, mode in combos:
                r = one_run(a, tmp, engine, depth, mode)
                r["rep"] = rep
                results.append(r)
                print("%-8s depth %-2d %-6s rep %d: %s" % (engine, depth, mode, rep + 1,
                      "%.0f writes/s, %.1f VMM us/write" % (r["writes_per_s"], r["vmm_us_per_write"])
                      if r["status"] == "completed" else "FAILED " + r.get("error", "")), file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print("| mode | writes in flight | engine | writes/s | VMM CPU us per write (outside the vCPU) | most in flight | runs A-B clean |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for engine, depth, mode in [(e, d, m) for m in a.modes.split(",") for d in map(int, a.depths.split(","))
                                for e in a.engines.split(",")]:
        rs = [r for r in results if (r["engine"], r["depth"], r["mode"]) == (engine, depth, mode)]
        ok = [r for r in rs if r["status"] == "completed"]
        used = {r.get("aio_used") for r in ok}
        print("| %s | %d | %s%s | %s | %s | %s | %d of %d |" % (
            "page cache" if mode == "cache" else "O_DIRECT", depth, engine,
            "" if used <= {engine} else " (ran as %s)" % ",".join(sorted(u for u in used if u)),
            fmt([r["writes_per_s"] for r in ok]), fmt([r["vmm_us_per_write"] for r in ok], 1),
            max([r["in_flight_max"] for r in ok], default="-"), sum(1 for r in rs if r.get("abcheck_ok")), len(rs)))
    return 0 if all(r["status"] == "completed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
