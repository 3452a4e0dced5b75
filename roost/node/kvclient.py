"""The key-value client: a sans-I/O core that runs one operation at a time against a
replica group (Paxos ``KvReplica`` or primary/backup ``PbServer``: same wire, kinds 64/65).

It finds the leader (the hint in a "not leader" answer, else round-robin), re-sends the
SAME (client id, seq) on every retry so the store applies the command once, backs off
exponentially with jitter from the injected Prng, and after ``op_timeout_ms`` gives up and
records the outcome as UNKNOWN (``ok: null``) - it never guesses. A definite error from the
store ("too_large", "full", a malformed request) is recorded as ``ok: false``.

Every finished or abandoned operation is appended to ``history`` as a dict in the shared
history format (shared/spec/history.md), times in seconds of the caller's clock.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from roost.common.config import apply_overrides
from roost.node.effects import EVENT, SEND
from roost.node.kv import (
    BUSY,
    KV_REPLY,
    KV_REQUEST,
    OP_CAS,
    OP_GET,
    OP_NAMES,
    ST_ERROR,
    ST_NOT_LEADER,
    ST_OK,
)

_SEQ_PER_BOOT = const(1000000000)  # seq = boot incarnation * this + n: grows across reboots
_IDLE = const(0)
_WAIT_REPLY = const(1)
_BACKOFF = const(2)


class KvClientConfig:
    """Timeouts and retries of one client."""

    attempt_timeout_ms = 100  # no answer from a replica within this: try another one
    # (a commit is ~2 round trips plus a flash write; 2 ms links make that ~10 ms)
    backoff_base_ms = 10  # first pause before a retry; doubles per failed attempt
    backoff_max_ms = 400  # the pause stops growing here (an election takes ~0.3 s on a LAN)
    op_timeout_ms = 3000  # give up after this and record the outcome as unknown
    max_history = 100000  # history entries kept (oldest dropped and counted beyond it)

    def __init__(self, **overrides):
        apply_overrides(self, KvClientConfig, overrides, "kv client")
        for name in ("attempt_timeout_ms", "backoff_max_ms", "op_timeout_ms", "max_history"):
            if getattr(self, name) < 1:
                raise ValueError("kv client option %s must be at least 1" % name)
        if self.backoff_base_ms < 0 or self.backoff_base_ms > self.backoff_max_ms:
            raise ValueError("kv client option backoff_base_ms must be in 0..backoff_max_ms")

    @classmethod
    def lan(cls, **overrides):
        """LAN / emulation: the defaults."""
        return cls(**overrides)

    @classmethod
    def wifi(cls, **overrides):
        """Wi-Fi: round trips of tens of ms and slower elections."""
        opts = {
            "attempt_timeout_ms": 500,
            "backoff_base_ms": 50,
            "backoff_max_ms": 2000,
            "op_timeout_ms": 15000,
        }
        opts.update(overrides)
        return cls(**opts)


class KvClient:
    def __init__(self, node_id, channel, members, config=None, rng=None, storage=None, now_ms=0,
                 counter=None):
        if not members:
            raise ValueError("a kv client needs at least one replica")
        if rng is None:
            raise ValueError("a kv client needs an injected rng (for retry jitter)")
        self.node_id = node_id
        self.channel = channel
        self.members = sorted(members)
        self.config = config or KvClientConfig()
        self.rng = rng
        self._seq_base = channel.incarnation * _SEQ_PER_BOOT
        # [n]: operations started, shared by the clients of one load (so their seqs grow
        # together and one whose session was evicted is not left below the store's floor)
        self._count = counter if counter is not None else [0]
        self.history = []
        self.on_done = None  # callback(record) when an operation finishes or is abandoned
        self._state = _IDLE
        self._rec = None
        self._body = None
        self._seq = 0
        self._target = None
        self._leader = None
        self._rr = rng.randbelow(len(self.members))
        self._failures = 0
        self._redirects = 0
        self._maybe = False  # an attempt of this seq went unanswered: it may have applied
        self._deadline = None  # reply wait or backoff end
        self._give_up_at = None
        self.stats = {
            "ops": 0,
            "ok": 0,
            "failed": 0,
            "unknown": 0,
            "sent": 0,
            "retries": 0,
            "redirects": 0,
            "history_dropped": 0,
            "rx_ignored": 0,
            "rebased": 0,
        }

    # ---- local commands -------------------------------------------------------------

    def busy(self):
        return self._state != _IDLE

    def submit(self, now_ms, op, key, value=None, old=None, new=None):
        """Start one operation; ValueError if one is running or the arguments are wrong."""
        if self._state != _IDLE:
            raise ValueError("client %s is busy with an operation" % self.node_id)
        if op not in OP_NAMES:
            raise ValueError("unknown kv op %r (get, put, append or cas)" % (op,))
        if not isinstance(key, str) or not key:
            raise ValueError("a kv key is a non-empty string")
        code = OP_NAMES.index(op)
        rec = {"client": self.node_id, "op": op, "key": key, "call": now_ms / 1000.0}
        a = b = None
        if code == OP_CAS:
            if not (old is None or isinstance(old, str)) or not isinstance(new, str):
                raise ValueError("cas takes old (a string or None) and new (a string)")
            a, b = old, new
            rec["old"] = old
            rec["new"] = new
        elif code != OP_GET:
            if not isinstance(value, str):
                raise ValueError("%s takes a string value" % op)
            a = value
            rec["value"] = value
        self._count[0] += 1
        self._seq = self._seq_base + self._count[0]
        self._body = [self._seq, code, key, a, b]
        self._rec = rec
        self._failures = 0
        self._redirects = 0
        self._maybe = False
        self._give_up_at = now_ms + self.config.op_timeout_ms
        self.stats["ops"] += 1
        self._target = self._leader if self._leader is not None else self._next_member()
        return self._send(now_ms)

    # ---- host interface -------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        if env.kind != KV_REPLY:
            self.channel.reject("unknown_kind")
            return []
        if env.sender not in self.members:
            self.channel.reject("unknown_sender")
            return []
        body = env.body
        if not isinstance(body, list) or len(body) != 4:
            self.channel.reject("malformed")
            return []
        seq, status, output, hint = body
        floor = hint  # with "expired": the store's floor of forgotten sessions
        if not isinstance(seq, int) or isinstance(seq, bool):
            self.channel.reject("malformed")
            return []
        if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 3:
            self.channel.reject("malformed")
            return []
        if hint is not None and hint not in self.members:
            hint = None
        if self._state == _IDLE or seq != self._seq:
            self.stats["rx_ignored"] += 1  # a late answer to an earlier attempt
            return []
        code = self._body[1]
        if status == ST_OK:
            if code == OP_GET:
                if not (output is None or isinstance(output, str)):
                    self.channel.reject("malformed")
                    return []
            elif code == OP_CAS:
                if not isinstance(output, bool):
                    self.channel.reject("malformed")
                    return []
            self._leader = env.sender
            return self._finish(now_ms, True, output)
        if status == ST_ERROR:
            if not isinstance(output, str):
                self.channel.reject("malformed")
                return []
            self._leader = env.sender
            if output == "expired":
                return self._expired(now_ms, floor)
            return self._finish(now_ms, False, output)
        if status == ST_NOT_LEADER:
            if env.sender == self._leader:
                self._leader = None
            if hint is not None and hint != env.sender and self._redirects < len(self.members):
                # Follow the hint at once; a chain of stale hints falls back to backoff.
                self._redirects += 1
                self.stats["redirects"] += 1
                self._leader = hint
                self._target = hint
                return self._send(now_ms)
            return self._retry_later(now_ms, hint)
        # ST_RETRY: the command may still commit (unless the replica was too busy to propose
        # it); re-send the same seq after a pause
        if output != BUSY:
            self._maybe = True
        return self._retry_later(now_ms, hint)

    def tick(self, now_ms):
        if self._state == _IDLE:
            return []
        if now_ms >= self._give_up_at:
            return self._finish(now_ms, None, None)
        if self._deadline is None or now_ms < self._deadline:
            return []
        if self._state == _WAIT_REPLY:
            # No answer: this replica may be down or cut off; forget it as leader.
            self._maybe = True
            if self._target == self._leader:
                self._leader = None
            return self._retry_later(now_ms, None)
        self._target = self._leader if self._leader is not None else self._next_member()
        return self._send(now_ms)

    def next_deadline_ms(self):
        if self._state == _IDLE:
            return None
        d = self._deadline
        if d is None or self._give_up_at < d:
            return self._give_up_at
        return d

    # ---- internals ------------------------------------------------------------------

    def _next_member(self):
        self._rr = (self._rr + 1) % len(self.members)
        return self.members[self._rr]

    def _send(self, now_ms):
        self._state = _WAIT_REPLY
        self._deadline = now_ms + self.config.attempt_timeout_ms
        self.stats["sent"] += 1
        dst = self._target
        return [(SEND, dst, self.channel.seal(KV_REQUEST, dst, self._body))]

    def _expired(self, now_ms, floor):
        """The store forgot this client (it held too many others since) and refused the
        request. If every attempt of it was answered, none applied: it goes again with a seq
        above the floor. After one that went unanswered it may have applied: unknown."""
        if self._maybe:
            return self._finish(now_ms, None, None)
        if not isinstance(floor, int) or isinstance(floor, bool) or floor < 0:
            return self._finish(now_ms, False, "expired")
        n = (floor if floor > self._seq else self._seq) + 1
        self._seq_base += n - self._seq
        self._seq = n
        self._body[0] = n
        self.stats["rebased"] += 1
        return self._send(now_ms)

    def _retry_later(self, now_ms, hint):
        """Back off (exponential, equal jitter), then re-send the same seq elsewhere."""
        self.stats["retries"] += 1
        if hint is not None:
            self._leader = hint
        elif self._target is not None and self._target == self._leader:
            self._leader = None
        self._redirects = 0
        cfg = self.config
        pause = cfg.backoff_base_ms
        k = self._failures
        while k > 0 and pause < cfg.backoff_max_ms:
            pause *= 2
            k -= 1
        if pause > cfg.backoff_max_ms:
            pause = cfg.backoff_max_ms
        self._failures += 1
        half = pause // 2
        pause = half + self.rng.randbelow(pause - half + 1)
        self._state = _BACKOFF
        self._deadline = now_ms + pause
        if self._deadline >= self._give_up_at:
            self._deadline = self._give_up_at
        return []

    def abandon(self, now_ms):
        """The operation in progress, if any, ends with an unknown outcome (a load stopped by
        Ctrl-C): it may still take effect, and its history record says so."""
        if self._rec is not None:
            self._finish(now_ms, None, None)

    def _finish(self, now_ms, ok, output):
        rec = self._rec
        rec["ok"] = ok
        if ok is None:
            rec["return"] = None
            self.stats["unknown"] += 1
        else:
            rec["return"] = now_ms / 1000.0
            if ok:
                self.stats["ok"] += 1
                if rec["op"] == "get" or rec["op"] == "cas":
                    rec["output"] = output
            else:
                self.stats["failed"] += 1
                rec["error"] = output
        self._state = _IDLE
        self._rec = None
        self._body = None
        self._deadline = None
        self._give_up_at = None
        if len(self.history) >= self.config.max_history:
            self.history.pop(0)
            self.stats["history_dropped"] += 1
        self.history.append(rec)
        if self.on_done is not None:
            self.on_done(rec)
        return [(EVENT, "kv.op", rec)]


def make_client_factory(members, config=None):
    """A simulator factory: factory(node_id, channel, storage, rng, now_ms) -> KvClient."""
    members = sorted(members)

    def factory(node_id, channel, storage, rng, now_ms):
        return KvClient(node_id, channel, members, config=config, rng=rng, storage=storage,
                        now_ms=now_ms)

    return factory
