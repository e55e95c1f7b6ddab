#!/usr/bin/env python3
"""Shared-nothing live migration (issue 13): a disk plus memory, glide against QEMU 7.2.

Run through bench/disk_migrate.sh, which checks the prerequisites. Python 3
standard library only; the VM classes, process handling and report helpers
come from bench/devices.py, the guest-stun rule from bench/compare.py.

The same guest on both sides: diskab (build/guests/diskab.elf, docs/guests.md)
writing the A-B pattern on its virtio-blk disk while it migrates (it has no
memory A-B range: its memory is only its image and tables). Before each run
the source disk (a raw file in --disk-dir, default /tmp) is made anew: a sparse
file of --disk-size with --written of it filled with random data in 1 MiB
pieces spread over the disk (the first 16 bytes of each diskab block, where the
guest keeps its counter and block index, stay zero, so the pattern check
holds), fsynced. Everything runs over 127.0.0.1.

  glide   source `glide vm run --memory M --elf diskab --disk SRC`, destination
          `glide vm run --incoming 127.0.0.1:P --key-file K --disk-dir DIR`;
          `glide migrate --to 127.0.0.1:P --key-file K --disk-to DIR/copy.img
          --json` with glide's defaults ("glide": encrypted, its default;
          "glide plain": --encrypt off, like QEMU's unencrypted TCP)
  QEMU    as libvirt does `virsh migrate --live --copy-storage-all` (blockdev
          mode): the destination QEMU runs with -incoming defer and a
          pre-created empty file of the same size; on it `migrate-incoming`,
          `nbd-server-start` on 127.0.0.1 and `nbd-server-add` (writable) for
          the drive. On the source `blockdev-add` of the NBD export and
          `blockdev-mirror` (sync full) of the drive into it; at BLOCK_JOB_READY
          `migrate` with the capabilities libvirt sets (events,
          pause-before-switchover); at the pre-switchover pause
          `block-job-cancel` (a ready mirror completes without a pivot: the
          target now equals the source), then `migrate-continue`; once
          completed, `nbd-server-stop` on the destination, which runs on.
          downtime-limit 300 ms (QEMU's default), max-bandwidth 100 GB/s
          (libvirt's "unlimited"); events are waited for, not polled

Per run: total time (glide total_ms; QEMU from blockdev-add to the MIGRATION
completed event), the tool's stun/downtime, the guest-observed stun (the
diskab heartbeat record's longest gap, read on the destination, when it is
longer than every gap the source showed, else only bounded: "<=X"; the same
rule as bench/compare.py), bytes on the wire (glide bytes_sent; QEMU the NBD
connection's acknowledged bytes from the kernel's tcp_info plus ram.transferred
of query-migrate), the guest's writes per second during the migration as % of
before. Checks, after every run, with the destination VM paused and the
source stopped: abcheck --disk on the destination's copy and on the source's
file, and the two files compared block by block: a block whose counter the
destination has not rewritten since must be identical, one it has rewritten
must hold a higher counter and the same bytes after the guest's write. A run
that fails a check counts as failed.
"""
import argparse
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import devices as D  # noqa: E402  (VM classes, process handling, tables)
from compare import QMP, glide_api, guest_figures, qmp_connect  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
BANNER = "glide-guest diskab"
CONFIGS = {"glide": [], "glide-plain": ["--encrypt", "off"], "QEMU": None}
LABEL = {"glide": "glide (encrypted, default)", "glide-plain": "glide plain (--encrypt off)", "QEMU": "QEMU"}


def log(*a):
    D.log(*a)


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", s, re.I)
    if not m:
        raise ValueError("bad size %r" % s)
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": 1 << 40}[m.group(2).upper()])


def mib(n):
    return "%g MiB" % (n / MIB) if n < GIB else "%g GiB" % (n / GIB)


def free_port(start):
    """The first port from start that nothing listens on (or is bound to) on 127.0.0.1."""
    p = start
    while p < 65000:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            p += 1
        finally:
            s.close()
    raise RuntimeError("no free port")


# ---------------------------------------------------------------- the disk

