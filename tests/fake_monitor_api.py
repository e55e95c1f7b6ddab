#!/usr/bin/env python3
"""A stand-in for a monitor's API on a UNIX socket (tests only): answers
GET /v1/vm with {"state": STATE} and anything else with 404. Bounded:
exits after --max-seconds."""
import argparse
import json
import os
import socket
import time

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--socket", required=True)
p.add_argument("--state", required=True)
p.add_argument("--max-seconds", type=float, default=30)
a = p.parse_args()
try:
    os.unlink(a.socket)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX)
s.bind(a.socket)
s.listen(8)
s.settimeout(0.5)
end = time.time() + a.max_seconds
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(2)
    try:
        req = c.recv(4096).decode(errors="replace")
        if req.startswith("GET /v1/vm "):
            body, status = json.dumps({"state": a.state}), "200 OK"
        else:
            body, status = json.dumps({"error": "not here"}), "404 Not Found"
        c.sendall(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                   % (status, len(body), body)).encode())
    except OSError:
        pass
    c.close()
os.unlink(a.socket)
