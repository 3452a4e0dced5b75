"""MQTT 3.1.1 packet codec: round trips, known bytes, framing, garbage (CPython + MicroPython)."""

from roost.node import mqtt_codec as m


def _one(pkt):
    status, start, end = m.split_packet(pkt)
    assert status == 1 and end == len(pkt), (status, start, end, pkt)
    return m.decode_packet(pkt[0], pkt[start:end])


def test_known_bytes():
    assert m.encode_pingreq() == b"\xc0\x00"
    assert m.encode_puback(10) == b"\x40\x02\x00\x0a"
    assert m.encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert m.encode_publish("a", b"", 1, True, True, 1) == b"\x3b\x05\x00\x01a\x00\x01"
    assert m.encode_subscribe(1, [("t", 1)]) == b"\x82\x06\x00\x01\x00\x01t\x01"
    c = m.encode_connect("c", 60, True)
    assert c == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"


def test_varint_boundaries():
    for n, enc in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                   (16384, b"\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")):
        assert m.encode_varint(n) == enc
        status, start, end = m.split_packet(b"\x30" + enc + b"\x00" * min(n, 20))
        assert status == (1 if n <= 20 else 0)
        if status == 1:
            assert (start, end) == (1 + len(enc), 1 + len(enc) + n)
    for bad in (-1, 268435456):
        try:
            m.encode_varint(bad)
            raise AssertionError("accepted %d" % bad)
        except ValueError:
            pass


def test_round_trips():
    will = ("roost/f/node/n1/status", b"offline", 1, True)
    assert _one(m.encode_connect("n1", 30, False, will, "n1", b"pw")) == (
        m.CONNECT, "n1", False, 30, will, "n1", b"pw")
    assert _one(m.encode_connect("x", 5, True)) == (m.CONNECT, "x", True, 5, None, None, None)
    assert _one(m.encode_connack(True, 0)) == (m.CONNACK, 1, 0)
    assert _one(m.encode_publish("t/é", b"\x00\xff", 1, False, True, 65535)) == (
        m.PUBLISH, "t/é", b"\x00\xff", 1, False, True, 65535)
    assert _one(m.encode_publish("t", b"x", 0, True, True, 0)) == (
        m.PUBLISH, "t", b"x", 0, True, False, 0)
    assert _one(m.encode_puback(7)) == (m.PUBACK, 7)
    assert _one(m.encode_subscribe(9, [("a/+", 0), ("b/#", 1)])) == (
        m.SUBSCRIBE, 9, [("a/+", 0), ("b/#", 1)])
    assert _one(m.encode_suback(9, [0, 1, 0x80])) == (m.SUBACK, 9, [0, 1, 0x80])
    assert _one(m.encode_unsubscribe(3, ["a", "b"])) == (m.UNSUBSCRIBE, 3, ["a", "b"])
    assert _one(m.encode_unsuback(3)) == (m.UNSUBACK, 3)
    assert _one(m.encode_pingresp()) == (m.PINGRESP,)
    assert _one(m.encode_disconnect()) == (m.DISCONNECT,)
    big = b"z" * 3000  # a two-byte length
    assert _one(m.encode_publish("big", big))[2] == big


def test_stream_framing_byte_by_byte():
    stream = (m.encode_connack(False, 0) + m.encode_publish("a", b"1", 1, False, False, 5)
              + m.encode_pingresp())
    buf = bytearray()
    got = []
    for b in stream:
        buf.append(b)
        while True:
            status, start, end = m.split_packet(buf)
            assert status >= 0
            if status == 0:
                break
            got.append(m.decode_packet(buf[0], bytes(buf[start:end])))
            buf = buf[end:]  # MicroPython's bytearray has no slice deletion
    assert got == [(m.CONNACK, 0, 0), (m.PUBLISH, "a", b"1", 1, False, False, 5), (m.PINGRESP,)]
    assert not buf


def test_malformed_is_none_or_error_status():
    assert m.split_packet(b"\x30\xff\xff\xff\xff\x01") == (-1, 0, 0)  # varint of 5 bytes
    assert m.split_packet(b"\x30\x80\x01" + b"\x00" * 200, 100) == (-1, 0, 0)  # over max_len
    assert m.split_packet(b"\x30") == (0, 0, 0)
    assert m.split_packet(b"\x30\xff\xff\xff\xff") == (-1, 0, 0)  # known before a 6th byte
    assert m.split_packet(b"\x30\xff\xff\xff") == (0, 0, 0)  # a 4th byte may still end it
    body = b"\x00\x03a/b" + b"x"
    assert m.decode_packet(0x30, body) is not None
    assert m.decode_packet(0x38, body) is None  # DUP on QoS 0
    assert m.decode_packet(0x30, b"\x00\x03a/+x") is None  # a wildcard in a topic name
    assert m.decode_packet(0x30, b"\x00\x03a/#x") is None


