"""The paho-mqtt wrapper speaks the same small interface as the project's client: QoS 1
both ways between a PahoClient and an MQTTClient through mosquitto."""

import asyncio

import pytest

from roost.node.mqtt import MQTTClient, MQTTConfig
from tests.runtime.brokers import broker, until

paho_mod = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")


def test_paho_and_own_client_exchange_qos1(tmp_path):
    from roost.gateway.mqtt_paho import PahoClient

    h = broker("mosquitto", tmp_path)

    async def scenario():
        got_paho: list = []
        got_own: list = []
        p = PahoClient("paho1", [h.url], on_message=lambda t, m, r: got_paho.append(m))
        p.subscribe("x/to-paho", 1)
        o = MQTTClient("own1", [h.url], on_message=lambda t, m, r: got_own.append(m),
                       config=MQTTConfig(backoff_min_ms=50))
        o.subscribe("x/to-own", 1)
        p.start()
        o.start()
        await until(lambda: p.connected and o.connected and not o._sub_pending, 10, "up")
        await asyncio.sleep(0.2)  # paho's SUBACK
        for i in range(100):
            o.publish("x/to-paho", b"%d" % i, 1)
            p.publish("x/to-own", b"%d" % i, 1)
        await until(lambda: len(got_paho) >= 100 and len(got_own) >= 100, 10, "both ways")
        assert got_paho == [b"%d" % i for i in range(100)] == got_own
        assert await p.wait_idle(5000) and p.stats["rx_puback"] == 100
        await p.stop()
        await o.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()
