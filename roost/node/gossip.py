"""SWIM gossip for roost: membership, failure detection (Lifeguard suspicion), sensor-summary
dissemination, push-pull anti-entropy, join/leave/sleep. ``GossipCore`` is sans-I/O: fed
``(now_ms, bytes)`` and ticks, it returns effects. The protocol, the wire bodies, the defaults
and the tuning story are in docs/gossip.md; wire kinds, codecs and config live in
``gossip_wire`` (re-exported here), the rest of the core in the ``gossip_*`` mixins, split
so that each module compiles inside a 100 KB MicroPython heap."""

from roost.common.ids import is_valid_id
from roost.node.effects import EVENT, PERSIST
from roost.node.gossip_members import MembersMixin
from roost.node.gossip_probe import ProbeMixin
from roost.node.gossip_sync import SyncMixin
from roost.node.gossip_wire import (  # noqa: F401  (re-exported: the public gossip API)
    _K_INC,
    _K_SVER,
    ACK,
    ALIVE,
    DEAD,
    GOSSIP,
    JOIN,
    KINDS,
    LEFT,
    MAX_INC,
    MAX_SEQ,
    MAX_SLEEP_MS,
    PING,
    PING_REQ,
    Q_MEMBER,
    Q_SUMMARY,
    SLEEPING,
    STATE_NAMES,
    SUSPECT,
    SYNC,
    GossipConfig,
    _dumps,
    _is_int,
    check_summary,
    check_summary_value,
    decode_body,
    decode_gossip,
    encode_member,
    expected_confirmations,
    parse_member,
    retransmit_limit,
    suspicion_timeout_ms,
)

_STATS = (
    "pings",
    "acks",
    "ping_reqs",
    "indirect_pings",
    "relayed_acks",
    "late_acks",
    "probes",
    "probe_failures",
    "suspicions",
    "confirmations",
    "refutations",
    "deaths",
    "gossip_msgs",
    "push_pulls",
    "sync_msgs",
    "joins",
    "updates_sent",
    "members_dropped",
    "relays_dropped",
    "stalled_probes",
)


