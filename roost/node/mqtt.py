"""A small asyncio MQTT 3.1.1 client for MicroPython and CPython.

Only ``socket``, ``asyncio`` and ``struct`` (packets in ``mqtt_codec``; socket readiness and
the clock in ``aio``): CONNECT with a Last Will, username/password, a persistent session
(clean_session False, fixed client id), keepalive with PINGREQ and a dead-connection timeout,
SUBSCRIBE, PUBLISH QoS 0/1 with a bounded in-flight window and retransmission (DUP) of
unacknowledged QoS 1, receiving QoS 0/1 (PUBACK after the handler ran), reconnection with
exponential backoff across several broker URLs (failover), and a bounded outbox that keeps
publishes while the broker is away and counts what it drops.

    c = MQTTClient("n03", ["mqtt://n03:pw@10.0.0.2:1883", "mqtt://10.0.0.3"],
                   will=("roost/f/node/n03/status", b"offline", 1, True), on_message=cb)
    c.subscribe("roost/f/node/n03/inbox", 1)
    c.start()                       # a task: connects, reconnects, pings, retransmits
    c.publish("roost/f/node/n03/data", b"21.5", qos=1)   # never blocks; queued if offline
    await c.stop()                  # DISCONNECT: the broker does not send the will
"""

import asyncio
import socket

from roost.common.config import apply_overrides
from roost.common.prng import Prng
from roost.node.aio import (
    now_ms,
    random_seed,
    sleep_ms,
    wait_event_ms,
    wait_readable,
    wait_writable,
)
from roost.node.mqtt_codec import (
    CONNACK,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    UNSUBACK,
    decode_packet,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_publish,
    encode_subscribe,
    oversized,
    parse_url,
    split_packet,
)
from roost.node.ring import Ring

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_EAGAIN = (11, 35, 115, 119)  # EAGAIN/EWOULDBLOCK, EINPROGRESS, EALREADY (Linux, BSD, lwIP)
_CHUNK = const(512)  # bytes read from the socket at a time (a board's small, reused buffer)


def _recv_into(s, buf):
    if hasattr(s, "recv_into"):  # CPython
        return s.recv_into(buf)
    return s.readinto(buf)  # MicroPython: None if no data


# ---------------------------------------------------------------- the client


class MQTTConfig:
    """Client timing and bounds (defaults for a LAN broker; see WIFI for boards)."""

    keepalive_s = 30  # broker drops us (and publishes the will) after 1.5x this silence
    ping_ms = 0  # PINGREQ after this much send silence; 0 = keepalive / 2
    dead_ms = 0  # no byte from the broker for this long = dead connection; 0 = 1.5x keepalive
    connect_timeout_ms = 5000  # TCP connect + CONNACK; past it, try the next broker URL
    retry_ms = 2000  # an unacknowledged QoS 1 publish is sent again (DUP) after this
    inflight_max = 32  # QoS 1 publishes sent but not yet acknowledged
    outbox_max = 256  # publishes kept while the broker is away; the oldest are dropped
    backoff_min_ms = 200  # first reconnect delay after every URL failed; doubles each round
    backoff_max_ms = 30000  # reconnect delay cap (a broker being rebooted takes seconds)
    stable_ms = 2000  # a session dropped sooner than this backs off like a failed connect
    max_packet = 16384  # a larger inbound packet is a protocol error (ESP32-sized buffers)
    clean_session = False  # keep subscriptions and queued QoS 1 across reconnects
    nodelay = True  # TCP_NODELAY: without it a QoS 1 round trip waits for delayed ACKs

    def __init__(self, **overrides):
        apply_overrides(self, MQTTConfig, overrides, "mqtt")
        if self.keepalive_s < 1 or self.keepalive_s > 65535:
            raise ValueError("mqtt option keepalive_s must be 1..65535")
        if self.inflight_max < 1 or self.outbox_max < 1:
            raise ValueError("mqtt options inflight_max and outbox_max must be at least 1")
        if self.backoff_min_ms < 1 or self.backoff_max_ms < self.backoff_min_ms:
            raise ValueError("mqtt backoff needs 1 <= backoff_min_ms <= backoff_max_ms")
        if not self.ping_ms:
            self.ping_ms = self.keepalive_s * 500
        if not self.dead_ms:
            self.dead_ms = self.keepalive_s * 1500


WIFI = {"keepalive_s": 60, "retry_ms": 5000, "connect_timeout_ms": 10000, "inflight_max": 8,
        "outbox_max": 64, "max_packet": 8192}  # an OTA frame (4 KB of code, or a 52-file
