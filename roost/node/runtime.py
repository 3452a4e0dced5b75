"""The node runtime: binds a host (the node's cores) to a clock, transports and a flash dir.

asyncio on CPython and MicroPython alike. It boots the way the simulator does, so a host is
written once for both worlds:

    incarnation = boot counter in storage, +1 at each start (durable before anything runs)
    channel = Channel(node_id, key, incarnation)
    host = host_factory(node_id, channel, storage_dict, rng, now_ms)

then hands datagrams (UDP, MQTT inbox) to ``host.receive``, ticks the host at
``host.next_deadline_ms()``, and carries out the effects IN ORDER: PERSIST is written to the
flash directory before the next effect runs (persist before send), SEND goes to the first
transport that reaches the peer ("*" = every known peer), APPLY and EVENT go to observers
``fn(now_ms, node_id, effect)``.

A transport has ``send(dst, payload) -> bool`` (False: no route to dst), ``peers()``,
``async recv() -> (src, payload)`` and ``close()``: ``udp.UdpTransport`` and
``MqttTransport`` below (node traffic through the broker for peers UDP cannot reach).
"""

import asyncio
import gc
import json
import sys

from roost.common.channel import Channel
from roost.common.config import apply_overrides
from roost.common.prng import Prng
from roost.node.aio import (
    MICROPYTHON,
    now_ms,
    random_seed,
    sleep_ms,
    unwatch,
    wait_event_ms,
    watch_readable,
)
from roost.node.effects import APPLY, EVENT, PERSIST, SEND

if MICROPYTHON:  # a file per key: no index in RAM (a board's heap must not fragment)
    from roost.node.storage import DirStorage as Storage
else:  # one append-only log: one write per step
    from roost.node.logstore import LogStorage as Storage

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BOOT_KEY = "_boot"  # storage key of the boot counter (the incarnation); hidden from hosts
_MAX_SLEEP_MS = const(1000)  # the tick loop wakes at least this often (stop, status)
# datagrams handled per wake-up (and per durable write) at most; a board keeps the held
# sends and staged records of few datagrams in its heap at once
_RX_BATCH = 4 if MICROPYTHON else 32
_STATUS_SOON_MS = const(1000)  # status_soon() publishes the status at most this often
_MAX_REBUILDS = const(3)  # memory errors within the window that make a node give up
_REBUILD_WINDOW_MS = const(60000)


class RuntimeConfig:
    """How a node process runs (the cores have their own configs)."""

    fleet = "default"  # topics live under roost/<fleet>/
    seed = 0  # 0: the host's Prng is seeded from os.urandom; else from this and the boot
    storage_sync = True  # fsync each write (CPython): survives a power cut, not only kill -9
    status_interval_ms = 5000  # how often the status is published (retained) over MQTT
    mqtt_qos = 0  # node traffic through the broker: the cores retry, so QoS 0 is enough
    # MicroPython: collect garbage after this many bytes are allocated (0: only when the
    # heap is full). Collected early, garbage does not spread over the whole heap and a
    # board keeps blocks of a few KB free under load: a board joining a fleet with its code
    # in ROMFS fitted in 192 KB beside it with 32 KB, and needed 224 KB with 0 (2026-12-06)
    gc_threshold = 32768 if MICROPYTHON else 0
    # the boot number (the incarnation every message carries) is at least this: seconds
    # since 2020 when the node started (nodemain) or was flashed (roost flash). Peers drop a
    # number they have seen before, so a node whose flash was wiped (a board flashed with
    # --firmware, a Pi's data directory deleted) must not count its boots from 1 again
    boot_floor = 0

    def __init__(self, **overrides):
        apply_overrides(self, RuntimeConfig, overrides, "runtime")
        if self.gc_threshold < 0:
            raise ValueError("runtime option gc_threshold must not be negative")
        if self.mqtt_qos not in (0, 1):
            raise ValueError("runtime option mqtt_qos must be 0 or 1")
        if self.status_interval_ms < 100:
            raise ValueError("runtime option status_interval_ms must be at least 100")
        if not isinstance(self.boot_floor, int) or self.boot_floor < 0:
            raise ValueError("runtime option boot_floor must be a whole number >= 0")


