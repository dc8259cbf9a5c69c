#!/usr/bin/env python3
"""Opens N MQTT connections (CONNECT, CONNACK, then nothing: Keep Alive 0) to a broker, reads
the broker's RSS from /proc before and after, prints the cost per idle connection.

    python3 benches/idle.py N PORT PID [PROTOCOL]    # PROTOCOL 5 (default) or 4 (3.1.1)

Used by benches/idle.sh."""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connect_packet(client_id, protocol):
    cid = client_id.encode()
    if protocol == 5:
        # protocol name, level 5, flags: clean start, keep alive 0, properties length 0
        var = b"\x00\x04MQTT\x05\x02\x00\x00\x00"
    else:
        var = b"\x00\x04MQTT\x04\x02\x00\x00"
    body = var + len(cid).to_bytes(2, "big") + cid
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def main():
    n, port, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    protocol = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    time.sleep(0.5)
    before = rss_kib(pid)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(connect_packet(f"idle-{i}", protocol))
        socks.append(s)
        # A few hundred in flight at a time: read their CONNACKs.
        if len(socks) % 200 == 0:
            for t in socks[-200:]:
                if t.recv(16)[:1] != b"\x20":
                    sys.exit("no CONNACK")
    for t in socks[len(socks) - len(socks) % 200:]:
        if t.recv(16)[:1] != b"\x20":
            sys.exit("no CONNACK")
    time.sleep(1.0)
    after = rss_kib(pid)
    per = (after - before) * 1024 / n
    print(f"{n} idle connections: RSS {before} -> {after} KiB, {per:.0f} bytes per connection")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
