"""The replicated key-value store: a state machine for Paxos and the replica host around it.

``KvStore`` is the deterministic state machine: ``get``, ``put``, ``append`` and ``cas`` on
string keys and values, plus a session table (client id -> last sequence number and its
result) so that a command a client re-sends after a lost reply is applied exactly once.

``KvReplica`` is one node's host: a ``PaxosCore`` (kinds 32-63) with a ``KvStore`` as its
state machine, plus the client protocol (kinds 64-95). A leader proposes each client
request and answers when the command applies; a follower answers "not leader" with a hint.
Reads go through the log too, so every answer is linearizable. There is no lease-based
fast read (see docs/kv.md).

Wire (bodies are JSON lists):
  KV_REQUEST  client -> replica   [seq, op, key, a, b]     op: 0 get, 1 put, 2 append, 3 cas
                                                            put/append: a = value
                                                            cas: a = old (None = absent), b = new
  KV_REPLY    replica -> client   [seq, status, output, hint]
              status 0 ok (output: get -> value or None, cas -> swapped, else None)
                     1 not leader (hint: the leader this replica believes in, or None)
                     2 retry elsewhere (leadership lost or replica busy; the command may
                       still commit: re-send the same seq)
                     3 error: definitely not applied (output: the reason)
A log command is [client, seq, op, key, a, b]; its result is [status, output].
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from roost.common.config import apply_overrides
from roost.common.ids import is_valid_id
from roost.node.effects import EVENT, SEND

KV_REQUEST = const(64)
KV_REPLY = const(65)

OP_GET = const(0)
OP_PUT = const(1)
OP_APPEND = const(2)
OP_CAS = const(3)
OP_NAMES = ("get", "put", "append", "cas")

ST_OK = const(0)
ST_NOT_LEADER = const(1)
ST_RETRY = const(2)
ST_ERROR = const(3)
STATUS_NAMES = ("ok", "not_leader", "retry", "error")
BUSY = "busy"  # a retry's output when the request was not proposed (full queue or table)

_SNAP_VERSION = const(2)  # 2: the floor of forgotten sessions after the sessions
_MAX_SEQ = const(1 << 62)  # sequence numbers are non-negative ints below this


class KvConfig:
    """Limits of the store and of a replica's request handling."""

    max_key_len = 64  # characters; keys are short names like "t/room1"
    max_value_len = 256  # characters per value (an append past it fails): a reply must fit
    # one 1,400-byte datagram and the store must fit an ESP32's heap
    max_keys = 128  # distinct keys; a put of a new key beyond it fails ("full")
    max_sessions = 128  # client sessions kept; beyond it the least recently used is evicted,
    # and its seq raises the floor below which a client without a session is refused
    max_pending = 64  # client requests a leader waits on at once; more get "retry"
    pending_timeout_ms = 2000  # a pending request not applied within this is forgotten
    # (the client has retried by then); keeps the table bounded under partitions

    def __init__(self, **overrides):
        apply_overrides(self, KvConfig, overrides, "kv")
        for name in ("max_key_len", "max_value_len", "max_keys", "max_sessions", "max_pending"):
            if getattr(self, name) < 1:
                raise ValueError("kv option %s must be at least 1" % name)
        if self.pending_timeout_ms < 1:
            raise ValueError("kv option pending_timeout_ms must be at least 1")

    @classmethod
    def lan(cls, **overrides):
        """LAN / emulation: the defaults."""
        return cls(**overrides)

    @classmethod
    def wifi(cls, **overrides):
        """Wi-Fi boards: slower commits, so pending requests wait longer."""
        opts = {"pending_timeout_ms": 6000}
        opts.update(overrides)
        return cls(**opts)


def _is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _MAX_SEQ


def _is_opt_str(x):
    return x is None or isinstance(x, str)


def check_request(cfg, op, key, a, b):
    """None when (op, key, a, b) is a well-formed request, else a reason string."""
    if not isinstance(op, int) or isinstance(op, bool) or not 0 <= op <= 3:
        return "malformed"
    if not isinstance(key, str) or not key:
        return "malformed"
    if len(key) > cfg.max_key_len:
        return "too_large"
    if op == OP_GET:
        if a is not None or b is not None:
            return "malformed"
    elif op == OP_PUT or op == OP_APPEND:
        if not isinstance(a, str) or b is not None:
            return "malformed"
        if len(a) > cfg.max_value_len:
            return "too_large"
    else:
        if not _is_opt_str(a) or not isinstance(b, str):
            return "malformed"
        if len(b) > cfg.max_value_len or (a is not None and len(a) > cfg.max_value_len):
            return "too_large"
    return None


