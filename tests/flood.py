#!/usr/bin/env python3
"""Connection flood against a migration destination, for the handshake
tests: opens --count connections to 127.0.0.1:--port from 127.0.0.1 (or
from --addrs loopback addresses starting at --from, round robin) and
  silent    sends nothing,
  garbage   sends 104 random bytes (the size of a source hello),
  wrongkey  reads the destination hello and answers with a well-formed
            source hello whose MAC uses --key-file (not the destination's key),
then holds every socket open until --hold-seconds pass or SIGTERM, and
closes them all. Prints "started" before it connects, "open N" once the
connections are made, and "closed-by-peer N" at the end (connections the
destination closed). Loopback only; every wait is bounded."""
import argparse, hashlib, hmac, os, select, signal, socket, struct, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, default=1)
ap.add_argument("--mode", choices=["silent", "garbage", "wrongkey"], default="silent")
ap.add_argument("--key-file", help="hex key for --mode wrongkey")
ap.add_argument("--hold-seconds", type=float, default=60)
ap.add_argument("--from", dest="first", default="127.0.0.1", help="first source address (127.x.y.z)")
ap.add_argument("--addrs", type=int, default=1, help="number of consecutive source addresses")
a = ap.parse_args()

stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))

def wrong_hello(s, key):
    hd = b""
    end = time.time() + 5
    while len(hd) < 48 and time.time() < end:
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            d = s.recv(48 - len(hd))
            if not d:
                return
            hd += d
    if len(hd) < 48 or hd[:8] != b"GLIDEMIG":
        return
    nonce_d = hd[16:48]
    hs = b"GLIDEMIG" + struct.pack("<II", 1, 1) + os.urandom(16) + struct.pack("<II", 0, 1) + os.urandom(32)
    mac = hmac.new(key, b"glide/1 client\0\0" + nonce_d + hs, hashlib.sha256).digest()
    s.sendall(hs + mac)

key = bytes.fromhex(open(a.key_file).read().strip()) if a.key_file else os.urandom(32)
print("started", flush=True)
# all connects at once (a burst of SYNs), then at most 5 s for them to complete
pending = []
for i in range(a.count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    first = struct.unpack("!I", socket.inet_aton(a.first))[0]
    s.bind((socket.inet_ntoa(struct.pack("!I", first + i % a.addrs)), 0))
    s.connect_ex(("127.0.0.1", a.port))
    pending.append(s)
socks, failed = [], 0
end = time.time() + 5
while pending and time.time() < end:
    _, w, _ = select.select([], pending, [], max(0.0, end - time.time()))
    for s in w:
        pending.remove(s)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            failed += 1
            s.close()
        else:
            socks.append(s)
for s in pending:
    s.close()
if failed or pending:
    print("%d connects failed, %d timed out" % (failed, len(pending)), flush=True)
for s in socks:
    s.settimeout(5)
    try:
        if a.mode == "garbage":
            s.sendall(os.urandom(104))
        elif a.mode == "wrongkey":
            wrong_hello(s, key)
    except OSError as e:
        print("send: %s" % e, flush=True)
print("open %d" % len(socks), flush=True)

end = time.time() + a.hold_seconds
while not stop[0] and time.time() < end:
    time.sleep(0.1)
closed = 0
for s in socks:
    try:
        s.setblocking(False)
        while s.recv(4096):
            pass
        closed += 1  # recv returned b"": the destination closed it
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        closed += 1  # reset by the destination
    s.close()
print("closed-by-peer %d" % closed, flush=True)
