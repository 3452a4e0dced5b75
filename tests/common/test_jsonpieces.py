"""JSON written in pieces: the same text as one json.dumps would parse to, never one block
(CPython and MicroPython)."""

import binascii
import json

from roost.common.jsonpieces import Pieces, piece_slice, write_json


def _written(value):
    w = Pieces()
    write_json(w, value)
    return w, b"".join(w.parts)


def test_a_long_list_is_written_in_pieces_with_its_length_and_crc():
    value = [3, 7, [[1, ["n1", "n2"]]], [1, 30, [["k%d" % i, "v" * (i * 4)] for i in range(30)],
                                        [["c1", 2, [True, "é"], None]]]]
    w, whole = _written(value)
    assert json.loads(whole) == value and w.total == len(whole)
    assert len(w.parts) > 3 and max(len(b) for b in w.parts) < 1024  # no block of it all
    assert w.crc == binascii.crc32(whole) & 0xFFFFFFFF


def test_small_and_deep_values_come_out_whole():
    for value in (None, 5, "x", [], [[[[["deep", 1]]]]], {"a": [1, 2]}):
        w, whole = _written(value)
        assert json.loads(whole) == value and len(w.parts) == 1


def test_a_slice_of_the_pieces_is_the_slice_of_the_whole():
    w, whole = _written([["k%d" % i, "v" * (i * 4)] for i in range(30)])
    for off in (0, 1, 511, 512, 513, len(whole) - 3, len(whole)):
        for n in (1, 100, 700, 5000):
            assert piece_slice(w.parts, off, n) == whole[off:off + n]


def _fed(pieces):
    from roost.common.jsonpieces import JsonFeed

    f = JsonFeed()
    for b in pieces:
        f.feed(b)
    return f.finish()


def test_pieces_are_decoded_as_they_arrive():
    value = [7, 3, [[1, ["n1", "n2"]]], [["k%d" % i, 'v"\\é' * (i % 9)] for i in range(30)],
             {"a": [1, -2.5e3, None, True, False, {}], 'b\\"': [], "": "x"}, "", -12]
    w, whole = _written(value)
    assert _fed(w.parts) == value
    for size in (1, 2, 3, 7, 700):  # any cut, even inside a string, an escape, a number
        assert _fed(whole[i:i + size] for i in range(0, len(whole), size)) == value
    spaced = b' [ 1 ,\n\t{ "a" : [ true , null ] , "b":{ } } , "x y" ]\r\n'
    assert _fed(spaced[i:i + 3] for i in range(0, len(spaced), 3)) == [
        1, {"a": [True, None], "b": {}}, "x y"]
    for v in (5, -1.5, "é", None, True, [], {}, [[[]]], {"k": {"j": [1, {"z": 2}]}}):
        text = json.dumps(v).encode()
        assert _fed([text[:1], text[1:]]) == v, v


def test_what_is_not_one_json_text_is_refused():
    for bad in (b"[1,", b"[1,2]]", b"nul", b"[1 2]", b"{1:2}", b'{"a" 1}', b"[,1]", b"[1,]",
                b'{"a":1,}', b'"abc', b"[}", b"{]", b"tru", b"[1]x", b"", b'{"a"}', b"[1:2]",
                b"[1],", b'["\xff"]'):
        try:
            _fed([bad[:2], bad[2:]])
        except ValueError:
            continue
        raise AssertionError(bad)
