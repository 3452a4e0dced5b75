"""Hypothesis fuzz of the MQTT codec (CPython): decode never raises, whatever the bytes;
every packet the encoders build decodes back to what went in."""

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.node import mqtt_codec as m

topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="+#\x00"),
                 min_size=1, max_size=40)


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_decode_never_raises(first, body):
    pkt = m.decode_packet(first, body)
    assert pkt is None or (isinstance(pkt, tuple) and pkt[0] == first >> 4)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 500))
def test_split_never_raises_and_frames_inside_the_buffer(data, max_len):
    status, start, end = m.split_packet(data, max_len)
    assert status in (-1, 0, 1)
    if status == 1:
        assert 2 <= start <= 5 and start <= end <= len(data) and end - start <= max_len


@settings(max_examples=500, deadline=None)
@given(topics, st.binary(max_size=2000), st.integers(0, 1), st.booleans(), st.booleans(),
       st.integers(1, 65535))
def test_publish_round_trip(topic, payload, qos, retain, dup, pid):
    raw = m.encode_publish(topic, payload, qos, retain, dup, pid)
    status, start, end = m.split_packet(raw)
    assert (status, end) == (1, len(raw))
    assert m.decode_packet(raw[0], raw[start:end]) == (
        m.PUBLISH, topic, payload, qos, retain, dup and qos > 0, pid if qos else 0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(0, 65535), st.booleans(),
       st.one_of(st.none(), st.tuples(topics, st.binary(max_size=50), st.integers(0, 2),
                                      st.booleans())),
       st.one_of(st.none(), st.text(max_size=20)), st.binary(max_size=20))
def test_connect_round_trip(cid, keepalive, clean, will, user, pw):
    password = pw if user is not None else None
    raw = m.encode_connect(cid, keepalive, clean, will, user, password)
    status, start, end = m.split_packet(raw)
    assert m.decode_packet(raw[0], raw[start:end]) == (
        m.CONNECT, cid, clean, keepalive, will, user, password)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_every_truncation_of_a_stream_is_safe(tail):
    stream = m.encode_publish("a/b", tail, 1, False, False, 3) + m.encode_puback(3)
    for cut in range(len(stream) + 1):
        status, start, end = m.split_packet(stream[:cut])
        assert status in (0, 1)
        if status == 1:
            assert m.decode_packet(stream[0], stream[start:end]) is not None


def test_oversized_strings_are_value_errors():
    for fn in (lambda: m.encode_publish("t" * 65536, b""), lambda: m.encode_connect("c" * 65536)):
        try:
            fn()
            raise AssertionError("no ValueError")
        except ValueError:
            pass
