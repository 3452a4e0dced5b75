"""A snapshot received in chunks where the heap has no block of its size is decoded from
the chunks themselves. MicroPython-safe; on MicroPython the heap is fragmented for real:
`micropython -X heapsize=160K tests/mpy_runner.py tests/paxos/test_snapshot_pieces.py`.
"""

IDS = ["n1", "n2", "n3"]


def test_a_snapshot_with_no_block_of_its_size_is_decoded_from_its_chunks():
    """On MicroPython with a fragmented heap (holes of 3 KB, none of the snapshot's 6 KB)
    the chunks are decoded as they are; CPython joins them, as when the block fits."""
    import sys

    from roost.common.channel import Channel
    from roost.common.jsonpieces import Pieces, write_json
    from roost.node.paxos import PaxosCore
    from tests.paxos.pump import CountSM

    core = PaxosCore("n1", Channel("n1", "k" * 16), IDS, CountSM(), now_ms=0)
    rec = [40, 40, [[1, IDS]], [["k%d" % i, "v" * 180] for i in range(30)]]
    w = Pieces()  # as a leader sends it: the text never one block
    write_json(w, rec)
    assert w.total > 5500
    parts = w.parts
    hold = []
    if sys.implementation.name == "micropython":
        import gc

        gc.collect()
        try:
            while True:
                hold.append(bytearray(1024))
        except MemoryError:
            pass
        for i in range(len(hold)):  # three KB in four free: room for the snapshot's
            if i % 4:  # strings, no block of its 6 KB
                hold[i] = None
        gc.collect()
    try:
        got = core._decode_parts(parts)
    finally:
        hold = None
    assert got == rec
    streamed = core.stats["snapshot_streamed"]
    assert streamed == (1 if sys.implementation.name == "micropython" else 0), streamed
