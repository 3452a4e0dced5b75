"""Multi-Paxos replica groups: a sans-I/O core that keeps one replicated log.

``PaxosCore`` is proposer, acceptor and learner of one replica. It is fed messages and ticks
and returns effects (see ``roost/node/effects.py``); it applies committed commands to the
state machine it was given (``apply(index, command)``, ``snapshot()``, ``restore(snap)``).

Ballots are ``(round, node_id)`` pairs, ordered as tuples. A candidate runs phase 1 once
per leadership: one PREPARE from its first un-chosen slot covers every later slot, and the
promises carry every value the acceptor holds at or above that slot (split into several
datagrams when needed). Then the leader runs phase 2 per slot: pipelined (at most
``window`` un-chosen slots beyond the commit index) and batched (a slot holds up to
``max_batch`` queued commands). Accepts and heartbeats carry the leader's commit index;
followers learn a slot is chosen when they hold the leader's ballot for it, and are sent
the chosen values (or a chunked snapshot) when they lag.

Log values (JSON lists): ``["b", [cmd, ...]]`` a batch of client commands; ``["n"]`` a
no-op that fills a hole after phase 1; ``["c", [members...]]`` a configuration change.
Only batch commands reach the state machine, ``on_apply`` and ``(APPLY, ...)`` effects; each
command has its own index (1, 2, 3 ... over client commands only, no gaps). No-ops and
configuration entries consume no index; a configuration change shows as an
``(EVENT, "paxos.config", [slot, effective_slot, members])``.

Reconfiguration (Lamport's alpha rule, alpha = ``window``): a configuration entry chosen at
slot k governs slots k + window and later. A leader never proposes slot s before every
slot up to s - window is chosen, so it always knows the configuration of the slot it
proposes; phase 1 needs a majority of the configuration of every slot it will propose
(new members are sent a PREPARE of the same ballot before their first slot). One change
at a time: ``reconfigure`` is refused while a change is pending or not yet in force.
``window`` must therefore be equal on every replica of a group.

Durable state, written incrementally through PERSIST effects *before* the reply they
guard is sent (a value of None deletes the key):
  "promised"   [round, node]                    the highest ballot promised
  "a/<slot>"   [round, node, value]             the value accepted in a slot
  "snap"       [slot, last_index, configs, sm_snapshot] (a JSON list; older replicas
               wrote the same list as JSON text, still read)
  "a/<slot>"   [round, node, value, 1]           the same, known chosen (written by a rebuild)
  "unsure"     1 while the replica rebuilds after losing its flash (below); 0 written by
               whoever creates a new group's replicas with empty storage (the tests) says
               they are new and vote at once
A snapshot every ``snapshot_every`` applied slots is persisted first, then the "a/<slot>"
keys it covers are deleted. The snapshot is handed to storage as a list, never as one text
(a board's storage streams it to flash), and its JSON bytes for a laggard are built only
when a laggard needs them: a fragmented board heap seldom holds the whole store in one
piece; nor is the snapshot kept in memory once persisted (a leader takes a fresh one for a
laggard). ``sm.snapshot()`` must return a structure the state machine does not change later.
The storage handed to the constructor must support ``get`` and iteration over its keys (a
dict does).

A replica that boots with none of those keys does not know whether it is new or lost its
flash (a board flashed again, a wiped directory): a wiped acceptor that voted again would
have forgotten its promises and accepted values, and could undo a chosen value. So it boots
*unsure* ("unsure" is written with its first durable step) and does not vote: it answers a
PREPARE with NACK reason 2 and an ACCEPT with an ACK (it keeps the value as a learner and
catches up like a lagging follower), its own PREPAREs say it is unsure, and its election
timer runs on whatever leader it hears. When the timer fires it first asks who hears it (a
flagged PREPARE that voters answer with NACK reason 3, changing nothing) and campaigns only
once a majority of the others answered: an election it cannot win would outbid the leader
at the replicas it reaches, every timeout. Hearing another's ask, it sends its own again
(same nonce, at most once per retry_ms); hearing another unsure replica's election, it
waits a timeout (one rebuild at a time). It becomes a voter in one of two ways:
  * it wins an election in which its own promise does not count: a majority of the group
    other than itself promised its ballot. That majority meets every quorum the replica
    voted in before it lost its flash (in the others), so phase 1 brings back every value
    those votes could have chosen, and the ballot is above every promise it had made;
  * a majority of the group, itself counted, answered its latest ask or election that they
    are unsure too (their NACKs echo the random nonce of its PREPAREs): the group is new, or
    more replicas lost their flash than the group survives. A replica that found its group
    new so vouches for the ones it found it with (same incarnation, still unsure) with the
    same NACK; an unsure replica that hears another's PREPARE asks at once.
Having won, it votes only once every slot its phase 1 found is chosen (a step-down before
leaves it unsure); either way it first writes its whole log, chosen values marked chosen
("a/<slot>" [r, n, value, 1]: a catch-up gives no ballot), then deletes "unsure". A replica
promises an unsure candidate's ballot only if it is above its promise, or a retry of the
same election (same nonce): a wiped replica counts its rounds from 0 again and could pick
a ballot it used before. A rebuilt leader's own promise does not count for the rest of its
term. The second rule holds only in a group never reconfigured (a member added later is
unsure until it rebuilds), and a replica vouches only if it found its group new itself.
A wiped replica's return costs the group one election.

``prefer`` (the group's Pis beside its boards): a leader outside it that is not unsure asks
a preferred member that answers it and is nearly caught up to take the lead (a HEARTBEAT
with a fourth element, 1; the members in turn, the wait between asks doubling across terms).
That member, if it holds every slot up to the leader's commit, asks who hears it (as an
unsure replica does) and campaigns once a majority of the others answered; its ballot wins
as any election's does. A board that won while the Pis were away, or rebuilt by winning, so
leads only until one of them is back. A board candidate whose promise from a preferred member
is more than one answer long stands back for it (a long tail may not fit a board's heap).

Pre-vote (``pre_vote``, on by default): a voter whose election timer fires asks first
whether the others hear no leader either (a PREPARE flagged 2, changing nothing), and
campaigns only once a majority, itself counted, answered: a replica answers NACK 3 unless
it leads, or heard its leader or promised a candidate within ``election_timeout_min_ms``.
A replica whose radio loses the leader's heartbeats would otherwise outbid a leader the
others hear, every timeout (a lossy link's node deposed a healthy leader ~60 times a
minute).

Wire kinds 32-40 (bodies are JSON lists):
  PREPARE   [r, n, from_slot] or, from an unsure candidate, [r, n, from_slot, nonce];
            [r, n, from_slot, nonce, 1] asks (an unsure replica before its election);
            [r, n, from_slot, nonce, 2] a voter's pre-vote (does anyone hear a leader?)
  PROMISE   [r, n, from_slot, lo, hi, last, [[slot, ar, an, value, chosen], ...]]
            the acceptor's values in slots lo..hi-1; ``last`` is 1 on the final part,
            2 on the last of the ``catchup_datagrams`` parts one PREPARE gets: the
            candidate asks again from hi (a PREPARE of the same ballot from that slot)
  ACCEPT    [r, n, slot, value, leader_commit]
  ACCEPTED  [r, n, slot, acceptor_commit]
  NACK      [r, n, promised_r, promised_n, reason]   reason 0 stale ballot, 1 behind
            snapshot; [r, n, promised_r, promised_n, 2, nonce]: unsure (not voting until
            rebuilt), with the nonce of the PREPARE it answers (0 if it had none);
            [r, n, promised_r, promised_n, 3, nonce]: a voter's answer to an ask
  HEARTBEAT [r, n, leader_commit]; [r, n, leader_commit, 1] hands the lead to the receiver
  ACK       [r, n, commit, snap_rx_slot, snap_rx_offset]
  CHOSEN    [[slot, value], ...]                        catch-up of chosen values
  SNAP      [slot, total_bytes, crc32, offset, base64_chunk]

Test-only, off by default, never for real use: ``_unsafe_send_before_persist`` answers
promises and accepts before they are on flash; ``_unsafe_skip_phase1`` makes a candidate
lead without promises; ``_unsafe_amnesia`` lets a replica that booted with nothing vote at
once. All break agreement; the simulation tests prove the checks see it.
"""

import binascii

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from roost.common.config import apply_overrides
from roost.common.ids import is_valid_id
from roost.common.jsoncodec import dumps as _dumps
from roost.common.jsoncodec import loads
from roost.common.jsonpieces import JsonFeed, Pieces, piece_slice, write_json
from roost.common.prng import Prng
from roost.node.effects import APPLY, EVENT, PERSIST, SEND
from roost.node.paxos_log import SlotLog

PREPARE = const(32)
PROMISE = const(33)
ACCEPT = const(34)
ACCEPTED = const(35)
NACK = const(36)
HEARTBEAT = const(37)
ACK = const(38)
CHOSEN = const(39)
SNAP = const(40)
KIND_NAMES = ("prepare", "promise", "accept", "accepted", "nack", "heartbeat", "ack",
              "chosen", "snap")

FOLLOWER = const(0)
CANDIDATE = const(1)
LEADER = const(2)
ROLE_NAMES = ("follower", "candidate", "leader")

NOOP = ["n"]  # the hole filler; compare with value[0] == "n"

