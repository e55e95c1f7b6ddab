#!/usr/bin/env python3
"""glide's virtio devices against QEMU 7.2: same guests, same machine, one run.

Run through bench/devices.sh, which checks the prerequisites (root, ip,
ping, a C compiler, qemu-system-x86_64, /dev/kvm, /dev/net/tun). Python 3
standard library only. Every measurement runs against glide and QEMU in
turn, N repetitions (the order of the two tools alternates from one
repetition to the next), on the virtio test guests of docs/guests.md:

  net      netecho behind a tap on host A's bridge; from the client
           namespace: UDP echo round trips per second with 1 and with K
           datagrams in flight (bench/udp_rr.c, a fixed duration) and ICMP
           ping latency (p50/p99 of `ping -i 0.001 -c N`)
  disk     diskab on a zero-filled raw file: block writes per second over a
           fixed interval (the guest's heartbeat record: iterations = writes
           completed, timed by the guest's TSC), with a flush every 256
           writes (the guest's default) and with flushes off
  migrate  netecho migrates from host A to host B while the client pings it
           every 1 ms: pings lost, the largest gap between two replies, the
           tool's downtime/stun, the guest-observed stun (heartbeat record)

Network namespaces play the hosts and the network (the topology of
tests/test_net_migrate.sh): a switch namespace with a bridge joins host A's
bridge, host B's bridge and a client namespace (veth pairs); a veth pair
between A and B carries the migration. Nothing leaves the namespaces, which
are deleted at the end, as every process started here is stopped.
"""
import argparse
import atexit
import json
import os
import re
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import QMP, glide_api  # noqa: E402  (one QMP client and one glide API client for the benches)
from gaplog import GAPLOG_ADDR, GAPLOG_ENTRIES, exact_stun, parse_gap_log, switchover_gap  # noqa: E402,F401

HB_ADDR, STATS_ADDR = 0x8000, 0x9000
HB_MAGIC, STATS_MAGIC = 0x3142484544494C47, 0x3153564544494C47
MAC = "52:54:00:77:00:02"
GUEST_IP = "10.77.0.2"
MEM = "128M"
VM_LIMIT_S = 600  # no VM of this bench lives longer: `timeout` stops it even if this script is killed

PROCS = []
TMP = None
LOG = None
NET = None


def log(*a):
    msg = " ".join(str(x) for x in a)
    print(msg, file=sys.stderr, flush=True)
    if LOG:
        LOG.write(time.strftime("%H:%M:%S ") + msg + "\n")
        LOG.flush()


def run(argv, ns=None, timeout=30, check=False):
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stdout.strip()[-300:]))
    return r


def spawn(argv, logfile, ns=None, limit=VM_LIMIT_S, stdout=None):
    """A background process (in namespace ns), stopped at exit; `timeout` bounds its life."""
    full = ["timeout", "-k", "5", str(limit)] + argv
    if ns:
        full = ["ip", "netns", "exec", ns] + full  # ip execs timeout: the Popen pid is timeout's
    with open(logfile, "ab") as lf:  # the child keeps its own descriptor
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else lf,
                             stderr=lf if stdout is not None else subprocess.STDOUT)
    PROCS.append(p)
    return p


def stop_proc(p, grace=5):
    """SIGTERM (timeout passes it on), then SIGKILL to timeout and its child."""
    if p.poll() is None:
        child = None
        try:
            with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                c = f.read().split()
                child = int(c[0]) if c else None
        except (OSError, ValueError):
            pass
        try:
            p.terminate()
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            for pid in (child, p.pid):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    if p in PROCS:
        PROCS.remove(p)


def cleanup():
    for p in list(PROCS):
        stop_proc(p, grace=3)
    if NET:
        NET.delete()


