"""One node's cores behind the host interface: gossip, an optional Paxos key-value replica
and the node's sensors. MicroPython-safe; runs in the simulator and in the node runtime.

Each datagram is opened ONCE through the node's shared Channel, then dispatched by kind:

    1-31   gossip          -> GossipCore.handle
    32-95  paxos, kv/client -> KvReplica.handle (only when this node is a replica of a group)
    else   counted as rx_rejected_unknown_kind

Ticks and deadlines of the cores are merged. Every ``sample_ms`` the sensors are read: each
reading is an ``(EVENT, "reading", reading_list)`` (the runtime publishes it over MQTT) and
the node's summary (a flat list of rounded values) is published through gossip. Once gossip
sees this node alive with at least one other member alive, the host emits
``(EVENT, "joined", node_id)`` (once per boot).

A datagram whose src starts with "@" came from an address the transport does not know (a
client): after it authenticates, ``on_learn(sender, src)`` lets the transport remember the
route back (replies to clients go out by node id like everything else).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from roost.common.config import apply_overrides
from roost.node.effects import EVENT
from roost.node.gossip import GossipCore

_GOSSIP_MAX = const(31)
_KV_MIN = const(32)
_KV_MAX = const(95)


class HostConfig:
    """What a node host runs besides the cores' own configs."""

    sample_ms = 10000  # sensors read (and the summary published) this often: a birdhouse's
    # weather changes slowly, and every summary costs gossip airtime
    summary_items = 12  # values carried in the gossip summary (its limit is 16 items)
    group = ""  # name of this node's replica group ("" = no replica on this node)

    def __init__(self, **overrides):
        apply_overrides(self, HostConfig, overrides, "host")
        if self.sample_ms < 100:
            raise ValueError("host option sample_ms must be at least 100")
        if not 0 <= self.summary_items <= 16:
            raise ValueError("host option summary_items must be 0..16")

    @classmethod
    def lan(cls, **overrides):
        """Emulation on one machine: readings every 2 s so a watcher sees them move."""
        opts = {"sample_ms": 2000}
        opts.update(overrides)
        return cls(**opts)

    @classmethod
    def wifi(cls, **overrides):
        """Boards on Wi-Fi: the defaults (one reading every 10 s)."""
        return cls(**overrides)


def summary_of(readings, limit):
    """Readings -> a flat list of rounded numbers (sensors, then quantities, sorted)."""
    out = []
    for r in readings:
        vals = r.values
        for q in sorted(vals):
            if len(out) >= limit:
                return out
            v = vals[q]
            out.append(round(v, 1) if isinstance(v, float) else v)
    return out


