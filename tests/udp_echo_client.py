#!/usr/bin/env python3
# udp_echo_client.py ADDR PORT COUNT INTERVAL_MS: sends COUNT numbered
# datagrams, one every INTERVAL_MS, to an echo server and waits up to 1 s
# after the last one. Prints JSON: sent, received (distinct), lost, the
# numbers lost, duplicates, wrong payloads, and the largest gap between two
# echoes received in a row (ms). Bounded: at most 100000 datagrams.
import json, socket, struct, sys, time
addr, port, count, interval = sys.argv[1], int(sys.argv[2]), min(int(sys.argv[3]), 100000), float(sys.argv[4]) / 1000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a starved client must not lose echoes itself
s.setblocking(False)
got, times, dups, bad = set(), [], 0, 0
def drain():
    global dups, bad
    while True:
        try:
            data = s.recv(2048)
        except BlockingIOError:
            return
        if len(data) != 64 or data[8:] != bytes(range(56)):
            bad += 1
            continue
        n = struct.unpack("<Q", data[:8])[0]
        if n in got:
            dups += 1
        else:
            got.add(n)
            times.append(time.monotonic())
start = time.monotonic()
for i in range(count):
    s.sendto(struct.pack("<Q", i) + bytes(range(56)), (addr, port))
    drain()
    next_at = start + (i + 1) * interval
    while time.monotonic() < next_at:
        drain()
end = time.monotonic() + 1.0
while time.monotonic() < end and len(got) < count:
    drain()
    time.sleep(0.001)
gaps = [b - a for a, b in zip(times, times[1:])]
lost = sorted(set(range(count)) - got)
print(json.dumps(dict(sent=count, received=len(got), lost=len(lost), lost_numbers=lost[:20], duplicates=dups,
                      bad=bad, max_gap_ms=round(max(gaps) * 1000, 3) if gaps else None)))
