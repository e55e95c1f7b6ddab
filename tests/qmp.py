#!/usr/bin/env python3
# qmp.py SOCK COMMAND [JSON-ARGUMENTS]: one QMP command to a QEMU's monitor
# socket, its reply on stdout; exits 1 on an error reply. 30 s timeout.
import json, socket, sys
sock, cmd = sys.argv[1], sys.argv[2]
args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sock)
f = s.makefile("rw")
def call(c, a):
    f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # greeting
call("qmp_capabilities", {})
r = call(cmd, args)
print(json.dumps(r))
sys.exit(1 if "error" in r else 0)
