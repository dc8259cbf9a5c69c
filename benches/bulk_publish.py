#!/usr/bin/env python3
"""Publishes N QoS 1 messages of 64 bytes to q/t on 127.0.0.1:PORT with 500 in flight (MQTT 5.0,
raw socket), waiting for every PUBACK. Used by benches/restart.sh."""
import socket, struct, sys
N = int(sys.argv[1]); port = int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
cid = b"bulkpub"
body = b"\x00\x04MQTT\x05\x02\x00\x00\x03\x21\xff\xff" + struct.pack(">H", len(cid)) + cid  # receive max 65535
s.sendall(bytes([0x10, len(body)]) + body)
buf = b""
while len(buf) < 2 or len(buf) < 2 + buf[1]:
    buf += s.recv(100)
buf = buf[2 + buf[1]:]
topic = b"q/t"
W = 500
inflight = 0; sent = 0; acked = 0
payload = b"p" * 64
def pkt(i):
    pid = i % 65535 + 1
    b = struct.pack(">H", len(topic)) + topic + struct.pack(">H", pid) + b"\x00" + payload
    return bytes([0x32, len(b)]) + b
while acked < N:
    chunk = []
    while inflight < W and sent < N:
        chunk.append(pkt(sent)); sent += 1; inflight += 1
    if chunk: s.sendall(b"".join(chunk))
    data = s.recv(65536)
    if not data: raise SystemExit("closed after %d acks" % acked)
    buf += data
    while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
        l = buf[1]
        if buf[0] == 0x40: acked += 1; inflight -= 1
        buf = buf[2 + l:]
print("acked", acked)
