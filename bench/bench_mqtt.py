"""The project's MQTT client (CPython and the MicroPython unix port) against paho-mqtt on
the same mosquitto: QoS 1 publishes acknowledged per second, and the median QoS 1 round trip
(PUBLISH -> PUBACK, one at a time). TCP_NODELAY on every socket, paho's too.

    python bench/bench_mqtt.py [--messages N] [--json]

Prints one line per client and the ratios (own / paho).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roost.gateway.broker import start_broker  # noqa: E402
from roost.node.mqtt import MQTTClient, MQTTConfig  # noqa: E402

WINDOW = 32  # QoS 1 publishes in flight, the same for every client

MPY_SCRIPT = r"""
import sys
sys.path.insert(0, %(root)r)
import asyncio
import time
from roost.node.aio import now_ms
from roost.node.mqtt import MQTTClient, MQTTConfig

async def main():
    c = MQTTClient("bench-mpy", [%(url)r], config=MQTTConfig(inflight_max=%(window)d,
                   outbox_max=%(window)d, clean_session=True))
    c.start()
    while not c.connected:
        await asyncio.sleep_ms(5)
    payload = b"x" * %(size)d
    rtts = []
    for i in range(%(rtt)d):
        t = time.ticks_us()
        c.publish("bench/mpy", payload, 1)
        await c.wait_idle()
        rtts.append(time.ticks_diff(time.ticks_us(), t))
    t0 = now_ms()
    for i in range(%(n)d):
        await c.wait_room()
        c.publish("bench/mpy", payload, 1)
    await c.wait_idle(60000)
    ms = now_ms() - t0
    rtts.sort()
    print("RESULT", ms, rtts[len(rtts) // 2] / 1000, c.stats["rx_puback"])
    await c.stop()

asyncio.run(main())
"""


async def bench_own(url: str, n: int, size: int, rtt_n: int) -> dict:
    c = MQTTClient("bench-own", [url], config=MQTTConfig(inflight_max=WINDOW, outbox_max=WINDOW,
                                                          clean_session=True))
    c.start()
    while not c.connected:
        await asyncio.sleep(0.005)
    payload = b"x" * size
    rtts = []
    for _ in range(rtt_n):
        t = time.perf_counter()
        c.publish("bench/own", payload, 1)
        await c.wait_idle()
        rtts.append((time.perf_counter() - t) * 1000)
    t0 = time.perf_counter()
    for _ in range(n):
        await c.wait_room()
        c.publish("bench/own", payload, 1)
    await c.wait_idle(60000)
    dt = time.perf_counter() - t0
    acked = c.stats["rx_puback"] - rtt_n
    await c.stop()
    return {"client": "roost MQTTClient (CPython)", "msgs_per_s": acked / dt,
            "rtt_ms_p50": statistics.median(rtts), "acked": acked}


def bench_mpy(url: str, n: int, size: int, rtt_n: int) -> dict | None:
    exe = shutil.which("micropython")
    if exe is None:
        return None
    code = MPY_SCRIPT % {"root": str(ROOT), "url": url, "n": n, "size": size, "rtt": rtt_n,
                         "window": WINDOW}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    out = subprocess.run([exe, "-X", "heapsize=256K", f.name], capture_output=True, text=True,
                         timeout=300)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError("micropython bench failed: " + out.stdout + out.stderr)
    _, ms, rtt, acked = line[0].split()
    return {"client": "roost MQTTClient (MicroPython)", "msgs_per_s": n / (int(ms) / 1000),
            "rtt_ms_p50": float(rtt), "acked": int(acked) - rtt_n}


def bench_paho(url_host: str, port: int, n: int, size: int, rtt_n: int, nodelay: bool) -> dict:
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-paho-%d" % nodelay)
    c.max_inflight_messages_set(WINDOW)
    acked = [0]
    cond = threading.Condition()

    def on_publish(client, userdata, mid, rc, props):
        with cond:
            acked[0] += 1
            cond.notify_all()

    def on_socket_open(client, userdata, sock):
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    connected = threading.Event()
    c.on_publish = on_publish
    c.on_socket_open = on_socket_open
    c.on_connect = lambda *a: connected.set()
    c.connect(url_host, port, 30)
    c.loop_start()
    connected.wait(10)
    payload = b"x" * size
    rtts = []
    for _ in range(rtt_n):
        t = time.perf_counter()
        with cond:
            target = acked[0] + 1
        c.publish("bench/paho", payload, 1)
        with cond:
            cond.wait_for(lambda target=target: acked[0] >= target, 10)
        rtts.append((time.perf_counter() - t) * 1000)
    with cond:
        start = acked[0]
    t0 = time.perf_counter()
    for i in range(n):
        with cond:  # keep at most WINDOW queued, like the other clients' outbox
            cond.wait_for(lambda i=i: i - (acked[0] - start) < WINDOW, 30)
        c.publish("bench/paho", payload, 1)
    with cond:
        cond.wait_for(lambda: acked[0] - start >= n, 60)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    name = "paho-mqtt (TCP_NODELAY)" if nodelay else "paho-mqtt (stock)"
    return {"client": name, "msgs_per_s": (acked[0] - start) / dt,
            "rtt_ms_p50": statistics.median(rtts), "acked": acked[0] - start}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64, help="payload bytes")
    ap.add_argument("--rtt", type=int, default=200, help="single round trips measured")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="roost-bench-mqtt-")
    h = start_broker(d, 0)
    if h.kind != "mosquitto":
        print("note: mosquitto is not installed; measuring against the embedded amqtt")
    rows = []
    try:
        rows.append(asyncio.run(bench_own(h.url, args.messages, args.size, args.rtt)))
        m = bench_mpy(h.url, args.messages, args.size, args.rtt)
        if m:
            rows.append(m)
        rows.append(bench_paho("127.0.0.1", h.port, args.messages, args.size, args.rtt, True))
        rows.append(bench_paho("127.0.0.1", h.port, min(args.messages, 200), args.size,
                               min(args.rtt, 20), False))
    finally:
        h.stop()
    paho_nd = rows[-2]["msgs_per_s"]
    for r in rows:
        r["ratio_vs_paho_nodelay"] = r["msgs_per_s"] / paho_nd
    if args.json:
        print(json.dumps({"broker": h.kind, "messages": args.messages, "size": args.size,
                          "window": WINDOW, "rows": rows}, sort_keys=True))
        return 0
    print("QoS 1 through %s on loopback, %d-byte payloads, window %d" % (h.kind, args.size,
                                                                          WINDOW))
    print("%-34s %12s %12s %8s" % ("client", "msgs/s", "rtt p50 ms", "ratio"))
    for r in rows:
        print("%-34s %12.0f %12.2f %8.2f" % (r["client"], r["msgs_per_s"], r["rtt_ms_p50"],
                                             r["ratio_vs_paho_nodelay"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
