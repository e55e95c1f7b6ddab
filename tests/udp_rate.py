#!/usr/bin/env python3
# udp_rate.py ADDR PORT SIZE PPS SECONDS: offers SIZE-byte UDP datagrams
# (numbered) at PPS per second for SECONDS to an echo server and counts the
# echoes. Prints JSON: sent, received, and the echo rate measured from 0.5 s
# after the start to the end of sending (frames/s and the Ethernet frame
# bytes/s they make: SIZE + 8 UDP + 20 IP + 14 Ethernet). Bounded: at most
# 20000 datagrams/s, 1472 bytes, 30 s.
import json, socket, struct, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
size = max(8, min(int(sys.argv[3]), 1472))
pps = max(1, min(int(sys.argv[4]), 20000))
secs = max(1.0, min(float(sys.argv[5]), 30.0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.setblocking(False)
payload = bytes(i & 0xff for i in range(size - 8))
times = []
def drain():
    while True:
        try:
            data = s.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        if len(data) == size:
            times.append(time.monotonic())
start = time.monotonic()
n = int(pps * secs)
for i in range(n):
    try:
        s.sendto(struct.pack("<Q", i) + payload, (addr, port))
    except (BlockingIOError, InterruptedError):
        pass
    drain()
    next_at = start + (i + 1) / pps
    while time.monotonic() < next_at:
        drain()
end_send = time.monotonic()
linger = end_send + 0.5
while time.monotonic() < linger:
    drain()
    time.sleep(0.001)
w0, w1 = start + 0.5, end_send
inwin = sum(1 for t in times if w0 <= t < w1)
fps = inwin / (w1 - w0) if w1 > w0 else 0.0
print(json.dumps({"sent": n, "received": len(times), "window_s": round(w1 - w0, 3), "echo_frames_per_s": round(fps, 1),
                  "echo_frame_bytes_per_s": round(fps * (size + 8 + 20 + 14), 1), "offered_frames_per_s": pps}))
