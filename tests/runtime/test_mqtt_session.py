"""The MQTT client's session rules where a real broker cannot be made to misbehave on cue:
a scripted broker (asyncio, loopback) that withholds PUBACKs, drops connections, refuses a
subscription or stops reading. Against mosquitto: a client that only sends QoS 0 keeps its
connection (it pings because it hears nothing, not only because it sends nothing)."""

from __future__ import annotations

import asyncio

import pytest

from roost.node import mqtt_codec as C
from roost.node.mqtt import MQTTClient, MQTTConfig
from tests.runtime.brokers import broker, until

FAST = {"backoff_min_ms": 50, "backoff_max_ms": 400, "connect_timeout_ms": 2000}


class ScriptedBroker:
    """Accepts connections, answers CONNACK (session_present as set), records every
    packet per connection; acks QoS 1 only if ``ack``; SUBACK codes from ``suback``."""

    def __init__(self, ack=True, session_present=True, suback=0, read=True, close_at_once=False):
        self.ack = ack
        self.session_present = session_present
        self.suback = suback
        self.read = read
        self.close_at_once = close_at_once
        self.conns: list[list[tuple]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return "mqtt://127.0.0.1:%d" % self.port

    def drop(self) -> None:
        for w in self.writers:
            w.close()
        self.writers = []

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got: list[tuple] = []
        self.conns.append(got)
        self.writers.append(writer)
        buf = bytearray()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                buf += data
                while True:
                    status, start, end = C.split_packet(buf)
                    if status != 1:
                        break
                    pkt = C.decode_packet(buf[0], bytes(buf[start:end]))
                    del buf[:end]
                    got.append(pkt)
                    await self._answer(pkt, writer)
                    if not self.read:  # take the CONNECT, then never read again
                        await asyncio.sleep(3600)
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _answer(self, pkt: tuple, writer: asyncio.StreamWriter) -> None:
        kind = pkt[0]
        if kind == C.CONNECT:
            writer.write(C.encode_connack(self.session_present, 0))
            if self.close_at_once:
                await writer.drain()
                writer.close()
                return
        elif kind == C.PUBLISH and pkt[3] == 1 and self.ack:
            writer.write(C.encode_puback(pkt[6]))
        elif kind == C.SUBSCRIBE:
            writer.write(C.encode_suback(pkt[1], [self.suback] * len(pkt[2])))
        elif kind == C.PINGREQ:
            writer.write(C.encode_pingresp())
        await writer.drain()


def _publishes(got: list[tuple]) -> list[tuple[bytes, bool, int]]:
    """(payload, dup, pid) of each PUBLISH a connection carried."""
    return [(bytes(p[2]), bool(p[5]), p[6]) for p in got if p[0] == C.PUBLISH]


@pytest.mark.parametrize("session_present", [True, False])
def test_unacknowledged_qos1_comes_again_in_the_order_sent_across_a_packet_id_wrap(
        session_present):
    """Packet ids wrap from 65535 to 1; the resend after a reconnect keeps the order the
    messages were published in. With the session kept they carry DUP; with a broker that
    lost it (failover, restart) they go as new publishes (DUP only for a packet the broker
    may have seen). The session's end is counted once."""

    async def scenario():
        b = ScriptedBroker(ack=False, session_present=session_present)
        url = await b.start()
        c = MQTTClient("wrap", [url], config=MQTTConfig(retry_ms=60000, **FAST))
        c._pid = 65533
        c.start()
        await until(lambda: c.connected, 10, "connected")
        for i in range(5):
            c.publish("w/x", b"m%d" % i, 1)
        await until(lambda: len(_publishes(b.conns[0])) == 5, 10, "five publishes")
        first = _publishes(b.conns[0])
        assert [p[2] for p in first] == [65534, 65535, 1, 2, 3]
        b.drop()
        await until(lambda: len(b.conns) == 2 and len(_publishes(b.conns[1])) == 5, 10,
                    "the resend")
        again = _publishes(b.conns[1])
        assert [p[0] for p in again] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert [p[2] for p in again] == [65534, 65535, 1, 2, 3]
        assert all(p[1] is session_present for p in again), again
        assert c.stats["disconnects"] == 1 and c.stats["connects"] == 2, c.stats
        await c.stop(100)
        await b.close()

    asyncio.run(scenario())


def test_a_broker_that_stops_reading_is_a_dead_connection_and_stop_returns():
    """Writes wait at most dead_ms for the socket to take bytes; stop() returns promptly
    even while the client waits on a socket the broker no longer drains."""

    async def scenario():
        b = ScriptedBroker(read=False)
        url = await b.start()
        c = MQTTClient("stuck", [url], config=MQTTConfig(keepalive_s=1, outbox_max=400,
                                                          **FAST))
        c.start()
        await until(lambda: c.connected, 10, "connected")
        for _ in range(400):  # ~24 MB: more than the loopback socket buffers hold
            c.publish("s/x", bytes(60000), 0)
        await until(lambda: c.stats["dead_timeouts"] >= 1, 15, "a dead connection")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await c.stop(100)
        assert loop.time() - t0 < 3.5
        await b.close()

    asyncio.run(scenario())


def test_a_broker_that_drops_the_client_at_once_is_retried_with_backoff():
    """A broker that accepts and then drops the client (another client with the same id,
    say) is not hammered: sessions shorter than stable_ms back off like failures."""

    async def scenario():
        b = ScriptedBroker(close_at_once=True)
        url = await b.start()
        c = MQTTClient("twin", [url], config=MQTTConfig(backoff_min_ms=200,
                                                         backoff_max_ms=30000))
        c.start()
        await asyncio.sleep(3.0)
        n = len(b.conns)
        await c.stop(100)
        await b.close()
        # 200, 400, 800, 1600 ms (with jitter) fit about 4 attempts in 3 s; without the
        # backoff it reconnected every ~0.1 s (about 30)
        assert 2 <= n <= 7, n

    asyncio.run(scenario())


def test_a_refused_subscription_is_named():
    async def scenario():
        b = ScriptedBroker(suback=0x80)
        url = await b.start()
        c = MQTTClient("acl", [url], config=MQTTConfig(**FAST))
        c.subscribe("roost/f/node/other/inbox", 1)
        c.start()
        await until(lambda: c.stats["sub_refused"] == 1, 10, "the refusal")
        assert c.refused == {"roost/f/node/other/inbox"}
        await c.stop(100)
        await b.close()

    asyncio.run(scenario())


def test_publish_refuses_what_it_could_not_send():
    """A bad payload or topic is the caller's error, raised at once: queued, it used to end
    the client's task when encoded (and the broker then published the Last Will)."""
    c = MQTTClient("bad", ["mqtt://127.0.0.1:1"])
    for payload in (None, 42, {"t": 1}):
        with pytest.raises(TypeError):
            c.publish("b/x", payload)
    with pytest.raises(ValueError):
        c.publish("b/" + "x" * 70000, b"1")
    assert len(c.outbox) == 0


def test_a_client_that_only_sends_qos0_keeps_its_connection(tmp_path):
    """Sending QoS 0 more often than ping_ms, it hears nothing back; it must still ping so
    that the silence of the broker is not taken for a dead connection."""
    h = broker("mosquitto", tmp_path)

    async def scenario():
        c = MQTTClient("quiet", [h.url], config=MQTTConfig(keepalive_s=2, **FAST))
        c.start()
        await until(lambda: c.connected, 10, "connected")
        for _ in range(20):  # 6 s: four times the 1.5 s that dead_ms allows without a ping
            c.publish("q/x", b"1", 0)
            await asyncio.sleep(0.3)
        assert c.stats["connects"] == 1 and c.stats["dead_timeouts"] == 0, c.stats
        assert c.stats["pings"] >= 2
        await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()