def test_oversized_names_a_packet_to_skip_not_a_broken_stream():
    assert m.oversized(b"\x30\x80\x01" + b"\x00" * 20, 100) == (3, 128)  # skip 128 body bytes
    assert m.oversized(b"\x30\x80\x01", 200) is None  # fits: not oversized
    assert m.oversized(b"\x30\xff\xff\xff\xff\x01", 100) is None  # varint of 5 bytes: broken
    assert m.oversized(b"\x30\x80", 100) is None  # header not whole yet
    bad = [
        (0x36, b"\x00\x01a\x00\x01"),  # qos 3
        (0x32, b"\x00\x01a\x00\x00"),  # qos 1 with packet id 0
        (0x32, b"\x00\x01a\x00"),  # qos 1 without a whole packet id
        (0x30, b"\x00\x05ab"),  # topic longer than the packet
        (0x30, b"\x00\x00x"),  # empty topic
        (0x30, b"\x00\x02\xff\xfe"),  # topic not UTF-8
        (0x40, b"\x00"),  # short puback
        (0x41, b"\x00\x01"),  # puback with flags
        (0x20, b"\x02\x00"),  # connack with a bad flag
        (0x90, b"\x00\x01\x03"),  # suback with a bad code
        (0x80, b"\x00\x01\x00\x01a\x01"),  # subscribe without its flags
        (0x82, b"\x00\x01\x00\x01a\x03"),  # subscribe qos 3
        (0x10, b"\x00\x04MQTT\x05\x02\x00\x3c\x00\x01c"),  # protocol level 5
        (0x10, b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c"),  # reserved connect flag
        (0x10, b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x01c\x00\x01p"),  # password without user
        (0xC0, b"\x00"),  # pingreq with a body
        (0x00, b""),  # reserved type 0
        (0xF0, b""),  # reserved type 15
    ]
    for first, body in bad:
        assert m.decode_packet(first, body) is None, (first, body)
    assert m.decode_packet("x", b"") is None
    assert m.decode_packet(0x30, None) is None


def test_encode_misuse_raises_value_error():
    calls = [
        lambda: m.encode_publish("t", b"", 1),  # qos 1 needs a packet id
        lambda: m.encode_publish("t", b"", 3, pid=1),
        lambda: m.encode_puback(0),
        lambda: m.encode_subscribe(1, []),
        lambda: m.encode_connect("c", 70000),
        lambda: m.encode_connect("c", password=b"p"),
    ]
    for fn in calls:
        try:
            fn()
            raise AssertionError("no ValueError")
        except ValueError:
            pass


def test_topic_matching():
    yes = [("a/#", "a/b/c"), ("a/+/c", "a/b/c"), ("#", "x"), ("a/b", "a/b"), ("a/#", "a")]
    no = [("a/+", "a/b/c"), ("a/b", "a/c"), ("a/+/c", "a/b"), ("b/#", "a/b")]
    for f, t in yes:
        assert m.topic_matches(f, t), (f, t)
    for f, t in no:
        assert not m.topic_matches(f, t), (f, t)


def test_parse_url():
    assert m.parse_url("mqtt://u:p@h:1884") == ("h", 1884, "u", "p")
    assert m.parse_url("127.0.0.1") == ("127.0.0.1", 1883, None, None)
    assert m.parse_url("tcp://host/") == ("host", 1883, None, None)
    assert m.parse_url("mqtt://u@h") == ("h", 1883, "u", None)
    for bad in ("ws://h", "mqtt://h:x", "mqtt://h:0", "mqtt://", 5, "mqtt://[::1]:1883"):
        try:
            m.parse_url(bad)
            raise AssertionError("accepted %r" % (bad,))
        except ValueError:
            pass


def test_random_bytes_never_raise():
    from roost.common.prng import Prng

    rng = Prng(4)
    for _ in range(300):
        n = rng.randbelow(40)
        data = bytes(rng.randbelow(256) for _ in range(n))
        status, start, end = m.split_packet(data, 1000)
        assert status in (-1, 0, 1)
        for first in (data[0] if data else 0, 0x30, 0x32, 0x10, 0x90, 0x82, 0x20):
            body = data[1:]
            pkt = m.decode_packet(first, body)
            assert pkt is None or isinstance(pkt, tuple)
