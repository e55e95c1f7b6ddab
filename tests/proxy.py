#!/usr/bin/env python3
"""A TCP proxy for fault tests: forwards LISTEN -> TARGET (loopback only) and,
on the first connection, can flip one byte or cut the connection after N
bytes from the source side. Bounded: exits after --max-seconds."""
import argparse, socket, threading, time, sys

ap = argparse.ArgumentParser()
ap.add_argument("--listen", type=int, required=True)
ap.add_argument("--target", type=int, required=True)
ap.add_argument("--corrupt-at", type=int, default=-1)
ap.add_argument("--cut-at", type=int, default=-1)
ap.add_argument("--max-seconds", type=int, default=120)
a = ap.parse_args()

first = [True]
lock = threading.Lock()

def pump(src, dst, fault):
    seen = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if fault:
                if a.cut_at >= 0 and seen + len(data) > a.cut_at:
                    keep = a.cut_at - seen
                    dst.sendall(data[:keep])
                    print("cut after %d bytes" % a.cut_at, flush=True)
                    src.shutdown(socket.SHUT_RDWR); dst.shutdown(socket.SHUT_RDWR)
                    return
                if a.corrupt_at >= 0 and seen <= a.corrupt_at < seen + len(data):
                    b = bytearray(data); b[a.corrupt_at - seen] ^= 0x20; data = bytes(b)
                    print("corrupted byte %d" % a.corrupt_at, flush=True)
            seen += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass

ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", a.listen)); ls.listen(16); ls.settimeout(0.5)
end = time.time() + a.max_seconds
print("listening", flush=True)
while time.time() < end:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        continue
    t = socket.create_connection(("127.0.0.1", a.target))
    with lock:
        fault = first[0]; first[0] = False
    threading.Thread(target=pump, args=(c, t, fault), daemon=True).start()
    threading.Thread(target=pump, args=(t, c, False), daemon=True).start()
