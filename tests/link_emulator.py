#!/usr/bin/env python3
"""A WAN between two network namespaces, in user space (tests only).

This machine's kernel has no netem qdisc, so the link is emulated here: a
TUN device in each namespace (created by the caller with `ip tuntap`,
addressed and up), and this process forwards every IP packet from one to
the other after a one-way delay, dropping a given fraction at random and
pacing each direction to a given rate (packets queue behind each other as
on a real link; a queue longer than --queue-ms drops, as a router would).
Touch the file --blackhole to drop everything (a cut link) until it is
removed. Bounded: exits after --max-seconds. Logs counters to --log.
"""
import argparse
import ctypes
import fcntl
import heapq
import os
import random
import select
import struct
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def open_tun(netns, dev):
    """Attaches to the TUN device `dev` of network namespace `netns`."""
    with open("/proc/self/ns/net") as home, open("/var/run/netns/" + netns) as ns:
        if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + netns)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
        finally:
            libc.setns(home.fileno(), CLONE_NEWNET)
    os.set_blocking(fd, False)
    return fd


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns-a", required=True)
    p.add_argument("--ns-b", required=True)
    p.add_argument("--dev", default="tun0", help="the TUN device's name in both namespaces")
    p.add_argument("--delay-ms", type=float, default=0, help="one-way delay (RTT = twice this)")
    p.add_argument("--loss", type=float, default=0, help="fraction of packets dropped, each direction")
    p.add_argument("--rate-mbit", type=float, default=1000, help="each direction")
    p.add_argument("--queue-ms", type=float, default=200, help="longest queue before the link drops")
    p.add_argument("--blackhole", default="", help="while this file exists, every packet is dropped")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log", required=True)
    p.add_argument("--max-seconds", type=float, default=600)
    a = p.parse_args()
    random.seed(a.seed)
    fds = [open_tun(a.ns_a, a.dev), open_tun(a.ns_b, a.dev)]
    log = open(a.log, "a")
    log.write("started: delay %.1f ms one way, loss %.3f, %.0f Mbit/s\n" % (a.delay_ms, a.loss, a.rate_mbit))
    log.flush()
    byte_s = a.rate_mbit * 1e6 / 8
    busy_until = [0.0, 0.0]  # per direction: when the link is free again
    due = []                 # (deliver at, seq, out fd index, packet)
    seq = 0
    stats = {"forwarded": 0, "lost": 0, "queue_drops": 0, "blackholed": 0}
    end = time.monotonic() + a.max_seconds
    last_log = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        timeout = max(0.0, min(0.05, (due[0][0] - now) if due else 0.05))
        readable, _, _ = select.select(fds, [], [], timeout)
        now = time.monotonic()
        for i, fd in enumerate(fds):
            if fd not in readable:
                continue
            for _ in range(256):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if a.blackhole and os.path.exists(a.blackhole):
                    stats["blackholed"] += 1
                    continue
                if a.loss and random.random() < a.loss:
                    stats["lost"] += 1
                    continue
                start = max(now, busy_until[i])
                if start - now > a.queue_ms / 1000.0:
                    stats["queue_drops"] += 1
                    continue
                busy_until[i] = start + len(pkt) / byte_s
                seq += 1
                heapq.heappush(due, (busy_until[i] + a.delay_ms / 1000.0, seq, 1 - i, pkt))
        while due and due[0][0] <= now:
            _, _, out, pkt = heapq.heappop(due)
            try:
                os.write(fds[out], pkt)
                stats["forwarded"] += 1
            except OSError:
                stats["queue_drops"] += 1
        if now - last_log > 2:
            log.write("%.1f %s\n" % (now, " ".join("%s %d" % kv for kv in stats.items())))
            log.flush()
            last_log = now
    log.write("done %s\n" % " ".join("%s %d" % kv for kv in stats.items()))


if __name__ == "__main__":
    main()