def _is_result(r):
    if not isinstance(r, list) or len(r) != 2:
        return False
    st, out = r
    if st == ST_OK:
        return out is None or isinstance(out, (str, bool))
    return st == ST_ERROR and isinstance(out, str)


class KvStore:
    """The state machine. ``apply(index, command) -> result``; deterministic on every
    interpreter (no hashing or set order reaches the state or the snapshot)."""

    def __init__(self, config=None):
        self.config = config or KvConfig()
        self.data = {}
        self.sessions = {}  # client -> [seq, result, last_index]
        # the highest seq of an evicted session: a command at or below it from a client
        # without a session is refused ("expired"), as the store can no longer tell a new
        # one from a replay (a captured request sent again) or from a retry it applied
        self.floor = 0
        self.stats = {"applied": 0, "duplicates": 0, "stale": 0, "errors": 0, "evicted": 0,
                      "below_floor": 0}
        self.last_index = 0

    # ---- reads a host may do locally (not linearizable on their own) -----------------

    def get(self, key):
        return self.data.get(key)

    def session(self, client):
        """(seq, result) of the client's last applied command, or None."""
        s = self.sessions.get(client)
        return None if s is None else (s[0], s[1])

    # ---- the state machine ----------------------------------------------------------

    def apply(self, index, command):
        """Apply one committed command; returns [status, output]. A command that is not a
        well-formed KV command (a no-op, or garbage) changes nothing and returns None."""
        if isinstance(index, int) and index > self.last_index:
            self.last_index = index
        if not isinstance(command, list) or len(command) != 6:
            return None
        client, seq, op, key, a, b = command
        if not is_valid_id(client) or not _is_uint(seq):
            return None
        s = self.sessions.get(client)
        known = self.known(client, seq)
        if known is not None:
            if s is not None and seq == s[0]:
                s[2] = self.last_index
                self.stats["duplicates"] += 1
            else:
                self.stats["stale" if s is not None else "below_floor"] += 1
            return known
        result = self._execute(op, key, a, b)
        if result[0] != ST_OK:
            self.stats["errors"] += 1
        self.stats["applied"] += 1
        if s is None:
            if len(self.sessions) >= self.config.max_sessions:
                self._evict()
            self.sessions[client] = [seq, result, self.last_index]
        else:
            s[0] = seq
            s[1] = result
            s[2] = self.last_index
        return result

    def known(self, client, seq):
        """What the store already says of (client, seq), changing nothing: the result of
        the session's last command (a retry), [ST_ERROR, "stale"] (older than it),
        [ST_ERROR, "expired"] (no session and at or below the floor), or None (new)."""
        s = self.sessions.get(client)
        if s is not None:
            if seq == s[0]:
                return s[1]
            return [ST_ERROR, "stale"] if seq < s[0] else None
        return [ST_ERROR, "expired"] if seq <= self.floor else None

    def _execute(self, op, key, a, b):
        cfg = self.config
        reason = check_request(cfg, op, key, a, b)
        if reason is not None:
            return [ST_ERROR, reason]
        data = self.data
        cur = data.get(key)
        if op == OP_GET:
            return [ST_OK, cur]
        if op == OP_CAS:
            if cur != a:
                return [ST_OK, False]
            if cur is None and len(data) >= cfg.max_keys:
                return [ST_ERROR, "full"]
            data[key] = b
            return [ST_OK, True]
        if cur is None and len(data) >= cfg.max_keys:
            return [ST_ERROR, "full"]
        if op == OP_PUT:
            data[key] = a
        else:
            new = a if cur is None else cur + a
            if len(new) > cfg.max_value_len:
                return [ST_ERROR, "too_large"]
            data[key] = new
        return [ST_OK, None]

    def _evict(self):
        """Drop the least recently used session (ties: smallest client id)."""
        victim = None
        vt = 0
        for client in sorted(self.sessions):
            t = self.sessions[client][2]
            if victim is None or t < vt:
                victim, vt = client, t
        if victim is not None:
            if self.sessions[victim][0] > self.floor:
                self.floor = self.sessions[victim][0]
            del self.sessions[victim]
            self.stats["evicted"] += 1

    # ---- snapshots ------------------------------------------------------------------

    def snapshot(self):
        """[version, last_index, [[key, value]...], [[client, seq, result, last]...], floor],
        lists sorted by key and client: the same state gives the same JSON everywhere."""
        items = [[k, self.data[k]] for k in sorted(self.data)]
        sess = []
        for c in sorted(self.sessions):
            s = self.sessions[c]
            sess.append([c, s[0], list(s[1]), s[2]])
        if not self.floor:  # as before the floor: a replica on older code can install it
            return [1, self.last_index, items, sess]
        return [_SNAP_VERSION, self.last_index, items, sess, self.floor]

    def restore(self, snap):
        """Replace the state with a snapshot; ValueError (state untouched) if it is not one."""
        if not isinstance(snap, list) or (snap[:1], len(snap)) not in (([1], 4), ([2], 5)):
            raise ValueError("not a kv snapshot")  # version 1 (before the floor) still reads
        last, items, sess = snap[1], snap[2], snap[3]
        floor = snap[4] if len(snap) == 5 else 0
        if not isinstance(last, int) or not isinstance(items, list) or not isinstance(sess, list):
            raise ValueError("not a kv snapshot")
        if not _is_uint(floor):
            raise ValueError("not a kv snapshot")
        data = {}
        for it in items:
            if not isinstance(it, list) or len(it) != 2:
                raise ValueError("bad kv snapshot item")
            if not isinstance(it[0], str) or not isinstance(it[1], str):
                raise ValueError("bad kv snapshot item")
            data[it[0]] = it[1]
        sessions = {}
        for it in sess:
            if not isinstance(it, list) or len(it) != 4:
                raise ValueError("bad kv snapshot session")
            c, seq, res, t = it
            if not is_valid_id(c) or not _is_uint(seq) or not _is_result(res):
                raise ValueError("bad kv snapshot session")
            if not isinstance(t, int):
                raise ValueError("bad kv snapshot session")
            sessions[c] = [seq, list(res), t]
        self.data = data
        self.sessions = sessions
        self.last_index = last
        self.floor = floor


