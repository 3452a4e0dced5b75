"""The node MQTT interface on paho-mqtt, for CPython nodes and the gateway. CPython only.

``PahoClient`` has the same small surface as ``roost.node.mqtt.MQTTClient`` (``publish``,
``subscribe``, ``start``, ``await stop()``, ``connected``, ``stats``, ``wait_idle``), so
``NodeRuntime``/``MqttTransport`` take either. paho runs its network loop in a thread;
callbacks are handed to the asyncio loop that called ``start()``. TCP_NODELAY is set on
paho's socket (stock paho waits for delayed ACKs: an 88 ms QoS 1 round trip here, 0.2 ms
with it). Broker URLs are tried in turn when a connection fails (failover).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from typing import Any

import paho.mqtt.client as paho

from roost.node.mqtt import MQTTConfig
from roost.node.mqtt_codec import parse_url


class PahoClient:
    def __init__(self, client_id: str, brokers: list[str] | str, will: tuple | None = None,
                 on_message: Any = None, config: MQTTConfig | None = None, rng: Any = None,
                 on_connect: Any = None) -> None:
        if isinstance(brokers, str):
            brokers = [brokers]
        if not brokers:
            raise ValueError("at least one broker URL is needed")
        self.brokers = [parse_url(u) for u in brokers]
        self.config = config or MQTTConfig()
        self.on_message = on_message
        self.on_connect = on_connect
        self.connected = False
        self.stats = {"connects": 0, "disconnects": 0, "tx_publish": 0, "rx_publish": 0,
                      "rx_puback": 0, "outbox_dropped": 0, "connect_failures": 0}
        self._index = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._unacked: set[int] = set()
        self._early: set[int] = set()
        self._qos0: set[int] = set()
        self._outbox: deque = deque()
        self.subs: dict[str, int] = {}
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=self.config.clean_session)
        c.max_inflight_messages_set(self.config.inflight_max)
        c.max_queued_messages_set(self.config.outbox_max)
        c.reconnect_delay_set(max(1, self.config.backoff_min_ms // 1000),
                              max(1, self.config.backoff_max_ms // 1000))
        if will is not None:
            c.will_set(will[0], will[1], will[2], will[3])
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_socket_open
        self.client = c
        self._use(0)

    def _use(self, i: int) -> None:
        host, port, user, password = self.brokers[i]
        self._index = i
        self.client.username_pw_set(user, password) if user else None
        self._host = (host, port)

    # paho thread -> asyncio loop
    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        if self.config.nodelay:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc != 0:
            self.stats["connect_failures"] += 1
            return
        self.connected = True
        self.stats["connects"] += 1
        for f in sorted(self.subs):
            client.subscribe(f, self.subs[f])
        if self.on_connect is not None:
            self._call(self.on_connect, self)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        if self.connected:
            self.stats["disconnects"] += 1
        self.connected = False
        if len(self.brokers) > 1:  # fail over: paho reconnects to the host set here
            self._use((self._index + 1) % len(self.brokers))
            client._host, client._port = self._host

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.stats["rx_publish"] += 1
        if self.on_message is not None:
            self._call(self.on_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            if mid in self._qos0:  # a QoS 0 publish left the socket: nothing to count
                self._qos0.discard(mid)
                return
            self.stats["rx_puback"] += 1
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:  # acknowledged before publish() could note it down
                self._early.add(mid)

    # the node interface
    def publish(self, topic: str, payload: bytes | str, qos: int = 0,
                retain: bool = False) -> bool:
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            self.stats["outbox_dropped"] += 1
            return False
        self.stats["tx_publish"] += 1
        with self._lock:
            if info.mid in self._early:  # already reported by paho's thread
                self._early.discard(info.mid)
                if not qos:
                    self.stats["rx_puback"] -= 1
            elif qos:
                self._unacked.add(info.mid)
            else:
                self._qos0.add(info.mid)
        return True

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.subs[topic_filter] = qos
        if self.connected:
            self.client.subscribe(topic_filter, qos)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self._host
        self.client.connect_async(host, port, self.config.keepalive_s)
        self.client.loop_start()

    def idle(self) -> bool:
        with self._lock:
            return not self._unacked

    async def wait_idle(self, timeout_ms: int = 10000) -> bool:
        loop = asyncio.get_running_loop()
        t_end = loop.time() + timeout_ms / 1000
        while not self.idle():
            if loop.time() > t_end:
                return False
            await asyncio.sleep(0.001)
        return True

    async def stop(self, timeout_ms: int = 2000) -> None:
        await self.wait_idle(timeout_ms)
        self.client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self.client.loop_stop)
        self.connected = False
