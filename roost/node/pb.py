"""Primary/backup replication with a view service - for teaching, not for keeping data.

The classic design (as in MIT 6.824's first lab): one view service node decides the view
``[viewnum, primary, backup]``; servers ping it; a primary forwards every operation (reads
too) to its backup and answers the client only after the backup has applied it; when the
primary stops pinging, the view service promotes the backup. The view service is the single
point of failure by design: while it is down no view can change, so a primary crash stops
the service. docs/primary-backup.md walks through it for a classroom.

Rules that keep it safe (as long as the view service lives):
* the view service changes the view only after the primary of the current view acknowledged
  it (pinged with its number), and a primary acknowledges a view only once its backup holds
  the whole state (state transfer done) - so a promoted backup is never empty;
* a backup applies a forwarded operation only if it is the backup of that very view, so a
  primary that was replaced without noticing cannot complete anything.
``PbConfig.unsafe_local_reads`` breaks the second rule for reads (the primary answers gets
from its own copy): cut the primary off from the view service and it serves stale reads,
which the linearizability checker catches.

Clients use the key-value wire of roost.node.kv (kinds 64/65), so ``KvClient`` works
unchanged. Server-to-server kinds (JSON list bodies):
  PB_PING     server -> vs       [viewnum]              (0 = just booted, state lost)
  PB_VIEW     vs -> server       [viewnum, primary, backup]
  PB_FORWARD  primary -> backup  [viewnum, client, seq, op, key, a, b]
  PB_FWD_ACK  backup -> primary  [viewnum, client, seq, accepted, result]
  PB_XFER     primary -> backup  [viewnum, snapshot]
  PB_XFER_ACK backup -> primary  [viewnum]
Servers keep their store in RAM (a reboot loses it and rejoins as a fresh backup); the view
service persists its view so its own reboot does not rewind view numbers.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from roost.common.config import apply_overrides
from roost.common.ids import is_valid_id
from roost.node.effects import EVENT, PERSIST, SEND
from roost.node.kv import (
    BUSY,
    KV_REPLY,
    KV_REQUEST,
    OP_GET,
    ST_ERROR,
    ST_NOT_LEADER,
    ST_OK,
    ST_RETRY,
    KvConfig,
    KvStore,
    check_request,
)

PB_PING = const(96)
PB_VIEW = const(97)
PB_FORWARD = const(98)
PB_FWD_ACK = const(99)
PB_XFER = const(100)
PB_XFER_ACK = const(101)

_VIEW_KEY = "pb/view"
_BOOTED_KEY = "pb/booted"


class PbConfig:
    """Timing of pings, failure detection and forwarding."""

    ping_interval_ms = 100  # a server pings the view service this often
    dead_pings = 5  # missed ping intervals before the view service declares a server dead
    forward_retry_ms = 50  # re-send a forward or a state transfer not acknowledged by then
    max_queue = 64  # client requests a primary holds while one is being forwarded
    unsafe_local_reads = False  # TEACHING ONLY: the primary answers gets without its backup

    def __init__(self, **overrides):
        apply_overrides(self, PbConfig, overrides, "primary/backup")
        for name in ("ping_interval_ms", "dead_pings", "forward_retry_ms", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError("primary/backup option %s must be at least 1" % name)

    @classmethod
    def lan(cls, **overrides):
        return cls(**overrides)

    @classmethod
    def wifi(cls, **overrides):
        opts = {"ping_interval_ms": 500, "forward_retry_ms": 200}
        opts.update(overrides)
        return cls(**opts)


def _is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _opt_id(x):
    return x is None or is_valid_id(x)


class PbViewService:
    """The view service: one node, the single point of failure."""

    def __init__(self, node_id, channel, servers, config=None, storage=None, now_ms=0):
        self.node_id = node_id
        self.channel = channel
        self.servers = sorted(servers)
        self.config = config or PbConfig()
        storage = storage or {}
        saved = storage.get(_VIEW_KEY)
        self.view = [0, None, None]
        self.acked = False
        if isinstance(saved, list) and len(saved) == 4:
            self.view = [saved[0], saved[1], saved[2]]
            self.acked = bool(saved[3])
        self.last_ping = {}
        for s in self.servers:
            self.last_ping[s] = now_ms  # a grace period after (re)boot
        self.heard = {}  # server -> True once it pinged since our boot
        self.next_check = now_ms + self.config.ping_interval_ms
        self.stats = {"views": 0, "stuck_checks": 0}

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        if env.kind != PB_PING:
            self.channel.reject("unknown_kind")
            return []
        s = env.sender
        if s not in self.last_ping:
            self.channel.reject("unknown_sender")
            return []
        body = env.body
        if not isinstance(body, list) or len(body) != 1 or not _is_uint(body[0]):
            self.channel.reject("malformed")
            return []
        n = body[0]
        self.last_ping[s] = now_ms
        self.heard[s] = True
        out = []
        v = self.view
        if v[0] == 0:
            self._new_view(out, s, None)
        elif s == v[1]:
            if n == v[0]:
                if not self.acked:
                    self.acked = True
                    out.append(self._persist())
            elif n == 0 and self.acked:
                self._primary_failed(out, now_ms)  # the primary rebooted: its state is gone
        elif s == v[2] and n == 0 and self.acked:
            # the backup rebooted and lost its copy: give the primary a fresh backup
            self._new_view(out, v[1], self._idle(now_ms, exclude=s) or s)
        elif v[2] is None and self.acked and s != v[1]:
            self._new_view(out, v[1], s)
        out.append(self._send_view(s))
        return out

    def tick(self, now_ms):
        if now_ms < self.next_check:
            return []
        self.next_check = now_ms + self.config.ping_interval_ms
        out = []
        v = self.view
        dead_ms = self.config.dead_pings * self.config.ping_interval_ms
        if v[0] == 0:
            return out
        if now_ms - self.last_ping.get(v[1], 0) > dead_ms:
            if self.acked:
                self._primary_failed(out, now_ms)
            else:
                self.stats["stuck_checks"] += 1  # cannot move on: the view was never acked
        elif v[2] is not None and now_ms - self.last_ping.get(v[2], 0) > dead_ms:
            if self.acked:
                self._new_view(out, v[1], self._idle(now_ms))
        elif v[2] is None and self.acked:
            idle = self._idle(now_ms)
            if idle is not None:
                self._new_view(out, v[1], idle)
        return out

    def next_deadline_ms(self):
        return self.next_check

    def _idle(self, now_ms, exclude=None):
        dead_ms = self.config.dead_pings * self.config.ping_interval_ms
        for s in self.servers:
            if s in (self.view[1], self.view[2], exclude) or not self.heard.get(s):
                continue
            if now_ms - self.last_ping[s] <= dead_ms:
                return s
        return None

    def _primary_failed(self, out, now_ms):
        v = self.view
        if v[2] is None:
            self.stats["stuck_checks"] += 1  # no backup to promote: the data lives nowhere else
            return
        self._new_view(out, v[2], self._idle(now_ms, exclude=v[1]))

    def _new_view(self, out, primary, backup):
        self.view = [self.view[0] + 1, primary, backup]
        self.acked = False
        self.stats["views"] += 1
        out.append(self._persist())
        out.append((EVENT, "pb.view", list(self.view)))
        out.append((EVENT, "kv.leader", primary))

    def _persist(self):
        v = self.view
        return (PERSIST, _VIEW_KEY, [v[0], v[1], v[2], self.acked])

    def _send_view(self, s):
        return (SEND, s, self.channel.seal(PB_VIEW, s, list(self.view)))


class PbServer:
    """A primary/backup server: primary, backup or idle depending on the view it knows."""

    def __init__(self, node_id, channel, servers, vs_id, config=None, kv_config=None,
                 storage=None, now_ms=0):
        self.node_id = node_id
        self.channel = channel
        self.servers = sorted(servers)
        self.vs_id = vs_id
        self.config = config or PbConfig()
        self.store = KvStore(kv_config or KvConfig())
        self.view = [0, None, None]
        self.synced_view = 0  # as backup: the view whose state transfer we hold
        self.backup_ready = 0  # as primary: the view whose backup acked the transfer
        self.ready_view = 0  # the view number we acknowledge to the view service
        self.queue = []  # [client, body] waiting behind the forward in flight
        self.inflight = None  # [client, seq, op, key, a, b, resend_at]
        self.xfer_at = None
        self.index = 0
        self.next_ping = now_ms
        # A server that ran before and rebooted has lost its copy (state lives in RAM): it
        # must never act as primary until a state transfer refills it. Only a server on its
        # very first boot may start as primary with an empty store (view 1).
        self.booted_before = bool((storage or {}).get(_BOOTED_KEY))
        self.amnesiac = self.booted_before
        self.stats = {"forwarded": 0, "rejected_forwards": 0, "xfers": 0, "local_reads": 0}

    # ---- host interface -------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        k = env.kind
        b = env.body
        s = env.sender
        if k == KV_REQUEST:
            return self._on_request(now_ms, s, b)
        if s != self.vs_id and s not in self.servers:
            self.channel.reject("unknown_sender")
            return []
        if not isinstance(b, list) or not b or not _is_uint(b[0]):
            self.channel.reject("malformed")
            return []
        if k == PB_VIEW and s == self.vs_id:
            if len(b) != 3 or not _opt_id(b[1]) or not _opt_id(b[2]):
                self.channel.reject("malformed")
                return []
            return self._on_view(now_ms, b)
        if k == PB_FORWARD and len(b) == 7:
            return self._on_forward(s, b)
        if k == PB_FWD_ACK and len(b) == 5:
            return self._on_fwd_ack(now_ms, s, b)
        if k == PB_XFER and len(b) == 2:
            return self._on_xfer(s, b)
        if k == PB_XFER_ACK and len(b) == 1:
            if self.is_primary() and s == self.view[2] and b[0] == self.view[0]:
                if self.backup_ready != b[0]:
                    self.backup_ready = b[0]
                    self.xfer_at = None
                    self.ready_view = b[0]
                    return self._ping() + self._pump(now_ms)
            return []
        self.channel.reject("unknown_kind")
        return []

    def tick(self, now_ms):
        out = []
        if not self.booted_before:
            self.booted_before = True
            out.append((PERSIST, _BOOTED_KEY, True))
        if now_ms >= self.next_ping:
            self.next_ping = now_ms + self.config.ping_interval_ms
            out.extend(self._ping())
        if self.xfer_at is not None and now_ms >= self.xfer_at:
            out.extend(self._send_xfer(now_ms))
        f = self.inflight
        if f is not None and now_ms >= f[6]:
            f[6] = now_ms + self.config.forward_retry_ms
            out.append(self._forward_msg(f))
        return out

    def next_deadline_ms(self):
        d = self.next_ping
        if self.xfer_at is not None and self.xfer_at < d:
            d = self.xfer_at
        if self.inflight is not None and self.inflight[6] < d:
            d = self.inflight[6]
        return d

    def is_primary(self):
        return self.view[0] > 0 and self.view[1] == self.node_id and not self.amnesiac

    def is_leader(self):
        return self.is_primary()

    # ---- view changes ---------------------------------------------------------------

    def _ping(self):
        return [(SEND, self.vs_id, self.channel.seal(PB_PING, self.vs_id, [self.ready_view]))]

    def _on_view(self, now_ms, b):
        if b[0] <= self.view[0]:
            return []
        was_primary = self.is_primary()
        self.view = [b[0], b[1], b[2]]
        out = []
        if self.view[1] == self.node_id and self.amnesiac:
            # Named primary, but our copy died with our last boot: refuse (and say so).
            out.append((EVENT, "pb.refuse_primary", self.view[0]))
        if self.is_primary():
            if self.view[2] is None:
                self.backup_ready = self.view[0]
                self.ready_view = self.view[0]
            else:
                self.xfer_at = now_ms
            out.extend(self._fail_inflight())
            out.extend(self._ping())
            if self.xfer_at is not None:
                out.extend(self._send_xfer(now_ms))
        else:
            self.ready_view = self.view[0] if not self.amnesiac else 0
            if was_primary:
                out.extend(self._fail_inflight())
                out.extend(self._drain_queue(ST_NOT_LEADER))
            self.xfer_at = None
        return out

    def _send_xfer(self, now_ms):
        self.xfer_at = now_ms + self.config.forward_retry_ms
        bk = self.view[2]
        if bk is None:
            self.xfer_at = None
            return []
        self.stats["xfers"] += 1
        try:
            raw = self.channel.seal(PB_XFER, bk, [self.view[0], self.store.snapshot()])
        except ValueError:
            self.xfer_at = None
            return [(EVENT, "pb.xfer_too_large", self.view[0])]
        return [(SEND, bk, raw)]

    def _on_xfer(self, s, b):
        n, snap = b
        if n < self.view[0] or (n == self.view[0] and self.view[2] != self.node_id):
            return []
        if n > self.view[0]:
            self.view = [n, s, self.node_id]  # the primary learned this view before we did
        if s != self.view[1]:
            return []
        if self.synced_view != n:
            try:
                self.store.restore(snap)
            except ValueError:
                self.channel.reject("malformed")
                return []
            self.synced_view = n
            self.ready_view = n
            self.amnesiac = False
        return [(SEND, s, self.channel.seal(PB_XFER_ACK, s, [n]))]

    # ---- client requests (the kv wire) ----------------------------------------------

    def _reply(self, client, seq, status, output=None, hint=None):
        return (SEND, client, self.channel.seal(KV_REPLY, client, [seq, status, output, hint]))

    def _reply_result(self, client, seq, result):
        st = ST_OK if result[0] == ST_OK else ST_ERROR
        floor = self.store.floor if result[1] == "expired" else None  # as KvReplica's
        return self._reply(client, seq, st, result[1], floor)

    def _on_request(self, now_ms, client, body):
        if not isinstance(body, list) or len(body) != 5 or not _is_uint(body[0]):
            self.channel.reject("malformed")
            return []
        seq, op, key, a, b = body
        reason = check_request(self.store.config, op, key, a, b)
        if reason is not None:
            return [self._reply(client, seq, ST_ERROR, reason)]
        if not self.is_primary():
            hint = self.view[1] if self.view[1] != self.node_id else None
            return [self._reply(client, seq, ST_NOT_LEADER, None, hint)]
        known = self.store.known(client, seq)
        if known is not None:  # a retry, stale, or forgotten: as apply() would answer
            return [self._reply_result(client, seq, known)]
        if self.config.unsafe_local_reads and op == OP_GET:
            self.stats["local_reads"] += 1
            return [self._reply(client, seq, ST_OK, self.store.get(key))]
        f = self.inflight
        if f is not None and f[0] == client and f[1] == seq:
            return []
        for q in self.queue:
            if q[0] == client:
                q[1] = body
                return []
        if len(self.queue) >= self.config.max_queue:
            return [self._reply(client, seq, ST_RETRY, BUSY)]
        self.queue.append([client, body])
        return self._pump(now_ms)

    def _pump(self, now_ms):
        """Start the next queued operation: apply at once without a backup, else forward."""
        out = []
        while self.inflight is None and self.queue and self.is_primary():
            if self.view[2] is not None and self.backup_ready != self.view[0]:
                break  # wait for the state transfer to finish
            client, body = self.queue.pop(0)
            seq, op, key, a, b = body
            if self.view[2] is None:
                self.index += 1
                result = self.store.apply(self.index, [client, seq, op, key, a, b])
                out.append(self._reply_result(client, seq, result))
                continue
            self.inflight = [client, seq, op, key, a, b, now_ms + self.config.forward_retry_ms]
            self.stats["forwarded"] += 1
            out.append(self._forward_msg(self.inflight))
        return out

    def _forward_msg(self, f):
        bk = self.view[2]
        body = [self.view[0], f[0], f[1], f[2], f[3], f[4], f[5]]
        return (SEND, bk, self.channel.seal(PB_FORWARD, bk, body))

    def _on_forward(self, s, b):
        n = b[0]
        ok = n == self.view[0] and self.view[2] == self.node_id and s == self.view[1]
        ok = ok and self.synced_view == n
        result = None
        if ok:
            self.index += 1
            result = self.store.apply(self.index, b[1:7])
            if result is None:
                self.channel.reject("malformed")
                return []
        else:
            self.stats["rejected_forwards"] += 1
        return [(SEND, s, self.channel.seal(PB_FWD_ACK, s, [n, b[1], b[2], ok, result]))]

    def _on_fwd_ack(self, now_ms, s, b):
        n, client, seq, ok, result = b
        f = self.inflight
        if f is None or f[0] != client or f[1] != seq or n != self.view[0] or s != self.view[2]:
            return []
        self.inflight = None
        if not ok:
            # Our backup is not ours any more: the view moved on without us. Ask the view
            # service, and let the client try elsewhere.
            out = [self._reply(client, seq, ST_RETRY)]
            out.extend(self._drain_queue(ST_RETRY))
            out.extend(self._ping())
            return out
        self.index += 1
        mine = self.store.apply(self.index, [client, seq, f[2], f[3], f[4], f[5]])
        if mine is None:
            mine = [ST_ERROR, "malformed"]
        out = [self._reply_result(client, seq, mine)]
        out.extend(self._pump(now_ms))
        return out

    def _fail_inflight(self):
        f = self.inflight
        self.inflight = None
        if f is None:
            return []
        return [self._reply(f[0], f[1], ST_RETRY)]

    def _drain_queue(self, status):
        out = []
        hint = self.view[1] if status == ST_NOT_LEADER else None
        for client, body in self.queue:
            out.append(self._reply(client, body[0], status, None, hint))
        self.queue = []
        return out


def make_pb_factories(servers, vs_id="vs", config=None, kv_config=None):
    """(view_service_factory, server_factory) for the simulator."""
    servers = sorted(servers)

    def vs_factory(node_id, channel, storage, rng, now_ms):
        return PbViewService(node_id, channel, servers, config, storage, now_ms)

    def server_factory(node_id, channel, storage, rng, now_ms):
        return PbServer(node_id, channel, servers, vs_id, config, kv_config, storage, now_ms)

    return vs_factory, server_factory
