#!/usr/bin/env python3
"""glide vs QEMU live migration, side by side (issue 6).

Run through bench/compare.sh, which checks the prerequisites. Python 3
standard library only. Every scenario runs against glide and QEMU back to
back on the same test guest (build/guests: the boot-sector guest; in S2 and
S5 the abgap ELF guest, the same A-B loop with a gap log; in S6 the touch
guest), over 127.0.0.1, several repetitions each; results go to
bench/results/ (Markdown table, raw JSON lines, gnuplot data and PNG plots).

Per run it measures:
  total      total migration time as the tool reports it (glide total_ms,
             QEMU query-migrate total-time)
  downtime   stun/downtime as the tool reports it (glide stun_ms, QEMU downtime)
  gstun      guest-observed stun: with a gap log (abgap, touch), the logged gap
             that spans glide's stun_guest_tsc (a guest TSC read while it was
             stunned) or starts at the stopped QEMU source's last loop turn;
             else the heartbeat record's longest gap read on the destination,
             when that gap is the switchover (it is longer than the longest
             gap the source had shown during pre-copy); otherwise the
             switchover gap is at most the pre-copy stall and the figure is
             shown as "<=X"
  stall      the guest's longest stall during the whole migration (throttling
             included): the destination's longest gap, or the pre-migration
             longest gap when nothing during migration was longer (then "<=X")
  bytes      bytes sent (glide bytes_sent, QEMU ram.transferred)
  work       guest work per second during migration as % of before (heartbeat
             iterations per TSC second, read from the source before and
             during migration)
"""
import argparse
import atexit
import http.client
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gaplog  # noqa: E402  (the ELF guests' gap log, shared with bench/devices.py)

HB_ADDR = 0x8000
HB_FMT = "<6Q"  # magic, iterations, last_tsc, max_gap_tsc, max_gap_end_tsc, started_tsc
HB_MAGIC = 0x3142484544494C47
# what a heartbeat read covers: the record, and the gap log of the ELF guests (zeros in the boot sector's)
HB_READ = gaplog.GAPLOG_ADDR - HB_ADDR + 32 + 16 * gaplog.GAPLOG_ENTRIES
MIB = 1 << 20
TOUCH_START = 16 * MIB  # the touch guest fills its memory from here (guests/virtio/touch.c)
ABGAP_START = 16 * MIB  # the abgap guest's A-B range: from 16 MiB, half the RAM (guests/virtio/abgap.c)
TOUCH_TOP_SKIP = 2 * MIB  # not checked: QEMU's ACPI tables sit at the top of RAM, outside the guest's fill
GIB = 1 << 30

PROCS = []
TMP = None
PORT = [30000 + os.getpid() % 20000]
LOG = None


def log(*a):
    msg = " ".join(str(x) for x in a)
    print(msg, file=sys.stderr, flush=True)
    if LOG:
        LOG.write(msg + "\n")
        LOG.flush()


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    PROCS.clear()


def spawn(argv, logfile):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(logfile, "ab"),
                         stderr=subprocess.STDOUT)
    PROCS.append(p)
    return p


def reap(p, timeout=10):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if p in PROCS:
        PROCS.remove(p)


def next_port():
    PORT[0] += 1
    return PORT[0]


def parse_hb(data):
    rec = struct.unpack_from(HB_FMT, data, 0)
    if rec[0] != HB_MAGIC:
        return None
    h = {"iter": rec[1], "tsc": rec[2], "gap": rec[3], "gap_end": rec[4]}
    if len(data) >= HB_READ:
        h["gap_log"] = gaplog.parse_gap_log(data[gaplog.GAPLOG_ADDR - HB_ADDR:])
    return h


# ---------------------------------------------------------------- glide

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def glide_api(sock, method, url, body=None, timeout=5):
    c = UnixHTTP(sock, timeout)
    try:
        c.request(method, url, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        d = r.read()
        return r.status, json.loads(d) if d else None
    finally:
        c.close()


class GlideVM:
    def __init__(self, glide, name):
        self.glide = glide
        self.sock = os.path.join(TMP, name + ".sock")
        self.logf = os.path.join(TMP, name + ".log")
        self.hbfile = os.path.join(TMP, name + ".hb")
        self.proc = None
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def start_source(self, mem, img):
        self.proc = spawn([self.glide, "vm", "run", "--memory", str(mem), "--vcpus", "1",
                           "--elf" if img.endswith(".elf") else "--boot", img, "--api", self.sock], self.logf)
        return self.wait_up()

    def start_dest(self, port, key):
        self.proc = spawn([self.glide, "vm", "run", "--incoming", "127.0.0.1:%d" % port,
                           "--key-file", key, "--api", self.sock], self.logf)
        return self.wait_up()

    def wait_up(self):
        for _ in range(200):
            if self.proc.poll() is not None:
                return False
            try:
                st, _ = glide_api(self.sock, "GET", "/v1/vm", timeout=2)
                if st == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def status(self):
        return glide_api(self.sock, "GET", "/v1/vm")[1]

    def hb(self):
        try:
            st, _ = glide_api(self.sock, "POST", "/v1/vm/memsave",
                              {"addr": HB_ADDR, "size": HB_READ, "path": self.hbfile}, timeout=3)
            if st != 200:
                return None
            with open(self.hbfile, "rb") as f:
                return parse_hb(f.read())
        except (OSError, ValueError, struct.error, http.client.HTTPException):
            return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                glide_api(self.sock, "POST", "/v1/vm/shutdown", {}, timeout=3)
            except (OSError, http.client.HTTPException):
                pass
            reap(self.proc, 5)


# ---------------------------------------------------------------- QEMU

def qmp_connect(path):
    """A socket connected to QEMU's QMP socket at path, waiting (10 s at most) for it to appear."""
    for _ in range(200):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.05)
    raise RuntimeError("QMP socket %s did not come up" % path)