class GossipCore(MembersMixin, ProbeMixin, SyncMixin):
    """SWIM member of one node. Sans-I/O: every method takes ``now_ms`` and returns effects."""

    def __init__(self, node_id, channel, config=None, rng=None, storage=None, now_ms=0):
        if rng is None:
            raise ValueError("GossipCore needs an injected Prng (rng=...)")
        self.id = node_id
        self.ch = channel
        self.cfg = config if config is not None else GossipConfig()
        self.rng = rng
        storage = storage if storage is not None else {}
        saved = storage.get(_K_INC, 0)
        if not _is_int(saved, 0, MAX_INC - 1):
            saved = 0
        self._inc_saved = saved
        self.inc = saved + 1  # above anything a past life announced (it was persisted first)
        sres = storage.get(_K_SVER, 0)
        if not _is_int(sres, 0, MAX_INC):
            sres = 0
        self._sver = sres  # next publish uses sres + 1: never a version from a past life
        self._sver_reserved = sres
        self.state = ALIVE
        self._wake_ms = 0
        cfg = self.cfg
        # member id -> [state, incarnation, board, domain, until_ms (sleep), changed_ms]
        self._m = {node_id: [ALIVE, self.inc, cfg.board, cfg.domain, 0, now_ms]}
        self._susp = {}  # id -> [start_ms, deadline_ms, n_at_start, [suspecters], relay_from]
        self._sleepers = {}  # id -> until_ms
        self._new = False  # set by _merge: the member was new to us
        self._dead = {}  # recently dead id -> time it died (gossiped to now and then)
        self._sums = {}  # origin -> [version, value]
        self._qm = {}  # member id -> queue priority (see _enqueue)
        self._qs = {}  # summary origin -> queue priority
        self._qh = None  # heap over a long queue (see _enqueue)
        self._qi = {}  # newness rank -> (kind, key, size) of the heap's items
        self._meta = {}  # board/domain strings, shared between member records
        self._wire = {}  # member id -> wire string of its alive/dead/left record (see _entry)
        self._wids = {}  # the same, wire string -> member id: a repeat is one lookup
        self._gen = 0
        self._live = None  # cached sorted ids of probe-able members (alive/suspect)
        self._n_live = 1
        self._plist = []
        self._pidx = 0
        self._probe = None  # [target, seq, start_ms, indirect_sent]
        self._pseq = 0
        self._relays = {}  # our ping seq -> [requester, their seq, expire_ms]
        # random phases: a fleet that boots together does not probe in lock-step
        self._next_probe = now_ms + rng.randbelow(cfg.probe_interval_ms)
        self._next_gossip = now_ms + rng.randbelow(cfg.gossip_interval_ms)
        self._next_pp = now_ms + cfg.push_pull_interval_ms
        self._next_reclaim = now_ms + cfg.dead_reclaim_ms
        self._joined = False
        self._seeds = sorted(s for s in cfg.seeds if s != node_id)
        self._seed_idx = 0
        self._join_at = now_ms if self._seeds else None
        self._left = False
        self._stats = {}  # counters, created on first use (RAM); stats shows them all
        self._enqueue(Q_MEMBER, node_id)

    # ---- local API ------------------------------------------------------------------

    @property
    def stats(self):
        """Channel counters (rx_rejected_*...) and the core's own, zeros included."""
        out = dict(self.ch.stats)
        for k in _STATS:
            out[k] = 0
        for k in self._stats:
            out[k] = self._stats[k]
        return out

    def _bump(self, name, n=1):
        self._stats[name] = self._stats.get(name, 0) + n

    def members(self):
        """Sorted [(id, state_name, incarnation, (board, domain))]."""
        out = []
        for nid in sorted(self._m):
            r = self._m[nid]
            out.append((nid, STATE_NAMES[r[0]], r[1], (r[2], r[3])))
        return out

    def state_of(self, nid):
        r = self._m.get(nid)
        return None if r is None else STATE_NAMES[r[0]]

    def summaries(self):
        """{origin: (version, value)}"""
        out = {}
        for o in self._sums:
            s = self._sums[o]
            out[o] = (s[0], s[1])
        return out

    def join(self, now_ms, seeds=None):
        """Join through seeds (config seeds by default); an already-running member re-sends."""
        if seeds is not None:
            for s in seeds:
                if not is_valid_id(s):
                    raise ValueError("seed %r is not a valid node id" % (s,))
            self._seeds = sorted(s for s in seeds if s != self.id)
        eff = []
        if self._left:
            self._left = False
            self._set_self(now_ms, ALIVE, eff)
        self._joined = False
        if not self._seeds:
            self._joined = True
            self._join_at = None
            return eff
        self._join_at = now_ms
        self._try_join(now_ms, eff)
        return eff

    def leave(self, now_ms):
        """Announce a graceful leave, then go quiet (members mark us left, not dead)."""
        if self._left:
            return []
        eff = []
        self._set_self(now_ms, LEFT, eff)
        targets = self._pick(self.cfg.leave_fanout, None)
        for t in targets:
            self._send_gossip(now_ms, t, eff)
        self._left = True
        self._probe = None
        return eff

    def publish(self, now_ms, summary):
        """Publish this node's latest summary (a flat list of readings); bumps its version."""
        if not check_summary_value(summary, self.cfg.max_summary_items):
            raise ValueError(
                "a summary is a list of up to %d numbers or short strings"
                % self.cfg.max_summary_items
            )
        size = len(_dumps(summary))
        if size > self.cfg.max_summary_bytes:
            raise ValueError(
                "summary of %d bytes exceeds the %d-byte limit" % (size, self.cfg.max_summary_bytes)
            )
        eff = []
        self._sver += 1
        if self._sver > self._sver_reserved:
            self._sver_reserved = self._sver + self.cfg.summary_version_block - 1
            eff.append((PERSIST, _K_SVER, self._sver_reserved))
        self._sums[self.id] = [self._sver, list(summary), size]
        self._enqueue(Q_SUMMARY, self.id)
        eff.append((EVENT, "summary", [self.id, self._sver]))
        return eff

    def sleep_until(self, now_ms, until_ms):
        """A battery board announces it sleeps until until_ms (its own clock)."""
        if not _is_int(until_ms, now_ms + 1, now_ms + MAX_SLEEP_MS):
            raise ValueError("sleep_until needs a time after now and at most a day ahead")
        eff = []
        self._wake_ms = until_ms
        self._set_self(now_ms, SLEEPING, eff)
        for t in self._pick(self.cfg.gossip_fanout, None):
            self._send_gossip(now_ms, t, eff)
        self._probe = None
        return eff

    # ---- inputs -----------------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.ch.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        """An opened Envelope -> effects. Malformed bodies are counted, never raised."""
        kind = env.kind
        if kind not in KINDS:
            self.ch.reject("unknown_kind")
            return []
        rep = [] if kind != JOIN and kind != SYNC else None
        msg = decode_body(kind, env.body, self.cfg.max_summary_items, self._wids, rep)
        if msg is None:
            self.ch.reject("malformed")
            return []
        if self._left:
            self._bump("rx_after_leave")
            return []
        eff = []
        src = env.sender
        if src == self.id:
            self.ch.reject("malformed")
            return []
        if rep:
            self._heard_again(rep)
        if kind == PING:
            seq, target, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            if target != self.id:
                self.ch.reject("misdirected")
                return eff
            self._bump("acks")
            self._send_ack(now_ms, src, seq, eff)
        elif kind == ACK:
            seq, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            self._on_ack(now_ms, src, seq, eff)
        elif kind == PING_REQ:
            seq, target, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            self._on_ping_req(now_ms, src, seq, target, eff)
        elif kind == GOSSIP:
            self._merge_all(now_ms, msg[0], msg[1], eff)
        else:
            self._on_sync(now_ms, src, kind, msg, eff)
        return eff

    def tick(self, now_ms):
        eff = []
        if self._left:
            return eff
        if self.state == SLEEPING:
            if now_ms < self._wake_ms:
                return eff
            self._set_self(now_ms, ALIVE, eff)
            self._next_probe = now_ms
        if self._join_at is not None and now_ms >= self._join_at:
            self._try_join(now_ms, eff)
        if self._sleepers:
            for nid in sorted(self._sleepers):
                if self._sleepers[nid] <= now_ms:
                    del self._sleepers[nid]
                    self._set(now_ms, nid, ALIVE, self._m[nid][1], eff)
        if self._susp:
            for nid in sorted(self._susp):
                s = self._susp.get(nid)
                if s is not None and s[1] <= now_ms:
                    self._bump("deaths")
                    self._set(now_ms, nid, DEAD, self._m[nid][1], eff)
        p = self._probe
        if p is not None:
            if now_ms - p[2] > 2 * self.cfg.probe_interval_ms:
                # we were stalled (paused): no verdict on a probe we could not run
                self._bump("stalled_probes")
                self._probe = None
                self._next_probe = now_ms
            elif now_ms >= p[2] + self.cfg.probe_interval_ms:
                self._probe_failed(now_ms, p[0], eff)
                self._probe = None
            elif not p[3] and now_ms >= p[2] + self.cfg.probe_timeout_ms:
                self._indirect(now_ms, eff)
        if self._probe is None and now_ms >= self._next_probe:
            self._next_probe = now_ms + self.cfg.probe_interval_ms
            self._start_probe(now_ms, eff)
        if now_ms >= self._next_gossip:
            self._next_gossip = now_ms + self.cfg.gossip_interval_ms
            if self._has_fresh():
                for t in self._pick(self.cfg.gossip_fanout, None):
                    self._send_gossip(now_ms, t, eff)
                self._gossip_to_dead(now_ms, eff)
        if now_ms >= self._next_pp:
            self._next_pp = now_ms + self._pp_interval()
            self._push_pull(now_ms, eff)
        if self._relays:
            for k in sorted(self._relays):
                if self._relays[k][2] <= now_ms:
                    del self._relays[k]
        if now_ms >= self._next_reclaim:
            self._next_reclaim = now_ms + self.cfg.dead_reclaim_ms // 4
            self._reclaim(now_ms)
        return eff

    def next_deadline_ms(self):
        if self._left:
            return None
        if self.state == SLEEPING:
            return self._wake_ms
        t = self._next_probe
        p = self._probe
        if p is not None:
            t = p[2] + (self.cfg.probe_interval_ms if p[3] else self.cfg.probe_timeout_ms)
        if self._join_at is not None and self._join_at < t:
            t = self._join_at
        if self._next_pp < t:
            t = self._next_pp
        if self._next_gossip < t and (self._qm or self._qs):
            t = self._next_gossip
        for nid in self._susp:
            d = self._susp[nid][1]
            if d < t:
                t = d
        for nid in self._sleepers:
            d = self._sleepers[nid]
            if d < t:
                t = d
        return t
