"""The message envelope: one format on UDP datagrams and MQTT payloads.

Wire form: a 32-byte HMAC-SHA256 tag over the JSON that follows it, then the compact JSON
array ``[version, kind, sender, receiver, sender_incarnation, seq, body]``. Arrays, not
objects: MicroPython dicts have no stable order, and the same message must be the same bytes
on every interpreter. ``receiver`` is "*" for a broadcast. Decoding never raises.
"""

from roost.common.auth import TAG_LEN
from roost.common.ids import is_valid_id
from roost.common.jsoncodec import dumps, loads
from roost.common.limits import MAX_DATAGRAM, MIN_DATAGRAM, WIRE_VERSION

BROADCAST = "*"

# Reasons a message is rejected; counters are stats["rx_rejected_" + reason].
R_MALFORMED = "malformed"
R_OVERSIZED = "oversized"
R_AUTH = "auth"
R_VERSION = "version"
R_REPLAY = "replay"
R_MISDIRECTED = "misdirected"
R_UNKNOWN_KIND = "unknown_kind"
R_UNKNOWN_SENDER = "unknown_sender"
R_STALE = "stale"
REASONS = (
    R_MALFORMED,
    R_OVERSIZED,
    R_AUTH,
    R_VERSION,
    R_REPLAY,
    R_MISDIRECTED,
    R_UNKNOWN_KIND,
    R_UNKNOWN_SENDER,
    R_STALE,
)
# Their counters' names, written out (a name built at run time is a new string every time).
COUNTERS = (
    "rx_rejected_malformed",
    "rx_rejected_oversized",
    "rx_rejected_auth",
    "rx_rejected_version",
    "rx_rejected_replay",
    "rx_rejected_misdirected",
    "rx_rejected_unknown_kind",
    "rx_rejected_unknown_sender",
    "rx_rejected_stale",
)


class Envelope:
    """A decoded, not yet authenticated-against-replay message."""

    __slots__ = ("version", "kind", "sender", "receiver", "incarnation", "seq", "body")

    def __init__(self, kind, sender, receiver, incarnation, seq, body, version=WIRE_VERSION):
        self.version = version
        self.kind = kind
        self.sender = sender
        self.receiver = receiver
        self.incarnation = incarnation
        self.seq = seq
        self.body = body

    def to_list(self):
        return [
            self.version,
            self.kind,
            self.sender,
            self.receiver,
            self.incarnation,
            self.seq,
            self.body,
        ]

    def __repr__(self):
        return "Envelope(kind=%r, %s->%s, inc=%r, seq=%r)" % (
            self.kind,
            self.sender,
            self.receiver,
            self.incarnation,
            self.seq,
        )


def encode_json(env):
    """The JSON bytes of an envelope (what the tag covers)."""
    return dumps(env.to_list()).encode()


def encode(env, mac, max_bytes=MAX_DATAGRAM):
    """Envelope -> tagged bytes. Raises ValueError when the result exceeds max_bytes
    (a local mistake: cores size their messages before sealing)."""
    data = encode_json(env)
    if len(data) + TAG_LEN > max_bytes:
        size = len(data) + TAG_LEN
        raise ValueError("message of %d bytes exceeds the %d-byte limit" % (size, max_bytes))
    return mac.tag(data) + data


def _is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def decode(raw, mac, max_bytes=MAX_DATAGRAM):
    """Tagged bytes -> (Envelope, None) or (None, reason). Never raises."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return None, R_MALFORMED
    n = len(raw)
    if n > max_bytes:
        return None, R_OVERSIZED
    if n < MIN_DATAGRAM:
        return None, R_MALFORMED
    raw = bytes(raw)
    tag = raw[:TAG_LEN]
    data = memoryview(raw)[TAG_LEN:]  # not a copy: a board's heap may have no block for one
    if not mac.verify(data, tag):
        return None, R_AUTH
    try:
        obj = loads(data)
    except Exception:  # ValueError on both interpreters; UnicodeError on CPython
        return None, R_MALFORMED
    if not isinstance(obj, list) or len(obj) != 7:
        return None, R_MALFORMED
    version, kind, sender, receiver, inc, seq, body = obj
    if not _is_uint(version):
        return None, R_MALFORMED
    if version != WIRE_VERSION:
        return None, R_VERSION
    if not _is_uint(kind) or not _is_uint(inc) or not _is_uint(seq):
        return None, R_MALFORMED
    if not is_valid_id(sender):
        return None, R_MALFORMED
    if receiver != BROADCAST and not is_valid_id(receiver):
        return None, R_MALFORMED
    return Envelope(kind, sender, receiver, inc, seq, body, version), None