def topic(fleet, node_id, leaf):
    """roost/<fleet>/node/<id>/<leaf> (leaf: status, state, inbox, data/...)."""
    return "roost/" + fleet + "/node/" + node_id + "/" + leaf


class MqttTransport:
    """Node traffic through the broker: a peer's inbox is roost/<fleet>/node/<id>/inbox.

    Wraps a client with ``publish``/``subscribe``/``on_message`` (``mqtt.MQTTClient`` or the
    CPython ``gateway.mqtt_paho.PahoClient``). Inbound payloads wait in a bounded queue."""

    def __init__(self, client, fleet, node_id, peers=(), qos=0, queue_max=64):
        self.client = client
        self.fleet = fleet
        self.node_id = node_id
        self.qos = qos
        self.known = sorted(peers)
        self.queue = []
        self.queue_max = queue_max
        self.ready = asyncio.Event()
        self.inbox = topic(fleet, node_id, "inbox")
        self.stats = {"mqtt_tx": 0, "mqtt_rx": 0, "mqtt_rx_dropped": 0}
        prev = client.on_message
        self._prev = prev
        client.on_message = self._on_message
        client.subscribe(self.inbox, qos)

    def _on_message(self, t, payload, retained):
        if t != self.inbox:
            if self._prev is not None:
                self._prev(t, payload, retained)
            return
        if retained:
            return
        if len(self.queue) >= self.queue_max:
            self.queue.pop(0)
            self.stats["mqtt_rx_dropped"] += 1
        self.queue.append(bytes(payload))
        self.stats["mqtt_rx"] += 1
        self.ready.set()

    def peers(self):
        return self.known

    def send(self, dst, payload):
        if dst == self.node_id:
            return False
        self.client.publish(topic(self.fleet, dst, "inbox"), payload, self.qos)
        self.stats["mqtt_tx"] += 1
        return True

    def poll(self):
        """One waiting payload ("", payload), or None."""
        if not self.queue:
            return None
        return "", self.queue.pop(0)

    async def recv(self):
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        return "", self.queue.pop(0)

    def close(self):
        self.ready.set()