class KvReplica:
    """One replica: PaxosCore + KvStore + the client protocol. A simulator/runtime host."""

    def __init__(
        self,
        node_id,
        channel,
        members,
        config=None,
        paxos_config=None,
        rng=None,
        storage=None,
        now_ms=0,
        consensus=None,
    ):
        self.node_id = node_id
        self.channel = channel
        self.config = config or KvConfig()
        self.store = KvStore(self.config)
        if consensus is None:
            from roost.node.paxos import PaxosCore

            consensus = PaxosCore(
                node_id,
                channel,
                sorted(members),
                self.store,
                config=paxos_config,
                rng=rng,
                storage=storage if storage is not None else {},
                now_ms=now_ms,
            )
        self.paxos = consensus
        self.paxos.on_apply = self._on_apply
        self.pending = {}  # client -> [seq, deadline_ms]
        self._replies = []
        self._was_leader = False
        self.stats = {
            "requests": 0,
            "proposed": 0,
            "replied_ok": 0,
            "replied_error": 0,
            "not_leader": 0,
            "retry": 0,
            "expired": 0,
            "rx_rejected_malformed": 0,
        }

    # ---- host interface -------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        kind = env.kind
        if 32 <= kind <= 63:
            effects = list(self.paxos.handle(now_ms, env) or [])
            return self._after(now_ms, effects)
        if kind == KV_REQUEST:
            return self._after(now_ms, self._on_request(now_ms, env))
        self.channel.reject("unknown_kind")
        return []

    def hold(self):
        """See PaxosCore.hold: requests handled until release() share one batch."""
        self.paxos.hold()

    def release(self, now_ms):
        return self._after(now_ms, list(self.paxos.release(now_ms)))

    def tick(self, now_ms):
        effects = list(self.paxos.tick(now_ms) or [])
        if self.pending:
            for client in sorted(self.pending):
                if self.pending[client][1] <= now_ms:
                    del self.pending[client]
                    self.stats["expired"] += 1
        return self._after(now_ms, effects)

    def next_deadline_ms(self):
        d = self.paxos.next_deadline_ms()
        for client in self.pending:
            t = self.pending[client][1]
            if d is None or t < d:
                d = t
        return d

    def is_leader(self):
        return self.paxos.is_leader()

    # ---- client requests ------------------------------------------------------------

    def _reply(self, client, seq, status, output=None, hint=None):
        body = [seq, status, output, hint]
        return (SEND, client, self.channel.seal(KV_REPLY, client, body))

    def _on_request(self, now_ms, env):
        body = env.body
        client = env.sender
        if not isinstance(body, list) or len(body) != 5 or not _is_uint(body[0]):
            self.stats["rx_rejected_malformed"] += 1
            self.channel.reject("malformed")
            return []
        self.stats["requests"] += 1
        seq, op, key, a, b = body
        reason = check_request(self.config, op, key, a, b)
        if reason is not None:
            self.stats["replied_error"] += 1
            return [self._reply(client, seq, ST_ERROR, reason)]
        known = self.store.known(client, seq)
        if known is not None:
            # Already applied (a re-sent request whose reply was lost: answered from the
            # session), stale, or forgotten: as apply() would answer it. Safe on any
            # replica: sessions and the floor only hold committed state.
            return [self._reply_result(client, seq, known)]
        if not self.paxos.is_leader():
            self.stats["not_leader"] += 1
            return [self._reply(client, seq, ST_NOT_LEADER, None, self._hint())]
        p = self.pending.get(client)
        if p is not None and p[0] == seq:
            return []  # already proposed; the answer comes when it applies
        if p is None and len(self.pending) >= self.config.max_pending:
            self.stats["retry"] += 1
            return [self._reply(client, seq, ST_RETRY, BUSY, None)]
        # Registered before proposing: a one-member group may apply inside propose().
        self.pending[client] = [seq, now_ms + self.config.pending_timeout_ms]
        try:
            accepted, effects = self.paxos.propose(now_ms, [client, seq, op, key, a, b])
        except ValueError:  # larger than a log entry may be: never proposed
            self.pending.pop(client, None)
            self.stats["replied_error"] += 1
            return [self._reply(client, seq, ST_ERROR, "too_large")]
        effects = list(effects or [])
        if not accepted:
            self.pending.pop(client, None)
            if self.paxos.is_leader():  # the leader's queue is full: come back later
                self.stats["retry"] += 1
                effects.append(self._reply(client, seq, ST_RETRY, BUSY, None))
            else:
                self.stats["not_leader"] += 1
                effects.append(self._reply(client, seq, ST_NOT_LEADER, None, self._hint()))
            return effects
        self.stats["proposed"] += 1
        return effects

    def _hint(self):
        h = self.paxos.leader_hint()
        return h if h != self.node_id or self.paxos.is_leader() else None

    def _reply_result(self, client, seq, result):
        if result[0] == ST_OK:
            self.stats["replied_ok"] += 1
            return self._reply(client, seq, ST_OK, result[1])
        self.stats["replied_error"] += 1
        # "expired" carries the floor: a client whose request was never applied goes on above it
        floor = self.store.floor if result[1] == "expired" else None
        return self._reply(client, seq, ST_ERROR, result[1], floor)

    def _on_apply(self, index, command, result):
        """Paxos applied a command on this replica: answer the client if it waits here."""
        if not isinstance(command, list) or len(command) != 6 or result is None:
            return
        client, seq = command[0], command[1]
        p = self.pending.get(client)
        if p is None or p[0] != seq:
            return
        del self.pending[client]
        if result[0] == ST_ERROR and result[1] == "stale":
            return
        self._replies.append(self._reply_result(client, seq, result))

    def _after(self, now_ms, effects):
        """Append the replies produced by applies, and react to a change of leadership."""
        if self._replies:
            effects.extend(self._replies)
            self._replies = []
        leader = self.paxos.is_leader()
        if leader != self._was_leader:
            self._was_leader = leader
            if leader:
                effects.append((EVENT, "kv.leader", self.node_id))
            else:
                hint = self._hint()
                for client in sorted(self.pending):
                    seq = self.pending[client][0]
                    effects.append(self._reply(client, seq, ST_RETRY, None, hint))
                    self.stats["retry"] += 1
                self.pending = {}
        return effects


def make_replica_factory(members, config=None, paxos_config=None):
    """A simulator factory: factory(node_id, channel, storage, rng, now_ms) -> KvReplica."""
    members = sorted(members)

    def factory(node_id, channel, storage, rng, now_ms):
        return KvReplica(
            node_id,
            channel,
            members,
            config=config,
            paxos_config=paxos_config,
            rng=rng,
            storage=storage,
            now_ms=now_ms,
        )

    return factory
