"""Helper run inside a namespace by the tests: a UDP receiver that counts, and a sender.

    python _tool.py recv PORT SECONDS STOP_AT   -> {"count": n, "sources": [...]}
    python _tool.py send HOST PORT N            -> {"sent": n, "errors": e}

The receiver prints "ready" first and stops at STOP_AT datagrams or after SECONDS.
"""

import json
import socket
import sys
import time


def recv(port, seconds, stop_at):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE (root): no local drops
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    count, sources = 0, set()
    while count < stop_at:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except OSError:
            break
        count += 1
        sources.add(addr[0])
    print(json.dumps({"count": count, "sources": sorted(sources)}), flush=True)


def send(host, port, n):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = errors = 0
    for i in range(n):
        try:
            c.sendto(b"roost-test-%d" % i, (host, port))
            sent += 1
        except OSError:
            errors += 1
        if i % 25 == 24:
            time.sleep(0.002)  # pace a little: the point is the link's loss, not a full queue
    print(json.dumps({"sent": sent, "errors": errors}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