class NodeRuntime:
    """Run one node: boot, receive, tick, carry out effects, publish status, stop."""

    # set by status_soon() (a role changed: publish the status before its time); a class
    # default: an instance holds its own only once that happened
    _status_soon = False

    def __init__(self, host_factory, node_id, key, storage_dir, transports=(), config=None,
                 observers=(), mqtt=None, log=None):
        self.host_factory = host_factory
        self.node_id = node_id
        self.key = key
        self.config = config if config is not None else RuntimeConfig()
        if self.config.gc_threshold and hasattr(gc, "threshold"):
            gc.threshold(self.config.gc_threshold)
        self.storage = Storage(storage_dir, sync=self.config.storage_sync)
        self.transports = list(transports)
        self.observers = list(observers)
        self.mqtt = mqtt  # optional client: status (retained) and Last Will
        self.status_doc = None  # a fuller status() to publish (the node's), or None
        self.log = log if log is not None else _log
        self.host = None
        self.channel = None
        self.incarnation = 0
        self.running = False
        self.started_ms = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks = []
        self.blocked = set()  # the fault switch: peers we neither send to nor hear from
        self.loss_ppm = 0  # the fault switch: this share (per million) of traffic is lost
        self._fault_rng = Prng(random_seed())
        self._held = []  # (now, effect) waiting for the staged PERSISTs to be written
        self._sleep_until = 0  # when the sleeping tick loop wakes anyway (-1: it is awake)
        self._rebuild = False  # a step ran out of memory: rebuild the host from flash
        self._oom = []  # when the last memory errors happened (ms)
        self.out_of_memory = False  # given up: too many rebuilds (see _step_out_of_memory)
        self.stood_down = False  # another board took this node's id (see stand_down)
        self.stats = {"rx": 0, "tx": 0, "tx_no_route": 0, "persists": 0, "flushes": 0,
                      "ticks": 0, "applies": 0, "events": 0, "host_errors": 0,
                      "fault_dropped": 0, "rx_batches": 0}

    # -------------------------------------------------------- boot

    def boot(self):
        """Recover from the flash dir, bump the incarnation, build the host (synchronous)."""
        state = self.storage.boot_state()
        boot = state.pop(_BOOT_KEY, 0)
        if not isinstance(boot, int) or boot < 0:
            boot = 0
        boot = max(boot + 1, self.config.boot_floor)
        self.storage.put(_BOOT_KEY, boot)  # durable before any message leaves this boot
        self.incarnation = boot
        self.channel = Channel(self.node_id, self.key, boot)
        seed = self.config.seed
        rng = Prng(random_seed()) if not seed else Prng(seed).fork("boot%d" % boot)
        now = now_ms()
        self.started_ms = now
        self.host = self.host_factory(self.node_id, self.channel, state, rng, now)
        self.log("%s boot %d: recovered %d records from its flash" % (self.node_id, boot,
                                                                     len(state)))
        return self.host

    # -------------------------------------------------------- effects

    def execute(self, effects, now=None, flush=True):
        """Carry out effects in order. PERSISTs are staged; every effect after the first
        staged one waits in ``_held`` until ``flush()`` has written all staged records with
        one durable write (persist before send). ``flush=False`` lets the receive loop
        group the steps of several datagrams into one write."""
        if effects:
            if now is None:
                now = now_ms()
            held = self._held
            st = self.storage
            for e in effects:
                kind = e[0]
                if kind == PERSIST:
                    st.stage(e[1], e[2])
                    self.stats["persists"] += 1
                elif held or st.pending():
                    held.append((now, e))
                else:
                    self._do(now, e)
        if flush:
            self.flush()

    def _do(self, now, e):
        kind = e[0]
        if kind == SEND:
            self._send(e[1], e[2])
        elif kind == APPLY or kind == EVENT:
            self.stats["applies" if kind == APPLY else "events"] += 1
            for fn in self.observers:
                try:
                    fn(now, self.node_id, e)
                except Exception as ex:  # an observer's bug must not stop the node
                    self._error("observer", ex)

    def flush(self):
        """Write what is staged (one write, fsync'ed when configured), then carry out the
        effects that waited for it; wake the tick loop if the host's deadline moved earlier."""
        if self.storage.pending():
            try:
                self.storage.commit()
            except OSError as ex:  # flash full or gone: a node that cannot persist stops
                self._held = []
                self.stats["storage_errors"] = self.stats.get("storage_errors", 0) + 1
                self._error("storage", ex)
                self.stop()
                return
            self.stats["flushes"] += 1
        held = self._held
        if held:
            self._held = []
            for now, e in held:
                self._do(now, e)
        host = self.host
        if host is not None:
            d = host.next_deadline_ms()
            if d is not None and d < self._sleep_until:
                self._wake.set()  # the tick loop sleeps past the host's new deadline

    def peers(self):
        """Every peer some transport can reach, sorted, without this node."""
        seen = {}
        for t in self.transports:
            for p in t.peers():
                if p != self.node_id:
                    seen[p] = True
        return sorted(seen)

    def _send(self, dst, payload):
        if dst == "*":
            for p in self.peers():
                self._send_one(p, payload)
        else:
            self._send_one(dst, payload)

    def _send_one(self, dst, payload):
        if dst in self.blocked or (self.loss_ppm and self._fault_rng.chance(self.loss_ppm)):
            self.stats["fault_dropped"] += 1
            return
        for t in self.transports:
            if t.send(dst, payload):
                self.stats["tx"] += 1
                return
        self.stats["tx_no_route"] += 1

    def deliver(self, src, payload, flush=True):
        """One inbound payload (from any transport) into the host (``flush=False``: the
        caller flushes after a batch of datagrams)."""
        if src and src in self.blocked:
            self.stats["fault_dropped"] += 1
            return
        if self.loss_ppm and self._fault_rng.chance(self.loss_ppm):
            self.stats["fault_dropped"] += 1
            return
        host = self.host
        if host is None or self._rebuild:  # being rebuilt after a memory error (see
            # rebuild): a host that ran out of memory mid-step may be half-changed, and the
            # rest of its batch of datagrams waits for (is dropped before) the rebuild
            self.stats["rx_while_rebuilding"] = self.stats.get("rx_while_rebuilding", 0) + 1
            return
        self.stats["rx"] += 1
        self._step("receive", host.receive, flush, src, payload)

    def _step(self, where, fn, flush, *args):
        """fn(now, *args) -> effects, carried out; a memory error or a core bug in it is
        counted (and a rebuild asked for) and the node stays up."""
        now = now_ms()
        try:
            effects = fn(now, *args)
        except MemoryError as ex:
            self._step_out_of_memory(where, ex)
            effects = None
        except Exception as ex:  # a core bug on one message: count it, keep the node up
            self._error(where, ex)
            effects = None
        self._execute_or_rebuild(where, effects, now, flush)

    def _execute_or_rebuild(self, where, effects, now, flush=True):
        """execute(), but a MemoryError while staging or writing drops every effect that
        waited for the write (a send must never leave without its record on flash) and has
        the host rebuilt from flash, which holds only what was written."""
        try:
            self.execute(effects, now, flush)
        except MemoryError as ex:
            self._held = []
            self._step_out_of_memory(where + " (writing)", ex)

    def _step_out_of_memory(self, where, ex, rebuild=True):
        """Say where the heap ran out (one line, and the traceback where the interpreter
        prints one), then rebuild the host (see rebuild; not when no core was stepped),
        unless this is the _MAX_REBUILDS-th memory error within _REBUILD_WINDOW_MS: then
        the node stops taking part and says so once (a node that reboots its cores over and
        over disrupts its group's elections; a board stops feeding its watchdog and resets
        into a fresh heap)."""
        self._low_memory()
        if self.out_of_memory:
            return
        self.log("%s: out of memory (%s): %s" % (self.node_id, where, ex))
        if hasattr(sys, "print_exception"):
            sys.print_exception(ex)
        now = now_ms()
        self._oom = [t for t in self._oom if now - t < _REBUILD_WINDOW_MS] + [now]
        if len(self._oom) < _MAX_REBUILDS:
            self._rebuild = self._rebuild or rebuild
            return
        self._rebuild = False
        self.out_of_memory = True
        self._drop_host()
        self.log("%s: ran out of memory %d times within %d s: the node stops taking part "
                 "(its flash is intact; restart it with a larger heap)"
                 % (self.node_id, len(self._oom), _REBUILD_WINDOW_MS // 1000))

    def status_soon(self):
        """Publish the status within a second, not at its next interval (a role changed)."""
        self._status_soon = True

    def stand_down(self):
        """Stop taking part for good: another board runs as this node with a later boot (the
        fleet drops this one's datagrams as replays). The host goes; the process stays up, so
        a board keeps feeding its watchdog instead of resetting into the same fight."""
        if not self.stood_down:
            self.stood_down = True
            self._rebuild = False  # a rebuild still asked for would bring the cores back
            self._drop_host()

    def _drop_host(self):
        """Write the whole steps before the failing one, then let the host go."""
        self.flush()
        self.host = None
        gc.collect()

    def rebuild(self):
        """After a MemoryError inside a step. The cores may be half-changed by it (say, a
        promise raised in RAM whose PERSIST was never written), so they are rebuilt from
        flash, as a board's reset would, while the process keeps its sockets and its MQTT
        session. A rebuild that does not fit either counts as one more memory error."""
        self._rebuild = False
        if self.stood_down or self.out_of_memory:
            return False
        self._drop_host()
        try:
            self.boot()
        except MemoryError as ex:
            self.host = None
            self._step_out_of_memory("rebuild", ex)
            return False
        self.stats["memory_rebuilds"] = self.stats.get("memory_rebuilds", 0) + 1
        return True

    def call(self, fn):
        """Run a local command: ``fn(host, now_ms) -> effects``; carries them out (None
        while the host is being rebuilt)."""
        if self.host is None or self._rebuild:
            return None
        now = now_ms()
        effects = fn(self.host, now)
        self._execute_or_rebuild("call", effects, now)
        return effects

    def _error(self, where, ex):
        self.stats["host_errors"] += 1
        self.log("%s: %s error: %s %s" % (self.node_id, where, type(ex).__name__, ex))
        if hasattr(sys, "print_exception"):
            sys.print_exception(ex)

    # -------------------------------------------------------- status

    def status(self):
        """A small dict a caller can publish: identity, peers, counters, the host's own."""
        st = {"node": self.node_id, "incarnation": self.incarnation,
              "uptime_ms": now_ms() - self.started_ms, "peers": self.peers(), "stats": {}}
        if self.out_of_memory:
            st["out_of_memory"] = True
        if self.stood_down:
            st["stood_down"] = True
        stats = st["stats"]
        for src in [self.stats, self.channel.stats if self.channel else {}]:
            for k in sorted(src):
                stats[k] = src[k]
        for t in self.transports:
            ts = getattr(t, "stats", None) or {}
            for k in sorted(ts):
                stats[k] = ts[k]
        host_status = getattr(self.host, "status", None)
        if callable(host_status):
            try:
                st["host"] = host_status()
            except Exception as ex:
                self._error("status", ex)
        return st

    def publish_status(self):
        if self.mqtt is None:
            return
        try:  # the node's own document (joined, its board's slot and updates) when it has one
            data = json.dumps((self.status_doc or self.status)())
        except (TypeError, ValueError) as ex:
            self._error("status", ex)
            return
        self.mqtt.publish(topic(self.config.fleet, self.node_id, "state"), data, 0, True)

    # -------------------------------------------------------- loops

    async def _rx_loop(self, t):
        while self.running:
            try:
                src, payload = await t.recv()
            except MemoryError as ex:
                # no room for a datagram: a node that cannot hear its group stalls it as
                # leader and disrupts its elections as follower (no core changed: no rebuild)
                self._step_out_of_memory("recv", ex, False)
                await wait_event_ms(self._stop, 10)
                continue
            except OSError:
                if not self.running:
                    return
                await wait_event_ms(self._stop, 100)
                continue
            if not self.running:
                return
            self._receive(t, src, payload)
            # a transport's recv returns at once while datagrams wait: without a yield here
            # a busy MicroPython node's other tasks (ticks, status, fault switch, a board's
            # watchdog) waited for a lull; its status went 11 s stale under a 4-client load
            await sleep_ms(0)

    def _on_readable(self, t):
        """CPython: t's socket has datagrams (the event loop calls this; see run)."""
        if not self.running:
            return
        got = t.poll()
        if got is not None:
            self._receive(t, got[0], got[1])

    def _receive(self, t, src, payload):
        try:
            self._deliver_batch(t, src, payload)
        except MemoryError as ex:  # receiving the next datagram, or writing: as above
            self._held = []
            self._step_out_of_memory("recv", ex)

    def _deliver_batch(self, t, src, payload):
        """The datagram just received and every one already waiting (at most _RX_BATCH):
        one flush, so their PERSISTs share one durable write and the loop wakes once."""
        self.stats["rx_batches"] += 1
        poll = getattr(t, "poll", None)
        n = 0
        host = self.host  # requests among the batch share one Paxos slot (PaxosCore.hold)
        held = host is not None and not self._rebuild and hasattr(host, "hold")
        if held:
            host.hold()
        try:
            while True:
                self.deliver(src, payload, False)
                n += 1
                if poll is None or n >= _RX_BATCH or self._stop.is_set():
                    break
                got = poll()
                if got is None:
                    break
                src, payload = got
        finally:
            if held and self.host is host and not self._rebuild:
                self._step("release", host.release, False)
            self.flush()
            if self._rebuild:
                self.rebuild()

    def _low_memory(self):
        self.stats["memory_errors"] = self.stats.get("memory_errors", 0) + 1
        gc.collect()

    async def _tick_loop(self):
        while self.running:
            try:
                await self._tick_loop_inner()
            except MemoryError:
                self._low_memory()
                await wait_event_ms(self._stop, 10)

    async def _tick_loop_inner(self):
        next_status = now_ms()
        while self.running:
            if self.out_of_memory or self.stood_down or (self._rebuild and not self.rebuild()):
                await wait_event_ms(self._stop, 100 if self._rebuild else _MAX_SLEEP_MS)
                continue
            now = now_ms()
            d = self.host.next_deadline_ms()
            if d is not None and d <= now:
                self.stats["ticks"] += 1
                try:
                    effects = self.host.tick(now)
                except MemoryError as ex:
                    self._step_out_of_memory("tick", ex)
                    effects = None
                except Exception as ex:
                    self._error("tick", ex)
                    effects = None
                    await wait_event_ms(self._stop, 100)  # do not spin on a failing tick
                self._execute_or_rebuild("tick", effects, now)
                continue
            if self._status_soon:  # due a second after the last one, if that is sooner
                self._status_soon = False
                soon = next_status - self.config.status_interval_ms + _STATUS_SOON_MS
                if soon < next_status:
                    next_status = soon
            if self.mqtt is not None and now >= next_status:
                next_status = now + self.config.status_interval_ms
                self.publish_status()
            wait = _MAX_SLEEP_MS if d is None else d - now
            if self.mqtt is not None and next_status - now < wait:
                wait = next_status - now
            if wait > _MAX_SLEEP_MS:
                wait = _MAX_SLEEP_MS
            if MICROPYTHON and wait >= 20:
                gc.collect()  # idle: collect now rather than in the middle of a message
            wait = max(wait, 1)
            self._sleep_until = now + wait
            self._wake.clear()
            await wait_event_ms(self._wake, wait)
            self._sleep_until = -1

    async def run(self):
        """Boot (unless booted), start the transports' receive loops, tick until stop()."""
        if self.host is None:
            self.boot()
        self.running = True
        self._stop = asyncio.Event()
        watched = []
        for t in self.transports:
            # a UDP socket on CPython is read from the event loop's callback, without a
            # task switch per datagram; other transports (and MicroPython) poll in a task
            sock = getattr(t, "sock", None)
            if not MICROPYTHON and sock is not None and hasattr(t, "poll"):
                watch_readable(sock, self._on_readable, t)
                watched.append(sock)
            else:
                self._tasks.append(asyncio.create_task(self._rx_loop(t)))
        try:
            await self._tick_loop()
        finally:
            self.running = False
            for sock in watched:
                unwatch(sock)
            for t in self.transports:
                t.close()
            for task in self._tasks:
                task.cancel()
            self._tasks = []

    def stop(self):
        """Graceful stop: the loops end, the transports close (state is already durable)."""
        self.running = False
        self._stop.set()
        self._wake.set()


def _log(msg):
    print(msg)


def node_mqtt_client(node_id, fleet, urls, password=None, config=None, client_cls=None):
    """An MQTT client for a node: client id = node id, persistent session, a retained
    ``offline`` Last Will on roost/<fleet>/node/<id>/status and ``online`` on each connect."""
    if client_cls is None:
        from roost.node.mqtt import MQTTClient as client_cls
    status = topic(fleet, node_id, "status")
    if password is not None:
        urls = [with_credentials(u, node_id, password) for u in urls]

    def online(c):
        c.publish(status, b"online", 1, True)

    return client_cls(node_id, urls, will=(status, b"offline", 1, True), config=config,
                      on_connect=online)


def with_credentials(url, user, password):
    """url with user:password@ added (a URL that already names a user is kept)."""
    scheme = "mqtt://"
    rest = url
    if "://" in url:
        scheme, rest = url.split("://", 1)
        scheme += "://"
    if "@" in rest:
        return url
    return scheme + user + ":" + password + "@" + rest


__all__ = ["NodeRuntime", "RuntimeConfig", "MqttTransport", "node_mqtt_client", "topic",
           "MICROPYTHON"]


class ConfigError(ValueError):
    """A board's node config (config.json and its runtime options) that cannot run, in one
    sentence: the board idles in safe mode instead of resetting into it again."""


def run_board(cfg, secrets, hooks):
    """The board entry point that firmware's main.py calls (imported late: it pulls in
    every core, which the runtime alone does not need)."""
    from roost.node.nodemain import run_board as _run_board

    return _run_board(cfg, secrets, hooks)
