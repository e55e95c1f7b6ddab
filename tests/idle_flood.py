#!/usr/bin/env python3
"""Idle-connection flood for the hardening test: opens --count TCP connections
from --source (a loopback address) to each 127.0.0.1 port given, sends
nothing, and keeps them open. Writes a status line to --status every 0.5 s:
"elapsed_s port:open/closed_by_server ...". Closes every socket and exits
after --max-seconds, or as soon as the file --stop exists. Loopback only."""
import argparse, os, resource, select, socket, time

ap = argparse.ArgumentParser()
ap.add_argument("--source", default="127.0.0.2")
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--status", required=True)
ap.add_argument("--stop", required=True)
ap.add_argument("--max-seconds", type=int, default=60)
ap.add_argument("ports", type=int, nargs="+")
a = ap.parse_args()
assert a.source.startswith("127."), "loopback only"

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
start = time.monotonic()
socks = {p: [] for p in a.ports}
failed = {p: 0 for p in a.ports}
closed = {p: 0 for p in a.ports}
for p in a.ports:
    for i in range(a.count):
        if time.monotonic() - start > a.max_seconds / 2:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((a.source, 0))
            s.settimeout(0.5)
            s.connect(("127.0.0.1", p))
            s.setblocking(False)
            socks[p].append(s)
        except OSError:
            failed[p] += 1
            s.close()


def write_status():
    line = "%.1f %s\n" % (time.monotonic() - start, " ".join(
        "%d:%d/%d/%d" % (p, len(socks[p]), closed[p], failed[p]) for p in a.ports))
    with open(a.status + ".tmp", "w") as f:
        f.write(line)
    os.replace(a.status + ".tmp", a.status)


write_status()
while time.monotonic() - start < a.max_seconds and not os.path.exists(a.stop):
    for p in a.ports:
        live = socks[p]
        poller = select.poll()
        for s in live:
            poller.register(s, select.POLLIN)
        by_fd = {s.fileno(): s for s in live}
        for fd, ev in poller.poll(0):
            s = by_fd[fd]
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the server closed it
                s.close()
                closed[p] += 1
        socks[p] = [s for s in live if s.fileno() >= 0]
    write_status()
    time.sleep(0.5)
for p in a.ports:
    for s in socks[p]:
        s.close()
