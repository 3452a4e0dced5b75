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


def test_pieces_read_back_without_joining():
    from roost.common.jsonpieces import load_pieces

    value = [7, 3, [[1, ["n1", "n2"]]], [["k%d" % i, 'v"\\é' * (i % 9)] for i in range(30)]]
    w, whole = _written(value)
    assert load_pieces(w.parts) == value
    for size in (3, 7, 700):  # any cut, even inside a string or an escape
        assert load_pieces([whole[i:i + size] for i in range(0, len(whole), size)]) == value
    for bad in ([b"[1,"], [b"[1,", b"2]]"], [b"nul", b"l x"]):
        try:
            load_pieces(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
