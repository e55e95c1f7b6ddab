#!/usr/bin/env python3
"""Fault-injecting TCP proxy for glide's migration streams (tests only).

Sits between a source and a destination monitor on loopback, understands
the handshake (fixed sizes) and the frames (16-byte clear header: u32 type,
u32 length, u64 sequence; payload; 16-byte GCM tag or 4-byte CRC), and
injects exactly one fault when a given frame passes:

  kill       SIGKILL --pid before the frame is forwarded
  cut        reset both connections (RST) instead of forwarding the frame
  hold       stop forwarding in both directions for --hold-seconds
  corrupt    flip one byte of the frame's payload (of its trailer if empty)
  duplicate  forward the frame twice
  reorder    forward the next frame of the same direction first
  drop       do not forward the frame

--frame names a frame type (CONFIG, LIVE, SYNC, ..., see FRAMES) or a
handshake part (HELLO_D, HELLO_S, AUTH_D); --dir says which direction;
--nth picks the occurrence; --after NAME counts only frames that come
after a NAME frame was seen (in any direction), e.g. LIVE after SYNC_ACK
is the first page frame of phase 0. Every connection, frame and the
injection are logged to --log, so a test can check that the fault was
really injected. Bounded: it exits after --max-seconds.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

FRAMES = ["?", "CONFIG", "CONFIG_OK", "LIVE", "PROBE", "FINAL", "STATE", "RESTORED", "GO", "RUNNING",
          "ABORT", "SYNC", "SYNC_ACK", "VERIFY"]
HELLO_D, HELLO_S, AUTH_D = 48, 104, 40
HEADER, TAG, CRC = 16, 16, 4

args = None
lock = threading.Lock()
log_file = None
counts = {}
seen = set()
injected = False
held = threading.Event()  # set: a hold is in force


def log(line):
    with lock:
        log_file.write("%.3f %s\n" % (time.time(), line))
        log_file.flush()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def should_inject(direction, name):
    """Counts the frame and says whether the fault fires on it (once)."""
    global injected
    with lock:
        if args.after and args.after not in seen:
            seen.add(name)
            return False
        seen.add(name)
        if injected or args.fault == "none" or direction != args.dir or name != args.frame:
            return False
        counts[name] = counts.get(name, 0) + 1
        if counts[name] != args.nth:
            return False
        injected = True
        return True


class Conn:
    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.encrypted = None
        self.auth_known = threading.Event()
        self.done = {"s2d": threading.Event(), "d2s": threading.Event()}
        self.closed = False

    def close(self):
        self.closed = True
        reset(self.src)
        reset(self.dst)


def inject(conn, direction, name, data, out):
    """Applies the fault to one unit (frame or handshake part); returns the bytes to forward."""
    log("injected %s at %s %s #%d" % (args.fault, direction, name, args.nth))
    if args.fault == "kill":
        try:
            os.kill(args.pid, signal.SIGKILL)
        except OSError as e:
            log("kill failed: %s" % e)
        return data
    if args.fault == "cut":
        conn.close()
        return None
    if args.fault == "hold":
        held.set()
        time.sleep(args.hold_seconds)
        held.clear()
        return data
    if args.fault == "corrupt":
        b = bytearray(data)
        at = HEADER if len(b) > HEADER + (TAG if conn.encrypted else CRC) else len(b) - 1
        b[at] ^= 0x20
        return bytes(b)
    if args.fault == "duplicate":
        return data + data
    if args.fault == "drop":
        return b""
    if args.fault == "reorder":
        return ("reorder", data)
    return data


class WriteFailed(Exception):
    pass


def send(sock, data):
    try:
        sock.sendall(data)
    except OSError as e:
        raise WriteFailed(e)


def pump(conn, direction):
    a, b = (conn.src, conn.dst) if direction == "s2d" else (conn.dst, conn.src)
    pending = None  # a frame held back by reorder
    write_failed = False
    try:
        parts = [("HELLO_S", HELLO_S)] if direction == "s2d" else [("HELLO_D", HELLO_D), ("AUTH_D", AUTH_D)]
        for name, size in parts:
            data = recv_exact(a, size)
            if name == "AUTH_D":
                conn.encrypted = bool(struct.unpack("<I", data[4:8])[0] & 1)
                conn.auth_known.set()
            log("%s %s %d bytes" % (direction, name, size))
            if should_inject(direction, name):
                data = inject(conn, direction, name, data, b)
                if data is None:
                    return
            while held.is_set():
                time.sleep(0.05)
            send(b, data if isinstance(data, bytes) else data[1])
        if direction == "s2d":
            conn.auth_known.wait(30)
        while not conn.closed:
            header = recv_exact(a, HEADER)
            ftype, length, seq = struct.unpack("<IIQ", header)
            trailer = TAG if conn.encrypted else CRC
            body = recv_exact(a, length + trailer)
            name = FRAMES[ftype] if ftype < len(FRAMES) else "?"
            data = header + body
            log("%s %s seq %d len %d" % (direction, name, seq, length))
            if should_inject(direction, name):
                data = inject(conn, direction, name, data, b)
                if data is None:
                    return
                if isinstance(data, tuple):  # reorder: this one goes after the next
                    pending = data[1]
                    continue
            while held.is_set():
                time.sleep(0.05)
            send(b, data)
            if pending is not None:
                send(b, pending)
                pending = None
    except WriteFailed:
        write_failed = True
    except (EOFError, OSError):
        pass
    finally:
        if pending is not None:
            try:
                b.sendall(pending)
            except OSError:
                pass
        log("%s closed" % direction)
        # as a TCP peer would: what one side ends reaches the other (FIN);
        # when the receiving side is gone, the sender's next bytes get a reset
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if write_failed:
            # the receiver is gone: what it said before it went (an ABORT)
            # is forwarded first, then the sender gets the reset
            conn.done["d2s" if direction == "s2d" else "s2d"].wait(2)
            reset(a)
        conn.done[direction].set()


def main():
    global args, log_file
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 the source connects to")
    p.add_argument("--to", type=int, required=True, help="the destination's migration port on 127.0.0.1")
    p.add_argument("--log", required=True)
    p.add_argument("--fault", default="none",
                   choices=["none", "kill", "cut", "hold", "corrupt", "duplicate", "reorder", "drop"])
    p.add_argument("--dir", choices=["s2d", "d2s"], default="s2d")
    p.add_argument("--frame", default="LIVE")
    p.add_argument("--nth", type=int, default=1)
    p.add_argument("--after", default="")
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--hold-seconds", type=float, default=3600)
    p.add_argument("--max-seconds", type=float, default=300)
    args = p.parse_args()
    log_file = open(args.log, "a")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen))
    ls.listen(16)
    ls.settimeout(0.5)
    log("started: fault %s at %s %s #%d%s" % (args.fault, args.dir, args.frame, args.nth,
                                               " after " + args.after if args.after else ""))
    end = time.time() + args.max_seconds
    while time.time() < end:
        try:
            s, _ = ls.accept()
        except socket.timeout:
            continue
        try:
            d = socket.create_connection(("127.0.0.1", args.to), timeout=5)
            d.settimeout(None)
        except OSError as e:
            log("cannot reach the destination: %s" % e)
            s.close()
            continue
        log("connection")
        conn = Conn(s, d)
        for direction in ("s2d", "d2s"):
            threading.Thread(target=pump, args=(conn, direction), daemon=True).start()
    log("max time reached")


if __name__ == "__main__":
    main()
