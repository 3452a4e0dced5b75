"""Build and run one node from a JSON config: runtime + transports + host + sensors.

MicroPython-safe (the same file starts a Pi node, an emulated ESP32 node under the unix
port, and a board through ``run_board``). The config (all keys but node_id optional)::

    {"node_id": "n03", "fleet": "lab",
     "key_file": "fleet.key",              # or the env ROOST_FLEET_KEY (or "key" on a board)
     "udp": ["127.0.0.1", 7003],           # bind address
     "peers": {"n01": ["127.0.0.1", 7001]},  # UDP address book
     "members": ["n01", "n02", "n03"],     # the fleet; ids without a UDP address go by MQTT
     "seeds": ["n01"],                     # gossip join (default: every member)
     "brokers": ["mqtt://127.0.0.1:1883"], "mqtt_password": null,
     "groups": [["g0", ["n01", "n02", "n03"]]],   # replica groups; this node serves its own
     "board": "esp32", "sensors": "simulated",    # or "real" or "none"
     "storage": "fleet/n03/flash", "control": "fleet/n03/control.json",
     "status_file": "fleet/n03/status.json", "preset": "lan",
     "gossip": {}, "paxos": {}, "kv": {}, "host": {}, "runtime": {}, "mqtt": {}}

``control`` is the fault switch the chaos tool writes: ``{"blocked": ["n01"], "loss": 0.2}``
(datagrams to and from blocked peers are dropped, and that share of all traffic); the node
reads it every 250 ms. ``status_file`` receives the node's status (JSON) every second.

Console lines: ``roost: started <id>``, ``roost: joined fleet <fleet> as <id>``; a replica
that boots with an empty flash: ``roost: <id> replica flash empty: rebuilding before it
votes``, then ``roost: <id> rebuilt: votes again`` (or ``... a new replica group: votes``).
"""

import asyncio
import json
import os

try:
    import time
except ImportError:  # pragma: no cover
    time = None

from roost.common.ids import check_id
from roost.node.aio import MICROPYTHON, now_ms, wait_event_ms
from roost.node.effects import EVENT
from roost.node.runtime import (
    ConfigError,
    MqttTransport,
    NodeRuntime,
    RuntimeConfig,
    node_mqtt_client,
    topic,
)
from roost.node.udp import UdpTransport

_KNOWN = ("node_id", "fleet", "key_file", "key", "udp", "peers", "members", "seeds", "brokers",
          "mqtt_password", "groups", "board", "sensors", "sensor_seed", "storage", "control",
          "status_file", "preset", "gossip", "paxos", "kv", "host", "runtime", "mqtt",
          "boot_floor", "mqtt_password_file", "discovery")
_EAGAIN = (11, 35, 119)  # EAGAIN/EWOULDBLOCK on Linux, BSD and lwIP
_LEARN_MAX = 64  # client routes remembered (clients reach replicas from unknown addresses)


def _say(msg):
    print(msg)


class FleetUdp(UdpTransport):
    """UDP with learned return routes: a datagram from an address outside the book comes in
    with src "@"; once the host authenticated it, ``learn(sender)`` keeps the route back."""

    def __init__(self, bind_host, bind_port, peers=None):
        UdpTransport.__init__(self, bind_host, bind_port, peers)
        self.learned = {}  # client id -> socket address (bounded; oldest forgotten)
        self._last = None

    def poll(self):
        """Like UdpTransport.poll, but an unknown address comes in as src "@" (kept)."""
        if self.sock is None:
            return None
        try:
            data, a = self._recvfrom()
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            self.stats["udp_rx_errors"] += 1
            return None
        if len(data) > self.max_bytes:
            self.stats["udp_rx_oversize"] += 1
            return None
        self.stats["udp_rx"] += 1
        if isinstance(a, bytearray):
            a = bytes(a)
        src = self.by_addr.get(a)
        if src is None:
            self.stats["udp_rx_unknown_addr"] += 1
            self._last = a
            return "@", data
        return src, data

    def learn(self, sender, src):
        a = self._last
        if src != "@" or a is None or sender in self.addr:
            return
        if sender not in self.learned and len(self.learned) >= _LEARN_MAX:
            for k in self.learned:  # forget one (insertion order does not matter here)
                del self.learned[k]
                break
        self.learned[sender] = a

    def send(self, dst, payload):
        a = self.learned.get(dst)
        if a is None or dst in self.addr:
            return UdpTransport.send(self, dst, payload)
        try:
            self.sock.sendto(payload, a)
            self.stats["udp_tx"] += 1
        except (OSError, AttributeError):
            self.stats["udp_tx_errors"] += 1
        return True