class NodeHost:
    """See the module docstring. ``replica`` is a KvReplica (or None), ``sensors`` a list."""

    def __init__(self, node_id, channel, gossip, replica=None, sensors=(), config=None,
                 now_ms=0):
        self.node_id = node_id
        self.channel = channel
        self.gossip = gossip
        self.replica = replica
        self.sensors = sorted(sensors, key=_sensor_name)
        self.config = config if config is not None else HostConfig()
        self.on_learn = None  # fn(sender, src) for datagrams from unknown addresses
        self.joined = False
        self.samples = 0
        self.last_summary = None
        self._next_sample = now_ms + (self.config.sample_ms if self.sensors else 0)
        if not self.sensors:
            self._next_sample = None

    # ---- host interface -----------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        if src and src[0] == "@" and self.on_learn is not None:
            self.on_learn(env.sender, src)
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        kind = env.kind
        if 1 <= kind <= _GOSSIP_MAX:
            return self._check_joined(self.gossip.handle(now_ms, env))
        if _KV_MIN <= kind <= _KV_MAX and self.replica is not None:
            return self.replica.handle(now_ms, env)
        self.channel.reject("unknown_kind")
        return []

    def hold(self):
        """The runtime is about to hand over datagrams that arrived together (see
        PaxosCore.hold); release(now_ms) after the last one returns the batch's effects."""
        if self.replica is not None:
            self.replica.hold()

    def release(self, now_ms):
        return self.replica.release(now_ms) if self.replica is not None else []

    def tick(self, now_ms):
        eff = []
        d = self.gossip.next_deadline_ms()
        if d is not None and d <= now_ms:
            eff.extend(self.gossip.tick(now_ms))
            self._check_joined(eff)
        if self.replica is not None:
            d = self.replica.next_deadline_ms()
            if d is not None and d <= now_ms:
                eff.extend(self.replica.tick(now_ms))
        if self._next_sample is not None and self._next_sample <= now_ms:
            self._next_sample = now_ms + self.config.sample_ms
            self._sample(now_ms, eff)
        return eff

    def next_deadline_ms(self):
        d = self.gossip.next_deadline_ms()
        if self.replica is not None:
            r = self.replica.next_deadline_ms()
            if r is not None and (d is None or r < d):
                d = r
        s = self._next_sample
        if s is not None and (d is None or s < d):
            d = s
        return d

    # ---- local commands -----------------------------------------------------------------

    def sample_now(self, now_ms):
        """Read the sensors now (the runtime or a test may call it)."""
        eff = []
        self._sample(now_ms, eff)
        return eff

    def leave(self, now_ms):
        return self.gossip.leave(now_ms)

    # ---- internals ----------------------------------------------------------------------

    def _sample(self, now_ms, eff):
        readings = []
        for s in self.sensors:
            r = s.read(now_ms)
            readings.append(r)
            eff.append((EVENT, "reading", r.to_list()))
        self.samples += 1
        summary = summary_of(readings, self.config.summary_items)
        if summary:
            try:
                eff.extend(self.gossip.publish(now_ms, summary))
                self.last_summary = summary
            except ValueError:  # too large for a summary: keep the readings, skip gossip
                pass

    def _check_joined(self, eff):
        if not self.joined and self.gossip.state_of(self.node_id) == "alive":
            for m in self.gossip.members():
                if m[0] != self.node_id and m[1] == "alive":
                    self.joined = True
                    eff.append((EVENT, "joined", self.node_id))
                    break
        return eff

    def status(self):
        """A JSON-able view for ``roost status``: members, the group, counters."""
        members = []
        for m in self.gossip.members():
            members.append([m[0], m[1], m[2]])
        st = {"members": members, "joined": self.joined, "samples": self.samples,
              "summary": self.last_summary, "gossip": _nonzero(self.gossip.stats)}
        r = self.replica
        if r is not None:
            p = r.paxos
            st["group"] = {"name": self.config.group, "members": list(p.members),
                           "leader": p.leader_hint(), "is_leader": p.is_leader(),
                           "unsure": p.unsure, "heard": p.heard(),
                           "commit": p.commit_index, "applied": p.applied_index,
                           "follower_commits": p.follower_commits(),
                           "keys": len(r.store.data), "kv": _nonzero(r.stats),
                           "paxos": _nonzero(p.stats)}
            px = st["group"]["paxos"]  # how far the log reached (what a reserve must cover)
            px["log_peak_bytes"] = p.log.peak
            px["log_new_buffers"] = p.log.fresh
        return st


def _sensor_name(s):
    return s.name


def _nonzero(stats):
    out = {}
    for k in sorted(stats):
        if stats[k]:
            out[k] = stats[k]
    return out


def make_host_factory(gossip_config, group_members=None, kv_config=None, paxos_config=None,
                      sensors_fn=None, host_config=None, on_host=None):
    """factory(node_id, channel, storage, rng, now_ms) -> NodeHost (simulator and runtime).

    ``sensors_fn(node_id, now_ms)`` builds the node's sensors (None: no sensors);
    ``group_members`` is the sorted member list of this node's replica group (None: none).
    ``on_host(host)`` runs after each build (the runtime wires routes there)."""

    def factory(node_id, channel, storage, rng, now_ms):
        g = GossipCore(node_id, channel, gossip_config, rng.fork("gossip"), storage, now_ms)
        replica = None
        if group_members:
            from roost.node.kv import KvReplica

            replica = KvReplica(node_id, channel, group_members, config=kv_config,
                                paxos_config=paxos_config, rng=rng.fork("paxos"),
                                storage=storage, now_ms=now_ms)
        sensors = sensors_fn(node_id, now_ms) if sensors_fn is not None else ()
        host = NodeHost(node_id, channel, g, replica, sensors, host_config, now_ms)
        if on_host is not None:
            on_host(host)
        return host

    return factory
