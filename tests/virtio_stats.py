#!/usr/bin/env python3
# virtio_stats.py DUMP: the virtio test guests' stats record (guest-physical
# 0x9000, 128 bytes; guests/virtio/guest_abi.h, docs/guests.md) as JSON.
import json, struct, sys
d = open(sys.argv[1], "rb").read()
magic, guest, size, features, bdf, _ = struct.unpack_from("<QIIQII", d, 0)
r = dict(valid=magic == 0x3153564544494c47, guest=guest, size=size, features=features, bdf=bdf)
if guest == 1:
    r.update(zip("rx_frames arp icmp udp tx_frames dropped tx_dropped announces".split(), struct.unpack_from("<8Q", d, 0x20)))
    r["mac"] = ":".join("%02x" % b for b in d[0x60:0x66])
    r["prefix"] = d[0x66]
    r["ip"] = ".".join(str(b) for b in d[0x68:0x6c])
elif guest == 2:
    r.update(zip("writes pass next_block blocks flushes capacity".split(), struct.unpack_from("<6Q", d, 0x20)))
    r["block_size"], r["write_size"], r["errors"] = struct.unpack_from("<IIQ", d, 0x50)
print(json.dumps(r))
