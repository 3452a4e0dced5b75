"""A MicroPython (or CPython) MQTT client process for broker tests.

Usage: mqtt_mpy_client.py URL CLIENT_ID TOPIC COUNT WAIT_MS [KEEPALIVE_S]
With ROOST_MPY_PATH set, roost is imported from that tree of .mpy files (as a board runs it).
Subscribes to TOPIC/#, publishes COUNT QoS 1 messages to TOPIC/mine, and prints one line per
message received ("got <topic> <payload> <retain>"), "connected" once, and "done <stats>"
after WAIT_MS, then disconnects cleanly. Its Last Will is "offline" (retained) on
TOPIC/status; it publishes "online" there when connected.
"""

import os
import sys

sys.path.insert(0, sys.argv[0].rsplit("tests/", 1)[0] or ".")
if os.getenv("ROOST_MPY_PATH"):
    sys.path.insert(0, os.getenv("ROOST_MPY_PATH"))

import asyncio  # noqa: E402

from roost.node.aio import now_ms, sleep_ms  # noqa: E402
from roost.node.mqtt import MQTTClient, MQTTConfig  # noqa: E402


def say(line):
    print(line)
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


async def main(argv):
    url, cid, topic, count, wait_ms = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    keepalive = int(argv[6]) if len(argv) > 6 else 30
    status = topic + "/status"

    def on_message(t, payload, retain):
        say("got %s %s %d" % (t, payload.decode(), 1 if retain else 0))

    def on_connect(c):
        c.publish(status, b"online", 1, True)

    c = MQTTClient(cid, [url], will=(status, b"offline", 1, True), on_message=on_message,
                   config=MQTTConfig(keepalive_s=keepalive), on_connect=on_connect)
    c.subscribe(topic + "/#", 1)
    c.start()
    t0 = now_ms()
    while not c.connected and now_ms() - t0 < 10000:
        await sleep_ms(10)
    say("connected" if c.connected else "not connected")
    for i in range(count):
        await c.wait_room()
        c.publish(topic + "/mine", b"m%d" % i, 1)
    await c.wait_idle(10000)
    await sleep_ms(wait_ms)
    say("done %d %d %d" % (c.stats["tx_publish"], c.stats["rx_puback"], c.stats["rx_publish"]))
    await c.stop()


asyncio.run(main(sys.argv))
