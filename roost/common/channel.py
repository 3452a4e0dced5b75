"""A node's authenticated channel: seals outgoing envelopes and opens incoming ones.

Sans-I/O: it turns bodies into bytes and bytes into envelopes, checks the HMAC, the version,
the receiver and the replay window, and counts every rejection. All cores on one node share
one channel, so sequence numbers are unique per (node, incarnation).
"""

from roost.common import envelope as _env
from roost.common.auth import TAG_LEN, Hmac
from roost.common.ids import check_id
from roost.common.limits import MAX_DATAGRAM
from roost.common.replay import ReplayWindow


class Channel:
    def __init__(self, node_id, key, incarnation=0, max_bytes=MAX_DATAGRAM, replay_window=256,
                 max_senders=256):
        self.node_id = check_id(node_id)
        self.mac = key if isinstance(key, Hmac) else Hmac(key)
        self.incarnation = incarnation
        self.max_bytes = max_bytes
        self.seq = 0
        self.replay = ReplayWindow(replay_window, max_senders)
        # counter names written in the code, shared by every channel: built here as
        # "rx_rejected_" + reason they made a channel 1,160 bytes on MicroPython, not 580
        self.stats = {"tx": 0, "rx_ok": 0}
        for name in _env.COUNTERS:
            self.stats[name] = 0

    def seal(self, kind, receiver, body):
        """Body -> bytes ready to send; ValueError if it does not fit ``max_bytes``."""
        self.seq += 1
        env = _env.Envelope(kind, self.node_id, receiver, self.incarnation, self.seq, body)
        data = _env.encode(env, self.mac, self.max_bytes)
        self.stats["tx"] += 1
        return data

    def overhead(self, kind, receiver):
        """Bytes the next envelope takes besides its body (for cores that pack bodies up to
        the limit): the tag and ``[v,kind,"sender","receiver",inc,seq,`` and ``]``, counted
        without encoding (ids need no JSON escapes), as cores ask before every send."""
        return (
            len(str(_env.WIRE_VERSION)) + len(str(kind)) + len(self.node_id) + len(receiver)
            + len(str(self.incarnation)) + len(str(self.seq + 1)) + 12 + TAG_LEN
        )

    def open(self, raw):
        """Bytes -> Envelope for this node, or None (the reason is counted)."""
        env, reason = _env.decode(raw, self.mac, self.max_bytes)
        if env is None:
            return self.reject(reason)
        if env.receiver != _env.BROADCAST and env.receiver != self.node_id:
            return self.reject(_env.R_MISDIRECTED)
        verdict = self.replay.check(env.sender, env.incarnation, env.seq)
        if verdict != "ok":
            return self.reject(_env.R_REPLAY if verdict == "replay" else _env.R_STALE)
        self.stats["rx_ok"] += 1
        return env

    def reject(self, reason):
        """Count a rejection (cores call this too, for reasons only they can see)."""
        name = "rx_rejected_" + reason
        self.stats[name] = self.stats.get(name, 0) + 1
        return None

    def rejected_total(self):
        n = 0
        for name in self.stats:
            if name.startswith("rx_rejected_"):
                n += self.stats[name]
        return n