_NACK_STALE = const(0)
_NACK_BEHIND = const(1)
_NACK_UNSURE = const(2)
_NACK_HEARD = const(3)  # a voter heard an unsure replica ask (nothing promised)
_MAX_UINT = const(1099511627776)  # 2**40: slots, rounds and offsets stay below it
_FAR = const(1099511627776)
_ZERO = (0, "")
_P1_AHEAD_MAX = const(128)  # promise parts a candidate keeps that arrived ahead of a gap
_VALUE_SLACK = const(200)  # bytes of a message besides the one log value it carries


class PaxosConfig:
    """Timers and limits of a replica group. ``window`` must be equal on all replicas."""

    election_timeout_min_ms = 150  # a follower that hears no leader for a random time in
    election_timeout_max_ms = 300  # [min, max] campaigns; 3+ heartbeats fit in min
    heartbeat_ms = 50  # leader heartbeat; also the pace of catch-up and retransmission
    retry_ms = 50  # an unanswered PREPARE or ACCEPT is sent again after this
    window = 32  # un-chosen slots in flight beyond the commit index (pipelining), and
    # the reconfiguration delay alpha: a config chosen at slot k governs slots >= k+window
    max_batch = 16  # commands packed into one slot when many are queued
    pipeline = 1  # client batches the leader keeps un-chosen at once (<= window); past it
    # commands wait and share the next slot: fewer accepts and log writes per command
    max_queue = 256  # commands waiting for a slot; propose() refuses beyond it
    snapshot_every = 1000  # applied slots between snapshots: the log window kept in memory
    snapshot_log_bytes = 1048576  # ... or sooner, once the log holds this many bytes (big
    # values in full batches: a board's log must stay a small part of its heap)
    catchup_datagrams = 8  # datagrams sent per request: chosen values or snapshot pieces to a
    # lagging peer per ACK, promise parts to a candidate per PREPARE (it asks for the rest:
    # a whole long tail at once overflowed receive buffers, and no candidate ever won)
    catchup_slots = 64  # applied slots a leader's snapshot leaves in its log for followers a
    # little behind (at most half of snapshot_log_bytes): they catch up from the log, not
    # with a whole snapshot (a board leader snapshotting every ~60 ms sent one per hiccup)
    max_snapshot_bytes = 262144  # a larger incoming snapshot is refused (heap bound)
    log_reserve_bytes = 0  # log buffers allocated up front and kept for reuse (a board: its
    # heap fragments under load until no fresh 2 KB buffer fits; 0: allocated as needed)
    max_members = 9  # members of one configuration
    check_quorum = True  # a leader that hears no majority for election_timeout_max_ms
    # steps down, so clients of a partitioned leader are told to go elsewhere
    pre_vote = True  # a voter campaigns only once a majority answered that it hears no
    # leader either (False: at once, as before; for comparison); only with check_quorum
    prefer = ()  # members that should lead (the group's Pis beside its boards), the same
    # list on every replica: a leader outside it asks them in turn to take the lead (see
    # _hand_over); () lets any member lead as well as another

    def __init__(self, **overrides):
        self._unsafe_send_before_persist = False  # TEST ONLY: breaks durability
        self._unsafe_skip_phase1 = False  # TEST ONLY: breaks agreement
        self._unsafe_amnesia = False  # TEST ONLY: breaks agreement after a wiped flash
        plain = {}
        for name in overrides:
            value = overrides[name]
            if name in ("_unsafe_send_before_persist", "_unsafe_skip_phase1", "_unsafe_amnesia"):
                if not isinstance(value, bool):
                    raise ValueError("paxos option %s must be true or false" % name)
                setattr(self, name, value)
            else:
                plain[name] = value
        apply_overrides(self, PaxosConfig, plain, "paxos")
        if self.election_timeout_min_ms < 1:
            raise ValueError("paxos option election_timeout_min_ms must be at least 1")
        if self.election_timeout_max_ms < self.election_timeout_min_ms:
            raise ValueError("election_timeout_max_ms must not be below election_timeout_min_ms")
        if not 1 <= self.heartbeat_ms < self.election_timeout_min_ms:
            raise ValueError("heartbeat_ms must be at least 1 and below election_timeout_min_ms")
        for name in ("retry_ms", "window", "max_batch", "pipeline", "max_queue", "snapshot_every",
                     "snapshot_log_bytes", "catchup_datagrams", "max_snapshot_bytes",
                     "max_members"):
            if getattr(self, name) < 1:
                raise ValueError("paxos option %s must be at least 1" % name)
        if self.log_reserve_bytes < 0 or self.catchup_slots < 0:
            raise ValueError("paxos options log_reserve_bytes and catchup_slots must not be "
                             "negative")
        pref = self.prefer
        if not isinstance(pref, (list, tuple)) or not all(is_valid_id(m) for m in pref):
            raise ValueError("paxos option prefer must be a list of node ids")
        self.prefer = tuple(pref)

    @classmethod
    def lan(cls, **overrides):
        """LAN / emulation: the defaults (writes resume well within 0.5 s of a leader loss)."""
        return cls(**overrides)

    @classmethod
    def wifi(cls, **overrides):
        """Wi-Fi boards: slower, lossier links and flash writes; elections within ~2-3 s."""
        opts = {
            "election_timeout_min_ms": 1000,
            "election_timeout_max_ms": 2000,
            "heartbeat_ms": 250,
            "retry_ms": 300,
            "snapshot_every": 500,
            "max_snapshot_bytes": 65536,
        }
        opts.update(overrides)
        return cls(**opts)

    @classmethod
    def esp32(cls, **overrides):
        """ESP32 without PSRAM: the Wi-Fi timers and a short log window. A log entry costs a
        few hundred bytes of heap, so snapshots every 64 slots keep a replica's log in tens
        of KB. ``window`` stays the default: it must be equal on every replica of a group."""
        opts = {
            "election_timeout_min_ms": 1000,
            "election_timeout_max_ms": 2000,
            "heartbeat_ms": 250,
            "retry_ms": 300,
            "snapshot_every": 64,
            "snapshot_log_bytes": 16384,
            "max_queue": 32,
            "max_batch": 8,
            "max_snapshot_bytes": 16384,
            "log_reserve_bytes": 36864,
        }
        opts.update(overrides)
        return cls(**opts)


def _uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _MAX_UINT


def _size(x):
    return len(_dumps(x).encode())


def check_members(members, limit=64):
    """True for a sorted list of distinct valid node ids, 1..limit of them."""
    if not isinstance(members, list) or not 1 <= len(members) <= limit:
        return False
    prev = None
    for m in members:
        if not is_valid_id(m) or (prev is not None and m <= prev):
            return False
        prev = m
    return True


def _check_value(v, max_members):
    """True for a well-formed log value."""
    if not isinstance(v, list) or not v:
        return False
    tag = v[0]
    if tag == "n":
        return len(v) == 1
    if tag == "b":
        return len(v) == 2 and isinstance(v[1], list) and len(v[1]) > 0
    if tag == "c":
        return len(v) == 2 and check_members(v[1], max_members)
    return False


def _majority(members):
    return len(members) // 2 + 1


