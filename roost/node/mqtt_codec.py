"""MQTT 3.1.1 packets as pure functions (CPython and MicroPython).

``encode_*`` build packets (ValueError on misuse); ``split_packet`` frames a byte stream;
``decode_packet`` turns one frame into a tuple, or None if it is malformed: it never raises,
whatever the bytes. Broker-side packets (CONNECT, SUBSCRIBE, CONNACK, SUBACK) are here too,
for tests and small fake brokers.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

_MAX_REMAINING = const(268435455)  # the largest remaining length four varint bytes carry


# ---------------------------------------------------------------- encoding


def encode_varint(n):
    """Remaining-length varint (1..4 bytes); ValueError out of range."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError("MQTT remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    if len(s) > 65535:
        raise ValueError("MQTT string longer than 65535 bytes")
    return struct.pack("!H", len(s)) + s


def _packet(first, body):
    return bytes((first,)) + encode_varint(len(body)) + body


def _check_pid(pid):
    if not 1 <= pid <= 65535:
        raise ValueError("MQTT packet id must be 1..65535")


def encode_connect(client_id, keepalive_s=60, clean_session=True, will=None, username=None,
                   password=None):
    """CONNECT. will = (topic, payload, qos, retain) or None."""
    if not 0 <= keepalive_s <= 65535:
        raise ValueError("keepalive must be 0..65535 s")
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        wtopic, wmsg, wqos, wretain = will
        if wqos not in (0, 1, 2):
            raise ValueError("will qos must be 0, 1 or 2")
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        payload += _str(wtopic) + _str(wmsg)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    elif password is not None:
        raise ValueError("an MQTT password needs a username")
    body = _str("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive_s) + payload
    return _packet(CONNECT << 4, body)


def encode_connack(session_present, rc):
    return _packet(CONNACK << 4, bytes((1 if session_present else 0, rc)))


def encode_publish(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH; pid is required (1..65535) for qos 1 and 2 and ignored for qos 0."""
    if qos not in (0, 1, 2):
        raise ValueError("qos must be 0, 1 or 2")
    if isinstance(payload, str):
        payload = payload.encode()
    first = (PUBLISH << 4) | (qos << 1) | (0x08 if dup and qos else 0) | (1 if retain else 0)
    head = _str(topic)
    if qos:
        _check_pid(pid)
        head += struct.pack("!H", pid)
    return _packet(first, head + payload)


def _ack(kind, pid, flags=0):
    _check_pid(pid)
    return bytes(((kind << 4) | flags, 2)) + struct.pack("!H", pid)


def encode_puback(pid):
    return _ack(PUBACK, pid)


def encode_unsuback(pid):
    return _ack(UNSUBACK, pid)


def encode_subscribe(pid, topics):
    """SUBSCRIBE; topics = [(filter, max_qos)]."""
    _check_pid(pid)
    if not topics:
        raise ValueError("subscribe needs at least one topic")
    body = struct.pack("!H", pid)
    for t, q in topics:
        if q not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        body += _str(t) + bytes((q,))
    return _packet((SUBSCRIBE << 4) | 2, body)


def encode_suback(pid, codes):
    _check_pid(pid)
    return _packet(SUBACK << 4, struct.pack("!H", pid) + bytes(codes))


def encode_unsubscribe(pid, topics):
    _check_pid(pid)
    if not topics:
        raise ValueError("unsubscribe needs at least one topic")
    body = struct.pack("!H", pid)
    for t in topics:
        body += _str(t)
    return _packet((UNSUBSCRIBE << 4) | 2, body)


def encode_pingreq():
    return b"\xc0\x00"


def encode_pingresp():
    return b"\xd0\x00"


def encode_disconnect():
    return b"\xe0\x00"


# ---------------------------------------------------------------- decoding (never raises)


def _remaining_length(buf):
    """(1, start, length) for a whole fixed header at the start of buf, (0, 0, 0) if more
    bytes are needed, (-1, 0, 0) for a remaining-length varint longer than 4 bytes."""
    n = len(buf)
    value = 0
    shift = 0
    i = 1
    while True:
        if i > 4:  # four bytes all saying "more": malformed, whatever follows
            return -1, 0, 0
        if i >= n:
            return 0, 0, 0
        b = buf[i]
        value |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            return 1, i, value


def oversized(buf, max_len):
    """(start, length) when buf starts with a whole, valid fixed header announcing a body
    longer than max_len (a packet to skip, not a broken stream); None otherwise."""
    status, i, value = _remaining_length(buf)
    return (i, value) if status == 1 and value > max_len else None


def split_packet(buf, max_len=_MAX_REMAINING):
    """Frame the first packet of a byte stream.

    Returns (1, start, end) for a whole packet (its body is buf[start:end], its first byte
    buf[0]), (0, 0, 0) if more bytes are needed, (-1, 0, 0) if the stream is malformed (a
    varint longer than 4 bytes or a packet longer than max_len): close the connection."""
    status, i, value = _remaining_length(buf)
    if status != 1:
        return status, 0, 0
    if value > max_len:
        return -1, 0, 0
    if len(buf) < i + value:
        return 0, 0, 0
    return 1, i, i + value


def _u16(b, i):
    if i + 2 > len(b):
        return None
    return (b[i] << 8) | b[i + 1]


def _rstr(b, i, raw=False):
    """(string, next index) or (None, 0)."""
    n = _u16(b, i)
    if n is None or i + 2 + n > len(b):
        return None, 0
    s = bytes(b[i + 2 : i + 2 + n])
    if raw:
        return s, i + 2 + n
    try:
        return s.decode(), i + 2 + n
    except Exception:  # invalid UTF-8 (UnicodeError on CPython, varies on MicroPython)
        return None, 0


def decode_packet(first, body):
    """One framed packet -> a tuple, or None if it is malformed. Never raises.

    (CONNECT, client_id, clean, keepalive_s, will|None, username|None, password|None)
    (CONNACK, session_present, rc)
    (PUBLISH, topic, payload, qos, retain, dup, pid)       pid 0 for qos 0
    (PUBACK|PUBREC|PUBREL|PUBCOMP|UNSUBACK, pid)
    (SUBSCRIBE, pid, [(filter, qos)]), (SUBACK, pid, [codes]), (UNSUBSCRIBE, pid, [filters])
    (PINGREQ,), (PINGRESP,), (DISCONNECT,)
    """
    if not isinstance(first, int) or not isinstance(body, (bytes, bytearray, memoryview)):
        return None
    kind = (first >> 4) & 15
    flags = first & 15
    n = len(body)
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3 or (qos == 0 and flags & 8):  # DUP only on QoS > 0 [MQTT-3.3.1-2]
            return None
        topic, i = _rstr(body, 0)
        if not topic or "+" in topic or "#" in topic:  # no wildcards in a name [MQTT-3.3.2-2]
            return None
        pid = 0
        if qos:
            pid = _u16(body, i)
            if not pid:
                return None
            i += 2
        return (PUBLISH, topic, bytes(body[i:]), qos, bool(flags & 1), bool(flags & 8), pid)
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        if n != 2 or flags != (2 if kind == PUBREL else 0):
            return None
        pid = _u16(body, 0)
        return (kind, pid) if pid else None
    if kind in (PINGREQ, PINGRESP, DISCONNECT):
        return (kind,) if n == 0 and flags == 0 else None
    if kind == CONNACK:
        if n != 2 or flags or body[0] > 1:
            return None
        return (CONNACK, body[0], body[1])
    if kind == SUBACK:
        pid = _u16(body, 0)
        if flags or n < 3 or not pid:
            return None
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                return None
        return (SUBACK, pid, codes)
    if kind in (SUBSCRIBE, UNSUBSCRIBE):
        pid = _u16(body, 0)
        if flags != 2 or not pid:
            return None
        i = 2
        items = []
        while i < n:
            t, i = _rstr(body, i)
            if not t:
                return None
            if kind == SUBSCRIBE:
                if i >= n or body[i] > 2:
                    return None
                items.append((t, body[i]))
                i += 1
            else:
                items.append(t)
        return (kind, pid, items) if items else None
    if kind == CONNECT:
        return _decode_connect(flags, body)
    return None


def _decode_connect(flags, body):
    name, i = _rstr(body, 0)
    if flags or name != "MQTT" or i + 4 > len(body) or body[i] != 4:
        return None
    cf = body[i + 1]
    keepalive = _u16(body, i + 2)
    i += 4
    if cf & 1 or (cf & 0x18) == 0x18:
        return None
    client_id, i = _rstr(body, i)
    if client_id is None:
        return None
    will = None
    if cf & 0x04:
        wt, i = _rstr(body, i)
        if not wt:
            return None
        wm, i = _rstr(body, i, True)
        if wm is None:
            return None
        will = (wt, wm, (cf >> 3) & 3, bool(cf & 0x20))
    elif cf & 0x38:
        return None
    user = password = None
    if cf & 0x80:
        user, i = _rstr(body, i)
        if user is None:
            return None
    if cf & 0x40:
        if not cf & 0x80:
            return None
        password, i = _rstr(body, i, True)
        if password is None:
            return None
    if i != len(body):
        return None
    return (CONNECT, client_id, bool(cf & 2), keepalive, will, user, password)


def topic_matches(filt, topic):
    """True if an MQTT topic filter ('+' one level, '#' the rest) matches a topic."""
    f = filt.split("/")
    t = topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


def parse_url(url):
    """'mqtt://user:pass@host:port' -> (host, port, user|None, password|None); ValueError."""
    if not isinstance(url, str):
        raise ValueError("a broker URL is a string like mqtt://host:1883")
    rest = url
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme not in ("mqtt", "tcp"):
            raise ValueError("unsupported broker URL scheme (mqtt:// only): " + url)
    rest = rest.rstrip("/")
    user = password = None
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        if ":" in cred:
            user, password = cred.split(":", 1)
        else:
            user = cred
    port = 1883
    host = rest
    if rest.startswith("["):
        raise ValueError("IPv6 broker addresses are not supported: " + url)
    if ":" in rest:
        host, p = rest.rsplit(":", 1)
        try:
            port = int(p)
        except ValueError:
            raise ValueError("bad port in broker URL: " + url) from None
    if not host or not 0 < port < 65536:
        raise ValueError("bad broker URL: " + url)
    return host, port, user, password