# image's 5.4 KB manifest) must fit: roost ota publish sizes its frames by this


class MQTTError(Exception):
    pass


class MQTTClient:
    """See the module docstring. Not thread-safe: use it from one asyncio loop."""

    def __init__(self, client_id, brokers, will=None, on_message=None, config=None,
                 rng=None, on_connect=None):
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
            raise ValueError("an MQTT client id is 1..64 characters")
        if isinstance(brokers, str):
            brokers = [brokers]
        if not brokers:
            raise ValueError("at least one broker URL is needed")
        self.brokers = [parse_url(u) for u in brokers]
        self.client_id = client_id
        self.will = will
        self.on_message = on_message
        self.on_connect = on_connect
        self.config = config if config is not None else MQTTConfig()
        self.rng = rng if rng is not None else Prng(random_seed())
        self.outbox = Ring(self.config.outbox_max)
        self.inflight = {}  # pid -> [packet bytes, last sent ms, send order]
        self.subs = {}  # filter -> qos
        self._sub_pending = {}  # pid -> filters awaiting SUBACK
        self._pid = 0
        self._seq = 0  # send order of QoS 1 publishes: pids wrap, this does not
        self.refused = set()  # filters the broker refused (SUBACK 0x80), e.g. by its ACL
        self._sock = None
        self._rx = bytearray()
        self._kick = asyncio.Event()
        self._stopped = asyncio.Event()
        self._room = asyncio.Event()  # set when the outbox or the window shrinks
        self._lock = asyncio.Lock()
        self._ctrl = []  # SUBSCRIBE packets waiting to be written
        self._reader_done = True
        self._last_rx = self._last_tx = self._last_ping = 0
        self._task = None
        self._running = False
        self._chunk = bytearray(_CHUNK)  # one preallocated receive buffer (no garbage per read)
        self._chunk_mv = memoryview(self._chunk)
        self._recv_into = _recv_into
        self._url_index = 0
        self.connected = False
        self.broker = None  # (host, port) of the current connection
        self.stats = {
            "connects": 0, "connect_failures": 0, "disconnects": 0, "tx_publish": 0,
            "tx_retransmit": 0, "rx_publish": 0, "rx_puback": 0, "rx_malformed": 0,
            "rx_oversize": 0, "rx_unexpected": 0, "outbox_dropped": 0, "handler_errors": 0,
            "pings": 0, "dead_timeouts": 0, "publish_invalid": 0, "sub_refused": 0,
        }

    # -------------------------------------------------------- public API

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a publish; it goes out as soon as the connection and the window allow.

        Never blocks. While the broker is away publishes wait in the bounded outbox (the
        oldest are dropped and counted). Returns False if something was dropped to fit."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
            raise ValueError("publish needs a topic without wildcards")
        if len(topic.encode()) > 65535:
            raise ValueError("an MQTT topic is at most 65535 bytes")
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError("an MQTT payload is bytes or str")
        if len(payload) > 268435000:
            raise ValueError("an MQTT payload is at most 256 MB")
        before = self.outbox.dropped
        self.outbox.push((topic, payload, qos, retain))
        self.stats["outbox_dropped"] = self.outbox.dropped
        self._kick.set()
        return self.outbox.dropped == before

    def subscribe(self, topic_filter, qos=1):
        """Subscribe now and after every reconnect."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.subs[topic_filter] = qos
        if self.connected:
            self._send_subscribe([topic_filter])

    def start(self):
        """Start the connection task (connects, reconnects, pings, retransmits)."""
        if self._task is None:
            self._running = True
            self._stopped = asyncio.Event()
            self._task = asyncio.create_task(self._run())
        return self._task

    async def stop(self, timeout_ms=2000):
        """Flush what is queued (up to timeout_ms), DISCONNECT cleanly, end the task."""
        t_end = now_ms() + timeout_ms
        while self.connected and (len(self.outbox) or self.inflight) and now_ms() < t_end:
            self._kick.set()
            await sleep_ms(5)
        self._running = False
        self._stopped.set()
        if self.connected:
            try:
                await self._timed(self._write(encode_disconnect()), 500)
            except (OSError, MQTTError, asyncio.TimeoutError):  # noqa: UP041
                pass
        self._close()
        self._kick.set()
        task = self._task
        self._task = None
        if task is not None:
            try:  # a task waiting on the closed socket is cancelled after a second
                await self._timed(task, 1000)
            except (Exception, asyncio.CancelledError):  # ended on its own error, or cancelled
                pass

    async def wait_room(self, timeout_ms=10000):
        """Wait until the outbox can take a publish without dropping (False on timeout)."""
        t_end = now_ms() + timeout_ms
        while len(self.outbox) >= self.config.outbox_max:
            if now_ms() >= t_end:
                return False
            self._room.clear()
            await wait_event_ms(self._room, 50)
        return True

    async def wait_idle(self, timeout_ms=10000):
        """Wait until everything queued was sent and acknowledged (False on timeout)."""
        t_end = now_ms() + timeout_ms
        while not self.idle():
            if now_ms() >= t_end:
                return False
            self._room.clear()
            await wait_event_ms(self._room, 50)
        return True

    def idle(self):
        """True when nothing is queued or waiting for an acknowledgement."""
        return not len(self.outbox) and not self.inflight

    # -------------------------------------------------------- connection loop

    async def _run(self):
        cfg = self.config
        backoff = cfg.backoff_min_ms
        failures = 0
        while self._running:
            host, port, user, password = self.brokers[self._url_index]
            ok = False
            t_up = 0
            try:
                await self._connect(host, port, user, password)
                ok = True
                t_up = now_ms()
                failures = 0
                await self._session()
            except (OSError, MQTTError, asyncio.TimeoutError):  # noqa: UP041
                pass
            except MemoryError:  # a board's heap ran out mid-session: reconnect afresh
                self.stats["memory_errors"] = self.stats.get("memory_errors", 0) + 1
            self._close()
            if ok:
                self.stats["disconnects"] += 1
            if not self._running:
                break
            if ok and now_ms() - t_up >= cfg.stable_ms:  # a session that lasted
                backoff = cfg.backoff_min_ms
                await wait_event_ms(self._stopped, self.rng.randbelow(cfg.backoff_min_ms))
                continue
            if not ok:
                self.stats["connect_failures"] += 1
                failures += 1
                self._url_index = (self._url_index + 1) % len(self.brokers)
                if failures % len(self.brokers):  # try the next URL at once
                    continue
            # a full round of URLs failed, or the broker dropped us soon after accepting us
            # (a twin with our client id, a publish it refuses): wait longer each time
            delay = backoff // 2 + self.rng.randbelow(backoff // 2 + 1)
            backoff = min(backoff * 2, cfg.backoff_max_ms)
            await wait_event_ms(self._stopped, delay)

    async def _connect(self, host, port, user, password):
        cfg = self.config
        addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock = s
        s.setblocking(False)
        if cfg.nodelay:
            try:
                s.setsockopt(getattr(socket, "IPPROTO_TCP", 6),
                             getattr(socket, "TCP_NODELAY", 1), 1)
            except (OSError, AttributeError):
                pass
        try:
            s.connect(addr)
        except OSError as e:
            if e.args[0] not in _EAGAIN:
                raise
        self._rx = bytearray()
        packet = encode_connect(self.client_id, cfg.keepalive_s, cfg.clean_session, self.will,
                                user, password)
        t0 = now_ms()
        await self._timed(self._write(packet), cfg.connect_timeout_ms)
        while True:
            left = cfg.connect_timeout_ms - (now_ms() - t0)
            if left <= 0:
                raise MQTTError("no CONNACK")
            pkt = await self._timed(self._read_packet(), left)
            if pkt[0] == CONNACK:
                break
            raise MQTTError("the broker's first packet was not CONNACK")
        if pkt[2] != 0:
            raise MQTTError("broker refused the connection, code %d" % pkt[2])
        self.connected = True
        self.broker = (host, port)
        self.stats["connects"] += 1
        self._last_rx = self._last_tx = now_ms()
        # the session: subscriptions, then unacknowledged QoS 1 again in the order first
        # sent: with DUP if the broker kept our session, as new publishes if it did not
        # (a failover to another broker, or one restarted without persistence)
        if self.subs:
            self._send_subscribe(sorted(self.subs))
        await self._retransmit(True, pkt[1] == 1)
        if self.on_connect is not None:
            try:
                self.on_connect(self)
            except Exception:
                self.stats["handler_errors"] += 1

    async def _timed(self, coro, ms):
        if ms <= 0:
            ms = 1
        if hasattr(asyncio, "wait_for_ms"):
            return await asyncio.wait_for_ms(coro, ms)
        return await asyncio.wait_for(coro, ms / 1000)

    async def _session(self):
        """Run one connection: a reader task, and this loop for sends, pings and timeouts."""
        reader = asyncio.create_task(self._reader())
        self._reader_done = False
        try:
            while self._running and self.connected and not self._reader_done:
                await self._flush()
                now = now_ms()
                if now - self._last_rx > self.config.dead_ms:
                    self.stats["dead_timeouts"] += 1
                    raise MQTTError("dead connection")
                await self._retransmit(False)
                if now >= self._ping_due():
                    self.stats["pings"] += 1
                    self._last_ping = now
                    await self._write(encode_pingreq())
                self._kick.clear()
                if len(self.outbox) and len(self.inflight) < self.config.inflight_max:
                    continue
                await wait_event_ms(self._kick, self._wait_ms())
        finally:
            self._close()
            if not self._reader_done:
                reader.cancel()
            try:
                await self._timed(reader, 1000)
            except (Exception, asyncio.CancelledError):  # it ended with the socket: handled
                pass

    def _ping_due(self):
        """When to send PINGREQ: after ping_ms with nothing sent (the broker's keepalive),
        or with nothing heard (a node that only sends QoS 0 must still learn that the
        broker answers before dead_ms runs out)."""
        heard = self._last_rx if self._last_rx > self._last_ping else self._last_ping
        due = (heard if heard < self._last_tx else self._last_tx) + self.config.ping_ms
        return due

    def _wait_ms(self):
        now = now_ms()
        cfg = self.config
        wait = self._ping_due() - now
        dead = cfg.dead_ms - (now - self._last_rx) + 1
        if dead < wait:
            wait = dead
        for pid in self.inflight:
            w = cfg.retry_ms - (now - self.inflight[pid][1])
            if w < wait:
                wait = w
        return max(1, min(wait, 1000))

    async def _reader(self):
        try:
            while self._running and self.connected:
                pkt = await self._read_packet()
                self._last_rx = now_ms()
                await self._dispatch(pkt)
        except (OSError, MQTTError):
            pass
        except MemoryError:  # a board's heap had no room for a packet: reconnect afresh
            self.stats["memory_errors"] = self.stats.get("memory_errors", 0) + 1
        finally:
            self._reader_done = True
            self._kick.set()

    async def _dispatch(self, pkt):
        kind = pkt[0]
        if kind == PUBLISH:
            self.stats["rx_publish"] += 1
            _, topic, payload, qos, retain, _dup, pid = pkt
            if qos == 2:  # we never subscribe with qos 2: a broker bug, not a message
                self.stats["rx_unexpected"] += 1
                return
            if self.on_message is not None:
                try:
                    self.on_message(topic, payload, retain)
                except Exception:
                    self.stats["handler_errors"] += 1
            if qos == 1:
                await self._write(encode_puback(pid))
        elif kind == PUBACK:
            if self.inflight.pop(pkt[1], None) is not None:
                self.stats["rx_puback"] += 1
                self._kick.set()
                self._room.set()
            else:
                self.stats["rx_unexpected"] += 1
        elif kind == SUBACK:
            filters = self._sub_pending.pop(pkt[1], None) or ()
            codes = pkt[2]
            for i in range(len(filters)):
                if i < len(codes) and codes[i] == 0x80:
                    self.stats["sub_refused"] += 1
                    self.refused.add(filters[i])
                else:
                    self.refused.discard(filters[i])
        elif kind in (PINGRESP, UNSUBACK):
            pass
        else:
            self.stats["rx_unexpected"] += 1

    async def _read_packet(self):
        while True:
            buf = self._rx
            status, start, end = split_packet(buf, self.config.max_packet)
            if status == 1:
                pkt = decode_packet(buf[0], bytes(buf[start:end]))
                self._rx = buf[end:]  # MicroPython's bytearray has no slice deletion
                if pkt is None:
                    self.stats["rx_malformed"] += 1
                    raise MQTTError("malformed packet")
                return pkt
            if status < 0:
                big = oversized(buf, self.config.max_packet)
                if big is None:
                    self.stats["rx_malformed"] += 1
                    raise MQTTError("malformed stream")
                await self._skip_packet(buf[0], big[0], big[1])
                continue
            await self._recv_more()

    async def _skip_packet(self, first, start, length):
        """Drop a packet larger than max_packet as its bytes arrive (never buffered whole),
        and acknowledge a QoS 1 PUBLISH so the broker does not send it again: a big
        retained message must not make a board reconnect forever. Counted in rx_oversize."""
        self.stats["rx_oversize"] += 1
        pid = 0
        if first >> 4 == PUBLISH and (first >> 1) & 3 == 1:
            while len(self._rx) < start + 2:
                await self._recv_more()
            need = start + 2 + ((self._rx[start] << 8) | self._rx[start + 1]) + 2
            if need - start > length or need > self.config.max_packet:
                self.stats["rx_malformed"] += 1
                raise MQTTError("malformed packet")
            while len(self._rx) < need:
                await self._recv_more()
            pid = (self._rx[need - 2] << 8) | self._rx[need - 1]
        left = start + length
        while len(self._rx) < left:
            left -= len(self._rx)
            self._rx = bytearray()
            await self._recv_more()
        self._rx = self._rx[left:]
        if pid:
            await self._write(encode_puback(pid))

    async def _recv_more(self):
        """Wait for bytes from the socket and append them to the receive buffer."""
        while True:
            s = self._sock
            if s is None:
                raise MQTTError("closed")
            await wait_readable(s)
            if self._sock is not s:
                raise MQTTError("closed")
            try:
                n = self._recv_into(s, self._chunk)
            except OSError as e:
                if e.args[0] in _EAGAIN:
                    continue
                raise
            if n is None:  # MicroPython: nothing there after all
                continue
            if not n:
                raise MQTTError("connection closed by broker")
            self._rx.extend(self._chunk_mv[:n])
            return n

    async def _write(self, data):
        async with self._lock:
            await self._write_locked(data)

    async def _write_locked(self, data):
        s = self._sock
        if s is None:
            raise MQTTError("not connected")
        mv = memoryview(data)
        off = 0
        t0 = now_ms()
        while off < len(data):
            try:
                n = s.send(mv[off:])
            except OSError as e:
                if e.args[0] not in _EAGAIN:
                    raise
                n = 0
            if n is None:
                n = 0
            off += n
            if off < len(data):
                left = self.config.dead_ms - (now_ms() - t0)
                if left <= 0:  # the broker stopped reading: as dead as a silent one
                    self.stats["dead_timeouts"] += 1
                    raise MQTTError("the broker takes no more bytes")
                try:
                    await self._timed(wait_writable(s), left)
                except asyncio.TimeoutError:  # noqa: UP041
                    pass  # checked at the top of the next round
                if self._sock is not s:
                    raise MQTTError("closed")
        self._last_tx = now_ms()

    def _next_pid(self):
        for _ in range(65536):
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight and self._pid not in self._sub_pending:
                return self._pid
        raise MQTTError("no free packet id")

    def _send_subscribe(self, filters):
        pid = self._next_pid()
        self._sub_pending[pid] = filters
        self._ctrl.append(encode_subscribe(pid, [(f, self.subs[f]) for f in filters]))
        self._kick.set()

    async def _flush(self):
        """Send control packets, then outbox publishes while the in-flight window has room."""
        ctrl = self._ctrl
        while ctrl:
            await self._write(ctrl[0])
            ctrl.pop(0)
        cfg = self.config
        batch = b""
        while len(self.outbox) and len(self.inflight) < cfg.inflight_max:
            topic, payload, qos, retain = self.outbox.peek()
            pid = self._next_pid() if qos else 0
            try:
                pkt = encode_publish(topic, payload, qos, retain, False, pid)
            except (TypeError, ValueError):  # publish() checks; never let one kill the client
                self.outbox.pop()
                self.stats["publish_invalid"] += 1
                continue
            self.outbox.pop()
            self._room.set()
            if qos:
                self._seq += 1
                self.inflight[pid] = [pkt, now_ms(), self._seq]
            self.stats["tx_publish"] += 1
            batch += pkt
            if len(batch) >= 1400:
                await self._write(batch)
                batch = b""
        if batch:
            await self._write(batch)

    async def _retransmit(self, everything, dup=True):
        """Send unacknowledged QoS 1 publishes again, oldest first: those past retry_ms,
        or everything (a new connection). dup False: the broker has no session with us,
        so they go as new publishes (MQTT-3.3.1-1: DUP only for a packet it may have seen)."""
        now = now_ms()
        inflight = self.inflight
        for pid in sorted(inflight, key=lambda p: inflight[p][2]):
            entry = inflight.get(pid)
            if entry is None:
                continue
            if everything or now - entry[1] >= self.config.retry_ms:
                pkt = entry[0]
                if bool(pkt[0] & 0x08) != dup:
                    pkt = bytes((pkt[0] ^ 0x08,)) + pkt[1:]
                    entry[0] = pkt
                entry[1] = now
                if not everything:
                    self.stats["tx_retransmit"] += 1
                await self._write(pkt)

    def _close(self):
        self.connected = False
        s = self._sock
        self._sock = None
        self._rx = bytearray()
        self._sub_pending = {}
        self._ctrl = []
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