# ---------------------------------------------------------------- config


def _bad(msg):
    raise ValueError("node config: " + msg)


def _addr(v, what):
    if (not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], str)
            or not isinstance(v[1], int) or isinstance(v[1], bool) or not 0 <= v[1] < 65536):
        _bad("%s must be [host, port]" % what)
    return v[0], v[1]


def check_config(cfg):
    """A config dict -> the same dict checked (ValueError: one sentence naming the option)."""
    if not isinstance(cfg, dict):
        _bad("the file must hold a JSON object")
    for k in sorted(cfg):
        if k not in _KNOWN:
            _bad("unknown option %r" % (k,))
    if "node_id" not in cfg:
        _bad("node_id is missing")
    check_id(cfg["node_id"])
    check_id(cfg.get("fleet", "default"), "fleet")
    if "udp" in cfg:
        _addr(cfg["udp"], "udp")
    peers = cfg.get("peers", {})
    if not isinstance(peers, dict):
        _bad("peers must be an object {id: [host, port]}")
    for p in sorted(peers):
        check_id(p, "peer id")
        _addr(peers[p], "peer " + p)
    for name in ("members", "seeds", "brokers"):
        v = cfg.get(name, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            _bad("%s must be a list of strings" % name)
    groups = cfg.get("groups", [])
    if not isinstance(groups, list):
        _bad("groups must be a list of [name, [members]]")
    for g in groups:
        if (not isinstance(g, list) or len(g) != 2 or not isinstance(g[0], str)
                or not isinstance(g[1], list) or not g[1]):
            _bad("groups must be a list of [name, [members]]")
        for m in g[1]:
            check_id(m, "group member")
    if cfg.get("sensors", "simulated") not in ("simulated", "real", "none"):
        _bad("sensors must be simulated, real or none")
    if cfg.get("preset", "lan") not in ("lan", "wifi"):
        _bad("preset must be lan or wifi")
    floor = cfg.get("boot_floor", 0)
    if not isinstance(floor, int) or isinstance(floor, bool) or floor < 0:
        _bad("boot_floor must be a whole number of seconds since 2020")
    for name in ("gossip", "paxos", "kv", "host", "runtime", "mqtt"):
        if not isinstance(cfg.get(name, {}), dict):
            _bad("%s must be an object of options" % name)
    return cfg


def load_config(path):
    """Read and check a node config file."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ValueError("node config: cannot read %s" % path) from None
    try:
        cfg = json.loads(text)
    except ValueError:
        raise ValueError("node config: %s is not valid JSON" % path) from None
    return check_config(cfg)


def fleet_key(cfg):
    """The fleet key: cfg["key"], the file cfg["key_file"], or the env ROOST_FLEET_KEY."""
    key = cfg.get("key")
    if not key and cfg.get("key_file"):
        try:
            with open(cfg["key_file"]) as f:
                key = f.read().strip()
        except OSError:
            _bad("cannot read key_file %s" % cfg["key_file"])
    if not key:
        getenv = getattr(os, "getenv", None)
        key = getenv("ROOST_FLEET_KEY") if getenv is not None else None
    if not key:
        _bad("no fleet key: set key_file or the environment variable ROOST_FLEET_KEY")
    return key


# console words `roost flash` follows: a replica rebuilding after an empty flash, then voting
REBUILDING = "rebuilding before it votes"
VOTING = ("rebuilt: votes again", "in a new replica group: votes")
# events after which the node publishes its status at once (joined, rebuilt, led or not)
_STATUS_EVENTS = ("joined", "paxos.rebuilt", "paxos.leader", "paxos.step_down",
                  "paxos.new_group")

_Y2020 = 1577836800  # 2020-01-01T00:00Z in seconds since 1970


def wall_floor():
    """Seconds since 2020 by this machine's clock, or 0 when it has none worth the name (a
    board whose clock was never set): the lowest boot number this start may take, so that a
    node whose flash was wiped still counts past every number its peers have seen."""
    try:
        t = int(time.time())
        if time.gmtime(0)[0] == 2000:  # MicroPython's epoch on the ESP32
            t += 946684800
    except (AttributeError, OverflowError, TypeError):
        return 0
    t -= _Y2020
    return t if t > 0 else 0


def mqtt_password(cfg):
    """The node's MQTT password: cfg["mqtt_password"], the file cfg["mqtt_password_file"]
    (a Pi's, beside its fleet key), or None (a broker that takes anyone)."""
    if cfg.get("mqtt_password") or not cfg.get("mqtt_password_file"):
        return cfg.get("mqtt_password")
    try:
        with open(cfg["mqtt_password_file"]) as f:
            return f.read().strip()
    except OSError:
        _bad("cannot read mqtt_password_file %s" % cfg["mqtt_password_file"])


def my_group(cfg):
    """(name, sorted members) of the group this node serves, or (\"\", None)."""
    me = cfg["node_id"]
    for g in cfg.get("groups", []):
        if me in g[1]:
            return g[0], sorted(g[1])
    return "", None


# ---------------------------------------------------------------- building a node


def _configs(cfg):
    from roost.node.gossip import GossipConfig
    from roost.node.host import HostConfig

    wifi = cfg.get("preset", "lan") == "wifi"
    me = cfg["node_id"]
    members = cfg.get("members") or sorted(list(cfg.get("peers", {})) + [me])
    seeds = cfg.get("seeds") or members
    g = dict(cfg.get("gossip", {}))
    g.setdefault("seeds", tuple(sorted(seeds)))
    g.setdefault("board", cfg.get("board", ""))
    gcfg = GossipConfig.wifi(**g) if wifi else GossipConfig.lan(**g)
    name, group = my_group(cfg)
    h = dict(cfg.get("host", {}))
    h.setdefault("group", name)
    hcfg = HostConfig.wifi(**h) if wifi else HostConfig.lan(**h)
    pcfg = kcfg = None
    if group:
        from roost.node.kv import KvConfig
        from roost.node.paxos import PaxosConfig

        pcfg = PaxosConfig.wifi(**cfg.get("paxos", {})) if wifi else PaxosConfig.lan(
            **cfg.get("paxos", {}))
        kcfg = KvConfig.wifi(**cfg.get("kv", {})) if wifi else KvConfig.lan(**cfg.get("kv", {}))
    return members, gcfg, hcfg, group, pcfg, kcfg


def _sensors_fn(cfg):
    kind = cfg.get("sensors", "simulated")
    if kind == "none":
        return None
    board = cfg.get("board") or "esp32"

    def make(node_id, now):
        from roost.common.stablehash import stable_hash
        from roost.hardware.boards import make_sensors

        seed = cfg.get("sensor_seed", stable_hash(node_id) & 0xFFFF)
        try:
            return make_sensors(board, simulated=(kind == "simulated"), seed=seed)
        except ValueError as e:  # an unknown board, a pin option: config.json's, not a crash
            raise ConfigError(str(e)) from None

    return make


class Node:
    """One node process: ``await node.serve()`` runs it until ``node.stop()``."""

    def __init__(self, cfg, key=None, log=_say, hooks=None):
        from roost.node.host import make_host_factory

        self.cfg = check_config(cfg)
        self.id = cfg["node_id"]
        self.fleet = cfg.get("fleet", "default")
        self.log = log
        self.hooks = hooks
        key = key if key is not None else fleet_key(cfg)
        members, gcfg, hcfg, group, pcfg, kcfg = _configs(cfg)
        self.members = members
        bind = _addr(cfg["udp"], "udp") if "udp" in cfg else ("0.0.0.0", 4210)
        peers = {}
        book = cfg.get("peers", {})
        for p in sorted(book):
            if p != self.id:
                peers[p] = _addr(book[p], "peer " + p)
        self.udp = FleetUdp(bind[0], bind[1], peers)
        transports = [self.udp]
        self.mqtt = None
        by_mqtt = []
        if cfg.get("brokers"):
            from roost.node.mqtt import WIFI, MQTTConfig

            mo = dict(WIFI) if cfg.get("preset") == "wifi" else {}
            mo.update(cfg.get("mqtt", {}))
            self.mqtt = node_mqtt_client(self.id, self.fleet, cfg["brokers"],
                                         mqtt_password(cfg), config=MQTTConfig(**mo))
            by_mqtt = [m for m in members if m != self.id and m not in peers]
            transports.append(MqttTransport(self.mqtt, self.fleet, self.id, by_mqtt))
        rcfg = dict(cfg.get("runtime", {}))
        # a floor written when the board was flashed orders its boots after every board
        # flashed before it under this id; a Pi's floor is its clock at each start
        flashed = "boot_floor" in cfg or "boot_floor" in rcfg  # (config.json's runtime)
        rcfg.setdefault("fleet", self.fleet)
        # The lowest boot number, so that a node whose flash was wiped is heard again (a
        # wiped Paxos replica boots unsure and rebuilds before it votes: paxos.py). A board
        # takes only the floor its flashing wrote: with its clock too (NTP, or a virtual
        # board's), an old board switched on after its --replace spare booted later than
        # it, and the spare stood down for it
        floor = cfg.get("boot_floor", 0)
        rcfg.setdefault("boot_floor", floor if flashed else max(floor, wall_floor()))
        self.runtime = NodeRuntime(
            make_host_factory(gcfg, group, kcfg, pcfg, _sensors_fn(cfg), hcfg,
                              on_host=self._wire),
            self.id, key, cfg.get("storage") or "roost-" + self.id, transports,
            RuntimeConfig(**rcfg), observers=[self._observe], mqtt=self.mqtt, log=self._quiet)
        self.runtime.status_doc = self.status  # retained on MQTT: what roost status shows
        self.addrs = None
        if self.mqtt is not None and (by_mqtt or flashed):
            # members without a UDP address (a plan's): announce ours and learn theirs
            # through the broker. A fleet whose book holds every member (an emulated one)
            # skips it: N retained announcements to each of N nodes would only cost; a
            # flashed board announces all the same, so that a twin under its id is found.
            from roost.node.addr_mqtt import AddrBook

            self.addrs = AddrBook(self.mqtt, self.fleet, self.id, self.udp, set(peers),
                                  self.runtime.stats, self._channel, cfg["brokers"][0],
                                  self.log, self._replaced if flashed else None)
        if self.mqtt is not None:
            online = self.mqtt.on_connect

            def on_connect(c):
                if online is not None:
                    online(c)
                if self.addrs is not None:
                    self.addrs.announce()
                # its status at once: what the broker retained may be another board's, or
                # this one's from before a pause
                self.runtime.status_soon()

            self.mqtt.on_connect = on_connect
        self._control_text = None
        self._bye = None  # the MQTT client's clean stop once another board took this id
        self.joined_at = None
        self.readings = 0
        self._stop = asyncio.Event()

    def _quiet(self, msg):
        self.log("roost: " + msg)

    def _wire(self, host):
        host.on_learn = self.udp.learn
        if host.replica is not None and host.replica.paxos.unsure:
            self.log("roost: %s replica flash empty: %s" % (self.id, REBUILDING))

    def _channel(self):
        return self.runtime.channel  # None until boot

    # -------------------------------------------------------- observers

    def _observe(self, now, node, e):
        if e[0] != EVENT:
            return
        name = e[1]
        if name in _STATUS_EVENTS:  # roost status shows it now, not up to 5 s later
            self.runtime.status_soon()
        if name == "reading":
            self.readings += 1
            if self.mqtt is not None:
                self.mqtt.publish(topic(self.fleet, self.id, "data"), _reading_json(e[2]), 1)
        elif name == "paxos.rebuilt":
            self.log("roost: %s %s" % (self.id, VOTING[0]))
        elif name == "paxos.new_group":
            self.log("roost: %s is %s" % (self.id, VOTING[1]))
        elif name == "paxos.hand_over":
            self.log("roost: %s hands the lead to %s (its group prefers a Pi as leader)"
                     % (self.id, e[2][1]))
        elif name == "paxos.stood_back":
            self.log("roost: %s stands back from its election: %s holds a long log tail, and "
                     "leads instead" % (self.id, e[2][1]))
        elif name == "paxos.asked":
            self.log("roost: %s still %s: %d of the other replicas answer it as voters, it "
                     "needs %d" % (self.id, REBUILDING, e[2][1], e[2][2]))
        elif name == "joined" and self.joined_at is None:
            self.joined_at = now
            if self.hooks is not None:
                self.hooks.joined(now)  # a board prints the joined line (and confirms an update)
            else:
                self.log("roost: joined fleet %s as %s" % (self.fleet, self.id))

    def _replaced(self, addr):
        """Another board announces this node's id with a later boot (roost flash --replace
        put it in this one's place): stop taking part and leave the broker to it (both
        would take the MQTT client id from each other, and roost status would show each in
        turn). A clean DISCONNECT: no Last Will marks the other one offline. Only a flashed
        board does this: its boot floor was written when it was flashed, so a later boot is
        a later flash; a Pi's is its clock when it starts, and both only say so."""
        if self.runtime.stood_down or not self.runtime.running:
            return
        self.log("roost: another board runs as %s with a later boot (at %s): this one stops "
                 "taking part; switch it off, or flash it with its own --node-id"
                 % (self.id, addr))
        self.runtime.stand_down()
        if self.mqtt is not None:
            self._bye = asyncio.create_task(self.mqtt.stop(500))

    def announce_sensors(self):
        """Home Assistant MQTT discovery: one retained config per sensor quantity."""
        host = self.runtime.host
        if self.mqtt is None or host is None:
            return
        for s in host.sensors:
            for q in sorted(s.units):
                self.mqtt.publish(ha_topic(self.fleet, self.id, s.name, q),
                                  ha_config(self.fleet, self.id, s.name, q, s.units[q]), 1, True)

    # -------------------------------------------------------- fault switch and status

    def apply_control(self):
        path = self.cfg.get("control")
        if not path:
            return
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = ""
        if text == self._control_text:
            return
        self._control_text = text
        blocked, loss = [], 0
        if text:
            try:
                obj = json.loads(text)
                blocked = [b for b in obj.get("blocked", []) if isinstance(b, str)]
                loss = obj.get("loss", 0)
                if not isinstance(loss, (int, float)) or not 0 <= loss <= 1:
                    loss = 0
            except (ValueError, AttributeError):
                self.log("roost: %s: bad control file ignored" % self.id)
                return
        self.runtime.blocked = set(blocked)
        self.runtime.loss_ppm = int(loss * 1000000)
        self.log("roost: %s fault switch: blocked %s, loss %s" % (self.id, sorted(blocked), loss))

    def status(self):
        st = self.runtime.status()
        st["fleet"] = self.fleet
        st["udp_port"] = self.udp.bind_port
        st["joined"] = self.joined_at is not None
        st["readings"] = self.readings
        st["blocked"] = sorted(self.runtime.blocked)
        st["loss_ppm"] = self.runtime.loss_ppm
        st["micropython"] = MICROPYTHON
        st["wall"] = time.time()
        if self.mqtt is not None:
            ms = self.mqtt.stats
            st["mqtt"] = {"connected": self.mqtt.connected, "outbox": len(self.mqtt.outbox),
                          "inflight": len(self.mqtt.inflight),
                          "outbox_dropped": ms["outbox_dropped"], "tx_publish": ms["tx_publish"],
                          "connects": ms["connects"]}
            for name in ("rx_malformed", "rx_oversize", "handler_errors"):
                if ms[name]:  # what the broker delivered that was dropped, when any
                    st["mqtt"][name] = ms[name]
            if self.mqtt.refused:  # subscriptions the broker's ACL refused
                st["mqtt"]["refused"] = sorted(self.mqtt.refused)
        if self.hooks is not None and hasattr(self.hooks, "status"):
            st["board"] = self.hooks.status()  # slot, version, OTA counters
        if self.addrs is not None and self.addrs.twin is not None:  # a board with our id
            st["twin"] = {"at": self.addrs.twin[0],
                          "ago_s": (now_ms() - self.addrs.twin[1]) // 1000}
        if MICROPYTHON:
            import gc

            st["mem_free"] = gc.mem_free()
        return st

    def write_status(self):
        path = self.cfg.get("status_file")
        if not path:
            return
        try:
            data = json.dumps(self.status())
            with open(path + ".t", "w") as f:
                f.write(data)
            os.rename(path + ".t", path)
        except (OSError, TypeError, ValueError, MemoryError) as ex:
            self.log("roost: %s: status not written: %s" % (self.id, ex))

    def _say_broker(self, was):
        """One line when the broker connection goes or comes back (not at each retry): a
        Pi's journal and a board's console show why readings wait. was: True, False, or None
        before the first connection. -> the state to pass next time."""
        now = bool(self.mqtt.connected)
        if was is True and not now:
            self.log("roost: %s lost the broker: readings wait in its outbox; node traffic "
                     "goes peer to peer where it can" % self.id)
        elif was is False and now:
            self.log("roost: %s is back on the broker" % self.id)
        return None if (was is None and not now) else now

    async def _control_loop(self):
        next_status = 0
        broker_up = None
        while not self._stop.is_set():
            self.apply_control()
            t = now_ms()
            if self.mqtt is not None and not self.runtime.stood_down:
                broker_up = self._say_broker(broker_up)
            if t >= next_status:
                next_status = t + 1000
                self.write_status()
                if self.hooks is not None and not self.runtime.out_of_memory:
                    self.hooks.feed()  # a board given up for memory resets: a fresh heap
                    self.hooks.check()
                if MICROPYTHON:
                    import gc

                    gc.collect()
            await wait_event_ms(self._stop, 250)

    # -------------------------------------------------------- run

    async def serve(self):
        """Open the UDP port, boot from the flash dir, run until stop()."""
        self.udp.open()
        self.apply_control()
        self.runtime.boot()
        self.log("roost: started %s (boot %d, udp %d)" % (self.id, self.runtime.incarnation,
                                                         self.udp.bind_port))
        if self.hooks is not None and hasattr(self.hooks, "attach"):
            self.hooks.attach(self)  # a board: OTA over this node's MQTT client
        if self.mqtt is not None:
            self.announce_sensors()
            self.mqtt.start()
        ctl = asyncio.create_task(self._control_loop())
        try:
            await self.runtime.run()
        finally:
            self._stop.set()
            self.write_status()
            if self._bye is not None:  # stood down: its clean DISCONNECT goes out first
                try:
                    await self._bye
                except Exception:  # it is only a goodbye
                    pass
            if self.mqtt is not None and not self.runtime.stood_down:  # (else: the other's)
                self.mqtt.publish(topic(self.fleet, self.id, "status"), b"offline", 1, True)
                await self.mqtt.stop(1000)
            try:
                await ctl
            except Exception:  # the loop only waits and writes files
                pass

    def stop(self):
        """Graceful stop (a SIGTERM): say goodbye to gossip, then end the loops."""
        if self.runtime.host is not None and self.runtime.running:
            try:
                self.runtime.call(lambda h, now: h.leave(now))
            except Exception:  # leaving is a courtesy; stopping must not fail
                pass
        self.runtime.stop()
        self._stop.set()


def _reading_json(r):
    """A Reading list -> the JSON published on roost/<fleet>/node/<id>/data (QoS 1):
    {"sensor", "t_ms", "health", "wall", <quantity>: value...}."""
    out = {"sensor": r[1], "t_ms": r[2], "health": r[5]}
    if time is not None:
        out["wall"] = time.time()
    for q, v in r[3]:
        out[q] = v
    if r[6]:
        for k, v in r[6]:
            out["event_" + k] = v
    return json.dumps(out)


def _ha_id(name):
    """An id in Home Assistant's alphabet (letters, digits, '_' and '-'), one to one: '_'
    is written '__' and '.' '_d', so that nodes "a.b" and "a_b" of a fleet stay apart
    (each node's ACL grants its level only). Joined by '_', two fleets on one broker can
    still meet ("site.dk"'s "d1" and "site"'s "ddk.1"), and so can a sensor and quantity."""
    return name.replace("_", "__").replace(".", "_d")


def ha_node(fleet, node_id):
    """The node's level in its discovery topics, which its broker ACL grants it."""
    return "roost_%s_%s" % (_ha_id(fleet), _ha_id(node_id))


def ha_topic(fleet, node_id, sensor, quantity):
    return "homeassistant/sensor/%s/%s_%s/config" % (ha_node(fleet, node_id), _ha_id(sensor),
                                                      _ha_id(quantity))


_HA_CLASS = {"temperature": "temperature", "humidity": "humidity", "pressure": "pressure",
             "voltage": "voltage", "percent": "battery"}


def ha_config(fleet, node_id, sensor, quantity, unit):
    """A Home Assistant MQTT discovery config for one quantity of one sensor."""
    uid = "%s_%s_%s" % (ha_node(fleet, node_id), _ha_id(sensor), _ha_id(quantity))
    cfg = {
        "name": "%s %s" % (sensor, quantity),
        "unique_id": uid,
        "object_id": uid,
        "state_topic": topic(fleet, node_id, "data"),
        "value_template": "{%% if value_json.sensor == '%s' %%}{{ value_json.%s }}"
                          "{%% else %%}{{ this.state }}{%% endif %%}" % (sensor, quantity),
        "availability_topic": topic(fleet, node_id, "status"),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [ha_node(fleet, node_id)],
                   "name": "roost %s" % node_id, "manufacturer": "roost"},
    }
    if unit and unit != "bool":
        cfg["unit_of_measurement"] = unit
    dc = _HA_CLASS.get(quantity)
    if dc is not None:
        cfg["device_class"] = dc
    if unit != "bool":
        cfg["state_class"] = "measurement"
    return json.dumps(cfg)


# ---------------------------------------------------------------- entry points


def main(path):
    """``micropython -c "import roost.node.nodemain as m; m.main('config.json')"``."""
    cfg = load_config(path)
    node = Node(cfg)
    asyncio.run(node.serve())


def run_node(cfg, log=_say):
    """CPython: run a node from a config dict until SIGTERM/SIGINT (graceful stop). -> 0"""
    node = Node(cfg, log=log)

    async def go():
        try:
            import signal

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, node.stop)
            loop.add_signal_handler(signal.SIGINT, node.stop)
        except (ImportError, AttributeError, NotImplementedError):
            pass
        await node.serve()

    asyncio.run(go())
    return 0