class QMP:
    def __init__(self, path):
        self.s = qmp_connect(path)
        self.s.settimeout(30)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        m = {"execute": name}
        if args:
            m["arguments"] = args
        self.f.write(json.dumps(m) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP closed")
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"].get("desc")))
            return r.get("return")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class QemuVM:
    def __init__(self, qemu, cpu, name):
        self.qemu, self.cpu = qemu, cpu
        self.sock = os.path.join(TMP, name + ".qmp")
        self.logf = os.path.join(TMP, name + ".log")
        self.hbfile = os.path.join(TMP, name + ".hb")
        self.proc = self.qmp = None
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def start(self, mem, img, incoming=False):
        argv = [self.qemu, "-enable-kvm", "-cpu", self.cpu, "-m", "%dM" % (mem // MIB), "-smp", "1",
                "-display", "none", "-nodefaults", "-qmp", "unix:%s,server=on,wait=off" % self.sock]
        # a PVH ELF guest (the touch guest) boots with -kernel, a boot sector from the disk
        argv += ["-kernel", img] if img.endswith(".elf") else ["-drive", "file=%s,format=raw,if=ide" % img]
        if incoming:
            argv += ["-incoming", "defer"]
        self.proc = spawn(argv, self.logf)
        self.qmp = QMP(self.sock)
        return True

    def hb(self):
        try:
            self.qmp.cmd("pmemsave", val=HB_ADDR, size=HB_READ, filename=self.hbfile)
            with open(self.hbfile, "rb") as f:
                return parse_hb(f.read())
        except (OSError, ValueError, RuntimeError, struct.error):
            return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.qmp.cmd("quit")
            except Exception:
                pass
            reap(self.proc, 5)
        if self.qmp:
            self.qmp.close()


# ---------------------------------------------------------------- one run

AB_START = 0x100000  # the A-B images' range (make_images: --range-start 1M)


def check_memory(a, vm, start, size, touch=False):
    """The destination's A-B range (or, touch=True, the touch guest's filled memory) of size bytes from
    guest-physical start, checked page by page (tools/abcheck) once the VM is stopped there: a run whose
    memory is wrong does not count. {"ok": bool, "pages"/"bad_pages"/"error": ...}."""
    dump = os.path.join(TMP, "ab.dump")
    try:
        if isinstance(vm, GlideVM):
            glide_api(vm.sock, "POST", "/v1/vm/pause", {}, timeout=10)
            st, body = glide_api(vm.sock, "POST", "/v1/vm/memsave", {"addr": start, "size": size, "path": dump},
                                 timeout=120)
            if st != 200:
                return {"ok": False, "error": "memsave: %s" % body}
        else:
            vm.qmp.cmd("stop")
            vm.qmp.cmd("pmemsave", val=start, size=size, filename=dump)
        how = ["--touch", str(start)] if touch else ["--parts", "1", "--require-progress"]
        r = subprocess.run([os.path.join(a.build, "tools", "abcheck"), dump] + how + ["--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        try:
            j = json.loads(r.stdout)
        except ValueError:
            return {"ok": False, "error": r.stdout.decode(errors="replace")[-300:]}
        return {"ok": r.returncode == 0 and bool(j.get("ok")), "pages": j.get("pages") if touch else j.get("pages_per_part"),
                "bad_pages": j.get("bad_pages")}
    except (OSError, RuntimeError, subprocess.TimeoutExpired, http.client.HTTPException) as e:
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    finally:
        if os.path.exists(dump):
            os.unlink(dump)


def memory_to_check(img, mem, rng):
    """What the memory check of a run on image img (a VM of mem bytes, A-B range rng bytes) covers:
    (kind "ab" or "touch", start, size), or None (a guest whose memory has no pattern)."""
    if img == "touch":  # up to 2 MiB below the top, where QEMU keeps its ACPI tables, not RAM in its memory map
        return ("touch", TOUCH_START, mem - TOUCH_START - TOUCH_TOP_SKIP)
    if img == "abgap":
        return ("ab", ABGAP_START, rng)
    if img.startswith("ab"):
        return ("ab", AB_START, rng)
    return None


def verified(a, res, vm, check):
    """After a completed run on an A-B or the touch guest (check: memory_to_check's answer): the memory
    check decides whether it counts."""
    if not check:
        return res
    kind, start, size = check
    res["memory_check"] = check_memory(a, vm, start, size, kind == "touch")
    if not res["memory_check"]["ok"]:
        res["status"] = "memory wrong"
        res["error"] = "%s check on the destination: %s" % ("touch" if kind == "touch" else "A-B",
                                                            res["memory_check"])
    return res


def warm_up(vm, range_pages, limit_s=40):
    """Wait until the guest runs and (A-B/workload) has touched its whole range once."""
    t0 = time.monotonic()
    h = None
    while time.monotonic() - t0 < limit_s:
        h = vm.hb()
        if h and h["iter"] > max(range_pages, 1000) + 1000:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    return h is not None


def guest_figures(khz, b1, b2, samples, final_src, dest):
    """Derive rates and stalls from heartbeat reads (see module docstring)."""
    out = {}
    ms = lambda cyc: cyc / khz
    if b1 and b2 and b2["tsc"] > b1["tsc"]:
        out["rate_before"] = (b2["iter"] - b1["iter"]) / ((b2["tsc"] - b1["tsc"]) / (khz * 1000.0))
    end = final_src or (samples[-1] if samples else None)
    if b2 and end and end["tsc"] > b2["tsc"] + khz * 50 and out.get("rate_before"):
        rd = (end["iter"] - b2["iter"]) / ((end["tsc"] - b2["tsc"]) / (khz * 1000.0))
        out["work_pct"] = 100.0 * rd / out["rate_before"]
    gap_before = b2["gap"] if b2 else 0
    src_gap = max([s["gap"] for s in samples + ([final_src] if final_src else [])] + [gap_before])
    if dest:
        if dest["gap"] > src_gap:
            out["gstun"] = ms(dest["gap"])
        else:
            out["gstun"] = ms(src_gap)
            out["gstun_ub"] = True
        if dest["gap"] > gap_before:
            out["stall"] = ms(dest["gap"])
        else:
            out["stall"] = ms(gap_before)
            out["stall_ub"] = True
    out["gap_before_ms"] = ms(gap_before)
    return out


def read_dest(vm, src_last):
    """Read the destination heartbeat once the guest has iterated there."""
    last = None
    for _ in range(30):
        h = vm.hb()
        if h and src_last and h["tsc"] > src_last["tsc"] and h["iter"] > src_last["iter"]:
            if last and h["iter"] > last["iter"]:
                return h
            last = h
        time.sleep(0.1)
    return last


def run_glide(a, khz, mem, img, range_pages, opts, timeout_s, check=None):
    port = next_port()
    src, dst = GlideVM(a.glide, "gsrc"), GlideVM(a.glide, "gdst")
    res = {"status": "failed"}
    try:
        if not src.start_source(mem, img) or not dst.start_dest(port, a.key):
            res["error"] = "start failed"
            return res
        warm_up(src, range_pages)
        b1 = src.hb()
        time.sleep(0.5)
        b2 = src.hb()
        argv = [a.glide, "migrate", "--api", src.sock, "--to", "127.0.0.1:%d" % port,
                "--key-file", a.key, "--json", "--timeout", str(timeout_s)] + opts
        outf = os.path.join(TMP, "gmig.json")
        mp = subprocess.Popen(argv, stdout=open(outf, "wb"), stderr=subprocess.DEVNULL)
        PROCS.append(mp)
        samples = []
        t0 = time.monotonic()
        while mp.poll() is None and time.monotonic() - t0 < timeout_s + 30:
            time.sleep(a.sample)
            if mp.poll() is not None:
                break
            h = src.hb()
            if h and mp.poll() is None:
                samples.append(h)
        reap(mp, 5)
        try:
            with open(outf) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"status": "failed", "error": "no JSON from glide migrate"}
        res["raw"] = r
        if r.get("status") != "completed":
            err = str(r.get("error", ""))
            res["status"] = "did not converge" if "did not converge" in err else "failed"
            res["error"] = err
            res["total"] = (time.monotonic() - t0) * 1000
            res["bytes"] = r.get("bytes_sent")
            res.update({k: v for k, v in guest_figures(khz, b1, b2, samples, None, None).items()
                        if k in ("rate_before", "work_pct")})
            return res
        dest = read_dest(dst, samples[-1] if samples else b2)
        res.update(status="completed", total=r["total_ms"], downtime=r["stun_ms"], bytes=r["bytes_sent"],
                   streams=r.get("streams"), sdps_max_level=(r.get("sdps") or {}).get("max_level"),
                   sdps_guest_ms=(r.get("sdps") or {}).get("guest_time_ms"),
                   phases=len(r.get("phases") or []),
                   sdps_longest_stall_ms=(r.get("sdps") or {}).get("longest_stall_ms"),
                   stun_retries=len(r.get("stun_retries") or []))
        res.update(guest_figures(khz, b1, b2, samples, None, dest))
        gaplog.exact_stun(khz, res, dest, r.get("stun_guest_tsc"))  # a guest with a gap log: the stun's own gap
        return verified(a, res, dst, check)
    finally:
        dst.stop()
        src.stop()
        cleanup()


def run_qemu(a, khz, mem, img, range_pages, params, caps, timeout_s, check=None):
    port = next_port()
    src, dst = QemuVM(a.qemu, a.cpu, "qsrc"), QemuVM(a.qemu, a.cpu, "qdst")
    res = {"status": "failed"}
    try:
        src.start(mem, img)
        dst.start(mem, img, incoming=True)
        capl = [{"capability": c, "state": True} for c in caps]
        for vm in (src, dst):
            if capl:
                vm.qmp.cmd("migrate-set-capabilities", capabilities=capl)
            vm.qmp.cmd("migrate-set-parameters", **params)
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        warm_up(src, range_pages)
        b1 = src.hb()
        time.sleep(0.5)
        b2 = src.hb()
        t0 = time.monotonic()
        src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        samples, q = [], {}
        max_throttle = 0
        while time.monotonic() - t0 < timeout_s:
            time.sleep(a.sample)
            q = src.qmp.cmd("query-migrate")
            if q.get("status") in ("completed", "failed", "cancelled"):
                break
            max_throttle = max(max_throttle, q.get("cpu-throttle-percentage", 0))
            h = src.hb()
            if h:
                q2 = src.qmp.cmd("query-migrate")
                if q2.get("status") == "active":
                    samples.append(h)
        st = q.get("status")
        res["raw"] = q
        res["max_throttle_pct"] = max_throttle
        if st != "completed":
            if st in ("active", "device", "pre-switchover", "setup"):
                try:
                    src.qmp.cmd("migrate_cancel")
                except RuntimeError:
                    pass
                q = src.qmp.cmd("query-migrate")
                res["status"] = "did not converge"
                res["error"] = "not converged within %d s" % timeout_s
            else:
                res["error"] = "QEMU status %s: %s" % (st, q.get("error-desc", ""))
            res["total"] = (time.monotonic() - t0) * 1000
            res["bytes"] = (q.get("ram") or {}).get("transferred")
            res.update({k: v for k, v in guest_figures(khz, b1, b2, samples, None, None).items()
                        if k in ("rate_before", "work_pct")})
            return res
        final_src = src.hb()  # source is stopped (postmigrate): its record as of the switchover
        dest = read_dest(dst, final_src or (samples[-1] if samples else b2))
        res.update(status="completed", total=q.get("total-time"), downtime=q.get("downtime"),
                   bytes=(q.get("ram") or {}).get("transferred"), setup_ms=q.get("setup-time"))
        res.update(guest_figures(khz, b1, b2, samples, final_src, dest))
        # a guest with a gap log: the gap that starts at the stopped source's last loop turn (0.1 ms slack)
        gaplog.exact_stun(khz, res, dest, final_src and final_src["tsc"], 0.1)
        return verified(a, res, dst, check)
    finally:
        dst.stop()
        src.stop()
        cleanup()


# ---------------------------------------------------------------- scenarios

def glide_cfg(label, opts):
    return ("glide", label, opts)


def scenarios(a):
    goal = str(a.downtime)
    unl = 100 * 1000 ** 3  # QEMU "unlimited": 100 GB/s
    qparams = {"downtime-limit": a.downtime, "max-bandwidth": unl}
    st = ["--streams", a.glide_streams]
    G_PLAIN = ["--encrypt", "off", "--switchover-goal", goal]
    G_ENC = ["--switchover-goal", goal] + st
    G_LZ4 = ["--encrypt", "off", "--compress", "lz4", "--switchover-goal", goal] + st
    base = [("qemu", "QEMU", (qparams, [])),
            ("glide", "glide plain", G_PLAIN + st),
            ("glide", "glide encrypted", G_ENC)]
    q = a.quick
    sc = []
    # 1 idle
    sizes = [1, 4] if q else [1, 4, 16]
    sc.append(dict(id=1, name="idle", title="Idle, mostly-zero guest (heartbeat)", xlabel="GiB",
                   points=[(s, s * GIB, "heartbeat", 0) for s in sizes], configs=base, timeout=a.timeout))
    # 2 A-B unlimited
    # the abgap guest (A-B over half its RAM, with a gap log): its switchover's own gap is found even under
    # longer stalls in pre-copy, where the boot-sector guest's largest-gap record only bounded it
    pts = [("256M", 256 * MIB, "abgap", 128 * MIB)]
    if not q:
        pts.append(("2G", 2 * GIB, "abgap", GIB))
    # glide with its own defaults (switchover goal 10 ms, SDPS dynamic) against QEMU's defaults
    # (downtime-limit 300 ms, no auto-converge) and QEMU with auto-converge: each side's convergence named
    cfg2 = [("qemu", "QEMU", (qparams, [])),
            ("qemu", "QEMU auto-converge", (qparams, ["auto-converge"])),
            ("glide", "glide plain, defaults (SDPS dynamic)", ["--encrypt", "off"] + st),
            ("glide", "glide encrypted, defaults (SDPS dynamic)", st),
            # the default goal (10 ms) against the earlier one (30 ms): time, bytes, guest work
            ("glide", "glide plain, goal 30 ms (SDPS dynamic)", ["--encrypt", "off", "--switchover-goal", "30"] + st)] + \
        ([] if q else [("glide", "glide plain+lz4", G_LZ4)])
    sc.append(dict(id=2, name="dirty", title="Dirtying A-B guest, unlimited bandwidth", xlabel="VM",
                   points=[(n, m, img, r) for n, m, img, r in pts], configs=cfg2, timeout=a.timeout))
    # 3 50 MiB/s cap
    cap = 50 * MIB
    qcap = {"downtime-limit": a.downtime, "max-bandwidth": cap}
    cfg3 = [("qemu", "QEMU default", (qcap, [])),
            ("qemu", "QEMU auto-converge", (qcap, ["auto-converge"])),
            ("glide", "glide SDPS dynamic (plain)", G_PLAIN + ["--streams", "1", "--max-bandwidth", str(cap), "--sdps", "dynamic"]),
            # glide's own defaults (switchover goal 10 ms: the whole migration under 10 ms stalls), and the earlier
            # default, 30 ms
            ("glide", "glide plain, defaults (SDPS dynamic)", ["--encrypt", "off", "--streams", "1", "--max-bandwidth", str(cap)]),
            ("glide", "glide plain, goal 30 ms (SDPS dynamic)", ["--encrypt", "off", "--streams", "1", "--max-bandwidth", str(cap),
                                                             "--switchover-goal", "30"])]
    sc.append(dict(id=3, name="capped", title="Dirtying A-B guest (128 MiB range), 512 MiB, capped at 50 MiB/s",
                   xlabel="VM", points=[("512M", 512 * MIB, "ab128", 128 * MIB)], configs=cfg3,
                   timeout=a.cap_timeout))
    # 4 stun vs size, small dirty set
    sizes = [1, 4] if q else [1, 2, 4, 8, 16]
    sc.append(dict(id=4, name="stun", title="Stun vs VM size, 8 MiB dirty set (workload guest, 10000 writes/s)",
                   xlabel="GiB", points=[(s, s * GIB, "wl8", 8 * MIB) for s in sizes], configs=base[:2],
                   timeout=a.timeout))
    # 5 streams
    ns = [1, 4] if q else [1, 2, 4]
    cfg5 = []
    for n in ns:
        cfg5.append(("qemu", "QEMU multifd %d" % n,
                     (dict(qparams, **{"multifd-channels": n}), ["multifd"])))
    for n in ns:
        cfg5.append(("glide", "glide plain %d streams" % n, G_PLAIN + ["--streams", str(n)]))
    # glide's default (auto: pass -1 chooses): ever slower than the best fixed count?
    cfg5.append(("glide", "glide plain auto streams", G_PLAIN + ["--streams", "auto"]))
    pt5 = ("256M", 256 * MIB, "abgap", 128 * MIB)
    sc.append(dict(id=5, name="streams", title="Streams: A-B guest %s, unlimited bandwidth" % pt5[0],
                   xlabel="VM", points=[pt5], configs=cfg5, timeout=a.timeout))
    # 6 idle but touched: every page holds data, nothing is dirtied during the migration
    sizes6 = [("1G", GIB)] if q else [("1G", GIB), ("2G", 2 * GIB)]
    sc.append(dict(id=6, name="touched", title="Idle but touched: touch guest (all memory from 16 MiB filled once, "
                   "incompressible), then idle", xlabel="VM",
                   points=[(n, m, "touch", 0) for n, m in sizes6],
                   configs=base, timeout=a.timeout))
    sc = [s for s in sc if not a.only or s["id"] in a.only]
    if a.configs:  # only the configurations whose label holds one of these words
        for s in sc:
            s["configs"] = [c for c in s["configs"] if any(w in c[1] for w in a.configs)]
    return [s for s in sc if s["configs"]]


def make_images(a):
    imgs = {}
    cfg = os.path.join(a.build, "tools", "guestcfg")
    base = os.path.join(a.build, "guests", "guest.img")
    specs = {"heartbeat": ["--mode", "heartbeat", "--range-start", "1M", "--range-size", "4K"],
             "ab128": ["--mode", "ab", "--range-start", "1M", "--range-size", "128M"],
             "wl8": ["--mode", "workload", "--range-start", "1M", "--range-size", "8M", "--write-rate", "10000"]}
    for k, v in specs.items():
        out = os.path.join(TMP, k + ".img")
        subprocess.run([cfg, base, out] + v, check=True, stdout=subprocess.DEVNULL)
        imgs[k] = out
    imgs["touch"] = os.path.join(a.build, "guests", "touch.elf")  # PVH ELF: fills its memory once, then idles
    imgs["abgap"] = os.path.join(a.build, "guests", "abgap.elf")  # PVH ELF: A-B over half its RAM, with a gap log
    return imgs


def tsc_khz(a, img):
    vm = GlideVM(a.glide, "probe")
    try:
        if vm.start_source(64 * MIB, img):
            k = vm.status().get("tsc_khz")
            if k:
                return float(k)
    finally:
        vm.stop()
        cleanup()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1000
    raise RuntimeError("no TSC rate")


# ---------------------------------------------------------------- report

def med(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    return statistics.median(v), v[0], v[-1]


def fmt(m, unit="", scale=1.0, prec=0, ub=False):
    if m is None:
        return "-"
    f = "%%.%df" % prec
    s = (f % (m[0] / scale))
    if m[1] != m[2]:
        s += " (" + f % (m[1] / scale) + "-" + f % (m[2] / scale) + ")"
    return ("<=" if ub else "") + s + unit


def summarize(runs):
    done = [r for r in runs if r["status"] == "completed"]
    s = {"n": len(runs), "ok": len(done)}
    for k in ("total", "downtime", "gstun", "stall", "bytes", "work_pct"):
        s[k] = med([r.get(k) for r in done])
    s["gstun_ub"] = any(r.get("gstun_ub") for r in done)
    s["stall_ub"] = any(r.get("stall_ub") for r in done)
    s["fail_work"] = med([r.get("work_pct") for r in runs if r["status"] != "completed"])
    s["fail_bytes"] = med([r.get("bytes") for r in runs if r["status"] != "completed"])
    s["statuses"] = sorted(set(r["status"] for r in runs))
    s["sdps"] = med([r.get("sdps_max_level") for r in done])
    s["sdps_stall"] = med([r.get("sdps_longest_stall_ms") for r in done])
    s["throttle"] = med([r.get("max_throttle_pct") for r in runs if r.get("max_throttle_pct") is not None])
    s["rate"] = med([r["bytes"] / (r["total"] / 1000.0) for r in done if r.get("bytes") and r.get("total")])
    return s


# The machine's limits, measured at the start of the run (tools/linkrate): {"tcp_loopback_bytes_per_s", ...}
LIMITS = None


def fmt_rate(m):
    """MB/s sent over the whole migration, and its share of one loopback TCP connection's rate."""
    if m is None:
        return "-"
    s = fmt(m, "", 1e6, 0)
    tcp = (LIMITS or {}).get("tcp_loopback_bytes_per_s")
    if tcp:
        s += " (%.0f%%)" % (100.0 * m[0] / tcp)
    return s


def table_rows(sc, results):
    rows = []
    for (pname, _, _, _) in sc["points"]:
        for (_, label, _) in sc["configs"]:
            runs = results.get((sc["id"], str(pname), label), [])
            if not runs:
                continue
            s = summarize(runs)
            conv = "%d/%d" % (s["ok"], s["n"])
            if s["ok"] == 0:
                stat = ", ".join(s["statuses"])
                rows.append("| %s | %s | %s (%s) | - | - | - | - | %s | - | %s |" % (
                    pname, label, conv, stat,
                    fmt(s["fail_bytes"], "", MIB, 0) + " MiB in the limit" if s["fail_bytes"] else "-",
                    fmt(s["fail_work"], "%")))
                continue
            extra = ""
            if s["sdps"] and s["sdps"][0]:
                extra = " (SDPS max level %s, longest SDPS sleep %s ms)" % (fmt(s["sdps"], "", 1, 2),
                                                                           fmt(s["sdps_stall"], "", 1, 1))
            if s["throttle"] and s["throttle"][0]:
                extra = " (throttle up to %s%%)" % fmt(s["throttle"])
            rows.append("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                pname, label, extra, conv, fmt(s["total"]), fmt(s["downtime"]),
                fmt(s["gstun"], ub=s["gstun_ub"]), fmt(s["stall"], ub=s["stall_ub"]),
                fmt(s["bytes"], "", MIB, 0), fmt_rate(s["rate"]), fmt(s["work_pct"], "%")))
    return rows


HEADER = ("| VM | configuration | completed | total ms | downtime ms (tool) | guest-observed stun ms "
          "| longest guest stall ms | MiB sent | MB/s sent (% of loopback TCP) | guest work during (% of before) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def ratio_lines(sc, results):
    """glide plain (or SDPS) vs QEMU ratios on total time and guest-observed stun."""
    lines = []
    pairs = {1: ("QEMU", "glide plain"), 4: ("QEMU", "glide plain"), 6: ("QEMU", "glide plain"),
             }
    if sc["id"] == 2:  # glide's defaults against QEMU's, and against QEMU with auto-converge
        pl = [("QEMU", "glide plain, defaults (SDPS dynamic)"),
              ("QEMU auto-converge", "glide plain, defaults (SDPS dynamic)")]
    elif sc["id"] == 3:
        pl = [("QEMU auto-converge", c[1]) for c in sc["configs"] if c[0] == "glide"]
    elif sc["id"] == 5:
        pl = [(c[1], c[1].replace("QEMU multifd", "glide plain") + " streams") for c in sc["configs"]
              if c[1].startswith("QEMU")]
    elif sc["id"] in pairs:
        pl = [pairs[sc["id"]]]
    else:
        return lines
    for (pname, _, _, _) in sc["points"]:
        for ql, gl in pl:
            q = results.get((sc["id"], str(pname), ql))
            g = results.get((sc["id"], str(pname), gl))
            if not q or not g:
                continue
            qs, gs = summarize(q), summarize(g)
            parts = []
            for k, name in (("total", "total time"), ("gstun", "guest-observed stun"), ("bytes", "bytes")):
                if qs[k] and gs[k] and gs[k][0] > 0:
                    rt = qs[k][0] / gs[k][0]
                    qub, gub = qs.get(k + "_ub"), gs.get(k + "_ub")
                    if qub and gub:
                        parts.append("%s n/a (both only bounded: <=%.0f / <=%.0f ms)" % (name, qs[k][0], gs[k][0]))
                    elif gub:
                        parts.append("%s >=%.2fx" % (name, rt))
                    elif qub:
                        parts.append("%s <=%.2fx" % (name, rt))
                    else:
                        parts.append("%s %.2fx" % (name, rt))
            if parts:
                lines.append("- %s, %s vs %s: QEMU/glide %s (above 1: glide ahead)" % (
                    pname, gl, ql, ", ".join(parts)))
            elif gs["ok"] and not qs["ok"]:
                lines.append("- %s: %s converged (%d/%d), %s did not (0/%d)" % (pname, gl, gs["ok"], gs["n"], ql, qs["n"]))
    return lines


def plots(a, scs, results):
    pngs = []
    for sc in scs:
        base = os.path.join(a.out, "s%d-%s" % (sc["id"], sc["name"]))
        labels = [c[1] for c in sc["configs"]
                  if any(summarize(results.get((sc["id"], str(pt[0]), c[1]), []))["ok"] for pt in sc["points"])]
        if not labels:
            continue
        for metric, ylab in (("total", "total migration time (ms)"), ("downtime", "downtime as the tool reports it (ms)"),
                             ("gstun", "guest-observed stun (ms, upper bound where marked <= in the table)")):
            dat = base + "-" + metric + ".dat"
            with open(dat, "w") as f:
                f.write("# point " + " ".join('"%s" min max' % l for l in labels) + "\n")
                for (pname, _, _, _) in sc["points"]:
                    row = ['"%s"' % pname]
                    for l in labels:
                        runs = results.get((sc["id"], str(pname), l), [])
                        m = summarize(runs)[metric] if runs else None
                        row += ["%.3f %.3f %.3f" % m if m else "NaN NaN NaN"]
                    f.write(" ".join(row) + "\n")
            png = base + "-" + metric + ".png"
            n = len(labels)
            gp = ['set terminal pngcairo size 900,480 font ",10"' if a.pngcairo else 'set terminal png size 900,480',
                  'set output "%s"' % png,
                  'set title "S%d: %s"' % (sc["id"], sc["title"].replace('"', "'")),
                  'set ylabel "%s"' % ylab, 'set xlabel "%s"' % sc["xlabel"],
                  'set style data histogram', 'set style histogram errorbars gap 1 lw 1',
                  'set style fill solid 0.6 border -1', 'set key outside right top vertical',
                  'set yrange [0:*]', 'set grid ytics']
            cols = []
            for i, l in enumerate(labels):
                c = 2 + 3 * i
                cols.append('"%s" using %d:%d:%d:xtic(1) title "%s"' % (dat, c, c + 1, c + 2, l))
            gp.append("plot " + ", ".join(cols))
            r = subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode == 0 and os.path.exists(png) and os.path.getsize(png) > 0:
                pngs.append(png)
            else:
                if os.path.exists(png):
                    os.unlink(png)
                log("gnuplot failed for %s: %s" % (png, r.stderr.strip()[:300]))
    return pngs


def limits_line():
    if not LIMITS:
        return "- the machine's limits: not measured (tools/linkrate missing or failed)"
    fresh = ""
    if "tcp_into_fresh_memory_bytes_per_s" in LIMITS:
        fresh = (", the same connection received into memory never touched before (a destination's phase -1) "
                 "%.2f GB/s (%.0f%% of it), first touch of fresh memory alone %.2f GB/s" % (
                     LIMITS["tcp_into_fresh_memory_bytes_per_s"] / 1e9,
                     100 * LIMITS["tcp_into_fresh_memory_bytes_per_s"] / LIMITS["tcp_loopback_bytes_per_s"],
                     LIMITS["first_touch_bytes_per_s"] / 1e9))
    return ("- the machine's limits, measured at the start (`tools/linkrate`, 1 s each): one TCP connection over "
            "127.0.0.1 %.2f GB/s (1 MiB writes)%s, memcpy %.2f GB/s; \"MB/s sent\" is the MiB sent over the total "
            "time, beside its share of the loopback TCP rate" % (LIMITS["tcp_loopback_bytes_per_s"] / 1e9, fresh,
                                                                 LIMITS["memcpy_bytes_per_s"] / 1e9))


def measure_limits(a):
    """The machine's loopback TCP and memcpy rates (tools/linkrate), or None."""
    try:
        out = subprocess.run([os.path.join(a.build, "tools", "linkrate"), "--seconds", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=30)
        if out.returncode == 0:
            return json.loads(out.stdout)
        log("linkrate failed: %s" % out.stderr.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        log("linkrate failed: %s" % e)
    return None


def report(a, scs, results, khz, started, elapsed):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memg = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    qv = subprocess.run([a.qemu, "--version"], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]
    rev = os.environ.get("GLIDE_REV") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.DEVNULL).stdout.strip() or "unknown"
    L = ["# glide vs QEMU: live migration benchmark", "",
         "- command: `%s`" % a.command,
         "- started %s, took %.1f min; glide %s (git %s); %s" % (started, elapsed / 60, a.glide, rev, qv),
         "- machine: %s, %d CPUs, %.0f GiB RAM, kernel %s; TSC %.0f kHz; /dev/kvm: %s" % (
             cpu, os.cpu_count(), memg, os.uname().release, khz, a.kvm_note),
         limits_line(),
         "- every figure: median (min-max) over %d repetitions; all traffic on 127.0.0.1; 1 vCPU "
         "(QEMU boots the boot sector through SeaBIOS, which starts only the BSP; the ELF guests with -kernel)"
         % a.reps,
         "- guests: S2 and S5 the abgap guest (the A-B loop with a gap log: the guest-observed stun is the "
         "switchover's own gap, \"<=\" only where it was not logged), S6 the touch guest, the others the "
         "boot-sector guest (guests/, docs/guests.md)",
         "- QEMU: `-enable-kvm -cpu %s -smp 1 -nodefaults`, TCP migration driven by QMP, downtime-limit %d ms, "
         "max-bandwidth 100 GB/s (\"unlimited\") unless capped; auto-converge and multifd only where named"
         % (a.cpu, a.downtime),
         "- glide: `--switchover-goal %d --streams %s` (S2: glide's own defaults instead, switchover goal 10 ms "
         "and SDPS dynamic, rows \"defaults (SDPS dynamic)\", and the earlier default goal, 30 ms; S3: one stream, "
         "as glide picks under a cap, with goal 300 ms, its defaults (10 ms) and 30 ms as named; S5: as "
         "named); \"plain\" = `--encrypt off` (like QEMU's TCP migration), "
         "\"encrypted\" = glide's default (AES-256-GCM); \"lz4\" = `--compress lz4`" % (a.downtime, a.glide_streams),
         "- memory checked after every A-B run, both tools: the destination stopped, its A-B range checked page by "
         "page (`tools/abcheck --require-progress`); %d of %d checked runs clean (a run whose memory is wrong "
         "counts as \"memory wrong\", not completed)" % (
             sum(1 for rs in results.values() for r in rs if (r.get("memory_check") or {}).get("ok")),
             sum(1 for rs in results.values() for r in rs if r.get("memory_check"))),
         "- a run that does not complete within its limit (%d s; %d s when capped) is cancelled and counted "
         "as not completed" % (a.timeout, a.cap_timeout),
         "- guest-observed stun and longest stall come from the guest's own heartbeat record (same guest code "
         "for both tools); \"<=X\": that gap was not longer than a stall already seen before the switchover, "
         "so only the upper bound is known", ""]
    for sc in scs:
        L += ["## S%d: %s" % (sc["id"], sc["title"]), "", HEADER]
        L += table_rows(sc, results)
        rl = ratio_lines(sc, results)
        if rl:
            L += [""] + rl
        L.append("")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--configs", type=lambda s: [w for w in s.split(",") if w], default=None,
                    help="comma-separated words: only the configurations whose label holds one (e.g. 'auto,4 streams')")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--cap-timeout", type=int, default=60)
    ap.add_argument("--downtime", type=int, default=300)
    ap.add_argument("--glide-streams", default="auto",
                    help="glide --streams outside S3 and S5 (default auto, glide's own default)")
    ap.add_argument("--sample", type=float, default=0.1)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--cpu", default="host,-arch-capabilities")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--rerender", metavar="DIR",
                    help="only rebuild results.md and the plots from DIR/runs.jsonl and DIR/meta.json")
    a = ap.parse_args()
    if a.rerender:
        return rerender(a)
    if a.quick and a.reps == 3:
        a.reps = 1
    a.glide = os.path.join(a.build, "glide")
    a.pngcairo = "pngcairo" in subprocess.run(["gnuplot", "-e", "set terminal"], stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True).stdout
    a.kvm_note = "nested (kvm_pvm)" if os.path.exists("/sys/module/kvm_pvm") else "present"

    global TMP, LOG
    TMP = tempfile.mkdtemp(prefix="glide-compare.")
    os.makedirs(a.out, exist_ok=True)
    LOG = open(os.path.join(a.out, "compare.log"), "w")
    atexit.register(cleanup)
    if not os.environ.get("KEEP"):  # KEEP=1 keeps the per-run logs in TMP for diagnosis
        atexit.register(lambda: __import__("shutil").rmtree(TMP, ignore_errors=True))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    a.key = os.path.join(TMP, "key")
    with os.fdopen(os.open(a.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")  # owner-only: glide refuses a key others can read
    imgs = make_images(a)
    khz = tsc_khz(a, imgs["heartbeat"])
    global LIMITS
    LIMITS = measure_limits(a)
    if LIMITS:
        log("limits: loopback TCP %.2f GB/s, memcpy %.2f GB/s" % (LIMITS["tcp_loopback_bytes_per_s"] / 1e9,
                                                                  LIMITS["memcpy_bytes_per_s"] / 1e9))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t_start = time.monotonic()
    scs = scenarios(a)
    results = {}
    raw = open(os.path.join(a.out, "runs.jsonl"), "w")
    for sc in scs:
        log("== S%d %s" % (sc["id"], sc["title"]))
        for (pname, mem, img, rng) in sc["points"]:
            for rep in range(a.reps):
                for (tool, label, cfg) in sc["configs"]:  # back to back: both tools in every repetition
                    t = time.monotonic()
                    try:
                        ab = memory_to_check(img, mem, rng)  # A-B and touch guests: memory checked after the run
                        if tool == "glide":
                            r = run_glide(a, khz, mem, imgs[img], rng // 4096, cfg, sc["timeout"], ab)
                        else:
                            r = run_qemu(a, khz, mem, imgs[img], rng // 4096, cfg[0], cfg[1], sc["timeout"], ab)
                    except Exception as e:  # a broken run is reported, the benchmark goes on
                        r = {"status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
                        cleanup()
                    r.update(scenario=sc["id"], point=str(pname), config=label, rep=rep)
                    results.setdefault((sc["id"], str(pname), label), []).append(r)
                    rr = {k: v for k, v in r.items() if k != "raw"}
                    raw.write(json.dumps(dict(rr, raw=r.get("raw"))) + "\n")
                    raw.flush()
                    log("  %s %s rep %d: %s total=%s down=%s gstun=%s%s stall=%s bytes=%s work=%s (%.1f s)%s" % (
                        pname, label, rep + 1, r["status"], r.get("total"), r.get("downtime"),
                        "<=" if r.get("gstun_ub") else "", r.get("gstun") and round(r["gstun"], 1),
                        r.get("stall") and round(r["stall"], 1), r.get("bytes"),
                        r.get("work_pct") and round(r["work_pct"], 1), time.monotonic() - t,
                        (" error: " + str(r.get("error"))) if r.get("error") else ""))
    elapsed = time.monotonic() - t_start
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump({"khz": khz, "started": started, "elapsed": elapsed, "command": a.command, "reps": a.reps,
                   "quick": a.quick, "only": a.only, "configs": a.configs, "rev": os.environ.get("GLIDE_REV"), "timeout": a.timeout,
                   "cap_timeout": a.cap_timeout, "downtime": a.downtime, "glide_streams": a.glide_streams,
                   "cpu": a.cpu, "limits": LIMITS}, f)
    finish(a, scs, results, khz, started, elapsed)


def rerender(a):
    with open(os.path.join(a.rerender, "meta.json")) as f:
        m = json.load(f)
    for k in ("command", "reps", "quick", "only", "configs", "timeout", "cap_timeout", "downtime", "glide_streams", "cpu"):
        setattr(a, k, m.get(k))
    if m.get("rev"):
        os.environ["GLIDE_REV"] = m["rev"]
    global LIMITS
    LIMITS = m.get("limits")
    a.out = a.rerender
    a.glide = os.path.join(a.build, "glide")
    a.pngcairo = "pngcairo" in subprocess.run(["gnuplot", "-e", "set terminal"], stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True).stdout
    a.kvm_note = "nested (kvm_pvm)" if os.path.exists("/sys/module/kvm_pvm") else "present"
    results = {}
    with open(os.path.join(a.out, "runs.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            results.setdefault((r["scenario"], r["point"], r["config"]), []).append(r)
    finish(a, scenarios(a), results, m["khz"], m["started"], m["elapsed"])


def finish(a, scs, results, khz, started, elapsed):
    md = report(a, scs, results, khz, started, elapsed)
    pngs = plots(a, scs, results)
    md += "\n## Plots\n\n" + "\n".join("![%s](%s)" % (os.path.basename(p), os.path.basename(p)) for p in pngs) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    log("results in %s (results.md, runs.jsonl, *.png)" % a.out)


if __name__ == "__main__":
    main()