class PaxosCore:
    """One replica of a Multi-Paxos group (see the module docstring)."""

    def __init__(self, node_id, channel, members, sm, config=None, rng=None, storage=None,
                 now_ms=0):
        if not is_valid_id(node_id):
            raise ValueError("paxos node id %r is not a valid id" % (node_id,))
        members = list(members)
        if not check_members(members):
            raise ValueError("paxos members must be a sorted list of distinct node ids")
        # 48 attributes in all: MicroPython keeps them in a 59-slot table (944 bytes; up to
        # 47 took 752); a 60th grows it. Derived values are computed, not stored.
        self.node_id = node_id
        self.channel = channel
        self.sm = sm
        self.config = config if config is not None else PaxosConfig()
        self.rng = rng if rng is not None else Prng(node_id)
        self.on_apply = None  # callback(index, command, result) after each applied command
        self.stats = {
            "elections": 0,
            "leader_terms": 0,
            "step_downs": 0,
            "proposed": 0,
            "slots_proposed": 0,
            "slots_chosen": 0,
            "applied": 0,
            "snapshots": 0,
            "snapshot_failures": 0,
            "snapshots_installed": 0,
            "snapshots_sent": 0,
            "catchup_sent": 0,
            "retransmits": 0,
            "queue_full": 0,
            "hand_overs": 0,
        }
        # rx_rejected_<reason> counters appear on first use (a smaller dict on a board)
        # bytes a body may take; a log value may take _VALUE_SLACK less (fits any message)
        self._budget = channel.max_bytes - channel.overhead(PROMISE, "x" * 32) - 40
        if self._budget - _VALUE_SLACK < 64:
            raise ValueError("channel.max_bytes is too small for paxos")
        self.role = FOLLOWER
        self.ballot = _ZERO  # the highest ballot promised (durable)
        self.leader = None  # who we believe leads (hint)
        # when it last heard a leader, or promised a candidate (a pre-vote waits for them)
        self._leader_at = now_ms - self.config.election_timeout_max_ms
        self._max_round = 0
        # slot -> (round, node, value, chosen), packed
        self.log = SlotLog(self._log_cap(), self.config.log_reserve_bytes)
        self.snap_slot = 0
        self.commit_index = 0  # every slot up to it is chosen and known here
        self.applied_slot = 0
        self._applied_bytes = 0  # log bytes of the slots applied since the snapshot (its trigger)
        self.applied_index = 0  # index of the last command applied
        self.configs = [[1, members]]  # [first slot governed, members], ascending
        # [slot, the JSON of the snapshot at that slot as Pieces] once a laggard needed it,
        # until the next snapshot; the record itself is not kept once persisted (as the
        # store changed it held a second copy of its values)
        self._snap = None
        self._snap_retry_at = 0  # applied slot before which no snapshot is tried again
        self._snap_rx = None  # [slot, total, crc, JsonFeed, received, crc so far]
        self._holding = False  # hold(): new batches wait for release() (see hold)
        self._orphans = []  # durable "a/<slot>" keys under the snapshot, to delete
        # 0 a voter; 1 unsure (not voting, see the module docstring) and "unsure" is durable;
        # 2 unsure, "unsure" still to be written with the next step's effects
        self._unsure = 0
        self._nonce = 0  # an unsure replica's last ask or election: the nonce its PREPAREs carry
        self._heard_by = None  # the voters that answered that ask (None: not asking)
        self._heard_n = -1  # how many answered its last ask that fell short (-1: none yet)
        self._asked_at = now_ms - self.config.retry_ms  # when it last asked
        # [id, incarnation] of those who answered the PREPAREs of that nonce that they are
        # unsure too; kept once it found its group new with them (it vouches for them)
        self._unsure_seen = []
        self._promised_unsure = None  # [r, n, nonce] of the unsure candidate it promised
        # a leader outside config.prefer: [not before (ms), back-off (ms), next preferred
        # member to ask]; kept across terms, so a hand-over that did not hold waits longer
        self._hand = [0, 2 * self.config.election_timeout_max_ms, 0]
        self._reset_leader_state()
        self._recover(storage if storage is not None else {})
        self._refresh_known()
        # an unsure replica asks at once: a new group's replicas learn from each other's
        # PREPAREs that they are all new and elect their first leader together
        self._election_at = now_ms + (self.rng.randint(0, self.config.retry_ms) if self._unsure
                                      else self._election_timeout())
        self._heartbeat_at = None
        self._retry_at = None

    # ---- recovery ------------------------------------------------------------------------

    def _recover(self, storage):
        u = storage.get("unsure", None)
        if u:
            self._unsure = 1
        elif (u is None and storage.get("snap", None) is None
              and storage.get("promised", None) is None
              and not any(isinstance(k, str) and k.startswith("a/") for k in storage)):
            self._unsure = 2  # nothing of a replica here: new, or its flash was wiped
        if self.config._unsafe_amnesia:
            self._unsure = 0
        snap = storage.get("snap", None)
        if isinstance(snap, str):  # written by an older replica
            snap = self._decode_snapshot(snap.encode())
        rec = self._check_snapshot(snap)
        if rec is not None:
            self.sm.restore(rec[3])
            self._load_snapshot(rec)
        p = storage.get("promised", None)
        if isinstance(p, list) and len(p) == 2 and _uint(p[0]) and is_valid_id(p[1]):
            self.ballot = (p[0], p[1])
            self._max_round = p[0]
        try:
            keys = sorted(k for k in storage if isinstance(k, str) and k.startswith("a/"))
        except TypeError:
            keys = []
        for k in keys:
            try:
                slot = int(k[2:])
            except ValueError:
                continue
            v = storage.get(k, None)
            if slot <= self.snap_slot:
                self._orphans.append(slot)
                continue
            if (isinstance(v, list) and (len(v) == 3 or (len(v) == 4 and v[3] == 1))
                    and _uint(v[0]) and isinstance(v[1], str)
                    and _check_value(v[2], self.config.max_members)):
                # [r, n, value, 1]: chosen, written by a replica that rebuilt (_now_sure)
                self.log.put(slot, v[0], v[1], v[2], len(v) - 3, True)
                if is_valid_id(v[1]) and (v[0], v[1]) > self.ballot:  # accepting promised it
                    self.ballot = (v[0], v[1])
                    self._max_round = max(self._max_round, v[0])

    def _decode_snapshot(self, blob):
        try:
            rec = loads(blob)
        except Exception:  # ValueError, UnicodeError: a damaged snapshot
            return None
        return self._check_snapshot(rec)

    def _check_snapshot(self, rec):
        if not isinstance(rec, list) or len(rec) != 4:
            return None
        slot, index, configs = rec[0], rec[1], rec[2]
        if not _uint(slot) or not _uint(index) or not isinstance(configs, list) or not configs:
            return None
        for c in configs:
            if (not isinstance(c, list) or len(c) != 2 or not _uint(c[0])
                    or not check_members(c[1], self.config.max_members)):
                return None
        return rec

    def _load_snapshot(self, rec):
        """Adopt a snapshot the state machine has just restored."""
        self.snap_slot = self.commit_index = self.applied_slot = rec[0]
        self.applied_index = rec[1]
        self.configs = [[c[0], list(c[1])] for c in rec[2]]
        self._snap = None
        self.log.drop_upto(self.snap_slot)
        self._applied_bytes = 0
        self._refresh_known()

    # ---- configuration -------------------------------------------------------------------

    @property
    def members(self):
        """Members of the latest configuration."""
        return self.configs[-1][1]

    def config_of(self, slot):
        """Members of the configuration that governs a slot (known up to commit + window)."""
        cfgs = self.configs
        i = len(cfgs) - 1
        while i > 0 and cfgs[i][0] > slot:
            i -= 1
        return cfgs[i][1]

    def _refresh_known(self):
        known = set()
        for c in self.configs:
            for m in c[1]:
                known.add(m)
        self._known = known

    def _is_known(self, src):
        # a node joining a group (in no configuration it knows yet) hears everyone
        return src in self._known or self.node_id not in self._known

    def _peers(self, first_slot):
        """Members of every configuration from first_slot on, without this node."""
        out = set(self.config_of(first_slot))
        for c in self.configs:
            if c[0] > first_slot:
                out.update(c[1])
        out.discard(self.node_id)
        return sorted(out)

    # ---- public API ----------------------------------------------------------------------

    def is_leader(self):
        return self.role == LEADER

    def leader_hint(self):
        if self.role == LEADER:
            return self.node_id
        return self.leader

    def propose(self, now_ms, command):
        """Queue a command for the log. (True, effects) on the leader; (False, []) when not
        leader (see leader_hint()) or when its queue is full. ValueError if too large."""
        try:
            size = _size(command)
        except (TypeError, ValueError):
            raise ValueError("a paxos command must be a JSON value") from None
        limit = self._budget - _VALUE_SLACK - 8
        if size > limit:
            raise ValueError("command of %d bytes exceeds the %d-byte limit" % (size, limit))
        if self.role != LEADER or self.node_id not in self.config_of(self._next_slot):
            return False, []
        if len(self._queue) >= self.config.max_queue:
            self.stats["queue_full"] += 1
            return False, []
        self._queue.append((command, size))
        self.stats["proposed"] += 1
        out = []
        if not self._holding:
            self._pump(now_ms, out)
        return True, out

    def hold(self):
        """Commands proposed, and slots chosen, from now on start no new batch until
        release(): a runtime holds while it handles the datagrams that arrived together, so
        the requests among them share one slot, not the next round's (their sends go out
        together after the batch anyway). Timers (tick) still start batches."""
        self._holding = True

    def release(self, now_ms):
        """End a hold: start what the queue and the window allow. Effects."""
        self._holding = False
        out = []
        self._pump(now_ms, out)
        return out

    def reconfigure(self, now_ms, new_members):
        """Propose a new configuration (leader only, one change at a time). It governs the
        slots from ``window`` after the one it is chosen in. (ok, effects)."""
        new_members = sorted(new_members)
        if not check_members(new_members, self.config.max_members):
            raise ValueError("new members must be 1 to %d distinct valid node ids"
                             % self.config.max_members)
        if self.role != LEADER:
            return False, []
        if self._cfg_pending is not None or self.configs[-1][0] > self.commit_index + 1:
            return False, []
        if new_members == self.configs[-1][1]:
            return True, []
        self._cfg_pending = new_members
        out = []
        self._pump(now_ms, out)
        return True, out

    def next_deadline_ms(self):
        if self.role == LEADER:
            return self._heartbeat_at
        d = self._election_at
        if self.role == CANDIDATE and self._retry_at is not None and self._retry_at < d:
            d = self._retry_at
        return d

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        kind = env.kind
        if not PREPARE <= kind <= SNAP:
            return self._reject("unknown_kind")
        src = env.sender
        if src == self.node_id or not self._is_known(src):
            return self._reject("unknown_sender")
        body = env.body
        if not isinstance(body, list):
            return self._reject("malformed")
        out = []
        self._write_unsure(out)
        if kind == PREPARE:
            self._on_prepare(now_ms, src, body, out, env.incarnation)
        elif kind == PROMISE:
            self._on_promise(now_ms, src, body, out)
        elif kind == ACCEPT:
            self._on_accept(now_ms, src, body, out)
        elif kind == ACCEPTED:
            self._on_accepted(now_ms, src, body, out)
        elif kind == NACK:
            self._on_nack(now_ms, src, body, out, env.incarnation)
        elif kind == HEARTBEAT:
            self._on_heartbeat(now_ms, src, body, out)
        elif kind == ACK:
            self._on_ack(now_ms, src, body, out)
        elif kind == CHOSEN:
            self._on_chosen(now_ms, src, body, out)
        else:
            self._on_snap(now_ms, src, body, out)
        return out

    def tick(self, now_ms):
        out = []
        self._write_unsure(out)
        if self.role == LEADER:
            if self._heartbeat_at is not None and now_ms >= self._heartbeat_at:
                self._leader_tick(now_ms, out)
            return out
        if now_ms >= self._election_at:
            if not self._may_campaign():
                self._election_at = now_ms + self._election_timeout()
            elif self._unsure:
                self._ask(now_ms, out)
            elif self.config.pre_vote and self.config.check_quorum:
                # (without check_quorum a leader that hears no one never steps down, and
                # the follower it still reaches would decline every pre-vote for ever)
                self._pre_vote(now_ms, out)
            else:
                self._start_election(now_ms, out)
        elif self.role == CANDIDATE and self._retry_at is not None and now_ms >= self._retry_at:
            self._retry_at = now_ms + self.config.retry_ms
            self._send_prepares(out, self._p1_from, now_ms)
        return out

    @property
    def unsure(self):
        """True while this replica rebuilds after booting with nothing (it does not vote)."""
        return self._unsure != 0

    def heard(self):
        """While unsure: [how many other replicas answered its last ask that fell short,
        how many it needs]; else None."""
        if self._unsure and self._heard_n >= 0:
            return [self._heard_n, _majority(self.members)]
        return None

    def follower_commits(self):
        """While leading: {follower: the commit it last reported}, all as this replica
        knows them now (roost status's lag; reports of different nodes differ in age)."""
        if self.role != LEADER:
            return None
        return {m: p[0] for m, p in self._peer.items() if p[0] >= 0}

    # ---- helpers -------------------------------------------------------------------------

    def _write_unsure(self, out):
        # before anything this replica learns is written: a crash while rebuilding must
        # not make it boot as a voter with half a state
        if self._unsure == 2:
            self._unsure = 1
            out.append((PERSIST, "unsure", 1))

    def _now_sure(self, out):
        """Votes from now on. What it learned while unsure is written first, so that a
        restart finds it: every value in its log, a chosen one marked chosen (a catch-up
        gives no ballot: unmarked, a stale value at any ballot would beat it), the others
        (proposed to it) at their ballots."""
        for slot in self.log.slots(self.snap_slot + 1):
            e = self.log.get(slot)
            rec = [e[0], e[1], e[2], 1] if e[3] else [e[0], e[1], e[2]]
            out.append((PERSIST, "a/%d" % slot, rec))
        self._unsure = 0
        out.append((PERSIST, "unsure", None))

    def _rebuilt(self, out):
        """A leader that won as unsure votes once every slot its phase 1 found is chosen (its
        log then holds them, to be written): until then a step-down leaves it unsure."""
        if self._unsure and self.role == LEADER and self.commit_index >= self._rec_max:
            self._now_sure(out)
            self._unsure_seen = []  # it did not find its group new: it vouches for no one
            out.append((EVENT, "paxos.rebuilt", [self.node_id, self.ballot[0]]))

    def _reject(self, reason):
        self.stats["rx_rejected_" + reason] = self.stats.get("rx_rejected_" + reason, 0) + 1
        self.channel.reject(reason)
        return []

    def _election_timeout(self):
        cfg = self.config
        return self.rng.randint(cfg.election_timeout_min_ms, cfg.election_timeout_max_ms)

    def _send(self, out, kind, dst, body):
        out.append((SEND, dst, self.channel.seal(kind, dst, body)))

    def _persist_then_send(self, out, persists, sends):
        """Durable writes before the replies they guard (reversed only by the test flag)."""
        if self.config._unsafe_send_before_persist:
            out.extend(sends)
            out.extend(persists)
        else:
            out.extend(persists)
            out.extend(sends)

    def _ballot(self, body, src):
        """(round, node) from body[0:2] if well formed and naming the sender, else None."""
        r, n = body[0], body[1]
        if not _uint(r) or n != src:
            return None
        return (r, n)

    def _see_round(self, r):
        if r > self._max_round:
            self._max_round = r

    def _reset_leader_state(self):
        self._queue = []  # [(command, size)]
        self._cfg_pending = None
        self._votes = {}  # slot -> bit mask of the voters' places in config_of(slot)
        self._sent = {}  # slot -> last send time
        self._rec = {}  # slot -> [round, node, value]: values found in phase 1
        self._rec_max = 0
        self._p1 = {}  # acceptor -> [from_slot, covered_to, done, parts ahead or None]
        self._p1_at = {}  # acceptor -> when its promise parts last reached further
        self._p1_from = 0
        self._p1_more_at = 0
        self._next_slot = self.commit_index + 1
        self._peer = {}  # peer -> [commit, last_heard_ms, snap_rx_slot, snap_rx_offset]

    def _become_follower(self, now_ms, out, timeout_ms=None):
        if self.role != FOLLOWER:
            was_leader = self.role == LEADER
            self.role = FOLLOWER
            self._reset_leader_state()
            self._heartbeat_at = None
            self._retry_at = None
            if was_leader:
                self.stats["step_downs"] += 1
                out.append((EVENT, "paxos.step_down", [self.node_id, self.ballot[0]]))
        if timeout_ms is None:
            timeout_ms = self._election_timeout()
        self._election_at = now_ms + timeout_ms

    def _heard_leader(self, now_ms, src, b, out):
        """A valid message from the leader of ballot b (>= our promise). An unsure replica
        keeps its election timer running: winning an election is how it rebuilds."""
        if self.role != FOLLOWER and b != self.ballot:
            self._become_follower(now_ms, out)
        self.leader = src
        self._leader_at = now_ms
        self._see_round(b[0])
        if not self._unsure:
            self._election_at = now_ms + self._election_timeout()
            self._end_pre_vote()  # the leader is back: no election

    def _nack(self, out, dst, body, reason):
        self._send(out, NACK, dst, [body[0], body[1], self.ballot[0], self.ballot[1], reason])

    def _nack_unsure(self, out, dst, b, nonce):
        self._send(out, NACK, dst, [b[0], b[1], self.ballot[0], self.ballot[1], _NACK_UNSURE,
                                    nonce])

    # ---- acceptor ------------------------------------------------------------------------

    def _on_prepare(self, now_ms, src, body, out, inc=0):
        # from an unsure replica: [r, n, from_slot, nonce], or [..., nonce, 1] if it asks
        k = len(body)
        unsure = k == 4 or k == 5
        if k != 3 and not (unsure and _uint(body[3]) and body[3] > 0
                           and (k == 4 or (_uint(body[4]) and 1 <= body[4] <= 2))):
            return self._reject("malformed")
        b = self._ballot(body, src)
        frm = body[2]
        if b is None or not _uint(frm) or frm < 1:
            return self._reject("malformed")
        self._see_round(b[0])
        if self._unsure:
            if self.role != FOLLOWER:
                pass  # campaigning or leading: its own rounds go on
            elif k == 4:
                # another unsure replica campaigns (a majority of the others heard it): one
                # at a time, or the two would outbid each other at the same voters
                self._heard_by = None
                self._election_at = now_ms + self._election_timeout()
            elif k == 5 and body[4] == 1 and now_ms - self._asked_at >= self.config.retry_ms:
                # another unsure replica asks: ask now too (this ask again, same nonce: a
                # new one would void the answers still on their way), so that the
                # replicas of a new group ask each other while all of them are unsure
                self._ask(now_ms, out, True)
            return self._nack_unsure(out, src, b, body[3] if unsure else 0)
        if unsure and [src, inc] in self._unsure_seen:
            # it found its group new with this replica, which has not restarted since and
            # still does not vote: that finding is this replica's too (NACK before promise)
            self._nack_unsure(out, src, b, body[3])
        if k == 5:  # it only asks who hears it: answered, nothing promised
            if body[4] == 2 and (self.role == LEADER or now_ms - self._leader_at
                                 < self.config.election_timeout_min_ms):
                return None  # a pre-vote, and this replica has a leader (or a fresh
                # election it promised): no answer
            return self._send(out, NACK, src, [b[0], b[1], self.ballot[0], self.ballot[1],
                                               _NACK_HEARD, body[3]])
        if unsure and b == self.ballot and self._promised_unsure != [b[0], b[1], body[3]]:
            # a wiped replica counts its rounds from 0 again and may pick a ballot it used
            # before it lost its flash: only a ballot above every promise is new for sure
            self._reject("old_ballot")
            return self._nack(out, src, body, _NACK_STALE)
        if b < self.ballot:
            self._reject("old_ballot")
            return self._nack(out, src, body, _NACK_STALE)
        if frm <= self.snap_slot:
            # our log no longer holds those slots: the candidate must catch up first
            return self._nack(out, src, body, _NACK_BEHIND)
        persists = []
        if b > self.ballot:
            if self.role != FOLLOWER:
                self._become_follower(now_ms, out)
            self.ballot = b
            persists.append((PERSIST, "promised", [b[0], b[1]]))
        self.leader = None
        self._leader_at = now_ms  # an election it promised: given time before a pre-vote
        self._end_pre_vote()  # a late answer would have it outbid the candidate it promised
        self._promised_unsure = [b[0], b[1], body[3]] if unsure else None
        self._election_at = now_ms + self._election_timeout()
        sends = []
        for part in self._promise_parts(b, frm):
            self._send(sends, PROMISE, src, part)
        self._persist_then_send(out, persists, sends)

    def _promise_parts(self, b, frm):
        """The promise's values from frm in datagram-sized parts, at most catchup_datagrams
        of them: the last then says 2, and the candidate asks again from its end."""
        slots = self.log.slots(frm)
        head = _size([b[0], b[1], frm, frm, frm, 1, []]) + 40
        parts = []
        cur = []
        size = head
        lo = frm
        for s in slots:
            e = self.log.get(s)
            item = [s, e[0], e[1], e[2], e[3]]
            # its JSON, and a comma: [s,r,"n",value,c] (ids need no escapes)
            sz = 10 + len(str(s)) + len(str(e[0])) + len(e[1]) + e[4]
            if cur and size + sz > self._budget:
                if len(parts) + 1 >= self.config.catchup_datagrams:
                    parts.append([b[0], b[1], frm, lo, s, 2, cur])
                    return parts
                parts.append([b[0], b[1], frm, lo, s, 0, cur])
                lo = s
                cur = []
                size = head
            cur.append(item)
            size += sz
        hi = slots[-1] + 1 if slots else frm
        if hi < lo:
            hi = lo
        parts.append([b[0], b[1], frm, lo, hi, 1, cur])
        return parts

    def _on_accept(self, now_ms, src, body, out):
        if len(body) != 5:
            return self._reject("malformed")
        b = self._ballot(body, src)
        slot, value, commit = body[2], body[3], body[4]
        if (b is None or not _uint(slot) or slot < 1 or not _uint(commit)
                or not _check_value(value, self.config.max_members)):
            return self._reject("malformed")
        self._see_round(b[0])
        if b < self.ballot:
            self._reject("old_ballot")
            return self._nack(out, src, body, _NACK_STALE)
        self._heard_leader(now_ms, src, b, out)
        persists = []
        if b > self.ballot:
            self.ballot = b
            persists.append((PERSIST, "promised", [b[0], b[1]]))
        if slot > self.snap_slot:
            if self.log.state(slot) != 1:  # the next slot to choose is always held (forced
                # past a full reserve): without it a lagging replica could never move on
                if not self.log.put(slot, b[0], b[1], value, 0, slot == self.commit_index + 1):
                    out.extend(persists)  # a raised promise is durable all the same: the
                    # next message at this ballot would reveal it with nothing on flash
                    return self._reject("full")
                persists.append((PERSIST, "a/%d" % slot, [b[0], b[1], value]))
        self._learn_commit(b, commit, persists)  # what it applies follows the writes
        sends = []
        if self._unsure:  # kept as a learner, not a vote: the leader hears how far it is
            self._send_ack(sends, src, b)
        else:
            self._send(sends, ACCEPTED, src, [b[0], b[1], slot, self.commit_index])
        self._persist_then_send(out, persists, sends)

    def _log_cap(self):
        return self.config.snapshot_every + 4 * self.config.window + 64

    def _learn_commit(self, b, commit, out):
        """Slots up to the leader's commit index that we hold under its ballot are chosen."""
        s = self.commit_index + 1
        while s <= commit:
            e = self.log.get(s)
            if e is None:
                break
            if not e[3]:
                if e[0] != b[0] or e[1] != b[1]:
                    break
                self.log.set_chosen(s)
            s += 1
        self._advance(out)

    def _on_heartbeat(self, now_ms, src, body, out):
        k = len(body)
        if k != 3 and not (k == 4 and _uint(body[3]) and body[3] == 1):
            return self._reject("malformed")
        b = self._ballot(body, src)
        if b is None or not _uint(body[2]):
            return self._reject("malformed")
        self._see_round(b[0])
        if b < self.ballot:
            self._reject("old_ballot")
            return self._nack(out, src, body, _NACK_STALE)
        self._heard_leader(now_ms, src, b, out)
        self._learn_commit(b, body[2], out)
        if (k == 4 and self.role == FOLLOWER and not self._unsure and self._may_campaign()
                and self.commit_index >= body[2]):
            # the leader hands the lead over (see _hand_over), and this replica holds all it
            # chose (so no replica's snapshot is past it): ask who hears it, then campaign
            self._ask_to_lead(now_ms, out)
        self._send_ack(out, src, b)

    def _send_ack(self, out, dst, b):
        rx = self._snap_rx
        self._send(out, ACK, dst, [b[0], b[1], self.commit_index,
                                   rx[0] if rx else 0, rx[4] if rx else 0])

    def _on_chosen(self, now_ms, src, body, out):
        if not body or len(body) > 256:
            return self._reject("malformed")
        cap = self.commit_index + self._log_cap()
        for item in body:
            if (not isinstance(item, list) or len(item) != 2 or not _uint(item[0])
                    or not _check_value(item[1], self.config.max_members)):
                return self._reject("malformed")
        for item in body:
            slot = item[0]
            if slot <= self.commit_index or slot > cap:
                continue
            nxt = slot == self.commit_index + 1
            if self.log.state(slot) != 1 and not self.log.put(slot, 0, "", item[1], 1, nxt):
                self.stats["catchup_refused"] = self.stats.get("catchup_refused", 0) + 1
            if nxt:  # applied now (and maybe a snapshot taken): room for the later ones
                self._advance(out)
        self._advance(out)

    def _on_snap(self, now_ms, src, body, out):
        if len(body) != 5:
            return self._reject("malformed")
        slot, total, crc, off, chunk = body
        if (not _uint(slot) or not _uint(total) or not _uint(crc) or not _uint(off)
                or not isinstance(chunk, str) or total < 1):
            return self._reject("malformed")
        if total > self.config.max_snapshot_bytes:
            return self._reject("oversized")
        if slot <= self.applied_slot:
            return None
        rx = self._snap_rx
        if rx is None or rx[0] != slot or rx[1] != total or rx[2] != crc:
            if off != 0:
                return None
            rx = self._snap_rx = [slot, total, crc, JsonFeed(), 0, 0]
        if off != rx[4]:
            return None  # a gap or a duplicate: the next ACK says where to resume
        try:
            data = binascii.a2b_base64(chunk)
        except Exception:  # binascii.Error (ValueError) on both interpreters
            return self._reject("malformed")
        if not data or rx[4] + len(data) > total:
            self._snap_rx = None
            return self._reject("malformed")
        # decoded as it arrives: the text is never held, only the value read so far
        try:
            rx[3].feed(data)
        except MemoryError:  # dropped whole; the leader's next catch-up starts it over
            self._snap_rx = None
            return self._snapshot_failed(slot, out)
        except ValueError:
            self._snap_rx = None
            return self._reject("malformed")
        rx[4] += len(data)
        rx[5] = binascii.crc32(data, rx[5])
        if rx[4] < total:
            return None
        self._snap_rx = None
        if rx[5] & 0xFFFFFFFF != crc:
            return self._reject("malformed")
        try:
            rec = self._check_snapshot(rx[3].finish())
        except ValueError:
            rec = None
        rx = None  # the decoder let go before the state machine builds its copy
        if rec is None or rec[0] != slot:
            return self._reject("malformed")
        self._install_snapshot(rec, out)

    def _snapshot_failed(self, slot, out):
        """A board's heap could not hold a snapshot (taken here or received): count it. An
        incoming one starts over at the next ACK, its chunks already freed, instead of
        being held half received."""
        self.stats["snapshot_failures"] += 1
        out.append((EVENT, "paxos.snapshot_failed", [self.node_id, slot]))

    def _install_snapshot(self, rec, out):
        try:
            self.sm.restore(rec[3])
        except MemoryError:  # the state machine keeps its old state (restore's contract)
            return self._snapshot_failed(rec[0], out)
        except Exception:  # a state machine refusing a foreign snapshot: drop it
            return self._reject("malformed")
        slot = rec[0]
        out.append((PERSIST, "snap", rec))
        self._drop_log_upto(slot, out)
        self._load_snapshot(rec)
        if self._next_slot <= slot:
            self._next_slot = slot + 1
        self.stats["snapshots_installed"] += 1
        out.append((EVENT, "paxos.snapshot_installed", [self.node_id, slot]))
        self._advance(out)

    def _drop_log_upto(self, slot, out):
        for s in self.log.drop_upto(slot):
            out.append((PERSIST, "a/%d" % s, None))
        for s in self._orphans:
            out.append((PERSIST, "a/%d" % s, None))
        self._orphans = []
        for d in (self._votes, self._sent, self._rec):
            for s in sorted(d):
                if s <= slot:
                    del d[s]

    # ---- learner: commit, apply, snapshot ------------------------------------------------

    def _advance(self, out):
        log = self.log
        c = self.commit_index
        while log.state(c + 1) == 1:
            c += 1
        if c == self.commit_index:
            return
        self.commit_index = c
        while self.applied_slot < c:
            self._apply_slot(self.applied_slot + 1, out)
        for d in (self._votes, self._sent):
            for s in sorted(d):
                if s <= c:
                    del d[s]
        if self._unsure:
            self._rebuilt(out)
        cfg = self.config
        a = self.applied_slot
        if a > self.snap_slot and a >= self._snap_retry_at and (
                a - self.snap_slot >= cfg.snapshot_every
                or (log.live_bytes() > cfg.snapshot_log_bytes
                    and 2 * self._applied_bytes > cfg.snapshot_log_bytes)):
            # by bytes only once half the bound is in applied slots: the rest (accepted
            # slots beyond a gap, a leader's window) a snapshot cannot drop, and one per
            # applied slot would copy the whole store each time for nothing
            self._take_snapshot(out)

    def _apply_slot(self, slot, out):
        v = self.log.get(slot)[2]
        self._applied_bytes += self.log.size(slot)
        tag = v[0]
        if tag == "b":
            for cmd in v[1]:
                self.applied_index += 1
                idx = self.applied_index
                result = self.sm.apply(idx, cmd)
                self.stats["applied"] += 1
                out.append((APPLY, idx, cmd))
                if self.on_apply is not None:
                    self.on_apply(idx, cmd, result)
        elif tag == "c":
            start = slot + self.config.window  # alpha
            members = list(v[1])
            self.configs.append([start, members])
            self._refresh_known()
            if self._cfg_pending is not None and self._cfg_pending == members:
                self._cfg_pending = None
            out.append((EVENT, "paxos.config", [slot, start, members]))
        self.applied_slot = slot

    def _snapshot_record(self, slot):
        """[slot, last index, configurations, sm snapshot] of the state applied up to slot
        (the configuration in force after it and every later one). MemoryError on a heap
        with no room for the store's copy."""
        keep = []
        for c in self.configs:
            if c[0] <= slot + 1:
                keep = [c]
            else:
                keep.append(c)
        keep = [[c[0], list(c[1])] for c in keep]
        return [slot, self.applied_index, keep, self.sm.snapshot()]

    def _take_snapshot(self, out):
        """Persist a snapshot of the applied state and drop the log it covers."""
        slot = self.applied_slot
        try:
            rec = self._snapshot_record(slot)
        except MemoryError:
            # a board's fragmented heap has no room for the store's copy: keep the log
            # (the step goes on) and try again a quarter interval later
            self._snap_retry_at = slot + self.config.snapshot_every // 4 + 1
            return self._snapshot_failed(slot, out)
        out.append((PERSIST, "snap", rec))
        self._drop_log_upto(self._keep_below(slot), out)
        self._applied_bytes = 0  # applied since this snapshot (what the next one drops)
        self.snap_slot = slot
        self.configs = list(rec[2])  # a list of its own: the record handed to PERSIST is
        # never changed afterwards, and a later configuration is appended to this one
        self._snap = None
        self.stats["snapshots"] += 1
        out.append((EVENT, "paxos.snapshot", [self.node_id, slot]))

    def _keep_below(self, slot):
        """The slot up to which a snapshot at slot drops the log: slot itself on a follower;
        on a leader, a little less, so that a follower a few slots behind (a lost datagram,
        a pause) still finds its next slot in the log: from the lowest commit index its
        peers reported, at most catchup_slots and half of snapshot_log_bytes back."""
        if self.role != LEADER:
            return slot
        low = slot
        for m in self.config_of(slot + 1):
            p = self._peer.get(m)
            if m != self.node_id and p is not None and p[0] < low:
                low = p[0]
        drop = max(low, slot - self.config.catchup_slots)
        budget = self.config.snapshot_log_bytes // 2
        kept = 0
        s = slot
        while s > drop:
            kept += self.log.size(s)
            if kept > budget:
                return s
            s -= 1
        return drop

    # ---- candidate -----------------------------------------------------------------------

    def _next_round(self):
        """The round of this replica's next ballot (or ask): above every round it has seen."""
        r = self._max_round
        return (self.ballot[0] if self.ballot[0] > r else r) + 1

    def _start_election(self, now_ms, out):
        b = (self._next_round(), self.node_id)
        self._see_round(b[0])
        if self.role == LEADER:
            self._become_follower(now_ms, out)
        self._reset_leader_state()
        self.role = CANDIDATE
        self.ballot = b
        self.leader = None
        self.stats["elections"] += 1
        out.append((PERSIST, "promised", [b[0], b[1]]))
        frm = self.commit_index + 1
        self._p1_from = frm
        # an unsure replica's own promise does not count (its values below are chosen ones,
        # or values a leader proposed: either may be merged)
        self._p1 = {} if self._unsure else {self.node_id: [frm, _FAR, True, None]}
        self._p1_at = {}
        self._nonce = 0
        self._heard_by = None  # an ask (as unsure, or asked to lead) ends here
        if self._unsure:
            self._nonce = self.rng.randint(1, 1 << 30)
            self._unsure_seen = []
        for s in self.log.slots(frm):
            if self.log.state(s) == 0:  # chosen ones are known already
                e = self.log.get(s)
                self._merge(s, e[0], e[1], e[2], 0)
        self._election_at = now_ms + self._election_timeout()
        self._retry_at = now_ms + self.config.retry_ms
        if self.config._unsafe_skip_phase1:
            self._rec = {}
            self._rec_max = 0
            return self._become_leader(now_ms, out)
        self._send_prepares(out, frm, now_ms)
        if self._unsure:
            self._new_group(out)  # a group of one: no answer will come
        if self._election_won():
            self._become_leader(now_ms, out)

    def _may_campaign(self):
        """Only a member of the configuration that governs its next slot: not a joining
        node, nor one added by a configuration not yet in force (as leader it would step
        down at once). A member being removed may, until its removal is in force."""
        return self.node_id in self.config_of(self.commit_index + 1)

    def _ask(self, now_ms, out, again=False):
        """An unsure replica asks who hears it before it campaigns: each of its elections
        outbids the leader at the replicas it reaches, and one that cannot reach a majority
        of the others would cost the group an election every timeout, for nothing. Voters
        answer NACK 3 and change nothing; unsure replicas answer NACK 2 (a new group)."""
        if not self._may_campaign():
            return
        self._asked_at = now_ms
        if not (again and self._nonce):  # a new ask: its answers are counted afresh
            if self.role == CANDIDATE:
                self._become_follower(now_ms, out)
            heard = self._heard_by
            if heard is not None:
                n = len([m for m in heard if m in self.members])
                if n != self._heard_n:
                    # the last ask fell short: say how far (a link down, a replica off)
                    self._heard_n = n
                    out.append((EVENT, "paxos.asked", [self.node_id, n,
                                                       _majority(self.members)]))
            self._nonce = self.rng.randint(1, 1 << 30)
            self._unsure_seen = []
            self._heard_by = []
            self._election_at = now_ms + self._election_timeout()
        self._send_asks(out)
        self._new_group(out)  # a group of one: no answer will come
        if not self._unsure:
            self._election_at = now_ms

    def _send_prepares(self, out, frm, now_ms):
        for m in self._peers(frm):
            st = self._p1.get(m)
            if st is None:
                self._send(out, PREPARE, m, self._prepare_body(frm))
            elif not st[2] and now_ms - self._p1_at.get(m, -_FAR) >= self.config.retry_ms:
                # no part for retry_ms (one was lost): asked again from where its parts reach
                # (while they come, the pull goes on by itself: a retry would start another)
                self._send(out, PREPARE, m, self._prepare_body(st[1] if st[0] <= frm <= st[1]
                                                             else frm))

    def _prepare_body(self, frm):
        b = self.ballot
        return [b[0], b[1], frm, self._nonce] if self._unsure else [b[0], b[1], frm]

    def _merge(self, slot, r, n, value, chosen):
        if slot <= self.commit_index:
            return
        if self.role == LEADER and slot < self._next_slot:
            return
        if chosen:
            if self.log.state(slot) == 1 or self.log.put(slot, r, n, value, 1):
                self._rec.pop(slot, None)
                return
            # past the log's window: re-proposed as found, above every ballot (it is chosen)
            r, n = _FAR, ""
        cur = self._rec.get(slot)
        if cur is None or (r, n) > (cur[0], cur[1]):
            self._rec[slot] = [r, n, value]
        if slot > self._rec_max:
            self._rec_max = slot

    def _on_promise(self, now_ms, src, body, out):
        if len(body) != 7:
            return self._reject("malformed")
        r, n, frm, lo, hi, last, entries = body
        if not (_uint(r) and is_valid_id(n) and _uint(frm) and _uint(lo) and _uint(hi)
                and last in (0, 1, 2) and isinstance(entries, list) and frm <= lo <= hi):
            return self._reject("malformed")
        if self.role == FOLLOWER or (r, n) != self.ballot:
            return self._reject("old_ballot")
        pref = self.config.prefer
        if (last == 2 and self.role == CANDIDATE and not self._unsure and pref
                and self.node_id not in pref and src in pref):
            # a board campaigning beside a Pi that holds a long tail (more than one answer's
            # parts: after a power cut under load, hundreds of KB): the tail may not fit the
            # board's heap (an emulated board ran out of memory gathering one), and the Pi
            # would be handed the lead anyway. It stands back: the Pi campaigns once no
            # PREPARE resets its timer, and this replica answers it with its own short tail
            self.stats["stood_back"] = self.stats.get("stood_back", 0) + 1
            out.append((EVENT, "paxos.stood_back", [self.node_id, src]))
            return self._become_follower(now_ms, out, 2 * self._election_timeout())
        mm = self.config.max_members
        for it in entries:
            if (not isinstance(it, list) or len(it) != 5 or not _uint(it[0])
                    or not lo <= it[0] < hi or not _uint(it[1]) or not isinstance(it[2], str)
                    or it[4] not in (0, 1) or not _check_value(it[3], mm)):
                return self._reject("malformed")
        self._touch(src, now_ms)
        st = self._p1.get(src)
        if st is None or frm < st[0]:
            # (an answer from a later slot, of this ballot, continues the one it asked for)
            st = self._p1[src] = [frm, frm, False, None]
        for it in entries:
            self._merge(it[0], it[1], it[2], it[3], it[4])
        had = st[1]
        if self._p1_cover(st, lo, hi, last) and self.role == CANDIDATE:
            # the acceptor's parts for one PREPARE all came: ask for the next ones (a leader
            # needs no more once it won; a later configuration's phase 1 is _prepare_more's)
            self._send(out, PREPARE, src, self._prepare_body(st[1]))
        if st[1] > had:
            self._p1_at[src] = now_ms
            if self.role == CANDIDATE:
                # a long promise still coming: this election is not stuck (a new one would
                # start it over)
                self._election_at = now_ms + self._election_timeout()
        self._advance(out)
        if self.role == CANDIDATE:
            if self._election_won():
                self._become_leader(now_ms, out)
        else:
            self._pump(now_ms, out)

    def _p1_cover(self, st, lo, hi, last):
        """An acceptor's promise came in parts [lo, hi) (the last one flagged 1): its
        promise is whole once the parts cover from_slot up to the last one's end. Parts that
        arrive ahead of a gap wait in st[3] (a network may reorder them; before, a candidate
        whose promises came reordered never finished phase 1, whatever it retried). True
        when the parts now reach the end of one PREPARE's answer (flagged 2): there is more."""
        if st[2]:
            return False
        if lo > st[1]:
            ahead = st[3]
            if ahead is None:
                ahead = st[3] = {}
            if len(ahead) < _P1_AHEAD_MAX:
                ahead[lo] = (hi, last)
            return False
        more = False
        while True:
            if hi > st[1]:
                st[1] = hi
                more = last == 2
            if last == 1:
                st[2] = True
            ahead = st[3]
            if not ahead or st[1] not in ahead:
                break
            hi, last = ahead.pop(st[1])
        if st[2]:
            st[3] = None
            return False
        return more

    def _p1_ok(self, slot):
        cfg = self.config_of(slot)
        n = 0
        for m in cfg:
            st = self._p1.get(m)
            if st is not None and st[2] and st[0] <= slot:
                n += 1
        return n >= _majority(cfg)

    def _new_group(self, out):
        """An unsure replica that a majority of its group (itself counted) answered that
        they are unsure too, in answer to its last ask or election (their NACKs echo its
        nonce, so neither an old datagram nor an answer to an earlier one counts; a duel it
        lost since does not matter): the group is new, so it votes from now on, and as a
        candidate counts its own promise."""
        if len(self.configs) != 1 or self.configs[0][0] != 1:
            return  # a reconfigured group: a member added later is unsure until it rebuilds
        cfg = self.configs[0][1]
        seen = [x[0] for x in self._unsure_seen]
        n = 1
        for m in cfg:
            if m != self.node_id and m in seen:
                n += 1
        if n < _majority(cfg):
            return
        self._now_sure(out)
        if self.role == CANDIDATE:
            self._p1[self.node_id] = [self._p1_from, _FAR, True, None]
        out.append((EVENT, "paxos.new_group", [self.node_id, n]))

    def _election_won(self):
        frm = self._p1_from
        if not self._p1_ok(frm):
            return False
        top = self.commit_index + self.config.window
        for c in self.configs:
            if frm < c[0] <= top and not self._p1_ok(c[0]):
                return False
        return True

    # ---- leader --------------------------------------------------------------------------

    def _become_leader(self, now_ms, out):
        # Won as unsure: a majority of the others promised (module docstring). Its own
        # promise does not count in this term (phase 1 of a configuration it learns later
        # needs a majority of the others); it votes once what phase 1 found is chosen
        self.role = LEADER
        self.leader = self.node_id
        self._next_slot = self._p1_from
        if self._next_slot <= self.commit_index:
            self._next_slot = self.commit_index + 1
        self._heartbeat_at = now_ms
        self._retry_at = None
        self._p1_more_at = now_ms
        self.stats["leader_terms"] += 1
        h = self._hand
        if h[0] < now_ms + self.config.election_timeout_max_ms:
            h[0] = now_ms + self.config.election_timeout_max_ms
        for m in self._peers(self.commit_index + 1):
            self._touch(m, now_ms)
        out.append((EVENT, "paxos.leader", [self.node_id, self.ballot[0], self._p1_from]))
        self._leader_tick(now_ms, out)
        if self._unsure:
            self._rebuilt(out)

    def _touch(self, peer, now_ms):
        p = self._peer.get(peer)
        if p is None:
            p = self._peer[peer] = [-1, now_ms, 0, 0]
        p[1] = now_ms
        return p

    def _leader_tick(self, now_ms, out):
        cfg = self.config
        self._heartbeat_at = now_ms + cfg.heartbeat_ms
        cur = self.config_of(self.commit_index + 1)
        if self.node_id not in cur:
            # removed: it leads on (heartbeats, catch-up, no new slot) until a majority of
            # the configuration now in force has reported the commit that put it in force,
            # or they would still need the old majority to elect one of their own
            n = 0
            for m in cur:
                p = self._peer.get(m)
                if p is not None and p[0] >= self.commit_index:
                    n += 1
            if n >= _majority(cur):
                return self._become_follower(now_ms, out)
        nxt = self.config_of(self._next_slot)
        if (not self._unsure and self.node_id not in self._p1 and self.node_id in nxt
                and not self._p1_ok(self._next_slot)):
            # won as unsure, so its own promise does not count in this term, and phase 1
            # of a configuration it belongs to waits (a shrink may leave no majority without
            # it): rebuilt by now, it runs a fresh election, where its promise counts
            return self._start_election(now_ms, out)
        if cfg.check_quorum:
            members = nxt
            heard = 1 if self.node_id in members else 0
            for m in members:
                p = self._peer.get(m)
                if m != self.node_id and p is not None and now_ms - p[1] <= \
                        cfg.election_timeout_max_ms:
                    heard += 1
            if heard < _majority(members):
                return self._become_follower(now_ms, out)
        b = self.ballot
        body = [b[0], b[1], self.commit_index]
        for m in self._peers(self.commit_index + 1):
            self._send(out, HEARTBEAT, m, body)
        if cfg.prefer and now_ms >= self._hand[0] and not self._unsure \
                and self.node_id not in cfg.prefer:
            self._hand_over(now_ms, cur, out)
        # resend accepts that are still unanswered
        for s in sorted(self._sent):
            if now_ms - self._sent[s] >= cfg.retry_ms:
                if self.log.state(s) != 0:
                    continue
                self._sent[s] = now_ms
                votes = self._votes.get(s, 0)
                abody = [b[0], b[1], s, self.log.get(s)[2], self.commit_index]
                cfg_s = self.config_of(s)
                for i in range(len(cfg_s)):
                    m = cfg_s[i]
                    if m != self.node_id and not (votes >> i) & 1:
                        self.stats["retransmits"] += 1
                        self._send(out, ACCEPT, m, abody)
        self._pump(now_ms, out)

    def _hand_over(self, now_ms, members, out):
        """A leader outside config.prefer (a board that won while the Pis were away, or
        rebuilt by winning) asks a preferred member that answers and is nearly caught up to
        take the lead: a HEARTBEAT with a fourth element, 1. The member asks who hears it
        first and campaigns only if a majority does (_ask_to_lead); its higher ballot then
        wins as any election's does (phase 1 keeps every value). The preferred members are
        asked in turn (one that cannot take it does not stop the next), and the wait between
        two asks doubles up to 32 election timeouts, across terms: a hand-over that did not
        hold (a preferred member behind a lossy or one-way link) is tried less and less."""
        cfg = self.config
        h = self._hand
        base = 2 * cfg.election_timeout_max_ms
        if now_ms - (h[0] - h[1]) > 8 * h[1]:  # the last ask is long past: it held
            h[1] = base
        n = len(cfg.prefer)
        for k in range(n):
            i = (h[2] + k) % n
            m = cfg.prefer[i]
            p = self._peer.get(m)
            if (m in members and p is not None and p[0] >= 0
                    and p[0] + cfg.window >= self.commit_index
                    and now_ms - p[1] <= cfg.election_timeout_min_ms):
                h[2] = i + 1
                h[0] = now_ms + h[1]
                if h[1] < 16 * base:
                    h[1] *= 2
                self.stats["hand_overs"] += 1
                out.append((EVENT, "paxos.hand_over", [self.node_id, m]))
                b = self.ballot
                return self._send(out, HEARTBEAT, m, [b[0], b[1], self.commit_index, 1])

    def _ask_to_lead(self, now_ms, out):
        """Asked to take the lead: ask who hears it first (the unsure replicas' ask, a
        flagged PREPARE that voters answer with NACK 3, changing nothing). It campaigns
        once a majority of the others answered (_on_nack): a member heard by the leader
        alone would depose it and win nothing."""
        self._nonce = self.rng.randint(1, 1 << 30)
        self._heard_by = []
        self._asked_at = now_ms
        self._send_asks(out)

    def _pre_vote(self, now_ms, out):
        """Heard no leader for an election timeout: ask whether the others hear none either
        (a PREPARE flagged 2, promising nothing) and campaign once a majority, itself
        counted, answered (_on_nack); the leader, or a replica that heard it (or promised
        a candidate) within election_timeout_min_ms, does not answer. Unanswered, it asks
        again next timeout."""
        if self.role == CANDIDATE:
            self._become_follower(now_ms, out)  # its election fell short: ask first again
        else:
            self._election_at = now_ms + self._election_timeout()
        self._nonce = self.rng.randint(1, 1 << 30)
        self._heard_by = [self.node_id]  # its own answer counts (an unsure replica's not)
        self._asked_at = now_ms
        self._send_asks(out, 2)
        if _majority(self.members) <= 1:  # a group of one: no answer will come
            self._start_election(now_ms, out)

    def _end_pre_vote(self):
        """Drop this replica's pending pre-vote (its own answer is in it; an unsure
        replica's ask and an ask to lead are not pre-votes and go on)."""
        if self._heard_by is not None and self.node_id in self._heard_by:
            self._heard_by = None

    def _send_asks(self, out, flag=1):
        """The ask: a PREPARE flagged as a question (1; 2 a pre-vote), with this ask's
        nonce, to every peer."""
        r = self._next_round()
        frm = self.commit_index + 1
        for m in self._peers(frm):
            self._send(out, PREPARE, m, [r, self.node_id, frm, self._nonce, flag])

    def _pump(self, now_ms, out):
        """Start phase 2 in as many slots as the window, phase 1 and the queue allow."""
        if self.role != LEADER:
            return
        while True:
            s = self._next_slot
            if s > self.commit_index + self.config.window:
                return
            cfg = self.config_of(s)
            if self.node_id not in cfg:
                return
            if not self._p1_ok(s) and not self.config._unsafe_skip_phase1:
                return self._prepare_more(now_ms, s, out)
            if self.log.state(s) == 1:
                self._next_slot = s + 1
                continue
            rec = self._rec.pop(s, None)
            if rec is not None:
                value = rec[2]
            elif s <= self._rec_max:
                value = NOOP
            elif self._cfg_pending is not None and self._cfg_pending != self.configs[-1][1] \
                    and not self._cfg_in_flight():
                value = ["c", list(self._cfg_pending)]
            elif self._queue or s < self.configs[-1][0]:
                if len(self._sent) >= self.config.pipeline:
                    return  # enough in flight: the queue grows into a fuller batch
                # no commands: no-ops bring a chosen configuration into force
                value = self._take_batch() if self._queue else NOOP
            else:
                return
            self._next_slot = s + 1
            self._propose_slot(now_ms, s, value, out)

    def _cfg_in_flight(self):
        for s in self._sent:
            e = self.log.get(s)
            if e is not None and e[2][0] == "c":
                return True
        return False

    def _take_batch(self):
        q = self._queue
        size = 12
        k = 0
        limit = self.config.max_batch
        while k < len(q) and k < limit:
            sz = q[k][1] + 1
            if k and size + sz > self._budget - _VALUE_SLACK:
                break
            size += sz
            k += 1
        cmds = [q[i][0] for i in range(k)]
        self._queue = q[k:]
        return ["b", cmds]

    def _prepare_more(self, now_ms, slot, out):
        """A configuration whose majority has not promised yet: ask its members."""
        if now_ms < self._p1_more_at:
            return
        self._p1_more_at = now_ms + self.config.retry_ms
        for m in self.config_of(slot):
            st = self._p1.get(m)
            if m == self.node_id or (st is not None and st[2] and st[0] <= slot):
                continue
            if st is not None and st[0] <= slot <= st[1]:
                self._send(out, PREPARE, m, self._prepare_body(st[1]))  # the rest of it
            else:
                self._p1[m] = [slot, slot, False, None]
                self._send(out, PREPARE, m, self._prepare_body(slot))

    def _propose_slot(self, now_ms, s, value, out):
        b = self.ballot
        self.log.put(s, b[0], b[1], value, 0, True)
        self.stats["slots_proposed"] += 1
        cfg = self.config_of(s)
        persists = [(PERSIST, "a/%d" % s, [b[0], b[1], value])]
        sends = []
        body = [b[0], b[1], s, value, self.commit_index]
        for m in cfg:
            if m != self.node_id:
                self._send(sends, ACCEPT, m, body)
        # The accepts go out BEFORE the leader's own record of the slot: a proposal promises
        # nothing, so the followers may write theirs while the leader writes its own (with
        # fsync, the two disk writes overlap instead of following each other). The leader's
        # own vote is only counted with a follower's ACCEPTED, which arrives in a later step:
        # by then the runtime has made this step's record durable.
        out.extend(sends)
        out.extend(persists)
        self._votes[s] = 1 << cfg.index(self.node_id) if self.node_id in cfg else 0
        self._sent[s] = now_ms
        self._check_chosen(s, cfg, out)

    def _check_chosen(self, s, cfg, out):
        votes = self._votes.get(s)
        if votes is None or bin(votes).count("1") < _majority(cfg):
            return
        if self.log.state(s) < 0:
            return
        self.log.set_chosen(s)
        self.stats["slots_chosen"] += 1
        del self._votes[s]
        self._sent.pop(s, None)
        self._advance(out)

    def _on_accepted(self, now_ms, src, body, out):
        if len(body) != 4:
            return self._reject("malformed")
        r, n, slot, commit = body
        if not (_uint(r) and is_valid_id(n) and _uint(slot) and _uint(commit)):
            return self._reject("malformed")
        if self.role != LEADER or (r, n) != self.ballot:
            return self._reject("old_ballot")
        p = self._touch(src, now_ms)
        if commit > p[0]:
            p[0] = commit
        votes = self._votes.get(slot)
        if votes is not None:
            cfg = self.config_of(slot)
            if src in cfg:
                bit = 1 << cfg.index(src)
                if not votes & bit:
                    self._votes[slot] = votes | bit
                    self._check_chosen(slot, cfg, out)
        if not self._holding:
            self._pump(now_ms, out)

    def _on_nack(self, now_ms, src, body, out, inc=0):
        if not 5 <= len(body) <= 6:
            return self._reject("malformed")
        r, n, pr, pn, reason = body[0], body[1], body[2], body[3], body[4]
        # reasons 2 and 3 echo a nonce: [r, n, pr, pn, reason, nonce]
        if not (_uint(r) and is_valid_id(n) and _uint(pr) and isinstance(pn, str)
                and reason in (_NACK_STALE, _NACK_BEHIND, _NACK_UNSURE, _NACK_HEARD)
                and len(body) == (6 if reason >= _NACK_UNSURE else 5)
                and (len(body) == 5 or _uint(body[5]))):
            return self._reject("malformed")
        self._see_round(pr)
        if reason == _NACK_HEARD:
            # asking as unsure, asked to lead, or pre-voting (answers within a timeout count)
            if ((self._unsure or now_ms - self._asked_at <= self.config.election_timeout_min_ms)
                    and self.role == FOLLOWER and body[5] == self._nonce
                    and self._heard_by is not None and src not in self._heard_by):
                self._heard_by.append(src)
                cfg = self.members
                if (src in cfg and len([m for m in self._heard_by if m in cfg])
                        >= _majority(cfg) and self._may_campaign()):
                    # a majority of the others hear it: now an election can rebuild it
                    self._start_election(now_ms, out)
            return None
        if reason == _NACK_UNSURE:
            if (self._unsure and body[5] == self._nonce and body[5]
                    and [src, inc] not in self._unsure_seen):
                self._unsure_seen.append([src, inc])  # unsure too, answering our last election
                self._new_group(out)
                if not self._unsure and self.role == FOLLOWER:
                    # it found its group new when it asked: campaign soon (at random, so
                    # that the others, finding it too, seldom duel with it)
                    self._election_at = now_ms + self.rng.randint(0, self.config.retry_ms)
                elif (not self._unsure and self.role == CANDIDATE and (r, n) == self.ballot
                        and self._election_won()):
                    self._become_leader(now_ms, out)
            return None
        if self.role == FOLLOWER or (r, n) != self.ballot:
            return None
        if reason == _NACK_BEHIND:
            if self.role == CANDIDATE:
                # others hold a newer snapshot: let an up-to-date replica lead
                self._become_follower(now_ms, out, 2 * self._election_timeout())
            return None
        if (pr, pn) > self.ballot:
            self._become_follower(now_ms, out)

    def _on_ack(self, now_ms, src, body, out):
        if len(body) != 5:
            return self._reject("malformed")
        r, n, commit, rx_slot, rx_off = body
        if not (_uint(r) and is_valid_id(n) and _uint(commit) and _uint(rx_slot)
                and _uint(rx_off)):
            return self._reject("malformed")
        if self.role != LEADER or (r, n) != self.ballot:
            return self._reject("old_ballot")
        p = self._touch(src, now_ms)
        p[0] = commit
        p[2] = rx_slot
        p[3] = rx_off
        if commit < self.commit_index:
            self._catch_up(src, p, out)

    def _snap_transfer(self):
        """[slot, JSON] of a snapshot for a laggard: the state applied up to slot (at or
        past snap_slot: the log holds every slot after it), its JSON as ``Pieces`` (bytes
        in pieces of about 512, no block of the whole size, their length and crc32).
        Built on first need, kept until the next snapshot; None when the heap has no room."""
        sn = self._snap
        if sn is not None and sn[0] >= self.snap_slot:
            return sn
        self._snap = None
        try:
            rec = self._snapshot_record(self.applied_slot)
            w = Pieces()
            write_json(w, rec)
        except MemoryError:
            self.stats["snapshot_failures"] += 1
            return None
        self._snap = [rec[0], w]
        return self._snap

    def _catch_up(self, peer, p, out):
        commit = p[0]
        n = self.config.catchup_datagrams
        if commit < self.snap_slot and self.log.state(commit + 1) != 1:
            sn = self._snap_transfer()
            if sn is None:
                return
            slot, w = sn
            parts, total, crc = w.parts, w.total, w.crc
            off = p[3] if p[2] == slot and p[3] <= total else 0
            chunk = (self._budget - 120) * 3 // 4
            self.stats["snapshots_sent"] += 1
            while n > 0 and off < total:
                raw = piece_slice(parts, off, chunk)
                piece = binascii.b2a_base64(raw).decode().rstrip("\n")
                self._send(out, SNAP, peer, [slot, total, crc, off, piece])
                off += len(raw)
                n -= 1
            return
        s = commit + 1
        while n > 0 and s <= self.commit_index:
            batch = []
            size = 4
            while s <= self.commit_index and len(batch) < 256:
                e = self.log.get(s)
                if e is None:
                    break
                item = [s, e[2]]
                sz = 4 + len(str(s)) + e[4]  # its JSON [s,value] and a comma
                if batch and size + sz > self._budget:
                    break
                batch.append(item)
                size += sz
                s += 1
            if not batch:
                break
            self.stats["catchup_sent"] += 1
            self._send(out, CHOSEN, peer, batch)
            n -= 1