def make_source_disk(a, path, seed):
    """A sparse file of a.disk_size with a.written of it random, in 1 MiB pieces chosen by seed."""
    if os.path.exists(path):
        os.unlink(path)
    n = a.disk_size // MIB
    chunks = sorted(random.Random(seed).sample(range(n), a.written // MIB))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, a.disk_size)
        for c in chunks:
            data = bytearray(os.urandom(MIB))
            for off in range(0, MIB, a.block_size):
                data[off:off + 16] = bytes(16)  # diskab's counter and block index start at 0
            os.pwrite(fd, data, c * MIB)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(chunks) * MIB


def allocated(path):
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def abcheck(a, path):
    r = D.run([a.abcheck, "--disk", path, "--block", str(a.block_size), "--json"], timeout=120)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        return {"ok": False, "error": r.stdout[-300:]}
    return {k: j.get(k) for k in ("ok", "passes", "step_block", "bad_blocks", "blocks")}


def compare_disks(src, dst, bs, write_size):
    """The destination's copy against the source's file as the switchover left it, the destination having
    run on: a block whose counter is unchanged must be identical; a block the destination rewrote must hold
    a higher counter and the same bytes after the guest's write (write_size). Returns a dict."""
    res = {"identical_blocks": 0, "rewritten_blocks": 0, "bad_blocks": 0, "first_bad": None}
    step = max(bs, 4 * MIB)
    with open(src, "rb") as fs, open(dst, "rb") as fd:
        if os.fstat(fs.fileno()).st_size != os.fstat(fd.fileno()).st_size:
            return dict(res, ok=False, error="sizes differ: %d vs %d" % (os.fstat(fs.fileno()).st_size,
                                                                         os.fstat(fd.fileno()).st_size))
        off = 0
        while True:
            x, y = fs.read(step), fd.read(step)
            if not x and not y:
                break
            if x == y:
                res["identical_blocks"] += len(x) // bs
            else:
                mx, my = memoryview(x), memoryview(y)
                for b in range(0, min(len(x), len(y)), bs):
                    cx, cy = int.from_bytes(mx[b:b + 8], "little"), int.from_bytes(my[b:b + 8], "little")
                    if cx == cy and mx[b:b + bs] == my[b:b + bs]:
                        res["identical_blocks"] += 1
                    elif cy > cx and mx[b + write_size:b + bs] == my[b + write_size:b + bs]:
                        res["rewritten_blocks"] += 1
                    else:
                        res["bad_blocks"] += 1
                        if res["first_bad"] is None:
                            res["first_bad"] = {"offset": off + b, "source_counter": cx, "copy_counter": cy}
            off += len(x)
    res["ok"] = res["bad_blocks"] == 0 and res["identical_blocks"] + res["rewritten_blocks"] > 0
    return res


# ---------------------------------------------------------------- QMP with events

class QMPEvents(QMP):
    """compare.QMP that keeps the events it reads (compare.QMP drops them) and can wait for one."""

    def __init__(self, path):
        self.events, self.buf = [], b""
        self.s = qmp_connect(path)
        self.readmsg(30)  # greeting
        self.cmd("qmp_capabilities")

    def readmsg(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            if not d:
                raise RuntimeError("QMP closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        m = {"execute": name}
        if args:
            m["arguments"] = args
        self.s.settimeout(30)
        self.s.sendall((json.dumps(m) + "\n").encode())
        while True:
            r = self.readmsg(60)
            if r is None:
                raise RuntimeError("QMP %s: no answer" % name)
            if "event" in r:
                r["t"] = time.monotonic()
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"].get("desc")))
            return r.get("return")

    def wait_event(self, match, timeout):
        """The first event (kept or arriving within timeout) for which match(event) holds, else None."""
        end = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if match(e):
                    return self.events.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                return None
            r = self.readmsg(left)
            if r is not None and "event" in r:
                r["t"] = time.monotonic()
                self.events.append(r)


D.QMP = QMPEvents  # devices.QemuVM connects with the event-keeping client
QemuVM = D.QemuVM


def ev_migration(status):
    return lambda e: e.get("event") == "MIGRATION" and e.get("data", {}).get("status") == status


def ev_job(name, job):
    return lambda e: e.get("event") == name and e.get("data", {}).get("device") == job


def ev_migration_end(e):
    return e.get("event") == "MIGRATION" and e.get("data", {}).get("status") in ("completed", "failed", "cancelled")


def tcp_bytes(port):
    """Bytes acknowledged by the peer on the established connection(s) to 127.0.0.1:port (tcp_info)."""
    r = D.run(["ss", "-tinH", "state", "established", "( dport = :%d )" % port], timeout=10)
    vals = [int(m) for m in re.findall(r"\bbytes_acked:(\d+)", r.stdout)]
    return sum(vals) if vals else None


# ---------------------------------------------------------------- guest records

def hb(vm):
    h, _ = vm.records()
    return h


def read_dest(vm, src_last, limit=5):
    """The destination's heartbeat record once the guest has iterated there (twice)."""
    last = None
    end = time.monotonic() + limit
    while time.monotonic() < end:
        h = hb(vm)
        if h and src_last and h["tsc"] > src_last["tsc"] and h["iter"] > src_last["iter"]:
            if last and h["iter"] > last["iter"]:
                return h
            last = h
        time.sleep(0.05)
    return last


def warm_up(a, vm):
    if not vm.wait_banner(BANNER):
        raise RuntimeError("no banner from diskab: " + D.tail(vm.serial))
    time.sleep(a.warmup)
    b1 = hb(vm)
    time.sleep(0.5)
    b2 = hb(vm)
    if not b1 or not b2 or b2["iter"] <= b1["iter"]:
        raise RuntimeError("diskab does not write: %s %s" % (b1, b2))
    return b1, b2


# ---------------------------------------------------------------- one run each

def verify(a, res, src_path, dst_path, stats):
    ws = (stats or {}).get("write_size") or 512
    res["abcheck_copy"] = abcheck(a, dst_path)
    res["abcheck_source"] = abcheck(a, src_path)
    res["compare"] = compare_disks(src_path, dst_path, a.block_size, ws)
    res["disk_ok"] = bool(res["abcheck_copy"].get("ok") and res["abcheck_source"].get("ok") and res["compare"]["ok"])
    if not res["disk_ok"]:
        raise RuntimeError("the destination's disk is wrong: copy %s, source %s, compare %s" % (
            res["abcheck_copy"], res["abcheck_source"], res["compare"]))


def run_glide(a, cfg, rep, port):
    src_path = os.path.join(a.disk_dir, "glide-dm-src.%d.img" % os.getpid())
    ddir = os.path.join(a.disk_dir, "glide-dm-dst.%d" % os.getpid())
    shutil.rmtree(ddir, ignore_errors=True)
    os.makedirs(ddir, mode=0o700)
    dst_path = os.path.join(ddir, "copy.img")
    res = {"status": "failed"}
    res["filled"] = make_source_disk(a, src_path, rep)
    src, dst = D.GlideVM(a, "gsrc"), D.GlideVM(a, "gdst")
    mp = None
    try:
        src.start(None, ["--memory", str(a.memory), "--elf", a.elf, "--disk", src_path])
        dst.start(None, ["--incoming", "127.0.0.1:%d" % port, "--key-file", a.key, "--disk-dir", ddir])
        b1, b2 = warm_up(a, src)
        res["allocated_at_start"] = allocated(src_path)
        outf = os.path.join(D.TMP, "gmig.json")
        argv = [a.glide, "migrate", "--api", src.sock, "--to", "127.0.0.1:%d" % port, "--key-file", a.key,
                "--disk-to", dst_path, "--json", "--timeout", str(a.timeout)] + CONFIGS[cfg] + a.glide_args.split()
        t0 = time.monotonic()
        with open(outf, "wb") as f:
            mp = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL)
        D.PROCS.append(mp)
        samples = []
        while mp.poll() is None and time.monotonic() - t0 < a.timeout + 30:
            time.sleep(a.sample)
            h = hb(src) if mp.poll() is None else None
            if h and mp.poll() is None:
                samples.append(h)
        D.stop_proc(mp)
        res["wall_ms"] = (time.monotonic() - t0) * 1000
        try:
            with open(outf) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"status": "failed", "error": "no JSON from glide migrate"}
        res["raw"] = r
        if r.get("status") != "completed":
            raise RuntimeError("glide migrate: %s %s" % (r.get("status"), r.get("error")))
        dc = r.get("disk_copy") or {}
        res.update(total_ms=r.get("total_ms"), downtime_ms=r.get("stun_ms"), bytes=r.get("bytes_sent"),
                   disk_blocks=dc.get("blocks_sent"), disk_zero_blocks=dc.get("zero_blocks"),
                   streams=r.get("streams"), encrypted=r.get("encrypted"),
                   sdps_max_level=(r.get("sdps") or {}).get("max_level"), phases=len(r.get("phases") or []))
        dest = read_dest(dst, samples[-1] if samples else b2)
        res.update(guest_figures(a.khz, b1, b2, samples, None, dest))
        st_tsc = r.get("stun_guest_tsc")
        if dest and st_tsc:  # glide says when it stunned the guest: does the destination's longest gap span it?
            res["gap_is_switchover"] = dest["gap_end"] - dest["gap"] <= st_tsc <= dest["gap_end"]
        D.exact_stun(a.khz, res, dest, st_tsc)
        res["dest_running"] = (dst.status() or {}).get("state") == "running" and dest is not None and \
            dest["iter"] > (samples[-1] if samples else b2)["iter"]
        if not res["dest_running"]:
            raise RuntimeError("the destination does not run the guest: %s" % dst.status())
        # the checks: the destination paused (its requests completed), the source monitor gone
        st, body = glide_api(dst.sock, "POST", "/v1/vm/pause", {}, timeout=10)
        if st != 200:
            raise RuntimeError("pausing the destination: %s %s" % (st, body))
        _, stats = dst.records()
        res["dest_stats"] = stats
        try:
            src.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the source monitor still runs after the migration")
        verify(a, res, src_path, dst_path, stats)
        res["status"] = "completed"
        return res
    finally:
        if mp:
            D.stop_proc(mp)
        dst.stop()
        src.stop()
        for p in (src_path,):
            if os.path.exists(p):
                os.unlink(p)
        shutil.rmtree(ddir, ignore_errors=True)


def run_qemu(a, rep, port, nbd_port):
    src_path = os.path.join(a.disk_dir, "glide-dm-qsrc.%d.img" % os.getpid())
    dst_path = os.path.join(a.disk_dir, "glide-dm-qdst.%d.img" % os.getpid())
    res = {"status": "failed"}
    res["filled"] = make_source_disk(a, src_path, rep)
    with open(dst_path, "wb") as f:  # libvirt pre-creates the destination's volume: an empty file, same size
        f.truncate(a.disk_size)
    drive = lambda p: ["-drive", "file=%s,format=raw,if=none,id=d0" % p,
                       "-device", "virtio-blk-pci,disable-legacy=on,drive=d0"]
    src, dst = QemuVM(a, "qsrc"), QemuVM(a, "qdst")
    job, node = "drive-d0", "migration-d0-storage"
    try:
        src.start(None, ["-kernel", a.elf] + drive(src_path))
        dst.start(None, ["-kernel", a.elf, "-incoming", "defer"] + drive(dst_path))
        params = {"downtime-limit": 300, "max-bandwidth": 100 * 10 ** 9}
        caps = [{"capability": c, "state": True} for c in ("events", "pause-before-switchover")]
        src.qmp.cmd("migrate-set-capabilities", capabilities=caps)
        dst.qmp.cmd("migrate-set-capabilities", capabilities=caps[:1])
        for vm in (src, dst):
            vm.qmp.cmd("migrate-set-parameters", **params)
        # destination (libvirt's Prepare): incoming migration, NBD server, the drive exported writable
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        dst.qmp.cmd("nbd-server-start", addr={"type": "inet", "data": {"host": "127.0.0.1", "port": str(nbd_port)}})
        try:
            dst.qmp.cmd("nbd-server-add", device="d0", writable=True)
        except RuntimeError:  # QEMUs without nbd-server-add
            dst.qmp.cmd("block-export-add", type="nbd", id="d0", **{"node-name": qemu_node(dst, "d0"),
                                                                    "writable": True, "name": "d0"})
        b1, b2 = warm_up(a, src)
        res["allocated_at_start"] = allocated(src_path)
        # source (libvirt's Perform): mirror into the NBD export, then migrate once the mirror is ready
        t0 = time.monotonic()
        src.qmp.cmd("blockdev-add", driver="nbd", **{"node-name": node, "export": "d0",
                                                     "server": {"type": "inet", "host": "127.0.0.1",
                                                                "port": str(nbd_port)}})
        src.qmp.cmd("blockdev-mirror", **{"job-id": job, "device": "d0", "target": node, "sync": "full"})
        samples = []
        end = t0 + a.timeout
        ready = None
        while time.monotonic() < end and not ready:
            ready = src.qmp.wait_event(ev_job("BLOCK_JOB_READY", job), a.sample)
            if src.qmp.wait_event(ev_job("BLOCK_JOB_COMPLETED", job), 0) or \
                    src.qmp.wait_event(ev_job("BLOCK_JOB_ERROR", job), 0):
                raise RuntimeError("the mirror job ended before it was ready: %s" % src.qmp.cmd("query-block-jobs"))
            if not ready:
                h = hb(src)
                if h:
                    samples.append(h)
        if not ready:
            jobs = src.qmp.cmd("query-block-jobs")
            res["error_jobs"] = jobs
            raise RuntimeError("did not converge: the mirror was not ready after %d s (%s)" % (a.timeout, jobs))
        t_ready = time.monotonic()
        res["mirror_ready_ms"] = (t_ready - t0) * 1000
        src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        pre = None
        while time.monotonic() < end and not pre:
            pre = src.qmp.wait_event(ev_migration("pre-switchover"), a.sample)
            e = src.qmp.wait_event(ev_migration_end, 0)
            if e:
                raise RuntimeError("QEMU migration %s before the switchover" % e["data"]["status"])
            if not pre:
                h = hb(src)  # a pre-switchover event arriving meanwhile is kept for the next turn
                if h and not any(ev_migration("pre-switchover")(x) for x in src.qmp.events):
                    samples.append(h)
        if not pre:
            src.qmp.cmd("migrate_cancel")
            raise RuntimeError("did not converge: no switchover within %d s: %s" % (
                a.timeout, src.qmp.cmd("query-migrate").get("status")))
        # the VM is stopped: finish the mirror (a ready mirror cancelled completes: target == source), go on
        t_pre = time.monotonic()
        src.qmp.cmd("block-job-cancel", device=job)
        if not src.qmp.wait_event(ev_job("BLOCK_JOB_COMPLETED", job), 60):
            raise RuntimeError("the mirror did not complete after block-job-cancel")
        t_cancelled = time.monotonic()
        src.qmp.cmd("migrate-continue", state="pre-switchover")
        done = src.qmp.wait_event(ev_migration_end, max(1, end - time.monotonic()))
        t_done = time.monotonic()
        q = src.qmp.cmd("query-migrate")
        for _ in range(100):  # the event comes before QEMU fills in total-time and downtime
            if not done or done["data"]["status"] != "completed" or q.get("total-time"):
                break
            time.sleep(0.01)
            q = src.qmp.cmd("query-migrate")
        res["raw"] = q
        if not done or done["data"]["status"] != "completed":
            raise RuntimeError("QEMU migration: %s %s" % (q.get("status"), q.get("error-desc", "")))
        t_done = min(t_done, done["t"])
        nbd = tcp_bytes(nbd_port)  # the NBD connection lives until its node is deleted
        ram = (q.get("ram") or {}).get("transferred")
        res.update(total_ms=(t_done - t0) * 1000, wall_ms=(t_done - t0) * 1000, downtime_ms=q.get("downtime"),
                   qemu_total_ms=q.get("total-time"), setup_ms=q.get("setup-time"),
                   pre_switchover_ms=(t_cancelled - t_pre) * 1000, nbd_bytes=nbd, ram_bytes=ram,
                   bytes=(nbd or 0) + (ram or 0) if nbd is not None else None)
        # the destination (libvirt's Finish): stop the NBD server; the guest must run there
        dst.qmp.cmd("nbd-server-stop")
        final_src = hb(src)  # the stopped source: its record as of the switchover
        dest = read_dest(dst, final_src or (samples[-1] if samples else b2))
        res.update(guest_figures(a.khz, b1, b2, samples, final_src, dest))
        # the stopped source's last loop turn, where the gap starts (0.1 ms of slack: the record read from
        # the stopped QEMU showed a TSC some 25 ticks before the logged gap's start)
        D.exact_stun(a.khz, res, dest, final_src and final_src["tsc"], 0.1)
        status = dst.qmp.cmd("query-status")
        res["dest_running"] = status.get("status") == "running" and dest is not None and \
            dest["iter"] > (final_src or b2)["iter"]
        if not res["dest_running"]:
            raise RuntimeError("the destination does not run the guest: %s" % status)
        try:
            src.qmp.cmd("blockdev-del", **{"node-name": node})
        except RuntimeError:
            pass
        dst.qmp.cmd("stop")  # drains the destination's requests
        _, stats = dst.records()
        res["dest_stats"] = stats
        src.stop()  # postmigrate: its disk was flushed and inactivated at the switchover
        verify(a, res, src_path, dst_path, stats)
        res["status"] = "completed"
        return res
    finally:
        dst.stop()
        src.stop()
        for p in (src_path, dst_path):
            if os.path.exists(p):
                os.unlink(p)


def qemu_node(vm, dev):
    for b in vm.qmp.cmd("query-block"):
        if b.get("device") == dev:
            return (b.get("inserted") or {}).get("node-name")
    raise RuntimeError("no drive %s" % dev)


# ---------------------------------------------------------------- report

def ratio(g, q, g_ub=False, q_ub=False):
    """glide / QEMU of the medians (below 1: glide ahead); of upper bounds only a bound, or nothing"""
    if not g or not q or not q[0] or g_ub and q_ub:
        return "-"
    return "%s%.2fx" % ("<=" if g_ub else ">=" if q_ub else "", g[0] / q[0])


TABLE = []


def report(a, results, meta):
    cfgs = list(a.configs)
    done = {c: [r for r in results if r["config"] == c and r["status"] == "completed"] for c in cfgs}
    n = {c: sum(1 for r in results if r["config"] == c) for c in cfgs}
    med = lambda c, k: D.med([r.get(k) for r in done[c]]) if c in done else None
    gst_ub = {c: any(r.get("gstun_ub") for r in done.get(c, [])) for c in cfgs}
    rows = [
        ("completed, disk checked", None, None),
        ("total ms (glide total_ms; QEMU blockdev-add to migration completed)", "total_ms", 0),
        ("  QEMU: mirror until BLOCK_JOB_READY, ms", "mirror_ready_ms", 0),
        ("  QEMU: pre-switchover pause (block-job-cancel until the mirror completed), ms", "pre_switchover_ms", 0),
        ("downtime reported by the tool, ms (glide stun_ms, QEMU downtime)", "downtime_ms", 1),
        ("guest-observed stun, ms (diskab heartbeat; <=: bounded only)", "gstun", 1),
        ("longest guest stall during the migration, ms", "stall", 1),
        ("MiB on the wire (glide bytes_sent; QEMU NBD + RAM)", "bytes_mib", 0),
        ("  QEMU: NBD connection MiB", "nbd_mib", 0),
        ("  QEMU: RAM MiB (ram.transferred)", "ram_mib", 0),
        ("  glide: disk blocks sent, MiB (4 KiB blocks; zero blocks as runs)", "disk_mib", 0),
        ("guest writes/s before the migration (diskab, its own TSC)", "rate_before", 0),
        ("guest writes/s during the migration, % of before", "work_pct", 0),
        ("disk allocated at the start, MiB (filled + the guest's writes)", "alloc_mib", 0),
    ]
    for r in results:
        if r.get("bytes") is not None:
            r["bytes_mib"] = r["bytes"] / MIB
        if r.get("nbd_bytes") is not None:
            r["nbd_mib"] = r["nbd_bytes"] / MIB
        if r.get("ram_bytes") is not None:
            r["ram_mib"] = r["ram_bytes"] / MIB
        if r.get("disk_blocks") is not None:
            r["disk_mib"] = r["disk_blocks"] * 4096 / MIB
        if r.get("allocated_at_start") is not None:
            r["alloc_mib"] = r["allocated_at_start"] / MIB
    gls = [c for c in cfgs if c.startswith("glide")] if "QEMU" in cfgs else []
    short = {"glide": "glide", "glide-plain": "glide plain"}
    head = "| measure | " + " | ".join(LABEL[c] for c in cfgs) + " |" + \
        "".join(" %s / QEMU |" % short[c] for c in gls)
    sep = "|" + " --- |" * (len(cfgs) + 1 + len(gls))
    L = [head, sep]
    del TABLE[:]
    for label, key, prec in rows:
        if key is None:
            cells = ["%d/%d" % (len(done[c]), n[c]) for c in cfgs]
            L.append("| %s | %s |%s" % (label, " | ".join(cells), "".join(" |" for _ in gls)))
            continue
        ms = {c: med(c, key) for c in cfgs}
        if all(m is None for m in ms.values()):
            continue
        cells = [D.fmt(ms[c], prec, key == "gstun" and gst_ub[c]) for c in cfgs]
        cmp = key in ("total_ms", "downtime_ms", "gstun", "stall", "bytes_mib")
        rt = "".join(" %s |" % (ratio(ms[c], ms["QEMU"], key == "gstun" and gst_ub[c],
                                      key == "gstun" and gst_ub["QEMU"]) if cmp else "") for c in gls)
        L.append("| %s | %s |%s" % (label, " | ".join(cells), rt))
        TABLE.append({"measure": label, "field": key, **{c: ms[c] and list(ms[c]) for c in cfgs}})
    goals = []
    for c in gls:
        if med(c, "total_ms") and med("QEMU", "total_ms"):
            tr = med(c, "total_ms")[0] / med("QEMU", "total_ms")[0]
            goals.append("total <= 0.5x QEMU's (%s): %s, %.2fx" % (LABEL[c], "met" if tr <= 0.5 else "NOT met", tr))
    for c in cfgs:
        if c.startswith("glide") and med(c, "gstun"):
            g = med(c, "gstun")[0]
            goals.append("stun <= 10 ms (%s): %s, guest-observed median %s%.1f ms%s" % (
                LABEL[c], "met" if g <= 10 else "NOT met" if not gst_ub[c] else "not known",
                "<=" if gst_ub[c] else "", g,
                " (an upper bound: the switchover's gap was hidden by an earlier stall in some run)"
                if gst_ub[c] else ""))
    out = ["# Shared-nothing migration: %s disk (%s written) + %s memory, glide vs QEMU %s" % (
        mib(a.disk_size), mib(a.written), mib(a.memory), meta["qemu_short"]), "",
        "- command: `%s`; started %s, took %.1f min; git %s" % (meta["command"], meta["started"],
                                                                meta["elapsed"] / 60, meta["rev"]),
        "- machine: %s (%s), %d CPUs, kernel %s, /dev/kvm %s; TSC %.0f kHz; load average %s at the start, %s at "
        "the end; disks in %s (%s)" % (meta["cpu"], meta["vendor"], meta["ncpu"], meta["kernel"], meta["kvm"],
                                       meta["khz"], meta["load_start"], meta["load_end"], a.disk_dir,
                                       meta["disk_fs"]),
        "- guest: diskab (build/guests/diskab.elf, %d-byte blocks, one write of the device's logical block at "
        "each block's start, a flush every 256 writes, 1 in flight), 1 vCPU, %s; no memory A-B range (diskab "
        "has none). Source disk made anew before every run: sparse, %s of random data in 1 MiB pieces spread "
        "over it. The guest runs %g s before the migration starts (its writes in the unfilled half add to "
        "what is allocated: see the table)" % (a.block_size, mib(a.memory), mib(a.written), a.warmup + 0.5),
        "- glide: `glide migrate --disk-to DIR/copy.img --json%s`, defaults (encrypted); plain = `--encrypt off`. "
        "QEMU (%s): `-enable-kvm -cpu %s -m %s -smp 1 -nodefaults -kernel diskab.elf -drive "
        "file=...,format=raw,if=none -device virtio-blk-pci`; libvirt's --copy-storage-all flow (destination "
        "-incoming defer, nbd-server-start/nbd-server-add writable; source blockdev-add nbd, blockdev-mirror "
        "sync=full, BLOCK_JOB_READY, migrate with events + pause-before-switchover, block-job-cancel at "
        "pre-switchover, migrate-continue; nbd-server-stop); downtime-limit 300 ms, max-bandwidth 100 GB/s" % (
            (" " + a.glide_args) if a.glide_args else "", meta["qemu_version"], a.cpu, "%dM" % (a.memory // MIB)),
        "- guest-observed stun: the switchover's own gap between two of the vCPU's loop turns, from diskab's "
        "gap log (its latest %d gaps of at least 2^20 TSC ticks, docs/guests.md) read on the destination: "
        "the gap that spans glide's stun_guest_tsc (a guest TSC read while stunned) or, for QEMU, the one "
        "that starts at the stopped source's last loop turn; found in %d of %d completed runs (\"<=X\": "
        "shorter than the log's minimum X). Without it, the heartbeat record's longest gap, which counts "
        "only when longer than every gap the source showed before (sampled every %g s), else \"<=X\"" % (
            D.GAPLOG_ENTRIES, sum(1 for r in results if r.get("gstun_from_log")),
            sum(1 for r in results if r["status"] == "completed"), a.sample),
        "- every run checked: destination paused/stopped, source stopped; abcheck --disk on both files and the "
        "copy compared with the source block by block (identical, or rewritten by the guest after the "
        "switchover with a higher counter and the rest of the block unchanged); median (min-max) of the "
        "completed runs; the tools run in turn, the order changing per repetition",
        ""] + L + [""] + ["- goal: " + g for g in goals]
    fails = [r for r in results if r["status"] != "completed"]
    if fails:
        out += ["", "Runs that did not count:", ""] + ["- %s rep %d: %s" % (LABEL[r["config"]], r["rep"] + 1,
                                                                             r.get("error")) for r in fails]
    out += ["", "Per run:", ""] + ["- %s rep %d: %s" % (LABEL[r["config"]], r["rep"] + 1, summary(r))
                                   for r in results]
    return "\n".join(out) + "\n"


def summary(r):
    if r["status"] != "completed":
        return "%s: %s" % (r["status"], r.get("error"))
    s = "total %.0f ms, downtime %.1f ms, guest stun %s%.1f ms, %.0f MiB" % (
        r["total_ms"], r["downtime_ms"] or -1, "<=" if r.get("gstun_ub") else "", r.get("gstun") or -1,
        (r.get("bytes") or 0) / MIB)
    if r["config"] == "QEMU":
        s += " (NBD %.0f + RAM %.0f), mirror ready after %.0f ms, pre-switchover %.0f ms" % (
            (r.get("nbd_bytes") or 0) / MIB, (r.get("ram_bytes") or 0) / MIB, r.get("mirror_ready_ms") or -1,
            r.get("pre_switchover_ms") or -1)
    else:
        dc = (r.get("raw") or {}).get("disk_copy") or {}
        s += ", %s disk blocks (%s zero), %s streams, %d phases, %s mirrored writes (wait avg %.2f, max %.1f ms, " \
             "of it for the stream %.1f ms)" % (r.get("disk_blocks"), r.get("disk_zero_blocks"), r.get("streams"),
                                               r.get("phases") or 0, dc.get("mirrored_writes"),
                                               dc.get("mirror_wait_avg_ms", -1), dc.get("mirror_wait_max_ms", -1),
                                               dc.get("mirror_queue_max_ms", -1))
    c = r.get("compare") or {}
    s += "; copy checked: %d identical + %d rewritten blocks, abcheck copy pass %s" % (
        c.get("identical_blocks", 0), c.get("rewritten_blocks", 0), (r.get("abcheck_copy") or {}).get("passes"))
    return s


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (1-10, default 3)")
    ap.add_argument("--disk-size", default="1G", help="disk size (default 1G; at least 16M)")
    ap.add_argument("--written", default="half",
                    help="how much of the disk is filled before the run: half (default), a fraction or a size")
    ap.add_argument("--memory", default="256M", help="guest memory (default 256M)")
    ap.add_argument("--out", default="bench/results/disk_migrate")
    ap.add_argument("--max-minutes", type=float, default=30, help="stop starting runs after this long (default 30)")
    ap.add_argument("--configs", default="glide,glide-plain,QEMU",
                    help="which to run: glide (encrypted, its default), glide-plain, QEMU (default: all three)")
    ap.add_argument("--timeout", type=int, default=300, help="limit per migration, s (default 300)")
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="seconds diskab writes before its rate is taken (then 0.5 s more) and the migration starts")
    ap.add_argument("--glide-args", default="", help="more `glide migrate` options for the glide runs (diagnosis)")
    ap.add_argument("--block-size", default="4K", help="diskab's block size (guestcfg --block-size, default 4K)")
    ap.add_argument("--disk-dir", default="/tmp", help="where the disk files go (default /tmp)")
    ap.add_argument("--sample", type=float, default=0.1, help="heartbeat sampling interval on the source, s")
    ap.add_argument("--build", default="build")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--cpu", default=None, help="QEMU -cpu (default host,-arch-capabilities on AMD, host on Intel)")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--rerender", metavar="DIR", help="only rebuild results.md from DIR/results.json")
    a = ap.parse_args()
    if a.rerender:
        return rerender(a)
    try:
        a.disk_size = parse_size(a.disk_size)
        a.memory = parse_size(a.memory)
        a.block_size = parse_size(a.block_size)
        w = a.written.strip().lower()
        a.written = a.disk_size // 2 if w == "half" else \
            int(float(w) * a.disk_size) if re.fullmatch(r"0?\.\d+|1(\.0*)?|0", w) else parse_size(w)
        a.written = a.written // MIB * MIB
    except ValueError as e:
        ap.error(str(e))
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    if not 1 <= a.reps <= 10 or a.disk_size < 16 * MIB or a.disk_size % MIB or not 0 <= a.written <= a.disk_size or \
            a.memory < 32 * MIB or not a.configs or set(a.configs) - set(CONFIGS) or \
            a.block_size not in [1 << i for i in range(9, 21)] or a.block_size < 4096 and a.block_size != 512:
        ap.error("an option is out of its range (see --help)")
    cpu, vendor = D.machine()
    if a.cpu is None:
        a.cpu = "host,-arch-capabilities" if vendor == "AMD" else "host"

    D.TMP = tempfile.mkdtemp(prefix="glide-diskmig.")
    D.MEM = "%dM" % (a.memory // MIB)  # QEMU -m (devices.QemuVM)
    os.makedirs(a.out, exist_ok=True)
    D.LOG = open(os.path.join(a.out, "disk_migrate.log"), "w")
    atexit.register(D.cleanup)
    if not os.environ.get("KEEP"):  # KEEP=1 keeps the VMs' logs and serial output in TMP
        atexit.register(lambda: shutil.rmtree(D.TMP, ignore_errors=True))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    a.glide = os.path.join(a.build, "glide")
    a.abcheck = os.path.join(a.build, "tools", "abcheck")
    a.elf = os.path.join(D.TMP, "diskab.elf")
    D.run([os.path.join(a.build, "tools", "guestcfg"), os.path.abspath(os.path.join(a.build, "guests", "diskab.elf")),
           a.elf, "--block-size", str(a.block_size)], check=True)
    a.key = os.path.join(D.TMP, "key")
    with os.fdopen(os.open(a.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    need = 2 * a.disk_size + 256 * MIB
    st = os.statvfs(a.disk_dir)
    if st.f_bavail * st.f_frsize < need:
        log("not enough room in %s: %s needed" % (a.disk_dir, mib(need)))
        return 2

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = D.loadavg()
    t_start = time.monotonic()
    probe = D.GlideVM(a, "probe")
    try:
        probe.start(None, ["--memory", "64M", "--boot", os.path.join(a.build, "guests", "heartbeat.img")])
        a.khz = float(probe.status()["tsc_khz"])
    finally:
        probe.stop()
    qv = D.run([a.qemu, "--version"]).stdout.splitlines()[0].replace("QEMU emulator version ", "")
    rev = D.run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip() or "unknown"
    dirty = D.run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    meta = dict(command=a.command, started=started, rev=rev + (" (modified)" if dirty else ""), cpu=cpu,
                vendor=vendor, ncpu=os.cpu_count(), kernel=os.uname().release,
                kvm="nested (kvm_pvm)" if os.path.exists("/sys/module/kvm_pvm") else "present", khz=a.khz,
                qemu_version="QEMU " + qv, qemu_short=qv.split()[0], load_start=load_start,
                disk_fs=D.run(["findmnt", "-n", "-o", "FSTYPE", "-T", a.disk_dir]).stdout.strip() or "unknown")
    log("machine: %s (%s), TSC %.0f kHz, QEMU %s -cpu %s; load average %s; disk %s (%s written), memory %s" % (
        cpu, vendor, a.khz, qv, a.cpu, load_start, mib(a.disk_size), mib(a.written), mib(a.memory)))

    results = []
    raw = open(os.path.join(a.out, "runs.jsonl"), "w")
    port = 31000 + os.getpid() % 3000
    for rep in range(a.reps):
        order = a.configs if rep % 2 == 0 else list(reversed(a.configs))
        for cfg in order:
            if time.monotonic() - t_start > a.max_minutes * 60:
                r = {"status": "skipped", "error": "--max-minutes %g reached" % a.max_minutes}
            else:
                t = time.monotonic()
                port = free_port(port + 1)
                try:
                    if cfg == "QEMU":
                        nbd = free_port(port + 1)
                        r = run_qemu(a, rep, port, nbd)
                        port = nbd
                    else:
                        r = run_glide(a, cfg, rep, port)
                except Exception as e:  # a broken run is reported; the benchmark goes on
                    r = {"status": "did not converge" if "did not converge" in str(e) else "failed",
                         "error": "%s: %s" % (type(e).__name__, e)}
                r["run_s"] = round(time.monotonic() - t, 1)
            r.update(config=cfg, rep=rep)
            results.append(r)
            raw.write(json.dumps(r) + "\n")
            raw.flush()
            log("%-12s rep %d: %s" % (cfg, rep + 1, summary(r)))
    meta["elapsed"] = time.monotonic() - t_start
    meta["load_end"] = D.loadavg()
    meta["options"] = {k: getattr(a, k) for k in ("reps", "disk_size", "written", "memory", "configs", "timeout",
                                                  "warmup", "block_size", "disk_dir", "sample", "cpu", "glide_args")}
    md = report(a, results, meta)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "table": TABLE, "runs": results}, f, indent=1)
    print(md)
    log("results in %s (results.md, results.json, runs.jsonl, disk_migrate.log)" % a.out)
    return 0 if any(r["status"] == "completed" for r in results) else 1


def rerender(a):
    with open(os.path.join(a.rerender, "results.json")) as f:
        d = json.load(f)
    meta, results = d["meta"], d["runs"]
    for k, v in meta["options"].items():
        setattr(a, k, v)
    md = report(a, results, meta)
    with open(os.path.join(a.rerender, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.rerender, "results.json"), "w") as f:
        json.dump({"meta": meta, "table": TABLE, "runs": results}, f, indent=1)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