def board_config(fcfg):
    """A board's FirmwareConfig -> the node config it runs (its ``runtime`` section of
    config.json merged over the board defaults). The node's state lives in ``data`` beside
    config.json: a board boots in its flash root, a virtual board in its flash directory
    (an absolute ``/roost`` put a virtual board's state in the host's root directory)."""
    cfg = {"node_id": fcfg.node_id, "fleet": fcfg.fleet, "board": fcfg.board,
           "brokers": [fcfg.broker] if fcfg.broker else [], "udp": ["0.0.0.0", fcfg.udp_port],
           "sensors": "real", "storage": "data", "preset": "wifi"}
    extra = fcfg.runtime or {}
    for k in sorted(extra):
        cfg[k] = extra[k]
    return cfg


def run_board(fcfg, secrets, hooks):
    """A board's main.py (roost.firmware.boardlib): a FirmwareConfig, secrets, BoardHooks."""
    cfg = board_config(fcfg)
    if secrets.get("mqtt_password"):  # its own MQTT user, from a plan (roost broker --plan)
        cfg["mqtt_password"] = secrets["mqtt_password"]
    try:
        node = Node(cfg, key=secrets["fleet_key"], hooks=hooks)
    except ValueError as e:  # a typo in config.json: safe mode, not a reset into it again
        raise ConfigError(_sentence(e)) from None
    asyncio.run(node.serve())


def _sentence(e):
    msg = str(e)
    return msg[len("node config: "):] if msg.startswith("node config: ") else msg
