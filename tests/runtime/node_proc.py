"""A node process for runtime tests: TinyHost on NodeRuntime over UDP (and MQTT if given).

Usage (python or micropython):
  node_proc.py NODE_ID DIR UDP_PORT PEERS KEY FOR_MS [MQTT_URL [MQTT_PEERS]]
PEERS is "n2=127.0.0.1:7002,n3=127.0.0.1:7003" (or "-"); MQTT_PEERS are ids reached through
the broker only. Prints one JSON line per event; stops by itself after FOR_MS (bounded), or
on SIGTERM (CPython) with a final "stopped" line.
"""

import sys

sys.path.insert(0, sys.argv[0].rsplit("tests/", 1)[0] or ".")

import asyncio  # noqa: E402
import json  # noqa: E402

from roost.node.runtime import MqttTransport, NodeRuntime, node_mqtt_client  # noqa: E402
from roost.node.udp import UdpTransport  # noqa: E402
from tests.runtime.tinyhost import tiny_factory  # noqa: E402


def say(obj):
    print(json.dumps(obj))
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


def parse_peers(text):
    peers = {}
    if text and text != "-":
        for item in text.split(","):
            name, addr = item.split("=")
            host, port = addr.rsplit(":", 1)
            peers[name] = (host, int(port))
    return peers


async def main(argv):
    node_id, d, port, peers, key, for_ms = argv[1:7]
    udp = UdpTransport("127.0.0.1", int(port), parse_peers(peers))
    udp.open()
    transports = [udp]
    client = None
    if len(argv) > 7:
        client = node_mqtt_client(node_id, "test", [argv[7]])
        mqtt_peers = argv[8].split(",") if len(argv) > 8 and argv[8] != "-" else []
        transports.append(MqttTransport(client, "test", node_id, mqtt_peers))
        client.start()

    def observe(now, node, effect):
        say({"ev": effect[1], "data": effect[2], "inc": rt.incarnation, "t": now})

    rt = NodeRuntime(tiny_factory(), node_id, key, d, transports, observers=[observe],
                     mqtt=client, log=lambda m: None)
    host = rt.boot()
    say({"ev": "boot", "inc": rt.incarnation, "recovered": host.recovered, "note": host.note})
    try:
        import signal

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, rt.stop)
    except (ImportError, AttributeError):
        pass

    async def limit():
        await asyncio.sleep(int(for_ms) / 1000)
        rt.stop()

    asyncio.create_task(limit())
    if rt.incarnation == 1:
        rt.call(lambda h, now: h.set_note(now, "first boot"))
    await rt.run()
    if client is not None:
        await client.stop()
    say({"ev": "stopped", "status": rt.status()})


asyncio.run(main(sys.argv))