def vmm_pid(p):
    """The VMM's pid: the child of `timeout`."""
    try:
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def threads_cpu(pid):
    """{thread name: cpu seconds} of a process."""
    out = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    s = f.read()
                name = s[s.index("(") + 1:s.rindex(")")]
                fields = s.rsplit(")", 1)[1].split()
                out[name + "/" + tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return out


def machine_busy():
    """(busy, total, irq + softirq) jiffies of the whole machine"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4], sum(v[:8]), v[5] + v[6]


def busy_pct(b0, b1):
    """the machine's CPU use between two machine_busy() readings, in % of all its CPUs"""
    return 100.0 * (b1[0] - b0[0]) / (b1[1] - b0[1]) if b1[1] > b0[1] else None


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def other_load(b0, b1, cs, client_s, wall):
    """CPU (% of one CPU) the machine spent on anything but this VMM, the client and interrupts:
    other processes (other users of the machine, kernel workers). An approximation: it shows
    which figures were taken while something else ran."""
    if not cs or b1[1] <= b0[1]:
        return None
    ncpu = os.cpu_count() or 1
    jiffy_s = wall * ncpu / (b1[1] - b0[1])  # seconds per jiffy summed over CPUs
    busy_s = (b1[0] - b0[0]) * jiffy_s
    irq_s = (b1[2] - b0[2]) * jiffy_s
    total_s = cs["total_pct"] * wall / 100
    return max(0.0, 100 * (busy_s - irq_s - total_s - client_s) / wall)


def cpu_split(c0, c1, wall):
    """CPU use between two threads_cpu() readings: the whole VMM, its vCPU thread (QEMU names it
    "CPU 0/KVM"; glide's is the busiest thread: the guests poll, so their vCPU never sleeps) and
    everything else (the device model, the main loop, I/O workers), in % of one CPU."""
    if not c0 or not c1 or wall <= 0:
        return None
    d = {k: c1[k] - c0.get(k, 0) for k in c1}
    vcpu = [k for k in d if k.startswith("CPU 0/KVM/")]
    vk = vcpu[0] if vcpu else max(d, key=d.get)
    total = sum(d.values())
    return {"total_pct": 100 * total / wall, "vcpu_pct": 100 * d[vk] / wall,
            "device_pct": 100 * (total - d[vk]) / wall, "device_s": total - d[vk],
            "threads": {k: round(v, 2) for k, v in d.items() if v > 0}}


# ---------------------------------------------------------------- namespaces

class Net:
    """switch (brsw) <- veth -> host A (brA), host B (brB), client (cl0 10.77.0.1/24); A <- mig -> B."""

    def __init__(self, prefix):
        self.p = prefix
        self.sw, self.a, self.b, self.c = prefix + "sw", prefix + "a", prefix + "b", prefix + "c"
        self.made = []

    def setup(self):
        p = self.p
        for n in (self.sw, self.a, self.b, self.c):
            run(["ip", "netns", "add", n], check=True)
            self.made.append(n)
            run(["ip", "link", "set", "lo", "up"], ns=n, check=True)
        cmds = [
            (self.sw, "ip link add brsw type bridge"), (self.sw, "ip link set brsw up"),
            (None, "ip link add %ssa netns %s type veth peer name uplink netns %s" % (p, self.sw, self.a)),
            (None, "ip link add %ssb netns %s type veth peer name uplink netns %s" % (p, self.sw, self.b)),
            (None, "ip link add %ssc netns %s type veth peer name cl0 netns %s" % (p, self.sw, self.c)),
            (self.sw, "ip link set %ssa master brsw up" % p), (self.sw, "ip link set %ssb master brsw up" % p),
            (self.sw, "ip link set %ssc master brsw up" % p),
            (self.a, "ip link add brA type bridge"), (self.a, "ip link set brA up"),
            (self.a, "ip link set uplink master brA up"),
            (self.b, "ip link add brB type bridge"), (self.b, "ip link set brB up"),
            (self.b, "ip link set uplink master brB up"),
            (self.c, "ip addr add 10.77.0.1/24 dev cl0"), (self.c, "ip link set cl0 up"),
            (None, "ip link add mig netns %s type veth peer name mig netns %s" % (self.a, self.b)),
            (self.a, "ip addr add 10.99.0.1/24 dev mig"), (self.a, "ip link set mig up"),
            (self.b, "ip addr add 10.99.0.2/24 dev mig"), (self.b, "ip link set mig up"),
            # QEMU's taps (glide makes its own with bridge=)
            (self.a, "ip tuntap add dev qtap mode tap"), (self.a, "ip link set qtap master brA up"),
            (self.b, "ip tuntap add dev qtap mode tap"), (self.b, "ip link set qtap master brB up"),
        ]
        for ns, c in cmds:
            run(c.split(), ns=ns, check=True)

    def reset(self):
        """Forget where the guest's MAC was: every bridge's learned entries, the client's ARP entry."""
        for ns, br in ((self.sw, "brsw"), (self.a, "brA"), (self.b, "brB")):
            run(["bridge", "fdb", "flush", "dev", br], ns=ns)
        run(["ip", "neigh", "flush", "dev", "cl0"], ns=self.c)

    def delete(self):
        for n in self.made:
            run(["ip", "netns", "del", n])
        self.made = []


# ---------------------------------------------------------------- the two VMMs

class VM:
    banner = None

    def __init__(self, a, name):
        self.a, self.name = a, name
        self.serial = os.path.join(TMP, name + ".serial")
        self.logf = os.path.join(TMP, name + ".log")
        self.dump = os.path.join(TMP, name + ".dump")
        self.proc = None
        for f in (self.serial, self.dump, self.logf, self.logf + ".out"):  # glide --log appends
            if os.path.exists(f):
                os.unlink(f)

    def wait_banner(self, banner, limit=90):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                with open(self.serial, errors="replace") as f:
                    if any(line.rstrip("\n") == banner for line in f):
                        return True
            except OSError:
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def records(self):
        """(heartbeat of vCPU 0, stats record) read from the running or stopped guest, or (None, None)."""
        try:
            d = self.mem(HB_ADDR, GAPLOG_ADDR - HB_ADDR + 32 + 16 * GAPLOG_ENTRIES)
        except Exception:
            return None, None
        if len(d) < GAPLOG_ADDR - HB_ADDR + 32 + 16 * GAPLOG_ENTRIES:
            return None, None
        hb = struct.unpack_from("<6Q", d, 0)
        h = None if hb[0] != HB_MAGIC else {"iter": hb[1], "tsc": hb[2], "gap": hb[3], "gap_end": hb[4]}
        if h:
            h["gap_log"] = parse_gap_log(d[GAPLOG_ADDR - HB_ADDR:])
        return h, parse_stats(d[STATS_ADDR - HB_ADDR:])

    def cpu(self):
        """{thread: cpu seconds} of the VMM process"""
        pid = vmm_pid(self.proc) if self.proc else None
        return threads_cpu(pid) if pid else None


def parse_stats(d):
    magic, guest, size, features, bdf, _ = struct.unpack_from("<QIIQII", d, 0)
    if magic != STATS_MAGIC:
        return None
    r = dict(guest=guest, features=features)
    if guest == 1:
        r.update(zip("rx_frames arp icmp udp tx_frames dropped tx_dropped announces".split(),
                     struct.unpack_from("<8Q", d, 0x20)))
    elif guest == 2:
        r.update(zip("writes pass next_block blocks flushes capacity".split(), struct.unpack_from("<6Q", d, 0x20)))
        r["block_size"], r["write_size"], r["errors"] = struct.unpack_from("<IIQ", d, 0x50)
    return r


class GlideVM(VM):
    tool = "glide"

    def __init__(self, a, name):
        super().__init__(a, name)
        self.sock = os.path.join(TMP, name + ".sock")
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def start(self, ns, args):
        self.proc = spawn([self.a.glide, "vm", "run", "--api", self.sock, "--serial", self.serial,
                           "--log", self.logf] + args, self.logf + ".out", ns=ns)
        end = time.monotonic() + 30
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                if glide_api(self.sock, "GET", "/v1/vm", timeout=2)[0] == 200:
                    return True
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("glide %s did not start: %s" % (self.name, tail(self.logf + ".out")))

    def boot(self, ns, elf, dev_args):
        return self.start(ns, ["--memory", MEM, "--elf", elf] + dev_args)

    def mem(self, addr, size):
        st, r = glide_api(self.sock, "POST", "/v1/vm/memsave", {"addr": addr, "size": size, "path": self.dump},
                          timeout=5)
        if st != 200:
            raise RuntimeError("memsave: %s" % r)
        with open(self.dump, "rb") as f:
            return f.read()

    def status(self):
        return glide_api(self.sock, "GET", "/v1/vm", timeout=5)[1]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                glide_api(self.sock, "POST", "/v1/vm/shutdown", {}, timeout=3)
                self.proc.wait(timeout=5)
            except Exception:
                pass
        if self.proc:
            stop_proc(self.proc)


class QemuVM(VM):
    tool = "QEMU"

    def __init__(self, a, name):
        super().__init__(a, name)
        self.sock = os.path.join(TMP, name + ".qmp")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.qmp = None

    def start(self, ns, args):
        argv = [self.a.qemu, "-enable-kvm", "-cpu", self.a.cpu, "-m", MEM, "-smp", "1", "-nodefaults",
                "-display", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                "-serial", "file:" + self.serial, "-qmp", "unix:%s,server=on,wait=off" % self.sock] + args
        self.proc = spawn(argv, self.logf, ns=ns)
        self.qmp = QMP(self.sock)
        return True

    def boot(self, ns, elf, dev_args):
        return self.start(ns, ["-kernel", elf] + dev_args)

    def mem(self, addr, size):
        if os.path.exists(self.dump):
            os.unlink(self.dump)
        self.qmp.cmd("pmemsave", val=addr, size=size, filename=self.dump)
        with open(self.dump, "rb") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None and self.qmp:
            try:
                self.qmp.cmd("quit")
                self.proc.wait(timeout=5)
            except Exception:
                pass
        if self.qmp:
            self.qmp.close()
        if self.proc:
            stop_proc(self.proc)


def log_time(path, text):
    """Seconds since midnight of the first line of a glide log that contains text (HH:MM:SS.mmm at its start)."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if text in line:
                    h, m, sec = line.split()[0].split(":")
                    return int(h) * 3600 + int(m) * 60 + float(sec)
    except (OSError, ValueError, IndexError):
        pass
    return None


def tail(path, n=300):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].replace("\n", " | ")
    except OSError:
        return "(no output)"


def net_args(vm, where):
    """netecho's NIC on host A or B: glide's own tap on the host bridge, or QEMU's tap (vhost off, its default)."""
    if vm.tool == "glide":
        return ["--nic", "bridge=%s,mac=%s" % ("brA" if where == "a" else "brB", MAC)]
    return ["-netdev", "tap,id=n0,ifname=qtap,script=no,downscript=no",
            "-device", "virtio-net-pci,disable-legacy=on,netdev=n0,mac=" + MAC]


def disk_args(vm, path):
    if vm.tool == "glide":
        return ["--disk", path]
    return ["-drive", "file=%s,format=raw,if=none,id=d0" % path, "-device", "virtio-blk-pci,disable-legacy=on,drive=d0"]


def new_vm(a, tool, name):
    return GlideVM(a, "g" + name) if tool == "glide" else QemuVM(a, "q" + name)


# ---------------------------------------------------------------- measurements

def ping_until_answered(limit=20):
    """The client reaches the guest (ARP, the switches learn): one answered ping, within limit seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if run(["ping", "-n", "-c", "1", "-W", "1", GUEST_IP], ns=NET.c, timeout=5).returncode == 0:
            return True
        time.sleep(0.1)
    return False


PING_RE = re.compile(r"^(?:\[(\d+\.\d+)\] )?\d+ bytes from [\d.]+: icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms")


def parse_ping(text):
    seqs, times, rtts = [], [], []
    for line in text.splitlines():
        m = PING_RE.match(line)
        if m:
            if m.group(1):
                times.append(float(m.group(1)))
            seqs.append(int(m.group(2)))
            rtts.append(float(m.group(3)))
    return seqs, times, rtts


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round((len(v) - 1) * q)))] if v else None


def measure_net(a, tool):
    NET.reset()
    vm = new_vm(a, tool, "net")
    res = {"status": "failed"}
    try:
        vm.boot(NET.a, a.netecho, net_args(vm, "a"))
        if not vm.wait_banner("glide-guest netecho"):
            raise RuntimeError("no banner: " + tail(vm.serial))
        if not ping_until_answered():
            raise RuntimeError("netecho does not answer pings")
        run(["ping", "-n", "-q", "-c", "50", "-i", "0.002", "-W", "1", GUEST_IP], ns=NET.c, timeout=20)  # warm
        for key, window in (("rr1", 1), ("rrk", a.window)):
            c0, t0, b0, k0 = vm.cpu(), time.monotonic(), machine_busy(), children_cpu()
            r = run([a.udp_rr, GUEST_IP, "7", "--seconds", str(a.seconds), "--window", str(window)], ns=NET.c,
                    timeout=a.seconds + 30)
            c1, t1, b1, k1 = vm.cpu(), time.monotonic(), machine_busy(), children_cpu()
            try:
                res[key] = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise RuntimeError("udp_rr: " + r.stdout[-300:])
            res[key]["machine_busy_pct"] = busy_pct(b0, b1)
            cs = cpu_split(c0, c1, t1 - t0)
            res[key]["client_cpu_pct"] = 100 * (k1 - k0) / (t1 - t0)
            res[key]["other_load_pct"] = other_load(b0, b1, cs, k1 - k0, t1 - t0)
            if cs:
                res[key]["cpu"] = cs
                # the device side's CPU per round trip (the measured window includes 0.5 s of warm-up)
                n = res[key]["echoed"]
                res[key]["device_us_per_rt"] = 1e6 * cs["device_s"] / n if n else None
        r = run(a.rt + ["ping", "-D", "-n", "-i", "0.001", "-c", str(a.pings), "-W", "1", GUEST_IP], ns=NET.c,
                timeout=a.pings * 0.01 + 30)
        seqs, times, rtts = parse_ping(r.stdout)
        res["ping"] = {"sent": a.pings, "received": len(set(seqs)), "p50_ms": pct(rtts, 0.5),
                       "p99_ms": pct(rtts, 0.99), "max_ms": max(rtts) if rtts else None,
                       "interval_ms": 1000 * (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None}
        _, st = vm.records()
        res["guest"] = st
        res["status"] = "completed"
    finally:
        vm.stop()
    return res


def make_disk(path, size):
    with open(path, "wb") as f:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def measure_disk(a, tool, flush):
    path = os.path.join(a.disk_dir, "glide-bench-disk.%d.img" % os.getpid())
    make_disk(path, a.disk_mib << 20)
    vm = new_vm(a, tool, "disk")
    res = {"status": "failed", "flush_every": 256 if flush else 0}
    try:
        vm.boot(NET.a, a.diskab if flush else a.diskab_noflush, disk_args(vm, path))
        if not vm.wait_banner("glide-guest diskab"):
            raise RuntimeError("no banner: " + tail(vm.serial))
        time.sleep(a.disk_warmup)
        h0, s0 = vm.records()
        c0, t0, b0 = vm.cpu(), time.monotonic(), machine_busy()
        time.sleep(a.seconds)
        h1, s1 = vm.records()
        c1, t1, b1 = vm.cpu(), time.monotonic(), machine_busy()
        res["machine_busy_pct"] = busy_pct(b0, b1)
        if not (h0 and h1 and s0 and s1) or h1["tsc"] <= h0["tsc"]:
            raise RuntimeError("no heartbeat/stats records: %s %s" % (h0, s1))
        secs = (h1["tsc"] - h0["tsc"]) / (a.khz * 1000.0)
        res.update(status="completed", seconds=secs, writes=h1["iter"] - h0["iter"],
                   writes_per_s=(h1["iter"] - h0["iter"]) / secs,
                   flushes_per_s=(s1["flushes"] - s0["flushes"]) / secs, errors=s1["errors"], guest=s1,
                   write_size=s1["write_size"])
        cs = cpu_split(c0, c1, t1 - t0)
        res["other_load_pct"] = other_load(b0, b1, cs, 0, t1 - t0)
        if cs:
            res["cpu"] = cs
            res["device_us_per_write"] = 1e6 * cs["device_s"] * secs / (t1 - t0) / res["writes"] \
                if res["writes"] else None
        if tool == "glide":
            try:
                res["device"] = vm.status().get("disks")
            except Exception:
                pass
    finally:
        vm.stop()
        ab = run([a.abcheck, "--disk", path, "--json"], timeout=60)
        try:
            j = json.loads(ab.stdout)
            res["abcheck_ok"] = bool(j.get("ok"))
        except ValueError:
            res["abcheck_ok"] = False
            res["abcheck"] = ab.stdout[-300:]
        os.unlink(path)
    return res


def measure_migrate(a, tool, port):
    NET.reset()
    src, dst = new_vm(a, tool, "src"), new_vm(a, tool, "dst")
    res = {"status": "failed"}
    ping = None
    try:
        src.boot(NET.a, a.netecho, net_args(src, "a"))
        if tool == "glide":
            dst.start(NET.b, ["--incoming", "10.99.0.2:%d" % port, "--key-file", a.key] + net_args(dst, "b"))
        else:
            dst.start(NET.b, ["-kernel", a.netecho, "-incoming", "tcp:10.99.0.2:%d" % port] + net_args(dst, "b"))
            for vm in (src, dst):
                vm.qmp.cmd("migrate-set-parameters", **{"downtime-limit": a.downtime, "max-bandwidth": 100 * 10 ** 9})
        if not src.wait_banner("glide-guest netecho"):
            raise RuntimeError("no banner: " + tail(src.serial))
        if not ping_until_answered():
            raise RuntimeError("netecho does not answer pings before the migration")
        time.sleep(0.5)
        pout = os.path.join(TMP, "mig-ping.out")
        with open(pout, "w") as f:
            ping = spawn(a.rt + ["ping", "-D", "-n", "-i", "0.001", "-c", str(a.mig_pings), "-W", "1", GUEST_IP],
                         pout + ".err", ns=NET.c, limit=int(a.mig_pings / 100) + 60, stdout=f)
        time.sleep(a.mig_lead)
        hb_before, _ = src.records()  # the longest stall so far: a longer one on the destination is the migration's
        t_mig = time.time()
        if tool == "glide":
            r = run([a.glide, "migrate", "--api", src.sock, "--to", "10.99.0.2:%d" % port, "--key-file", a.key,
                     "--encrypt", "off", "--switchover-goal", str(a.downtime), "--json"], timeout=90)
            t_done = time.time()
            try:
                m = json.loads(r.stdout)
            except ValueError:
                raise RuntimeError("glide migrate: " + r.stdout[-300:])
            res["raw"] = m
            if m.get("status") != "completed":
                raise RuntimeError("glide migrate: %s" % m.get("error"))
            res.update(total_ms=m.get("total_ms"), downtime_ms=m.get("stun_ms"), forwarded=m.get("net_forwarded"))
        else:
            src.qmp.cmd("migrate", uri="tcp:10.99.0.2:%d" % port)
            q = {}
            end = time.monotonic() + 60
            while time.monotonic() < end:
                q = src.qmp.cmd("query-migrate")
                if q.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.02)
            t_done = time.time()
            res["raw"] = q
            if q.get("status") != "completed":
                raise RuntimeError("QEMU migrate: %s %s" % (q.get("status"), q.get("error-desc", "")))
            res.update(total_ms=q.get("total-time"), downtime_ms=q.get("downtime"), setup_ms=q.get("setup-time"))
        # the guest's longest stall: the destination's heartbeat record read as soon as the guest runs
        # there (the record keeps only the longest gap: the sooner, the fewer other stalls can hide the
        # switchover's), or the longest gap before the migration if that was longer
        hd = None
        end = time.monotonic() + 3
        while time.monotonic() < end:
            hd, _ = dst.records()
            if hd and hb_before and hd["iter"] > hb_before["iter"]:
                break
            time.sleep(0.01)
        if hd and hb_before:
            res["guest_stun_ms"] = max(hd["gap"], hb_before["gap"]) / a.khz
            res["guest_stun_ub"] = hd["gap"] <= hb_before["gap"]
            res["hb_before"], res["hb_dest"] = hb_before, hd
            st_tsc = (res.get("raw") or {}).get("stun_guest_tsc")
            if tool == "glide" and st_tsc:  # glide says when it stunned the guest: does the gap span it?
                res["guest_gap_is_switchover"] = hd["gap_end"] - hd["gap"] <= st_tsc <= hd["gap_end"]
        try:
            ping.wait(timeout=a.mig_pings * 0.01 + 30)
        except subprocess.TimeoutExpired:
            pass
        stop_proc(ping)
        ping = None
        with open(pout) as f:
            seqs, times, _ = parse_ping(f.read())
        got = set(seqs)
        lost = sorted(set(range(1, a.mig_pings + 1)) - got)
        # the outage: the largest gap between two replies that starts between the migration's start and
        # 0.25 s after its end (a gap is placed at the reply before it, so an outage that lasts until a
        # later announcement round is counted whole); gaps elsewhere in the same ping run are the machine's noise
        gaps = [(b - x, x) for x, b in zip(times, times[1:])]
        win = lambda x: t_mig - 0.005 <= x <= t_done + 0.25
        inside = [(g, x) for g, x in gaps if win(x)]
        outside = [g for g, x in gaps if not win(x)]
        big = max(inside) if inside else (None, None)
        res.update(pings=a.mig_pings, lost=len(lost), lost_seqs=lost[:50], duplicates=len(seqs) - len(got),
                   max_gap_ms=big[0] * 1000 if big[0] is not None else None,
                   max_gap_at_ms=(big[1] - t_mig) * 1000 if big[1] is not None else None,
                   noise_gap_ms=max(outside) * 1000 if outside else None,
                   ping_interval_ms=1000 * (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
                   migrate_wall_ms=(t_done - t_mig) * 1000)
        if tool == "glide":
            ts, td = log_time(src.logf, "migrate: migrating to"), log_time(dst.logf, "incoming: VM running here")
            if ts is not None and td is not None:
                res["until_running_ms"] = ((td - ts) % 86400) * 1000
        else:
            res["until_running_ms"] = res["total_ms"]
        _, st = dst.records()
        res["guest"] = st
        res["status"] = "completed"
    finally:
        if ping:
            stop_proc(ping)
        dst.stop()
        src.stop()
    return res


# ---------------------------------------------------------------- report

def med(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    return statistics.median(v), v[0], v[-1]


def fmt(m, prec=0, ub=False):
    if m is None:
        return "-"
    f = "%%.%df" % prec
    s = f % m[0]
    if f % m[1] != f % m[2]:
        s += " (" + f % m[1] + "-" + f % m[2] + ")"
    return ("<=" if ub else "") + s


def ratio(g, q, higher_better, best=False):
    """above 1: glide ahead; of the medians, or (best) of each tool's best run"""
    if g is None or q is None:
        return "-"
    if best:
        g, q = (g[2], q[2]) if higher_better else (g[1], q[1])
    else:
        g, q = g[0], q[0]
    if higher_better:
        return "%.2fx" % (g / q) if q else "-"
    if g == 0 and q == 0:
        return "equal"
    if g == 0:
        return "glide 0"
    return "%.2fx" % (q / g)


def get(r, path):
    for k in path.split("."):
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


TABLES = {}  # section -> [{measure, glide: [median, min, max], QEMU: [...], glide_ahead_by}] for results.json


def rows(results, section, metrics, table=None):
    L = []
    g = [r for r in results if r["section"] == section and r["tool"] == "glide" and r["status"] == "completed"]
    q = [r for r in results if r["section"] == section and r["tool"] == "QEMU" and r["status"] == "completed"]
    for label, path, prec, hb in metrics:
        mg, mq = med([get(r, path) for r in g]), med([get(r, path) for r in q])
        rt = "(context)" if hb is None else ratio(mg, mq, hb)
        rb = "" if hb is None else ratio(mg, mq, hb, best=True)
        L.append("| %s | %s | %s | %s | %s |" % (label, fmt(mg, prec), fmt(mq, prec), rt, rb))
        TABLES.setdefault(table or section, []).append(
            {"measure": label, "field": path, "glide": mg and list(mg), "QEMU": mq and list(mq),
             "glide_ahead_by": rt, "glide_ahead_by_best": rb, "higher_is_better": hb})
    return L, len(g), len(q)


def report(a, results, meta):
    n = lambda sec, tool: sum(1 for r in results if r["section"] == sec and r["tool"] == tool)
    ok = lambda sec, tool: sum(1 for r in results if r["section"] == sec and r["tool"] == tool
                               and r["status"] == "completed")
    head = "| measure | glide | QEMU %s | glide ahead by (medians) | (best runs) |" % meta["qemu_short"]
    sep = "| --- | --- | --- | --- | --- |"
    L = ["# glide's virtio devices vs QEMU %s: same guests, same machine" % meta["qemu_short"], "",
         "- command: `%s`; started %s, took %.1f min; git %s" % (meta["command"], meta["started"],
                                                                 meta["elapsed"] / 60, meta["rev"]),
         "- machine: %s (%s), %d CPUs, kernel %s, /dev/kvm %s; TSC %.0f kHz; load average %s at the start, %s "
         "at the end" % (meta["cpu"], meta["vendor"], meta["ncpu"], meta["kernel"], meta["kvm"], meta["khz"],
                         meta["load_start"], meta["load_end"]),
         "- %s; QEMU `-enable-kvm -cpu %s -m %s -smp 1 -nodefaults -kernel ELF`, glide `vm run --memory %s --elf "
         "ELF`: the same guest binaries (build/guests/netecho.elf, diskab.elf), 1 vCPU" % (
             meta["qemu_version"], a.cpu, MEM, MEM),
         "- figures compare only within this run (the two tools run in turn, the order alternating per "
         "repetition, so a slow period of the machine hits both); median (min-max) of the completed runs; "
         "\"glide ahead by\": glide/QEMU for rates, QEMU/glide for times, CPU costs and losses (above 1: glide "
         "ahead), of the medians and of each tool's best run (highest rate, lowest time: other load on the "
         "machine only ever slows a run down, so the best runs are the least disturbed ones)",
         ""]
    if "net" in a.only:
        t, ng, nq = rows(results, "net", [
            ("UDP echo round trips/s, 1 in flight", "rr1.rate", 0, True),
            ("UDP echo round trips/s, %d in flight" % a.window, "rrk.rate", 0, True),
            ("UDP round trip p50 us, 1 in flight", "rr1.lat_us.p50", 0, False),
            ("UDP round trip p99 us, 1 in flight", "rr1.lat_us.p99", 0, False),
            ("UDP round trip p50 us, %d in flight" % a.window, "rrk.lat_us.p50", 0, False),
            ("UDP round trip p99 us, %d in flight" % a.window, "rrk.lat_us.p99", 0, False),
            ("UDP datagrams never echoed (both figures)", "udp_lost", 0, False),
            ("UDP stalls: 100 ms without an echo (both figures)", "udp_stalls", 0, False),
            ("ping p50 ms (`-i 0.001 -c %d`)" % a.pings, "ping.p50_ms", 3, False),
            ("ping p99 ms", "ping.p99_ms", 3, False),
            ("pings lost of %d" % a.pings, "ping.lost", 0, False),
            ("VMM CPU % outside the vCPU thread, 1 in flight", "rr1.cpu.device_pct", 0, False),
            ("VMM CPU %% outside the vCPU thread, %d in flight" % a.window, "rrk.cpu.device_pct", 0, False),
            ("VMM CPU us outside the vCPU per round trip, %d in flight" % a.window, "rrk.device_us_per_rt", 1,
             False),
            ("vCPU thread CPU %% (the guest polls: 100 = never preempted), %d in flight" % a.window,
             "rrk.cpu.vcpu_pct", 0, True),
            ("CPU %% the rest of the machine used (other processes, kernel work; not this VMM, the client or "
             "interrupts), %d in flight" % a.window, "rrk.other_load_pct", 0, None),
        ])
        L += ["## virtio-net: request/response through a tap (netecho)", "",
              "glide %d/%d runs, QEMU %d/%d. Client namespace -> switch bridge -> host A's bridge -> tap -> "
              "netecho (polls its rings from ring 3). UDP: bench/udp_rr.c, 64-byte datagrams, %g s per "
              "figure after 0.5 s of warm-up; the round-trip rate with 1 datagram in flight is the inverse "
              "of the round-trip time, with %d in flight it is what the path carries. Pings run %s. "
              "CPU: /proc per thread of the VMM process over each UDP figure; \"outside the vCPU\" is the "
              "device model, event loop and I/O threads. QEMU: `-netdev "
              "tap,...,script=no` (userspace virtio-net, vhost off: QEMU's default; /dev/vhost-net %s). "
              "glide: `--nic bridge=brA,mac=...`." % (ng, n("net", "glide"), nq, n("net", "QEMU"), a.seconds,
                                                     a.window, rtnote(a), "present but not used" if meta["vhost"]
                                                     else "absent here"), "", head, sep] + t + [""]
    if "disk" in a.only:
        t, ng, nq = [], 0, 0
        for fl, label in ((True, "flush every 256 writes"), (False, "flushes off")):
            sub = [dict(r, section="disk") for r in results if r["section"] == "disk" and r.get("flush_every") ==
                   (256 if fl else 0)]
            tt, g1, q1 = rows(sub, "disk", table="disk", metrics=[
                ("writes/s, %s" % label, "writes_per_s", 0, True),
            ] + ([("flushes/s, %s" % label, "flushes_per_s", 0, True)] if fl else []) + [
                ("VMM CPU us outside the vCPU per write, %s" % label, "device_us_per_write", 1, False),
                ("vCPU thread CPU %%, %s" % label, "cpu.vcpu_pct", 0, True),
                ("CPU %% the rest of the machine used (other processes, kernel work; not this VMM or "
                 "interrupts), %s" % label, "other_load_pct", 0, None)])
            t += tt
            ng, nq = ng + g1, nq + q1
        clean = all(r.get("abcheck_ok") for r in results if r["section"] == "disk" and r["status"] == "completed")
        L += ["## virtio-blk: diskab's writes per second", "",
              "glide %d/%d runs, QEMU %d/%d. A %d MiB raw file in %s (%s, not tmpfs: %s), zero-filled "
              "(written and fsynced) before every run; one request in flight, writes of %s bytes at each "
              "4 KiB block's start, in order, over and over; %g s of warm-up, then %g s measured with the "
              "guest's TSC (heartbeat iterations = writes completed). Flush = VIRTIO_BLK_T_FLUSH "
              "(`fdatasync` in both). QEMU `-drive file=...,format=raw,if=none` (cache=writeback, aio=threads: "
              "its defaults) + `virtio-blk-pci,disable-legacy=on`; glide `--disk PATH`. Every image was "
              "A-B clean afterwards (abcheck --disk): %s." % (
                  ng, n("disk", "glide"), nq, n("disk", "QEMU"), a.disk_mib, a.disk_dir, meta["disk_fs"],
                  "yes" if meta["disk_fs"] != "tmpfs" else "no, it is tmpfs", meta.get("write_size", "?"),
                  a.disk_warmup, a.seconds, "yes" if clean else "NO, see runs.jsonl"), "", head, sep] + t + [""]
    if "migrate" in a.only:
        t, ng, nq = rows(results, "migrate", [
            ("pings lost (of %d, every 1 ms)" % a.mig_pings, "lost", 0, False),
            ("largest gap between two replies, ms", "max_gap_ms", 1, False),
            ("downtime reported by the tool, ms", "downtime_ms", 1, False),
            ("longest guest stall from the migration's start, ms (heartbeat: the stun's upper bound)",
             "guest_stun_ms", 1, False),
            ("start to the VM running on the destination, ms", "until_running_ms", 0, False),
            ("total migration time reported by the tool, ms", "total_ms", 0, False),
            ("largest reply gap elsewhere in the same ping run, ms (noise)", "noise_gap_ms", 1, False),
            ("mean interval between replies, ms (1 = ping kept its pace)", "ping_interval_ms", 2, False),
        ])
        fw = med([r.get("forwarded") for r in results if r["section"] == "migrate" and r["tool"] == "glide"
                  and r["status"] == "completed"])
        ub = any(r.get("guest_stun_ub") for r in results if r["section"] == "migrate" and r["status"] == "completed")
        gsw = [r.get("guest_gap_is_switchover") for r in results if r["section"] == "migrate" and r["tool"] == "glide"
               and r["status"] == "completed"]
        L += ["## Network continuity during a live migration (netecho, ping every 1 ms)", "",
              "glide %d/%d runs, QEMU %d/%d. netecho runs on host A (namespace, bridge brA), migrates over a "
              "veth pair to host B (brB); both bridges hang on a switch bridge with the client, which pings "
              "every 1 ms (`ping -D -i 0.001 -c %d`, %s; the migration starts %g s in). glide: `glide migrate "
              "--encrypt off --switchover-goal %d` (RARP rounds from the destination, GUEST_ANNOUNCE, frames "
              "reaching the source's tap after the checkpoint forwarded: median %s per run). QEMU: QMP `migrate` "
              "to `-incoming tcp:`, downtime-limit %d ms, max-bandwidth 100 GB/s, its default announce-self "
              "(5 rounds, 50 ms + 100 ms steps) and GUEST_ANNOUNCE. %sThe largest reply gap is the outage the "
              "client saw (a gap that starts between the migration's start and 0.25 s after its end); pings lost = sequence numbers never "
              "answered. \"start to the VM running on the destination\": glide from its two logs (\"migrating "
              "to\" on the source, \"VM running here\" on the destination), QEMU `total-time`; glide's own "
              "total also counts the frame forwarding after the switchover, which ends 100 ms after the last "
              "forwarded frame." % (
                  ng, n("migrate", "glide"), nq, n("migrate", "QEMU"), a.mig_pings, rtnote(a), a.mig_lead,
                  a.downtime,
                  fmt(fw), a.downtime,
                  "Longest guest stall: some runs' longest heartbeat gap came before the migration (then that "
                  "gap is shown). " if ub else "") + " The guest's longest stall is read on the destination right "
              "after the migration (the heartbeat record keeps only the longest gap): it includes the switchover "
              "but may be another stall of the vCPU on this busy 2-CPU machine since the guest started; for glide, which reports the TSC "
              "at which it stunned the guest, it spanned the switchover in %d of %d runs." % (
                  sum(1 for x in gsw if x), len(gsw)), "", head, sep] + t + [""]
    fails = [r for r in results if r["status"] != "completed"]
    if fails:
        L += ["Failed runs:", ""] + ["- %s %s rep %d: %s" % (r["section"], r["tool"], r["rep"] + 1, r.get("error"))
                                     for r in fails] + [""]
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main

def rtnote(a):
    return "as SCHED_FIFO (`chrt -f 1`) to keep their pace beside the polling vCPU" if a.rt else \
        "at normal priority (no chrt)"


def machine():
    cpu, vendor = "unknown", "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("vendor_id") and vendor == "unknown":
                v = line.split(":", 1)[1].strip()
                vendor = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(v, v)
    return cpu, vendor


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (1-10, default 3)")
    ap.add_argument("--only", default="net,disk,migrate", help="a subset of net,disk,migrate")
    ap.add_argument("--tools", default="glide,QEMU", help="glide,QEMU (default) or one of them (for diagnosis)")
    ap.add_argument("--seconds", type=float, default=5, help="length of each UDP and disk figure (1-30 s)")
    ap.add_argument("--window", type=int, default=16, help="UDP datagrams in flight for the second figure")
    ap.add_argument("--pings", type=int, default=2000, help="pings for the latency figure (-i 0.001)")
    ap.add_argument("--mig-pings", type=int, default=4000, help="pings during each migration run (every 1 ms)")
    ap.add_argument("--mig-lead", type=float, default=1.0, help="seconds of pings before the migration starts")
    ap.add_argument("--downtime", type=int, default=300, help="QEMU downtime-limit and glide switchover goal (ms)")
    ap.add_argument("--disk-dir", default="/tmp", help="where the disk images go (default /tmp)")
    ap.add_argument("--disk-mib", type=int, default=64)
    ap.add_argument("--disk-warmup", type=float, default=1.0)
    ap.add_argument("--max-minutes", type=float, default=25, help="stop starting runs after this long")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="bench/results/devices")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--cpu", default=None, help="QEMU -cpu (default host,-arch-capabilities on AMD, host on Intel)")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--rerender", metavar="DIR", help="only rebuild results.md and the tables from DIR/results.json")
    a = ap.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    a.tools = [s.strip() for s in a.tools.split(",") if s.strip()]
    if not 1 <= a.reps <= 10 or not 1 <= a.seconds <= 30 or not 1 <= a.window <= 64 or \
            not 10 <= a.pings <= 20000 or not 100 <= a.mig_pings <= 20000 or not 4 <= a.disk_mib <= 4096 or \
            set(a.only) - {"net", "disk", "migrate"} or not a.tools or set(a.tools) - {"glide", "QEMU"}:
        ap.error("an option is out of its range (see --help)")
    if a.rerender:
        return rerender(a)
    cpu, vendor = machine()
    # the pings run SCHED_FIFO so that they keep their 1 ms pace beside a polling vCPU on few CPUs
    a.rt = ["chrt", "-f", "1"] if shutil.which("chrt") else []
    if a.cpu is None:
        a.cpu = "host,-arch-capabilities" if vendor == "AMD" else "host"

    global TMP, LOG, NET
    TMP = tempfile.mkdtemp(prefix="glide-devices.")
    os.makedirs(a.out, exist_ok=True)
    LOG = open(os.path.join(a.out, "devices.log"), "w")
    atexit.register(cleanup)
    if not os.environ.get("KEEP"):  # KEEP=1 keeps the VMs' logs and serial output in TMP
        atexit.register(lambda: shutil.rmtree(TMP, ignore_errors=True))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    a.glide = os.path.join(a.build, "glide")
    a.netecho = os.path.abspath(os.path.join(a.build, "guests", "netecho.elf"))
    a.diskab = os.path.abspath(os.path.join(a.build, "guests", "diskab.elf"))
    a.abcheck = os.path.join(a.build, "tools", "abcheck")
    a.diskab_noflush = os.path.join(TMP, "diskab-noflush.elf")
    run([os.path.join(a.build, "tools", "guestcfg"), a.diskab, a.diskab_noflush, "--flush-every", "0"], check=True)
    a.udp_rr = os.path.join(TMP, "udp_rr")
    run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-o", a.udp_rr,
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "udp_rr.c")], check=True, timeout=60)
    a.key = os.path.join(TMP, "key")
    with os.fdopen(os.open(a.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")

    NET = Net("gd%d" % (os.getpid() % 100000))
    NET.setup()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = loadavg()
    t_start = time.monotonic()

    # the TSC rate, from a glide VM (the guests time themselves with the host's TSC)
    probe = GlideVM(a, "probe")
    try:
        probe.start(None, ["--memory", "64M", "--boot", os.path.join(a.build, "guests", "heartbeat.img")])
        a.khz = float(probe.status()["tsc_khz"])
    finally:
        probe.stop()
    log("machine: %s (%s), TSC %.0f kHz, QEMU -cpu %s; load average %s" % (cpu, vendor, a.khz, a.cpu, load_start))

    qv = run([a.qemu, "--version"]).stdout.splitlines()[0].replace("QEMU emulator version ", "")
    rev = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip() or "unknown"
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    fs = run(["findmnt", "-n", "-o", "FSTYPE", "-T", a.disk_dir]).stdout.strip() or "unknown"
    meta = dict(command=a.command, started=started, rev=rev + (" (modified)" if dirty else ""), cpu=cpu,
                vendor=vendor, ncpu=os.cpu_count(), kernel=os.uname().release,
                kvm="nested (kvm_pvm)" if os.path.exists("/sys/module/kvm_pvm") else "present", khz=a.khz,
                qemu_version="QEMU " + qv, qemu_short=qv.split()[0], vhost=os.path.exists("/dev/vhost-net"),
                disk_fs=fs, load_start=load_start)
    meta["options"] = {k: getattr(a, k) for k in RENDER_OPTIONS}

    results = []
    raw = open(os.path.join(a.out, "runs.jsonl"), "w")
    port = [27000 + os.getpid() % 2000]
    plan = []
    for sec in ("net", "disk", "migrate"):
        if sec not in a.only:
            continue
        for rep in range(a.reps):
            tools = ("glide", "QEMU") if rep % 2 == 0 else ("QEMU", "glide")
            for tool in tools:
                if tool not in a.tools:
                    continue
                if sec == "disk":
                    plan += [(sec, rep, tool, True), (sec, rep, tool, False)]
                else:
                    plan.append((sec, rep, tool, None))
    for sec, rep, tool, flush in plan:
        if time.monotonic() - t_start > a.max_minutes * 60:
            r = {"status": "skipped", "error": "--max-minutes %g reached" % a.max_minutes}
        else:
            t = time.monotonic()
            try:
                if sec == "net":
                    r = measure_net(a, tool)
                elif sec == "disk":
                    r = measure_disk(a, tool, flush)
                else:
                    port[0] += 1
                    r = measure_migrate(a, tool, port[0])
            except Exception as e:  # a broken run is reported; the benchmark goes on
                r = {"status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
            r["wall_s"] = round(time.monotonic() - t, 1)
        r.update(section=sec, tool=tool, rep=rep)
        if flush is not None:
            r["flush_every"] = 256 if flush else 0
        if sec == "net" and r["status"] == "completed":
            r["udp_lost"] = r["rr1"]["never_echoed"] + r["rrk"]["never_echoed"]
            r["udp_stalls"] = r["rr1"]["stalls"] + r["rrk"]["stalls"]
            r["ping"]["lost"] = r["ping"]["sent"] - r["ping"]["received"]
        if sec == "disk" and r.get("write_size"):
            meta["write_size"] = r["write_size"]
        results.append(r)
        raw.write(json.dumps(r) + "\n")
        raw.flush()
        log("%-7s %-5s rep %d%s: %s %s" % (sec, tool, rep + 1, "" if flush is None else
                                          (" flush 256" if flush else " flush off"), r["status"], summary(r)))
    meta["elapsed"] = time.monotonic() - t_start
    meta["load_end"] = loadavg()
    md = report(a, results, meta)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "tables": TABLES, "runs": results}, f, indent=1)
    print(md)
    log("results in %s (results.md, results.json, runs.jsonl, devices.log)" % a.out)
    return 0 if any(r["status"] == "completed" for r in results) else 1


RENDER_OPTIONS = ("reps", "seconds", "window", "pings", "mig_pings", "mig_lead", "downtime", "disk_dir", "disk_mib",
                  "disk_warmup", "cpu", "only", "tools", "rt")


def rerender(a):
    with open(os.path.join(a.rerender, "results.json")) as f:
        d = json.load(f)
    meta, results = d["meta"], d["runs"]
    for k, v in meta.get("options", {}).items():
        setattr(a, k, v)
    for k in ("reps", "seconds", "window"):  # results.json of the first version kept these in meta
        if k in meta:
            setattr(a, k, meta[k])
    if a.cpu is None:
        a.cpu = "host,-arch-capabilities" if meta.get("vendor") == "AMD" else "host"
    if "rt" not in meta.get("options", {}):
        a.rt = ["chrt", "-f", "1"]
    md = report(a, results, meta)
    with open(os.path.join(a.rerender, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.rerender, "results.json"), "w") as f:
        json.dump({"meta": meta, "tables": TABLES, "runs": results}, f, indent=1)
    print(md)
    return 0


def summary(r):
    if r["status"] != "completed":
        return r.get("error", "")
    s = r["section"]
    if s == "net":
        return "rr1 %.0f/s (p50 %.0f us) rr%d %.0f/s lost %d; ping p50 %.3f p99 %.3f ms lost %d every %.2f ms; " \
               "cpu vcpu %.0f%% device %.0f%% %.1f us/rt, other load %.0f%% (%.1f s)" % (
                   r["rr1"]["rate"], r["rr1"]["lat_us"]["p50"], r["rrk"]["window"], r["rrk"]["rate"], r["udp_lost"],
                   r["ping"]["p50_ms"] or -1, r["ping"]["p99_ms"] or -1, r["ping"]["lost"],
                   r["ping"]["interval_ms"] or -1, get(r, "rrk.cpu.vcpu_pct") or -1,
                   get(r, "rrk.cpu.device_pct") or -1, r["rrk"].get("device_us_per_rt") or -1,
                   get(r, "rrk.other_load_pct") or -1, r["wall_s"])
    if s == "disk":
        return "%.0f writes/s, %.1f flushes/s, cpu vcpu %.0f%% device %.0f%% %.1f us/write, other load %.0f%%, " \
               "abcheck %s (%.1f s)" % (
                   r["writes_per_s"], r["flushes_per_s"], get(r, "cpu.vcpu_pct") or -1,
                   get(r, "cpu.device_pct") or -1, r.get("device_us_per_write") or -1,
                   r.get("other_load_pct") or -1, "ok" if r.get("abcheck_ok") else "BAD", r["wall_s"])
    return "lost %d/%d, largest gap %.1f ms (at %+.0f ms; elsewhere: %.1f; every %.2f ms), downtime %.1f ms, " \
           "guest stun %s%.1f ms, running after %.0f ms, total %.0f ms%s (%.1f s)" % (
               r["lost"], r["pings"], r["max_gap_ms"] or -1, r.get("max_gap_at_ms") or 0,
               r.get("noise_gap_ms") or -1, r.get("ping_interval_ms") or -1, r.get("downtime_ms") or -1,
               "<=" if r.get("guest_stun_ub") else "", r.get("guest_stun_ms") or -1,
               r.get("until_running_ms") or -1, r.get("total_ms") or -1,
               ", forwarded %s" % r["forwarded"] if r.get("forwarded") is not None else "", r["wall_s"])


if __name__ == "__main__":
    sys.exit(main())
