#!/usr/bin/env python3
"""Connection flood against the HTTP APIs (host agent, controller) for the
hardening tests: opens --count TCP connections from --source (a loopback
address) to each 127.0.0.1 port given and, by --mode,
  idle       sends nothing (the default),
  junk       sends 32-512 random bytes at once,
  partial    sends half an HTTP request at once (headers cut short, or a
             body shorter than its Content-Length),
  slowloris  dribbles an endless header, one byte every --drip-seconds,
  mix        junk, partial and slowloris in turn,
then keeps every connection open until the server closes it. Writes a
status line to --status every 0.5 s: "elapsed_s port:open/closed_by_server/failed ...".
With --report FILE it writes, at the end, one JSON object per port and
mode: connections, closed (by the server), open, and the longest times from
a connection's connect and from its last byte sent to the server closing it
("max_after_connect_s", "max_after_last_send_s"). Closes every socket and
exits after --max-seconds, or as soon as the file --stop exists. Loopback
only; every wait is bounded."""
import argparse, json, os, random, resource, select, socket, time

ap = argparse.ArgumentParser()
ap.add_argument("--source", default="127.0.0.2")
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--mode", choices=["idle", "junk", "partial", "slowloris", "mix"], default="idle")
ap.add_argument("--drip-seconds", type=float, default=1.0)
ap.add_argument("--status", required=True)
ap.add_argument("--stop", required=True)
ap.add_argument("--report")
ap.add_argument("--max-seconds", type=int, default=60)
ap.add_argument("ports", type=int, nargs="+")
a = ap.parse_args()
assert a.source.startswith("127."), "loopback only"

PARTIAL = [b"GET /v1/vms HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ",
           b"POST /v1/vms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: 1000\r\n\r\n{\"name\": \"half"]
SLOW_HEAD = b"GET /v1/host HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


class Conn:
    def __init__(self, sock, port, mode, now):
        self.sock, self.port, self.mode = sock, port, mode
        self.connected = self.last_send = now
        self.closed = None
        self.sent = 0  # slowloris: bytes of the endless header sent so far

    def send(self, data, now):
        try:
            self.sock.send(data)
            self.last_send = now
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset or closed by the server
            self.close(now)

    def close(self, now):
        if self.closed is None:
            self.closed = now
            self.sock.close()


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
start = time.monotonic()
conns = []
failed = {p: 0 for p in a.ports}
modes = ["junk", "partial", "slowloris"]
for p in a.ports:
    for i in range(a.count):
        if time.monotonic() - start > a.max_seconds / 2:
            break
        mode = modes[i % 3] if a.mode == "mix" else a.mode
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((a.source, 0))
            s.settimeout(0.5)
            s.connect(("127.0.0.1", p))
            s.setblocking(False)
        except OSError:
            failed[p] += 1
            s.close()
            continue
        c = Conn(s, p, mode, time.monotonic())
        conns.append(c)
        if mode == "junk":
            c.send(os.urandom(random.randint(32, 512)), time.monotonic())
        elif mode == "partial":
            c.send(PARTIAL[i % len(PARTIAL)], time.monotonic())


def write_status():
    parts = []
    for p in a.ports:
        mine = [c for c in conns if c.port == p]
        parts.append("%d:%d/%d/%d" % (p, sum(c.closed is None for c in mine), sum(c.closed is not None for c in mine),
                                      failed[p]))
    with open(a.status + ".tmp", "w") as f:
        f.write("%.1f %s\n" % (time.monotonic() - start, " ".join(parts)))
    os.replace(a.status + ".tmp", a.status)


write_status()
next_status = time.monotonic() + 0.5
while time.monotonic() - start < a.max_seconds and not os.path.exists(a.stop):
    now = time.monotonic()
    live = [c for c in conns if c.closed is None]
    for c in live:  # the slow loris: one more byte of a header that never ends
        if c.mode == "slowloris" and now - c.last_send >= a.drip_seconds:
            byte = SLOW_HEAD[c.sent:c.sent + 1] if c.sent < len(SLOW_HEAD) else b"a"
            c.sent += 1
            c.send(byte, now)
    live = [c for c in live if c.closed is None]
    poller = select.poll()
    by_fd = {}
    for c in live:
        poller.register(c.sock, select.POLLIN)
        by_fd[c.sock.fileno()] = c
    for fd, ev in poller.poll(100):
        c = by_fd[fd]
        try:
            while c.sock.recv(4096):  # an answer (400): read it, the end follows
                pass
            c.close(time.monotonic())  # recv returned b"": the server closed it
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset by the server
            c.close(time.monotonic())
    if time.monotonic() >= next_status:
        write_status()
        next_status += 0.5
write_status()
if a.report:
    report = {}
    for c in conns:
        r = report.setdefault(str(c.port), {}).setdefault(c.mode, {
            "connections": 0, "closed": 0, "open": 0, "max_after_connect_s": 0.0, "max_after_last_send_s": 0.0})
        r["connections"] += 1
        if c.closed is None:
            r["open"] += 1
        else:
            r["closed"] += 1
            r["max_after_connect_s"] = round(max(r["max_after_connect_s"], c.closed - c.connected), 2)
            r["max_after_last_send_s"] = round(max(r["max_after_last_send_s"], c.closed - c.last_send), 2)
    with open(a.report + ".tmp", "w") as f:
        json.dump(report, f)
    os.replace(a.report + ".tmp", a.report)
for c in conns:
    if c.closed is None:
        c.sock.close()
